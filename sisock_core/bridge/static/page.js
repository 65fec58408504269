// sisock quick look: lists the live data nodes' fields (GET /api/fields), plots a selection over
// a time range (GET /api/data, as many points as the plot is wide), re-queries on zoom, follows
// new samples (GET /api/live, Server-Sent Events) and downloads what is shown as CSV.
// The view (fields, range, live) is kept in the URL's query string so it can be shared.
// Tests read the plot element's data-* attributes (state, points, series, from, to, ...).
"use strict";

const HOUR = 3600e3, DAY = 24 * HOUR;
const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#6e7781"];

const state = {
  nodes: [],        // /api/fields answer
  units: {},        // target -> units
  targets: [],      // selected node::field
  from: "now-24h",  // "now-..." or epoch ms (number)
  to: "now",
  live: false,
  series: [],       // [{target, units, t: [ms], v: [..], error}]
  plot: null,
  request: 0,       // id of the latest data request (older answers are dropped)
  source: null,     // EventSource in live mode
  liveSamples: 0,
  explicitRange: false,
};

const $ = (id) => document.getElementById(id);
const plotEl = $("plot");

// -- times ---------------------------------------------------------------------------------

const UNIT_MS = { ms: 1, s: 1e3, m: 60e3, h: HOUR, d: DAY, w: 7 * DAY, M: 30 * DAY, y: 365 * DAY };

function resolveTime(value, now) {
  if (typeof value === "number") return value;
  const m = /^now(?:\s*([+-])\s*(\d+(?:\.\d*)?)\s*(ms|s|m|h|d|w|M|y))?$/.exec(value.trim());
  if (m) return m[1] ? now + (m[1] === "-" ? -1 : 1) * parseFloat(m[2]) * UNIT_MS[m[3]] : now;
  if (/^\d+(\.\d*)?$/.test(value)) return parseFloat(value);
  const text = value.trim().replace(" ", "T");
  const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : text + "Z");
  if (Number.isNaN(ms)) throw new Error(`${value} is not a time (use YYYY-MM-DD HH:MM in UTC, or now-6h)`);
  return ms;
}

function formatUTC(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, "");
}

function showTime(value) {
  return typeof value === "number" ? formatUTC(value) : value;
}

function range() {
  const now = Date.now();
  return [resolveTime(state.from, now), resolveTime(state.to, now)];
}

// -- the URL --------------------------------------------------------------------------------

function readURL() {
  const q = new URLSearchParams(location.search);
  state.targets = q.getAll("target");
  const parse = (v) => (/^\d+(\.\d*)?$/.test(v) ? parseFloat(v) : v);
  if (q.get("from")) { state.from = parse(q.get("from")); state.explicitRange = true; }
  if (q.get("to")) { state.to = parse(q.get("to")); state.explicitRange = true; }
  state.live = q.get("live") === "1";
}

function viewQuery() {
  const q = new URLSearchParams();
  state.targets.forEach((t) => q.append("target", t));
  q.set("from", String(state.from));
  q.set("to", String(state.to));
  if (state.live) q.set("live", "1");
  return q;
}

function writeURL() {
  const url = location.pathname + "?" + viewQuery().toString();
  history.replaceState(null, "", url);
  $("share").href = url;
}

// -- the field list -------------------------------------------------------------------------

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && body.error && body.error.message) || `${url}: HTTP ${r.status}`);
  return body;
}

async function loadFields() {
  const answer = await getJSON("/api/fields");
  state.nodes = answer.nodes;
  const list = $("node-list");
  list.textContent = "";
  if (!state.nodes.length) list.textContent = "no live data nodes";
  for (const node of state.nodes) {
    const box = document.createElement("details");
    box.className = "node";
    box.dataset.node = node.name;
    box.open = node.fields.length <= 40 || node.fields.some((f) => state.targets.includes(f.target));
    const h = document.createElement("summary");
    h.append(el("h2", "", node.name), el("span", "count", ` ${node.fields.length} fields`));
    box.append(h);
    if (node.description) box.append(el("div", "desc", node.description));
    if (node.error) box.append(el("div", "error", node.error));
    for (const f of node.fields) {
      state.units[f.target] = f.units;
      const label = document.createElement("label");
      label.className = "field";
      label.dataset.target = f.target;
      label.title = f.description || f.name;
      const cb = document.createElement("input");
      cb.type = "checkbox";
      cb.value = f.target;
      cb.checked = state.targets.includes(f.target);
      cb.addEventListener("change", onFieldToggled);
      label.append(cb, document.createTextNode(f.name));
      if (f.units) label.append(" ", el("span", "units", `[${f.units}]`));
      if (f.description && f.description !== f.name) label.append(el("span", "desc", f.description));
      box.append(label);
    }
    list.append(box);
  }
  applyFilter();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  e.className = cls;
  e.textContent = text;
  return e;
}

