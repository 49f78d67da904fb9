"""What a content change touches (MT's BuildDependencies), as archive contexts: an entry's page, its neighbours'
its category, date (daily, weekly, monthly, yearly), author and category-monthly archives, the indexes.

Every function here costs the same whatever the blog's size (an entry save touches its page, its
neighbours, its category and date archives, and the indexes).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from publishqueue.models import ArchiveMapping
from publishqueue.registry import ArchiveContext

from .archives import (
    Archive,
    author_context,
    category_context,
    category_month_context,
    date_contexts,
    entry_context,
    index_context,
)
from .models import Entry


@dataclass(frozen=True)
class EntryState:
    """What of an entry decides which files show it, captured before and after a change."""

    entry_id: int
    blog_id: int
    live: bool
    published_on: dt.datetime
    category_ids: frozenset[int]
    author_id: int | None = None

    @classmethod
    def of(cls, entry: Entry, category_ids: frozenset[int] | None = None) -> EntryState:
        """``category_ids``: the entry's categories when the caller knows them (read from the database if not)."""
        if category_ids is None:
            category_ids = frozenset(entry.categories.values_list("pk", flat=True))
        return cls(
            entry_id=entry.pk,
            blog_id=entry.blog_id,
            live=entry.status == Entry.Status.PUBLISHED,
            published_on=entry.published_on,
            category_ids=category_ids,
            author_id=entry.author_id,
        )

    @classmethod
    def load(cls, entry_id: int | None, *, lock: bool = False) -> EntryState | None:
        """The entry's stored state; ``lock``: its row locked until the transaction ends (PostgreSQL: as its UPDATE
        would), so that no other save changes it between this read and this transaction's own save."""
        # NO KEY: a comment being posted holds a key-share lock on its entry (the foreign key) and waits for the
        # blog row this save bumps next; FOR UPDATE would wait for it in turn (a deadlock, found by review).
        found = Entry.objects.select_for_update(of=("self",), no_key=True) if lock else Entry.objects
        entry = found.filter(pk=entry_id).first() if entry_id else None
        return cls.of(entry) if entry else None

    def shows_site_wide(self, entry: Entry) -> bool:
        """Whether ``entry``, saved with this state before, may have changed what every page shows (the site-wide
        variables, ``blog.archives.blog_variables``: the months and category counts of the live entries). An
        entry live before and after, on the same date in the same blog, did not (its title or text was edited),
        nor one live neither before nor after; its categories changing is a change of their own (m2m_changed)."""
        live = entry.status == Entry.Status.PUBLISHED
        if not (live or self.live):
            return False
        return (live, entry.blog_id, entry.published_on) != (self.live, self.blog_id, self.published_on)


def _neighbour_ids(state: EntryState) -> set[int]:
    found = Entry.objects.neighbour_ids(state.blog_id, state.published_on, state.entry_id)
    return {pk for pk in found if pk}


def entry_change_contexts(before: EntryState | None, after: EntryState | None) -> set[ArchiveContext]:
    """Files an entry change touches: its page, its neighbours' pages (at the old and new dates), its
    category and date archives (old and new), and the indexes. Nothing when it was and is not live."""
    states = [s for s in (before, after) if s is not None and s.live]
    if not states:
        return set()
    entry_id = (after or before).entry_id
    contexts = {index_context(), entry_context(entry_id)}
    places = {(s.blog_id, s.published_on): s for s in states}  # an edit in place: its neighbours asked for once
    for state in places.values():
        contexts |= {entry_context(pk) for pk in _neighbour_ids(state)}
    for state in states:
        contexts |= {category_context(pk) for pk in state.category_ids}
        contexts |= date_contexts(state.published_on)
        day = timezone.localdate(state.published_on)
        contexts |= {category_month_context(pk, day) for pk in state.category_ids}
        if state.author_id:
            contexts.add(author_context(state.author_id))
    return contexts


def comment_change_contexts(entry: Entry) -> set[ArchiveContext]:
    return {entry_context(entry.pk), index_context()}


def only_comment_templates(mapping: ArchiveMapping) -> bool:
    """Entry pages show comments; indexes are republished for comments only when they say so."""
    return mapping.archive_type == Archive.INDIVIDUAL or mapping.template.depends_on_comments
