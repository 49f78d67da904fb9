"""Publishing one file: render, skip if unchanged, write atomically, never outside the site root."""
from __future__ import annotations

import ctypes
import datetime as dt
import functools
import hashlib
import logging
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from django.db import connection, transaction
from django.db.models import Q
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.utils import timezone

from .models import UNWRITTEN_MODES, WRITING_MODES, FileInfo, Template, mode_q
from .paths import PathError, resolve_output_path
from .registry import ArchiveContext
from .rendering import render
from .targets import Upload, target_for
from .threads import LazyPool

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
    # With defer_record: the temp file holding the content, for StagedFiles to sync and rename to ``target``
    # (fenced by the worker's hold on the job), and the file it leaves behind when the path moved (removed
    # once the new one is in place).
    staged: str = ""
    target: str = ""
    stale: str = ""
    # The site (for the activity log, and the ledger of written files), and for the ledger the path the file had
    # before when it is new at this one ("" for a first write).
    site_id: int = 0
    new_path: bool = False
    moved_from: str = ""
    # For a storage target (publishqueue.targets): the object to upload, fenced, when the batch is finished.
    upload: Upload | None = field(default=None, compare=False, repr=False)
    # With defer_record, a page whose object is gone: removed (with its FileInfo) fenced, when the batch is
    # finished (``remove_fenced``), not by the job itself.
    remove_later: bool = False


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
    ``StagedFiles``, which syncs a whole batch's files in parallel, then renames them into place and records
    their hashes in the transaction that checks the worker still holds their jobs (a worker starts the syncing
    once per batch, in the background while it runs the next batch, and completes the jobs after it; fsynced
    one by one, the waits left it idle a third of its time). If that never happens, the job runs again.
    """
    if fileinfo.mode in UNWRITTEN_MODES:
        return unpublish_file(fileinfo=fileinfo)
    content = render_fileinfo(fileinfo, batch)
    if content is None:
        return _object_gone(fileinfo, defer_record)
    data = content.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    elsewhere = target_for(fileinfo.site)
    if not elsewhere.local:  # object storage (publishqueue.targets): uploaded, not written here
        result = elsewhere.publish(fileinfo, data, digest, force=force, defer_record=defer_record)
        if result.status == "written" and fileinfo.template.last_error:
            _clear_template_error(fileinfo.template)
        return result
    try:
        target = resolve_output_path(fileinfo.site.site_root, fileinfo.path)
    except PathError as exc:
        record_template_error(fileinfo.template, str(exc))
        raise PublishError(str(exc)) from exc
    unchanged = digest == fileinfo.content_hash and fileinfo.published_path == fileinfo.path
    if unchanged and not force and _on_disk(target, data):
        return PublishResult(fileinfo.pk, fileinfo.path, "unchanged", len(data), site_id=fileinfo.site_id)
    moved = fileinfo.published_path and fileinfo.published_path != fileinfo.path
    now = timezone.now()
    ledger = {
        "site_id": fileinfo.site_id, "new_path": fileinfo.published_path != fileinfo.path,
        "moved_from": fileinfo.published_path if moved else "",
    }
    if defer_record:
        stale = _resolved_quietly(fileinfo, fileinfo.published_path) if moved else ""
        staged = _write_temp(target, data)
        result = PublishResult(
            fileinfo.pk, fileinfo.path, "written", len(data), digest, now, staged, target, stale, **ledger
        )
    else:
        write_atomic(target, data)
        if moved:
            _unlink_quietly(fileinfo, fileinfo.published_path)
        result = PublishResult(fileinfo.pk, fileinfo.path, "written", len(data), digest, now, **ledger)
        record_published([result])
    fileinfo.content_hash, fileinfo.published_path, fileinfo.published_at = digest, fileinfo.path, now
    if fileinfo.template.last_error:
        _clear_template_error(fileinfo.template)
    return result


def unpublish_file(*, fileinfo: FileInfo) -> PublishResult:
    """A file whose template is now Dynamically published or not published at all: it leaves the disk."""
    _remove_published(fileinfo)
    return PublishResult(fileinfo.pk, fileinfo.path, "dynamic", site_id=fileinfo.site_id)


def _on_disk(target: str, data: bytes) -> bool:
    """The file holds exactly ``data``. The stored hash alone is not proof: a worker killed between
    writing a file and recording its hash leaves the two apart."""
    try:
        with open(target, "rb") as handle:
            return handle.read(len(data) + 1) == data
    except OSError:
        return False


def record_published(results: list[PublishResult]) -> None:
    """Store the hash, path and time of files written (and in place) in one transaction."""
    written = sorted((r for r in results if r.status == "written"), key=lambda r: r.fileinfo_id)
    if not written:
        return
    table = FileInfo._meta.db_table
    stamp = connection.ops.adapt_datetimefield_value
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET content_hash = %s, published_path = %s, published_at = %s WHERE id = %s",
            [(r.digest, r.path, stamp(r.published_at), r.fileinfo_id) for r in written],
        )
        _note_in_ledger(written)


class StagedFiles:
    """A batch's staged files, from staging to their place. Creating it starts syncing them in parallel threads
    (their waits on the disk overlap; a worker runs its next batch meanwhile). Then, in this order:

    * ``sync()`` waits for that, outside any transaction (no lock is held across an fsync);
    * ``place(keep)``, inside the caller's transaction, renames the files whose ``keep(result)`` is true into
      place and records them (the worker's transaction holds its jobs' rows locked, fenced: a worker that
      lost its jobs puts nothing in place) and returns those that failed, with the error;
    * ``cleanup()``, after the commit, removes what was not put in place and the old copies of moved files.

    ``discard()`` instead gives up the whole batch (its staged files are removed)."""

    def __init__(self, results: list[PublishResult]) -> None:
        self.results = [r for r in results if r.status == "written" and r.staged]
        self._syncing = {r: _sync_threads.get().submit(_sync, r.staged) for r in self.results}
        self._placed: list[PublishResult] = []
        self._left: list[str] = []

    def sync(self) -> None:
        for future in self._syncing.values():
            future.exception()

    def place(self, keep: Callable[[PublishResult], bool], *, record: bool = True) -> dict[PublishResult, Exception]:
        failed: dict[PublishResult, Exception] = {}
        for result, future in self._syncing.items():
            if not keep(result):
                self._left.append(result.staged)
                continue
            error = future.result() or _rename(result.staged, result.target)
            if error is not None:
                self._left.append(result.staged)
                failed[result] = PublishError(f"{result.path} could not be written: {error}")
            else:
                self._placed.append(result)
        if record:
            record_published(self._placed)
        return failed

    def cleanup(self) -> None:
        for path in self._left + [r.stale for r in self._placed if r.stale]:
            _silent_unlink(path)
        self._left, self._placed = [], []

    def discard(self) -> None:
        self.sync()
        for result in self.results:
            _silent_unlink(result.staged)


def _note_in_ledger(written: list[PublishResult]) -> None:
    """Files at new paths go into the ledger of written files; the ones they moved from leave it."""
    from . import ledger

    ledger.record((r.site_id, r.path) for r in written if r.new_path)
    for r in written:
        if r.moved_from:
            ledger.forget(r.site_id, [r.moved_from])


def put_in_place_later(results: list[PublishResult]) -> Callable[[], dict[PublishResult, PublishError]]:
    """Unfenced and unrecorded (tests and tools): sync a batch's staged files in the background; the returned
    call waits, renames them into place and returns those that failed."""
    staged = StagedFiles(results)

    def wait() -> dict[PublishResult, PublishError]:
        staged.sync()
        failed = staged.place(lambda result: True, record=False)
        staged.cleanup()
        return failed

    return wait


def _sync(tmp: str) -> OSError | None:
    """fsync a written temp file (before the transaction that renames it)."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc
    return None


