"""Dynamically published pages, rendered once per change of what they show and served from Django's cache.

A page is cached under its site row (every stored field: the ``templates_version`` bumped by any template or
mapping saved, the ``content_version`` bumped by any entry, category, comment or author name shown, the name,
URL, time zone, language...), its path in the site and the install's time zone and language. Every change of what
a page shows, or of which page a path is (a mode switched, a mapping or a slug changed), bumps a version or
changes a field of the site row in the transaction that makes it, so the next request misses and renders the
page again. The site row is read before the page is rendered, so a page is never stored under a key older than
what it shows. Nothing is ever deleted from the cache: old keys age out. A page whose template shows the time of
the request (``{% now %}``) is as fresh as its site's last change.

A hit costs the site lookup every request makes and one cache read. ``PUBLISHQUEUE["DYNAMIC_CACHE"]`` names the
cache (one of ``CACHES``; "" renders every request), ``DYNAMIC_CACHE_SECONDS`` bounds how long a page is kept.
"""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import caches

from .conf import get_config
from .models import FileInfo
from .publisher import render_fileinfo
from .sites import AbstractSite

_GONE = ("gone",)
MISS = object()


def page_key(site: AbstractSite, relative: str) -> str:
    row = tuple(getattr(site, field.attname) for field in site._meta.concrete_fields)
    digest = hashlib.blake2b(repr((row, relative, settings.TIME_ZONE, settings.LANGUAGE_CODE)).encode(),
                             digest_size=16).hexdigest()
    return f"mtd:dyn:{site.pk}:{site.templates_version}:{site.content_version}:{digest}"


def _cache():
    alias = get_config()["DYNAMIC_CACHE"]
    return caches[alias] if alias else None


def cached_page(site: AbstractSite, relative: str):
    """The cached content of the Dynamic page at ``relative`` (None: the page is gone), or ``MISS``. ``site`` must
    be read from the database in this request (its versions are the key)."""
    cache = _cache()
    if cache is None:
        return MISS
    found = cache.get(page_key(site, relative), MISS)
    return None if found == _GONE else found


def render_page(pages: list[FileInfo], site: AbstractSite) -> str | None:
    """Render the Dynamic page at a path (``pages``: the rows there, looked up after ``site`` was read, in order of
    preference) and cache it under ``site``'s key: the first whose object is not gone; None when all are gone.
    Raises PublishError (not cached) when a template fails."""
    content = None
    for fileinfo in pages:
        content = render_fileinfo(fileinfo)
        if content is not None:
            break
    cache = _cache()
    if cache is not None:
        cache.set(page_key(site, pages[0].path), _GONE if content is None else content,
                  get_config()["DYNAMIC_CACHE_SECONDS"])
    return content
