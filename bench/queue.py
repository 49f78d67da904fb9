"""Publish queue benchmarks (SPEC 6), each phase on a fresh SQLite database, all in one run:

1. No-op jobs: enqueue rate (one call per job, and batched) and drain rate with N worker processes, for
   mtdispatch's queue and for django-q2's ORM broker (async_task + qcluster with the same worker count).
2. Saving an entry with every template Via Publish Queue, in a 100- and a 10,000-entry blog.
3. Full rebuild of a 10,000-entry blog drained by N runworker processes (``--load`` jobs per claim): the
   first publish into an empty site (cron mode: the workers start, drain and exit), then with daemon workers
   already running, from saving a change to the Header module to an empty queue (every file rewritten);
   pages/s, and the share of one worker's time spent outside rendering.
4. (``--parts s3``) The same blog published, then rebuilt for a Header change, to the file system and to an S3
   bucket (``rclone serve s3`` on this machine, through django-storages' S3Storage), alternating, each round on
   a fresh blog: pages/s of each, median with the spread over ``--repeat`` rounds, and their ratio.
5. (``--parts claims``, with ``MTDISPATCH_TEST_PG``) No-op jobs drained on PostgreSQL: claims/s with one job per
   claim, and jobs/s with a hundred.
6. (``--parts freshness``) Freshness under load: daemon workers drain full rebuilds (the Header changes again
   whenever the queue runs low) while an entry is saved every 0.5-2 s; the time from the save to the entry's file
   on disk showing it, p50, p95 and max, on SQLite and on PostgreSQL (a scratch database on the server
   ``MTDISPATCH_TEST_PG`` names, if set).

The machine's speed is printed with the results (a fixed pure-Python loop, timed before and after): on
shared machines it moves, and every figure moves with it.

    python bench/queue.py [--jobs 20000] [--q2-jobs 3000] [--workers 2] [--large 10000] [--load 100]
                          [--repeat 1] [--dir DIR] [--parts queue,save,rebuild,s3,claims,freshness] [--quick]
                          [--fresh-entries 3000] [--fresh-seconds 60]
"""
from __future__ import annotations

import sys

# Run as a script, this file's directory comes first on sys.path and its name shadows the stdlib's queue.
_here = __import__("os").path.dirname(__import__("os").path.realpath(__file__))
sys.path[:] = [p for p in sys.path if __import__("os").path.realpath(p or ".") != _here]

import argparse
import contextlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


# ---- phases: run in a subprocess whose environment names the database ---------------------------------


def _setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mtdispatch_project.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def phase_ours_enqueue(n: int) -> dict:
    from publishqueue.enqueue import NewJob, enqueue

    t = time.perf_counter()
    for i in range(n):
        enqueue([NewJob(kind="noop", unique_key=f"s{i}")])
    single = n / (time.perf_counter() - t)
    t = time.perf_counter()
    enqueue(NewJob(kind="noop", unique_key=f"b{i}") for i in range(n))
    bulk = n / (time.perf_counter() - t)
    return {"single": single, "bulk": bulk, "queued": 2 * n}


def phase_noops(n: int) -> dict:
    from publishqueue.enqueue import NewJob, enqueue

    enqueue(NewJob(kind="noop", unique_key=f"n{i}") for i in range(n))
    return {"queued": n}


def phase_q2_enqueue(n: int) -> dict:
    from django_q.tasks import async_task

    t = time.perf_counter()
    for _ in range(n):
        async_task("math.floor", 1.5)
    return {"single": n / (time.perf_counter() - t), "queued": n}


def phase_blog(entries: int, site: str) -> dict:
    from blog.demo import create_demo_blog

    t = time.perf_counter()
    create_demo_blog(site_root=site, site_url="http://127.0.0.1/blog/", entries=entries, mode="queue", password="x")
    return {"seconds": time.perf_counter() - t}


