"""The pre-fork FastCGI manager behind ``manage.py runfcgi``.

Unlike flup6's PreforkServer, the master never blocks on signals: they go through a wakeup pipe into a
``select`` with a timeout (flup's select has none and PEP 475 retries it, so TERM/HUP waited for a child
to write). Children are fresh interpreters (``python -m dispatch.child``), so a recycle loads current
code. A recycle is rolling: new children start and report ready before the old ones are asked to finish
their request and leave (flup SIGINTed busy children). New children that fail to start (a broken deploy)
leave the old ones serving.

Signals: HUP look at the control plane and recycle once (for the new recycle request, or for the signal
itself), TERM/INT graceful stop (bounded), QUIT fast stop, USR1 reopen logs, TTIN/TTOU one child more/less.
Limits: max requests (with jitter), max RSS, request timeout.

This module is the plumbing (processes, pipes, select, signals, psutil); every decision about the pool is
made by ``pool.Pool``, which it drives.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil
from django.utils import timezone

from .child import drain
from .lifeline import ENV as MANAGER_PID_ENV
from .pool import NoControl, Pool, PoolOptions
from .scoreboard import Scoreboard
from .sockets import ListenSpec, open_listener

logger = logging.getLogger("mtdispatch.manager")


@dataclass(kw_only=True)
class ManagerOptions(PoolOptions):
    listen: ListenSpec
    queue_worker_args: list[str] = field(default_factory=list)
    pidfile: str | None = None
    outlog: str | None = None
    errlog: str | None = None
    http: str | None = None
    publish_status: bool = True
    status_interval: float = 2.0
    control_interval: float = 1.0
    # Passed on to every child (python -m dispatch.child): timeouts, body limit, warm-up, slow log.
    child_args: list[str] = field(default_factory=list)


@dataclass
class Proc:
    """A process the manager started: its Popen, its status pipe (children and queue workers say ``R``
    there once ready) and psutil's handle for RSS and CPU."""

    popen: subprocess.Popen
    status_fd: int
    buffer: bytes = b""
    ps: psutil.Process | None = None


