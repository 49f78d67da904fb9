"""The admin dashboard's frame: workers on every host, Recycle Workers and its progress, and the panels that
installed apps contribute (publishqueue's queue panel, say) through ``register_panel`` in their
``AppConfig.ready()``.

Everything the page shows comes from one call, ``dashboard_data(user)``, made once per page and once per
refresh (``/dispatch/dashboard.json``): the page's *regions* (parts that change: cards, tables, the workers)
are templates rendered from that data, on the page and again into the JSON, so every part of a refresh shows
the same moment. Charts are data (``d["charts"][name]``: x in epoch seconds, series, axes) that the frame's
script draws with uPlot (served from dispatch's static files)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from .control import progress
from .models import RecycleRequest
from .status import pool


@dataclass(frozen=True)
class Panel:
    """A section of the dashboard: ``template`` is included with the dashboard's data as ``d``, and
    ``data(user)`` adds to that data (it is also in the JSON the page refreshes itself from). ``regions``:
    name -> template of the parts that change; the panel's template places them with
    ``{% dashboard_region "name" %}`` and the refresh replaces them."""

    name: str
    template: str
    data: Callable[[Any], dict[str, Any]]
    # Who sees it (default: every staff user).
    visible: Callable[[Any], bool] = lambda user: True
    order: int = 100
    regions: Mapping[str, str] = field(default_factory=dict)


# The frame's own regions.
FRAME_REGIONS = {
    "dispatch-updated": "dispatch/_updated.html",
    "dispatch-workers": "dispatch/_workers.html",
    "dispatch-recycle": "dispatch/_recycle.html",
}

panels: dict[str, Panel] = {}


def register_panel(panel: Panel) -> None:
    panels[panel.name] = panel


def visible_panels(user) -> list[Panel]:
    return sorted((p for p in panels.values() if p.visible(user)), key=lambda p: (p.order, p.name))


def regions(user) -> dict[str, str]:
    """Every region the user's dashboard has: name -> template."""
    found = dict(FRAME_REGIONS)
    for panel in visible_panels(user):
        found.update(panel.regions)
    return found


def dashboard_data(user) -> dict:
    data: dict[str, Any] = {"workers": pool(), "charts": {}}
    latest = RecycleRequest.objects.select_related("requested_by").first()
    data["recycle"] = progress(latest) if latest else None
    data["can_recycle"] = user.has_perm("dispatch.recycle_workers")
    for panel in visible_panels(user):
        contributed = dict(panel.data(user))
        data["charts"].update(contributed.pop("charts", {}))
        data.update(contributed)
    data["generated"] = timezone.now()
    data["time_zone"] = timezone.get_current_timezone_name() if settings.USE_TZ else None
    return data


def render_regions(request, data: dict) -> dict[str, str]:
    """The regions' HTML for a refresh, from the same data as the numbers beside them."""
    context = {"d": data, "request": request}
    return {name: render_to_string(template, context, request) for name, template in regions(request.user).items()}
