"""The blog's archive types (MT's: index, entry, category, monthly, yearly, daily) as registered with
publishqueue: their path fields, every context a template of each type has, and what each page shows,
loaded for a worker's batch of pages in a few queries."""
from __future__ import annotations

import bisect
import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.db.models import Count
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import dateformat, timezone
from django.utils.text import slugify
from django.utils.translation import pgettext_lazy

from publishqueue.registry import ArchiveContext, ArchiveType, Page, register_archive_type, register_site_variables
from publishqueue.rendering import Links

from .conf import get_config
from .entrycache import entry_cache, load_entries
from .models import Blog, Category, Comment, Entry, attach_categories, categories_of
from .sandbox import ViewList, author_view, blog_view, category_view, comment_view, documentation, entry_view


class Archive(models.TextChoices):
    INDEX = "index", "Index"
    INDIVIDUAL = "individual", "Entry"
    CATEGORY = "category", "Category"
    MONTHLY = "monthly", "Monthly"
    YEARLY = "yearly", "Yearly"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    AUTHOR = "author", "Author"
    CATEGORY_MONTHLY = "category-monthly", "Category-Monthly"


DATE_TYPES = (Archive.MONTHLY, Archive.YEARLY, Archive.DAILY, Archive.WEEKLY)


def index_context() -> ArchiveContext:
    return ArchiveContext(Archive.INDEX)


def entry_context(entry_id: int) -> ArchiveContext:
    return ArchiveContext(Archive.INDIVIDUAL, object_id=entry_id)


def category_context(category_id: int) -> ArchiveContext:
    return ArchiveContext(Archive.CATEGORY, object_id=category_id)


def period_context(archive_type: str, start: dt.date) -> ArchiveContext:
    return ArchiveContext(archive_type, period_start=start)


def author_context(user_id: int) -> ArchiveContext:
    return ArchiveContext(Archive.AUTHOR, object_id=user_id)


def category_month_context(category_id: int, day: dt.date) -> ArchiveContext:
    return ArchiveContext(Archive.CATEGORY_MONTHLY, object_id=category_id, period_start=day.replace(day=1))


# -- periods -------------------------------------------------------------------------------------------


def period_start(archive_type: str, day: dt.date) -> dt.date:
    if archive_type in (Archive.MONTHLY, Archive.CATEGORY_MONTHLY):
        return day.replace(day=1)
    if archive_type == Archive.YEARLY:
        return day.replace(month=1, day=1)
    if archive_type == Archive.WEEKLY:  # MT's weeks start on Sunday
        return day - dt.timedelta(days=(day.weekday() + 1) % 7)
    return day


def period_end(archive_type: str, start: dt.date) -> dt.date:
    """The first day after the period."""
    if archive_type in (Archive.MONTHLY, Archive.CATEGORY_MONTHLY):
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    if archive_type == Archive.YEARLY:
        return start.replace(year=start.year + 1)
    if archive_type == Archive.WEEKLY:
        return start + dt.timedelta(days=7)
    return start + dt.timedelta(days=1)


