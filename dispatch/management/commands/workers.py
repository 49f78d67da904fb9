"""A status table of every FastCGI manager, its children, and every queue worker."""
from django.core.management.base import BaseCommand

from dispatch.status import pool


def _mb(value) -> str:
    return f"{(value or 0) / 1048576:.0f}M"


class Command(BaseCommand):
    help = "Show FastCGI managers and children, and queue workers, on every host."

    def handle(self, *args, **options) -> None:
        state = pool()
        rows = [("host", "pid", "what", "state", "done", "RSS", "CPU%", "age", "current")]
        for m in state["managers"]:
            rows.append((m["host"], m["pid"], f"runfcgi {m['address']}", m["state"], m["requests_served"],
                         _mb(m["rss"]), f"{m['cpu']:.0f}", f"{m['uptime']:.0f}s",
                         f"{len(m['children'])}/{m['workers_target']} children"))
            for c in m["children"]:
                current = f"{c['request']} ({c['request_age']}s)" if c.get("request_age") is not None else ""
                rows.append(("", c["pid"], "  fastcgi child", c["state"], c["requests"], _mb(c["rss"]),
                             f"{c['cpu']:.0f}", f"{c['age']:.0f}s", current))
        for w in state["queue_workers"]:
            rows.append((w["host"], w["pid"], "runworker", w["state"] + (" (stale)" if w["stale"] else ""),
                         w["jobs_done"], _mb(w["rss"]), f"{w['cpu']:.0f}", f"{w['age']:.0f}s", w["current_job"]))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        for m in state["managers"]:
            if m["message"]:
                self.stdout.write(f"runfcgi {m['host']}:{m['pid']}: {m['message']}")
