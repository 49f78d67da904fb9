"""Publishing safety, tried as a staff user with limited rights and as a template editor would:
templates are untrusted code (a sandbox of read-only views), output goes only under configured site-root bases
and only as web files."""
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from blog.models import Comment
from publishqueue.models import ArchiveMapping, FileInfo, Template
from publishqueue.paths import PathError, check_site_root, resolve_output_path
from publishqueue.publisher import PublishError, publish_file
from publishqueue.services import publish_templates
from tests.factories import CommentFactory, EntryFactory, UserFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def blog(tmp_path):
    return blog_with_templates(tmp_path / "site", mode="static")


def staff_with(*codenames: str):
    user = UserFactory(username="editor", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


EDITOR = ("view_blog", "change_blog", "add_template", "change_template", "view_template", "add_archivemapping",
          "change_archivemapping", "view_archivemapping")


# -- 1. code execution from the admin: every step of the repro is refused ---------------------------------


def test_a_staff_user_without_the_location_permission_cannot_move_a_blogs_site_root(blog):
    client = staff_with(*EDITOR)
    url = reverse("admin:blog_blog_change", args=[blog.pk])
    data = admin_form_data(client.get(url))
    assert "site_root" not in data  # shown read-only
    data.update(site_root=str(settings.BASE_DIR), name="Renamed")
    assert client.post(url, data).status_code == 302
    blog.refresh_from_db()
    assert (blog.name, blog.site_root) != ("Renamed", str(settings.BASE_DIR))
    assert blog.site_root != str(settings.BASE_DIR)


@pytest.mark.parametrize("where", ["project", "var", "python", "outside the bases"])
def test_a_site_root_only_under_the_configured_bases_and_never_among_code(blog, admin_client, where, tmp_path):
    import sys

    root = {"project": settings.BASE_DIR, "var": Path(settings.VAR_DIR) / "site", "python": sys.prefix,
            "outside the bases": "/srv/elsewhere"}[where]
    url = reverse("admin:blog_blog_change", args=[blog.pk])
    data = admin_form_data(admin_client.get(url))
    data["site_root"] = str(root)
    response = admin_client.post(url, data)
    assert response.status_code == 200  # the form again, with the error
    assert "site_root" in response.context["adminform"].form.errors
    with pytest.raises(PathError):
        check_site_root(str(root))


@pytest.mark.parametrize("pattern", ["sitecustomize.py", "x.php", "cgi-bin/x.cgi", ".htaccess", "a/.hidden/x.html",
                                     "index"])
def test_a_mapping_writes_only_web_files(blog, pattern):
    client = staff_with(*EDITOR)
    url = reverse("admin:publishqueue_template_add")
    data = admin_form_data(client.get(url))
    data.update({
        "site": blog.pk, "name": "Evil", "kind": "index", "mode": "static", "source": "import os",
        "mappings-TOTAL_FORMS": "1", "mappings-0-archive_type": "index", "mappings-0-path_pattern": pattern,
        "mappings-0-is_preferred": "on",
    })
    response = client.post(url, data)
    assert response.status_code == 200, "the form should come back with the error"
    assert not Template.objects.filter(name="Evil").exists()
    assert "web file" in response.content.decode() or "hidden" in response.content.decode()


def test_the_publisher_refuses_what_the_admin_would_have_refused(blog, tmp_path):
    """Rows changed behind the admin's back (a shell, a bug, an older release) still cannot write code."""
    template = Template.objects.create(site=blog, name="Evil", kind="index", source="import os  # pwned")
    mapping = ArchiveMapping.objects.create(template=template, archive_type="index", path_pattern="sitecustomize.py")
    report = publish_templates(templates=[template])
    assert report.written == 0 and "not a web file" in " ".join(report.errors)
    with pytest.raises(PublishError, match="not a web file"):
        publish_file(fileinfo=FileInfo.objects.select_related("site", "template").get(template=template))
    type(blog).objects.filter(pk=blog.pk).update(site_root=str(settings.BASE_DIR))
    ArchiveMapping.objects.filter(pk=mapping.pk).update(path_pattern="owned.html")
    report = publish_templates(templates=[Template.objects.select_related("site").get(pk=template.pk)])
    assert report.written == 0 and "site root" in " ".join(report.errors)
    assert not list(Path(settings.BASE_DIR).glob("owned.html"))
    assert not list(Path(settings.BASE_DIR).glob("sitecustomize.py"))


@override_settings(PUBLISHQUEUE={"SITE_ROOTS": []})
def test_with_no_base_configured_nothing_is_written(tmp_path):
    with pytest.raises(PathError, match="none are configured"):
        resolve_output_path(str(tmp_path), "index.html")


# -- 2. secrets through templates: templates see read-only views, never model instances ---------------------


ESCAPES = [
    "{{ entries.0.author.password }}",
    "{{ entries.0.author.email }}",
    "{{ entries.0.author.logentry_set.all }}",
    "{% for e in entries %}{{ e.author.logentry_set.all.0.content_type.get_all_objects_for_this_type }}{% endfor %}",
    "{{ blog.templates.all }}",
    "{{ blog.entries.all }}",
    "{{ blog.site_root }}",
    "{{ entries.0.categories.all.0.entries.all }}",
    "{{ entries.0.blog.comment_set }}",
    "{{ settings.SECRET_KEY }}",
    "{{ entries.0.delete }}",
    "{{ entries.0.save }}",
    "{{ all_categories.0.blog }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_templates_cannot_reach_secrets_or_side_effects(blog, source, client):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True, email="root@example.com")
    entry = EntryFactory(blog=blog, author=admin)
    template = Template.objects.create(site=blog, name="Leak", kind="index", mode="dynamic", source=f"[{source}]")
    ArchiveMapping.objects.create(template=template, archive_type="index", path_pattern="leak.html")
    publish_templates(templates=[template])
    response = client.get("/blog/leak.html")  # anonymous, Dynamically published
    assert response.status_code == 200
    assert response.content.decode() == "[]"
    assert type(entry).objects.filter(pk=entry.pk).exists()


def test_commenters_email_and_ip_are_not_published(blog, tmp_path):
    entry = EntryFactory(blog=blog)
    CommentFactory(entry=entry, email="reader@example.com", ip="203.0.113.7", status=Comment.Status.APPROVED)
    Template.objects.filter(site=blog, identifier="entry").update(
        source="{% for c in comments %}[{{ c.author }}|{{ c.email }}|{{ c.ip }}|{{ c.entry.author }}]{% endfor %}"
    )
    publish_templates(templates=blog.templates.filter(identifier="entry"))
    page = next((tmp_path / "site").rglob(f"{entry.slug}.html")).read_text()
    assert page == "[Reader|||]"


@pytest.mark.parametrize("source", ["{{ entry.__class__ }}", "{{ entry._meta }}", "{% debug %}", "{% load static %}"])
def test_escapes_by_name_are_template_errors_shown_in_the_admin(blog, admin_client, source):
    template = blog.templates.get(identifier="entry")
    url = reverse("admin:publishqueue_template_change", args=[template.pk])
    data = admin_form_data(admin_client.get(url))
    data["source"] = source
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "does not compile" in response.content.decode()


def test_the_template_admin_lists_the_variables_of_its_archive_types(blog, admin_client):
    template = blog.templates.get(identifier="entry")
    html = admin_client.get(reverse("admin:publishqueue_template_change", args=[template.pk])).content.decode()
    for name in ("previous_entry", "comments_open", "all_categories", "permalink", "display_name"):
        assert f"<code>{name}</code>" in html
    assert "<code>period_start</code>" not in html  # not a date archive
