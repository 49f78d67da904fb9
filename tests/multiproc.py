"""Fixtures for tests that run real worker processes against a real database (SQLite file or PostgreSQL)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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

    def spawn(self, *extra: str, env: dict | None = None, new_session: bool = False) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runworker", "--daemon", "--no-background", *extra],
            env={**self.env, **(env or {})}, cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "workers.log", "a"), start_new_session=new_session,
        )
        self.workers.append(proc)
        return proc

    def respawn_dead(self, procs: list[subprocess.Popen], *extra: str) -> int:
        """Supervise like runfcgi does: start a new worker for each one that died. Returns how many died."""
        died = 0
        for index, proc in enumerate(procs):
            if proc.poll() is not None:
                self.kills.setdefault(proc.pid, time.time())
                procs[index] = self.spawn(*extra)
                died += 1
        return died

    def temp_files(self) -> list[str]:
        """Staged files (dot-names ending in .tmp) left in the site root."""
        return sorted(str(p.relative_to(self.site)) for p in self.site.rglob(".*.tmp")) if self.site.exists() else []

    def log(self) -> str:
        path = self.tmp / "workers.log"
        return path.read_text() if path.exists() else ""

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills[proc.pid] = time.time()

    def wait_until(self, predicate, timeout: float, what: str, tick=None) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.call("status")
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {state}\n{self.diagnosis()}")
            if tick is not None:
                tick()
            time.sleep(0.5)

    def diagnosis(self) -> str:
        """What a timed-out wait reports: the workers' exit codes, free disk space, the end of their log."""
        codes = [(p.pid, p.poll()) for p in self.workers]
        disk = shutil.disk_usage(self.tmp)
        return (f"workers (pid, exit code): {codes}\nfree disk: {disk.free // 2**20} MiB\n"
                f"workers.log, last lines:\n{self.log()[-4000:]}")

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


def _env(tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_multiproc",
        "MTD_PROBE_LOG": str(tmp_path / "probe.log"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DATABASE_URL", None)
    return env


@pytest.fixture
def cluster(request, tmp_path):
    kind = request.param
    env = _env(tmp_path)
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


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb + pg_ctl on a free port), so the test can stop and start
    it under running workers. Run as the postgres user when the tests run as root (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="mtd-pg-"))
        self.data, self.port = self.dir / "data", _free_port()
        self.as_user = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pg_cluster(tmp_path):
    """A cluster on a private PostgreSQL server that the test may stop and start (``cluster.server``)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = PrivatePostgres(bindir)
    server.init()
    server.start()
    env = _env(tmp_path)
    env["DATABASE_URL"] = server.url
    cluster = Cluster(env, tmp_path)
    cluster.server = server
    try:
        yield cluster
    finally:
        cluster.stop_all()
        server.destroy()
