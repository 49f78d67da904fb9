"""Publish targets: where a site's files go (django-bakery's and Wagtail's pattern: named backends, chosen by a
dotted path in the settings, picked per site).

``PUBLISHQUEUE["TARGETS"]`` names them; each site picks one by name in its ``publish_target`` field (blank:
``"default"``)::

    STORAGES = {
        ...,
        "published": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "www-example-com", "file_overwrite": True, "querystring_auth": False},
        },
    }
    PUBLISHQUEUE = {
        "TARGETS": {
            # the built-in default: the site root on the local file system
            "default": {"BACKEND": "publishqueue.targets.FileSystemTarget"},
            "s3": {"BACKEND": "publishqueue.targets.StorageTarget", "STORAGE": "published",
                   "CACHE_CONTROL": "public, max-age=300"},
        },
    }

* ``FileSystemTarget`` is today's publisher: atomic writes into the site root, unchanged files left alone (checked
  against the disk), never a byte outside the site root. The publisher runs its own code for it.
* ``StorageTarget`` writes through any Django ``Storage`` (``STORAGE``: an alias of ``STORAGES``, or a dict with
  ``BACKEND`` and ``OPTIONS``; the target makes its own instance). First of all S3-compatible object storage through
  django-storages' ``S3Storage``: one PUT per changed file (an object appears whole or not at all), with its
  content type (``text/html; charset=utf-8``...) and ``CACHE_CONTROL``; unchanged files are skipped by the hash the
  FileInfo stores (no request at all); moved files are uploaded at their new key, then deleted at the old one;
  removed files are deleted. Keys are the site-relative paths, under the storage's own ``location``: they pass the
  same checks as file paths (relative, no ``..``, no dot names, web extensions only).

Fencing holds for every target: a queue worker's uploads happen in ``PublishFinishing.place``, inside the
transaction that holds the rows of the jobs it still holds locked (see ``Worker._finish``), never for a job it
lost to another worker while it was frozen past its lease.
"""
from __future__ import annotations

import logging
import mimetypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .conf import get_config
from .paths import PathError, check_output_name, check_relative_path
from .threads import LazyPool

if TYPE_CHECKING:
    from .models import FileInfo
    from .publisher import PublishResult
    from .sites import AbstractSite

logger = logging.getLogger("mtdispatch.publisher")

DEFAULT = "default"
# Threads uploading a batch's files (each mostly waits on the network).
UPLOAD_THREADS = 8

# Types Python's mimetypes may not know; everything the publisher writes is UTF-8 text.
CONTENT_TYPES = {
    "html": "text/html", "htm": "text/html", "xhtml": "application/xhtml+xml", "xml": "application/xml",
    "rss": "application/rss+xml", "atom": "application/atom+xml", "rdf": "application/rdf+xml",
    "json": "application/json", "jsonld": "application/ld+json", "txt": "text/plain", "css": "text/css",
    "js": "text/javascript", "mjs": "text/javascript", "svg": "image/svg+xml", "ics": "text/calendar",
    "csv": "text/csv", "webmanifest": "application/manifest+json", "map": "application/json",
}


