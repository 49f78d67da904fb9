"""What happens to the files a change touches, by each template's publishing mode.

Statically: published in the request, once the transaction that made the change commits.
Via Publish Queue: a coalesced job per file, inserted in the same transaction as the change.
Manually, Dynamically, Do Not Publish: nothing is written.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from . import activity, purge
from .conf import get_config
from .enqueue import NewJob, enqueue, enqueue_publish, enqueue_template_files
from .fileinfos import dynamic_fileinfos, ensure_fileinfos, template_fileinfos
from .models import (
    UNWRITTEN_MODES,
    WRITTEN_MODES,
    ArchiveMapping,
    FileInfo,
    PublishActivity,
    PublishingMode,
    PublishRun,
    Template,
    mode_q,
)
from .paths import PathError, resolve_output_path
from .publisher import PublishError, PublishResult, publish_file, unpublish_file
from .registry import ArchiveContext
from .rendering import permalink_patterns
from .sites import AbstractSite

logger = logging.getLogger("mtdispatch.publish")


@dataclass
class ChangeReport:
    """What a change did: files published in the request, jobs queued, files left for later."""

    published: list[PublishResult] = field(default_factory=list)
    queued: int = 0
    # Templates whose files a background job finds (their rows ensured) and queues: how many is known only then.
    found_later: int = 0
    # The publish run a change started (a Statically published template with more files than a request writes).
    run: PublishRun | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # The files that failed (site id, path, message), for the activity log.
    failures: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def written(self) -> int:
        return sum(1 for r in self.published if r.status == "written")

    def merge(self, other: ChangeReport) -> ChangeReport:
        """Fold in what another change did (one change that touched two sites); returns self. Inside a transaction,
        what ``other`` publishes once it commits (its Statically published files, its publish run) is folded in
        then too: this callback runs after the ones that publish them, registered before it."""
        self.queued += other.queued
        self.found_later += other.found_later
        for mode, count in other.skipped.items():
            self.skipped[mode] = self.skipped.get(mode, 0) + count
        self._fold_published(other, 0, 0, 0)
        if transaction.get_connection().in_atomic_block:
            sizes = len(other.published), len(other.errors), len(other.failures)
            transaction.on_commit(lambda: self._fold_published(other, *sizes))
        return self

    def _fold_published(self, other: ChangeReport, published: int, errors: int, failures: int) -> None:
        self.published += other.published[published:]
        self.errors += other.errors[errors:]
        self.failures += other.failures[failures:]
        self.run = self.run or other.run

    def summary(self) -> str:
        parts = []
        if self.published:
            parts.append(f"published {self.written} file(s), {len(self.published) - self.written} unchanged or removed")
        if self.queued:
            parts.append(f"queued {self.queued} file(s) for the publish queue")
        if self.found_later:
            parts.append(f"a background job is finding and queuing the files of {self.found_later} template(s)")
        if self.run is not None:
            parts.append(f"publish run #{self.run.pk} started for {self.run.total} file(s)")
        parts += [f"{count} {mode} file(s) not written" for mode, count in sorted(self.skipped.items())]
        parts += self.errors
        return "; ".join(parts) or "no published files affected"


def publish_many(fileinfos: Iterable[FileInfo], report: ChangeReport, *, force: bool = False) -> None:
    """Publish each file now; one failure is reported and does not stop the others."""
    fileinfos = list(fileinfos)
    current_sites(fileinfos)
    changed = []
    for fileinfo in fileinfos:
        try:
            result = publish_file(fileinfo=fileinfo, force=force)
        except PublishError as exc:
            logger.warning("%s", exc)
            report.errors.append(str(exc))
            report.failures.append((fileinfo.site_id, fileinfo.path, str(exc)))
        else:
            report.published.append(result)
            if result.status != "unchanged":
                changed.append(result)
    purge.purge_results(changed)


def current_sites(fileinfos: list[FileInfo]) -> None:
    """The site objects these files hold, read again: a caller's site object (the one its change was made
    through, read before it) holds the row from before the change (its versions, a name renamed since), and
    rendering with it would show that row, and reuse what the caches keep under it (the sidebar of before)."""
    sites = {id(f.site): f.site for f in fileinfos if FileInfo.site.is_cached(f)}
    for site in sites.values():
        site.refresh_from_db()


def apply_change(fileinfos: Iterable[FileInfo], *, priority: int | None = None) -> ChangeReport:
    """Route each touched file through its template's publishing mode."""
    report = ChangeReport()
    static: list[FileInfo] = []
    queued: list[FileInfo] = []
    for fileinfo in fileinfos:
        mode = fileinfo.mode  # the mapping's, or its template's
        if mode == PublishingMode.STATIC:
            static.append(fileinfo)
        elif mode == PublishingMode.QUEUE:
            queued.append(fileinfo)
        else:
            report.skipped[mode] = report.skipped.get(mode, 0) + 1
    report.queued = enqueue_publish(queued, priority=priority)
    if static:
        transaction.on_commit(lambda: publish_and_log(static, report, kind=PublishActivity.Kind.CHANGE))
    return report


