"""Publishing one file: render, skip if unchanged, write atomically, never outside the site root."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from django.db import connection, transaction
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.utils import timezone

from .models import FileInfo, PublishingMode, Template
from .paths import ArchiveContext, PathError, resolve_output_path
from .rendering import BatchPages, render

logger = logging.getLogger("mtdispatch.publisher")

# Threads syncing a batch's files (each mostly waits on the disk).
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
    target: str = ""  # the absolute path written
    durable: bool = False  # fsynced when written (else record_published syncs it)


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
    With ``defer_record`` the file is not fsynced here: the caller calls ``record_published``, which makes
    the batch's files durable together and then records their hashes (a worker does it once per batch,
    before completing the jobs). If that never happens, the job runs again and the file is rewritten.
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
    write_atomic(target, data, durable=not defer_record)
    if fileinfo.published_path and fileinfo.published_path != fileinfo.path:
        _unlink_quietly(fileinfo, fileinfo.published_path)
    now = timezone.now()
    result = PublishResult(fileinfo.pk, fileinfo.path, "written", len(data), digest, now, target, not defer_record)
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
    """Make freshly written files durable, all at once, then store their hash, path and time in one
    transaction. Returns the files that could not be synced (they are not recorded)."""
    failed = sync_files([r for r in results if r.status == "written"])
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


def sync_files(results: list[PublishResult]) -> dict[PublishResult, PublishError]:
    """fsync the files of a batch in parallel threads: their waits on the disk overlap instead of adding up
    (one by one they left a worker idle for a third of its time). Files written durably are skipped."""
    pending = [r for r in results if r.target and not r.durable]
    if not pending:
        return {}
    with ThreadPoolExecutor(max_workers=min(SYNC_THREADS, len(pending))) as pool:
        errors = dict(zip(pending, pool.map(_fsync_path, [r.target for r in pending]), strict=True))
    return {
        r: PublishError(f"{r.path} was written but could not be synced to disk: {error}")
        for r, error in errors.items()
        if error is not None
    }


def _clear_template_error(template: Template) -> None:
    """A successful render clears the error an earlier one left in the admin."""
    Template.objects.filter(pk=template.pk).update(last_error="", last_error_at=None)
    template.last_error = ""


def write_atomic(target: str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write ``data`` to ``target`` so that no reader ever sees a partial file. ``durable``: fsync before
    the rename (otherwise the caller syncs it, see ``sync_files``)."""
    directory, name = os.path.split(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    except FileNotFoundError:  # the first file of its directory
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        _silent_unlink(tmp)
        raise


def _fsync_path(path: str) -> OSError | None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc
    return None


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
