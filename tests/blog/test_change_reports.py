"""What a change reports to the editor (the admin's message), when one change touches two blogs."""
import pytest

from blog import services
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


def move_an_entry(tmp_path, old_mode: str, new_mode: str):
    """An entry published on a blog in ``old_mode``, then moved to one in ``new_mode``: the blogs and the move's
    report."""
    old = blog_with_templates(tmp_path / "old", mode=old_mode)
    new = blog_with_templates(tmp_path / "new", mode=new_mode)
    entry = EntryFactory(blog=old, title="Moving")
    services.save_entry(entry=entry)
    entry.blog = new
    return old, new, services.save_entry(entry=entry)


def test_an_entry_moved_to_another_blog_reports_what_both_blogs_did(tmp_path):
    """The old blog publishes Dynamically (its files are not written: the report says how many), the new one
    through the queue. Fails before the fix: the old blog's part was merged by hand, field by field, and its
    skipped files were left out (skipped={})."""
    _, _, report = move_an_entry(tmp_path, "dynamic", "queue")
    assert report.queued > 0
    assert report.skipped.get("dynamic", 0) > 0
    assert "dynamic file(s) not written" in report.summary()


def test_an_entry_moved_between_statically_published_blogs_reports_both_blogs_pages(tmp_path):
    """Found by review: the old blog's Statically published pages are written when the save commits, after the
    two parts of the report were merged, and were left out of it (and their failures with them). Fails before:
    only the new blog's pages were reported."""
    old, new, report = move_an_entry(tmp_path, "static", "static")
    assert {result.site_id for result in report.published} == {old.pk, new.pk}
    removed = [r for r in report.published if r.site_id == old.pk and r.status == "removed"]
    assert removed  # the entry's page on the old blog went
