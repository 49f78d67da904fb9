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
from django.db import models

SETTING = "PUBLISHQUEUE_SITE_MODEL"


def site_model_label() -> str:
    return getattr(settings, SETTING, "blog.Blog")


def get_site_model() -> type[AbstractSite]:
    return apps.get_model(site_model_label(), require_ready=False)


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

    def __str__(self) -> str:
        return self.name

    @property
    def site_path(self) -> str:
        """The path part of the site URL, always ending in '/'."""
        path = urlsplit(self.site_url).path or "/"
        return path if path.endswith("/") else path + "/"

    def absolute_url(self, relative_path: str) -> str:
        base = self.site_url if self.site_url.endswith("/") else self.site_url + "/"
        return base + relative_path
