"""The incremental publisher's oracle: after any sequence of admin operations, draining the queue leaves the site
exactly as a fresh full publish into an empty site root would (same files, byte for byte).

Hypothesis generates the sequences: entries created, edited, moved in time, (un)published, scheduled and coming
due, given an unpublish date (MT 6) and reaching it, given to another author, deleted; categories created, renamed,
deleted, (un)assigned; comments approved, unapproved, deleted; template and module edits; publishing-mode switches
of templates and of single mappings; archive mappings changed, added and deleted; blog settings; an author's name;
the blog's time zone (each sequence starts in the install's zone, Europe/Paris, or in Asia/Tokyo or
America/New_York, and may switch: entries at every hour, around month ends and New York's DST change, move between
days and months). The blog has every default template: the author, weekly and category-monthly archives and the
RSS and per-category feeds too. Each operation goes through the same services the admin calls. The queue is then
drained by the real worker loop, and the site root compared with a full publish of the Statically and Via Publish
Queue files (each by its own mode: its mapping's or its template's) into an empty directory (Manually published
files are, by definition, only as fresh as their last publish, so both sides leave them out).

Dynamically published pages are served from a cache (``publishqueue.dynamic``): after the setup and after every
operation, every path of the blog is requested from the app (Django's test client), which fills the cache; the
Dynamic pages served must equal a fresh render made with every per-process render cache emptied (compiled
templates, site-wide variables, cached modules), and the other paths must serve the file on disk (or nothing): a
page cached before an operation is never served after it if the operation changed it or what is at its path.

CI runs ``ORACLE_EXAMPLES`` sequences (default 25) on SQLite, and as many on PostgreSQL when
``MTDISPATCH_TEST_PG`` is set; a longer local run: ``ORACLE_EXAMPLES=2000 bin/test tests/publishqueue/test_oracle.py``
(``ORACLE_TALLY=FILE`` appends each sequence's length to FILE: how many sequences and operations it tried).
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blog import services
from blog.models import Blog, Category, Comment, Entry
from publishqueue.fileinfos import template_fileinfos
from publishqueue.models import ArchiveMapping, FileInfo, Job, JobError, PublishingMode, Template, mode_q
from publishqueue.publisher import PublishError, render_fileinfo
from publishqueue.rendering import permalink_patterns, renderers, site_variables
from publishqueue.services import ChangeReport, publish_many, publish_templates, template_saved
from publishqueue.views import dynamic_pages_at
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import UserFactory, blog_with_templates

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("ORACLE_EXAMPLES", "25"))
START = dt.datetime(2026, 1, 28, 12, tzinfo=dt.UTC)
MODES = [m.value for m in PublishingMode]
ENTRY_PATTERNS = ["{year}/{month}/{slug}.html", "{category}/{slug}.html", "entries/{id}.html"]
MONTHLY_PATTERNS = ["{year}/{month}/", "archives/{year}-{month}.html"]
# The blog's time zone ("": the install's, which the test sets to Europe/Paris).
ZONES = ["", "Asia/Tokyo", "America/New_York"]
INSTALL_ZONE = "Europe/Paris"
EDITABLE = [
    "Header", "Footer", "Sidebar", "Main Index", "Entry", "Category Archive", "Monthly Archive", "RSS Feed",
    "Category Feed", "Weekly Archive", "Author Archive", "Category Monthly Archive",
]
counter = itertools.count()

index = st.integers(min_value=0, max_value=50)
day = st.integers(min_value=0, max_value=70)
OPERATIONS = st.one_of(
    st.tuples(st.just("new_entry"), day, st.sampled_from(["published", "draft"]), st.lists(index, max_size=2)),
    st.tuples(st.just("edit_entry"), index, st.sampled_from(["title", "slug", "date", "status", "body"]), day),
    st.tuples(st.just("entry_categories"), index, st.lists(index, max_size=2)),
    st.tuples(st.just("delete_entry"), index),
    st.tuples(st.just("schedule"), day),
    st.tuples(st.just("schedule_unpublish"), index, st.integers(min_value=0, max_value=300)),
    st.tuples(st.just("come_due"),),
    st.tuples(st.just("entry_author"), index),
    st.tuples(st.just("new_category"),),
    st.tuples(st.just("rename_category"), index, st.booleans()),
    st.tuples(st.just("delete_category"), index),
    st.tuples(st.just("comment"), index),
    st.tuples(st.just("moderate"), index, st.sampled_from(["approved", "pending", "junk"])),
    st.tuples(st.just("delete_comment"), index),
    st.tuples(st.just("edit_template"), st.sampled_from(EDITABLE)),
    st.tuples(st.just("mode"), st.sampled_from(EDITABLE[3:]), st.sampled_from(MODES)),
    st.tuples(st.just("mapping_mode"), st.sampled_from(EDITABLE[4:]), st.sampled_from(["", *MODES])),
    st.tuples(st.just("entry_mapping"), st.sampled_from(ENTRY_PATTERNS)),
    st.tuples(st.just("monthly_mapping"), st.sampled_from(MONTHLY_PATTERNS)),
    st.tuples(st.just("yearly_mapping"), st.booleans()),
    st.tuples(st.just("daily_mapping"), st.booleans()),
    st.tuples(st.just("time_zone"), st.sampled_from(ZONES)),
    st.tuples(st.just("blog_settings"), st.sampled_from(["name", "description"])),
    st.tuples(st.just("author_name"),),
    # The queue drained mid-sequence: the worker's process caches (entries, site-wide variables, cached modules,
    # compiled templates) then hold what later operations change.
    st.tuples(st.just("drain"),),
)


class Scenario:
    """One blog and the operations on it, as the admin would do them."""

    def __init__(self, root: Path, zone: str = "") -> None:
        self.root = root
        self.author = UserFactory(username=f"author{next(counter)}", first_name="Ann")
        self.other_author = UserFactory(username=f"author{next(counter)}", first_name="Bob")
        # A URL of its own: the examples' blogs share the test database, and the app serves each one's paths.
        self.blog = blog_with_templates(root / "site", mode="queue", name="Oracle", time_zone=zone, all_templates=True,
                                        site_url=f"http://testserver/oracle-{next(counter)}/")
        for mode, name in zip(["static", "queue", "static"], ["Entry", "Main Index", "Monthly Archive"], strict=True):
            Template.objects.filter(site=self.blog, name=name).update(mode=mode)
        self.categories = [Category.objects.create(blog=self.blog, label=f"Cat {n}", slug=f"cat-{n}") for n in range(2)]
        for n in range(3):
            self.new_entry(n * 20, "published", [n])
        publish_templates(templates=self.blog.templates.exclude(kind="module"), queue=True)  # a published site
        drain()

    def pick(self, items, i):
        return items[i % len(items)] if items else None

    def entries(self):
        return list(Entry.objects.filter(blog=self.blog).order_by("pk"))

    def comments(self):
        return list(Comment.objects.filter(entry__blog=self.blog).order_by("pk"))

    def apply(self, op: tuple) -> None:
        getattr(self, op[0])(*op[1:])

    # -- entries --------------------------------------------------------------------------------------

    def new_entry(self, days, status, category_indexes) -> None:
        n = next(counter)
        entry = Entry(blog=self.blog, title=f"Entry {n}", slug=f"entry-{n}", body=f"Body {n}", status=status,
                      published_on=START + dt.timedelta(days=days, hours=n % 24), author=self.author)
        cats = {self.pick(self.categories, i) for i in category_indexes} - {None}
        services.save_entry(entry=entry, categories=cats)

    def edit_entry(self, i, what, days) -> None:
        entry = self.pick(self.entries(), i)
        if entry is None:
            return
        n = next(counter)
        if what == "title":
            entry.title = f"Retitled {n}"
        elif what == "slug":
            entry.slug = f"moved-{n}"
        elif what == "date":
            entry.published_on = START + dt.timedelta(days=days, hours=n % 24)
        elif what == "status":
            entry.status = "draft" if entry.status == "published" else "published"
        else:
            entry.body = f"New body {n}"
        services.save_entry(entry=entry)

    def entry_categories(self, i, category_indexes) -> None:
        entry = self.pick(self.entries(), i)
        if entry is not None:
            cats = {self.pick(self.categories, j) for j in category_indexes} - {None}
            services.save_entry(entry=entry, categories=cats)

    def delete_entry(self, i) -> None:
        entry = self.pick(self.entries(), i)
        if entry is not None:
            services.delete_entry(entry=entry)

    def schedule(self, days) -> None:
        n = next(counter)
        services.save_entry(entry=Entry(
            blog=self.blog, title=f"Scheduled {n}", slug=f"scheduled-{n}", status=Entry.Status.SCHEDULED,
            published_on=START + dt.timedelta(days=days, hours=n % 24), author=self.author,
        ))

    def schedule_unpublish(self, i, days) -> None:
        """MT 6's unpublish date, due (by come_due) or not."""
        entry = self.pick(self.entries(), i)
        if entry is not None:
            entry.unpublished_on = START + dt.timedelta(days=days)
            services.save_entry(entry=entry)

    def come_due(self) -> None:
        services.publish_due_entries(now=START + dt.timedelta(days=200))
        services.unpublish_due_entries(now=START + dt.timedelta(days=200))

    def entry_author(self, i) -> None:
        entry = self.pick(self.entries(), i)
        if entry is not None:
            entry.author = self.other_author if entry.author_id == self.author.pk else self.author
            services.save_entry(entry=entry)

    # -- categories -----------------------------------------------------------------------------------

    def new_category(self) -> None:
        n = next(counter)
        category = Category(blog=self.blog, label=f"Cat {n}", slug=f"cat-{n}")
        services.save_category(category=category)
        self.categories.append(category)

    def rename_category(self, i, slug_too) -> None:
        category = self.pick(self.categories, i)
        if category is None:
            return
        before = services.shown_state(category)
        n = next(counter)
        category.label = f"Renamed {n}"
        if slug_too:
            category.slug = f"renamed-{n}"
        services.save_category(category=category, before=before)

    def delete_category(self, i) -> None:
        category = self.pick(self.categories, i)
        if category is not None:
            self.categories.remove(category)
            services.delete_category(category=category)

    # -- comments -------------------------------------------------------------------------------------

    def comment(self, i) -> None:
        entry = self.pick([e for e in self.entries() if e.status == "published"], i)
        if entry is not None:
            comment = Comment.objects.create(entry=entry, author="Reader", body="<p>Hi</p>", status="approved")
            services.comment_changed(comment=comment, was_approved=False)

    def moderate(self, i, status) -> None:
        comment = self.pick(self.comments(), i)
        if comment is not None:
            services.set_comment_status(comments=[comment], status=status)

    def delete_comment(self, i) -> None:
        comment = self.pick(self.comments(), i)
        if comment is not None:
            services.delete_comment(comment=comment)

    # -- templates, modes, mappings, settings ---------------------------------------------------------

    def template(self, name) -> Template:
        return Template.objects.select_related("site").get(site=self.blog, name=name)

    def edit_template(self, name) -> None:
        template = self.template(name)
        template.source += f"<!-- edit {next(counter)} -->"
        template.version += 1
        template.save()
        template_saved(template=template, previous_mode=template.mode)

    def mode(self, name, mode) -> None:
        template = self.template(name)
        previous, template.mode = template.mode, mode
        template.save()
        template_saved(template=template, previous_mode=previous)

    def _mapping_change(self, name, change) -> None:
        """A change to a template's mappings as the template admin's inline saves it: model saves (their signals
        bump the site's templates version), then the template's save with the permalinks from before."""
        template = self.template(name)
        before = permalink_patterns(self.blog.pk)
        change(template)
        template_saved(template=self.template(name), previous_mode=template.mode, previous_permalinks=before)

    def mapping_mode(self, name, mode) -> None:
        """A mapping's own mode (MT's templatemap build type)."""

        def change(template):
            mapping = template.mappings.order_by("pk").first()
            mapping.mode = mode
            mapping.save()

        self._mapping_change(name, change)

    def _remap(self, name, archive_type, pattern) -> None:
        def change(template):
            for mapping in ArchiveMapping.objects.filter(template=template, archive_type=archive_type):
                mapping.path_pattern = pattern
                mapping.save()

        self._mapping_change(name, change)

    def entry_mapping(self, pattern) -> None:
        self._remap("Entry", "individual", pattern)

    def monthly_mapping(self, pattern) -> None:
        self._remap("Monthly Archive", "monthly", pattern)

    def yearly_mapping(self, add) -> None:
        def change(template):
            yearly = ArchiveMapping.objects.filter(template=template, archive_type="yearly")
            if add and not yearly.exists():
                ArchiveMapping.objects.create(template=template, archive_type="yearly", path_pattern="{year}/")
            elif not add and yearly.exists():
                yearly.get().delete()

        self._mapping_change("Monthly Archive", change)

    def daily_mapping(self, add) -> None:
        template = self.template("Monthly Archive")
        daily = ArchiveMapping.objects.filter(template=template, archive_type="daily")
        if add and not daily.exists():
            ArchiveMapping.objects.create(template=template, archive_type="daily", path_pattern="{year}/{month}/{day}/")
        elif not add and daily.exists():
            daily.get().delete()
        template_saved(template=self.template("Monthly Archive"), previous_mode=template.mode)

    def time_zone(self, zone) -> None:
        blog = Blog.objects.get(pk=self.blog.pk)
        before = services.shown_state(blog)
        blog.time_zone = zone
        services.save_blog(blog=blog, before=before)
        self.blog = blog

    def blog_settings(self, field) -> None:
        blog = Blog.objects.get(pk=self.blog.pk)
        before = services.shown_state(blog)
        setattr(blog, field, f"{field} {next(counter)}")
        services.save_blog(blog=blog, before=before)
        self.blog = blog

    def author_name(self) -> None:
        self.author.first_name = f"Ann {next(counter)}"
        self.author.save()

    def drain(self) -> None:
        drain()


