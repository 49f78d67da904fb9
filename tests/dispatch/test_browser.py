"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a real runfcgi --http:
log in, switch a template to Via Publish Queue, save an entry, see the depth rise, run a worker, see it
drain and the file change, Recycle Workers and see new pids; a user without the permission cannot."""
import re
import shutil
from pathlib import Path

import pytest

from tests.fcgi import ROOT, free_port

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def site(runfcgi):
    port = free_port()
    root = runfcgi.tmp / "site"
    runfcgi.manage("demo", "--entries", "12", "--site-root", str(root), "--site-url",
                   f"http://127.0.0.1:{port}/blog/", "--password", "pw")
    runfcgi.manage("shell", "-c", (
        "from django.contrib.auth.models import User, Permission\n"
        "u = User.objects.create_user('editor', password='pw', is_staff=True)\n"
        "u.user_permissions.add(*Permission.objects.filter(codename__in=['view_job', 'view_entry']))"
    ))
    runfcgi.start("--workers", "2", "--http", f"127.0.0.1:{port}")
    return runfcgi, f"http://127.0.0.1:{port}", root


def login(page, base, user):
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", user)
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def number(page, field):
    return int(page.locator(f'#mtdispatch-dashboard [data-field="{field}"]').inner_text())


def child_pids(page):
    return {int(x) for x in page.locator("tr.pq-child").evaluate_all("rows => rows.map(r => r.dataset.pid)")}


def test_dashboard_flow_in_chromium(browser, site):
    runfcgi, base, root = site
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    page.on("dialog", lambda dialog: dialog.accept())  # "Recycle every FastCGI child...?"
    login(page, base, "admin")
    assert number(page, "depth.ready") == 0
    page.screenshot(path=ARTIFACTS / "01-dashboard.png", full_page=True)

    page.goto(f"{base}/admin/publishqueue/template/")
    page.click("text=Entry")
    page.check("input[type=radio][value=queue]")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    page.goto(f"{base}/admin/")
    queued_by_template = number(page, "depth.ready")
    assert queued_by_template == 12  # the template save queued all its files

    page.goto(f"{base}/admin/blog/entry/")
    page.locator("#result_list tbody tr th a").first.click()
    entry_file = next(root.rglob(f"{page.input_value('#id_slug')}.html"))
    page.fill("#id_title", "Edited in Chromium")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    # The entry page and its neighbour's go to the queue; the index and archives are still Static.
    assert "queued 2 file(s)" in page.inner_text(".messagelist")
    page.goto(f"{base}/admin/")
    page.screenshot(path=ARTIFACTS / "02-queued.png", full_page=True)
    assert number(page, "depth.ready") == queued_by_template  # coalesced with the template's jobs
    assert "Edited in Chromium" in (root / "index.html").read_text()
    assert "Edited in Chromium" not in entry_file.read_text()

    out = runfcgi.manage("runworker", "--no-background").stdout
    assert "12 done" in out, out
    page.wait_for_function("document.querySelector('[data-field=\"depth.ready\"]').textContent === '0'",
                           timeout=20000)  # the auto-refresh, no reload
    page.screenshot(path=ARTIFACTS / "03-drained.png", full_page=True)
    assert "Edited in Chromium" in entry_file.read_text()

    before = child_pids(page)
    assert len(before) == 2
    page.click("button.pq-recycle-button")
    page.wait_for_selector("text=sent to every FastCGI manager")
    page.wait_for_selector("ul.pq-acks li", timeout=30000)
    ack = page.inner_text("ul.pq-acks li")
    new = {int(x) for x in re.findall(r"\d+", ack.split("new pids", 1)[1])}
    assert len(new) == 2 and new.isdisjoint(before)
    page.wait_for_function(
        f"[...document.querySelectorAll('tr.pq-child')].every(r => {sorted(new)}.includes(Number(r.dataset.pid)))",
        timeout=20000,
    )
    page.screenshot(path=ARTIFACTS / "04-recycled.png", full_page=True)


def test_a_user_without_the_permission_cannot_recycle(browser, site):
    runfcgi, base, _ = site
    page = browser.new_page()
    login(page, base, "editor")
    assert page.locator("button.pq-recycle-button").count() == 0
    status = page.evaluate("""async () => {
        const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
        const r = await fetch('/dispatch/recycle/', {method: 'POST', headers: {'X-CSRFToken': token}});
        return r.status;
    }""")
    assert status == 403
    page.screenshot(path=ARTIFACTS / "05-editor.png", full_page=True)
    count = "from dispatch.models import RecycleRequest; print(RecycleRequest.objects.count())"
    assert runfcgi.manage("shell", "-c", count).stdout.strip().splitlines()[-1] == "0"
