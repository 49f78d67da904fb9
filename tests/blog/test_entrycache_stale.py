"""Review of blog.entrycache: changes after which a worker that rendered the blog before keeps showing old content
(its cached entries are kept under a content_version that the change did not bump). Each test publishes a blog
through a real worker, makes a change the way a user would, drains again, and compares every written file with
a fresh render (no batch: read from the database)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from blog import services
from blog.models import Blog, Category
from publishqueue.models import FileInfo
from publishqueue.publisher import render_fileinfo
from publishqueue.rendering import renderers, site_variables
from publishqueue.services import publish_templates
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


def drain() -> None:
    Worker(WorkerOptions(load=50, periodic=False, background=False), worker_id="t:1:1").run()


def stale_files(blog: Blog) -> dict[str, list[str]]:
    """Paths whose published content differs from a fresh render (the process's compiled templates and site-wide
    variables forgotten first: they are shared with the worker that ran in this process)."""
    kept = [(cache, cache._items.copy()) for cache in (renderers, site_variables)]
    for cache, _ in kept:
        cache.clear()
    try:
        return _stale_files(blog)
    finally:  # the worker's process state as it was (a long-lived worker keeps it)
        for cache, items in kept:
            cache.clear()
            cache._items.update(items)


def _stale_files(blog: Blog) -> dict[str, list[str]]:
    stale = {}
    for fileinfo in FileInfo.objects.filter(site=blog).select_related("site", "template", "mapping"):
        if fileinfo.mode not in ("queue", "static"):
            continue
        fresh = render_fileinfo(fileinfo)
        path = Path(blog.site_root) / fileinfo.path
        on_disk = path.read_text() if path.exists() else None
        if fresh != on_disk:
            gone = set((on_disk or "").splitlines()) - set((fresh or "").splitlines())
            stale[fileinfo.path] = sorted(line.strip() for line in gone)
            print(fileinfo.path, "published but not fresh:", stale[fileinfo.path][:3])
    return stale


def publish_all(blog: Blog) -> None:
    publish_templates(templates=list(blog.templates.exclude(kind="module")), queue=True)
    drain()
    assert stale_files(blog) == {}


def test_a_time_zone_change_leaves_cached_permalinks_on_the_old_dates(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="queue", all_templates=True, time_zone="UTC")
    # 20:00 UTC on 31 January is 05:00 on 1 February in Tokyo: the entry's page moves to 2026/02/.
    late = EntryFactory.build(blog=blog, slug="late", published_on=dt.datetime(2026, 1, 31, 20, tzinfo=dt.UTC))
    services.save_entry(entry=late)
    march = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    services.save_entry(entry=EntryFactory.build(blog=blog, slug="next", published_on=march))
    drain()
    publish_all(blog)

    blog = Blog.objects.get(pk=blog.pk)
    before = services.shown_state(blog)
    blog.time_zone = "Asia/Tokyo"
    services.save_blog(blog=blog, before=before)
    drain()
    assert (Path(blog.site_root) / "2026/02/late.html").exists()
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}


@pytest.mark.parametrize("case", ["time_zone", "category_move"])
def test_the_same_change_without_the_entry_cache_leaves_nothing_stale(tmp_path, settings, case):
    """Control: with the cache off (ENTRY_CACHE_MB 0) the same steps leave every file fresh."""
    settings.BLOG = {**getattr(settings, "BLOG", {}), "ENTRY_CACHE_MB": 0}
    {"time_zone": test_a_time_zone_change_leaves_cached_permalinks_on_the_old_dates,
     "category_move": test_a_moved_renamed_category_keeps_its_old_label_on_the_old_blog}[case](tmp_path)


def test_a_moved_renamed_category_keeps_its_old_label_on_the_old_blog(tmp_path):
    """The category admin's save_category: the category's post_save bumps only the blog it is in now."""
    old = blog_with_templates(tmp_path / "old", mode="queue", all_templates=True, site_url="http://old.example/")
    new = blog_with_templates(tmp_path / "new", mode="queue", all_templates=True, site_url="http://new.example/")
    category = Category.objects.create(blog=old, label="Travel", slug="travel")
    services.save_entry(entry=EntryFactory.build(blog=old, slug="trip"), categories=[category])
    drain()
    publish_all(old)

    category = Category.objects.get(pk=category.pk)
    before = services.shown_state(category)
    category.blog, category.label = new, "Journeys"
    services.save_category(category=category, before=before)
    drain()
    # The entry's own categories (from the entry cache); the sidebar (site_variables, keyed by the old blog's
    # unbumped content_version too) is the blog-rename finding below.
    stale = stale_files(Blog.objects.get(pk=old.pk))
    assert [line for lines in stale.values() for line in lines if "entry-meta" in line] == []


@pytest.mark.parametrize("field,value", [("name", "New Name"), ("site_url", "http://moved.example/blog/")])
def test_a_blog_rename_keeps_the_old_name_in_a_workers_site_variables(tmp_path, field, value):
    """Not the entry cache: publishqueue.rendering.site_variables is keyed by content_version too, and save_blog
    bumps none."""
    blog = blog_with_templates(tmp_path / "site", mode="queue", all_templates=True, name="Old Name")
    services.save_entry(entry=EntryFactory.build(blog=blog, slug="one"))
    drain()
    publish_all(blog)

    blog = Blog.objects.get(pk=blog.pk)
    before = services.shown_state(blog)
    setattr(blog, field, value)
    services.save_blog(blog=blog, before=before)
    drain()
    assert stale_files(Blog.objects.get(pk=blog.pk)) == {}
