"""The pool a runfcgi manager keeps: its FastCGI children and supervised queue workers, their states and
generations, the rolling recycle and the one pending after it, retiring, limits, spare children, scoreboard
slots and crash-loop backoff. Every decision is made here; nothing here starts a process, reads a pipe or
handles a signal. The manager (``manager.py``) does that plumbing and tells the pool what happened
(``said``, ``exited``, ``hup``, ``poll_control``); the pool acts through a ``Processes`` object (start a
child in a slot, start a queue worker, send a signal) and a ``ControlPlane`` (recycle requests and their
acknowledgements), and reads time from a clock, so tests drive it in process with fakes.

A recycle is rolling: new children and queue workers start and report ready before the old ones are
asked to finish and leave. One recycle request is one recycle: a SIGHUP means "look at the control plane
now", so the SIGHUP ``request_recycle`` sends and the same request seen by the next poll are one recycle.
A request arriving while a recycle runs makes exactly one more recycle after it (the children starting now
may have imported the code before the change). Retiring processes that outlive ``--graceful-timeout`` are
killed, so their slots come back; the pool never spawns without a free slot.

A child that reached a limit (it says it served ``--max-requests``; its RSS is over ``--max-rss``) is replaced
the same way, one child at a time: it keeps accepting while its replacement starts, and is asked to leave
(SIGTERM, the recycle's way of leaving) once the replacement is ready, so that children reaching their limits
together never leave the pool without accepting children. A child that leaves on its own (its scoreboard
slot says so) is replaced at once, not when it exits.
"""
from __future__ import annotations

import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger("mtdispatch.manager")

CHILD, QUEUE_WORKER = "child", "queue worker"
# A SIGHUP this soon after a poll picked up a recycle request is taken for that request's own SIGHUP
# (request_recycle records the request, then signals): the poll merely won the race.
HUP_AFTER_POLL_SECONDS = 2.0


@dataclass
class PoolOptions:
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
    # php-fpm's emergency_restart_threshold/interval: this many children dying before they are ready within
    # this many seconds start an exponential backoff of child starts (0: never).
    crash_threshold: int = 5
    crash_interval: float = 10.0
    backoff_max: float = 60.0


class Processes(Protocol):
    """What the pool asks of the process plumbing."""

    def start_child(self, slot: int) -> int: ...

    def start_queue_worker(self) -> int: ...

    def signal(self, pid: int, sig: int) -> None: ...

    def rss(self, pid: int) -> int: ...

    def cpu(self, pid: int) -> float: ...


class ControlPlane(Protocol):
    """Recycle requests recorded for every host (the database, in production)."""

    def new_request(self) -> int | None: ...

    def acknowledge(self, request_id: int, old_pids: list[int], new_pids: list[int]) -> None: ...


class NoControl:
    """runfcgi --no-status: no recycle requests, SIGHUP alone recycles."""

    seen = 0

    def new_request(self) -> int | None:
        return None

    def acknowledge(self, request_id: int, old_pids: list[int], new_pids: list[int]) -> None:
        pass


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)  # the scoreboard's "busy since" is wall time


@dataclass
class Member:
    """A FastCGI child or a supervised queue worker, as the pool knows it."""

    pid: int
    kind: str
    generation: int
    started: float  # monotonic
    born: float  # wall time, for its age
    slot: int = -1
    ready: bool = False
    state: str = "starting"
    requests: int = 0
    request: str = ""
    request_since: float = 0.0
    retiring: bool = False
    retire_by: float = 0.0  # then it is killed
    told: bool = False  # asked to leave (a process that is not ready yet is asked once it is)
    killed: bool = False
    replacing: str = ""  # why it is being replaced: it serves until its replacement is ready, then retires
    last_words: str = ""  # why it failed to start, if it said


@dataclass
class Recycle:
    old: set[int]
    generation: int
    request_ids: list[int]
    reason: str
    started: float
    failures: int = 0
    last_failure: str = ""  # what the last new process that failed to start said, or its exit code


