"""Signal handlers: one line each, calling a service."""
from .services import remove_files_of
from .versioning import bump_templates_version


def templates_changed(sender, instance, **kwargs) -> None:
    bump_templates_version(instance)


def files_going(sender, instance, **kwargs) -> None:
    remove_files_of(instance.fileinfos.all())
