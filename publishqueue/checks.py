"""System checks (run with ``manage.py check --database default``; they read the blogs)."""
import os

from django.core.checks import Error, Tags, register
from django.db import DatabaseError


@register(Tags.database)
def check_site_roots(app_configs=None, databases=None, **kwargs):
    if not databases:
        return []
    from .sites import get_site_model

    errors = []
    try:
        sites = list(get_site_model().objects.only("id", "name", "site_root"))
    except DatabaseError:
        return []  # not migrated yet
    for site in sites:
        root = site.site_root
        if not os.path.isabs(root):
            errors.append(Error(f"Site {site.name!r}: site root {root!r} is not absolute.", id="publishqueue.E002"))
        elif not _writable(root):
            errors.append(
                Error(
                    f"Site {site.name!r}: site root {root!r} is not a writable directory.",
                    hint="Create it and give the user running runworker/runfcgi write access.",
                    id="publishqueue.E001",
                )
            )
    return errors


def _writable(root: str) -> bool:
    probe = root
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    return os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)