def period_bounds(archive_type: str, start: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The first moment of the period and the first after it, in the current time zone (the blog's: publishqueue
    activates it around what it asks of archive types, and ``blog.services`` around dependencies)."""
    tz = timezone.get_current_timezone()
    end = period_end(archive_type, start)
    return (
        dt.datetime.combine(start, dt.time.min, tzinfo=tz),
        dt.datetime.combine(end, dt.time.min, tzinfo=tz),
    )


def date_fields(day: dt.date) -> dict[str, str]:
    return {"year": f"{day.year:04d}", "month": f"{day.month:02d}", "day": f"{day.day:02d}"}


def date_contexts(when: dt.datetime) -> set[ArchiveContext]:
    """The monthly, yearly and daily archives an entry published at ``when`` appears in (the blog's local date:
    call it under ``publishqueue.sites.site_locale(blog)``)."""
    day = timezone.localdate(when)
    return {period_context(t, period_start(t, day)) for t in DATE_TYPES}


# Titles of date archives, as Django date formats (translated: "j F Y" in French; month names follow the language).
PERIOD_TITLES = {
    Archive.MONTHLY: pgettext_lazy("monthly archive title (date format)", "F Y"),
    Archive.YEARLY: pgettext_lazy("yearly archive title (date format)", "Y"),
    Archive.DAILY: pgettext_lazy("daily archive title (date format)", "F j, Y"),
    Archive.WEEKLY: pgettext_lazy("weekly archive title (date format)", "\\W\\e\\e\\k \\o\\f F j, Y"),
    Archive.CATEGORY_MONTHLY: pgettext_lazy("category-monthly archive title (date format)", "F Y"),
}


def _period_title(archive_type: str, start: dt.date) -> str:
    return dateformat.format(start, str(PERIOD_TITLES[archive_type]))


# -- entries and their links ---------------------------------------------------------------------------


def primary_category_slug(entry: Entry) -> str:
    """The {category} of an entry's path: its first category by slug (MT's primary category)."""
    return min((c.slug for c in categories_of(entry)), default="uncategorized")


def local_day(when: dt.datetime, zone: dt.tzinfo) -> dt.date:
    """``timezone.localdate(when)`` with the zone looked up once by the caller (per row, the lookup through
    asgiref's locals cost more than the conversion: a fifth of saving a template of a 10,000-entry blog)."""
    return when.astimezone(zone).date()


def entry_fields(entry: Entry, *, category: bool = True, zone: dt.tzinfo | None = None) -> dict[str, str]:
    """The path fields of an entry's page: {year} {month} {day} (local date), {slug}, {id}, and {category}
    when asked (it reads the entry's categories)."""
    day = local_day(entry.published_on, zone or timezone.get_current_timezone())
    fields = {**date_fields(day), "slug": entry.slug, "id": str(entry.pk)}
    if category:
        fields["category"] = primary_category_slug(entry)
    return fields


def entry_url(links: Links, entry: Entry) -> str:
    return links.url(Archive.INDIVIDUAL, entry_fields(entry, category=links.uses(Archive.INDIVIDUAL, "category")))


def category_url(links: Links, category: Category) -> str:
    return links.url(Archive.CATEGORY, {"category": category.slug})


def period_url(links: Links, archive_type: str, start: dt.date) -> str:
    return links.url(archive_type, date_fields(start))


def with_links(entries: list[Entry], links: Links) -> list[Entry]:
    """Give each entry its permalink, once per entry object, set of links and time zone (dates in paths are
    local): a batch's entries are shown on several of its pages (their own, and their neighbours' links)."""
    zone = str(timezone.get_current_timezone())
    for entry in entries:
        known = getattr(entry, "_permalink_of", None)
        if known is None or known[0] is not links.patterns or known[1] != links.site.site_url or known[2] != zone:
            entry.permalink = entry_url(links, entry)
            entry._permalink_of = (links.patterns, links.site.site_url, zone)
    return entries


def views(entries: list[Entry], links: Links) -> ViewList:
    """What templates see of entries (``blog.sandbox``): one view per entry object and set of links, with its
    permalink and its categories' archive URLs."""
    with_links(entries, links)
    found = []
    for entry in entries:
        known = getattr(entry, "_view", None)
        if known is None or known[0] is not entry._permalink_of:
            categories = categories_of(entry)
            for category in categories:
                category.archive_url = category_url(links, category)
            known = entry._view = (entry._permalink_of, entry_view(entry, categories))
        found.append(known[1])
    return ViewList(found)


def view(entry: Entry | None, links: Links):
    return views([entry], links)[0] if entry is not None else None


def _listed(entries, links: Links) -> ViewList:
    """Entries of a listing page, as views with their categories and permalinks."""
    return views(attach_categories(entries), links)


def entries_for(blog: Blog, ids: Iterable[int], *, batch: bool) -> dict[int, Entry]:
    """Entries by id with their categories and author: for a batch of pages (a worker's), from the process's
    cache of the blog's current content (``blog.entrycache``); for a single page (a Dynamic request, a page
    published as it is saved, a preview), from the database."""
    return entry_cache.entries(blog, ids) if batch else load_entries(blog.pk, ids)


@dataclass
class Listings:
    """A batch of category or author archives: the ids of the live entries each lists, newest first, in one query
    (their entries come from the process's cache)."""

    ids: dict[int, list[int]]


def _preload_listings(field: str):
    def preload(blog: Blog, contexts: Sequence[ArchiveContext]) -> Listings:
        wanted = {c.object_id for c in contexts if c.object_id}
        listed: dict[int, list[int]] = {pk: [] for pk in wanted}
        for owner, pk in _live_entries(blog).filter(**{f"{field}__in": wanted}).values_list(field, "pk"):
            listed[owner].append(pk)
        return Listings(listed)

    return preload


def _listing(page: Page, entries: models.QuerySet) -> ViewList:
    """A category's or author's entries (``entries``, newest first) as views: in a worker's batch, the ids its
    preload found and the entries from the process's cache."""
    if isinstance(page.batch, Listings) and page.context.object_id in page.batch.ids:
        ids = page.batch.ids[page.context.object_id]
        found = entries_for(page.site, ids, batch=True)
        return views([found[pk] for pk in ids if pk in found], page.links)
    return _listed(entries, page.links)


def _live_entries(blog: Blog):
    return Entry.objects.live().filter(blog=blog)


def live_months(blog_id: int, zone: dt.tzinfo) -> list[tuple[dt.date, int]]:
    """(first day, entry count) of each month of ``zone`` with live entries, oldest first.

    One read of the blog's publication dates in order, off the (blog, status, published_on) index, raw (no date
    conversion per row), cut at each month's first moment by bisection. ``TruncMonth`` in a time zone ran a Python
    function per row on SQLite: 0.1 s for a 10,000-entry blog, paid by the first page after every change (the
    sidebar lists the months). A run between two cuts is taken whole when its first and last dates are in the same
    month at the same UTC offset (no clock change inside); else (a zone whose clocks went back across midnight, so
    that instants just after a month's first moment are in the month before) its dates are read one by one."""
    table = Entry._meta.db_table
    # Read as a datetime, each row cost more than the rest of this function: on SQLite the column is read as the
    # text it is stored as (Django's converter parsed every row: 15 against 9 ms for 10,000), on PostgreSQL as
    # whole microseconds since the epoch (psycopg's datetimes: 60 ms for 10,000 rows whose scan took 3 ms).
    column = _RAW_MOMENT.get(connection.vendor, "published_on")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {table} WHERE blog_id = %s AND status = %s ORDER BY published_on",
            [blog_id, Entry.Status.PUBLISHED],
        )
        values = [row[0] for row in cursor.fetchall()]
    counts: dict[dt.date, int] = {}
    i = 0
    while i < len(values):
        first = _stored_moment(values[i]).astimezone(zone)
        start = first.date().replace(day=1)
        try:
            end = dt.datetime.combine(period_end(Archive.MONTHLY, start), dt.time.min, tzinfo=zone)
        except (OverflowError, ValueError):  # December 9999: no month after it
            j = len(values)
        else:
            j = max(bisect.bisect_left(values, _as_stored(end, values[i]), lo=i), i + 1)
        last = _stored_moment(values[j - 1]).astimezone(zone)
        if last.date().replace(day=1) == start and last.utcoffset() == first.utcoffset():
            counts[start] = counts.get(start, 0) + j - i
        else:
            for value in values[i:j]:
                month = local_day(_stored_moment(value), zone).replace(day=1)
                counts[month] = counts.get(month, 0) + 1
        i = j
    return sorted(counts.items())


