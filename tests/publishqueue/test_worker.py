"""The worker loop in process: cron and daemon modes, failures, heartbeats, periodic and background tasks."""
import datetime as dt
import os
import threading
import time
import xmlrpc.server

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from blog import periodic as blog_periodic
from blog import services
from blog.models import Comment, Entry
from dispatch.models import ProcessHeartbeat
from publishqueue import periodic
from publishqueue.enqueue import NewJob, enqueue
from publishqueue.models import Job, JobError, JobStat, PeriodicTask
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import CommentFactory, EntryFactory, UserFactory, blog_with_templates
from tests.helpers import past_locks

pytestmark = pytest.mark.django_db(transaction=True)


def noops(n, **kwargs):
    enqueue(NewJob(kind="noop", unique_key=str(i), **kwargs) for i in range(n))


def worker(**kwargs):
    kwargs.setdefault("periodic", False)
    kwargs.setdefault("background", False)
    return Worker(WorkerOptions(**kwargs), worker_id="test:1:1")


def test_cron_mode_drains_the_queue_and_exits():
    noops(25)
    result = worker(load=4).run()
    assert (result.done, result.reason) == (25, "queue empty")
    assert not Job.objects.exists()
    assert sum(JobStat.objects.values_list("done", flat=True)) == 25


def test_once_and_max_jobs_bound_the_loop():
    noops(25)
    assert worker(load=4, once=True).run().done == 4
    result = worker(load=4, max_jobs=10).run()
    assert (result.done, result.reason) == (10, "max jobs")
    assert Job.objects.count() == 11
    assert not Job.objects.exclude(grabbed_by="").exists()  # the rest of the batch was given back


def test_a_failing_job_is_logged_and_retried_later():
    enqueue([NewJob(kind="no-such-kind", unique_key="x")])
    result = worker().run()
    assert (result.done, result.failed) == (0, 1)
    job = Job.objects.get()
    assert job.attempts == 1 and job.run_after > timezone.now() + dt.timedelta(minutes=4)
    error = JobError.objects.get()
    assert "No handler for job kind 'no-such-kind'" in error.message and "Traceback" in error.traceback


def test_workers_share_the_end_of_the_queue_with_the_live_workers_they_see():
    noops(6)
    now = timezone.now()
    peer = dict(host="other", pid=1, started=now, last_seen=now)
    ProcessHeartbeat.objects.create(process_id="other:1:1", **peer)
    ProcessHeartbeat.objects.create(process_id="gone:1:1", **{**peer, "last_seen": now - dt.timedelta(hours=1)})
    assert worker(load=10, once=True).run().done == 3  # its share of six, with one other live worker
    ProcessHeartbeat.objects.filter(process_id="other:1:1").delete()
    assert worker(load=10, once=True).run().done == 3  # alone: all that is left


def test_publish_jobs_write_the_files(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, title="Queued title")
    services.save_entry(entry=entry)
    assert worker(load=3).run().done == 5  # main index, feed, stylesheet, entry, monthly
    assert "Queued title" in next((tmp_path / "site").rglob(f"{entry.slug}.html")).read_text()


def test_a_file_that_cannot_be_put_in_place_fails_its_job_alone(tmp_path):
    """A batch's files are staged, then fsynced together and renamed into place; one that fails there (here:
    a directory is where the file should go) is not recorded, its temp file is removed and its job is
    retried, while the rest of the batch completes."""
    from publishqueue.models import FileInfo

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, title="Queued title")
    services.save_entry(entry=entry)
    stylesheet = FileInfo.objects.get(site=blog, path="styles.css")
    (tmp_path / "site" / "styles.css").mkdir(parents=True)
    (tmp_path / "site" / "styles.css" / "in-the-way").write_text("")

    result = worker(load=10).run()
    assert (result.done, result.failed) == (4, 1)
    job = Job.objects.get()
    assert job.fileinfo_id == stylesheet.pk and job.attempts == 1
    assert "styles.css could not be written: [Errno 21] Is a directory" in JobError.objects.get().message
    assert FileInfo.objects.get(pk=stylesheet.pk).content_hash == ""
    assert not FileInfo.objects.filter(site=blog, content_hash="").exclude(pk=stylesheet.pk).exists()
    assert sum(JobStat.objects.values_list("done", flat=True)) == 4
    assert sum(JobStat.objects.values_list("failed", flat=True)) == 1
    assert not list((tmp_path / "site").glob(".*.tmp"))
    assert "Queued title" in next((tmp_path / "site").rglob(f"{entry.slug}.html")).read_text()


