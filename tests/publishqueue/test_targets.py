"""Publish targets: a blog published to S3-compatible object storage (a real ``rclone serve s3``, through
django-storages' S3Storage and boto3: nothing mocked), fenced like the file system."""
import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from blog import services
from publishqueue.jobs import run_job
from publishqueue.models import FileInfo, Job, JobError
from publishqueue.publisher import render_fileinfo
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import BASE_DATE, EntryFactory, blog_with_templates
from tests.s3 import CACHE_CONTROL

pytestmark = pytest.mark.django_db(transaction=True)


def worker(worker_id="test:1:1", **kwargs):
    kwargs.setdefault("periodic", False)
    kwargs.setdefault("background", False)
    kwargs.setdefault("load", 10)
    return Worker(WorkerOptions(**kwargs), worker_id=worker_id, job_runner=kwargs.pop("runner", run_job))


def fresh_renders(blog) -> dict[str, bytes]:
    """What every written file of the blog should hold now (rendered anew, from the database)."""
    found = {}
    for fileinfo in FileInfo.objects.filter(site=blog).select_related("site", "template", "mapping"):
        content = render_fileinfo(fileinfo)
        if content is not None and fileinfo.mode in ("static", "queue"):
            found[fileinfo.path] = content.encode()
    return found


def s3_blog(tmp_path, **kwargs):
    return blog_with_templates(tmp_path / "site", mode="queue", publish_target="s3", **kwargs)


def test_a_blog_published_to_s3_is_its_fresh_renders_with_content_types_and_cache_headers(tmp_path, s3_target):
    blog = s3_blog(tmp_path)
    entries = [EntryFactory(blog=blog, title=f"Stored {i}") for i in range(3)]
    for entry in entries:
        services.save_entry(entry=entry)
    result = worker().run()
    assert (result.done, result.failed) == (Job.objects.count() + result.done, 0)
    stored = s3_target.objects()
    assert {key: obj["body"] for key, obj in stored.items()} == fresh_renders(blog)
    assert any(f"{entries[0].slug}.html" in key for key in stored)
    types = {key.rsplit(".", 1)[1]: obj["content_type"] for key, obj in stored.items()}
    assert types == {"html": "text/html; charset=utf-8", "xml": "application/xml; charset=utf-8",
                     "css": "text/css; charset=utf-8"}
    assert {obj["cache_control"] for obj in stored.values()} == {CACHE_CONTROL}
    assert not (tmp_path / "site").exists()  # nothing on the local disk
    assert not FileInfo.objects.filter(site=blog, content_hash="").exists()  # every upload recorded


@pytest.mark.slow
def test_unchanged_pages_are_not_uploaded_again(tmp_path, s3_target):
    blog = s3_blog(tmp_path)
    entries = [EntryFactory(blog=blog, title=f"Stored {i}", published_on=BASE_DATE + dt.timedelta(days=40 * i))
               for i in range(3)]
    for entry in entries:
        services.save_entry(entry=entry)
    worker().run()
    first = s3_target.puts()
    assert sorted(first) == sorted(fresh_renders(blog))  # each file once
    hashes = dict(FileInfo.objects.filter(site=blog).values_list("path", "content_hash"))

    mark = s3_target.server.log_size()
    entries[2].title = "Retitled"
    services.save_entry(entry=entries[2])
    assert worker().run().done > 0
    changed = {path for path, digest in FileInfo.objects.filter(site=blog).values_list("path", "content_hash")
               if hashes[path] != digest}
    again = s3_target.puts(mark)
    assert sorted(again) == sorted(changed)  # the changed files, once each, and nothing else
    assert any(entries[2].slug in key for key in again)
    assert not any(entries[0].slug in key for key in again)  # its page did not change
    assert {key: obj["body"] for key, obj in s3_target.objects().items()} == fresh_renders(blog)

    mark = s3_target.server.log_size()
    services.republish_site(site=blog)  # every file queued, none changed
    assert worker().run().done == len(hashes)
    assert s3_target.puts(mark) == []


@pytest.mark.slow
def test_a_moved_entry_moves_its_object_and_a_deleted_one_deletes_it(tmp_path, s3_target):
    blog = s3_blog(tmp_path)
    kept = EntryFactory(blog=blog, title="Kept", slug="kept")
    entry = EntryFactory(blog=blog, title="Moving", slug="before")
    for e in (kept, entry):
        services.save_entry(entry=e)
    worker().run()
    assert [key for key in s3_target.objects() if key.endswith("before.html")]

    entry.slug = "after"
    services.save_entry(entry=entry)
    worker().run()
    keys = set(s3_target.objects())
    assert not [key for key in keys if key.endswith("before.html")]
    [moved] = [key for key in keys if key.endswith("after.html")]
    assert b"Moving" in s3_target.objects()[moved]["body"]

    services.delete_entry(entry=entry)
    worker().run()
    stored = s3_target.objects()
    assert not [key for key in stored if "after" in key]
    assert {key: obj["body"] for key, obj in stored.items()} == fresh_renders(blog)


