"""Rendering templates stored in the database.

Each blog gets a Django template ``Engine`` whose loader holds the blog's template sources; it is cached
under ``(blog id, blog.templates_version)``, so every template is compiled once per version and a save
anywhere in the blog (a module included by others, say) invalidates exactly that blog's engine.
"""
from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.db.models.functions import TruncMonth
from django.template import Context, Engine
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone

from blog.conf import get_config as blog_config
from blog.models import Blog, Category, Comment, Entry, attach_categories, categories_of

from .conf import get_config
from .paths import ArchiveContext, ArchiveType, date_fields, format_path, period_end, period_start


def primary_category_slug(entry: Entry) -> str:
    """The {category} of an entry's path: its first category by slug (MT's primary category)."""
    return min((c.slug for c in categories_of(entry)), default="uncategorized")


def entry_fields(entry: Entry, *, category: bool = True) -> dict[str, str]:
    """The path fields of an entry's page: {year} {month} {day} (local date), {slug}, {id}, and {category}
    when asked (it reads the entry's categories)."""
    fields = {**date_fields(timezone.localdate(entry.published_on)), "slug": entry.slug, "id": str(entry.pk)}
    if category:
        fields["category"] = primary_category_slug(entry)
    return fields


def build_engine(sources: dict[str, str]) -> Engine:
    return Engine(
        loaders=[("django.template.loaders.cached.Loader", [("django.template.loaders.locmem.Loader", sources)])],
        builtins=["publishqueue.templatetags.mt"],
        autoescape=True,
    )


@dataclass
class Links:
    """Permalinks from the preferred archive mapping of each type."""

    blog: Blog
    patterns: dict[str, str] = field(default_factory=dict)

    def _url(self, archive_type: str, fields: dict[str, str]) -> str:
        pattern = self.patterns.get(archive_type)
        return self.blog.absolute_url(format_path(pattern, fields)) if pattern is not None else ""

    def entry_url(self, entry: Entry) -> str:
        uses_category = "{category}" in self.patterns.get(ArchiveType.INDIVIDUAL, "")
        return self._url(ArchiveType.INDIVIDUAL, entry_fields(entry, category=uses_category))

    def category_url(self, category: Category) -> str:
        return self._url(ArchiveType.CATEGORY, {"category": category.slug})

    def period_url(self, archive_type: str, start: dt.date) -> str:
        return self._url(archive_type, date_fields(start))


@dataclass
class BlogRenderer:
    blog_id: int
    version: int
    engine: Engine
    patterns: dict[str, str]
    # Cached module output ({% include_cached %}) for one content version of the blog.
    fragments: dict[str, str] = field(default_factory=dict)
    fragments_version: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fragment(self, name: str, content_version: int, render_fragment) -> str:
        """A module's output, rendered once per content version (MT's module caching)."""
        with self.lock:
            if self.fragments_version != content_version:
                self.fragments, self.fragments_version = {}, content_version
            cached = self.fragments.get(name)
        if cached is None:
            cached = render_fragment()
            with self.lock:
                if self.fragments_version == content_version:
                    self.fragments[name] = cached
        return cached


BLOG_WIDE = ("blog", "all_categories", "monthly_archives", "comment_action")


@dataclass(frozen=True)
class RenderScope:
    """Handed to templates as ``_mt``: what {% include_cached %} needs to render a blog-wide module."""

    blog: Blog
    renderer: BlogRenderer

    def render_cached(self, name: str, variables: Context) -> str:
        def render_fragment() -> str:
            blog_wide = {key: variables[key] for key in BLOG_WIDE if key in variables}
            blog_wide["_mt"] = self  # a cached module may include cached modules
            return self.renderer.engine.get_template(name).render(Context(blog_wide))

        return self.renderer.fragment(name, self.blog.content_version, render_fragment)


class _LRU:
    """A small thread-safe LRU of per-process render state, keyed by blog versions (so it needs no
    invalidation: a change makes a new key)."""

    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = build()  # outside the lock: it may query the database
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size():
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


renderers = _LRU(lambda: get_config()["ENGINE_CACHE_SIZE"])


def _load_renderer(blog: Blog) -> BlogRenderer:
    from .models import ArchiveMapping, Template

    sources = dict(Template.objects.filter(blog=blog).values_list("name", "source"))
    patterns: dict[str, str] = {}
    mappings = ArchiveMapping.objects.filter(template__blog=blog).order_by("-is_preferred", "id")
    for archive_type, pattern in mappings.values_list("archive_type", "path_pattern"):
        patterns.setdefault(archive_type, pattern)
    return BlogRenderer(blog.pk, blog.templates_version, build_engine(sources), patterns)


