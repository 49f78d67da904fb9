from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "dispatch"
    verbose_name = "Dispatch (FastCGI workers)"
    default_auto_field = "django.db.models.BigAutoField"