_RAW_MOMENT = {
    "sqlite": "CAST(published_on AS TEXT)", "postgresql": "(EXTRACT(EPOCH FROM published_on) * 1000000)::int8",
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _stored_moment(value: Any) -> dt.datetime:
    """A datetime column's value as ``live_months`` reads it (SQLite: text in UTC; PostgreSQL: microseconds since
    the epoch; others: a datetime, naive in UTC where the database has no zones), as an aware datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    elif isinstance(value, int):
        return _EPOCH + value * _MICROSECOND
    return value if timezone.is_aware(value) else value.replace(tzinfo=dt.UTC)


def _as_stored(moment: dt.datetime, like: Any) -> Any:
    """``moment`` in the form ``live_months`` reads that column (``like`` is one value), so that they compare."""
    if isinstance(like, str):
        return connection.ops.adapt_datetimefield_value(moment)
    if isinstance(like, int):
        return (moment - _EPOCH) // _MICROSECOND
    return moment if timezone.is_aware(like) else moment.astimezone(dt.UTC).replace(tzinfo=None)


# -- what a batch of pages shows -----------------------------------------------------------------------

# Ranges per query in ``live_ids_in`` (4 parameters each, under SQLite's historical 999; 500 compound terms).
RANGES_PER_QUERY = 200


def live_ids_in(blog_id: int, periods: Iterable[tuple[str, dt.date]]) -> set[int]:
    """The ids of the live entries published in any of ``periods`` (archive type, start): one range scan of the
    blog/status/date index per run of adjacent periods, reading ids only, the ranges UNION ALL-ed into one
    statement. Neither the ranges OR-ed in one WHERE (SQLite then tested every range on every row of the blog:
    0.28 s for 100 periods of a 10,000-entry blog), nor one range over the batch's span (most of the blog for a
    batch spread over years), nor one ORM query per range (building them cost more than running them: 86 a batch
    of category-monthly pages)."""
    spans: list[list[dt.datetime]] = []
    for lo, hi in sorted(period_bounds(archive_type, start) for archive_type, start in set(periods)):
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    table, stamp = Entry._meta.db_table, connection.ops.adapt_datetimefield_value
    one = f"SELECT id FROM {table} WHERE blog_id = %s AND status = %s AND published_on >= %s AND published_on < %s"
    found: set[int] = set()
    with connection.cursor() as cursor:
        for first in range(0, len(spans), RANGES_PER_QUERY):
            chunk = spans[first : first + RANGES_PER_QUERY]
            params = [v for lo, hi in chunk for v in (blog_id, Entry.Status.PUBLISHED, stamp(lo), stamp(hi))]
            cursor.execute(" UNION ALL ".join([one] * len(chunk)), params)
            found.update(pk for (pk,) in cursor.fetchall())
    return found


def newest_first(entries: Iterable[Entry]) -> list[Entry]:
    """Entries in the blog's order (``Entry.Meta.ordering``)."""
    return sorted(entries, key=lambda e: (e.published_on, e.pk), reverse=True)


