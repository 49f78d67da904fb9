"""Admin views behind the dashboard: its JSON, and Recycle Workers."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from .control import request_recycle
from .dashboard import dashboard_data


def data(request: HttpRequest) -> JsonResponse:
    """The dashboard's numbers, for auto-refresh."""
    return JsonResponse(dashboard_data(request.user), encoder=DjangoJSONEncoder)


def recycle(request: HttpRequest) -> HttpResponse:
    """GET: a confirmation page (without JavaScript); POST: record the request, audit it, signal."""
    if not request.user.has_perm("dispatch.recycle_workers"):
        raise PermissionDenied
    if request.method != "POST":
        return render(request, "dispatch/recycle_confirm.html", {"title": "Recycle workers"})
    recycle_request = request_recycle(user=request.user, note=f"dashboard, {request.user.get_username()}")
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=[recycle_request], action_flag=CHANGE,
        change_message="Recycle workers requested", single_object=True,
    )
    messages.success(request, f"Recycle request #{recycle_request.pk} sent to every FastCGI manager and queue worker.")
    return HttpResponseRedirect(reverse("admin:index") + "#recycle")
