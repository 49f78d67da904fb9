"""The ledger of files the publisher put in site roots, and the orphan sweep it allows: a file the publisher
once wrote that no FileInfo claims any more (its template, mapping or object went while no worker ran, a crash,
an older release) is removed; a file the publisher did not write is never touched."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from django.db import connection
from django.utils import timezone

from .models import FileInfo, PublishedFile
from .paths import PathError, resolve_output_path
from .sites import AbstractSite
from .targets import target_for

logger = logging.getLogger("mtdispatch.publisher")


def record(pairs: Iterable[tuple[int, str]]) -> None:
    """Note files written at new paths, as (site id, relative path); already noted ones are left alone."""
    pairs = list(pairs)
    if not pairs:
        return
    table = PublishedFile._meta.db_table
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (site_id, path, written_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (site_id, path) DO NOTHING",
            [(site_id, path, now) for site_id, path in pairs],
        )


def forget(site_id: int, paths: Iterable[str]) -> None:
    """The publisher removed these files."""
    paths = [p for p in paths if p]
    if paths:
        PublishedFile.objects.filter(site_id=site_id, path__in=paths).delete()


def orphans(site: AbstractSite) -> list[str]:
    """Files the publisher wrote on ``site`` that no FileInfo claims now (by path, sorted)."""
    published = FileInfo.objects.filter(site=site).exclude(published_path="")
    claimed = set(published.values_list("published_path", flat=True))
    written = PublishedFile.objects.filter(site=site).values_list("path", flat=True)
    return sorted(path for path in written if path not in claimed)


def sweep(site: AbstractSite, *, dry_run: bool = False) -> list[str]:
    """Remove the orphans of ``site`` (with ``dry_run``, only list them). Returns their paths."""
    found = orphans(site)
    if dry_run:
        return found
    elsewhere = target_for(site)
    for path in found:
        if not elsewhere.local:
            elsewhere.delete(path)
            continue
        try:
            target = resolve_output_path(site.site_root, path)
        except PathError as exc:
            logger.warning("Not sweeping %r of site %s: %s", path, site.pk, exc)
            continue
        try:
            if os.path.isfile(target) and not os.path.islink(target):
                os.unlink(target)
        except FileNotFoundError:
            pass
    forget(site.pk, found)
    return found
