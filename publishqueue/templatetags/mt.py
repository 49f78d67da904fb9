"""Tags and filters available to every blog template without {% load %}."""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from django import template
from django.template.defaultfilters import date as django_date
from django.templatetags import i18n
from django.utils import dateformat, timezone
from django.utils.formats import FORMAT_SETTINGS, get_format
from django.utils.functional import Promise
from django.utils.safestring import mark_safe

register = template.Library()

# -- translations, looked up once per language ----------------------------------------------------------
#
# Django's translation functions cost a few microseconds a call (a context-local lookup of the active language,
# then of the message in every catalog), and a page calls them dozens of times: every {% translate %}, every
# translated date format, every month name. While a site's page is rendered (``rendering.render``, under the
# site's language), what they return for a literal message is cached per language instead.

_state = threading.local()
_translated: dict[tuple, Any] = {}
_TRANSLATED_MAX = 20_000


@contextlib.contextmanager
def rendering_in(language: str) -> Iterator[None]:
    """Pages rendered in this block are in ``language`` (which must be Django's active language)."""
    previous = getattr(_state, "language", None)
    _state.language = language
    try:
        yield
    finally:
        _state.language = previous


def _once_per_language(key: tuple, compute: Callable[[], Any]) -> Any:
    language = getattr(_state, "language", None)
    if language is None:
        return compute()  # not rendering a site's page: whatever the active language is
    key = (language, *key)
    try:
        return _translated[key]
    except KeyError:
        if len(_translated) > _TRANSLATED_MAX:
            _translated.clear()
        value = _translated[key] = compute()
        return value


class _TranslatedOnce(template.Node):
    """{% translate "literal" %} (without ``as``): Django's node, rendered once per language."""

    child_nodelists = ()

    def __init__(self, node: i18n.TranslateNode, key: tuple) -> None:
        self.node, self.key = node, key

    def render(self, context) -> str:
        return _once_per_language((*self.key, context.autoescape), lambda: self.node.render(context))


def _literal(expression) -> str | None:
    if expression is None or expression.filters:
        return None
    var = expression.var
    return var.literal if isinstance(var, template.Variable) and isinstance(var.literal, str) else None


class _Uncached(template.Node):
    """{% language %}: another language inside, so no translation cached for the page's."""

    def __init__(self, node: template.Node) -> None:
        self.node = node
        self.nodelist = node.nodelist

    def render(self, context) -> str:
        previous = getattr(_state, "language", None)
        _state.language = None
        try:
            return self.node.render(context)
        finally:
            _state.language = previous


@register.tag("language")
def language(parser, token):
    return _Uncached(i18n.language(parser, token))


@register.tag("translate")
@register.tag("trans")
def translate(parser, token):
    """Django's {% translate %}; a literal message is looked up once per language."""
    node = i18n.do_translate(parser, token)
    message = _literal(node.filter_expression)
    context = _literal(node.message_context) if node.message_context is not None else ""
    if node.asvar or node.noop or message is None or context is None:
        return node
    return _TranslatedOnce(node, ("translate", context, message))


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


# Format characters that print translated names, and what the name depends on.
_NAMES: dict[str, Callable[[dt.date], object]] = {
    **dict.fromkeys("FNMbE", lambda d: d.month), **dict.fromkeys("Dl", lambda d: d.weekday()),
    **dict.fromkeys("Aa", lambda d: d.hour < 12),
}


class _DateFormat(dateformat.DateFormat):
    def format(self, formatstr) -> str:
        pieces = _parsed(str(formatstr))
        if type(self.data) is dt.date and any(char and hasattr(dateformat.TimeFormat, p) for char, p in pieces):
            return super().format(formatstr)  # Django's error for a time format on a date
        return "".join(self._piece(p) if char else p for char, p in pieces)

    def _piece(self, char: str) -> str:
        depends = _NAMES.get(char)
        if depends is None:
            return str(getattr(self, char)())
        return _once_per_language(("date", char, depends(self.data)), lambda: str(getattr(self, char)()))


def _promise_key(promise: Promise) -> tuple | None:
    """What a lazy translation was made of (its message, itself lazy at times), to key its translation by
    without translating it (hashing a lazy string translates it)."""
    args = getattr(promise, "_args", None)
    if not isinstance(args, tuple):
        return None
    key = tuple(_promise_key(a) if isinstance(a, Promise) else a for a in args)
    return None if None in key else key


@register.filter(expects_localtime=True, is_safe=False)
def date(value, arg=None) -> str:
    """Django's ``date`` filter, same output, with each format string parsed once (Django parses it on every
    call, through lazily compiled regular expressions: most of the filter's time, and a page shows dates by
    the hundred)."""
    if value in (None, ""):
        return ""
    if isinstance(arg, Promise):  # a translated format, _("F j, Y"): looked up once per language
        key, lazy = _promise_key(arg), arg
        arg = _once_per_language(("format", key), lambda: str(lazy)) if key is not None else str(arg)
    fmt = arg or "DATE_FORMAT"
    language = getattr(_state, "language", None)
    if language is not None and type(value) in (dt.datetime, dt.date) and isinstance(fmt, str):
        # Rendering a site's pages: the same date in the same format is shown on many of them (an entry on its
        # page and in five or more listings), formatted once per language and time zone. Aware datetimes equal
        # at the same instant in different zones, so the zone is in the key (its name can be printed too); a
        # naive one is formatted as being in the current zone.
        zone = getattr(value, "tzinfo", None) or timezone.get_current_timezone()
        key = (value, zone, fmt, language)
        try:
            return _dates[key]
        except KeyError:
            if len(_dates) > _DATES_MAX:
                _dates.clear()
            formatted = _dates[key] = _format_date(value, fmt, arg)
            return formatted
    return _format_date(value, fmt, arg)


_dates: dict[tuple, str] = {}
_DATES_MAX = 50_000


def _format_date(value, fmt: str, arg) -> str:
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
