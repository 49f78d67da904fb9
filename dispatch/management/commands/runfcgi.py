"""Serve the app over FastCGI with a pre-fork manager (MT-Dispatch)."""
from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand, CommandError

from dispatch.manager import Manager, ManagerOptions
from dispatch.slowlog import MAX_TIMEOUT
from dispatch.sockets import ListenSpec, SocketError


def octal(value: str) -> int:
    return int(value, 8)


class Command(BaseCommand):
    help = (
        "Serve the site over FastCGI: --socket PATH or --host/--port (external), or the listening socket on "
        "fd 0 (internal: spawned by a web server or spawn-fcgi). HUP recycles, TERM stops gracefully."
    )

    def add_arguments(self, parser) -> None:
        where = parser.add_argument_group("where to listen")
        where.add_argument("--socket", help="Unix socket path.")
        where.add_argument("--socket-mode", type=octal, default=0o660, help="Octal mode of the socket (0660).")
        where.add_argument("--socket-owner", help="User owning the socket.")
        where.add_argument("--socket-group", help="Group owning the socket (e.g. the web server's).")
        where.add_argument("--host", help="TCP address (IPv4 or IPv6).")
        where.add_argument("--port", type=int, help="TCP port.")
        where.add_argument("--backlog", type=int, default=1024, help="listen() backlog (flup: SOMAXCONN).")
        procs = parser.add_argument_group("processes")
        procs.add_argument("--workers", type=int, default=2, help="FastCGI children.")
        procs.add_argument("--max-children", type=int, default=64, help="Upper bound (TTIN, spare children).")
        procs.add_argument("--min-spare", type=int, default=0,
                           help="Dynamic pool: start children while fewer than this are idle.")
        procs.add_argument("--max-spare", type=int, default=0,
                           help="Dynamic pool: retire idle children above this (never below --workers).")
        procs.add_argument("--max-requests", type=int, default=0, help="Recycle a child after N requests.")
        procs.add_argument("--max-requests-jitter", type=int, default=0, help="Plus a random 0..N.")
        procs.add_argument("--max-rss", type=int, default=0, help="Recycle a child above this RSS (MB).")
        procs.add_argument("--request-timeout", type=float, default=0, help="Kill a child busy this long (s).")
        procs.add_argument("--graceful-timeout", type=float, default=30, help="TERM: wait this long (s).")
        procs.add_argument("--crash-threshold", type=int, default=5,
                           help="Children dying before they are ready this many times within --crash-interval "
                                "start an exponential backoff of child starts (php-fpm's emergency_restart_threshold; "
                                "0: never).")
        procs.add_argument("--crash-interval", type=float, default=10, help="See --crash-threshold (s).")
        procs.add_argument("--queue-workers", type=int, default=0, help="Also supervise N runworker processes.")
        procs.add_argument("--queue-worker-args", default="", help='Extra runworker options, e.g. "--load 20".')
        req = parser.add_argument_group("requests (each child reads many connections at once)")
        req.add_argument("--header-timeout", type=float, default=10,
                         help="Close a connection whose request head (params) is not complete after this (s).")
        req.add_argument("--body-timeout", type=float, default=30,
                         help="Close a connection whose request body makes no progress for this long (s).")
        req.add_argument("--send-timeout", type=float, default=30,
                         help="Drop a response the peer takes no bytes of for this long (s).")
        req.add_argument("--linger-timeout", type=float, default=5,
                         help="After a response, wait this long for the peer to close (s).")
        req.add_argument("--keepalive-timeout", type=float, default=300,
                         help="A kept-alive connection (nginx: fastcgi_keep_conn on) idle this long is closed; keep "
                              "the web server's own idle timeout (nginx's upstream keepalive_timeout, 60 s) below "
                              "it, so that the web server closes idle connections, not runfcgi (s).")
        req.add_argument("--max-body", type=float, default=64, help="Request bodies above this are a 413 (MB).")
        req.add_argument("--warmup", default="/dispatch/ping",
                         help="Comma-separated paths a new child GETs in process before it is ready; "
                              "a non-2xx/3xx answer keeps it from serving (empty: none).")
        req.add_argument("--slowlog-timeout", type=float, default=0,
                         help="Dump the stack of a request running longer than this to the error log (s).")
        ops = parser.add_argument_group("operation")
        ops.add_argument("--pidfile")
        ops.add_argument("--daemonize", action="store_true")
        ops.add_argument("--outlog", help="stdout goes here (reopened on USR1).")
        ops.add_argument("--errlog", help="stderr goes here (reopened on USR1).")
        ops.add_argument("--umask", type=octal)
        ops.add_argument("--workdir")
        ops.add_argument("--http", metavar="ADDR",
                         help="Development HTTP front, e.g. 127.0.0.1:8000 (not for production).")
        ops.add_argument("--no-status", action="store_true", help="Do not publish status or poll recycle requests.")

    def handle(self, *args, **o) -> None:
        if o["socket"] and o["port"]:
            raise CommandError("Give --socket or --host/--port, not both.")
        if o["workers"] < 1:
            raise CommandError("--workers must be at least 1.")
        if not 0 <= o["slowlog_timeout"] < MAX_TIMEOUT:  # also refuses nan
            raise CommandError(f"--slowlog-timeout must be from 0 (off) to below {MAX_TIMEOUT} seconds.")
        if o["max_spare"] and o["max_spare"] < o["min_spare"]:
            raise CommandError("--max-spare must be at least --min-spare.")
        spec = ListenSpec(path=o["socket"], host=o["host"], port=o["port"], mode=o["socket_mode"],
                          owner=o["socket_owner"], group=o["socket_group"], backlog=o["backlog"])
        options = ManagerOptions(
            listen=spec, workers=o["workers"], max_children=o["max_children"], max_requests=o["max_requests"],
            min_spare=o["min_spare"], max_spare=o["max_spare"],
            max_requests_jitter=o["max_requests_jitter"], max_rss_mb=o["max_rss"],
            request_timeout=o["request_timeout"], graceful_timeout=o["graceful_timeout"],
            crash_threshold=o["crash_threshold"], crash_interval=o["crash_interval"],
            queue_workers=o["queue_workers"], queue_worker_args=o["queue_worker_args"].split(),
            pidfile=o["pidfile"], outlog=o["outlog"], errlog=o["errlog"], http=o["http"],
            publish_status=not o["no_status"], child_args=child_args(o),
        )
        try:
            if o["http"]:
                from dispatch.devhttp import bind_dev_front

                bind_dev_front(o["http"])  # first: a port in use fails before the FastCGI socket exists
        except SocketError as exc:
            raise CommandError(str(exc)) from exc
        self._prepare_process(o)
        try:
            Manager(options, log=lambda msg: (sys.stderr.write(msg + "\n"), sys.stderr.flush())).serve()
        except SocketError as exc:
            raise CommandError(str(exc)) from exc

    def _prepare_process(self, o) -> None:
        if o["umask"] is not None:
            os.umask(o["umask"])
        if o["workdir"]:
            os.chdir(o["workdir"])
        if o["daemonize"]:
            _daemonize()
        from dispatch.child import reopen_logs

        reopen_logs(o["outlog"], o["errlog"])


def child_args(o: dict) -> list[str]:
    for name in ("header_timeout", "body_timeout", "send_timeout", "linger_timeout", "keepalive_timeout", "max_body"):
        if o[name] <= 0:
            raise CommandError(f"--{name.replace('_', '-')} must be positive.")
    return [f"--header-timeout={o['header_timeout']}", f"--body-timeout={o['body_timeout']}",
            f"--send-timeout={o['send_timeout']}", f"--linger-timeout={o['linger_timeout']}",
            f"--keepalive-timeout={o['keepalive_timeout']}",
            f"--max-body={o['max_body']}", f"--warmup={o['warmup']}", f"--slowlog-timeout={o['slowlog_timeout']}"]


def _daemonize() -> None:
    """The classic double fork: detached from the terminal and session, stdin from /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
