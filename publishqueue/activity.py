"""Each site's publishing activity log (MT's "Background publishing done"): one ``PublishActivity`` row per site for
each worker batch, Publish now or ``manage.py publish``, and change published statically, with its counts and
its files. A worker adds one INSERT per batch (a row per site of the batch, in the transaction that completes
its jobs); the periodic purge removes rows older than ``ACTIVITY_RETENTION_DAYS``."""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.utils import timezone

from .models import FileInfo, PublishActivity
from .publisher import PublishResult

# Files listed in one row (the counts are always complete): failed, written and removed ones first.
FILES_LISTED = 500
_ORDER = {"failed": 0, "written": 1, "removed": 2, "unchanged": 3}
# A publisher status -> what the log says: a Dynamically published template's file is off the disk.
_STATUS = {"written": "written", "unchanged": "unchanged", "removed": "removed", "dynamic": "removed"}

# Who is publishing: the user of the request (``ActivityMiddleware``), or what a command says.
_actor: contextvars.ContextVar[str] = contextvars.ContextVar("publishqueue_actor", default="")


def current_actor() -> str:
    return _actor.get()


@contextlib.contextmanager
def acting_as(name: str) -> Iterator[None]:
    """Publishing done in this block is logged as ``name``'s (a user name, a command)."""
    token = _actor.set(name)
    try:
        yield
    finally:
        _actor.reset(token)


class ActivityMiddleware:
    """Logs what a signed-in user's request publishes (a save published statically, Publish now) as theirs."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        with acting_as(user.get_username()):
            return self.get_response(request)


@dataclass
class _Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_ORDER, 0))
    files: list[list[str]] = field(default_factory=list)

    def add(self, path: str, status: str, error: str = "") -> None:
        self.counts[status] += 1
        self.files.append([path, status, error[:500]] if error else [path, status])


Failure = tuple[int, str, str]  # site id, path, message


def runs(
    results: Iterable[PublishResult], failures: Iterable[Failure] = (), *, kind: str, actor: str,
    started: dt.datetime, finished: dt.datetime | None = None,
) -> list[PublishActivity]:
    """The log rows of one run: one per site it published files of."""
    tallies: dict[int, _Tally] = {}
    for result in results:
        if isinstance(result, PublishResult) and result.status in _STATUS:
            tallies.setdefault(result.site_id, _Tally()).add(result.path, _STATUS[result.status])
    for site_id, path, message in failures:
        tallies.setdefault(site_id, _Tally()).add(path, "failed", message)
    finished = finished or timezone.now()
    rows = []
    for site_id, tally in tallies.items():
        files = sorted(tally.files, key=lambda f: _ORDER[f[1]])[:FILES_LISTED]
        rows.append(PublishActivity(
            site_id=site_id, kind=kind, actor=actor[:200], started=started, finished=finished, files=files,
            **tally.counts,
        ))
    return rows


def record(
    results: Iterable[PublishResult], failures: Iterable[Failure] = (), *, kind: str, actor: str | None = None,
    started: dt.datetime,
) -> list[PublishActivity]:
    """Add a run to the log of each site it published files of (one INSERT)."""
    rows = runs(results, failures, kind=kind, actor=current_actor() if actor is None else actor, started=started)
    return PublishActivity.objects.bulk_create(rows) if rows else []


def failures_of_jobs(jobs: Iterable[tuple[int | None, str]]) -> list[Failure]:
    """(FileInfo id, message) of publish jobs that failed -> their sites and paths (one query, only if any)."""
    jobs = [(fileinfo_id, message) for fileinfo_id, message in jobs if fileinfo_id]
    if not jobs:
        return []
    rows = FileInfo.objects.filter(pk__in=[f for f, _ in jobs]).values_list("pk", "site_id", "path")
    where = {pk: (site_id, path) for pk, site_id, path in rows}
    return [(*where[fileinfo_id], message) for fileinfo_id, message in jobs if fileinfo_id in where]


def purge(now: dt.datetime, days: int) -> int:
    deleted, _ = PublishActivity.objects.filter(finished__lt=now - dt.timedelta(days=days)).delete()
    return deleted
