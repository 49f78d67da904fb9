"""Signal handlers: one line each, calling a service."""
from publishqueue.versioning import bump_content_version

from .models import blog_id_of


def content_changed(sender, instance, **kwargs) -> None:
    bump_content_version(blog_id_of(instance))
