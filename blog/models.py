"""Blog content: blogs, entries, categories and comments."""
from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

import markdown
from django.conf import settings
from django.db import connection, models
from django.utils import timezone

from publishqueue.sites import AbstractSite


class Blog(AbstractSite):
    """A blog: the site publishqueue publishes (``PUBLISHQUEUE_SITE_MODEL``), with its comment policy."""

    class CommentPolicy(models.TextChoices):
        MODERATE = "moderate", "Hold for moderation"
        AUTO_APPROVE = "approve", "Approve immediately"
        CLOSED = "closed", "Closed"

    description = models.TextField(blank=True)
    comment_policy = models.CharField(max_length=10, choices=CommentPolicy.choices, default=CommentPolicy.MODERATE)
    comment_throttle_seconds = models.PositiveIntegerField(
        default=20, help_text="Minimum seconds between two comments from the same IP address on this blog."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta(AbstractSite.Meta):
        ordering = ["name"]


class Category(models.Model):
    blog = models.ForeignKey(Blog, on_delete=models.CASCADE, related_name="categories")
    label = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["label"]
        verbose_name_plural = "categories"
        constraints = [models.UniqueConstraint(fields=["blog", "slug"], name="category_unique_slug_per_blog")]

    def __str__(self) -> str:
        return self.label


class EntryQuerySet(models.QuerySet):
    def live(self) -> EntryQuerySet:
        return self.filter(status=Entry.Status.PUBLISHED)

    def neighbour_ids(self, blog_id: int, when, pk: int) -> tuple[int | None, int | None]:
        """Ids of the live entries just before and after (``when``, ``pk``) in the blog, by date then id."""
        return self.neighbours_of(blog_id, {pk: when})[pk]

    def neighbours_of(self, blog_id: int, entries: dict[int, object]) -> dict[int, tuple[int | None, int | None]]:
        """``neighbour_ids`` for many entries ({pk: published_on}, the entries need not be live) in one query
        per NEIGHBOURS_PER_QUERY: for each, two correlated subqueries that each stop at the first row of the
        (blog, status, published_on) index past it (row-value comparisons keep them on the index)."""
        table = self.model._meta.db_table
        side = (
            f"(SELECT id FROM {table} WHERE blog_id = %s AND status = %s AND (published_on, id) {{op}} "
            "(wanted.at, wanted.pk) ORDER BY published_on {order}, id {order} LIMIT 1)"
        )
        stamp = connection.ops.adapt_datetimefield_value
        found = {}
        items = list(entries.items())
        for start in range(0, len(items), NEIGHBOURS_PER_QUERY):
            chunk = items[start : start + NEIGHBOURS_PER_QUERY]
            sql = (
                f"WITH wanted (pk, at) AS (VALUES {', '.join(['(%s, %s)'] * len(chunk))}) SELECT wanted.pk, "
                f"{side.format(op='<', order='DESC')}, {side.format(op='>', order='ASC')} FROM wanted"
            )
            params = [v for pk, when in chunk for v in (pk, stamp(when))]
            params += [blog_id, Entry.Status.PUBLISHED] * 2
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                found.update((pk, (before, after)) for pk, before, after in cursor.fetchall())
        return found


# Two parameters an entry, under SQLite's historical limit of 999 bound parameters.
NEIGHBOURS_PER_QUERY = 400


_markdown = markdown.Markdown(extensions=["extra", "sane_lists"], output_format="html")


def render_markdown(text: str) -> str:
    """Markdown to HTML (entry bodies are written by trusted authors, as in MT)."""
    return _markdown.reset().convert(text)


class Entry(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"
        SCHEDULED = "scheduled", "Scheduled"
        UNPUBLISHED = "unpublished", "Unpublished"

    blog = models.ForeignKey(Blog, on_delete=models.CASCADE, related_name="entries")
    title = models.CharField(max_length=255)
    slug = models.SlugField(max_length=100, help_text="Basename of the entry's page; unique in the blog.")
    body = models.TextField(blank=True, help_text="Markdown.")
    body_html = models.TextField(blank=True, editable=False, help_text="The body as HTML, rendered when saved.")
    excerpt = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT, db_index=True)
    published_on = models.DateTimeField(
        default=timezone.now, db_index=True, help_text="Publication date; a Scheduled entry goes live then."
    )
    unpublished_on = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="Optional (MT 6's unpublish date): a Published entry is unpublished at this time.",
    )
    categories = models.ManyToManyField(Category, blank=True, related_name="entries")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    objects = EntryQuerySet.as_manager()

    class Meta:
        ordering = ["-published_on", "-id"]
        verbose_name_plural = "entries"
        constraints = [models.UniqueConstraint(fields=["blog", "slug"], name="entry_unique_slug_per_blog")]
        indexes = [models.Index(fields=["blog", "status", "published_on"], name="entry_blog_status_date")]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs) -> None:
        self.render_body()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "body" in update_fields:
            kwargs["update_fields"] = {*update_fields, "body_html"}
        super().save(*args, **kwargs)

    def render_body(self) -> None:
        """Render the Markdown body once, when the entry is written, rather than on every page that shows it
        (a category archive shows it for each of its entries). ``bulk_create`` callers call this themselves."""
        self.body_html = render_markdown(self.body)

    @cached_property
    def excerpt_text(self) -> str:
        if self.excerpt:
            return self.excerpt
        words = self.body.split()
        return " ".join(words[:40]) + (" …" if len(words) > 40 else "")

    @property
    def is_live(self) -> bool:
        return self.status == self.Status.PUBLISHED


