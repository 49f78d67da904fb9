"""Operators' controls and what the dashboard measures: pause and resume (all, a site, a kind) as the worker
honours them, cancelling a site's or a template's queued jobs, freshness per site, the recent rate and the
time to drain, and the queue's totals and tables from one snapshot."""
import datetime as dt
import threading
import time

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.utils import timezone

from blog import services
from publishqueue import controls, jobrows
from publishqueue.enqueue import NewJob, enqueue
from publishqueue.models import Job, MetricStat, MetricTotal, QueuePause, QueueSample, Template
from publishqueue.overview import overview, rate, snapshot
from publishqueue.stats import BUCKETS, StatsBuffer, percentile, slot_of, summaries
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, UserFactory, blog_with_templates
from tests.helpers import past_locks

pytestmark = pytest.mark.django_db(transaction=True)


def worker(**kwargs):
    kwargs.setdefault("periodic", False)
    kwargs.setdefault("background", False)
    return Worker(WorkerOptions(**kwargs), worker_id="test:1:1")


@pytest.fixture
def two_blogs(tmp_path):
    a = blog_with_templates(tmp_path / "a", mode="queue", name="Alpha")
    b = blog_with_templates(tmp_path / "b", mode="queue", name="Beta")
    Job.objects.all().delete()
    for blog in (a, b):
        for _ in range(2):
            services.save_entry(entry=EntryFactory(blog=blog))
    return a, b


def jobs_of(blog):
    return Job.objects.filter(fileinfo__site=blog)


def test_pausing_everything_stops_claims_and_a_cron_worker_says_so(two_blogs):
    controls.pause(scope="all")
    assert jobrows.claim(worker_id="w", load=100) == []
    result = worker().run()
    assert (result.done, result.reason) == (0, "queue paused")
    queued = Job.objects.count()
    QueuePause.objects.all().delete()
    assert worker(load=50).run().done == queued > 0 and not Job.objects.exists()


def test_pausing_a_site_leaves_its_jobs_and_runs_the_others(two_blogs):
    a, b = two_blogs
    queued_a = jobs_of(a).count()
    controls.pause(scope="site", site=a)
    enqueue([NewJob(kind="noop", unique_key="loose")])  # a job of no site runs too
    result = worker(load=5).run()
    assert result.done > 0 and jobs_of(b).count() == 0 and not Job.objects.filter(kind="noop").exists()
    assert jobs_of(a).count() == queued_a > 0
    assert not jobs_of(a).exclude(grabbed_by="").exists()


def test_pausing_a_kind_leaves_only_that_kind(two_blogs):
    enqueue(NewJob(kind="noop", unique_key=str(i)) for i in range(3))
    controls.pause(scope="kind", kind="publish")
    assert worker().run().done == 3
    assert Job.objects.filter(kind="publish").count() > 0 and not Job.objects.filter(kind="noop").exists()


def test_pause_is_one_row_per_scope_and_needs_its_target(two_blogs):
    a, _ = two_blogs
    first, new = controls.pause(scope="site", site=a)
    again, new_again = controls.pause(scope="site", site=a)
    assert new and not new_again and first.pk == again.pk
    with pytest.raises(ValueError):
        controls.pause(scope="kind")


def test_a_worker_gives_back_the_rest_of_its_batch_when_paused_midway():
    enqueue(NewJob(kind="noop", unique_key=str(i)) for i in range(10))
    ran = []

    def runner(job, prepared):
        ran.append(job.id)
        if len(ran) == 3:
            controls.pause(scope="all")  # an operator pauses while the batch runs

    w = Worker(WorkerOptions(load=10, periodic=False, background=False), worker_id="test:1:1", job_runner=runner)
    w.pause_watch.interval = 0  # read the pauses before every job
    result = w.run()
    assert (len(ran), result.done, result.reason) == (3, 3, "queue paused")
    assert Job.objects.count() == 7 and not Job.objects.exclude(grabbed_by="").exists()
    assert set(Job.objects.values_list("attempts", flat=True)) == {0}  # given back: no attempt used


