from django.urls import path, re_path

from . import views

app_name = "publishqueue"

urlpatterns = [
    path("", views.serve_site, name="site_root"),
    re_path(r"^(?P<path>.+)$", views.serve_site, name="site"),
]
