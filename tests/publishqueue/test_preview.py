"""Previews (of a template's unsaved source, of an entry's unsaved changes) and dry runs: nothing is stored."""
import datetime as dt
import html

import pytest
from django.urls import reverse

from blog.models import Entry
from publishqueue import runs
from publishqueue.models import FileInfo, Job, PublishRun, Template
from publishqueue.services import publish_templates
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import CategoryFactory, EntryFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)

DAY = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
MARK = "<p>edited-not-saved</p>"


@pytest.fixture
def blog(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static")
    category = CategoryFactory(blog=blog)
    for n in range(5):
        EntryFactory(blog=blog, published_on=DAY + dt.timedelta(days=10 * n)).categories.add(category)
    publish_templates(templates=Template.objects.filter(site=blog).exclude(kind="module"))
    return blog


def site_state(tmp_path):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "site").rglob("*") if p.is_file()}


def stored(blog):
    return (list(Template.objects.filter(site=blog).values_list("source", "output_hash", "version")),
            list(FileInfo.objects.filter(site=blog).values_list("content_hash", "published_at")))


def form_of(client, template, **changes):
    data = admin_form_data(client.get(reverse("admin:publishqueue_template_change", args=[template.pk])))
    data.update(changes)
    return data


def test_a_template_preview_renders_a_sample_page_of_each_archive_type_and_stores_nothing(admin_client, blog, tmp_path):
    template = Template.objects.get(site=blog, identifier="monthly_archive")
    template.mappings.create(archive_type="yearly", path_pattern="{year}/", is_preferred=True)
    before, files = stored(blog), site_state(tmp_path)
    url = reverse("admin:publishqueue_template_preview", args=[template.pk])
    assert admin_client.get(url).status_code == 403
    page = admin_client.post(url, form_of(admin_client, template, source=template.source + MARK)).content.decode()
    # A whole page in each frame's attribute (rendered output is marked safe: it must still be escaped there).
    frames = [html.unescape(chunk.split('"', 1)[0]) for chunk in page.split('srcdoc="')[1:]]
    assert all(frame.startswith("<!doctype html>") and "</html>" in frame for frame in frames)
    assert len(frames) == 2 and all(MARK in frame for frame in frames)  # a monthly page and a yearly one
    assert 'data-archive-type="monthly"' in page and 'data-archive-type="yearly"' in page
    assert "http://testserver/blog/2026/04/" in page  # the newest month
    assert stored(blog) == before and site_state(tmp_path) == files and not Job.objects.exists()


def test_a_module_preview_shows_the_pages_of_the_templates_that_include_it(admin_client, blog):
    sidebar = Template.objects.get(site=blog, name="Sidebar")
    url = reverse("admin:publishqueue_template_preview", args=[sidebar.pk])
    page = admin_client.post(url, form_of(admin_client, sidebar, source=sidebar.source + MARK)).content.decode()
    shown = {chunk.split('"', 1)[0] for chunk in page.split('data-archive-type="')[1:]}
    assert shown == {"index", "individual", "category", "monthly"}
    assert page.count("edited-not-saved") == 4
    broken = admin_client.post(url, form_of(admin_client, sidebar, source="{% if %}")).content.decode()
    assert "Does not compile" in broken


def test_a_dry_run_counts_the_files_an_edit_would_change_and_shows_a_diff(admin_client, blog, tmp_path):
    template = Template.objects.get(site=blog, identifier="entry")
    before, files = stored(blog), site_state(tmp_path)
    source = template.source + "{% if entry.id|divisibleby:2 %}" + MARK + "{% endif %}"
    response = admin_client.post(reverse("admin:publishqueue_template_dryrun", args=[template.pk]),
                                 form_of(admin_client, template, source=source))
    run = PublishRun.objects.get()
    assert response["Location"].endswith(f"/publishrun/{run.pk}/change/")
    assert (run.kind, run.total, run.source) == ("dry-run", 5, source)
    Worker(WorkerOptions(load=2, periodic=False, background=False), worker_id="test:1:1").run()
    run.refresh_from_db()
    even = Entry.objects.filter(blog=blog).values_list("pk", flat=True)
    assert run.changed == len([pk for pk in even if pk % 2 == 0]) > 0
    assert f"+{MARK}" in run.sample_diff and run.sample_path.endswith(".html")
    assert runs.progress(run).finished
    assert stored(blog) == before and site_state(tmp_path) == files  # nothing written, no hash changed
    page = admin_client.get(response["Location"]).content.decode()
    assert f'<strong data-field="changed">{run.changed}</strong>' in page


def test_a_dry_run_of_an_unchanged_source_changes_nothing(blog):
    template = Template.objects.get(site=blog, identifier="entry")
    run = runs.start(PublishRun(site=blog, kind="dry-run", scope="template", template=template,
                                source=template.source), [fi for fi in FileInfo.objects.filter(template=template)])
    Worker(WorkerOptions(periodic=False, background=False), worker_id="test:1:1").run()
    run.refresh_from_db()
    assert (run.total, run.changed, run.sample_diff) == (5, 0, "")


def test_an_entry_preview_renders_the_unsaved_entry_and_saves_nothing(admin_client, blog, tmp_path):
    entry = Entry.objects.filter(blog=blog).order_by("published_on").first()
    change = reverse("admin:blog_entry_change", args=[entry.pk])
    data = admin_form_data(admin_client.get(change))
    data.update(title="A title not saved", body="A *body* not saved")
    before, files = stored(blog), site_state(tmp_path)
    url = reverse("admin:blog_entry_preview_existing", args=[entry.pk])
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url, data)
    assert response["Content-Security-Policy"] == "sandbox"  # the template's scripts do not run on the admin's origin
    page = response.content.decode()
    assert "A title not saved" in page and "<em>body</em> not saved" in page and "mt-preview-banner" in page
    assert Entry.objects.get(pk=entry.pk).title == entry.title
    assert stored(blog) == before and site_state(tmp_path) == files and not Job.objects.exists()
    data["slug"] = ""
    assert admin_client.post(url, data).status_code == 400
    new = admin_form_data(admin_client.get(reverse("admin:blog_entry_add")))
    new.update(blog=blog.pk, title="Brand new", slug="brand-new", body="Fresh", status="published",
               published_on_0="2026-05-01", published_on_1="10:00:00")
    page = admin_client.post(reverse("admin:blog_entry_preview"), new).content.decode()
    assert "Brand new" in page and not Entry.objects.filter(slug="brand-new").exists()


def test_a_browsers_crlf_lines_are_stored_as_lf_so_an_edit_changes_only_what_it_changes(admin_client, blog):
    """Browsers send a textarea's lines ended by CRLF; stored as sent, saving an edit of one line changed every file
    (a dry run from Chromium counted 50 of 50)."""
    template = Template.objects.get(site=blog, identifier="entry")
    crlf = template.source.replace("\n", "\r\n")
    url = reverse("admin:publishqueue_template_dryrun", args=[template.pk])
    admin_client.post(url, form_of(admin_client, template, source=crlf))
    Worker(WorkerOptions(periodic=False, background=False), worker_id="test:1:1").run()
    assert PublishRun.objects.get().changed == 0
    change = reverse("admin:publishqueue_template_change", args=[template.pk])
    admin_client.post(change, form_of(admin_client, template, source=crlf + "<!-- x -->"))
    assert "\r" not in Template.objects.get(pk=template.pk).source
