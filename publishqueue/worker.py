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
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.utils import timezone

from dispatch import processes
from dispatch.conf import get_config as dispatch_config
from dispatch.control import RecycleWatch, acknowledge

from . import jobrows, periodic
from .conf import get_config
from .jobrows import Claimed
from .jobs import BatchFinishing, prepare, run_job
from .publisher import site_roots, sweep_temp_files
from .stats import StatsBuffer

logger = logging.getLogger("mtdispatch.worker")

# A database that went away (server restart, network) or refused a transaction (a deadlock, SQLite's lock
# timeout): the worker gives back what it holds, reconnects with backoff and goes on.
DB_ERRORS = (OperationalError, InterfaceError)
RECONNECT_MAX_SECONDS = 4.0


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
    lost: int = 0  # jobs taken over by another worker while this one ran them (it was frozen past its lease)
    outages: int = 0
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
    background). It is finished, fenced, after the next batch ran: see ``Worker._finish``."""

    ran: list[_Ran]
    finishing: BatchFinishing


@dataclass
class _Current:
    """What the worker holds now, shared with the heartbeat thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # Held by the worker across its fenced transaction, and by the heartbeat across renewing: the renewal
    # never updates a job row the fence has locked (PostgreSQL: the fence would skip it as not held).
    fence: threading.Lock = field(default_factory=threading.Lock)
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
        self._swept = False
        self._finishing: list[_Finishing] = []  # batches that ran, oldest first: completed after the next one ran

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
            try:
                self.stats.flush()
                beat.registration.forget()
            except DB_ERRORS as exc:
                self.log(f"{self.worker_id}: database unavailable at exit ({_one_line(exc)})")
        return self.result

    def _sweep(self) -> None:
        """Once, before the first batch (after an outage if the database was down at start): remove the staged
        files that dead workers left in the site roots (kill -9 between staging a file and putting it in place)."""
        if self._swept:
            return
        removed = sweep_temp_files(site_roots(), older_than=get_config()["LEASE_SECONDS"])
        self._swept = True
        if removed:
            self.log(f"{self.worker_id}: removed {len(removed)} staged file(s) left by dead workers")

    def _loop(self) -> None:
        try:
            self._drain()
        finally:
            try:
                self._settle()
            except DB_ERRORS as exc:
                self.log(f"{self.worker_id}: database unavailable at exit ({_one_line(exc)}); "
                         "discarding the last batch, its leases will expire")
                self._abandon()

    def _drain(self) -> None:
        while not self.stopping:
            try:
                if not self._step():
                    return
            except DB_ERRORS as exc:
                self._ride_out(exc)

    def _step(self) -> bool:
        """Claim and run one batch (or settle and sleep when there is none); False when the loop should end."""
        opts = self.options
        close_old_connections()
        self._sweep()
        self._maybe_periodic()
        self._maybe_background()
        jobs = jobrows.claim(
            worker_id=self.worker_id, load=opts.load, kinds=opts.kinds, floor=opts.floor, randomly=opts.randomly,
            share=self.peers,
        )
        if jobs:
            self._run_batch(jobs)
        else:
            requeued = self.result.requeued
            self._settle()
            if self.result.requeued != requeued:
                # The last batch's jobs changed while they ran (it queued them again itself, e.g. a cached module's
                # includers) and were given back: the queue is not empty.
                return True
        if not jobs and not opts.daemon:
            self.result.reason = self.result.reason or "queue empty"
            return False
        if opts.once:
            self.result.reason = self.result.reason or "once"
            return False
        if self._reached_max():
            return False
        if not jobs:
            self.stop_event.wait(opts.sleep)  # only sleeps when nothing is waiting
        return True

    def _reached_max(self) -> bool:
        limit = self.options.max_jobs
        if limit is not None and self.result.done + self.result.failed >= limit:
            self.result.reason = self.result.reason or "max jobs"
            return True
        return False

    # -- database outages --------------------------------------------------------------------------

    def _ride_out(self, exc: BaseException) -> None:
        """The database went away (or refused a transaction): say so once, drop what is in hand, reconnect with
        backoff, then give the jobs back at once so that nobody waits for their leases to expire."""
        self.result.outages += 1
        self.log(f"{self.worker_id}: database unavailable ({_one_line(exc)}); discarding the work in hand "
                 "and reconnecting")
        in_hand = self._abandon()
        delay, since = 0.25, time.monotonic()
        while not self.stopping:
            _drop_connection()
            try:
                connection.ensure_connection()
                released = jobrows.release(worker_id=self.worker_id, jobs=in_hand)
            except DB_ERRORS:
                self.stop_event.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            self.log(f"{self.worker_id}: database back after {time.monotonic() - since:.1f} s; "
                     f"gave back {released} job(s) it held")
            return

    def _abandon(self) -> list[Claimed]:
        """Give up every batch in hand (their staged files are removed); returns the jobs this worker held."""
        finishing, self._finishing = self._finishing, []
        for batch in finishing:
            batch.finishing.discard()
        with self._current.lock:
            in_hand, self._current.held, self._current.job = self._current.held, [], None
        return in_hand

    # -- jobs --------------------------------------------------------------------------------------

    def _run_batch(self, jobs: list[Claimed]) -> None:
        """Run a batch's jobs, then complete the previous batch (its files were syncing meanwhile); this one is
        completed after the next. A database outage in the middle leaves everything in hand to ``_abandon``."""
        ran: list[_Ran] = []
        if any(job.suspect for job in jobs):
            self._settle()  # it may kill this worker: finish the batches in hand first, so they do not die with it
        with self._current.lock:
            self._current.held = [r.job for batch in self._finishing for r in batch.ran] + jobs
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
            self._finishing.append(_Finishing(ran, BatchFinishing([(r.job, r.outcome) for r in ran])))
            with self._current.lock:
                self._current.job = None
        self._settle(keep=1)
        with self._current.lock:
            self._current.held = [r.job for batch in self._finishing for r in batch.ran]

    def _settle(self, keep: int = 0) -> None:
        """Finish and complete the batches that ran, oldest first, all but the last ``keep``."""
        while len(self._finishing) > keep:
            self._finish(self._finishing[0])
            self._finishing.pop(0)

    def _finish(self, batch: _Finishing) -> None:
        """Put a batch's files in place and complete its jobs, fenced: in one transaction that holds the rows of
        the jobs this worker still holds at the generation it claimed locked, their files are renamed into
        place and recorded and they are completed; the files of the others are discarded (another worker took
        the job over after this one's lease expired, or it changed while it ran) and they are given back. A
        job whose part of the finishing failed is failed like any other: logged, retried. The fsyncs happen
        before, outside the transaction; removing files after it."""
        batch.finishing.sync()
        jobs = [r.job for r in batch.ran]
        with self._current.fence, transaction.atomic():
            holding = jobrows.held(worker_id=self.worker_id, jobs=jobs)
            fenced = {job.id for job in jobs if holding.get(job.id) == job.generation}
            failures = batch.finishing.place(fenced)
            completed = []
            for r in batch.ran:
                if r.job.id in failures:
                    self.result.done -= 1
                    self._fail(r.job, failures[r.job.id])
                elif r.job.id in fenced:
                    self.stats.done(r.job.kind, finished=r.finished, run_after=r.job.run_after, run_seconds=r.seconds)
                    completed.append(r.job)
            jobrows.complete(worker_id=self.worker_id, jobs=completed)
            self.stats.flush()
        batch.finishing.cleanup()
        self._give_back([job for job in jobs if job.id not in fenced], holding)

    def _give_back(self, jobs: list[Claimed], holding: dict[int, int]) -> None:
        """Jobs whose outcome was discarded: those changed while they ran run again; those another worker took
        over are its own now (this one was frozen past its lease)."""
        if not jobs:
            return
        self.result.done -= len(jobs)
        lost = [job for job in jobs if job.id not in holding]
        self.result.requeued += jobrows.release(worker_id=self.worker_id, jobs=jobs)
        if lost:
            self.result.lost += len(lost)
            self.log(f"{self.worker_id}: lost {len(lost)} job(s) to other workers while running them (lease "
                     f"expired: {', '.join(map(str, lost[:5]))}{', ...' if len(lost) > 5 else ''}); "
                     "discarded what it staged for them")

    def _prepare(self, jobs: list[Claimed]) -> dict:
        """Bulk-load what the batch needs; if that fails, each job loads its own (and fails on its own)."""
        try:
            return prepare(jobs)
        except DB_ERRORS:
            if not _database_usable():
                raise
            logger.exception("Preparing a batch failed; running its jobs one by one")
            return {}
        except Exception:  # noqa: BLE001
            logger.exception("Preparing a batch failed; running its jobs one by one")
            return {}

    def _run_one(self, job: Claimed, prepared: object = None) -> _Ran | None:
        with self._current.lock:
            self._current.job, self._current.since = job, time.monotonic()
        started = time.monotonic()
        try:
            outcome = self.job_runner(job, prepared)
        except DB_ERRORS as exc:
            if not _database_usable():
                raise  # an outage, not this job's fault: the worker rides it out and gives the job back
            self._fail(job, exc)
            return None
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
        if apps.is_installed("django_q"):
            # django-q2 Schedules (periodic tasks among them): queued here when due, run by _maybe_background (this
            # worker's or another's).
            self._django_q().schedule_due()
            return
        for name, result in periodic.run_due(worker_id=self.worker_id).items():
            if result:  # a count of things done, or the exception it raised
                self.log(f"periodic task {name}: {result!r}")

    def _django_q(self):
        if self._bridge is None:
            from .background import DjangoQBridge

            self._bridge = DjangoQBridge()
        return self._bridge

    def _maybe_background(self) -> None:
        if not self.options.background or time.monotonic() < self._next_background:
            return
        if not apps.is_installed("django_q"):
            return  # a project without django-q2 has no background tasks
        self._next_background = time.monotonic() + get_config()["BACKGROUND_CHECK_SECONDS"]
        self.result.background += self._django_q().run_pending()


