"""The months a blog's sidebar lists (``blog_variables``' monthly_archives): read in one pass over the dates
in order and cut at each month's first moment in the blog's zone, they must be the months an entry-by-entry
reading gives, with their counts, whatever the zone, the DST changes and entries exactly on a month's edge."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blog.archives import live_months, local_day
from blog.models import Entry
from tests.factories import BlogFactory

pytestmark = pytest.mark.django_db

# Goose Bay and St John's put their clocks back at 00:01 until 2010: just after midnight on November 1st 2009, an
# hour of instants was October 31st again.
ZONES = [
    "UTC", "Asia/Tokyo", "America/New_York", "Pacific/Chatham", "America/Santiago", "Australia/Lord_Howe",
    "America/Goose_Bay", "America/St_Johns",
]
EDGES = [  # local month starts near DST changes and year ends, as UTC instants are computed per zone below
    dt.date(2025, 1, 1), dt.date(2025, 3, 1), dt.date(2025, 4, 1), dt.date(2025, 10, 1), dt.date(2025, 11, 1),
    dt.date(2026, 1, 1), dt.date(2009, 11, 1),
]
OFFSETS = st.sampled_from([dt.timedelta(0), dt.timedelta(microseconds=-1), dt.timedelta(microseconds=1),
                           dt.timedelta(seconds=30), dt.timedelta(minutes=30), dt.timedelta(minutes=90),
                           dt.timedelta(hours=-13), dt.timedelta(hours=14), dt.timedelta(days=15)])


def expected(entries: list[tuple[dt.datetime, str, int]], blog_id: int, zone) -> list[tuple[dt.date, int]]:
    """The plain reading: each live entry of the blog in the local month of its date."""
    months = Counter(
        local_day(when, zone).replace(day=1) for when, status, owner in entries
        if status == Entry.Status.PUBLISHED and owner == blog_id
    )
    return sorted(months.items())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    zone_name=st.sampled_from(ZONES),
    picks=st.lists(
        st.tuples(st.sampled_from(EDGES), OFFSETS, st.sampled_from([Entry.Status.PUBLISHED, Entry.Status.DRAFT]),
                  st.booleans()),
        max_size=25,
    ),
)
def test_the_months_listed_are_those_of_each_entry_in_the_blogs_zone(zone_name, picks):
    zone = zoneinfo.ZoneInfo(zone_name)
    Entry.objects.all().delete()
    mine, other = BlogFactory(), BlogFactory()
    entries = []
    for edge, offset, status, elsewhere in picks:
        # The first moment of the local month (what a month's archive page starts at), moved by ``offset``.
        when = dt.datetime.combine(edge, dt.time.min, tzinfo=zone).astimezone(dt.UTC) + offset  # instants apart
        entries.append((when, status, (other if elsewhere else mine).pk))
    Entry.objects.bulk_create(
        Entry(blog_id=owner, title=f"e{n}", slug=f"e{n}", body="x", status=status, published_on=when)
        for n, (when, status, owner) in enumerate(entries)
    )
    assert live_months(mine.pk, zone) == expected(entries, mine.pk, zone)


def test_an_entry_at_a_months_first_moment_is_in_that_month():
    zone = zoneinfo.ZoneInfo("Asia/Tokyo")
    blog = BlogFactory()
    first = dt.datetime(2026, 3, 1, tzinfo=zone)
    Entry.objects.bulk_create([
        Entry(blog=blog, title="a", slug="a", body="x", status=Entry.Status.PUBLISHED, published_on=first),
        Entry(blog=blog, title="b", slug="b", body="x", status=Entry.Status.PUBLISHED,
              published_on=first - dt.timedelta(microseconds=1)),
    ])
    assert live_months(blog.pk, zone) == [(dt.date(2026, 2, 1), 1), (dt.date(2026, 3, 1), 1)]


@pytest.mark.parametrize("zone_name", ["America/Goose_Bay", "America/St_Johns"])
def test_an_hour_that_came_back_across_midnight_counts_in_the_month_before(zone_name):
    """Found by review: each such entry was listed as a month of its own ("October 2009" three times)."""
    zone = zoneinfo.ZoneInfo(zone_name)
    blog = BlogFactory()
    midnight = dt.datetime(2009, 11, 1, tzinfo=zone).astimezone(dt.UTC)  # the first of the two, as an instant
    after = [dt.timedelta(hours=-2), dt.timedelta(seconds=30), dt.timedelta(minutes=20), dt.timedelta(minutes=40),
             dt.timedelta(days=2)]
    moments = [midnight + delta for delta in after]
    Entry.objects.bulk_create(
        Entry(blog=blog, title=f"e{n}", slug=f"e{n}", body="x", status=Entry.Status.PUBLISHED, published_on=when)
        for n, when in enumerate(moments)
    )
    listed = live_months(blog.pk, zone)
    assert listed == expected([(m, Entry.Status.PUBLISHED, blog.pk) for m in moments], blog.pk, zone)
    assert [month for month, _count in listed] == [dt.date(2009, 10, 1), dt.date(2009, 11, 1)]


def test_an_entry_in_december_9999_is_listed():
    """Found by review: the month after it does not exist (OverflowError on every page of the blog)."""
    blog = BlogFactory()
    Entry.objects.create(blog=blog, title="far", slug="far", body="x", status=Entry.Status.PUBLISHED,
                         published_on=dt.datetime(9999, 12, 15, tzinfo=dt.UTC))
    assert live_months(blog.pk, zoneinfo.ZoneInfo("America/New_York")) == [(dt.date(9999, 12, 1), 1)]


def test_the_sidebars_categories_are_those_with_live_entries_counted_in_this_blog():
    """``all_categories``: each category of the blog with live entries, by label, with how many, as its archive
    page lists them: neither drafts nor another blog's entry linked to it (only bad data does that) count."""
    from blog.archives import blog_variables
    from publishqueue.rendering import links_for
    from tests.factories import CategoryFactory, EntryFactory

    blog, other = BlogFactory(), BlogFactory()
    news, art, empty = (CategoryFactory(blog=blog, label=label) for label in ("News", "Art", "Empty"))
    for status, categories in [
        (Entry.Status.PUBLISHED, [news, art]), (Entry.Status.PUBLISHED, [news]), (Entry.Status.DRAFT, [art, empty]),
        (Entry.Status.SCHEDULED, [empty]),
    ]:
        EntryFactory(blog=blog, status=status).categories.set(categories)
    EntryFactory(blog=other, status=Entry.Status.PUBLISHED).categories.set([art])
    listed = blog_variables(blog, links_for(blog))["all_categories"]()
    assert [(c.label, c.count) for c in listed] == [("Art", 1), ("News", 2)]
