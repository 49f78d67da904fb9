"""TheSchwartz semantics, fixed: priority order, coalescing, generations, leases, retries."""
import datetime as dt
import random

import pytest
from django.db import IntegrityError, transaction
from django.test import override_settings
from django.utils import timezone

from publishqueue import jobrows
from publishqueue.enqueue import NewJob, enqueue
from publishqueue.models import Job, JobError

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def add(key, priority=0, run_after=NOW, kind="noop"):
    enqueue([NewJob(kind=kind, unique_key=key, priority=priority, run_after=run_after)])
    return Job.objects.get(kind=kind, unique_key=key)


def keys(claimed):
    return [c.unique_key for c in claimed]


def test_claims_by_priority_then_run_after_then_id():
    add("low", 0)
    add("high-later", 10, NOW - dt.timedelta(seconds=1))
    add("high-earlier", 10, NOW - dt.timedelta(seconds=5))
    add("mid", 5)
    add("future", 99, NOW + dt.timedelta(minutes=1))
    assert keys(jobrows.claim(worker_id="w", load=10, now=NOW)) == ["high-earlier", "high-later", "mid", "low"]


def test_near_the_end_of_the_queue_a_worker_takes_only_its_share_of_what_is_left():
    for n in range(23):
        add(f"j{n:02d}", priority=-n)
    assert len(jobrows.claim(worker_id="w1", load=10, share=2, now=NOW)) == 10  # 23 left: a full batch
    assert len(jobrows.claim(worker_id="w2", load=10, share=2, now=NOW)) == 7  # 13 left: half, rounded up
    assert keys(jobrows.claim(worker_id="w1", load=10, share=2, now=NOW)) == ["j17", "j18", "j19"]
    assert keys(jobrows.claim(worker_id="w2", load=10, share=2, now=NOW)) == ["j20", "j21"]
    assert keys(jobrows.claim(worker_id="w1", load=10, share=2, now=NOW)) == ["j22"]
    assert jobrows.claim(worker_id="w2", load=10, share=2, now=NOW) == []


def test_a_lone_worker_takes_a_full_batch():
    for n in range(5):
        add(f"j{n}")
    assert len(jobrows.claim(worker_id="w", load=10, now=NOW)) == 5


def test_a_claimed_job_is_not_claimed_again_while_its_lease_holds():
    add("a")
    assert keys(jobrows.claim(worker_id="w1", load=5, now=NOW)) == ["a"]
    assert jobrows.claim(worker_id="w2", load=5, now=NOW + dt.timedelta(seconds=59)) == []


def test_an_expired_lease_makes_the_job_claimable_and_the_old_worker_cannot_complete_it():
    add("a")
    [first] = jobrows.claim(worker_id="w1", load=1, now=NOW)
    [second] = jobrows.claim(worker_id="w2", load=1, now=NOW + dt.timedelta(seconds=61))
    assert jobrows.complete(worker_id="w1", jobs=[first]) == 0
    assert Job.objects.get().grabbed_by == "w2"
    jobrows.complete(worker_id="w2", jobs=[second])
    assert not Job.objects.exists()


def test_renewing_keeps_the_lease():
    add("a")
    [job] = jobrows.claim(worker_id="w1", load=1, now=NOW)
    jobrows.renew(worker_id="w1", job_ids=[job.id], now=NOW + dt.timedelta(seconds=50))
    assert jobrows.claim(worker_id="w2", load=1, now=NOW + dt.timedelta(seconds=100)) == []
    assert jobrows.renew(worker_id="w2", job_ids=[job.id]) == 0  # only the holder renews


def test_a_second_insert_coalesces_into_one_job():
    add("a", priority=1)
    add("a", priority=7)
    add("a", priority=3)
    job = Job.objects.get()
    assert (job.priority, job.generation) == (7, 3)


