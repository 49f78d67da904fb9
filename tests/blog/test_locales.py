"""A time zone and a language per blog: archive periods, dates in paths and pages, feeds and scheduled entries
follow the blog's zone (DST changes included); templates render in the blog's language."""
from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest
from django.test import override_settings

from blog import services
from blog.models import Entry
from publishqueue.models import ArchiveMapping, Template
from tests.factories import EntryFactory, UserFactory, blog_with_templates
from tests.helpers import admin_form_data

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def zoned_blog(root: Path, zone: str, **kwargs):
    blog = blog_with_templates(root, mode="static", time_zone=zone, **kwargs)
    monthly = Template.objects.get(site=blog, name="Monthly Archive")
    ArchiveMapping.objects.create(template=monthly, archive_type="daily", path_pattern="{year}/{month}/{day}/")
    return blog


def add(blog, slug: str, when: dt.datetime) -> Entry:
    entry = EntryFactory.build(blog=blog, slug=slug, title=slug.replace("-", " ").title(), published_on=when)
    services.save_entry(entry=entry)
    return entry


def listed(page: Path) -> set[str]:
    text = page.read_text()
    return {slug for slug in ("late", "early", "dst", "plain") if f"/{slug}.html" in text}


@override_settings(TIME_ZONE="UTC")
def test_tokyo_and_new_york_cut_days_and_months_at_their_own_midnight(tmp_path):
    tokyo = zoned_blog(tmp_path / "tokyo", "Asia/Tokyo", site_url="http://tokyo.example/")
    york = zoned_blog(tmp_path / "york", "America/New_York", site_url="http://york.example/")
    # 2026-02-28 15:30 UTC: March 1st, 00:30 in Tokyo; still February 28th (10:30) in New York.
    for blog in (tokyo, york):
        add(blog, "early", utc(2026, 2, 28, 15, 30))
        # 2026-03-01 04:30 UTC: March 1st 13:30 in Tokyo; February 28th 23:30 in New York (EST, UTC-5).
        add(blog, "late", utc(2026, 3, 1, 4, 30))
        # 2026-03-09 04:30 UTC, the day after New York's DST change: March 9th 00:30 EDT (UTC-4) there; with the
        # winter offset it would be the 8th.
        add(blog, "dst", utc(2026, 3, 9, 4, 30))
    t, y = tmp_path / "tokyo", tmp_path / "york"
    assert listed(t / "2026/03/index.html") == {"early", "late", "dst"} and not (t / "2026/02").exists()
    assert listed(t / "2026/03/01/index.html") == {"early", "late"}
    assert listed(t / "2026/03/09/index.html") == {"dst"}
    assert (t / "2026/03/early.html").exists()
    assert listed(y / "2026/02/index.html") == {"early", "late"}
    assert listed(y / "2026/02/28/index.html") == {"early", "late"}
    assert listed(y / "2026/03/index.html") == {"dst"}
    assert listed(y / "2026/03/09/index.html") == {"dst"} and not (y / "2026/03/08").exists()
    assert (y / "2026/02/late.html").exists() and (y / "2026/03/dst.html").exists()
    # Times on pages and in the feed are local, with the offset of the day.
    assert "March 9, 2026 12:30 AM" in (y / "2026/03/dst.html").read_text()
    assert "March 1, 2026 1:30 PM" in (t / "2026/03/late.html").read_text()
    assert "<published>2026-03-09T00:30:00-04:00</published>" in (y / "atom.xml").read_text()
    assert "<published>2026-02-28T23:30:00-05:00</published>" in (y / "atom.xml").read_text()
    assert "<published>2026-03-09T13:30:00+09:00</published>" in (t / "atom.xml").read_text()
    assert "February 2026" in (y / "index.html").read_text() and "February 2026" not in (t / "index.html").read_text()


@override_settings(TIME_ZONE="UTC")
def test_changing_a_blogs_time_zone_moves_its_files(tmp_path):
    from publishqueue.services import publish_templates

    blog = zoned_blog(tmp_path / "site", "")
    add(blog, "late", utc(2026, 3, 1, 4, 30))  # March 1st in UTC, February 28th in New York
    assert (tmp_path / "site/2026/03/late.html").exists()
    before = services.shown_state(blog)
    blog.time_zone = "America/New_York"
    report = services.save_blog(blog=blog, before=before)
    assert report.queued  # every file, through the queue
    publish_templates(templates=blog.templates.exclude(kind="module"))
    assert (tmp_path / "site/2026/02/late.html").exists() and not (tmp_path / "site/2026/03/late.html").exists()
    assert listed(tmp_path / "site/2026/02/28/index.html") == {"late"}
    assert not (tmp_path / "site/2026/03/01/index.html").exists()


