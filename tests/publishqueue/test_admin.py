"""The template admin: switching a template's mode changes what saving an entry does."""
import pytest
from django.urls import reverse

from publishqueue.models import Job, Template
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def blog(tmp_path):
    return blog_with_templates(tmp_path / "site", mode="static")


def change_template(client, template, **changes):
    url = reverse("admin:publishqueue_template_change", args=[template.pk])
    data = admin_form_data(client.get(url))
    data.update(changes)
    return client.post(url, data)


def save_entry_in_admin(client, entry, **changes):
    url = reverse("admin:blog_entry_change", args=[entry.pk])
    data = admin_form_data(client.get(url))
    data.update(changes)
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    return response


def test_switching_a_template_to_the_queue_changes_what_saving_an_entry_does(admin_client, blog, tmp_path):
    entry = EntryFactory(blog=blog, title="Original")
    save_entry_in_admin(admin_client, entry)
    page = next((tmp_path / "site").rglob(f"{entry.slug}.html"))
    assert "Original" in page.read_text()

    template = blog.templates.get(identifier="entry")
    response = change_template(admin_client, template, mode="queue")
    assert response.status_code == 302, response.content[:2000]
    assert Template.objects.get(pk=template.pk).mode == "queue"
    Job.objects.all().delete()  # the template save queued all its files; look only at the entry save

    response = save_entry_in_admin(admin_client, entry, title="Edited")
    assert "Original" in page.read_text()  # not written in the request any more
    job = Job.objects.get(fileinfo__template=template)
    assert (job.fileinfo.object_id, job.priority) == (entry.pk, 10)
    assert "queued 1 file(s)" in response.content.decode()
    assert "Edited" in (tmp_path / "site" / "index.html").read_text()  # still Statically published


def test_the_mode_is_chosen_with_help_text(admin_client, blog):
    template = blog.templates.get(identifier="entry")
    html = admin_client.get(reverse("admin:publishqueue_template_change", args=[template.pk])).content.decode()
    for label in ("Statically", "Via Publish Queue", "Manually", "Dynamically", "Do Not Publish"):
        assert label in html
    assert 'type="radio"' in html and "runworker process writes the file" in html


def test_a_template_that_does_not_compile_is_refused_with_its_error(admin_client, blog):
    template = blog.templates.get(identifier="entry")
    response = change_template(admin_client, template, source="{% if %}")
    assert response.status_code == 200
    assert "This template does not compile" in response.content.decode()
    template.refresh_from_db()
    assert template.source != "{% if %}"


def test_publish_starts_a_run_that_writes_a_manual_template(admin_client, blog, tmp_path):
    """The template's Publish button no longer renders in the request: it starts a run, which the workers (or the
    run's page) do."""
    EntryFactory(blog=blog)
    template = blog.templates.get(identifier="monthly_archive")
    template.mode = "manual"
    template.save()
    url = reverse("admin:publishqueue_template_publish", args=[template.pk])
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url)
    assert response.status_code == 302 and "/publishrun/" in response["Location"]
    assert not list((tmp_path / "site").glob("*/*/index.html"))
    Worker(WorkerOptions(periodic=False, background=False), worker_id="test:1:1").run()
    assert list((tmp_path / "site").glob("*/*/index.html"))


def test_render_errors_show_in_the_admin(admin_client, blog):
    template = blog.templates.get(identifier="entry")
    Template.objects.filter(pk=template.pk).update(last_error="Template 'Entry' failed to render 'x.html': boom")
    html = admin_client.get(reverse("admin:publishqueue_template_change", args=[template.pk])).content.decode()
    assert "failed to render" in html


def test_a_new_permalink_pattern_republishes_every_page_that_links_to_it(admin_client, tmp_path):
    """The entry pages move: the index, the archives and the neighbours link to the new URLs (the oracle found the
    main index and category pages left linking to the old ones)."""
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    EntryFactory(blog=blog)
    template = blog.templates.get(identifier="entry")
    response = change_template(admin_client, template, **{"mappings-0-path_pattern": "entries/{id}.html"})
    assert response.status_code == 302, response.content[:3000]
    queued = set(Job.objects.values_list("fileinfo__path", flat=True))
    assert {"index.html", "atom.xml"} <= queued
    Job.objects.all().delete()
    response = change_template(admin_client, Template.objects.get(pk=template.pk), source="{{ entry.title }}")
    assert set(Job.objects.values_list("fileinfo__template__identifier", flat=True)) == {"entry"}  # links unchanged
