"""Signal handlers: one line each, calling a service."""
from publishqueue.versioning import bump_content_version


def content_changed(sender, instance, **kwargs) -> None:
    bump_content_version(instance)
