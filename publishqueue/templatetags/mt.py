"""Filters available to every blog template without {% load %}."""
from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def rfc3339(value: dt.datetime | None) -> str:
    """A datetime as RFC 3339 in UTC, as Atom wants it."""
    if not value:
        return ""
    return timezone.localtime(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
