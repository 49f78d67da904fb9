"""Recycle requests: recorded in the database for every host, signalled at once on this one."""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal

from django.utils import timezone

from .conf import get_config
from .models import ManagerStatus, ProcessHeartbeat, RecycleAck, RecycleRequest
from .processes import host_id

logger = logging.getLogger("mtdispatch.control")


def request_recycle(*, user=None, note: str = "") -> RecycleRequest:
    """Record a recycle request and SIGHUP the live managers on this host (others poll the database)."""
    request = RecycleRequest.objects.create(requested_by=user, note=note[:200])
    for manager in live_managers().filter(host=host_id()):
        try:
            os.kill(manager.pid, signal.SIGHUP)
        except (ProcessLookupError, PermissionError) as exc:
            logger.info("Could not signal manager %s: %s (it will see the request in the database)", manager.pid, exc)
    return request


def live_managers():
    stale = dt.timedelta(seconds=get_config()["MANAGER_STALE_SECONDS"])
    return ManagerStatus.objects.filter(last_seen__gte=timezone.now() - stale)


def latest_request_id() -> int:
    return RecycleRequest.objects.order_by("-id").values_list("id", flat=True).first() or 0


class RecycleWatch:
    """Notices recycle requests made after it first looked (older ones are not this process's)."""

    def __init__(self) -> None:
        self.seen: int | None = None

    def new_request(self) -> int | None:
        """The id of a recycle request newer than any seen so far, or None."""
        latest = latest_request_id()
        if self.seen is not None and latest > self.seen:
            self.seen = latest
            return latest
        if self.seen is None:
            self.seen = latest
        return None


def acknowledge(*, request_id: int, kind: str, old_pids: list[int], new_pids: list[int]) -> None:
    RecycleAck.objects.create(
        request_id=request_id, kind=kind, host=host_id(), pid=os.getpid(),
        old_pids=old_pids, new_pids=new_pids,
    )


def progress(request: RecycleRequest) -> dict:
    """Which live managers and queue workers acknowledged the request (for the dashboard)."""
    acks = list(request.acks.values("kind", "host", "pid", "acked_at", "old_pids", "new_pids"))
    stale = timezone.now() - dt.timedelta(seconds=get_config()["MANAGER_STALE_SECONDS"])
    expected = list(live_managers().filter(started__lt=request.requested_at).values("host", "pid"))
    # Standalone processes acknowledge themselves; supervised ones are in their manager's acknowledgement.
    standalone = ProcessHeartbeat.objects.filter(
        last_seen__gte=stale, started__lt=request.requested_at, supervisor_pid__isnull=True
    )
    expected += list(standalone.values("host", "pid"))
    acked = {(a["host"], a["pid"]) for a in acks}
    return {
        "id": request.pk, "requested_at": request.requested_at, "requested_by": str(request.requested_by or ""),
        "acks": acks, "waiting": [e for e in expected if (e["host"], e["pid"]) not in acked],
    }


class ManagerControl:
    """The control plane as a runfcgi manager sees it (``pool.ControlPlane``): new recycle requests, and
    one acknowledgement per request with the pids it replaced and started."""

    def __init__(self) -> None:
        self.watch = RecycleWatch()

    @property
    def seen(self) -> int:
        return self.watch.seen or 0

    def new_request(self) -> int | None:
        from django.db import close_old_connections

        close_old_connections()
        return self.watch.new_request()

    def acknowledge(self, request_id: int, old_pids: list[int], new_pids: list[int]) -> None:
        acknowledge(request_id=request_id, kind="manager", old_pids=old_pids, new_pids=new_pids)
