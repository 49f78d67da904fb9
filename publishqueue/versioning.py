"""The blog's templates version: the key under which compiled templates are cached."""
from django.db.models import F

from blog.models import Blog


def bump_templates_version(instance) -> None:
    """Any template or mapping change makes every process recompile the blog's templates once."""
    blog_id = getattr(instance, "blog_id", None)
    blogs = Blog.objects.filter(pk=blog_id) if blog_id else Blog.objects.filter(templates__pk=instance.template_id)
    blogs.update(templates_version=F("templates_version") + 1)


def bump_content_version(instance) -> None:
    """Entries, categories and comments: invalidates the blog-wide lists cached for rendering."""
    blog_id = getattr(instance, "blog_id", None)
    blogs = Blog.objects.filter(pk=blog_id) if blog_id else Blog.objects.filter(entries__pk=instance.entry_id)
    blogs.update(content_version=F("content_version") + 1)