function applyFilter() {
  const needle = $("filter").value.trim().toLowerCase();
  for (const label of document.querySelectorAll(".field")) {
    label.hidden = needle !== "" && !label.textContent.toLowerCase().includes(needle)
      && !label.dataset.target.toLowerCase().includes(needle);
  }
  if (needle) {  // open the nodes that have matches
    for (const box of document.querySelectorAll(".node")) {
      if (box.querySelector(".field:not([hidden])")) box.open = true;
    }
  }
}

function onFieldToggled() {
  state.targets = [...document.querySelectorAll(".field input:checked")].map((c) => c.value);
  refresh();
}

// -- data --------------------------------------------------------------------------------------

function plotWidth() {
  return Math.max(100, Math.floor(plotEl.clientWidth || 800));
}

function dataURL(from, to, points, format) {
  const q = new URLSearchParams();
  state.targets.forEach((t) => q.append("target", t));
  q.set("from", String(Math.floor(from)));
  q.set("to", String(Math.ceil(to)));
  q.set("points", String(points));
  if (format) q.set("format", format);
  return "/api/data?" + q.toString();
}

async function refresh() {
  writeURL();
  stopLive();
  $("from").value = showTime(state.from);
  $("to").value = showTime(state.to);
  $("live").setAttribute("aria-pressed", String(state.live));
  if (!state.targets.length) {
    state.series = [];
    draw();
    setStatus("choose fields on the left");
    return;
  }
  const id = ++state.request;
  const [from, to] = range();
  const points = plotWidth();
  plotEl.dataset.state = "loading";
  setStatus("loading...");
  let answer;
  try {
    answer = await getJSON(dataURL(from, to, points));
  } catch (err) {
    if (id !== state.request) return;
    plotEl.dataset.state = "error";
    showNotices([String(err.message || err)]);
    setStatus("failed");
    return;
  }
  if (id !== state.request) return; // a newer view was asked for meanwhile
  state.series = answer.series.map((s) => ({ ...s, t: Array.from(s.t), v: Array.from(s.v) }));
  plotEl.dataset.budget = String(points);
  draw(from, to);
  if (state.live) startLive();
}

function showNotices(messages) {
  const box = $("notices");
  box.textContent = "";
  for (const m of messages) box.append(el("p", "error", m));
}

function setStatus(text) {
  $("status").textContent = text;
}

// -- the plot ------------------------------------------------------------------------------------

function aligned() {
  // text fields cannot be drawn: their samples are in the CSV only
  const tables = state.series.map((s) => [s.t.map((x) => x / 1000), s.v.map((y) => (typeof y === "number" ? y : null))]);
  if (!tables.length) return [[]];
  if (tables.length === 1) return tables[0];
  return uPlot.join(tables);
}

function draw(from, to) {
  if (typeof uPlot === "undefined") {
    plotEl.dataset.state = "error";
    showNotices([document.getElementById("missing-assets")?.textContent || "the plotting library did not load"]);
    return;
  }
  if (from === undefined) [from, to] = range();
  const notices = state.series.filter((s) => s.error).map((s) => `${s.target}: ${s.error}`);
  const total = state.series.reduce((n, s) => n + s.t.length, 0);
  if (state.series.length && total === 0 && !notices.length) {
    notices.push(`no samples between ${formatUTC(from)} and ${formatUTC(to)} UTC` +
      (state.explicitRange ? "" : "; looking for the latest data..."));
  }
  showNotices(notices);
  const scales = [];
  const series = [{ label: "time (UTC)" }];
  state.series.forEach((s, i) => {
    const units = s.units || state.units[s.target] || "";
    if (!scales.includes(units)) scales.push(units);
    series.push({ label: s.target + (units ? ` [${units}]` : ""), scale: units || "_", stroke: COLORS[i % COLORS.length],
      width: 1.25, spanGaps: state.series.length > 1, points: { show: false } });
  });
  const axes = [{ space: 90, values: timeLabels }];
  scales.slice(0, 2).forEach((u, i) => axes.push({ scale: u || "_", side: i === 0 ? 3 : 1, label: u || "",
    grid: { show: i === 0 }, size: 70 }));
  const opts = {
    width: plotWidth(),
    height: Math.max(320, Math.min(640, window.innerHeight - 220)),
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    scales: { x: { time: true, min: from / 1000, max: to / 1000 } },
    series, axes,
    cursor: { drag: { x: true, y: false, setScale: false } },
    hooks: { setSelect: [onSelect] },
    legend: { live: true },
  };
  if (state.plot) state.plot.destroy();
  plotEl.textContent = "";
  state.plot = new uPlot(opts, aligned(), plotEl);
  markPlot(from, to);
  plotEl.dataset.state = total ? "ready" : "empty";
  setStatus(state.series.length ? `${state.series.length} series, ${total} points, ${formatUTC(from)} to ${formatUTC(to)} UTC` : "choose fields on the left");
  if (!total && state.series.length && !state.explicitRange) findLatest();
}