@dataclass
class BatchPages:
    """What a batch of pages shows, loaded for all of them in a few queries (a worker's batch, or a single
    page): entry pages (the entry, its categories and author, its neighbours, its approved comments) and the
    entries of date-based archives."""

    loaded: set[int] = field(default_factory=set)
    entries: dict[int, Entry] = field(default_factory=dict)
    neighbours: dict[int, tuple[Entry | None, Entry | None]] = field(default_factory=dict)
    comments: dict[int, list[Comment]] = field(default_factory=dict)
    # (archive type, period start) -> its live entries, newest first.
    periods: dict[tuple[str, dt.date], list[Entry]] = field(default_factory=dict)

    # For a worker's batch: entries from the process's cache (``entries_for``).
    batch: bool = False

    @classmethod
    def load(cls, blog: Blog, entry_ids=(), periods=(), *, batch: bool = False) -> BatchPages:
        pages = cls(batch=batch)
        if entry_ids:
            pages._load_entry_pages(blog, set(entry_ids))
        if periods:
            pages._load_periods(blog, sorted(set(periods)))
        return pages

    def _load_entry_pages(self, blog: Blog, ids: set[int]) -> None:
        live = Entry.Status.PUBLISHED
        entries = {pk: e for pk, e in entries_for(blog, ids, batch=self.batch).items() if e.status == live}
        pairs = Entry.objects.neighbours_of(blog.pk, {pk: entry.published_on for pk, entry in entries.items()})
        # A batch's entries are mostly each other's neighbours: only the others are looked up.
        outside = {n for pair in pairs.values() for n in pair if n and n not in entries}
        near = {**entries, **entries_for(blog, outside, batch=self.batch)} if outside else entries
        comments: dict[int, list[Comment]] = {pk: [] for pk in entries}
        for comment in Comment.objects.filter(entry_id__in=list(entries), status=Comment.Status.APPROVED):
            comments[comment.entry_id].append(comment)
        self.loaded |= ids
        self.entries.update(entries)
        self.neighbours.update((pk, (near.get(before), near.get(after))) for pk, (before, after) in pairs.items())
        self.comments.update(comments)

    def _load_periods(self, blog: Blog, periods: list[tuple[str, dt.date]]) -> None:
        """The entries of many periods in a few queries, shared out by local date."""
        listed: dict[tuple[str, dt.date], list[Entry]] = {key: [] for key in periods}
        types = {archive_type for archive_type, _ in periods}
        ids = live_ids_in(blog.pk, periods)
        zone = timezone.get_current_timezone()
        for entry in newest_first(entries_for(blog, ids, batch=self.batch).values()):
            day = local_day(entry.published_on, zone)
            for archive_type in types:
                found = listed.get((archive_type, period_start(archive_type, day)))
                if found is not None:
                    found.append(entry)
        self.periods.update(listed)


