"""The published site through the app: Dynamically published templates, and (in development) the
written files. In production the web server serves the files and passes only misses here."""
from __future__ import annotations

import logging
import mimetypes
import os

from django.http import Http404, HttpRequest, HttpResponse
from django.views.static import serve

from . import dynamic
from .conf import get_config
from .models import FileInfo, PublishingMode, mode_q
from .paths import PathError, check_relative_path, resolve_output_path
from .publisher import PublishError
from .sites import AbstractSite, get_site_model, normal_host

logger = logging.getLogger("mtdispatch.publisher")


def site_file_for(path: str, host: str | None = None) -> tuple[AbstractSite, str] | None:
    """The site whose site URL, without its scheme, is the longest prefix of ``host`` + ``path``, and the file
    that path names under its site root (a directory means its index.html).

    Without a site at that host and port, the sites at that host on any port are tried (the ``--http`` front
    on port 8000 for ``http://a.example/``). A host no site URL names (``localhost`` for a site at
    ``127.0.0.1``, a proxy's own name) is matched by the path alone, when one site is the longest match: two
    sites at the same path on two hosts are never guessed between. ``host`` None: by path alone."""
    sites = all_sites()
    wanted = normal_host(host) if host else None
    on_host = [site for site in sites if site.site_host == wanted]
    if wanted and not on_host:
        name = _without_port(wanted)
        on_host = [site for site in sites if _without_port(site.site_host) == name]
    best = _longest_prefix(on_host or sites, path, ambiguous_ok=bool(on_host))
    if best is None:
        return None
    site, relative = best
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    return site, relative


def all_sites() -> list[AbstractSite]:
    """Every site, whole rows (their versions key the cached Dynamic pages), with SQL compiled once per process:
    every request to the site runs it, and compiling it costs a cached page more than the rest of its request."""
    model = get_site_model()
    sql = _SITES_SQL.get(model)
    if sql is None:
        sql = _SITES_SQL[model] = model.objects.order_by("pk").query.sql_with_params()
    return list(model.objects.raw(*sql))


_SITES_SQL: dict = {}


def _without_port(host: str) -> str:
    return host.rsplit(":", 1)[0] if not host.endswith("]") else host


def _longest_prefix(sites: list[AbstractSite], path: str, *, ambiguous_ok: bool) -> tuple[AbstractSite, str] | None:
    matching = [site for site in sites if path.startswith(site.site_path)]
    if not matching:
        return None
    longest = max(len(site.site_path) for site in matching)
    best = [site for site in matching if len(site.site_path) == longest]
    if len(best) > 1 and not ambiguous_ok:
        return None  # the same path on several hosts, and a host that is none of theirs
    return best[0], path[longest:]


def published_file(path: str, host: str | None = None) -> str | None:
    """The published file at ``path`` on ``host`` (the request's Host header) on this machine's disk, if there
    is one (the ``--http`` front serves it as nginx's try_files would)."""
    found = site_file_for(path, host)
    if found is None:
        return None
    site, relative = found
    try:
        candidate = resolve_output_path(site.site_root, relative)
    except PathError:
        return None
    return candidate if os.path.isfile(candidate) else None


def serve_site(request: HttpRequest, path: str = "") -> HttpResponse:
    found = site_file_for(request.path, request.get_host())
    if found is None:
        raise Http404("No site is published at this URL.")
    blog, relative = found
    try:
        check_relative_path(relative)
    except PathError as exc:
        raise Http404(str(exc)) from exc
    cached = dynamic.cached_page(blog, relative)
    if cached is not dynamic.MISS:
        return _page(cached, relative)
    pages = dynamic_pages_at(blog, relative)
    if pages:
        return _render_dynamic(pages, blog)
    if get_config()["SERVE_PUBLISHED_FILES"]:
        try:
            return serve(request, relative, document_root=blog.site_root)
        except OSError as exc:  # a name too long for the file system (ENAMETOOLONG) is no file of the site
            raise Http404("Not published.") from exc
    raise Http404("Not published.")


def dynamic_pages_at(site: AbstractSite, relative: str) -> list[FileInfo]:
    """The Dynamic pages at ``relative`` in ``site`` (one indexed query), newest first. One as a rule (a change
    deletes the row of a Dynamic page whose object went, ``fileinfos._drop_unwritten``), but one may be left at
    the path (a database from before that, a page queued for removal and then switched to Dynamically) where
    another object has it now: the view serves the first whose object is there. Of two that both are (a category
    renamed keeps its Dynamic row at its old path until a publish re-paths it), the newer is of the object that
    was given the path last."""
    rows = FileInfo.objects.filter(mode_q([PublishingMode.DYNAMIC], via="mapping__"), site=site, path=relative)
    return list(rows.select_related("template", "site", "mapping").order_by("-pk"))


def _render_dynamic(pages: list[FileInfo], site: AbstractSite) -> HttpResponse:
    try:
        content = dynamic.render_page(pages, site)
    except PublishError as exc:  # the template's error: for the admin (its last error) and the log, not visitors
        logger.error("Dynamic page %s of site %s: %s", pages[0].path, site.pk, exc)
        return HttpResponse("This page could not be rendered.", status=500, content_type="text/plain")
    return _page(content, pages[0].path)


def _page(content: str | None, relative: str) -> HttpResponse:
    if content is None:
        raise Http404("This page no longer exists.")
    content_type = mimetypes.guess_type(relative)[0] or "text/html"
    return HttpResponse(content, content_type=f"{content_type}; charset=utf-8")
