"""Every change republishes what it affects (the stale pages a template editor found): categories renamed or
deleted, blog settings, templates and mappings deleted, comments deleted; and the orphan sweep."""
from pathlib import Path

import pytest
from django.core.management import call_command

from blog import services
from blog.models import Comment
from publishqueue.models import ArchiveMapping, FileInfo, PublishedFile, Template
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import CategoryFactory, CommentFactory, EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


def drain() -> None:
    Worker(WorkerOptions(load=50, periodic=False, background=False), worker_id="test:1:1").run()


@pytest.fixture
def site(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="queue", name="Before")
    category = CategoryFactory(blog=blog, label="Old label", slug="old")
    for n in range(3):
        services.save_entry(entry=EntryFactory(blog=blog, title=f"Entry {n}"), categories=[category])
    call_command("publish", "--all", "--queue", verbosity=0)
    drain()
    return blog, category, tmp_path / "site"


def pages(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.html")}


def test_renaming_a_category_moves_its_archive_and_updates_every_sidebar(site):
    blog, category, root = site
    assert (root / "category/old/index.html").exists()
    before = services.shown_state(category)
    category.label, category.slug = "New label", "new"
    services.save_category(category=category, before=before)
    drain()
    assert not (root / "category/old/index.html").exists()
    assert "New label" in (root / "category/new/index.html").read_text()
    assert not [path for path, text in pages(root).items() if "Old label" in text]


def test_deleting_a_category_removes_its_archive_and_its_name_everywhere(site):
    blog, category, root = site
    services.delete_category(category=category)
    drain()
    assert not (root / "category/old/index.html").exists()
    assert not [path for path, text in pages(root).items() if "Old label" in text]


def test_the_blogs_name_reaches_every_page(site):
    blog, _, root = site
    before = services.shown_state(blog)
    blog.name = "After"
    services.save_blog(blog=blog, before=before)
    drain()
    assert all("After" in text and "Before" not in text for text in pages(root).values())


def test_deleting_a_template_or_a_mapping_takes_its_files_away(site):
    blog, _, root = site
    monthly = Template.objects.get(site=blog, identifier="monthly_archive")
    published = FileInfo.objects.filter(template=monthly).values_list("published_path", flat=True)
    monthly_files = [root / p for p in published]
    assert monthly_files and all(p.exists() for p in monthly_files)
    ArchiveMapping.objects.get(template__site=blog, archive_type="category").delete()
    assert not (root / "category/old/index.html").exists()
    monthly.delete()
    assert not any(p.exists() for p in monthly_files)


def test_deleting_an_approved_comment_republishes_its_entry(site):
    blog, _, root = site
    entry = blog.entries.first()
    comment = CommentFactory(entry=entry, body="<p>Remove me</p>", status=Comment.Status.APPROVED)
    services.comment_changed(comment=comment, was_approved=False)
    drain()
    page = root / FileInfo.objects.get(archive_type="individual", object_id=entry.pk).path
    assert "Remove me" in page.read_text()
    services.delete_comment(comment=Comment.objects.get(pk=comment.pk))
    drain()
    assert "Remove me" not in page.read_text()


def test_publish_all_sweeps_files_the_publisher_wrote_that_nothing_claims_and_never_others(site):
    blog, category, root = site
    # An older release (or a crash) left a category archive's file behind with no FileInfo.
    FileInfo.objects.filter(archive_type="category").delete()
    assert (root / "category/old/index.html").exists()
    (root / "robots.txt").write_text("User-agent: *\n")  # the site owner's, not the publisher's
    call_command("sweep", "--dry-run", verbosity=0)
    assert (root / "category/old/index.html").exists()  # a dry run only lists
    FileInfo.objects.filter(archive_type="category").delete()
    ArchiveMapping.objects.filter(archive_type="category").update(path_pattern="topics/{category}/")
    assert PublishedFile.objects.filter(site=blog, path="category/old/index.html").exists()
    call_command("publish", "--all", verbosity=0)
    assert not (root / "category/old/index.html").exists() and (root / "topics/old/index.html").exists()
    assert (root / "robots.txt").exists()


def test_deleting_an_author_republishes_their_blogs_pages(tmp_path):
    """Their entries stay, without an author (SET_NULL, a queryset update that sends no signal for the entries):
    the author's archive goes and no page names them any more."""
    from publishqueue.services import publish_templates
    from tests.factories import UserFactory

    blog = blog_with_templates(tmp_path / "site", mode="queue", all_templates=True)
    ann = UserFactory(username="ann", first_name="Ann", last_name="Lee")
    services.save_entry(entry=EntryFactory(blog=blog, title="By Ann", author=ann))
    publish_templates(templates=Template.objects.filter(site=blog).exclude(kind="module"), queue=True)
    drain()
    root = tmp_path / "site"
    assert (root / "author/ann/index.html").exists()
    assert any("Ann Lee" in text for text in pages(root).values())
    ann.delete()
    drain()
    assert not (root / "author/ann/index.html").exists()
    assert not [path for path, text in pages(root).items() if "Ann Lee" in text]


def test_moving_an_entry_to_another_blog_takes_it_off_the_first(tmp_path):
    from publishqueue.services import publish_templates

    first = blog_with_templates(tmp_path / "a", mode="queue", name="A")
    second = blog_with_templates(tmp_path / "b", mode="queue", name="B")
    services.save_entry(entry=EntryFactory(blog=first, title="Stays"))
    moving = EntryFactory(blog=first, title="Moves")
    services.save_entry(entry=moving)
    publish_templates(templates=Template.objects.exclude(kind="module"), queue=True)
    drain()
    assert "Moves" in (tmp_path / "a/index.html").read_text()
    moving.blog = second
    services.save_entry(entry=moving)
    drain()
    assert "Moves" not in (tmp_path / "a/index.html").read_text()
    assert not [path for path, text in pages(tmp_path / "a").items() if "Moves" in text]
    assert "Moves" in (tmp_path / "b/index.html").read_text()
    assert [path for path, text in pages(tmp_path / "b").items() if "<h2>Moves</h2>" in text]
