from django.apps import apps
from django.urls import path

from . import views

app_name = "dispatch"

urlpatterns = [
    path("ping", views.ping, name="ping"),
    path("status", views.status, name="status"),
    path("metrics", views.metrics, name="metrics"),
]

if apps.is_installed("django.contrib.admin"):
    from django.contrib import admin

    from . import admin_views

    # The admin dashboard's data and its Recycle Workers button (staff, through the admin's login).
    urlpatterns += [
        path("dashboard.json", admin.site.admin_view(admin_views.data), name="dashboard_data"),
        path("recycle/", admin.site.admin_view(admin_views.recycle), name="recycle"),
    ]
