from django.apps import AppConfig


class PublishQueueConfig(AppConfig):
    name = "publishqueue"
    verbose_name = "Publishing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save, pre_delete

        from dispatch.dashboard import register_panel
        from dispatch.devhttp import register_file_finder
        from dispatch.metrics import register_collector

        from . import checks, signals  # noqa: F401 - registers system checks
        from .dashboard import PANEL
        from .metrics import QueueCollector
        from .models import ArchiveMapping, Template
        from .views import published_file

        register_panel(PANEL)
        register_collector("publishqueue", QueueCollector())
        register_file_finder(published_file)

        for model in (Template, ArchiveMapping):
            uid = f"pq-templates-{model.__name__}"
            post_save.connect(signals.templates_changed, sender=model, dispatch_uid=f"{uid}-save")
            post_delete.connect(signals.templates_changed, sender=model, dispatch_uid=f"{uid}-delete")
            # A deleted template or mapping (or site) takes its files off the disk.
            pre_delete.connect(signals.files_going, sender=model, dispatch_uid=f"{uid}-files")
