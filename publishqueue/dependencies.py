"""What a change touches (MT's BuildDependencies), as FileInfo rows.

Every function here costs the same whatever the blog's size (an entry save touches its page, its
neighbours, its category and date archives, and the indexes), except the ones named ``all_*``.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.utils import timezone

from blog.models import Blog, Category, Entry, attach_categories

from .models import ArchiveMapping, FileInfo, PublishingMode, Template
from .paths import DATE_TYPES, ArchiveContext, ArchiveType, PathError, date_fields, format_path, period_start
from .rendering import entry_fields


@dataclass(frozen=True)
class EntryState:
    """What of an entry decides which files show it, captured before and after a change."""

    entry_id: int
    blog_id: int
    live: bool
    published_on: dt.datetime
    category_ids: frozenset[int]

    @classmethod
    def of(cls, entry: Entry) -> EntryState:
        return cls(
            entry_id=entry.pk,
            blog_id=entry.blog_id,
            live=entry.status == Entry.Status.PUBLISHED,
            published_on=entry.published_on,
            category_ids=frozenset(entry.categories.values_list("pk", flat=True)),
        )

    @classmethod
    def load(cls, entry_id: int | None) -> EntryState | None:
        entry = Entry.objects.filter(pk=entry_id).first() if entry_id else None
        return cls.of(entry) if entry else None


def _neighbour_ids(state: EntryState) -> set[int]:
    found = Entry.objects.neighbour_ids(state.blog_id, state.published_on, state.entry_id)
    return {pk for pk in found if pk}


def _date_contexts(when: dt.datetime) -> set[ArchiveContext]:
    day = timezone.localdate(when)
    return {ArchiveContext(t, period_start=period_start(t, day)) for t in DATE_TYPES}


def entry_change_contexts(before: EntryState | None, after: EntryState | None) -> set[ArchiveContext]:
    """Files an entry change touches: its page, its neighbours' pages (at the old and new dates), its
    category and date archives (old and new), and the indexes. Nothing when it was and is not live."""
    states = [s for s in (before, after) if s is not None and s.live]
    if not states:
        return set()
    entry_id = (after or before).entry_id
    contexts = {ArchiveContext(ArchiveType.INDEX), ArchiveContext(ArchiveType.INDIVIDUAL, entry_id=entry_id)}
    for state in states:
        contexts |= {ArchiveContext(ArchiveType.INDIVIDUAL, entry_id=pk) for pk in _neighbour_ids(state)}
        contexts |= {ArchiveContext(ArchiveType.CATEGORY, category_id=pk) for pk in state.category_ids}
        contexts |= _date_contexts(state.published_on)
    return contexts


def comment_change_contexts(entry: Entry) -> set[ArchiveContext]:
    return {ArchiveContext(ArchiveType.INDIVIDUAL, entry_id=entry.pk), ArchiveContext(ArchiveType.INDEX)}


def only_comment_templates(mapping: ArchiveMapping) -> bool:
    """Entry pages show comments; indexes are republished for comments only when they say so."""
    return mapping.archive_type == ArchiveType.INDIVIDUAL or mapping.template.depends_on_comments


def all_template_contexts(template: Template) -> set[ArchiveContext]:
    """Every file a template has: one per live entry, category with entries, or period with entries."""
    types = set(template.mappings.values_list("archive_type", flat=True))
    live = Entry.objects.live().filter(blog_id=template.blog_id)
    contexts: set[ArchiveContext] = set()
    if ArchiveType.INDEX in types:
        contexts.add(ArchiveContext(ArchiveType.INDEX))
    if ArchiveType.INDIVIDUAL in types:
        contexts |= {ArchiveContext(ArchiveType.INDIVIDUAL, entry_id=pk) for pk in live.values_list("pk", flat=True)}
    if ArchiveType.CATEGORY in types:
        cats = Category.objects.filter(entries__in=live).values_list("pk", flat=True).distinct()
        contexts |= {ArchiveContext(ArchiveType.CATEGORY, category_id=pk) for pk in cats}
    date_types = types & set(DATE_TYPES)
    if date_types:
        # Local dates here: SQLite would truncate them in a Python function per row, twice as slow.
        days = {timezone.localdate(d) for d in live.values_list("published_on", flat=True)}
        starts = {(t, period_start(t, day)) for day in days for t in date_types}
        contexts |= {ArchiveContext(t, period_start=start) for t, start in starts}
    return contexts


def template_fileinfos(template: Template) -> list[FileInfo]:
    """The FileInfo rows of every file ``template`` has now (created or re-pathed as needed)."""
    return ensure_fileinfos(blog=template.blog, contexts=all_template_contexts(template), templates=[template])


def _context_fields(
    context: ArchiveContext, entries: dict[int, Entry], categories: dict[int, Category], *, by_category: bool
):
    """Pattern fields for a context, or None when the entry/category it names is gone. An entry's {category}
    is filled in only ``by_category`` (its categories are loaded for that)."""
    if context.archive_type == ArchiveType.INDEX:
        return {}
    if context.archive_type == ArchiveType.INDIVIDUAL:
        entry = entries.get(context.entry_id)
        if entry is None:
            return None
        return entry_fields(entry, category=by_category)
    if context.archive_type == ArchiveType.CATEGORY:
        category = categories.get(context.category_id)
        return {"category": category.slug} if category else None
    return date_fields(context.period_start)


def _by_category(mapping: ArchiveMapping) -> bool:
    return mapping.archive_type == ArchiveType.INDIVIDUAL and "{category}" in mapping.path_pattern


ACTIVE_MODES = [m for m in PublishingMode if m != PublishingMode.DISABLED]


def ensure_fileinfos(
    *,
    blog: Blog,
    contexts: Iterable[ArchiveContext],
    templates: Iterable[Template] | None = None,
    mapping_filter: Callable[[ArchiveMapping], bool] | None = None,
) -> list[FileInfo]:
    """The FileInfo rows for ``contexts`` under the blog's (or the given) templates, created or
    re-pathed as needed. Rows whose entry or category is gone are returned too (their files go)."""
    contexts = list(contexts)
    types = {c.archive_type for c in contexts}
    mappings = ArchiveMapping.objects.filter(archive_type__in=types, template__mode__in=ACTIVE_MODES)
    if templates is not None:
        mappings = mappings.filter(template__in=list(templates))
    else:
        mappings = mappings.filter(template__blog=blog)
    mappings = [m for m in mappings.select_related("template") if mapping_filter is None or mapping_filter(m)]
    if not mappings or not contexts:
        return []
    entry_ids = [c.entry_id for c in contexts if c.entry_id]
    # What paths need, for up to every entry of the blog (a template saved): no bodies; categories in bulk,
    # and only when a path shows them.
    entries = Entry.objects.live().filter(pk__in=entry_ids).only("id", "blog_id", "slug", "published_on").in_bulk()
    if any(_by_category(mapping) for mapping in mappings):
        attach_categories(entries.values())
    category_ids = [c.category_id for c in contexts if c.category_id]
    categories = Category.objects.filter(pk__in=category_ids).in_bulk()
    by_type: dict[str, list[ArchiveContext]] = {}
    for context in contexts:
        by_type.setdefault(context.archive_type, []).append(context)

    # (mapping id, context key) -> the row's mapping, context and path: rows are built only for the missing.
    wanted: dict[tuple[int, str], tuple[ArchiveMapping, ArchiveContext, str]] = {}
    for mapping in mappings:
        by_category = _by_category(mapping)
        for context in by_type.get(mapping.archive_type, ()):
            fields = _context_fields(context, entries, categories, by_category=by_category)
            if fields is None:
                continue
            try:
                path = format_path(mapping.path_pattern, fields)
            except PathError:
                path = mapping.path_pattern  # the publisher refuses it with the error; keep the row
            wanted[(mapping.pk, context.key)] = (mapping, context, path)
    rows = _sync_fileinfos(blog, mappings, [c.key for c in contexts], wanted)
    # Entry pages in the order of their entries' dates (then ids), so that a worker's batch of them shows its
    # own entries as each other's neighbours, which it loads once; other files first, by id.
    dated = {pk: (entry.published_on, pk) for pk, entry in entries.items()}
    return sorted(rows, key=lambda fi: (fi.entry_id in dated, dated.get(fi.entry_id, ()), fi.pk))


def _new_fileinfo(blog: Blog, mapping: ArchiveMapping, context: ArchiveContext, path: str) -> FileInfo:
    return FileInfo(
        blog=blog, template=mapping.template, mapping=mapping, archive_type=context.archive_type,
        context_key=context.key, entry_id=context.entry_id, category_id=context.category_id,
        period_start=context.period_start, path=path, url=blog.absolute_url(path),
    )


def _existing(blog: Blog, mappings: list[ArchiveMapping], keys: list[str]) -> dict[tuple[int, str], FileInfo]:
    """The rows for ``keys``, with the blog, mapping and template objects shared among them (one copy of
    each per row, the template's source included, was most of the cost of saving a template)."""
    by_id = {mapping.pk: mapping for mapping in mappings}
    found: dict[tuple[int, str], FileInfo] = {}
    for start in range(0, len(keys), 500):
        for row in FileInfo.objects.filter(mapping__in=mappings, context_key__in=keys[start : start + 500]):
            row.mapping = by_id[row.mapping_id]
            row.template = row.mapping.template
            if row.blog_id == blog.pk:
                row.blog = blog
            found[(row.mapping_id, row.context_key)] = row
    return found


def _sync_fileinfos(blog, mappings, keys, wanted) -> list[FileInfo]:
    existing = _existing(blog, mappings, keys)
    missing = [_new_fileinfo(blog, *want) for key, want in wanted.items() if key not in existing]
    if missing:
        # Concurrent requests may create the same rows: the unique constraint keeps one, we re-read.
        FileInfo.objects.bulk_create(missing, ignore_conflicts=True, batch_size=500)
        existing = _existing(blog, mappings, keys)
    moved = []
    for key, row in existing.items():
        want = wanted.get(key)
        if want is None:
            continue
        path = want[2]
        if (row.path, row.url) != (path, url := blog.absolute_url(path)):
            row.path, row.url = path, url
            moved.append(row)
    if moved:
        FileInfo.objects.bulk_update(moved, ["path", "url"], batch_size=500)
    return sorted(existing.values(), key=lambda fi: fi.pk)