def test_a_daemon_worker_resumes_within_a_second():
    controls.pause(scope="all")
    enqueue(NewJob(kind="noop", unique_key=str(i)) for i in range(5))
    w = worker(daemon=True, sleep=30)
    thread = threading.Thread(target=w.run)
    thread.start()
    try:
        time.sleep(1.2)
        assert past_locks(Job.objects.count) == 5  # paused
        past_locks(QueuePause.objects.all().delete)
        deadline = time.monotonic() + 10
        while past_locks(Job.objects.exists) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not past_locks(Job.objects.exists)
        # Its sleep while paused is short (it looks again every WATCH_SECONDS), not the daemon's 30 s.
        assert w.result.done == 5
    finally:
        w.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_cancel_deletes_a_templates_queued_jobs_only(two_blogs):
    a, b = two_blogs
    entry_template = Template.objects.get(site=a, identifier="entry")
    mine = Job.objects.filter(fileinfo__template=entry_template)
    assert mine.count() >= 2
    running = mine.first()
    Job.objects.filter(pk=running.pk).update(grabbed_until=timezone.now() + dt.timedelta(minutes=1), grabbed_by="w")
    others, count = Job.objects.exclude(fileinfo__template=entry_template).count(), mine.count()
    assert controls.cancel(template=entry_template) == count - 1
    assert list(mine.values_list("pk", flat=True)) == [running.pk]  # the running one finishes
    assert Job.objects.exclude(fileinfo__template=entry_template).count() == others


def test_cancel_a_site(two_blogs):
    a, b = two_blogs
    before_b = jobs_of(b).count()
    assert controls.cancel(site=a) > 0
    assert jobs_of(a).count() == 0 and jobs_of(b).count() == before_b


def test_the_snapshot_totals_equal_the_tables(two_blogs):
    a, _ = two_blogs
    enqueue([NewJob(kind="noop", unique_key="x")])
    now = timezone.now()
    Job.objects.filter(fileinfo__site=a).order_by("id").filter(
        pk__in=Job.objects.filter(fileinfo__site=a).order_by("id").values("pk")[:1]).update(failed_at=now)
    snap = snapshot(now)
    for table in ("by_site", "by_template"):
        for state, total in snap["depth"].items():
            assert sum(row[state] for row in snap[table]) == total
    assert snap["depth"]["failed"] == 1 and snap["depth"]["ready"] == Job.objects.count() - 1
    assert {row["name"] for row in snap["by_site"]} == {"Alpha", "Beta", "(no file)"}


def test_freshness_is_recorded_per_site_when_the_worker_places_files(two_blogs):
    a, b = two_blogs
    Job.objects.filter(fileinfo__site=a).update(created=timezone.now() - dt.timedelta(seconds=40))
    done = worker(load=50).run().done
    assert done > 0
    found = summaries("freshness", since=timezone.now() - dt.timedelta(hours=1))
    assert set(found) == {str(a.pk), str(b.pk)}
    assert sum(s.count for s in found.values()) == done
    assert 30 <= found[str(a.pk)].p50 <= found[str(a.pk)].max and found[str(a.pk)].max >= 40
    assert found[str(b.pk)].max < 30
    rows = {r["name"]: r for r in overview()["freshness"]}
    assert rows["Alpha"]["count"] == found[str(a.pk)].count
    totals = MetricTotal.objects.filter(metric="freshness")
    assert sum(totals.values_list("count", flat=True)) == done


def test_percentiles_interpolate_within_buckets_and_never_pass_the_max():
    counts = [0] * len(BUCKETS)
    counts[BUCKETS.index(10)] = 10  # ten observations in (5, 10]
    assert percentile(counts, 0.5, top=8.0) == pytest.approx(6.5)
    assert percentile(counts, 0.95, top=8.0) <= 8.0
    counts[-1] = 1  # one over an hour
    assert percentile(counts, 1.0, top=5000.0) == 5000.0


