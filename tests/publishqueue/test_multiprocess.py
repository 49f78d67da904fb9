"""Real worker processes on a real database: never twice at once, SIGTERM bound, SIGHUP restart, chaos."""
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.multiproc import ROOT, database_params
from tests.probe import overlaps

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("cluster", database_params(), indirect=True)
def test_concurrent_workers_never_run_a_job_twice_at_once(cluster):
    cluster.env["MTD_PROBE_SLEEP"] = "0.01"
    queued = cluster.call("setup", 20, cluster.site, 300)["queued"]
    for _ in range(4):
        cluster.spawn("--load", "3", "--sleep", "0.1")
    cluster.wait_until(lambda s: s["jobs"] == 0, 180, "the queue to drain")
    cluster.stop_all()
    lines = cluster.probe_lines()
    starts = [line for line in lines if " start " in line]
    assert len({line.split()[3] for line in starts}) == queued  # every job ran
    assert len(starts) == queued  # ...exactly once, with no worker killed
    assert len({line.split()[2] for line in starts}) > 1  # and the work was shared
    assert overlaps(lines, cluster.kills) == []


@pytest.mark.parametrize("cluster", ["sqlite"], indirect=True)
def test_sigterm_finishes_the_current_job_and_stops_within_the_bound(cluster):
    cluster.env["MTD_PROBE_SLEEP"] = "1.5"
    queued = cluster.call("setup", 0, cluster.site, 20)["queued"]
    proc = cluster.spawn("--load", "5")
    deadline = time.monotonic() + 30
    while " start " not in "".join(cluster.probe_lines()) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0  # 0: it finished its job; a stop past the bound exits with 3
    lines = cluster.probe_lines()
    assert len([x for x in lines if " start " in x]) == len([x for x in lines if " end " in x]) == 1
    state = cluster.call("status")
    assert state["jobs"] == queued - 1  # one done; the rest of its batch given back, not lost


@pytest.mark.parametrize("cluster", ["sqlite"], indirect=True)
def test_sighup_restarts_with_fresh_code_and_loses_nothing(cluster):
    cluster.env["MTD_PROBE_SLEEP"] = "0.2"
    queued = cluster.call("setup", 0, cluster.site, 30)["queued"]
    proc = cluster.spawn("--load", "5", "--sleep", "0.1")
    deadline = time.monotonic() + 30
    while " end " not in "".join(cluster.probe_lines()) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    cluster.wait_until(lambda s: s["jobs"] == 0, 60, "the queue to drain after SIGHUP")
    assert proc.poll() is None  # the same process, re-executed
    log = (cluster.tmp / "workers.log").read_text()
    assert "SIGHUP, restarting with fresh code" in log
    starts = [line.split()[3] for line in cluster.probe_lines() if " start " in line]
    assert len(set(starts)) == queued


def _chaos(cluster, *, entries: int, noops: int, seconds: float) -> None:
    """Four workers drain the queue while one is SIGKILLed and restarted every 0.3-0.9 s and an editor
    changes 150 entries; afterwards every file must match what the database renders now."""
    rng = random.Random(7)
    queued = cluster.call("setup", entries, cluster.site, noops)["queued"]
    assert queued >= 2000
    procs = [cluster.spawn("--load", "5", "--sleep", "0.2", *(["--randomly"] if i % 2 else [])) for i in range(4)]
    editor = subprocess.Popen(
        [sys.executable, "-m", "tests.mp", "edit", "150", "11"], env=cluster.env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    end, kills = time.monotonic() + seconds, 0
    while time.monotonic() < end or editor.poll() is None:
        time.sleep(rng.uniform(0.3, 0.9))
        victim = rng.randrange(len(procs))
        cluster.kill(procs[victim])
        procs[victim] = cluster.spawn("--load", "5", "--sleep", "0.2")
        kills += 1
    assert editor.returncode == 0, editor.stderr.read()[-3000:]
    assert kills >= 10
    cluster.wait_until(lambda s: s["jobs"] == 0, 300, "the queue to drain after the chaos")
    cluster.stop_all()
    result = cluster.call("verify")
    assert result["jobs_left"] == 0
    assert result["stale"] == [] and result["missing"] == [], result
    assert result["errors"] == []
    assert overlaps(cluster.probe_lines(), cluster.kills) == []


@pytest.mark.parametrize("cluster", database_params(), indirect=True)
def test_chaos_killed_workers_lose_nothing_and_every_file_ends_current(cluster):
    _chaos(cluster, entries=600, noops=1500, seconds=12)
