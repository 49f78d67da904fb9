"""A graceful stop (TERM) under load answers every connection the kernel accepted: no resets."""
import signal
import struct
import threading
import time

import pytest

from dispatch import fcgi_client

pytestmark = pytest.mark.slow


def stop_under_load(runfcgi, client, clients: int, term_sent: threading.Event) -> None:
    """Run ``client`` in ``clients`` threads, TERM runfcgi 1.5 s into the load (``term_sent`` set first), check it
    exits 0, and wait for the clients to end."""
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    term_sent.set()
    runfcgi.signal(signal.SIGTERM)
    assert runfcgi.proc.wait(timeout=40) == 0
    for thread in threads:
        thread.join(40)


def hammer_through_a_stop(runfcgi, clients: int = 16) -> dict:
    """``clients`` threads each request /t/slow?s=0.02 in a loop (so connections wait in the backlog) until a
    connect is refused after runfcgi was TERMed. Counts answers, refusals and errors of connected requests."""
    stats = {"answered": 0, "answered_after_term": 0, "refused": 0, "errors": []}
    lock, term_sent = threading.Lock(), threading.Event()
    deadline = time.monotonic() + 60

    def client() -> None:
        params = fcgi_client.params_for("GET", "/t/slow?s=0.02")
        while time.monotonic() < deadline:
            try:
                sock = fcgi_client.connect(runfcgi.address, timeout=20)
            except OSError:
                with lock:
                    stats["refused"] += 1  # never connected: the server is gone
                return
            try:
                with sock:
                    sock.sendall(fcgi_client.request_bytes(params))
                    response = fcgi_client.read_response(sock)
                assert response.status == 200, response
                with lock:
                    stats["answered"] += 1
                    stats["answered_after_term"] += term_sent.is_set()
            except (OSError, EOFError, struct.error, AssertionError) as exc:
                with lock:
                    stats["errors"].append(repr(exc))

    stop_under_load(runfcgi, client, clients, term_sent)
    return stats


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_a_graceful_stop_under_load_resets_no_connection(runfcgi, tcp):
    """Before: the connections waiting in the listen backlog when the last child left were reset."""
    runfcgi.start("--workers", "2", tcp=tcp)
    stats = hammer_through_a_stop(runfcgi)
    print(f"\n{'tcp' if tcp else 'unix'}: {stats['answered']} answered ({stats['answered_after_term']} after the "
          f"TERM), {stats['refused']} refused, {len(stats['errors'])} errors {stats['errors'][:3]}")
    assert stats["errors"] == []
    assert stats["refused"] == 16  # every client ended on a refused connect, none on an error
    assert stats["answered_after_term"] >= 8  # not vacuous: the backlog at the TERM was served


def test_a_graceful_stop_behind_nginx_resets_no_upstream_connection(runfcgi, nginx_for, tmp_path):
    """As wrk -c16 through nginx saw it: before, each connection in the backlog was a 'reset by peer' 502.
    After the stop nginx's connects fail (no such socket): those 502s are the server being gone."""
    runfcgi.start("--workers", "2")
    nginx = nginx_for(f"unix:{runfcgi.address}", tmp_path)
    statuses, lock, term_sent = [], threading.Lock(), threading.Event()
    deadline = time.monotonic() + 60

    def client() -> None:
        while time.monotonic() < deadline:
            status = nginx.get("/t/slow?s=0.02")[0]
            with lock:
                statuses.append((status, term_sent.is_set()))
            if status != 200 and runfcgi.proc.poll() is not None:
                return

    stop_under_load(runfcgi, client, 16, term_sent)
    errors = (tmp_path / "nginx-error.log").read_text()
    resets = [line for line in errors.splitlines() if "connect() to" not in line and "upstream" in line]
    after = sum(1 for status, after_term in statuses if after_term and status == 200)
    print(f"\nthrough nginx: {sum(s == 200 for s, _ in statuses)} answered ({after} after the TERM), "
          f"{errors.count('connect() to')} refused connects, {len(resets)} upstream errors {resets[:2]}")
    assert resets == []
    assert {status for status, _ in statuses} <= {200, 502}
    assert after >= 8
