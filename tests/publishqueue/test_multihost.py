"""Two "hosts" (distinct host ids, separate process groups of runworker) on one PostgreSQL database publishing a
blog to one S3 bucket (rclone serve s3), with kill -9 chaos and concurrent edits: every object ends equal to a
fresh render, its hash recorded, nothing left in the queue; the dashboard lists both hosts, and a recycle request
is acknowledged by both."""
import random
import subprocess
import sys
import time

import pytest

from tests.multiproc import ROOT, database_params

pytestmark = pytest.mark.slow

HOSTS = ("host-a", "host-b")


@pytest.mark.parametrize("cluster", database_params()[1:], indirect=True)  # PostgreSQL only
def test_two_hosts_publish_one_bucket_through_kill_9_and_concurrent_edits(cluster, s3_server):
    rng = random.Random(3)
    cluster.env.update(MTD_S3_BUCKET=s3_server.new_bucket(), MTD_S3_ENDPOINT=s3_server.endpoint)
    queued = cluster.call("setup", 60, cluster.site)["queued"]
    assert cluster.call("use_target", "s3")["blogs"] == 1
    args = ("--load", "5", "--sleep", "0.2")

    def spawn(host: str) -> subprocess.Popen:
        return cluster.spawn(*args, env={"MTDISPATCH_HOST": host}, new_session=True)

    workers = [(host, spawn(host)) for host in HOSTS for _ in range(2)]
    cluster.wait_until(lambda s: cluster.call("hosts")["hosts"] == list(HOSTS), 60, "both hosts' workers to report")
    editor = subprocess.Popen(
        [sys.executable, "-m", "tests.mp", "edit", "40", "11"], env=cluster.env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    kills, end = 0, time.monotonic() + 6
    while time.monotonic() < end or editor.poll() is None:
        time.sleep(rng.uniform(0.3, 0.8))
        index = rng.randrange(len(workers))
        host, victim = workers[index]
        cluster.kill(victim)  # kill -9, mid-batch or mid-upload
        workers[index] = (host, spawn(host))
        kills += 1
    assert editor.returncode == 0, editor.stderr.read()[-3000:]
    assert kills >= 6

    def respawn() -> None:
        for index, (host, proc) in enumerate(workers):
            if proc.poll() is not None:
                workers[index] = (host, spawn(host))

    cluster.wait_until(lambda s: s["jobs"] == 0, 300, "the queue to drain after the chaos", tick=respawn)
    assert cluster.call("hosts")["hosts"] == list(HOSTS)  # the dashboard lists both
    request = cluster.call("recycle")["id"]
    cluster.wait_until(lambda s: cluster.call("acked", request)["hosts"] == list(HOSTS), 60,
                       "the workers of both hosts to acknowledge a recycle request")
    cluster.stop_all()
    result = cluster.call("verify_target")
    assert result["files"] >= queued * 0.9 and result["jobs_left"] == 0
    assert (result["stale"], result["missing"], result["unrecorded"]) == ([], [], []), result
    assert result["errors"] == [], result
    assert not (cluster.site.exists() and any(p.is_file() for p in cluster.site.rglob("*")))  # all in the bucket
