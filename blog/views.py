"""The public comment endpoint, posted to from static entry pages."""
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from publishqueue.models import FileInfo

from .archives import Archive
from .forms import CommentForm
from .models import Comment, Entry
from .services import CommentInput, CommentRejected, post_comment


def _page(entry: Entry | None) -> dict:
    """What the comment pages need to look like the blog: its name, URL and published stylesheet."""
    if entry is None:
        return {}
    blog = entry.blog
    stylesheet = (FileInfo.objects.filter(site=blog, template__identifier="styles").values_list("url", flat=True)
                  .first()) or f"{blog.site_url}styles.css"
    return {"entry": entry, "blog": blog, "stylesheet": stylesheet, "entry_url": _entry_url(entry)}


def _error(request: HttpRequest, errors: list[str], status: int, entry: Entry | None = None) -> HttpResponse:
    if entry is None and str(request.POST.get("entry_id", "")).isdigit():  # a form error: still the blog's look
        entry = Entry.objects.select_related("blog").filter(pk=int(request.POST["entry_id"])).first()
    return render(request, "blog/comment_error.html", {"errors": errors, **_page(entry)}, status=status)


def _entry_url(entry: Entry) -> str:
    url = (
        FileInfo.objects.filter(archive_type=Archive.INDIVIDUAL, object_id=entry.pk, mapping__is_preferred=True)
        .values_list("url", flat=True)
        .first()
    )
    return url or entry.blog.site_url


@csrf_exempt  # posted from static pages, which carry no token; see CommentForm
@require_POST
def comment_post(request: HttpRequest) -> HttpResponse:
    form = CommentForm(request.POST)
    if not form.is_valid():
        errors = [f"{form.fields[f].label or f}: {' '.join(e)}" for f, e in form.errors.items()]
        return _error(request, errors, 400)
    data = form.cleaned_data
    entry = Entry.objects.select_related("blog").filter(pk=data["entry_id"]).first()
    if entry is None:
        return _error(request, ["That entry does not exist."], 404)
    try:
        comment = post_comment(
            entry=entry,
            data=CommentInput(
                author=data["author"], email=data["email"], url=data["url"], body=data["body"],
                ip=request.META.get("REMOTE_ADDR") or None, honeypot=data["homepage"],
            ),
        )
    except CommentRejected as exc:
        response = _error(request, [str(exc)], exc.status, entry)
        if exc.retry_after:
            response["Retry-After"] = str(exc.retry_after)
        return response
    if comment.status == Comment.Status.APPROVED:
        return HttpResponseRedirect(f"{_entry_url(entry)}#comment-{comment.pk}", status=303)
    return render(request, "blog/comment_received.html", _page(entry))
