"""Job kinds and their handlers. A handler raises to fail the attempt (it is logged and retried)."""
from __future__ import annotations

from collections.abc import Callable

from django.utils.module_loading import import_string

from .conf import get_config
from .engine import Claimed
from .models import FileInfo
from .publisher import publish_file

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
    """The handler named in ``MTDISPATCH["JOB_HANDLERS"]``, else the built-in one."""
    path = get_config()["JOB_HANDLERS"].get(kind)
    if path:
        return import_string(path)
    try:
        return HANDLERS[kind]
    except KeyError:
        raise UnknownJobKind(f"No handler for job kind {kind!r} in this worker.") from None


def run_job(job: Claimed) -> object:
    return handler_for(job.kind)(job)


@handles("publish")
def publish(job: Claimed) -> object:
    """Publish one file. A FileInfo that is gone (its template or blog was deleted) is nothing to do."""
    fileinfo = FileInfo.objects.select_related("blog", "template").filter(pk=job.fileinfo_id).first()
    if fileinfo is None:
        return None
    return publish_file(fileinfo=fileinfo)


@handles("noop")
def noop(job: Claimed) -> None:
    """Does nothing: for measuring the queue itself (bench/queue.py) and checking a deployment."""
