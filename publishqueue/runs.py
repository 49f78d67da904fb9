"""Publish runs: MT's Publish Site dialog without MT's long request.

A run is a batch of jobs at ``RUN_PRIORITY`` whose args carry the run's id; nothing is rendered in the request
that starts it. Its progress is counted from the queue: jobs are deleted when done, kept when failed for good,
so done = total - left - failed. A job already queued for one of its files (a content change) coalesces with the
run's, which takes it over (its args and the higher priority), so the run waits for it too.

When no queue worker is running, the run's page publishes in the browser (MT's rebuild dialog does its work in
the browser's requests): ``step`` runs one job of the run per request, a page like a preview's.
"""
from __future__ import annotations

import datetime as dt
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from dispatch import processes

from . import jobrows
from .conf import get_config
from .enqueue import PUBLISH, NewJob, enqueue
from .fileinfos import template_fileinfos
from .jobs import BatchFinishing, prepare, run_job
from .models import UNWRITTEN_MODES, FileInfo, Job, PublishRun, Template

DRY_RUN = "dry-run"
FAILURES_SHOWN = 20


def run_templates(run: PublishRun) -> list[Template]:
    """The templates whose files the run publishes (a module: the templates that include it)."""
    from .services import templates_affected_by

    if run.scope == PublishRun.Scope.TEMPLATE:
        return templates_affected_by(run.template) if run.template_id else []
    templates = Template.objects.filter(site_id=run.site_id).exclude(kind=Template.Kind.MODULE)
    if run.scope == PublishRun.Scope.INDEXES:
        templates = templates.filter(kind=Template.Kind.INDEX)
    elif run.scope == PublishRun.Scope.ARCHIVE_TYPE:
        templates = templates.filter(mappings__archive_type=run.archive_type).distinct()
    return list(templates.select_related("site"))


def run_files(run: PublishRun) -> list[FileInfo]:
    """Every file in the run's scope that is published to the disk (Statically, Via Publish Queue and Manually:
    as MT's Publish Site does, a run publishes Manually published templates too), by each file's own mode."""
    found: list[FileInfo] = []
    for template in run_templates(run):
        for fileinfo in template_fileinfos(template):
            if fileinfo.mode in UNWRITTEN_MODES:
                continue
            if run.scope == PublishRun.Scope.ARCHIVE_TYPE and fileinfo.archive_type != run.archive_type:
                continue
            found.append(fileinfo)
    return found


def start(run: PublishRun, fileinfos: Iterable[FileInfo] | None = None) -> PublishRun:
    """Save the run and queue its jobs (``fileinfos``, or every file of its scope), in the caller's transaction."""
    with transaction.atomic():
        if run.pk is None:
            run.save()
        files = run_files(run) if fileinfos is None else list(fileinfos)
        args = {"run": run.pk, **({"force": True} if run.force else {})}
        kind = DRY_RUN if run.kind == PublishRun.Kind.DRY_RUN else PUBLISH
        priority = get_config()["RUN_PRIORITY"]
        run.total = enqueue(
            NewJob(kind=kind, unique_key=_key(run, fi), priority=priority, fileinfo_id=fi.pk, args=args)
            for fi in files
        )
        run.finished_at = None if run.total else timezone.now()
        run.save(update_fields=["total", "finished_at"])
    return run


def _key(run: PublishRun, fileinfo: FileInfo) -> str:
    # A publish job is the file's (it coalesces with any other publish of it); a dry run's is the run's own.
    return str(fileinfo.pk) if run.kind == PublishRun.Kind.PUBLISH else f"{run.pk}:{fileinfo.pk}"


def run_jobs(run: PublishRun):
    return Job.objects.filter(args__run=run.pk)


@dataclass
class Progress:
    run: PublishRun
    total: int
    left: int
    failed: int
    retrying: int
    done: int
    finished: bool
    elapsed: float
    eta: float | None
    workers: int
    failures: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        run = self.run
        return {
            "id": run.pk, "kind": run.kind, "scope": run.scope_label, "total": self.total, "done": self.done,
            "left": self.left, "failed": self.failed, "retrying": self.retrying, "finished": self.finished,
            "elapsed": round(self.elapsed, 1), "eta": None if self.eta is None else round(self.eta, 1),
            "workers": self.workers, "failures": self.failures, "changed": run.changed,
            "sample_path": run.sample_path, "sample_diff": run.sample_diff,
        }


def progress(run: PublishRun, *, now: dt.datetime | None = None) -> Progress:
    """Where a run is: its jobs left (not failed for good), failed, retrying; done by difference; the ETA from the
    rate so far; how many queue workers are running."""
    now = now or timezone.now()
    rows = list(run_jobs(run).values("id", "failed_at", "last_error", "fileinfo_id", "fileinfo__path",
                                     "fileinfo__url", "attempts", "max_attempts"))
    failed = [r for r in rows if r["failed_at"] is not None]
    retrying = [r for r in rows if r["failed_at"] is None and r["last_error"]]
    left = len(rows) - len(failed)
    done = max(0, run.total - len(rows))
    finished = left == 0
    if finished and run.finished_at is None:
        run.finished_at = now
        PublishRun.objects.filter(pk=run.pk, finished_at__isnull=True).update(finished_at=now)
    elapsed = ((run.finished_at or now) - run.created).total_seconds()
    eta = left * elapsed / done if done and not finished else None
    failures = [
        {"job": r["id"], "path": r["fileinfo__path"] or "", "url": r["fileinfo__url"] or "", "error": r["last_error"],
         "final": r["failed_at"] is not None, "attempts": r["attempts"], "max_attempts": r["max_attempts"]}
        for r in (failed + retrying)[:FAILURES_SHOWN]
    ]
    workers = processes.live("queue worker").count()
    return Progress(run, run.total, left, len(failed), len(retrying), done, finished, elapsed, eta, workers, failures)


def step(run: PublishRun) -> int:
    """Run one runnable job of ``run`` here and now (the run's page does this, one request per page, when no queue
    worker is running). Returns how many jobs ran (0: none was runnable)."""
    worker_id = f"{processes.host_id()}:{os.getpid()}:browser-{run.pk}"
    claimed = jobrows.claim(worker_id=worker_id, load=1, run=run.pk)
    for job in claimed:
        try:
            outcome = run_job(job, prepare([job]).get(job.id))
        except Exception as exc:  # noqa: BLE001 - logged on the job and retried, as a worker does
            jobrows.fail(worker_id=worker_id, job=job, message=f"{type(exc).__name__}: {exc}",
                         traceback="".join(traceback.format_exception(exc)))
            continue
        finishing = BatchFinishing([(job, outcome)])
        finishing.sync()
        with transaction.atomic():
            held = jobrows.held(worker_id=worker_id, jobs=[job]).get(job.id) == job.generation
            failures = finishing.place({job.id} if held else set())  # held: at the generation it claimed
            if job.id in failures:
                jobrows.fail(worker_id=worker_id, job=job, message=str(failures[job.id]))
            elif held:
                jobrows.complete(worker_id=worker_id, jobs=[job])
        finishing.cleanup()
        if not held:
            jobrows.release(worker_id=worker_id, jobs=[job])
    return len(claimed)
