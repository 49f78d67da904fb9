"""The editor's publishing features in headless Chromium (Debian's, driven by Playwright, as the dashboard's tests)
against a real runfcgi --http: applying a publishing profile and seeing the modes change; a publish run with a
scope showing its progress to completion while a queue worker runs; a Statically published template saved with
no worker running, published by the run's page; a template preview, a dry run reporting the right count of changed
files, and an entry preview."""
import json

import pytest

from tests.dispatch.test_browser import ARTIFACTS as DASHBOARD_ARTIFACTS
from tests.dispatch.test_browser import browser, login  # noqa: F401 - the Chromium fixture
from tests.fcgi import free_port

pytestmark = pytest.mark.slow

ARTIFACTS = DASHBOARD_ARTIFACTS.parent / "editor"
ENTRIES = 12


def start_site(runfcgi, *args):
    port = free_port()
    root = runfcgi.tmp / "site"
    runfcgi.manage("demo", "--entries", str(ENTRIES), "--site-root", str(root), "--site-url",
                   f"http://127.0.0.1:{port}/blog/", "--password", "pw")
    runfcgi.start("--workers", "2", "--http", f"127.0.0.1:{port}", *args)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return f"http://127.0.0.1:{port}", root


def query(runfcgi, code):
    """A value computed in the site's database (the last line a shell prints, as JSON)."""
    out = runfcgi.manage("shell", "-c", f"import json\n{code}").stdout
    return json.loads(out.strip().splitlines()[-1])


def template_modes(page):
    """The template list's mode column, by template name."""
    rows = page.locator("#result_list tbody tr")
    return {rows.nth(i).locator("th").inner_text(): rows.nth(i).locator("td.field-mode").inner_text()
            for i in range(rows.count())}


def watch_done(page):
    """Record every value the run page shows as done (it updates itself from its JSON, no reload)."""
    page.evaluate("""() => {
        const done = document.querySelector('[data-field=done]');
        window.seenDone = [Number(done.textContent)];
        new MutationObserver(() => window.seenDone.push(Number(done.textContent)))
            .observe(done, {childList: true, characterData: true, subtree: true});
    }""")


def test_a_profile_changes_the_modes_and_a_scoped_run_shows_its_progress_while_a_worker_runs(browser, runfcgi):  # noqa: F811
    base, root = start_site(runfcgi, "--queue-workers", "1")
    page = browser.new_page(viewport={"width": 1300, "height": 1200})
    login(page, base, "admin")

    page.goto(f"{base}/admin/publishqueue/template/")
    assert set(template_modes(page).values()) - {"Statically", "-"} == set()
    page.click("text=Publishing profile")
    page.check("input[name=profile][value=async_partial]")
    page.click("input[name=_preview]")
    page.wait_for_selector("table.pq-profile-changes")
    changes = page.locator("table.pq-profile-changes tbody tr")
    assert changes.count() >= 5  # every template but the main index and feeds is queued; the entry mapping static
    page.screenshot(path=ARTIFACTS / "01-profile-confirm.png", full_page=True)
    modes = query(runfcgi, "from publishqueue.models import Template\n"
                           "print(json.dumps(sorted(set(Template.objects.values_list('mode', flat=True)))))")
    assert modes == ["static"]  # showing what changes changed nothing
    page.click("input[name=_apply]")
    page.wait_for_selector(".messagelist")
    assert "Applied the profile" in page.inner_text(".messagelist")
    modes = template_modes(page)
    page.screenshot(path=ARTIFACTS / "02-profile-applied.png", full_page=True)
    assert modes["Main Index"] == modes["Atom Feed"] == "Statically"
    assert modes["Entry"] == modes["Monthly Archive"] == modes["Category Archive"] == "Via Publish Queue"
    own = page.locator("#result_list tbody tr", has_text="Entry").first.locator("td.field-mapping_modes").inner_text()
    assert own == "{year}/{month}/{slug}.html: Statically"

    # Publish site, scope: one archive type (the entries), done by the queue worker while the page watches. The
    # queue is paused until the page has shown the run's start (a fast worker could finish before the first poll).
    query(runfcgi, "from publishqueue.models import QueuePause\n"
                   "print(json.dumps(QueuePause.objects.create(scope='all', note='test').pk))")
    page.goto(f"{base}/admin/publishqueue/publishrun/add/")
    page.check("input[name=scope][value=archive_type]")
    page.select_option("#id_archive_type", "individual")
    page.click("input[name=_save]")
    page.screenshot(path=ARTIFACTS / "03-publish-site.png", full_page=True)
    page.wait_for_selector("#pq-run")
    watch_done(page)
    assert page.inner_text("[data-field=total]") == str(ENTRIES)
    assert page.evaluate("window.seenDone")[0] < ENTRIES
    query(runfcgi, "from publishqueue.models import QueuePause\n"
                   "print(json.dumps(QueuePause.objects.filter(note='test').delete()[0]))")
    page.wait_for_function("document.getElementById('pq-run').dataset.finished === '1'", timeout=60000)
    seen = page.evaluate("window.seenDone")
    page.screenshot(path=ARTIFACTS / "03-run-finished.png", full_page=True)
    assert seen[0] < ENTRIES and seen[-1] == ENTRIES and seen == sorted(seen)
    assert page.inner_text("[data-field=failed]") == "0"
    assert "Finished." in page.inner_text(".pq-run-counts")
    assert "queue worker(s) running" not in page.inner_text(".pq-run")  # the note goes when finished
    assert query(runfcgi, "from publishqueue.models import Job; print(json.dumps(Job.objects.count()))") == 0
    assert len(list(root.glob("20*/*/*.html"))) >= ENTRIES


