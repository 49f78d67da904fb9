"""A real nginx in front of runfcgi (as in deploy/nginx.conf), started by the tests."""
from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fcgi import free_port

CONF = """
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
user {user};
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    fastcgi_temp_path {tmp}/fastcgi;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream mtdispatch {{ server {upstream}; {upstream_extra} }}
    server {{
        listen 127.0.0.1:{port};
        root {site};
        location /blog/ {{
            alias {site}/;
            try_files $uri $uri/index.html @app;
        }}
        location / {{ try_files /nonexistent @app; }}
        location @app {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_pass mtdispatch;
            {location_extra}
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, tmp: Path, upstream: str, site: Path, user: str = "root", keepalive: bool = False) -> None:
        self.tmp, self.port = tmp, free_port()
        conf = tmp / "nginx.conf"
        # keepalive: as deploy/nginx.conf recommends (connections to the children kept open between requests)
        conf.write_text(CONF.format(tmp=tmp, user=user, upstream=upstream, port=self.port, site=site,
                                    upstream_extra="keepalive 16; keepalive_requests 20;" if keepalive else "",
                                    location_extra="fastcgi_keep_conn on;" if keepalive else ""))
        self.proc = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf)],
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url("/"), timeout=2)
                return
            except urllib.error.HTTPError:
                return  # nginx answered
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                time.sleep(0.1)
        raise AssertionError("nginx did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, bytes, dict]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=30) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def nginx_for(tmp_path):
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (.ci/run installs it)")
    started = []

    def start(upstream: str, site: Path, user: str = "root", keepalive: bool = False) -> Nginx:
        server = Nginx(tmp_path, upstream, site, user, keepalive)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
