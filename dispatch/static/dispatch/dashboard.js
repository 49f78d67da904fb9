// The dashboard: every 5 seconds, one request to its JSON endpoint; the regions (cards, tables, workers, ...)
// are replaced by the HTML the server rendered from that one snapshot, and the charts redrawn (uPlot).
// Forms marked .pq-action (Recycle, Pause, Resume, Cancel) post in the background and say what happened next to
// the button; a data-confirm attribute asks first.
(function () {
  "use strict";
  const root = document.getElementById("mtdispatch-dashboard");
  if (!root) return;
  const REFRESH_MS = 5000;
  const timeZone = root.dataset.timeZone || undefined;
  const charts = {};
  let timer = null;

  // -- charts ----------------------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");
  function zoned(ts) {
    return timeZone && window.uPlot ? uPlot.tzDate(new Date(ts * 1000), timeZone) : new Date(ts * 1000);
  }
  function clock(ts, seconds) {
    const d = zoned(ts);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}` + (seconds ? `:${pad(d.getSeconds())}` : "");
  }
  const number = (v) => (v == null ? "–" : Math.round(v * 10) / 10);

  function chartOptions(el, spec) {
    const axisNames = Object.keys(spec.axes);
    const scales = {x: {time: true}};
    for (const name of axisNames) scales[name] = {range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.1]};
    // Hover values; away from the chart, the latest ones.
    const latest = (u, si) => {
      const values = u.data[si];
      for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
      return null;
    };
    const series = [{label: "Time", value: (u, ts, si, idx) => clock(idx == null ? latest(u, 0) : ts, true)}];
    spec.series.forEach((s, i) => {
      const bars = s.kind === "bars";
      series.push({
        label: s.label, scale: s.axis, spanGaps: !bars,
        value: (u, v, si, idx) => number(idx == null ? latest(u, si) : v),
        stroke: bars ? "rgba(121, 174, 200, 0.9)" : "#264b5d", width: bars ? 1 : 2,
        fill: bars ? "rgba(121, 174, 200, 0.45)" : undefined,
        paths: bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({size: [0.9, 40]}) : undefined,
        points: {show: false},
      });
    });
    const axes = [{
      scale: "x", label: timeZone ? `time (${timeZone})` : "time", labelSize: 20,
      values: (u, splits) => {
        const range = (u.scales.x.max || 0) - (u.scales.x.min || 0);
        return splits.map((ts) => clock(ts, range < 600));
      },
    }];
    axisNames.forEach((name, i) => {
      axes.push({scale: name, label: spec.axes[name], side: i === 0 ? 3 : 1, size: 50, labelSize: 20,
                 grid: {show: i === 0}, values: (u, splits) => splits.map((v) => (v % 1 ? v.toFixed(1) : v))});
    });
    return {
      width: Math.max(el.clientWidth, 300), height: 220, scales, series, axes,
      cursor: {drag: {x: true, y: false}}, legend: {live: true},
    };
  }

  function chartData(spec) {
    return [spec.x, ...spec.series.map((s) => s.values)];
  }

  function drawCharts(specs) {
    if (!window.uPlot || !specs) return;
    for (const el of root.querySelectorAll("[data-chart]")) {
      const spec = specs[el.dataset.chart];
      if (!spec) continue;
      const existing = charts[el.dataset.chart];
      if (existing) {
        existing.chart.setData(chartData(spec), !existing.zoomed);
        continue;
      }
      const state = {zoomed: false};
      const options = chartOptions(el, spec);
      options.hooks = {
        setSelect: [() => { state.zoomed = true; }],
        // What the axes show (drawn on the canvas), for tests and for reading without a canvas.
        draw: [(u) => {
          el.dataset.axes = JSON.stringify(u.axes.map((a) => ({label: a.label, ticks: a._values || []})));
        }],
      };
      state.chart = new uPlot(options, chartData(spec), el);
      el.addEventListener("dblclick", () => { state.zoomed = false; });
      new ResizeObserver(() => state.chart.setSize({width: Math.max(el.clientWidth, 300), height: 220})).observe(el);
      charts[el.dataset.chart] = state;
    }
  }

  // -- refresh ---------------------------------------------------------------------------------------

  async function refresh() {
    clearTimeout(timer);
    try {
      const response = await fetch(root.dataset.url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
      if (response.ok) {
        const data = await response.json();
        for (const el of root.querySelectorAll("[data-region]")) {
          const html = data.regions[el.dataset.region];
          if (html != null && html !== el.innerHTML) el.innerHTML = html;
        }
        drawCharts(data.charts);
        root.dataset.generated = data.generated;
      }
    } catch (e) { /* the next tick tries again */ }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  // -- actions ---------------------------------------------------------------------------------------

  function feedbackFor(form) {
    // A form inside a region goes away with the next refresh: its message goes just before the region.
    const region = form.closest("[data-region]");
    if (!region) return form.querySelector(".pq-feedback");
    let flash = region.previousElementSibling;
    if (!flash || !flash.classList.contains("pq-flash")) {
      flash = document.createElement("p");
      flash.className = "pq-flash";
      flash.setAttribute("role", "status");
      region.parentNode.insertBefore(flash, region);
    }
    return flash;
  }

  root.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    if (!form.classList.contains("pq-action")) return; // an ordinary post and redirect
    event.preventDefault();
    const out = feedbackFor(form);
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    let message, failed;
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: {Accept: "application/json", "X-Requested-With": "XMLHttpRequest"},
      });
      const body = await response.json().catch(() => ({}));
      failed = !response.ok;
      message = body.message || (failed ? `Refused (${response.status} ${response.statusText}).` : "Done.");
    } catch (e) {
      failed = true;
      message = "The server did not answer; try again.";
    }
    if (button) button.disabled = false;
    for (const other of root.querySelectorAll(".pq-feedback, .pq-flash")) other.textContent = "";
    if (out) {
      out.textContent = message;
      out.classList.toggle("pq-error", failed);
      out.classList.add("pq-shown");
    }
    refresh();
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => drawCharts(initialCharts()));
  } else {
    drawCharts(initialCharts());
  }
  function initialCharts() {
    const el = document.getElementById("mtdispatch-charts");
    return el ? JSON.parse(el.textContent) : null;
  }
  timer = setTimeout(refresh, REFRESH_MS);
})();
