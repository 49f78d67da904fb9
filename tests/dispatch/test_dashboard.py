"""The admin dashboard through Django's test client: data, permissions, recycle, queue actions."""
import datetime as dt

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.utils import timezone

from dispatch.models import ManagerStatus, RecycleAck, RecycleRequest
from publishqueue.enqueue import NewJob, enqueue
from publishqueue.models import Job, JobError, JobStat, QueueSample
from publishqueue.stats import slot_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = UserFactory(username="editor", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_job", "change_job"]))
    client.force_login(user)
    return client


def queue_some():
    now = timezone.now()
    enqueue(NewJob(kind="noop", unique_key=str(i)) for i in range(5))
    Job.objects.filter(unique_key="0").update(failed_at=now, attempts=5, last_error="boom")
    Job.objects.filter(unique_key="1").update(attempts=1, run_after=now + dt.timedelta(minutes=5))
    Job.objects.filter(unique_key="2").update(grabbed_until=now + dt.timedelta(minutes=1), grabbed_by="w")
    JobError.objects.create(job_id=Job.objects.get(unique_key="0").pk, kind="noop", unique_key="0", message="boom")
    JobStat.objects.create(minute=now.replace(second=0, microsecond=0), kind="noop", done=12, latency_ms=1200)
    QueueSample.objects.create(at=slot_of(now - dt.timedelta(seconds=20)), done=12)


def test_the_admin_index_shows_depth_workers_and_the_recycle_button(admin_client):
    queue_some()
    ManagerStatus.objects.create(
        host="web1", pid=42, started=timezone.now(), last_seen=timezone.now(), address="unix:/run/x.sock",
        children=[{"pid": 43, "state": "busy", "requests": 7, "request": "GET /", "request_age": 0.5,
                   "rss": 50 << 20, "cpu": 1.0, "age": 10}],
    )
    html = admin_client.get("/admin/").content.decode()
    assert 'data-field="depth.ready">2<' in html and 'data-field="depth.failed">1<' in html
    assert 'data-field="depth.waiting">1<' in html and 'data-field="depth.in_progress">1<' in html
    assert "runfcgi unix:/run/x.sock" in html and ">43<" in html and "GET / (0.5s)" in html
    assert "Recycle Workers" in html and 'data-chart="queue"' in html and "boom" in html


def test_what_a_manager_has_to_say_is_on_the_dashboard(admin_client):
    ManagerStatus.objects.create(
        host="web1", pid=42, started=timezone.now(), last_seen=timezone.now(), address="unix:/run/x.sock",
        message="Recycle (SIGHUP) abandoned: new processes fail to start (RuntimeError: broken deploy).",
    )
    assert "RuntimeError: broken deploy" in admin_client.get("/admin/").content.decode()
    data = admin_client.get("/dispatch/dashboard.json").json()
    assert "broken deploy" in data["workers"]["managers"][0]["message"]


def test_the_json_endpoint_feeds_the_auto_refresh(admin_client):
    queue_some()
    data = admin_client.get("/dispatch/dashboard.json").json()
    assert data["depth"] == {"ready": 2, "waiting": 1, "in_progress": 1, "failed": 1}
    assert data["throughput_per_min"] > 0 and data["eta_seconds"] is not None
    assert {"managers", "queue_workers"} <= set(data["workers"]) and data["can_recycle"] is True
    chart = data["charts"]["queue"]
    # From the first sample (20 s ago), but at least the last 10 minutes, every 5 s.
    assert len(chart["x"]) in (121, 122) and [len(s["values"]) for s in chart["series"]] == [len(chart["x"])] * 2
    assert chart["series"][1]["values"][-5:-2].count(12 * 60 / 5) == 1
    assert {"dispatch-workers", "pq-state", "pq-tables", "pq-errors", "pq-freshness"} <= set(data["regions"])


def test_a_user_without_the_permission_sees_no_button_and_gets_403(staff_client):
    assert "Recycle Workers" not in staff_client.get("/admin/").content.decode()
    assert staff_client.post("/dispatch/recycle/").status_code == 403
    assert not RecycleRequest.objects.exists()


def test_recycle_records_who_and_when_with_an_audit_entry(admin_client):
    response = admin_client.get("/dispatch/recycle/")
    assert b"Yes, recycle workers" in response.content  # the confirmation page without JavaScript
    response = admin_client.post("/dispatch/recycle/")
    assert response.status_code == 302
    request = RecycleRequest.objects.get()
    assert request.requested_by.username == "admin"
    assert LogEntry.objects.get().change_message == "Recycle workers requested"
    RecycleAck.objects.create(request=request, kind="manager", host="web1", pid=42, new_pids=[50, 51])
    html = admin_client.get("/admin/").content.decode()
    assert f"Last recycle #{request.pk} by admin" in html and "new pids 50, 51" in html


def test_recycle_needs_a_post_with_csrf(client):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(UserFactory(username="boss2", is_staff=True, is_superuser=True))
    assert csrf_client.post("/dispatch/recycle/").status_code == 403


def test_queue_actions_retry_raise_and_delete(admin_client):
    queue_some()
    failed = Job.objects.get(unique_key="0")
    admin_client.post(f"/admin/publishqueue/job/{failed.pk}/do/retry/")
    failed.refresh_from_db()
    assert (failed.failed_at, failed.attempts) == (None, 0)
    admin_client.post(f"/admin/publishqueue/job/{failed.pk}/do/raise/")
    assert Job.objects.get(pk=failed.pk).priority == 5
    admin_client.post(f"/admin/publishqueue/job/{failed.pk}/do/delete/")
    assert not Job.objects.filter(pk=failed.pk).exists()
    assert admin_client.get(f"/admin/publishqueue/job/{failed.pk}/do/retry/").status_code == 405


def test_the_job_list_filters_by_state_and_sets_priority(admin_client):
    queue_some()
    html = admin_client.get("/admin/publishqueue/job/?state=failed").content.decode()
    assert "noop:0" in html and "noop:3" not in html
    ids = [str(j.pk) for j in Job.objects.filter(unique_key__in=["3", "4"])]
    admin_client.post("/admin/publishqueue/job/", {"action": "set_priority", "_selected_action": ids,
                                                        "priority": "7"})
    assert set(Job.objects.filter(pk__in=ids).values_list("priority", flat=True)) == {7}


def test_the_admin_index_shows_depth_by_blog_and_by_template(admin_client, tmp_path):
    from blog import services
    from tests.factories import EntryFactory, blog_with_templates

    html = admin_client.get("/admin/").content.decode()
    assert html.count('<td colspan="6">The queue is empty.</td>') == 2
    blog = blog_with_templates(tmp_path / "site", mode="queue", name="Queued blog")
    services.save_entry(entry=EntryFactory(blog=blog))
    html = admin_client.get("/admin/").content.decode()
    assert "<h3>Queue by blog</h3>" in html and "<th>Blog</th>" in html
    assert "<h3>Queue by template</h3>" in html and "<th>Template</th>" in html
    cells = '<td class="pq-n">{}</td><td class="pq-n">0</td><td class="pq-n">0</td><td class="pq-n">0</td>'
    assert "<tr><td>Queued blog</td>" + cells.format(5) in html
    assert "<tr><td>Entry</td>" + cells.format(1) in html
