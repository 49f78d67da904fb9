"""Signal handlers: one line each, calling a service."""
from .versioning import bump_templates_version


def templates_changed(sender, instance, **kwargs) -> None:
    bump_templates_version(instance)
