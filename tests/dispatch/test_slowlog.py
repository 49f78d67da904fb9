"""--slowlog-timeout: php-fpm's slow log, the Python stack of a request running too long."""
import pytest

pytestmark = pytest.mark.slow


def test_a_slow_request_gets_its_stack_dumped_and_a_fast_one_does_not(runfcgi):
    errlog = runfcgi.tmp / "err.log"
    runfcgi.start("--workers", "1", "--errlog", str(errlog), "--slowlog-timeout", "0.5")
    assert runfcgi.get("/t/slow?s=0.1").status == 200
    assert "Timeout (" not in errlog.read_text()  # armed per request and cancelled in time
    assert runfcgi.get("/t/slow?s=1.5").status == 200
    log = runfcgi.wait_for(lambda: "slow request" in (text := errlog.read_text()) and text, what="the slow log")
    dump = log[log.index("Timeout (0:00:00.500000)!"):]
    assert 'fcgi_urls.py", line' in dump and " in slow" in dump  # the view's frame, where it was
    assert "GET /t/slow?s=1.5 took 1." in dump and log.count("Timeout (") == 1
    assert runfcgi.get("/t/slow?s=0.1").status == 200 and log.count("Timeout (") == 1
