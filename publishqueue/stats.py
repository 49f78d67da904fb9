"""What the workers count as they complete batches, added to the database once per batch:

* ``JobStat``: done, failed and latency per minute and job kind;
* ``QueueSample``: jobs done and attempts failed per slot of a few seconds (the dashboard's rate and chart);
* ``MetricStat`` and ``MetricTotal``: histograms (per minute, bounded; and since the start, for Prometheus) of
  each job's run time and latency by kind, and of freshness by site: the seconds from the change that queued a
  file (the job's ``created``) to the file in place.

Every write is an ``INSERT ... ON CONFLICT DO UPDATE`` that adds to what other workers wrote (SQLite and
PostgreSQL share the syntax)."""
from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from .conf import get_config
from .models import JobStat, MetricStat, MetricTotal, QueueSample

# Histogram bucket upper bounds in seconds (Prometheus' "le"), the last one +Inf.
BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, math.inf)
FAILED = -1  # MetricTotal's bucket for a plain counter (failed attempts)


def bucket_of(seconds: float) -> int:
    return bisect.bisect_left(BUCKETS, seconds)


def minute_of(when: dt.datetime) -> dt.datetime:
    return when.replace(second=0, microsecond=0)


def slot_of(when: dt.datetime) -> dt.datetime:
    """The start of the QueueSample slot ``when`` falls in."""
    size = get_config()["SAMPLE_SECONDS"]
    return when.replace(second=when.second - when.second % size, microsecond=0)


@dataclass
class Bucket:
    done: int = 0
    failed: int = 0
    latency_ms: int = 0
    run_ms: int = 0


@dataclass
class Observed:
    count: int = 0
    sum_ms: int = 0
    max_ms: int = 0

    def add(self, ms: int) -> None:
        self.count += 1
        self.sum_ms += ms
        self.max_ms = max(self.max_ms, ms)


@dataclass
class StatsBuffer:
    buckets: dict[tuple[dt.datetime, str], Bucket] = field(default_factory=lambda: defaultdict(Bucket))
    slots: dict[dt.datetime, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    observed: dict[tuple[dt.datetime, str, str, int], Observed] = field(default_factory=lambda: defaultdict(Observed))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def done(self, kind: str, *, finished: dt.datetime, run_after: dt.datetime, run_seconds: float) -> None:
        bucket = self.buckets[(minute_of(finished), kind)]
        latency = max(0.0, (finished - run_after).total_seconds())
        bucket.done += 1
        bucket.latency_ms += int(latency * 1000)
        bucket.run_ms += int(run_seconds * 1000)
        self.slots[slot_of(finished)][0] += 1
        self.observe("job_run", kind, run_seconds, at=finished)
        self.observe("job_latency", kind, latency, at=finished)

    def failed(self, kind: str, *, finished: dt.datetime) -> None:
        self.buckets[(minute_of(finished), kind)].failed += 1
        self.slots[slot_of(finished)][1] += 1
        self.failures[kind] += 1

    def fresh(self, site_id: object, *, changed: dt.datetime, placed: dt.datetime) -> None:
        """A file is in place: ``changed`` is when the change that queued it was made."""
        self.observe("freshness", str(site_id), max(0.0, (placed - changed).total_seconds()), at=placed)

    def observe(self, metric: str, label: str, seconds: float, *, at: dt.datetime) -> None:
        self.observed[(minute_of(at), metric, label, bucket_of(seconds))].add(int(seconds * 1000))

    def flush(self) -> None:
        """One upsert per table for everything buffered (adding to what other workers wrote)."""
        with connection.cursor() as cursor:
            for sql, params in self._statements():
                cursor.execute(sql, params)
        self.buckets.clear()
        self.slots.clear()
        self.observed.clear()
        self.failures.clear()

    def _statements(self):
        adapt = connection.ops.adapt_datetimefield_value
        if self.buckets:
            table = JobStat._meta.db_table
            rows = [(adapt(m), kind, b.done, b.failed, b.latency_ms, b.run_ms) for (m, kind), b in self.buckets.items()]
            yield _upsert(table, ("minute", "kind"), ("done", "failed", "latency_ms", "run_ms"), rows)
        if self.slots:
            rows = [(adapt(at), done, failures) for at, (done, failures) in self.slots.items()]
            yield _upsert(QueueSample._meta.db_table, ("at",), ("done", "failures"), rows)
        if self.observed:
            rows = [(adapt(m), metric, label, b, o.count, o.sum_ms, o.max_ms)
                    for (m, metric, label, b), o in self.observed.items()]
            yield _upsert(MetricStat._meta.db_table, ("minute", "metric", "label", "bucket"), ("count", "sum_ms"),
                          rows, maximum=("max_ms",))
        totals: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
        for (_, metric, label, b), o in self.observed.items():
            totals[(metric, label, b)][0] += o.count
            totals[(metric, label, b)][1] += o.sum_ms
        for kind, n in self.failures.items():
            totals[("job_failed", kind, FAILED)][0] += n
        if totals:
            rows = [(metric, label, b, count, sum_ms) for (metric, label, b), (count, sum_ms) in totals.items()]
            yield _upsert(MetricTotal._meta.db_table, ("metric", "label", "bucket"), ("count", "sum_ms"), rows)


def _upsert(table: str, keys: tuple[str, ...], added: tuple[str, ...], rows: list[tuple],
            maximum: tuple[str, ...] = ()) -> tuple[str, list]:
    columns = (*keys, *added, *maximum)
    marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sets = [f"{c} = {table}.{c} + excluded.{c}" for c in added]
    sets += [f"{c} = CASE WHEN excluded.{c} > {table}.{c} THEN excluded.{c} ELSE {table}.{c} END" for c in maximum]
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([marks] * len(rows))} "
           f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)}")
    return sql, [value for row in rows for value in row]


