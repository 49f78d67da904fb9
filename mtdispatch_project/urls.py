from django.contrib import admin
from django.urls import include, path

from dispatch import admin_views

urlpatterns = [
    path("admin/dashboard/data.json", admin.site.admin_view(admin_views.data), name="dispatch_dashboard_data"),
    path("admin/dashboard/recycle/", admin.site.admin_view(admin_views.recycle), name="dispatch_recycle"),
    path("admin/dashboard/job/<int:job_id>/<slug:action>/", admin.site.admin_view(admin_views.job_action),
         name="dispatch_job_action"),
    path("admin/", admin.site.urls),
    path("comments/", include("blog.urls")),
    path("dispatch/", include("dispatch.urls")),
    # Last: published files (development) and Dynamically published templates, by blog site URL.
    path("", include("publishqueue.urls")),
]
