// A publish run's page: polls its JSON once a second (done/total, failures, ETA). When no queue worker is running,
// it publishes the run itself, one file per request (MT's rebuild dialog did its work in the browser too).
(function () {
  "use strict";
  const root = document.getElementById("pq-run");
  if (!root) return;
  const field = (name) => root.querySelector(`[data-field="${name}"]`);
  const token = (document.cookie.split("; ").find((c) => c.startsWith("csrftoken=")) || "=").split("=")[1];
  let idlePolls = 0;
  let stepping = false;

  function seconds(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return `${Math.ceil(s)} s`;
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function text(name, value) {
    const el = field(name);
    if (el) el.textContent = value;
  }

  function failures(list) {
    const body = field("failures");
    body.replaceChildren();
    if (!list.length) {
      const row = body.insertRow();
      row.className = "pq-none";
      const cell = row.insertCell();
      cell.colSpan = 4;
      cell.textContent = "None.";
      return;
    }
    for (const f of list) {
      const row = body.insertRow();
      const link = document.createElement("a");
      link.href = f.url;
      link.textContent = f.path;
      row.insertCell().append(link);
      row.insertCell().textContent = `${f.attempts}/${f.max_attempts}${f.final ? " (failed)" : ""}`;
      row.insertCell().textContent = f.error.slice(0, 300);
      const job = document.createElement("a");
      job.href = `${root.dataset.jobs}${f.job}/change/`;
      job.textContent = "job";
      row.insertCell().append(job);
    }
  }

  function show(d) {
    text("done", d.done);
    text("total", d.total);
    text("failed", d.failed);
    text("retrying", d.retrying);
    field("bar").style.width = `${d.total ? (100 * d.done) / d.total : 100}%`;
    text("state", d.finished ? "Finished." : "Running");
    text("eta", d.finished ? `in ${seconds(d.elapsed)}` : d.eta !== null ? `about ${seconds(d.eta)} left` : "");
    if (root.dataset.kind === "dry-run") {
      text("changed", d.changed);
      text("sample_path", d.sample_path || "none yet");
      text("sample_diff", d.sample_diff);
    }
    failures(d.failures);
    root.dataset.finished = d.finished ? "1" : "";
  }

  function note(d) {
    const el = field("workers-note");
    el.classList.toggle("pq-stepping", stepping);
    if (d.finished) el.textContent = "";
    else if (stepping) el.textContent = "No queue worker is running: this page is publishing the run, one file per request. Keep it open.";
    else el.textContent = d.workers ? `${d.workers} queue worker(s) running.` : "No queue worker is running yet.";
  }

  async function step() {
    stepping = true;
    try {
      for (;;) {
        const r = await fetch(root.dataset.step, { method: "POST", headers: { "X-CSRFToken": token } });
        if (!r.ok) break;
        const d = await r.json();
        show(d);
        note(d);
        if (d.finished || d.workers || !d.ran) break;
      }
    } finally {
      stepping = false;
    }
  }

  async function poll() {
    try {
      const r = await fetch(root.dataset.json, { headers: { Accept: "application/json" } });
      if (r.ok) {
        const d = await r.json();
        show(d);
        idlePolls = d.workers || d.finished ? 0 : idlePolls + 1;
        note(d);
        if (d.finished) return;
        if (idlePolls >= 2 && root.dataset.canStep && !stepping) await step();
      }
    } catch (e) {
      // the next poll tries again
    }
    setTimeout(poll, 1000);
  }

  poll();
})();
