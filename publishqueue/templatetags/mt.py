"""Tags and filters available to every blog template without {% load %}."""
from __future__ import annotations

import datetime as dt
import functools

from django import template
from django.template.defaultfilters import date as django_date
from django.utils import dateformat, timezone
from django.utils.formats import FORMAT_SETTINGS, get_format
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def rfc3339(value: dt.datetime | None) -> str:
    """A datetime as RFC 3339 (Atom's dates) in the current time zone, the site's while it is rendered, with its
    offset ("Z" for UTC): 2026-03-10T21:00:00+09:00."""
    if not value:
        return ""
    local = timezone.localtime(value)
    offset = local.utcoffset()
    if not offset:
        return local.strftime("%Y-%m-%dT%H:%M:%SZ")
    minutes = int(offset.total_seconds()) // 60
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"{local:%Y-%m-%dT%H:%M:%S}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@functools.lru_cache(maxsize=256)
def _parsed(format_string: str) -> tuple[tuple[bool, str], ...]:
    """A date format split as Django's ``Formatter.format`` splits it on every call: (is a format character,
    the character or the literal text between, unescaped)."""
    pieces = []
    for i, piece in enumerate(dateformat.re_formatchars.split(format_string)):
        if i % 2:
            pieces.append((True, piece))
        elif piece:
            pieces.append((False, dateformat.re_escaped.sub(r"\1", piece)))
    return tuple(pieces)


class _DateFormat(dateformat.DateFormat):
    def format(self, formatstr) -> str:
        pieces = _parsed(str(formatstr))
        if type(self.data) is dt.date and any(char and hasattr(dateformat.TimeFormat, p) for char, p in pieces):
            return super().format(formatstr)  # Django's error for a time format on a date
        return "".join(str(getattr(self, p)()) if char else p for char, p in pieces)


@register.filter(expects_localtime=True, is_safe=False)
def date(value, arg=None) -> str:
    """Django's ``date`` filter, same output, with each format string parsed once (Django parses it on every
    call, through lazily compiled regular expressions: most of the filter's time, and a page shows dates by
    the hundred)."""
    if value in (None, ""):
        return ""
    fmt = arg or "DATE_FORMAT"
    try:
        # A format that is not a setting's name is itself, as get_format says (after asking for the language).
        return _DateFormat(value).format(get_format(fmt) if fmt in FORMAT_SETTINGS else fmt)
    except (AttributeError, TypeError):
        return django_date(value, arg)  # not a date: whatever Django's filter makes of it


@register.tag("debug")
def no_debug(parser, token):
    """Django's {% debug %} prints the whole context and every loaded module: not for site templates."""
    raise template.TemplateSyntaxError("{% debug %} is not available in site templates.")


@register.simple_tag(takes_context=True)
def include_cached(context, name: str) -> str:
    """Include a module rendered once per change of the blog's content or templates (MT's module
    caching). The module sees only the site-wide variables its content app registered (the blog's: blog,
    all_categories, monthly_archives, comment_action), so its output cannot depend on the page it is in."""
    scope = context.get("_mt")
    if scope is None:
        raise template.TemplateSyntaxError("include_cached is only available in site templates.")
    return mark_safe(scope.render_cached(name, context))  # noqa: S308 - output of a blog template
