"""The same Django pages through nginx to: runfcgi, stock flup6 fcgi_fork, gunicorn sync (HTTP proxy) and
uWSGI in FastCGI mode, with the same number of worker processes, measured with wrk in one run.

    python bench/fcgi.py [--workers 2] [--seconds 10] [--connections 16]

Needs nginx and wrk (Debian packages) and gunicorn and pyuwsgi (pip). Pages: a Dynamically published
blog index (Django renders it from the database on each request) and /dispatch/ping (server overhead).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

NGINX = """
user {user}; worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/b; fastcgi_temp_path {tmp}/f; proxy_temp_path {tmp}/p;
    uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ {backend} }}
    }}
}}
"""
FASTCGI = ('include /etc/nginx/fastcgi_params; fastcgi_param SCRIPT_NAME ""; fastcgi_param PATH_INFO $uri; '
           "fastcgi_pass unix:{sock};")
PROXY = "proxy_set_header Host $host; proxy_pass http://unix:{sock}:;"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def servers(workers: int, sock: str) -> dict[str, tuple[list[str], str]]:
    w = str(workers)
    return {
        "runfcgi": ([PY, "manage.py", "runfcgi", "--socket", sock, "--workers", w, "--no-status"], FASTCGI),
        "flup6 fcgi_fork": ([PY, "bench/flup_stock.py", sock, w], FASTCGI),
        "gunicorn sync": ([shutil.which("gunicorn") or "gunicorn", "-w", w, "-b", f"unix:{sock}", "--log-level",
                           "warning", "mtdispatch_project.wsgi"], PROXY),
        "uWSGI fastcgi": ([shutil.which("uwsgi") or "uwsgi", "--fastcgi-socket", sock, "--processes", w, "--master",
                           "--module", "mtdispatch_project.wsgi", "--disable-logging", "--die-on-term",
                           "--need-app"], FASTCGI),
    }


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def wrk(url: str, seconds: int, connections: int) -> tuple[float, int]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url], capture_output=True, text=True,
                         check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    count = int(errors.group(1)) if errors else 0
    count += sum(int(x) for x in socket_errors.groups()) if socket_errors else 0
    return rate, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", nargs="+", help="Measure only these servers (runfcgi is always measured).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtd-fcgi-bench-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "MTDISPATCH_SQLITE": str(tmp / "db.sqlite3"), "MTDISPATCH_SITE_ROOTS": str(tmp),
               "DJANGO_SETTINGS_MODULE":
               "mtdispatch_project.settings", "MTDISPATCH_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        env.pop("DATABASE_URL", None)
        run = dict(env=env, cwd=ROOT, check=True, capture_output=True)
        subprocess.run([PY, "manage.py", "migrate", "-v0"], **run)
        subprocess.run([PY, "manage.py", "demo", "--entries", "200", "--mode", "dynamic", "--no-publish",
                        "--site-root", str(tmp / "site"), "--site-url", "http://127.0.0.1/blog/"], **run)
        subprocess.run([PY, "manage.py", "publish", "--all", "-v0"], **run)  # FileInfo rows for dynamic URLs
        chosen = {name: spec for name, spec in servers(args.workers, str(tmp / "app.sock")).items()
                  if not args.only or name == "runfcgi" or any(o in name for o in args.only)}
        # Two passes, forward then reverse, so drift on a shared machine does not favour any server.
        runs: dict[str, list[dict]] = {name: [] for name in chosen}
        for order in (list(chosen), list(reversed(chosen))):
            for name in order:
                command, backend = chosen[name]
                runs[name].append(measure(name, command, backend, tmp, env, args))
        results = {name: mean(r) for name, r in runs.items()}
        print_table(results, args)


def measure(name, command, backend, tmp, env, args) -> dict:
    sock = tmp / "app.sock"
    if sock.exists():
        sock.unlink()
    app = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "w"))
    port = free_port()
    conf = tmp / "nginx.conf"
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    conf.write_text(NGINX.format(tmp=tmp, port=port, user=user, backend=backend.format(sock=sock)))
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf)])
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/dispatch/ping")
            wait_http(base + "/blog/")
        except RuntimeError as exc:
            raise SystemExit(f"{name}: {exc}\n{(tmp / f'{name}.log').read_text()[-2000:]}") from exc
        page = wrk(base + "/blog/", args.seconds, args.connections)
        ping = wrk(base + "/dispatch/ping", args.seconds, args.connections)
        return {"page": page, "ping": ping}
    finally:
        nginx.terminate()
        nginx.wait()
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
        subprocess.run(["pkill", "-f", str(sock)], check=False)  # flup's children, if any were left


def mean(runs: list[dict]) -> dict:
    return {
        key: (sum(r[key][0] for r in runs) / len(runs), sum(r[key][1] for r in runs)) for key in ("page", "ping")
    }


def print_table(results: dict, args) -> None:
    ours = results["runfcgi"]
    print(f"\nnginx -> each server, {args.workers} worker processes, wrk -t2 -c{args.connections} -d{args.seconds}s, "
          f"{os.cpu_count()} cores; mean of two passes (forward, then reverse order)\n")
    rows = [("server", "blog index req/s", "ping req/s", "errors", "runfcgi vs this (index)", "(ping)")]
    for name, r in results.items():
        rows.append((name, f"{r['page'][0]:.0f}", f"{r['ping'][0]:.0f}", r["page"][1] + r["ping"][1],
                     f"{ours['page'][0] / r['page'][0]:.2f}x", f"{ours['ping'][0] / r['ping'][0]:.2f}x"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
