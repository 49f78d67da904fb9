"""The WSGI gateway of a FastCGI child: runs the application for one complete request read by
``dispatch.connection`` (flup6's record format and constants; its blocking Connection/Request classes are
no longer used), with flup's faults fixed:

* an exception escaping the application is logged and answered with a 500 page; flup printed the
  traceback (str) into a bytes stream, which raised again and killed the process;
* response header values are encoded latin-1 as PEP 3333 says (flup: ASCII, so "é" killed the request);
* ``FCGI_WEB_SERVER_ADDRS`` matches IPv6 peers too (flup compared only IPv4 address pairs);
* an unknown record type is answered with FCGI_UNKNOWN_TYPE (flup referenced an undefined name);
* a malformed or truncated record closes that connection only; no cgitb (removed in Python 3.13);
* PARAMS is decoded as one stream, so a name-value pair may span records (flup: per record, so the tail
  of a long header could smuggle params such as REMOTE_ADDR);
* a missing CGI param gets its default (flup wrote a bytearray to the text stream wsgi.errors: a 500);
  a CONTENT_LENGTH that is not a number is a 400, one above the body limit a 413, before the application;
* the child never blocks on one peer: requests are read, and responses flushed, without blocking
  (see connection.py); the application runs only for a complete request.

``slowlog_timeout`` (php-fpm's request_slowlog_timeout): a request still running after that many seconds
gets every thread's Python stack dumped to stderr (faulthandler, so even a request stuck in C code; see
slowlog.py), and a line naming the request when it ends.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import struct
import sys
import time
import traceback
from collections.abc import Callable

from flup.server.fcgi_base import (
    FCGI_END_REQUEST,
    FCGI_REQUEST_COMPLETE,
    FCGI_RESPONDER,
    FCGI_STDERR,
    FCGI_STDOUT,
    FCGI_UNKNOWN_ROLE,
    FCGI_EndRequestBody,
)

from .connection import Connection, encode_record  # noqa: F401 - encode_record: the client's import
from .slowlog import SlowLog

logger = logging.getLogger("mtdispatch.fastcgi")

ERROR_PAGE = (
    b"Status: 500 Internal Server Error\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<!doctype html><title>Server error</title><h1>Server error</h1>"
    b"<p>The application failed to answer this request. The error has been logged.</p>"
)
CGI_DEFAULTS = (("REQUEST_METHOD", "GET"), ("SERVER_NAME", "localhost"), ("SERVER_PORT", "80"),
                ("SERVER_PROTOCOL", "HTTP/1.0"))
CHUNK = 65528  # the largest multiple of 8 that fits a record


def error_response(status: int, message: str) -> bytes:
    reason = message.split(":", 1)[0]
    body = (message + "\n").encode("latin-1", "replace")
    return (f"Status: {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


class _Output:
    """An FCGI_STDOUT/STDERR stream of one request, buffered; records of at most CHUNK bytes."""

    def __init__(self, conn: Connection, rtype: int) -> None:
        self.conn, self.rtype = conn, rtype
        self.buffer = bytearray()
        self.flushed = False

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= 4 * CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.conn.send(self._records())

    def _records(self) -> bytes:
        data, self.buffer = bytes(self.buffer), bytearray()
        self.flushed = True
        if len(data) <= CHUNK:
            return encode_record(self.rtype, self.conn.request_id, data)
        return b"".join(encode_record(self.rtype, self.conn.request_id, data[start:start + CHUNK])
                        for start in range(0, len(data), CHUNK))

    def discard(self) -> None:
        self.buffer.clear()

    def end(self) -> bytes:
        """What is left of the stream, with the empty record that ends it (nothing for a stream never
        written)."""
        data = self._records() if self.buffer else b""
        return data + encode_record(self.rtype, self.conn.request_id) if self.flushed else data


def _allowed_networks(spec: str | None) -> list | None:
    if not spec:
        return None
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


def sanitize_environ(environ: dict) -> None:
    """The CGI variables WSGI requires, from REQUEST_URI or defaults when the web server left them out."""
    get = environ.get
    if "SCRIPT_NAME" not in environ:
        environ["SCRIPT_NAME"] = ""
    if not get("PATH_INFO") or not get("QUERY_STRING"):
        path, _, query = get("REQUEST_URI", "").partition("?")
        if not get("PATH_INFO"):
            environ["PATH_INFO"] = path
        if not get("QUERY_STRING"):
            environ["QUERY_STRING"] = query
    for name, default in CGI_DEFAULTS:
        if not get(name):
            environ[name] = default


class FastCGIServer:
    """Runs one WSGI application for complete FastCGI requests, one at a time."""

    def __init__(
        self,
        application: Callable,
        *,
        web_server_addrs: str | None = None,
        on_request_start: Callable[[dict], None] | None = None,
        on_request_end: Callable[[], None] | None = None,
        slowlog_timeout: float = 0,
    ) -> None:
        self.application = application
        self._allowed = _allowed_networks(web_server_addrs)
        self.on_request_start = on_request_start or (lambda params: None)
        self.on_request_end = on_request_end or (lambda: None)
        self.slowlog_timeout = slowlog_timeout
        self._watchdog = SlowLog(slowlog_timeout) if slowlog_timeout else None
        self.closing = False

    def client_allowed(self, addr) -> bool:
        """Unix-socket peers always; TCP peers (IPv4 or IPv6) when in FCGI_WEB_SERVER_ADDRS, if set."""
        if self._allowed is None or not isinstance(addr, tuple):
            return True
        try:
            ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._allowed)

    def handle(self, conn: Connection) -> None:
        """Answer a complete request; the connection goes on to flush the response and linger. The rest of
        the response, the ends of its streams and END_REQUEST are queued in one piece (one send)."""
        stdout = _Output(conn, FCGI_STDOUT)
        protocol_status, app_status, errors = FCGI_REQUEST_COMPLETE, 0, b""
        if conn.role != FCGI_RESPONDER:
            protocol_status = FCGI_UNKNOWN_ROLE
        elif conn.error:
            stdout.write(error_response(*conn.error))
        else:
            app_status, errors = self._serve(conn, stdout)
        conn.send(stdout.end() + errors + end_request(conn.request_id, app_status, protocol_status))
        conn.finish_response()

    def _serve(self, conn: Connection, stdout: _Output) -> tuple[int, bytes]:
        """The application's exit status, and the FCGI_STDERR stream (empty unless it failed)."""
        environ = self.environ_for(conn)
        self.on_request_start(environ)
        if self.slowlog_timeout:
            started = time.monotonic()
            self._watchdog.arm()
        try:
            self._run_app(environ, stdout)
            return 0, b""
        except Exception:  # noqa: BLE001 - one failing request must not take the process down
            logger.error("Unhandled exception serving %s %s\n%s", environ.get("REQUEST_METHOD"),
                         environ.get("REQUEST_URI"), traceback.format_exc())
            stderr = _Output(conn, FCGI_STDERR)
            stderr.write(traceback.format_exc().encode("utf-8", "replace"))
            if not stdout.flushed:
                stdout.discard()
                stdout.write(ERROR_PAGE)
            return 1, stderr.end()
        finally:
            if self.slowlog_timeout:
                self._watchdog.disarm()
                self._slowlog(environ, time.monotonic() - started)
            self.on_request_end()

    def _slowlog(self, environ: dict, elapsed: float) -> None:
        if elapsed > self.slowlog_timeout:
            logger.warning("slow request (pid %d): %s %s took %.2fs, over --slowlog-timeout %ss; its stack was "
                           "dumped above", os.getpid(), environ.get("REQUEST_METHOD"),
                           environ.get("REQUEST_URI") or environ.get("PATH_INFO"), elapsed, self.slowlog_timeout)

    def environ_for(self, conn: Connection) -> dict:
        """The WSGI environ (PEP 3333): the request's params (the connection's dict: it starts a new one for
        its next request) with the WSGI keys."""
        environ = conn.params
        environ.update(self._wsgi_keys)
        environ["wsgi.input"] = conn.stdin
        if environ.get("HTTPS", "off").lower() in ("on", "1"):
            environ["wsgi.url_scheme"] = "https"
        environ["mtdispatch.connection_requests"] = conn.requests  # answered on this connection before
        sanitize_environ(environ)
        return environ

    _wsgi_keys = {"wsgi.version": (1, 0), "wsgi.errors": sys.stderr, "wsgi.multithread": False,
                  "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.url_scheme": "http"}

    def _run_app(self, environ: dict, stdout: _Output) -> None:
        response = _Response(stdout)
        result = self.application(environ, response.start_response)
        try:
            # A list, or a response that says it is not streaming (Django's HttpResponse): sent whole with
            # the end of the request, in one write. Other iterables: each chunk is sent as it comes.
            if isinstance(result, (list, tuple)) or getattr(result, "streaming", None) is False:
                chunks = list(result)
                if len(chunks) == 1:
                    response.set_length(len(chunks[0]))
                response.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                return
            for chunk in result:
                response.write(chunk)
                stdout.flush()  # each chunk goes out as it comes
                stdout.conn.push()
            response.write(b"")  # headers, for an empty body
        finally:
            if hasattr(result, "close"):
                result.close()