def test_the_unique_key_is_enforced_by_the_database():
    Job.objects.create(kind="noop", unique_key="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(kind="noop", unique_key="x")
    Job.objects.create(kind="other", unique_key="x")
    Job.objects.create(kind="noop", unique_key=None)
    Job.objects.create(kind="noop", unique_key=None)


def test_a_change_while_running_is_published_again():
    add("a")
    [job] = jobrows.claim(worker_id="w", load=1, now=NOW)
    add("a")  # the file changed while the worker was publishing it
    assert jobrows.complete(worker_id="w", jobs=[job]) == 1
    row = Job.objects.get()
    assert (row.generation, row.grabbed_by, row.grabbed_until) == (2, "", None)
    [again] = jobrows.claim(worker_id="w", load=1, now=NOW)
    assert again.generation == 2
    assert jobrows.complete(worker_id="w", jobs=[again]) == 0
    assert not Job.objects.exists()


@override_settings(PUBLISHQUEUE={"RETRY_BACKOFF_SECONDS": 300, "JOB_MAX_ATTEMPTS": 3})
def test_failures_are_logged_retried_with_backoff_then_kept_as_failed():
    add("a")
    for attempt in (1, 2):
        [job] = jobrows.claim(worker_id="w", load=1, now=timezone.now() + dt.timedelta(days=attempt))
        assert jobrows.fail(worker_id="w", job=job, message=f"boom {attempt}", traceback="Traceback...") is False
        row = Job.objects.get()
        assert row.attempts == attempt and row.failed_at is None and row.grabbed_by == ""
        wait = (row.run_after - timezone.now()).total_seconds()
        assert (299 <= wait <= 301) if attempt == 1 else (479 <= wait <= 721)
    [job] = jobrows.claim(worker_id="w", load=1, now=timezone.now() + dt.timedelta(days=9))
    assert jobrows.fail(worker_id="w", job=job, message="boom 3") is True
    row = Job.objects.get()
    assert row.failed_at is not None and row.last_error == "boom 3"
    assert jobrows.claim(worker_id="w", load=1, now=timezone.now() + dt.timedelta(days=99)) == []
    errors = list(JobError.objects.order_by("attempt").values_list("attempt", "message", "worker", "job_id"))
    assert errors == [(1, "boom 1", "w", row.pk), (2, "boom 2", "w", row.pk), (3, "boom 3", "w", row.pk)]
    assert jobrows.retry_now([row.pk]) == 1
    assert keys(jobrows.claim(worker_id="w", load=1)) == ["a"]


def test_a_new_change_revives_a_failed_job():
    add("a")
    Job.objects.update(failed_at=NOW, attempts=5, run_after=NOW)
    add("a", run_after=NOW + dt.timedelta(seconds=1))
    row = Job.objects.get()
    assert (row.failed_at, row.attempts) == (None, 0)


def test_a_new_change_cuts_a_retry_backoff_short():
    add("a")
    Job.objects.update(attempts=1, run_after=NOW + dt.timedelta(minutes=5))
    add("a", run_after=NOW)
    assert Job.objects.get().run_after == NOW


def test_backoff_doubles_with_jitter_and_is_capped():
    rng = random.Random(4)
    assert jobrows.backoff(1, rng=rng) == 300
    assert 480 <= jobrows.backoff(2, rng=rng) <= 720
    assert 960 <= jobrows.backoff(3, rng=rng) <= 1440
    assert jobrows.backoff(30, rng=rng) == 6 * 3600


def test_randomly_picks_among_the_top_of_the_queue():
    for i in range(40):
        add(f"j{i:02d}", priority=i)
    seen = set()
    for _ in range(10):
        claimed = jobrows.claim(worker_id="w", load=2, randomly=True, now=NOW)
        seen |= set(keys(claimed))
        jobrows.release(worker_id="w", jobs=claimed)
    top = {f"j{i:02d}" for i in range(30, 40)}  # RANDOM_WINDOW 5 x load 2
    assert seen <= top and len(seen) > 2


def test_kinds_and_floor_filter_what_is_claimed():
    add("p", priority=10, kind="publish")
    add("n", priority=1, kind="noop")
    assert keys(jobrows.claim(worker_id="w", load=5, kinds=["noop"], now=NOW)) == ["n"]
    Job.objects.update(grabbed_by="", grabbed_until=None)
    assert keys(jobrows.claim(worker_id="w", load=5, floor=5, now=NOW)) == ["p"]


def test_a_claim_counts_an_attempt_and_giving_a_job_back_uncounts_it():
    add("a")
    [job] = jobrows.claim(worker_id="w", load=1, now=NOW)
    assert job.attempts == Job.objects.get().attempts == 1
    assert jobrows.release(worker_id="w", jobs=[job]) == 1
    assert Job.objects.get().attempts == 0
    [job] = jobrows.claim(worker_id="w", load=1, now=NOW)
    add("a")  # changed while running: it ran fine, so it runs again with no attempt used
    assert jobrows.complete(worker_id="w", jobs=[job]) == 1
    assert Job.objects.get().attempts == 0


@override_settings(PUBLISHQUEUE={"JOB_MAX_ATTEMPTS": 3, "LEASE_SECONDS": 60})
def test_a_job_whose_worker_dies_is_counted_run_alone_and_failed_after_max_attempts():
    """A handler that kills its worker never reaches fail(): its lease expires with grabbed_by still set. Each
    claim counted an attempt; such a job is claimed alone (it takes no other job down with it); once its
    attempts are used up it is failed with an error naming the worker that died."""
    add("pill", priority=5)
    for n in range(4):
        add(f"other{n}")
    t = NOW
    [pill, *mates] = jobrows.claim(worker_id="host1:101:1", load=5, now=t)
    assert pill.unique_key == "pill" and len(mates) == 4  # the worker dies running the pill, mates and all
    for attempt, pid in ((2, 102), (3, 103)):
        t += dt.timedelta(seconds=61)
        assert keys(jobrows.claim(worker_id=f"host1:{pid}:1", load=5, now=t)) == ["pill"]  # alone
        row = Job.objects.get(unique_key="pill")
        assert row.attempts == attempt and f"pid {pid - 1}" in row.last_error
        assert "ended without a result" in row.last_error
    t += dt.timedelta(seconds=61)
    claimed = jobrows.claim(worker_id="host1:104:1", load=5, now=t)
    assert keys(claimed) == ["other0"]  # its mates run again, one at a time (each might be the killer)
    assert [c.attempts for c in claimed] == [2]
    pill_row = Job.objects.get(unique_key="pill")
    assert pill_row.failed_at == t and pill_row.attempts == 3 and pill_row.grabbed_by == ""
    error = JobError.objects.get()
    assert (error.job_id, error.kind, error.attempt, error.worker) == (pill_row.pk, "noop", 3, "host1:103:1")
    assert "worker died while running this job: host host1, pid 103" in error.message
    assert jobrows.retry_now([pill_row.pk]) == 1
    assert Job.objects.get(unique_key="pill").attempts == 0


@override_settings(PUBLISHQUEUE={"JOB_MAX_ATTEMPTS": 3, "RETRY_BACKOFF_SECONDS": 1})
def test_failures_and_deaths_share_one_count_and_fail_counts_no_attempt_twice():
    add("a")
    [job] = jobrows.claim(worker_id="w1", load=1, now=NOW)
    assert jobrows.fail(worker_id="w1", job=job, message="boom", now=NOW) is False
    t = NOW + dt.timedelta(seconds=5)
    jobrows.claim(worker_id="h:7:1", load=1, now=t)  # attempt 2: its worker dies
    t += dt.timedelta(seconds=61)
    [job] = jobrows.claim(worker_id="w3", load=1, now=t)
    assert job.attempts == 3
    assert jobrows.fail(worker_id="w3", job=job, message="boom again", now=t) is True
    assert list(JobError.objects.order_by("attempt").values_list("attempt", flat=True)) == [1, 3]
    assert Job.objects.get().attempts == 3


def test_held_says_which_jobs_a_worker_still_holds_and_at_which_generation():
    add("a")
    add("b")
    add("c")
    a, b, c = jobrows.claim(worker_id="w1", load=3, now=NOW)
    add("b")  # changed while running
    Job.objects.filter(pk=c.id).update(grabbed_by="w2")  # taken over after w1's lease expired
    with transaction.atomic():
        assert jobrows.held(worker_id="w1", jobs=[a, b, c]) == {a.id: 1, b.id: 2}


def test_a_forced_publish_stays_forced_when_coalesced_with_an_ordinary_one():
    enqueue([NewJob(kind="publish", unique_key="1", args={"force": True})])
    enqueue([NewJob(kind="publish", unique_key="1")])
    assert Job.objects.get().args == {"force": True}
    Job.objects.update(args={})
    enqueue([NewJob(kind="publish", unique_key="1", args={"force": True})])
    assert Job.objects.get().args == {"force": True}
