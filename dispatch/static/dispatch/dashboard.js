// Refreshes the dashboard from its JSON endpoint every 5 seconds, without reloading the page.
(function () {
  "use strict";
  const root = document.getElementById("mtdispatch-dashboard");
  if (!root) return;
  const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  const duration = (s) => s == null ? "–" : s < 90 ? Math.round(s) + "s" : s < 5400 ? Math.floor(s / 60) + "m"
    : Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  const mb = (v) => Math.round((v || 0) / 1048576) + " MB";
  const get = (obj, path) => path.split(".").reduce((o, k) => (o == null ? o : o[k]), obj);

  function workers(w) {
    const rows = [];
    for (const m of w.managers) {
      rows.push(`<tr class="pq-manager"><td>${esc(m.host)}</td><td>${m.pid}</td><td>runfcgi ${esc(m.address)}</td><td>${esc(m.state)}</td><td>${m.requests_served}</td><td></td><td>${duration(m.uptime)}</td><td>${m.children.length}/${m.workers_target} children</td></tr>`);
      if (m.message) rows.push(`<tr class="pq-message"><td></td><td colspan="7">${esc(m.message)}</td></tr>`);
      for (const c of m.children) {
        const cur = c.request ? `${esc(c.request)} (${c.request_age}s)` : "";
        rows.push(`<tr class="pq-child" data-pid="${c.pid}"><td></td><td>${c.pid}</td><td>FastCGI child</td><td>${esc(c.state)}</td><td>${c.requests}</td><td>${mb(c.rss)}</td><td>${duration(c.age)}</td><td>${cur}</td></tr>`);
      }
    }
    for (const q of w.queue_workers) {
      rows.push(`<tr class="pq-queue-worker${q.stale ? " pq-stale" : ""}" data-pid="${q.pid}"><td>${esc(q.host)}</td><td>${q.pid}</td><td>queue worker</td><td>${esc(q.state)}${q.stale ? " (stale)" : ""}</td><td>${q.jobs_done}</td><td></td><td>${duration(q.age)}</td><td>${esc(q.current_job)}</td></tr>`);
    }
    return rows.join("") || '<tr><td colspan="8">No running workers have reported.</td></tr>';
  }

  function recycle(r) {
    if (!r) return "";
    const acks = r.acks.map((a) => `<li>${esc(a.kind)} ${esc(a.host)}:${a.pid} — new pids ${a.new_pids.join(", ")}</li>`).join("");
    const waiting = r.waiting.length ? `, ${r.waiting.length} waiting` : "";
    const when = new Date(r.requested_at).toLocaleTimeString();
    return `<p>Last recycle #${r.id} by ${esc(r.requested_by || "an operator")} at ${when}: ${r.acks.length} acknowledged${waiting}.</p><ul class="pq-acks">${acks}</ul>`;
  }

  const formats = {
    duration: (v) => duration(v), int: (v) => String(Math.round(v || 0)), html: (v) => v,
    workers: workers, recycle: recycle,
  };

  async function refresh() {
    try {
      const response = await fetch(root.dataset.url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
      if (!response.ok) return;
      const data = await response.json();
      for (const el of root.querySelectorAll("[data-field]")) {
        const field = el.dataset.field;
        if (field === "generated") { el.textContent = "updated " + new Date(data.generated).toLocaleTimeString(); continue; }
        const value = field === "workers" ? data.workers : get(data, field);
        const format = formats[el.dataset.format];
        if (format && ["html", "workers", "recycle"].includes(el.dataset.format)) el.innerHTML = format(value);
        else el.textContent = format ? format(value) : String(value ?? "–");
      }
    } catch (e) { /* the next tick tries again */ }
  }
  setInterval(refresh, 5000);
})();
