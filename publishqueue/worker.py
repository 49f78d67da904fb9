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

from . import activity, controls, jobrows, periodic, wakeup
from .collector import Collector
from .conf import get_config
from .jobrows import Claimed
from .jobs import BatchFinishing, prepare, run_job
from .models import PublishActivity
from .publisher import PublishResult, site_roots, sweep_temp_files
from .stats import StatsBuffer

logger = logging.getLogger("mtdispatch.worker")

# A database that went away (server restart, network) or refused a transaction (a deadlock, SQLite's lock
# timeout): the worker gives back what it holds, reconnects with backoff and goes on.
DB_ERRORS = (OperationalError, InterfaceError)
RECONNECT_MAX_SECONDS = 4.0
# A batch's jobs are loaded (jobs.prepare) this many at a time: a job queued above them waits for at most this
# many jobs' loading (measured: 100 entry pages take 0.25-0.3 s to load on a loaded 2-core machine). A batch's
# jobs above at least this many lower ones are placed before those run (Worker._run_batch).
PREPARE_JOBS = 25


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
    # Full garbage collections only between batches, what survives them frozen (collector.py): runworker's.
    collect_between_batches: bool = False


@dataclass
class WorkerResult:
    done: int = 0
    failed: int = 0
    requeued: int = 0
    background: int = 0
    lost: int = 0  # jobs taken over by another worker while this one ran them (it was frozen past its lease)
    preempted: int = 0  # batches cut short for jobs of a higher priority queued meanwhile
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
    site_id: int | None = None  # the site of the file it published (freshness is counted per site)