_END_REQUEST: dict[tuple[int, int, int], bytes] = {}


def end_request(request_id: int, app_status: int, protocol_status: int) -> bytes:
    """The END_REQUEST record (the usual ones built once)."""
    key = (request_id, app_status, protocol_status)
    record = _END_REQUEST.get(key)
    if record is None:
        record = encode_record(FCGI_END_REQUEST, request_id, struct.pack(FCGI_EndRequestBody, app_status,
                                                                         protocol_status))
        if len(_END_REQUEST) < 64:
            _END_REQUEST[key] = record
    return record


class _Response:
    """start_response() and write() for one request; headers are encoded latin-1 (PEP 3333)."""

    def __init__(self, stdout: _Output) -> None:
        self.stdout = stdout
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False

    def start_response(self, status: str, headers: list, exc_info=None):
        if exc_info:
            try:
                if self.stdout.flushed:  # too late: the client has the headers
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
            self.stdout.discard()
            self.sent = False
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        self.status, self.headers = status, list(headers)
        return self.write

    def set_length(self, length: int) -> None:
        for name, _ in self.headers:
            if name.lower() == "content-length":
                return
        self.headers.append(("Content-Length", str(length)))

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not self.sent:
            head = "".join([f"Status: {self.status}\r\n", *[f"{name}: {value}\r\n" for name, value in self.headers],
                            "\r\n"]).encode("latin-1")
            self.sent = True
            self.stdout.write(head + data if data else head)
        elif data:
            self.stdout.write(data)
