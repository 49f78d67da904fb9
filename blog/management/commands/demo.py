"""Create the demo blog (a few hundred entries, default templates, an admin user) and publish it."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from blog.demo import create_demo_blog
from publishqueue.models import PublishingMode
from publishqueue.services import publish_templates, site_templates


class Command(BaseCommand):
    help = "Create a demo blog with entries, templates and an admin user, then publish it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--entries", type=int, default=300)
        parser.add_argument("--site-root", default=str(Path(settings.SITES_DIR) / "demo"),
                            help="Under one of PUBLISHQUEUE[\"SITE_ROOTS\"] (default: SITES_DIR/demo).")
        parser.add_argument("--site-url", default="http://127.0.0.1:8000/blog/")
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", help="Set this password (default: a new random one for a new user).")
        parser.add_argument(
            "--mode", default=PublishingMode.STATIC, choices=PublishingMode.values,
            help="Publishing mode of the demo's templates.",
        )
        parser.add_argument("--no-publish", action="store_true")

    def handle(self, *args, **opts) -> None:
        if opts["entries"] < 0:
            raise CommandError("--entries must be zero or more.")
        site_root = str(Path(opts["site_root"]).resolve())
        result = create_demo_blog(
            site_root=site_root, site_url=opts["site_url"], entries=opts["entries"], username=opts["username"],
            password=opts["password"], mode=opts["mode"],
        )
        blog = result.blog
        self.stdout.write(f"Blog “{blog}” (id {blog.pk}): {result.entries} entries, site root {site_root}")
        if not opts["no_publish"]:
            with tqdm(total=0, unit="file", disable=opts["verbosity"] == 0, file=self.stderr._out) as bar:
                report = publish_templates(templates=site_templates(result.blog), progress=bar)
            self.stdout.write(f"Published: {report.summary()}")
        self.stdout.write(f"Site: {result.blog.site_url}")
        if result.password:
            self.stdout.write(self.style.SUCCESS(f"Admin login: {result.username} / {result.password}"))
        else:
            self.stdout.write(f"Admin login: {result.username} (existing password kept; pass --password to reset)")
