"""Background tasks (django-q2), run by ``runworker``: comment notification mail and update pings."""
from __future__ import annotations

import logging
import xmlrpc.client

from django.core.mail import send_mail
from django.urls import reverse

from .conf import get_config
from .models import Blog, Comment

logger = logging.getLogger("mtdispatch.tasks")


def notify_comment(comment_id: int) -> str:
    """Email the entry's author about a new comment (with its moderation state)."""
    comment = Comment.objects.select_related("entry__author", "entry__blog").filter(pk=comment_id).first()
    if comment is None or comment.status == Comment.Status.JUNK:
        return "skipped"
    author = comment.entry.author
    if author is None or not author.email:
        return "no recipient"
    entry = comment.entry
    link = reverse("admin:blog_comment_change", args=[comment.pk])
    body = (
        f"{comment.author} commented on “{entry.title}” ({comment.get_status_display()}):\n\n"
        f"{comment.body}\n\nModerate: {link}\n"
    )
    send_mail(f"[{entry.blog.name}] New comment on “{entry.title}”", body, None, [author.email])
    return author.email


def ping_update_services(blog_id: int) -> dict[str, str]:
    """weblogUpdates.ping each configured update service (MT's update pings); an error is raised so
    django-q2 records the task as failed and retries it."""
    blog = Blog.objects.get(pk=blog_id)
    results: dict[str, str] = {}
    failures = []
    for url in get_config()["PING_URLS"]:
        try:
            proxy = xmlrpc.client.ServerProxy(url, allow_none=True)
            answer = proxy.weblogUpdates.ping(blog.name, blog.site_url)
            results[url] = str(answer)
        except (OSError, xmlrpc.client.Error) as exc:
            failures.append(f"{url}: {exc}")
    if failures:
        raise RuntimeError("Update ping failed: " + "; ".join(failures))
    return results