def publish_and_log(fileinfos: Iterable[FileInfo], report: ChangeReport, *, kind: str) -> None:
    """``publish_many``, then the run in its sites' activity logs (by the current actor)."""
    started = timezone.now()
    publish_many(fileinfos, report)
    activity.record(report.published, report.failures, kind=kind, started=started)


def publish_contexts(
    *,
    site: AbstractSite,
    contexts: Iterable[ArchiveContext],
    mapping_filter: Callable[[ArchiveMapping], bool] | None = None,
) -> ChangeReport:
    """What a content app calls after a change, with the archive contexts its dependency rules say the change
    touches: each file of those contexts goes through its template's mode (in the caller's transaction)."""
    return apply_change(ensure_fileinfos(site=site, contexts=contexts, mapping_filter=mapping_filter))


def publish_object_pages(*, site: AbstractSite, archive_types: Iterable[str], object_id: int) -> ChangeReport:
    """What a content app calls after an object changed or went whose pages it cannot list (a category deleted:
    its archive, and its monthly archives for the months it had entries): its pages of ``archive_types`` that
    have FileInfo rows go through their modes, as ``publish_contexts``; those whose object is gone leave (a
    Dynamic page's row with them: the path is free for the object given it next)."""
    rows = FileInfo.objects.filter(site_id=site.pk, archive_type__in=list(archive_types), object_id=object_id)
    contexts = {
        ArchiveContext(archive_type, object_id=object_id, period_start=start)
        for archive_type, start in rows.values_list("archive_type", "period_start").distinct()
    }
    return publish_contexts(site=site, contexts=contexts)


def republish_site(*, site: AbstractSite) -> ChangeReport:
    """Something every page may show changed (the site's name or URL, a category's label, an author's name):
    queue every file of the site's written templates at low priority (never rendered in the request). The rows of
    the Dynamically published pages of the others are moved to their paths now (nothing is rendered or queued for
    them: the app renders them at their next request); Manually and Do Not Publish templates are left alone."""
    report = ChangeReport()
    priority = get_config()["TEMPLATE_SAVE_PRIORITY"]
    for template in site.templates.exclude(kind=Template.Kind.MODULE).select_related("site"):
        if writes_files(template):  # its Dynamic mappings' rows are ensured with the others
            report.queued += enqueue_publish(written(template_fileinfos(template)), priority=priority)
        else:
            dynamic_fileinfos(template)  # its pages' URLs moved (a slug, the time zone): nothing to write
    return report


def target_changed(*, site: AbstractSite) -> ChangeReport:
    """The site publishes to another target now (publishqueue.targets): nothing of it is there yet, whatever the
    stored hashes say (they are of the files at the old target, which stay where they are): forget them and queue
    every file."""
    FileInfo.objects.filter(site=site).update(content_hash="")
    return republish_site(site=site)


def writes_files(template: Template) -> bool:
    """Whether any of the template's files is written (its mode, or one of its mappings' own)."""
    return template.writes_files or template.mappings.filter(mode__in=WRITTEN_MODES).exists()


def written(fileinfos: Iterable[FileInfo]) -> list[FileInfo]:
    """The files among ``fileinfos`` whose mode (their mapping's or their template's) writes them."""
    return [fileinfo for fileinfo in fileinfos if fileinfo.mode in WRITTEN_MODES]


def republish_includers(*, site_id: int, module: str) -> int:
    """Queue, at low priority, every file of the written templates that include ``module`` (directly or
    through other modules). Returns how many files were queued."""
    found = Template.objects.filter(site_id=site_id, name=module).select_related("site").first()
    if found is None:
        return 0
    return _queue_in_chunks(templates_affected_by(found))


def _queue_in_chunks(targets: Iterable[Template]) -> int:
    """The files of the written ``targets`` (their rows ensured), queued at low priority, a chunk per transaction."""
    priority = get_config()["TEMPLATE_SAVE_PRIORITY"]
    queued = 0
    for target in targets:
        if writes_files(target):
            fileinfos = written(template_fileinfos(target))
            for start in range(0, len(fileinfos), QUEUE_CHUNK):
                with transaction.atomic():
                    queued += enqueue_publish(fileinfos[start : start + QUEUE_CHUNK], priority=priority)
    return queued


