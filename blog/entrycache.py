"""Entries kept by a worker process for one content version of a blog, so that a rebuild loads each entry once.

A full rebuild shows every entry on five or more pages (its own, its neighbours', a weekly, a monthly, a
category-monthly per category, its category's and its author's archives), and each batch of pages loaded its
entries again: building the Entry objects and their categories was a third of a worker's time
(``bench/queue.py --parts rebuild``). Here a process keeps the entries it loaded, with their categories and author
(and the template views built from them, ``blog.archives.views``), under the blog's ``content_version``.

Why that is exact: every change to what pages show (an entry, its categories, a category, a comment, an author's
name, the blog's settings) bumps ``content_version`` in the transaction that makes it, or after it commits (a
queryset update), never before. Each lookup reads the version from the database (not from the caller's blog
object, which may be older than a change it publishes), then loads what it lacks, so what it keeps under a
version is at least as new as that version; any later change comes with a new version, under which nothing is
kept yet.
The same rule keys the site-wide variables and the Dynamic page cache (``publishqueue.rendering``, ``dynamic``).

Only workers' batches use it (``blog.archives.entries_for``): a single page (a Dynamic request, a page published
as it is saved, a preview) reads the database. Memory is bounded (``BLOG["ENTRY_CACHE_MB"]`` per process, for all
blogs; a blog's entries are let go when its version moves): past it, entries are loaded per batch as before, not
kept. 0 turns the cache off.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from django.contrib.auth import get_user_model

from .conf import get_config
from .models import Blog, Entry, attach_categories

# What an entry costs besides its text: the model instance, its categories' queryset, its view (tracemalloc: 5.8 KB
# for a demo entry with 2.5 KB of text).
ENTRY_OVERHEAD_BYTES = 3500


def entry_weight(entry: Entry) -> int:
    return len(entry.body) + len(entry.body_html) + len(entry.excerpt) + len(entry.title) + ENTRY_OVERHEAD_BYTES


class EntryCache:
    """Per process: for each blog, the version its entries were kept under and those entries by id; the blogs in
    the order they were last looked up (when the budget is spent, the least recent other blogs make room: one no
    longer looked up, deleted or moved to another worker's share, would otherwise hold it for good)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blogs: OrderedDict[int, tuple[int, dict[int, Entry]]] = OrderedDict()
        self._bytes: dict[int, int] = {}

    def _kept(self, blog_id: int, version: int) -> dict[int, Entry]:
        known, entries = self._blogs.get(blog_id, (None, None))
        if known != version:
            entries = {}
            self._blogs[blog_id] = (version, entries)
            self._bytes[blog_id] = 0
        self._blogs.move_to_end(blog_id)
        return entries

    def _make_room(self, blog_id: int, needed: int, budget: int) -> int:
        """Let the least recently looked-up other blogs go until ``needed`` more bytes fit; returns the bytes used."""
        used = sum(self._bytes.values())
        for other in list(self._blogs):
            if used + needed <= budget:
                break
            if other != blog_id:
                del self._blogs[other]
                used -= self._bytes.pop(other)
        return used

    def entries(self, blog: Blog, ids: Iterable[int]) -> dict[int, Entry]:
        """The blog's entries with these ids (any status: callers filter), with their categories and author
        attached; those not kept yet loaded in a few queries. Ids of no entry of the blog are left out."""
        ids = set(ids)
        if not ids:
            return {}
        version = Blog.objects.filter(pk=blog.pk).values_list("content_version", flat=True).first()
        with self._lock:
            kept = self._kept(blog.pk, version)
            found = {pk: kept[pk] for pk in ids if pk in kept}
        missing = ids - found.keys()
        if missing:
            loaded = load_entries(blog.pk, missing)
            found.update(loaded)
            self._keep(blog.pk, version, loaded.values())
        return found

    def _keep(self, blog_id: int, version: int, entries: Iterable[Entry]) -> None:
        budget = get_config()["ENTRY_CACHE_MB"] * 1024 * 1024
        weighed = [(entry, entry_weight(entry)) for entry in entries]
        with self._lock:
            kept = self._kept(blog_id, version)
            used = self._make_room(blog_id, sum(weight for _, weight in weighed), budget)
            for entry, weight in weighed:
                if used + weight > budget:
                    break
                if kept.setdefault(entry.pk, entry) is entry:
                    used += weight
                    self._bytes[blog_id] += weight

    def clear(self) -> None:
        with self._lock:
            self._blogs.clear()
            self._bytes.clear()


def load_entries(blog_id: int, ids: Iterable[int]) -> dict[int, Entry]:
    """Entries by id, with their categories (``attach_categories``) and author (one object per user)."""
    entries = Entry.objects.filter(blog_id=blog_id).in_bulk(list(ids))
    authors = get_user_model().objects.in_bulk({e.author_id for e in entries.values() if e.author_id})
    for entry in entries.values():
        if entry.author_id in authors:
            entry.author = authors[entry.author_id]
    attach_categories(entries.values())
    return entries


entry_cache = EntryCache()