def compile_source(*, blog: Blog, name: str, source: str) -> None:
    """Compile ``source`` as template ``name`` of ``blog``; raises TemplateSyntaxError (admin validation)."""
    from .models import Template

    sources = dict(Template.objects.filter(blog=blog).values_list("name", "source")) if blog.pk else {}
    sources[name] = source
    build_engine(sources).get_template(name)


class _Lazy:
    """A value computed on first use, so templates that do not show it do not pay for its query."""

    def __init__(self, func: Any) -> None:
        self._func = func

    def __call__(self) -> Any:
        if not hasattr(self, "_value"):
            self._value = self._func()
        return self._value


def _with_links(entries: list[Entry], links: Links) -> list[Entry]:
    """Give each entry its permalink, once per entry object and set of links: a batch's entries are shown on
    several of its pages (their own, and their neighbours' links)."""
    for entry in entries:
        known = getattr(entry, "_permalink_of", None)
        if known is None or known[0] is not links.patterns or known[1] != links.blog.site_url:
            entry.permalink = links.entry_url(entry)
            entry._permalink_of = (links.patterns, links.blog.site_url)
    return entries


def _listed(entries, links: Links) -> list[Entry]:
    """Entries of a listing page, with their categories and permalinks."""
    return _with_links(attach_categories(entries), links)


def _live_entries(blog: Blog):
    return Entry.objects.live().filter(blog=blog)


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

    @classmethod
    def load(cls, blog_id: int, entry_ids=(), periods=()) -> BatchPages:
        pages = cls()
        if entry_ids:
            pages._load_entry_pages(blog_id, set(entry_ids))
        for start in range(0, len(periods := sorted(set(periods))), PERIODS_PER_QUERY):
            pages._load_periods(blog_id, periods[start : start + PERIODS_PER_QUERY])
        return pages

    def _load_entry_pages(self, blog_id: int, ids: set[int]) -> None:
        entries = Entry.objects.live().filter(blog_id=blog_id, pk__in=ids).in_bulk()
        authors = get_user_model().objects.in_bulk({e.author_id for e in entries.values() if e.author_id})
        for entry in entries.values():  # a blog has few authors: one object each, not one per entry
            if entry.author_id in authors:
                entry.author = authors[entry.author_id]
        pairs = Entry.objects.neighbours_of(blog_id, {pk: entry.published_on for pk, entry in entries.items()})
        # A batch's entries are mostly each other's neighbours: only the others are loaded.
        outside = {n for pair in pairs.values() for n in pair if n and n not in entries}
        near = {**entries, **Entry.objects.in_bulk(outside)} if outside else entries
        attach_categories(near.values())
        comments: dict[int, list[Comment]] = {pk: [] for pk in entries}
        for comment in Comment.objects.filter(entry_id__in=list(entries), status=Comment.Status.APPROVED):
            comments[comment.entry_id].append(comment)
        self.loaded |= ids
        self.entries.update(entries)
        self.neighbours.update((pk, (near.get(before), near.get(after))) for pk, (before, after) in pairs.items())
        self.comments.update(comments)

    def _load_periods(self, blog_id: int, periods: list[tuple[str, dt.date]]) -> None:
        """One query for the entries of many periods (each an indexed date range), shared out by local date."""
        ranges = Q()
        for archive_type, start in periods:
            lo, hi = period_bounds(archive_type, start)
            ranges |= Q(published_on__gte=lo, published_on__lt=hi)
        listed: dict[tuple[str, dt.date], list[Entry]] = {key: [] for key in periods}
        types = {archive_type for archive_type, _ in periods}
        for entry in attach_categories(Entry.objects.live().filter(ranges, blog_id=blog_id)):
            day = timezone.localdate(entry.published_on)
            for archive_type in types:
                found = listed.get((archive_type, period_start(archive_type, day)))
                if found is not None:
                    found.append(entry)
        self.periods.update(listed)


# Date ranges OR-ed in one query (SQLite limits an expression's depth to 1,000).
PERIODS_PER_QUERY = 200


