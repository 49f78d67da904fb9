"""Job kinds and their handlers. A handler raises to fail the attempt (it is logged and retried).

A handler is called as ``handler(job, prepared)``: ``prepared`` is what the kind's preparer (if any)
loaded for the whole claimed batch at once, or None."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.utils.module_loading import import_string

from .conf import get_config
from .jobrows import Claimed
from .models import ArchiveMapping, FileInfo, Template
from .publisher import context_of, publish_file
from .registry import registry
from .sites import get_site_model, site_locale
from .targets import PublishFinishing

Handler = Callable[[Claimed], object]
HANDLERS: dict[str, Handler] = {}


class UnknownJobKind(LookupError):
    pass


def handles(kind: str) -> Callable[[Handler], Handler]:
    """Register the handler of a job kind."""

    def register(func: Handler) -> Handler:
        HANDLERS[kind] = func
        return func

    return register


def handler_for(kind: str) -> Handler:
    """The handler named in ``PUBLISHQUEUE["JOB_HANDLERS"]``, else the built-in one."""
    path = get_config()["JOB_HANDLERS"].get(kind)
    if path:
        return import_string(path)
    try:
        return HANDLERS[kind]
    except KeyError:
        raise UnknownJobKind(f"No handler for job kind {kind!r} in this worker.") from None


def run_job(job: Claimed, prepared: object = None) -> object:
    return handler_for(job.kind)(job, prepared)


@dataclass(frozen=True)
class PreparedPublish:
    fileinfo: FileInfo | None
    batch: object = None


def prepare_publish(jobs: Sequence[Claimed]) -> dict[int, PreparedPublish]:
    """A batch of publish jobs: their FileInfos in one query, and what their pages show, loaded by each
    archive type's ``preload`` in a few queries per site and type (instead of several queries per page)."""
    fileinfos = FileInfo.objects.in_bulk({job.fileinfo_id for job in jobs if job.fileinfo_id})
    # One site and one Template object per batch, not a copy of each (with its source) per file.
    sites = get_site_model().objects.in_bulk({fileinfo.site_id for fileinfo in fileinfos.values()})
    templates = Template.objects.in_bulk({fileinfo.template_id for fileinfo in fileinfos.values()})
    # Each file's mode is its mapping's or its template's (and its priority depends on the mapping).
    mappings = ArchiveMapping.objects.in_bulk({fileinfo.mapping_id for fileinfo in fileinfos.values()})
    for pk, fileinfo in list(fileinfos.items()):
        if fileinfo.site_id in sites and fileinfo.template_id in templates and fileinfo.mapping_id in mappings:
            fileinfo.site, fileinfo.template = sites[fileinfo.site_id], templates[fileinfo.template_id]
            fileinfo.mapping = mappings[fileinfo.mapping_id]
            fileinfo.mapping.template = fileinfo.template
        else:
            del fileinfos[pk]  # deleted since (with its site or template): nothing to publish
    groups: dict[tuple[int, str], list[FileInfo]] = {}
    for fileinfo in fileinfos.values():
        groups.setdefault((fileinfo.site_id, fileinfo.archive_type), []).append(fileinfo)
    batches = {}
    for (site_id, archive_type), group in groups.items():
        preload = registry.archive_types[archive_type].preload if archive_type in registry.archive_types else None
        if preload is not None:
            with site_locale(sites[site_id]):
                batches[(site_id, archive_type)] = preload(sites[site_id], [context_of(fi) for fi in group])
    prepared = {}
    for job in jobs:
        fileinfo = fileinfos.get(job.fileinfo_id)
        batch = batches.get((fileinfo.site_id, fileinfo.archive_type)) if fileinfo else None
        prepared[job.id] = PreparedPublish(fileinfo, batch)
    return prepared


PREPARERS: dict[str, Callable[[Sequence[Claimed]], dict[int, object]]] = {
    "publish": prepare_publish, "dry-run": prepare_publish,
}


class Finisher(Protocol):
    """What a batch's successful jobs of one kind leave to do together, started when the finisher is made
    (from their outcomes): ``sync`` waits for the part done outside any transaction; ``place(keep)`` runs in the
    worker's fenced transaction and does the part that must happen only for outcomes ``keep`` accepts (jobs
    still held), returning the outcomes it could not finish, with the error (their jobs fail and are retried);
    ``cleanup`` runs after the commit; ``discard`` gives the whole batch up instead. ``settled`` (within ``keep``)
    accepts the outcomes whose jobs were not queued again since they were claimed (what a job undoes, such as
    removing a page whose object was gone, waits for its next run when its object may be back)."""

    def sync(self) -> None: ...
    def place(
        self, keep: Callable[[object], bool], *, settled: Callable[[object], bool] | None = None
    ) -> Mapping[object, Exception]: ...
    def cleanup(self) -> None: ...
    def discard(self) -> None: ...