// Time axis labels in UTC, 24 h clock, as precise as the tick spacing needs.
function timeLabels(u, splits, axisIdx, space, incr) {
  const pad = (n) => String(n).padStart(2, "0");
  return splits.map((ts, i) => {
    const d = new Date(ts * 1000);
    const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (incr >= 86400) return day;
    const prev = i > 0 ? new Date(splits[i - 1] * 1000) : null;
    const newDay = !prev || prev.getUTCDate() !== d.getUTCDate();
    const time = incr < 60 ? `${hm}:${pad(d.getUTCSeconds())}` : hm;
    return newDay ? `${time}\n${day}` : time;
  });
}

function markPlot(from, to) {
  const counts = state.series.map((s) => s.t.length);
  plotEl.dataset.series = String(state.series.length);
  plotEl.dataset.points = String(counts.reduce((a, b) => a + b, 0));
  plotEl.dataset.seriesPoints = JSON.stringify(counts);
  plotEl.dataset.from = String(Math.round(from));
  plotEl.dataset.to = String(Math.round(to));
  plotEl.dataset.live = state.live ? "on" : "off";
  plotEl.dataset.liveSamples = String(state.liveSamples);
  const last = Math.max(-Infinity, ...state.series.map((s) => (s.t.length ? s.t[s.t.length - 1] : -Infinity)));
  plotEl.dataset.lastTime = Number.isFinite(last) ? String(last) : "";
}

function onSelect(u) {
  if (u.select.width < 3) return;
  const a = u.posToVal(u.select.left, "x") * 1000;
  const b = u.posToVal(u.select.left + u.select.width, "x") * 1000;
  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
  setRange(Math.floor(a), Math.ceil(b), false);
}

function setRange(from, to, live) {
  state.from = from;
  state.to = to;
  state.live = live;
  state.explicitRange = true;
  refresh();
}

// With no range in the URL and nothing in the last 24 h (an archive), look further back for
// the latest samples and show the week before them. A decimated answer keeps each bucket's
// extremes, not its last sample, so the search then narrows to the last bucket.
async function findLatest() {
  state.explicitRange = true; // once
  const now = Date.now();
  const budget = 200;
  let window = null;
  for (const span of [7 * DAY, 30 * DAY, 365 * DAY, 3650 * DAY, 36500 * DAY]) {
    window = await latestIn(now - span, now, budget);
    if (window === undefined) return;
    if (window) break;
  }
  if (!window) {
    showNotices(["no samples of these fields in the last 100 years"]);
    return;
  }
  // the last sample lies in the bucket of the last one returned: narrow to it (each step
  // divides the window by budget / 4) until a bucket is under a second
  for (let i = 0; i < 12 && 2 * (window.to - window.from) / budget > 1000; i++) {
    const next = await latestIn(window.last, Math.min(now, window.last + 4 * (window.to - window.from) / budget + 1), budget);
    if (!next) break;
    window = next;
  }
  setRange(Math.floor(window.last - 7 * DAY), Math.ceil(window.last + 1000), false);
}

async function latestIn(from, to, budget) {
  let answer;
  try {
    answer = await getJSON(dataURL(from, to, budget));
  } catch (err) {
    showNotices([String(err.message || err)]);
    return undefined;
  }
  const filled = answer.series.filter((s) => s.t.length);
  if (!filled.length) return null;
  return { from, to, last: Math.max(...filled.map((s) => s.t[s.t.length - 1])) };
}

// -- live mode -------------------------------------------------------------------------------------

