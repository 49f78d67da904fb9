"""Prometheus metrics (``/metrics``), correct whichever process answers the scrape: every figure is read at
scrape time from the database that all processes on all hosts write to, never from one process's memory.
dispatch contributes the FastCGI managers' published pools (children by state, requests, recycles, RSS and
CPU of every process) and the registry of queue workers; other apps add their collectors with
``register_collector`` in their ``AppConfig.ready()`` (publishqueue: the queue, jobs, freshness)."""
from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .status import pool

PREFIX = "mtdispatch_"
collectors: dict[str, Collector] = {}


def register_collector(name: str, collector: Collector) -> None:
    collectors[name] = collector


class PoolCollector(Collector):
    """FastCGI managers and queue workers, as they last published themselves."""

    def collect(self) -> Iterable[Metric]:
        status = pool()
        managers = status["managers"]
        up = GaugeMetricFamily(PREFIX + "fastcgi_managers", "Live runfcgi managers.", value=len(managers))
        children = GaugeMetricFamily(PREFIX + "fastcgi_children", "FastCGI children by state.",
                                     labels=["host", "manager", "state"])
        target = GaugeMetricFamily(PREFIX + "fastcgi_children_target", "Children each manager keeps.",
                                   labels=["host", "manager"])
        requests = CounterMetricFamily(PREFIX + "fastcgi_requests", "Requests served (since the manager started).",
                                       labels=["host", "manager"])
        recycles = CounterMetricFamily(PREFIX + "fastcgi_recycles", "Rolling recycles (since the manager started).",
                                       labels=["host", "manager"])
        rss = GaugeMetricFamily(PREFIX + "process_resident_memory_bytes", "RSS of every process.",
                                labels=["host", "pid", "role"])
        cpu = GaugeMetricFamily(PREFIX + "process_cpu_percent", "CPU % of every process (since its last report).",
                                labels=["host", "pid", "role"])
        for m in managers:
            labels = [m["host"], str(m["pid"])]
            by_state: dict[str, int] = {}
            for child in m["children"]:
                by_state[child["state"]] = by_state.get(child["state"], 0) + 1
                rss.add_metric([m["host"], str(child["pid"]), "fastcgi child"], child.get("rss") or 0)
                cpu.add_metric([m["host"], str(child["pid"]), "fastcgi child"], child.get("cpu") or 0)
            for state in sorted({"idle", "busy", *by_state}):
                children.add_metric([*labels, state], by_state.get(state, 0))
            target.add_metric(labels, m["workers_target"])
            requests.add_metric(labels, m["requests_served"])
            recycles.add_metric(labels, m["recycles"])
            rss.add_metric([*labels, "manager"], m.get("rss") or 0)
            cpu.add_metric([*labels, "manager"], m.get("cpu") or 0)
        workers = GaugeMetricFamily(PREFIX + "queue_workers", "Queue worker processes by state.", labels=["state"])
        by_state = {}
        for w in status["queue_workers"]:
            state = "stale" if w["stale"] else w["state"]
            by_state[state] = by_state.get(state, 0) + 1
            rss.add_metric([w["host"], str(w["pid"]), "queue worker"], w["rss"] or 0)
            cpu.add_metric([w["host"], str(w["pid"]), "queue worker"], w["cpu"] or 0)
        for state in sorted({"idle", "busy", *by_state}):
            workers.add_metric([state], by_state.get(state, 0))
        yield from (up, children, target, requests, recycles, workers, rss, cpu)


def registry() -> CollectorRegistry:
    """A registry of this scrape's collectors (not the process-global one: nothing is kept in memory)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(PoolCollector())
    for collector in collectors.values():
        found.register(collector)
    return found


def exposition() -> bytes:
    return generate_latest(registry())
