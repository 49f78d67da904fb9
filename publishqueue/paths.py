"""Archive contexts, output path patterns, and keeping output inside the site root."""
from __future__ import annotations

import datetime as dt
import os
import stat
import string
import time
from dataclasses import dataclass

from django.db import models


class ArchiveType(models.TextChoices):
    INDEX = "index", "Index"
    INDIVIDUAL = "individual", "Entry"
    CATEGORY = "category", "Category"
    MONTHLY = "monthly", "Monthly"
    YEARLY = "yearly", "Yearly"
    DAILY = "daily", "Daily"


DATE_TYPES = (ArchiveType.MONTHLY, ArchiveType.YEARLY, ArchiveType.DAILY)

ALLOWED_FIELDS: dict[str, frozenset[str]] = {
    ArchiveType.INDEX: frozenset(),
    ArchiveType.INDIVIDUAL: frozenset({"year", "month", "day", "slug", "id", "category"}),
    ArchiveType.CATEGORY: frozenset({"category"}),
    ArchiveType.MONTHLY: frozenset({"year", "month"}),
    ArchiveType.YEARLY: frozenset({"year"}),
    ArchiveType.DAILY: frozenset({"year", "month", "day"}),
}

_SAMPLE = {"year": "2024", "month": "01", "day": "01", "slug": "s", "id": "1", "category": "c"}


class PathError(ValueError):
    """An output path pattern, or the path it produced, is invalid or would leave the site root."""


def validate_pattern(archive_type: str, pattern: str) -> None:
    """Refuse unknown fields, format specs, and anything that could escape the site root."""
    allowed = ALLOWED_FIELDS.get(archive_type)
    if allowed is None:
        raise PathError(f"Unknown archive type {archive_type!r}.")
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise PathError(f"Bad pattern {pattern!r}: {exc}.") from exc
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed:
            names = ", ".join(f"{{{f}}}" for f in sorted(allowed)) or "none"
            raise PathError(f"{{{field}}} is not available for {archive_type} archives (available: {names}).")
        if spec or conversion:
            raise PathError(f"Format specifications are not supported in {{{field}}}.")
    check_relative_path(_expand(pattern.format(**_SAMPLE)))


def _expand(path: str) -> str:
    return path + "index.html" if path.endswith("/") else path


def check_relative_path(path: str) -> str:
    """A path relative to the site root, with no way out of it lexically."""
    if not path or "\x00" in path or "\\" in path:
        raise PathError(f"Output path {path!r} is empty or contains a NUL or backslash.")
    if path.startswith("/") or os.path.isabs(path):
        raise PathError(f"Output path {path!r} is absolute; it must be relative to the site root.")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise PathError(f"Output path {path!r} has an empty, '.' or '..' segment.")
    return path


@dataclass(frozen=True)
class ArchiveContext:
    """What one file of an archive type shows: the index, an entry, a category or a period."""

    archive_type: str
    entry_id: int | None = None
    category_id: int | None = None
    period_start: dt.date | None = None

    @property
    def key(self) -> str:
        if self.archive_type == ArchiveType.INDEX:
            return "index"
        if self.archive_type == ArchiveType.INDIVIDUAL:
            return f"entry:{self.entry_id}"
        if self.archive_type == ArchiveType.CATEGORY:
            return f"category:{self.category_id}"
        return f"{self.archive_type}:{self.period_start.isoformat()}"


def period_start(archive_type: str, day: dt.date) -> dt.date:
    if archive_type == ArchiveType.MONTHLY:
        return day.replace(day=1)
    if archive_type == ArchiveType.YEARLY:
        return day.replace(month=1, day=1)
    return day


def period_end(archive_type: str, start: dt.date) -> dt.date:
    """The first day after the period."""
    if archive_type == ArchiveType.MONTHLY:
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    if archive_type == ArchiveType.YEARLY:
        return start.replace(year=start.year + 1)
    return start + dt.timedelta(days=1)


def date_fields(day: dt.date) -> dict[str, str]:
    return {"year": f"{day.year:04d}", "month": f"{day.month:02d}", "day": f"{day.day:02d}"}


def format_path(pattern: str, fields: dict[str, str]) -> str:
    """Fill a validated pattern; the result is checked lexically (the publisher checks the disk)."""
    return check_relative_path(_expand(pattern.format(**fields)))


def resolve_output_path(site_root: str, relative: str) -> str:
    """The absolute path for ``relative`` under ``site_root``, refusing any escape, symlinks included."""
    check_relative_path(relative)
    if not site_root or not os.path.isabs(site_root):
        raise PathError(f"The blog's site root {site_root!r} must be an absolute directory.")
    root = _real_root(site_root)
    target = os.path.join(root, relative)
    if _symlink_below(root, relative):  # lexically it cannot leave the root: only a symlink can
        real = os.path.realpath(target)
        if os.path.commonpath([root, real]) != root or real == root:
            raise PathError(f"Output path {relative!r} resolves to {real!r}, outside the site root {root!r}.")
    return target


# Site roots resolved in the last second: a worker resolves the same root for every page it writes.
# A root that is a symlink switched by a deploy is followed within that second.
_ROOT_TTL = 1.0
_roots: dict[str, tuple[float, str]] = {}


def _real_root(site_root: str) -> str:
    now = time.monotonic()
    cached = _roots.get(site_root)
    if cached is not None and now - cached[0] < _ROOT_TTL:
        return cached[1]
    if len(_roots) > 64:
        _roots.clear()
    real = os.path.realpath(site_root)
    _roots[site_root] = (now, real)
    return real


def _symlink_below(root: str, relative: str) -> bool:
    """Whether a component of ``relative`` under ``root`` is a symlink, up to the first one that does not
    exist yet (one lstat per component: realpath of the whole path cost a page as much as its write)."""
    path = root
    for part in relative.split("/"):
        path = f"{path}/{part}"
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return True
        except OSError:  # missing (created as a directory later) or not a directory: no way out
            return False
    return False
