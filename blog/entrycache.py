"""Entries kept by a worker process for a blog, so that a rebuild loads each entry once, and an edit reloads only
the entries it changed.

A full rebuild shows every entry on five or more pages (its own, its neighbours', a weekly, a monthly, a
category-monthly per category, its category's and its author's archives), and each batch of pages loaded its
entries again: building the Entry objects and their categories was a third of a worker's time
(``bench/queue.py --parts rebuild``). Here a process keeps the entries it loaded, with their categories and author
(and the template views built from them, ``blog.archives.views``).

Why that is exact. Every change to what pages show bumps the blog's ``content_version`` in the transaction that
makes it, or after it commits (a queryset update), never before; a change to what a kept entry holds besides its
own row (its categories, a category, an author's name, the blog's settings, an entry going or coming) bumps
``site_wide_version`` too. Entries are kept under the blog's ``site_wide_version``, each with the
``content_version`` it was last known current at. Each lookup reads both versions from the database (not from the
caller's blog object, which may be older than a change it publishes); a kept entry checked at an older content
version is checked again against its row's ``modified`` (an edit of its own row changes it: ``auto_now``, and
``services.save_knowing`` never saves only some fields) and loaded again if it moved. What a lookup keeps is at
least as new as the versions it read first; any later change comes with a new version, under which it is checked
again. An edit of one entry's text (the most common change) thus reloads that entry alone, where every batch
after it loaded all its entries again: a category or author archive after each save was hundreds of them.
The same versions key the site-wide variables and the Dynamic page cache (``publishqueue.rendering``, ``dynamic``).

Only workers' batches use it (``blog.archives.entries_for``): a single page (a Dynamic request, a page published
as it is saved, a preview) reads the database. Memory is bounded (``BLOG["ENTRY_CACHE_MB"]`` per process, for all
blogs; a blog's entries are let go when its site-wide version moves): past it, entries are loaded per batch as
before, not kept. 0 turns the cache off.
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
    """Per process: for each blog, the site-wide version its entries were kept under, those entries by id and the
    content version each was last known current at; the blogs in the order they were last looked up (when the
    budget is spent, the least recent other blogs make room: one no longer looked up, deleted or moved to another
    worker's share, would otherwise hold it for good)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blogs: OrderedDict[int, tuple[int, dict[int, Entry]]] = OrderedDict()
        self._checked: dict[int, dict[int, int]] = {}
        self._bytes: dict[int, int] = {}

    def _kept(self, blog_id: int, version: int) -> dict[int, Entry]:
        known, entries = self._blogs.get(blog_id, (None, None))
        if known != version:
            entries = {}
            self._blogs[blog_id] = (version, entries)
            self._checked[blog_id] = {}
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
                del self._checked[other]
                used -= self._bytes.pop(other)
        return used

    def entries(self, blog: Blog, ids: Iterable[int]) -> dict[int, Entry]:
        """The blog's entries with these ids (any status: callers filter), with their categories and author
        attached; those not kept yet, or changed since, loaded in a few queries. Ids of no entry of the blog are
        left out."""
        ids = set(ids)
        if not ids:
            return {}
        versions = Blog.objects.filter(pk=blog.pk).values_list("site_wide_version", "content_version").first()
        site_wide, content = versions or (None, None)
        with self._lock:
            kept = self._kept(blog.pk, site_wide)
            checked = self._checked[blog.pk]
            found = {pk: kept[pk] for pk in ids if pk in kept}
            unsure = {pk: entry for pk, entry in found.items() if checked.get(pk) != content}
        if unsure:
            for pk in self._check(blog.pk, site_wide, content, unsure):
                del found[pk]
        missing = ids - found.keys()
        if missing:
            loaded = load_entries(blog.pk, missing)
            found.update(loaded)
            self._keep(blog.pk, site_wide, content, loaded.values())
        return found

    def _check(self, blog_id: int, version: int, content: int, entries: dict[int, Entry]) -> set[int]:
        """Kept entries last known current at an older content version: those whose rows did not move are known
        current at ``content``; returns the ids of those that moved (to be loaded again)."""
        moved = _moved(entries)
        with self._lock:
            known, kept = self._blogs.get(blog_id, (None, {}))
            if known == version:
                checked = self._checked[blog_id]
                for pk, entry in entries.items():
                    if pk not in moved and kept.get(pk) is entry:
                        checked[pk] = content
        return moved

    def _keep(self, blog_id: int, version: int, content: int, entries: Iterable[Entry]) -> None:
        budget = get_config()["ENTRY_CACHE_MB"] * 1024 * 1024
        weighed = [(entry, entry_weight(entry)) for entry in entries]
        with self._lock:
            kept = self._kept(blog_id, version)
            checked = self._checked[blog_id]
            used = self._make_room(blog_id, sum(weight for _, weight in weighed), budget)
            for entry, weight in weighed:
                old = kept.pop(entry.pk, None)  # an older copy (its row moved since) makes way
                if old is not None:
                    used -= entry_weight(old)
                    self._bytes[blog_id] -= entry_weight(old)
                    checked.pop(entry.pk, None)
                if used + weight > budget:
                    break
                kept[entry.pk], checked[entry.pk] = entry, content
                used += weight
                self._bytes[blog_id] += weight

    def clear(self) -> None:
        with self._lock:
            self._blogs.clear()
            self._checked.clear()
            self._bytes.clear()


def _moved(entries: dict[int, Entry], chunk: int = 2000) -> set[int]:
    """The ids of the kept ``entries`` whose rows changed (or went) since they were loaded: their ``modified``."""
    moved = set()
    ids = list(entries)
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        current = dict(Entry.objects.filter(pk__in=part).values_list("pk", "modified"))
        moved.update(pk for pk in part if current.get(pk) != entries[pk].modified)
    return moved


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
