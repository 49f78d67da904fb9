"""Publish runs: Publish site with a scope, tracked from the queue; never rendered in a request."""
import datetime as dt
from unittest import mock

import pytest
from django.urls import reverse

from publishqueue import publisher, runs
from publishqueue.models import ArchiveMapping, FileInfo, Job, PublishRun, Template
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import CategoryFactory, EntryFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)

DAY = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)


@pytest.fixture
def blog(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static")
    category = CategoryFactory(blog=blog)
    for n in range(6):  # four months, one category
        EntryFactory(blog=blog, published_on=DAY + dt.timedelta(days=20 * n)).categories.add(category)
    return blog


def drain():
    return Worker(WorkerOptions(load=4, periodic=False, background=False), worker_id="test:1:1").run()


def start(blog, **kwargs):
    return runs.start(PublishRun(site=blog, **kwargs))


def test_a_run_of_everything_queues_each_written_file_at_high_priority_and_counts_its_progress(blog, tmp_path):
    Template.objects.filter(site=blog, identifier="styles").update(mode="dynamic")  # not written: not in the run
    run = start(blog)
    files = FileInfo.objects.filter(site=blog).exclude(template__identifier="styles")
    assert run.total == files.count() == 6 + 1 + 4 + 2  # entries, category, months, main index and feed
    assert set(Job.objects.values_list("priority", flat=True)) == {20}
    assert all(job.args == {"run": run.pk} for job in Job.objects.all())
    assert not (tmp_path / "site" / "index.html").exists()  # nothing rendered when it started
    before = runs.progress(run)
    assert (before.done, before.left, before.finished, before.eta) == (0, run.total, False, None)
    drain()
    after = runs.progress(run)
    assert (after.done, after.left, after.failed, after.finished) == (run.total, 0, 0, True)
    assert PublishRun.objects.get(pk=run.pk).finished_at is not None
    assert (tmp_path / "site" / "index.html").exists() and not (tmp_path / "site" / "styles.css").exists()


@pytest.mark.parametrize(("scope", "extra", "expected"), [
    ("indexes", {}, {"index"}),
    ("archive_type", {"archive_type": "monthly"}, {"monthly"}),
])
def test_a_run_publishes_only_its_scope(blog, scope, extra, expected):
    run = start(blog, scope=scope, **extra)
    types = set(Job.objects.values_list("fileinfo__archive_type", flat=True))
    assert types == expected and run.total == Job.objects.count()


def test_a_run_of_a_module_publishes_the_templates_that_include_it(blog):
    sidebar = Template.objects.get(site=blog, name="Sidebar")
    run = start(blog, scope="template", template=sidebar)
    identifiers = set(Job.objects.values_list("fileinfo__template__identifier", flat=True))
    assert identifiers == {"main_index", "entry", "category_archive", "monthly_archive"} and run.total == 12


def test_a_run_takes_over_a_job_already_queued_for_a_file_and_waits_for_it(blog):
    template = Template.objects.get(site=blog, identifier="entry")
    template.mode = "queue"
    template.save()
    entry = blog.entries.first()
    entry.title = "Changed"
    from blog import services

    services.save_entry(entry=entry)  # queued at the entry's priority
    run = start(blog, scope="template", template=template)
    assert run.total == 6 and Job.objects.filter(args__run=run.pk).count() == 6
    assert set(Job.objects.filter(fileinfo__template=template).values_list("priority", flat=True)) == {20}


def test_failures_are_listed_with_their_file_and_the_run_waits_for_their_retries(blog):
    Template.objects.filter(site=blog, identifier="monthly_archive").update(source="{{ entries|divisibleby:0 }}")
    run = start(blog, scope="archive_type", archive_type="monthly")
    drain()
    found = runs.progress(run)
    assert (found.done, found.retrying, found.finished) == (0, 4, False)
    assert {f["path"] for f in found.failures} == set(
        FileInfo.objects.filter(site=blog, archive_type="monthly").values_list("path", flat=True))
    assert all("failed to render" in f["error"] and not f["final"] for f in found.failures)
    Job.objects.update(failed_at=dt.datetime.now(dt.UTC))  # their attempts used up
    found = runs.progress(run)
    assert (found.failed, found.finished) == (4, True)


def test_the_runs_page_publishes_in_the_browser_one_file_per_request_when_no_worker_runs(admin_client, blog, tmp_path):
    run = start(blog, scope="indexes")
    url = reverse("admin:publishqueue_publishrun_step", args=[run.pk])
    assert admin_client.get(url).status_code == 405
    with mock.patch.object(publisher, "render", wraps=publisher.render) as rendered:
        first = admin_client.post(url).json()
        assert rendered.call_count == 1
    assert (first["ran"], first["done"], first["total"], first["workers"]) == (1, 1, 3, 0)
    admin_client.post(url)
    last = admin_client.post(url).json()
    assert last["finished"]
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "atom.xml").exists()
    assert admin_client.post(url).json()["ran"] == 0


