"""Admin views behind the dashboard: its JSON, Recycle Workers, and the queue manager's job actions."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from publishqueue import jobrows
from publishqueue.models import Job

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


JOB_ACTIONS = {
    "retry": ("publishqueue.change_job", lambda jobs: jobrows.retry_now(jobs.values_list("id", flat=True))),
    "raise": ("publishqueue.change_job", lambda jobs: jobs.update(priority=F("priority") + 5)),
    "delete": ("publishqueue.delete_job", lambda jobs: jobs.delete()[0]),
}


@require_POST
def job_action(request: HttpRequest, job_id: int, action: str) -> HttpResponse:
    """PQManager's actions on one job: Retry now, Raise priority (+5), Delete."""
    if action not in JOB_ACTIONS:
        return HttpResponse(status=404)
    permission, apply = JOB_ACTIONS[action]
    if not request.user.has_perm(permission):
        raise PermissionDenied
    job = get_object_or_404(Job, pk=job_id)
    apply(Job.objects.filter(pk=job.pk))
    messages.success(request, f"{action.capitalize()}: {job}.")
    return HttpResponseRedirect(request.POST.get("next") or reverse("admin:index"))
