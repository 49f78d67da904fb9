"""Health and status endpoints (php-fpm's ping and status pages)."""
import ipaddress

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.views.decorators.cache import never_cache

from .conf import get_config
from .status import pool


@never_cache
def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse("pong\n", content_type="text/plain")


def _allowed(request: HttpRequest) -> bool:
    if request.user.is_authenticated and request.user.is_staff:
        return True
    allow = get_config()["STATUS_ALLOW"]
    try:
        ip = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in allow)


@never_cache
def status(request: HttpRequest) -> HttpResponse:
    """JSON: every manager with its children (pid, state, requests, current request and age, RSS, CPU)
    and every queue worker. Staff, or addresses in DISPATCH["STATUS_ALLOW"] (default: loopback)."""
    if not _allowed(request):
        return HttpResponseForbidden("Status is for staff or allowed addresses.\n")
    return JsonResponse(pool())


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format, read from the database at scrape time (whichever child answers). Staff, or
    addresses in DISPATCH["STATUS_ALLOW"], as for /dispatch/status."""
    if not _allowed(request):
        return HttpResponseForbidden("Metrics are for staff or allowed addresses.\n")
    from prometheus_client import CONTENT_TYPE_LATEST

    from .metrics import exposition

    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