def remove_files_of(fileinfos) -> None:
    """The files of these FileInfo rows are going away with them (their template, mapping or site is being
    deleted): remove them from the disk once the deletion commits, and from the ledger of written files."""
    from . import ledger
    from .targets import get_target

    rows = list(fileinfos.exclude(published_path="").values_list(
        "site_id", "site__site_root", "site__publish_target", "published_path"
    ))

    def remove() -> None:
        for site_id, site_root, target_name, path in rows:
            target = get_target(target_name)
            if not target.local:
                target.delete(path)
            else:
                try:
                    os.unlink(resolve_output_path(site_root, path))
                except (PathError, OSError):
                    pass
            ledger.forget(site_id, [path])

    if rows:
        transaction.on_commit(remove)


def template_saved(
    *, template: Template, previous_mode: str | None = None, previous_permalinks: dict[str, str] | None = None,
    started_by=None, paths_changed: bool = True,
) -> ChangeReport:
    """A template (or module) changed: republish its files, queued at low priority (SPEC 1). Files whose mode
    (their mapping's or the template's) is now Dynamically or Do Not Publish leave the disk. If the permalink
    patterns changed (``previous_permalinks``, from ``permalink_patterns`` before the change: a preferred mapping's
    pattern, a mapping added or removed), every page showing a link may have changed: the site is republished."""
    report = ChangeReport()
    _unpublish_unwritten_files(template)
    # Whether finding its files means ensuring their rows (FileInfo), or reading them: a source edit changes no
    # file's context or path; a change of the template's site, kind, mode or mappings may (``paths_changed``: the
    # caller says; the admin knows from its form).
    ensure = paths_changed or (previous_mode is not None and previous_mode != template.mode)
    if previous_permalinks is not None and previous_permalinks != permalink_patterns(template.site_id):
        report.merge(republish_site(site=template.site))  # the template's Dynamic rows moved with the others'
    elif ensure and template.kind != Template.Kind.MODULE and not writes_files(template):
        dynamic_fileinfos(template)  # a Dynamic template's pages are where its rows say: added or moved now
    static: list[FileInfo] = []
    targets = [target for target in templates_affected_by(template) if writes_files(target)]
    later = _queued_later(targets, ensure=ensure)
    if ensure:  # the rows there are now miss those a new mapping adds: the count is the job's to tell
        report.found_later += len(later)
    else:
        report.queued += sum(later.values())
    for target in targets:
        if target.pk not in later:
            fileinfos = written(template_fileinfos(target))
            static += [fi for fi in fileinfos if fi.mode == PublishingMode.STATIC]
            queued = [fi for fi in fileinfos if fi.mode == PublishingMode.QUEUE]
            report.queued += enqueue_publish(queued, priority=get_config()["TEMPLATE_SAVE_PRIORITY"])
    _publish_static_files(template, static, report, started_by)
    return report


def _queued_later(targets: list[Template], *, ensure: bool) -> dict[int, int]:
    """When the templates a save touches have more than TEMPLATE_SAVE_INLINE_FILES files, those whose files are all
    Via Publish Queue get a ``republish-template`` job, queued in the caller's transaction, instead of a job per
    file (finding every file of a template reads the whole site). Returns {template id: its FileInfo rows now}."""
    limit = get_config()["TEMPLATE_SAVE_INLINE_FILES"]
    if limit is None:
        return {}
    counts = {target.pk: FileInfo.objects.filter(template=target).count() for target in targets}
    if sum(counts.values()) <= limit:
        return {}
    later = {
        target.pk: counts[target.pk] for target in targets
        if not target.mappings.exclude(mode_q([PublishingMode.QUEUE])).exists()
    }
    priority = get_config()["RUN_PRIORITY"]
    enqueue(
        NewJob(kind="republish-template", unique_key=f"{pk}:{'ensure' if ensure else 'rows'}",
               args={"template": pk, "ensure": ensure}, priority=priority)
        for pk in later
    )
    return later