def attach_categories(entries: Iterable[Entry], chunk: int = 500) -> list[Entry]:
    """Load the categories of many entries, as ``prefetch_related("categories")`` would (so that
    ``entry.categories.all()`` runs no query) but cheaper: a query for the links per ``chunk`` entries and one
    for the categories, each Category object shared by its entries, and one queryset per distinct set of
    categories rather than one cloned per entry (Django's prefetch clones one per instance: that dominated
    loading a listing of thousands of entries)."""
    entries = list(entries)
    links: dict[int, list[int]] = {entry.pk: [] for entry in entries}
    ids = list(links)
    through = Entry.categories.through.objects
    for start in range(0, len(ids), chunk):
        for entry_id, category_id in through.filter(entry_id__in=ids[start : start + chunk]).values_list(
            "entry_id", "category_id"
        ):
            links[entry_id].append(category_id)
    categories = Category.objects.in_bulk({pk for pks in links.values() for pk in pks})
    shared: dict[frozenset[int], models.QuerySet] = {}  # one evaluated queryset per set of categories
    for entry in entries:
        key = frozenset(pk for pk in links[entry.pk] if pk in categories)
        cached = shared.get(key)
        if cached is None:
            cached = shared[key] = Category._default_manager.all()
            cached._result_cache = sorted((categories[pk] for pk in key), key=lambda c: (c.label, c.pk))
            cached._prefetch_done = True
        entry._prefetched_objects_cache = {**getattr(entry, "_prefetched_objects_cache", {}), "categories": cached}
    return entries


def categories_of(entry: Entry) -> list[Category]:
    """``entry.categories.all()`` as a list: from ``attach_categories`` without building a related manager
    (Django builds one on every access: most of the cost of a loop over an entry's categories)."""
    cached = getattr(entry, "_prefetched_objects_cache", {}).get("categories")
    return list(cached if cached is not None else entry.categories.all())


class Comment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        JUNK = "junk", "Junk"

    entry = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="comments")
    author = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    url = models.URLField(blank=True)
    body = models.TextField(help_text="Sanitised HTML.")
    ip = models.GenericIPAddressField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            models.Index(fields=["ip", "created"], name="comment_ip_created"),
            # An entry's approved comments, in order (without it SQLite reads every approved comment).
            models.Index(fields=["entry", "status", "created"], name="comment_entry_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.author} on {self.entry}"


def blog_id_of(instance: Entry | Category | Comment) -> int | None:
    """The blog an entry, category or comment belongs to."""
    if isinstance(instance, Comment):
        return Entry.objects.filter(pk=instance.entry_id).values_list("blog_id", flat=True).first()
    return instance.blog_id
