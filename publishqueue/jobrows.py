"""The publish queue's operations on job rows (TheSchwartz semantics, fixed).

* ``claim``: in one short transaction, the next ``load`` runnable jobs by priority, run_after, id, leased
  to one worker (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the transaction is ``BEGIN IMMEDIATE``).
  A claim counts an attempt (as Oban does at fetch), so a job that kills its worker is counted too: its lease
  expires with ``grabbed_by`` still set, it is claimed again alone (so it takes no other job down with it),
  and once its attempts are used up it is failed with an error saying which worker died running it.
* ``held``: inside the transaction that puts a batch's files in place, which of its jobs the worker still
  holds at the generation it claimed, their rows locked: the fence against a worker that lost its lease.
* ``complete``: deletes a job only if its generation is still the one grabbed; a job changed meanwhile is
  released to run again, so no edit is lost.
* ``fail``: logs the error and retries after a backoff, up to max attempts, then keeps the job as failed.
* ``renew``: extends the leases of running jobs; an expired lease makes a job claimable again.
* ``release``: gives back jobs not run to an end (a stopping worker, a database outage): not an attempt.
* ``changed``: which of the jobs a worker holds were queued again since it claimed them (their generation moved).
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from . import controls
from .conf import get_config
from .models import FileInfo, Job, JobError

_CLAIM_FIELDS = ("id", "kind", "unique_key", "args", "fileinfo_id", "priority", "run_after", "attempts",
                 "max_attempts", "generation", "created", "grabbed_by")
DIED = "worker died while running this job"


@dataclass(frozen=True)
class Claimed:
    """A job as grabbed: what the worker runs, and the generation it must still match to complete."""

    id: int
    kind: str
    unique_key: str | None
    args: dict
    fileinfo_id: int | None
    priority: int
    run_after: dt.datetime
    attempts: int
    max_attempts: int
    generation: int
    # When the change that queued it was made (a later change coalesced into it does not move it): freshness.
    created: dt.datetime | None = None
    # Its last worker's lease expired while it held the job: that worker may have died running it.
    suspect: bool = False

    def __str__(self) -> str:
        return f"{self.kind}:{self.unique_key or self.id}"


@dataclass(frozen=True)
class _Row:
    """A runnable row as read by claim: the job, and the worker whose lease on it expired, if any."""

    job: Claimed
    expired_holder: str

    @classmethod
    def of(cls, values: tuple) -> _Row:
        return cls(Claimed(*values[:-1]), values[-1])


def runnable(now: dt.datetime, *, kinds: Sequence[str] | None = None, floor: int | None = None,
             pauses: controls.Pauses | None = None, run: int | None = None):
    qs = Job.objects.filter(failed_at__isnull=True, run_after__lte=now).filter(
        Q(grabbed_until__isnull=True) | Q(grabbed_until__lt=now)
    )
    if pauses:
        qs = pauses.exclude(qs)
    if run is not None:  # the jobs of one publish run (its page publishing in the browser)
        qs = qs.filter(args__run=run)
    if kinds:
        qs = qs.filter(kind__in=list(kinds))
    if floor is not None:
        qs = qs.filter(priority__gte=floor)
    return qs.order_by("-priority", "run_after", "id")


def claim(
    *,
    worker_id: str,
    load: int,
    kinds: Sequence[str] | None = None,
    floor: int | None = None,
    randomly: bool = False,
    share: int = 1,
    now: dt.datetime | None = None,
    pauses: controls.Pauses | None = None,
    run: int | None = None,
) -> list[Claimed]:
    """Lease up to ``load`` runnable jobs to ``worker_id``. ``share``: how many workers drain the queue;
    near its end a worker takes only its share of what is left, so that the workers finish together
    instead of one working alone through a last large batch (of the slowest pages, by priority).
    Paused jobs (``pauses``, read from the pause table when not given) stay where they are."""
    config = get_config()
    now = now or timezone.now()
    pauses = controls.current() if pauses is None else pauses
    if pauses.everything:
        return []
    if share > 1:
        left = runnable(now, kinds=kinds, floor=floor, pauses=pauses, run=run)[: load * share].count()
        load = max(1, min(load, -(-left // share)))
    window = load * config["RANDOM_WINDOW"] if randomly else load
    with transaction.atomic():
        qs = runnable(now, kinds=kinds, floor=floor, pauses=pauses, run=run)
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        rows = [_Row.of(values) for values in qs.values_list(*_CLAIM_FIELDS)[:window]]
        died = [r for r in rows if r.expired_holder and r.job.attempts >= r.job.max_attempts]
        if died:
            _fail_died(died, now)
        rows = _pick([r for r in rows if r not in died], load, randomly)
        if rows:
            until = now + dt.timedelta(seconds=config["LEASE_SECONDS"])
            Job.objects.filter(id__in=[r.job.id for r in rows]).update(
                grabbed_until=until, grabbed_by=worker_id, attempts=F("attempts") + 1
            )
            _note_expired([r for r in rows if r.expired_holder])
    claimed = [replace(r.job, attempts=r.job.attempts + 1, suspect=bool(r.expired_holder)) for r in rows]
    return sorted(claimed, key=lambda r: (-r.priority, r.run_after, r.id))


def _pick(rows: list[_Row], load: int, randomly: bool) -> list[_Row]:
    """The batch to claim. A job whose last worker's lease expired (the worker may have died running it) runs
    alone: if it kills its worker again, it takes no other job down with it."""
    if randomly and len(rows) > load:
        rows = random.sample(rows, load)
    suspects = [r for r in rows if r.expired_holder]
    return suspects[:1] if suspects else rows[:load]


def _holder(worker_id: str) -> str:
    host, _, rest = worker_id.partition(":")
    pid = rest.partition(":")[0]
    return f"host {host}, pid {pid}" if pid.isdigit() else f"worker {worker_id}"


def _note_expired(rows: list[_Row]) -> None:
    """Say on the job (the admin shows last_error) that its last run ended without a result."""
    for r in rows:
        Job.objects.filter(id=r.job.id).update(
            last_error=f"Attempt {r.job.attempts} ended without a result: its worker ({_holder(r.expired_holder)}) "
            "died or stopped and its lease expired."
        )


def _fail_died(rows: list[_Row], now: dt.datetime) -> None:
    """Jobs whose every attempt ended with its worker dead (or stopped past its lease): failed for good."""
    for r in rows:
        job = r.job
        message = (
            f"{DIED}: {_holder(r.expired_holder)} (worker {r.expired_holder}) stopped reporting and its lease "
            f"expired; attempt {job.attempts} of {job.max_attempts}; exit status or signal unknown "
            "(see the worker's log or its supervisor's)."
        )
        JobError.objects.create(
            job_id=job.id, kind=job.kind, unique_key=job.unique_key or "", fileinfo_id=job.fileinfo_id,
            worker=r.expired_holder, attempt=job.attempts, message=message, created=now,
        )
        Job.objects.filter(id=job.id).update(
            failed_at=now, last_error=message, grabbed_until=None, grabbed_by=""
        )


def held(*, worker_id: str, jobs: Sequence[Claimed]) -> dict[int, int]:
    """Inside a transaction: which of ``jobs`` ``worker_id`` still holds, by id, with their generation now (held
    as claimed if that is the generation it claimed), their rows locked until the transaction ends, so that no
    other worker can take them over before it commits (PostgreSQL: FOR UPDATE, skipping rows locked by someone
    else, who is changing or taking the job: not provably held; SQLite: the transaction is BEGIN IMMEDIATE,
    which excludes every other writer)."""
    if not jobs:
        return {}
    qs = Job.objects.filter(id__in=[job.id for job in jobs], grabbed_by=worker_id).order_by("id")
    if connection.features.has_select_for_update:
        qs = qs.select_for_update(skip_locked=connection.features.has_select_for_update_skip_locked)
    return dict(qs.values_list("id", "generation"))


def changed(*, worker_id: str, jobs: Sequence[Claimed], floor: int | None = None) -> set[int]:
    """The ids of ``jobs`` that ``worker_id`` still holds and that were queued again since it claimed them (an
    ``enqueue`` of the same key moved their generation: what it renders or rendered for them is stale), now at a
    priority of at least ``floor``."""
    if not jobs:
        return set()
    claimed = {job.id: job.generation for job in jobs}
    rows = Job.objects.filter(id__in=list(claimed), grabbed_by=worker_id)
    if floor is not None:
        rows = rows.filter(priority__gte=floor)
    return {job_id for job_id, generation in rows.values_list("id", "generation") if generation != claimed[job_id]}


def _id_list(ids: Iterable[int]) -> tuple[str, list[int]]:
    ids = list(ids)
    return ", ".join(["%s"] * len(ids)), ids


def complete(*, worker_id: str, jobs: Sequence[Claimed]) -> int:
    """Delete finished jobs whose generation did not move; release the others to run again.
    Returns how many were released (changed while running)."""
    if not jobs:
        return 0
    table = Job._meta.db_table
    pairs = ", ".join(["(%s, %s)"] * len(jobs))
    params = [v for job in jobs for v in (job.id, job.generation)]
    marks, ids = _id_list(job.id for job in jobs)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE grabbed_by = %s AND (id, generation) IN ({pairs})",
                       [worker_id, *params])
        cursor.execute(  # changed while running: the run succeeded, so it starts again with no attempt used
            f"UPDATE {table} SET grabbed_until = NULL, grabbed_by = '', attempts = 0 "
            f"WHERE grabbed_by = %s AND id IN ({marks})",
            [worker_id, *ids],
        )
        return cursor.rowcount


def files_gone(jobs: Sequence[Claimed]) -> set[int]:
    """The ids of ``jobs`` whose FileInfo no longer exists (deleted with its template, mapping or site: the job
    row went with it)."""
    wanted = {job.id: job.fileinfo_id for job in jobs if job.fileinfo_id is not None}
    if not wanted:
        return set()
    there = set(FileInfo.objects.filter(pk__in=set(wanted.values())).values_list("pk", flat=True))
    return {job_id for job_id, fileinfo_id in wanted.items() if fileinfo_id not in there}


def release(*, worker_id: str, jobs: Sequence[Claimed]) -> int:
    """Give back jobs that were grabbed but not run to an end (a stopping worker, a database outage, files
    discarded): the attempt their claim counted is taken back."""
    if not jobs:
        return 0
    return Job.objects.filter(id__in=[j.id for j in jobs], grabbed_by=worker_id).update(
        grabbed_until=None, grabbed_by="", attempts=Greatest(F("attempts") - 1, 0)
    )


def renew(*, worker_id: str, job_ids: Sequence[int], now: dt.datetime | None = None) -> int:
    """Extend the leases of jobs this worker still holds."""
    if not job_ids:
        return 0
    now = now or timezone.now()
    until = now + dt.timedelta(seconds=get_config()["LEASE_SECONDS"])
    return Job.objects.filter(id__in=list(job_ids), grabbed_by=worker_id).update(grabbed_until=until)


def backoff(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt``: the base, then doubling with +-20% jitter, capped."""
    config = get_config()
    base = config["RETRY_BACKOFF_SECONDS"]
    if attempt <= 1:
        return float(base)
    delay = base * 2 ** (attempt - 1) * (rng or random).uniform(0.8, 1.2)
    return float(min(delay, config["RETRY_BACKOFF_MAX_SECONDS"]))


