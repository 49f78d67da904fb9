"""Commands run in subprocesses by the multi-process tests, against the database in their environment:
``python -m tests.mp setup|edit|status|verify ...``; each prints one JSON line."""
import hashlib
import json
import os
import random
import sys

import django


def setup(entries: int, site_root: str, noops: int = 0) -> dict:
    from django.core.management import call_command

    from blog.demo import create_demo_blog
    from publishqueue.enqueue import NewJob, enqueue
    from publishqueue.services import publish_templates, site_templates

    call_command("migrate", verbosity=0)
    result = create_demo_blog(
        site_root=site_root, site_url="http://127.0.0.1/blog/", entries=entries, mode="queue", password="pw"
    )
    report = publish_templates(templates=site_templates(result.blog), queue=True)
    enqueue(NewJob(kind="noop", unique_key=f"n{i}") for i in range(noops))
    return {"queued": report.queued + noops}


def edit(count: int, seed: int) -> dict:
    """Edit entries through the service (titles change, some move between months)."""
    from blog.models import Entry
    from blog.services import save_entry

    rng = random.Random(seed)
    ids = list(Entry.objects.values_list("pk", flat=True))
    for n in range(count):
        entry = Entry.objects.get(pk=rng.choice(ids))
        entry.title = f"Edited {seed}-{n} {entry.slug}"
        save_entry(entry=entry)
    return {"edited": count}


def edit_all(seed: int) -> dict:
    """Edit every entry once (new titles)."""
    from blog.models import Entry
    from blog.services import save_entry

    entries = list(Entry.objects.order_by("pk"))
    for entry in entries:
        entry.title = f"Edited {seed} {entry.slug}"
        save_entry(entry=entry)
    return {"edited": len(entries)}


def pill() -> dict:
    """Queue a job whose handler kills the worker that runs it."""
    from publishqueue.enqueue import NewJob, enqueue

    enqueue([NewJob(kind="crash", unique_key="pill", priority=5)])
    return {"queued": 1}


def noops(count: int, priority: int, prefix: str) -> dict:
    """Queue ``count`` no-op jobs (keys ``prefix``0...) at ``priority``; returns their ids, read in the transaction
    that queues them (a worker woken by its commit may have run and deleted them before a later read)."""
    from django.db import transaction

    from publishqueue.enqueue import NewJob, enqueue
    from publishqueue.models import Job

    with transaction.atomic():
        enqueue(NewJob(kind="noop", unique_key=f"{prefix}{i}", priority=priority) for i in range(count))
        ids = Job.objects.filter(unique_key__startswith=prefix).order_by("id").values_list("id", flat=True)
        return {"ids": list(ids)}


def errors() -> dict:
    from publishqueue.models import Job, JobError

    return {
        "errors": list(JobError.objects.order_by("id").values("kind", "unique_key", "attempt", "worker", "message")),
        "failed": list(Job.objects.filter(failed_at__isnull=False).values("kind", "unique_key", "attempts")),
    }


def use_target(name: str) -> dict:
    from blog.models import Blog

    return {"blogs": Blog.objects.update(publish_target=name)}


def hosts() -> dict:
    """The hosts of the live queue workers, as the dashboard lists them."""
    from dispatch import processes

    return {"hosts": sorted({p.host for p in processes.live("queue worker")})}


def recycle() -> dict:
    """A recycle request, as the dashboard's button makes it."""
    from dispatch.control import request_recycle

    return {"id": request_recycle(note="test").pk}


def acked(request_id: int) -> dict:
    """The hosts whose processes acknowledged a recycle request."""
    from dispatch.models import RecycleAck

    return {"hosts": sorted(set(RecycleAck.objects.filter(request_id=request_id).values_list("host", flat=True)))}


def verify_target() -> dict:
    """Every file at the site's publish target (object storage) has exactly the content its template renders
    from the database now, and its stored hash is the object's."""
    from publishqueue.models import FileInfo, Job, JobError
    from publishqueue.publisher import render_fileinfo
    from publishqueue.targets import target_for

    stale, missing, unrecorded = [], [], []
    fileinfos = FileInfo.objects.select_related("site", "template")
    for fileinfo in fileinfos:
        want = render_fileinfo(fileinfo)
        data = target_for(fileinfo.site).read(fileinfo.path)
        if data is None:
            missing.append(fileinfo.path)
            continue
        if data.decode("utf-8") != want:
            stale.append(fileinfo.path)
        if hashlib.sha256(data).hexdigest() != fileinfo.content_hash:
            unrecorded.append(fileinfo.path)
    return {
        "files": fileinfos.count(), "stale": stale[:20], "n_stale": len(stale), "missing": missing[:20],
        "unrecorded": unrecorded[:20], "jobs_left": Job.objects.count(),
        "errors": list(JobError.objects.values_list("message", flat=True)[:5]),
    }


