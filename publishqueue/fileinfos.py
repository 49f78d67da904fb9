"""FileInfo rows: the output files of archive contexts under a site's templates, created or re-pathed as
needed. Content apps decide which contexts a change touches; this turns contexts into files."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .models import UNWRITTEN_MODES, ArchiveMapping, FileInfo, PublishingMode, Template, mode_q
from .paths import PathError, format_path
from .publisher import remove_fileinfo
from .registry import ArchiveContext, registry
from .sites import AbstractSite, site_locale

ACTIVE_MODES = [m for m in PublishingMode if m != PublishingMode.DISABLED]


def all_template_contexts(template: Template) -> set[ArchiveContext]:
    """Every file a template has: for each archive type it maps, every context of that type on its site."""
    return _site_contexts(template.site, set(template.mappings.values_list("archive_type", flat=True)))


def _site_contexts(site: AbstractSite, archive_types: set[str]) -> set[ArchiveContext]:
    contexts: set[ArchiveContext] = set()
    with site_locale(site):  # periods are the site's local days, months, years
        for archive_type in archive_types:
            contexts |= set(registry.archive_type(archive_type).all_contexts(site))
    return contexts


def dynamic_fileinfos(template: Template) -> list[FileInfo]:
    """The FileInfo rows of the template's Dynamically published files (its mappings' own mode, or its), created or
    re-pathed as needed: they are the URLs the app serves those pages at (MT's fileinfo, which its dynamic engine
    looks requests up in), moved like any file's, though nothing is written for them. Rows whose context is gone
    are left as they are (the app answers 404 there)."""
    mappings = [m for m in template.mappings.all() if (m.mode or template.mode) == PublishingMode.DYNAMIC]
    if not mappings:
        return []
    dynamic = {mapping.pk for mapping in mappings}
    contexts = _site_contexts(template.site, {mapping.archive_type for mapping in mappings})
    return ensure_fileinfos(site=template.site, contexts=contexts, templates=[template],
                            mapping_filter=lambda mapping: mapping.pk in dynamic)


def template_fileinfos(template: Template) -> list[FileInfo]:
    """The FileInfo rows of every file ``template`` has now (created or re-pathed as needed), and after them
    its rows whose context is gone (a deleted category, an unpublished entry): publishing those removes their
    files, which would otherwise survive every later publish."""
    rows = ensure_fileinfos(site=template.site, contexts=all_template_contexts(template), templates=[template])
    current = {row.pk for row in rows}
    gone = set(FileInfo.objects.filter(template=template).values_list("pk", flat=True)) - current
    if gone:
        stale = FileInfo.objects.filter(pk__in=gone).select_related("template", "mapping")
        for row in stale:
            row.site = template.site
        rows += sorted(stale, key=lambda fi: fi.pk)
    return rows


def _wanted_fields(mappings: list[ArchiveMapping], archive_type: str) -> frozenset[str]:
    """The path fields the patterns of an archive type's mappings use (an entry's {category} costs a query)."""
    fields = registry.archive_type(archive_type).fields
    return frozenset(f for f in fields if any("{" + f + "}" in m.path_pattern for m in mappings))


def ensure_fileinfos(
    *,
    site: AbstractSite,
    contexts: Iterable[ArchiveContext],
    templates: Iterable[Template] | None = None,
    mapping_filter: Callable[[ArchiveMapping], bool] | None = None,
) -> list[FileInfo]:
    """The FileInfo rows for ``contexts`` under the site's (or the given) templates, created or re-pathed as
    needed. Rows whose object is gone are returned too (publishing them removes their files), but for those never
    written (Dynamically, Do Not Publish), which are deleted (``_drop_unwritten``)."""
    contexts = list(contexts)
    by_type: dict[str, list[ArchiveContext]] = {}
    for context in contexts:
        by_type.setdefault(context.archive_type, []).append(context)
    # Each mapping by its own mode (MT's templatemap build type), or its template's.
    mappings = ArchiveMapping.objects.filter(mode_q(ACTIVE_MODES), archive_type__in=list(by_type))
    if templates is not None:
        mappings = mappings.filter(template__in=list(templates))
    else:
        mappings = mappings.filter(template__site=site)
    mappings = [m for m in mappings.select_related("template") if mapping_filter is None or mapping_filter(m)]
    if not mappings or not contexts:
        return []
    # (mapping id, context key) -> the row's mapping, context and path: rows are built only for the missing.
    wanted: dict[tuple[int, str], tuple[ArchiveMapping, ArchiveContext, str]] = {}
    order: dict[str, int] = {}
    for archive_type, typed in by_type.items():
        typed_mappings = [m for m in mappings if m.archive_type == archive_type]
        if not typed_mappings:
            continue
        known = registry.archive_type(archive_type)
        with site_locale(site):  # dates in paths are the site's local dates
            fields = known.path_fields(site, typed, _wanted_fields(typed_mappings, archive_type))
        if known.ordered:
            order.update((key, i) for i, key in enumerate(fields))
        for mapping in typed_mappings:
            for context in typed:
                found = fields.get(context.key)
                if found is not None:
                    wanted[(mapping.pk, context.key)] = (mapping, context, _path(mapping, found))
    rows = _sync_fileinfos(site, mappings, [c.key for c in contexts], wanted)
    # Ordered files (entry pages by date, so that a worker's batch shows its own entries as each other's
    # neighbours, which it loads once) after the others, which go by id.
    return sorted(rows, key=lambda fi: (fi.context_key in order, order.get(fi.context_key, 0), fi.pk))


def _path(mapping: ArchiveMapping, fields: dict[str, str]) -> str:
    try:
        return format_path(mapping.path_pattern, fields)
    except PathError:
        return mapping.path_pattern  # the publisher refuses it with the error; keep the row


def _new_fileinfo(site: AbstractSite, mapping: ArchiveMapping, context: ArchiveContext, path: str) -> FileInfo:
    return FileInfo(
        site=site, template=mapping.template, mapping=mapping, archive_type=context.archive_type,
        context_key=context.key, object_id=context.object_id, period_start=context.period_start, path=path,
        url=site.absolute_url(path),
    )


def _existing(site: AbstractSite, mappings: list[ArchiveMapping], keys: list[str]) -> dict[tuple[int, str], FileInfo]:
    """The rows for ``keys``, with the site, mapping and template objects shared among them (one copy of
    each per row, the template's source included, was most of the cost of saving a template)."""
    by_id = {mapping.pk: mapping for mapping in mappings}
    found: dict[tuple[int, str], FileInfo] = {}
    for start in range(0, len(keys), 500):
        for row in FileInfo.objects.filter(mapping__in=mappings, context_key__in=keys[start : start + 500]):
            row.mapping = by_id[row.mapping_id]
            row.template = row.mapping.template
            if row.site_id == site.pk:
                row.site = site
            found[(row.mapping_id, row.context_key)] = row
    return found


def _sync_fileinfos(site, mappings, keys, wanted) -> list[FileInfo]:
    existing = _drop_unwritten(_existing(site, mappings, keys), wanted)
    missing = [_new_fileinfo(site, *want) for key, want in wanted.items() if key not in existing]
    if missing:
        # Concurrent requests may create the same rows: the unique constraint keeps one, we re-read.
        FileInfo.objects.bulk_create(missing, ignore_conflicts=True, batch_size=500)
        existing = _existing(site, mappings, keys)
    moved = []
    for key, row in existing.items():
        want = wanted.get(key)
        if want is None:
            continue
        path = want[2]
        if (row.path, row.url) != (path, url := site.absolute_url(path)):
            row.path, row.url = path, url
            moved.append(row)
    if moved:
        FileInfo.objects.bulk_update(moved, ["path", "url"], batch_size=500)
    return sorted(existing.values(), key=lambda fi: fi.pk)


def _drop_unwritten(existing: dict[tuple[int, str], FileInfo], wanted: dict) -> dict[tuple[int, str], FileInfo]:
    """``existing`` without the rows of objects that are gone (no path fields: an entry deleted or unpublished, a
    category deleted) whose mode never writes them (Dynamically, Do Not Publish), which are deleted: a written
    file's row goes when publishing it finds its object gone (``publisher.remove_fileinfo``), but these are never
    published, and the row of a Dynamic page would stay at its path for good, in the way of the object given that
    path next (an entry with a deleted one's slug): one row per path, that of the object it belongs to now."""
    gone = [row for key, row in existing.items() if key not in wanted and row.mode in UNWRITTEN_MODES]
    if not gone:
        return existing
    for row in gone:
        if row.published_path:  # a file left from when it was written: it goes with its row
            remove_fileinfo(row)
    FileInfo.objects.filter(pk__in=[row.pk for row in gone if not row.published_path]).delete()
    dropped = {row.pk for row in gone}
    return {key: row for key, row in existing.items() if row.pk not in dropped}
