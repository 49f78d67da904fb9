from django.contrib import admin
from django.urls import path

from . import admin_views, views

app_name = "dispatch"

urlpatterns = [
    path("ping", views.ping, name="ping"),
    path("status", views.status, name="status"),
    # The admin dashboard's data and its Recycle Workers button (staff, through the admin's login).
    path("dashboard.json", admin.site.admin_view(admin_views.data), name="dashboard_data"),
    path("recycle/", admin.site.admin_view(admin_views.recycle), name="recycle"),
]