def _preload_entries(blog: Blog, contexts: Sequence[ArchiveContext]) -> BatchPages:
    return BatchPages.load(blog, entry_ids=[c.object_id for c in contexts if c.object_id], batch=True)


def _preload_periods(blog: Blog, contexts: Sequence[ArchiveContext]) -> BatchPages:
    periods = [(c.archive_type, c.period_start) for c in contexts if c.period_start]
    return BatchPages.load(blog, periods=periods, batch=True)


# -- what each page shows ------------------------------------------------------------------------------


def _index_variables(page: Page) -> dict[str, Any]:
    limit = get_config()["INDEX_ENTRIES"]
    return {"entries": _listed(_live_entries(page.site)[:limit], page.links), "archive_title": page.site.name}


def _entry_variables(page: Page) -> dict[str, Any] | None:
    entry_id, blog, links, pages = page.context.object_id, page.site, page.links, page.batch
    if not entry_id:
        return None
    if pages is None or entry_id not in pages.loaded:
        pages = BatchPages.load(blog, entry_ids=[entry_id])
    entry = pages.entries.get(entry_id)
    if entry is None:
        return None  # no longer live
    previous_entry, next_entry = pages.neighbours[entry_id]
    return {
        "entry": view(entry, links),
        "previous_entry": view(previous_entry, links),
        "next_entry": view(next_entry, links),
        "comments": ViewList(comment_view(c) for c in pages.comments[entry_id]),
        "archive_title": entry.title,
        "comments_open": blog.comment_policy != Blog.CommentPolicy.CLOSED,
    }


def unsaved_entry_variables(blog: Blog, entry: Entry, categories: list[Category], links: Links) -> dict[str, Any]:
    """The variables of the page of an entry as edited and not saved (a preview): its neighbours at its edited date,
    its approved comments if it exists. Nothing is stored."""
    entry._prefetched_objects_cache = {"categories": list(categories)}
    before, after = Entry.objects.neighbour_ids(blog.pk, entry.published_on, entry.pk or 0)
    near = Entry.objects.in_bulk([pk for pk in (before, after) if pk and pk != entry.pk])
    attach_categories(near.values())
    comments = Comment.objects.filter(entry_id=entry.pk, status=Comment.Status.APPROVED) if entry.pk else []
    return {
        "entry": view(entry, links),
        "previous_entry": view(near.get(before), links),
        "next_entry": view(near.get(after), links),
        "comments": ViewList(comment_view(c) for c in comments),
        "archive_title": entry.title,
        "comments_open": blog.comment_policy != Blog.CommentPolicy.CLOSED,
    }


def _author_variables(page: Page) -> dict[str, Any] | None:
    user = get_user_model().objects.filter(pk=page.context.object_id).first()
    entries = _listing(page, _live_entries(page.site).filter(author=user)) if user else []
    if not entries:
        return None
    author = author_view(user)
    return {"author": author, "entries": entries, "archive_title": author.display_name}


@dataclass
class CategoryMonths:
    """What a batch of category-monthly pages shows, in two queries: their categories, and the live entries of
    every (category, month) in it, newest first."""

    categories: dict[int, Category]
    entries: dict[tuple[int, dt.date], list[Entry]]


def _preload_category_months(blog: Blog, contexts: Sequence[ArchiveContext], batch: bool = True) -> CategoryMonths:
    wanted = {(c.object_id, c.period_start) for c in contexts if c.object_id and c.period_start}
    if not wanted:
        return CategoryMonths({}, {})
    category_ids = {pk for pk, _ in wanted}
    # The ids of the live entries of the batch's months; in a worker's batch, those entries from the process's cache
    # (whatever their categories: other pages show them too), else only those in the batch's categories (the link
    # table). A range from the batch's first month to its last loaded most of the blog for every batch; a join of
    # the months' ranges with the links made SQLite scan.
    ids = list(live_ids_in(blog.pk, [(Archive.CATEGORY_MONTHLY, start) for _, start in wanted]))
    if not batch:
        through = Entry.categories.through.objects
        needed: set[int] = set()
        for first in range(0, len(ids), 500):
            links = through.filter(entry_id__in=ids[first : first + 500], category_id__in=category_ids)
            needed.update(links.values_list("entry_id", flat=True))
        ids = list(needed)
    found: dict[tuple[int, dt.date], list[Entry]] = {key: [] for key in wanted}
    zone = timezone.get_current_timezone()
    for entry in newest_first(entries_for(blog, ids, batch=batch).values()):
        month = local_day(entry.published_on, zone).replace(day=1)
        for category in categories_of(entry):
            if (category.pk, month) in found:
                found[(category.pk, month)].append(entry)
    return CategoryMonths(Category.objects.filter(blog=blog, pk__in=category_ids).in_bulk(), found)


