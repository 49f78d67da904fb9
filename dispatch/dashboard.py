"""The admin dashboard's frame: workers on every host, Recycle Workers and its progress, and the panels that
installed apps contribute (publishqueue's queue panel, say) through ``register_panel`` in their
``AppConfig.ready()``."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from .control import progress
from .models import RecycleRequest
from .status import pool


@dataclass(frozen=True)
class Panel:
    """A section of the dashboard: ``template`` is included with the dashboard's data as ``d``, and
    ``data(user)`` adds to that data (it is also in the JSON the page refreshes itself from)."""

    name: str
    template: str
    data: Callable[[Any], dict[str, Any]]
    # Who sees it (default: every staff user).
    visible: Callable[[Any], bool] = lambda user: True
    order: int = 100


panels: dict[str, Panel] = {}


def register_panel(panel: Panel) -> None:
    panels[panel.name] = panel


def visible_panels(user) -> list[Panel]:
    return sorted((p for p in panels.values() if p.visible(user)), key=lambda p: (p.order, p.name))


def dashboard_data(user) -> dict:
    data: dict[str, Any] = {"workers": pool()}
    latest = RecycleRequest.objects.select_related("requested_by").first()
    data["recycle"] = progress(latest) if latest else None
    data["can_recycle"] = user.has_perm("dispatch.recycle_workers")
    for panel in visible_panels(user):
        data.update(panel.data(user))
    data["generated"] = timezone.now()
    return data
