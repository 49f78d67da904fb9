"""Content changes and what they publish. Views, admin and commands call these; nothing else does."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import nh3
from django.db import transaction
from django.utils import timezone
from django.utils.html import linebreaks
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from publishqueue.services import (
    ChangeReport,
    publish_contexts,
    publish_object_pages,
    republish_site,
    target_changed,
)
from publishqueue.sites import site_locale
from publishqueue.versioning import bump_content_version

from .archives import Archive
from .conf import get_config
from .dependencies import EntryState, comment_change_contexts, entry_change_contexts, only_comment_templates
from .models import Blog, Category, Comment, Entry


def entry_changed(
    *, entry: Entry | None, before: EntryState | None, blog: Blog, category_ids: frozenset[int] | None = None
) -> ChangeReport:
    """Publish what an entry save or delete touches. ``before`` is the state captured before the change
    (None for a new entry); ``entry`` is None after a delete; ``category_ids``: its categories when the caller
    knows them (kept as they were). An entry going live pings update services."""
    after = EntryState.of(entry, category_ids) if entry is not None else None
    if before is not None and after is not None and before.blog_id != after.blog_id:
        # Moved to another blog: gone from the old one (its pages republished there, its version bumped, as the
        # entry's own signal bumps only the blog it is in now), new in this one.
        old = Blog.objects.filter(pk=before.blog_id).first()
        gone = ChangeReport()
        if old is not None:
            bump_content_version(old.pk)
            gone = entry_changed(entry=None, before=before, blog=old)
        return entry_changed(entry=entry, before=None, blog=blog).merge(gone)
    with site_locale(blog):  # its date archives are the blog's local days, months and years
        contexts = entry_change_contexts(before, after)
    if after is not None and after.live and not (before and before.live) and get_config()["PING_URLS"]:
        background("blog.tasks.ping_update_services", blog.pk)
    return publish_contexts(site=blog, contexts=contexts)


# What every page may show of a blog (its name in the header, its URL in every link, the comment form, dates
# and words in its time zone and language) and of a category (the sidebar lists them on every page): a change
# to one of these republishes the whole blog (a time zone moves entries and periods to other paths).
BLOG_SHOWN = ("name", "description", "site_url", "comment_policy", "time_zone", "language", "publish_target")
CATEGORY_SHOWN = ("label", "slug", "description", "blog_id")


def shown_state(instance: Blog | Category) -> dict:
    """What of a blog or category pages show, captured before a change."""
    fields = BLOG_SHOWN if isinstance(instance, Blog) else CATEGORY_SHOWN
    return {name: getattr(instance, name) for name in fields}


def save_blog(*, blog: Blog, before: dict | None = None) -> ChangeReport:
    """Save a blog's settings; a change pages show (name, description, URL, comment policy) republishes it."""
    with transaction.atomic():
        blog.save()
        return blog_changed(blog=blog, before=before)


def blog_changed(*, blog: Blog, before: dict | None) -> ChangeReport:
    if before is None or before == shown_state(blog):
        return ChangeReport()
    # What its pages show changed: the workers' site-wide variables, cached modules and entries (and the cached
    # Dynamic pages) are keyed by the content version.
    bump_content_version(blog.pk)
    if before.get("publish_target", blog.publish_target) != blog.publish_target:
        return target_changed(site=blog)  # every file goes to the new target
    return republish_site(site=blog)


def save_category(*, category: Category, before: dict | None = None) -> ChangeReport:
    """Create, rename or move a category: every page of its blog shows the category list (the sidebar), and
    its archive and entries may move."""
    with transaction.atomic():
        category.save()
        return category_changed(category=category, before=before)


def category_changed(*, category: Category, before: dict | None) -> ChangeReport:
    if before == shown_state(category):
        return ChangeReport()
    report = republish_site(site=category.blog)
    others = _blogs_of_entries(category) | ({before["blog_id"]} if before else set())
    return report.merge(_republish_others(others - {category.blog_id}))


def _blogs_of_entries(category: Category) -> set[int]:
    """The blogs of the entries filed under a category: its own, and another where it was moved from (its entries
    stay) or an entry moved to (its categories stay)."""
    return set(Entry.objects.filter(categories=category).values_list("blog_id", flat=True).distinct())


def _republish_others(blog_ids: set[int]) -> ChangeReport:
    """Blogs a change of another blog's category shows in: their signals bumped only the category's blog."""
    report = ChangeReport()
    for blog in Blog.objects.filter(pk__in=blog_ids):
        bump_content_version(blog.pk)
        report.merge(republish_site(site=blog))
    return report


# The archive types of a category's pages.
CATEGORY_ARCHIVES = (Archive.CATEGORY, Archive.CATEGORY_MONTHLY)


def delete_category(*, category: Category) -> ChangeReport:
    """Its archive pages go (Dynamic ones with their FileInfo rows: a category made again with its slug has the
    paths), its entries' pages and every sidebar change."""
    blog, pk = category.blog, category.pk
    with transaction.atomic():
        others = _blogs_of_entries(category) - {blog.pk}
        category.delete()
        report = republish_site(site=blog).merge(_republish_others(others))
        return report.merge(publish_object_pages(site=blog, archive_types=CATEGORY_ARCHIVES, object_id=pk))


def author_renamed(*, user_id: int) -> ChangeReport:
    """An author's display name changed: the blogs with entries by them are republished."""
    report = ChangeReport()
    for blog in Blog.objects.filter(entries__author_id=user_id).distinct():
        bump_content_version(blog.pk)  # what its pages show changed (its Dynamically published pages are cached)
        report.merge(republish_site(site=blog))
    return report


def blogs_of_author(user) -> list[int]:
    """Before a user is deleted: the blogs with entries by them (their entries lose their author)."""
    return list(Blog.objects.filter(entries__author_id=user.pk).distinct().values_list("pk", flat=True))