def test_a_batch_is_completed_after_the_next_one_ran_with_its_files_in_place_and_its_leases_renewed(tmp_path):
    """A batch's files sync in the background while the next batch runs: its jobs stay held (and renewed by
    the heartbeat) until then, and are completed, their files in place and recorded, before run() returns."""
    from publishqueue.jobs import run_job
    from publishqueue.models import FileInfo

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    for n in range(3):
        services.save_entry(entry=EntryFactory(blog=blog, title=f"Entry {n}"))
    queued = Job.objects.count()
    seen = []

    def runner(job, prepared):
        leased = set(Job.objects.filter(grabbed_by=w.worker_id).values_list("id", flat=True))
        renewed = {held.id for held in w._current.held}  # what the heartbeat renews
        seen.append((job.id, leased, renewed))
        return run_job(job, prepared)

    w = Worker(WorkerOptions(load=4, periodic=False, background=False), worker_id="test:1:1", job_runner=runner)
    result = w.run()
    assert result.done == queued and not Job.objects.exists()
    first_batch = {job_id for job_id, _, _ in seen[:4]}
    assert len(seen) > 4
    for job_id, leased, renewed in seen[4:8]:  # the second batch runs while the first is held, not completed
        assert first_batch | {job_id} <= leased and first_batch | {job_id} <= renewed
    assert FileInfo.objects.filter(site=blog).count() == queued
    assert not FileInfo.objects.filter(site=blog, content_hash="").exists()
    assert not list((tmp_path / "site").rglob(".*.tmp"))


@override_settings(TIME_ZONE="America/New_York")
def test_a_batch_renders_each_page_as_it_renders_alone(tmp_path):
    """Batch loading (entry pages, and the entries of many date archives in one query) changes nothing
    in the output, entries on either side of a local month and year boundary included."""
    from publishqueue.models import ArchiveMapping, FileInfo, Template
    from publishqueue.publisher import render_fileinfo
    from publishqueue.services import publish_templates

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    ArchiveMapping.objects.create(
        template=blog.templates.get(identifier="monthly_archive"), archive_type="yearly", path_pattern="{year}/"
    )
    local = timezone.get_current_timezone()
    moments = [dt.datetime(2025, 12, 31, 23, 30), dt.datetime(2026, 1, 1, 0, 30), dt.datetime(2026, 1, 31, 22)]
    moments += [dt.datetime(2026, 2, 1, 1) + dt.timedelta(days=9 * n, hours=n) for n in range(12)]
    for n, moment in enumerate(moments):
        EntryFactory(blog=blog, title=f"Entry {n}", published_on=moment.replace(tzinfo=local))
    EntryFactory(blog=blog, title="Draft", published_on=moments[1].replace(tzinfo=local), status="draft")
    Job.objects.all().delete()
    queued = publish_templates(templates=Template.objects.filter(site=blog), queue=True).queued
    assert worker(load=200).run().done == queued
    yearly = FileInfo.objects.filter(site=blog, archive_type="yearly")
    assert sorted(f.path for f in yearly) == ["2025/index.html", "2026/index.html"]
    for fileinfo in FileInfo.objects.filter(site=blog).select_related("site", "template"):
        written = (tmp_path / "site" / fileinfo.path).read_text()
        assert written == render_fileinfo(fileinfo), fileinfo.path
    assert "Entry 1" in (tmp_path / "site/2026/01/index.html").read_text()
    assert "Entry 0" not in (tmp_path / "site/2026/01/index.html").read_text()


def test_a_worker_moves_a_file_whose_path_changed(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, slug="before")
    services.save_entry(entry=entry)
    worker().run()
    [old] = (tmp_path / "site").rglob("before.html")
    entry.slug = "after"
    services.save_entry(entry=entry)
    worker().run()
    assert not old.exists()
    assert entry.title in next((tmp_path / "site").rglob("after.html")).read_text()
    assert not list((tmp_path / "site").rglob(".*.tmp"))


