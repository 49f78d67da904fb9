"""The site model: what owns a site URL, a site root and the templates published there.

publishqueue knows no content app. A project names its site model in ``PUBLISHQUEUE_SITE_MODEL`` (as
``AUTH_USER_MODEL`` names the user model; default ``"blog.Blog"``), and that model subclasses
``AbstractSite``, which holds what the publisher reads: the site URL and root, and the two version counters
under which compiled templates and blog-wide lists are cached.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import zoneinfo
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

SETTING = "PUBLISHQUEUE_SITE_MODEL"


def site_model_label() -> str:
    return getattr(settings, SETTING, "blog.Blog")


def get_site_model() -> type[AbstractSite]:
    return apps.get_model(site_model_label(), require_ready=False)


class SiteLocationAdminMixin:
    """For the site model's ModelAdmin: the site root and URL are read-only (and new sites refused) without
    the ``change_site_location`` permission, which a template editor or blog administrator need not have."""

    location_fields = ("site_root", "site_url", "publish_target")

    def _may_move(self, request) -> bool:
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_site_location")

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields if self._may_move(request) else fields + [f for f in self.location_fields if f not in fields]

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and self._may_move(request)


def language_choices() -> list[tuple[str, str]]:
    """The languages a site may be published in: the project's ``LANGUAGES``."""
    return [(code, name) for code, name in settings.LANGUAGES]


@functools.cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def time_zone_choices() -> list[tuple[str, str]]:
    """Every IANA time zone of the system's (or the tzdata package's) database."""
    return [(name, name.replace("_", " ")) for name in _zone_names()]


def normal_host(host: str) -> str:
    """A host as sites are matched by it: lower case, without the default HTTP or HTTPS port."""
    host = host.strip().lower().rstrip(".")
    for default in (":80", ":443"):
        if host.endswith(default):
            return host[: -len(default)]
    return host


def _target_choices() -> list[tuple[str, str]]:
    from .targets import target_choices

    return target_choices()


# The versions caches are keyed by (``publishqueue.versioning``).
VERSIONS = ("templates_version", "content_version", "site_wide_version")


class AbstractSite(models.Model):
    name = models.CharField(max_length=255)
    site_url = models.URLField(
        help_text="Public URL of the published site, ending in '/', e.g. https://example.com/blog/."
    )
    site_root = models.CharField(
        max_length=1024,
        help_text="Absolute directory the published files are written to. Output never leaves it.",
    )
    publish_target = models.CharField(
        _("publish target"), max_length=64, blank=True, default="", choices=_target_choices,
        help_text=_("Where the published files go: a target of PUBLISHQUEUE['TARGETS'] (blank: the default, the site "
                    "root on this machine's file system)."),
    )
    templates_version = models.PositiveIntegerField(
        default=0, editable=False, help_text="Bumped whenever any template of the blog changes."
    )
    content_version = models.PositiveIntegerField(
        default=0, editable=False, help_text="Bumped whenever an entry, category or comment of the blog changes."
    )
    site_wide_version = models.PositiveIntegerField(
        default=0, editable=False,
        help_text="Bumped whenever what every page shows changes (the site-wide variables and the cached modules "
                  "rendered from them), not by a change that only some pages show.",
    )
    # MT's per-blog server offset and language: pages are rendered, and dates cut into periods, in these.
    time_zone = models.CharField(
        _("time zone"), max_length=64, blank=True, choices=time_zone_choices,
        help_text=_("Dates in paths and pages, and archive periods, follow it (blank: the install's TIME_ZONE)."),
    )
    language = models.CharField(
        _("language"), max_length=15, blank=True, choices=language_choices,
        help_text=_("Templates render in it: month names, dates and translated words (blank: LANGUAGE_CODE)."),
    )

    class Meta:
        abstract = True
        # The site root and URL decide where files land and what the world sees: their own permission.
        permissions = [("change_site_location", "Can change the site root and URL")]

    def __str__(self) -> str:
        return self.name

    def save(self, **kwargs) -> None:
        """A site read before a change and saved after it (an admin form, a settings edit) does not write back the
        older versions it holds (``VERSIONS``: only ``versioning`` moves them, with an UPDATE of their own)."""
        if not self._state.adding and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name not in VERSIONS
            ]
        super().save(**kwargs)

    def clean(self) -> None:
        super().clean()
        from .paths import PathError, check_site_root

        if self.time_zone and self.time_zone not in _zone_names():
            raise ValidationError({"time_zone": _("Unknown time zone.")})

        try:
            check_site_root(self.site_root)
        except PathError as exc:
            raise ValidationError({"site_root": str(exc)}) from exc
        from django.core.exceptions import ImproperlyConfigured

        from .targets import check_target_name

        try:
            check_target_name(self.publish_target)
        except ImproperlyConfigured as exc:
            raise ValidationError({"publish_target": str(exc)}) from exc

    @property
    def zone(self) -> dt.tzinfo:
        """The site's time zone (the install's when it has none)."""
        cached = self.__dict__.get("_zone")
        if cached is None or cached[0] != self.time_zone:
            found = zoneinfo.ZoneInfo(self.time_zone) if self.time_zone else timezone.get_default_timezone()
            cached = self.__dict__["_zone"] = (self.time_zone, found)
        return cached[1]

    @property
    def language_code(self) -> str:
        return self.language or settings.LANGUAGE_CODE

    @property
    def locale_key(self) -> tuple[str, str]:
        """What render caches of the site are also keyed by: its time zone and language."""
        return (self.time_zone, self.language)

    @property
    def shown_key(self) -> tuple:
        """What site-wide render caches (the site-wide variables, cached modules) are keyed by: every field of the
        site row but its content version, which moves on each edit of what a single page shows. An object read
        before a change (some field of it renamed since) then never finds, nor leaves, what belongs to the row of
        after it."""
        return tuple(getattr(self, f.attname) for f in self._meta.concrete_fields if f.attname != "content_version")

    @property
    def site_host(self) -> str:
        """The host (and port, unless the default) of the site URL, as requests are matched by it."""
        return normal_host(urlsplit(self.site_url).netloc.rpartition("@")[2])

    @property
    def site_path(self) -> str:
        """The path part of the site URL, always ending in '/'."""
        path = urlsplit(self.site_url).path or "/"
        return path if path.endswith("/") else path + "/"

    def absolute_url(self, relative_path: str) -> str:
        base = self.site_url if self.site_url.endswith("/") else self.site_url + "/"
        return base + relative_path


def site_locale(site: AbstractSite) -> contextlib.AbstractContextManager:
    """The site's time zone and language, active for what is computed or rendered for it (a no-op when they are
    active already, as they are for a site that uses the install's). publishqueue calls content apps' archive
    types and renders pages under it."""
    zone, language = site.zone, site.language_code
    change_zone = timezone.get_current_timezone() is not zone and str(timezone.get_current_timezone()) != str(zone)
    change_language = translation.get_language() != language
    if not (change_zone or change_language):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    if change_zone:
        stack.enter_context(timezone.override(zone))
    if change_language:
        stack.enter_context(translation.override(language))
    return stack