def fail(*, worker_id: str, job: Claimed, message: str, traceback: str = "", now: dt.datetime | None = None) -> bool:
    """Record a failed attempt and schedule the retry; returns True if the job is now failed for good. The
    attempt was counted when the job was claimed (``job.attempts`` is its number)."""
    now = now or timezone.now()
    attempts = max(job.attempts, 1)
    final = attempts >= job.max_attempts
    changes = {"last_error": message[:5000], "grabbed_until": None, "grabbed_by": ""}
    if final:
        changes["failed_at"] = now
    else:
        changes["run_after"] = now + dt.timedelta(seconds=backoff(attempts))
    with transaction.atomic():
        JobError.objects.create(
            job_id=job.id, kind=job.kind, unique_key=job.unique_key or "", fileinfo_id=job.fileinfo_id,
            worker=worker_id, attempt=attempts, message=message[:5000], traceback=traceback, created=now,
        )
        Job.objects.filter(id=job.id, grabbed_by=worker_id).update(**changes)
    return final


def retry_now(job_ids: Iterable[int]) -> int:
    """Make jobs (failed or waiting to retry) runnable at once, with their attempts reset."""
    return Job.objects.filter(id__in=list(job_ids)).update(
        failed_at=None, attempts=0, run_after=timezone.now(), grabbed_until=None, grabbed_by="", last_error=""
    )
