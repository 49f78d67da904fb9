"""Waking workers when jobs are queued, instead of letting them find the jobs at their next poll.

* PostgreSQL: ``enqueue`` sends ``NOTIFY mtdispatch_jobs`` in the transaction that queues the jobs (PostgreSQL
  delivers it when that transaction commits, and never if it rolls back); each worker LISTENs on a connection of
  its own, so workers on every host hear it.
* SQLite (one host by nature): each worker binds a Unix datagram socket in a directory named after the
  database file; ``enqueue`` registers a ``transaction.on_commit`` callback that sends one byte to every socket
  there (a dead worker's socket refuses it and is removed).

A worker waits on its ``Waker`` instead of sleeping (``wait``), and between the jobs of a batch asks it, without
blocking, whether anything was queued since it last looked (``heard``): then it checks whether a job above its
batch's remaining ones is runnable (``Worker._preempt``). A wake-up lost (a full socket buffer, a dropped
listening connection) costs only the latency: the worker still polls at ``--sleep``.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import select
import socket
import tempfile
import threading
import time
from pathlib import Path

from django.db import connection, transaction

logger = logging.getLogger("mtdispatch.worker")

CHANNEL = "mtdispatch_jobs"
# How often a worker whose listening connection broke tries again (it polls meanwhile).
RELISTEN_SECONDS = 5.0
# A waiting worker looks at its stop event at least this often (a stop from another thread sets the event only).
STOP_SLICE = 0.25
_counter = iter(range(1, 1 << 62))
_counter_lock = threading.Lock()


def _postgres(conn=connection) -> bool:
    return conn.vendor == "postgresql"


def wake_directory(conn=connection) -> Path:
    """Where this SQLite database's workers keep their sockets: short (a socket path has at most 107 bytes) and
    the same for every process that opens the same database file."""
    name = str(conn.settings_dict["NAME"])
    try:
        info = os.stat(name)
        which: object = (info.st_dev, info.st_ino)
    except (OSError, ValueError):  # not made yet, in memory, a file: URI
        which = os.getcwd() if not os.path.isabs(name) else None
    return _wake_directory_of(name, tempfile.gettempdir(), which)


@functools.lru_cache(maxsize=16)
def _wake_directory_of(name: str, temp: str, which: object) -> Path:
    """Cached per database file (``which``: its device and inode, so that a symlink moved by a deploy or a relative
    name after a chdir is resolved again): resolving the path and hashing it was a third of a single ``enqueue``
    call's cost."""
    if not name.startswith("file:") and name != ":memory:":
        name = os.path.realpath(name)
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:16]
    return Path(temp) / f"mtdispatch-wake-{os.getuid()}-{digest}"


def jobs_queued(cursor) -> None:
    """Called by ``enqueue`` after it queued jobs, in the caller's transaction: wake the workers when it commits."""
    if _postgres():
        cursor.execute(f"NOTIFY {CHANNEL}")
    else:
        transaction.on_commit(wake_local)


def wake_local() -> int:
    """Send one byte to every worker socket of this SQLite database; returns how many were sent."""
    directory = wake_directory()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            path = directory / name
            try:
                sock.sendto(b"!", str(path))
                sent += 1
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    path.unlink()  # its worker is gone
            except OSError as exc:  # a full buffer (EAGAIN): it has wake-ups waiting already
                if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                    logger.warning("Could not wake the worker at %s: %s", path, exc)
    return sent


class Waker:
    """A worker's end: ``wait`` for a wake-up (or a timeout, or the stop event), ``heard`` without blocking."""

    def __init__(self, stop_event: threading.Event) -> None:
        self.stop_event = stop_event
        self._sock: socket.socket | None = None
        self._path: Path | None = None
        self._pg = None
        self._pg_retry_at = 0.0
        self._poke_r = self._poke_w = -1  # a pipe, made by the first wait

    # -- set up and tear down ----------------------------------------------------------------------

    def _fds(self) -> list[int]:
        if self._poke_r < 0:
            self._poke_r, self._poke_w = os.pipe()
            os.set_blocking(self._poke_r, False)
            os.set_blocking(self._poke_w, False)
        fds = [self._poke_r]
        if _postgres():
            pg = self._listener()
            if pg is not None:
                fds.append(pg.fileno())
        else:
            fds.append(self._socket().fileno())
        return fds

    def _socket(self) -> socket.socket:
        if self._sock is None:
            directory = wake_directory()
            directory.mkdir(mode=0o700, exist_ok=True)
            with _counter_lock:
                n = next(_counter)
            self._path = directory / f"{os.getpid()}-{n}"
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()  # a socket left by a dead process with this pid
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(self._path))
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def _listener(self):
        """The LISTENing connection (psycopg 3, autocommit), made on first use and again after it broke."""
        if self._pg is not None:
            return self._pg
        if time.monotonic() < self._pg_retry_at:
            return None
        try:
            pg = connection.get_new_connection(connection.get_connection_params())
            pg.autocommit = True
            pg.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:  # noqa: BLE001 - the worker polls until it can listen again
            self._pg_retry_at = time.monotonic() + RELISTEN_SECONDS
            logger.warning("Cannot listen for queued jobs (%s); polling", str(exc).strip().splitlines()[0:1])
            return None
        self._pg = pg
        return pg

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                self._path.unlink()
        self._drop_listener()
        for fd in (self._poke_r, self._poke_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._poke_r = self._poke_w = -1

    def _drop_listener(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.close()
            self._pg = None
            self._pg_retry_at = time.monotonic() + RELISTEN_SECONDS

    # -- waiting -----------------------------------------------------------------------------------

    def listen(self) -> None:
        """Start hearing wake-ups (before looking at the queue, so that nothing committed after the look is
        missed); a no-op once listening."""
        with contextlib.suppress(OSError):
            self._fds()

    def poke(self) -> None:
        """Wake ``wait`` from another thread (the worker is stopping)."""
        if self._poke_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._poke_w, b"!")

    def heard(self) -> bool:
        """Whether jobs were queued since the last look (without waiting); forgets the wake-ups read."""
        try:
            ready, _, _ = select.select(self._fds(), [], [], 0)
            return bool(ready) and self._drain(ready)
        except OSError:
            return False

    def wait(self, timeout: float) -> bool:
        """Until a wake-up, the stop event or ``timeout`` seconds; True when woken by queued jobs."""
        deadline = time.monotonic() + timeout
        while not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                fds = self._fds()
                ready, _, _ = select.select(fds, [], [], min(left, STOP_SLICE))
            except OSError:
                self.stop_event.wait(min(left, STOP_SLICE))
                continue
            if ready and self._drain(ready):
                return True
        return False

    def _drain(self, fds: list[int]) -> bool:
        woken = False
        if self._poke_r in fds:
            with contextlib.suppress(BlockingIOError):
                os.read(self._poke_r, 4096)
        if self._sock is not None and self._sock.fileno() in fds:
            while True:
                try:
                    self._sock.recv(64)
                except BlockingIOError:
                    break
                woken = True
        if self._pg is not None and self._pg.fileno() in fds:
            woken = self._pg_heard() or woken
        return woken

    def _pg_heard(self) -> bool:
        pgconn = self._pg.pgconn
        try:
            pgconn.consume_input()
        except Exception as exc:  # noqa: BLE001 - the server went away: listen again later, poll meanwhile
            logger.warning("Lost the connection listening for queued jobs (%s); polling", exc)
            self._drop_listener()
            return True  # look at the queue now rather than miss what was queued
        heard = False
        while pgconn.notifies() is not None:
            heard = True
        return heard