def status() -> dict:
    from publishqueue.models import Job

    return {"jobs": Job.objects.count(), "failed": Job.objects.filter(failed_at__isnull=False).count()}


def verify() -> dict:
    """Every file on disk has exactly the content its template renders from the database now."""
    from publishqueue.models import FileInfo, Job, JobError, JobStat
    from publishqueue.paths import resolve_output_path
    from publishqueue.publisher import render_fileinfo

    stale, missing, unrecorded = [], [], []
    fileinfos = FileInfo.objects.select_related("site", "template")
    for fileinfo in fileinfos:
        want = render_fileinfo(fileinfo)
        path = resolve_output_path(fileinfo.site.site_root, fileinfo.path)
        if not os.path.exists(path):
            missing.append(fileinfo.path)
            continue
        data = open(path, "rb").read()
        if data.decode("utf-8") != want:
            stale.append(fileinfo.path)
        if hashlib.sha256(data).hexdigest() != fileinfo.content_hash:
            unrecorded.append(fileinfo.path)  # the hash stored is not that of the file on disk
    return {
        "files": fileinfos.count(), "stale": stale[:20], "n_stale": len(stale), "missing": missing[:20],
        "unrecorded": unrecorded[:20], "jobs_left": Job.objects.count(),
        "errors": list(JobError.objects.exclude(kind="crash").values_list("message", flat=True)[:5]),
        "n_errors": JobError.objects.exclude(kind="crash").count(),
        "done": sum(JobStat.objects.values_list("done", flat=True)),
    }


def comment_meets_save() -> dict:
    """An entry saved while a comment on it is being posted (PostgreSQL; found by review: a deadlock). The comment's
    transaction holds the blog row (its throttle lock); once the save waits for that row (the content version it
    bumps), the comment is inserted, which needs a key-share lock on the entry that the save holds."""
    import threading
    from unittest import mock

    from django.db import connection

    from blog import services
    from blog.models import Blog, Entry

    entry = Entry.objects.live().first()
    Blog.objects.filter(pk=entry.blog_id).update(comment_policy=Blog.CommentPolicy.AUTO_APPROVE)
    throttled, errors = threading.Event(), []

    def until_the_save_waits(blog, ip):
        throttled.set()
        for _ in range(3000):  # 30 s
            with connection.cursor() as cursor:  # in a transaction: its snapshot of the statistics, cleared
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                if cursor.fetchone()[0]:
                    return
            threading.Event().wait(0.01)
        errors.append("the save never waited for the blog row")

    def comment():
        try:
            with mock.patch.object(services, "_check_throttle", until_the_save_waits):
                data = services.CommentInput(author="a", email="", url="", body="hi", ip="10.0.0.1")
                services.post_comment(entry=Entry.objects.get(pk=entry.pk), data=data)
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"comment: {exc}")
        finally:
            connection.close()

    def save():
        throttled.wait(30)
        try:
            edited = Entry.objects.get(pk=entry.pk)
            edited.title = "Edited while commented"
            services.save_entry(entry=edited)
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"save: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=comment), threading.Thread(target=save)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return {
        "errors": errors, "title": Entry.objects.get(pk=entry.pk).title,
        "comments": entry.comments.count(),
    }


if __name__ == "__main__":
    django.setup()
    command, *args = sys.argv[1:]
    functions = {
        "setup": setup, "edit": edit, "edit_all": edit_all, "pill": pill, "errors": errors, "status": status,
        "verify": verify, "use_target": use_target, "hosts": hosts, "verify_target": verify_target,
        "recycle": recycle, "acked": acked, "noops": noops,
        "comment_meets_save": comment_meets_save,
    }
    parsed = [int(a) if a.isdigit() else a for a in args]
    print(json.dumps(functions[command](*parsed)))
