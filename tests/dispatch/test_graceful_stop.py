"""A graceful stop (TERM) under load answers every connection the kernel accepted: no resets."""
import os
import signal
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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


# -- kept-alive connections and the drainer -----------------------------------------------------------


def kept(uri: str) -> bytes:
    """A GET with FCGI_KEEP_CONN, as nginx sends with fastcgi_keep_conn on."""
    return fcgi_client.request_bytes(fcgi_client.params_for("GET", uri), keep=True)


def answer(sock) -> str:
    response = fcgi_client.read_response(sock)
    assert response.status == 200, response
    return response.body.decode()


def gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # reparented: init may be slow to reap
    except psutil.NoSuchProcess:
        return True


def hold_the_only_child(runfcgi, tmp_path):
    """The only child busy in the application until it is sent TERM (t/until-term, on a kept connection), so
    that connections made now wait in the backlog. Returns the child's pid and that connection."""
    (child,) = runfcgi.children()
    busy = fcgi_client.connect(runfcgi.address)
    busy.sendall(kept(f"/t/until-term?f={tmp_path / 'term'}"))
    runfcgi.wait_for(lambda: (tmp_path / f"term.started.{child}").exists(), what="the child in the application")
    return child, busy


def test_a_drainer_keeps_the_connections_the_web_server_keeps(runfcgi, tmp_path):
    """nginx sends its next request on a kept connection the moment an answer arrives. Before, the drainer
    half-closed every connection right after its first response: each second request read EOF (nginx: 'upstream
    prematurely closed connection', a 502 for a POST)."""
    runfcgi.start("--workers", "1")
    child, busy = hold_the_only_child(runfcgi, tmp_path)
    waiting = [fcgi_client.connect(runfcgi.address) for _ in range(3)]
    for sock in waiting:
        sock.sendall(kept("/t/pid"))
    runfcgi.signal(signal.SIGTERM)
    assert answer(busy) == str(child)
    busy.close()

    def twice(sock) -> tuple[str, str]:
        first = answer(sock)
        sock.sendall(kept("/t/pid"))  # at once, on the same connection
        return first, answer(sock)

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(twice, waiting))
    drainers = {int(first) for first, _ in answers}
    assert all(first == second for first, second in answers)
    assert child not in drainers  # the drainer answered them (else this proves nothing)
    assert runfcgi.proc.wait(timeout=40) == 0
    assert not os.path.exists(runfcgi.address)
    for sock in waiting:  # idle, and nothing else to serve: retired (half-closed), then the drainer exits
        with sock:
            assert sock.recv(1) == b""
    runfcgi.wait_for(lambda: all(gone(pid) for pid in drainers), what="the drainer to exit")


def test_the_backlog_is_served_while_a_leaving_child_still_holds_a_connection(runfcgi, tmp_path):
    """The only child leaving hands over to the drainer at once; the drainer serves the child's connections
    too. Before, it handed over only once its connections had ended: a connection still in use (here a request
    still arriving; in the report a kept connection nginx kept busy, up to RETIRE_BUSY, 15 s) held up the
    backlog, and this test's read of the waiting connection timed out."""
    runfcgi.start("--workers", "1", "--header-timeout", "60")
    arriving, rest = fcgi_client.connect(runfcgi.address), kept("/t/pid")
    arriving.sendall(rest[:20])  # BEGIN_REQUEST and part of PARAMS; accepted before the next one (FIFO)
    rest = rest[20:]
    child, busy = hold_the_only_child(runfcgi, tmp_path)
    waiting = fcgi_client.connect(runfcgi.address)
    waiting.sendall(kept("/t/pid"))
    runfcgi.signal(signal.SIGTERM)
    assert answer(busy) == str(child)
    drainer = int(answer(waiting))  # while the child's connection is still waiting for the rest of its request
    assert drainer != child
    arriving.sendall(rest)
    assert answer(arriving) == str(drainer)
    for sock in (busy, waiting, arriving):
        sock.close()
    assert runfcgi.proc.wait(timeout=40) == 0
    runfcgi.wait_for(lambda: gone(drainer), what="the drainer to exit")
