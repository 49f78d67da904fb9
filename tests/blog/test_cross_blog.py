"""What one blog's change does to another's pages (found by review: each left the other blog's pages stale). An
entry's categories are its own blog's; a comment stays on its entry; a category shared with another blog's entries
(moved there, or filed before the rule) republishes that blog too."""
from __future__ import annotations

import pytest
from django.urls import reverse

from blog import services
from blog.models import Blog, Category, Comment, Entry
from tests.blog.test_entrycache_stale import drain, publish_all, stale_files
from tests.factories import CommentFactory, EntryFactory, UserFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)


def two_blogs(tmp_path) -> tuple[Blog, Blog]:
    first = blog_with_templates(tmp_path / "a", mode="queue", time_zone="UTC", site_url="http://a.example/")
    second = blog_with_templates(tmp_path / "b", mode="queue", time_zone="UTC", site_url="http://b.example/")
    return first, second


def published_under_the_others_category(tmp_path) -> tuple[Blog, Category]:
    """The first blog, published, with an entry filed under a category of the second (filed before the admin's
    rule, or moved there): that blog and the category."""
    first, second = two_blogs(tmp_path)
    shared = Category.objects.create(blog=second, label="Shared", slug="shared")
    services.save_entry(entry=EntryFactory.build(blog=first, slug="mine"), categories=[shared])
    drain()
    publish_all(first)
    drain()
    return first, shared


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_the_admins_entry_form_refuses_a_category_of_another_blog(tmp_path, admin_client):
    first, second = two_blogs(tmp_path)
    entry = EntryFactory.build(blog=first, slug="mine")
    services.save_entry(entry=entry)
    theirs = Category.objects.create(blog=second, label="Theirs", slug="theirs")
    url = reverse("admin:blog_entry_change", args=[entry.pk])
    response = admin_client.post(url, {**admin_form_data(admin_client.get(url)), "categories": [theirs.pk]})
    assert response.status_code == 200  # the form again, with its error
    assert "another blog" in response.content.decode()
    assert not Entry.objects.get(pk=entry.pk).categories.exists()


def test_renaming_a_category_another_blogs_entry_is_filed_under_republishes_that_blog(tmp_path):
    first, shared = published_under_the_others_category(tmp_path)
    category = Category.objects.get(pk=shared.pk)
    before = services.shown_state(category)
    category.label = "Renamed"
    services.save_category(category=category, before=before)
    drain()
    assert stale_files(Blog.objects.get(pk=first.pk)) == {}


def test_deleting_a_category_another_blogs_entry_is_filed_under_republishes_that_blog(tmp_path):
    first, shared = published_under_the_others_category(tmp_path)
    services.delete_category(category=Category.objects.get(pk=shared.pk))
    drain()
    assert stale_files(Blog.objects.get(pk=first.pk)) == {}


def test_a_comment_stays_on_its_entry_in_the_admin(tmp_path, admin_client):
    first, second = two_blogs(tmp_path)
    here = EntryFactory(blog=first, slug="here")
    there = EntryFactory(blog=second, slug="there")
    comment = CommentFactory(entry=here)
    url = reverse("admin:blog_comment_change", args=[comment.pk])
    data = {**admin_form_data(admin_client.get(url)), "entry": there.pk, "body": "<p>Edited.</p>"}
    assert admin_client.post(url, data).status_code == 302
    comment = Comment.objects.get(pk=comment.pk)
    assert (comment.entry_id, comment.body) == (here.pk, "<p>Edited.</p>")
