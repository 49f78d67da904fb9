"""``runfcgi --http ADDR``: a development HTTP front, like runserver and NOT for production. It serves the
blogs' published files and the static files, and passes every other request to the FastCGI children, as
nginx's try_files would."""
from __future__ import annotations

import logging
import mimetypes
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation
from django.db import close_old_connections

from . import fcgi_client
from .sockets import ListenSpec, SocketError

logger = logging.getLogger("mtdispatch.devhttp")
MAX_BODY = 64 << 20  # runfcgi's default --max-body


# Functions that map a URL path to a file to serve (or None): installed apps register theirs, as
# publishqueue does for the published sites (AppConfig.ready()).
file_finders: list = []


def register_file_finder(find) -> None:
    """``find(url_path, host) -> filename | None`` (``host``: the request's Host header, "" if none): the front
    serves that file instead of asking FastCGI."""
    if find not in file_finders:
        file_finders.append(find)


def _published_file(path: str, host: str) -> str | None:
    close_old_connections()
    for find in file_finders:
        found = find(path, host)
        if found:
            return found
    return None


class NotFound(Exception):
    pass


def _static_file(path: str) -> str | None:
    """The file for a path under STATIC_URL, found by the staticfiles finders (never outside their
    directories); an odd path (empty, '.' or '..' segments, a backslash or NUL) is NotFound."""
    prefix = "/" + settings.STATIC_URL.lstrip("/")
    if not path.startswith(prefix):
        return None
    relative = path[len(prefix):]
    segments = relative.split("/")
    if not relative or "\\" in relative or "\x00" in relative or any(s in ("", ".", "..") for s in segments):
        raise NotFound(path)
    try:
        found = finders.find(relative)
    except SuspiciousFileOperation as exc:
        raise NotFound(path) from exc
    return found if isinstance(found, str) else None


class DevHandler(BaseHTTPRequestHandler):
    server_version = "mtdispatch-dev"
    protocol_version = "HTTP/1.1"
    backend: fcgi_client.Address = ""
    port = 0

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _handle(self) -> None:
        path = unquote(urlsplit(self.path).path)
        host = self.headers.get("Host", "")
        try:
            found = _static_file(path)
            if found is None and ".." not in path.split("/"):
                found = _published_file(path, host)
        except NotFound:
            return self.send_error(404, "Not Found")
        if found and self.command in ("GET", "HEAD"):
            return self._send_file(found)
        try:
            self._pass_to_fastcgi()
        except Exception:  # noqa: BLE001 - answer, and log, rather than an empty reply
            logger.exception("The development front failed on %s %s", self.command, self.path)
            self.send_error(502, "Bad Gateway")

    def _send_file(self, filename: str) -> None:
        with open(filename, "rb") as handle:
            data = handle.read()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(filename)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _pass_to_fastcgi(self) -> None:
        length = (self.headers.get("Content-Length") or "0").strip()
        if not length.isdigit():
            return self.send_error(400, "Bad Content-Length")
        length = int(length)
        if length > MAX_BODY:
            return self.send_error(413, f"Request bodies are limited to {MAX_BODY} bytes here")
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length",)}
        params = fcgi_client.params_for(self.command, self.path, body=body, headers=headers,
                                        server=("127.0.0.1", self.port), remote=self.client_address[0])
        try:
            response = fcgi_client.request(self.backend, params, body, timeout=300)
        except OSError as exc:
            self.send_error(502, f"FastCGI backend unavailable: {exc}")
            return
        self.send_response(response.status, response.reason)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args) -> None:
        logger.info("%s %s", self.address_string(), format % args)



_prebound: dict[str, ThreadingHTTPServer] = {}


def parse_address(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SocketError(f"--http {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:8000.")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind_dev_front(addr: str) -> ThreadingHTTPServer:
    """Bind the development front's port now (runfcgi does this before anything else, so a port in use
    fails first, in one line, leaving nothing behind); start_dev_front() then serves on it."""
    host, port = parse_address(addr)
    handler = type("Handler", (DevHandler,), {})
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6}) if ":" in host \
        else ThreadingHTTPServer
    try:
        server = server_class((host, port), handler)
    except OSError as exc:
        raise SocketError(f"Cannot listen on {addr} (--http): {exc.strerror or exc}") from exc
    server.daemon_threads = True
    _prebound[addr] = server
    return server


def start_dev_front(addr: str, listen: ListenSpec) -> ThreadingHTTPServer:
    if listen.path:
        backend: fcgi_client.Address = listen.path
    elif listen.port is not None:
        backend = (listen.host or "127.0.0.1", listen.port)
    else:
        raise ValueError("--http needs --socket or --host/--port (it connects to the FastCGI listener).")
    if addr not in _prebound:
        bind_dev_front(addr)
    server = _prebound.pop(addr)
    server.RequestHandlerClass.backend = backend
    server.RequestHandlerClass.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="mtdispatch-http", daemon=True).start()
    logger.warning("Development HTTP front on http://%s/ (not for production)", addr)
    return server