def test_a_daemon_waits_for_work_and_stops_on_request():
    w = worker(daemon=True, sleep=0.05)
    thread = threading.Thread(target=w.run)
    thread.start()
    noops(3)
    deadline = time.monotonic() + 10
    while past_locks(Job.objects.exists) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert past_locks(ProcessHeartbeat.objects.filter(process_id="test:1:1").exists)
    w.stop("test")
    thread.join(timeout=10)
    assert not thread.is_alive() and w.result.done == 3
    assert not ProcessHeartbeat.objects.exists()  # a clean exit removes its heartbeat


@override_settings(
    DISPATCH={"HEARTBEAT_SECONDS": 0.05}, PUBLISHQUEUE={"JOB_HANDLERS": {"noop": "tests.publishqueue.test_worker.slow"}}
)
def test_the_heartbeat_shows_the_current_job():
    noops(1)
    w = worker()
    thread = threading.Thread(target=w.run)
    thread.start()
    assert SLOW_STARTED.wait(10)
    time.sleep(0.3)
    beat = ProcessHeartbeat.objects.get()
    SLOW_RELEASE.set()
    thread.join(10)
    assert (beat.state, beat.current, beat.host, beat.pid) == ("busy", "noop:0", "test", 1)


SLOW_STARTED, SLOW_RELEASE = threading.Event(), threading.Event()


def slow(job, prepared=None):
    SLOW_STARTED.set()
    SLOW_RELEASE.wait(10)


