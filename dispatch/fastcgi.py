"""A WSGI gateway on flup6's FastCGI protocol code (records, connections, streams), with flup's faults
fixed:

* an exception escaping the application is logged and answered with a 500 page; flup printed the
  traceback (str) into a bytes stream, which raised again and killed the process;
* response header values are encoded latin-1 as PEP 3333 says (flup: ASCII, so "é" killed the request);
* ``FCGI_WEB_SERVER_ADDRS`` matches IPv6 peers too (flup compared only IPv4 address pairs);
* an unknown record type is answered with FCGI_UNKNOWN_TYPE (flup referenced an undefined name);
* a malformed or truncated record closes that connection only; no cgitb (removed in Python 3.13).
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import select
import socket
import struct
import sys
import traceback
from collections.abc import Callable

from flup.server import fcgi_base
from flup.server.fcgi_base import (
    FCGI_ABORT_REQUEST,
    FCGI_BEGIN_REQUEST,
    FCGI_DATA,
    FCGI_GET_VALUES,
    FCGI_HEADER_LEN,
    FCGI_KEEP_CONN,
    FCGI_NULL_REQUEST_ID,
    FCGI_PARAMS,
    FCGI_REQUEST_COMPLETE,
    FCGI_RESPONDER,
    FCGI_STDIN,
    FCGI_UNKNOWN_ROLE,
    FCGI_UNKNOWN_TYPE,
    FCGI_VERSION_1,
    Connection,
    FCGI_Header,
    FCGI_UnknownTypeBody,
    FCGI_UnknownTypeBody_LEN,
    Record,
    Request,
)

logger = logging.getLogger("mtdispatch.fastcgi")

ERROR_PAGE = (
    b"Status: 500 Internal Server Error\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<!doctype html><title>Server error</title><h1>Server error</h1>"
    b"<p>The application failed to answer this request. The error has been logged.</p>"
)


def encode_record(rtype: int, request_id: int, data: bytes = b"") -> bytes:
    """One FastCGI record: header, content, padding to a multiple of 8 bytes."""
    padding = -len(data) & 7
    return struct.pack(FCGI_Header, FCGI_VERSION_1, rtype, request_id, len(data), padding) + data + b"\x00" * padding


class SafeRequest(Request):
    def __init__(self, conn, inputStreamClass) -> None:
        super().__init__(conn, inputStreamClass)
        # Buffered: a complete response leaves in one send (streaming responses flush per chunk).
        self.stdout = fcgi_base.OutputStream(conn, self, fcgi_base.FCGI_STDOUT, buffered=True)

    def run(self) -> None:
        try:
            protocol_status, app_status = self.server.handler(self)
        except Exception:  # noqa: BLE001 - one failing request must not take the process down
            logger.error("Unhandled exception serving %s %s\n%s", self.params.get("REQUEST_METHOD"),
                         self.params.get("REQUEST_URI"), traceback.format_exc())
            self.stderr.write(traceback.format_exc().encode("utf-8", "replace"))
            if not self.stdout.dataWritten:
                self.stdout.write(ERROR_PAGE)
            protocol_status, app_status = FCGI_REQUEST_COMPLETE, 1
        try:
            self._flush()
            self._end(app_status, protocol_status)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise


class SafeConnection(Connection):
    """One web server connection; errors end the connection, never the process.

    Records are read from a buffer (one recv usually brings a whole request; flup did a select and two
    recvs per record) and written with one send each (flup: header, content and padding separately)."""

    def __init__(self, sock, addr, server) -> None:
        super().__init__(sock, addr, server)
        self._inbuf = bytearray()

    def _fill(self, size: int) -> None:
        while len(self._inbuf) < size:
            data = self._sock.recv(max(65536, size - len(self._inbuf)))
            if not data:
                raise EOFError
            self._inbuf += data

    def process_input(self) -> None:
        while self._keepGoing and not self._inbuf:
            try:
                ready, _, _ = select.select([self._sock], [], [], 1.0)
            except ValueError:
                raise EOFError from None
            if ready:
                break
        if not self._keepGoing:
            return
        self._fill(FCGI_HEADER_LEN)
        _version, rtype, request_id, length, padding = struct.unpack(FCGI_Header, self._inbuf[:FCGI_HEADER_LEN])
        self._fill(FCGI_HEADER_LEN + length + padding)
        rec = Record(rtype, request_id)
        rec.contentLength, rec.paddingLength = length, padding
        rec.contentData = bytes(self._inbuf[FCGI_HEADER_LEN : FCGI_HEADER_LEN + length])
        del self._inbuf[: FCGI_HEADER_LEN + length + padding]
        handler = self._handlers.get(rtype)
        if handler is not None:
            handler(self, rec)
        elif request_id == FCGI_NULL_REQUEST_ID:
            self._do_unknown_type(rec)

    _handlers = {
        FCGI_GET_VALUES: Connection._do_get_values, FCGI_BEGIN_REQUEST: Connection._do_begin_request,
        FCGI_ABORT_REQUEST: Connection._do_abort_request, FCGI_PARAMS: Connection._do_params,
        FCGI_STDIN: Connection._do_stdin, FCGI_DATA: Connection._do_data,
    }

    def writeRecord(self, rec: Record) -> None:
        self._sock.sendall(encode_record(rec.type, rec.requestId, rec.contentData))

    def run(self) -> None:
        try:
            super().run()
        except (OSError, struct.error, ValueError, KeyError, UnicodeError) as exc:
            logger.warning("Dropping a FastCGI connection after a protocol error: %s: %s", type(exc).__name__, exc)
            try:
                self._sock.close()
            except OSError:
                pass

    def _do_unknown_type(self, inrec: Record) -> None:
        outrec = Record(FCGI_UNKNOWN_TYPE)
        outrec.contentData = struct.pack(FCGI_UnknownTypeBody, inrec.type)
        outrec.contentLength = FCGI_UnknownTypeBody_LEN
        self.writeRecord(outrec)

    def end_request(self, req, appStatus=0, protocolStatus=FCGI_REQUEST_COMPLETE, remove=True) -> None:
        # One request per connection, even when the web server asks to keep it: a pre-fork child serves
        # one connection at a time, so an idle kept connection would starve new ones, and closing it
        # later races the web server reusing it (a 502). Keep nginx's default fastcgi_keep_conn off.
        req.flags &= ~FCGI_KEEP_CONN
        super().end_request(req, appStatus, protocolStatus, remove)


def _allowed_networks(spec: str | None) -> list | None:
    if not spec:
        return None
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


class FastCGIServer(fcgi_base.BaseFCGIServer):
    """Serves one WSGI application over accepted FastCGI connections, one request at a time."""

    request_class = SafeRequest

    def __init__(
        self,
        application: Callable,
        *,
        web_server_addrs: str | None = None,
        on_request_start: Callable[[dict], None] | None = None,
        on_request_end: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(application, multithreaded=False, multiprocess=True, bindAddress=("", 0), debug=False,
                         roles=(FCGI_RESPONDER,))
        self._connectionClass = SafeConnection
        self._allowed = _allowed_networks(web_server_addrs)
        self.on_request_start = on_request_start or (lambda params: None)
        self.on_request_end = on_request_end or (lambda: None)
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

    def serve_connection(self, sock: socket.socket, addr) -> None:
        if not self.client_allowed(addr):
            logger.warning("Refusing FastCGI connection from %s (not in FCGI_WEB_SERVER_ADDRS)", addr)
            sock.close()
            return
        sock.setblocking(True)
        SafeConnection(sock, addr, self).run()

    def handler(self, req: Request):
        """The WSGI gateway (PEP 3333)."""
        if req.role not in self.roles:
            return FCGI_UNKNOWN_ROLE, 0
        environ = req.params
        environ.update(self.environ)
        environ.update({
            "wsgi.version": (1, 0), "wsgi.input": req.stdin, "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "wsgi.url_scheme": "https" if environ.get("HTTPS", "off").lower() in ("on", "1") else "http",
        })
        self._sanitizeEnv(environ)
        self.on_request_start(environ)
        try:
            self._run_app(req, environ)
        finally:
            self.on_request_end()
        return FCGI_REQUEST_COMPLETE, 0

    def _run_app(self, req: Request, environ: dict) -> None:
        response = _Response(req)
        result = self.application(environ, response.start_response)
        try:
            chunks = list(result) if isinstance(result, (list, tuple)) else result
            if isinstance(chunks, list) and len(chunks) == 1:
                response.set_length(len(chunks[0]))
            streaming = not isinstance(chunks, list)
            for chunk in chunks:
                response.write(chunk)
                if streaming:
                    req.stdout.flush()
            response.write(b"")  # headers, for an empty body
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
        finally:
            if hasattr(result, "close"):
                result.close()


class _Response:
    """start_response() and write() for one request; headers are encoded latin-1 (PEP 3333)."""

    def __init__(self, req: Request) -> None:
        self.req = req
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False

    def start_response(self, status: str, headers: list, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        self.status, self.headers = status, list(headers)
        return self.write

    def set_length(self, length: int) -> None:
        if not any(name.lower() == "content-length" for name, _ in self.headers):
            self.headers.append(("Content-Length", str(length)))

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not self.sent:
            lines = [f"Status: {self.status}", *(f"{name}: {value}" for name, value in self.headers)]
            self.req.stdout.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            self.sent = True
        if data:
            self.req.stdout.write(data)