def drain() -> None:
    worker = Worker(WorkerOptions(load=25, periodic=False, background=False), worker_id=f"oracle:{os.getpid()}:1")
    result = worker.run()
    # every job done (a job changed while running runs again)
    assert not Job.objects.exists(), (result, list(Job.objects.values(
        "kind", "unique_key", "grabbed_by", "attempts", "failed_at", "priority"))[:3])
    assert not JobError.objects.exists(), list(JobError.objects.values_list("message", flat=True)[:3])


def site_files(root: Path, skip: set[str]) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*") if p.is_file() and str(p.relative_to(root)) not in skip
    }


def fresh_publish(blog: Blog, into: Path) -> None:
    """Every file of the Statically and Via Publish Queue templates, published into an empty site root, with the
    process's render caches empty (the worker's, in this process, are what is checked)."""
    forget_render_caches()
    blog = Blog.objects.get(pk=blog.pk)
    blog.site_root = str(into)
    Blog.objects.filter(pk=blog.pk).update(site_root=str(into))
    FileInfo.objects.filter(site=blog).update(published_path="", content_hash="")
    report = ChangeReport()
    for template in Template.objects.filter(site=blog).exclude(kind="module").select_related("site"):
        # Each file by its own mode: its mapping's, or its template's.
        publish_many([fi for fi in template_fileinfos(template) if fi.mode in ("static", "queue")], report)
    assert not report.errors, report.errors


