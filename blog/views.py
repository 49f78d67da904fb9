"""The public comment endpoint, posted to from static entry pages."""
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
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
    """The entry's page on its own blog's host (the endpoint serves every blog, on whatever host it was posted to;
    the page it redirects to is the blog's)."""
    url = (
        FileInfo.objects.filter(
            site_id=entry.blog_id, archive_type=Archive.INDIVIDUAL, object_id=entry.pk, mapping__is_preferred=True
        )
        .order_by("mapping_id")
        .values_list("url", flat=True)
        .first()
    )
    return url or entry.blog.site_url


@csrf_exempt  # posted from static pages, which carry no token; see CommentForm
@require_POST
def comment_post(request: HttpRequest) -> HttpResponse:
    """Answers in the language of the entry's blog (whatever the host it was posted to)."""
    entry_id = request.POST.get("entry_id", "")
    entry = Entry.objects.select_related("blog").filter(pk=entry_id).first() if entry_id.isdigit() else None
    with translation.override(entry.blog.language_code if entry else translation.get_language()):
        return _comment_post(request, entry)


def _comment_post(request: HttpRequest, entry: Entry | None) -> HttpResponse:
    form = CommentForm(request.POST)
    if not form.is_valid():
        errors = [f"{form.fields[f].label or f}: {' '.join(e)}" for f, e in form.errors.items()]
        return _error(request, errors, 400, entry)
    data = form.cleaned_data
    if entry is None:
        return _error(request, [_("That entry does not exist.")], 404)
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
