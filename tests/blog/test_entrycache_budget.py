"""Review of blog.entrycache's bound: the bytes of a blog's entries kept under a version that has moved on (or of a
blog deleted) still count against ENTRY_CACHE_MB until that blog is looked up again, so they can keep every other
blog out of the cache for the life of the worker (no eviction across blogs)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from blog import services
from blog.entrycache import ENTRY_OVERHEAD_BYTES, entry_cache
from blog.models import Blog, Entry
from tests.factories import BlogFactory, EntryFactory

pytestmark = pytest.mark.django_db(transaction=True)


def entry_loads(blog: Blog, ids: list[int]) -> int:
    """How many queries of the entry table a batch lookup ran."""
    with CaptureQueriesContext(connection) as queries:
        found = entry_cache.entries(blog, ids)
    assert set(found) == set(ids)
    return sum('FROM "blog_entry"' in q["sql"] for q in queries)


@pytest.mark.parametrize("how", ["version_moved", "blog_deleted"])
def test_a_blog_no_longer_looked_up_keeps_the_budget_from_every_other_blog(settings, how):
    # Room for about 20 small entries.
    settings.BLOG = {**getattr(settings, "BLOG", {}), "ENTRY_CACHE_MB": 20 * (ENTRY_OVERHEAD_BYTES + 100) / 2**20}
    big, small = BlogFactory(), BlogFactory()
    big_ids = [EntryFactory(blog=big, body="x").pk for _ in range(30)]
    small_ids = [EntryFactory(blog=small, body="x").pk for _ in range(3)]
    assert entry_loads(big, big_ids) == 1  # fills the budget (as designed: the rest is loaded per batch)
    if how == "version_moved":
        services.save_entry(entry=Entry.objects.get(pk=big_ids[0]))  # the big blog's version moves; nobody reads it
    else:
        big.delete()
    # Nothing can read the big blog's kept entries any more, yet they still count: the small blog is never kept.
    assert entry_loads(small, small_ids) == 1
    assert entry_loads(small, small_ids) == 0