def manual_paths(blog: Blog) -> set[str]:
    manual = FileInfo.objects.filter(mode_q(["manual"], via="mapping__"), site=blog)
    return set(manual.values_list("path", flat=True)) | set(manual.values_list("published_path", flat=True))


def check_cached_pages(blog: Blog, operations: list[tuple]) -> None:
    """Every path of the blog, as the app serves it (Dynamic pages from their cache), is what it should be now: a
    fresh render of its Dynamic page, or the file on disk, or nothing."""
    blog = Blog.objects.get(pk=blog.pk)
    paths = sorted(set(FileInfo.objects.filter(site=blog).values_list("path", flat=True)))
    client = Client(HTTP_HOST=blog.site_host)
    served = {path: client.get(blog.site_path + path) for path in paths}
    kept = forget_render_caches()
    try:
        _check_served(blog, served, operations)
    finally:  # the process's caches as they were: the worker and the requests of this process go on with them
        for cache, items in kept:
            cache.clear()
            cache._items.update(items)


def forget_render_caches() -> list[tuple]:
    """Empty the process's render caches (compiled templates with their cached modules, site-wide variables;
    single pages never use the workers' entries); returns what they held."""
    kept = [(cache, cache._items.copy()) for cache in (renderers, site_variables)]
    for cache, _ in kept:
        cache.clear()
    return kept