def phase_save_time(samples: int) -> dict:
    import random

    from blog.models import Entry
    from blog.services import save_entry

    ids = list(Entry.objects.values_list("pk", flat=True))
    rng = random.Random(1)
    times = []
    for n in range(samples):
        entry = Entry.objects.get(pk=rng.choice(ids))
        entry.title = f"Edited {n}"
        t = time.perf_counter()
        save_entry(entry=entry)
        times.append(time.perf_counter() - t)
    return {"median_ms": statistics.median(times) * 1000}


def phase_use_target(name: str) -> dict:
    from blog.models import Blog

    return {"blogs": Blog.objects.update(publish_target=name)}


def phase_published_count() -> dict:
    from publishqueue.models import FileInfo

    return {"files": FileInfo.objects.exclude(content_hash="").count()}


def phase_queue_all() -> dict:
    from publishqueue.models import Template
    from publishqueue.services import publish_templates

    report = publish_templates(templates=Template.objects.exclude(kind="module"), queue=True)
    return {"queued": report.queued}


def phase_touch_header() -> dict:
    """Change the Header module as an editor would in the admin (one transaction): every page that includes
    it is queued."""
    from django.db import transaction

    from publishqueue.models import Template
    from publishqueue.services import template_saved

    header = Template.objects.get(identifier="header")
    at = time.time()
    with transaction.atomic():
        header.source = header.source.replace("<body>", "<body>\n<!-- rebuilt -->")
        header.save()
        queued = template_saved(template=header, previous_mode=header.mode, paths_changed=False).queued
    return {"queued": queued, "at": at}


def phase_render_share(jobs: int, load: int) -> dict:
    """One worker in process, timing the render calls inside publish_file."""
    from publishqueue import publisher
    from publishqueue.worker import Worker, WorkerOptions

    spent = [0.0]
    real_render = publisher.render

    def timed_render(**kwargs):
        t = time.perf_counter()
        try:
            return real_render(**kwargs)
        finally:
            spent[0] += time.perf_counter() - t

    publisher.render = timed_render
    worker = Worker(WorkerOptions(load=load, max_jobs=jobs, periodic=False, background=False))
    t = time.perf_counter()
    worker.run()
    total = time.perf_counter() - t
    return {"jobs": worker.result.done, "seconds": total, "render_share": spent[0] / total}


def phase_freshness(seconds: int, seed: int) -> dict:
    """Save a random entry every 0.5-2 s for ``seconds`` while the workers drain full rebuilds (the Header changes
    again, in a thread, whenever fewer than 500 jobs are left); for each save, the seconds from calling save_entry
    to its entry page on disk showing the new title (saves go on while earlier ones are still on their way)."""
    import random
    import threading

    from django.db import connection

    from blog.models import Entry
    from blog.services import save_entry
    from publishqueue.models import FileInfo, Job
    from publishqueue.paths import resolve_output_path

    rng = random.Random(seed)
    pages = {
        fi.object_id: resolve_output_path(fi.site.site_root, fi.path)
        for fi in FileInfo.objects.filter(archive_type="individual").select_related("site")
    }
    ids = sorted(pages)
    latencies, saves, rebuilds, misses = [], [], [0], 0
    done = threading.Event()

    def rebuild() -> None:
        try:
            while not done.wait(0.25):
                if Job.objects.count() < 500:
                    phase_touch_header()
                    rebuilds[0] += 1
        finally:
            connection.close()

    rebuilder = threading.Thread(target=rebuild)
    rebuilder.start()
    pending: dict[int, tuple[bytes, float]] = {}  # entry id: (the title to see, when its save began)
    start = time.perf_counter()
    next_save, n = start + rng.uniform(0.5, 2.0), 0
    while pending or time.perf_counter() < start + seconds:
        now = time.perf_counter()
        if now >= next_save and now < start + seconds:
            n += 1
            entry = Entry.objects.get(pk=rng.choice([i for i in ids if i not in pending]))
            entry.title = f"Fresh {seed}-{n} {entry.pk}"
            began = time.perf_counter()
            save_entry(entry=entry)
            saves.append(time.perf_counter() - began)
            pending[entry.pk] = (entry.title.encode(), began)
            next_save = began + rng.uniform(0.5, 2.0)
        for pk, (wanted, began) in list(pending.items()):
            try:
                with open(pages[pk], "rb") as f:
                    seen = wanted in f.read()
            except FileNotFoundError:
                seen = False
            if seen or time.perf_counter() - began > 30:
                misses += not seen
                latencies.append(time.perf_counter() - began)
                del pending[pk]
        time.sleep(0.002)
    done.set()
    rebuilder.join()
    return {
        "latencies": latencies, "saves": saves, "rebuilds": rebuilds[0], "misses": misses,
        "left": Job.objects.count(),
    }