class Manager:
    def __init__(self, options: ManagerOptions, *, log=None) -> None:
        self.options = options
        self.log = log or logger.info
        self.procs: dict[int, Proc] = {}
        self.started = timezone.now()
        self._next_status = 0.0
        self._next_control = 0.0
        self.signals: list[int] = []
        self.listener: socket.socket | None = None
        # Slots for every child that can exist at once: old and new ones overlap during a recycle.
        self.board = Scoreboard(2 * options.max_children + 2)
        if options.publish_status:
            from .control import ManagerControl

            self.control = ManagerControl()
        else:
            self.control = NoControl()
        self.pool = Pool(options, self, board=self.board, control=self.control, log=self.log)

    # -- start and stop ----------------------------------------------------------------------------

    def serve(self) -> int:
        self.listener = open_listener(self.options.listen)
        self._write_pidfile()
        self._install_signals()
        if self.options.http:
            from .devhttp import start_dev_front

            start_dev_front(self.options.http, self.options.listen)
        self.log(f"runfcgi {os.getpid()} listening on {self.options.listen.describe()} "
                 f"with {self.pool.target} children")
        try:
            self._loop()
        finally:
            self._cleanup()
        return 0

    def _loop(self) -> None:
        while True:
            self.pool.tick()
            fds = [self.wake_r] + [p.status_fd for p in self.procs.values() if p.status_fd >= 0]
            try:
                readable, _, _ = select.select(fds, [], [], 1.0)
            except InterruptedError:
                readable = []
            if self.wake_r in readable:
                drain(self.wake_r)
            for pid, proc in list(self.procs.items()):
                if proc.status_fd in readable:
                    self._read_status(pid, proc)
            self._handle_signals()
            self._reap()
            self._periodic()
            if self.pool.finished:
                return

    def _cleanup(self) -> None:
        if self.procs:  # the loop failed: take the children down with it rather than leave them orphaned
            self.log(f"runfcgi {os.getpid()} failing: stopping {len(self.procs)} processes")
            for pid in self.procs:
                self.signal(pid, signal.SIGTERM)
        spec = self.options.listen
        if self.listener is not None:
            self.listener.close()
        if spec.path and os.path.exists(spec.path):
            os.unlink(spec.path)
        if self.options.pidfile and os.path.exists(self.options.pidfile):
            os.unlink(self.options.pidfile)
        if self.options.publish_status:
            from .status import forget_manager

            _quietly(forget_manager)
        self.log(f"runfcgi {os.getpid()} stopped ({self.pool.stopping})")

    def _write_pidfile(self) -> None:
        path = self.options.pidfile
        if not path:
            return
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(tmp, path)

    # -- signals -----------------------------------------------------------------------------------

    HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGTTIN,
               signal.SIGTTOU, signal.SIGCHLD)

    def _install_signals(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        for sig in self.HANDLED:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum == signal.SIGHUP:
                self.pool.hup()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self.pool.stop(graceful=True, reason=signal.Signals(signum).name)
            elif signum == signal.SIGQUIT:
                self.pool.stop(graceful=False, reason="SIGQUIT")
            elif signum == signal.SIGUSR1:
                self.reopen_logs()
            elif signum == signal.SIGTTIN:
                self.pool.resize(+1)
            elif signum == signal.SIGTTOU:
                self.pool.resize(-1)

    def reopen_logs(self) -> None:
        from .child import reopen_logs

        reopen_logs(self.options.outlog, self.options.errlog)
        for pid in self.procs:
            self.signal(pid, signal.SIGUSR1)
        self.log("log files reopened")

    # -- processes (pool.Processes) ----------------------------------------------------------------

    def start_child(self, slot: int) -> int:
        opts = self.options
        listen_fd = self.listener.fileno()
        status_r, status_w = os.pipe()
        args = [sys.executable, "-m", "dispatch.child", "--listen-fd", str(listen_fd), "--status-fd", str(status_w),
                "--scoreboard-fd", str(self.board.fd), "--slot", str(slot),
                "--max-requests", str(opts.max_requests), "--max-requests-jitter", str(opts.max_requests_jitter)]
        args += [f"--outlog={opts.outlog}"] if opts.outlog else []
        args += [f"--errlog={opts.errlog}"] if opts.errlog else []
        args += [*opts.child_args, f"--graceful-timeout={opts.graceful_timeout}"]
        return self._start(args, status_r, status_w, (listen_fd, status_w, self.board.fd))

    def start_queue_worker(self) -> int:
        status_r, status_w = os.pipe()
        args = [sys.executable, "-m", "django", "runworker", "--daemon", "--supervised", "--ready-fd", str(status_w),
                *self.options.queue_worker_args]
        return self._start(args, status_r, status_w, (status_w,))

    def _start(self, args: list[str], status_r: int, status_w: int, pass_fds: tuple[int, ...]) -> int:
        try:
            popen = subprocess.Popen(args, pass_fds=pass_fds, stdin=subprocess.DEVNULL, env=_child_env())
        except OSError:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        os.set_blocking(status_r, False)
        proc = Proc(popen=popen, status_fd=status_r)
        try:
            proc.ps = psutil.Process(popen.pid)
            proc.ps.cpu_percent(None)
        except psutil.Error:
            pass
        self.procs[popen.pid] = proc
        return popen.pid

    def signal(self, pid: int, sig: int) -> None:
        _signal(pid, sig)

    def rss(self, pid: int) -> int:
        proc = self.procs.get(pid)
        try:
            return proc.ps.memory_info().rss if proc and proc.ps else 0
        except psutil.Error:
            return 0

    def cpu(self, pid: int) -> float:
        proc = self.procs.get(pid)
        try:
            return proc.ps.cpu_percent(None) if proc and proc.ps else 0.0
        except psutil.Error:
            return 0.0

    def _read_status(self, pid: int, proc: Proc) -> None:
        if proc.status_fd < 0:
            return
        try:
            data = os.read(proc.status_fd, 65536)
        except (BlockingIOError, OSError):
            return
        if not data:  # it closed the pipe (or exited): stop watching it
            os.close(proc.status_fd)
            proc.status_fd = -1
        proc.buffer += data
        *lines, proc.buffer = proc.buffer.split(b"\n")
        for line in lines:
            self.pool.said(pid, line.decode("utf-8", "replace"))

    def _reap(self) -> None:
        for pid, proc in list(self.procs.items()):
            code = proc.popen.poll()
            if code is None:
                continue
            self._read_status(pid, proc)  # its last words (the pipe is at EOF after them)
            if proc.status_fd >= 0:
                os.close(proc.status_fd)
            del self.procs[pid]
            self.pool.exited(pid, code)

    # -- status and control ------------------------------------------------------------------------

    def _periodic(self) -> None:
        if not self.options.publish_status:
            return
        now = time.monotonic()
        if now >= self._next_control:
            self._next_control = now + self.options.control_interval
            self.pool.poll_control()
        if now >= self._next_status:
            self._next_status = now + self.options.status_interval
            from .status import publish_manager

            _quietly(publish_manager, self)

    def snapshot(self) -> list[dict]:
        return self.pool.snapshot()


def _child_env() -> dict[str, str]:
    """Children import the project from its directory whatever the working directory (--workdir)."""
    from django.conf import settings

    root = str(settings.BASE_DIR)
    path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}
    env[MANAGER_PID_ENV] = str(os.getpid())  # they die with it (lifeline)
    return env


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _quietly(func, *args, **kwargs) -> None:
    """Database trouble (a restart, a lock) must never take the manager down."""
    try:
        func(*args, **kwargs)
    except Exception:  # noqa: BLE001
        logger.exception("%s failed", getattr(func, "__name__", func))