def period_bounds(archive_type: str, start: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = timezone.get_current_timezone()
    end = period_end(archive_type, start)
    return (
        dt.datetime.combine(start, dt.time.min, tzinfo=tz),
        dt.datetime.combine(end, dt.time.min, tzinfo=tz),
    )


# Blog-wide lists (categories, monthly archives) shared by every page rendered for one content and
# templates version. Every content change bumps ``content_version`` in its own transaction and republishes
# what it touches, so a render that used an older list is always redone.
sidebars = _LRU(lambda: 16)


def _sidebar(blog: Blog, links: Links) -> dict[str, Any]:
    def categories() -> list[Category]:
        cats = list(
            Category.objects.filter(blog=blog, entries__status=Entry.Status.PUBLISHED)
            .annotate(count=Count("entries"))
            .order_by("label")
        )
        for cat in cats:
            cat.archive_url = links.category_url(cat)
        return cats

    def monthly_archives() -> list[dict[str, Any]]:
        rows = (
            _live_entries(blog)
            .annotate(month=TruncMonth("published_on"))
            .values("month")
            .annotate(count=Count("id"))
            .order_by("-month")
        )
        return [
            {"start": r["month"], "count": r["count"], "url": links.period_url(ArchiveType.MONTHLY, r["month"].date())}
            for r in rows
        ]

    return {"all_categories": _Lazy(categories), "monthly_archives": _Lazy(monthly_archives)}


def _context_for(
    blog: Blog, context: ArchiveContext, links: Links, pages: BatchPages | None = None
) -> dict[str, Any] | None:
    """Template variables for ``context``, or None when it no longer exists (its file should go)."""
    limit = blog_config()["INDEX_ENTRIES"]
    if context.archive_type == ArchiveType.INDEX:
        return {"entries": _listed(_live_entries(blog)[:limit], links), "archive_title": blog.name}
    if context.archive_type == ArchiveType.INDIVIDUAL:
        return _entry_context(blog, context.entry_id, links, pages)
    if context.archive_type == ArchiveType.CATEGORY:
        category = Category.objects.filter(blog=blog, pk=context.category_id).first()
        entries = _listed(_live_entries(blog).filter(categories=category), links) if category else []
        if not entries:
            return None
        category.archive_url = links.category_url(category)
        return {"category": category, "entries": entries, "archive_title": category.label}
    period = (context.archive_type, context.period_start)
    if pages is None or period not in pages.periods:
        pages = BatchPages.load(blog.pk, periods=[period])  # a single page is a batch of one
    entries = _with_links(pages.periods[period], links)
    start, end = period_bounds(*period)
    if not entries:
        return None
    return {
        "entries": entries,
        "period_start": start,
        "period_end": end,
        "archive_title": _period_title(context.archive_type, context.period_start),
    }


def _period_title(archive_type: str, start: dt.date) -> str:
    formats = {ArchiveType.MONTHLY: "%B %Y", ArchiveType.YEARLY: "%Y", ArchiveType.DAILY: "%B %-d, %Y"}
    return start.strftime(formats[archive_type])


def _entry_context(
    blog: Blog, entry_id: int | None, links: Links, pages: BatchPages | None
) -> dict[str, Any] | None:
    if not entry_id:
        return None
    if pages is None or entry_id not in pages.loaded:
        pages = BatchPages.load(blog.pk, entry_ids=[entry_id])
    entry = pages.entries.get(entry_id)
    if entry is None:
        return None  # no longer live
    previous_entry, next_entry = pages.neighbours[entry_id]
    _with_links([e for e in (entry, previous_entry, next_entry) if e is not None], links)
    for category in categories_of(entry):
        category.archive_url = links.category_url(category)
    return {
        "entry": entry,
        "previous_entry": previous_entry,
        "next_entry": next_entry,
        "comments": pages.comments[entry_id],
        "archive_title": entry.title,
        "comments_open": blog.comment_policy != Blog.CommentPolicy.CLOSED,
    }


@functools.lru_cache(maxsize=16)
def _comment_action(script_prefix: str, urlconf: str) -> str:
    """The comment form's URL: reversed once per script prefix and URLconf, not for every page."""
    return reverse("blog:comment_post", urlconf=urlconf)


def render(
    *, blog: Blog, template_name: str, context: ArchiveContext, url: str, pages: BatchPages | None = None
) -> str | None:
    """Render one file; None when the context is gone (entry unpublished, archive now empty). ``pages``:
    what a batch's entry pages and date archives show, loaded beforehand (loaded here otherwise)."""
    renderer = renderers.get((blog.pk, blog.templates_version), lambda: _load_renderer(blog))
    links = Links(blog, renderer.patterns)
    variables = _context_for(blog, context, links, pages)
    if variables is None:
        return None
    key = (blog.pk, blog.content_version, blog.templates_version)
    variables.update(sidebars.get(key, lambda: _sidebar(blog, links)))
    variables.update(
        blog=blog,
        archive_type=context.archive_type,
        file_url=url,
        comment_action=_comment_action(get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF),
        _mt=RenderScope(blog, renderer),
    )
    return renderer.engine.get_template(template_name).render(Context(variables))
