"""Signal handlers: one line each, calling a service."""
from publishqueue.versioning import bump_content_version

from .models import blog_id_of
from .services import (
    author_deleted,
    blogs_of_author,
    comment_shown,
    comment_shown_in_database,
    display_name_in_database,
    republish_if_renamed,
    site_wide_changed,
)


def content_changed(sender, instance, **kwargs) -> None:
    bump_content_version(blog_id_of(instance), site_wide=site_wide_changed(instance))


def author_saving(sender, instance, update_fields=None, **kwargs) -> None:
    instance._mt_display_name = display_name_in_database(instance, update_fields)


def author_saved(sender, instance, created=False, **kwargs) -> None:
    republish_if_renamed(instance, created=created)


def author_deleting(sender, instance, **kwargs) -> None:
    instance._mt_blogs = blogs_of_author(instance)


def author_gone(sender, instance, **kwargs) -> None:
    if getattr(instance, "_mt_blogs", None):
        author_deleted(blog_ids=instance._mt_blogs)


def comment_saving(sender, instance, **kwargs) -> None:
    instance._mt_was_shown = comment_shown_in_database(instance)


def comment_changed(sender, instance, **kwargs) -> None:
    if comment_shown(instance) or getattr(instance, "_mt_was_shown", False):
        bump_content_version(blog_id_of(instance), site_wide=False)  # the site-wide variables show no comment
