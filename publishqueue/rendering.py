"""Rendering templates stored in the database.

Each site gets a Django template ``Engine`` whose loader holds the site's template sources; it is cached
under ``(site id, site.templates_version)``, so every template is compiled once per version and a save
anywhere in the site (a module included by others, say) invalidates exactly that site's compiled templates.
What a page shows comes from the content app that registered its archive type (``registry``).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.template import Context, Engine

from .conf import get_config
from .paths import format_path
from .registry import ArchiveContext, Page, registry
from .sites import AbstractSite, site_locale
from .templatetags.mt import rendering_in


def build_engine(sources: dict[str, str]) -> Engine:
    return Engine(
        loaders=[("django.template.loaders.cached.Loader", [("django.template.loaders.locmem.Loader", sources)])],
        # i18n: {% translate %} and {% blocktranslate %} in the site's language (publishqueue.sites.site_locale).
        builtins=["django.templatetags.i18n", "publishqueue.templatetags.mt", *registry.template_builtins],
        autoescape=True,
    )


@dataclass
class Links:
    """Permalinks: the preferred archive mapping's pattern of each archive type, filled in."""

    site: AbstractSite
    patterns: dict[str, str] = field(default_factory=dict)

    def url(self, archive_type: str, fields: dict[str, str]) -> str:
        """The URL of the file of ``archive_type`` with these path fields ("" if the site has no such file)."""
        pattern = self.patterns.get(archive_type)
        return self.site.absolute_url(format_path(pattern, fields)) if pattern is not None else ""

    def uses(self, archive_type: str, name: str) -> bool:
        """Whether the permalink pattern of ``archive_type`` has the field ``name``."""
        return "{" + name + "}" in self.patterns.get(archive_type, "")


@dataclass
class SiteRenderer:
    site_id: int
    version: int
    engine: Engine
    patterns: dict[str, str]
    # Cached module output ({% include_cached %}) for one version of the site's site-wide variables.
    fragments: dict[str, str] = field(default_factory=dict)
    fragments_version: object = None  # the site row they were rendered for (AbstractSite.shown_key)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fragment(self, name: str, version: object, render_fragment) -> str:
        """A module's output, rendered once per version of the site-wide variables (MT's module caching) and
        locale."""
        with self.lock:
            if self.fragments_version != version:
                self.fragments, self.fragments_version = {}, version
            cached = self.fragments.get(name)
        if cached is None:
            cached = render_fragment()
            with self.lock:
                if self.fragments_version == version:
                    self.fragments[name] = cached
        return cached


@dataclass(frozen=True)
class RenderScope:
    """Handed to templates as ``_mt``: what {% include_cached %} needs to render a site-wide module."""

    site: AbstractSite
    renderer: SiteRenderer
    site_wide: dict[str, Any]  # the variables every page gets (a page's own may shadow them: not used here)
    # A preview or dry run (a private renderer): a module's output is not compared with the stored one.
    preview: bool = False

    def render_cached(self, name: str, variables: Context) -> str:
        def render_fragment() -> str:
            site_wide = {**self.site_wide, "_mt": self}  # a cached module may include cached modules
            return self.renderer.engine.get_template(name).render(Context(site_wide))

        def render_and_note() -> str:
            return _noting_change(self.site, name, render_fragment())

        return self.renderer.fragment(name, self.site.shown_key, render_fragment if self.preview else render_and_note)


def _noting_change(site: AbstractSite, name: str, output: str) -> str:
    """A cached module is rendered once per site-wide version: when its output differs from the last one seen
    (a month or category appeared, a name changed), every page that includes it is out of date. A job
    republishes them (not here: a worker may be rendering a batch); only the process that records the new hash
    queues it."""
    from .enqueue import NewJob, enqueue
    from .models import Template

    digest = hashlib.sha256(output.encode("utf-8")).hexdigest()
    module = Template.objects.filter(site=site, name=name)
    if digest in module.values_list("output_hash", flat=True):
        return output  # as before (most changes): read only, as a write would wait for the database's write lock
    if module.filter(output_hash="").update(output_hash=digest):
        return output  # its first output: every page so far was rendered with it
    if module.exclude(output_hash=digest).update(output_hash=digest):
        args = {"site": site.pk, "module": name}
        enqueue([NewJob(kind="republish-includers", unique_key=f"{site.pk}:{name}", args=args)])
    return output