function startLive() {
  stopLive();
  const [from, to] = range();
  const span = to - from;
  const last = Math.max(from, ...state.series.map((s) => (s.t.length ? s.t[s.t.length - 1] : from)));
  const q = new URLSearchParams();
  state.targets.forEach((t) => q.append("target", t));
  q.set("since", String(Math.floor(last)));
  q.set("points", String(plotWidth()));
  const source = new EventSource("/api/live?" + q.toString());
  state.source = source;
  source.onopen = () => setStatus(`live: following ${state.targets.length} series`);
  source.onerror = () => setStatus("live: connection lost, retrying...");
  source.onmessage = (ev) => {
    const update = JSON.parse(ev.data);
    const errors = [];
    for (const item of update.series) {
      const s = state.series.find((x) => x.target === item.target);
      if (!s) continue;
      if (item.error) errors.push(`${item.target}: ${item.error}`);
      for (let i = 0; i < item.t.length; i++) {
        if (s.t.length && item.t[i] <= s.t[s.t.length - 1]) continue;
        s.t.push(item.t[i]);
        s.v.push(item.v[i]);
        state.liveSamples++;
      }
    }
    if (errors.length) showNotices(errors);
    const now = Date.now();
    const start = now - span;
    for (const s of state.series) {
      let k = 0;
      while (k < s.t.length && s.t[k] < start) k++;
      if (k) { s.t.splice(0, k); s.v.splice(0, k); }
    }
    if (state.plot) {
      state.plot.setData(aligned(), false);
      state.plot.setScale("x", { min: start / 1000, max: now / 1000 });
    }
    markPlot(start, now);
  };
}

function stopLive() {
  if (state.source) state.source.close();
  state.source = null;
  plotEl.dataset.live = state.live ? "on" : "off";
}

function toggleLive() {
  if (state.live) {
    const [from, to] = range();
    setRange(Math.floor(from), Math.ceil(to), false);
    return;
  }
  const [from, to] = range();
  const span = Math.max(60e3, to - from);
  state.from = relative(span);
  state.to = "now";
  state.live = true;
  state.explicitRange = true;
  refresh();
}

function relative(ms) {
  for (const [unit, size] of [["d", DAY], ["h", HOUR], ["m", 60e3], ["s", 1e3]]) {
    if (ms % size === 0) return `now-${ms / size}${unit}`;
  }
  return `now-${Math.round(ms / 1e3)}s`;
}

// -- CSV of what is shown ----------------------------------------------------------------------------

function csvText() {
  const rows = ["time,target,value"];
  const quote = (x) => (/[",\r\n]/.test(x) ? `"${x.replace(/"/g, '""')}"` : x);
  for (const s of state.series) {
    const name = quote(s.target);
    for (let i = 0; i < s.t.length; i++) {
      const v = s.v[i];
      rows.push(`${new Date(s.t[i]).toISOString()},${name},${v === null || v === undefined ? "" : quote(String(v))}`);
    }
  }
  return rows.join("\r\n") + "\r\n";
}

function downloadCSV() {
  const [from, to] = range();
  const blob = new Blob([csvText()], { type: "text/csv" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  const stamp = (ms) => new Date(ms).toISOString().slice(0, 19).replace(/[-:]/g, "");
  a.download = `sisock-${stamp(from)}-${stamp(to)}.csv`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// -- start --------------------------------------------------------------------------------------------

function wire() {
  for (const b of document.querySelectorAll("[data-preset]")) {
    b.addEventListener("click", () => {
      state.from = b.dataset.preset;
      state.to = "now";
      state.explicitRange = true;
      refresh();
    });
  }
  $("apply").addEventListener("click", () => {
    try {
      const now = Date.now();
      const parse = (text) => (/^now/.test(text.trim()) ? text.trim() : resolveTime(text, now));
      const from = parse($("from").value), to = parse($("to").value);
      if (resolveTime(to, now) <= resolveTime(from, now)) throw new Error("'to' must be after 'from'");
      state.from = from; state.to = to; state.explicitRange = true;
      refresh();
    } catch (err) {
      showNotices([err.message]);
    }
  });
  $("zoom-out").addEventListener("click", () => {
    const [from, to] = range();
    const half = (to - from) / 2;
    setRange(Math.floor(from - half), Math.ceil(Math.min(to + half, Date.now())), false);
  });
  $("live").addEventListener("click", toggleLive);
  $("csv").addEventListener("click", downloadCSV);
  $("filter").addEventListener("input", applyFilter);
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => state.targets.length && refresh(), 300);
  });
}

async function main() {
  readURL();
  wire();
  try {
    await loadFields();
  } catch (err) {
    $("node-list").textContent = "";
    showNotices([`cannot list the data nodes: ${err.message}`]);
    return;
  }
  if (!state.targets.length) {
    const first = state.nodes.find((n) => n.fields.length);
    if (first) {
      state.targets = [first.fields[0].target];
      const cb = document.querySelector(`.field input[value="${CSS.escape(first.fields[0].target)}"]`);
      if (cb) cb.checked = true;
    }
  }
  await refresh();
}

window.sisockView = state; // for tests and the curious
main();
