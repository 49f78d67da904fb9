"""Output path patterns, and keeping output inside the site root, the site root inside the configured bases,
and output to web files (MT's BaseSitePath and its output file checks)."""
from __future__ import annotations

import os
import stat
import string
import sys
import time

from django.conf import settings
from django.core.signals import setting_changed

from .conf import get_config


class PathError(ValueError):
    """An output path pattern, or the path it produced, is invalid or would leave the site root."""


def validate_pattern(archive_type: str, pattern: str, allowed: frozenset[str]) -> None:
    """Refuse fields the archive type does not have (``allowed``), format specs, and anything that could
    escape the site root."""
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
    check_output_name(check_relative_path(_expand(pattern.format(**dict.fromkeys(allowed, "x1")))))


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


def check_output_name(path: str) -> str:
    """Output goes only to web files: no segment a dotfile, and the name's extension in the allow-list
    (``PUBLISHQUEUE["OUTPUT_EXTENSIONS"]``). A template can then never write ``sitecustomize.py``,
    ``.htaccess``, ``x.php`` or ``x.cgi``, whatever its pattern or an object's slug says."""
    parts = path.split("/")
    if any(part.startswith(".") for part in parts):
        raise PathError(f"Output path {path!r} names a hidden file or directory (starting with '.').")
    name = parts[-1]
    extension = name.rsplit(".", 1)[1].lower() if "." in name else ""
    allowed = get_config()["OUTPUT_EXTENSIONS"]
    if extension not in allowed:
        raise PathError(
            f"Output path {path!r} is not a web file: its extension must be one of {', '.join(sorted(allowed))}."
        )
    return path


def check_site_root(site_root: str) -> str:
    """A site root must be an absolute directory under one of ``PUBLISHQUEUE["SITE_ROOTS"]``, and neither
    inside nor around the project, its Python installation or virtualenv (where a written file could become
    code). Returns it resolved."""
    if not site_root or not os.path.isabs(site_root):
        raise PathError(f"The site root {site_root!r} must be an absolute directory.")
    real = os.path.realpath(site_root)
    bases = [os.path.realpath(base) for base in get_config()["SITE_ROOTS"]]
    if not any(_within(real, base) for base in bases):
        where = ", ".join(bases) or "none are configured: set PUBLISHQUEUE['SITE_ROOTS']"
        raise PathError(f"The site root {site_root!r} is not under an allowed base directory ({where}).")
    for forbidden in forbidden_roots():
        if _within(real, forbidden) or _within(forbidden, real):
            raise PathError(
                f"The site root {site_root!r} is inside or around {forbidden!r} (the project or its Python): "
                "published files must not be able to land among code."
            )
    return real


def forbidden_roots() -> list[str]:
    """The project's directory, its var directory, and the Python installations (virtualenv included)."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    found |= {str(getattr(settings, name)) for name in ("BASE_DIR", "VAR_DIR") if getattr(settings, name, None)}
    return sorted(os.path.realpath(path) for path in found)


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def format_path(pattern: str, fields: dict[str, str]) -> str:
    """Fill a validated pattern; the result is checked lexically (the publisher checks the disk)."""
    return check_relative_path(_expand(pattern.format(**fields)))


def resolve_output_path(site_root: str, relative: str) -> str:
    """The absolute path for ``relative`` under ``site_root``, refusing any escape, symlinks included, a site
    root outside the allowed bases, and output that is not a web file."""
    check_output_name(check_relative_path(relative))
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


def _forget_roots(*, setting: str, **kwargs) -> None:
    if setting in ("PUBLISHQUEUE", "BASE_DIR", "VAR_DIR"):
        _roots.clear()


setting_changed.connect(_forget_roots, dispatch_uid="publishqueue-paths-roots")


def _real_root(site_root: str) -> str:
    now = time.monotonic()
    cached = _roots.get(site_root)
    if cached is not None and now - cached[0] < _ROOT_TTL:
        return cached[1]
    if len(_roots) > 64:
        _roots.clear()
    real = check_site_root(site_root)
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