class _LRU:
    """A small thread-safe LRU of per-process render state, keyed by site versions (so it needs no
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


def _load_renderer(site: AbstractSite) -> SiteRenderer:
    from .models import Template

    sources = dict(Template.objects.filter(site=site).values_list("name", "source"))
    return SiteRenderer(site.pk, site.templates_version, build_engine(sources), permalink_patterns(site.pk))


def permalink_patterns(site_id: int) -> dict[str, str]:
    """The pattern of each archive type's permalinks: its preferred mapping's (the first one's if none is)."""
    from .models import ArchiveMapping

    patterns: dict[str, str] = {}
    mappings = ArchiveMapping.objects.filter(template__site_id=site_id).order_by("-is_preferred", "id")
    for archive_type, pattern in mappings.values_list("archive_type", "path_pattern"):
        patterns.setdefault(archive_type, pattern)
    return patterns


def renderer_for(site: AbstractSite) -> SiteRenderer:
    return renderers.get((site.pk, site.templates_version), lambda: _load_renderer(site))


def links_for(site: AbstractSite) -> Links:
    """The site's permalinks (from its compiled templates' mappings, so cached with them)."""
    return Links(site, renderer_for(site).patterns)


def compile_source(*, site: AbstractSite, name: str, source: str) -> None:
    """Compile ``source`` as template ``name`` of ``site``; raises TemplateSyntaxError (admin validation)."""
    from .models import Template

    sources = dict(Template.objects.filter(site=site).values_list("name", "source")) if site.pk else {}
    sources[name] = source
    build_engine(sources).get_template(name)


# Site-wide variables shared by every page rendered for one site-wide and templates version. Every change of
# what they give bumps ``site_wide_version`` in its own transaction (``versioning.bump_content_version``) and
# republishes what it touches, so a render that used an older value is always redone.
site_variables = _LRU(lambda: 16)


def _site_variables(site: AbstractSite, links: Links) -> dict[str, Any]:
    build = registry.site_variables
    return build(site, links) if build is not None else {}


def render(
    *, site: AbstractSite, template_name: str, context: ArchiveContext, url: str, batch: Any = None
) -> str | None:
    """Render one file; None when what it shows is gone (its file should go). ``batch``: what the archive
    type's ``preload`` loaded for a batch of pages (loaded here otherwise)."""
    # The site's time zone and language (nothing to do for the install's); translations cached per language.
    with site_locale(site), rendering_in(site.language_code):
        renderer = renderer_for(site)
        links = Links(site, renderer.patterns)
        variables = registry.archive_type(context.archive_type).variables(Page(site, context, links, batch))
        if variables is None:
            return None
        shared = site_variables.get(site.shown_key, lambda: _site_variables(site, links))
        variables.update(shared)
        scope = RenderScope(site, renderer, shared)
        variables.update(archive_type=context.archive_type, file_url=url, _mt=scope)
        return renderer.engine.get_template(template_name).render(Context(variables))


# Private renderers of previews and dry runs (their sources include unsaved edits), by the caller's key.
preview_renderers = _LRU(lambda: 8)


def render_preview(
    *,
    site: AbstractSite,
    template_name: str,
    context: ArchiveContext,
    url: str,
    sources: dict[str, str] | None = None,
    variables: dict[str, Any] | None = None,
    batch: Any = None,
    cache_key: tuple | None = None,
) -> str | None:
    """Render one page in memory and store nothing: with ``sources`` replacing the saved source of some templates
    (unsaved edits; modules included), and ``variables`` replacing what the page's archive type gives (an unsaved
    entry). A private engine compiles the sources (kept under ``cache_key`` when given: a dry run's pages share it);
    cached modules are rendered in it and never compared with their stored output. None when the page's object is
    gone."""
    from .models import Template

    def build() -> SiteRenderer:
        known = dict(Template.objects.filter(site=site).values_list("name", "source"))
        known.update(sources or {})
        return SiteRenderer(site.pk, site.templates_version, build_engine(known), permalink_patterns(site.pk))

    key = (*cache_key, site.pk, site.templates_version, site.content_version) if cache_key else None
    renderer = preview_renderers.get(key, build) if key else build()
    links = Links(site, renderer.patterns)
    if variables is None:
        variables = registry.archive_type(context.archive_type).variables(Page(site, context, links, batch))
        if variables is None:
            return None
    shared = _site_variables(site, links)
    variables = {**variables, **shared}
    variables.update(
        archive_type=context.archive_type, file_url=url, _mt=RenderScope(site, renderer, shared, preview=True)
    )
    return renderer.engine.get_template(template_name).render(Context(variables))
