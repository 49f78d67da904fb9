"""Process status: what each manager publishes, and the pool view for the dashboard and the CLI."""
from __future__ import annotations

import os

import psutil
from django.utils import timezone

from .conf import get_config
from .control import live_managers
from .models import ManagerStatus, ProcessHeartbeat
from .processes import host_id


def publish_manager(manager) -> None:
    """Write the manager's pool (per child: pid, state, requests, current request and age, RSS, CPU)."""
    pool = manager.pool
    ManagerStatus.objects.update_or_create(
        host=host_id(), pid=os.getpid(),
        defaults={
            "started": manager.started, "last_seen": timezone.now(), "address": manager.options.listen.describe(),
            "state": pool.stopping and "stopping" or ("recycling" if pool.recycle_state else "running"),
            "workers_target": pool.target, "children": pool.snapshot(), "queue_workers": pool.queue_snapshot(),
            "requests_served": pool.requests_served, "recycles": pool.recycles,
            "last_recycle_request": manager.control.seen or 0, "message": pool.message, **_own_usage(),
        },
    )


_me: dict[int, psutil.Process] = {}


def _own_usage() -> dict:
    """This process's RSS and CPU % (since its last status)."""
    try:
        me = _me.get(os.getpid())
        if me is None:
            me = _me[os.getpid()] = psutil.Process()
            me.cpu_percent(None)
        return {"rss": me.memory_info().rss, "cpu": me.cpu_percent(None)}
    except psutil.Error:
        return {}


def forget_manager() -> None:
    ManagerStatus.objects.filter(host=host_id(), pid=os.getpid()).delete()


def pool() -> dict:
    """Every live manager and queue worker, on every host (dashboard, /dispatch/status, manage.py workers)."""
    now = timezone.now()
    stale_after = get_config()["HEARTBEAT_STALE_SECONDS"]
    managers = [
        {
            "host": m.host, "pid": m.pid, "address": m.address, "state": m.state,
            "uptime": (now - m.started).total_seconds(),
            "last_seen": m.last_seen, "workers_target": m.workers_target, "children": m.children,
            "queue_workers": m.queue_workers, "requests_served": m.requests_served, "recycles": m.recycles,
            "message": m.message, "rss": m.rss, "cpu": m.cpu,
        }
        for m in live_managers().order_by("host", "pid")
    ]
    workers = [
        {
            "host": w.host, "pid": w.pid, "worker_id": w.process_id, "kind": w.kind, "state": w.state,
            "jobs_done": w.done, "jobs_failed": w.failed, "current_job": w.current,
            "supervisor_pid": w.supervisor_pid, "rss": w.rss, "cpu": w.cpu, "age": (now - w.started).total_seconds(),
            "last_seen": w.last_seen, "stale": (now - w.last_seen).total_seconds() > stale_after,
        }
        for w in ProcessHeartbeat.objects.order_by("host", "pid")
    ]
    return {"managers": managers, "queue_workers": workers, "generated": now}
