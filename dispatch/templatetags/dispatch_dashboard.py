from django import template

from dispatch.dashboard import dashboard_data, visible_panels

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


@register.filter
def duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


@register.filter
def megabytes(value) -> str:
    return f"{(value or 0) / 1048576:.0f} MB"