def test_periodic_tasks_run_once_per_period_across_workers(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    due = EntryFactory(blog=blog, status="scheduled", published_on=timezone.now() - dt.timedelta(minutes=1))
    first = periodic.run_due(worker_id="a")
    second = periodic.run_due(worker_id="b")
    assert first["publish-scheduled-entries"] == 1 and second == {}
    assert Entry.objects.get(pk=due.pk).status == "published"
    assert PeriodicTask.objects.get(name="publish-scheduled-entries").last_worker == "a"


def test_interval_templates_are_queued_when_their_interval_is_up(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    blog.templates.filter(identifier="main_index").update(rebuild_interval_minutes=15)
    now = timezone.now()
    assert periodic.republish_interval_templates(now) == 1
    assert periodic.republish_interval_templates(now + dt.timedelta(minutes=5)) == 0
    assert periodic.republish_interval_templates(now + dt.timedelta(minutes=16)) == 1


def test_purges_keep_history_bounded_and_expire_junk(tmp_path):
    blog = blog_with_templates(tmp_path / "site")
    now = timezone.now()
    JobStat.objects.create(minute=now - dt.timedelta(days=30), kind="noop", done=1)
    JobStat.objects.create(minute=now.replace(second=0, microsecond=0), kind="noop", done=1)
    JobError.objects.create(kind="noop", message="old", created=now - dt.timedelta(days=90))
    old_junk = CommentFactory(entry=EntryFactory(blog=blog), status="junk", created=now - dt.timedelta(days=30))
    CommentFactory(entry=old_junk.entry, status="approved", created=now - dt.timedelta(days=30))
    periodic.purge_history(now)
    blog_periodic.expire_junk_comments(now)
    assert JobStat.objects.count() == 1 and not JobError.objects.exists()
    assert list(Comment.objects.values_list("status", flat=True)) == ["approved"]


@override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
def test_comment_notification_mail_runs_through_django_q2_in_the_worker(tmp_path):
    from django_q.models import Success

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, author=UserFactory(username="writer", email="writer@example.com"))
    services.post_comment(entry=entry, data=services.CommentInput("Ann", "", "", "Hello", "192.0.2.1"))
    result = worker(background=True).run()
    assert result.background == 1
    assert [m.to for m in mail.outbox] == [["writer@example.com"]]
    assert "New comment" in mail.outbox[0].subject
    assert Success.objects.get().func == "blog.tasks.notify_comment"


def test_update_pings_go_to_the_configured_services(tmp_path):
    received = []
    server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
    server.register_function(lambda name, url: received.append((name, url)) or {"flerror": False}, "weblogUpdates.ping")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with override_settings(BLOG={"PING_URLS": [f"http://127.0.0.1:{server.server_address[1]}/RPC2"]}):
            blog = blog_with_templates(tmp_path / "site", mode="queue")
            services.save_entry(entry=EntryFactory.build(blog=blog))
            assert worker(background=True).run().background == 1
    finally:
        server.shutdown()
    assert received == [(blog.name, blog.site_url)]


def test_runworker_command_reports_what_it_did(capsys):
    noops(3)
    call_command("runworker", "--no-periodic", "--no-background", "--load", "2")
    assert "3 done, 0 failed" in capsys.readouterr().out


def test_a_standalone_worker_acknowledges_a_new_recycle_request_and_restarts():
    from dispatch.models import RecycleAck, RecycleRequest
    from publishqueue.worker import _Heartbeat

    RecycleRequest.objects.create(note="made before the worker started: not its own")
    w = Worker(WorkerOptions(daemon=True, follow_recycles=True, periodic=False, background=False),
               worker_id="test:1:1")
    heartbeat = _Heartbeat(w)
    heartbeat.beat()  # first look: the old request is the baseline
    heartbeat.beat()
    assert not w.stopping and not RecycleAck.objects.exists()
    request = RecycleRequest.objects.create(note="from the dashboard")
    heartbeat.beat()
    assert w.stopping and w.restart_requested
    ack = RecycleAck.objects.get()
    assert (ack.request_id, ack.kind) == (request.pk, "worker")
    heartbeat.beat()
    assert RecycleAck.objects.count() == 1  # acknowledged once


def test_a_worker_that_lost_its_jobs_puts_nothing_in_place_and_logs_no_error(tmp_path):
    """Fencing: the jobs of a batch are taken over by another worker (this one's leases expired) before the
    batch is finished. Its staged files are discarded, not renamed into place; nothing is recorded, no
    JobError is logged, the jobs stay the other worker's, and one line says what happened."""
    from publishqueue.jobs import run_job
    from publishqueue.models import FileInfo

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    services.save_entry(entry=EntryFactory(blog=blog, title="Queued title"))
    queued = Job.objects.count()

    def runner(job, prepared):
        outcome = run_job(job, prepared)
        Job.objects.filter(pk=job.id).update(grabbed_by="other:2:2")  # taken over, in the meantime
        return outcome

    lines = []
    w = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1", job_runner=runner,
               log=lines.append)
    result = w.run()
    assert (result.done, result.failed, result.lost) == (0, 0, queued)
    assert not JobError.objects.exists()
    assert Job.objects.filter(grabbed_by="other:2:2").count() == queued
    assert not [p for p in (tmp_path / "site").rglob("*") if p.is_file()]  # nothing in place, nothing staged
    assert not FileInfo.objects.filter(site=blog).exclude(content_hash="").exists()
    assert len([line for line in lines if "lost" in line]) == 1


