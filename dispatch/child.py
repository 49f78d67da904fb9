"""A FastCGI child: ``python -m dispatch.child`` started by the manager with the listening socket, a
status pipe and its scoreboard slot. It imports the application fresh (so a recycle picks up changed
code), checks that it is ready (the URLconf and its views import, warm-up requests answer; see
readiness.py), says ``R`` on the pipe, and keeps its slot of the shared scoreboard current (busy with
which request since when, or idle, and requests served). Once it has served --max-requests it says ``L``
on the pipe and serves on: the manager starts its replacement and asks it to leave (TERM) once that one is
ready, so a child reaching its limit never leaves the pool short of children while a replacement starts.

It multiplexes the reading of many connections on epoll and runs the application only for a
complete request, so slow or half-open peers hold file descriptors, never the child; each phase has a
timeout (see connection.py).

Leaving (TERM) it takes no new connections and finishes the ones it holds. If
no other ready child would take the connections left in the listen backlog (a full stop, or the last
child of a pool waiting for its replacement), it hands over to a *drainer* as soon as it begins to leave:
a fork that serves the connections the child held and keeps taking the backlog until a ready child
exists again, or, once the manager has exited (it unlinks a unix socket then, so no new connection can
arrive; a TCP listener gets a drop-all filter), until the backlog is empty; then it leaves as a child
does. So a graceful stop answers every connection the kernel accepted instead of resetting the backlog,
and the backlog never waits for the child's kept connections to end. The drainer ignores TERM; it stops
taking connections --graceful-timeout after it began at the latest.

Leaving with kept-alive connections (nginx's ``fastcgi_keep_conn on``): FastCGI has no way to tell the
web server "do not reuse this connection", and a connection closed by us can always cross a request the
web server is just sending on it (nginx then retries a GET, but answers a POST 502). So a leaving child
closes a connection only when the web server is unlikely to be sending on it: it keeps serving the
requests that arrive on its connections and half-closes one once it has been idle RETIRE_IDLE seconds
(nginx reuses its most recently used connections first, its cache is a stack, so one idle that long is at
the bottom, and nginx sees the end and drops it long before it would pick it again); busy connections are
closed by nginx itself after ``keepalive_requests`` (race-free: it closes after a complete response). A
connection still busy RETIRE_BUSY seconds after the child began to leave is half-closed right after its
next response, so that a child always leaves; that can cross a request nginx sends just then (a send
wakes nginx, which may read the response before our end arrives, cache the connection and pick it), so
deploy/nginx.conf keeps keepalive_requests at most RETIRE_BUSY / RETIRE_IDLE (30): a connection used less
often than every RETIRE_IDLE has idle gaps, one used more often reaches keepalive_requests in time.
A drainer keeps the connections it serves alive the same way (nginx sends its next request on a kept
connection the moment the answer arrives) and retires them by the same rules, RETIRE_BUSY counted from
when it begins to leave (its work done, or its deadline: then each ends after its next response).

Signals: TERM/INT/HUP finish the current request and leave; QUIT exits at once; USR1 reopens logs.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import time

from dispatch.connection import HEAD, READY, WAITING, Connection, Limits
from dispatch.lifeline import die_with_parent, orphaned
from dispatch.scoreboard import BUSY, IDLE, LEAVING, SLOT, Scoreboard

CHECK_INTERVAL = 1.0  # the longest a select waits, to notice a dead manager
# A connection accepted this recently that has sent nothing yet holds off accepting another: a web server
# writes its request right after connecting, and a child that took a second connection in that gap would
# serve both in turn while another child idles. A silent peer delays the backlog behind it this much.
FRESH = 0.003
SILENT_FLOOD = 8
ORPHAN_GRACE_SECONDS = 1  # the manager died: a request in flight gets this long to finish
DRAINER_CHECK = 0.2
PARENT_CHECK = 0.05  # how often the loop asks whether the manager is still its parent (a system call)
# Kept-alive connections of a leaving child (see "Leaving with kept-alive connections" in the docstring).
RETIRE_IDLE = 0.5
RETIRE_BUSY = 15.0  # at most (and at most half the graceful timeout)


class Child:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.listen = socket.socket(fileno=args.listen_fd)
        self.listen.setblocking(False)
        # socket.accept() converts the listener's family and type to enums for every connection
        self._accept_args = (int(self.listen.family), int(self.listen.type), self.listen.proto)
        self.status_fd = args.status_fd
        self.board = Scoreboard(max(os.fstat(args.scoreboard_fd).st_size // SLOT.size, args.slot + 1),
                                fd=args.scoreboard_fd)
        self.slot = args.slot
        self.parent = os.getppid()
        self.served = 0
        self.limit_said = False
        self.asked_others = False  # leaving: whether it asked if another child takes the backlog (_leave)
        limit = args.max_requests
        self.limit = limit + random.randint(0, args.max_requests_jitter) if limit else 0
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.server = None
        self.limits = Limits(header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                             send_timeout=args.send_timeout, linger_timeout=args.linger_timeout,
                             keepalive_timeout=args.keepalive_timeout,
                             max_body=int(args.max_body * 1024 * 1024))
        self.max_conns = raise_fd_limit()
        self.selector = Poller()
        self.conns: set[Connection] = set()
        self._registered: set[Connection] = set()
        self.accepting = False
        self.leaving = False  # takes no new connections; exits when its connections are done
        self.drainer = False  # the fork that serves the backlog after the child left (see the docstring)
        self.final_drain = False
        self.master_fd: int | None = None
        self.drain_deadline = 0.0
        self.next_check = 0.0
        self.next_parent_check = 0.0
        self.left_at = 0.0  # monotonic: when it began to leave

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
        self.closing = self.signalled = True

    closing = signalled = False

    def load(self) -> None:
        try:
            import django
            from django.conf import settings
            from django.utils.module_loading import import_string

            django.setup(set_prefix=False)
            from dispatch import readiness
            from dispatch.fastcgi import FastCGIServer

            application = import_string(settings.WSGI_APPLICATION)
            readiness.check(application, [p for p in self.args.warmup.split(",") if p.strip()])
        except Exception as exc:  # noqa: BLE001 - a broken deploy: say why in one line, exit non-zero
            from dispatch.readiness import NotReady, describe

            why = str(exc) if isinstance(exc, NotReady) else f"the application does not load: {describe(exc)}"
            self.report(f"E not ready: {why}"[:500])  # why, for the manager's status
            sys.stdout.flush()
            sys.stderr.write(f"dispatch.child {os.getpid()}: not ready: {why}\n")
            sys.stderr.flush()
            os._exit(3)
        from django.db import connections

        connections.close_all()
        freeze_loaded_objects()
        self.server = FastCGIServer(
            application, web_server_addrs=os.environ.get("FCGI_WEB_SERVER_ADDRS"),
            on_request_start=self._started, on_request_end=self._ended, slowlog_timeout=self.args.slowlog_timeout,
        )

    def _started(self, environ: dict) -> None:
        if not self.drainer:
            uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
            self.board.write(self.slot, BUSY, self.served, time.time(), f"{environ.get('REQUEST_METHOD', '-')} {uri}")

    def _ended(self) -> None:
        self.served += 1
        if self.drainer:
            return
        if self.limit and self.served >= self.limit and not self.limit_said:
            self.limit_said = True  # the manager replaces it, then asks it to leave: it serves on until then
            self.report(f"L --max-requests: served {self.served} requests")
        self.board.write(self.slot, LEAVING if self.leaving or self.closing else IDLE, self.served)

    def run(self) -> None:
        self.install_signals()
        self.load()
        self.board.write(self.slot, IDLE, 0)
        self.report("R")
        self.selector.register(self.wake_r, READ, "wake")
        self.serve()
        # Asked to leave, it handed over to a drainer at once unless a ready child took the backlog then
        # (_leave); it asks again now that its connections are done, in case that child has left meanwhile. (A
        # child retired for --max-requests or a recycle is asked once its replacement is ready: that one takes it.)
        if self.signalled and not self.drainer and os.getppid() == self.parent and not self.others_accept():
            self.become_drainer()
            self.serve()

    # -- the event loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            if self.closing and not self.drainer:
                self._leave()
            fresh = self._fresh()
            self._set_accepting(not self.leaving and len(self.conns) < self.max_conns and fresh is None)
            if self.leaving and not self.conns:
                return
            for data, mask in self.selector.select(self._timeout(fresh)):
                self._event(data, mask)
            now = time.monotonic()
            self._expire(now)
            self._run_ready()
            if self.leaving or self.drainer:
                self._end_idle(time.monotonic())
            if self.drainer:
                self._drainer_check(now)
            elif now >= self.next_parent_check:
                self.next_parent_check = now + PARENT_CHECK
                if os.getppid() != self.parent:
                    self._abandon()  # orphaned: the manager died
                    return

    def _leave(self) -> None:
        """Begin to leave; asked to (a stop, or a retirement), hand over to a drainer at once unless a ready
        child takes the backlog: the drainer serves the backlog and this child's connections alike, so neither
        waits for the other (a kept connection in use could otherwise hold the backlog up to RETIRE_BUSY). (A
        child that served --max-requests is never the last: the manager replaces it and keeps the socket.)"""
        if not self.leaving:
            self.leaving = True
            self.board.write(self.slot, LEAVING, self.served)  # before asking: of two leaving at once, one drains
            self.left_at = time.monotonic()
        if self.signalled and not self.asked_others:
            self.asked_others = True
            if os.getppid() == self.parent and not self.others_accept():
                self.become_drainer()

    def _fresh(self) -> Connection | None:
        silent = [c for c in self.conns if not c.received and c.state == HEAD]
        if not silent:
            return None
        if len(silent) > SILENT_FLOOD:
            return None  # a flood of silent peers, not a web server: take the backlog as fast as it comes
        now = time.monotonic()
        return next((c for c in silent if now - c.accepted < FRESH), None)

    def _timeout(self, fresh: Connection | None) -> float:
        """How long the next select may wait: 0 with a request ready, else until the next deadline."""
        deadline = float("inf")
        for conn in self.conns:
            if conn.state == READY:
                return 0
            if conn.deadline < deadline:
                deadline = conn.deadline
        limit = DRAINER_CHECK if self.drainer else CHECK_INTERVAL
        now = time.monotonic()
        if self.leaving or self.drainer:
            limit = min([limit, *(c.idle_since + RETIRE_IDLE - now for c in self.conns if c.state == WAITING)])
            if now < self._reuse_until():
                limit = min(limit, self._reuse_until() - now)
        if fresh is not None:
            limit = min(limit, fresh.accepted + FRESH - now)
        return max(0.0, min(limit, deadline - now))

    def _event(self, data, mask: int) -> None:
        if type(data) is Connection:
            now = time.monotonic()
            if mask & ~select.EPOLLOUT:  # readable, or an error or hang-up to read
                data.on_readable(now)
            if mask & ~select.EPOLLIN and data.writing:
                data.on_writable(now)
            self._update(data)
        elif data == "wake":
            drain(self.wake_r)
        elif data == "listen":
            self._accept()
        # "manager": the manager exited; _drainer_check sees it

    def _set_accepting(self, accepting: bool) -> None:
        if accepting != self.accepting:
            if accepting:
                self.selector.register(self.listen, READ, "listen", exclusive=True)
            else:
                self.selector.unregister(self.listen)
            self.accepting = accepting

    def _accept(self) -> bool:
        """Take connections from the backlog until it is empty, one holds a complete request (served before
        taking more, leaving the rest to the other children) or one has sent nothing yet (given FRESH to
        send its request). False: the backlog was empty."""
        for _ in range(64):
            if len(self.conns) >= self.max_conns:
                return True
            try:
                fd, addr = self.listen._accept()
                sock = socket.socket(*self._accept_args, fileno=fd)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                print(f"accept failed: {exc}", file=sys.stderr)
                time.sleep(0.1)
                return True
            if not self.server.client_allowed(addr):
                print(f"Refusing FastCGI connection from {addr} (not in FCGI_WEB_SERVER_ADDRS)", file=sys.stderr)
                sock.close()
                continue
            conn = Connection(sock, addr, self.limits)
            # kept alive if the web server asks: a drainer retires its connections as a leaving child does
            conn.reuse = conn.now < self._reuse_until() if self.drainer else not self.leaving
            self.conns.add(conn)
            conn.on_readable(conn.now)  # the request is usually there already
            self._update(conn, new=True)
            if conn.state == READY or (conn.state == HEAD and not conn.received):
                return True
        return True

    def _update(self, conn: Connection, new: bool = False) -> None:
        """Keep the selector in step with the connection's state."""
        events = (READ if conn.reading else 0) | (WRITE if conn.writing else 0)
        registered = not new and conn in self._registered
        if conn.state == "closed":
            self.conns.discard(conn)
        if registered and not events:
            self.selector.unregister(conn, closed=conn.state == "closed")
            self._registered.discard(conn)
        elif events and registered:
            self.selector.modify(conn, events, conn)
        elif events:
            self.selector.register(conn, events, conn)
            self._registered.add(conn)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self.conns if now >= c.deadline and c.expired(now)]:
            conn.close(conn.timeout_reason())
            self._update(conn)

    def _run_ready(self) -> None:
        ready = [c for c in self.conns if c.state == READY]
        if len(ready) > 1:
            ready.sort(key=_accepted)
        for conn in ready:
            self.server.handle(conn)
            self._update(conn)

    def _reuse_until(self) -> float:
        """Leaving, or a drainer: until when a connection is kept for the next request the web server sends (a
        drainer: RETIRE_BUSY after it began to leave, and never past its deadline)."""
        until = self.left_at + min(RETIRE_BUSY, self.args.graceful_timeout / 2)
        return min(until, self.drain_deadline) if self.drainer else until

    def _end_idle(self, now: float) -> None:
        """Leaving, or a drainer: half-close the kept-alive connections idle for RETIRE_IDLE, unless a request
        arrived on one just now (then it is answered first); after RETIRE_BUSY, end each after its next
        response (see the docstring)."""
        if now >= self._reuse_until():
            for conn in self.conns:
                conn.reuse = False
        for conn in [c for c in self.conns if c.state == WAITING and now - c.idle_since >= RETIRE_IDLE]:
            conn.on_readable(now)
            if conn.state == WAITING:
                conn.end()
            self._update(conn)

    def _abandon(self) -> None:
        for conn in list(self.conns):
            conn.close("the manager died")
            self._update(conn)

    # -- leaving: the drainer ----------------------------------------------------------------------

    def others_accept(self) -> bool:
        """Whether another child of the manager is ready and not leaving (it will take the backlog)."""
        import psutil

        try:
            siblings = psutil.Process(self.parent).children()
        except psutil.Error:
            return False
        for proc in siblings:
            try:
                cmdline = proc.cmdline()
            except psutil.Error:
                continue
            if proc.pid == os.getpid() or "dispatch.child" not in cmdline or "--slot" not in cmdline:
                continue
            slot = int(cmdline[cmdline.index("--slot") + 1])
            if slot < self.board.slots and self.board.read(slot).state in (IDLE, BUSY):
                return True
        return False

    def become_drainer(self) -> None:
        """Fork the drainer and let this process exit (the manager waits for it, not for the drainer)."""
        from django.db import connections

        connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork():
            os._exit(0)
        self.drainer, self.leaving, self.closing = True, False, False
        self.left_at = float("inf")  # not leaving yet: it keeps connections up to its deadline (_reuse_until)
        os.close(self.status_fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # bounded by the deadline below instead
        self.drain_deadline = time.monotonic() + self.args.graceful_timeout
        try:
            self.master_fd = os.pidfd_open(self.parent)
            self.selector.register(self.master_fd, READ, "manager")
        except OSError:
            self.master_fd = None

    def _manager_gone(self) -> bool:
        if self.master_fd is not None:
            poll = select.poll()  # readable once the process has exited
            poll.register(self.master_fd, select.POLLIN)
            return bool(poll.poll(0))
        try:
            os.kill(self.parent, 0)
        except ProcessLookupError:
            return True
        return False

    def _drainer_check(self, now: float) -> None:
        if not self.leaving and (now > self.drain_deadline or self._drained(now)):
            self.leaving, self.left_at = True, now  # its connections are retired from now on (_reuse_until)

    def _drained(self, now: float) -> bool:
        """Whether the drainer is done: the backlog is empty and nothing can join it, or a ready child takes it."""
        if self.final_drain or self._manager_gone():
            if not self.final_drain:
                self.final_drain = True
                refuse_new_connections(self.listen)  # unix: the manager unlinked the path already
            return not self._accept()
        if now >= self.next_check:
            self.next_check = now + DRAINER_CHECK
            return self.others_accept()
        return False


READ, WRITE = select.EPOLLIN, select.EPOLLOUT


def _accepted(conn: Connection) -> float:
    return conn.accepted


class Poller:
    """epoll for the child's loop (lighter than ``selectors``). The listening socket is watched with
    EPOLLEXCLUSIVE: a new connection wakes one of the children waiting, not all of them (the thundering
    herd; each woken child accepts at least once, so none is woken for nothing)."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.fds: dict[object, int] = {}
        self.data: dict[int, object] = {}
        self.events: dict[int, int] = {}

    def register(self, fileobj, events: int, data, exclusive: bool = False) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        self.epoll.register(fd, events | (select.EPOLLEXCLUSIVE if exclusive else 0))
        self.fds[fileobj], self.data[fd], self.events[fd] = fd, data, events

    def modify(self, fileobj, events: int, data) -> None:
        """A system call only when the events change (a kept-alive connection keeps READ from request to
        request)."""
        fd = self.fds[fileobj]
        if self.events[fd] != events:
            self.epoll.modify(fd, events)
            self.events[fd] = events
        self.data[fd] = data

    def unregister(self, fileobj, closed: bool = False) -> None:
        """``closed``: a connection closed just now; closing its descriptor removed it from epoll already
        (it is never duplicated), so no system call (it failed, and raised, once a connection)."""
        fd = self.fds.pop(fileobj)
        self.data.pop(fd, None)
        self.events.pop(fd, None)
        if closed:
            return
        try:
            self.epoll.unregister(fd)
        except OSError:
            pass

    def select(self, timeout: float) -> list[tuple[object, int]]:
        try:
            events = self.epoll.poll(timeout)
        except InterruptedError:
            return []
        data = self.data
        return [(data[fd], mask) for fd, mask in events if fd in data]


def refuse_new_connections(sock: socket.socket) -> None:
    """A TCP listener whose server is gone: drop new SYNs (a socket filter returning 0) so that the backlog
    can be emptied for good; connecting clients get a refusal once it closes, never a reset after
    connecting. (A unix socket needs nothing: its path is unlinked.)"""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    drop_all = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET | BPF_K, 0
    program = struct.pack("HL", 1, ctypes.addressof(drop_all))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, 26, program)  # SO_ATTACH_FILTER
    except OSError as exc:
        print(f"could not filter the listener: {exc}", file=sys.stderr)


def raise_fd_limit() -> int:
    """Connections one child may hold (slow peers hold descriptors): the soft descriptor limit raised to
    the hard one, less a margin for the application's own files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(16, min(4096, soft - 128))


def freeze_loaded_objects() -> None:
    """Move what the application allocated while loading and warming up (modules, URL patterns, templates,
    settings: about 68,000 objects the collector tracks for this project) out of the collector's generations
    (gc.freeze). They live as long as the process, yet
    each full collection traversed them all: 40 ms on this machine, a stall for the request that triggered
    it; after the freeze a full collection sees only what requests left behind. (Full collections are rare
    for a Django request mix, so this is about the latency tail, not about throughput.)"""
    gc.collect()
    gc.freeze()


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
    parser.add_argument("--header-timeout", type=float, default=Limits.header_timeout)
    parser.add_argument("--body-timeout", type=float, default=Limits.body_timeout)
    parser.add_argument("--send-timeout", type=float, default=Limits.send_timeout)
    parser.add_argument("--linger-timeout", type=float, default=Limits.linger_timeout)
    parser.add_argument("--keepalive-timeout", type=float, default=Limits.keepalive_timeout)
    parser.add_argument("--max-body", type=float, default=Limits.max_body / 1024 / 1024, help="MB")
    parser.add_argument("--warmup", default="/dispatch/ping", help="Comma-separated paths; empty: none.")
    parser.add_argument("--slowlog-timeout", type=float, default=0)
    parser.add_argument("--graceful-timeout", type=float, default=30)
    Child(parser.parse_args(argv)).run()


if __name__ == "__main__":
    main()