def author_deleted(*, blog_ids: list[int]) -> ChangeReport:
    """A user with entries was deleted (their entries kept, without an author): the blogs they wrote in are
    republished (the author's archive goes, entries and feeds no longer name them)."""
    report = ChangeReport()
    for blog in Blog.objects.filter(pk__in=blog_ids):
        bump_content_version(blog.pk)  # Django's SET_NULL is a queryset update: no entry post_save bumped it
        report.merge(republish_site(site=blog))
    return report


def shown_name(user) -> tuple[str, str]:
    """What pages show of an author (``blog.sandbox.AuthorView``)."""
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full, user.get_username()


def display_name_in_database(user, update_fields=None) -> tuple[str, str] | None:
    """Before a user is saved: the name pages show now (None for a new user, or a save of other fields, such as
    the last login)."""
    names = {"first_name", "last_name", user.USERNAME_FIELD}
    if user.pk is None or (update_fields is not None and not names & set(update_fields)):
        return None
    stored = type(user)._default_manager.filter(pk=user.pk).first()
    return shown_name(stored) if stored is not None else None


def republish_if_renamed(user, *, created: bool = False) -> ChangeReport:
    before = getattr(user, "_mt_display_name", None)
    if created or before is None or before == shown_name(user):
        return ChangeReport()
    return author_renamed(user_id=user.pk)


def delete_comment(*, comment: Comment) -> ChangeReport:
    was_approved = comment.status == Comment.Status.APPROVED
    with transaction.atomic():
        comment.delete()
        return comment_changed(comment=comment, was_approved=was_approved) if was_approved else ChangeReport()


def background(func: str, *args) -> None:
    """Queue a django-q2 task once the current transaction commits (runworker runs it)."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(func, *args))


def save_entry(*, entry: Entry, categories=None) -> ChangeReport:
    """Create or update an entry (and its categories) and publish what it touches."""
    with transaction.atomic():
        before = EntryState.load(entry.pk, lock=True)
        save_knowing(entry, before)
        if categories is not None:
            entry.categories.set(categories)
        kept = before.category_ids if before is not None and categories is None else None
        return entry_changed(entry=entry, before=before, blog=entry.blog, category_ids=kept)


def save_knowing(entry: Entry, before: EntryState | None) -> None:
    """``entry.save()``, telling its post_save (``site_wide_changed``) the state it had: an edit of its text then
    keeps the site-wide variables and cached modules (the sidebar) of every process."""
    entry._mt_before = before
    try:
        entry.save()
    finally:
        entry.__dict__.pop("_mt_before", None)


def site_wide_changed(instance: Entry | Category) -> bool:
    """After an entry or category was saved or deleted: whether what every page shows may have changed. Known
    not to only for an entry saved by ``save_knowing`` (``EntryState.shows_site_wide``)."""
    before = instance.__dict__.pop("_mt_before", None)  # only ever set on an entry
    return before is None or before.shows_site_wide(instance)


def delete_entry(*, entry: Entry) -> ChangeReport:
    before = EntryState.of(entry)
    blog = entry.blog
    with transaction.atomic():
        entry.delete()
        return entry_changed(entry=None, before=before, blog=blog)


def publish_due_entries(*, now: dt.datetime | None = None) -> int:
    """Scheduled entries whose time has come go live, each as a save (a periodic task)."""
    due = Entry.objects.filter(status=Entry.Status.SCHEDULED, published_on__lte=now or timezone.now())
    return _flip_due(due, Entry.Status.SCHEDULED, Entry.Status.PUBLISHED)


def unpublish_due_entries(*, now: dt.datetime | None = None) -> int:
    """Published entries whose unpublish date has come (MT 6's unpublished_on) are unpublished, each as a save (a
    periodic task): their pages go, their archives and indexes are republished."""
    due = Entry.objects.filter(status=Entry.Status.PUBLISHED, unpublished_on__lte=now or timezone.now())
    return _flip_due(due, Entry.Status.PUBLISHED, Entry.Status.UNPUBLISHED)


def _flip_due(due, old: str, new: str) -> int:
    """Move each due entry from status ``old`` to ``new`` as a save; returns how many this process moved."""
    count = 0
    for entry in due.select_related("blog"):
        with transaction.atomic():
            before = EntryState.of(entry)
            # Only the worker that flips the status publishes (several may run this task at once).
            if not Entry.objects.filter(pk=entry.pk, status=old).update(status=new):
                continue
            bump_content_version(entry.blog_id)  # a queryset update sends no post_save: what pages show changed
            entry.status = new
            entry_changed(entry=entry, before=before, blog=entry.blog)
            count += 1
    return count


def comment_shown(comment: Comment) -> bool:
    """Pages show approved comments only: a pending or junk one (spam) changes no page, and bumps no content
    version (which would make every worker drop its cached entries, site-wide variables and Dynamic pages)."""
    return comment.status == Comment.Status.APPROVED


def comment_shown_in_database(comment: Comment) -> bool:
    """Before a comment is saved: whether pages show it now."""
    return bool(comment.pk) and Comment.objects.filter(pk=comment.pk, status=Comment.Status.APPROVED).exists()


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
        raise CommentRejected(_("Comments are closed for this entry."), status=403)
    body = sanitize_comment(data.body)
    if not nh3.clean(body, tags=set()).strip():
        raise CommentRejected(_("The comment is empty."))
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
            ngettext(
                "You are commenting too quickly; please wait %(seconds)d second.",
                "You are commenting too quickly; please wait %(seconds)d seconds.", max(wait, 1),
            ) % {"seconds": max(wait, 1)},
            status=429, retry_after=max(wait, 1),
        )
