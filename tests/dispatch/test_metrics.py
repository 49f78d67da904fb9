"""/metrics read with Prometheus' own text parser: the queue by state, jobs done and failed, job and freshness
histograms, FastCGI children by state, requests and recycles, RSS of every process; who may read it."""
import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from dispatch.models import ManagerStatus, ProcessHeartbeat
from publishqueue import controls
from publishqueue.enqueue import NewJob, enqueue
from publishqueue.models import Job
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, UserFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client, path="/metrics") -> dict:
    response = client.get(path)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_in_prometheus_format(client, tmp_path):
    from blog import services

    blog = blog_with_templates(tmp_path / "site", mode="queue", name="Metered")
    Job.objects.all().delete()
    services.save_entry(entry=EntryFactory(blog=blog))
    published = Job.objects.count()
    assert published > 0
    enqueue([NewJob(kind="no-such-kind", unique_key="bad")])
    result = Worker(WorkerOptions(load=50, periodic=False, background=False), worker_id="test:1:1").run()
    assert (result.done, result.failed) == (published, 1)
    enqueue(NewJob(kind="noop", unique_key=str(i)) for i in range(3))
    controls.pause(scope="kind", kind="noop")
    now = timezone.now()
    ManagerStatus.objects.create(
        host="web1", pid=42, started=now, last_seen=now, address="unix:/x.sock", workers_target=3,
        requests_served=1234, recycles=2, rss=30 << 20, cpu=1.5,
        children=[{"pid": 43, "state": "busy", "requests": 7, "rss": 50 << 20, "cpu": 3.0, "age": 1},
                  {"pid": 44, "state": "idle", "requests": 9, "rss": 40 << 20, "cpu": 0.0, "age": 1},
                  {"pid": 45, "state": "idle", "requests": 0, "rss": 40 << 20, "cpu": 0.0, "age": 1}],
    )
    ProcessHeartbeat.objects.create(process_id="web1:50:1", host="web1", pid=50, started=now, last_seen=now,
                                    state="busy", rss=60 << 20, cpu=12.0)

    samples = scrape(client)
    assert value(samples, "mtdispatch_queue_jobs", state="ready") == 3
    assert value(samples, "mtdispatch_queue_jobs", state="waiting") == 1  # the failed attempt waits to retry
    assert value(samples, "mtdispatch_queue_paused", scope="kind", what="noop jobs") == 1
    assert value(samples, "mtdispatch_jobs_done_total", kind="publish") == published
    assert value(samples, "mtdispatch_jobs_failed_total", kind="no-such-kind") == 1
    assert value(samples, "mtdispatch_job_run_seconds_count", kind="publish") == published
    assert value(samples, "mtdispatch_job_run_seconds_bucket", kind="publish", le="+Inf") == published
    fresh = {"site": str(blog.pk), "site_name": "Metered"}
    assert value(samples, "mtdispatch_freshness_seconds_count", **fresh) == published
    assert value(samples, "mtdispatch_freshness_seconds_sum", **fresh) > 0
    assert value(samples, "mtdispatch_freshness_last_hour_seconds", site=str(blog.pk), quantile="0.95") > 0
    assert value(samples, "mtdispatch_fastcgi_children", host="web1", manager="42", state="idle") == 2
    assert value(samples, "mtdispatch_fastcgi_children", host="web1", manager="42", state="busy") == 1
    assert value(samples, "mtdispatch_fastcgi_requests_total", host="web1", manager="42") == 1234
    assert value(samples, "mtdispatch_fastcgi_recycles_total", host="web1", manager="42") == 2
    assert value(samples, "mtdispatch_process_resident_memory_bytes", host="web1", pid="42", role="manager") == 30 << 20
    assert value(samples, "mtdispatch_process_resident_memory_bytes", host="web1", pid="50",
                 role="queue worker") == 60 << 20
    assert value(samples, "mtdispatch_queue_workers", state="busy") == 1
    assert scrape(client, "/dispatch/metrics").keys() == samples.keys()


def test_metrics_are_for_staff_or_allowed_addresses(client):
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 403
    with override_settings(DISPATCH={"STATUS_ALLOW": ["192.0.2.0/24"]}):
        assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    client.force_login(UserFactory(username="ops", is_staff=True))
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.1").status_code == 200


def test_a_manager_gone_silent_is_not_counted(client):
    old = timezone.now() - dt.timedelta(minutes=10)
    ManagerStatus.objects.create(host="web1", pid=42, started=old, last_seen=old, address="x",
                                 children=[{"pid": 43, "state": "idle", "requests": 1}])
    samples = scrape(client)
    assert value(samples, "mtdispatch_fastcgi_managers") == 0
    assert not [k for k in samples if k[0] == "mtdispatch_fastcgi_children"]
