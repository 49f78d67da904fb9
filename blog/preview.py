"""Preview of an entry with unsaved changes: its page rendered in memory with the blog's entry template (the
preferred entry mapping's); nothing is saved, written or queued."""
from __future__ import annotations

import re

from django.utils.html import format_html

from publishqueue.models import ArchiveMapping
from publishqueue.rendering import links_for, render_preview

from .archives import Archive, entry_context, entry_fields, unsaved_entry_variables
from .models import Category, Entry


class PreviewError(Exception):
    pass


def preview_entry(*, entry: Entry, categories: list[Category]) -> str:
    blog = entry.blog
    mapping = (
        ArchiveMapping.objects.filter(template__site=blog, archive_type=Archive.INDIVIDUAL)
        .select_related("template").order_by("-is_preferred", "id").first()
    )
    if mapping is None:
        raise PreviewError("This blog has no entry archive template to preview with.")
    entry.render_body()
    links = links_for(blog)
    variables = unsaved_entry_variables(blog, entry, categories, links)
    url = links.url(Archive.INDIVIDUAL, entry_fields(entry, category=links.uses(Archive.INDIVIDUAL, "category")))
    html = render_preview(site=blog, template_name=mapping.template.name, context=entry_context(entry.pk or 0),
                          url=url, variables=variables) or ""
    return with_banner(html, url)


BANNER = (
    '<div id="mt-preview-banner" style="position: sticky; top: 0; z-index: 1000; padding: .5em 1em; '
    'background: #fff3cd; color: #333; border-bottom: 1px solid #c9a227; font: 14px sans-serif">'
    "Preview of unsaved changes — nothing has been saved or published. It would be published at {}.</div>"
)


def with_banner(html: str, url: str) -> str:
    banner = format_html(BANNER, url or "(no URL)")
    match = re.search(r"<body[^>]*>", html, re.IGNORECASE)
    return html[: match.end()] + banner + html[match.end() :] if match else banner + html
