"""Publishing one file: render, skip if unchanged, write atomically, never outside the site root."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from django.db import connection, transaction
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.utils import timezone

from .models import FileInfo, PublishingMode, Template
from .paths import ArchiveContext, PathError, resolve_output_path
from .rendering import BatchPages, render

logger = logging.getLogger("mtdispatch.publisher")

# Threads putting files written in the background in place.
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
    # A file written with defer_record: its fsync and rename, running in the background.
    pending: Future | None = field(default=None, compare=False, repr=False)


def context_of(fileinfo: FileInfo) -> ArchiveContext:
    return ArchiveContext(
        fileinfo.archive_type,
        entry_id=fileinfo.entry_id if fileinfo.archive_type == "individual" else None,
        category_id=fileinfo.category_id if fileinfo.archive_type == "category" else None,
        period_start=fileinfo.period_start,
    )


def _missing_context(fileinfo: FileInfo) -> bool:
    """The entry or category this file showed was deleted (the FK went NULL)."""
    return (fileinfo.archive_type == "individual" and fileinfo.entry_id is None) or (
        fileinfo.archive_type == "category" and fileinfo.category_id is None
    )


def render_fileinfo(fileinfo: FileInfo, pages: BatchPages | None = None) -> str | None:
    """The file's content now, or None if what it shows is gone. Template errors become PublishError
    and are recorded on the template so the admin shows them."""
    if _missing_context(fileinfo):
        return None
    template = fileinfo.template
    try:
        return render(
            blog=fileinfo.blog, template_name=template.name, context=context_of(fileinfo), url=fileinfo.url,
            pages=pages,
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
    *, fileinfo: FileInfo, force: bool = False, pages: BatchPages | None = None, defer_record: bool = False
) -> PublishResult:
    """Bring one output file up to date with the database.

    Unchanged content is not rewritten (the mtime stays); changed content goes to a temp file in the same
    directory, is fsynced and renamed over the old one, so a reader sees the old file or the new one.
    A file whose context is gone is removed, as is one whose template is now Dynamically published.
    With ``defer_record`` the fsync and rename run in a background thread while the caller goes on, and the
    caller passes the result to ``record_published``, which waits for them and records the hashes (a worker
    does it once per batch, before completing the jobs). If that never happens, the job runs again.
    """
    if fileinfo.template.mode == PublishingMode.DYNAMIC:
        _remove_published(fileinfo)
        return PublishResult(fileinfo.pk, fileinfo.path, "dynamic")
    content = render_fileinfo(fileinfo, pages)
    if content is None:
        _remove_published(fileinfo)
        FileInfo.objects.filter(pk=fileinfo.pk).delete()
        return PublishResult(fileinfo.pk, fileinfo.path, "removed")
    data = content.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    try:
        target = resolve_output_path(fileinfo.blog.site_root, fileinfo.path)
    except PathError as exc:
        record_template_error(fileinfo.template, str(exc))
        raise PublishError(str(exc)) from exc
    unchanged = digest == fileinfo.content_hash and fileinfo.published_path == fileinfo.path
    if unchanged and not force and _on_disk(target, data):
        return PublishResult(fileinfo.pk, fileinfo.path, "unchanged", len(data))
    pending = write_atomic_in_background(target, data) if defer_record else write_atomic(target, data)
    if fileinfo.published_path and fileinfo.published_path != fileinfo.path:
        _unlink_quietly(fileinfo, fileinfo.published_path)
    now = timezone.now()
    result = PublishResult(fileinfo.pk, fileinfo.path, "written", len(data), digest, now, pending)
    if not defer_record:
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
    """Wait for files written in the background to be in place, then store the hash, path and time of
    every file written in one transaction. Returns the files that did not reach their place (their temp
    file is gone, they are not recorded)."""
    failed = {}
    for result in results:
        if result.pending is not None and (error := result.pending.result()) is not None:
            failed[result] = PublishError(f"{result.path} could not be written: {error}")
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


def _clear_template_error(template: Template) -> None:
    """A successful render clears the error an earlier one left in the admin."""
    Template.objects.filter(pk=template.pk).update(last_error="", last_error_at=None)
    template.last_error = ""


def write_atomic(target: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``target`` so that no reader ever sees a partial file and a crash leaves the old
    file or the new one: a temp file in the same directory, fsynced, renamed over the target."""
    _put_in_place(*_write_temp(target, data, mode), target)


def write_atomic_in_background(target: str, data: bytes, mode: int = 0o644) -> Future:
    """``write_atomic`` whose fsync and rename run in a background thread, so that a worker renders its
    next page while the disk works (done in line, those waits left it idle a third of its time). The
    future's result is None, or the OSError that kept the file from its place."""
    fd, tmp = _write_temp(target, data, mode)
    return _background().submit(_put_in_place_or_error, fd, tmp, target)


def _write_temp(target: str, data: bytes, mode: int) -> tuple[int, str]:
    directory, name = os.path.split(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    except FileNotFoundError:  # the first file of its directory
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        _silent_unlink(tmp)
        raise
    return fd, tmp


def _put_in_place(fd: int, tmp: str, target: str) -> None:
    try:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        _silent_unlink(tmp)
        raise


def _put_in_place_or_error(fd: int, tmp: str, target: str) -> OSError | None:
    try:
        _put_in_place(fd, tmp, target)
    except OSError as exc:
        return exc
    return None


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _background() -> ThreadPoolExecutor:
    """The threads that put files written in the background in place (each mostly waits on the disk)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="mtdispatch-write")
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


def _unlink_quietly(fileinfo: FileInfo, relative: str) -> None:
    try:
        _silent_unlink(resolve_output_path(fileinfo.blog.site_root, relative))
    except PathError:
        logger.warning("Not removing %r: outside the site root of blog %s", relative, fileinfo.blog_id)


def _remove_published(fileinfo: FileInfo) -> None:
    if not fileinfo.published_path:
        return
    _unlink_quietly(fileinfo, fileinfo.published_path)
    FileInfo.objects.filter(pk=fileinfo.pk).update(published_path="", content_hash="", published_at=None)
    fileinfo.published_path = fileinfo.content_hash = ""
