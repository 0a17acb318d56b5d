// The dashboard's charts: stacked bars drawn as inline SVG, with HTML axis
// labels and a text readout that doubles as the chart's text alternative. No
// library: one <path> per series, so a day of minutes (1440 bars) is three
// elements, not four thousand.
//
//   const chart = new BarChart(figureElement, TRAFFIC);   // or MONEY
//   chart.update(points, 'minute' | 'day', 'Last hour');
//
// points: the API's series entries ({t, requests, hits, misses, coalesced,
// errors, usd_spent, usd_saved, ...}), oldest first. The figure holds (by
// class): .plot (focusable, pointer and arrow keys move a cursor), svg.bars,
// .y-top, .y-mid, .x-axis and .readout. A kind (TRAFFIC, MONEY) says which
// series are stacked, how values read, and what the readout says.

import { fmtClock, fmtDay, fmtInt, fmtUsd } from './format.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

const num = (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);

// "3 misses", "1 miss"
const count = (v, one, many) => `${fmtInt(v)} ${v === 1 ? one : many}`;

// Requests: hits, coalesced and misses stacked (bottom to top). Class names
// select each series' colour in dashboard.css.
export const TRAFFIC = {
  series: [
    { key: 'hits', one: 'hit', many: 'hits', cls: 'series-hits' },
    { key: 'coalesced', one: 'coalesced', many: 'coalesced', cls: 'series-coalesced' },
    { key: 'misses', one: 'miss', many: 'misses', cls: 'series-misses' },
  ],
  top: (peak) => niceMax(peak, 2), // whole numbers up the axis
  axis: (v) => fmtInt(v),
  // "12 requests: 8 hits, 1 coalesced, 3 misses, 0 errors"
  describe(p) {
    const parts = this.series.map((s) => count(num(p[s.key]), s.one, s.many));
    parts.push(count(num(p.errors), 'error', 'errors'));
    return `${count(num(p.requests), 'request', 'requests')}: ${parts.join(', ')}`;
  },
  totals: ['requests', 'errors'],
  busiest: (p, per) => `busiest ${per} ${fmtInt(num(p.requests))}`,
  peak: (p) => num(p.requests),
};

// Money per day: what was spent upstream and what the cache and shared
// calls saved, stacked, so a bar's height is what the day would have cost
// without Relay (at the [pricing] table's prices; models with no price are
// in neither).
export const MONEY = {
  series: [
    { key: 'usd_spent', name: 'spent', cls: 'series-spent' },
    { key: 'usd_saved', name: 'saved', cls: 'series-saved' },
  ],
  // Money comes in fractions of a cent: only an empty chart's axis is $0.01.
  top: (peak) => niceMax(peak, peak > 0 ? 0 : 0.01),
  axis: (v) => fmtUsd(v),
  // "$0.12 spent, $0.30 saved (without Relay: $0.42)"
  describe(p) {
    const spent = num(p.usd_spent);
    const saved = num(p.usd_saved);
    return `${fmtUsd(spent)} spent, ${fmtUsd(saved)} saved (without Relay: ${fmtUsd(spent + saved)})`;
  },
  totals: [],
  busiest: (p, per) => `costliest ${per} ${fmtUsd(num(p.usd_spent) + num(p.usd_saved))} without Relay`,
  peak: (p) => num(p.usd_spent) + num(p.usd_saved),
};

// The smallest 1, 2, 4, 6, 8 or 10 times a power of ten that is >= v (at
// least floor), so that the axis and its middle line read in round numbers.
function niceMax(v, floor) {
  if (v <= floor) return floor;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 6, 8]) if (m * p >= v) return m * p;
  return 10 * p;
}

function svgEl(name, attrs = {}) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

export class BarChart {
  constructor(figure, kind) {
    this.figure = figure;
    this.kind = kind;
    this.plot = figure.querySelector('.plot');
    this.svg = figure.querySelector('svg.bars');
    this.yTop = figure.querySelector('.y-top');
    this.yMid = figure.querySelector('.y-mid');
    this.xAxis = figure.querySelector('.x-axis');
    this.readout = figure.querySelector('.readout');
    this.points = [];
    this.bucket = 'minute';
    this.title = '';
    this.cursor = null; // index of the highlighted bar, or null

    this.plot.addEventListener('pointermove', (e) => this.pointAt(e.clientX));
    this.plot.addEventListener('pointerdown', (e) => this.pointAt(e.clientX));
    this.plot.addEventListener('pointerleave', () => {
      if (document.activeElement !== this.plot) this.setCursor(null);
    });
    this.plot.addEventListener('blur', () => this.setCursor(null));
    this.plot.addEventListener('keydown', (e) => this.onKey(e));
  }

  // Draws points (oldest first) of the given bucket ('minute' or 'day');
  // title names the period in the readout ("Last hour").
  update(points, bucket, title) {
    const same = bucket === this.bucket && points.length === this.points.length;
    this.points = Array.isArray(points) ? points : [];
    this.bucket = bucket;
    this.title = title;
    if (!same) this.cursor = null; // another period: the old index means nothing
    this.draw();
  }

  // Empties the chart (on log out).
  clear() {
    this.update([], this.bucket, '');
  }

