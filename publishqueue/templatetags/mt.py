"""Tags and filters available to every blog template without {% load %}."""
from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def rfc3339(value: dt.datetime | None) -> str:
    """A datetime as RFC 3339 in UTC, as Atom wants it."""
    if not value:
        return ""
    return timezone.localtime(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@register.simple_tag(takes_context=True)
def include_cached(context, name: str) -> str:
    """Include a module rendered once per change of the blog's content or templates (MT's module
    caching). The module sees only blog-wide variables (blog, all_categories, monthly_archives,
    comment_action), so its output cannot depend on the page it is included in."""
    scope = context.get("_mt")
    if scope is None:
        raise template.TemplateSyntaxError("include_cached is only available in blog templates.")
    return mark_safe(scope.render_cached(name, context))  # noqa: S308 - output of a blog template