PHASES = {
    "use_target": phase_use_target, "noops": phase_noops, "published_count": phase_published_count,
    "ours_enqueue": phase_ours_enqueue, "q2_enqueue": phase_q2_enqueue,
    "blog": phase_blog, "save_time": phase_save_time, "queue_all": phase_queue_all,
    "render_share": phase_render_share, "touch_header": phase_touch_header, "freshness": phase_freshness,
}


# ---- the driver -------------------------------------------------------------------------------------------


class Database:
    def __init__(self, tmp: Path, name: str, workers: int) -> None:
        self.dir = tmp / name
        self.dir.mkdir()
        self.env = {
            **os.environ, "MTDISPATCH_SQLITE": str(self.dir / "db.sqlite3"), "MTDISPATCH_SITE_ROOTS": str(self.dir),
            "DJANGO_SETTINGS_MODULE":
            "mtdispatch_project.settings", "Q_CLUSTER_WORKERS": str(workers), "MTDISPATCH_LOG_LEVEL": "WARNING",
        }
        self.env.pop("DATABASE_URL", None)
        self.site = str(self.dir / "site")
        self.pg_url = ""

    def on_postgres(self, admin_url: str) -> None:
        """Use a new database on the PostgreSQL server of ``admin_url`` instead of SQLite (dropped by ``drop``)."""
        import psycopg

        name = f"mtd_bench_{os.getpid()}_{self.dir.name}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.admin_url, self.pg_url = admin_url, admin_url.rsplit("/", 1)[0] + f"/{name}"
        self.env["DATABASE_URL"] = self.pg_url

    def drop(self) -> None:
        if self.pg_url:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def phase(self, name: str, *args) -> dict:
        out = subprocess.run([PY, __file__, "--phase", name, *map(str, args)], env=self.env, cwd=ROOT,
                             capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"phase {name} failed:\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def count(self, sql: str) -> int:
        """One number from the database, read directly: a Django process per poll would take CPU from the
        workers being measured."""
        if self.pg_url:
            import psycopg

            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                return conn.execute(sql).fetchone()[0]
        with contextlib.closing(sqlite3.connect(self.dir / "db.sqlite3", timeout=30)) as conn:
            return conn.execute(sql).fetchone()[0]

    def wait_for(self, sql: str, timeout: float = 600) -> None:
        """Poll the database until ``sql`` is true."""
        deadline = time.time() + timeout
        while not self.count(sql):
            if time.time() > deadline:
                raise SystemExit(f"timed out waiting for: {sql}")
            time.sleep(0.05)

    def manage(self, *args) -> subprocess.Popen:
        return subprocess.Popen([PY, "manage.py", *args], env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)


class PostgresDatabase(Database):
    """A scratch database on the server ``admin_url`` names (created here, dropped by ``drop``)."""

    def __init__(self, tmp: Path, name: str, workers: int, admin_url: str) -> None:
        super().__init__(tmp, name, workers)
        self.on_postgres(admin_url)


def drain_ours(db: Database, workers: int, load: int, cpu: dict | None = None) -> float:
    """Seconds for ``workers`` runworker processes to drain the queue and exit; ``cpu`` receives their user
    and kernel CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    procs = [db.manage("runworker", "--load", str(load), "--no-periodic", "--no-background", "--quiet")
             for _ in range(workers)]
    for proc in procs:
        proc.wait()
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.update(user=after.ru_utime - before.ru_utime, kernel=after.ru_stime - before.ru_stime)
    assert db.count("SELECT COUNT(*) FROM publishqueue_job") == 0
    return elapsed


def rebuild_with_daemons(db: Database, workers: int, load: int, cpu: dict | None = None) -> tuple[int, float]:
    """Daemon workers already running (as in production); the Header changes: seconds from the save to an
    empty queue. ``cpu`` receives the workers' user and kernel CPU seconds (from their start to their exit)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [db.manage("runworker", "--daemon", "--sleep", "0.05", "--load", str(load), "--no-periodic",
                       "--no-background", "--quiet") for _ in range(workers)]
    try:
        db.wait_for(f"SELECT COUNT(*) >= {workers:d} FROM dispatch_processheartbeat")
        touched = db.phase("touch_header")
        db.wait_for("SELECT COUNT(*) = 0 FROM publishqueue_job")
        return touched["queued"], time.time() - touched["at"]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        # The touch_header phase is a child too: its CPU (the save) is counted with the workers'.
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cpu is not None:
            cpu.update(user=after.ru_utime - before.ru_utime, kernel=after.ru_stime - before.ru_stime)


