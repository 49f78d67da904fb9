"""The site model: what owns a site URL, a site root and the templates published there.

publishqueue knows no content app. A project names its site model in ``PUBLISHQUEUE_SITE_MODEL`` (as
``AUTH_USER_MODEL`` names the user model; default ``"blog.Blog"``), and that model subclasses
``AbstractSite``, which holds what the publisher reads: the site URL and root, and the two version counters
under which compiled templates and blog-wide lists are cached.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

SETTING = "PUBLISHQUEUE_SITE_MODEL"


def site_model_label() -> str:
    return getattr(settings, SETTING, "blog.Blog")


def get_site_model() -> type[AbstractSite]:
    return apps.get_model(site_model_label(), require_ready=False)


class SiteLocationAdminMixin:
    """For the site model's ModelAdmin: the site root and URL are read-only (and new sites refused) without
    the ``change_site_location`` permission, which a template editor or blog administrator need not have."""

    location_fields = ("site_root", "site_url")

    def _may_move(self, request) -> bool:
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_site_location")

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields if self._may_move(request) else fields + [f for f in self.location_fields if f not in fields]

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and self._may_move(request)


class AbstractSite(models.Model):
    name = models.CharField(max_length=255)
    site_url = models.URLField(
        help_text="Public URL of the published site, ending in '/', e.g. https://example.com/blog/."
    )
    site_root = models.CharField(
        max_length=1024,
        help_text="Absolute directory the published files are written to. Output never leaves it.",
    )
    templates_version = models.PositiveIntegerField(
        default=0, editable=False, help_text="Bumped whenever any template of the blog changes."
    )
    content_version = models.PositiveIntegerField(
        default=0, editable=False, help_text="Bumped whenever an entry, category or comment of the blog changes."
    )

    class Meta:
        abstract = True
        # The site root and URL decide where files land and what the world sees: their own permission.
        permissions = [("change_site_location", "Can change the site root and URL")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        from .paths import PathError, check_site_root

        try:
            check_site_root(self.site_root)
        except PathError as exc:
            raise ValidationError({"site_root": str(exc)}) from exc

    @property
    def site_path(self) -> str:
        """The path part of the site URL, always ending in '/'."""
        path = urlsplit(self.site_url).path or "/"
        return path if path.endswith("/") else path + "/"

    def absolute_url(self, relative_path: str) -> str:
        base = self.site_url if self.site_url.endswith("/") else self.site_url + "/"
        return base + relative_path
