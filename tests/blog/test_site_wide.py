"""The site-wide variables (the sidebar's categories with their counts, the months) and the cached modules rendered
from them are kept by every worker under the blog's ``site_wide_version``: an edit of an entry's text keeps them
(their queries and the sidebar's render were most of an urgent page's time), every change of what they show renders
them again. Each test publishes a blog through a real worker, changes it the way a user does, drains again and
compares every written file with a fresh render (``stale_files``: nothing cached)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from blog import services
from blog.models import Blog, Category, Comment, Entry
from tests.blog.test_entrycache_stale import drain, publish_all, stale_files
from tests.factories import CommentFactory, EntryFactory, UserFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)

MARCH = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)


def published_blog(tmp_path) -> tuple[Blog, list[Category], list[Entry]]:
    blog = blog_with_templates(tmp_path / "site", mode="queue", all_templates=True, time_zone="UTC")
    cats = [Category.objects.create(blog=blog, label=label, slug=label.lower()) for label in ("Travel", "Food")]
    entries = []
    for n, cat in enumerate(cats * 2):
        entry = EntryFactory.build(blog=blog, slug=f"e{n}", published_on=MARCH + dt.timedelta(days=n))
        services.save_entry(entry=entry, categories=[cat])
        entries.append(entry)
    drain()
    publish_all(blog)
    return blog, cats, entries


def versions(blog: Blog) -> tuple[int, int]:
    return tuple(Blog.objects.filter(pk=blog.pk).values_list("content_version", "site_wide_version").get())


def sidebar_queries(queries) -> list[str]:
    """The category counts of ``blog_variables`` (one query per render of the sidebar's data)."""
    return [q["sql"] for q in queries if "COUNT" in q["sql"] and "blog_entry_categories" in q["sql"]]


def test_an_entry_title_edit_keeps_the_sidebar_and_leaves_nothing_stale(tmp_path):
    blog, _, entries = published_blog(tmp_path)
    content, site_wide = versions(blog)
    entry = Entry.objects.get(pk=entries[0].pk)
    entry.title, entry.body = "Retitled", "New words."
    services.save_entry(entry=entry)
    assert versions(blog) == (content + 1, site_wide)
    with CaptureQueriesContext(connection) as queries:
        drain()
    assert "Retitled" in (tmp_path / "site" / "2026/03/e0.html").read_text()
    assert sidebar_queries(queries) == []  # before: the sidebar's data and render again, in every worker
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}


CHANGES = {
    "another month": lambda e, cats: (setattr(e, "published_on", MARCH + dt.timedelta(days=40)), None)[1],
    "unpublished": lambda e, cats: (setattr(e, "status", Entry.Status.UNPUBLISHED), None)[1],
    "another category": lambda e, cats: [cats[1]],
    "no category": lambda e, cats: [],
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_an_entry_change_the_sidebar_shows_renders_it_again(tmp_path, change):
    blog, cats, entries = published_blog(tmp_path)
    content, site_wide = versions(blog)
    entry = Entry.objects.get(pk=entries[0].pk)
    categories = CHANGES[change](entry, cats)
    services.save_entry(entry=entry, categories=categories)
    assert versions(blog)[1] > site_wide
    drain()
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}


def test_a_draft_going_live_renders_the_sidebar_again(tmp_path):
    blog, cats, _ = published_blog(tmp_path)
    draft = EntryFactory.build(blog=blog, slug="later", status=Entry.Status.DRAFT, published_on=MARCH)
    services.save_entry(entry=draft, categories=[cats[0]])
    _, site_wide = versions(blog)
    draft.title = "Still a draft"
    services.save_entry(entry=draft)
    assert versions(blog)[1] == site_wide  # a draft is in no count
    draft.status = Entry.Status.PUBLISHED
    services.save_entry(entry=draft)
    assert versions(blog)[1] > site_wide
    drain()
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}


def test_an_entry_saved_without_the_service_renders_the_sidebar_again(tmp_path):
    """A developer's own ``entry.save()``: nothing tells the signal what changed, so it assumes the worst; nor does
    a save after a service's save reuse the state the service had."""
    blog, _, entries = published_blog(tmp_path)
    entry = Entry.objects.get(pk=entries[0].pk)
    entry.title = "Through the service"
    services.save_entry(entry=entry)
    _, site_wide = versions(blog)
    entry.published_on = MARCH + dt.timedelta(days=40)
    entry.save()
    assert versions(blog)[1] > site_wide


def test_an_approved_comment_keeps_the_sidebar(tmp_path):
    blog, _, entries = published_blog(tmp_path)
    comment = CommentFactory(entry=Entry.objects.get(pk=entries[0].pk), status=Comment.Status.PENDING)
    content, site_wide = versions(blog)
    services.set_comment_status(comments=[comment], status=Comment.Status.APPROVED)
    assert versions(blog) == (content + 1, site_wide)
    with CaptureQueriesContext(connection) as queries:
        drain()
    assert sidebar_queries(queries) == []
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}


