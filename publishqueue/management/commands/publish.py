"""Publish a blog, a template, or everything, now or through the queue (MT's rebuild)."""
import getpass

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from publishqueue.ledger import sweep
from publishqueue.models import Template
from publishqueue.services import publish_templates
from publishqueue.sites import get_site_model


class Command(BaseCommand):
    help = "Publish every file of the selected templates (Statically, Via Publish Queue and Manually ones)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--site", "--blog", dest="site", type=int, action="append",
                            help="Site (blog) id (repeatable).")
        parser.add_argument("--template", type=int, action="append", help="Template id (repeatable).")
        parser.add_argument("--all", action="store_true", help="Every site.")
        parser.add_argument("--queue", action="store_true", help="Insert jobs instead of publishing here.")
        parser.add_argument("--force", action="store_true", help="Rewrite files even when unchanged.")

    def handle(self, *args, site=None, template=None, all=False, queue=False, force=False, **options) -> None:
        if not (site or template or all):
            raise CommandError("Say what to publish: --all, --site ID or --template ID.")
        templates = Template.objects.select_related("site").exclude(kind=Template.Kind.MODULE)
        if template:
            templates = templates.filter(pk__in=template)
        if site:
            templates = templates.filter(site_id__in=site)
        if not templates.exists():
            raise CommandError("No templates match.")
        show = options["verbosity"] > 0 and not queue
        with tqdm(total=0, unit="file", disable=not show, file=self.stderr._out) as progress:
            report = publish_templates(
                templates=templates, queue=queue, force=force, progress=progress,
                actor=f"manage.py publish ({getpass.getuser()})",
            )
        for error in report.errors:
            self.stderr.write(self.style.ERROR(error))
        self.stdout.write(report.summary())
        if all:  # files nothing claims any more (their template, mapping or object went while no worker ran)
            swept = sum(len(sweep(site)) for site in get_site_model().objects.all())
            self.stdout.write(f"{swept} orphaned file(s) removed.")
        if report.errors:
            raise CommandError(f"{len(report.errors)} file(s) failed to publish.")