def _category_month_variables(page: Page) -> dict[str, Any] | None:
    key = (page.context.object_id, page.context.period_start)
    batch = page.batch if isinstance(page.batch, CategoryMonths) and key in page.batch.entries else None
    if batch is None:  # a single page is a batch of one
        batch = _preload_category_months(page.site, [page.context], batch=False)
    category = batch.categories.get(page.context.object_id)
    if category is None:
        return None
    start, end = period_bounds(Archive.CATEGORY_MONTHLY, page.context.period_start)
    entries = views(batch.entries.get(key, []), page.links)
    if not entries:
        return None
    category.archive_url = category_url(page.links, category)
    title = f"{category.label}: {_period_title(Archive.MONTHLY, page.context.period_start)}"
    return {"category": category_view(category), "entries": entries, "period_start": start, "period_end": end,
            "archive_title": title}


def _category_variables(page: Page) -> dict[str, Any] | None:
    category = Category.objects.filter(blog=page.site, pk=page.context.object_id).first()
    entries = _listing(page, _live_entries(page.site).filter(categories=category)) if category else []
    if not entries:
        return None
    category.archive_url = category_url(page.links, category)
    return {"category": category_view(category), "entries": entries, "archive_title": category.label}


def _period_variables(page: Page) -> dict[str, Any] | None:
    period = (page.context.archive_type, page.context.period_start)
    pages = page.batch
    if pages is None or period not in pages.periods:
        pages = BatchPages.load(page.site, periods=[period])  # a single page is a batch of one
    entries = views(pages.periods[period], page.links)
    if not entries:
        return None
    start, end = period_bounds(*period)
    return {
        "entries": entries,
        "period_start": start,
        "period_end": end,
        "archive_title": _period_title(*period),
    }


# -- every context of a type, and path fields ------------------------------------------------------------


def _all_entries(blog: Blog) -> list[ArchiveContext]:
    return [entry_context(pk) for pk in Entry.objects.live().filter(blog=blog).values_list("pk", flat=True)]


def _all_categories(blog: Blog) -> list[ArchiveContext]:
    live = Entry.objects.live().filter(blog=blog)
    return [category_context(pk) for pk in Category.objects.filter(entries__in=live).values_list("pk", flat=True)]


def _all_periods(archive_type: str):
    def contexts(blog: Blog) -> set[ArchiveContext]:
        # Local dates here: SQLite would truncate them in a Python function per row, twice as slow.
        dates = Entry.objects.live().filter(blog=blog).values_list("published_on", flat=True)
        zone = timezone.get_current_timezone()
        days = {local_day(d, zone) for d in dates}
        return {period_context(archive_type, start) for start in {period_start(archive_type, day) for day in days}}

    return contexts


def _all_authors(blog: Blog) -> list[ArchiveContext]:
    ids = _live_entries(blog).exclude(author=None).values_list("author_id", flat=True).distinct()
    return [author_context(pk) for pk in ids]


def _all_category_months(blog: Blog) -> set[ArchiveContext]:
    through = Entry.categories.through.objects.filter(entry__in=_live_entries(blog))
    zone = timezone.get_current_timezone()
    return {
        category_month_context(category_id, local_day(when, zone))
        for category_id, when in through.values_list("category_id", "entry__published_on")
    }


def author_slug(user) -> str:
    return slugify(user.get_username()) or str(user.pk)


def _author_fields(blog: Blog, contexts: Sequence[ArchiveContext], wanted: frozenset[str]) -> dict:
    users = get_user_model().objects.in_bulk([c.object_id for c in contexts if c.object_id])
    return {
        c.key: {"author": author_slug(users[c.object_id]), "author_id": str(c.object_id)}
        if c.object_id in users else None
        for c in contexts
    }


