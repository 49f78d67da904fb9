"""The author, weekly and category-monthly archives, the RSS 2.0 and per-category feeds, scheduled unpublishing,
and the command that gives existing blogs the new default templates."""
import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from django.core.management import call_command

from blog import services
from blog.models import Entry
from publishqueue.models import Template
from publishqueue.services import publish_templates
from tests.factories import CategoryFactory, EntryFactory, UserFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def blog(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static", all_templates=True)
    ann = UserFactory(username="ann", first_name="Ann", last_name="Lee")
    news = CategoryFactory(blog=blog, slug="news", label="News")
    for n, day in enumerate([3, 4, 12]):  # Tue 3 and Wed 4 March 2026 share a week (from Sunday the 1st)
        entry = EntryFactory(blog=blog, title=f"Post {n}", author=ann,
                             published_on=dt.datetime(2026, 3, day, 9, tzinfo=dt.UTC))
        entry.categories.add(news)
    publish_templates(templates=Template.objects.filter(site=blog).exclude(kind="module"))
    return blog


def test_the_new_archives_and_feeds_are_published(blog, tmp_path):
    site = tmp_path / "site"
    week = (site / "2026/03/01-week/index.html").read_text()
    assert "Post 0" in week and "Post 1" in week and "Post 2" not in week and "Week of March 1, 2026" in week
    assert "Post 2" in (site / "2026/03/08-week/index.html").read_text()
    author = (site / "author/ann/index.html").read_text()
    assert all(f"Post {n}" in author for n in range(3)) and "Ann Lee" in author
    month = (site / "category/news/2026/03/index.html").read_text()
    assert "News: March 2026" in month and "Post 2" in month
    rss = ET.fromstring((site / "rss.xml").read_bytes())
    assert rss.tag == "rss" and rss.get("version") == "2.0"
    assert [i.findtext("title") for i in rss.iter("item")] == ["Post 2", "Post 1", "Post 0"]
    category_feed = ET.fromstring((site / "category/news/rss.xml").read_bytes())
    assert category_feed.findtext("channel/title").endswith(": News") and len(list(category_feed.iter("item"))) == 3
    # The category's permalink stays its archive page, not its feed.
    assert 'href="http://testserver/blog/category/news/index.html"' in (site / "index.html").read_text()


def test_a_scheduled_unpublish_takes_the_entry_down_when_its_time_comes(blog, tmp_path):
    entry = Entry.objects.get(title="Post 2")
    entry.unpublished_on = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    services.save_entry(entry=entry)
    page = tmp_path / "site" / f"2026/03/{entry.slug}.html"
    assert page.exists()
    assert services.unpublish_due_entries(now=dt.datetime(2026, 3, 31, tzinfo=dt.UTC)) == 0
    assert services.unpublish_due_entries(now=dt.datetime(2026, 4, 1, tzinfo=dt.UTC)) == 1
    assert Entry.objects.get(pk=entry.pk).status == "unpublished" and not page.exists()
    assert "Post 2" not in (tmp_path / "site" / "index.html").read_text()
    assert not (tmp_path / "site" / "2026/03/08-week/index.html").exists()
    assert services.unpublish_due_entries(now=dt.datetime(2026, 5, 1, tzinfo=dt.UTC)) == 0


def test_the_command_adds_the_missing_default_templates_to_existing_blogs(tmp_path, capsys):
    old = blog_with_templates(tmp_path / "old", mode="queue")  # a blog made before them
    call_command("install_default_templates", "--dry-run")
    assert "RSS Feed, Category Feed, Weekly Archive, Author Archive, Category Monthly Archive would be added" in (
        capsys.readouterr().out)
    assert not old.templates.filter(name="RSS Feed").exists()
    call_command("install_default_templates", "--blog", str(old.pk), "--mode", "queue", "--publish")
    out = capsys.readouterr().out
    assert "added RSS Feed" in out and "publish runs #" in out
    assert old.templates.filter(name__in=["RSS Feed", "Author Archive"], mode="queue").count() == 2
    call_command("install_default_templates", "--blog", str(old.pk))
    assert "nothing to add" in capsys.readouterr().out
