// The board's page: hash-routed views (runs, one run, compare, start) that poll the JSON endpoints.
(() => {
"use strict";

const { LineChart, formatNumber } = window.TSChart;
const POLL_MS = 1000;
const CHART_GROUPS = [
  ["loss", ["loss", "eval_loss"]],
  ["learning rate", ["lr"]],
  ["grad norm", ["grad_norm"]],
  ["tokens/s", ["tokens_per_second", "label_tokens_per_second"]],
  ["memory (MiB)", ["peak_rss_mb", "peak_gpu_mb"]],
];
const NOT_METRICS = new Set(["step", "epoch", "elapsed_s", "tokens", "input_tokens", "num_input_tokens_seen"]);
let timers = [];

// ---------- helpers ----------
const $ = (sel, root = document) => root.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}
async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}
function every(ms, fn) {
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try { await fn(); $("#conn").textContent = ""; } catch (e) { $("#conn").textContent = `⚠ ${e.message}`; }
    busy = false;
  };
  tick();
  timers.push(setInterval(tick, ms));
}
const runLink = (name) => `#/run/${encodeURIComponent(name)}`;
function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`
    : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");
function configSummary(c) {
  const parts = [c.model_name_or_path, c.stage, c.finetuning_type, c.dataset && `data ${c.dataset}`,
    c.learning_rate !== undefined && `lr ${c.learning_rate}`];
  return parts.filter(Boolean).join(" · ");
}
function smoothingControl(onChange) {
  const input = $("#smoothing"), out = $("#smoothing-value");
  input.addEventListener("input", () => { out.textContent = input.value; onChange(Number(input.value)); });
  return Number(input.value);
}

// A run's log rows, read incrementally from the server (offset), reset when the file was rewritten.
class LogFollower {
  constructor(name) { this.name = name; this.offset = 0; this.rows = []; this.skipped = 0; }
  async poll() {
    const chunk = await api(`/api/log?name=${encodeURIComponent(this.name)}&offset=${this.offset}`);
    if (chunk.reset) { this.rows = []; this.skipped = 0; }
    this.rows.push(...chunk.rows);
    this.skipped += chunk.skipped;
    this.offset = chunk.offset;
    return chunk.rows.length > 0 || chunk.reset;
  }
  series(key) { return this.rows.filter((r) => r[key] !== undefined).map((r) => [r.step, r[key]]); }
  metrics() {
    const keys = new Set();
    for (const r of this.rows) for (const k of Object.keys(r)) if (!NOT_METRICS.has(k)) keys.add(k);
    return [...keys].sort();
  }
}

// ---------- views ----------
function viewRuns() {
  const selected = new Set();
  $("#compare-selected").addEventListener("click", () => {
    location.hash = `#/compare?runs=${[...selected].map(encodeURIComponent).join(",")}`;
  });
  every(2 * POLL_MS, async () => {
    const { root, runs } = await api("/api/runs");
    $("#root").textContent = root;
    const body = $("#runs-table tbody");
    body.replaceChildren(...runs.map((r) => {
      const box = el("input", { type: "checkbox", checked: selected.has(r.name) });
      box.addEventListener("change", () => (box.checked ? selected.add(r.name) : selected.delete(r.name)));
      return el("tr", { "data-run": r.name, "data-status": r.status },
        el("td", {}, box),
        el("td", {}, el("a", { href: runLink(r.name) }, r.name)),
        el("td", {}, el("span", { class: `status ${r.status}` }, r.status)),
        el("td", {}, r.step === null ? "–" : `${r.step}${r.max_steps ? ` / ${r.max_steps}` : ""}`),
        el("td", {}, formatNumber(r.loss)),
        el("td", {}, formatNumber(r.tokens_per_second)),
        el("td", {}, duration(r.eta_s)),
        el("td", {}, when(r.started)),
        el("td", { class: "small" }, configSummary(r.config)));
    }));
    if (!runs.length) body.append(el("tr", {}, el("td", { colSpan: 9 }, "no runs yet: start one")));
  });
}

