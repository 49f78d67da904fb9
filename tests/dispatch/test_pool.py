"""The manager's pool in process: fake children and queue workers, a fake clock, a fake control plane.

Each fake process does what it is told by its behaviour: "ok" says ready after a short start-up and leaves
when asked (SIGTERM), "broken" dies before it is ready (and says why), "stuck" is ready but never leaves
when asked (a request on a half-open connection), so only SIGKILL ends it. A process is accepting from the
moment it says it is ready until it is asked to leave (``accepting``)."""
from __future__ import annotations

import signal
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from dispatch.pool import CHILD, QUEUE_WORKER, Pool, PoolOptions
from dispatch.scoreboard import BUSY, IDLE, LEAVING, Scoreboard

STARTUP = 0.3  # seconds a fake process takes to say it is ready


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.7e9 + self.now


@dataclass
class FakeProcess:
    pid: int
    kind: str
    behaviour: str
    started: float
    said_ready: bool = False
    exit_code: int | None = None
    reaped: bool = False


class FakeProcesses:
    """pool.Processes: records what the pool asks; ``Harness.step`` plays the processes' part."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.next_pid = 1000
        self.procs: dict[int, FakeProcess] = {}
        self.signals: list[tuple[int, int]] = []
        self.child_behaviour = "ok"
        self.worker_behaviour = "ok"
        self.rss_of: dict[int, int] = {}

    def _start(self, kind: str, behaviour: str) -> int:
        self.next_pid += 1
        self.procs[self.next_pid] = FakeProcess(self.next_pid, kind, behaviour, self.clock.now)
        return self.next_pid

    def start_child(self, slot: int) -> int:
        return self._start(CHILD, self.child_behaviour)

    def start_queue_worker(self) -> int:
        return self._start(QUEUE_WORKER, self.worker_behaviour)

    def signal(self, pid: int, sig: int) -> None:
        self.signals.append((pid, sig))
        proc = self.procs.get(pid)
        if proc is None or proc.exit_code is not None:
            return
        if sig == signal.SIGKILL:
            proc.exit_code = -9
        elif sig in (signal.SIGTERM, signal.SIGQUIT):
            assert proc.said_ready, f"{proc.kind} {pid} signalled before its signal handlers were installed"
            if proc.behaviour != "stuck":
                proc.exit_code = 0

    def rss(self, pid: int) -> int:
        return self.rss_of.get(pid, 0)

    def cpu(self, pid: int) -> float:
        return 0.0

    def started(self, kind: str) -> list[int]:
        return [p.pid for p in self.procs.values() if p.kind == kind]


class FakeControl:
    """Recycle requests as the database holds them, seen like dispatch.control.RecycleWatch sees them."""

    def __init__(self) -> None:
        self.latest = 0
        self.seen: int | None = None
        self.acks: list[tuple[int, list[int], list[int]]] = []

    def request(self) -> int:
        self.latest += 1
        return self.latest

    def new_request(self) -> int | None:
        if self.seen is None:
            self.seen = self.latest
            return None
        if self.latest > self.seen:
            self.seen = self.latest
            return self.latest
        return None

    def acknowledge(self, request_id: int, old_pids: list[int], new_pids: list[int]) -> None:
        self.acks.append((request_id, old_pids, new_pids))


class Harness:
    def __init__(self, **options) -> None:
        self.clock = FakeClock()
        self.procs = FakeProcesses(self.clock)
        self.control = FakeControl()
        self.log: list[str] = []
        self.options = PoolOptions(**options)
        self.board = Scoreboard(2 * self.options.max_children + 2)
        self.pool = Pool(self.options, self.procs, board=self.board, control=self.control, clock=self.clock,
                         log=self.log.append)
        self.pool.poll_control()  # the manager's first poll: requests older than the manager are not its own

    def step(self, dt: float = 0.1) -> None:
        """One turn of the manager's loop: time passes, processes start, say ready or die, and are reaped."""
        self.clock.now += dt
        self.pool.tick()
        for proc in list(self.procs.procs.values()):
            if proc.reaped:
                continue
            if proc.exit_code is None and self.clock.now - proc.started >= STARTUP and not proc.said_ready:
                if proc.behaviour == "broken":
                    self.pool.said(proc.pid, "E RuntimeError: broken deploy")
                    proc.exit_code = 1
                else:
                    proc.said_ready = True
                    self.pool.said(proc.pid, "R")
            if proc.exit_code is not None:
                proc.reaped = True
                self.pool.exited(proc.pid, proc.exit_code)

    def run(self, seconds: float, dt: float = 0.1) -> None:
        for _ in range(round(seconds / dt)):
            self.step(dt)

    def settle(self, limit: float = 60) -> None:
        """Run until no recycle runs or waits."""
        waited = 0.0
        self.step()
        while self.pool.recycle_state or self.pool.pending:
            self.step()
            waited += 0.1
            assert waited < limit, self.log[-10:]
        self.step()

    def alive(self, kind: str = CHILD) -> set[int]:
        return {p.pid for p in self.procs.procs.values() if p.kind == kind and p.exit_code is None}

    def accepting(self) -> set[int]:
        """Children taking new connections: ready, alive, and not asked to leave."""
        told = {pid for pid, sig in self.procs.signals}
        return {p.pid for p in self.procs.procs.values()
                if p.kind == CHILD and p.said_ready and p.exit_code is None and p.pid not in told}

    def slots_in_use(self) -> int:
        return self.board.slots - len(self.pool.free_slots)