def test_publish_all_queue_force_rewrites_unchanged_files(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    services.save_entry(entry=EntryFactory(blog=blog))
    worker(load=20).run()
    files = [p for p in (tmp_path / "site").rglob("*") if p.is_file()]
    old = time.time() - 3600
    for path in files:
        os.utime(path, (old, old))
    call_command("publish", "--all", "--queue", verbosity=0)
    worker(load=20).run()
    assert all(path.stat().st_mtime == old for path in files)  # unchanged: not rewritten
    call_command("publish", "--all", "--queue", "--force", verbosity=0)
    assert worker(load=20).run().done == len(files)
    assert all(path.stat().st_mtime > old for path in files)  # rewritten


def test_a_job_whose_last_worker_died_runs_with_no_other_job_in_hand():
    """A suspect (its last worker's lease expired) may kill this worker too: the batches in hand are finished
    and completed before it runs, so that they do not die with it."""
    from publishqueue.jobs import run_job

    noops(6)
    Job.objects.filter(unique_key="3").update(grabbed_by="host:99:1", grabbed_until=timezone.now())
    seen = []

    def runner(job, prepared):
        if job.unique_key == "3":
            seen.append(sorted(Job.objects.exclude(unique_key="3").values_list("unique_key", flat=True)))
        return run_job(job, prepared)

    w = Worker(WorkerOptions(load=2, periodic=False, background=False), worker_id="test:1:1", job_runner=runner)
    assert w.run().done == 6
    assert seen == [["2", "4", "5"]]  # 0 and 1 (the batch before) were completed before it ran


def test_a_cron_worker_does_not_exit_while_its_last_batch_gave_jobs_back():
    """Jobs changed while they ran (a coalesced insert bumped their generation) are given back when their batch
    is completed; when that is the last batch, the cron worker must run them again, not exit on "queue empty"
    (it did: the oracle test found pages left stale with their jobs waiting)."""
    noops(3)
    changed = set()

    def runner(job, prepared=None):
        if job.unique_key not in changed:
            changed.add(job.unique_key)
            noops(3)  # the same keys: their generations move while they run
        return None

    w = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1", job_runner=runner)
    result = w.run()
    assert (result.requeued, result.done) == (3, 6)  # each job run twice: given back once for its change
    assert not Job.objects.exists()
def test_a_last_batch_that_queues_its_own_jobs_again_is_run_again_before_the_worker_calls_the_queue_empty():
    """A cached module's includers job re-queues files of its own batch (their generation moves while they run):
    they are given back when the batch is completed, after the next claim found nothing. A cron worker ran them no
    more and exited with jobs left (the oracle found it)."""
    noops(3)
    runs = []

    def runner(job, prepared):
        runs.append(job.unique_key)
        if len(runs) == 1:  # the first job re-queues the whole batch, as republish-includers can
            noops(3)
        return None

    result = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1",
                    job_runner=runner).run()
    assert result.reason == "queue empty" and result.requeued == 3
    assert not Job.objects.exists()
    assert sorted(runs) == ["0", "0", "1", "1", "2", "2"]


def test_periodic_tasks_are_django_q2_schedules_that_the_worker_runs_and_the_admin_edits(tmp_path):
    """Each periodic task is a django-q2 Schedule row; runworker's scheduler queues it when due and runs it; a
    row edited in the admin (here: stopped with repeats 0, or moved to later) changes what runs."""
    from django_q.models import Schedule, Success

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    due = EntryFactory(blog=blog, status="scheduled", published_on=timezone.now() - dt.timedelta(minutes=1))
    result = worker(periodic=True, background=True).run()
    names = set(Schedule.objects.values_list("name", flat=True))
    assert {"mtdispatch: publish-scheduled-entries", "mtdispatch: unpublish-due-entries",
            "mtdispatch: purge-history"} <= names
    schedule = Schedule.objects.get(name="mtdispatch: publish-scheduled-entries")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == ("publishqueue.periodic.run_task", "I", 1)
    assert schedule.next_run > timezone.now()  # taken: its next run moved a minute on
    assert Entry.objects.get(pk=due.pk).status == "published"
    assert result.background >= len(names)
    assert Success.objects.filter(func="publishqueue.periodic.run_task", result=1).exists()

    later = EntryFactory(blog=blog, status="scheduled", published_on=timezone.now() - dt.timedelta(minutes=1))
    Schedule.objects.filter(name__startswith="mtdispatch: ").update(next_run=timezone.now() - dt.timedelta(minutes=5))
    Schedule.objects.filter(pk=schedule.pk).update(repeats=0)  # stopped in the admin
    worker(periodic=True, background=True).run()
    assert Entry.objects.get(pk=later.pk).status == "scheduled"
    Schedule.objects.filter(pk=schedule.pk).update(repeats=-1)
    worker(periodic=True, background=True).run()
    assert Entry.objects.get(pk=later.pk).status == "published"


def test_a_due_schedule_is_taken_once_across_workers(tmp_path):
    """Two workers' schedulers in the same period queue each due task once."""
    from django_q.models import OrmQ, Schedule

    from publishqueue.background import DjangoQBridge

    first, second = DjangoQBridge(), DjangoQBridge()
    queued = first.schedule_due()
    assert queued == Schedule.objects.filter(name__startswith="mtdispatch: ").count() == OrmQ.objects.count()
    assert second.schedule_due() == 0 and OrmQ.objects.count() == queued


