"""Front-end cache purge (Wagtail's frontendcache pattern): after a batch is published, the URLs whose content
changed (written, moved, removed: never the unchanged ones) are purged from the caches configured in
``PUBLISHQUEUE["PURGE_BACKENDS"]``::

    PUBLISHQUEUE = {
        "PURGE_BACKENDS": {
            "varnish": {"BACKEND": "publishqueue.purge.HTTPPurgeBackend", "LOCATION": "http://127.0.0.1:6081"},
        },
    }

A backend is a class taking its options (the other keys, lower-cased) and purging a list of absolute URLs. A
purge that fails is logged (one line per backend and batch), never raised: the files are published, the job is
done; the cache serves the old page until it expires.
"""
from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .conf import get_config

if TYPE_CHECKING:
    from .publisher import PublishResult

logger = logging.getLogger("mtdispatch.purge")


class PurgeBackend:
    """Purges absolute URLs from one cache. ``hostnames``: only URLs of these hosts (empty: all)."""

    def __init__(self, name: str, *, hostnames: Iterable[str] = (), **options: object) -> None:
        if options:
            raise ImproperlyConfigured(f"Purge backend {name!r}: unknown options {', '.join(sorted(options))}.")
        self.name = name
        self.hostnames = {h.lower() for h in hostnames}

    def wants(self, url: str) -> bool:
        return not self.hostnames or (urlsplit(url).hostname or "").lower() in self.hostnames

    def purge(self, urls: list[str]) -> None:
        raise NotImplementedError


class HTTPPurgeBackend(PurgeBackend):
    """``PURGE <path>`` with the URL's Host to a cache at ``LOCATION`` (Varnish with a VCL that allows it, Squid,
    nginx's proxy_cache_purge): one kept-alive connection per batch. Any answer but 2xx is a failure."""

    def __init__(self, name: str, *, location: str = "", timeout: float = 5.0, **options: object) -> None:
        super().__init__(name, **options)
        parts = urlsplit(location)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(f"Purge backend {name!r}: LOCATION must be an http(s) URL, not {location!r}.")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.timeout = float(timeout)

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=self.timeout)

    def purge(self, urls: list[str]) -> None:
        failures: list[str] = []
        connection = self._connect()
        try:
            for url in urls:
                parts = urlsplit(url)
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                try:
                    connection.request("PURGE", path, headers={"Host": parts.netloc})
                    response = connection.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException) as exc:
                    failures.append(f"{url}: {type(exc).__name__}: {exc}")
                    connection.close()
                    connection = self._connect()
                    continue
                if not 200 <= response.status < 300:
                    failures.append(f"{url}: {response.status} {response.reason}")
        finally:
            connection.close()
        if failures:
            raise PurgeError(f"{len(failures)} of {len(urls)} URL(s) not purged ({failures[0]})")


class PurgeError(Exception):
    pass


_backends: list[PurgeBackend] | None = None
_lock = threading.Lock()


def backends() -> list[PurgeBackend]:
    global _backends
    with _lock:
        if _backends is None:
            _backends = [_make(name, config) for name, config in get_config()["PURGE_BACKENDS"].items()]
        return _backends


def _make(name: str, config: dict) -> PurgeBackend:
    config = dict(config)
    backend = config.pop("BACKEND", None)
    if not backend:
        raise ImproperlyConfigured(f"Purge backend {name!r} has no BACKEND.")
    options = {key.lower(): value for key, value in {**config.pop("OPTIONS", {}), **config}.items()}
    return import_string(backend)(name, **options)


def _forget(*, setting: str, **kwargs) -> None:
    global _backends
    if setting == "PUBLISHQUEUE":
        _backends = None


setting_changed.connect(_forget, dispatch_uid="publishqueue-purge")


def purge_urls(urls: Iterable[str]) -> int:
    """Purge ``urls`` through every backend; failures are logged. Returns how many URLs were sent (per backend)."""
    urls = sorted(set(urls))
    sent = 0
    for backend in backends():
        wanted = [url for url in urls if backend.wants(url)]
        if not wanted:
            continue
        try:
            backend.purge(wanted)
        except Exception as exc:  # noqa: BLE001 - a cache that is down must not fail publishing
            logger.warning("Purge through %r failed: %s", backend.name, exc)
        else:
            sent += len(wanted)
    return sent


def changed_urls(results: Iterable[PublishResult]) -> list[str]:
    """The URLs whose content these publish results changed: the file's, and where it moved from."""
    from .sites import get_site_model

    results = [r for r in results if r.status != "unchanged" and r.site_id]
    sites = get_site_model().objects.in_bulk({r.site_id for r in results})
    urls = []
    for result in results:
        site = sites.get(result.site_id)
        if site is None:
            continue
        urls.append(site.absolute_url(result.path))
        if result.moved_from:
            urls.append(site.absolute_url(result.moved_from))
    return urls


def purge_results(results: Iterable[PublishResult]) -> int:
    """After a batch: purge what changed (nothing to do, and no query, without backends)."""
    results = list(results)
    if not results or not backends():
        return 0
    return purge_urls(changed_urls(results))
