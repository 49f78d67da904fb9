"""The apps as a Django developer installs them: the wheel built from this repository, installed into a fresh
virtualenv, used by projects made with ``django-admin startproject`` (nothing from this checkout on their path).

(a) Only ``dispatch``: ``runfcgi`` serves the project through nginx, and a recycle replaces its children.
(b) ``publishqueue`` with a small content app that is not the blog (tests/pluggable/docs: pages with a
    parent/child dependency): its pages publish in each mode, a change republishes its dependents, and
    ``runworker`` drains the queue.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from dispatch import fcgi_client
from tests.helpers import wait_for
from tests.nginx import Nginx

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "pluggable"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtualenv holding the mtdispatch wheel; its dependencies come from this interpreter's site-packages
    (a .pth file), so the test needs no network, and the apps themselves only from the wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    [wheel] = (tmp / "dist").glob("mtdispatch-*.whl")
    carried = set(zipfile.ZipFile(wheel).namelist())
    for app in ("dispatch", "publishqueue", "blog"):
        for path in (ROOT / app).rglob("*"):
            data = {"templates", "static", "default_templates", "migrations"} & set(path.relative_to(ROOT).parts)
            if path.is_file() and data and "__pycache__" not in path.parts:
                assert str(path.relative_to(ROOT)) in carried, f"{path} is not in the wheel"
    env = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([env / "bin/python", "-c", purelib], text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    files = "import dispatch, publishqueue, blog; print(dispatch.__file__, publishqueue.__file__, blog.__file__)"
    where = subprocess.check_output([env / "bin/python", "-c", files], text=True, cwd=tmp)
    assert all(path.startswith(str(site)) for path in where.split()), where  # from the wheel, not this checkout
    return env


class Project:
    """A project made by ``django-admin startproject``, run with the virtualenv's Python."""

    def __init__(
        self, venv: Path, tmp: Path, apps: list[str], *, settings: str = "", urls: str = "", copy: tuple[Path, ...] = ()
    ) -> None:
        self.venv, self.dir = venv, tmp / "project"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "PYTHONPATH"))}
        self.dir.mkdir()
        subprocess.run([venv / "bin/python", "-m", "django", "startproject", "site_conf", str(self.dir)], check=True,
                       env=self.env)
        for path in copy:  # the project's own apps and modules
            (shutil.copytree if path.is_dir() else shutil.copy)(path, self.dir / path.name)
        conf = self.dir / "site_conf"
        text = (conf / "settings.py").read_text()
        assert "INSTALLED_APPS = [" in text
        (conf / "settings.py").write_text(text + f"\nINSTALLED_APPS += {apps!r}\nALLOWED_HOSTS = ['*']\n{settings}")
        (conf / "urls.py").write_text(
            "from django.contrib import admin\nfrom django.urls import include, path\n\n"
            f"urlpatterns = [path('admin/', admin.site.urls), {urls}]\n"
        )
        self.manage("migrate", "-v0")
        # The apps' migrations match their models in a project of their own (a content app's site model gets every
        # field publishqueue.sites.AbstractSite adds: without its migration, saving a site fails).
        self.manage("makemigrations", "--check", "--dry-run", *[app for app in apps if app != "django_q"])

    def manage(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([self.venv / "bin/python", "manage.py", *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"manage.py {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        return done.stdout

    def shell(self, code: str) -> dict:
        return json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])


def test_runfcgi_serves_a_new_project_with_only_dispatch_installed(venv, tmp_path):
    project = Project(venv, tmp_path, ["dispatch"], urls="path('dispatch/', include('dispatch.urls'))")
    sock = tmp_path / "fcgi.sock"
    log = tmp_path / "runfcgi.log"
    manager = subprocess.Popen([venv / "bin/python", "manage.py", "runfcgi", "--socket", str(sock), "--workers", "2"],
                               cwd=project.dir, env=project.env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        wait_for(lambda: sock.exists() and _ping(str(sock)), "runfcgi to answer", timeout=60, interval=0.2)
        nginx = Nginx(tmp_path, f"unix:{sock}", tmp_path)
        try:
            status, body, _ = nginx.get("/dispatch/ping")
            assert (status, body) == (200, b"pong\n")
            before = _children(manager.pid)
            assert len(before) == 2
            out = project.manage("recycle", "--wait", "30")
            acked = re.search(r"manager \S+:(\d+) acknowledged; new pids \[([\d, ]+)\]", out)
            assert acked and int(acked.group(1)) == manager.pid, out
            new = {int(pid) for pid in acked.group(2).split(",")}
            assert len(new) == 2 and not new & before
            wait_for(lambda: _children(manager.pid) == new, "the old children to leave", timeout=60, interval=0.2)
            assert nginx.get("/dispatch/ping")[0] == 200
        finally:
            nginx.stop()
    finally:
        manager.send_signal(signal.SIGTERM)
        manager.wait(timeout=60)
    assert "Traceback" not in log.read_text()


def _ping(sock: str) -> bool:
    try:
        return fcgi_client.request(sock, fcgi_client.params_for("GET", "/dispatch/ping"), b"", timeout=5).status == 200
    except OSError:
        return False


def _children(pid: int) -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process(pid).children() if "dispatch.child" in " ".join(c.cmdline())}


def test_a_content_app_that_is_not_the_blog_publishes_through_the_queue(venv, tmp_path):
    project = Project(
        venv, tmp_path, ["django_q", "dispatch", "publishqueue", "docs"],
        settings=(
            "PUBLISHQUEUE_SITE_MODEL = 'docs.Manual'\nQ_CLUSTER = {'name': 'docs', 'orm': 'default'}\n"
            f"PUBLISHQUEUE = {{'SITE_ROOTS': [{str(tmp_path)!r}]}}\n"
        ),
        urls="path('dispatch/', include('dispatch.urls')), path('', include('publishqueue.urls'))",
        copy=(HERE / "docs", HERE / "scenario.py"),
    )
    site = tmp_path / "site"

    setup = project.shell(f"import scenario; scenario.setup({str(site)!r})")
    assert setup["jobs"] == 2  # the two pages' queued files
    # Statically published: written when the save committed; the contents page too (a static index).
    assert "In Guide" in (site / "static/guide/install.html").read_text()
    assert (site / "index.html").read_text() == "[Guide]"
    assert not (site / "queue").exists()
    out = project.manage("runworker", "--no-background")
    assert "2 done, 0 failed" in out, out
    assert "<li>Installing</li>" in (site / "queue/guide.html").read_text()
    for mode in ("manual", "dynamic", "disabled"):
        assert not (site / mode).exists(), mode
    dynamic = project.shell("import scenario; scenario.dynamic('/dynamic/guide/install.html')")
    assert dynamic["status"] == 200 and "<title>Installing</title>" in dynamic["body"]
    project.manage("publish", "--template", str(setup["manual_template"]))
    assert (site / "manual/guide/install.html").exists()

    # The parent's new title reaches its child's page (the docs app's dependency rule) in every written mode.
    renamed = project.shell("import scenario; scenario.rename_parent('User guide')")
    assert renamed["jobs"] == 2
    assert "In User guide" in (site / "static/guide/install.html").read_text()
    assert "In Guide" in (site / "queue/guide/install.html").read_text()  # until the worker runs
    assert "2 done" in project.manage("runworker", "--no-background")
    assert "In User guide" in (site / "queue/guide/install.html").read_text()
    assert "In Guide" in (site / "manual/guide/install.html").read_text()  # Manually: only when asked
    assert project.shell("import scenario; scenario.files()")["jobs"] == 0