def _category_month_fields(blog: Blog, contexts: Sequence[ArchiveContext], wanted: frozenset[str]) -> dict:
    categories = Category.objects.filter(pk__in=[c.object_id for c in contexts if c.object_id]).in_bulk()
    return {
        c.key: {"category": categories[c.object_id].slug, **date_fields(c.period_start)}
        if c.object_id in categories else None
        for c in contexts
    }


def _entry_fields(blog: Blog, contexts: Sequence[ArchiveContext], wanted: frozenset[str]) -> dict:
    """What paths need, for up to every entry of the blog (a template saved): no bodies; categories in bulk,
    and only when a path shows them. Returned in the order of the entries' dates (then ids)."""
    ids = [c.object_id for c in contexts if c.object_id]
    entries = Entry.objects.live().filter(pk__in=ids).only("id", "blog_id", "slug", "published_on").in_bulk()
    by_category = "category" in wanted
    if by_category:
        attach_categories(entries.values())
    ordered = sorted(entries.values(), key=lambda e: (e.published_on, e.pk))
    zone = timezone.get_current_timezone()
    fields: dict = {entry_context(e.pk).key: entry_fields(e, category=by_category, zone=zone) for e in ordered}
    for context in contexts:
        fields.setdefault(context.key, None)  # gone: its file is removed
    return fields


def _category_fields(blog: Blog, contexts: Sequence[ArchiveContext], wanted: frozenset[str]) -> dict:
    categories = Category.objects.filter(pk__in=[c.object_id for c in contexts if c.object_id]).in_bulk()
    return {
        c.key: {"category": categories[c.object_id].slug} if c.object_id in categories else None for c in contexts
    }


def _period_fields(blog: Blog, contexts: Sequence[ArchiveContext], wanted: frozenset[str]) -> dict:
    return {c.key: date_fields(c.period_start) for c in contexts}


# -- blog-wide variables -------------------------------------------------------------------------------


class _Lazy:
    """A value computed on first use, so templates that do not show it do not pay for its query."""

    def __init__(self, func: Any) -> None:
        self._func = func

    def __call__(self) -> Any:
        if not hasattr(self, "_value"):
            self._value = self._func()
        return self._value


@functools.lru_cache(maxsize=16)
def _comment_action(script_prefix: str, urlconf: str) -> str:
    """The comment form's URL: reversed once per script prefix and URLconf, not for every page."""
    return reverse("blog:comment_post", urlconf=urlconf)


def blog_variables(blog: Blog, links: Links) -> dict[str, Any]:
    """What every page gets, and the only variables a cached module sees: the blog, its categories and
    monthly archives (lists computed once per templates and site-wide version: what of an entry they count is
    ``EntryState.shows_site_wide``), the comment form's URL."""

    def categories() -> ViewList:
        # Counted off the category links of the live entries' ids (SQLite finds those in the blog/status/date
        # index alone), not by joining each link to its entry's row: 15 against 29 ms for 10,000 entries.
        live = Entry.objects.live().filter(blog=blog).values("pk")
        counts = dict(
            Entry.categories.through.objects.filter(entry_id__in=live)
            .values_list("category_id").annotate(n=Count("entry_id")).values_list("category_id", "n")
        )
        cats = [cat for cat in Category.objects.filter(blog=blog).order_by("label") if cat.pk in counts]
        for cat in cats:
            cat.count, cat.archive_url = counts[cat.pk], category_url(links, cat)
        return ViewList(category_view(cat) for cat in cats)

    def monthly_archives() -> list[dict[str, Any]]:
        zone = timezone.get_current_timezone()
        return [
            {
                "start": dt.datetime.combine(start, dt.time.min, tzinfo=zone), "count": count,
                "url": period_url(links, Archive.MONTHLY, start),
            }
            for start, count in reversed(live_months(blog.pk, zone))
        ]

    return {
        "blog": blog_view(blog),
        "all_categories": _Lazy(categories),
        "monthly_archives": _Lazy(monthly_archives),
        "comment_action": _comment_action(get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF),
    }


DATE_FIELDS = frozenset({"year", "month", "day"})

