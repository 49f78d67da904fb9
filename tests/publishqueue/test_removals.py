"""A queue worker removes the page of an object that is gone (an entry deleted or unpublished) in its fenced
finishing transaction, like it puts written pages in place (see also test_worker.py's frozen-worker tests). Found
by an independent review of that change: a page written at the same path in the same batch was removed with the
old one, a removal left for its job's next run was logged as done, and a failed delete on a storage target left
an object that nothing would remove."""
import datetime as dt

import pytest
from django.core.files.storage import FileSystemStorage

from blog import services
from blog.models import Entry
from publishqueue.jobs import run_job
from publishqueue.models import FileInfo, Job, PublishActivity, PublishedFile
from publishqueue.services import template_saved
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)
WHEN = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def worker(runner=None, **kwargs):
    options = WorkerOptions(**{"periodic": False, "background": False, **kwargs})
    return Worker(options, worker_id="test:1:1", **({"job_runner": runner} if runner else {}))


def entry_page(blog, entry):
    return FileInfo.objects.get(site_id=blog.pk, archive_type="individual", object_id=entry.pk)


@pytest.mark.parametrize("load", [10, 1])
def test_a_new_entry_with_a_deleted_ones_slug_keeps_its_page(tmp_path, load):
    """Both pages' jobs run (in one batch with load 10): the removal of the deleted entry's page must not remove
    the new entry's, at the same path. Fails before the fix with load 10: the page is gone."""
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    old = EntryFactory(blog=blog, title="Old title", slug="hello", published_on=WHEN)
    services.save_entry(entry=old)
    worker().run()
    path = tmp_path / "site" / entry_page(blog, old).path
    services.delete_entry(entry=old)
    new = EntryFactory(blog=blog, title="New title", slug="hello", published_on=WHEN)
    services.save_entry(entry=new)
    worker(load=load).run()
    assert path.exists() and "New title" in path.read_text()
    assert PublishedFile.objects.filter(site_id=blog.pk, path=entry_page(blog, new).path).exists()  # still known


def test_a_removal_whose_object_came_back_is_not_logged_as_a_removal(tmp_path):
    """The entry is published again while the job removing its page runs: the page stays and the job runs again;
    the activity log says nothing was removed. Fails before the fix: removed=1."""
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    entry = EntryFactory(blog=blog, title="Hello", slug="hello", published_on=WHEN)
    services.save_entry(entry=entry)
    worker().run()
    page = entry_page(blog, entry)
    entry.status = Entry.Status.UNPUBLISHED
    services.save_entry(entry=entry)
    PublishActivity.objects.all().delete()

    def runner(job, prepared):
        outcome = run_job(job, prepared)
        if job.fileinfo_id == page.pk and getattr(outcome, "status", "") == "removed":
            entry.status = Entry.Status.PUBLISHED
            services.save_entry(entry=entry)
        return outcome

    result = worker(runner, load=1).run()  # one job a batch: no preempt check gives it back first
    assert (tmp_path / "site" / page.path).exists() and result.requeued >= 1
    assert sum(PublishActivity.objects.values_list("removed", flat=True)) == 0


class UnreachableOnDelete(FileSystemStorage):
    broken = False

    def delete(self, name):
        if self.broken:
            raise OSError("storage unreachable")
        super().delete(name)


def test_a_failed_delete_on_a_storage_target_fails_the_job_and_loses_nothing(tmp_path, settings, monkeypatch):
    """Fails before the fix: the object stays in the bucket while its FileInfo, job and ledger row are gone."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    settings.PUBLISHQUEUE = {**settings.PUBLISHQUEUE, "TARGETS": {
        "default": {"BACKEND": "publishqueue.targets.FileSystemTarget"},
        "flaky": {"BACKEND": "publishqueue.targets.StorageTarget", "STORAGE": {
            "BACKEND": f"{__name__}.UnreachableOnDelete",
            "OPTIONS": {"location": str(bucket), "allow_overwrite": True},
        }},
    }}
    blog = blog_with_templates(tmp_path / "site", mode="queue", publish_target="flaky")
    entry = EntryFactory(blog=blog, title="Hello", slug="hello", published_on=WHEN)
    services.save_entry(entry=entry)
    worker().run()
    page = entry_page(blog, entry)
    assert (bucket / page.path).exists()
    entry.status = Entry.Status.UNPUBLISHED
    services.save_entry(entry=entry)
    monkeypatch.setattr(UnreachableOnDelete, "broken", True)
    result = worker().run()
    assert result.failed >= 1 and (bucket / page.path).exists()
    job = Job.objects.get(fileinfo_id=page.pk)  # kept, to be retried
    assert "storage unreachable" in job.last_error
    assert PublishedFile.objects.filter(site_id=blog.pk, path=page.path).exists()
    monkeypatch.setattr(UnreachableOnDelete, "broken", False)
    Job.objects.filter(pk=job.pk).update(run_after=WHEN)  # its retry is due
    worker().run()
    assert not (bucket / page.path).exists() and not FileInfo.objects.filter(pk=page.pk).exists()


@pytest.mark.parametrize("mode", ["dynamic", "disabled"])
def test_a_deleted_entrys_page_goes_when_the_entry_taking_its_path_is_not_written(tmp_path, mode):
    """An entry is deleted and a new one takes its slug (its file not written yet); then the Entry template is
    switched to Dynamically (or Do Not Publish). The old entry's page must leave the disk: the new entry's page will
    never be written there, and a web server serving files first would show the deleted entry at that URL for good.
    Fails before the fix: the file stays (its removal was skipped because another file claims the path)."""
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    old = EntryFactory(blog=blog, title="Old title", slug="hello", published_on=WHEN)
    services.save_entry(entry=old)
    worker().run()
    path = tmp_path / "site" / entry_page(blog, old).path
    assert "Old title" in path.read_text()
    services.delete_entry(entry=old)
    new = EntryFactory(blog=blog, title="New title", slug="hello", published_on=WHEN)
    services.save_entry(entry=new)
    template = blog.templates.get(mappings__archive_type="individual")
    template.mode = mode
    template.save()
    template_saved(template=template, previous_mode="queue")
    worker().run()
    assert not path.exists()
    assert not entry_page(blog, new).published_path
