"""MT's periodic tasks, run by whichever worker (on any host) takes each run first.

With django-q2 installed (the project's setting), each task is a django-q2 Schedule row run by runworker's
scheduler (``sync_schedules``, ``run_task``): the admin's Scheduled tasks change what runs. Without it, a run is
taken by moving a PeriodicTask row's ``next_run`` forward with a conditional UPDATE (``run_due``). Either way
several workers on several hosts never run the same task twice for one period.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from dispatch import processes

from . import activity
from .conf import get_config
from .models import JobError, JobStat, MetricStat, PeriodicTask, PublishingMode, QueueSample, Template

logger = logging.getLogger("mtdispatch.periodic")


@dataclass(frozen=True)
class Periodic:
    name: str
    every: dt.timedelta | Callable[[], dt.timedelta]  # a callable: read at each run (from the settings)
    func: Callable[[dt.datetime], object]


def republish_interval_templates(now: dt.datetime) -> int:
    """Index templates with "republish every N minutes": queue their files when their interval is up."""
    from .enqueue import enqueue_publish
    from .fileinfos import template_fileinfos
    from .services import written

    queued = 0
    templates = Template.objects.filter(
        rebuild_interval_minutes__gt=0, kind=Template.Kind.INDEX, mode__in=[PublishingMode.STATIC, PublishingMode.QUEUE]
    ).select_related("site")
    for template in templates:
        if take_run(f"template-interval:{template.pk}", dt.timedelta(minutes=template.rebuild_interval_minutes), now):
            queued += enqueue_publish(written(template_fileinfos(template)))
    return queued


def purge_history(now: dt.datetime) -> int:
    config = get_config()
    stats_cutoff = now - dt.timedelta(hours=config["STATS_RETENTION_HOURS"])
    stats, _ = JobStat.objects.filter(minute__lt=stats_cutoff).delete()
    stats += MetricStat.objects.filter(minute__lt=stats_cutoff).delete()[0]
    stats += QueueSample.objects.filter(at__lt=now - dt.timedelta(hours=config["SAMPLE_RETENTION_HOURS"])).delete()[0]
    old_errors = JobError.objects.filter(created__lt=now - dt.timedelta(days=config["ERROR_RETENTION_DAYS"]))
    # Errors of a job still failed are its history: they stay while the job does.
    errors, _ = old_errors.filter(~Q(job_id__in=_failed_job_ids())).delete()
    runs = activity.purge(now, config["ACTIVITY_RETENTION_DAYS"])
    return stats + errors + runs + processes.purge_stale(now)


def _failed_job_ids():
    from .models import Job

    return Job.objects.filter(failed_at__isnull=False).values("id")


def sample_queue_depth(now: dt.datetime) -> None:
    from .overview import sample_depth

    sample_depth(now)


def sample_if_due(now: dt.datetime, worker_id: str = "dashboard") -> bool:
    """Sample the queue's depth now if nobody did in this period (the dashboard, when no worker runs)."""
    if not take_run("sample-queue-depth", dt.timedelta(seconds=get_config()["SAMPLE_SECONDS"]), now, worker_id):
        return False
    sample_queue_depth(now)
    return True


# Every periodic task: publishqueue's own, and those content apps register in their AppConfig.ready().
TASKS: list[Periodic] = [
    Periodic("sample-queue-depth", lambda: dt.timedelta(seconds=get_config()["SAMPLE_SECONDS"]), sample_queue_depth),
    Periodic("republish-interval-templates", dt.timedelta(seconds=60), republish_interval_templates),
    Periodic("purge-history", dt.timedelta(hours=1), purge_history),
]


# django-q2 Schedules: each periodic task is a Schedule row (its admin: "Scheduled tasks") that runworker's
# scheduler turns into a task when due; editing the row (its interval, next run, repeats 0 to stop it) changes
# what runs. The scheduler takes each due row once across workers and hosts: it selects due rows FOR UPDATE and
# moves their next run in one transaction (SQLite: a BEGIN IMMEDIATE transaction, one writer at a time).
SCHEDULE_PREFIX = "mtdispatch: "
RUN_TASK = "publishqueue.periodic.run_task"


def schedule_name(task: Periodic) -> str:
    return f"{SCHEDULE_PREFIX}{task.name}"


def on_django_q(task: Periodic) -> bool:
    """Tasks run every minute or less often are django-q2 Schedules; more frequent ones (the queue's samples every
    few seconds) are below django-q2's smallest interval and are taken by the workers directly (``run_due``)."""
    return not callable(task.every) and task.every >= dt.timedelta(minutes=1)


def sync_schedules(now: dt.datetime | None = None) -> int:
    """A django-q2 Schedule for each registered periodic task that has none (by name); rows that exist are left as
    the admin set them. Returns how many were created. Intervals are whole minutes (django-q2's smallest)."""
    from django_q.models import Schedule

    now = now or timezone.now()
    created = 0
    for task in filter(on_django_q, TASKS):
        name = schedule_name(task)
        found = list(Schedule.objects.filter(name=name).order_by("pk").values_list("pk", flat=True))
        if found:
            # Workers starting at once may both have created it (the name is not unique): the first one stays.
            # (get_or_create raised MultipleObjectsReturned then, in every worker's loop, for good.)
            if len(found) > 1:
                Schedule.objects.filter(pk__in=found[1:]).delete()
            continue
        Schedule.objects.create(
            name=name, func=RUN_TASK, args=repr(task.name), schedule_type=Schedule.MINUTES,
            minutes=max(1, round(task.every.total_seconds() / 60)), repeats=-1, next_run=now,
        )
        created += 1
    return created


def run_task(name: str) -> object:
    """What a periodic task's Schedule runs (through django-q2, in runworker): the task, now. Its result is django-q2's
    (the admin's Successful / Failed tasks) and, as before, the PeriodicTask row's."""
    task = next((t for t in TASKS if t.name == name), None)
    if task is None:
        raise LookupError(f"No periodic task {name!r} is registered in this process.")
    now = timezone.now()
    result = task.func(now)
    PeriodicTask.objects.update_or_create(
        name=name, defaults={"last_run": now, "next_run": now, "last_result": repr(result)[:2000]}
    )
    return result


def register(task: Periodic) -> None:
    """Add a periodic task (a content app's, from its ``AppConfig.ready()``); the same name replaces it."""
    TASKS[:] = [t for t in TASKS if t.name != task.name] + [task]


def take_run(name: str, every: dt.timedelta, now: dt.datetime, worker_id: str = "") -> bool:
    """True for exactly one caller per period, across processes and hosts."""
    PeriodicTask.objects.get_or_create(name=name, defaults={"next_run": now})
    return bool(
        PeriodicTask.objects.filter(name=name, next_run__lte=now).update(
            next_run=now + every, last_run=now, last_worker=worker_id
        )
    )


def run_due(*, worker_id: str, now: dt.datetime | None = None, tasks=None) -> dict[str, object]:
    """Run every task that is due and that this worker takes; a failing task is logged, not raised."""
    now = now or timezone.now()
    results: dict[str, object] = {}
    for task in TASKS if tasks is None else tasks:
        every = task.every() if callable(task.every) else task.every
        if not take_run(task.name, every, now, worker_id):
            continue
        try:
            results[task.name] = task.func(now)
        except Exception as exc:  # noqa: BLE001 - one broken task must not stop the worker
            logger.exception("Periodic task %s failed", task.name)
            results[task.name] = exc
        PeriodicTask.objects.filter(name=task.name).update(last_result=repr(results[task.name])[:2000])
    return results
