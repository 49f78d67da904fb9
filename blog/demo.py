"""A demo blog with a few hundred entries, for trying mtdispatch out and for benchmarks."""
from __future__ import annotations

import datetime as dt
import random
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from publishqueue.versioning import bump_content_version

from .defaults import install_default_templates
from .models import Blog, Category, Comment, Entry

WORDS = (
    "publish queue template archive static dynamic worker process request entry comment category index "
    "feed render file server socket recycle priority lease retry backoff latency throughput editor blog "
    "system daemon periodic task signal graceful rolling pool child master memory cache page site"
).split()

CATEGORIES = ["News", "Releases", "Operations", "Templates", "Performance", "Community"]


@dataclass(frozen=True)
class DemoResult:
    blog: Blog
    entries: int
    username: str
    password: str | None


def _paragraphs(rng: random.Random, count: int) -> str:
    paras = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(30, 70))]
        words[0] = words[0].capitalize()
        paras.append(" ".join(words) + ".")
    return "\n\n".join(paras)


@transaction.atomic
def create_demo_blog(
    *, site_root: str, site_url: str, entries: int = 300, username: str = "admin", password: str | None = None,
    name: str = "mtdispatch demo", mode: str = "static", seed: int = 1,
) -> DemoResult:
    """Create (or top up) the demo blog, its default templates and an admin user."""
    rng = random.Random(seed)
    blog, created = Blog.objects.get_or_create(
        name=name,
        defaults={
            "site_url": site_url, "site_root": site_root, "description": "A demo of background publishing.",
            "comment_policy": Blog.CommentPolicy.MODERATE,
        },
    )
    if not created and blog.site_url != site_url:
        # Served on another port this time: every link and the stylesheet follow (the demo republishes).
        blog.site_url = site_url
        blog.save(update_fields=["site_url"])
        bump_content_version(blog.pk)
        blog.refresh_from_db()
    install_default_templates(blog=blog, mode=mode)
    categories = [
        Category.objects.get_or_create(blog=blog, slug=slugify(label), defaults={"label": label})[0]
        for label in CATEGORIES
    ]
    user, password = _admin_user(username, password)
    start = timezone.now() - dt.timedelta(days=2 * max(entries, 1))
    existing = blog.entries.count()
    new_entries = []
    for i in range(existing, entries):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))).capitalize()
        new_entries.append(
            Entry(
                blog=blog, title=title, slug=f"{slugify(title)[:80]}-{i + 1}", body=_paragraphs(rng, rng.randint(2, 5)),
                status=Entry.Status.PUBLISHED, published_on=start + dt.timedelta(days=2 * i, hours=rng.randint(0, 23)),
                author=user,
            )
        )
    for entry in new_entries:
        entry.render_body()
    Entry.objects.bulk_create(new_entries, batch_size=500)
    _categorise_and_comment(rng, blog, categories, existing)
    if new_entries:  # bulk_create sends no post_save: running workers' caches learn of them here
        bump_content_version(blog.pk)
    return DemoResult(blog=blog, entries=blog.entries.count(), username=username, password=password)


def _categorise_and_comment(rng: random.Random, blog: Blog, categories: list[Category], skip: int) -> None:
    through = Entry.categories.through
    links, comments = [], []
    for entry in blog.entries.order_by("id")[skip:]:
        for category in rng.sample(categories, rng.randint(1, 2)):
            links.append(through(entry_id=entry.pk, category_id=category.pk))
        for n in range(rng.choice([0, 0, 1, 2])):
            comments.append(
                Comment(
                    entry=entry, author=f"Reader {rng.randint(1, 99)}", body=f"<p>{_paragraphs(rng, 1)}</p>",
                    status=Comment.Status.APPROVED, created=entry.published_on + dt.timedelta(hours=n + 1),
                )
            )
    through.objects.bulk_create(links, batch_size=500)
    Comment.objects.bulk_create(comments, batch_size=500)


def _admin_user(username: str, password: str | None) -> tuple[object, str | None]:
    """The demo's superuser; a password is set (and returned) when the user is new or one is given."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
    if not (created or password):
        return user, None
    password = password or secrets.token_urlsafe(12)
    user.set_password(password)
    user.save(update_fields=["password"])
    return user, password