@dataclass
class Pending:
    reason: str
    request_ids: list[int] = field(default_factory=list)


class Backoff:
    """Exponential backoff once ``threshold`` failures happened within ``interval`` seconds: the next start
    waits ``base`` seconds, then twice as long after every further failure (up to ``cap``); a success
    ends it."""

    def __init__(self, threshold: int, interval: float, *, base: float = 1.0, cap: float = 60.0) -> None:
        self.threshold, self.interval, self.base, self.cap = threshold, interval, base, cap
        self.failures: deque[float] = deque()
        self.in_a_row = 0
        self.level = 0
        self.until = 0.0

    def failed(self, now: float) -> float:
        """Record a failure; the delay before the next start (0: start at once)."""
        self.failures.append(now)
        self.in_a_row += 1
        while self.failures and now - self.failures[0] > self.interval:
            self.failures.popleft()
        if not self.threshold or (not self.level and len(self.failures) < self.threshold):
            return 0.0
        delay = min(self.base * 2 ** self.level, self.cap)
        self.level += 1
        self.until = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures.clear()
        self.in_a_row = 0
        self.level = 0
        self.until = 0.0

    def waiting(self, now: float) -> bool:
        return now < self.until


class Pool:
    # Queue workers that exited this long after they started are not crash-looping: backoff starts over.
    QUEUE_WORKER_STABLE_SECONDS = 60.0

    def __init__(self, options: PoolOptions, processes: Processes, *, board, control: ControlPlane | None = None,
                 clock=None, log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.processes = processes
        self.board = board
        self.control = control or NoControl()
        self.clock = clock or SystemClock()
        self.log = log or logger.info
        self.target = options.workers
        self.children: dict[int, Member] = {}
        self.queue_workers: dict[int, Member] = {}
        self.generation = 1
        self.recycle_state: Recycle | None = None
        self.pending: Pending | None = None
        self.requests_taken: set[int] = set()
        self.recycles = 0
        self.requests_served = 0
        self.stopping: str | None = None
        self.stop_deadline = 0.0
        self.killed_all = False
        self.free_slots = list(range(board.slots))
        self.child_backoff = Backoff(options.crash_threshold, options.crash_interval, cap=options.backoff_max)
        self.worker_backoff = Backoff(1, self.QUEUE_WORKER_STABLE_SECONDS, cap=options.backoff_max)
        self.notices: dict[str, str] = {}
        self._polled_request_at = -HUP_AFTER_POLL_SECONDS

    # -- what an administrator should know ---------------------------------------------------------

    @property
    def message(self) -> str:
        return " ".join(self.notices[key] for key in sorted(self.notices))

    def _notice(self, key: str, text: str | None) -> None:
        if text:
            self.notices[key] = text
        else:
            self.notices.pop(key, None)

    # -- events from the plumbing ------------------------------------------------------------------

    def tick(self) -> None:
        """Everything that depends on time and state: limits, spares, the recycle, starting processes."""
        self._check_limits()
        self._adjust_spares()
        self._advance_recycle()
        self._maintain()
        self._hand_over()
        self._settle_notices()
        if self.stopping and not self.killed_all and self.clock.monotonic() > self.stop_deadline:
            self.killed_all = True
            for pid in self.pids():
                self.processes.signal(pid, signal.SIGKILL)

    @property
    def finished(self) -> bool:
        return bool(self.stopping) and not self.children and not self.queue_workers

    def pids(self) -> list[int]:
        return [*self.children, *self.queue_workers]

    def said(self, pid: int, line: str) -> None:
        """A line on a process's status pipe: ``R`` (ready: signal handlers installed, application loaded),
        ``E <why>`` (failing to start) or ``L <why>`` (a child that reached its --max-requests: it serves on
        until it is asked to leave)."""
        member = self.children.get(pid) or self.queue_workers.get(pid)
        if member is None:
            return
        if line == "R":
            member.ready, member.state = True, "idle"
            if member.kind == CHILD:
                self.child_backoff.succeeded()
                self._notice("children", None)
            if member.retiring and not member.told:
                self._tell_to_leave(member)
        elif line.startswith("E "):
            member.last_words = line[2:].strip()
        elif line.startswith("L ") and member.kind == CHILD:
            self._replace(member, line[2:].strip())

    def exited(self, pid: int, code: int) -> None:
        if pid in self.children:
            self._child_exited(self.children.pop(pid), code)
        elif pid in self.queue_workers:
            self._queue_worker_exited(self.queue_workers.pop(pid), code)

    def _child_exited(self, child: Member, code: int) -> None:
        self._read_board(child)  # its last requests
        self.free_slots.append(child.slot)
        if self.stopping or child.retiring:
            return
        if child.ready:
            self.log(f"child {child.pid} left after {child.requests} requests; replacing it" if code == 0 else
                     f"child {child.pid} died (exit {code}, {child.state}); starting another")
            return
        why = f": {child.last_words}" if child.last_words else ""
        self.log(f"child {child.pid} exited with {code} before it was ready{why}")
        self._count_recycle_failure(child, child.last_words or f"exit {code}")
        delay = self.child_backoff.failed(self.clock.monotonic())
        if delay:
            opts = self.options
            text = (f"FastCGI children are crash-looping ({self.child_backoff.in_a_row} in a row died before they "
                    f"were ready, {opts.crash_threshold} within {opts.crash_interval:g} s starts the backoff; the last "
                    f"exited with {code}{why}); the next one starts in {delay:g} s.")
            self.log(text)
            self._notice("children", text)

    def _queue_worker_exited(self, worker: Member, code: int) -> None:
        if self.stopping or worker.retiring:
            return
        now = self.clock.monotonic()
        if now - worker.started >= self.QUEUE_WORKER_STABLE_SECONDS:
            self.worker_backoff.succeeded()
        if not worker.ready:
            self._count_recycle_failure(worker, f"queue worker exit {code}")
        delay = self.worker_backoff.failed(now)
        text = f"queue worker {worker.pid} exited with {code}; starting another in {delay:g} s"
        self.log(text)
        if self.worker_backoff.level > 1:
            self._notice("queue", f"Supervised queue workers keep exiting (the last with {code}); "
                                  f"the next one starts in {delay:g} s.")

    def _count_recycle_failure(self, member: Member, why: str) -> None:
        state = self.recycle_state
        if state is not None and member.generation == state.generation:
            state.failures += 1
            state.last_failure = why

    # -- recycle requests and signals --------------------------------------------------------------

    def hup(self) -> None:
        """SIGHUP: look at the control plane now. A new recycle request there (the one whose SIGHUP this is)
        is recycled under its id, once; a SIGHUP with no new request is one recycle of its own."""
        request_id = self._new_request()
        if request_id:
            self.recycle(reason=f"recycle request #{request_id}", request_id=request_id)
        elif self.clock.monotonic() - self._polled_request_at < HUP_AFTER_POLL_SECONDS:
            self.log("SIGHUP: for the recycle request just seen; no other recycle")
        else:
            self.recycle(reason="SIGHUP")

    def poll_control(self) -> None:
        request_id = self._new_request()
        if request_id:
            self._polled_request_at = self.clock.monotonic()
            self.recycle(reason=f"recycle request #{request_id}", request_id=request_id)

    def _new_request(self) -> int | None:
        try:
            return self.control.new_request()
        except Exception:  # noqa: BLE001 - database trouble must never take the manager down
            logger.exception("looking for recycle requests failed")
            return None

    def recycle(self, *, reason: str, request_id: int = 0) -> bool:
        """Rolling replacement: new children and queue workers first, then the old ones finish and leave.
        False if nothing was started or queued (stopping, or this request was already taken)."""
        if self.stopping or (request_id and request_id in self.requests_taken):
            return False
        if request_id:
            self.requests_taken.add(request_id)
        if self.recycle_state is not None:
            # The children starting now may have imported the code before this request's change: one more
            # recycle when this one is done (whatever else arrives meanwhile), not a restart of them.
            self.pending = self.pending or Pending(reason)
            self.pending.reason = reason
            self.pending.request_ids += [request_id] if request_id else []
            self.log(f"recycle ({reason}) will follow the one running")
            return True
        old = {pid for pid, m in (*self.children.items(), *self.queue_workers.items()) if not m.retiring}
        self.generation += 1
        self.recycle_state = Recycle(old=old, generation=self.generation, request_ids=[request_id] if request_id
                                     else [], reason=reason, started=self.clock.monotonic())
        extra = f" and {self.options.queue_workers} queue worker(s)" if self.options.queue_workers else ""
        self.log(f"recycling ({reason}): starting {self.target} new children{extra}")
        return True

    def _advance_recycle(self) -> None:
        state = self.recycle_state
        if state is None:
            return
        fresh = [m for m in (*self.children.values(), *self.queue_workers.values())
                 if m.generation == state.generation and not m.retiring and not m.replacing]
        children = [m for m in fresh if m.kind == CHILD]
        complete = len(children) >= self.target and len(fresh) - len(children) >= self.options.queue_workers
        if complete and all(m.ready for m in fresh):
            self._finish_recycle(state, fresh)
        elif state.failures >= 3 * max(self.target, 1):
            self._abandon_recycle(state, fresh)

    def _finish_recycle(self, state: Recycle, fresh: list[Member]) -> None:
        for pid in state.old:
            member = self.children.get(pid) or self.queue_workers.get(pid)
            if member is not None:
                self._retire(member, state.reason)
        self.recycles += 1
        self.recycle_state = None
        self._notice("recycle", None)
        new_pids = sorted(m.pid for m in fresh)
        workers = sorted(m.pid for m in fresh if m.kind == QUEUE_WORKER)
        self.log(f"recycled ({state.reason}): new children {sorted(m.pid for m in fresh if m.kind == CHILD)}"
                 + (f", queue workers {workers}" if workers else ""))
        for request_id in state.request_ids:
            try:
                self.control.acknowledge(request_id, sorted(state.old), new_pids)
            except Exception:  # noqa: BLE001
                logger.exception("acknowledging recycle request #%s failed", request_id)
        self._start_pending()

    def _abandon_recycle(self, state: Recycle, fresh: list[Member]) -> None:
        why = f" ({state.last_failure})" if state.last_failure else ""
        text = (f"Recycle ({state.reason}) abandoned: new processes fail to start{why}; "
                f"the old ones keep serving.")
        self.log(text)
        self._notice("recycle", text)
        for member in fresh:
            self._retire(member, "failed recycle")
        self.generation -= 1
        self.recycle_state = None
        self._start_pending()

    def _start_pending(self) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        self.recycle(reason=pending.reason)
        if self.recycle_state is not None:
            self.recycle_state.request_ids = pending.request_ids

    # -- other operations --------------------------------------------------------------------------

    def stop(self, *, graceful: bool, reason: str) -> None:
        if self.stopping and graceful:
            return
        self.stopping = reason
        timeout = self.options.graceful_timeout if graceful else 5.0
        self.stop_deadline = self.clock.monotonic() + timeout
        self.log(f"stopping ({reason}): {f'graceful, up to {timeout:g}s' if graceful else 'fast'}")
        for child in self.children.values():
            self.processes.signal(child.pid, signal.SIGTERM if graceful else signal.SIGQUIT)
        for worker in self.queue_workers.values():
            self.processes.signal(worker.pid, signal.SIGTERM)

    def resize(self, delta: int) -> None:
        self.target = max(1, min(self.options.max_children, self.target + delta))
        self.log(f"children: {self.target}")
        extra = len(self._active()) - self.target
        for child in sorted(self._active(), key=lambda c: c.state != "idle")[:max(extra, 0)]:
            self._retire(child, "fewer children")

    # -- children ----------------------------------------------------------------------------------

    def _active(self, members: dict[int, Member] | None = None) -> list[Member]:
        members = self.children if members is None else members
        return [m for m in members.values()
                if not m.retiring and not m.replacing and m.generation == self.generation]

    def _maintain(self) -> None:
        if self.stopping:
            return
        now = self.clock.monotonic()
        while len(active := self._active()) < self.target and not self.child_backoff.waiting(now):
            if self.child_backoff.level and any(not c.ready for c in active):
                break  # backing off: one child at a time until one is ready
            if not self._spawn_child(now):
                break
        while len(self._active(self.queue_workers)) < self.options.queue_workers:
            if self.worker_backoff.waiting(now) or not self._spawn_queue_worker(now):
                break

    def _spawn_child(self, now: float) -> Member | None:
        if not self.free_slots:
            self._free_a_slot()
            return None
        slot = self.free_slots.pop(0)
        self.board.clear(slot)
        try:
            pid = self.processes.start_child(slot)
        except OSError as exc:
            self.free_slots.append(slot)
            self.log(f"could not start a child: {exc}")
            self.child_backoff.failed(now)
            return None
        child = Member(pid=pid, kind=CHILD, generation=self.generation, started=now, born=self.clock.time(),
                       slot=slot)
        self.children[pid] = child
        return child

    def _spawn_queue_worker(self, now: float) -> Member | None:
        try:
            pid = self.processes.start_queue_worker()
        except OSError as exc:
            self.log(f"could not start a queue worker: {exc}")
            self.worker_backoff.failed(now)
            return None
        worker = Member(pid=pid, kind=QUEUE_WORKER, generation=self.generation, started=now, born=self.clock.time())
        self.queue_workers[pid] = worker
        return worker

    def _free_a_slot(self) -> None:
        """Every slot is held: kill the retiring child that was asked to leave first (its slot comes back
        when it is reaped). Only reachable when retiring children pile up faster than they time out."""
        retiring = [c for c in self.children.values() if c.retiring and not c.killed]
        if retiring:
            child = min(retiring, key=lambda c: c.retire_by)
            self.log(f"no free scoreboard slot: killing retiring child {child.pid} early")
            self._kill(child)

    def _read_board(self, child: Member) -> None:
        """Bring a child's state up to date from its scoreboard slot."""
        from .scoreboard import BUSY, LEAVING

        slot = self.board.read(child.slot)
        if not child.ready or child.state == "killed":
            return
        self.requests_served += max(slot.requests - child.requests, 0)
        child.requests = slot.requests
        if slot.state == BUSY:
            child.state, child.request, child.request_since = "busy", slot.request, slot.since
        elif slot.state == LEAVING:
            child.state, child.request = "leaving", ""
        else:
            child.state, child.request = ("retiring" if child.retiring else "idle"), ""

    def _retire(self, member: Member, why: str) -> None:
        if member.retiring:
            return
        member.retiring = True
        member.retire_by = self.clock.monotonic() + self.options.graceful_timeout
        if member.state not in ("busy", "leaving"):
            member.state = "retiring"
        what = "child" if member.kind == CHILD else "queue worker"
        self.log(f"retiring {what} {member.pid}: {why}")
        if member.ready:
            self._tell_to_leave(member)
        # not ready yet: its signal handlers may not be installed; it is told when it says it is ready

    def _tell_to_leave(self, member: Member) -> None:
        member.told = True
        self.processes.signal(member.pid, signal.SIGTERM)

    def _kill(self, member: Member) -> None:
        member.killed = True
        member.state = "killed"
        self.processes.signal(member.pid, signal.SIGKILL)

    def _replace(self, child: Member, why: str) -> None:
        """Start a replacement for a child that reached a limit; it serves until the replacement is ready
        (``_hand_over``). Spawned by ``_maintain``, which does not count it any more, the way a recycle's
        new children are: slots, the crash-loop backoff and a recycle running meanwhile apply alike."""
        if child.retiring or child.replacing:
            return
        child.replacing = why
        self.log(f"replacing child {child.pid} ({why}); it serves until its replacement is ready")

    def _hand_over(self) -> None:
        """Children being replaced leave once there are enough ready children without them: one for each
        ready child over the target, oldest first. (Old-generation ones leave with their recycle.)"""
        outgoing = [c for c in self.children.values()
                    if c.replacing and not c.retiring and c.generation == self.generation]
        if not outgoing or self.stopping:
            return
        spare = sum(c.ready for c in self._active()) + len(outgoing) - self.target
        for child in sorted(outgoing, key=lambda c: c.started)[:max(spare, 0)]:
            self._retire(child, child.replacing)

    def _check_child(self, child: Member, wall: float) -> None:
        opts = self.options
        self._read_board(child)
        if opts.request_timeout and child.state == "busy" and wall - child.request_since > opts.request_timeout:
            self.log(f"request timeout: killing child {child.pid} after {wall - child.request_since:.1f}s "
                     f"serving {child.request}")
            self._kill(child)
        elif child.state == "leaving" and not child.retiring:
            self._retire(child, "it is leaving")  # signalled by someone else: replace it now, not when it exits
        elif opts.max_rss_mb and not child.retiring and not child.replacing:
            rss = self.processes.rss(child.pid)
            if rss > opts.max_rss_mb * 1024 * 1024:
                self._replace(child, f"RSS {rss // 1048576} MB over --max-rss {opts.max_rss_mb} MB")

    def _check_limits(self) -> None:
        wall, now = self.clock.time(), self.clock.monotonic()
        opts = self.options
        for child in list(self.children.values()):
            self._check_child(child, wall)
        for member in (*self.children.values(), *self.queue_workers.values()):
            if member.retiring and not member.killed and now > member.retire_by:
                what = "child" if member.kind == CHILD else "queue worker"
                doing = f" ({member.request})" if member.request else ""
                self.log(f"retiring {what} {member.pid} did not leave within --graceful-timeout "
                         f"{opts.graceful_timeout:g}s{doing}; killing it")
                self._kill(member)

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

    def _settle_notices(self) -> None:
        """The queue workers' notice goes once they have all been up for a while."""
        if "queue" not in self.notices:
            return
        now = self.clock.monotonic()
        workers = self._active(self.queue_workers)
        if len(workers) >= self.options.queue_workers and all(
                w.ready and now - w.started > self.options.crash_interval for w in workers):
            self.worker_backoff.succeeded()
            self._notice("queue", None)

    # -- status ------------------------------------------------------------------------------------

    def snapshot(self) -> list[dict]:
        wall = self.clock.time()
        rows = []
        for child in sorted(self.children.values(), key=lambda c: c.pid):
            rows.append({
                "pid": child.pid, "state": child.state, "generation": child.generation, "requests": child.requests,
                "request": child.request,
                "request_age": round(wall - child.request_since, 2) if child.state == "busy" else None,
                "rss": self.processes.rss(child.pid), "cpu": self.processes.cpu(child.pid),
                "age": round(wall - child.born, 1),
            })
        return rows

    def queue_snapshot(self) -> list[dict]:
        wall = self.clock.time()
        return [{"pid": w.pid, "state": w.state if w.ready or w.retiring else "starting", "generation": w.generation,
                 "age": round(wall - w.born, 1)} for w in sorted(self.queue_workers.values(), key=lambda w: w.pid)]
