"""Test data. ``blog_with_templates`` gives a blog whose site root is a temp directory."""
from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from blog.defaults import CORE_TEMPLATES, install_default_templates
from blog.models import Blog, Category, Comment, Entry

BASE_DATE = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class BlogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Blog

    name = factory.Sequence(lambda n: f"Blog {n}")
    site_url = "http://testserver/blog/"
    site_root = "/nonexistent"
    comment_policy = Blog.CommentPolicy.MODERATE
    comment_throttle_seconds = 30


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    blog = factory.SubFactory(BlogFactory)
    label = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")


class EntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Entry

    blog = factory.SubFactory(BlogFactory)
    title = factory.Sequence(lambda n: f"Entry {n}")
    slug = factory.Sequence(lambda n: f"entry-{n}")
    body = "Some *markdown* text."
    status = Entry.Status.PUBLISHED
    published_on = factory.Sequence(lambda n: BASE_DATE + dt.timedelta(days=n))


class CommentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Comment

    entry = factory.SubFactory(EntryFactory)
    author = "Reader"
    body = "<p>Nice.</p>"
    status = Comment.Status.APPROVED
    created = factory.LazyFunction(timezone.now)


def blog_with_templates(site_root, *, mode: str = "static", all_templates: bool = False, **kwargs) -> Blog:
    """A blog with the default templates: the core set (index, feed, entry, category and monthly archives, so that
    tests counting files stay put), or with ``all_templates`` every default (RSS, category feeds, weekly, author and
    category-monthly archives too)."""
    blog = BlogFactory(site_root=str(site_root), **kwargs)
    install_default_templates(blog=blog, mode=mode, names=None if all_templates else CORE_TEMPLATES)
    blog.refresh_from_db()
    return blog


def set_mode(blog: Blog, mode: str, *names: str) -> None:
    """Set the publishing mode of the named templates (all non-modules when none are named)."""
    templates = blog.templates.exclude(kind="module")
    if names:
        templates = templates.filter(name__in=names)
    for template in templates:
        template.mode = mode
        template.save()
