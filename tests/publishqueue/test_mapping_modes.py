"""A mode per archive mapping (MT's templatemap build_type): a mapping may override its template's mode."""
import datetime as dt

import pytest

from blog import services
from publishqueue.fileinfos import template_fileinfos
from publishqueue.models import ArchiveMapping, FileInfo, Job, Template
from publishqueue.services import publish_templates, template_saved
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)  # static publishing runs on commit

DAY = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)


def entry_template(blog) -> Template:
    return Template.objects.select_related("site").get(site=blog, identifier="entry")


def add_mapping(template, pattern, mode="", preferred=False) -> ArchiveMapping:
    return ArchiveMapping.objects.create(
        template=template, archive_type="individual", path_pattern=pattern, is_preferred=preferred, mode=mode
    )


def test_a_queued_template_with_a_static_preferred_mapping(tmp_path):
    """MT's High-priority static + background: the permalink page in the request, the other mapping queued."""
    site = tmp_path / "site"
    blog = blog_with_templates(site, mode="queue")
    template = entry_template(blog)
    template.mappings.update(mode="static")
    add_mapping(template, "entries/{id}.html")  # inherits the template's: queued
    entry = EntryFactory.build(blog=blog, published_on=DAY, title="Both ways")
    report = services.save_entry(entry=entry)
    assert "Both ways" in (site / f"2026/05/{entry.slug}.html").read_text()
    assert not (site / f"entries/{entry.pk}.html").exists()
    queued = set(Job.objects.values_list("fileinfo__path", flat=True))
    assert f"entries/{entry.pk}.html" in queued and f"2026/05/{entry.slug}.html" not in queued
    assert report.written >= 1


def test_a_static_template_with_a_dynamic_mapping_removes_its_files_and_serves_them(tmp_path, client):
    site = tmp_path / "site"
    blog = blog_with_templates(site, mode="static")
    entry = EntryFactory(blog=blog, published_on=DAY, title="Served")
    template = entry_template(blog)
    second = add_mapping(template, "entries/{id}.html")
    publish_templates(templates=[template])
    assert (site / f"entries/{entry.pk}.html").exists()
    second.mode = "dynamic"
    second.save()
    template_saved(template=entry_template(blog), previous_mode="static")
    assert not (site / f"entries/{entry.pk}.html").exists()  # the dynamic mapping's file left the disk
    assert (site / f"2026/05/{entry.slug}.html").exists()  # the template's own mode still writes the other
    response = client.get(f"/blog/entries/{entry.pk}.html")
    assert response.status_code == 200 and "Served" in response.content.decode()
    # The static mapping's file is not served by the app (the web server serves it from the disk).
    assert not FileInfo.objects.filter(path=f"2026/05/{entry.slug}.html", mapping__mode="dynamic").exists()


def test_a_disabled_mapping_has_no_files_and_its_template_keeps_the_others(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static")
    EntryFactory(blog=blog, published_on=DAY)
    template = entry_template(blog)
    add_mapping(template, "entries/{id}.html", mode="disabled")
    paths = {fi.path for fi in template_fileinfos(template)}
    assert not any(p.startswith("entries/") for p in paths) and paths


def test_a_dynamic_template_with_a_static_mapping_writes_that_mapping(tmp_path):
    site = tmp_path / "site"
    blog = blog_with_templates(site, mode="dynamic")
    template = entry_template(blog)
    template.mappings.update(mode="static")
    entry = EntryFactory.build(blog=blog, published_on=DAY, title="Written anyway")
    services.save_entry(entry=entry)
    assert "Written anyway" in (site / f"2026/05/{entry.slug}.html").read_text()
    assert not (site / "index.html").exists()  # the main index is still Dynamically published