def content_type(name: str) -> str:
    """The Content-Type of a published file, by its extension, with the charset the publisher writes."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    found = CONTENT_TYPES.get(extension) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{found}; charset=utf-8"


class PublishTarget:
    """Where a site's files go. ``local`` targets are the file system (the publisher's own code writes them)."""

    local = False

    def __init__(self, name: str, **options: object) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class FileSystemTarget(PublishTarget):
    """The site root on the local file system (the default): the publisher writes it itself."""

    local = True


@dataclass(frozen=True)
class Upload:
    """A rendered file waiting to be uploaded (by ``PublishFinishing.place``, fenced) and the key it moved from."""

    target: StorageTarget
    name: str
    data: bytes
    stale: str = ""


class StorageTarget(PublishTarget):
    """Any Django ``Storage`` that overwrites in place (S3Storage with ``file_overwrite``, the default)."""

    def __init__(self, name: str, *, storage: object = None, cache_control: str = "", **options: object) -> None:
        super().__init__(name)
        if options:
            raise ImproperlyConfigured(f"Publish target {name!r}: unknown options {', '.join(sorted(options))}.")
        if not storage:
            raise ImproperlyConfigured(f"Publish target {name!r}: STORAGE (a STORAGES alias, or a dict) is required.")
        self.storage = _make_storage(name, storage)
        if cache_control:
            if not isinstance(getattr(self.storage, "object_parameters", None), dict):
                raise ImproperlyConfigured(
                    f"Publish target {name!r}: CACHE_CONTROL needs a storage with object parameters (S3Storage)."
                )
            self.storage.object_parameters = {**self.storage.object_parameters, "CacheControl": cache_control}

    @property
    def _direct_put(self) -> bool:
        """django-storages' S3Storage, uncompressed and overwriting: one PutObject call, as ``save`` would make
        through s3transfer's managed upload (which cost twice the time per small file: a transfer manager and its
        threads per call)."""
        storage = self.storage
        return (
            type(storage).__module__ == "storages.backends.s3" and getattr(storage, "file_overwrite", False)
            and not getattr(storage, "gzip", True) and hasattr(storage, "_get_write_parameters")
        )

    def _put(self, name: str, content: ContentFile) -> None:
        from storages.utils import clean_name

        storage = self.storage
        key = storage._normalize_name(clean_name(name))
        params = storage._get_write_parameters(key, content)
        storage.connection.meta.client.put_object(Bucket=storage.bucket_name, Key=key, Body=content.read(), **params)

    def key(self, relative: str) -> str:
        """The storage name of a site-relative path: the file system's rules (no escape, web files only)."""
        return check_output_name(check_relative_path(relative))

    def save(self, name: str, data: bytes) -> None:
        """One object, whole (S3: one PUT), with its content type."""
        content = ContentFile(data)
        content.content_type = content_type(name)
        if self._direct_put:
            self._put(name, content)
            return
        saved = self.storage.save(name, content)
        if saved != name:
            self.storage.delete(saved)
            raise OSError(
                f"storage {type(self.storage).__name__} saved {name!r} as {saved!r}: it must overwrite in place "
                "(S3Storage: file_overwrite=True; FileSystemStorage: allow_overwrite=True)"
            )

    def delete(self, relative: str, *, strict: bool = False) -> None:
        """Remove a published file if it is there; a failure is logged, not raised (the old key stays behind), or
        with ``strict`` raised (a worker removing a page: its job fails and is retried, and until then its FileInfo
        and the ledger still know the key)."""
        try:
            self.storage.delete(self.key(relative))
        except PathError as exc:
            logger.warning("Not removing %r from target %r: %s", relative, self.name, exc)
        except Exception as exc:  # noqa: BLE001 - any storage error: logged, the publish goes on
            if strict:
                raise
            logger.warning("Could not remove %r from target %r: %s: %s", relative, self.name, type(exc).__name__, exc)

    def read(self, relative: str) -> bytes | None:
        """The published content of a file, or None if it is not there."""
        try:
            with self.storage.open(self.key(relative), "rb") as handle:
                return handle.read()
        except Exception:  # noqa: BLE001 - missing, refused or unreachable: nothing published to compare with
            return None

    def publish(
        self, fileinfo: FileInfo, data: bytes, digest: str, *, force: bool, defer_record: bool
    ) -> PublishResult:
        """``publish_file`` for this target, after rendering: skip unchanged (by the stored hash: no request),
        else upload now (``defer_record`` false: a request, a command) or leave the upload to the batch's
        ``PublishFinishing`` (a queue worker: fenced)."""
        from .publisher import PublishError, PublishResult, record_published, record_template_error

        try:
            name = self.key(fileinfo.path)
        except PathError as exc:
            record_template_error(fileinfo.template, str(exc))
            raise PublishError(str(exc)) from exc
        site_id = fileinfo.site_id
        if digest == fileinfo.content_hash and fileinfo.published_path == fileinfo.path and not force:
            return PublishResult(fileinfo.pk, fileinfo.path, "unchanged", len(data), site_id=site_id)
        moved = fileinfo.published_path if fileinfo.published_path and fileinfo.published_path != fileinfo.path else ""
        from django.utils import timezone

        now = timezone.now()
        ledger = {"site_id": site_id, "new_path": fileinfo.published_path != fileinfo.path, "moved_from": moved}
        upload = Upload(self, name, data, moved)
        if defer_record:
            result = PublishResult(fileinfo.pk, fileinfo.path, "written", len(data), digest, now, upload=upload,
                                   **ledger)
        else:
            error = _upload(upload)
            if error is not None:
                raise PublishError(f"{fileinfo.path} could not be written to target {self.name!r}: {error}")
            result = PublishResult(fileinfo.pk, fileinfo.path, "written", len(data), digest, now, **ledger)
            record_published([result])
        fileinfo.content_hash, fileinfo.published_path, fileinfo.published_at = digest, fileinfo.path, now
        return result


def _make_storage(name: str, storage: object):
    from django.core.files.storage import storages

    if isinstance(storage, str):
        configured = getattr(settings, "STORAGES", {})
        if storage not in configured:
            raise ImproperlyConfigured(f"Publish target {name!r}: no storage {storage!r} in STORAGES.")
        storage = configured[storage]
    if not isinstance(storage, dict) or "BACKEND" not in storage:
        raise ImproperlyConfigured(f"Publish target {name!r}: STORAGE must name a STORAGES alias or be a dict "
                                   "with BACKEND (and OPTIONS).")
    return storages.create_storage(storage)


