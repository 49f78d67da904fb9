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
    # (archive type, path pattern) or (archive type, path pattern, preferred): a second mapping of a type that
    # another template maps (a category's feed) is not its permalink.
    mappings: tuple[tuple, ...] = ()
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
    DefaultTemplate("RSS Feed", "feed_rss", Template.Kind.INDEX, "rss.xml", ((ArchiveType.INDEX, "rss.xml"),)),
    DefaultTemplate(
        "Category Feed", "category_feed", Template.Kind.ARCHIVE, "rss.xml",
        ((ArchiveType.CATEGORY, "category/{category}/rss.xml", False),),
    ),
    DefaultTemplate(
        "Weekly Archive", "weekly_archive", Template.Kind.ARCHIVE, "archive_list.html",
        ((ArchiveType.WEEKLY, "{year}/{month}/{day}-week/"),),
    ),
    DefaultTemplate(
        "Author Archive", "author_archive", Template.Kind.ARCHIVE, "archive_list.html",
        ((ArchiveType.AUTHOR, "author/{author}/"),),
    ),
    DefaultTemplate(
        "Category Monthly Archive", "category_monthly_archive", Template.Kind.ARCHIVE, "archive_list.html",
        ((ArchiveType.CATEGORY_MONTHLY, "category/{category}/{year}/{month}/"),),
    ),
)


# The set before the RSS feeds and the weekly, author and category-monthly archives (the tests' default blog).
CORE_TEMPLATES = frozenset(spec.name for spec in DEFAULT_TEMPLATES[:9])


@transaction.atomic
def install_default_templates(*, blog: Blog, mode: str = "static", names=None) -> list[Template]:
    """Create the default templates the blog does not have yet (by name; only ``names`` if given), all in ``mode``."""
    existing = set(blog.templates.values_list("name", flat=True))
    created = []
    for spec in DEFAULT_TEMPLATES:
        if spec.name in existing or (names is not None and spec.name not in names):
            continue
        template = Template.objects.create(
            site=blog, name=spec.name, identifier=spec.identifier, kind=spec.kind,
            source=(SOURCE_DIR / spec.source_file).read_text(), depends_on_comments=spec.depends_on_comments,
            mode=mode,
        )
        for archive_type, pattern, *preferred in spec.mappings:
            ArchiveMapping.objects.create(
                template=template, archive_type=archive_type, path_pattern=pattern, is_preferred=all(preferred)
            )
        created.append(template)
    return created
