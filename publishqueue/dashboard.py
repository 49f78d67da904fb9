"""The publish queue's panel of the admin dashboard (a ``dispatch.dashboard.Panel``): depth by state, site and
template, the recent rate and the time to drain, a chart of depth and throughput over the last hour, pauses,
freshness per site, recent errors with their actions, and the queue controls (pause, resume, cancel)."""
from __future__ import annotations

from django.utils import timezone

from dispatch.dashboard import Panel

from .jobs import HANDLERS
from .models import Job
from .overview import overview, recent_errors
from .periodic import sample_if_due
from .sites import get_site_model


def pause_targets(data: dict) -> dict:
    """What the pause form offers: all jobs, each site, each job kind (known handlers and kinds queued)."""
    kinds = sorted(set(HANDLERS) | set(Job.objects.order_by().values_list("kind", flat=True).distinct()))
    return {"sites": list(get_site_model().objects.order_by("name").values_list("pk", "name")), "kinds": kinds}


def queue_data(user) -> dict:
    now = timezone.now()
    sample_if_due(now)
    data = overview(now)
    data["charts"] = {"queue": data.pop("chart")}
    data["recent_errors"] = recent_errors()
    data["depth_tables"] = [
        (data["site_label"], data["by_site"], "site"), ("Template", data["by_template"], "template"),
    ]
    data["title"] = "Publishing and workers"
    data["can_pause"] = user.has_perm("publishqueue.pause_queue")
    data["can_cancel"] = user.has_perm("publishqueue.delete_job")
    data["can_change_jobs"] = user.has_perm("publishqueue.change_job")
    if data["can_pause"]:
        data["pause_targets"] = pause_targets(data)
    return data


PANEL = Panel(
    "publish-queue", "publishqueue/dashboard_panel.html", queue_data, order=10,
    regions={
        "pq-state": "publishqueue/_state.html",
        "pq-pauses": "publishqueue/_pauses.html",
        "pq-tables": "publishqueue/_tables.html",
        "pq-freshness": "publishqueue/_freshness.html",
        "pq-errors": "publishqueue/_errors.html",
    },
)
