from django.apps import AppConfig


class PublishQueueConfig(AppConfig):
    name = "publishqueue"
    verbose_name = "Publishing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from . import checks, signals  # noqa: F401 - registers system checks
        from .models import ArchiveMapping, Template

        for model in (Template, ArchiveMapping):
            uid = f"pq-templates-{model.__name__}"
            post_save.connect(signals.templates_changed, sender=model, dispatch_uid=f"{uid}-save")
            post_delete.connect(signals.templates_changed, sender=model, dispatch_uid=f"{uid}-delete")