@pytest.mark.parametrize("field,value,site_wide_kept", [
    ("title", "Retitled in the admin", True),
    ("published_on_0", "2026-05-01", False),  # the date half of the admin's split date and time
])
def test_the_admins_entry_form_tells_what_changed(tmp_path, client, field, value, site_wide_kept):
    blog, _, entries = published_blog(tmp_path)
    content, site_wide = versions(blog)
    client.force_login(UserFactory(username="writer", is_staff=True, is_superuser=True))
    url = reverse("admin:blog_entry_change", args=[entries[0].pk])
    assert client.post(url, {**admin_form_data(client.get(url)), field: value}).status_code == 302
    assert versions(blog)[0] > content
    assert (versions(blog)[1] == site_wide) is site_wide_kept
    drain()
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}


def test_an_admin_edit_keeps_the_microseconds_of_a_date_it_leaves_alone(tmp_path, client):
    """The admin shows dates to the second: an entry dated by code (timezone.now()) lost its microseconds on any
    edit in the admin, which moved its date, and so the sidebar's data: every page rendered its sidebar again."""
    blog, _, entries = published_blog(tmp_path)
    entry = Entry.objects.get(pk=entries[0].pk)
    entry.published_on += dt.timedelta(microseconds=123456)
    services.save_entry(entry=entry)
    drain()
    content, site_wide = versions(blog)
    client.force_login(UserFactory(username="writer", is_staff=True, is_superuser=True))
    url = reverse("admin:blog_entry_change", args=[entry.pk])
    assert client.post(url, {**admin_form_data(client.get(url)), "title": "Retitled"}).status_code == 302
    assert Entry.objects.get(pk=entry.pk).published_on == entry.published_on
    assert versions(blog) == (content + 1, site_wide)


@pytest.mark.postgres
def test_an_entry_saved_while_a_comment_on_it_is_posted_does_not_deadlock(pg_cluster):
    """save_entry locks the entry's row before the blog's (the version it bumps); posting a comment locks the blog's
    (its throttle) before the entry's (the comment's foreign key): FOR UPDATE on the entry deadlocked with it."""
    pg_cluster.call("setup", 3, pg_cluster.site)
    got = pg_cluster.call("comment_meets_save", timeout=120)
    assert got == {"errors": [], "title": "Edited while commented", "comments": 1}


def static_blog(tmp_path) -> tuple[Blog, Entry]:
    """Published Statically (pages are rendered when a change commits, in the process that made it): an entry in
    January and a draft, every page published (the sidebar kept for the blog's versions of now)."""
    blog = blog_with_templates(tmp_path / "site", mode="static", all_templates=True, time_zone="UTC")
    entry = EntryFactory.build(blog=blog, slug="january", published_on=dt.datetime(2026, 1, 5, tzinfo=dt.UTC))
    services.save_entry(entry=entry)
    services.save_entry(entry=EntryFactory.build(blog=blog, slug="march", status=Entry.Status.DRAFT,
                                                 published_on=MARCH))
    publish_all(blog)
    return blog, entry


def go_live_when_due(blog: Blog, entry: Entry) -> None:
    draft = Entry.objects.get(slug="march")
    draft.status = Entry.Status.SCHEDULED  # neither live before nor after: the site-wide version stays
    services.save_entry(entry=draft)
    services.publish_due_entries(now=MARCH + dt.timedelta(days=20))


def move_with_the_blog_loaded(blog: Blog, entry: Entry) -> None:
    entry = Entry.objects.select_related("blog").get(pk=entry.pk)
    entry.published_on = MARCH
    services.save_entry(entry=entry)


def unpublish_in_the_admin(blog: Blog, entry: Entry, client) -> None:
    client.force_login(UserFactory(username="editor", is_staff=True, is_superuser=True))
    data = {"action": "unpublish_entries", "_selected_action": [entry.pk]}
    assert client.post(reverse("admin:blog_entry_changelist"), data).status_code == 302


@pytest.mark.parametrize("change", [go_live_when_due, move_with_the_blog_loaded, unpublish_in_the_admin])
def test_pages_published_statically_show_the_sidebar_of_after_the_change(tmp_path, client, change):
    """Found by review: the pages rendered when the change commits were rendered with the caller's blog object,
    whose versions are from before the change, and so with the sidebar the process kept under them."""
    blog, entry = static_blog(tmp_path)
    change(blog, entry, *([client] if change is unpublish_in_the_admin else []))
    drain()  # what a sidebar that changed queues
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}


def test_a_blog_saved_from_an_object_read_before_a_change_keeps_the_newer_versions(tmp_path):
    """Found by review: saving a blog object read before a change wrote its older versions back, and the workers
    then served what they kept under those (the old category label in every sidebar)."""
    blog, cats, entries = published_blog(tmp_path)
    held = Blog.objects.get(pk=blog.pk)
    category = Category.objects.get(pk=cats[0].pk)
    before = services.shown_state(category)
    category.label = "Journeys"
    services.save_category(category=category, before=before)
    drain()
    newer = versions(blog)
    held.comment_throttle_seconds = 30
    services.save_blog(blog=held, before=services.shown_state(held))
    assert versions(blog) == newer
    entry = Entry.objects.get(pk=entries[1].pk)
    entry.title = "Edited after"
    services.save_entry(entry=entry)
    drain()
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}
