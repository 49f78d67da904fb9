"""Freshness under load: workers are woken when jobs are committed (PostgreSQL LISTEN/NOTIFY, a datagram to the
workers of this host on SQLite) instead of at their next poll, and a job above the rest of a batch in hand runs
before that rest (the batch is cut short between two jobs). Real worker processes on a real database."""
import time

import pytest

from tests.multiproc import database_params

pytestmark = pytest.mark.slow


def starts(cluster) -> list[int]:
    """The ids of the jobs whose runs started, in order."""
    return [int(line.split()[3]) for line in cluster.probe_lines() if " start " in line]


@pytest.mark.parametrize("cluster", database_params(), indirect=True)
def test_a_sleeping_worker_is_woken_by_the_commit_of_a_job(cluster):
    cluster.call("setup", 0, cluster.site, 2)
    cluster.spawn("--sleep", "60", "--no-periodic")
    cluster.wait_until(lambda s: s["jobs"] == 0, 120, "the first drain")
    ran = len(starts(cluster))
    queued = cluster.call("noops", 3, 0, "late")["ids"]
    # The worker sleeps 60 s between polls: a drain well within that was a wake-up.
    cluster.wait_until(lambda s: s["jobs"] == 0, 30, "the worker to be woken and run the new jobs")
    assert sorted(starts(cluster)[ran:]) == queued


@pytest.mark.parametrize("cluster", database_params(), indirect=True)
def test_a_high_priority_job_runs_before_the_rest_of_a_batch_in_hand(cluster):
    cluster.env["MTD_PROBE_SLEEP"] = "0.4"
    cluster.call("setup", 0, cluster.site, 0)
    cluster.spawn("--load", "100", "--sleep", "0.2", "--no-periodic")
    cluster.wait_until(lambda s: s["jobs"] == 0, 120, "the first drain")
    cluster.env["MTD_PROBE_SLEEP"] = "0"  # for the command below (the worker keeps its 0.4 s per job)
    slow = cluster.call("noops", 20, 0, "slow")["ids"]
    deadline = time.monotonic() + 60
    while not set(starts(cluster)) & set(slow):
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.05)
    urgent = cluster.call("noops", 1, 50, "urgent")["ids"]
    cluster.wait_until(lambda s: s["jobs"] == 0, 120, "the queue to drain")
    order = [job for job in starts(cluster) if job in {*slow, *urgent}]
    assert sorted(order) == sorted(slow + urgent)  # each ran once
    # The 20 slow jobs were one batch (8 s); the urgent job, queued during its first job, ran before its end.
    assert order.index(urgent[0]) < len(slow), order
    assert order[-1] in slow


def test_the_wake_up_directory_follows_the_database_file_when_its_path_resolves_elsewhere(tmp_path, monkeypatch):
    """Found by review: cached by name alone, a long-running process kept sending wake-ups to the directory of the
    release its database path resolved to at first, after a deploy moved the symlink (workers started since listen
    in the new one), or after a chdir with a relative name."""
    import os
    from types import SimpleNamespace

    from publishqueue import wakeup

    def cached_and_fresh(conn):  # what this process has, and what a process started now computes
        cached = wakeup.wake_directory(conn)
        wakeup._wake_directory_of.cache_clear()
        return cached, wakeup.wake_directory(conn)

    for release in ("release1", "release2"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "db.sqlite3").write_bytes(b"")
    os.symlink(tmp_path / "release1", tmp_path / "current")
    name = str(tmp_path / "current" / "db.sqlite3")
    conn = SimpleNamespace(settings_dict={"NAME": name})
    first = wakeup.wake_directory(conn)
    os.unlink(tmp_path / "current")
    os.symlink(tmp_path / "release2", tmp_path / "current")
    cached, fresh = cached_and_fresh(conn)
    assert cached == fresh != first
    same = SimpleNamespace(settings_dict={"NAME": str(tmp_path / "release2" / "db.sqlite3")})
    assert wakeup.wake_directory(same) == wakeup.wake_directory(conn)  # two names of one file agree

    monkeypatch.chdir(tmp_path / "release1")
    relative = SimpleNamespace(settings_dict={"NAME": "db.sqlite3"})
    first = wakeup.wake_directory(relative)
    monkeypatch.chdir(tmp_path / "release2")
    cached, fresh = cached_and_fresh(relative)
    assert cached == fresh != first
