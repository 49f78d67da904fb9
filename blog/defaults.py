"""The default template set: a new blog publishes a real site (MT's default templates, in Django's
template language)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from publishqueue.models import ArchiveMapping, Template

from .archives import Archive as ArchiveType
from .models import Blog

SOURCE_DIR = Path(__file__).parent / "default_templates"


@dataclass(frozen=True)
class DefaultTemplate:
    name: str
    identifier: str
    kind: str
    source_file: str
    mappings: tuple[tuple[str, str], ...] = ()
    depends_on_comments: bool = False


DEFAULT_TEMPLATES = (
    DefaultTemplate("Header", "header", Template.Kind.MODULE, "header.html"),
    DefaultTemplate("Footer", "footer", Template.Kind.MODULE, "footer.html"),
    DefaultTemplate("Sidebar", "sidebar", Template.Kind.MODULE, "sidebar.html"),
    DefaultTemplate("Stylesheet", "styles", Template.Kind.INDEX, "styles.css", ((ArchiveType.INDEX, "styles.css"),)),
    DefaultTemplate(
        "Main Index", "main_index", Template.Kind.INDEX, "main_index.html", ((ArchiveType.INDEX, "index.html"),)
    ),
    DefaultTemplate("Atom Feed", "feed_atom", Template.Kind.INDEX, "atom.xml", ((ArchiveType.INDEX, "atom.xml"),)),
    DefaultTemplate(
        "Entry", "entry", Template.Kind.ARCHIVE, "entry.html",
        ((ArchiveType.INDIVIDUAL, "{year}/{month}/{slug}.html"),), depends_on_comments=True,
    ),
    DefaultTemplate(
        "Category Archive", "category_archive", Template.Kind.ARCHIVE, "archive_list.html",
        ((ArchiveType.CATEGORY, "category/{category}/"),),
    ),
    DefaultTemplate(
        "Monthly Archive", "monthly_archive", Template.Kind.ARCHIVE, "archive_list.html",
        ((ArchiveType.MONTHLY, "{year}/{month}/"),),
    ),
)


@transaction.atomic
def install_default_templates(*, blog: Blog, mode: str = "static") -> list[Template]:
    """Create the default templates the blog does not have yet (by name), all in ``mode``."""
    existing = set(blog.templates.values_list("name", flat=True))
    created = []
    for spec in DEFAULT_TEMPLATES:
        if spec.name in existing:
            continue
        template = Template.objects.create(
            site=blog, name=spec.name, identifier=spec.identifier, kind=spec.kind,
            source=(SOURCE_DIR / spec.source_file).read_text(), depends_on_comments=spec.depends_on_comments,
            mode=mode,
        )
        for archive_type, pattern in spec.mappings:
            ArchiveMapping.objects.create(template=template, archive_type=archive_type, path_pattern=pattern)
        created.append(template)
    return created
