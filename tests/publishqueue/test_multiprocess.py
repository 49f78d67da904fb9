"""Real worker processes on a real database: never twice at once, SIGTERM bound, SIGHUP restart, chaos."""
import random
import re
import signal
import socket
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
    """Four workers drain the queue while one is SIGKILLed and restarted every 0.3-0.9 s, one is frozen
    (SIGSTOP) past its lease and woken again, an editor changes 150 entries, and a crash pill kills whoever
    runs it (dead workers are respawned); afterwards every file must match what the database renders now,
    the pill must have failed with an error, nothing else, and no temp file may stay in the site root."""
    rng = random.Random(7)
    queued = cluster.call("setup", entries, cluster.site, noops)["queued"]
    assert queued >= 2000
    cluster.call("pill")
    args = ("--load", "5", "--sleep", "0.2")
    procs = [cluster.spawn(*args, *(["--randomly"] if i % 2 else [])) for i in range(4)]
    editor = subprocess.Popen(
        [sys.executable, "-m", "tests.mp", "edit", "150", "11"], env=cluster.env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lease = float(cluster.env.get("MTD_LEASE_SECONDS", "5"))
    end, kills, frozen, thawed = time.monotonic() + seconds, 0, None, None
    while time.monotonic() < end or editor.poll() is None or thawed is None:
        time.sleep(rng.uniform(0.3, 0.9))
        if frozen is None and kills == 3:
            frozen = (rng.choice([p for p in procs if p.poll() is None]), time.monotonic())
            frozen[0].send_signal(signal.SIGSTOP)
        elif frozen is not None and thawed is None and time.monotonic() > frozen[1] + lease + 2:
            frozen[0].send_signal(signal.SIGCONT)
            thawed = frozen[0]
        victim = rng.choice([i for i, p in enumerate(procs) if frozen is None or p is not frozen[0] or thawed])
        cluster.kill(procs[victim])
        procs[victim] = cluster.spawn(*args)
        kills += 1
        cluster.respawn_dead(procs, *args)  # the pill's victims
    assert editor.returncode == 0, editor.stderr.read()[-3000:]
    assert kills >= 10
    cluster.wait_until(lambda s: s["jobs"] == s["failed"] == 1, 300, "the queue to drain after the chaos",
                       tick=lambda: cluster.respawn_dead(procs, *args))
    cluster.stop_all()
    result = cluster.call("verify")
    assert result["jobs_left"] == 1  # the pill, failed
    assert result["stale"] == [] and result["missing"] == [] and result["unrecorded"] == [], result
    assert result["errors"] == []
    [pill] = cluster.call("errors")["errors"]
    assert pill["kind"] == "crash" and "worker died while running this job" in pill["message"]
    # A run by the worker that was frozen may overlap the run of the worker that took its job over: that is
    # what fencing is for (it put nothing in place, as the checks above show). Live workers never overlap.
    assert [o for o in overlaps(cluster.probe_lines(), cluster.kills) if thawed.pid not in o[1:3]] == []
    assert cluster.temp_files() == []


@pytest.mark.parametrize("cluster", database_params(), indirect=True)
def test_chaos_killed_workers_lose_nothing_and_every_file_ends_current(cluster):
    _chaos(cluster, entries=600, noops=1500, seconds=12)


def _frozen(proc: subprocess.Popen) -> bool:
    with open(f"/proc/{proc.pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "T"


def _wait_for(predicate, timeout: float, what: str, cluster=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{cluster.diagnosis()}" if cluster else ""))
        time.sleep(0.1)


def _noticed_outage(log: str) -> set[str]:
    """The pids of the workers that logged a database outage (a worker id is host:pid:start)."""
    return set(re.findall(r"^[^\s:]+:(\d+):\d+: (?:heartbeat: )?database unavailable", log, re.MULTILINE))


@pytest.mark.parametrize("cluster", database_params(), indirect=True)
def test_a_worker_frozen_past_its_lease_puts_back_nothing_it_staged(cluster):
    """Worker A stops itself (SIGSTOP) in the middle of a batch, its files staged, not yet in place. Its leases
    expire; every entry is edited; worker B takes the jobs over and publishes. A is woken: it must notice it
    no longer holds its jobs and discard what it staged, quietly: no page goes back to old content, no error
    is logged, every stored hash is the file's on disk, and no temp file stays."""
    cluster.call("setup", 8, cluster.site)
    zombie = cluster.spawn("--load", "100", env={"MTD_PROBE_STOP_AFTER": "12"})
    _wait_for(lambda: _frozen(zombie), 60, "worker A to freeze mid-batch")
    ran = [line for line in cluster.probe_lines() if " end " in line]
    assert len(ran) == 12 and {line.split()[2] for line in ran} == {str(zombie.pid)}
    assert cluster.temp_files()  # A's batch is staged
    cluster.call("edit_all", 5)
    cluster.spawn("--load", "5", "--sleep", "0.1")
    cluster.wait_until(lambda s: s["jobs"] == 0, 120, "worker B to take A's jobs over and drain the queue")
    zombie.send_signal(signal.SIGCONT)
    zombie.send_signal(signal.SIGTERM)  # A finishes its batch (what it can of it) and exits
    assert zombie.wait(timeout=60) == 0
    cluster.stop_all()
    result = cluster.call("verify")
    assert result["jobs_left"] == 0
    assert (result["stale"], result["missing"], result["unrecorded"]) == ([], [], []), result
    assert result["errors"] == [], result
    assert cluster.temp_files() == []


def test_workers_ride_out_a_database_restart_and_drain_without_waiting_for_leases(pg_cluster):
    """PostgreSQL is stopped under four workers in the middle of a drain, kept down until every worker has
    noticed, and started again. No worker exits; each logs the outage once (no traceback) and reconnects.
    Leases are ten minutes here, so the queue can only drain if the workers gave back or renewed the jobs
    they held: none is left to wait for a lease to expire."""
    cluster = pg_cluster
    cluster.env.update(MTD_LEASE_SECONDS="600", MTD_PROBE_SLEEP="0.02")
    queued = cluster.call("setup", 20, cluster.site, 1200)["queued"]
    procs = [cluster.spawn("--load", "5", "--sleep", "0.1") for _ in range(4)]
    cluster.wait_until(lambda s: s["jobs"] < queued - 40, 120, "the drain to be under way")
    cluster.server.stop()
    _wait_for(lambda: _noticed_outage(cluster.log()) == {str(p.pid) for p in procs}, 60,
              "every worker to notice the outage", cluster)
    assert [p.poll() for p in procs] == [None] * 4
    cluster.server.start()
    back = time.monotonic()
    state = cluster.call("status")
    assert state["jobs"] > 0  # the outage hit the drain in its middle
    cluster.wait_until(lambda s: s["jobs"] == 0, 180, "the queue to drain after the database came back")
    print(f"drained {time.monotonic() - back:.1f} s after the database came back")
    assert [p.poll() for p in procs] == [None] * 4  # no worker exited
    cluster.stop_all()
    assert [p.returncode for p in procs] == [0] * 4
    log = cluster.log()
    assert "Traceback" not in log, log[-5000:]
    result = cluster.call("verify")
    assert (result["stale"], result["missing"], result["unrecorded"], result["errors"]) == ([], [], [], []), result
    assert cluster.temp_files() == []


@pytest.mark.parametrize("cluster", database_params(), indirect=True)
def test_a_job_that_kills_its_worker_fails_after_max_attempts_with_a_visible_error(cluster):
    """A crash pill (its handler SIGKILLs the worker) among ordinary jobs; workers are respawned as they die
    (runfcgi does that). Each death counts an attempt; after MAX the job is failed with a JobError naming the
    host and pid of the worker that died, and the other jobs all complete."""
    cluster.env.update(MTD_MAX_ATTEMPTS="3", MTD_LEASE_SECONDS="2")
    cluster.call("setup", 0, cluster.site, 60)
    cluster.call("pill")
    procs = [cluster.spawn("--load", "5", "--sleep", "0.1") for _ in range(2)]
    deaths = []

    def supervise():
        deaths.extend(p.pid for p in procs if p.poll() is not None)
        cluster.respawn_dead(procs, "--load", "5", "--sleep", "0.1")

    cluster.wait_until(lambda s: s["failed"] == 1 and s["jobs"] == 1, 300, "the pill to fail", tick=supervise)
    supervise()
    report = cluster.call("errors")
    assert report["failed"] == [{"kind": "crash", "unique_key": "pill", "attempts": 3}]
    [error] = report["errors"]
    assert error["kind"] == "crash" and error["attempt"] == 3
    assert "worker died while running this job" in error["message"]
    host, pid = error["worker"].split(":")[:2]
    assert host == socket.gethostname() and int(pid) in deaths and f"pid {pid}" in error["message"]
    assert len(deaths) == 3  # one death per attempt: the jobs it was batched with were not taken down again
    cluster.stop_all()
    assert [p.returncode for p in procs] == [0] * 2
