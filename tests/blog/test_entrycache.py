"""The entries a worker keeps per content version of a blog (blog.entrycache): loaded once, never stale."""
import pytest
from django.test import override_settings


@pytest.fixture
def cache():
    from blog.entrycache import entry_cache

    entry_cache.clear()
    yield entry_cache
    entry_cache.clear()


@pytest.mark.django_db
def test_a_batch_loads_an_entry_once_per_content_version(tmp_path, cache, django_assert_num_queries):
    from blog.archives import entries_for
    from tests.factories import CategoryFactory, EntryFactory, blog_with_templates

    blog = blog_with_templates(tmp_path / "site")
    news = CategoryFactory(blog=blog, label="News")
    entry = EntryFactory(blog=blog, title="First")
    entry.categories.add(news)
    first = entries_for(blog, [entry.pk], batch=True)[entry.pk]
    assert first.title == "First" and [c.label for c in first.categories.all()] == ["News"]
    with django_assert_num_queries(1):  # the blog's version only
        assert entries_for(blog, [entry.pk], batch=True)[entry.pk] is first
    # Edited with the blog object the caller holds left as it was (older than the change): the version is read
    # from the database, so the batch sees the edit.
    entry.title = "Second"
    entry.save()
    again = entries_for(blog, [entry.pk], batch=True)[entry.pk]
    assert again is not first and again.title == "Second"
    # A category renamed, an entry's categories changed: new versions too.
    news.label = "World"
    news.save()
    assert [c.label for c in entries_for(blog, [entry.pk], batch=True)[entry.pk].categories.all()] == ["World"]
    entry.categories.clear()
    assert list(entries_for(blog, [entry.pk], batch=True)[entry.pk].categories.all()) == []


@pytest.mark.django_db
def test_a_single_page_reads_the_database(tmp_path, cache):
    """Outside a worker's batch (a Dynamic request, a page published as it is saved) nothing is kept: an update that
    bumps no version (a queryset update) shows on the next single page, though a batch still has the old one."""
    from blog.archives import entries_for
    from blog.models import Entry
    from tests.factories import EntryFactory, blog_with_templates

    blog = blog_with_templates(tmp_path / "site")
    entry = EntryFactory(blog=blog, title="Before")
    assert entries_for(blog, [entry.pk], batch=True)[entry.pk].title == "Before"
    Entry.objects.filter(pk=entry.pk).update(title="After")
    assert entries_for(blog, [entry.pk], batch=False)[entry.pk].title == "After"
    assert entries_for(blog, [entry.pk], batch=True)[entry.pk].title == "Before"


@pytest.mark.django_db
def test_past_its_budget_the_cache_keeps_nothing_more(tmp_path, cache):
    from blog.archives import entries_for
    from blog.entrycache import entry_weight
    from tests.factories import EntryFactory, blog_with_templates

    blog = blog_with_templates(tmp_path / "site")
    entries = [EntryFactory(blog=blog, body="x" * 150_000) for _ in range(4)]
    assert entry_weight(entries[0]) > 300_000
    with override_settings(BLOG={"ENTRY_CACHE_MB": 1}):  # room for three of them
        loaded = entries_for(blog, [e.pk for e in entries], batch=True)
        assert len(loaded) == 4
        again = entries_for(blog, [e.pk for e in entries], batch=True)
    assert sum(again[e.pk] is loaded[e.pk] for e in entries) == 3


@pytest.mark.django_db
def test_an_edit_of_one_entrys_text_reloads_that_entry_alone(tmp_path, cache, django_assert_num_queries):
    """A category or author archive after each save loaded all its entries again (the cache was keyed by the content
    version): now the kept entries are checked against their rows, and only the edited one is loaded."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from blog import services
    from blog.archives import entries_for
    from blog.models import Entry
    from tests.factories import EntryFactory, blog_with_templates

    blog = blog_with_templates(tmp_path / "site")
    ids = [EntryFactory(blog=blog).pk for _ in range(5)]
    first = entries_for(blog, ids, batch=True)
    edited = Entry.objects.get(pk=ids[2])
    edited.title = "Edited"
    services.save_entry(entry=edited)
    with CaptureQueriesContext(connection) as queries:
        again = entries_for(blog, ids, batch=True)
    assert again[ids[2]].title == "Edited"
    assert [again[pk] is first[pk] for pk in ids] == [True, True, False, True, True]
    loads = [q["sql"] for q in queries if '"blog_entry"."body"' in q["sql"]]
    assert len(loads) == 1 and f"IN ({ids[2]})" in loads[0]
    with django_assert_num_queries(1):  # checked at this version: the blog's versions only
        assert entries_for(blog, ids, batch=True)[ids[2]] is again[ids[2]]
