"""The published site through the app: Dynamically published templates, and (in development) the
written files. In production the web server serves the files and passes only misses here."""
from __future__ import annotations

import mimetypes

from django.http import Http404, HttpRequest, HttpResponse
from django.views.static import serve

from blog.models import Blog

from .conf import get_config
from .models import FileInfo, PublishingMode
from .paths import PathError, check_relative_path
from .publisher import PublishError, render_fileinfo


def site_file_for(path: str) -> tuple[Blog, str] | None:
    """The blog whose site URL path is the longest prefix of the URL path ``path``, and the file that
    path names under its site root (a directory means its index.html)."""
    best: tuple[Blog, str] | None = None
    for blog in Blog.objects.only("id", "site_url", "site_root"):
        prefix = blog.site_path
        if path.startswith(prefix) and (best is None or len(prefix) > len(best[0].site_path)):
            best = (blog, path[len(prefix) :])
    if best is None:
        return None
    blog, relative = best
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    return blog, relative


def serve_site(request: HttpRequest, path: str = "") -> HttpResponse:
    found = site_file_for(request.path)
    if found is None:
        raise Http404("No blog is published at this URL.")
    blog, relative = found
    try:
        check_relative_path(relative)
    except PathError as exc:
        raise Http404(str(exc)) from exc
    fileinfo = (
        FileInfo.objects.filter(blog=blog, path=relative, template__mode=PublishingMode.DYNAMIC)
        .select_related("template", "blog")
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