def queue_template_files(*, template_id: int, ensure: bool = True) -> int:
    """Every file of a template queued (``republish-template``), a chunk of jobs per transaction (another writer
    waits for one chunk at most). With ``ensure`` (its mappings or mode changed) its FileInfo rows are made or
    re-pathed first, which reads the whole site; else (a source edit changes no file's context or path) each chunk
    is made by the database from its rows, in milliseconds, so jobs queued above it meanwhile wait little for the
    worker running it. Run again after a crash, it queues them again (a queued job coalesces). Returns how many
    files were queued."""
    if ensure:
        target = Template.objects.filter(pk=template_id).select_related("site").first()
        return _queue_in_chunks([target] if target is not None else [])
    if not Template.objects.filter(pk=template_id).exists():
        return 0
    priority, after, queued = get_config()["TEMPLATE_SAVE_PRIORITY"], 0, 0
    while True:
        with transaction.atomic():
            chunk = enqueue_template_files(template_id, priority=priority, after=after, limit=QUEUE_CHUNK)
        if chunk is None:
            return queued
        after, count = chunk
        queued += count


# Jobs queued per transaction by queue_template_files (on SQLite, 500 take a few milliseconds of write lock).
QUEUE_CHUNK = 500


def _publish_static_files(template: Template, static: list[FileInfo], report: ChangeReport, started_by) -> None:
    """A Statically published template's files must appear without waiting for the queue's low-priority work, but a
    request must not render thousands of them: as many as ``STATIC_SAVE_MAX_FILES`` (an index template's page) are
    written when the save commits, as MT does; more start a publish run (high priority; its page shows progress and
    publishes in the browser when no worker runs)."""
    if not static:
        return
    if len(static) <= get_config()["STATIC_SAVE_MAX_FILES"]:
        transaction.on_commit(lambda: publish_many(static, report))
        return
    from .runs import start

    run = PublishRun(site=template.site, scope=PublishRun.Scope.TEMPLATE, template=template, started_by=started_by,
                     reason=f"Template “{template}” saved")
    report.run = start(run, static)


def _includes(source: str, names: set[str]) -> bool:
    alternatives = "|".join(re.escape(name) for name in names)
    tag = r"""\{%\s*(?:include|include_cached|extends)\s+["'](?:""" + alternatives + r""")["']"""
    return re.search(tag, source) is not None


def templates_affected_by(template: Template) -> list[Template]:
    """The template itself, or for a module every page template that includes it, directly or through
    other modules."""
    if template.kind != Template.Kind.MODULE:
        return [template]
    everything = list(template.site.templates.exclude(pk=template.pk))
    reached, names = set(), {template.name}
    while True:
        found = {t for t in everything if t.pk not in reached and _includes(t.source, names)}
        if not found:
            break
        reached |= {t.pk for t in found}
        names |= {t.name for t in found if t.kind == Template.Kind.MODULE}
    return [t for t in everything if t.pk in reached and t.kind != Template.Kind.MODULE]


def _unpublish_unwritten_files(template: Template) -> None:
    """Files switched (by their template or their mapping) to Dynamically or Do Not Publish: the written ones
    must go, or the web server would keep serving them."""
    going = template.fileinfos.exclude(published_path="").filter(mode_q(UNWRITTEN_MODES, via="mapping__"))
    for fileinfo in going.select_related("site", "template", "mapping"):
        unpublish_file(fileinfo=fileinfo)


def publish_templates(
    *, templates: Iterable[Template], queue: bool = False, force: bool = False, progress=None, actor: str | None = None
) -> ChangeReport:
    """Publish every file of ``templates`` now (or queue them): manage.py publish (the admin starts publish runs).
    What it published goes to the sites' activity logs as one run (by ``actor``: the current one if None)."""
    report = ChangeReport()
    started = timezone.now()
    for template in templates:
        if template.kind == Template.Kind.MODULE:
            continue
        fileinfos = _written_files(template, report)
        if queue:
            report.queued += enqueue_publish(fileinfos, force=force)
            continue
        if progress is not None:
            progress.total = (progress.total or 0) + len(fileinfos)
            progress.refresh()
        for fileinfo in fileinfos:
            publish_many([fileinfo], report, force=force)
            if progress is not None:
                progress.update(1)
    if not queue:
        activity.record(
            report.published, report.failures, kind=PublishActivity.Kind.PUBLISH, actor=actor, started=started
        )
    return report


def _written_files(template: Template, report: ChangeReport) -> list[FileInfo]:
    """A template's files that are written (by each file's own mode); the Dynamic ones are counted as skipped."""
    fileinfos = []
    for fileinfo in template_fileinfos(template):
        if fileinfo.mode == PublishingMode.DYNAMIC:
            report.skipped["dynamic"] = report.skipped.get("dynamic", 0) + 1
        elif fileinfo.mode != PublishingMode.DISABLED:
            fileinfos.append(fileinfo)
    return fileinfos


def site_templates(site: AbstractSite) -> list[Template]:
    return list(site.templates.exclude(kind=Template.Kind.MODULE).select_related("site"))
