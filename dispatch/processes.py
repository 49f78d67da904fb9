"""The process registry: every process that is not a FastCGI manager (queue workers, standalone or
supervised, on any host) reports itself here, and the dashboard, ``manage.py workers`` and recycle
progress read it. Managers publish their pool in ``status``."""
from __future__ import annotations

import datetime as dt
import os
import socket
import time

import psutil
from django.utils import timezone

from .conf import get_config
from .models import ProcessHeartbeat

State = ProcessHeartbeat.State


def host_id() -> str:
    """This host's name in process ids: ``MTDISPATCH_HOST`` if set (containers whose hostnames repeat), else the
    host name."""
    return os.environ.get("MTDISPATCH_HOST") or socket.gethostname()


def make_process_id() -> str:
    return f"{host_id()}:{os.getpid()}:{int(time.time())}"


class Registration:
    """One process's entry in the registry: ``report`` it every heartbeat, ``forget`` it on a clean exit."""

    def __init__(self, *, kind: str, process_id: str | None = None, supervisor_pid: int | None = None) -> None:
        self.kind = kind
        self.process_id = process_id or make_process_id()
        self.supervisor_pid = supervisor_pid
        self.started = timezone.now()
        self._ps = psutil.Process()
        self._ps.cpu_percent(None)

    def report(
        self, *, state: str, done: int = 0, failed: int = 0, current: str = "", current_for: float = 0.0
    ) -> None:
        now = timezone.now()
        host, pid = self.process_id.split(":")[:2]
        ProcessHeartbeat.objects.update_or_create(
            process_id=self.process_id,
            defaults={
                "kind": self.kind, "host": host, "pid": int(pid), "supervisor_pid": self.supervisor_pid,
                "started": self.started, "last_seen": now, "state": state, "done": done, "failed": failed,
                "current": current[:300], "current_since": now - dt.timedelta(seconds=current_for) if current else None,
                **self._usage(),
            },
        )

    def _usage(self) -> dict:
        try:
            return {"rss": self._ps.memory_info().rss, "cpu": self._ps.cpu_percent(None)}
        except psutil.Error:
            return {}

    def forget(self) -> None:
        ProcessHeartbeat.objects.filter(process_id=self.process_id).delete()


def live(kind: str | None = None, *, within: float | None = None):
    """Processes that reported within ``within`` seconds (default: three heartbeats), stopping ones aside."""
    seconds = within if within is not None else 3 * get_config()["HEARTBEAT_SECONDS"]
    found = ProcessHeartbeat.objects.filter(last_seen__gte=timezone.now() - dt.timedelta(seconds=seconds))
    if kind is not None:
        found = found.filter(kind=kind)
    return found.exclude(state=State.STOPPING)


def purge_stale(now: dt.datetime) -> int:
    """Forget processes silent for ten times the stale period (killed without a clean exit)."""
    cutoff = now - dt.timedelta(seconds=get_config()["HEARTBEAT_STALE_SECONDS"] * 10)
    deleted, _ = ProcessHeartbeat.objects.filter(last_seen__lt=cutoff).delete()
    return deleted