def drain_q2(db: Database) -> float:
    t = time.perf_counter()
    cluster = db.manage("qcluster")
    try:
        db.wait_for("SELECT COUNT(*) = 0 FROM django_q_ormq")
        return time.perf_counter() - t
    finally:
        cluster.terminate()
        cluster.wait(timeout=60)


def cpu_reference() -> float:
    """Seconds for a fixed pure-Python loop: the machine's speed right now (lower is faster)."""
    t = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t


def table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def bench_queue(tmp: Path, args) -> None:
    w = args.workers
    ours_db = Database(tmp, "ours", w)
    ours = ours_db.phase("ours_enqueue", args.jobs)
    ours_drain = ours["queued"] / drain_ours(ours_db, w, 100)
    q2_db = Database(tmp, "q2", w)
    q2 = q2_db.phase("q2_enqueue", args.q2_jobs)
    q2_drain = q2["queued"] / drain_q2(q2_db)
    print(f"\nNo-op jobs on SQLite, {w} worker processes each ({ours['queued']} mtdispatch jobs, "
          f"{q2['queued']} django-q2 tasks)\n")
    print(table([
        ("measure", "mtdispatch jobs/s", "django-q2 ORM tasks/s", "ratio"),
        ("enqueue, one call each", f"{ours['single']:.0f}", f"{q2['single']:.0f}",
         f"{ours['single'] / q2['single']:.1f}x"),
        ("enqueue, batched", f"{ours['bulk']:.0f}", "n/a (no bulk API)", f"{ours['bulk'] / q2['single']:.1f}x"),
        ("drain", f"{ours_drain:.0f}", f"{q2_drain:.0f}", f"{ours_drain / q2_drain:.1f}x"),
    ]))


def bench_save(tmp: Path, args) -> None:
    saves = []
    for size in (args.small, args.large):
        db = Database(tmp, f"save{size}", args.workers)
        db.phase("blog", size, db.site)
        saves.append((size, db.phase("save_time", 50)["median_ms"]))
    print("\nSaving an entry, every template Via Publish Queue (median of 50)\n")
    print(table([("entries", "ms per save", "vs smallest")]
                + [(s, f"{ms:.2f}", f"{ms / saves[0][1]:.2f}x") for s, ms in saves]))