class _Heartbeat:
    """A thread that renews the leases of held jobs and publishes the worker's state for the dashboard."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        supervisor = os.getppid() if not worker.options.follow_recycles else None
        self.registration = processes.Registration(kind=KIND, process_id=worker.worker_id, supervisor_pid=supervisor)
        self.recycle_watch = None  # created on the first beat of a worker that follows recycles
        self._stop = threading.Event()
        self._down = False
        self._thread = threading.Thread(target=self._run, name="mtdispatch-heartbeat", daemon=True)

    def start(self) -> None:
        self._safe_beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        period = min(dispatch_config()["HEARTBEAT_SECONDS"], get_config()["LEASE_SECONDS"] / 3)
        try:
            while not self._stop.wait(period):
                self._safe_beat()
        finally:
            _drop_connection()

    def _safe_beat(self) -> None:
        """A beat that survives the database going away: said once per outage, then it reconnects."""
        try:
            self.beat()
        except DB_ERRORS as exc:
            if not self._down:
                logger.warning("%s: heartbeat: database unavailable (%s)", self.worker.worker_id, _one_line(exc))
            self._down = True
            _drop_connection()
        except Exception:  # noqa: BLE001 - nothing must kill the thread
            logger.exception("Heartbeat failed")
        else:
            self._down = False

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
        with w._current.fence:
            jobrows.renew(worker_id=w.worker_id, job_ids=held)
        state = processes.State.STOPPING if w.stopping else processes.State.BUSY if job else processes.State.IDLE
        self.registration.report(
            state=state, done=w.result.done, failed=w.result.failed, current=str(job) if job else "",
            current_for=time.monotonic() - since if job else 0.0,
        )
        w.peers = max(1, processes.live(KIND).count())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _drop_connection() -> None:
    """Close this thread's connection, broken or not (the next query opens a new one)."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone either way
        connection.connection = None


def _database_usable() -> bool:
    """After a database error in a job: is the database there (the job's error is its own), or not (an outage)?"""
    _drop_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DB_ERRORS:
        return False
    return True
