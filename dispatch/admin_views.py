"""Admin views behind the dashboard: its JSON, and Recycle Workers."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from .control import request_recycle
from .dashboard import dashboard_data, render_regions


@never_cache
def data(request: HttpRequest) -> JsonResponse:
    """The dashboard's numbers and its regions' HTML, from one snapshot, for the auto-refresh."""
    snapshot = dashboard_data(request.user)
    snapshot["regions"] = render_regions(request, snapshot)
    return JsonResponse(snapshot, encoder=DjangoJSONEncoder)


def wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def done(request: HttpRequest, message: str, anchor: str, *, level: int = messages.SUCCESS) -> HttpResponse:
    """A dashboard action's answer: JSON for the page's script (shown next to the button), else a message and a
    redirect back to where the button was."""
    if wants_json(request):
        return JsonResponse({"message": message}, status=200 if level < messages.WARNING else 400)
    messages.add_message(request, level, message)
    return HttpResponseRedirect(reverse("admin:index") + anchor)


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
    return done(request, f"Recycle request #{recycle_request.pk} sent to every FastCGI manager and queue worker.",
                "#recycle")
