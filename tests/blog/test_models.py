import datetime as dt

import pytest

from blog.models import Entry
from tests.factories import BlogFactory, EntryFactory

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