def test_a_worker_frozen_past_its_lease_cannot_overwrite_the_objects_of_the_worker_that_took_over(
    tmp_path, s3_target
):
    """Worker A renders the entry's page with the old title, then freezes past its lease; meanwhile the title
    changes and worker B takes A's jobs over and publishes. When A wakes up and finishes its batch, its fence
    finds the jobs are no longer its own: it uploads nothing (S3 has no rename to fence; the uploads happen inside
    the fenced transaction). Every object is B's, equal to a fresh render."""
    blog = s3_blog(tmp_path)
    entry = EntryFactory(blog=blog, title="Old title", slug="fenced")
    services.save_entry(entry=entry)
    ran_b = []

    def frozen(job, prepared):
        outcome = run_job(job, prepared)
        if not ran_b:
            assert b"Old title" in outcome.upload.data  # the entry's page (highest priority) comes first
            entry.title = "New title"
            services.save_entry(entry=entry)
            Job.objects.filter(grabbed_by="A:1:1").update(grabbed_until=timezone.now() - dt.timedelta(seconds=1))
            ran_b.append(worker("B:2:2").run())
        return outcome

    mark = s3_target.server.log_size()
    lines = []
    a = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="A:1:1", job_runner=frozen,
               log=lines.append)
    result = a.run()
    assert ran_b[0].done > 0 and result.lost > 0
    assert not JobError.objects.exists()
    stored = s3_target.objects()
    [page] = [key for key in stored if key.endswith("fenced.html")]
    assert b"New title" in stored[page]["body"]
    assert {key: obj["body"] for key, obj in stored.items()} == fresh_renders(blog)
    assert [key for key in s3_target.puts(mark) if key.endswith("fenced.html")] == [page]  # B's upload only
    assert any("lost" in line for line in lines)


@pytest.mark.slow
def test_a_storage_target_that_cannot_be_reached_fails_the_jobs_which_are_retried(tmp_path, s3_target, settings):
    blog = s3_blog(tmp_path)
    services.save_entry(entry=EntryFactory(blog=blog))
    queued = Job.objects.count()
    options = settings.STORAGES["published"]["OPTIONS"]
    settings.STORAGES = {**settings.STORAGES, "published": {
        "BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {**options, "bucket_name": "no-such-bucket"}}}
    result = worker().run()
    assert (result.done, result.failed) == (0, queued)
    assert Job.objects.count() == queued and not FileInfo.objects.filter(site=blog).exclude(content_hash="").exists()
    assert "could not be written to target 's3'" in JobError.objects.first().message


def test_a_site_must_name_a_configured_target(tmp_path, s3_target):
    blog = blog_with_templates(tmp_path / "site", site_url="https://example.com/blog/")
    blog.publish_target = "nowhere"
    with pytest.raises(ValidationError) as raised:
        blog.full_clean()
    assert "No publish target 'nowhere'" in str(raised.value)
    blog.publish_target = "s3"
    blog.full_clean()


def test_the_admins_static_publishing_uploads_in_the_request(tmp_path, s3_target):
    """Statically published templates write in the request that changed the content (unfenced, as on disk)."""
    blog = blog_with_templates(tmp_path / "site", mode="static", publish_target="s3")
    entry = EntryFactory(blog=blog, title="Right away")
    services.save_entry(entry=entry)
    stored = s3_target.objects()
    assert any(entry.slug in key for key in stored)
    assert {key: obj["body"] for key, obj in stored.items()} == fresh_renders(blog)


def file_storage_target(settings, location, *, overwrite=True):
    settings.PUBLISHQUEUE = {**settings.PUBLISHQUEUE, "TARGETS": {"files": {
        "BACKEND": "publishqueue.targets.StorageTarget",
        "STORAGE": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": str(location), "allow_overwrite": overwrite}},
    }}}


def stored_files(location) -> dict[str, bytes]:
    return {str(p.relative_to(location)): p.read_bytes() for p in location.rglob("*") if p.is_file()}


def test_any_django_storage_that_overwrites_is_a_target(tmp_path, settings):
    store = tmp_path / "store"
    file_storage_target(settings, store)
    blog = blog_with_templates(tmp_path / "site", mode="queue", publish_target="files")
    entry = EntryFactory(blog=blog, title="First")
    services.save_entry(entry=entry)
    worker().run()
    entry.title = "Second"
    services.save_entry(entry=entry)
    assert worker().run().failed == 0
    assert stored_files(store) == fresh_renders(blog)
    assert b"Second" in next(data for path, data in stored_files(store).items() if entry.slug in path)


def test_a_storage_that_would_save_beside_the_file_is_refused_with_a_clear_error(tmp_path, settings):
    store = tmp_path / "store"
    file_storage_target(settings, store, overwrite=False)
    blog = blog_with_templates(tmp_path / "site", mode="queue", publish_target="files")
    entry = EntryFactory(blog=blog, title="First")
    services.save_entry(entry=entry)
    worker().run()
    entry.title = "Second"
    services.save_entry(entry=entry)
    assert worker().run().failed > 0
    assert "it must overwrite in place" in JobError.objects.first().message
    assert set(stored_files(store)) == set(fresh_renders(blog))  # no copies beside the files left behind


def test_the_system_check_skips_the_site_root_of_a_site_on_object_storage_and_names_an_unknown_target(
    tmp_path, s3_target
):
    from publishqueue.checks import check_site_roots

    on_s3 = blog_with_templates(tmp_path / "not-created", publish_target="s3")
    assert not [e for e in check_site_roots(databases=["default"]) if on_s3.name in e.msg]
    type(on_s3).objects.filter(pk=on_s3.pk).update(publish_target="gone")
    [error] = [e for e in check_site_roots(databases=["default"]) if on_s3.name in e.msg]
    assert error.id == "publishqueue.E004" and "No publish target 'gone'" in error.msg


def test_a_blog_moved_to_another_target_is_published_there_in_full(tmp_path, s3_target):
    """The stored hashes are of the files at the old target: moving a blog must not skip its files as unchanged."""
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    services.save_entry(entry=EntryFactory(blog=blog, title="Moved along"))
    worker().run()
    assert (tmp_path / "site" / "index.html").exists()
    before = services.shown_state(blog)
    blog.publish_target = "s3"
    assert services.save_blog(blog=blog, before=before).queued > 0
    worker().run()
    assert {key: obj["body"] for key, obj in s3_target.objects().items()} == fresh_renders(blog)
