"""A new child is ready only when the URLconf and its views import and warm-up requests answer."""
import signal
import threading

import pytest

pytestmark = pytest.mark.slow


def serving_pids(runfcgi, n: int) -> set[int]:
    """Wait until ``n`` children answer at once (all ready; the first ping may come from the first one)."""
    def attempt() -> set[int]:
        bodies = []
        threads = [threading.Thread(target=lambda: bodies.append(runfcgi.get("/t/slow?s=0.3").body))
                   for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        pids = {int(body.split()[1]) for body in bodies}
        return pids if len(pids) == n else set()

    return runfcgi.wait_for(attempt, what=f"{n} children answering")


def test_a_broken_urlconf_never_reports_ready_and_the_old_children_keep_serving(runfcgi):
    """Before: children said ready after django.setup(); the URLconf was imported by the first request, so
    the recycle went through and every request got a 500 until the next one."""
    runfcgi.start("--workers", "2")
    before = serving_pids(runfcgi, 2)
    assert runfcgi.children() == before
    (runfcgi.tmp / "deploy_urls.py").write_text("from django.urls import path\n\nurlpatterns = [path('x', )\n")
    runfcgi.signal(signal.SIGHUP)
    runfcgi.wait_for(lambda: "abandoned" in runfcgi.log.read_text(), 90, "the recycle to be abandoned")
    log = runfcgi.log.read_text()
    assert "recycled (SIGHUP)" not in log  # no new child ever reported ready
    assert "not ready: URLconf tests.fcgi_urls does not load: SyntaxError" in log
    assert "deploy_urls.py, line 3)" in log
    assert "Traceback" not in log  # one line per failed child
    assert runfcgi.children() == before
    assert [runfcgi.get("/t/pid").status for _ in range(4)] == [200] * 4


def test_a_view_module_that_fails_to_import_is_caught_by_walking_the_resolver(runfcgi):
    runfcgi.start("--workers", "1")
    before = runfcgi.children()
    (runfcgi.tmp / "deploy_urls.py").write_text("from django.urls import include, path\n\n"
                                                "urlpatterns = [path('v/', include('deploy_views'))]\n")
    (runfcgi.tmp / "deploy_views.py").write_text("import no_such_module_here\n")
    runfcgi.signal(signal.SIGHUP)
    runfcgi.wait_for(lambda: "abandoned" in runfcgi.log.read_text(), 90, "the recycle to be abandoned")
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in runfcgi.log.read_text()
    assert runfcgi.get("/dispatch/ping").status == 200 and runfcgi.children() == before


def test_a_failing_warm_up_request_keeps_a_child_from_serving(runfcgi):
    runfcgi.start("--workers", "1", "--warmup", "/dispatch/ping,/t/boom", wait=False)
    runfcgi.wait_for(lambda: runfcgi.log.read_text().count("before it was ready") >= 2, 60, "children to fail")
    assert "not ready: warm-up GET /t/boom answered 500 Internal Server Error" in runfcgi.log.read_text()
    with pytest.raises((OSError, EOFError)):  # flup's Record.read turns a timeout into EOFError
        runfcgi.get("/dispatch/ping", timeout=2)  # nobody serves (the request waits in the backlog)