def _rename(tmp: str, target: str) -> OSError | None:
    try:
        os.replace(tmp, target)
    except OSError as exc:
        return exc
    return None


def _place(tmp: str, target: str) -> OSError | None:
    """fsync a written temp file and rename it over ``target``; on failure the temp file goes."""
    try:
        error = _sync(tmp) or _rename(tmp, target)
    except BaseException:
        _silent_unlink(tmp)
        raise
    if error is not None:
        _silent_unlink(tmp)
    return error


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
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked (a signal, a full disk's last blocks)
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            _start_writeback(fd)
        finally:
            os.close(fd)
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


# Staged files: ``.NAME.mtd-HOST-PID-RANDOM.tmp`` beside their target. A dot name (the shipped web server
# configurations refuse to serve those), unique to its writer (two workers never share one), and saying who
# wrote it, so that a sweep can tell a dead writer's leftovers from a live writer's work.
TEMP_RE = re.compile(r"^\..+\.mtd-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")
# What versions before it staged files as: removed by a sweep only once older than a lease.
LEGACY_TEMP_RE = re.compile(r"^\..+\.tmp$")


def host_tag(hostname: str | None = None) -> str:
    return _tag_of(hostname or socket.gethostname())


@functools.lru_cache(maxsize=8)
def _tag_of(hostname: str) -> str:
    return hashlib.sha1(hostname.encode()).hexdigest()[:8]


def temp_name(target: str) -> str:
    directory, name = os.path.split(target)
    return os.path.join(directory, f".{name[:180]}.mtd-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _create_temp(target: str) -> tuple[int, str]:
    tmp = temp_name(target)
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600), tmp


def site_roots() -> list[str]:
    """Every site root the publisher writes into."""
    from .sites import get_site_model

    return sorted({root for root in get_site_model().objects.values_list("site_root", flat=True) if root})


def sweep_temp_files(roots: Iterable[str], *, older_than: float, now: float | None = None) -> list[str]:
    """Remove staged files that nobody will put in place, under ``roots`` (site roots) only, and only ours (by
    name): those of a dead writer on this host; of a writer on another host once older than ``older_than``
    seconds (a lease: its job was given to another worker, which fences it out); of a live writer on this
    host only once older than ten times that (the pid was reused); in the old naming, once older than a lease.
    Returns the paths removed."""
    now = time.time() if now is None else now
    removed = []
    for root in {os.path.realpath(r) for r in roots if r}:
        for directory, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                if name.startswith(".") and name.endswith(".tmp") and _sweepable(path, name, now, older_than):
                    _silent_unlink(path)
                    removed.append(path)
    return removed


def _sweepable(path: str, name: str, now: float, lease: float) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    age = now - info.st_mtime
    ours = TEMP_RE.match(name)
    if ours is None:
        return LEGACY_TEMP_RE.match(name) is not None and age > lease
    if ours["host"] != host_tag():
        return age > lease
    pid = int(ours["pid"])
    if pid == os.getpid():
        return False
    return not _alive(pid) or age > 10 * lease


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Threads that fsync a batch's files (each mostly waits on the disk).
_sync_threads = LazyPool(SYNC_THREADS, "mtdispatch-sync")


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


def _unlink_quietly(fileinfo: FileInfo, relative: str, *, strict: bool = False) -> None:
    """Remove a published file; a missing one is no error. With ``strict`` a storage target's error is raised."""
    elsewhere = target_for(fileinfo.site)
    if not elsewhere.local:
        elsewhere.delete(relative, strict=strict)
        return
    if path := _resolved_quietly(fileinfo, relative):
        _silent_unlink(path)


def _object_gone(fileinfo: FileInfo, defer_record: bool) -> PublishResult:
    """The page of an object that is gone: removed now, or (``defer_record``) fenced with its batch."""
    if not defer_record:
        remove_fileinfo(fileinfo)
    return PublishResult(fileinfo.pk, fileinfo.path, "removed", site_id=fileinfo.site_id, remove_later=defer_record)


def remove_fileinfo(fileinfo: FileInfo, *, strict: bool = False) -> None:
    """A page whose object is gone: its file leaves the disk (or its target) and its FileInfo (with its jobs) goes.
    With ``strict`` a storage target's error is raised, and the FileInfo stays."""
    _remove_published(fileinfo, strict=strict)
    FileInfo.objects.filter(pk=fileinfo.pk).delete()


def remove_fenced(results: list[PublishResult]) -> dict[PublishResult, Exception]:
    """The removals a worker's batch deferred (``remove_later``), in its fenced transaction: only for jobs it still
    holds, and not queued again since it claimed them (their object may be back: the job runs again instead).
    A worker frozen past its lease removed, when it woke, the page that the worker which took its job over had
    just written again. Returns those that failed, with the error."""
    fileinfos = FileInfo.objects.select_related("site").in_bulk([r.fileinfo_id for r in results])
    failed: dict[PublishResult, Exception] = {}
    for result in results:
        fileinfo = fileinfos.get(result.fileinfo_id)
        if fileinfo is None:
            continue  # deleted meanwhile, with its template or site
        try:
            with transaction.atomic():  # a savepoint: a failure leaves the worker's transaction usable
                remove_fileinfo(fileinfo, strict=True)
        except Exception as exc:  # noqa: BLE001 - a storage target's error: the job fails and is retried
            failed[result] = PublishError(f"{result.path} could not be removed: {type(exc).__name__}: {exc}")
    return failed


def _remove_published(fileinfo: FileInfo, *, strict: bool = False) -> None:
    """Its published file leaves the disk or its target, unless another of the site's files has that path now (a
    new entry with a deleted one's slug: its page, written or about to be, is not this one's to remove). One whose
    mode never writes it (Dynamically, Do Not Publish) does not keep it: the web server would show this file, of an
    object that is gone, at its URL for good. (Manually does: a publish run may be writing it right now, its record
    not committed yet.)"""
    if not fileinfo.published_path:
        return
    from . import ledger

    path = fileinfo.published_path
    others = FileInfo.objects.filter(site_id=fileinfo.site_id).exclude(pk=fileinfo.pk)
    if not others.filter(Q(published_path=path) | Q(path=path) & mode_q(WRITING_MODES, via="mapping__")).exists():
        _unlink_quietly(fileinfo, path, strict=strict)
        ledger.forget(fileinfo.site_id, [path])
    FileInfo.objects.filter(pk=fileinfo.pk).update(published_path="", content_hash="", published_at=None)
    fileinfo.published_path = fileinfo.content_hash = ""