def rebuild_once(tmp: Path, args, run: int) -> dict:
    """One blog built, first published by cron workers, then rebuilt for a Header change by daemons."""
    w = args.workers
    db = Database(tmp, f"rebuild{run}", w)
    db.phase("blog", args.large, db.site)
    queued = db.phase("queue_all")["queued"]
    cpu: dict[str, float] = {}
    seconds = drain_ours(db, w, args.load, cpu)
    cpu_again: dict[str, float] = {}
    requeued, again = rebuild_with_daemons(db, w, args.load, cpu_again)
    return {
        "queued": queued, "first": queued / seconds, "first_s": seconds,
        "first_cpu": (cpu["user"] / queued * 1000, cpu["kernel"] / queued * 1000),
        "requeued": requeued, "again": requeued / again, "again_s": again,
        "again_cpu": (cpu_again["user"] / requeued * 1000, cpu_again["kernel"] / requeued * 1000),
    }


def bench_rebuild(tmp: Path, args) -> None:
    # Each run in a directory of its own, all removed at the end: deleting files right before a run would
    # slow it down on some file systems (see the README).
    runs = [rebuild_once(tmp, args, run) for run in range(args.repeat)]
    share_db = Database(tmp, "share", args.workers)
    share_db.phase("blog", args.large, share_db.site)
    share_db.phase("queue_all")
    share = share_db.phase("render_share", min(runs[0]["queued"], 2000), args.load)
    heads = [f"run {n + 1}" for n in range(len(runs))] + (["median"] if len(runs) > 1 else [])

    def row(label: str, key: str, fmt: str) -> tuple:
        values = [r[key] for r in runs]
        cells = [fmt.format(v) for v in values]
        if len(runs) > 1:
            cells.append(fmt.format(statistics.median(values)))
        return (label, *cells)

    def cpu_row(label: str, key: str) -> tuple:
        cells = [f"{r[key][0]:.2f} + {r[key][1]:.2f} ms" for r in runs]
        return (label, *cells, *([""] if len(runs) > 1 else []))

    blank = [""] * (len(heads) - 1)
    print(f"\nFull rebuild of a {args.large}-entry blog ({runs[0]['queued']} files), {args.workers} runworker "
          f"processes with --load {args.load}, {os.cpu_count()} cores\n")
    print(table([
        ("measure", *heads),
        row("first publish (cron: start, drain, exit), pages/s", "first", "{:.0f}"),
        row("first publish, wall time, s", "first_s", "{:.1f}"),
        cpu_row("first publish, CPU per page (user + kernel)", "first_cpu"),
        row("Header changed (daemons running), pages/s", "again", "{:.0f}"),
        row(f"Header changed, save to empty queue ({runs[0]['requeued']} files), s", "again_s", "{:.1f}"),
        cpu_row("Header changed, CPU per page (user + kernel, save included)", "again_cpu"),
        ("one worker, pages/s", f"{share['jobs'] / share['seconds']:.0f}", *blank),
        ("one worker, time outside rendering", f"{(1 - share['render_share']) * 100:.0f}%", *blank),
    ]))


