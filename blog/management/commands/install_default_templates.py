"""Give existing blogs the default templates they do not have yet (a new version's: the RSS feed, the category
feeds, the weekly, author and category-monthly archives). A command rather than a data migration: adding templates
to a blog changes what it publishes, which its administrator decides (MT offers "Refresh templates" likewise)."""
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from blog.defaults import DEFAULT_TEMPLATES, install_default_templates
from blog.models import Blog
from publishqueue import runs
from publishqueue.models import PublishingMode, PublishRun


class Command(BaseCommand):
    help = "Add the default templates each blog lacks (by name); existing templates are left as they are."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--blog", type=int, action="append", help="Blog id (repeatable; default: every blog).")
        parser.add_argument("--mode", default=PublishingMode.STATIC, choices=PublishingMode.values,
                            help="Publishing mode of the added templates (default: static).")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be added; add nothing.")
        parser.add_argument("--publish", action="store_true",
                            help="Start a publish run of each added template (the queue workers write its files).")

    def handle(self, *args, blog=None, mode="static", dry_run=False, publish=False, **options) -> None:
        blogs = Blog.objects.filter(pk__in=blog) if blog else Blog.objects.all()
        if blog and blogs.count() != len(set(blog)):
            raise CommandError("No blog with that id.")
        for found in blogs.order_by("pk"):
            existing = set(found.templates.values_list("name", flat=True))
            missing = [spec.name for spec in DEFAULT_TEMPLATES if spec.name not in existing]
            if dry_run or not missing:
                self.stdout.write(f"{found}: {', '.join(missing) or 'nothing'} {'would be ' if dry_run else ''}"
                                  f"{'added' if missing else 'to add'}.")
                continue
            with transaction.atomic():
                created = install_default_templates(blog=found, mode=mode)
                started = [
                    runs.start(PublishRun(site=found, scope=PublishRun.Scope.TEMPLATE, template=template,
                                          reason="New default template"))
                    for template in created if publish and template.kind != template.Kind.MODULE
                ]
            self.stdout.write(f"{found}: added {', '.join(t.name for t in created)} ({mode})"
                              + (f"; publish runs {', '.join(f'#{r.pk}' for r in started)}." if started else
                                 "; publish them with a publish run (Publish site) or manage.py publish --blog "
                                 f"{found.pk}."))
