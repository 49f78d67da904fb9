from django.contrib import admin
from django.contrib.staticfiles import finders
from django.http import FileResponse, HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.cache import cache_control

from dispatch.views import metrics


@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask every host for /favicon.ico: the project's icon (static/favicon.ico), for the published
    sites and the admin alike."""
    return FileResponse(open(finders.find("favicon.ico"), "rb"), content_type="image/x-icon")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("comments/", include("blog.urls")),
    path("dispatch/", include("dispatch.urls")),
    path("metrics", metrics, name="metrics"),  # Prometheus' usual path (also /dispatch/metrics)
    path("favicon.ico", favicon, name="favicon"),
    # Last: published files (development) and Dynamically published templates, by site URL.
    path("", include("publishqueue.urls")),
]
