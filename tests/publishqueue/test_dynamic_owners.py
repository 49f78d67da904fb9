"""A Dynamically published path is the page of the object that has it now (MT: one FileInfo per URL). Found by
review: the FileInfo row of a Dynamic page outlived its object (an entry deleted or unpublished, a category
deleted: only a written file's row is removed when its object goes), so an object given the same path later had a
second row there, and the app served the first one, of the object that was gone: 404, now and in every new process.
A page whose object is gone still answers as gone pages do (404)."""
import datetime as dt

import pytest
from django.core.cache import caches
from django.urls import reverse

from blog import services
from blog.models import Entry
from publishqueue.models import FileInfo
from publishqueue.rendering import renderers, site_variables
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import CategoryFactory, EntryFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)
WHEN = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)
PAGE = "2026/05/same.html"


def new_entry(blog, title, slug="same", categories=None):
    entry = EntryFactory.build(blog=blog, title=title, slug=slug, published_on=WHEN)
    services.save_entry(entry=entry, categories=categories)
    return entry


def in_a_new_process(client, path):
    """What a process that cached nothing serves at ``path``."""
    caches["default"].clear()
    renderers.clear()
    site_variables.clear()
    return client.get(path)


def assert_served(client, path, *texts):
    for response in (client.get(path), in_a_new_process(client, path)):
        assert response.status_code == 200, path
        assert all(text in response.content.decode() for text in texts), path


def drain() -> None:
    Worker(WorkerOptions(load=50, periodic=False, background=False), worker_id="test:1:1").run()


def test_a_new_entry_with_a_deleted_entrys_slug_is_served_at_its_path(tmp_path, client):
    """Fails before the fix: 404 for the new entry (two rows at its path, the deleted entry's first)."""
    blog = blog_with_templates(tmp_path / "site", mode="dynamic")
    old = new_entry(blog, "Version one")
    assert_served(client, f"/blog/{PAGE}", "Version one")
    services.delete_entry(entry=old)
    assert client.get(f"/blog/{PAGE}").status_code == 404  # gone
    assert in_a_new_process(client, f"/blog/{PAGE}").status_code == 404
    new_entry(blog, "Version two")
    assert_served(client, f"/blog/{PAGE}", "Version two")
    assert FileInfo.objects.filter(site=blog, path=PAGE).count() == 1  # one row per URL


def test_an_entry_given_the_slug_an_unpublished_entry_had_is_served_at_its_path(tmp_path, client):
    """The unpublished entry's row stayed at the path (renaming an entry that is not live publishes nothing).
    Fails before the fix: 404."""
    blog = blog_with_templates(tmp_path / "site", mode="dynamic")
    old = new_entry(blog, "Version one")
    old.status = Entry.Status.UNPUBLISHED
    services.save_entry(entry=old)
    assert client.get(f"/blog/{PAGE}").status_code == 404
    old.slug = "put-away"
    services.save_entry(entry=old)
    new_entry(blog, "Version two")
    assert_served(client, f"/blog/{PAGE}", "Version two")


def test_a_category_deleted_in_the_admin_and_made_again_with_its_slug_is_served_at_its_paths(tmp_path, client,
                                                                                            admin_client):
    """Its archive, its feed and its monthly archive. Fails before the fix: 404 for the new category's pages."""
    blog = blog_with_templates(tmp_path / "site", mode="dynamic", all_templates=True)
    first = CategoryFactory(blog=blog, label="First label", slug="news")
    entry = new_entry(blog, "Filed", slug="filed", categories=[first])
    paths = ["/blog/category/news/", "/blog/category/news/rss.xml", "/blog/category/news/2026/05/"]
    for path in paths:
        assert_served(client, path, "First label")
    response = admin_client.post(reverse("admin:blog_category_delete", args=[first.pk]), {"post": "yes"})
    assert response.status_code == 302
    for path in paths:
        assert client.get(path).status_code == 404, path  # gone
    add = reverse("admin:blog_category_add")
    data = {**admin_form_data(admin_client.get(add)), "blog": blog.pk, "label": "Second label", "slug": "news"}
    assert admin_client.post(add, data).status_code == 302
    again = blog.categories.get(slug="news")
    services.save_entry(entry=Entry.objects.get(pk=entry.pk), categories=[again])
    for path in paths:
        assert_served(client, path, "Second label")
    assert not FileInfo.objects.filter(site=blog, archive_type__startswith="category", object_id=first.pk).exists()


def test_a_row_left_by_a_switch_to_dynamic_does_not_hide_the_page_of_the_entry_that_has_its_path(
    tmp_path, client, admin_client
):
    """The deleted entry's page was queued for removal, then its template switched to Dynamically in the admin: the
    job only takes the file away (a Dynamic page's row is never removed by publishing it), so its row stays at the
    path (as in databases from before the fix): the app serves the page of the object that is there. Fails before
    the fix: 404."""
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    old = new_entry(blog, "Version one")
    drain()
    services.delete_entry(entry=old)
    new_entry(blog, "Version two")
    template = blog.templates.get(identifier="entry")
    url = reverse("admin:publishqueue_template_change", args=[template.pk])
    assert admin_client.post(url, {**admin_form_data(admin_client.get(url)), "mode": "dynamic"}).status_code == 302
    drain()
    assert not (tmp_path / "site" / PAGE).exists()
    assert_served(client, f"/blog/{PAGE}", "Version two")