def test_a_static_template_saved_with_no_worker_is_published_by_its_runs_page(browser, runfcgi):  # noqa: F811
    base, root = start_site(runfcgi)  # no queue worker
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    login(page, base, "admin")
    page.goto(f"{base}/admin/publishqueue/template/")
    page.click("#result_list >> text=Entry")
    page.fill("#id_source", page.input_value("#id_source") + "<!-- saved without a worker -->")
    page.click("input[name=_save]")
    page.wait_for_selector("#pq-run")  # the save started a run: too many files for one request
    page.wait_for_selector("text=this page is publishing the run", timeout=20000)
    page.wait_for_function("document.getElementById('pq-run').dataset.finished === '1'", timeout=60000)
    page.screenshot(path=ARTIFACTS / "04-published-in-the-browser.png", full_page=True)
    pages = [p for p in root.glob("20*/*/*.html") if p.name != "index.html"]  # the entries' pages
    assert len(pages) == ENTRIES and all("saved without a worker" in p.read_text() for p in pages)


def test_template_preview_dry_run_and_entry_preview(browser, runfcgi):  # noqa: F811
    base, root = start_site(runfcgi, "--queue-workers", "1")
    even = query(runfcgi, "from blog.models import Entry\nids = Entry.objects.values_list('pk', flat=True)\n"
                          "print(json.dumps(len([pk for pk in ids if pk % 2 == 0])))")
    assert 0 < even < ENTRIES
    before = {p: p.read_bytes() for p in root.rglob("*.html")}
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    login(page, base, "admin")
    page.goto(f"{base}/admin/publishqueue/template/")
    page.click("#result_list >> text=Entry")
    source = page.input_value("#id_source")
    page.fill("#id_source", source + "{% if entry.id|divisibleby:2 %}<p class=even>An even entry</p>{% endif %}")

    with page.context.expect_page() as opened:
        page.click("button.pq-preview")
    preview = opened.value
    preview.wait_for_load_state()
    frame = preview.frame_locator("iframe.pq-sample-frame").first
    assert frame.locator("h2").first.inner_text()  # a whole entry page
    assert "/blog/20" in preview.inner_text("h2 code")  # the newest entry's page
    preview.screenshot(path=ARTIFACTS / "05-template-preview.png", full_page=True)
    preview.close()

    page.click("button.pq-dry-run")
    page.wait_for_selector("#pq-run")
    page.wait_for_function("document.getElementById('pq-run').dataset.finished === '1'", timeout=60000)
    page.screenshot(path=ARTIFACTS / "06-dry-run.png", full_page=True)
    assert page.inner_text("[data-field=changed]") == str(even)
    assert page.inner_text("[data-field=total]") == str(ENTRIES)
    assert "+<p class=even>An even entry</p>" in page.inner_text("[data-field=sample_diff]")
    assert {p: p.read_bytes() for p in root.rglob("*.html")} == before  # nothing written
    saved = query(runfcgi, "from publishqueue.models import Template\n"
                           "print(json.dumps(Template.objects.get(identifier='entry', site_id=1).source))")
    assert "An even entry" not in saved

    page.goto(f"{base}/admin/blog/entry/")
    page.locator("#result_list tbody tr th a").first.click()
    slug = page.input_value("#id_slug")
    page.fill("#id_title", "A title nobody saved")
    with page.context.expect_page() as opened:
        page.click("button.mt-entry-preview")
    entry_preview = opened.value
    entry_preview.wait_for_load_state()
    entry_preview.screenshot(path=ARTIFACTS / "07-entry-preview.png")
    assert "A title nobody saved" in entry_preview.inner_text("article h2")
    assert "nothing has been saved" in entry_preview.inner_text("#mt-preview-banner")
    assert "A title nobody saved" not in next(root.rglob(f"{slug}.html")).read_text()
    titles = query(runfcgi, "from blog.models import Entry\n"
                            "print(json.dumps(list(Entry.objects.values_list('title', flat=True))))")
    assert "A title nobody saved" not in titles
