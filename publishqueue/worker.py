"""The queue worker (MT's run-periodic-tasks): drains the publish queue by priority, runs the periodic
tasks and django-q2's background tasks.

``Worker.run()`` is the loop; ``manage.py runworker`` only parses options and wires signals. Stopping is an
event, so tests run the loop in process and stop it from outside.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.apps import apps
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from dispatch import processes
from dispatch.conf import get_config as dispatch_config
from dispatch.control import RecycleWatch, acknowledge

from . import jobrows, periodic
from .conf import get_config
from .jobrows import Claimed
from .jobs import finish_later, prepare, run_job
from .stats import StatsBuffer

logger = logging.getLogger("mtdispatch.worker")


@dataclass
class WorkerOptions:
    load: int = 10
    sleep: float = 5.0
    daemon: bool = False
    once: bool = False
    randomly: bool = False
    max_jobs: int | None = None
    floor: int | None = None
    kinds: Sequence[str] | None = None
    periodic: bool = True
    background: bool = True
    verbose: bool = False
    # Standalone workers act on the dashboard's recycle requests (supervised ones get SIGHUP instead).
    follow_recycles: bool = False


@dataclass
class WorkerResult:
    done: int = 0
    failed: int = 0
    requeued: int = 0
    background: int = 0
    reason: str = ""


KIND = "queue worker"


@dataclass(frozen=True)
class _Ran:
    """A job that ran without raising, before its batch is completed."""

    job: Claimed
    outcome: object
    finished: dt.datetime
    seconds: float


@dataclass(frozen=True)
class _Finishing:
    """A batch whose jobs ran: what they leave to do together has started (its files are being synced in the
    background); ``wait`` ends it and returns the jobs it failed for. Its jobs are completed after that."""

    ran: list[_Ran]
    wait: Callable[[], dict[int, Exception]]


@dataclass
class _Current:
    """What the worker holds now, shared with the heartbeat thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    held: list[Claimed] = field(default_factory=list)
    job: Claimed | None = None
    since: float = 0.0


