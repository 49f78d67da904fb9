"""What templates see of the blog: read-only views with the documented fields, never model instances.

Templates are untrusted code (a template editor is not a superuser): a model instance would hand them its
related objects and managers (``entry.author.password``, ``author.logentry_set...``), its methods, and the
e-mail addresses and IP addresses of commenters. A view holds plain values (strings, numbers, dates, other
views, lists of views) copied from the instance, and nothing else; Django's template language refuses names
that start with an underscore, and a name a view does not have renders as nothing.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar


class ViewList(tuple):
    """A list of views; ``.all`` and ``.count`` are there for templates written against querysets."""

    @property
    def all(self) -> ViewList:
        return self

    @property
    def count(self) -> int:
        return len(self)


class View:
    """Base of the views: the fields, documented in ``FIELDS``, are set once and cannot be changed."""

    __slots__ = ()
    FIELDS: ClassVar[dict[str, str]] = {}

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __getitem__(self, name: str) -> Any:
        """Django's templates look a name up as a key first, then as an attribute: answering the key (for the
        view's own fields only) spares them an exception per variable, a fifth of the variable's cost."""
        if isinstance(name, str) and name in type(self).__slots__:
            try:
                return getattr(self, name)
            except AttributeError:
                pass
        raise KeyError(name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'id', '')}>"


class BlogView(View):
    FIELDS = {
        "id": "the blog's id", "name": "its name", "description": "its description",
        "site_url": "the URL of the published site (ends in /)", "created": "when it was created",
        "language": "the language its pages are in (a language code: en-us, fr)", "time_zone": "its time zone",
    }
    __slots__ = (*FIELDS, "pk")


class AuthorView(View):
    FIELDS = {
        "display_name": "the author's full name, or user name if none", "get_full_name": "the full name",
        "get_username": "the user name",
    }
    __slots__ = tuple(FIELDS)


class CategoryView(View):
    FIELDS = {
        "id": "the category's id", "label": "its label", "slug": "its basename", "description": "its description",
        "archive_url": "the URL of its archive page", "count": "how many published entries it has (sidebar)",
    }
    __slots__ = (*FIELDS, "pk")


class CommentView(View):
    FIELDS = {
        "id": "the comment's id", "author": "the commenter's name", "url": "the commenter's web site",
        "body": "the comment as sanitised HTML", "created": "when it was posted",
    }
    __slots__ = (*FIELDS, "pk")


class EntryView(View):
    FIELDS = {
        "id": "the entry's id", "title": "its title", "slug": "its basename", "body_html": "its body as HTML",
        "excerpt_text": "its excerpt, or the first 40 words", "excerpt": "its excerpt as written",
        "published_on": "its publication date", "modified": "when it was last changed",
        "permalink": "the URL of its page", "categories": "its categories (category views)",
        "author": "its author (display_name), or nothing",
    }
    __slots__ = (*FIELDS, "pk")


def blog_view(blog) -> BlogView:
    return BlogView(
        id=blog.pk, pk=blog.pk, name=blog.name, description=blog.description, site_url=blog.site_url,
        created=blog.created, language=blog.language_code, time_zone=str(blog.zone),
    )


def author_view(user) -> AuthorView | None:
    if user is None:
        return None
    full, username = user.get_full_name(), user.get_username()
    return AuthorView(display_name=full or username, get_full_name=full, get_username=username)


def category_view(category) -> CategoryView:
    return CategoryView(
        id=category.pk, pk=category.pk, label=category.label, slug=category.slug, description=category.description,
        archive_url=getattr(category, "archive_url", ""), count=getattr(category, "count", None),
    )


def comment_view(comment) -> CommentView:
    return CommentView(
        id=comment.pk, pk=comment.pk, author=comment.author, url=comment.url, body=comment.body,
        created=comment.created,
    )


class Deferred:
    """A view loaded when a template first uses it (Django's templates call callables): an entry shown only as
    a link does not load its author."""

    __slots__ = ("_load", "_value")

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load

    def __call__(self) -> Any:
        try:
            return self._value
        except AttributeError:
            self._value = self._load()
            return self._value


def shared_author_view(user) -> AuthorView:
    """One view per user object (a batch's entries share their authors' objects)."""
    try:
        return user._mt_view
    except AttributeError:
        user._mt_view = author_view(user)
        return user._mt_view


def entry_view(entry, categories) -> EntryView:
    """``categories``: the entry's categories (with their archive URLs)."""
    author = None
    if entry.author_id is not None:
        if type(entry).author.is_cached(entry):
            author = shared_author_view(entry.author)
        else:
            author = Deferred(lambda: shared_author_view(entry.author))
    return EntryView(
        id=entry.pk, pk=entry.pk, title=entry.title, slug=entry.slug, body_html=entry.body_html,
        excerpt_text=entry.excerpt_text, excerpt=entry.excerpt, published_on=entry.published_on,
        modified=entry.modified, permalink=getattr(entry, "permalink", ""),
        categories=ViewList(category_view(c) for c in categories), author=author,
    )


def documentation() -> dict[str, dict[str, str]]:
    """The fields of each view, for the template admin's reference."""
    return {cls.__name__: cls.FIELDS for cls in (BlogView, EntryView, CategoryView, CommentView, AuthorView)}

