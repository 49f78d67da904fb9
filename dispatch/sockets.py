"""The listening socket: a unix socket (mode, owner, group, like php-fpm's listen.*), TCP host:port,
or the socket a web server or spawn-fcgi left on fd 0."""
from __future__ import annotations

import grp
import os
import pwd
import socket
import stat
from dataclasses import dataclass


class SocketError(Exception):
    pass


@dataclass(frozen=True)
class ListenSpec:
    path: str | None = None
    host: str | None = None
    port: int | None = None
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    backlog: int = 1024

    def describe(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        if self.port is not None:
            return f"[{self.host}]:{self.port}" if ":" in (self.host or "") else f"{self.host}:{self.port}"
        return "fd 0 (inherited)"


def open_listener(spec: ListenSpec) -> socket.socket:
    if spec.path:
        return _unix(spec)
    if spec.port is not None:
        return _tcp(spec)
    return _inherited()


def _unix(spec: ListenSpec) -> socket.socket:
    path = spec.path
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise SocketError(f"{path} exists and is not a socket; refusing to replace it.")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale socket of a dead server
        else:
            raise SocketError(f"{path} is in use by another running server.")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # never briefly world-accessible
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    try:
        os.chmod(path, spec.mode if spec.mode is not None else 0o660)
        uid = pwd.getpwnam(spec.owner).pw_uid if spec.owner else -1
        gid = grp.getgrnam(spec.group).gr_gid if spec.group else -1
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
    except (KeyError, PermissionError) as exc:
        sock.close()
        os.unlink(path)
        raise SocketError(f"Cannot set the owner/group/mode of {path}: {exc}") from exc
    sock.listen(spec.backlog)
    return sock


def _tcp(spec: ListenSpec) -> socket.socket:
    host = spec.host or "127.0.0.1"
    infos = socket.getaddrinfo(host, spec.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise SocketError(f"Cannot listen on {host}:{spec.port}: {exc}") from exc
    sock.listen(spec.backlog)
    return sock


def _inherited() -> socket.socket:
    try:
        sock = socket.socket(fileno=os.dup(0))
    except OSError as exc:
        raise SocketError("No address given and fd 0 is not a listening socket (spawn-fcgi or a web server "
                          "starts runfcgi that way); use --socket or --host/--port.") from exc
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
        raise SocketError("fd 0 is a socket but not a listening one.")
    return sock
