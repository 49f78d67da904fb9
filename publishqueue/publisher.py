"""Publishing one file: render, skip if unchanged, write atomically, never outside the site root."""
from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from django.db import connection, transaction
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.utils import timezone

from .conf import get_config
from .models import FileInfo, PublishingMode, Template
from .paths import PathError, resolve_output_path
from .registry import ArchiveContext
from .rendering import render

logger = logging.getLogger("mtdispatch.publisher")

# Threads syncing a batch's files.
SYNC_THREADS = 8

Status = Literal["written", "unchanged", "removed", "dynamic"]


class PublishError(Exception):
    """A file could not be published; the message says which template and why."""


@dataclass(frozen=True)
class PublishResult:
    fileinfo_id: int
    path: str
    status: Status
    bytes: int = 0
    digest: str = ""
    published_at: dt.datetime | None = None
    # With defer_record: the temp file holding the content, for put_in_place_later() to sync and rename to
    # ``target``, and the file it leaves behind when the path moved (removed once the new one is in place).
    staged: str = ""
    target: str = ""
    stale: str = ""


def context_of(fileinfo: FileInfo) -> ArchiveContext:
    return ArchiveContext(fileinfo.archive_type, object_id=fileinfo.object_id, period_start=fileinfo.period_start)


def render_fileinfo(fileinfo: FileInfo, batch: object = None) -> str | None:
    """The file's content now, or None if what it shows is gone. Template errors become PublishError
    and are recorded on the template so the admin shows them. ``batch``: what its archive type preloaded."""
    template = fileinfo.template
    try:
        return render(
            site=fileinfo.site, template_name=template.name, context=context_of(fileinfo), url=fileinfo.url,
            batch=batch,
        )
    except (TemplateSyntaxError, TemplateDoesNotExist) as exc:
        message = f"Template {template.name!r} could not be compiled: {exc}"
    except Exception as exc:  # noqa: BLE001 - any error in user template code is reported, not raised raw
        message = f"Template {template.name!r} failed to render {fileinfo.path!r}: {type(exc).__name__}: {exc}"
    record_template_error(template, message)
    raise PublishError(message)


def record_template_error(template: Template, message: str) -> None:
    Template.objects.filter(pk=template.pk).update(last_error=message, last_error_at=timezone.now())


def publish_file(
    *, fileinfo: FileInfo, force: bool = False, batch: object = None, defer_record: bool = False
) -> PublishResult:
    """Bring one output file up to date with the database.

    Unchanged content is not rewritten (the mtime stays); changed content goes to a temp file in the same
    directory, is fsynced and renamed over the old one, so a reader sees the old file or the new one.
    A file whose context is gone is removed, as is one whose template is now Dynamically published.
    With ``defer_record`` the content is only staged in its temp file: the caller passes the result to
    ``record_published`` (or ``record_published_later``), which syncs a whole batch's files in parallel,
    renames them into place and records their hashes (a worker starts that once per batch, in the background
    while it runs the next batch, and completes the jobs after it; fsynced one by one, the waits left it idle
    a third of its time). If that never happens, the job runs again.
    """
    if fileinfo.template.mode == PublishingMode.DYNAMIC:
        _remove_published(fileinfo)
        return PublishResult(fileinfo.pk, fileinfo.path, "dynamic")
    content = render_fileinfo(fileinfo, batch)
    if content is None:
        _remove_published(fileinfo)
        FileInfo.objects.filter(pk=fileinfo.pk).delete()
        return PublishResult(fileinfo.pk, fileinfo.path, "removed")
    data = content.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    try:
        target = resolve_output_path(fileinfo.site.site_root, fileinfo.path)
    except PathError as exc:
        record_template_error(fileinfo.template, str(exc))
        raise PublishError(str(exc)) from exc
    unchanged = digest == fileinfo.content_hash and fileinfo.published_path == fileinfo.path
    if unchanged and not force and _on_disk(target, data):
        return PublishResult(fileinfo.pk, fileinfo.path, "unchanged", len(data))
    moved = fileinfo.published_path and fileinfo.published_path != fileinfo.path
    now = timezone.now()
    if defer_record:
        stale = _resolved_quietly(fileinfo, fileinfo.published_path) if moved else ""
        staged = _write_temp(target, data)
        result = PublishResult(fileinfo.pk, fileinfo.path, "written", len(data), digest, now, staged, target, stale)
    else:
        write_atomic(target, data)
        if moved:
            _unlink_quietly(fileinfo, fileinfo.published_path)
        result = PublishResult(fileinfo.pk, fileinfo.path, "written", len(data), digest, now)
        record_published([result])
    fileinfo.content_hash, fileinfo.published_path, fileinfo.published_at = digest, fileinfo.path, now
    if fileinfo.template.last_error:
        _clear_template_error(fileinfo.template)
    return result


def _on_disk(target: str, data: bytes) -> bool:
    """The file holds exactly ``data``. The stored hash alone is not proof: a worker killed between
    writing a file and recording its hash leaves the two apart."""
    try:
        with open(target, "rb") as handle:
            return handle.read(len(data) + 1) == data
    except OSError:
        return False


