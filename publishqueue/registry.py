"""What content apps tell publishqueue, which never imports them (the way Wagtail's frontend cache asks pages
for their URLs and django-bakery asks models to build themselves).

A content app registers, in its ``AppConfig.ready()``:

* its **archive types** (``register_archive_type``): the path fields a mapping's pattern may use, every context
  a template of that type has, the path fields of given contexts (in bulk), and the template variables of one
  page (``None`` when what it showed is gone: its file is removed). Optionally a ``preload`` that loads what a
  worker's batch of pages shows in a few queries;
* the **site-wide variables** every page gets (``register_site_variables``), also the only ones a cached
  module (``{% include_cached %}``) sees;
* its **periodic tasks** (``publishqueue.periodic.register``).

What a content change touches (its dependency rules) stays in the content app: it turns a change into
archive contexts and hands them to ``publishqueue.services.publish_contexts``.

publishqueue calls what an archive type registered (``all_contexts``, ``path_fields``, ``preload``, ``variables``)
and the site-wide variables with the site's time zone and language active (``sites.site_locale``): a content
app cuts periods and formats dates with ``django.utils.timezone``'s current zone and translates with Django's
functions, and each site gets its own.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from .rendering import Links
    from .sites import AbstractSite

Fields = dict[str, str]

# Context key prefixes by archive type (the type's name unless it registered another).
_key_prefixes: dict[str, str] = {}


@dataclass(frozen=True)
class ArchiveContext:
    """What one file of an archive type shows: the single page of an index, one object, or one period."""

    archive_type: str
    object_id: int | None = None
    period_start: dt.date | None = None

    @property
    def key(self) -> str:
        """Unique among a mapping's files: "index", "entry:12", "monthly:2026-03-01"."""
        if self.object_id is not None:
            prefix = f"{_key_prefixes.get(self.archive_type, self.archive_type)}:{self.object_id}"
            # An object's period (MT's Category-Monthly): both.
            return f"{prefix}:{self.period_start.isoformat()}" if self.period_start is not None else prefix
        if self.period_start is not None:
            return f"{self.archive_type}:{self.period_start.isoformat()}"
        return self.archive_type


@dataclass(frozen=True)
class Page:
    """One page being rendered: handed to an archive type's ``variables``."""

    site: AbstractSite
    context: ArchiveContext
    links: Links
    # What the type's ``preload`` loaded for the batch this page is in (None: load what the page needs).
    batch: Any = None


@dataclass(frozen=True)
class ArchiveType:
    name: str
    label: str
    # "single": one file per template (an index); "object": one per object (context.object_id), or per object
    # and period when its contexts have both (MT's Category-Monthly); "period": one per period (context.period_start).
    identified_by: Literal["single", "object", "period"]
    # Every context a template of this type has on a site (a full publish).
    all_contexts: Callable[[AbstractSite], Iterable[ArchiveContext]]
    # The template variables of a page, or None when what it shows is gone.
    variables: Callable[[Page], dict[str, Any] | None]
    # Pattern fields, e.g. {"year", "month", "slug"}.
    fields: frozenset[str] = frozenset()
    # Path fields of contexts, by context key (None: gone); ``wanted`` is the fields the patterns use.
    path_fields: Callable[[AbstractSite, Sequence[ArchiveContext], frozenset[str]], Mapping[str, Fields | None]] = (
        lambda site, contexts, wanted: {c.key: {} for c in contexts}
    )
    # Loads what a batch of this type's pages show (``Page.batch``), in a few queries.
    preload: Callable[[AbstractSite, Sequence[ArchiveContext]], Any] | None = None
    # Default queue priority of its files (PUBLISHQUEUE["PRIORITIES"] overrides it).
    priority: int = 0
    # Or a file's priority from its path and whether its mapping is the preferred one (MT gives an entry's
    # permalink page 10 and its other pages 5, and index files named index, default, atom or feed 9, others 8).
    priority_of: Callable[[str, bool], int] | None = None
    # Prefix of its context keys (kept per type so stored keys stay stable).
    key_prefix: str = ""
    # The variables its pages get, name -> description (the template admin's reference).
    documentation: Mapping[str, str] = field(default_factory=dict)
    # Its files are queued in the order ``path_fields`` returns them (entries by date: a worker's batch then
    # holds neighbouring pages, which share what they load), after the files of unordered types.
    ordered: bool = False

    def context(self, *, object_id: int | None = None, period_start: dt.date | None = None) -> ArchiveContext:
        return ArchiveContext(self.name, object_id=object_id, period_start=period_start)


@dataclass
class Registry:
    archive_types: dict[str, ArchiveType] = field(default_factory=dict)
    site_variables: Callable[[AbstractSite, Links], dict[str, Any]] | None = None
    template_builtins: list[str] = field(default_factory=list)
    # For the template admin's reference: the site-wide variables (name -> description), and the fields of the
    # objects templates get (object name -> field -> description).
    site_variables_documentation: dict[str, str] = field(default_factory=dict)
    objects_documentation: dict[str, dict[str, str]] = field(default_factory=dict)

    def archive_type(self, name: str) -> ArchiveType:
        try:
            return self.archive_types[name]
        except KeyError:
            raise LookupError(f"No content app registered the archive type {name!r}.") from None

    def choices(self) -> list[tuple[str, str]]:
        return [(t.name, t.label) for t in self.archive_types.values()]


registry = Registry()


def register_archive_type(archive_type: ArchiveType) -> None:
    known = registry.archive_types.get(archive_type.name)
    if known is not None and known.variables.__module__ != archive_type.variables.__module__:
        raise ImproperlyConfigured(f"Two content apps register the archive type {archive_type.name!r}.")
    registry.archive_types[archive_type.name] = archive_type
    if archive_type.key_prefix:
        _key_prefixes[archive_type.name] = archive_type.key_prefix


def register_site_variables(
    func: Callable[[AbstractSite, Links], dict[str, Any]],
    *,
    documentation: Mapping[str, str] | None = None,
    objects: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """``func(site, links)`` returns the variables every page of the site gets (values may be callables,
    evaluated when a template uses them). They are computed once per templates version and ``site_wide_version``:
    a change of what they give must bump it (``versioning.bump_content_version``, whose ``site_wide=False`` is
    only for a change the content app knows they do not show).
    ``documentation`` describes them, ``objects`` the fields of the objects pages get (the admin shows both)."""
    registry.site_variables = func
    registry.site_variables_documentation = dict(documentation or {})
    registry.objects_documentation = {name: dict(fields) for name, fields in (objects or {}).items()}


def register_template_builtins(*modules: str) -> None:
    """Template tag libraries loaded in every site template without ``{% load %}``."""
    for module in modules:
        if module not in registry.template_builtins:
            registry.template_builtins.append(module)


def archive_type(name: str) -> ArchiveType:
    return registry.archive_type(name)
