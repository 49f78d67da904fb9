"""Publishing profiles (MT's custom_dynamic_templates): one setting sets every template's and mapping's mode."""
import datetime as dt

import pytest
from django.urls import reverse

from publishqueue import profiles
from publishqueue.models import ArchiveMapping, PublishingProfile, Template
from publishqueue.services import publish_templates
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def blog(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static")
    for n in range(3):
        EntryFactory(blog=blog, published_on=dt.datetime(2026, 3, 1 + n, tzinfo=dt.UTC))
    return blog


def modes(blog):
    return {t.identifier: t.mode for t in Template.objects.filter(site=blog).exclude(kind="module")}


def mapping_modes(blog):
    return {(m.template.identifier, m.archive_type): m.mode for m in ArchiveMapping.objects.filter(template__site=blog)}


def test_high_priority_static_and_background(blog):
    Template.objects.filter(site=blog, identifier="monthly_archive").update(mode="manual")  # left alone
    done, run = profiles.apply(blog, "async_partial")
    assert modes(blog) == {
        "main_index": "static", "feed_atom": "static", "styles": "queue", "entry": "queue",
        "category_archive": "queue", "monthly_archive": "manual",
    }
    assert mapping_modes(blog)[("entry", "individual")] == "static"  # the preferred entry mapping
    assert [t.identifier for t in done.left_alone] == ["monthly_archive"] and run is None
    assert profiles.current(blog) == "async_partial"


def test_every_profile_sets_the_modes_mt_does(blog):
    expected = {
        "none": {"static"}, "async_all": {"queue"}, "all": {"dynamic"},
    }
    for profile, wanted in expected.items():
        profiles.apply(blog, profile)
        assert set(modes(blog).values()) == wanted, profile
        assert set(mapping_modes(blog).values()) == {""}, profile
    profiles.apply(blog, "archives")
    assert {t: m for t, m in modes(blog).items()} == {
        "main_index": "static", "feed_atom": "static", "styles": "static", "entry": "dynamic",
        "category_archive": "dynamic", "monthly_archive": "dynamic",
    }
    before = modes(blog)
    assert profiles.plan(blog, "custom").changes == [] and profiles.apply(blog, "custom")[0].changes == []
    assert modes(blog) == before


def test_dynamic_archives_take_files_off_the_disk_and_static_publishes_them_back_in_a_run(blog, tmp_path):
    publish_templates(templates=Template.objects.filter(site=blog).exclude(kind="module"))
    pages = list((tmp_path / "site").glob("2026/03/*.html"))  # the entries and their month
    assert len(pages) == 4
    profiles.apply(blog, "archives")
    assert not any(p.exists() for p in pages) and (tmp_path / "site" / "index.html").exists()
    done, run = profiles.apply(blog, "none")
    assert run is not None and run.total == 3 + 1  # the entries and their month were Dynamically published
    Worker(WorkerOptions(periodic=False, background=False), worker_id="t:1:1").run()
    assert all(p.exists() for p in pages)


def test_the_admin_lists_what_a_profile_changes_before_applying_it(admin_client, blog):
    url = reverse("admin:publishqueue_template_profile")
    page = admin_client.get(url, {"site": blog.pk, "profile": "async_all"}).content.decode()
    assert "Background publishing" in page and "Apply this profile" in page
    assert page.count('<tr data-template=') == 6  # six templates go from Statically to Via Publish Queue
    assert modes(blog)["entry"] == "static"  # nothing changed yet
    response = admin_client.post(url, {"site": blog.pk, "profile": "async_all"})
    assert response.status_code == 302 and set(modes(blog).values()) == {"queue"}
    assert PublishingProfile.objects.get(site=blog).changed_by.username == "admin"
    page = admin_client.get(reverse("admin:blog_blog_change", args=[blog.pk])).content.decode()
    assert "Background publishing" in page and "change the profile" in page