  draw() {
    const pts = this.points;
    const n = Math.max(pts.length, 1);
    const series = this.kind.series;
    let peak = 0;
    for (const p of pts) peak = Math.max(peak, series.reduce((s, x) => s + num(p[x.key]), 0));
    const top = this.kind.top(peak);
    this.top = top;

    // viewBox units: one per bar across, one per request (or USD) up; the SVG is
    // stretched to the plot's box (preserveAspectRatio none), so text lives
    // in HTML around it and lines keep their width (non-scaling-stroke).
    const svg = this.svg;
    svg.replaceChildren();
    svg.setAttribute('viewBox', `0 0 ${n} ${top}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    for (const f of [0.5, 1]) {
      const y = top - top * f;
      svg.append(svgEl('line', { x1: 0, x2: n, y1: y, y2: y, class: 'grid', 'vector-effect': 'non-scaling-stroke' }));
    }
    // Thin bars touch; wider ones get a gap.
    const gap = n > 120 ? 0 : 0.15;
    const w = 1 - 2 * gap;
    const base = new Array(pts.length).fill(0);
    for (const s of series) {
      let d = '';
      pts.forEach((p, i) => {
        const v = num(p[s.key]);
        if (!v) return;
        const y = top - base[i] - v;
        d += `M${i + gap} ${y}h${w}v${v}h${-w}z`;
        base[i] += v;
      });
      svg.append(svgEl('path', { d, class: s.cls }));
    }
    this.cursorEl = svgEl('rect', { class: 'cursor', x: 0, y: 0, width: 1, height: top, visibility: 'hidden' });
    svg.append(this.cursorEl);
    svg.append(svgEl('line', { x1: 0, x2: n, y1: top, y2: top, class: 'axis', 'vector-effect': 'non-scaling-stroke' }));

    this.yTop.textContent = this.kind.axis(top);
    this.yMid.textContent = this.kind.axis(top / 2);
    this.drawXAxis();
    this.setCursor(this.cursor);
  }

  timeLabel(t, long = false) {
    return this.bucket === 'day' ? fmtDay(t, { long }) : fmtClock(t);
  }

  // Five labels under the bars: the first, quarters and last bucket (the
  // inner ones are hidden on narrow screens by the stylesheet).
  drawXAxis() {
    const pts = this.points;
    const labels = [];
    if (pts.length) {
      for (const f of [0, 0.25, 0.5, 0.75, 1]) {
        const i = Math.round(f * (pts.length - 1));
        const span = document.createElement('span');
        span.textContent = this.timeLabel(pts[i].t);
        if (f === 0.25 || f === 0.75) span.className = 'minor';
        labels.push(span);
      }
    }
    this.xAxis.replaceChildren(...labels);
  }

  pointAt(clientX) {
    if (!this.points.length) return;
    const box = this.svg.getBoundingClientRect();
    if (box.width <= 0) return;
    const i = Math.floor(((clientX - box.left) / box.width) * this.points.length);
    this.setCursor(Math.min(this.points.length - 1, Math.max(0, i)));
  }

  onKey(e) {
    const n = this.points.length;
    if (!n) return;
    const step = e.shiftKey ? 10 : 1;
    let i = this.cursor ?? n - 1;
    switch (e.key) {
      case 'ArrowLeft': i = this.cursor === null ? n - 1 : i - step; break;
      case 'ArrowRight': i = this.cursor === null ? n - 1 : i + step; break;
      case 'Home': i = 0; break;
      case 'End': i = n - 1; break;
      case 'Escape': this.setCursor(null); return;
      default: return;
    }
    e.preventDefault();
    this.setCursor(Math.min(n - 1, Math.max(0, i)));
  }

  // Highlights bar i (null: none) and says what it holds; with none, the
  // readout sums up the whole period.
  setCursor(i) {
    this.cursor = i !== null && i < this.points.length ? i : null;
    if (this.cursor === null) {
      this.cursorEl.setAttribute('visibility', 'hidden');
      this.readout.textContent = this.summary();
      return;
    }
    this.cursorEl.setAttribute('x', String(this.cursor));
    this.cursorEl.setAttribute('visibility', 'visible');
    const p = this.points[this.cursor];
    const when = this.bucket === 'day' ? this.timeLabel(p.t, true) : `${this.timeLabel(p.t)}`;
    this.readout.textContent = `${when}: ${this.kind.describe(p)}`;
  }

  // The whole period: its totals and its busiest bucket.
  summary() {
    if (!this.points.length) return 'No data yet.';
    const kind = this.kind;
    const total = {};
    for (const k of [...kind.totals, ...kind.series.map((s) => s.key)]) total[k] = 0;
    let busiest = this.points[0];
    for (const p of this.points) {
      for (const k of Object.keys(total)) total[k] += num(p[k]);
      if (kind.peak(p) > kind.peak(busiest)) busiest = p;
    }
    const per = this.bucket === 'day' ? 'day' : 'minute';
    return `${this.title}: ${kind.describe(total)}; ${kind.busiest(busiest, per)}. ` +
      'Point at the chart, or focus it and use the arrow keys, for one ' + per + '.';
  }
}