def test_publish_site_in_the_admin_starts_a_run_and_shows_its_progress(admin_client, blog):
    add = reverse("admin:publishqueue_publishrun_add")
    page = admin_client.get(f"{add}?site={blog.pk}").content.decode()
    assert "Publish site" in page and "One archive type" in page
    refused = admin_client.post(add, {"site": blog.pk, "scope": "template"})
    assert refused.status_code == 200 and "Choose the template to publish" in refused.content.decode()
    response = admin_client.post(add, {"site": blog.pk, "scope": "archive_type", "archive_type": "category"})
    run = PublishRun.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/publishrun/{run.pk}/change/")
    assert (run.total, run.started_by.username, run.scope_label) == (1, "admin", "Category archives")
    page = admin_client.get(response["Location"]).content.decode()
    assert "0</span> of <span data-field=\"total\">1</span>" in page
    data = admin_client.get(reverse("admin:publishqueue_publishrun_progress", args=[run.pk])).json()
    assert (data["done"], data["total"], data["finished"]) == (0, 1, False)


def count_renders():
    return mock.patch.object(publisher, "render", wraps=publisher.render)


def save_template(client, template, **changes):
    url = reverse("admin:publishqueue_template_change", args=[template.pk])
    data = admin_form_data(client.get(url))
    data.update(changes)
    return client.post(url, data)


def test_saving_a_static_archive_template_starts_a_run_instead_of_rendering_its_files(admin_client, blog):
    template = Template.objects.get(site=blog, identifier="entry")
    with count_renders() as rendered:
        response = save_template(admin_client, template, source=template.source + "<!-- edited -->")
    assert rendered.call_count == 0
    run = PublishRun.objects.get()
    assert response["Location"] == reverse("admin:publishqueue_publishrun_change", args=[run.pk])
    assert (run.total, run.scope, run.template_id, run.reason) == (6, "template", template.pk, "Template “Entry” saved")


def test_saving_a_static_index_template_writes_its_page_in_the_request(admin_client, blog, tmp_path):
    template = Template.objects.get(site=blog, identifier="main_index")
    with count_renders() as rendered:
        response = save_template(admin_client, template, source=template.source + "<!-- index edit -->")
    assert rendered.call_count == 1 and response.status_code == 302
    assert "<!-- index edit -->" in (tmp_path / "site" / "index.html").read_text()
    assert not PublishRun.objects.exists() and not Job.objects.exists()


def test_save_and_publish_and_publish_start_a_run_of_the_whole_template(admin_client, blog):
    template = Template.objects.get(site=blog, identifier="entry")
    ArchiveMapping.objects.create(template=template, archive_type="individual", path_pattern="e/{id}.html",
                                  is_preferred=False, mode="queue")
    with count_renders() as rendered:
        response = save_template(admin_client, template, _saveandpublish="Save and publish")
    assert rendered.call_count == 0
    run = PublishRun.objects.get()  # the save's own run of its static files is folded into this one
    assert response["Location"].endswith(f"/publishrun/{run.pk}/change/") and run.total == 12
    response = admin_client.post(reverse("admin:publishqueue_template_publish", args=[template.pk]))
    assert PublishRun.objects.count() == 2 and response["Location"].endswith("/change/")