function viewRun(name) {
  $("#run-name").textContent = name;
  const log = new LogFollower(name);
  const charts = CHART_GROUPS.map(([title, keys]) => {
    const canvas = el("canvas", { class: "chart", "data-chart": keys[0] });
    $("#charts").append(canvas);
    return { chart: new LineChart(canvas, { title }), keys };
  });
  const extra = new Map(); // other eval metrics, one chart each
  const redraw = () => {
    for (const { chart, keys } of charts) {
      chart.setSeries(keys.map((k) => ({ label: k, points: log.series(k) })).filter((s) => s.points.length));
      chart.canvas.hidden = !chart.series.length && keys[0] !== "loss";
    }
    for (const key of log.metrics()) {
      if (CHART_GROUPS.some(([, keys]) => keys.includes(key))) continue;
      if (!extra.has(key)) {
        const canvas = el("canvas", { class: "chart", "data-chart": key });
        $("#charts").append(canvas);
        extra.set(key, new LineChart(canvas, { title: key, smoothing: charts[0].chart.smoothing }));
      }
      extra.get(key).setSeries([{ label: key, points: log.series(key) }]);
    }
    $("#log-note").textContent = log.skipped ? `${log.skipped} unreadable log line(s) skipped` : "";
  };
  smoothingControl((w) => {
    for (const c of [...charts.map((c) => c.chart), ...extra.values()]) c.smoothing = w;
    redraw();
  });
  $("#stop-run").addEventListener("click", async () => {
    $("#stop-run").disabled = true;
    try { await api("/api/stop", { name }); } catch (e) { $("#log-note").textContent = `⚠ ${e.message}`; }
  });
  chatBox(name);
  every(POLL_MS, async () => { if (await log.poll()) redraw(); });
  every(3 * POLL_MS, async () => showDetails(await api(`/api/run?name=${encodeURIComponent(name)}`)));
  redraw();
}

function chatBox(name) {
  let history = [];
  const render = () => $("#chat-messages").replaceChildren(...history.map((m) =>
    el("div", { class: `msg ${m.role}` }, el("b", {}, `${m.role}: `), m.content || "(empty answer)")));
  const send = async () => {
    const text = $("#chat-input").value.trim();
    if (!text) return;
    history.push({ role: "user", content: text });
    $("#chat-input").value = "";
    render();
    $("#chat-note").textContent = "generating…";
    try {
      const reply = await api("/api/chat", { name, messages: history });
      history.push({ role: "assistant", content: reply.content });
      $("#chat-note").textContent = "";
    } catch (e) {
      history.pop();
      $("#chat-note").textContent = `⚠ ${e.message}`;
    }
    render();
  };
  $("#chat-send").addEventListener("click", send);
  $("#chat-input").addEventListener("keydown", (e) => { if (e.key === "Enter") send(); });
  $("#chat-clear").addEventListener("click", () => { history = []; render(); });
}

function showDetails(d) {
  const run = d.summary;
  $("#run-status").textContent = run.status;
  $("#run-status").className = `status ${run.status}`;
  $("#stop-run").hidden = !(run.board_job && run.status === "running");
  $("#chat").hidden = run.status !== "finished";
  const config = d.config;
  const dialect = config.plan && config.plan.dialect;
  $("#config-note").textContent = config.error || config.note || [config.file && `from ${config.file}`,
    dialect && dialect.name && `dialect ${dialect.name} (${dialect.reason})`].filter(Boolean).join("; ");
  $("#config-table tbody").replaceChildren(...config.keys.map((k) => el("tr", { "data-key": k.name },
    el("td", {}, k.name), el("td", {}, JSON.stringify(k.value)), el("td", { class: "small" }, k.set_as),
    el("td", { class: "small" }, k.dialect || ""))));
  $("#plan-table tbody").replaceChildren(...planRows(config.plan));
  $("#ckpt-table tbody").replaceChildren(...d.checkpoints.map((c) => el("tr", { "data-checkpoint": c.name },
    el("td", {}, c.name), el("td", {}, c.complete ? "yes" : "no (being written)"), el("td", {}, c.size_mb),
    el("td", {}, when(c.written)))));
  if (!d.checkpoints.length) $("#ckpt-table tbody").append(el("tr", {}, el("td", { colSpan: 4 }, "none yet")));
  const plotKey = JSON.stringify(d.plots);
  if ($("#plots").dataset.key !== plotKey) {
    $("#plots").dataset.key = plotKey;
    $("#plots").replaceChildren(...d.plots.map((p) => el("img", {
      src: `/api/plot?name=${encodeURIComponent(d.name)}&file=${p.name}&v=${p.mtime}`, alt: p.name,
    })));
  }
  $("#log-source").textContent = `(${d.log_source})`;
  const tail = $("#log-tail");
  const follow = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4;
  tail.textContent = d.log_tail.join("\n");
  if (follow) tail.scrollTop = tail.scrollHeight;
}

