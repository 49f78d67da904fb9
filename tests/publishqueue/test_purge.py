"""Front-end cache purge of changed URLs only: a real Varnish in front of the published site (tests/varnish.py)."""
import logging

import pytest
from django.core.exceptions import ImproperlyConfigured

from blog import services
from publishqueue import purge
from publishqueue.models import Job, JobError
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import BASE_DATE, EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


def worker():
    return Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1")


def purging_to(settings, location):
    settings.PUBLISHQUEUE = {
        **settings.PUBLISHQUEUE,
        "PURGE_BACKENDS": {"cache": {"BACKEND": "publishqueue.purge.HTTPPurgeBackend", "LOCATION": location}},
    }


def page_of(blog, entry) -> str:
    return next(p for p in blog.fileinfos.values_list("path", flat=True) if p.endswith(f"{entry.slug}.html"))


@pytest.mark.slow
def test_a_changed_page_is_fresh_on_the_next_request_and_an_unchanged_one_stays_cached(tmp_path, varnish, settings):
    purging_to(settings, varnish.url)
    blog = blog_with_templates(varnish.site_root, mode="queue", site_url=varnish.url)
    # Far from the one that changes: not its neighbour (entry pages link their neighbours), not the same month.
    far, _between, near = [
        EntryFactory(blog=blog, title=title, published_on=BASE_DATE.replace(year=BASE_DATE.year + i))
        for i, title in enumerate(["Far away", "Between", "Before"])
    ]
    for entry in (far, _between, near):
        services.save_entry(entry=entry)
    worker().run()
    pages = {"far": page_of(blog, far), "near": page_of(blog, near), "index": "index.html"}
    for path in pages.values():
        assert varnish.get(path)[:2] == (200, "MISS")
        assert varnish.get(path)[:2] == (200, "HIT")  # cached from now on (an hour)

    near.title = "After"
    services.save_entry(entry=near)
    assert worker().run().done > 0

    status, cache, body = varnish.get(pages["near"])
    assert (status, cache, "After" in body) == (200, "MISS", True)
    assert "Before" not in body
    assert "After" in varnish.get(pages["index"])[2]  # the index lists it: changed, purged
    status, cache, body = varnish.get(pages["far"])
    assert (status, cache) == (200, "HIT")  # unchanged: not purged, still served from the cache
    assert "Far away" in body


def test_a_purge_that_fails_is_logged_and_never_fails_the_job(tmp_path, settings, caplog):
    from tests.fcgi import free_port

    purging_to(settings, f"http://127.0.0.1:{free_port()}/")  # nothing listens there
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    services.save_entry(entry=EntryFactory(blog=blog))
    queued = Job.objects.count()
    with caplog.at_level(logging.WARNING, logger="mtdispatch.purge"):
        result = worker().run()
    assert (result.done, result.failed) == (queued, 0)
    assert not Job.objects.exists() and not JobError.objects.exists()
    [record] = [r for r in caplog.records if r.name == "mtdispatch.purge"]
    assert f"{queued} of {queued} URL(s) not purged" in record.getMessage()
    assert record.exc_info is None  # one line, no traceback


def test_unchanged_files_are_not_purged(tmp_path, settings, caplog):
    """A republish that changes nothing sends no purge at all (here: none to fail)."""
    from tests.fcgi import free_port

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    services.save_entry(entry=EntryFactory(blog=blog))
    worker().run()
    purging_to(settings, f"http://127.0.0.1:{free_port()}/")
    services.republish_site(site=blog)
    with caplog.at_level(logging.WARNING, logger="mtdispatch.purge"):
        assert worker().run().done > 0
    assert not [r for r in caplog.records if r.name == "mtdispatch.purge"]


def test_a_purge_backend_is_checked_when_first_used(settings):
    settings.PUBLISHQUEUE = {**settings.PUBLISHQUEUE, "PURGE_BACKENDS": {
        "cache": {"BACKEND": "publishqueue.purge.HTTPPurgeBackend", "LOCATION": "varnish:6081"}}}
    with pytest.raises(ImproperlyConfigured, match="LOCATION must be an http"):
        purge.backends()
