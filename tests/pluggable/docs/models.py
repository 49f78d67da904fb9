from django.db import models

from publishqueue.sites import AbstractSite


class Manual(AbstractSite):
    """A documentation site (``PUBLISHQUEUE_SITE_MODEL = "docs.Manual"``); ``AbstractSite`` has its name, URL,
    root and versions."""


class Page(models.Model):
    manual = models.ForeignKey(Manual, on_delete=models.CASCADE, related_name="pages")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def path(self) -> str:
        return f"{self.parent.path()}/{self.slug}" if self.parent else self.slug