class Worker:
    def __init__(
        self,
        options: WorkerOptions,
        *,
        stop_event: threading.Event | None = None,
        worker_id: str | None = None,
        job_runner: Callable[[Claimed, object], object] = run_job,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self.stop_event = stop_event or threading.Event()
        self.worker_id = worker_id or processes.make_process_id()
        self.job_runner = job_runner
        self.log = log or logger.info
        self.result = WorkerResult()
        self.stats = StatsBuffer()
        self._current = _Current()
        self.restart_requested = False
        self.peers = 1  # live workers (this one included), counted by the heartbeat
        self._next_periodic = 0.0
        self._next_background = 0.0
        self._bridge = None
        self._finishing: _Finishing | None = None  # the previous batch, completed after the next one ran

    # -- lifecycle ---------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Finish the job in hand, give back the rest of the batch, and return from run()."""
        self.result.reason = self.result.reason or reason
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def run(self) -> WorkerResult:
        beat = _Heartbeat(self)
        beat.start()
        try:
            self._loop()
        finally:
            beat.stop()
            self.stats.flush()
            beat.registration.forget()
        return self.result

    def _loop(self) -> None:
        try:
            self._drain()
        finally:
            self._settle()

    def _drain(self) -> None:
        opts = self.options
        while not self.stopping:
            close_old_connections()
            self._maybe_periodic()
            self._maybe_background()
            jobs = jobrows.claim(
                worker_id=self.worker_id, load=opts.load, kinds=opts.kinds, floor=opts.floor, randomly=opts.randomly,
                share=self.peers,
            )
            if jobs:
                self._run_batch(jobs)
            else:
                self._settle()
            if not jobs and not opts.daemon:
                self.result.reason = self.result.reason or "queue empty"
                return
            if opts.once:
                self.result.reason = self.result.reason or "once"
                return
            if self._reached_max():
                return
            if not jobs:
                self.stop_event.wait(opts.sleep)  # only sleeps when nothing is waiting

    def _reached_max(self) -> bool:
        limit = self.options.max_jobs
        if limit is not None and self.result.done + self.result.failed >= limit:
            self.result.reason = self.result.reason or "max jobs"
            return True
        return False

    # -- jobs --------------------------------------------------------------------------------------

    def _run_batch(self, jobs: list[Claimed]) -> None:
        """Run a batch's jobs, then complete the previous batch (its files were syncing meanwhile) and start
        finishing this one."""
        ran: list[_Ran] = []
        with self._current.lock:
            self._current.held = [r.job for r in self._finishing.ran] if self._finishing else []
            self._current.held += jobs
        try:
            prepared = self._prepare(jobs)
            for index, job in enumerate(jobs):
                if self.stopping or self._reached_max():
                    jobrows.release(worker_id=self.worker_id, jobs=jobs[index:])
                    break
                outcome = self._run_one(job, prepared.get(job.id))
                if outcome is not None:
                    ran.append(outcome)
        finally:
            try:
                self._settle()
            finally:
                self._finishing = _Finishing(ran, finish_later([(r.job, r.outcome) for r in ran]))
                with self._current.lock:
                    self._current.held, self._current.job = [r.job for r in ran], None
                self.stats.flush()

    def _settle(self) -> None:
        """Complete the batch being finished, if any. A job whose part of the finishing failed is failed
        like any other: logged, retried."""
        finishing, self._finishing = self._finishing, None
        if finishing is None:
            return
        failures = finishing.wait()
        completed = []
        for r in finishing.ran:
            error = failures.get(r.job.id)
            if error is not None:
                self.result.done -= 1
                self._fail(r.job, error)
                continue
            self.stats.done(r.job.kind, finished=r.finished, run_after=r.job.run_after, run_seconds=r.seconds)
            completed.append(r.job)
        with transaction.atomic():  # one write (SQLite: one lock taken, one commit) for both
            self.result.requeued += jobrows.complete(worker_id=self.worker_id, jobs=completed)
            self.stats.flush()

    def _prepare(self, jobs: list[Claimed]) -> dict:
        """Bulk-load what the batch needs; if that fails, each job loads its own (and fails on its own)."""
        try:
            return prepare(jobs)
        except Exception:  # noqa: BLE001
            logger.exception("Preparing a batch failed; running its jobs one by one")
            return {}

    def _run_one(self, job: Claimed, prepared: object = None) -> _Ran | None:
        with self._current.lock:
            self._current.job, self._current.since = job, time.monotonic()
        started = time.monotonic()
        try:
            outcome = self.job_runner(job, prepared)
        except Exception as exc:  # noqa: BLE001 - every failure is logged on the job and retried
            self._fail(job, exc)
            return None
        if self.options.verbose:
            self.log(f"{job}: {outcome}")
        self.result.done += 1
        return _Ran(job, outcome, timezone.now(), time.monotonic() - started)

    def _fail(self, job: Claimed, exc: BaseException) -> None:
        final = jobrows.fail(
            worker_id=self.worker_id, job=job, message=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
        )
        self.result.failed += 1
        self.stats.failed(job.kind, finished=timezone.now())
        self.log(f"{job} failed ({'for good' if final else 'will retry'}): {exc}")

    # -- periodic and background tasks -------------------------------------------------------------

    def _maybe_periodic(self) -> None:
        if not self.options.periodic or time.monotonic() < self._next_periodic:
            return
        self._next_periodic = time.monotonic() + get_config()["PERIODIC_CHECK_SECONDS"]
        for name, result in periodic.run_due(worker_id=self.worker_id).items():
            if result:  # a count of things done, or the exception it raised
                self.log(f"periodic task {name}: {result!r}")

    def _maybe_background(self) -> None:
        if not self.options.background or time.monotonic() < self._next_background:
            return
        if not apps.is_installed("django_q"):
            return  # a project without django-q2 has no background tasks
        self._next_background = time.monotonic() + get_config()["BACKGROUND_CHECK_SECONDS"]
        if self._bridge is None:
            from .background import DjangoQBridge

            self._bridge = DjangoQBridge()
        self.result.background += self._bridge.run_pending()


class _Heartbeat:
    """A thread that renews the leases of held jobs and publishes the worker's state for the dashboard."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        supervisor = os.getppid() if not worker.options.follow_recycles else None
        self.registration = processes.Registration(kind=KIND, process_id=worker.worker_id, supervisor_pid=supervisor)
        self.recycle_watch = None  # created on the first beat of a worker that follows recycles
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mtdispatch-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        period = min(dispatch_config()["HEARTBEAT_SECONDS"], get_config()["LEASE_SECONDS"] / 3)
        try:
            while not self._stop.wait(period):
                try:
                    self.beat()
                except Exception:  # noqa: BLE001 - a database hiccup must not kill the thread
                    logger.exception("Heartbeat failed")
        finally:
            connection.close()

    def follow_recycles(self) -> None:
        """A recycle request made after this worker started: acknowledge it and restart (fresh code)."""
        if self.recycle_watch is None:
            self.recycle_watch = RecycleWatch()
        request_id = self.recycle_watch.new_request()
        if request_id:
            acknowledge(request_id=request_id, kind="worker", old_pids=[os.getpid()], new_pids=[os.getpid()])
            self.worker.restart_requested = True
            self.worker.stop(f"recycle request #{request_id}: restarting with fresh code")

    def beat(self) -> None:
        w = self.worker
        if w.options.follow_recycles:
            self.follow_recycles()
        with w._current.lock:
            held = [job.id for job in w._current.held]
            job, since = w._current.job, w._current.since
        jobrows.renew(worker_id=w.worker_id, job_ids=held)
        state = processes.State.STOPPING if w.stopping else processes.State.BUSY if job else processes.State.IDLE
        self.registration.report(
            state=state, done=w.result.done, failed=w.result.failed, current=str(job) if job else "",
            current_for=time.monotonic() - since if job else 0.0,
        )
        w.peers = max(1, processes.live(KIND).count())
