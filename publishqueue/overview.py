"""The queue as the dashboard and /metrics show it: depth by state, site and template (one query, so the
totals and the tables always agree), the recent rate and the time to drain, the chart's samples, freshness."""
from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.models import Case, CharField, Count, Min, Value, When
from django.utils import timezone

from . import controls
from .conf import get_config
from .models import Job, JobError, QueuePause, QueueSample
from .sites import get_site_model
from .stats import slot_of, summaries

STATES = ("ready", "waiting", "in_progress", "failed")
NO_FILE = "(no file)"


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


def _row(key, name: str, **extra) -> dict:
    return {"id": key, "name": name, **dict.fromkeys(STATES, 0), **extra}


def snapshot(now: dt.datetime) -> dict:
    """Depth by state in total, by site and by template, and the oldest ready job, from one query."""
    counts = dict.fromkeys(STATES, 0)
    sites: dict[object, dict] = {}
    templates: dict[object, dict] = {}
    oldest = None
    fields = ("fileinfo__site_id", "fileinfo__site__name", "fileinfo__template_id", "fileinfo__template__name")
    rows = Job.objects.annotate(state=state_of(now)).values(*fields, "state").annotate(n=Count("id"),
                                                                                       first=Min("run_after"))
    for row in rows.order_by():
        site_id, site_name, template_id, template_name = (row[f] for f in fields)
        state, n = row["state"], row["n"]
        counts[state] += n
        sites.setdefault(site_id, _row(site_id, site_name or NO_FILE))[state] += n
        templates.setdefault(template_id, _row(template_id, template_name or NO_FILE, site=site_name or ""))[state] += n
        if state == "ready" and (oldest is None or row["first"] < oldest):
            oldest = row["first"]
    return {"depth": counts, "by_site": _ordered(sites), "by_template": _ordered(templates),
            "oldest_ready": oldest}


def _ordered(rows: dict) -> list[dict]:
    return sorted(rows.values(), key=lambda r: (-sum(r[s] for s in STATES), r["name"], str(r["id"])))


def depth(now: dt.datetime | None = None) -> dict[str, int]:
    return snapshot(now or timezone.now())["depth"]


def sample_depth(now: dt.datetime) -> dict[str, int]:
    """Record the depth in this slot's QueueSample (periodic task, and the dashboard when it is due)."""
    counts = depth(now)
    table = QueueSample._meta.db_table
    sql = (f"INSERT INTO {table} (at, ready, waiting, in_progress, failed, done, failures) "
           "VALUES (%s, %s, %s, %s, %s, 0, 0) ON CONFLICT (at) DO UPDATE SET ready = excluded.ready, "
           "waiting = excluded.waiting, in_progress = excluded.in_progress, failed = excluded.failed")
    at = connection.ops.adapt_datetimefield_value(slot_of(now))
    with connection.cursor() as cursor:
        cursor.execute(sql, [at, *(counts[s] for s in STATES)])
    return counts


def rate(now: dt.datetime, samples: list[QueueSample]) -> tuple[float, float | None]:
    """Jobs done per minute, measured from the first slot with jobs done in the last ``RATE_WINDOW_SECONDS``
    until now (so a queue that started draining 20 s ago is measured over those 20 s), and that span in
    seconds (None: nothing was done in the window)."""
    config = get_config()
    start = now - dt.timedelta(seconds=config["RATE_WINDOW_SECONDS"])
    recent = [s for s in samples if s.at >= slot_of(start)]
    busy = [s for s in recent if s.done]
    if not busy:
        return 0.0, None
    span = max((now - busy[0].at).total_seconds(), float(config["SAMPLE_SECONDS"]))
    return sum(s.done for s in busy) * 60 / span, span


def chart(now: dt.datetime, samples: list[QueueSample], minutes: int = 60, at_least: int = 10) -> dict:
    """The chart's series: every slot of the last ``minutes`` (from the first sample, if later, but at least the
    last ``at_least`` minutes), the depth sampled in it (None when nobody sampled) and the jobs done in it as a
    rate per minute."""
    size = get_config()["SAMPLE_SECONDS"]
    first = slot_of(now - dt.timedelta(minutes=minutes))
    if samples:
        first = max(first, min(samples[0].at, slot_of(now - dt.timedelta(minutes=at_least))))
    by_slot = {s.at: s for s in samples}
    xs, queued, done = [], [], []
    slot = first
    while slot <= now:
        sample = by_slot.get(slot)
        xs.append(slot.timestamp())
        queued.append(sample.backlog if sample else None)
        done.append(sample.done * 60 / size if sample else 0)
        slot += dt.timedelta(seconds=size)
    return {
        "x": xs,
        "series": [
            {"label": "Queued (ready, waiting, running)", "values": queued, "axis": "jobs", "kind": "line"},
            {"label": "Done per minute", "values": done, "axis": "per minute", "kind": "bars"},
        ],
        "axes": {"jobs": "jobs queued", "per minute": "jobs done / min"},
        "slot_seconds": size,
    }


def pauses() -> list[dict]:
    return [
        {"id": p.pk, "scope": p.scope, "what": controls.describe(p), "site_id": p.site_id, "kind": p.kind,
         "by": str(p.paused_by or ""), "at": p.paused_at, "note": p.note}
        for p in QueuePause.objects.select_related("site", "paused_by")
    ]


def freshness(now: dt.datetime, *, hours: int = 1) -> list[dict]:
    """Per site: how many files the queue put in place in the last ``hours`` and p50/p95/max of the seconds
    from the change that queued each to the file in place."""
    found = summaries("freshness", since=now - dt.timedelta(hours=hours))
    names = dict(get_site_model().objects.filter(pk__in=[int(k) for k in found if k.isdigit()])
                 .values_list("pk", "name"))
    rows = [{"site_id": int(label) if label.isdigit() else label, "name": names.get(int(label), f"#{label}")
             if label.isdigit() else label, **s.as_dict()} for label, s in found.items()]
    return sorted(rows, key=lambda r: r["name"])


def overview(now: dt.datetime | None = None) -> dict:
    now = now or timezone.now()
    snap = snapshot(now)
    counts = snap["depth"]
    samples = list(QueueSample.objects.filter(at__gte=slot_of(now - dt.timedelta(minutes=60))).order_by("at"))
    per_min, span = rate(now, samples)
    backlog = counts["ready"] + counts["in_progress"] + counts["waiting"]
    paused = pauses()
    return {
        "now": now,
        "depth": counts,
        "backlog": backlog,
        "total": backlog + counts["failed"],
        "oldest_ready_age": (now - snap["oldest_ready"]).total_seconds() if snap["oldest_ready"] else None,
        "throughput_per_min": per_min,
        "rate_seconds": span,
        "eta_seconds": 0 if not backlog else (backlog / per_min * 60 if per_min else None),
        "by_site": snap["by_site"],
        "by_template": snap["by_template"],
        "site_label": str(get_site_model()._meta.verbose_name).capitalize(),
        "chart": chart(now, samples),
        "pauses": paused,
        "paused_all": any(p["scope"] == QueuePause.Scope.ALL for p in paused),
        "freshness": freshness(now),
    }


def recent_errors(limit: int = 10) -> list[dict]:
    fields = ("id", "job_id", "kind", "unique_key", "worker", "attempt", "message", "created")
    return list(JobError.objects.order_by("-created").values(*fields)[:limit])
