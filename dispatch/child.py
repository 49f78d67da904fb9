"""A FastCGI child: ``python -m dispatch.child`` started by the manager with the listening socket, a
status pipe and its scoreboard slot. It imports the application fresh (so a recycle picks up changed
code), accepts one connection at a time, says ``R`` on the pipe once ready, and keeps its slot of the
shared scoreboard current (busy with which request since when, or idle, and requests served).

Signals: TERM/INT/HUP finish the current request and exit; QUIT exits at once; USR1 reopens logs.
"""
from __future__ import annotations

import argparse
import os
import random
import select
import signal
import socket
import sys
import time

from dispatch.lifeline import die_with_parent, orphaned
from dispatch.scoreboard import BUSY, IDLE, Scoreboard

ORPHAN_GRACE_SECONDS = 1  # the manager died: a request in flight gets this long to finish


class Child:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.listen = socket.socket(fileno=args.listen_fd)
        self.listen.setblocking(False)
        self.status_fd = args.status_fd
        self.board = Scoreboard(args.slot + 1, fd=args.scoreboard_fd)
        self.slot = args.slot
        self.parent = os.getppid()
        self.served = 0
        limit = args.max_requests
        self.limit = limit + random.randint(0, args.max_requests_jitter) if limit else 0
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.server = None

    def report(self, line: str) -> None:
        try:
            os.write(self.status_fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except (BrokenPipeError, OSError):
            os._exit(0)  # the manager is gone

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._graceful)
        signal.signal(signal.SIGQUIT, lambda *a: os._exit(0))
        signal.signal(signal.SIGUSR1, lambda *a: reopen_logs(self.args.outlog, self.args.errlog))
        self.parent = die_with_parent(signal.SIGTERM)  # kill -9 of the manager: leave too

    def _graceful(self, signum, frame) -> None:
        if orphaned(self.parent):
            signal.alarm(ORPHAN_GRACE_SECONDS)  # no one will kill it if the request never ends
        if self.server is None:
            os._exit(0)  # still loading the application: no request to finish
        self.server.closing = True
        self.closing = True

    closing = False

    def load(self) -> None:
        import django
        from django.conf import settings
        from django.utils.module_loading import import_string

        django.setup(set_prefix=False)
        from dispatch.fastcgi import FastCGIServer

        application = import_string(settings.WSGI_APPLICATION)
        self.server = FastCGIServer(
            application, web_server_addrs=os.environ.get("FCGI_WEB_SERVER_ADDRS"),
            on_request_start=self._started, on_request_end=self._ended,
        )
        self.server.closing = self.closing

    def _started(self, environ: dict) -> None:
        uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        self.board.write(self.slot, BUSY, self.served, time.time(), f"{environ.get('REQUEST_METHOD', '-')} {uri}")

    def _ended(self) -> None:
        self.served += 1
        if self.limit and self.served >= self.limit:
            self.closing = self.server.closing = True
        self.board.write(self.slot, IDLE, self.served)

    def run(self) -> None:
        self.install_signals()
        try:
            self.load()
        except BaseException as exc:
            self.report(f"E {type(exc).__name__}: {exc}"[:500])  # why, for the manager's status
            raise
        self.board.write(self.slot, IDLE, 0)
        self.report("R")
        while not self.closing:
            ready, _, _ = select.select([self.listen, self.wake_r], [], [], 2.0)
            if self.wake_r in ready:
                drain(self.wake_r)
            if os.getppid() != self.parent:
                break  # orphaned: the manager died
            if self.listen in ready and not self.closing:
                self._accept_one()

    def _accept_one(self) -> None:
        try:
            conn, addr = self.listen.accept()
        except (BlockingIOError, InterruptedError):
            return  # another child took it
        except OSError as exc:
            print(f"accept failed: {exc}", file=sys.stderr)
            time.sleep(0.1)
            return
        self.server.serve_connection(conn, addr)


def drain(fd: int) -> None:
    """Empty a non-blocking wakeup pipe."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def reopen_logs(outlog: str | None, errlog: str | None) -> None:
    """Point stdout/stderr at freshly opened log files (after logrotate moved the old ones)."""
    for path, fd in ((outlog, 1), (errlog, 2)):
        if path:
            new = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            os.dup2(new, fd)
            os.close(new)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dispatch.child")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--scoreboard-fd", type=int, required=True)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--max-requests", type=int, default=0)
    parser.add_argument("--max-requests-jitter", type=int, default=0)
    parser.add_argument("--outlog")
    parser.add_argument("--errlog")
    Child(parser.parse_args(argv)).run()


if __name__ == "__main__":
    main()
