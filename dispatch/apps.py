from django.apps import AppConfig, apps


class DispatchConfig(AppConfig):
    name = "dispatch"
    verbose_name = "Dispatch (FastCGI workers)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if apps.is_installed("django.contrib.admin"):
            from django.contrib import admin

            admin.site.index_template = "dispatch/admin_index.html"  # the dashboard on the admin's index page
