"""A Dynamically published template's FileInfo rows are the map of URLs the app serves (MT's dynamic engine's
fileinfo): a change that moves pages without an entry save (a category's slug, the blog's time zone, a template or
mapping saved) moves them too, without writing or queuing anything for them. Each page then answers at its new
path with what a fresh render shows, and its old path answers 404."""
import datetime as dt

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import reverse

from blog import services
from blog.entrycache import entry_cache
from blog.models import Category, Entry
from publishqueue.models import FileInfo, Job
from publishqueue.rendering import permalink_patterns, renderers, site_variables
from publishqueue.services import template_saved
from tests.factories import UserFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)

# 1 March in UTC, 28 February in New York.
WHEN = dt.datetime(2026, 3, 1, 2, tzinfo=dt.UTC)


@pytest.fixture
def editor(client):
    client.force_login(UserFactory(username="editor", is_staff=True, is_superuser=True))
    return client


def blog_with_an_entry(tmp_path, mode="dynamic"):
    blog = blog_with_templates(tmp_path / "site", mode=mode, time_zone="UTC", site_url="http://blog.example/blog/")
    news = Category.objects.create(blog=blog, label="News", slug="news")
    services.save_entry(entry=Entry(blog=blog, title="E1", slug="e1", status="published", published_on=WHEN),
                        categories=[news])
    return blog, news


def get(client, path):
    response = client.get(path)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body.decode()


def fresh(client, path):
    """What a new process, with empty caches, serves at ``path``."""
    caches["default"].clear()
    renderers.clear()
    site_variables.clear()
    entry_cache.clear()
    return get(client, path)


def assert_moved(client, old, new, *, linked_from="/blog/"):
    assert get(client, old)[0] == 404
    served = get(client, new)
    assert served[0] == 200
    assert served == fresh(client, new)
    assert new.removeprefix("/blog/") in get(client, linked_from)[1]


def assert_nothing_written(tmp_path):
    # (Rendering a page may queue a republish-includers job, when a cached module's output changed: it queues
    # written includers only.)
    assert not Job.objects.exclude(kind="republish-includers").exists()
    assert not [p for p in (tmp_path / "site").rglob("*") if p.is_file()]


def post_change(client, url, **changes):
    response = client.post(url, {**admin_form_data(client.get(url)), **changes})
    assert response.status_code == 302, response.context["adminform"].form.errors


def test_a_category_slug_renamed_in_the_admin_moves_its_dynamic_pages(tmp_path, editor):
    blog, news = blog_with_an_entry(tmp_path)
    assert get(editor, "/blog/category/news/")[0] == 200  # cached under the versions of before
    post_change(editor, reverse("admin:blog_category_change", args=[news.pk]), slug="headlines")
    assert_moved(editor, "/blog/category/news/", "/blog/category/headlines/")
    assert_nothing_written(tmp_path)


def test_the_blogs_time_zone_changed_in_the_admin_moves_its_dynamic_pages(tmp_path, editor):
    blog, _ = blog_with_an_entry(tmp_path)
    assert get(editor, "/blog/2026/03/e1.html")[0] == 200
    post_change(editor, reverse("admin:blog_blog_change", args=[blog.pk]), time_zone="America/New_York")
    assert_moved(editor, "/blog/2026/03/e1.html", "/blog/2026/02/e1.html")
    assert_moved(editor, "/blog/2026/03/", "/blog/2026/02/", linked_from="/blog/2026/02/e1.html")
    assert_nothing_written(tmp_path)


def test_a_new_dynamic_template_answers_at_its_pages(tmp_path, editor):
    blog, _ = blog_with_an_entry(tmp_path)
    url = reverse("admin:publishqueue_template_add")
    data = admin_form_data(editor.get(url))
    data.update({
        "site": blog.pk, "name": "Yearly", "kind": "archive", "mode": "dynamic",
        "source": '{% include "Header" %}{% for e in entries %}{{ e.title }}{% endfor %}',
        # The add form shows no mapping form: the browser's "Add another" adds one.
        "mappings-TOTAL_FORMS": 1, "mappings-0-archive_type": "yearly", "mappings-0-path_pattern": "{year}/",
        "mappings-0-is_preferred": "on",
    })
    response = editor.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    served = get(editor, "/blog/2026/")
    assert served[0] == 200 and "E1" in served[1]
    assert served == fresh(editor, "/blog/2026/")
    assert_nothing_written(tmp_path)


def test_a_mapping_added_to_a_dynamic_template_without_a_new_permalink_answers_at_its_pages(tmp_path):
    """No permalink changes (the site is not republished): the template's own save ensures its rows."""
    blog, _ = blog_with_an_entry(tmp_path)
    monthly = blog.templates.get(identifier="monthly_archive")
    before = permalink_patterns(blog.pk)
    monthly.mappings.create(archive_type="monthly", path_pattern="archives/{year}-{month}.html", is_preferred=False)
    assert permalink_patterns(blog.pk) == before
    template_saved(template=monthly, previous_mode=monthly.mode, previous_permalinks=before, paths_changed=True)
    client = Client()
    served = get(client, "/blog/archives/2026-03.html")
    assert served[0] == 200 and "E1" in served[1]
    assert get(client, "/blog/2026/03/")[0] == 200
    assert_nothing_written(tmp_path)


def test_a_dynamic_entry_mappings_new_pattern_moves_its_pages(tmp_path, editor):
    blog, _ = blog_with_an_entry(tmp_path)
    assert get(editor, "/blog/2026/03/e1.html")[0] == 200
    template = blog.templates.get(identifier="entry")
    post_change(editor, reverse("admin:publishqueue_template_change", args=[template.pk]),
                **{"mappings-0-path_pattern": "entries/{slug}.html"})
    assert_moved(editor, "/blog/2026/03/e1.html", "/blog/entries/e1.html")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("mode", ["manual", "disabled"])
def test_manual_and_disabled_pages_keep_their_rows_until_published(tmp_path, editor, mode):
    """Unchanged behaviour: a change moving paths neither re-paths, writes nor queues their files (a publish run
    does, for Manually published ones)."""
    blog, news = blog_with_an_entry(tmp_path, mode=mode)
    rows = set(FileInfo.objects.filter(site=blog).values_list("pk", "path"))
    post_change(editor, reverse("admin:blog_category_change", args=[news.pk]), slug="headlines")
    post_change(editor, reverse("admin:blog_blog_change", args=[blog.pk]), time_zone="America/New_York")
    assert set(FileInfo.objects.filter(site=blog).values_list("pk", "path")) == rows
    assert_nothing_written(tmp_path)