def test_a_lock_conflict_in_a_job_gives_it_back_instead_of_failing_it(tmp_path):
    """SQLite's "database table is locked" (a shared cache: the tests' in-memory database, which a long oracle run
    hit through the heartbeat's connection) or "database is locked" after the busy timeout, PostgreSQL's deadlocks:
    the job is run again at once, with no JobError and no retry minutes later."""
    import sqlite3

    from django.db.utils import OperationalError

    from publishqueue.jobs import run_job

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    services.save_entry(entry=EntryFactory(blog=blog, title="Entry"))
    queued = Job.objects.count()
    conflicts = []

    def runner(job, prepared):
        if not conflicts:
            error = OperationalError("database table is locked")
            cause = sqlite3.OperationalError("database table is locked")
            cause.sqlite_errorcode = 6  # SQLITE_LOCKED
            conflicts.append(job.id)
            raise error from cause
        return run_job(job, prepared)

    result = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1",
                    job_runner=runner).run()
    assert conflicts and result.failed == 0 and not JobError.objects.exists()
    assert not Job.objects.exists() and result.done == queued


def test_only_lock_conflicts_are_taken_for_lock_conflicts():
    import sqlite3

    from django.db.utils import OperationalError

    from publishqueue.worker import lock_conflict

    # 262: SQLITE_LOCKED_SHAREDCACHE, an extended code
    for code, conflict in ((5, True), (6, True), (262, True), (1, False), (11, False)):
        cause = sqlite3.OperationalError("x")
        cause.sqlite_errorcode = code
        error = OperationalError("x")
        error.__cause__ = cause
        assert lock_conflict(error) is conflict, code
    from psycopg import errors

    for cause, conflict in ((errors.DeadlockDetected("x"), True), (errors.SerializationFailure("x"), True),
                            (errors.LockNotAvailable("x"), True), (errors.UndefinedTable("x"), False), (None, False)):
        error = OperationalError("x")
        error.__cause__ = cause
        assert lock_conflict(error) is conflict, cause


def test_a_page_whose_entry_went_is_removed_and_not_taken_for_a_lost_job(tmp_path):
    """Removing a page deletes its FileInfo, and with it the job being run: that job is done, not lost to another
    worker (the log said "lost 1 job(s) to other workers ... lease expired" with one worker running)."""
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, title="Going")
    services.save_entry(entry=entry)
    Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1").run()
    page = next((tmp_path / "site").rglob(f"{entry.slug}.html"))
    entry.status = Entry.Status.UNPUBLISHED
    services.save_entry(entry=entry)
    queued = Job.objects.count()
    result = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1").run()
    assert not page.exists() and not Job.objects.exists()
    assert (result.lost, result.failed) == (0, 0) and result.done >= queued  # jobs queued as it ran: done too
    from publishqueue.models import PublishActivity

    assert PublishActivity.objects.filter(site_id=blog.pk, removed__gt=0).exists()  # the activity log says so


def unpublished_page(tmp_path):
    """A published entry's page, the entry just unpublished (its page's job queued to remove it)."""
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, title="Going")
    services.save_entry(entry=entry)
    worker(load=10).run()
    page = next((tmp_path / "site").rglob(f"{entry.slug}.html"))
    entry.status = Entry.Status.UNPUBLISHED
    services.save_entry(entry=entry)
    return entry, page


def test_a_worker_frozen_past_its_lease_does_not_remove_the_page_the_next_worker_wrote(tmp_path, monkeypatch):
    """Found by review: a page whose object was gone was removed by its job, outside the fence. A worker that
    rendered it (nothing: the entry was unpublished), then froze past its lease, removed when it woke the page that
    the worker which took its job over had written meanwhile (the entry was back). Fails before the fix: the page
    is gone."""
    from publishqueue import publisher
    from publishqueue.models import FileInfo

    entry, page = unpublished_page(tmp_path)
    real = publisher.render_fileinfo

    def frozen_after_rendering(fileinfo, batch=None):
        content = real(fileinfo, batch)
        if content is None and page.name in fileinfo.path:  # frozen here: the entry came back, another worker
            # took the job over and wrote the page
            Job.objects.filter(fileinfo_id=fileinfo.pk).update(grabbed_by="other:2:2")
            page.write_text("written again by the other worker")
        return content

    monkeypatch.setattr(publisher, "render_fileinfo", frozen_after_rendering)
    result = worker(load=10).run()
    assert page.exists() and page.read_text() == "written again by the other worker"
    assert FileInfo.objects.filter(object_id=entry.pk, archive_type="individual").exists()
    assert result.lost >= 1


