"""Test-only views served by runfcgi under test."""
import importlib
import importlib.util
import os
import signal
import time

from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from mtdispatch_project.urls import urlpatterns as project_urls

_ballast = []


def slow(request):
    time.sleep(float(request.GET.get("s", "1")))
    return HttpResponse(f"slept {os.getpid()}")


def hold(request):
    """Busy until the file named by ?f= exists (at most ?s= seconds): a request that lasts as long as the test needs,
    however slowly the machine starts the pool's other children. It says it started in ?f=.started.PID."""
    deadline = time.monotonic() + float(request.GET.get("s", "120"))
    with open(f"{request.GET['f']}.started.{os.getpid()}", "w"):
        pass
    while not os.path.exists(request.GET["f"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return HttpResponse(f"held {os.getpid()}")


def until_term(request):
    """Busy until this process is sent SIGTERM (at most ?s= seconds), which it holds off meanwhile and takes when
    it answers: the child is leaving once this is answered, whatever the timing. It says it started in
    ?f=.started.PID."""
    deadline = time.monotonic() + float(request.GET.get("s", "60"))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    with open(f"{request.GET['f']}.started.{os.getpid()}", "w"):
        pass
    while signal.SIGTERM not in signal.sigpending() and time.monotonic() < deadline:
        time.sleep(0.02)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # its handler runs now
    return HttpResponse(str(os.getpid()))


def boom(request):
    raise RuntimeError("boom from the application")


def latin1(request):
    response = HttpResponse("ok")
    response["X-Name"] = "Zoë Ångström"  # latin-1, not ASCII (PEP 3333)
    return response


def pid(request):
    return HttpResponse(str(os.getpid()))


def code_version(request):
    module = importlib.import_module("codeversion")  # a file the test rewrites between recycles
    return HttpResponse(str(module.VERSION))


def grow(request):
    _ballast.append(bytearray(int(request.GET.get("mb", "50")) * 1024 * 1024))
    return HttpResponse(f"grew {os.getpid()}")


def meta(request):
    """The request's META value named by ?k= (what the gateway decoded from PARAMS)."""
    return HttpResponse(request.META.get(request.GET["k"], "<missing>"), content_type="text/plain; charset=latin-1")


def big(request):
    return HttpResponse(b"b" * int(float(request.GET.get("mb", "2")) * 1024 * 1024))


def connection_requests(request):
    """How many requests the FastCGI connection of this one carried before it (kept alive: more than 0)."""
    return HttpResponse(str(request.META.get("mtdispatch.connection_requests", "<missing>")))


@csrf_exempt
def body(request):
    return HttpResponse(str(len(request.body)))


urlpatterns = [
    path("t/slow", slow), path("t/boom", boom), path("t/latin1", latin1), path("t/pid", pid),
    path("t/version", code_version), path("t/grow", grow), path("t/meta", meta), path("t/body", body),
    path("t/big", big), path("t/hold", hold), path("t/until-term", until_term), path("t/conn", connection_requests),
    path("", include(project_urls)),
]

# A test writes deploy_urls.py into its directory (on the path) to deploy more URLs, e.g. a broken module.
if importlib.util.find_spec("deploy_urls"):
    urlpatterns.insert(0, path("d/", include("deploy_urls")))
