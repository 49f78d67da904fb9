"""What each kind of change touches (MT's BuildDependencies)."""
import datetime as dt

import pytest

from blog import services
from blog.dependencies import EntryState, entry_change_contexts
from publishqueue.fileinfos import all_template_contexts
from publishqueue.models import Job, Template
from publishqueue.registry import ArchiveContext
from tests.factories import CategoryFactory, CommentFactory, EntryFactory, UserFactory, blog_with_templates, set_mode

pytestmark = pytest.mark.django_db


def keys(contexts):
    return {c.key for c in contexts}


@pytest.fixture
def blog(tmp_path):
    return blog_with_templates(tmp_path / "site", mode="queue")


@pytest.fixture
def three(blog):
    """Three live entries on consecutive days in March 2026."""
    news = CategoryFactory(blog=blog, slug="news")
    days = [dt.datetime(2026, 3, day, 12, tzinfo=dt.UTC) for day in (10, 11, 12)]
    entries = [EntryFactory(blog=blog, published_on=when) for when in days]
    for entry in entries:
        entry.categories.add(news)
    return entries


def test_entry_save_touches_its_page_neighbours_archives_and_indexes(blog, three):
    first, middle, last = three
    state = EntryState.of(middle)
    news = middle.categories.get()
    assert keys(entry_change_contexts(state, state)) == {
        "index",
        f"entry:{middle.pk}",
        f"entry:{first.pk}",
        f"entry:{last.pk}",
        f"category:{news.pk}",
        "monthly:2026-03-01",
        "yearly:2026-01-01",
        f"daily:{middle.published_on.date().isoformat()}",
        "weekly:2026-03-08",  # MT's weeks start on Sunday
        f"category-monthly:{news.pk}:2026-03-01",
    }


def test_an_entry_save_touches_its_old_and_new_authors_archives(blog, three):
    first, middle, last = three
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    middle.author = ann
    middle.save()
    before = EntryState.of(middle)
    middle.author = bob
    middle.save()
    touched = keys(entry_change_contexts(before, EntryState.of(middle)))
    assert {f"author:{ann.pk}", f"author:{bob.pk}"} <= touched