@dataclass(frozen=True)
class _Finishing:
    """A batch whose jobs ran: what they leave to do together has started (its files are being synced in the
    background). It is finished, fenced, after the next batch ran: see ``Worker._finish``."""

    ran: list[_Ran]
    finishing: BatchFinishing
    started: dt.datetime | None = None
    # Jobs that raised, with the message (for the activity log; they were failed at once).
    failed: list[tuple[Claimed, str]] = field(default_factory=list)
    # Jobs given back before the batch was finished, as they were queued again meanwhile (``Worker._preempt``):
    # what they rendered is stale and discarded, they run again.
    dropped: set[int] = field(default_factory=set)


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
    # Leases: when the heartbeat last renewed them (monotonic), and when (wall clock) it found that it had not for
    # longer than a lease (the process was frozen, or the heartbeat stuck): jobs held then may have been taken over.
    renewed: float = field(default_factory=time.monotonic)
    lapsed: dt.datetime | None = None

    def renewal_overdue(self, now: float) -> bool:
        """Longer than a lease since the last renewal (call with ``lock`` held)."""
        return now - self.renewed > get_config()["LEASE_SECONDS"]

    def leases_lapsed_since(self, since: dt.datetime) -> bool:
        with self.lock:
            if self.renewal_overdue(time.monotonic()):
                return True  # and the heartbeat has not beaten since
            return self.lapsed is not None and self.lapsed >= since


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
        self._last_failure = ""
        self.pause_watch = controls.PauseWatch()
        self.waker = wakeup.Waker(self.stop_event)
        # After a batch was cut short for jobs above its rest: the next claim takes only those (above this).
        self._urgent_floor: int | None = None
        self._next_preempt_check = 0.0
        self.collector = Collector() if options.collect_between_batches and not options.once else None
        self._woken = False  # the last sleep ended for jobs queued: the next step claims them first

    # -- lifecycle ---------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Finish the job in hand, give back the rest of the batch, and return from run()."""
        self.result.reason = self.result.reason or reason
        self.stop_event.set()
        self.waker.poke()

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
            self.waker.close()
            if self.collector is not None:
                self.collector.release()
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
        self._collect_between_batches()
        pauses = self.pause_watch.pauses(fresh=True)
        if not opts.once:
            self.waker.listen()  # before the claim: a job committed after it wakes the wait (or cuts a batch short)
        urgent, self._urgent_floor = self._urgent_floor, None
        floor = opts.floor if urgent is None else max(urgent, opts.floor if opts.floor is not None else urgent)
        jobs = jobrows.claim(
            worker_id=self.worker_id, load=opts.load, kinds=opts.kinds, floor=floor, randomly=opts.randomly,
            share=self.peers, pauses=pauses,
        )
        if urgent is not None and not jobs:
            self._settle(keep=1)  # another worker took them: the batches kept in hand for them are finished now
            return True  # back to the whole queue
        if jobs:
            self._run_batch(jobs, urgent=urgent is not None)
        else:
            requeued = self.result.requeued
            self._settle()
            if self.result.requeued > requeued and not opts.once:
                return True  # the last batch gave back jobs changed while they ran: the queue is not empty
        if not jobs and not opts.daemon:
            self.result.reason = self.result.reason or ("queue paused" if pauses.everything else "queue empty")
            return False
        if opts.once:
            self.result.reason = self.result.reason or "once"
            return False
        if self._reached_max():
            return False
        if not jobs:
            # Only sleeps when nothing is waiting, until jobs are queued (publishqueue.wakeup); while a pause is on,
            # looks again soon (a resume is seen at once).
            if self.collector is not None:
                self.collector.safe_point()  # idle: now rather than when woken by a save's jobs
            self._woken = self.waker.wait(min(opts.sleep, controls.WATCH_SECONDS) if pauses else opts.sleep)
        return True

    def _collect_between_batches(self) -> None:
        """A full collection if one is due (collector.py), unless jobs are waiting: those just queued, or heard
        by the sleep that just ended, may be urgent; a batch cut short waits for the jobs above it."""
        woken, self._woken = self._woken, False
        if self.collector is not None and self._urgent_floor is None and not woken and not self.waker.heard():
            self.collector.safe_point()

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

    def _run_batch(self, jobs: list[Claimed], *, urgent: bool = False) -> None:
        """Run a batch's jobs, then complete the previous batch (its files were syncing meanwhile); this one is
        completed after the next, or at once when it is ``urgent`` (the jobs that cut the last batch short).
        The batch is loaded a priority at a time (its first PREPARE_JOBS alone). When the priority falls, what ran above
        it is finished at once if the batch is urgent or at least PREPARE_JOBS jobs follow (a page waits neither
        for a large batch's lower pages nor, when it cut a batch short, for any lower page; in a drain, batches
        rarely mix priorities; a small batch, a save's, stays one finish: one activity run, one purge).
        Between jobs, one above the batch's remaining ones, queued meanwhile, cuts it short (``_preempt``): the
        rest is given back and the next claim takes only the jobs above it. A database outage in the middle
        leaves everything in hand to ``_abandon``."""
        ran: list[_Ran] = []
        failed: list[tuple[Claimed, str]] = []
        started = timezone.now()
        given_back: set[int] = set()  # jobs of the batch queued again meanwhile: given back (``_preempt``)
        preempted = False
        if any(job.suspect for job in jobs):
            self._settle()  # it may kill this worker: finish the batches in hand first, so they do not die with it
        with self._current.lock:
            self._current.held = [r.job for batch in self._finishing for r in batch.ran] + jobs
        try:
            prepared, prepared_for, prepared_upto = {}, None, 0
            for index, job in enumerate(jobs):
                # Before loading the rest of the batch (the longest step between two jobs): jobs above it first.
                if index and self._cut_short(jobs[index:], ran, given_back):
                    preempted = True
                    break
                if job.priority != prepared_for or index >= prepared_upto:
                    # A priority at a time; the batch's first PREPARE_JOBS alone (the top's data does not wait
                    # for the rest's), then the rest of that priority at once (each load has a fixed cost: loading
                    # a full rebuild's batches 25 at a time cost 30% more CPU per page than 100 at a time).
                    size = PREPARE_JOBS if index == 0 else len(jobs)
                    chunk = [j for j in jobs[index:] if j.priority == job.priority][:size]
                    prepared_for, prepared_upto = job.priority, index + len(chunk)
                    prepared = self._prepare(chunk)
                if self.stopping or self._reached_max() or self._paused(job, prepared.get(job.id)):
                    jobrows.release(worker_id=self.worker_id, jobs=jobs[index:])
                    break
                if job.id in given_back:
                    continue
                if (ran or failed) and job.priority < jobs[index - 1].priority and (
                    urgent or len(jobs) - index >= PREPARE_JOBS
                ):
                    self._finish_now(self._finishing_of(ran, started, failed, given_back))
                    ran, failed, started = [], [], timezone.now()
                outcome = self._run_one(job, prepared.get(job.id))
                if outcome is not None:
                    ran.append(outcome)
                else:
                    failed.append((job, self._last_failure))
        finally:
            self._finishing.append(self._finishing_of(ran, started, failed, given_back))
            with self._current.lock:
                self._current.job = None
        self._settle_after(jobs[-1], urgent=urgent, preempted=preempted)
        with self._current.lock:
            self._current.held = [r.job for batch in self._finishing for r in batch.ran]

    def _settle_after(self, last: Claimed, *, urgent: bool, preempted: bool) -> None:
        """Finish the batches in hand that are due once a batch ran: all of them after an urgent batch (its files
        first: the batch it cut short waits for its fsyncs after them); none when it was cut short or jobs above it
        were queued meanwhile (those are claimed first); else all but this one (its files sync meanwhile)."""
        if not (preempted or urgent) and self._jobs_above(last):
            preempted = True
        if urgent:
            self._finishing.insert(0, self._finishing.pop())
        self._settle(keep=0 if urgent else len(self._finishing) if preempted else 1)

    def _cut_short(self, rest: list[Claimed], ran: list[_Ran], given_back: set[int]) -> bool:
        """Between two jobs: whether jobs above the batch's ``rest`` are runnable; if so the rest is given back."""
        if not self._claim_above(rest[0], rest, ran, given_back):
            return False
        jobrows.release(worker_id=self.worker_id, jobs=rest)
        self.result.preempted += 1
        return True

    def _jobs_above(self, last: Claimed) -> bool:
        """At the end of a batch: whether jobs above it were queued while it ran. They are claimed before the
        batches in hand are finished, which waits for their fsyncs and places a whole batch."""
        return not self.stopping and self._claim_above(last, [], [], set())

    def _claim_above(self, job: Claimed, rest: list[Claimed], ran: list[_Ran], given_back: set[int]) -> bool:
        """Whether jobs above ``job`` are runnable (``_preempt``); if so the next claim takes only those
        (``_urgent_floor``)."""
        if self.options.once or not self._preempt(job, rest, ran, given_back):
            return False
        self._urgent_floor = job.priority + 1
        return True

    @staticmethod
    def _finishing_of(ran: list[_Ran], started: dt.datetime, failed: list[tuple[Claimed, str]],
                      given_back: set[int]) -> _Finishing:
        """What ran (its files start syncing now), less the jobs given back meanwhile (their files are discarded)."""
        finishing = BatchFinishing([(r.job, r.outcome) for r in ran])
        return _Finishing(ran, finishing, started, failed, dropped={r.job.id for r in ran} & given_back)

    def _finish_now(self, batch: _Finishing) -> None:
        """Finish ``batch`` before the batches in hand (they stay in hand: ``_abandon`` sees it meanwhile)."""
        self._finishing.insert(0, batch)
        self._settle(keep=len(self._finishing) - 1)

    def _preempt(self, job: Claimed, rest: list[Claimed], ran: list[_Ran], given_back: set[int]) -> bool:
        """Whether a job above ``job`` (the highest of the batch's ``rest``) is runnable: looked for when jobs were
        queued since the last look, and at least every ``PREEMPT_CHECK_SECONDS`` (jobs coming due, a wake-up lost).
        First, jobs in hand that were queued again above the rest since they were claimed (an edit of a page in a
        rebuild's batch) are given back, so that they run again at once at their new priority instead of after the
        batch (what they rendered, or would render from the batch's data loaded before the edit, is stale): those
        of this batch go into ``given_back``; those of the batches in hand into their ``dropped``. (Queued again
        at the rest's priority, they run again after their batch, as before: no hurry, and no churn.)"""
        now = time.monotonic()
        if not self.waker.heard() and now < self._next_preempt_check:
            return False
        self._next_preempt_check = now + get_config()["PREEMPT_CHECK_SECONDS"]
        floor = max(job.priority + 1, self.options.floor if self.options.floor is not None else job.priority + 1)
        self._give_back_changed(rest, ran, given_back, floor)
        return jobrows.runnable(
            timezone.now(), kinds=self.options.kinds, floor=floor, pauses=self.pause_watch.pauses()
        ).exists()

    def _give_back_changed(self, rest: list[Claimed], ran: list[_Ran], given_back: set[int], floor: int) -> None:
        mine = [job for job in rest if job.id not in given_back] + [r.job for r in ran if r.job.id not in given_back]
        for batch in self._finishing:
            mine += [r.job for r in batch.ran if r.job.id not in batch.dropped]
        changed = jobrows.changed(worker_id=self.worker_id, jobs=mine, floor=floor)
        if not changed:
            return
        self.result.requeued += jobrows.release(worker_id=self.worker_id, jobs=[j for j in mine if j.id in changed])
        given_back.update(changed)
        done = sum(r.job.id in changed for r in ran)  # they did not run to an end after all
        for batch in self._finishing:
            batch.dropped.update(r.job.id for r in batch.ran if r.job.id in changed)
            done += sum(r.job.id in changed for r in batch.ran)
        self.result.done -= done

    def _paused(self, job: Claimed, prepared: object) -> bool:
        """Paused since the batch was claimed (the rest of the batch is given back)."""
        return self.pause_watch.pauses().holds(kind=job.kind, site_id=_site_of(prepared))

    def _settle(self, keep: int = 0) -> None:
        """Finish and complete the batches that ran, oldest first, all but the last ``keep``."""
        while len(self._finishing) > keep:
            self._finish(self._finishing[0])
            self._finishing.pop(0)

    def _finish(self, batch: _Finishing) -> None:
        """Put a batch's files in place and complete its jobs, fenced: in one transaction that holds the rows of
        the jobs this worker still holds at the generation it claimed locked, their files are renamed into
        place and recorded and they are completed (one changed while it ran is given back to run again); the files
        of the others are discarded (another worker took the job over after this one's lease expired). A
        job whose part of the finishing failed is failed like any other: logged, retried. The fsyncs happen
        before, outside the transaction; removing files after it."""
        batch.finishing.sync()
        jobs = [r.job for r in batch.ran]
        placed = timezone.now()
        with self._current.fence, transaction.atomic():
            holding = jobrows.held(worker_id=self.worker_id, jobs=jobs)
            # Still ours: placed, even when changed while it ran (what it rendered is newer than the file on disk,
            # and nobody else can be writing it); complete() then gives it back to run again for the change.
            fenced = {job.id for job in jobs if job.id in holding and job.id not in batch.dropped}
            # Not queued again since claimed: what a job undoes (a page removed, its object gone) is done only then;
            # removing a page deletes its FileInfo and with it the job, which complete() then finds done.
            settled = {job.id for job in jobs if job.id in fenced and holding[job.id] == job.generation}
            failures = batch.finishing.place(fenced, settled)
            completed = []
            for r in batch.ran:
                if r.job.id in failures:
                    self.result.done -= 1
                    self._fail(r.job, failures[r.job.id])
                elif r.job.id in fenced:
                    self.stats.done(r.job.kind, finished=r.finished, run_after=r.job.run_after, run_seconds=r.seconds)
                    if r.site_id is not None and r.job.created is not None:
                        self.stats.fresh(r.site_id, changed=r.job.created, placed=placed)
                    completed.append(r.job)
            self.result.requeued += jobrows.complete(worker_id=self.worker_id, jobs=completed)
            # A removal left for its job's next run (queued again: its object may be back) removed nothing.
            left = {r.job.id for r in batch.ran if getattr(r.outcome, "remove_later", False)} - settled
            self._log_activity(batch, {job.id for job in completed} - left, failures)
            self.stats.flush()
        batch.finishing.cleanup()
        self._give_back([job for job in jobs if job.id not in fenced | batch.dropped], holding, batch.started)

    def _log_activity(self, batch: _Finishing, completed: set[int], failures: dict[int, Exception]) -> None:
        """The batch in its sites' activity logs: one INSERT (a row per site), in the completing transaction."""
        outcomes = [r.outcome for r in batch.ran if r.job.id in completed]
        failed = [
            (r.outcome.site_id, r.outcome.path, str(failures[r.job.id]))
            for r in batch.ran if r.job.id in failures and isinstance(r.outcome, PublishResult)
        ]
        failed += activity.failures_of_jobs((job.fileinfo_id, message) for job, message in batch.failed)
        activity.record(outcomes, failed, kind=PublishActivity.Kind.QUEUE, actor=self.worker_id,
                        started=batch.started or timezone.now())

    def _give_back(self, jobs: list[Claimed], holding: dict[int, int], started: dt.datetime | None) -> None:
        """Jobs this worker no longer holds (another worker took them over after its lease expired, while this one
        was frozen; or their file was deleted meanwhile, with its template, mapping or site, and the job with it):
        what it staged for them is discarded; they are the other worker's now, or nobody's."""
        if not jobs:
            return
        self.result.done -= len(jobs)
        not_held = [job for job in jobs if job.id not in holding]
        self.result.requeued += jobrows.release(worker_id=self.worker_id, jobs=jobs)
        # Their FileInfo gone: deleted with its template, mapping or site, unless this worker's leases lapsed while
        # it ran them (then another worker may have taken them over and removed the file: lost, as the others).
        lapsed = started is None or self._current.leases_lapsed_since(started)
        gone = set() if lapsed else jobrows.files_gone(not_held)
        lost = [job.id for job in not_held if job.id not in gone]
        if gone:
            self.log(f"{self.worker_id}: {len(gone)} job(s) ended while it ran them: their files were deleted "
                     f"meanwhile (with their template, mapping or site); discarded what it staged for them")
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
            if lock_conflict(exc) or not _database_usable():
                raise  # a lock conflict or an outage, not this job's fault: the worker gives the job back at once
            self._fail(job, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - every failure is logged on the job and retried
            self._fail(job, exc)
            return None
        if self.options.verbose:
            self.log(f"{job}: {outcome}")
        self.result.done += 1
        return _Ran(job, outcome, timezone.now(), time.monotonic() - started, _site_of(prepared))

    def _fail(self, job: Claimed, exc: BaseException) -> None:
        self._last_failure = f"{type(exc).__name__}: {exc}"
        final = jobrows.fail(
            worker_id=self.worker_id, job=job, message=self._last_failure,
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
        tasks = periodic.TASKS
        if apps.is_installed("django_q"):
            # django-q2 Schedules (periodic tasks among them): queued here when due, run by _maybe_background (this
            # worker's or another's); tasks more frequent than django-q2 allows are taken here.
            self._django_q().schedule_due()
            tasks = [task for task in tasks if not periodic.on_django_q(task)]
        for name, result in periodic.run_due(worker_id=self.worker_id, tasks=tasks).items():
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
        with w._current.lock:
            now = time.monotonic()
            if w._current.renewal_overdue(now):
                w._current.lapsed = timezone.now()
            w._current.renewed = now
        state = processes.State.STOPPING if w.stopping else processes.State.BUSY if job else processes.State.IDLE
        self.registration.report(
            state=state, done=w.result.done, failed=w.result.failed, current=str(job) if job else "",
            current_for=time.monotonic() - since if job else 0.0,
        )
        w.peers = max(1, processes.live(KIND).count())


def _site_of(prepared: object) -> int | None:
    """The site a prepared job publishes for, if it publishes a file."""
    fileinfo = getattr(prepared, "fileinfo", None)
    return getattr(fileinfo, "site_id", None)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _drop_connection() -> None:
    """Close this thread's connection, broken or not (the next query opens a new one)."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone either way
        connection.connection = None


# Lock conflicts: SQLite's SQLITE_BUSY (after the busy timeout) and SQLITE_LOCKED (a shared cache), PostgreSQL's
# serialization_failure, deadlock_detected and lock_not_available. Transient: the job runs again at once.
_SQLITE_CONFLICTS = {5, 6}
_PG_CONFLICTS = {"40001", "40P01", "55P03"}


def lock_conflict(exc: BaseException) -> bool:
    """Whether a database error is a lock conflict with another connection (not the job's fault: failing the job
    for it cost it an attempt and a retry minutes later)."""
    cause = exc.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_CONFLICTS  # an extended code's primary code is its low byte
    return getattr(cause, "sqlstate", None) in _PG_CONFLICTS


def _database_usable() -> bool:
    """After a database error in a job: is the database there (the job's error is its own), or not (an outage)?"""
    _drop_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DB_ERRORS:
        return False
    return True