def _check_served(blog: Blog, served: dict, operations: list[tuple]) -> None:
    for path, response in served.items():
        body = None
        if response.status_code == 200:
            body = b"".join(response.streaming_content) if response.streaming else response.content
        response.close()
        pages = dynamic_pages_at(blog, path)  # the view serves the first of these whose object is there
        if pages:
            try:
                fresh = next((content for content in map(render_fileinfo, pages) if content is not None), None)
            except PublishError:
                assert response.status_code == 500, (operations, path)
                continue
            expected = fresh.encode() if fresh is not None else None
        else:
            on_disk = Path(blog.site_root) / path
            expected = on_disk.read_bytes() if on_disk.is_file() else None
        assert body == expected, (operations, path, response.status_code)


def check_sequence(operations: list[tuple], zone: str = "") -> None:
    if os.environ.get("ORACLE_TALLY"):  # a long run's count of sequences and operations (one line per sequence)
        with open(os.environ["ORACLE_TALLY"], "a") as tally:
            tally.write(f"{len(operations)}\n")
    with tempfile.TemporaryDirectory(prefix="oracle-") as tmp, override_settings(TIME_ZONE=INSTALL_ZONE):
        scenario = Scenario(Path(tmp), zone)
        check_cached_pages(scenario.blog, [])
        for n, op in enumerate(operations):
            scenario.apply(op)
            check_cached_pages(scenario.blog, operations[: n + 1])
        drain()
        skip = manual_paths(scenario.blog)
        incremental = site_files(Path(tmp) / "site", skip)
        fresh_publish(scenario.blog, Path(tmp) / "fresh")
        expected = site_files(Path(tmp) / "fresh", skip)
        assert sorted(incremental) == sorted(expected), (operations, set(incremental) ^ set(expected))
        for path, data in expected.items():
            assert incremental[path] == data, (operations, path)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@given(st.lists(OPERATIONS, min_size=1, max_size=12), st.sampled_from(ZONES))
