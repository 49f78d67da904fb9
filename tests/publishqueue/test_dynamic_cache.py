"""Dynamically published pages are rendered once per change of what they show and then served from the cache
(publishqueue.dynamic); every change of what they show, or of what is at their path, is seen at the next request.
The oracle (test_oracle.py) checks this after any sequence of operations; here, the cache is shown to be used."""
import datetime as dt

import pytest
from django.test import override_settings

from blog import services
from blog.models import Entry
from publishqueue.models import FileInfo, Template
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


def test_a_page_published_with_a_blog_read_before_its_rename_caches_nothing_of_the_old_name(tmp_path, client):
    """Found by review: a comment is posted (the view reads the entry with its blog), an administrator renames the
    blog meanwhile, the approved comment's entry page is published when it commits. The publisher read the blog's
    versions again but not its name: the old name was kept under the new versions, and every Dynamic page this
    process rendered after showed it."""
    from blog.models import Blog

    blog = blog_with_templates(tmp_path / "site", mode="dynamic", comment_policy="approve")
    set_mode(blog, "static", "Entry")
    new_entry(blog, "First title")
    entry = Entry.objects.select_related("blog").get()  # what the comment view read
    renamed = Blog.objects.get(pk=blog.pk)
    before = services.shown_state(renamed)
    renamed.name = "Renamed blog"
    services.save_blog(blog=renamed, before=before)
    services.post_comment(entry=entry, data=services.CommentInput("Visitor", "", "", "Hello", "192.0.2.1"))
    page = client.get("/blog/index.html").content.decode()
    assert "Renamed blog" in page and blog.name not in page


def test_a_cached_module_shows_the_site_wide_variables_whatever_the_page_including_it_shadows(tmp_path, client):
    """Found by review: {% include_cached %} took the site-wide variables from the including page's context, so a
    page that renamed one ({% with blog=... %}) rendered the module for every other page of the site."""
    blog = blog_with_templates(tmp_path / "site", mode="dynamic")
    template = Template.objects.get(site=blog, name="Entry")
    template.source = template.source.replace(
        '{% include_cached "Footer" %}', '{% with blog=entry %}{% include_cached "Footer" %}{% endwith %}')
    assert "{% with blog=entry %}" in template.source
    template.save()
    entry = new_entry(blog, "First title")
    path = FileInfo.objects.get(site=blog, template=template, object_id=entry.pk).path
    assert client.get(f"/blog/{path}").status_code == 200  # read first: its footer is the one kept
    index = client.get("/blog/index.html").content.decode()
    assert f"{blog.name}" in index.split("<footer", 1)[-1]


def test_a_dynamic_page_whose_template_fails_tells_the_visitor_nothing_of_the_error(tmp_path, client, caplog):
    """Found by review: the visitor got the template's error (its text, the exception's message: what the
    template code was doing with the data) on a public page. It is for the admin (the template's last error) and
    the log."""
    blog = blog_with_templates(tmp_path / "site", mode="dynamic")
    template = Template.objects.get(site=blog, name="Main Index")
    template.source = "{{ blog.name }} {{ 1|divisibleby:0 }}"
    template.save()
    new_entry(blog, "First title")
    with caplog.at_level("ERROR", logger="mtdispatch.publisher"):
        response = client.get("/blog/index.html")
    assert response.status_code == 500
    assert "ZeroDivisionError" not in response.content.decode()
    assert "ZeroDivisionError" in Template.objects.get(pk=template.pk).last_error
    assert any("ZeroDivisionError" in record.getMessage() for record in caplog.records)
