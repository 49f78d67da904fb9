"""The publish queue's Prometheus metrics (a collector registered with ``dispatch.metrics``), read from the
database at scrape time: depth by state, the oldest ready job, pauses; jobs done and failed, job run time and
latency histograms by kind, and freshness histograms by site (from ``MetricTotal``, which only grows), with
freshness quantiles over the last hour."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from dispatch.metrics import PREFIX

from .models import MetricTotal
from .overview import STATES, pauses, snapshot
from .sites import get_site_model
from .stats import BUCKETS, FAILED, summaries

HISTOGRAMS = {
    "job_run": ("job_run_seconds", "Seconds each job ran.", "kind"),
    "job_latency": ("job_latency_seconds", "Seconds from a job's run_after to its end.", "kind"),
    "freshness": ("freshness_seconds", "Seconds from the change that queued a file to the file in place.", "site"),
}


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class QueueCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        now = timezone.now()
        snap = snapshot(now)
        depth = GaugeMetricFamily(PREFIX + "queue_jobs", "Jobs in the publish queue by state.", labels=["state"])
        for state in STATES:
            depth.add_metric([state], snap["depth"][state])
        yield depth
        oldest = snap["oldest_ready"]
        yield GaugeMetricFamily(PREFIX + "queue_oldest_ready_seconds", "Age of the oldest ready job (0: none).",
                                value=(now - oldest).total_seconds() if oldest else 0)
        paused = GaugeMetricFamily(PREFIX + "queue_paused", "Pauses in force (1 each).", labels=["scope", "what"])
        for p in pauses():
            paused.add_metric([p["scope"], p["what"]], 1)
        yield paused
        yield from self._totals()
        yield self._freshness_quantiles(now)

    def _totals(self) -> Iterable[Metric]:
        names = dict(get_site_model().objects.values_list("pk", "name"))
        rows = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        failed = CounterMetricFamily(PREFIX + "jobs_failed", "Failed job attempts.", labels=["kind"])
        for metric, label, bucket, count, sum_ms in MetricTotal.objects.values_list(
                "metric", "label", "bucket", "count", "sum_ms"):
            if bucket == FAILED:
                failed.add_metric([label], count)
            else:
                rows[(metric, label)][bucket][0] += count
                rows[(metric, label)][bucket][1] += sum_ms
        done = CounterMetricFamily(PREFIX + "jobs_done", "Jobs done.", labels=["kind"])
        families = {}
        for metric, (name, documentation, label_name) in HISTOGRAMS.items():
            labels = [label_name] + (["site_name"] if label_name == "site" else [])
            families[metric] = HistogramMetricFamily(PREFIX + name, documentation, labels=labels)
        for (metric, label), buckets in sorted(rows.items()):
            if metric not in families:
                continue
            cumulative, total_ms, buckets_out = 0, 0, []
            for index, bound in enumerate(BUCKETS):
                count, sum_ms = buckets.get(index, [0, 0])
                cumulative += count
                total_ms += sum_ms
                buckets_out.append((_le(bound), cumulative))
            labels = [label] + ([names.get(int(label), "") if label.isdigit() else ""] if metric == "freshness" else [])
            families[metric].add_metric(labels, buckets_out, sum_value=total_ms / 1000)
            if metric == "job_run":
                done.add_metric([label], cumulative)
        yield done
        yield failed
        yield from families.values()

    def _freshness_quantiles(self, now: dt.datetime) -> Metric:
        gauge = GaugeMetricFamily(PREFIX + "freshness_last_hour_seconds",
                                  "Freshness over the last hour by site: p50, p95 and max (quantile 1).",
                                  labels=["site", "quantile"])
        for label, summary in sorted(summaries("freshness", since=now - dt.timedelta(hours=1)).items()):
            for quantile, value in (("0.5", summary.p50), ("0.95", summary.p95), ("1", summary.max)):
                gauge.add_metric([label, quantile], value or 0)
        return gauge