LISTING = {"entries": "the entries shown (EntryView), newest first", "archive_title": "the page's title"}
DOCS = {
    Archive.INDEX: {**LISTING, "entries": "the latest entries (EntryView), newest first"},
    Archive.INDIVIDUAL: {
        "entry": "the entry (EntryView)", "previous_entry": "the entry before it, or nothing",
        "next_entry": "the entry after it, or nothing", "comments": "its approved comments (CommentView)",
        "comments_open": "whether the comment form is shown", "archive_title": "the entry's title",
    },
    Archive.CATEGORY: {**LISTING, "category": "the category (CategoryView)"},
    Archive.AUTHOR: {**LISTING, "author": "the author (AuthorView)"},
    Archive.CATEGORY_MONTHLY: {
        **LISTING, "category": "the category (CategoryView)", "period_start": "the first moment of the month",
        "period_end": "the first moment after it",
    },
    "period": {**LISTING, "period_start": "the first moment of the period", "period_end": "the first moment after"},
}
SITE_DOCS = {
    "blog": "the blog (BlogView)", "all_categories": "categories with published entries (CategoryView, with count)",
    "monthly_archives": "months with entries: start, count, url", "comment_action": "the comment form's URL",
}


# MT's queue_build_file_filter: index files named index, default, atom or feed 9, other index files 8.
MT_MAIN_INDEX = re.compile(r"(^|/)(index|default|atom|feed)", re.IGNORECASE)


def index_priority(path: str, preferred: bool) -> int:
    return 9 if MT_MAIN_INDEX.search(path) else 8


def entry_priority(path: str, preferred: bool) -> int:
    """MT: an entry's permalink page (its preferred mapping's) 10, its other pages 5."""
    return 10 if preferred else 5


def register() -> None:
    """Tell publishqueue about the blog's archive types and blog-wide variables (BlogConfig.ready). Priorities are
    MT's (WeblogPublisher's queue_build_file_filter)."""
    register_archive_type(ArchiveType(
        Archive.INDEX, "Index", "single", all_contexts=lambda blog: [index_context()], variables=_index_variables,
        priority=9, priority_of=index_priority, documentation=DOCS[Archive.INDEX],
    ))
    register_archive_type(ArchiveType(
        Archive.INDIVIDUAL, "Entry", "object", all_contexts=_all_entries, variables=_entry_variables,
        fields=frozenset({"year", "month", "day", "slug", "id", "category"}), path_fields=_entry_fields,
        preload=_preload_entries, priority=10, priority_of=entry_priority, key_prefix="entry", ordered=True,
        documentation=DOCS[Archive.INDIVIDUAL],
    ))
    register_archive_type(ArchiveType(
        Archive.CATEGORY, "Category", "object", all_contexts=_all_categories, variables=_category_variables,
        fields=frozenset({"category"}), path_fields=_category_fields, preload=_preload_listings("categories"),
        priority=1, documentation=DOCS[Archive.CATEGORY],
    ))
    register_archive_type(ArchiveType(
        Archive.AUTHOR, "Author", "object", all_contexts=_all_authors, variables=_author_variables,
        fields=frozenset({"author", "author_id"}), path_fields=_author_fields, preload=_preload_listings("author"),
        priority=1,
        documentation=DOCS[Archive.AUTHOR],
    ))
    register_archive_type(ArchiveType(
        Archive.CATEGORY_MONTHLY, "Category-Monthly", "object", all_contexts=_all_category_months,
        variables=_category_month_variables, fields=frozenset({"category", "year", "month"}),
        preload=_preload_category_months,
        path_fields=_category_month_fields, priority=1, documentation=DOCS[Archive.CATEGORY_MONTHLY],
    ))
    for archive_type, fields, priority in (
        (Archive.MONTHLY, frozenset({"year", "month"}), 2),
        (Archive.YEARLY, frozenset({"year"}), 1),
        (Archive.DAILY, DATE_FIELDS, 4),
        (Archive.WEEKLY, DATE_FIELDS, 3),
    ):
        register_archive_type(ArchiveType(
            archive_type, Archive(archive_type).label, "period", all_contexts=_all_periods(archive_type),
            variables=_period_variables, fields=fields, path_fields=_period_fields, preload=_preload_periods,
            priority=priority, documentation=DOCS["period"],
        ))
    register_site_variables(blog_variables, documentation=SITE_DOCS, objects=documentation())
