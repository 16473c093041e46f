// A small line chart on a canvas: raw series drawn faint, smoothed (TensorBoard's debiased EMA) drawn solid,
// axes with round ticks, a legend, and the values nearest the pointer. No library.
(() => {
"use strict";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function emaSmooth(values, weight) {
  // TensorBoard's smoothing: EMA debiased by 1 - weight^n; missing values pass through unaveraged.
  const out = [];
  let last = 0, count = 0;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) { out.push(null); continue; }
    last = last * weight + (1 - weight) * v;
    count += 1;
    out.push(weight < 1 ? last / (1 - Math.pow(weight, count)) : v);
  }
  return out;
}

function niceTicks(lo, hi, count) {
  // Round tick values between lo and hi, and their step.
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9; i++) ticks.push(i * step);
  return { ticks, step };
}

function formatTick(t, step) {
  // As many digits as the tick step needs, so that neighbouring ticks never print alike.
  if (Math.abs(t) < step * 1e-6) return "0";
  const a = Math.abs(t), places = -Math.floor(Math.log10(step));
  if (a < 1e-3 || a >= 1e6) {
    const digits = Math.min(Math.max(Math.floor(Math.log10(a)) + places, 0), 6);
    return t.toExponential(digits);
  }
  return t.toFixed(Math.min(Math.max(places, 0), 8));
}

function formatNumber(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

class LineChart {
  // series: [{label, points: [[x, y], ...]}]; call update() after changing them.
  constructor(canvas, { title = "", smoothing = 0.6, xLabel = "step" } = {}) {
    this.canvas = canvas;
    this.title = title;
    this.smoothing = smoothing;
    this.xLabel = xLabel;
    this.series = [];
    this.hover = null;
    canvas.addEventListener("mousemove", (e) => { this.hover = e.offsetX; this.draw(); });
    canvas.addEventListener("mouseleave", () => { this.hover = null; this.draw(); });
  }

  setSeries(series) { this.series = series; this.update(); }

  update() {
    const total = this.series.reduce((n, s) => n + s.points.length, 0);
    this.canvas.dataset.points = String(total);
    this.draw();
  }

  bounds() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of this.series) {
      for (const [x, y] of s.points) {
        if (y === null || !Number.isFinite(y)) continue;
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
    if (x0 === Infinity) return null;
    const pad = (y1 - y0) * 0.05 || Math.abs(y0) * 0.05 || 1;
    return { x0, x1: x1 > x0 ? x1 : x0 + 1, y0: y0 - pad, y1: y1 + pad };
  }

  draw() {
    const c = this.canvas, ratio = window.devicePixelRatio || 1;
    const w = c.clientWidth || 480, h = c.clientHeight || 260;
    if (c.width !== w * ratio) { c.width = w * ratio; c.height = h * ratio; }
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    g.font = "12px system-ui, sans-serif";
    g.fillStyle = "#222";
    g.fillText(this.title, 8, 15);
    const box = { left: 58, right: w - 12, top: 26, bottom: h - 30 };
    const b = this.bounds();
    if (!b) { g.fillStyle = "#888"; g.fillText("no data yet", w / 2 - 30, h / 2); return; }
    const sx = (x) => box.left + ((x - b.x0) / (b.x1 - b.x0)) * (box.right - box.left);
    const sy = (y) => box.bottom - ((y - b.y0) / (b.y1 - b.y0)) * (box.bottom - box.top);
    this.drawAxes(g, b, box, sx, sy);
    this.series.forEach((s, i) => this.drawSeries(g, s, COLORS[i % COLORS.length], sx, sy));
    this.drawLegend(g, box);
    if (this.hover !== null) this.drawHover(g, b, box, sx, sy);
  }

  drawAxes(g, b, box, sx, sy) {
    g.strokeStyle = "#e4e4e4"; g.fillStyle = "#555"; g.lineWidth = 1;
    const ys = niceTicks(b.y0, b.y1, 5), xs = niceTicks(b.x0, b.x1, 6);
    for (const t of ys.ticks) {
      g.beginPath(); g.moveTo(box.left, sy(t)); g.lineTo(box.right, sy(t)); g.stroke();
      g.fillText(formatTick(t, ys.step), 4, sy(t) + 4);
    }
    for (const t of xs.ticks) {
      g.beginPath(); g.moveTo(sx(t), box.top); g.lineTo(sx(t), box.bottom); g.stroke();
      g.fillText(formatTick(t, xs.step), sx(t) - 8, box.bottom + 14);
    }
    g.fillText(this.xLabel, box.right - 26, box.bottom + 27);
    g.strokeStyle = "#999";
    g.strokeRect(box.left, box.top, box.right - box.left, box.bottom - box.top);
  }

  drawSeries(g, s, color, sx, sy) {
    const xs = s.points.map((p) => p[0]);
    const raw = s.points.map((p) => p[1]);
    const smooth = this.smoothing > 0 ? emaSmooth(raw, this.smoothing) : raw;
    const line = (values, alpha, width) => {
      g.globalAlpha = alpha; g.strokeStyle = color; g.lineWidth = width; g.beginPath();
      let open = false;
      values.forEach((v, i) => {
        if (v === null || !Number.isFinite(v)) { open = false; return; }
        if (open) g.lineTo(sx(xs[i]), sy(v)); else g.moveTo(sx(xs[i]), sy(v));
        open = true;
      });
      g.stroke();
      if (values.length === 1 && values[0] !== null) {
        g.fillStyle = color; g.fillRect(sx(xs[0]) - 2, sy(values[0]) - 2, 4, 4);
      }
      g.globalAlpha = 1;
    };
    if (this.smoothing > 0) line(raw, 0.25, 1);
    line(smooth, 1, 1.8);
  }

  drawLegend(g, box) {
    let x = box.right;
    for (let i = this.series.length - 1; i >= 0; i--) {
      const label = this.series[i].label;
      x -= g.measureText(label).width + 22;
      g.fillStyle = COLORS[i % COLORS.length]; g.fillRect(x, 8, 10, 10);
      g.fillStyle = "#222"; g.fillText(label, x + 14, 17);
    }
  }

  drawHover(g, b, box, sx, sy) {
    if (this.hover < box.left || this.hover > box.right) return;
    const x = b.x0 + ((this.hover - box.left) / (box.right - box.left)) * (b.x1 - b.x0);
    g.strokeStyle = "#aaa"; g.beginPath(); g.moveTo(this.hover, box.top); g.lineTo(this.hover, box.bottom); g.stroke();
    const lines = [];
    this.series.forEach((s) => {
      let best = null;
      for (const p of s.points) if (best === null || Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
      if (best) lines.push(`${s.label} @${best[0]}: ${formatNumber(best[1])}`);
    });
    const width = Math.max(...lines.map((l) => g.measureText(l).width), 0) + 10;
    const left = Math.min(this.hover + 8, box.right - width);
    g.fillStyle = "rgba(255,255,255,0.92)"; g.fillRect(left, box.top + 4, width, lines.length * 15 + 6);
    g.fillStyle = "#222";
    lines.forEach((l, i) => g.fillText(l, left + 5, box.top + 18 + i * 15));
  }
}

window.TSChart = { LineChart, emaSmooth, formatNumber };
})();
