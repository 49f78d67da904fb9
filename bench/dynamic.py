"""Dynamically published pages: requests per second with the page cache (publishqueue.dynamic) and without it
(every request renders the page from the database, as before the cache), through Django's test client (the
whole request path: URL resolution, the site and page lookups, the view) on a fresh SQLite database.

The demo blog is created with ``--entries`` entries and its Main Index, an Entry page and a Monthly archive are
switched to Dynamic publishing. Rounds alternate between the two modes (``--rounds`` of ``--seconds`` each); the
table prints each mode's median req/s with its min-max, and the ratio of the medians. The machine's speed is
printed before and after (a fixed pure-Python loop).

    python bench/dynamic.py [--entries 1000] [--rounds 5] [--seconds 2]
"""
from __future__ import annotations

import sys

# Run as a script, this file's directory comes first on sys.path and bench/queue.py shadows the stdlib's queue.
_here = __import__("os").path.dirname(__import__("os").path.realpath(__file__))
sys.path[:] = [p for p in sys.path if __import__("os").path.realpath(p or ".") != _here]

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_reference() -> float:
    t = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    speed_before = cpu_reference()
    with tempfile.TemporaryDirectory(prefix="mtd-dyn-") as tmp:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="mtdispatch_project.settings", MTDISPATCH_SQLITE=f"{tmp}/db.sqlite3",
            MTDISPATCH_SITE_ROOTS=tmp, MTDISPATCH_LOG_LEVEL="WARNING",
        )
        os.environ.pop("DATABASE_URL", None)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client, override_settings

        from blog.demo import create_demo_blog
        from publishqueue.fileinfos import template_fileinfos
        from publishqueue.models import FileInfo, Template
        from publishqueue.services import template_saved

        call_command("migrate", verbosity=0)
        blog = create_demo_blog(site_root=f"{tmp}/site", site_url="http://127.0.0.1/blog/", entries=args.entries,
                                mode="queue", password="x").blog
        for name in ("Main Index", "Entry", "Monthly Archive"):
            template = Template.objects.get(site=blog, name=name)
            previous, template.mode = template.mode, "dynamic"
            template.save()
            template_saved(template=template, previous_mode=previous)
            template_fileinfos(template)  # its pages (a Dynamic page's FileInfo is what the view looks up)
        pages = {
            "main index": "/blog/index.html",
            "entry": "/blog/" + FileInfo.objects.filter(site=blog, archive_type="individual").order_by("pk")[0].path,
            "monthly": "/blog/" + FileInfo.objects.filter(site=blog, archive_type="monthly").order_by("-pk")[0].path,
        }
        client = Client(HTTP_HOST="127.0.0.1")
        for url in pages.values():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.content[:300])

        def rate(url: str, cache: str) -> float:
            with override_settings(PUBLISHQUEUE={"SITE_ROOTS": [tmp], "DYNAMIC_CACHE": cache}):
                client.get(url)  # the cache filled (or not)
                n, end = 0, time.perf_counter() + args.seconds
                start = time.perf_counter()
                while time.perf_counter() < end:
                    client.get(url)
                    n += 1
                return n / (time.perf_counter() - start)

        rows = [("page", "rendered each request, req/s", "cached, req/s", "ratio")]
        for label, url in pages.items():
            rendered, cached = [], []
            for r in range(args.rounds):
                order = [("", rendered), ("default", cached)]
                for cache, into in order if r % 2 == 0 else reversed(order):
                    into.append(rate(url, cache))
            ratio = statistics.median(cached) / statistics.median(rendered)
            rows.append((label, f"{statistics.median(rendered):.0f} ({min(rendered):.0f}-{max(rendered):.0f})",
                         f"{statistics.median(cached):.0f} ({min(cached):.0f}-{max(cached):.0f})", f"{ratio:.1f}x"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(f"\nDynamically published pages of a {args.entries}-entry blog through Django's test client, "
          f"{args.rounds} alternating rounds of {args.seconds} s: median req/s (min-max)\n")
    for n, row in enumerate(rows):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    print(f"\nMachine speed (10M-iteration Python loop): {speed_before:.2f} s before, {cpu_reference():.2f} s after")


if __name__ == "__main__":
    main()
