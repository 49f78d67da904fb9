from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("comments/", include("blog.urls")),
    path("dispatch/", include("dispatch.urls")),
    # Last: published files (development) and Dynamically published templates, by site URL.
    path("", include("publishqueue.urls")),
]
