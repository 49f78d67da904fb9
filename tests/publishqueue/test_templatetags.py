"""Tags and filters of blog templates."""
import datetime as dt
import itertools
import re

import pytest
from django.template import Context
from django.template import engines as django_engines
from django.test import override_settings
from django.utils import translation

from publishqueue.rendering import build_engine

FORMAT_CHARS = "aAbcdDeEfFgGhHiIjlLmMnNoOPrsStTUuwWyYzZ"
VALUES = [
    dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.UTC),
    dt.datetime(2025, 12, 31, 23, 59, 59, 123456, tzinfo=dt.UTC),
    dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    dt.datetime(2026, 3, 8, 7, 30, tzinfo=dt.UTC),  # 2:30 local in New York: a DST change
    dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC),  # 1:30 local in New York, twice
    dt.datetime(2026, 7, 4, 9, 5),  # naive
    dt.date(2026, 7, 4),
    dt.time(9, 5),
    None, "", "not a date", 17,
]
FORMATS = [None, "", "F j, Y g:i A", "DATE_FORMAT", "SHORT_DATETIME_FORMAT", r"\Y\e\s: Y", r"jS \o\f F", "c r U"]
FORMATS += list(FORMAT_CHARS) + [" ".join(FORMAT_CHARS)]


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_the_date_filter_of_blog_templates_says_what_djangos_says(tz):
    """Blog templates have a faster ``date`` filter (the format string parsed once): the same output as
    Django's for every format character, named formats, escapes, dates, times, naive values and non-dates."""
    ours = build_engine({"t": "{{ value|date:fmt }}", "bare": "{{ value|date }}"})
    django = django_engines["django"].engine
    theirs = django.from_string("{{ value|date:fmt }}")
    theirs_bare = django.from_string("{{ value|date }}")
    with override_settings(TIME_ZONE=tz):
        for value, fmt in itertools.product(VALUES, FORMATS):
            context = {"value": value, "fmt": fmt}
            try:
                expected = theirs.render(Context(context))
            except TypeError as exc:  # Django refuses a time format character for a date
                with pytest.raises(TypeError, match=re.escape(str(exc))):
                    ours.get_template("t").render(Context(context))
                continue
            assert ours.get_template("t").render(Context(context)) == expected, (value, fmt)
        for value in VALUES:
            assert ours.get_template("bare").render(Context({"value": value})) == theirs_bare.render(
                Context({"value": value})
            )


def test_dates_formatted_once_per_page_language_and_zone_say_what_djangos_says():
    """While a site's pages render, a date in a format is formatted once (per language and zone): the same instant
    in another zone, in another language, and every format character still print what Django's filter prints."""
    from publishqueue.templatetags.mt import rendering_in

    ours = build_engine({"t": "{{ value|date:fmt }}"}).get_template("t")
    theirs = django_engines["django"].engine.from_string("{{ value|date:fmt }}")
    values = [v for v in VALUES if isinstance(v, dt.datetime | dt.date)]
    checked = 0
    for _ in range(2):  # the second time from the cache
        for language, tz in itertools.product(["en-us", "fr"], ["UTC", "America/New_York", "Asia/Kolkata"]):
            with override_settings(TIME_ZONE=tz), translation.override(language), rendering_in(language):
                for value, fmt in itertools.product(values, FORMATS):
                    context = {"value": value, "fmt": fmt}
                    try:
                        expected = theirs.render(Context(context))
                    except TypeError:
                        continue  # a time format character for a date: the test above checks the error
                    assert ours.render(Context(context)) == expected, (language, tz, value, fmt)
                    checked += 1
    assert checked > 1000


def test_translations_cached_for_the_pages_language_are_not_used_in_another():
    """While a site's page renders, literal translations are looked up once per language; a {% language %}
    block in the page is in its own language."""
    from django.template import Engine

    from publishqueue.templatetags.mt import rendering_in

    engine = Engine(builtins=["django.templatetags.i18n", "publishqueue.templatetags.mt"])
    page = engine.from_string(
        '{% translate "Yes" %} {{ when|date:_("F Y") }} {% language "fr" %}{% translate "Yes" %} '
        '{{ when|date:_("F Y") }}{% endlanguage %}'
    )
    context = {"when": dt.datetime(2026, 3, 10, tzinfo=dt.UTC)}
    for _ in range(2):  # the second time from the cache
        with translation.override("en-us"), rendering_in("en-us"):
            assert page.render(Context(context)) == "Yes March 2026 Oui mars 2026"
        with translation.override("de"), rendering_in("de"):
            assert page.render(Context(context)) == "Ja März 2026 Oui mars 2026"
