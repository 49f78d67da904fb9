"""nginx as the FastCGI client of runfcgi, on a unix socket and on TCP."""
import os
import pwd
import tempfile
from pathlib import Path

import pytest

from tests.fcgi import load_across_recycles

pytestmark = pytest.mark.slow


def publish_demo(runfcgi, site):
    runfcgi.manage("demo", "--entries", "12", "--site-root", str(site), "--site-url", "http://127.0.0.1/blog/")


def test_nginx_serves_published_files_and_passes_the_rest_over_a_unix_socket(runfcgi, nginx_for, tmp_path):
    site = tmp_path / "site"
    publish_demo(runfcgi, site)
    runfcgi.start("--workers", "2")
    nginx = nginx_for(f"unix:{runfcgi.address}", site)
    status, body, _ = nginx.get("/blog/")
    assert status == 200 and b"mtdispatch demo" in body  # the static file, from disk
    assert nginx.get("/dispatch/ping")[:2] == (200, b"pong\n")  # through FastCGI
    status, body, headers = nginx.get("/t/latin1")
    assert status == 200 and headers["X-Name"].encode("latin-1").decode("latin-1") == "Zoë Ångström"
    assert nginx.get("/t/boom")[0] == 500
    assert nginx.get("/admin/login/")[0] == 200


def test_nginx_over_tcp(runfcgi, nginx_for, tmp_path):
    runfcgi.start("--workers", "1", tcp=True)
    host, port = runfcgi.address
    nginx = nginx_for(f"{host}:{port}", tmp_path)
    assert nginx.get("/dispatch/ping")[0] == 200


def test_socket_group_and_mode_decide_who_may_connect(runfcgi, nginx_for, tmp_path):
    """nginx's workers run as www-data: a 0660 socket owned by group www-data admits them."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the socket to another group")
    public = Path(tempfile.mkdtemp(prefix="mtd-sock-"))  # pytest's own temp parents are 0700
    public.chmod(0o755)
    runfcgi.address = str(public / "fcgi.sock")
    runfcgi.start("--workers", "1", "--socket-owner", "nobody", "--socket-group", "www-data", "--socket-mode", "0660")
    stat = os.stat(runfcgi.address)
    assert (stat.st_mode & 0o777, stat.st_uid, stat.st_gid) == (0o660, pwd.getpwnam("nobody").pw_uid, 33)
    nginx = nginx_for(f"unix:{runfcgi.address}", public, user="www-data")
    assert nginx.get("/dispatch/ping")[0] == 200
    os.chmod(runfcgi.address, 0o600)  # as if --socket-mode 0600: www-data is shut out
    assert nginx.get("/dispatch/ping")[0] == 502


def test_zero_failed_requests_through_nginx_across_recycles_under_load(runfcgi, nginx_for, tmp_path):
    runfcgi.start("--workers", "2")
    nginx = nginx_for(f"unix:{runfcgi.address}", tmp_path)
    paths = ["/dispatch/ping"] * 3 + ["/t/slow?s=0.3"]
    failures, done = load_across_recycles(runfcgi, lambda path: nginx.get(path)[0], paths)
    assert done > 100
    assert failures == []
