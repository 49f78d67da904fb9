"""The same Django pages through one nginx to each server, with the same number of worker processes,
measured with wrk: runfcgi (one request per connection, and with nginx's keep-alive pool), stock flup6
fcgi_fork, uWSGI (FastCGI, and its native protocol through uwsgi_pass), gunicorn sync and gthread (HTTP).

    python bench/fcgi.py [--workers 2] [--rounds 7] [--seconds 3] [--connections 16] [--only NAME ...]

Every server runs for the whole benchmark (an idle server costs nothing), each behind its own nginx
port. A round measures every server once, for each endpoint, in an order that rotates from round to
round, so drift of a shared machine spreads over all servers. Printed per server: the median req/s over
the rounds with its min-max, and the median of the per-round ratios of runfcgi to it (ratios of
measurements seconds apart, so the machine's drift largely cancels) with their min-max; then the same for
the CPU time the server's processes and nginx spent per request (user + system, from /proc): on a machine
that other work keeps busy, throughput measures the contention as much as the server, while the CPU a
request costs moves much less. A fixed CPU loop timed before and after the run shows how fast the
machine was.

Needs nginx and wrk (Debian packages) and gunicorn and pyuwsgi (pip). Pages: a Dynamically published
blog index (Django renders it from the database on each request) and /dispatch/ping (server overhead).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

NGINX = """
user {user}; worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/b; fastcgi_temp_path {tmp}/f; proxy_temp_path {tmp}/p;
    uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
{servers}
}}
"""
SERVER = """
    upstream app{n} {{ server unix:{sock}; {keepalive} }}
    server {{ listen 127.0.0.1:{port}; location / {{ {backend} }} }}
"""
FASTCGI = ('include /etc/nginx/fastcgi_params; fastcgi_param SCRIPT_NAME ""; fastcgi_param PATH_INFO $uri; '
           "fastcgi_pass app{n};")
FASTCGI_KEEPALIVE = FASTCGI + " fastcgi_keep_conn on;"
UWSGI = "include /etc/nginx/uwsgi_params; uwsgi_pass app{n};"
PROXY = "proxy_set_header Host $host; proxy_pass http://app{n};"
PROXY_KEEPALIVE = PROXY + ' proxy_http_version 1.1; proxy_set_header Connection "";'
KEEPALIVE = "keepalive 32;"


def servers(workers: int, tmp: Path) -> dict[str, dict]:
    """name -> the command (or the name of the server it shares), nginx's location and upstream options."""
    w = str(workers)
    uwsgi = [shutil.which("uwsgi") or "uwsgi", "--processes", w, "--master", "--module", "mtdispatch_project.wsgi",
             "--disable-logging", "--die-on-term", "--need-app"]
    gunicorn = [shutil.which("gunicorn") or "gunicorn", "-w", w, "--log-level", "warning"]
    sock = str(tmp / "runfcgi.sock")
    return {
        "runfcgi": dict(command=[PY, "manage.py", "runfcgi", "--socket", sock, "--workers", w, "--no-status"],
                        sock=sock, backend=FASTCGI),
        "runfcgi keepalive": dict(shares="runfcgi", sock=sock, backend=FASTCGI_KEEPALIVE, keepalive=KEEPALIVE),
        "flup6 fcgi_fork": dict(command=[PY, "bench/flup_stock.py", "{sock}", w], backend=FASTCGI),
        "uWSGI fastcgi": dict(command=[*uwsgi, "--fastcgi-socket", "{sock}"], backend=FASTCGI),
        "uWSGI uwsgi": dict(command=[*uwsgi, "--socket", "{sock}"], backend=UWSGI),
        "gunicorn sync": dict(command=[*gunicorn, "-b", "unix:{sock}", "mtdispatch_project.wsgi"], backend=PROXY),
        "gunicorn gthread": dict(command=[*gunicorn, "-k", "gthread", "--threads", "4", "-b", "unix:{sock}",
                                          "mtdispatch_project.wsgi"], backend=PROXY_KEEPALIVE, keepalive=KEEPALIVE),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def wrk(url: str, seconds: float, connections: int, processes: list[psutil.Process] = ()) -> tuple[float, int, float]:
    """Requests per second, failed requests, and CPU microseconds the processes spent per request."""
    before = cpu_seconds(processes)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", url],
                         capture_output=True, text=True, check=True).stdout
    spent = cpu_seconds(processes) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    count = int(errors.group(1)) if errors else 0
    count += sum(int(x) for x in socket_errors.groups()) if socket_errors else 0
    return rate, count, spent * 1e6 / requests if requests else 0.0


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue  # a child that left: its time went to its parent's children_* fields
        total += times.user + times.system + times.children_user + times.children_system
    return total


def tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants now (a server's workers; nginx's workers)."""
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def cpu_probe() -> float:
    """Milliseconds a fixed pure-Python loop takes (the best of three): the machine's speed right now."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", nargs="+", help="Measure only these servers (runfcgi is always measured).")
    parser.add_argument("--skip", nargs="+", default=[], help="Leave these servers out.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtd-fcgi-bench-") as tmp:
        run(Path(tmp), args)