FINISHERS: dict[str, Callable[[list], Finisher]] = {"publish": PublishFinishing}


def _by_kind(pairs: Iterable[tuple[str, object]]) -> dict[str, list]:
    groups: dict[str, list] = {}
    for kind, item in pairs:
        groups.setdefault(kind, []).append(item)
    return groups


def prepare(jobs: Sequence[Claimed]) -> dict[int, object]:
    """What every job of a batch needs, loaded per kind in bulk."""
    prepared: dict[int, object] = {}
    for kind, group in _by_kind((job.kind, job) for job in jobs).items():
        if kind in PREPARERS:
            prepared.update(PREPARERS[kind](group))
    return prepared


class BatchFinishing:
    """A batch's finishers, one per kind (its files syncing in the background, from now), driven by jobs:
    ``place`` puts in place only what belongs to the job ids given (those the worker still holds) and returns
    the jobs, by id, whose outcome could not be finished, with the error."""

    def __init__(self, outcomes: Sequence[tuple[Claimed, object]]) -> None:
        self._outcomes = [(job, outcome) for job, outcome in outcomes if outcome is not None]
        pairs = ((job.kind, outcome) for job, outcome in self._outcomes)
        self._finishers = [FINISHERS[kind](items) for kind, items in _by_kind(pairs).items() if kind in FINISHERS]

    def sync(self) -> None:
        for finisher in self._finishers:
            finisher.sync()

    def place(self, job_ids: set[int], settled_ids: set[int] | None = None) -> dict[int, Exception]:
        """``settled_ids``: the jobs among ``job_ids`` not queued again since claimed (default: all of them)."""
        settled_ids = job_ids if settled_ids is None else settled_ids
        keep = {id(outcome) for job, outcome in self._outcomes if job.id in job_ids}
        settled = {id(outcome) for job, outcome in self._outcomes if job.id in settled_ids}
        failed: dict[int, Exception] = {}
        for finisher in self._finishers:
            outcomes = finisher.place(lambda o: id(o) in keep, settled=lambda o: id(o) in settled)
            failed.update((id(outcome), error) for outcome, error in outcomes.items())
        return {job.id: failed[id(outcome)] for job, outcome in self._outcomes if id(outcome) in failed}

    def cleanup(self) -> None:
        for finisher in self._finishers:
            finisher.cleanup()

    def discard(self) -> None:
        for finisher in self._finishers:
            finisher.discard()


@handles("publish")
def publish(job: Claimed, prepared: PreparedPublish | None = None) -> object:
    """Publish one file. A FileInfo that is gone (its template or site was deleted) is nothing to do."""
    if prepared is None:  # run alone (or its batch could not be prepared): a batch of one
        prepared = prepare_publish([job])[job.id]
    if prepared.fileinfo is None:
        return None
    force = bool((job.args or {}).get("force"))  # manage.py publish --queue --force: rewrite even if unchanged
    return publish_file(fileinfo=prepared.fileinfo, batch=prepared.batch, defer_record=True, force=force)


@handles("dry-run")
def dry_run(job: Claimed, prepared: PreparedPublish | None = None) -> None:
    """One file of a dry run: would the run's template source change it? (Counted on the run; nothing written.)"""
    from .models import PublishRun
    from .preview import check_file

    run = PublishRun.objects.select_related("template").filter(pk=job.args.get("run")).first()
    if prepared is None:
        prepared = prepare_publish([job])[job.id]
    if run is None or run.template is None or prepared.fileinfo is None:
        return None  # the run, its template or the file went away
    check_file(run, prepared.fileinfo, prepared.batch)
    return None


@handles("republish-includers")
def republish_includers(job: Claimed, prepared: object = None) -> None:
    """A cached module's output changed: queue every file of the templates that include it."""
    from .services import republish_includers

    republish_includers(site_id=job.args["site"], module=job.args["module"])


@handles("republish-template")
def republish_template(job: Claimed, prepared: object = None) -> None:
    """A template with many files was saved: queue them all, a chunk per transaction."""
    from .services import queue_template_files

    queue_template_files(template_id=job.args["template"], ensure=job.args.get("ensure", True))


@handles("noop")
def noop(job: Claimed, prepared: object = None) -> None:
    """Does nothing: for measuring the queue itself (bench/queue.py) and checking a deployment."""
