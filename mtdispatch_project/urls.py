from django.contrib import admin
from django.urls import include, path

from dispatch.views import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("comments/", include("blog.urls")),
    path("dispatch/", include("dispatch.urls")),
    path("metrics", metrics, name="metrics"),  # Prometheus' usual path (also /dispatch/metrics)
    # Last: published files (development) and Dynamically published templates, by site URL.
    path("", include("publishqueue.urls")),
]
