"""The operator's dashboard in headless Chromium against a real runfcgi --http: the cards and the tables agree
after every refresh while a queue drains; the chart is drawn with its axes; freshness appears after saves;
pause stops a supervised worker's drain and resume restarts it; Cancel queued empties one template's jobs."""
import json
import re
import time

import pytest

from tests.dispatch.test_browser import ARTIFACTS, browser, login  # noqa: F401 - fixture
from tests.fcgi import free_port

pytestmark = pytest.mark.slow


def make_site(runfcgi, *start_args):
    port = free_port()
    root = runfcgi.tmp / "site"
    runfcgi.manage("demo", "--entries", "12", "--site-root", str(root), "--site-url",
                   f"http://127.0.0.1:{port}/blog/", "--password", "pw", "--mode", "queue", "--no-publish")
    runfcgi.manage("publish", "--all", "--queue")  # every file of the demo is a job
    runfcgi.start("--workers", "2", "--http", f"127.0.0.1:{port}", *start_args)
    return f"http://127.0.0.1:{port}"


def jobs(runfcgi, where=""):
    code = f"from publishqueue.models import Job; print(Job.objects.filter({where}).count())"
    return int(runfcgi.manage("shell", "-c", code).stdout.strip().splitlines()[-1])


def card(page, field):
    return page.locator(f'#mtdispatch-dashboard [data-field="{field}"]').inner_text()


# What the page shows, read in one go: each card and each table's column sums.
READ = """() => {
  const num = (el) => Number(el.textContent.trim());
  const root = document.getElementById('mtdispatch-dashboard');
  const cards = {};
  for (const f of ['depth.ready', 'depth.waiting', 'depth.in_progress', 'depth.failed'])
    cards[f.split('.')[1]] = num(root.querySelector(`[data-field="${f}"]`));
  const tables = {};
  for (const t of root.querySelectorAll('table.pq-depth')) {
    const sums = {ready: 0, waiting: 0, in_progress: 0, failed: 0};
    for (const row of t.querySelectorAll('tbody tr')) {
      const cells = row.querySelectorAll('td.pq-n');
      if (cells.length < 4) continue;
      ['ready', 'waiting', 'in_progress', 'failed'].forEach((k, i) => { sums[k] += num(cells[i]); });
    }
    tables[t.dataset.by] = sums;
  }
  return {cards, tables, generated: root.dataset.generated || ''};
}"""


def wait_refresh(page):
    """The next refresh (the page records the snapshot time of each)."""
    before = page.evaluate("document.getElementById('mtdispatch-dashboard').dataset.generated || ''")
    page.wait_for_function(
        f"(document.getElementById('mtdispatch-dashboard').dataset.generated || '') !== {before!r}", timeout=20000)


def test_tables_and_cards_agree_while_draining_the_chart_has_axes_and_freshness_appears(browser, runfcgi):  # noqa: F811
    base = make_site(runfcgi)
    queued = jobs(runfcgi)
    assert queued > 20
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    login(page, base, "admin")
    for name in ("job", "template"):  # the admin lists fit at 1400 px (no sideways scrolling)
        page.goto(f"{base}/admin/publishqueue/{name}/")
        table, box = page.evaluate("[document.getElementById('result_list').scrollWidth, "
                                   "document.querySelector('#changelist .results').clientWidth]")
        assert table <= box, (name, table, box)
        page.screenshot(path=ARTIFACTS / f"09-{name}-list.png")
    page.goto(f"{base}/admin/")
    seen = []
    for step in range(4):
        if step:
            out = runfcgi.manage("runworker", "--no-background", "--load", "3", "--max-jobs", "7").stdout
            assert "7 done" in out or jobs(runfcgi) == 0, out
        left = jobs(runfcgi)
        page.wait_for_function(f"document.querySelector('[data-field=\"depth.ready\"]').textContent.trim() === "
                               f"'{left}'", timeout=20000)
        shown = page.evaluate(READ)
        assert shown["cards"]["ready"] == left
        assert shown["tables"]["site"] == shown["cards"] == shown["tables"]["template"], shown
        seen.append(left)
        if step == 1:
            page.screenshot(path=ARTIFACTS / "10-draining.png", full_page=True)
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 4  # it drained between refreshes

    out = runfcgi.manage("runworker", "--no-background").stdout
    page.wait_for_function("document.querySelector('[data-field=\"depth.ready\"]').textContent.trim() === '0'",
                           timeout=20000)
    assert page.evaluate(READ)["tables"]["site"] == {"ready": 0, "waiting": 0, "in_progress": 0, "failed": 0}

    # The chart: uPlot's canvas at the box's width, with the time axis and both value axes labelled.
    chart = page.locator('.pq-chart[data-chart="queue"]')
    box = chart.bounding_box()
    canvas = chart.locator("canvas").bounding_box()
    assert canvas["width"] >= box["width"] - 2 * 60 - 5 and box["width"] > 800  # the plot area spans the box
    axes = json.loads(chart.get_attribute("data-axes"))  # uPlot draws them on the canvas; its script says what
    assert [a["label"] for a in axes] == ["time (UTC)", "jobs queued", "jobs done / min"], axes
    times, queued_ticks, done_ticks = (a["ticks"] for a in axes)
    assert len(times) >= 3 and all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", t) for t in times), times  # 24 h, one format
    assert len(queued_ticks) >= 2 and len(done_ticks) >= 2
    data = page.evaluate("fetch('/dispatch/dashboard.json').then(r => r.json())")
    queued_series, done_series = (s["values"] for s in data["charts"]["queue"]["series"])
    assert max(v or 0 for v in queued_series) >= seen[1] and sum(done_series) > 0
    chart.hover(position={"x": box["width"] - 80, "y": 60})
    legend = chart.locator(".u-legend .u-value").all_inner_texts()
    assert legend and ":" in legend[0], legend  # hover values: the time, then each series
    page.screenshot(path=ARTIFACTS / "11-chart.png", full_page=True)

    # Freshness: after a save in the admin and the worker, the blog's figures.
    page.goto(f"{base}/admin/blog/entry/")
    page.locator("#result_list tbody tr th a").first.click()
    page.fill("#id_title", "Fresh from Chromium")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    time.sleep(1.5)  # the save is a second old when its file is written
    runfcgi.manage("runworker", "--no-background")
    page.goto(f"{base}/admin/")
    row = page.locator("table.pq-freshness tbody tr").first
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "mtdispatch demo" and int(cells[1]) >= queued, cells
    assert all(c.endswith("s") or "m" in c for c in cells[2:]), cells  # p50, p95, max
    page.screenshot(path=ARTIFACTS / "12-freshness.png", full_page=True)


