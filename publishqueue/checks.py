"""System checks (run with ``manage.py check --database default``; they read the blogs)."""
import os

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError
from django.http.request import split_domain_port, validate_host


@register(Tags.database)
def check_site_roots(app_configs=None, databases=None, **kwargs):
    if not databases:
        return []
    from .sites import get_site_model

    errors = []
    try:
        sites = list(get_site_model().objects.only("id", "name", "site_root", "site_url", "publish_target"))
    except DatabaseError:
        return []  # not migrated yet
    errors += _hosts_not_allowed(sites)
    for site in sites:
        errors += _check_site(site)
    return errors


def _check_site(site) -> list[Error]:
    from django.core.exceptions import ImproperlyConfigured

    from .paths import PathError, check_site_root
    from .targets import get_target

    try:
        if not get_target(site.publish_target).local:
            return []  # published elsewhere (object storage): its site root is not written
    except ImproperlyConfigured as exc:
        return [Error(f"Site {site.name!r}: {exc}", hint="Add it to PUBLISHQUEUE['TARGETS'] or pick another.",
                      id="publishqueue.E004")]
    root = site.site_root
    if not os.path.isabs(root):
        return [Error(f"Site {site.name!r}: site root {root!r} is not absolute.", id="publishqueue.E002")]
    try:
        check_site_root(root)
    except PathError as exc:
        return [Error(f"Site {site.name!r}: {exc}", hint="Move it under PUBLISHQUEUE['SITE_ROOTS'].",
                      id="publishqueue.E003")]
    errors = []
    if not _writable(root):
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


def _hosts_not_allowed(sites) -> list[Warning]:
    """A site whose host is not in ALLOWED_HOSTS: its Dynamic pages and comment posts would get 400."""
    warnings = []
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django allows them
    for site in sites:
        domain, _port = split_domain_port(site.site_host)
        if domain and not validate_host(domain, allowed):
            warnings.append(Warning(
                f"Site {site.name!r}: its host {domain!r} is not in ALLOWED_HOSTS.",
                hint="Add it (DJANGO_ALLOWED_HOSTS), or the domain with a leading dot for its subdomains.",
                id="publishqueue.W003",
            ))
    return warnings
