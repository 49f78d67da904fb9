"""Fixtures for tests that run real worker processes against a real database (SQLite file or PostgreSQL)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("MTDISPATCH_TEST_PG")


def database_params():
    pg = pytest.param(
        "postgres",
        marks=pytest.mark.skipif(not PG_ADMIN_URL, reason="set MTDISPATCH_TEST_PG (.ci/run does) to run on PostgreSQL"),
    )
    return ["sqlite", pg]


class Cluster:
    """A database, a site root, and worker processes started and killed by the test."""

    def __init__(self, env: dict, tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.site = tmp / "site"
        self.workers: list[subprocess.Popen] = []
        self.kills: dict[int, float] = {}

    def call(self, *args, timeout: float = 300) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "tests.mp", *map(str, args)], env=self.env, cwd=ROOT, capture_output=True,
            text=True, timeout=timeout,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def spawn(self, *extra: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runworker", "--daemon", "--no-background", *extra],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.tmp / "workers.log", "a"),
        )
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills[proc.pid] = time.time()

    def wait_until(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.call("status")
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {state}")
            time.sleep(0.5)

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def probe_lines(self) -> list[str]:
        path = Path(self.env["MTD_PROBE_LOG"])
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def cluster(request, tmp_path):
    kind = request.param
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_multiproc",
        "MTD_PROBE_LOG": str(tmp_path / "probe.log"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DATABASE_URL", None)
    dbname = None
    if kind == "sqlite":
        env["MTDISPATCH_SQLITE"] = str(tmp_path / "db.sqlite3")
    else:
        import psycopg

        dbname = f"mtd_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        env["DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{dbname}"
    cluster = Cluster(env, tmp_path)
    yield cluster
    cluster.stop_all()
    if dbname:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
