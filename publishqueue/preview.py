"""Previews of unsaved template edits, and the dry run's check of one file.

A template preview renders, in memory, a sample page of each archive type the template maps (for a module: of
each template that includes it) with the edited source; nothing is stored. A dry run (a publish run of kind
"dry-run", done by the workers) renders every file of the template with the edited source and compares it with the
file's stored content hash, counting those that would change and keeping a diff of the first.
"""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass

from django.db.models import F
from django.template import TemplateDoesNotExist, TemplateSyntaxError

from .models import ArchiveMapping, FileInfo, PublishRun, Template
from .paths import PathError, format_path, resolve_output_path
from .registry import ArchiveContext, registry
from .rendering import render_preview
from .sites import AbstractSite
from .targets import target_for

MAX_SAMPLES = 8
DIFF_MAX_CHARS = 20000


@dataclass(frozen=True)
class Sample:
    template: Template
    mapping: ArchiveMapping
    url: str
    html: str = ""
    error: str = ""


def sample_context(site: AbstractSite, archive_type: str) -> ArchiveContext | None:
    """The newest page of an archive type on the site (the latest object, or period), if it has any."""
    contexts = list(registry.archive_type(archive_type).all_contexts(site))
    if not contexts:
        return None
    return max(contexts, key=lambda c: (c.period_start is not None, c.period_start or 0, c.object_id or 0))


def _url(site: AbstractSite, mapping: ArchiveMapping, context: ArchiveContext) -> str:
    known = registry.archive_type(mapping.archive_type)
    wanted = frozenset(f for f in known.fields if "{" + f + "}" in mapping.path_pattern)
    fields = known.path_fields(site, [context], wanted).get(context.key) or {}
    try:
        return site.absolute_url(format_path(mapping.path_pattern, fields))
    except PathError:
        return site.absolute_url(mapping.path_pattern)


def template_samples(template: Template, source: str) -> list[Sample]:
    """A sample page of each archive type of the template (a module: of the templates including it), rendered with
    ``source`` as the template's source. Nothing is written or stored."""
    from .services import templates_affected_by

    site = template.site
    samples: list[Sample] = []
    for target in templates_affected_by(template)[:MAX_SAMPLES]:
        seen: set[str] = set()
        for mapping in target.mappings.order_by("-is_preferred", "id"):
            if mapping.archive_type in seen or mapping.archive_type not in registry.archive_types:
                continue
            seen.add(mapping.archive_type)
            context = sample_context(site, mapping.archive_type)
            if context is None:
                samples.append(Sample(target, mapping, "", error="No page of this archive type to show yet."))
                continue
            url = _url(site, mapping, context)
            try:
                html = render_preview(site=site, template_name=target.name, context=context, url=url,
                                      sources={template.name: source})
            except (TemplateSyntaxError, TemplateDoesNotExist) as exc:
                samples.append(Sample(target, mapping, url, error=f"Does not compile: {exc}"))
                continue
            except Exception as exc:  # noqa: BLE001 - the editor's template: its error is what the preview shows
                samples.append(Sample(target, mapping, url, error=f"{type(exc).__name__}: {exc}"))
                continue
            samples.append(Sample(target, mapping, url, html=html or ""))
    return samples[:MAX_SAMPLES]


def dry_run_files(template: Template) -> list[FileInfo]:
    """The files a dry run of ``template`` checks: every written or Manually published file of it (a module: of
    the templates that include it)."""
    from .fileinfos import template_fileinfos
    from .models import UNWRITTEN_MODES
    from .services import templates_affected_by

    targets = templates_affected_by(template)
    return [fi for t in targets for fi in template_fileinfos(t) if fi.mode not in UNWRITTEN_MODES]


def check_file(run: PublishRun, fileinfo: FileInfo, batch: object = None) -> bool:
    """One file of a dry run: render it with the run's source; True (and counted on the run, the first one's diff
    kept) when its content would differ from what was last published."""
    content = render_preview(
        site=fileinfo.site, template_name=fileinfo.template.name, context=ArchiveContext(
            fileinfo.archive_type, object_id=fileinfo.object_id, period_start=fileinfo.period_start),
        url=fileinfo.url, sources={run.template.name: run.source}, batch=batch, cache_key=("dry-run", run.pk),
    )
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest() if content is not None else ""
    if digest == fileinfo.content_hash:
        return False
    PublishRun.objects.filter(pk=run.pk).update(changed=F("changed") + 1)
    if PublishRun.objects.filter(pk=run.pk, sample_path="").update(sample_path=fileinfo.path):
        diff = difflib.unified_diff(
            _published(fileinfo).splitlines(keepends=True), (content or "").splitlines(keepends=True),
            f"published/{fileinfo.path}", f"with the tried source/{fileinfo.path}",
        )
        PublishRun.objects.filter(pk=run.pk).update(sample_diff="".join(diff)[:DIFF_MAX_CHARS])
    return True


def _published(fileinfo: FileInfo) -> str:
    if not fileinfo.published_path:
        return ""
    elsewhere = target_for(fileinfo.site)
    if not elsewhere.local:
        data = elsewhere.read(fileinfo.published_path)
        return data.decode("utf-8", "replace") if data is not None else ""
    try:
        with open(resolve_output_path(fileinfo.site.site_root, fileinfo.published_path), encoding="utf-8") as handle:
            return handle.read()
    except (OSError, PathError, UnicodeDecodeError):
        return ""