@pytest.fixture
def h() -> Harness:
    harness = Harness(workers=2, max_children=4, queue_workers=1, graceful_timeout=5, crash_threshold=3,
                      crash_interval=10)
    harness.run(1)
    assert len(harness.alive()) == 2 and len(harness.alive(QUEUE_WORKER)) == 1
    return harness


# -- one request, one recycle ---------------------------------------------------------------------------


def test_the_sighup_of_a_recycle_request_and_its_poll_make_one_recycle(h):
    before = h.alive() | h.alive(QUEUE_WORKER)
    request_id = h.control.request()  # request_recycle records it, then sends SIGHUP
    h.pool.hup()
    h.settle()
    for _ in range(5):  # the manager's poll, every second, sees nothing new
        h.pool.poll_control()
        h.run(1)
    assert h.pool.recycles == 1
    assert [(rid, sorted(old)) for rid, old, new in h.control.acks] == [(request_id, sorted(before))]
    assert len(h.procs.started(CHILD)) == 4 and len(h.procs.started(QUEUE_WORKER)) == 2


def test_when_the_poll_wins_the_race_the_requests_own_sighup_adds_no_recycle(h):
    request_id = h.control.request()
    h.pool.poll_control()  # the poll saw the request a moment before its SIGHUP arrived
    h.step()
    h.pool.hup()
    h.settle()
    assert h.pool.recycles == 1 and [a[0] for a in h.control.acks] == [request_id]


def test_a_plain_sighup_recycles_once_and_acknowledges_nothing(h):
    before = h.alive()
    h.pool.hup()
    h.settle()
    h.pool.poll_control()
    h.run(3)
    assert h.pool.recycles == 1 and h.control.acks == []
    assert h.alive().isdisjoint(before) and len(h.alive()) == 2


def test_a_request_taken_once_is_never_recycled_again(h):
    assert h.pool.recycle(reason="request", request_id=7)
    h.settle()
    assert not h.pool.recycle(reason="request again", request_id=7)
    h.settle()
    assert h.pool.recycles == 1 and len(h.control.acks) == 1


def test_requests_during_a_recycle_make_exactly_one_more_recycle_acknowledged_once_each(h):
    first = h.control.request()
    h.pool.hup()
    h.step()
    assert h.pool.recycle_state is not None  # new children starting
    second = h.control.request()
    h.pool.hup()  # its SIGHUP: taken now, recycled after the running one
    third = h.control.request()
    h.pool.poll_control()  # seen by the poll: the same pending recycle
    assert h.pool.pending is not None and h.pool.pending.request_ids == [second, third]
    h.settle()
    h.run(3)
    assert h.pool.recycles == 2
    assert [a[0] for a in h.control.acks] == [first, second, third]
    assert h.control.acks[1][1:] == h.control.acks[2][1:]  # one recycle for both


def test_the_pending_recycle_replaces_the_children_the_running_one_started(h):
    h.pool.hup()
    h.step()
    starting = h.alive() - {p for p in h.alive() if h.pool.children[p].generation == 1}
    h.pool.recycle(reason="second")
    h.settle()
    assert h.pool.recycles == 2 and h.alive().isdisjoint(starting) and len(h.alive()) == 2


# -- queue workers ---------------------------------------------------------------------------------------


