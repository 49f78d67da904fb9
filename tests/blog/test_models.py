import datetime as dt

import pytest

from blog.models import Entry, attach_categories, categories_of
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
    with django_assert_num_queries(0):
        assert [[c.label for c in categories_of(entry)] for entry in fresh] == found
    uncached = Entry.objects.filter(blog=blog).order_by("id")
    assert found == [[c.label for c in entry.categories.all()] for entry in uncached]
    assert found == [[c.label for c in categories_of(entry)] for entry in uncached]  # a query each


@pytest.mark.parametrize("per_query", [400, 7])
def test_neighbours_of_many_entries_are_their_neighbours_in_date_then_id_order(per_query, monkeypatch):
    import random

    from blog import models

    monkeypatch.setattr(models, "NEIGHBOURS_PER_QUERY", per_query)
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
    order = sorted((e.published_on, e.pk) for e in entries if e.status == "published")

    def expected(when, pk):
        before = [key[1] for key in order if key < (when, pk)]
        after = [key[1] for key in order if key > (when, pk)]
        return (before[-1] if before else None, after[0] if after else None)

    live = [e for e in entries if e.status == "published"]
    moved = {e.pk: e.published_on + dt.timedelta(minutes=30) for e in entries[:9]}  # dates other than stored
    for wanted in (
        {e.pk: e.published_on for e in entries}, {e.pk: e.published_on for e in live[5:25]}, moved,
        {live[0].pk: live[0].published_on}, {},
    ):
        found = Entry.objects.neighbours_of(blog.pk, wanted)
        assert found == {pk: expected(when, pk) for pk, when in wanted.items()}
    pk, when = next(iter(moved.items()))
    assert Entry.objects.neighbour_ids(blog.pk, when, pk) == expected(when, pk)


def test_neighbours_of_entries_anywhere_in_the_blog_is_one_query(django_assert_num_queries):
    blog = BlogFactory()
    entries = [EntryFactory(blog=blog, published_on=WHEN + dt.timedelta(hours=n)) for n in range(40)]
    scattered = entries[1::6]
    with django_assert_num_queries(1):
        found = Entry.objects.neighbours_of(blog.pk, {e.pk: e.published_on for e in scattered})
    assert found[entries[1].pk] == (entries[0].pk, entries[2].pk)
    assert found[entries[37].pk] == (entries[36].pk, entries[38].pk)
