"""The dashboard's queue controls (admin views, wired in ``JobAdmin.get_urls``): pause and resume (the
``publishqueue.pause_queue`` permission), cancel every queued job of a site or a template (``delete_job``;
a confirmation page without JavaScript). Each leaves an entry in the admin log."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, render

from dispatch.admin_views import done

from . import controls
from .models import QueuePause, Template
from .sites import get_site_model


def _log(request: HttpRequest, obj, flag: int, message: str) -> None:
    LogEntry.objects.log_actions(user_id=request.user.pk, queryset=[obj], action_flag=flag, change_message=message,
                                 single_object=True)


def _target(value: str) -> dict:
    """The pause form's target: ``all``, ``site:ID`` or ``kind:NAME``."""
    scope, _, rest = value.partition(":")
    if scope == "all":
        return {"scope": QueuePause.Scope.ALL}
    if scope == "site" and rest.isdigit():
        return {"scope": QueuePause.Scope.SITE, "site": get_object_or_404(get_site_model(), pk=int(rest))}
    if scope == "kind" and rest:
        return {"scope": QueuePause.Scope.KIND, "kind": rest[:50]}
    raise ValueError(f"Nothing to pause: {value!r}.")


def pause(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("publishqueue.pause_queue"):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        target = _target(request.POST.get("target", "all"))
    except ValueError as exc:
        return done(request, str(exc), "#queue", level=messages.ERROR)
    found, new = controls.pause(user=request.user, note=f"dashboard, {request.user.get_username()}", **target)
    what = controls.describe(found)
    if not new:
        return done(request, f"Already paused: {what}.", "#queue", level=messages.INFO)
    _log(request, found, ADDITION, f"Paused the publish queue: {what}")
    return done(request, f"Paused: {what}. Workers take none of these jobs until you resume.", "#queue")


def resume(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("publishqueue.pause_queue"):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    found = QueuePause.objects.select_related("site").filter(pk=pk).first()
    if found is None:
        return done(request, "Already resumed.", "#queue", level=messages.INFO)
    what = controls.describe(found)
    _log(request, found, DELETION, f"Resumed the publish queue: {what}")
    found.delete()
    return done(request, f"Resumed: {what}.", "#queue")


def _cancel_target(data) -> tuple[str, object]:
    if data.get("template", "").isdigit():
        return "template", get_object_or_404(Template.objects.select_related("site"), pk=int(data["template"]))
    if data.get("site", "").isdigit():
        return "site", get_object_or_404(get_site_model(), pk=int(data["site"]))
    raise ValueError("Say which site or template.")


def cancel(request: HttpRequest) -> HttpResponse:
    """GET: what would be cancelled, and a button (the confirmation without JavaScript); POST: cancel."""
    if not request.user.has_perm("publishqueue.delete_job"):
        raise PermissionDenied
    try:
        what, obj = _cancel_target(request.POST if request.method == "POST" else request.GET)
    except ValueError as exc:
        return done(request, str(exc), "#queue", level=messages.ERROR)
    label = f"template “{obj}” ({obj.site})" if what == "template" else f"“{obj}”"
    if request.method != "POST":
        count = controls.queued(**{what: obj}).count()
        return render(request, "publishqueue/cancel_confirm.html", {
            "title": "Cancel queued jobs", "what": what, "obj": obj, "label": label, "count": count,
        })
    cancelled = controls.cancel(**{what: obj})
    _log(request, obj, CHANGE, f"Cancelled {cancelled} queued publish job(s)")
    return done(request, f"Cancelled {cancelled} queued job(s) of {label}; their files stay as they are until the "
                "next change or a republish.", "#queue")
