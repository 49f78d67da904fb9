"""A real Varnish (Debian's varnishd) in front of a static file server of a published site, started by the tests,
with a VCL that lets 127.0.0.1 PURGE and says in ``X-Cache`` whether a response was a cache hit."""
from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fcgi import free_port

VCL = """vcl 4.1;
backend site {{ .host = "127.0.0.1"; .port = "{backend_port}"; }}
acl purgers {{ "127.0.0.1"; }}
sub vcl_recv {{
    if (req.method == "PURGE") {{
        if (client.ip !~ purgers) {{ return (synth(405, "Not allowed")); }}
        return (purge);
    }}
}}
sub vcl_backend_response {{
    set beresp.ttl = 1h;
}}
sub vcl_deliver {{
    set resp.http.X-Cache = "MISS";
    if (obj.hits > 0) {{ set resp.http.X-Cache = "HIT"; }}
}}
"""


def varnishd() -> str | None:
    return shutil.which("varnishd") or next(
        (p for p in ("/usr/sbin/varnishd", "/usr/local/sbin/varnishd") if os.path.exists(p)), None
    )


@dataclass
class Varnish:
    port: int
    site_root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, X-Cache, body) of a GET through Varnish."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/" + path.lstrip("/"))
            response = connection.getresponse()
            return response.status, response.getheader("X-Cache", ""), response.read().decode()
        finally:
            connection.close()


def _wait_listening(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode})")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("HEAD", "/")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer in 30 s") from None
            time.sleep(0.1)


@pytest.fixture
def varnish(tmp_path):
    """Varnish on a free port in front of ``python -m http.server`` serving ``tmp_path/"site"``."""
    binary = varnishd()
    if binary is None:
        pytest.fail("varnishd not found: apt-get install varnish (.ci/run installs it)")
    site_root = tmp_path / "site"
    site_root.mkdir()
    backend_port, port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(site_root), str(backend_port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    workdir = tempfile.mkdtemp(prefix="mtd-varnish-")
    vcl = tmp_path / "purge.vcl"
    vcl.write_text(VCL.format(backend_port=backend_port))
    cache = subprocess.Popen(
        [binary, "-F", "-j", "none", "-n", os.path.join(workdir, "n"), "-a", f"127.0.0.1:{port}", "-f", str(vcl),
         "-s", "malloc,32m", "-T", "none"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        _wait_listening(backend_port, server, "the static file server")
        _wait_listening(port, cache, "varnishd")
        yield Varnish(port, site_root)
    finally:
        for process in (cache, server):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
