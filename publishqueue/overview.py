"""The queue as the dashboard shows it: depth by state, blog and template, history, ETA."""
from __future__ import annotations

import datetime as dt

from django.db.models import Case, CharField, Count, Min, Q, Value, When
from django.utils import timezone

from .models import Job, JobError, QueueSample
from .stats import per_minute

STATES = ("ready", "waiting", "in_progress", "failed")


def state_of(now: dt.datetime) -> Case:
    """A job's state as an SQL expression: failed, in progress (lease holds), ready, or waiting (a retry
    backoff or a future run_after)."""
    return Case(
        When(failed_at__isnull=False, then=Value("failed")),
        When(grabbed_until__gt=now, then=Value("in_progress")),
        When(run_after__lte=now, then=Value("ready")),
        default=Value("waiting"),
        output_field=CharField(),
    )


def depth(now: dt.datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    counts = dict.fromkeys(STATES, 0)
    for row in Job.objects.annotate(state=state_of(now)).values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    return counts


def _grouped(field: str, now: dt.datetime) -> list[dict]:
    rows: dict[str, dict] = {}
    qs = Job.objects.annotate(state=state_of(now)).values(field, "state").annotate(n=Count("id"))
    for row in qs:
        name = row[field] or "(no file)"
        rows.setdefault(name, {"name": name, **dict.fromkeys(STATES, 0)})[row["state"]] = row["n"]
    return sorted(rows.values(), key=lambda r: (-sum(r[s] for s in STATES), r["name"]))


def sample_depth(now: dt.datetime) -> dict[str, int]:
    """Record this minute's depth (periodic task)."""
    counts = depth(now)
    QueueSample.objects.update_or_create(minute=now.replace(second=0, microsecond=0), defaults=counts)
    return counts


def overview(now: dt.datetime | None = None) -> dict:
    now = now or timezone.now()
    counts = depth(now)
    oldest = Job.objects.filter(failed_at__isnull=True, run_after__lte=now).filter(
        Q(grabbed_until__isnull=True) | Q(grabbed_until__lte=now)
    ).aggregate(oldest=Min("run_after"))["oldest"]
    history = per_minute(minutes=60, now=now)
    samples = {
        s.minute: s for s in QueueSample.objects.filter(minute__gte=now - dt.timedelta(minutes=60))
    }
    for point in history:
        sample = samples.get(point["minute"])
        point["depth"] = sample.ready + sample.waiting + sample.in_progress if sample else None
    recent = [p["done"] for p in history[-5:]]
    per_min = sum(recent) / len(recent) if recent else 0
    backlog = counts["ready"] + counts["in_progress"] + counts["waiting"]
    return {
        "now": now,
        "depth": counts,
        "total": backlog + counts["failed"],
        "oldest_ready_age": (now - oldest).total_seconds() if oldest else None,
        "throughput_per_min": per_min,
        "eta_seconds": (backlog / per_min * 60) if per_min and backlog else (0 if not backlog else None),
        "by_blog": _grouped("fileinfo__site__name", now),
        "by_template": _grouped("fileinfo__template__name", now),
        "history": history,
    }


def recent_errors(limit: int = 10) -> list[dict]:
    fields = ("id", "job_id", "kind", "unique_key", "worker", "attempt", "message", "created")
    return list(JobError.objects.order_by("-created").values(*fields)[:limit])
