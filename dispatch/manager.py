"""The pre-fork FastCGI manager behind ``manage.py runfcgi``.

Unlike flup6's PreforkServer, the master never blocks on signals: they go through a wakeup pipe into a
``select`` with a timeout (flup's select has none and PEP 475 retries it, so TERM/HUP waited for a child
to write). Children are fresh interpreters (``python -m dispatch.child``), so a recycle loads current
code. A recycle is rolling: new children start and report ready before the old ones are asked to finish
their request and leave (flup SIGINTed busy children). New children that fail to start (a broken deploy)
leave the old ones serving.

Signals: HUP rolling recycle, TERM/INT graceful stop (bounded), QUIT fast stop, USR1 reopen logs,
TTIN/TTOU one child more/less. Limits: max requests (with jitter), max RSS, request timeout.
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
from django.db import close_old_connections
from django.utils import timezone

from .child import drain
from .control import RecycleWatch
from .scoreboard import BUSY, Scoreboard
from .sockets import ListenSpec, open_listener

logger = logging.getLogger("mtdispatch.manager")


@dataclass
class ManagerOptions:
    listen: ListenSpec
    workers: int = 2
    max_children: int = 64
    # php-fpm's dynamic pool: keep this many idle children (0: a fixed pool of `workers`).
    min_spare: int = 0
    max_spare: int = 0
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_rss_mb: int = 0
    request_timeout: float = 0
    graceful_timeout: float = 30
    queue_workers: int = 0
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
class ChildProc:
    proc: subprocess.Popen
    status_fd: int
    generation: int
    started: float = field(default_factory=time.time)
    ready: bool = False
    state: str = "starting"
    requests: int = 0
    request: str = ""
    request_since: float = 0.0
    retiring: bool = False
    buffer: bytes = b""
    ps: psutil.Process | None = None
    slot: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Recycle:
    old: set[int]
    generation: int
    request_id: int
    reason: str
    started: float = field(default_factory=time.monotonic)
    failures: int = 0


class Manager:
    def __init__(self, options: ManagerOptions, *, log=None) -> None:
        self.options = options
        self.log = log or logger.info
        self.target = options.workers
        self.children: dict[int, ChildProc] = {}
        self.queue_workers: dict[int, subprocess.Popen] = {}
        self.generation = 1
        self.recycle_state: Recycle | None = None
        self.pending_recycle: tuple[str, int] | None = None
        self.recycles = 0
        self.requests_served = 0
        self.stopping: str | None = None
        self.stop_deadline = 0.0
        self.signals: list[int] = []
        self.early_exits = 0
        self.next_spawn = 0.0
        self.started = timezone.now()
        self._next_status = 0.0
        self._next_control = 0.0
        self.recycle_watch = RecycleWatch()
        self.listener: socket.socket | None = None
        # Slots for every child that can exist at once: old and new ones overlap during a recycle.
        self.board = Scoreboard(2 * options.max_children + 2)
        self.free_slots = list(range(self.board.slots))

    # -- start and stop ----------------------------------------------------------------------------

    def serve(self) -> int:
        self.listener = open_listener(self.options.listen)
        self._write_pidfile()
        self._install_signals()
        if self.options.http:
            from .devhttp import start_dev_front

            start_dev_front(self.options.http, self.options.listen)
        self.log(f"runfcgi {os.getpid()} listening on {self.options.listen.describe()} with {self.target} children")
        try:
            self._loop()
        finally:
            self._cleanup()
        return 0

    def _loop(self) -> None:
        while True:
            self._maintain()
            fds = [self.wake_r] + [c.status_fd for c in self.children.values()]
            try:
                readable, _, _ = select.select(fds, [], [], 1.0)
            except InterruptedError:
                readable = []
            if self.wake_r in readable:
                drain(self.wake_r)
            self._handle_signals()
            for child in list(self.children.values()):
                if child.status_fd in readable:
                    self._read_status(child)
            self._reap()
            self._check_limits()
            self._adjust_spares()
            self._advance_recycle()
            self._periodic()
            if self.stopping and not self.children and not self.queue_workers:
                return
            if self.stopping and time.monotonic() > self.stop_deadline:
                self._kill_everything()

    def _cleanup(self) -> None:
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
        self.log(f"runfcgi {os.getpid()} stopped ({self.stopping})")

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
                self.recycle(reason="SIGHUP")
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self.stop(graceful=True, reason=signal.Signals(signum).name)
            elif signum == signal.SIGQUIT:
                self.stop(graceful=False, reason="SIGQUIT")
            elif signum == signal.SIGUSR1:
                self.reopen_logs()
            elif signum == signal.SIGTTIN:
                self.resize(+1)
            elif signum == signal.SIGTTOU:
                self.resize(-1)

    # -- operations --------------------------------------------------------------------------------

    def stop(self, *, graceful: bool, reason: str) -> None:
        if self.stopping and graceful:
            return
        self.stopping = reason
        timeout = self.options.graceful_timeout if graceful else 5.0
        self.stop_deadline = time.monotonic() + timeout
        self.log(f"stopping ({reason}): {f'graceful, up to {timeout}s' if graceful else 'fast'}")
        for child in self.children.values():
            _signal(child.pid, signal.SIGTERM if graceful else signal.SIGQUIT)
        for proc in self.queue_workers.values():
            _signal(proc.pid, signal.SIGTERM)

    def _kill_everything(self) -> None:
        for pid in [*self.children, *self.queue_workers]:
            _signal(pid, signal.SIGKILL)

    def recycle(self, *, reason: str, request_id: int = 0) -> None:
        """Rolling replacement: new children first, then the old ones finish their request and leave."""
        if self.stopping:
            return
        if self.recycle_state is not None:
            # The children starting now may have imported the code before this request's change: run one
            # more recycle when this one is done, instead of restarting them (which might never converge).
            self.pending_recycle = (reason, request_id or (self.pending_recycle or ("", 0))[1])
            return
        old = {c.pid for c in self.children.values() if not c.retiring}
        self.generation += 1
        self.recycle_state = Recycle(old=old, generation=self.generation, request_id=request_id, reason=reason)
        self.log(f"recycling ({reason}): starting {self.target} new children")
        for proc in self.queue_workers.values():
            _signal(proc.pid, signal.SIGHUP)

    def resize(self, delta: int) -> None:
        self.target = max(1, min(self.options.max_children, self.target + delta))
        self.log(f"children: {self.target}")
        extra = len(self._active()) - self.target
        for child in sorted(self._active(), key=lambda c: c.state != "idle")[:max(extra, 0)]:
            self._retire(child, "fewer children")

    def reopen_logs(self) -> None:
        from .child import reopen_logs

        reopen_logs(self.options.outlog, self.options.errlog)
        for pid in [*self.children, *self.queue_workers]:
            _signal(pid, signal.SIGUSR1)
        self.log("log files reopened")

    # -- children ----------------------------------------------------------------------------------

    def _active(self) -> list[ChildProc]:
        return [c for c in self.children.values() if not c.retiring and c.generation == self.generation]

    def _maintain(self) -> None:
        if self.stopping or time.monotonic() < self.next_spawn:
            return
        while len(self._active()) < self.target:
            self._spawn()
        self._maintain_queue_workers()

    def _spawn(self) -> ChildProc:
        status_r, status_w = os.pipe()
        os.set_blocking(status_r, False)
        listen_fd = self.listener.fileno()
        opts = self.options
        slot = self.free_slots.pop(0)
        self.board.clear(slot)
        args = [sys.executable, "-m", "dispatch.child", "--listen-fd", str(listen_fd), "--status-fd", str(status_w),
                "--scoreboard-fd", str(self.board.fd), "--slot", str(slot),
                "--max-requests", str(opts.max_requests), "--max-requests-jitter", str(opts.max_requests_jitter)]
        args += [f"--outlog={opts.outlog}"] if opts.outlog else []
        args += [f"--errlog={opts.errlog}"] if opts.errlog else []
        args += [*opts.child_args, f"--graceful-timeout={opts.graceful_timeout}"]
        proc = subprocess.Popen(args, pass_fds=(listen_fd, status_w, self.board.fd), stdin=subprocess.DEVNULL,
                                env=_child_env())
        os.close(status_w)
        child = ChildProc(proc=proc, status_fd=status_r, generation=self.generation, slot=slot)
        try:
            child.ps = psutil.Process(proc.pid)
            child.ps.cpu_percent(None)
        except psutil.Error:
            pass
        self.children[proc.pid] = child
        return child

    def _read_status(self, child: ChildProc) -> None:
        try:
            data = os.read(child.status_fd, 65536)
        except BlockingIOError:
            return
        child.buffer += data
        *lines, child.buffer = child.buffer.split(b"\n")
        for line in lines:
            self._status_line(child, line.decode("utf-8", "replace"))

    def _status_line(self, child: ChildProc, line: str) -> None:
        if line == "R":
            child.ready, child.state = True, "idle"
            self.early_exits = 0

    def _read_board(self, child: ChildProc) -> None:
        """Bring a child's state up to date from its scoreboard slot."""
        slot = self.board.read(child.slot)
        if not child.ready or child.state == "killed":
            return
        self.requests_served += max(slot.requests - child.requests, 0)
        child.requests = slot.requests
        if slot.state == BUSY:
            child.state, child.request, child.request_since = "busy", slot.request, slot.since
        else:
            child.state, child.request = "idle", ""

    def _reap(self) -> None:
        for child in list(self.children.values()):
            code = child.proc.poll()
            if code is None:
                continue
            self._read_status(child)  # its last words (the pipe is at EOF after them)
            self._read_board(child)
            os.close(child.status_fd)
            del self.children[child.pid]
            self.free_slots.append(child.slot)
            if self.stopping or child.retiring:
                continue
            if not child.ready:
                self.early_exits += 1
                self.next_spawn = time.monotonic() + min(0.1 * 2 ** self.early_exits, 5.0)
                self.log(f"child {child.pid} exited with {code} before it was ready")
                if self.recycle_state:
                    self.recycle_state.failures += 1
            elif code == 0:
                self.log(f"child {child.pid} left after {child.requests} requests; replacing it")
            else:
                self.log(f"child {child.pid} died (exit {code}, {child.state}); starting another")
        for pid, proc in list(self.queue_workers.items()):
            if proc.poll() is not None:
                del self.queue_workers[pid]
                if not self.stopping:
                    self.log(f"queue worker {pid} exited with {proc.returncode}; starting another")

    def _retire(self, child: ChildProc, why: str) -> None:
        if not child.retiring:
            child.retiring = True
            child.state = "retiring" if child.state != "busy" else child.state
            _signal(child.pid, signal.SIGTERM)
            self.log(f"retiring child {child.pid}: {why}")

    def _advance_recycle(self) -> None:
        state = self.recycle_state
        if state is None:
            return
        fresh = [c for c in self.children.values() if c.generation == state.generation and not c.retiring]
        if len(fresh) >= self.target and all(c.ready for c in fresh):
            old_children = [self.children[pid] for pid in state.old if pid in self.children]
            for child in old_children:
                self._retire(child, state.reason)
            self.recycles += 1
            self.recycle_state = None
            self.log(f"recycled ({state.reason}): new children {sorted(c.pid for c in fresh)}")
            if state.request_id:
                from .control import acknowledge

                _quietly(acknowledge, request_id=state.request_id, kind="manager", old_pids=sorted(state.old),
                         new_pids=sorted(c.pid for c in fresh))
            if self.pending_recycle:
                reason, request_id = self.pending_recycle
                self.pending_recycle = None
                self.recycle(reason=reason, request_id=request_id)
        elif state.failures >= 3 * max(self.target, 1):
            self.log(f"recycle ({state.reason}) abandoned: new children fail to start; old ones keep serving")
            for child in fresh:
                self._retire(child, "failed recycle")
            self.generation -= 1
            self.recycle_state = None
            self.next_spawn = 0.0

    def _check_limits(self) -> None:
        now = time.time()
        opts = self.options
        for child in list(self.children.values()):
            self._read_board(child)
            if opts.request_timeout and child.state == "busy" and now - child.request_since > opts.request_timeout:
                self.log(f"request timeout: killing child {child.pid} after {now - child.request_since:.1f}s "
                         f"serving {child.request}")
                _signal(child.pid, signal.SIGKILL)
                child.state = "killed"
            elif opts.max_rss_mb and not child.retiring and child.ps is not None:
                rss = _rss(child)
                if rss > opts.max_rss_mb * 1024 * 1024:
                    self._retire(child, f"RSS {rss // 1048576} MB over --max-rss {opts.max_rss_mb} MB")

    def _adjust_spares(self) -> None:
        """Dynamic pool: one child more while fewer than --min-spare are idle (up to --max-children), one
        idle child fewer while more than --max-spare are (down to --workers). One step per loop."""
        opts = self.options
        if not (opts.min_spare or opts.max_spare) or self.stopping or self.recycle_state:
            return
        active = self._active()
        if not all(c.ready for c in active):
            return  # wait until the last child spawned reports in
        idle = [c for c in active if c.state == "idle"]
        if opts.min_spare and len(idle) < opts.min_spare and self.target < opts.max_children:
            self.target += 1
        elif opts.max_spare and len(idle) > opts.max_spare and self.target > opts.workers:
            self.target -= 1
            self._retire(idle[-1], f"more than --max-spare {opts.max_spare} idle")

    # -- queue workers -----------------------------------------------------------------------------

    def _maintain_queue_workers(self) -> None:
        while len(self.queue_workers) < self.options.queue_workers:
            args = [sys.executable, "-m", "django", "runworker", "--daemon", "--supervised",
                    *self.options.queue_worker_args]
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, env=_child_env())
            self.queue_workers[proc.pid] = proc

    # -- status and control ------------------------------------------------------------------------

    def _periodic(self) -> None:
        if not self.options.publish_status:
            return
        now = time.monotonic()
        if now >= self._next_control:
            self._next_control = now + self.options.control_interval
            _quietly(self._poll_control)
        if now >= self._next_status:
            self._next_status = now + self.options.status_interval
            from .status import publish_manager

            _quietly(publish_manager, self)

    def _poll_control(self) -> None:
        close_old_connections()
        request_id = self.recycle_watch.new_request()
        if request_id:
            self.recycle(reason=f"recycle request #{request_id}", request_id=request_id)

    def snapshot(self) -> list[dict]:
        now = time.time()
        rows = []
        for child in sorted(self.children.values(), key=lambda c: c.pid):
            rows.append({
                "pid": child.pid, "state": "retiring" if child.retiring and child.state == "idle" else child.state,
                "generation": child.generation, "requests": child.requests, "request": child.request,
                "request_age": round(now - child.request_since, 2) if child.state == "busy" else None,
                "rss": _rss(child), "cpu": _cpu(child), "age": round(now - child.started, 1),
            })
        return rows


def _child_env() -> dict[str, str]:
    """Children import the project from its directory whatever the working directory (--workdir)."""
    from django.conf import settings

    root = str(settings.BASE_DIR)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _rss(child: ChildProc) -> int:
    try:
        return child.ps.memory_info().rss if child.ps else 0
    except psutil.Error:
        return 0


def _cpu(child: ChildProc) -> float:
    try:
        return child.ps.cpu_percent(None) if child.ps else 0.0
    except psutil.Error:
        return 0.0


def _quietly(func, *args, **kwargs) -> None:
    """Database trouble (a restart, a lock) must never take the manager down."""
    try:
        func(*args, **kwargs)
    except Exception:  # noqa: BLE001
        logger.exception("%s failed", getattr(func, "__name__", func))