function planRows(plan) {
  // The plan's derived numbers, then the memory estimate's lines.
  const rows = Object.entries((plan && plan.derived) || {}).map(([k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", {}, v ?? "–")));
  const memory = ((plan && plan.memory) || []).map((line) => {
    const at = line.indexOf(": ");
    return el("tr", { class: "memory" }, el("th", {}, at > 0 ? line.slice(0, at) : "memory"),
      el("td", {}, at > 0 ? line.slice(at + 2) : line));
  });
  return [...rows, ...memory];
}

function viewCompare(params) {
  const chosen = new Set((params.get("runs") || "").split(",").filter(Boolean));
  const followers = new Map();
  const chart = new LineChart($("#compare-chart"), { title: "" });
  const metric = $("#metric");
  const redraw = () => {
    const key = metric.value || "loss";
    chart.title = key;
    chart.setSeries([...chosen].filter((n) => followers.has(n))
      .map((n) => ({ label: n, points: followers.get(n).series(key) })));
  };
  const updateMetrics = () => {
    const keys = new Set(["loss"]);
    for (const f of followers.values()) for (const k of f.metrics()) keys.add(k);
    const current = metric.value || "loss";
    if (metric.options.length !== keys.size) {
      metric.replaceChildren(...[...keys].sort().map((k) => el("option", { value: k, selected: k === current }, k)));
    }
  };
  metric.addEventListener("change", redraw);
  smoothingControl((w) => { chart.smoothing = w; redraw(); });
  every(2 * POLL_MS, async () => {
    const { runs } = await api("/api/runs");
    const boxes = runs.map((r) => {
      const box = el("input", { type: "checkbox", checked: chosen.has(r.name), "data-run": r.name });
      box.addEventListener("change", () => { box.checked ? chosen.add(r.name) : chosen.delete(r.name); redraw(); });
      return el("label", {}, box, ` ${r.name} `, el("span", { class: `status ${r.status}` }, r.status));
    });
    if ($("#compare-runs").childElementCount !== boxes.length) $("#compare-runs").replaceChildren(...boxes);
    for (const name of chosen) {
      if (!followers.has(name)) followers.set(name, new LogFollower(name));
      await followers.get(name).poll();
    }
    updateMetrics();
    redraw();
  });
}

function viewStart() {
  const text = $("#config-text"), gutter = $("#gutter"), notes = $("#notes");
  let problems = [], templates = [];
  const lineHeight = () => parseFloat(getComputedStyle(text).lineHeight) || 18;
  const paint = () => {
    const count = text.value.split("\n").length;
    const bad = new Set(problems.map((p) => p.line).filter(Boolean));
    gutter.replaceChildren(...Array.from({ length: count }, (_, i) =>
      el("div", { class: bad.has(i + 1) ? "bad" : "" }, i + 1)));
    gutter.scrollTop = text.scrollTop;
    notes.replaceChildren(...problems.filter((p) => p.line && p.key !== "run name").map((p) => {
      const top = (p.line - 1) * lineHeight() - text.scrollTop + 6;
      return el("div", { class: "key-error", "data-key": p.key || "", "data-line": p.line,
        style: `top:${top}px` }, `← ${p.message}`);
    }));
    const nameProblem = problems.find((p) => p.key === "run name");
    $("#name-error").hidden = !nameProblem;
    $("#name-error").textContent = nameProblem ? nameProblem.message : "";
    $("#problems").replaceChildren(...problems.filter((p) => !p.line && p.key !== "run name")
      .map((p) => el("p", { class: "key-error", "data-key": p.key || "" }, p.message)));
  };
  const show = (result) => {
    problems = result.problems;
    paint();
    $("#check-plan tbody").replaceChildren(...planRows(result.plan));
  };
  const request = () => ({ name: $("#run-name-input").value, text: text.value });
  text.addEventListener("input", () => { problems = []; paint(); });
  text.addEventListener("scroll", paint);
  $("#template").addEventListener("change", () => {
    text.value = templates[Number($("#template").value)].text;
    problems = []; paint();
  });
  const submit = async (path, busy, onResult) => {
    $("#start-result").textContent = busy;
    try {
      const result = await api(path, request());
      show(result);
      onResult(result);
    } catch (e) {
      $("#start-result").textContent = `⚠ the board failed: ${e.message} (see its console)`;
    }
  };
  $("#check").addEventListener("click", () => submit("/api/check", "checking…", (result) => {
    $("#start-result").textContent = result.problems.length ? "fix the marked problems" : "config is valid";
  }));
  $("#start").addEventListener("click", () => submit("/api/start", "checking and starting…", (result) => {
    if (result.started) location.hash = runLink(result.started);
    else $("#start-result").textContent = "not started: fix the marked problems";
  }));
  $("#run-name-input").value = `run-${new Date().toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-")}`;
  api("/api/templates").then((list) => {
    templates = list;
    $("#template").replaceChildren(...list.map((t, i) => el("option", { value: i }, t.label)));
    text.value = list[0].text;
    paint();
  });
}

// ---------- routing ----------
function route() {
  timers.forEach(clearInterval);
  timers = [];
  const [path, query] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "/").split("/").filter(Boolean);
  const name = parts[0] || "runs";
  const view = $("#view");
  const template = { runs: "tpl-runs", run: "tpl-run", compare: "tpl-compare", start: "tpl-start" }[name] || "tpl-runs";
  view.replaceChildren($(`#${template}`).content.cloneNode(true));
  view.dataset.view = name;
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
  if (name === "run") viewRun(decodeURIComponent(parts.slice(1).join("/")));
  else if (name === "compare") viewCompare(params);
  else if (name === "start") viewStart();
  else viewRuns();
}
window.addEventListener("hashchange", route);
route();
})();