def test_a_removal_whose_object_came_back_while_it_ran_runs_again_and_keeps_the_page(tmp_path):
    """The job that removes a page is queued again while it runs (the entry is published again): the page is not
    removed with its FileInfo (which would delete the job queued for it), the job runs again and writes it."""
    from publishqueue.jobs import run_job

    entry, page = unpublished_page(tmp_path)

    def runner(job, prepared):
        outcome = run_job(job, prepared)
        if getattr(outcome, "status", None) == "removed":
            entry.status = Entry.Status.PUBLISHED
            services.save_entry(entry=entry)
        return outcome

    # One job a batch: no later look for jobs queued again (which gives them back before the batch is finished).
    result = Worker(WorkerOptions(load=1, periodic=False, background=False), worker_id="test:1:1",
                    job_runner=runner).run()
    assert (result.lost, result.failed) == (0, 0)
    assert not Job.objects.exists()
    assert page.exists() and "Going" in page.read_text()


def test_jobs_whose_template_was_deleted_while_they_ran_are_not_taken_for_lost_jobs(tmp_path):
    """The Entry template is deleted while a worker runs its page's job: the FileInfo goes with it, and the job row
    with that. Nothing is put in place and the log says the files were deleted, not that another worker took the
    jobs over after a lease expired (an operator would raise the lease for nothing). Fails before the fix:
    lost == 1 and the log line says "lost 1 job(s) to other workers"."""
    from publishqueue.jobs import run_job
    from publishqueue.models import FileInfo

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, title="Queued title")
    services.save_entry(entry=entry)
    page = FileInfo.objects.get(site=blog, archive_type="individual", object_id=entry.pk)

    def runner(job, prepared):
        outcome = run_job(job, prepared)
        if job.fileinfo_id == page.pk:
            page.template.delete()  # its FileInfo and its job go with it
        return outcome

    lines = []
    result = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1",
                    job_runner=runner, log=lines.append).run()
    assert not FileInfo.objects.filter(pk=page.pk).exists()
    assert not (tmp_path / "site" / page.path).exists()
    assert (result.lost, result.failed) == (0, 0)
    assert not [line for line in lines if "lost" in line]
    assert [line for line in lines if "their files were deleted meanwhile" in line]


def test_a_job_whose_file_went_while_the_workers_leases_lapsed_is_reported_lost(tmp_path):
    """Found by review: a worker frozen past its lease whose job was taken over, and whose file the other worker
    then removed (its object gone), was told "files deleted meanwhile", which hid the lease problem. Its leases
    lapsed while it ran the job: lost, as any job taken over. Fails before: lost == 0."""
    from publishqueue.conf import get_config
    from publishqueue.jobs import run_job
    from publishqueue.models import FileInfo

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, title="Queued title")
    services.save_entry(entry=entry)
    page = FileInfo.objects.get(site=blog, archive_type="individual", object_id=entry.pk)
    lease = get_config()["LEASE_SECONDS"]
    w = None

    def runner(job, prepared):
        outcome = run_job(job, prepared)
        if job.fileinfo_id == page.pk:  # frozen here past the lease: taken over, the file removed by the other
            Job.objects.filter(pk=job.id).update(grabbed_by="other:2:2")
            FileInfo.objects.filter(pk=page.pk).delete()
            with w._current.lock:
                w._current.renewed -= lease + 10
        return outcome

    lines = []
    w = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1", job_runner=runner,
               log=lines.append)
    result = w.run()
    assert result.lost == 1
    assert [line for line in lines if "lost 1 job(s)" in line]
