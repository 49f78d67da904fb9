"""A FastCGI client on flup6's Record code: the --http development front and the tests use it.
(flup's own client, flup.client.fcgi_app, still joins bytes as str and fails on Python 3.)"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from flup.server.fcgi_base import (
    FCGI_BEGIN_REQUEST,
    FCGI_END_REQUEST,
    FCGI_KEEP_CONN,
    FCGI_PARAMS,
    FCGI_RESPONDER,
    FCGI_STDERR,
    FCGI_STDIN,
    FCGI_STDOUT,
    FCGI_BeginRequestBody,
    Record,
)

from dispatch.connection import encode_params, encode_record, encode_stream

Address = str | tuple[str, int]


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    stderr: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def connect(address: Address, timeout: float | None = 30) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def request_bytes(params: dict[str, str], body: bytes = b"", *, request_id: int = 1, keep: bool = False) -> bytes:
    """The records of one FastCGI request (keep: FCGI_KEEP_CONN, the connection stays open after it)."""
    flags = FCGI_KEEP_CONN if keep else 0
    begin = encode_record(FCGI_BEGIN_REQUEST, request_id, struct.pack(FCGI_BeginRequestBody, FCGI_RESPONDER, flags))
    # PARAMS is one byte stream: encoded whole, then cut into records anywhere (a pair may span records).
    return (begin + encode_stream(FCGI_PARAMS, request_id, encode_params(params))
            + encode_stream(FCGI_STDIN, request_id, body))


def params_for(method: str, uri: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
               server: tuple[str, int] = ("127.0.0.1", 80), remote: str = "127.0.0.1") -> dict[str, str]:
    path, _, query = uri.partition("?")
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "REQUEST_URI": uri, "SCRIPT_NAME": "",
        "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": server[0], "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": remote, "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        params[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return params


def request(address: Address, params: dict[str, str], body: bytes = b"", timeout: float | None = 30) -> Response:
    return exchange(address, request_bytes(params, body), timeout)


def exchange(address: Address, data: bytes, timeout: float | None = 30) -> Response:
    """Send raw request records and read the response up to FCGI_END_REQUEST."""
    with connect(address, timeout) as sock:
        sock.sendall(data)
        return read_response(sock)


def read_response(sock: socket.socket) -> Response:
    stdout, stderr = bytearray(), bytearray()
    while True:
        rec = Record()
        rec.read(sock)
        if rec.type == FCGI_STDOUT:
            stdout += rec.contentData
        elif rec.type == FCGI_STDERR:
            stderr += rec.contentData
        elif rec.type == FCGI_END_REQUEST:
            break
    return parse_response(bytes(stdout), bytes(stderr))


def parse_response(stdout: bytes, stderr: bytes = b"") -> Response:
    head, _, body = stdout.partition(b"\r\n\r\n")
    status, reason, headers = 200, "OK", []
    for line in head.decode("latin-1").split("\r\n"):
        if not line:
            continue
        name, _, value = line.partition(":")
        if name.lower() == "status":
            code, _, reason = value.strip().partition(" ")
            status = int(code)
        else:
            headers.append((name.strip(), value.strip()))
    return Response(status, reason, headers, body, stderr)


def get(address: Address, uri: str, **kwargs) -> Response:
    return request(address, params_for("GET", uri, **kwargs))