def test_stats_buffer_adds_across_workers():
    now = timezone.now()
    for _ in range(2):
        buf = StatsBuffer()
        buf.done("noop", finished=now, run_after=now - dt.timedelta(seconds=2), run_seconds=0.01)
        buf.fresh(7, changed=now - dt.timedelta(seconds=3), placed=now)
        buf.failed("noop", finished=now)
        buf.flush()
    sample = QueueSample.objects.get(at=slot_of(now))
    assert (sample.done, sample.failures, sample.ready) == (2, 2, None)
    assert MetricStat.objects.get(metric="freshness").count == 2
    assert MetricTotal.objects.get(metric="job_failed").count == 2


def test_rate_is_measured_from_when_the_drain_started():
    now = timezone.now()
    samples = [QueueSample(at=slot_of(now - dt.timedelta(seconds=s)), done=d) for s, d in ((200, 0), (20, 150),
                                                                                           (10, 150))]
    per_min, span = rate(now, samples)
    assert 20 <= span <= 25 and per_min == pytest.approx(300 * 60 / span)
    assert rate(now, [QueueSample(at=slot_of(now - dt.timedelta(seconds=400)), done=99)]) == (0.0, None)


def test_eta_uses_the_recent_rate(two_blogs):
    now = timezone.now()
    QueueSample.objects.create(at=slot_of(now - dt.timedelta(seconds=10)), done=60)
    data = overview(now)
    backlog = data["backlog"]
    assert backlog > 0 and data["rate_seconds"] >= 10
    assert data["eta_seconds"] == pytest.approx(backlog / data["throughput_per_min"] * 60)
    assert data["eta_seconds"] < 60 * backlog / 60  # far from a 5-minute average of 60 jobs


# -- the admin views -----------------------------------------------------------------------------------


@pytest.fixture
def editor(client):
    user = UserFactory(username="ed", is_staff=True)
    client.force_login(user)
    return client, user


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def test_pause_and_resume_need_the_permission_and_are_logged(editor, two_blogs):
    client, user = editor
    a, _ = two_blogs
    assert client.post("/admin/publishqueue/job/pause/", {"target": "all"}).status_code == 403
    grant(user, "pause_queue")
    response = client.post("/admin/publishqueue/job/pause/", {"target": f"site:{a.pk}"},
                           HTTP_ACCEPT="application/json")
    assert response.json()["message"].startswith("Paused: Alpha")
    pause = QueuePause.objects.get()
    assert (pause.scope, pause.site_id, pause.paused_by) == ("site", a.pk, user)
    assert LogEntry.objects.get().change_message == "Paused the publish queue: Alpha"
    html = client.get("/admin/").content.decode()
    assert "Paused: Alpha" in html and "pq-resume-button" in html
    response = client.post(f"/admin/publishqueue/job/resume/{pause.pk}/")
    assert response.status_code == 302 and not QueuePause.objects.exists()
    assert LogEntry.objects.order_by("-id").first().change_message == "Resumed the publish queue: Alpha"


def test_cancel_confirms_without_javascript_needs_delete_job_and_is_logged(editor, two_blogs):
    client, user = editor
    a, _ = two_blogs
    template = Template.objects.get(site=a, identifier="entry")
    assert client.post("/admin/publishqueue/job/cancel/", {"template": template.pk}).status_code == 403
    grant(user, "delete_job", "view_job")
    count = Job.objects.filter(fileinfo__template=template).count()
    page = client.get(f"/admin/publishqueue/job/cancel/?template={template.pk}").content.decode()
    assert f"Cancel the {count} queued jobs of template “Entry” (Alpha)" in page
    assert Job.objects.filter(fileinfo__template=template).count() == count  # nothing yet
    response = client.post("/admin/publishqueue/job/cancel/", {"template": template.pk},
                           HTTP_ACCEPT="application/json")
    assert response.json()["message"].startswith(f"Cancelled {count} queued job(s) of template “Entry”")
    assert not Job.objects.filter(fileinfo__template=template).exists()
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.change_message) == (str(template.pk), f"Cancelled {count} queued publish job(s)")
