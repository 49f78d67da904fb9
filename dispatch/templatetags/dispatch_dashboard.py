import datetime as dt

from django import template
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from dispatch.dashboard import dashboard_data, regions, visible_panels

register = template.Library()


@register.inclusion_tag("dispatch/dashboard.html", takes_context=True)
def mtdispatch_dashboard(context):
    request = context["request"]
    if not request.user.is_staff:
        return {"show": False}
    data = dashboard_data(request.user)
    return {
        "show": True, "d": data, "panels": visible_panels(request.user), "request": request,
        "csrf_token": context.get("csrf_token"),
    }


@register.simple_tag(takes_context=True)
def dashboard_region(context, name: str, element: str = "div"):
    """A part of the dashboard that its refresh replaces: the region's template, rendered with ``d``."""
    request = context["request"]
    html = render_to_string(regions(request.user)[name], {"d": context["d"], "request": request}, request)
    return format_html('<{} class="pq-region" data-region="{}">{}</{}>', element, name, mark_safe(html), element)


@register.filter
def duration(seconds) -> str:
    if seconds is None or seconds == "":
        return "–"
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.1f}s" if seconds % 1 else f"{seconds:.0f}s"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m {seconds % 60:02d}s" if seconds < 600 else f"{seconds // 60}m"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


@register.filter
def megabytes(value) -> str:
    return f"{(value or 0) / 1048576:.0f} MB" if value else "–"


@register.filter
def percent(value) -> str:
    return "–" if value is None else f"{float(value):.0f}%"


@register.filter
def clock(value) -> str:
    """The dashboard's one time format, in the site's time zone: 14:05:09 today, 2026-11-30 14:05:09 before."""
    if not value:
        return "–"
    if isinstance(value, str):
        value = parse_datetime(value)
    if not isinstance(value, dt.datetime):
        return str(value)
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    if local.date() == timezone.localdate():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")
