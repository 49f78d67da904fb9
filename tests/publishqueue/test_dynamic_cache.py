"""Dynamically published pages are rendered once per change of what they show and then served from the cache
(publishqueue.dynamic); every change of what they show, or of what is at their path, is seen at the next request.
The oracle (test_oracle.py) checks this after any sequence of operations; here, the cache is shown to be used."""
import datetime as dt

import pytest
from django.test import override_settings

from blog import services
from blog.models import Entry
from publishqueue.models import Template
from tests.factories import EntryFactory, blog_with_templates, set_mode

pytestmark = pytest.mark.django_db(transaction=True)


def new_entry(blog, title):
    entry = EntryFactory.build(blog=blog, title=title, published_on=dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC))
    services.save_entry(entry=entry)
    return entry


def test_a_dynamic_page_is_rendered_once_and_served_from_the_cache_until_what_it_shows_changes(
    tmp_path, client, django_assert_num_queries
):
    blog = blog_with_templates(tmp_path / "site", mode="dynamic")
    entry = new_entry(blog, "First title")
    first = client.get("/blog/index.html")
    assert first.status_code == 200 and "First title" in first.content.decode()
    with django_assert_num_queries(1):  # the sites (with their versions): nothing rendered
        again = client.get("/blog/index.html")
    assert again.content == first.content and again["Content-Type"] == "text/html; charset=utf-8"
    # A change that bypasses the services (no version bumped) is not seen: the page comes from the cache...
    Entry.objects.filter(pk=entry.pk).update(title="Behind its back")
    assert "First title" in client.get("/blog/index.html").content.decode()
    # ...and a save through them is, at the next request.
    entry.refresh_from_db()
    entry.title = "Second title"
    services.save_entry(entry=entry)
    assert "Second title" in client.get("/blog/index.html").content.decode()
    template = Template.objects.get(site=blog, identifier="main_index")
    template.source += "<!-- edited template -->"
    template.save()
    assert "edited template" in client.get("/blog/index.html").content.decode()


def test_a_page_switched_away_from_dynamic_is_no_longer_served_from_the_cache(tmp_path, client):
    blog = blog_with_templates(tmp_path / "site", mode="dynamic")
    new_entry(blog, "Shown live")
    assert "Shown live" in client.get("/blog/index.html").content.decode()
    set_mode(blog, "manual")  # not Dynamic now: the app serves the file on disk
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / "index.html").write_text("the file on disk")
    assert b"".join(client.get("/blog/index.html").streaming_content) == b"the file on disk"


def test_without_a_cache_every_request_renders(tmp_path, client):
    blog = blog_with_templates(tmp_path / "site", mode="dynamic")
    entry = new_entry(blog, "Uncached")
    with override_settings(PUBLISHQUEUE={"SITE_ROOTS": [str(tmp_path)], "DYNAMIC_CACHE": ""}):
        client.get("/blog/index.html")
        Entry.objects.filter(pk=entry.pk).update(title="Seen at once")
        assert "Seen at once" in client.get("/blog/index.html").content.decode()
