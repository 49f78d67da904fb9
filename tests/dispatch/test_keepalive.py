"""nginx keeping its FastCGI connections to the children open (fastcgi_keep_conn on, an upstream keepalive
pool), as deploy/nginx.conf recommends."""
import threading
import urllib.error
import urllib.request

import pytest

from dispatch import fcgi_client
from tests.fcgi import load_across_recycles

pytestmark = pytest.mark.slow


def post(nginx, path: str, data: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(nginx.url(path), data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_child_serves_many_requests_on_one_kept_alive_connection(runfcgi):
    runfcgi.start("--workers", "1")
    sock = fcgi_client.connect(runfcgi.address)
    try:
        for n in range(3):
            for request_id in (1, 2):  # ids are per request: a kept connection may reuse them
                sock.sendall(fcgi_client.request_bytes(fcgi_client.params_for("GET", "/t/conn"), request_id=request_id,
                                                       keep=True))
                response = fcgi_client.read_response(sock)
                assert (response.status, response.body) == (200, str(2 * n + request_id - 1).encode())
    finally:
        sock.close()


def test_twenty_rolling_recycles_under_load_fail_no_request_through_a_keepalive_pool(runfcgi, nginx_for, tmp_path):
    """A retiring child must never close a connection nginx may be sending on: nginx retries a GET on a
    cached connection that breaks (and logs it), but answers a POST 502. Neither may happen."""
    runfcgi.start("--workers", "2")
    nginx = nginx_for(f"unix:{runfcgi.address}", tmp_path, keepalive=True)
    reused, lock = [0], threading.Lock()

    def fetch(path: str):
        if path == "POST":
            status, body = post(nginx, "/t/body", b"x" * 3000)
            return status if body == b"3000" else f"{status} {body[:80]!r}"
        status, body, _ = nginx.get(path)
        if path == "/t/conn" and status == 200:
            with lock:
                reused[0] = max(reused[0], int(body))
        return status

    paths = ["/dispatch/ping", "/dispatch/ping", "/t/slow?s=0.02", "/t/conn", "POST", "POST"]
    failures, done = load_across_recycles(runfcgi, fetch, paths, recycles=20)
    assert reused[0] > 10  # the connections were kept alive (else this proves nothing)
    assert done > 500
    assert failures == []
    # nginx retried nothing either: a GET crossing a closing connection is retried, and logged.
    errors = [line for line in (tmp_path / "nginx-error.log").read_text().splitlines() if "[error]" in line]
    assert errors == []
    assert "did not leave within" not in runfcgi.log.read_text()  # every old child left by itself
