"""A real runfcgi process for tests, on a fresh SQLite database."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dispatch import fcgi_client
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runfcgi:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings_fcgi", "MTDISPATCH_SQLITE": str(tmp / "db.sqlite3"),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp}",
        }
        self.env.pop("DATABASE_URL", None)
        self.proc: subprocess.Popen | None = None
        self.address: fcgi_client.Address = str(tmp / "fcgi.sock")
        self.log = tmp / "runfcgi.log"
        self.pidfile = tmp / "runfcgi.pid"
        (tmp / "codeversion.py").write_text("VERSION = 1\n")
        self.manage("migrate", "-v0")

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], env=self.env, cwd=ROOT, capture_output=True,
                              text=True, check=check, timeout=120)

    def start(self, *args: str, tcp: bool = False, wait: bool = True) -> Runfcgi:
        where = ["--host", "127.0.0.1", "--port", str(port := free_port())] if tcp else ["--socket", self.address]
        if tcp:
            self.address = ("127.0.0.1", port)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runfcgi", *where, "--pidfile", str(self.pidfile), *args],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"),
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/dispatch/ping").status == 200:
                    return
            except OSError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise AssertionError(f"runfcgi did not answer: {self.log.read_text()}")

    def get(self, uri: str, timeout: float = 30) -> fcgi_client.Response:
        return fcgi_client.get(self.address, uri) if timeout == 30 else fcgi_client.request(
            self.address, fcgi_client.params_for("GET", uri), timeout=timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def children(self) -> set[int]:
        out = subprocess.run(["ps", "--ppid", str(self.proc.pid), "-o", "pid=,args="], capture_output=True, text=True)
        return {int(line.split()[0]) for line in out.stdout.splitlines() if "dispatch.child" in line}

    def wait_for(self, predicate, timeout: float = 30, what: str = "condition"):
        return wait_for(predicate, what, timeout, detail=lambda: f"; log:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def load_across_recycles(server: Runfcgi, fetch_status, paths: list[str], recycles: int = 3) -> tuple[list, int]:
    """Keep one thread per path requesting while the server is recycled (SIGHUP) ``recycles`` times,
    each time waiting until the recycle completed. Returns the failures and the number of requests."""
    import threading

    failures, done, stop = [], [0], threading.Event()

    def load(path: str) -> None:
        while not stop.is_set():
            try:
                status = fetch_status(path)
            except OSError as exc:
                status = repr(exc)
            done[0] += 1
            if status != 200:
                failures.append((path, status))

    threads = [threading.Thread(target=load, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    try:
        for n in range(1, recycles + 1):
            time.sleep(0.5)
            server.signal(signal.SIGHUP)
            server.wait_for(lambda n=n: server.log.read_text().count("recycled (SIGHUP)") >= n, 60, f"recycle {n}")
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return failures, done[0]


@pytest.fixture
def runfcgi(tmp_path):
    server = Runfcgi(tmp_path)
    yield server
    server.stop()