def s3_round(tmp: Path, args, server, kind: str, run: int) -> dict:
    """One blog built and published to the file system or to a new bucket of ``server``, then rebuilt for a
    Header change; the objects in the bucket are counted against the files recorded as published."""
    from tests.s3 import ACCESS_KEY, SECRET_KEY

    w = args.workers
    db = Database(tmp, f"{kind}{run}", w)
    if args.postgres:
        db.on_postgres(_pg_admin_url())
    try:
        if kind == "s3":
            db.env.update(MTDISPATCH_S3_BUCKET=server.new_bucket(), MTDISPATCH_S3_ENDPOINT=server.endpoint,
                          AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        db.phase("blog", args.large, db.site)
        if kind == "s3":
            db.phase("use_target", "s3")
        queued = db.phase("queue_all")["queued"]
        first = queued / drain_ours(db, w, args.load)
        requeued, seconds = rebuild_with_daemons(db, w, args.load)
        published = db.phase("published_count")["files"]
        if kind == "s3":
            stored = sum(1 for p in (server.root / db.env["MTDISPATCH_S3_BUCKET"]).rglob("*") if p.is_file())
        else:
            stored = sum(1 for p in Path(db.site).rglob("*") if p.is_file())
        if stored != published:
            raise SystemExit(f"{kind}: {stored} files stored, {published} recorded as published")
        return {"first": first, "again": requeued / seconds, "queued": queued, "requeued": requeued}
    finally:
        db.drop()


def bench_s3(tmp: Path, args) -> None:
    """File system against S3, alternating, each round on a fresh blog and bucket."""
    sys.path.insert(0, str(ROOT))
    from tests.s3 import start_s3_server

    server = start_s3_server(tmp / "s3" / "root", debug=False)
    try:
        rounds = {"fs": [], "s3": []}
        for run in range(args.repeat):
            for kind in rounds:
                rounds[kind].append(s3_round(tmp, args, server, kind, run))
    finally:
        server.stop()

    def values(kind: str, key: str) -> list[float]:
        return [r[key] for r in rounds[kind]]

    def row(label: str, key: str) -> tuple:
        ratio = statistics.median(values("s3", key)) / statistics.median(values("fs", key))
        return (label, _spread(values("fs", key)), _spread(values("s3", key)), f"{ratio:.2f}x")

    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\nA {args.large}-entry blog ({rounds['fs'][0]['queued']} files) to the file system and to S3 "
          f"(rclone serve s3 on this machine), {database}, {args.workers} runworker processes with --load "
          f"{args.load}, {os.cpu_count()} cores, {args.repeat} round(s): pages/s, median (min-max)\n")
    print(table([
        ("measure", "file system", "S3", "S3 / file system"),
        row("first publish (cron workers)", "first"),
        row(f"Header changed, {rounds['fs'][0]['requeued']} files (daemons)", "again"),
    ]))


def bench_claims(tmp: Path, args) -> None:
    """No-op jobs drained on PostgreSQL (claims FOR UPDATE SKIP LOCKED): with --load 1 every job is a claim of its
    own (claims/s), with --load 100 a claim takes a hundred; each measure on a fresh database, ``--repeat`` rounds."""
    admin = _pg_admin_url()
    w, n = args.workers, args.claim_jobs
    results: dict[int, list[float]] = {1: [], 100: []}
    for run in range(args.repeat):
        for load in results:
            db = Database(tmp, f"claims{load}-{run}", w)
            db.on_postgres(admin)
            try:
                queued = db.phase("noops", n)["queued"]
                results[load].append(queued / drain_ours(db, w, load))
            finally:
                db.drop()
    print(f"\nNo-op jobs on PostgreSQL, {n} per round, {w} runworker processes, {os.cpu_count()} cores, "
          f"{args.repeat} round(s): median (min-max)\n")
    print(table([
        ("measure", "per second"),
        ("claims (--load 1: one job per claim)", _spread(results[1])),
        ("jobs (--load 100)", _spread(results[100])),
    ]))


def _pg_admin_url() -> str:
    admin = os.environ.get("MTDISPATCH_TEST_PG") or os.environ.get("DATABASE_URL")
    if not admin:
        raise SystemExit("PostgreSQL measures need a server: set MTDISPATCH_TEST_PG (an admin URL)")
    return admin


def _spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.0f} ({min(values):.0f}-{max(values):.0f})" if len(values) > 1 else f"{med:.0f}"


