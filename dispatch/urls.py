from django.urls import path

from . import views

app_name = "dispatch"

urlpatterns = [
    path("ping", views.ping, name="ping"),
    path("status", views.status, name="status"),
]