def _upload(upload: Upload) -> Exception | None:
    """Save an upload's object, then delete the key it moved from. Returns the error instead of raising."""
    try:
        upload.target.save(upload.name, upload.data)
    except Exception as exc:  # noqa: BLE001 - any storage error fails this file's job (retried), not the batch
        return exc
    if upload.stale:
        upload.target.delete(upload.stale)
    return None


# -- the targets by name ---------------------------------------------------------------------------------------

_targets: dict[str, PublishTarget] = {}
_lock = threading.Lock()


def target_choices() -> list[tuple[str, str]]:
    """The targets a site may choose (blank: the default)."""
    names = sorted(set(get_config()["TARGETS"]) - {DEFAULT})
    return [("", "default")] + [(name, name) for name in names]


def get_target(name: str) -> PublishTarget:
    """The target configured under ``name`` ("" is the default), made once per process."""
    name = name or DEFAULT
    found = _targets.get(name)
    if found is not None:
        return found
    with _lock:
        if name not in _targets:
            _targets[name] = _make_target(name)
        return _targets[name]


def _make_target(name: str) -> PublishTarget:
    config = get_config()["TARGETS"].get(name)
    if config is None:
        raise ImproperlyConfigured(f"No publish target {name!r} in PUBLISHQUEUE['TARGETS'].")
    config = dict(config)
    backend = config.pop("BACKEND", None)
    if not backend:
        raise ImproperlyConfigured(f"Publish target {name!r} has no BACKEND.")
    options = {key.lower(): value for key, value in {**config.pop("OPTIONS", {}), **config}.items()}
    return import_string(backend)(name, **options)


def target_for(site: AbstractSite) -> PublishTarget:
    return get_target(getattr(site, "publish_target", "") or DEFAULT)


def check_target_name(name: str) -> None:
    """For a site's form: the name must be configured (ImproperlyConfigured otherwise)."""
    get_target(name)


def _forget_targets(*, setting: str, **kwargs) -> None:
    if setting in ("PUBLISHQUEUE", "STORAGES"):
        _targets.clear()


setting_changed.connect(_forget_targets, dispatch_uid="publishqueue-targets")


# -- a batch's files, put in place fenced ------------------------------------------------------------------------

class PublishFinishing:
    """The finisher of a batch's publish jobs (see ``jobs.Finisher``): its files on the file system go through
    ``StagedFiles`` (synced in the background, renamed into place fenced); its files for storage targets are
    uploaded in ``place``, in parallel, inside the worker's fenced transaction (only for the jobs it still holds),
    and recorded there. After the commit, ``cleanup`` purges the URLs whose content changed from front-end caches
    (``publishqueue.purge``)."""

    def __init__(self, results: list[PublishResult]) -> None:
        from .publisher import StagedFiles

        self.results = results
        self._files = StagedFiles(results)
        self._uploads = [r for r in results if r.status == "written" and r.upload is not None]
        self._removals = [r for r in results if r.status == "removed" and r.remove_later]
        self._changed: list[PublishResult] = []

    def sync(self) -> None:
        self._files.sync()

    def place(
        self, keep: Callable[[PublishResult], bool], *, record: bool = True,
        settled: Callable[[PublishResult], bool] | None = None,
    ) -> dict[PublishResult, Exception]:
        from .publisher import PublishError, record_published, remove_fenced

        # Removals first: a page written in this batch may have taken the path of one whose object went.
        settled = settled or keep
        failed: dict[PublishResult, Exception] = remove_fenced([r for r in self._removals if keep(r) and settled(r)])
        failed.update(self._files.place(keep, record=record))
        chosen = [r for r in self._uploads if keep(r)]
        if chosen:
            errors = dict(zip(chosen, _upload_threads.get().map(lambda r: _upload(r.upload), chosen), strict=True))
            for result, error in errors.items():
                if error is not None:
                    failed[result] = PublishError(
                        f"{result.path} could not be written to target {result.upload.target.name!r}: {error}"
                    )
            if record:
                record_published([r for r in chosen if errors[r] is None])
        self._changed = [  # a removal left for the job's next run (its object may be back) changed nothing
            r for r in self.results
            if r.status != "unchanged" and r not in failed and keep(r) and (not r.remove_later or settled(r))
        ]
        return failed

    def cleanup(self) -> None:
        self._files.cleanup()
        changed, self._changed = self._changed, []
        if changed:
            from . import purge

            purge.purge_results(changed)

    def discard(self) -> None:
        self._files.discard()
        self._changed = []


_upload_threads = LazyPool(UPLOAD_THREADS, "mtdispatch-upload")