def freshness_once(db: Database, args, seed: int) -> dict:
    """A blog first published by cron workers; then daemon workers (``--fresh-sleep`` between polls) drain full
    rebuilds while entries are saved."""
    w = args.workers
    db.phase("blog", args.fresh_entries, db.site)
    db.phase("queue_all")
    drain_ours(db, w, args.load)
    procs = [db.manage("runworker", "--daemon", "--sleep", str(args.fresh_sleep), "--load", str(args.load),
                       "--no-periodic", "--no-background", "--quiet") for _ in range(w)]
    try:
        db.wait_for(f"SELECT COUNT(*) >= {w:d} FROM dispatch_processheartbeat")
        return db.phase("freshness", args.fresh_seconds, seed)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def p95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def bench_freshness(tmp: Path, args) -> None:
    backends = [("SQLite", lambda n: Database(tmp, n, args.workers))]
    admin = os.environ.get("MTDISPATCH_TEST_PG")
    if admin:
        backends.append(("PostgreSQL", lambda n: PostgresDatabase(tmp, n, args.workers, admin)))
    rows = [("database", "saves", "p50 ms", "p95 ms", "max ms", "save call p50 / p95 ms", "not on disk in 30 s",
             "rebuilds drained")]
    for label, make in backends:
        for run in range(args.repeat):
            db = make(f"fresh{label.lower()}{run}")
            try:
                got = freshness_once(db, args, run + 1)
            finally:
                db.drop()
            ms = sorted(v * 1000 for v in got["latencies"])
            saves = sorted(v * 1000 for v in got["saves"])
            rows.append((label, len(ms), f"{statistics.median(ms):.0f}", f"{p95(ms):.0f}", f"{ms[-1]:.0f}",
                         f"{statistics.median(saves):.0f} / {p95(saves):.0f}", got["misses"], got["rebuilds"]))
    print(f"\nFreshness under load: a {args.fresh_entries}-entry blog, {args.workers} daemon workers (--load "
          f"{args.load}, --sleep {args.fresh_sleep}) draining full rebuilds (the Header changed again whenever the "
          f"queue ran low) for {args.fresh_seconds} s, an entry saved every 0.5-2 s: from calling save_entry to "
          "its page on disk showing the change\n")
    print(table(rows))


PARTS = {
    "claims": bench_claims, "queue": bench_queue, "save": bench_save, "rebuild": bench_rebuild, "s3": bench_s3,
    "freshness": bench_freshness,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--q2-jobs", type=int, default=3000)
    parser.add_argument("--postgres", action="store_true",
                        help="--parts s3 on PostgreSQL (MTDISPATCH_TEST_PG) instead of SQLite.")
    parser.add_argument("--claim-jobs", type=int, default=5000, help="No-op jobs per round of --parts claims.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--load", type=int, default=100, help="--load of the rebuild's runworker processes.")
    parser.add_argument("--repeat", type=int, default=1, help="Rebuild runs (each a new blog); the median too.")
    parser.add_argument("--dir", help="Where the databases and sites go (default: the system's temp directory).")
    parser.add_argument("--quick", action="store_true", help="Small sizes, for a smoke run.")
    parser.add_argument("--parts", default="queue,save,rebuild,freshness", help="Which measures to run (default: all).")
    parser.add_argument("--fresh-entries", type=int, default=3000, help="The freshness part's blog.")
    parser.add_argument("--fresh-seconds", type=int, default=60, help="How long the freshness part saves entries.")
    parser.add_argument("--fresh-sleep", type=float, default=5.0, help="--sleep of the freshness part's workers.")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _setup_django()
        name, *rest = args.phase
        print(json.dumps(PHASES[name](*[int(a) if a.isdigit() else a for a in rest])))
        return
    if args.quick:
        args.jobs, args.q2_jobs, args.large = 2000, 300, 1000
        args.fresh_entries, args.fresh_seconds = 500, 20
    speed_before = cpu_reference()
    with tempfile.TemporaryDirectory(prefix="mtd-bench-", dir=args.dir) as tmp:
        tmp = Path(tmp)
        for part in args.parts.split(","):
            PARTS[part](tmp, args)
    speed_after = cpu_reference()
    print(f"\nMachine speed (10M-iteration Python loop): {speed_before:.2f} s before, {speed_after:.2f} s after "
          "(lower is faster; the figures above scale with it)")


if __name__ == "__main__":
    main()
