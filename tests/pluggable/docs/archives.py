"""The docs' archive types: a contents page (single) and one page per Page (object), whose path is its
place in the hierarchy; a page shows its parent (breadcrumb) and lists its children."""
from publishqueue.registry import ArchiveContext, ArchiveType, register_archive_type, register_site_variables
from publishqueue.services import publish_contexts

from .models import Page


def contents(page_request) -> dict:
    return {"pages": list(Page.objects.filter(manual=page_request.site, parent=None))}


def page_variables(page_request) -> dict | None:
    page = Page.objects.select_related("parent").filter(pk=page_request.context.object_id).first()
    if page is None:
        return None
    return {"page": page, "parent": page.parent, "children": list(page.children.all())}


def page_fields(manual, contexts, wanted) -> dict:
    pages = Page.objects.select_related("parent").in_bulk([c.object_id for c in contexts])
    return {c.key: {"path": pages[c.object_id].path()} if c.object_id in pages else None for c in contexts}


def all_pages(manual) -> list[ArchiveContext]:
    return [ArchiveContext("page", object_id=pk) for pk in manual.pages.values_list("pk", flat=True)]


def register() -> None:
    register_archive_type(ArchiveType(
        "contents", "Contents", "single", all_contexts=lambda manual: [ArchiveContext("contents")],
        variables=contents, priority=5,
    ))
    register_archive_type(ArchiveType(
        "page", "Page", "object", fields=frozenset({"path"}), path_fields=page_fields, variables=page_variables,
        all_contexts=all_pages,
    ))
    register_site_variables(lambda manual, links: {"manual": manual})


def touched_by(page: Page) -> set:
    """A page change touches the page, its parent (which lists it), its children (whose breadcrumb shows
    it) and the contents."""
    related = [page.pk, *page.children.values_list("pk", flat=True)] + ([page.parent_id] if page.parent_id else [])
    return {ArchiveContext("contents")} | {ArchiveContext("page", object_id=pk) for pk in related}


def save_page(page: Page):
    """The content app's service: save, then publish what the change touches (by each template's mode)."""
    from django.db import transaction

    with transaction.atomic():
        page.save()
        return publish_contexts(site=page.manual, contexts=touched_by(page))
