"""Each blog's publishing activity log: every worker batch, Publish now, manage.py publish and statically
published change, with who, when, the counts and the files (linked in the admin); purged like the stats."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from blog import services
from publishqueue import periodic
from publishqueue.models import PublishActivity, Template
from publishqueue.services import publish_templates
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, UserFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)
WHEN = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)


def drain(load: int = 100) -> Worker:
    worker = Worker(WorkerOptions(load=load, periodic=False, background=False), worker_id="host:42:1")
    worker.run()
    return worker


def new_entry(blog, slug="hello"):
    services.save_entry(entry=EntryFactory.build(blog=blog, slug=slug, title=slug.title(), published_on=WHEN))


def test_a_worker_batch_is_one_run_per_blog_listing_its_files(tmp_path):
    blogs = [blog_with_templates(tmp_path / name, mode="queue", site_url=f"http://{name}.example/")
             for name in ("a", "b")]
    for blog in blogs:
        new_entry(blog)
    with CaptureQueriesContext(connection) as queries:
        drain()
    inserts = [q["sql"] for q in queries if re.match(r'INSERT INTO "?publishqueue_publishactivity', q["sql"])]
    assert len(inserts) == 1  # one batch: one INSERT, a row per blog
    for blog in blogs:
        run = PublishActivity.objects.get(site=blog)
        assert (run.kind, run.actor) == ("queue", "host:42:1")
        assert (run.written, run.unchanged, run.removed, run.failed) == (5, 0, 0, 0)
        assert sorted(path for path, status in run.files) == [
            "2026/05/hello.html", "2026/05/index.html", "atom.xml", "index.html", "styles.css",
        ]
        assert run.started <= run.finished


def test_failed_and_unchanged_files_are_counted_and_failures_listed_first(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    new_entry(blog)
    drain()
    main = Template.objects.get(site=blog, name="Main Index")
    main.source = "{{ entries|first|no_such_filter }}"
    main.save()  # a new version of the blog's templates
    publish_templates(templates=blog.templates.exclude(kind="module").select_related("site"), queue=True)
    drain()
    run = PublishActivity.objects.filter(site=blog).first()  # the latest
    assert (run.written, run.unchanged, run.failed) == (0, 4, 1)
    path, status, error = run.files[0]
    assert (path, status) == ("index.html", "failed") and "no_such_filter" in error


def test_publish_now_and_manage_py_publish_say_who(tmp_path, client):
    blog = blog_with_templates(tmp_path / "site", mode="manual")
    new_entry(blog)
    admin = UserFactory(username="editor", is_staff=True, is_superuser=True)
    client.force_login(admin)
    main = Template.objects.get(site=blog, name="Main Index")
    client.post(reverse("admin:publishqueue_template_publish", args=[main.pk]))  # a publish run: the queue's
    from publishqueue.models import PublishRun
    from publishqueue.worker import Worker, WorkerOptions

    assert PublishRun.objects.get().started_by == admin
    Worker(WorkerOptions(periodic=False, background=False), worker_id="test:1:1").run()
    run = PublishActivity.objects.get()
    assert (run.kind, run.actor, run.written, run.files) == ("queue", "test:1:1", 1, [["index.html", "written"]])
    call_command("publish", "--site", str(blog.pk), verbosity=0)
    run = PublishActivity.objects.first()
    assert run.kind == "publish" and run.actor.startswith("manage.py publish (")
    assert run.unchanged == 1 and run.written == 4


def test_a_change_published_statically_is_logged_as_the_signed_in_users(tmp_path, client):
    blog = blog_with_templates(tmp_path / "site", mode="static")
    entry = EntryFactory(blog=blog, slug="hello", published_on=WHEN)
    client.force_login(UserFactory(username="writer", is_staff=True, is_superuser=True))
    from tests.helpers import admin_form_data

    url = reverse("admin:blog_entry_change", args=[entry.pk])
    data = {**admin_form_data(client.get(url)), "title": "Retitled"}
    assert client.post(url, data).status_code == 302
    run = PublishActivity.objects.get()
    assert (run.kind, run.actor) == ("change", "writer")
    assert ["2026/05/hello.html", "written"] in run.files


def test_the_admin_lists_a_blogs_runs_and_links_their_files(tmp_path, client):
    blog = blog_with_templates(tmp_path / "site", mode="queue", site_url="http://a.example/")
    other = blog_with_templates(tmp_path / "other", mode="queue", site_url="http://b.example/")
    new_entry(blog)
    new_entry(other, "elsewhere")
    drain()
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    blogs = client.get(reverse("admin:blog_blog_changelist")).content.decode()
    log_url = reverse("admin:publishqueue_publishactivity_changelist") + f"?site__id__exact={blog.pk}"
    assert log_url.replace("&", "&amp;") in blogs or log_url in blogs
    listing = client.get(log_url).content.decode()
    assert "host:42:1" in listing and listing.count('class="field-counts"') == 1
    assert "5 written, 0 unchanged, 0 removed, 0 failed" in listing
    run = PublishActivity.objects.get(site=blog)
    page = client.get(reverse("admin:publishqueue_publishactivity_change", args=[run.pk])).content.decode()
    assert '<a href="http://a.example/2026/05/hello.html">2026/05/hello.html</a>' in page
    assert "5 written, 0 unchanged, 0 removed, 0 failed" in page
    assert "elsewhere" not in page


def test_runs_are_purged_with_the_stats(tmp_path):
    blog = blog_with_templates(tmp_path / "site")
    now = timezone.now()
    PublishActivity.objects.create(site=blog, kind="queue", finished=now - dt.timedelta(days=31))
    kept = PublishActivity.objects.create(site=blog, kind="queue", finished=now - dt.timedelta(days=1))
    periodic.purge_history(now)
    assert list(PublishActivity.objects.all()) == [kept]