def record_published(results: list[PublishResult]) -> dict[PublishResult, PublishError]:
    """Put staged files in place, then store the hash, path and time of every file written in one
    transaction. Returns the files that did not reach their place (not recorded; their job fails)."""
    return record_published_later(results)()


def record_published_later(results: list[PublishResult]) -> Callable[[], dict[PublishResult, PublishError]]:
    """``record_published`` in two halves: this call starts putting the staged files in place, in the
    background; the call it returns waits for them and records them (in the caller's thread, which holds the
    database connection). A worker renders its next batch in between: the disk's waits cost it nothing."""
    placing = put_in_place_later(results)

    def record() -> dict[PublishResult, PublishError]:
        failed = placing()
        written = [r for r in results if r.status == "written" and r not in failed]
        if not written:
            return failed
        table = FileInfo._meta.db_table
        stamp = connection.ops.adapt_datetimefield_value
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET content_hash = %s, published_path = %s, published_at = %s WHERE id = %s",
                [(r.digest, r.path, stamp(r.published_at), r.fileinfo_id) for r in written],
            )
        return failed

    return record


def put_in_place_later(results: list[PublishResult]) -> Callable[[], dict[PublishResult, PublishError]]:
    """Start the second half of ``write_atomic`` for a batch of staged files, in parallel threads (their waits
    on the disk overlap). The returned call waits for it to end and returns those that failed; a moved file's
    old copy goes once the new one is in place."""
    staged = [r for r in results if r.staged]
    futures = [_threads().submit(_place, r.staged, r.target) for r in staged]

    def wait() -> dict[PublishResult, PublishError]:
        failed = {}
        for result, future in zip(staged, futures, strict=True):
            error = future.result()
            if error is not None:
                failed[result] = PublishError(f"{result.path} could not be written: {error}")
            elif result.stale:
                _silent_unlink(result.stale)
        return failed

    return wait


def _place(tmp: str, target: str) -> OSError | None:
    """fsync a written temp file and rename it over ``target``; on failure the temp file goes."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        _silent_unlink(tmp)
        return exc
    except BaseException:
        _silent_unlink(tmp)
        raise
    return None


def _clear_template_error(template: Template) -> None:
    """A successful render clears the error an earlier one left in the admin."""
    Template.objects.filter(pk=template.pk).update(last_error="", last_error_at=None)
    template.last_error = ""


def write_atomic(target: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``target`` so that no reader ever sees a partial file and a crash leaves the old
    file or the new one: a temp file in the same directory, fsynced, renamed over the target."""
    error = _place(_write_temp(target, data, mode), target)
    if error is not None:
        raise error


def _write_temp(target: str, data: bytes, mode: int = 0o644) -> str:
    """A temp file next to ``target`` holding ``data`` (not yet synced)."""
    try:
        fd, tmp = _create_temp(target)
    except FileNotFoundError:  # the first file of its directory
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            _start_writeback(handle.fileno())
    except BaseException:
        _silent_unlink(tmp)
        raise
    return tmp


def _load_sync_file_range():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return call


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file out now (Linux's sync_file_range, which does not wait), so
    that the fsync at the end of the batch finds the data on its way (it waited three times as long)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def _create_temp(target: str) -> tuple[int, str]:
    """``.NAME.tmp`` beside the target, so that the one a killed worker left is found and replaced by the
    next publish of the file; another writer's (still young) means a random name instead."""
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, f".{name}.tmp")
    for _ in range(2):
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600), tmp
        except FileExistsError:
            if not _abandoned(tmp):
                break
            _silent_unlink(tmp)
    return tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")


def _abandoned(path: str) -> bool:
    """Older than a lease: its writer is gone (a live worker's job would have been taken from it)."""
    try:
        return time.time() - os.lstat(path).st_mtime > get_config()["LEASE_SECONDS"]
    except FileNotFoundError:
        return True


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    """Threads that fsync a batch's files (each mostly waits on the disk)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="mtdispatch-sync")
        return _pool


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_forget_pool)


def _silent_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _resolved_quietly(fileinfo: FileInfo, relative: str) -> str:
    """Where an old file of ``fileinfo`` is, or "" (logged) when that is outside the site root now."""
    try:
        return resolve_output_path(fileinfo.site.site_root, relative)
    except PathError:
        logger.warning("Not removing %r: outside the site root of site %s", relative, fileinfo.site_id)
        return ""


def _unlink_quietly(fileinfo: FileInfo, relative: str) -> None:
    if path := _resolved_quietly(fileinfo, relative):
        _silent_unlink(path)


def _remove_published(fileinfo: FileInfo) -> None:
    if not fileinfo.published_path:
        return
    _unlink_quietly(fileinfo, fileinfo.published_path)
    FileInfo.objects.filter(pk=fileinfo.pk).update(published_path="", content_hash="", published_at=None)
    fileinfo.published_path = fileinfo.content_hash = ""
