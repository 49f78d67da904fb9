"""The blog's periodic tasks, run by publishqueue's workers (whichever worker takes each run)."""
from __future__ import annotations

import datetime as dt

from publishqueue.periodic import Periodic
from publishqueue.periodic import register as register_task

from .conf import get_config
from .models import Comment


def publish_scheduled_entries(now: dt.datetime) -> int:
    from publishqueue.activity import acting_as

    from .services import publish_due_entries

    with acting_as("scheduled entries"):  # what they publish, in the blogs' activity logs
        return publish_due_entries(now=now)


def unpublish_due_entries(now: dt.datetime) -> int:
    from .services import unpublish_due_entries

    return unpublish_due_entries(now=now)


def expire_junk_comments(now: dt.datetime) -> int:
    cutoff = now - dt.timedelta(days=get_config()["JUNK_EXPIRY_DAYS"])
    deleted, _ = Comment.objects.filter(status=Comment.Status.JUNK, created__lt=cutoff).delete()
    return deleted


def register() -> None:
    register_task(Periodic("publish-scheduled-entries", dt.timedelta(minutes=1), publish_scheduled_entries))
    register_task(Periodic("unpublish-due-entries", dt.timedelta(seconds=60), unpublish_due_entries))
    register_task(Periodic("expire-junk-comments", dt.timedelta(hours=1), expire_junk_comments))
