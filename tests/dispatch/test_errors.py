"""Errors reach a log, odd input gets a clear answer, a busy address fails in one line."""
import http.client
import socket
import subprocess
import sys

import pytest

from dispatch import fcgi_client
from tests.fcgi import ROOT, free_port

pytestmark = pytest.mark.slow


def test_an_application_error_is_logged_with_its_traceback(runfcgi):
    """Before: with DEBUG off django.request had no handler; the 500 left no trace in --errlog."""
    errlog = runfcgi.tmp / "err.log"
    runfcgi.start("--workers", "1", "--errlog", str(errlog))
    assert runfcgi.get("/t/boom").status == 500
    log = runfcgi.wait_for(lambda: "RuntimeError" in (text := errlog.read_text()) and text, what="the traceback")
    assert "Internal Server Error: /t/boom" in log and "Traceback (most recent call last)" in log
    assert 'raise RuntimeError("boom from the application")' in log
    before = log.count("Traceback")
    assert fcgi_client.get(runfcgi.address, "/dispatch/ping", headers={"Host": "evil.example"}).status == 400
    log = runfcgi.wait_for(lambda: "DisallowedHost" in (text := errlog.read_text()) and text, what="the bad Host")
    assert log.count("Traceback") == before  # a scanner's bad Host: one line, no traceback


def _http(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_http_front_answers_odd_paths_with_404_and_never_leaves_the_static_dirs(runfcgi):
    """Before: GET /static//etc/passwd raised in the handler thread: an empty reply."""
    port = free_port()
    runfcgi.start("--workers", "1", "--http", f"127.0.0.1:{port}")
    runfcgi.wait_for(lambda: _answers(port), what="the HTTP front")
    for path in ("/static//etc/passwd", "/static/%2Fetc/passwd", "/static/../../../../etc/passwd",
                 "/static/./x", "/static/a%00b", "/static/..%5C..%5Cetc%5Cpasswd"):
        status, body = _http(port, path)
        assert status == 404 and b"root:" not in body, (path, status)
    assert _http(port, "/dispatch/ping", {"Content-Length": "abc"})[0] == 400
    assert _http(port, "/dispatch/ping", {"Content-Length": str(10 ** 12)})[0] == 413
    assert _http(port, "/dispatch/ping") == (200, b"pong\n")


def _answers(port: int) -> bool:
    try:
        return _http(port, "/dispatch/ping")[0] == 200
    except OSError:
        return False


def _run(runfcgi, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "runfcgi", "--no-status", "--workers", "1", *args],
                          env=runfcgi.env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_an_address_in_use_fails_first_in_one_line(runfcgi):
    """Before: a --http port in use raised a traceback after the FastCGI socket was made, and left it behind."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    sock_path = str(runfcgi.tmp / "other.sock")
    try:
        for args in (["--socket", sock_path, "--http", f"127.0.0.1:{port}"],
                     ["--host", "127.0.0.1", "--port", str(port)], ["--socket", sock_path, "--http", "nonsense"]):
            out = _run(runfcgi, *args)
            lines = out.stderr.strip().splitlines()
            assert out.returncode != 0 and len(lines) == 1 and "Traceback" not in out.stderr, (args, out.stderr)
            assert ("in use" in lines[0] or "HOST:PORT" in lines[0]), lines
            assert not (runfcgi.tmp / "other.sock").exists(), args
        runfcgi.start("--workers", "1")
        out = _run(runfcgi, "--socket", runfcgi.address)  # a live server's socket
        assert out.returncode != 0 and out.stderr.strip().count("\n") == 0 and "in use" in out.stderr
        assert runfcgi.get("/dispatch/ping").status == 200  # and it was left alone
    finally:
        busy.close()
