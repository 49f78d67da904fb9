"""Job kinds and their handlers. A handler raises to fail the attempt (it is logged and retried).

A handler is called as ``handler(job, prepared)``: ``prepared`` is what the kind's preparer (if any)
loaded for the whole claimed batch at once, or None."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.utils.module_loading import import_string

from .conf import get_config
from .jobrows import Claimed
from .models import FileInfo, Template
from .publisher import context_of, publish_file, record_published_later
from .registry import registry
from .sites import get_site_model

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
    for pk, fileinfo in list(fileinfos.items()):
        if fileinfo.site_id in sites and fileinfo.template_id in templates:
            fileinfo.site, fileinfo.template = sites[fileinfo.site_id], templates[fileinfo.template_id]
        else:
            del fileinfos[pk]  # deleted since (with its site or template): nothing to publish
    groups: dict[tuple[int, str], list[FileInfo]] = {}
    for fileinfo in fileinfos.values():
        groups.setdefault((fileinfo.site_id, fileinfo.archive_type), []).append(fileinfo)
    batches = {}
    for (site_id, archive_type), group in groups.items():
        preload = registry.archive_types[archive_type].preload if archive_type in registry.archive_types else None
        if preload is not None:
            batches[(site_id, archive_type)] = preload(sites[site_id], [context_of(fi) for fi in group])
    prepared = {}
    for job in jobs:
        fileinfo = fileinfos.get(job.fileinfo_id)
        batch = batches.get((fileinfo.site_id, fileinfo.archive_type)) if fileinfo else None
        prepared[job.id] = PreparedPublish(fileinfo, batch)
    return prepared


PREPARERS: dict[str, Callable[[Sequence[Claimed]], dict[int, object]]] = {"publish": prepare_publish}
# Called with the outcomes of a batch's successful jobs of that kind, before they are completed: starts what
# they leave to do together and returns a call that waits for it to end and returns the outcomes it could not
# finish, with the error (their jobs fail and are retried).
FINISHERS: dict[str, Callable[[list], Callable[[], Mapping[object, Exception]]]] = {
    "publish": record_published_later
}


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


def finish_later(outcomes: Sequence[tuple[Claimed, object]]) -> Callable[[], dict[int, Exception]]:
    """Start, per kind, what a batch's finished jobs leave to do together (make their files durable, in the
    background, and record them in one write). The returned call waits for it to end and returns the jobs, by
    id, whose outcome could not be finished, with the error."""
    pairs = ((job.kind, outcome) for job, outcome in outcomes if outcome is not None)
    waits = [FINISHERS[kind](results) for kind, results in _by_kind(pairs).items() if kind in FINISHERS]

    def wait() -> dict[int, Exception]:
        failed: dict[object, Exception] = {}
        for finished in waits:
            failed.update(finished())
        return {job.id: failed[outcome] for job, outcome in outcomes if outcome is not None and outcome in failed}

    return wait


@handles("publish")
def publish(job: Claimed, prepared: PreparedPublish | None = None) -> object:
    """Publish one file. A FileInfo that is gone (its template or site was deleted) is nothing to do."""
    if prepared is None:  # run alone (or its batch could not be prepared): a batch of one
        prepared = prepare_publish([job])[job.id]
    if prepared.fileinfo is None:
        return None
    return publish_file(fileinfo=prepared.fileinfo, batch=prepared.batch, defer_record=True)


@handles("noop")
def noop(job: Claimed, prepared: object = None) -> None:
    """Does nothing: for measuring the queue itself (bench/queue.py) and checking a deployment."""