def test_pause_stops_the_drain_resume_restarts_it_and_cancel_empties_a_template(browser, runfcgi):  # noqa: F811
    base = make_site(runfcgi, "--queue-workers", "1")
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations
    login(page, base, "admin")
    page.wait_for_function("document.querySelector('[data-field=\"depth.ready\"]').textContent.trim() === '0'",
                           timeout=30000)  # the supervised worker drained the demo's jobs

    page.select_option("#pq-pause-target", "all")
    page.click("button.pq-pause-button")
    page.wait_for_selector(".pq-pause-form .pq-feedback:has-text('Paused: all jobs')")
    page.wait_for_selector(".pq-paused-banner")
    runfcgi.manage("publish", "--all", "--queue", "--force")
    queued = jobs(runfcgi)
    assert queued > 20
    worker_alive = "from dispatch.processes import live; print(live('queue worker').count())"
    for _ in range(3):  # three refreshes (5 s each) with the worker alive, and nothing taken
        wait_refresh(page)
        assert int(runfcgi.manage("shell", "-c", worker_alive).stdout.split()[-1]) == 1
        assert int(card(page, "depth.ready")) == queued == jobs(runfcgi)
    assert card(page, "eta_seconds") == "paused"
    page.screenshot(path=ARTIFACTS / "13-paused.png", full_page=True)

    # Cancel by template: the Entry template's jobs go, the others stay.
    entry_jobs = jobs(runfcgi, "fileinfo__template__identifier='entry'")
    assert entry_jobs == 12
    page.locator("table.pq-depth[data-by=template] tr:has(td:text-is('Entry')) button.pq-cancel-button").click()
    page.wait_for_selector(f".pq-flash:has-text('Cancelled {entry_jobs} queued job(s) of template “Entry”')")
    assert jobs(runfcgi, "fileinfo__template__identifier='entry'") == 0
    assert jobs(runfcgi) == queued - entry_jobs
    page.wait_for_function(f"document.querySelector('[data-field=\"depth.ready\"]').textContent.trim() === "
                           f"'{queued - entry_jobs}'", timeout=20000)
    assert page.locator("table.pq-depth[data-by=template] td:text-is('Entry')").count() == 0
    page.screenshot(path=ARTIFACTS / "14-cancelled.png", full_page=True)

    page.click("button.pq-resume-button")
    page.wait_for_selector(".pq-flash:has-text('Resumed: all jobs')")
    page.wait_for_function("document.querySelector('[data-field=\"depth.ready\"]').textContent.trim() === '0'",
                           timeout=30000)
    assert jobs(runfcgi) == 0 and page.locator(".pq-paused-banner").count() == 0
    page.screenshot(path=ARTIFACTS / "15-resumed.png", full_page=True)
    log = "from django.contrib.admin.models import LogEntry; print([e.change_message for e in LogEntry.objects.all()])"
    messages = runfcgi.manage("shell", "-c", log).stdout
    assert "Paused the publish queue: all jobs" in messages and "Resumed the publish queue: all jobs" in messages
    assert f"Cancelled {entry_jobs} queued publish job(s)" in messages
