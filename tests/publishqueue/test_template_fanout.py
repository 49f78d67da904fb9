"""A template save that touches many files queues them through a job, a chunk of jobs per transaction, instead of
in the saving transaction: on SQLite that transaction holds the database's only write lock, and entry saves and
workers' commits waited up to 1.2 s behind a Header save of a 3,000-entry blog (bench/queue.py --parts freshness)."""
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from blog import services
from publishqueue import services as pq_services
from publishqueue.models import FileInfo, Job, Template
from publishqueue.services import template_saved, templates_affected_by
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)
MARK = "<!-- rebuilt -->"


def drain() -> Worker:
    worker = Worker(WorkerOptions(load=50, periodic=False, background=False), worker_id="test:1:1")
    worker.run()
    return worker


@pytest.fixture
def site(tmp_path, settings):
    settings.PUBLISHQUEUE = {**settings.PUBLISHQUEUE, "TEMPLATE_SAVE_INLINE_FILES": 3}
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    for n in range(4):
        services.save_entry(entry=EntryFactory(blog=blog, title=f"Entry {n}"))
    call_command("publish", "--all", "--queue", verbosity=0)
    drain()
    assert not Job.objects.exists()
    return blog, tmp_path / "site"


def save_header(blog, paths_changed=True):
    header = Template.objects.get(site=blog, identifier="header")
    with transaction.atomic():
        header.source = header.source.replace("<body>", f"<body>\n{MARK}")
        header.save()
        return header, template_saved(template=header, previous_mode=header.mode, paths_changed=paths_changed)


def pages(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.html")}


# A source edit (no mapping changed) queues the rows there are, made by the database; else they are ensured first.
@pytest.mark.parametrize("paths_changed", [False, True])
def test_a_save_touching_many_files_queues_a_job_per_template_and_every_file_is_rewritten(site, paths_changed):
    blog, root = site
    header, report = save_header(blog, paths_changed)
    including = templates_affected_by(header)
    files = FileInfo.objects.filter(template__in=including).count()
    # In the saving transaction: one job per template, not one per file; the report counts the files queued from
    # their rows, or says that a job finds them.
    assert Counter(Job.objects.values_list("kind", flat=True)) == {"republish-template": len(including)}
    if paths_changed:
        assert (report.queued, report.found_later) == (0, len(including))
    else:
        assert report.queued == files > 3 and not report.found_later
    drain()
    assert not Job.objects.exists()
    html = pages(root)
    assert len(html) >= files - 2 and all(MARK in text for text in html.values())  # the feeds are not .html


def test_a_save_touching_few_files_still_queues_them_in_its_transaction(site, settings):
    blog, _ = site
    settings.PUBLISHQUEUE = {**settings.PUBLISHQUEUE, "TEMPLATE_SAVE_INLINE_FILES": 1000}
    _, report = save_header(blog)
    assert set(Job.objects.values_list("kind", flat=True)) == {"publish"}
    assert Job.objects.count() == report.queued > 3


@pytest.mark.parametrize("paths_changed, chunk", [(False, "enqueue_template_files"), (True, "enqueue_publish")])
def test_a_fan_out_that_fails_midway_keeps_what_it_queued_and_queues_everything_when_retried(
    site, monkeypatch, paths_changed, chunk
):
    blog, root = site
    monkeypatch.setattr(pq_services, "QUEUE_CHUNK", 2)
    real = getattr(pq_services, chunk)
    calls = []

    def failing_after_one_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(pq_services, chunk, failing_after_one_chunk)
    header, report = save_header(blog, paths_changed)
    worker = Worker(WorkerOptions(load=50, periodic=False, background=False, kinds=["republish-template"]),
                    worker_id="test:1:1")
    worker.run()
    assert worker.result.failed >= 1
    failed = Job.objects.get(kind="republish-template", last_error__contains="the disk is full")
    # The chunks queued before the failure were committed on their own (as were other templates' fan-outs).
    files = FileInfo.objects.filter(template__in=templates_affected_by(header)).count()
    assert 2 <= Job.objects.filter(kind="publish").count() < files
    monkeypatch.setattr(pq_services, chunk, real)
    Job.objects.filter(pk=failed.pk).update(run_after=timezone.now())  # its retry is due
    drain()
    assert not Job.objects.exists()
    assert all(MARK in text for text in pages(root).values())


def test_a_mapping_changed_in_a_fanned_out_save_moves_its_files(site):
    blog, root = site
    entry_template = Template.objects.get(site=blog, identifier="entry")
    mapping = entry_template.mappings.get()
    old = {fi.path for fi in FileInfo.objects.filter(template=entry_template)}
    mapping.path_pattern = "posts/{slug}.html"
    mapping.save()
    template_saved(template=entry_template, previous_mode=entry_template.mode, paths_changed=True)
    assert set(Job.objects.values_list("kind", flat=True)) <= {"republish-template", "publish"}
    drain()
    new = {fi.path for fi in FileInfo.objects.filter(template=entry_template)}
    assert all(path.startswith("posts/") for path in new) and len(new) == len(old) == 4
    assert all((root / path).exists() for path in new) and not any((root / path).exists() for path in old)


def change_in_admin(client, template, **changes):
    url = reverse("admin:publishqueue_template_change", args=[template.pk])
    data = admin_form_data(client.get(url))
    data.update(changes)
    response = client.post(url, data)
    assert response.status_code == 302, response.content[:2000]


def test_a_source_edit_in_the_admin_queues_the_rows_and_a_site_change_ensures_them(site, admin_client, tmp_path):
    """Found by review: moving a template to another blog in the admin (no mapping changed) re-queued the rows of
    the old blog and gave the new one no files."""
    blog, root = site
    entry_template = Template.objects.get(site=blog, identifier="entry")
    change_in_admin(admin_client, entry_template, source=entry_template.source + "\n<!-- edited -->")
    assert set(Job.objects.values_list("unique_key", flat=True)) >= {f"{entry_template.pk}:rows"}
    drain()
    paths = FileInfo.objects.filter(template=entry_template).values_list("path", flat=True)
    assert len(paths) == 4 and all("<!-- edited -->" in (root / path).read_text() for path in paths)

    other = blog_with_templates(tmp_path / "other", mode="queue", site_url="http://other.example/")
    Template.objects.filter(site=other, identifier="entry").delete()
    services.save_entry(entry=EntryFactory(blog=other, title="Elsewhere", slug="elsewhere"))
    change_in_admin(admin_client, entry_template, site=str(other.pk))
    assert f"{entry_template.pk}:ensure" in set(Job.objects.values_list("unique_key", flat=True))
    drain()
    assert list((tmp_path / "other").rglob("elsewhere.html"))


def test_a_mapping_added_in_a_fanned_out_save_is_not_reported_as_fewer_files_than_get_queued(site):
    """Found by review: the report counted a template's rows before the job ensured them, so a mapping that adds
    files was reported as queuing the old number ("queued 4 file(s)" for 8)."""
    blog, root = site
    entry_template = Template.objects.get(site=blog, identifier="entry")
    entry_template.mappings.create(archive_type="individual", path_pattern="copies/{slug}.html", is_preferred=False)
    report = template_saved(template=entry_template, previous_mode=entry_template.mode, paths_changed=True)
    assert report.queued == 0
    assert report.summary() == "a background job is finding and queuing the files of 1 template(s)"
    drain()
    assert len(list((root / "copies").glob("*.html"))) == 4
