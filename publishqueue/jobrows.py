"""The publish queue's operations on job rows (TheSchwartz semantics, fixed).

* ``claim``: in one short transaction, the next ``load`` runnable jobs by priority, run_after, id, leased
  to one worker (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the transaction is ``BEGIN IMMEDIATE``).
* ``complete``: deletes a job only if its generation is still the one grabbed; a job changed meanwhile is
  released to run again, so no edit is lost.
* ``fail``: logs the error and retries after a backoff, up to max attempts, then keeps the job as failed.
* ``renew``: extends the leases of running jobs; an expired lease makes a job claimable again.
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from .conf import get_config
from .models import Job, JobError

_CLAIM_FIELDS = ("id", "kind", "unique_key", "args", "fileinfo_id", "priority", "run_after", "attempts",
                 "max_attempts", "generation")


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

    def __str__(self) -> str:
        return f"{self.kind}:{self.unique_key or self.id}"


def runnable(now: dt.datetime, *, kinds: Sequence[str] | None = None, floor: int | None = None):
    qs = Job.objects.filter(failed_at__isnull=True, run_after__lte=now).filter(
        Q(grabbed_until__isnull=True) | Q(grabbed_until__lt=now)
    )
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
) -> list[Claimed]:
    """Lease up to ``load`` runnable jobs to ``worker_id``. ``share``: how many workers drain the queue;
    near its end a worker takes only its share of what is left, so that the workers finish together
    instead of one working alone through a last large batch (of the slowest pages, by priority)."""
    config = get_config()
    now = now or timezone.now()
    if share > 1:
        left = runnable(now, kinds=kinds, floor=floor)[: load * share].count()
        load = max(1, min(load, -(-left // share)))
    window = load * config["RANDOM_WINDOW"] if randomly else load
    with transaction.atomic():
        qs = runnable(now, kinds=kinds, floor=floor)
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        rows = [Claimed(*row) for row in qs.values_list(*_CLAIM_FIELDS)[:window]]
        if randomly and len(rows) > load:
            rows = random.sample(rows, load)
        if rows:
            until = now + dt.timedelta(seconds=config["LEASE_SECONDS"])
            Job.objects.filter(id__in=[r.id for r in rows]).update(grabbed_until=until, grabbed_by=worker_id)
    return sorted(rows, key=lambda r: (-r.priority, r.run_after, r.id))


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
        cursor.execute(
            f"UPDATE {table} SET grabbed_until = NULL, grabbed_by = '' WHERE grabbed_by = %s AND id IN ({marks})",
            [worker_id, *ids],
        )
        return cursor.rowcount


def release(*, worker_id: str, jobs: Sequence[Claimed]) -> int:
    """Give back jobs that were grabbed but not run (stopping worker)."""
    if not jobs:
        return 0
    return Job.objects.filter(id__in=[j.id for j in jobs], grabbed_by=worker_id).update(
        grabbed_until=None, grabbed_by=""
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
    """Record a failed attempt and schedule the retry; returns True if the job is now failed for good."""
    now = now or timezone.now()
    attempts = job.attempts + 1
    final = attempts >= job.max_attempts
    changes = {"attempts": attempts, "last_error": message[:5000], "grabbed_until": None, "grabbed_by": ""}
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
        failed_at=None, attempts=0, run_after=timezone.now(), grabbed_until=None, grabbed_by=""
    )
