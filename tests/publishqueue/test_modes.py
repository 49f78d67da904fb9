"""Each publishing mode decides what saving an entry does."""
import datetime as dt

import pytest

from blog import services
from publishqueue.models import FileInfo, Job
from publishqueue.services import publish_templates
from tests.factories import CategoryFactory, EntryFactory, UserFactory, blog_with_templates, set_mode

pytestmark = pytest.mark.django_db(transaction=True)  # static publishing runs on commit


@pytest.fixture
def site(tmp_path):
    return tmp_path / "site"


def entry_page(site, entry):
    day = entry.published_on
    return site / f"{day:%Y}/{day:%m}/{entry.slug}.html"


def save_new_entry(blog, **kwargs):
    entry = EntryFactory.build(blog=blog, published_on=dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC), **kwargs)
    return entry, services.save_entry(entry=entry)


def test_static_writes_the_files_in_the_request(site):
    blog = blog_with_templates(site, mode="static")
    entry, report = save_new_entry(blog, title="Hello static")
    assert "Hello static" in entry_page(site, entry).read_text()
    assert "Hello static" in (site / "index.html").read_text()
    assert (site / "2026/05/index.html").exists()
    assert report.queued == 0 and report.written >= 4
    assert not Job.objects.exists()


def test_queue_inserts_jobs_with_mt_priorities_and_writes_nothing(site):
    blog = blog_with_templates(site, mode="queue")
    entry, report = save_new_entry(blog)
    assert not entry_page(site, entry).exists()
    priorities = {j.fileinfo.template.identifier: j.priority for j in Job.objects.select_related("fileinfo__template")}
    assert priorities == {
        "main_index": 9, "feed_atom": 9, "styles": 8, "entry": 10, "monthly_archive": 2,
    }
    assert report.queued == len(priorities)


def test_the_priorities_are_mts_queue_build_file_filter(tmp_path):
    """MT's table: preferred entry pages 10, other entry pages 5, index/default/atom/feed index files 9, other index
    files 8, daily 4, weekly 3, monthly 2, yearly, category, author and category-monthly 1."""
    blog = blog_with_templates(tmp_path / "site", mode="queue", all_templates=True)
    entry_template = blog.templates.get(identifier="entry")
    entry_template.mappings.create(archive_type="individual", path_pattern="e/{id}.html", is_preferred=False)
    monthly = blog.templates.get(identifier="monthly_archive")
    for archive_type, pattern in (("daily", "{year}/{month}/{day}/"), ("yearly", "{year}/")):
        monthly.mappings.create(archive_type=archive_type, path_pattern=pattern)
    entry = EntryFactory.build(blog=blog, published_on=dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC),
                               author=UserFactory(username="ann"))
    services.save_entry(entry=entry, categories=[CategoryFactory(blog=blog, slug="news")])
    priorities = {j.fileinfo.path: j.priority for j in Job.objects.select_related("fileinfo")}
    assert priorities == {
        f"2026/05/{entry.slug}.html": 10, f"e/{entry.pk}.html": 5, "index.html": 9, "atom.xml": 9, "rss.xml": 8,
        "styles.css": 8, "2026/05/04/index.html": 4, "2026/05/03-week/index.html": 3, "2026/05/index.html": 2,
        "2026/index.html": 1, "author/ann/index.html": 1, "category/news/index.html": 1,
        "category/news/rss.xml": 1, "category/news/2026/05/index.html": 1,
    }


def test_queue_coalesces_and_bumps_the_generation(site):
    blog = blog_with_templates(site, mode="queue")
    entry, _ = save_new_entry(blog)
    count = Job.objects.count()
    entry.title = "Edited"
    services.save_entry(entry=entry)
    assert Job.objects.count() == count
    assert set(Job.objects.values_list("generation", flat=True)) == {2}


def test_manual_neither_writes_nor_queues_until_published(site):
    blog = blog_with_templates(site, mode="manual")
    entry, report = save_new_entry(blog)
    assert not entry_page(site, entry).exists() and not Job.objects.exists()
    assert report.skipped == {"manual": 5}
    publish_templates(templates=blog.templates.exclude(kind="module"))
    assert entry_page(site, entry).exists()


def test_disabled_does_nothing_and_leaves_old_files(site):
    blog = blog_with_templates(site, mode="static")
    entry, _ = save_new_entry(blog, title="First")
    set_mode(blog, "disabled")
    entry.title = "Second"
    services.save_entry(entry=entry)
    assert "First" in entry_page(site, entry).read_text()
    assert not Job.objects.exists()


def test_dynamic_is_never_written_and_is_served_by_the_app(site, client):
    blog = blog_with_templates(site, mode="dynamic")
    entry, _ = save_new_entry(blog, title="Rendered live")
    assert not entry_page(site, entry).exists()
    response = client.get(f"/blog/2026/05/{entry.slug}.html")
    assert response.status_code == 200 and "Rendered live" in response.content.decode()
    assert response["Content-Type"] == "text/html; charset=utf-8"
    feed = client.get("/blog/atom.xml")
    assert feed.status_code == 200 and feed["Content-Type"].startswith("application/xml")


def test_switching_to_dynamic_removes_written_files(site):
    blog = blog_with_templates(site, mode="static")
    entry, _ = save_new_entry(blog)
    assert entry_page(site, entry).exists()
    from publishqueue.services import template_saved

    template = blog.templates.get(identifier="entry")
    template.mode = "dynamic"
    template.save()
    template_saved(template=template, previous_mode="static")
    assert not entry_page(site, entry).exists()
    assert FileInfo.objects.filter(template=template, published_path="").count() == 1


def test_mixed_modes_each_follow_their_own(site):
    blog = blog_with_templates(site, mode="static")
    set_mode(blog, "queue", "Entry")
    entry, report = save_new_entry(blog, title="Mixed")
    assert not entry_page(site, entry).exists()
    assert "Mixed" in (site / "index.html").read_text()
    assert list(Job.objects.values_list("fileinfo__template__identifier", flat=True)) == ["entry"]
