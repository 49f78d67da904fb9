"""The published site through the app: Dynamically published templates, and (in development) the
written files. In production the web server serves the files and passes only misses here."""
from __future__ import annotations

import mimetypes
import os

from django.http import Http404, HttpRequest, HttpResponse
from django.views.static import serve

from .conf import get_config
from .models import FileInfo, PublishingMode, mode_q
from .paths import PathError, check_relative_path, resolve_output_path
from .publisher import PublishError, render_fileinfo
from .sites import AbstractSite, get_site_model


def site_file_for(path: str) -> tuple[AbstractSite, str] | None:
    """The site whose site URL path is the longest prefix of the URL path ``path``, and the file that
    path names under its site root (a directory means its index.html)."""
    best: tuple[AbstractSite, str] | None = None
    for site in get_site_model().objects.only("id", "site_url", "site_root"):
        prefix = site.site_path
        if path.startswith(prefix) and (best is None or len(prefix) > len(best[0].site_path)):
            best = (site, path[len(prefix) :])
    if best is None:
        return None
    site, relative = best
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    return site, relative


def published_file(path: str) -> str | None:
    """The published file at URL path ``path`` on this host's disk, if there is one (the ``--http`` front
    serves it as nginx's try_files would)."""
    found = site_file_for(path)
    if found is None:
        return None
    site, relative = found
    try:
        candidate = resolve_output_path(site.site_root, relative)
    except PathError:
        return None
    return candidate if os.path.isfile(candidate) else None


def serve_site(request: HttpRequest, path: str = "") -> HttpResponse:
    found = site_file_for(request.path)
    if found is None:
        raise Http404("No site is published at this URL.")
    blog, relative = found
    try:
        check_relative_path(relative)
    except PathError as exc:
        raise Http404(str(exc)) from exc
    fileinfo = (
        FileInfo.objects.filter(mode_q([PublishingMode.DYNAMIC], via="mapping__"), site=blog, path=relative)
        .select_related("template", "site", "mapping")
        .first()
    )
    if fileinfo is not None:
        return _render_dynamic(fileinfo)
    if get_config()["SERVE_PUBLISHED_FILES"]:
        return serve(request, relative, document_root=blog.site_root)
    raise Http404("Not published.")


def _render_dynamic(fileinfo: FileInfo) -> HttpResponse:
    try:
        content = render_fileinfo(fileinfo)
    except PublishError as exc:
        return HttpResponse(f"This page could not be rendered: {exc}", status=500, content_type="text/plain")
    if content is None:
        raise Http404("This page no longer exists.")
    content_type = mimetypes.guess_type(fileinfo.path)[0] or "text/html"
    return HttpResponse(content, content_type=f"{content_type}; charset=utf-8")