def test_queue_workers_are_replaced_and_in_the_acknowledgement(h):
    old_worker = h.alive(QUEUE_WORKER)
    request_id = h.control.request()
    h.pool.hup()
    h.settle()
    h.run(1)
    new_worker = h.alive(QUEUE_WORKER)
    assert len(new_worker) == 1 and new_worker.isdisjoint(old_worker)
    (rid, old, new), = h.control.acks
    assert rid == request_id and old_worker <= set(old) and new_worker <= set(new)
    assert all(h.procs.procs[pid].exit_code == 0 for pid in old_worker)  # asked to leave, left cleanly


def test_a_process_retired_before_it_is_ready_is_told_once_it_is(h):
    h.pool.hup()
    h.step()
    h.pool.recycle(reason="again")  # pending
    h.pool.resize(-1)  # retires a child that may not be ready yet
    h.settle()  # FakeProcesses.signal asserts no signal reaches a process that is not ready
    assert h.pool.recycles == 2 and len(h.alive()) == 1


def test_a_queue_worker_that_keeps_exiting_is_restarted_with_exponential_backoff(h):
    h.procs.worker_behaviour = "broken"
    (worker,) = h.alive(QUEUE_WORKER)
    h.procs.procs[worker].exit_code = 1  # crashes
    starts = []
    for _ in range(200):
        count = len(h.procs.started(QUEUE_WORKER))
        h.step()
        if len(h.procs.started(QUEUE_WORKER)) > count:
            starts.append(h.clock.now)
    gaps = [round(b - a, 1) for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) >= 3 and all(b > a for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert "starting another in 4 s" in "\n".join(h.log)
    assert "queue workers keep exiting" in h.pool.message


# -- failing starts and crash loops ---------------------------------------------------------------------


def test_new_children_failing_to_start_leave_the_old_ones_serving_and_say_why(h):
    before = h.alive()
    h.procs.child_behaviour = "broken"
    h.pool.hup()
    h.settle()
    assert h.alive() == before and not any(h.pool.children[p].retiring for p in before)
    assert h.pool.generation == 1 and h.pool.recycles == 0
    assert "abandoned" in h.pool.message and "RuntimeError: broken deploy" in h.pool.message
    h.procs.child_behaviour = "ok"  # fixed
    h.pool.hup()
    h.settle()
    h.run(1)
    assert h.pool.recycles == 1 and h.alive().isdisjoint(before) and h.pool.message == ""


@pytest.mark.django_db
def test_the_reason_reaches_the_managers_published_status(h):
    from django.utils import timezone

    from dispatch.models import ManagerStatus
    from dispatch.sockets import ListenSpec
    from dispatch.status import publish_manager

    h.procs.child_behaviour = "broken"
    h.pool.hup()
    h.settle()
    manager = SimpleNamespace(pool=h.pool, control=SimpleNamespace(seen=0), started=timezone.now(),
                              options=SimpleNamespace(listen=ListenSpec(path="/run/x.sock")))
    publish_manager(manager)
    message = ManagerStatus.objects.get().message
    assert "abandoned" in message and "RuntimeError: broken deploy" in message


def test_children_dying_at_start_back_off_exponentially_and_say_so():
    h = Harness(workers=1, crash_threshold=3, crash_interval=10, backoff_max=8)
    h.procs.child_behaviour = "broken"
    starts = []
    for _ in range(400):
        count = len(h.procs.started(CHILD))
        h.step()
        starts += [h.clock.now] * (len(h.procs.started(CHILD)) - count)
    gaps = [round(b - a, 1) for a, b in zip(starts, starts[1:], strict=False)]
    # Three quick deaths, then waits of 1, 2, 4 and 8 s (the cap) plus the start-up time: not a tight loop.
    assert len(starts) < 15, gaps
    assert max(gaps) >= 8 and gaps[-1] >= 8
    assert "crash-looping" in h.pool.message and "RuntimeError: broken deploy" in h.pool.message
    assert any("crash-looping" in line for line in h.log)
    h.procs.child_behaviour = "ok"
    h.run(12)
    assert len(h.alive()) == 1 and h.pool.message == "" and h.pool.child_backoff.level == 0


# -- retiring children that never leave, and slots -----------------------------------------------------


def test_retiring_children_that_never_exit_are_killed_after_the_graceful_timeout(h):
    h.procs.child_behaviour = "stuck"
    h.pool.hup()
    h.settle()
    stuck = h.alive()
    h.pool.hup()
    h.settle()
    assert stuck <= h.alive()  # asked to leave, still there
    h.run(4)
    assert stuck <= h.alive() and not any((pid, signal.SIGKILL) in h.procs.signals for pid in stuck)
    h.run(2)  # past --graceful-timeout 5
    assert h.alive().isdisjoint(stuck) and all((pid, signal.SIGKILL) in h.procs.signals for pid in stuck)
    assert h.slots_in_use() == 2 and any("did not leave within --graceful-timeout" in line for line in h.log)


def test_a_hundred_recycles_with_stuck_children_never_run_out_of_slots():
    h = Harness(workers=2, max_children=2, graceful_timeout=30)  # 6 slots
    h.procs.child_behaviour = "stuck"
    h.run(1)
    for n in range(1, 101):
        h.pool.hup()
        h.settle()
        assert h.pool.recycles == n
        assert len(h.alive()) <= h.board.slots and h.slots_in_use() <= h.board.slots
    h.run(31)  # the last retiring ones time out
    assert h.pool.recycles == 100 and len(h.alive()) == 2 and h.slots_in_use() == 2
    assert len(h.pool.free_slots) == h.board.slots - 2 == len(set(h.pool.free_slots))


def test_busy_children_get_their_graceful_timeout_and_the_busy_state_is_shown(h):
    h.procs.child_behaviour = "stuck"
    h.pool.hup()
    h.settle()
    victim = min(h.alive())
    h.board.write(h.pool.children[victim].slot, BUSY, 3, h.clock.time(), "GET /slow")
    h.pool.hup()
    h.settle()
    row = next(r for r in h.pool.snapshot() if r["pid"] == victim)
    assert row["state"] == "busy" and row["request"] == "GET /slow"
    h.run(6)
    assert victim not in h.alive()
    assert any("did not leave within --graceful-timeout 5s (GET /slow)" in line for line in h.log)


def test_a_stop_kills_what_outlives_the_graceful_timeout_and_finishes(h):
    h.procs.child_behaviour = "stuck"
    h.pool.hup()
    h.settle()
    h.pool.stop(graceful=True, reason="SIGTERM")
    h.run(3)
    assert not h.pool.finished
    h.run(3)
    assert h.pool.finished and h.alive() == set() and h.alive(QUEUE_WORKER) == set()


# -- --max-requests and --max-rss: a child is replaced without the pool going dark -------------------------


def test_children_at_max_requests_keep_accepting_until_their_replacements_are_ready():
    h = Harness(workers=2, max_requests=2000)
    h.run(1)
    old = h.alive()
    for pid in old:  # equal load: both reach their limits in the same moment
        h.board.write(h.pool.children[pid].slot, IDLE, 2000)
        h.pool.said(pid, "L --max-requests: served 2000 requests")
    for _ in range(30):
        h.step()
        assert len(h.accepting()) >= 2, h.log[-5:]  # never fewer than --workers, let alone none
    assert h.alive().isdisjoint(old) and len(h.alive()) == 2 and h.accepting() == h.alive()
    assert all(h.procs.procs[pid].exit_code == 0 for pid in old)  # asked to leave (SIGTERM), not killed
    assert h.pool.requests_served == 4000 and h.pool.recycles == 0
    assert any("replacing child" in line and "(--max-requests: served 2000 requests)" in line for line in h.log)


def test_a_child_over_max_rss_keeps_accepting_until_its_replacement_is_ready():
    h = Harness(workers=2, max_rss_mb=100)
    h.run(1)
    grown = min(h.alive())
    h.procs.rss_of[grown] = 300 << 20
    for _ in range(30):
        h.step()
        assert len(h.accepting()) >= 2, h.log[-5:]
    assert grown not in h.alive() and len(h.alive()) == 2
    assert any(f"retiring child {grown}: RSS 300 MB over --max-rss 100 MB" in line for line in h.log)


def test_a_child_leaving_on_its_own_is_replaced_before_it_exits_and_shown_as_leaving():
    # A child that says in its scoreboard slot that it is leaving (it takes no new connections, finishes the
    # ones it holds) is replaced at once, not when it exits.
    h = Harness(workers=2)
    h.procs.child_behaviour = "stuck"  # finishing a long request on a kept-alive connection
    h.run(1)
    leaving = min(h.alive())
    h.board.write(h.pool.children[leaving].slot, LEAVING, 7)
    h.step()
    row = next(r for r in h.pool.snapshot() if r["pid"] == leaving)
    assert row["state"] == "leaving" and row["requests"] == 7
    h.run(1)
    assert leaving in h.alive() and len(h.alive()) == 3  # its replacement runs beside it
    assert len(h.accepting() - {leaving}) == 2