def test_the_drained_queue_leaves_the_site_as_a_fresh_full_publish(operations, zone):
    check_sequence(operations, zone)


@pytest.mark.django_db(transaction=True)
def test_the_oracle_moves_entries_across_midnight_month_ends_and_dst_when_the_zone_changes():
    """A fixed sequence through the zones: entries late and early in the day around February's end and New York's
    DST change (March 8th, 2026), daily archives mapped, the zone switched twice."""
    check_sequence([
        ("daily_mapping", True), ("new_entry", 31, "published", [0]), ("new_entry", 39, "published", [1]),
        ("time_zone", "America/New_York"), ("edit_entry", 3, "date", 39), ("new_entry", 40, "published", []),
        ("time_zone", "Asia/Tokyo"), ("schedule", 31), ("come_due",), ("yearly_mapping", True),
    ], zone="")


@pytest.mark.django_db(transaction=True)
def test_the_oracle_serves_no_stale_dynamic_page_when_scheduled_entries_come_due():
    """Dynamic pages cached before scheduled entries come due (a status flip by a queryset update, which sends no
    post_save) are not served after it; and an author's rename reaches the Dynamic entry pages."""
    check_sequence([
        ("mode", "Main Index", "dynamic"), ("mode", "Entry", "dynamic"), ("schedule", 5),
        ("schedule_unpublish", 0, 10), ("come_due",), ("author_name",),
    ])


@pytest.mark.django_db(transaction=True)
def test_the_oracle_sees_what_a_worker_kept_from_before_a_change():
    """A worker that drained before a change keeps its caches (site-wide variables, cached modules, entries) under
    the content version: blog settings and category moves must bump it (a rename left the old name on 6 files of a
    long-lived worker; the oracle did not see it while it emptied the process's caches after every operation)."""
    check_sequence([
        ("blog_settings", "name"), ("drain",), ("blog_settings", "description"), ("drain",),
        ("rename_category", 0, True), ("drain",), ("time_zone", "Asia/Tokyo"),
    ])


@pytest.mark.slow
@pytest.mark.postgres
def test_the_oracle_on_postgresql():
    """The same property on PostgreSQL (the worker claims with SKIP LOCKED there): pytest in a subprocess whose
    DATABASE_URL names the server, so that pytest-django creates its test database there."""
    admin = os.environ.get("MTDISPATCH_TEST_PG")
    if not admin:
        pytest.skip("set MTDISPATCH_TEST_PG (.ci/run does) to run on PostgreSQL")
    url = admin.rsplit("/", 1)[0] + f"/oracle_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--create-db",
         f"{__file__}::test_the_drained_queue_leaves_the_site_as_a_fresh_full_publish"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
