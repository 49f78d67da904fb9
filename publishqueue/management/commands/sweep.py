"""Remove published files that no FileInfo claims any more (never files the publisher did not write)."""
from django.core.management.base import BaseCommand

from publishqueue.ledger import sweep
from publishqueue.sites import get_site_model


class Command(BaseCommand):
    help = "Remove files the publisher wrote that no template publishes any more (orphans)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--site", "--blog", dest="site", type=int, action="append", help="Site (blog) id.")
        parser.add_argument("--dry-run", action="store_true", help="Only list them.")

    def handle(self, *args, site=None, dry_run=False, **options) -> None:
        sites = get_site_model().objects.all()
        if site:
            sites = sites.filter(pk__in=site)
        total = 0
        for found in sites:
            paths = sweep(found, dry_run=dry_run)
            total += len(paths)
            for path in paths:
                self.stdout.write(f"{found.pk} {path}")
        self.stdout.write(f"{total} orphaned file(s) {'found' if dry_run else 'removed'}.")
