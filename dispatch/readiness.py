"""Readiness of a new FastCGI child, checked before it says ``R`` to the manager: the URLconf and every
view it resolves are imported (walking the resolver), and warm-up requests go through the whole WSGI and
middleware stack in process. Django imports the URLconf only on the first request, so without this a
syntax error in urls.py (or any view module) passed for ready and every request got a 500 until the next
recycle; now the new child exits and the manager keeps the old children serving."""
from __future__ import annotations

import io
import sys
import traceback

from django.conf import settings


class NotReady(Exception):
    pass


def describe(exc: BaseException) -> str:
    """One line: the exception and where it was raised (the file and line of a syntax error)."""
    if isinstance(exc, SyntaxError):
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")


def check(application, warmup_paths: list[str]) -> int:
    """Raise NotReady unless the URLconf loads and every warm-up path answers 2xx or 3xx; the number of
    URL patterns walked."""
    patterns = walk_urlconf()
    for path in warmup_paths:
        warm_up(application, path)
    return patterns


def walk_urlconf() -> int:
    from django.urls import URLResolver, get_resolver

    def walk(patterns) -> int:
        count = 0
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                count += walk(pattern.url_patterns)  # imports an included URLconf given as a string
            else:
                pattern.lookup_str  # noqa: B018 - resolves the view callable
                count += 1
        return count

    try:
        return walk(get_resolver().url_patterns)
    except Exception as exc:  # noqa: BLE001 - whatever breaks the import breaks every request
        raise NotReady(f"URLconf {settings.ROOT_URLCONF} does not load: {describe(exc)}") from exc


def _host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*":
            return host.lstrip(".")
    return "localhost"


def warm_up(application, path: str) -> None:
    """One GET through the application, as a web server would send it; 2xx and 3xx pass."""
    uri = path if path.startswith("/") else f"/{path}"
    route, _, query = uri.partition("?")
    host = _host()
    environ = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": route, "QUERY_STRING": query, "REQUEST_URI": uri,
        "SERVER_NAME": host, "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": host,
        "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "mtdispatch-warmup", "CONTENT_LENGTH": "",
        "wsgi.version": (1, 0), "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http",
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    status: list[str] = []

    def start_response(line, headers, exc_info=None):
        status[:] = [line]
        return lambda data: None

    try:
        result = application(environ, start_response)
        try:
            for _chunk in result:
                pass
        finally:
            if hasattr(result, "close"):
                result.close()
    except Exception as exc:  # noqa: BLE001
        raise NotReady(f"warm-up GET {uri} raised {describe(exc)}") from exc
    code = int(status[0].split()[0]) if status else 0
    if not 200 <= code < 400:
        raise NotReady(f"warm-up GET {uri} answered {status[0] if status else 'nothing'}")
