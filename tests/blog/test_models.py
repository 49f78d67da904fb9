import datetime as dt

import pytest

from blog.models import Entry, attach_categories
from tests.factories import BlogFactory, CategoryFactory, EntryFactory

pytestmark = pytest.mark.django_db

WHEN = dt.datetime(2026, 2, 1, 8, tzinfo=dt.UTC)


def test_neighbours_order_by_date_then_id_and_skip_entries_that_are_not_live():
    blog = BlogFactory()
    first = EntryFactory(blog=blog, published_on=WHEN - dt.timedelta(days=1))
    EntryFactory(blog=blog, published_on=WHEN - dt.timedelta(hours=1), status="draft")
    tie_a = EntryFactory(blog=blog, published_on=WHEN)
    tie_b = EntryFactory(blog=blog, published_on=WHEN)
    last = EntryFactory(blog=blog, published_on=WHEN + dt.timedelta(days=1))
    EntryFactory(published_on=WHEN)  # another blog
    assert Entry.objects.neighbour_ids(blog.pk, WHEN, tie_a.pk) == (first.pk, tie_b.pk)
    assert Entry.objects.neighbour_ids(blog.pk, WHEN, tie_b.pk) == (tie_a.pk, last.pk)
    assert Entry.objects.neighbour_ids(blog.pk, first.published_on, first.pk) == (None, tie_a.pk)
    assert Entry.objects.neighbour_ids(blog.pk, last.published_on, last.pk) == (tie_b.pk, None)


def test_the_body_is_rendered_to_html_when_the_entry_is_saved():
    entry = EntryFactory(body="Some *markdown*.")
    assert Entry.objects.get(pk=entry.pk).body_html == "<p>Some <em>markdown</em>.</p>"
    entry.body = "**Changed**"
    entry.save(update_fields=["body"])  # the stored HTML follows even when only the body is named
    assert Entry.objects.get(pk=entry.pk).body_html == "<p><strong>Changed</strong></p>"
    entry.title = "Retitled"
    entry.save(update_fields=["title"])
    assert Entry.objects.get(pk=entry.pk).body_html == "<p><strong>Changed</strong></p>"


def test_attached_categories_are_what_the_relation_holds_in_label_order_and_cost_no_query_per_entry(
    django_assert_num_queries,
):
    blog = BlogFactory()
    zebra, apple = CategoryFactory(blog=blog, label="Zebra"), CategoryFactory(blog=blog, label="Apple")
    entries = [EntryFactory(blog=blog) for _ in range(7)]
    entries[0].categories.set([zebra, apple])
    entries[1].categories.set([zebra])
    fresh = list(Entry.objects.filter(blog=blog).order_by("id"))
    with django_assert_num_queries(4):  # links in chunks of 3 entries (3 queries), then the categories
        attach_categories(fresh, chunk=3)
    with django_assert_num_queries(0):
        found = [[c.label for c in entry.categories.all()] for entry in fresh]
        assert fresh[0].categories.count() == 2 and not fresh[2].categories.exists()
    assert found == [["Apple", "Zebra"], ["Zebra"]] + [[]] * 5
    uncached = Entry.objects.filter(blog=blog).order_by("id")
    assert found == [[c.label for c in entry.categories.all()] for entry in uncached]


@pytest.mark.parametrize("spread", [4, 1000])
def test_neighbours_of_many_entries_agree_with_one_query_each(spread):
    import random

    rng = random.Random(7)
    blog = BlogFactory()
    entries = [
        EntryFactory(
            blog=blog, published_on=WHEN + dt.timedelta(hours=rng.choice([0, 1, 1, 2, 3, 5, 8, 13])),
            status=rng.choice(["published"] * 5 + ["draft"]),
        )
        for _ in range(60)
    ]
    EntryFactory(published_on=WHEN + dt.timedelta(hours=1))  # another blog
    live = sorted((e for e in entries if e.status == "published"), key=lambda e: (e.published_on, e.pk))
    for batch in (live, live[5:25], live[::7], live[:3], [live[0]]):
        wanted = {e.pk: e.published_on for e in batch}
        expected = {e.pk: Entry.objects.neighbour_ids(blog.pk, e.published_on, e.pk) for e in batch}
        assert Entry.objects.neighbours_of(blog.pk, wanted, spread=spread) == expected


def test_neighbours_of_a_run_of_consecutive_entries_is_a_few_queries(django_assert_max_num_queries):
    blog = BlogFactory()
    entries = [EntryFactory(blog=blog, published_on=WHEN + dt.timedelta(hours=n)) for n in range(40)]
    with django_assert_max_num_queries(3):  # the window, and each end's neighbour outside it
        found = Entry.objects.neighbours_of(blog.pk, {e.pk: e.published_on for e in entries[10:30]})
    assert found[entries[10].pk] == (entries[9].pk, entries[11].pk)
    assert found[entries[29].pk] == (entries[28].pk, entries[30].pk)
