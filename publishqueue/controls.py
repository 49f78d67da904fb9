"""Operators' controls of the queue: pause and resume (all jobs, one site's, one kind), and cancelling every
queued job of a site or a template.

A pause is a row (``QueuePause``). ``jobrows.claim`` leaves paused jobs where they are, and a worker looks at
the pauses again between the jobs of a batch (``PauseWatch``, at most every ``WATCH_SECONDS``) and gives the
rest of a paused batch back; a worker with nothing to claim while a pause is on looks again every
``WATCH_SECONDS`` instead of sleeping, so a resume starts the drain within a second too."""
from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import FileInfo, Job, QueuePause

WATCH_SECONDS = 0.5


@dataclass(frozen=True)
class Pauses:
    """The pauses in force, as a worker applies them."""

    everything: bool = False
    sites: frozenset = frozenset()
    kinds: frozenset = frozenset()

    def __bool__(self) -> bool:
        return self.everything or bool(self.sites) or bool(self.kinds)

    def exclude(self, jobs: QuerySet) -> QuerySet:
        """``jobs`` without the paused ones (a subquery for sites: no join, so FOR UPDATE locks job rows only)."""
        if self.kinds:
            jobs = jobs.exclude(kind__in=sorted(self.kinds))
        if self.sites:
            jobs = jobs.exclude(fileinfo_id__in=FileInfo.objects.filter(site_id__in=sorted(self.sites)).values("id"))
        return jobs.none() if self.everything else jobs

    def holds(self, *, kind: str, site_id: object | None) -> bool:
        return self.everything or kind in self.kinds or (site_id is not None and site_id in self.sites)


def current() -> Pauses:
    rows = list(QueuePause.objects.values_list("scope", "site_id", "kind"))
    return Pauses(
        everything=any(scope == QueuePause.Scope.ALL for scope, _, _ in rows),
        sites=frozenset(site for scope, site, _ in rows if scope == QueuePause.Scope.SITE),
        kinds=frozenset(kind for scope, _, kind in rows if scope == QueuePause.Scope.KIND),
    )


class PauseWatch:
    """A worker's view of the pauses, read again at most every ``WATCH_SECONDS``."""

    def __init__(self, interval: float = WATCH_SECONDS) -> None:
        self.interval = interval
        self._pauses = Pauses()
        self._read_at = -interval

    def pauses(self, *, fresh: bool = False) -> Pauses:
        now = time.monotonic()
        if fresh or now - self._read_at >= self.interval:
            self._pauses, self._read_at = current(), now
        return self._pauses


def pause(*, scope: str, site=None, kind: str = "", user=None, note: str = "") -> tuple[QueuePause, bool]:
    """Pause (again, it is one row per scope); returns the pause and whether it is new."""
    scope = QueuePause.Scope(scope)
    site = site if scope == QueuePause.Scope.SITE else None
    kind = kind if scope == QueuePause.Scope.KIND else ""
    if scope == QueuePause.Scope.SITE and site is None:
        raise ValueError("Pausing a site needs the site.")
    if scope == QueuePause.Scope.KIND and not kind:
        raise ValueError("Pausing a kind of job needs the kind.")
    with transaction.atomic():
        found = QueuePause.objects.select_for_update().filter(scope=scope, site=site, kind=kind).first()
        if found:
            return found, False
        return QueuePause.objects.create(scope=scope, site=site, kind=kind, paused_by=user, note=note), True


def describe(p: QueuePause) -> str:
    if p.scope == QueuePause.Scope.SITE:
        return f"{p.site}"
    if p.scope == QueuePause.Scope.KIND:
        return f"{p.kind} jobs"
    return "all jobs"


def queued(*, site=None, template=None) -> QuerySet:
    """A site's or a template's jobs that wait to run (ready or waiting to retry; not running, not failed)."""
    now = timezone.now()
    jobs = Job.objects.filter(failed_at__isnull=True).filter(Q(grabbed_until__isnull=True) | Q(grabbed_until__lte=now))
    if template is not None:
        return jobs.filter(fileinfo__template=template)
    if site is not None:
        return jobs.filter(fileinfo__site=site)
    raise ValueError("Cancel needs a site or a template.")


def cancel(*, site=None, template=None) -> int:
    """Delete every queued job of a site or a template; those running finish. Their files stay as they are
    until the next change or a republish."""
    return queued(site=site, template=template).delete()[0]
