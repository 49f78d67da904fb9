"""The publish queue's panel of the admin dashboard (a ``dispatch.dashboard.Panel``): depth by state, site and
template, throughput and depth over the last hour, the time to drain, recent errors with their actions."""
from __future__ import annotations

from dispatch.dashboard import Panel

from .overview import overview, recent_errors


def chart_svg(history: list[dict], width: int = 600, height: int = 120) -> str:
    """Throughput (bars) and depth (line) per minute over the last hour, as inline SVG (no JavaScript)."""
    done = [p["done"] for p in history]
    depth = [p.get("depth") or 0 for p in history]
    top = max([*done, *depth, 1])
    step = width / max(len(history), 1)
    bars = "".join(
        f'<rect x="{i * step:.1f}" y="{height - d / top * height:.1f}" width="{max(step - 1, 1):.1f}" '
        f'height="{d / top * height:.1f}" class="done"><title>{p["minute"]:%H:%M}: {d} done</title></rect>'
        for i, (p, d) in enumerate(zip(history, done, strict=True)) if d
    )
    points = " ".join(f"{i * step + step / 2:.1f},{height - v / top * height:.1f}" for i, v in enumerate(depth))
    return (
        f'<svg class="pq-chart" viewBox="0 0 {width} {height}" width="100%" height="{height}" role="img" '
        f'aria-label="Jobs done per minute and queue depth, last hour (max {top})">{bars}'
        f'<polyline points="{points}" class="depth" fill="none"/></svg>'
    )



def queue_data(user) -> dict:
    data = overview()
    data["chart"] = chart_svg(data["history"])
    data["recent_errors"] = recent_errors()
    data["title"] = "Publishing and workers"
    return data


PANEL = Panel("publish-queue", "publishqueue/dashboard_panel.html", queue_data, order=10)
