"""Content changes and what they publish. Views, admin and commands call these; nothing else does."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import nh3
from django.db import transaction
from django.utils import timezone
from django.utils.html import linebreaks

from publishqueue.services import ChangeReport, publish_contexts

from .conf import get_config
from .dependencies import EntryState, comment_change_contexts, entry_change_contexts, only_comment_templates
from .models import Blog, Comment, Entry


def entry_changed(*, entry: Entry | None, before: EntryState | None, blog: Blog) -> ChangeReport:
    """Publish what an entry save or delete touches. ``before`` is the state captured before the change
    (None for a new entry); ``entry`` is None after a delete. An entry going live pings update services."""
    after = EntryState.of(entry) if entry is not None else None
    contexts = entry_change_contexts(before, after)
    if after is not None and after.live and not (before and before.live) and get_config()["PING_URLS"]:
        background("blog.tasks.ping_update_services", blog.pk)
    return publish_contexts(site=blog, contexts=contexts)


def background(func: str, *args) -> None:
    """Queue a django-q2 task once the current transaction commits (runworker runs it)."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(func, *args))


def save_entry(*, entry: Entry, categories=None) -> ChangeReport:
    """Create or update an entry (and its categories) and publish what it touches."""
    before = EntryState.load(entry.pk)
    with transaction.atomic():
        entry.save()
        if categories is not None:
            entry.categories.set(categories)
        return entry_changed(entry=entry, before=before, blog=entry.blog)


def delete_entry(*, entry: Entry) -> ChangeReport:
    before = EntryState.of(entry)
    blog = entry.blog
    with transaction.atomic():
        entry.delete()
        return entry_changed(entry=None, before=before, blog=blog)


def publish_due_entries(*, now: dt.datetime | None = None) -> int:
    """Scheduled entries whose time has come go live, each as a save (a periodic task)."""
    now = now or timezone.now()
    count = 0
    due = Entry.objects.filter(status=Entry.Status.SCHEDULED, published_on__lte=now).select_related("blog")
    for entry in due:
        with transaction.atomic():
            before = EntryState.of(entry)
            # Only the worker that flips the status publishes (several may run this task at once).
            if not Entry.objects.filter(pk=entry.pk, status=Entry.Status.SCHEDULED).update(
                status=Entry.Status.PUBLISHED
            ):
                continue
            entry.status = Entry.Status.PUBLISHED
            entry_changed(entry=entry, before=before, blog=entry.blog)
            count += 1
    return count


def comment_changed(*, comment: Comment, was_approved: bool) -> ChangeReport:
    """An approved comment appeared, changed or went away: republish the entry page and the indexes
    that show comments."""
    if not was_approved and comment.status != Comment.Status.APPROVED:
        return ChangeReport()
    entry = comment.entry
    return publish_contexts(
        site=entry.blog, contexts=comment_change_contexts(entry), mapping_filter=only_comment_templates
    )


def set_comment_status(*, comments, status: str) -> int:
    """Moderation: approve, hold or junk comments, republishing where approval changed."""
    changed = 0
    for comment in comments:
        if comment.status == status:
            continue
        was_approved = comment.status == Comment.Status.APPROVED
        with transaction.atomic():
            comment.status = status
            comment.save(update_fields=["status"])
            comment_changed(comment=comment, was_approved=was_approved)
        changed += 1
    return changed


class CommentRejected(Exception):
    """A comment was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class CommentInput:
    author: str
    email: str
    url: str
    body: str
    ip: str | None
    honeypot: str = ""


def sanitize_comment(body: str) -> str:
    """Comment HTML: a short list of tags, links marked nofollow/ugc, paragraphs from blank lines."""
    config = get_config()
    options = {
        "tags": set(config["COMMENT_ALLOWED_TAGS"]),
        "attributes": {"a": {"href", "title"}},
        "url_schemes": {"http", "https", "mailto"},
        "link_rel": "nofollow ugc",
    }
    cleaned = nh3.clean(body.strip(), **options)
    return nh3.clean(linebreaks(cleaned, autoescape=False), **options)


def post_comment(*, entry: Entry, data: CommentInput) -> Comment:
    """Accept a comment from the public form, under the blog's policy and throttle."""
    blog = entry.blog
    if blog.comment_policy == Blog.CommentPolicy.CLOSED or not entry.is_live:
        raise CommentRejected("Comments are closed for this entry.", status=403)
    body = sanitize_comment(data.body)
    if not nh3.clean(body, tags=set()).strip():
        raise CommentRejected("The comment is empty.")
    with transaction.atomic():
        # Serialise comments per blog so two requests from one IP cannot both pass the throttle.
        Blog.objects.select_for_update().filter(pk=blog.pk).first()
        _check_throttle(blog, data.ip)
        status = _initial_status(blog, data)
        comment = Comment.objects.create(
            entry=entry, author=data.author.strip(), email=data.email, url=data.url, body=body, ip=data.ip,
            status=status,
        )
        comment_changed(comment=comment, was_approved=False)
        if status != Comment.Status.JUNK and get_config()["NOTIFY_COMMENTS"]:
            background("blog.tasks.notify_comment", comment.pk)
    return comment


def _initial_status(blog: Blog, data: CommentInput) -> str:
    if data.honeypot:
        return Comment.Status.JUNK  # kept (and expired later), so a false positive loses nothing
    if blog.comment_policy == Blog.CommentPolicy.AUTO_APPROVE:
        return Comment.Status.APPROVED
    return Comment.Status.PENDING


def _check_throttle(blog: Blog, ip: str | None) -> None:
    if not ip or not blog.comment_throttle_seconds:
        return
    since = timezone.now() - dt.timedelta(seconds=blog.comment_throttle_seconds)
    last = (
        Comment.objects.filter(entry__blog=blog, ip=ip, created__gte=since)
        .order_by("-created")
        .values_list("created", flat=True)
        .first()
    )
    if last is not None:
        wait = blog.comment_throttle_seconds - int((timezone.now() - last).total_seconds())
        raise CommentRejected(
            f"You are commenting too quickly; please wait {max(wait, 1)} seconds.", status=429,
            retry_after=max(wait, 1),
        )
