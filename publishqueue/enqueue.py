"""Inserting jobs into the publish queue, coalescing on (kind, unique_key).

One statement per batch: ``INSERT ... ON CONFLICT (kind, unique_key) DO UPDATE`` (SQLite >= 3.24 and
PostgreSQL share the syntax). A conflicting insert does not vanish as in TheSchwartz: it bumps the job's
generation, so a worker that is publishing the file right now sees its grab is stale and publishes again.
It also keeps the higher priority and the earlier run_after (a new change cuts a retry backoff short),
and revives a job that had failed for good (its attempts start again). A job waiting to retry keeps the
attempts it used (they are counted when a worker claims the job; one that changed while running and then
succeeded starts again at zero). Arguments given with the new insert replace the old ones; an insert with
none keeps them (``--force`` stays on a job until it ran).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from .conf import get_config
from .models import FileInfo, Job
from .registry import registry
from .wakeup import jobs_queued

PUBLISH = "publish"


@dataclass(frozen=True)
class NewJob:
    kind: str
    unique_key: str | None
    priority: int = 0
    run_after: dt.datetime | None = None
    args: dict | None = None
    fileinfo_id: int | None = None


def default_priority(fileinfo: FileInfo) -> int:
    """The template's priority if it has one; else ``PRIORITIES`` ("main_index" for the templates named in
    MAIN_INDEX_IDENTIFIERS, or the archive type's name); else the archive type's (MT's queue_build_file_filter: by
    the file's path and whether its mapping is preferred, or one number per type)."""
    if fileinfo.template.priority is not None:
        return fileinfo.template.priority
    config = get_config()
    priorities = config["PRIORITIES"]
    if fileinfo.template.identifier in config["MAIN_INDEX_IDENTIFIERS"] and "main_index" in priorities:
        return priorities["main_index"]
    if fileinfo.archive_type in priorities:
        return priorities[fileinfo.archive_type]
    known = registry.archive_types.get(fileinfo.archive_type)
    if known is None:
        return 0
    if known.priority_of is not None:
        return known.priority_of(fileinfo.path, fileinfo.mapping.is_preferred)
    return known.priority


def publish_job(fileinfo: FileInfo, *, priority: int | None = None, force: bool = False) -> NewJob:
    """``force``: the worker rewrites the file even if its content did not change."""
    return NewJob(
        kind=PUBLISH,
        unique_key=str(fileinfo.pk),
        priority=default_priority(fileinfo) if priority is None else priority,
        fileinfo_id=fileinfo.pk,
        args={"force": True} if force else None,
    )


_UPSERT = """
INSERT INTO {table} (kind, unique_key, args, fileinfo_id, priority, run_after, grabbed_by, attempts,
                     max_attempts, generation, created, last_error)
VALUES {rows}
ON CONFLICT (kind, unique_key) DO UPDATE SET
    generation = {table}.generation + 1,
    priority = CASE WHEN excluded.priority > {table}.priority THEN excluded.priority ELSE {table}.priority END,
    run_after = CASE WHEN {table}.failed_at IS NOT NULL OR excluded.run_after < {table}.run_after
                     THEN excluded.run_after ELSE {table}.run_after END,
    attempts = CASE WHEN {table}.failed_at IS NOT NULL THEN 0 ELSE {table}.attempts END,
    args = CASE WHEN excluded.args = '{{}}' THEN {table}.args ELSE excluded.args END,
    failed_at = NULL
"""
_ROW = "(%s, %s, %s, %s, %s, %s, '', 0, %s, 1, %s, '')"
_BATCH = 200


def enqueue(jobs: Iterable[NewJob]) -> int:
    """Insert or coalesce jobs; returns how many were given. Runs in the caller's transaction; the workers are
    woken when it commits (``publishqueue.wakeup``)."""
    jobs = _coalesce(jobs)
    if not jobs:
        return 0
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())  # adapted once: most jobs run from now
    max_attempts = get_config()["JOB_MAX_ATTEMPTS"]
    with connection.cursor() as cursor:
        for start in range(0, len(jobs), _BATCH):
            batch = jobs[start : start + _BATCH]
            params: list = []
            for job in batch:
                params += [
                    job.kind, job.unique_key, json.dumps(job.args) if job.args else "{}", job.fileinfo_id,
                    job.priority, adapt(job.run_after) if job.run_after else now, max_attempts, now,
                ]
            sql = _UPSERT.format(table=Job._meta.db_table, rows=", ".join([_ROW] * len(batch)))
            cursor.execute(sql, params)
        jobs_queued(cursor)  # the workers wake when this commits
    return len(jobs)


_FROM_FILEINFOS = """
INSERT INTO {table} (kind, unique_key, args, fileinfo_id, priority, run_after, grabbed_by, attempts,
                     max_attempts, generation, created, last_error)
SELECT %s, CAST(id AS TEXT), '{{}}', id, %s, %s, '', 0, %s, 1, %s, ''
FROM {fileinfos} WHERE template_id = %s AND id > %s AND id <= %s
"""


def enqueue_template_files(
    template_id: int, *, priority: int, after: int = 0, limit: int = 500
) -> tuple[int, int] | None:
    """Queue a publish job (as ``enqueue_publish``) for each of a template's next ``limit`` FileInfo rows by id,
    those above ``after``, in one INSERT ... SELECT: the database makes the rows. Returns the last id queued (the
    next call's ``after``) and how many, None when there were none. Runs in the caller's transaction."""
    rows = FileInfo.objects.filter(template_id=template_id, id__gt=after).order_by("id")
    ids = list(rows.values_list("id", flat=True)[:limit])
    if not ids:
        return None
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    conflict = _UPSERT.partition("VALUES {rows}")[2]  # ON CONFLICT ... DO UPDATE, as enqueue's
    table = Job._meta.db_table
    sql = _FROM_FILEINFOS.format(table=table, fileinfos=FileInfo._meta.db_table) + conflict.format(table=table)
    with connection.cursor() as cursor:
        max_attempts = get_config()["JOB_MAX_ATTEMPTS"]
        cursor.execute(sql, [PUBLISH, priority, now, max_attempts, now, template_id, after, ids[-1]])
        jobs_queued(cursor)
    return ids[-1], len(ids)


def _coalesce(jobs: Iterable[NewJob]) -> list[NewJob]:
    """One job per key within a batch (PostgreSQL refuses to upsert a row twice in one statement)."""
    keyed: dict[tuple[str, str], NewJob] = {}
    loose: list[NewJob] = []
    for job in jobs:
        if job.unique_key is None:
            loose.append(job)
            continue
        seen = keyed.get((job.kind, job.unique_key))
        if seen is None or job.priority > seen.priority:
            keyed[(job.kind, job.unique_key)] = job
    return [*keyed.values(), *loose]


def enqueue_publish(fileinfos: Iterable[FileInfo], *, priority: int | None = None, force: bool = False) -> int:
    """Queue a publish job per FileInfo (coalescing with any job already queued for it)."""
    return enqueue(publish_job(fi, priority=priority, force=force) for fi in fileinfos)