def per_minute(*, minutes: int = 60, now: dt.datetime | None = None) -> list[dict]:
    """Done, failed and average latency per minute over the last ``minutes`` (all kinds)."""
    now = minute_of(now or timezone.now())
    start = now - dt.timedelta(minutes=minutes - 1)
    rows = {m: Bucket() for m in (start + dt.timedelta(minutes=i) for i in range(minutes))}
    for stat in JobStat.objects.filter(minute__gte=start):
        bucket = rows.setdefault(stat.minute, Bucket())
        bucket.done += stat.done
        bucket.failed += stat.failed
        bucket.latency_ms += stat.latency_ms
        bucket.run_ms += stat.run_ms
    return [
        {"minute": m, "done": b.done, "failed": b.failed, "avg_latency_ms": b.latency_ms // b.done if b.done else 0}
        for m, b in sorted(rows.items())
    ]


@dataclass(frozen=True)
class Summary:
    """A histogram over a window: how many, and p50, p95 (interpolated in their bucket) and max, in seconds."""

    count: int
    p50: float | None
    p95: float | None
    max: float | None

    def as_dict(self) -> dict:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "max": self.max}


def percentile(counts: list[int], q: float, top: float) -> float:
    """The ``q`` quantile of observations counted per bucket, interpolated linearly inside its bucket (whose
    upper bound is at most ``top``, the largest observation)."""
    rank = q * sum(counts)
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower = BUCKETS[index - 1] if index else 0.0
            upper = min(BUCKETS[index], top)
            lower = min(lower, upper)
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return top


def summaries(metric: str, *, since: dt.datetime) -> dict[str, Summary]:
    """Per label: the observations of ``metric`` since ``since`` (whole minutes)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
    tops: dict[str, int] = defaultdict(int)
    rows = MetricStat.objects.filter(metric=metric, minute__gte=minute_of(since)).values_list(
        "label", "bucket", "count", "max_ms")
    for label, bucket, count, max_ms in rows:
        counts[label][min(bucket, len(BUCKETS) - 1)] += count
        tops[label] = max(tops[label], max_ms)
    result = {}
    for label, per_bucket in counts.items():
        top = tops[label] / 1000
        result[label] = Summary(sum(per_bucket), percentile(per_bucket, 0.5, top), percentile(per_bucket, 0.95, top),
                                top)
    return result
