"""Per-minute throughput and latency, added once per batch by each worker."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from .models import JobStat


@dataclass
class Bucket:
    done: int = 0
    failed: int = 0
    latency_ms: int = 0
    run_ms: int = 0


@dataclass
class StatsBuffer:
    buckets: dict[tuple[dt.datetime, str], Bucket] = field(default_factory=lambda: defaultdict(Bucket))

    def done(self, kind: str, *, finished: dt.datetime, run_after: dt.datetime, run_seconds: float) -> None:
        bucket = self.buckets[(finished.replace(second=0, microsecond=0), kind)]
        bucket.done += 1
        bucket.latency_ms += max(0, int((finished - run_after).total_seconds() * 1000))
        bucket.run_ms += int(run_seconds * 1000)

    def failed(self, kind: str, *, finished: dt.datetime) -> None:
        self.buckets[(finished.replace(second=0, microsecond=0), kind)].failed += 1

    def flush(self) -> None:
        """One upsert for everything buffered (adds to what other workers wrote for the same minute)."""
        if not self.buckets:
            return
        table = JobStat._meta.db_table
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(self.buckets))
        params: list = []
        for (minute, kind), b in self.buckets.items():
            params += [connection.ops.adapt_datetimefield_value(minute), kind, b.done, b.failed, b.latency_ms, b.run_ms]
        sql = f"""INSERT INTO {table} (minute, kind, done, failed, latency_ms, run_ms) VALUES {rows}
                  ON CONFLICT (minute, kind) DO UPDATE SET done = {table}.done + excluded.done,
                  failed = {table}.failed + excluded.failed, latency_ms = {table}.latency_ms + excluded.latency_ms,
                  run_ms = {table}.run_ms + excluded.run_ms"""
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        self.buckets.clear()


def per_minute(*, minutes: int = 60, now: dt.datetime | None = None) -> list[dict]:
    """Done, failed and average latency per minute over the last ``minutes`` (all kinds)."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
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