@override_settings(TIME_ZONE="UTC")
def test_a_scheduled_entry_is_entered_in_its_blogs_time_zone(tmp_path, client):
    tokyo = zoned_blog(tmp_path / "tokyo", "Asia/Tokyo")
    client.force_login(UserFactory(username="editor", is_staff=True, is_superuser=True))
    form = client.get(f"/admin/blog/entry/add/?blog={tokyo.pk}")
    data = {**admin_form_data(form), "blog": tokyo.pk, "title": "Soon", "slug": "soon", "status": "scheduled",
            "published_on_0": "2026-03-10", "published_on_1": "09:00:00", "body": "x"}
    response = client.post(f"/admin/blog/entry/add/?blog={tokyo.pk}", data)
    assert response.status_code == 302, response.content[:2000]
    entry = Entry.objects.get(slug="soon")
    assert entry.published_on == utc(2026, 3, 10, 0, 0)  # 09:00 in Tokyo
    page = client.get(f"/admin/blog/entry/{entry.pk}/change/").content.decode()
    assert 'name="published_on_1" value="09:00:00"' in page, re.findall(r"published_on_1[^>]*", page)
    assert services.publish_due_entries(now=utc(2026, 3, 9, 23, 59)) == 0
    assert services.publish_due_entries(now=utc(2026, 3, 10, 0, 0)) == 1
    assert (tmp_path / "tokyo/2026/03/soon.html").exists()


def test_a_french_blog_has_french_months_and_words_and_an_english_one_stays_english(tmp_path):
    french = zoned_blog(tmp_path / "fr", "Europe/Paris", language="fr", site_url="http://fr.example/")
    english = zoned_blog(tmp_path / "en", "", site_url="http://en.example/")
    for blog in (french, english):
        add(blog, "plain", utc(2026, 3, 10, 12))
        for _ in range(2):
            services.comment_changed(
                comment=blog.entries.get().comments.create(author="Reader", body="<p>Hi</p>", status="approved"),
                was_approved=False,
            )
    fr, en = tmp_path / "fr", tmp_path / "en"
    page, index, monthly = (fr / "2026/03/plain.html").read_text(), (fr / "index.html").read_text(), (
        fr / "2026/03/index.html").read_text()
    assert '<html lang="fr">' in page
    assert "10 mars 2026 à 13:00" in page  # the date format and the month translated, in Paris time
    assert "2 commentaires" in page and "Laisser un commentaire" in page and "Publier le commentaire" in page
    assert "Catégories" in index and "mars 2026</a>" in index and "Publié avec mtdispatch" in index
    assert "Lire la suite de « Plain »" in index
    assert "<h2 class=\"archive-title\">mars 2026</h2>" in monthly
    assert "10 mars 2026" in (fr / "2026/03/10/index.html").read_text()  # the daily archive's title
    english_page = (en / "2026/03/plain.html").read_text()
    assert "March 10, 2026 12:00 PM" in english_page and "2 comments" in english_page
    assert "Leave a comment" in english_page and "Categories" in (en / "index.html").read_text()
    assert "March 2026</a>" in (en / "index.html").read_text()


def test_the_comment_endpoint_answers_in_the_blogs_language(tmp_path, client):
    french = blog_with_templates(tmp_path / "fr", language="fr", comment_policy="closed")
    entry = EntryFactory(blog=french)
    response = client.post("/comments/post/", {"entry_id": entry.pk, "author": "A", "body": "Bonjour"})
    assert response.status_code == 403
    text = response.content.decode()
    assert "Votre commentaire n’a pas été publié" in text and "Les commentaires sont fermés" in text


@pytest.mark.parametrize("app", ["blog", "publishqueue"])
def test_the_shipped_translations_are_compiled_from_their_po_files(app, tmp_path):
    """The .mo files in the repository are what msgfmt makes of the .po files (run compilemessages after
    editing a .po)."""
    po = ROOT / app / "locale/fr/LC_MESSAGES/django.po"
    subprocess.run(["msgfmt", "--check", "-o", str(tmp_path / "django.mo"), str(po)], check=True)
    assert (tmp_path / "django.mo").read_bytes() == po.with_suffix(".mo").read_bytes()