def run(tmp: Path, args) -> None:
    env = {**os.environ, "MTDISPATCH_SQLITE": str(tmp / "db.sqlite3"), "MTDISPATCH_SITE_ROOTS": str(tmp),
           "DJANGO_SETTINGS_MODULE": "mtdispatch_project.settings", "MTDISPATCH_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    setup = dict(env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run([PY, "manage.py", "migrate", "-v0"], **setup)
    subprocess.run([PY, "manage.py", "demo", "--entries", "200", "--mode", "dynamic", "--no-publish",
                    "--site-root", str(tmp / "site"), "--site-url", "http://127.0.0.1/blog/"], **setup)
    subprocess.run([PY, "manage.py", "publish", "--all", "-v0"], **setup)  # FileInfo rows for dynamic URLs
    chosen = {name: spec for name, spec in servers(args.workers, tmp).items()
              if (not args.only or name == "runfcgi" or any(o in name for o in args.only))
              and not any(s == name for s in args.skip)}
    probe_before = cpu_probe()
    apps, nginx = start_servers(chosen, tmp, env)
    try:
        results, errors, cpu = measure(chosen, apps, nginx.pid, args)
    finally:
        nginx.terminate()
        nginx.wait()
        for _, app, _ in apps:
            app.terminate()
        for _, app, _ in apps:
            try:
                app.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(app.pid, 9)
                app.wait()
    print_table(results, errors, args, probe_before, cpu_probe())
    print_cpu_table(cpu)


def start_servers(chosen: dict, tmp: Path, env: dict) -> tuple[list, subprocess.Popen]:
    """Every server, and one nginx with a port for each."""
    apps, blocks = [], []
    for n, (name, spec) in enumerate(chosen.items()):
        spec["port"] = free_port()
        if "command" in spec:
            sock = spec.setdefault("sock", str(tmp / f"app{n}.sock"))
            command = [part.replace("{sock}", sock) for part in spec["command"]]
            log = open(tmp / f"app{n}.log", "w")
            app = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True)
            spec["pid"] = app.pid
            apps.append((name, app, tmp / f"app{n}.log"))
        else:
            spec["pid"] = chosen[spec["shares"]]["pid"]
        blocks.append(SERVER.format(n=n, sock=spec["sock"], keepalive=spec.get("keepalive", ""), port=spec["port"],
                                    backend=spec["backend"].format(n=n)))
    conf = tmp / "nginx.conf"
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    conf.write_text(NGINX.format(tmp=tmp, user=user, servers="".join(blocks)))
    return apps, subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf)])


ENDPOINTS = {"page": "/blog/", "ping": "/dispatch/ping"}


def measure(chosen: dict, apps: list, nginx_pid: int, args) -> tuple[dict, dict, dict]:
    for name, spec in chosen.items():
        base = f"http://127.0.0.1:{spec['port']}"
        try:
            for path in ENDPOINTS.values():
                wait_http(base + path)
                wrk(base + path, 1, args.connections)  # warm up: templates, connections, caches
        except RuntimeError as exc:
            logs = "".join(log.read_text()[-2000:] for _, _, log in apps)
            raise SystemExit(f"{name}: {exc}\n{logs}") from exc
    names = list(chosen)
    results = {name: {key: [] for key in ENDPOINTS} for name in names}
    cpu = {name: {key: [] for key in ENDPOINTS} for name in names}
    errors = dict.fromkeys(names, 0)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for key, path in ENDPOINTS.items():
            for name in order:
                rate, failed, spent = wrk(f"http://127.0.0.1:{chosen[name]['port']}{path}", args.seconds,
                                          args.connections, tree(chosen[name]["pid"]) + tree(nginx_pid))
                results[name][key].append(rate)
                cpu[name][key].append(spent)
                errors[name] += failed
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{name} {results[name]['page'][-1]:.0f}/{results[name]['ping'][-1]:.0f}" for name in names),
            file=sys.stderr)
    return results, errors, cpu


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def print_table(results: dict, errors: dict, args, probe_before: float, probe_after: float) -> None:
    ours = [name for name in ("runfcgi", "runfcgi keepalive") if name in results]
    print(f"\nnginx -> each server, {args.workers} worker processes, wrk -t2 -c{args.connections} -d{args.seconds}s, "
          f"{args.rounds} rounds in rotating order, {os.cpu_count()} cores; CPU probe {probe_before:.0f} ms before, "
          f"{probe_after:.0f} ms after (lower is faster)")
    print("req/s: median [min-max] over the rounds; ratio: median [min-max] of the per-round ratios\n")
    header = ["server", "blog index req/s", "ping req/s", "errors"]
    for mine in ours:
        header += [f"{mine} / this (index)", "(ping)"]
    rows = [header]
    for name, r in results.items():
        row = [name, spread(r["page"], ".0f"), spread(r["ping"], ".0f"), str(errors[name])]
        for mine in ours:
            for key in ("page", "ping"):
                # a round where either served nothing (it failed: see the errors) gives no ratio
                ratios = [a / b for a, b in zip(results[mine][key], r[key], strict=True) if a and b]
                row.append(spread(ratios, ".2f") + "x" if ratios else "-")
        rows.append(row)
    _print_rows(rows)


def _print_rows(rows: list[list[str]]) -> None:
    """A table with aligned columns, a rule under its first row (the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))


def print_cpu_table(cpu: dict) -> None:
    ours = [name for name in ("runfcgi", "runfcgi keepalive") if name in cpu]
    print("\nCPU microseconds per request, the server's processes and nginx (user + system): median [min-max]; "
          "cost ratio: this / runfcgi per round, above 1 when runfcgi costs less\n")
    header = ["server", "blog index CPU us/req", "ping CPU us/req"]
    for mine in ours:
        header += [f"this / {mine} (index)", "(ping)"]
    rows = [header]
    for name, r in cpu.items():
        row = [name, spread(r["page"], ".0f"), spread(r["ping"], ".0f")]
        for mine in ours:
            for key in ("page", "ping"):
                ratios = [b / a for a, b in zip(cpu[mine][key], r[key], strict=True) if a and b]
                row.append(spread(ratios, ".2f") + "x" if ratios else "-")
        rows.append(row)
    _print_rows(rows)


if __name__ == "__main__":
    main()
