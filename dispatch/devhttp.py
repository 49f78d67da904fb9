"""``runfcgi --http ADDR``: a development HTTP front, like runserver and NOT for production. It serves the
blogs' published files and the static files, and passes every other request to the FastCGI children, as
nginx's try_files would."""
from __future__ import annotations

import logging
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db import close_old_connections

from . import fcgi_client
from .sockets import ListenSpec

logger = logging.getLogger("mtdispatch.devhttp")


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


def _static_file(path: str) -> str | None:
    prefix = "/" + settings.STATIC_URL.lstrip("/")
    if not path.startswith(prefix):
        return None
    return finders.find(path[len(prefix):])


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
        found = None if ".." in path.split("/") else (_static_file(path) or _published_file(path, host))
        if found and self.command in ("GET", "HEAD"):
            return self._send_file(found)
        self._pass_to_fastcgi()

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
        length = int(self.headers.get("Content-Length") or 0)
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



def start_dev_front(addr: str, listen: ListenSpec) -> ThreadingHTTPServer:
    host, _, port = addr.rpartition(":")
    if listen.path:
        backend: fcgi_client.Address = listen.path
    elif listen.port is not None:
        backend = (listen.host or "127.0.0.1", listen.port)
    else:
        raise ValueError("--http needs --socket or --host/--port (it connects to the FastCGI listener).")
    handler = type("Handler", (DevHandler,), {"backend": backend, "port": int(port)})
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="mtdispatch-http", daemon=True).start()
    logger.warning("Development HTTP front on http://%s:%s/ (not for production)", host or "127.0.0.1", port)
    return server