def test_a_moved_entry_touches_old_and_new_archives_and_neighbours(blog, three):
    first, middle, last = three
    before = EntryState.of(first)
    other = CategoryFactory(blog=blog, slug="other")
    late = EntryFactory(blog=blog, published_on=dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
    first.published_on = dt.datetime(2026, 6, 30, tzinfo=dt.UTC)
    first.save()
    first.categories.set([other])
    touched = keys(entry_change_contexts(before, EntryState.of(first)))
    assert {"monthly:2026-03-01", "monthly:2026-06-01"} <= touched
    assert {f"category:{middle.categories.get().pk}", f"category:{other.pk}"} <= touched
    assert {f"category-monthly:{other.pk}:2026-06-01"} <= touched
    # Old neighbour (middle) and new neighbours (last before it, late after it).
    assert {f"entry:{middle.pk}", f"entry:{last.pk}", f"entry:{late.pk}"} <= touched


def test_a_draft_that_was_never_live_touches_nothing(blog):
    draft = EntryFactory(blog=blog, status="draft")
    assert entry_change_contexts(None, EntryState.of(draft)) == set()


def test_unpublishing_touches_what_the_entry_was_in(blog, three):
    entry = three[1]
    before = EntryState.of(entry)
    entry.status = "unpublished"
    entry.save()
    touched = keys(entry_change_contexts(before, EntryState.of(entry)))
    assert f"entry:{entry.pk}" in touched and "monthly:2026-03-01" in touched


def test_comment_approval_republishes_entry_page_and_comment_indexes_only(blog, three):
    set_mode(blog, "queue")
    Template.objects.filter(site=blog, identifier="feed_atom").update(depends_on_comments=True)
    Job.objects.all().delete()
    comment = CommentFactory(entry=three[0], status="pending")
    services.set_comment_status(comments=[comment], status="approved")
    touched = set(Job.objects.values_list("fileinfo__template__identifier", "fileinfo__context_key"))
    assert touched == {("entry", f"entry:{three[0].pk}"), ("feed_atom", "index")}


def test_holding_a_pending_comment_touches_nothing(blog, three):
    Job.objects.all().delete()
    comment = CommentFactory(entry=three[0], status="pending")
    services.set_comment_status(comments=[comment], status="junk")
    assert not Job.objects.exists()


def test_template_save_queues_all_its_files_at_low_priority(blog, three):
    from publishqueue.services import template_saved

    Job.objects.all().delete()
    monthly = blog.templates.get(identifier="monthly_archive")
    template_saved(template=monthly, previous_mode="queue")
    jobs = Job.objects.filter(fileinfo__template=monthly)
    assert [j.fileinfo.context_key for j in jobs] == ["monthly:2026-03-01"]
    assert {j.priority for j in jobs} == {0}


def test_module_save_queues_the_files_of_templates_that_include_it(blog, three):
    from publishqueue.services import template_saved

    Job.objects.all().delete()
    sidebar = blog.templates.get(identifier="sidebar")
    template_saved(template=sidebar, previous_mode="queue")
    templates = set(Job.objects.values_list("fileinfo__template__identifier", flat=True))
    # The Sidebar is included by the Footer, which the page templates include (not the feed or CSS).
    assert templates == {"main_index", "entry", "category_archive", "monthly_archive"}


def test_all_contexts_of_a_template(blog, three):
    entry_template = blog.templates.get(identifier="entry")
    assert keys(all_template_contexts(entry_template)) == {f"entry:{e.pk}" for e in three}


def test_scheduled_entry_reaching_its_time_is_published_as_a_save(blog, three):
    Job.objects.all().delete()
    due = EntryFactory(blog=blog, status="scheduled", published_on=dt.datetime(2026, 3, 20, tzinfo=dt.UTC))
    later = EntryFactory(blog=blog, status="scheduled", published_on=dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
    assert services.publish_due_entries(now=dt.datetime(2026, 4, 1, tzinfo=dt.UTC)) == 1
    due.refresh_from_db()
    later.refresh_from_db()
    assert (due.status, later.status) == ("published", "scheduled")
    keys_queued = set(Job.objects.values_list("fileinfo__context_key", flat=True))
    assert {f"entry:{due.pk}", f"entry:{three[-1].pk}", "index", "monthly:2026-03-01"} <= keys_queued


def test_entry_save_cost_does_not_grow_with_the_blog(blog, django_assert_max_num_queries):
    """Same number of queries for a save in a 5-entry and a 200-entry blog (SPEC: independent of size)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def save_cost():
        entry = EntryFactory(blog=blog)
        entry.title += " (edited)"
        with CaptureQueriesContext(connection) as ctx:
            services.save_entry(entry=entry)
        return len(ctx.captured_queries)

    EntryFactory.create_batch(5, blog=blog)
    small = save_cost()
    EntryFactory.create_batch(200, blog=blog)
    assert save_cost() == small
    assert ArchiveContext("index").key == "index"


def test_a_templates_entry_pages_are_queued_in_date_order(blog):
    """A worker claims jobs by id: with entry pages queued in date order, a batch holds consecutive entries,
    which are each other's neighbours (loaded once for the batch)."""
    from publishqueue.fileinfos import template_fileinfos
    from publishqueue.services import publish_templates

    when = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    offsets = [5, 1, 9, 1, 3, 7]  # ids in creation order, dates not; two entries share a time
    entries = [EntryFactory(blog=blog, published_on=when + dt.timedelta(days=n)) for n in offsets]
    by_date = [e.pk for e in sorted(entries, key=lambda e: (e.published_on, e.pk))]
    entry_template = blog.templates.get(identifier="entry")
    assert [fi.object_id for fi in template_fileinfos(entry_template)] == by_date
    monthly = blog.templates.get(identifier="monthly_archive")
    assert all(fi.object_id is None for fi in template_fileinfos(monthly))

    Job.objects.all().delete()
    publish_templates(templates=[entry_template], queue=True)
    assert [job.fileinfo.object_id for job in Job.objects.order_by("id")] == by_date


def test_entry_paths_by_category_use_the_primary_category_and_others_do_not_load_categories(
    blog, three, django_assert_num_queries
):
    from publishqueue.fileinfos import template_fileinfos

    entry_template = blog.templates.get(identifier="entry")
    # Mapping types, live entries, mappings, the entries' path fields, the rows, creating them, the rows again,
    # the template's rows whose context is gone: no query for the entries' categories.
    with django_assert_num_queries(8):
        paths = {fi.object_id: fi.path for fi in template_fileinfos(entry_template)}
    assert paths == {e.pk: f"{e.published_on:%Y/%m}/{e.slug}.html" for e in three}
    entry_template.mappings.update(path_pattern="{category}/{slug}.html")
    three[0].categories.set([CategoryFactory(blog=blog, slug="art")])
    paths = {fi.object_id: fi.path for fi in template_fileinfos(entry_template)}
    assert paths == {three[0].pk: f"art/{three[0].slug}.html"} | {e.pk: f"news/{e.slug}.html" for e in three[1:]}
