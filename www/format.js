// Number, money, size and time formatting for the dashboard. Every function
// takes what the stats API gives (a number, or null/undefined where a value
// is not known yet) and returns display text; unknown values read "—".
//
// Numbers use en-US grouping, to match the page's language; times use the
// browser's locale and time zone, except days, which the API counts in UTC,
// and a token's dates, in UTC as relay-admin shows them.

const DASH = '—';
const known = (v) => typeof v === 'number' && Number.isFinite(v);

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const compactFmt = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
const pctFmt = new Intl.NumberFormat('en-US', { style: 'percent', maximumFractionDigits: 1 });

// 12,345
export function fmtInt(v) {
  return known(v) ? intFmt.format(v) : DASH;
}

// 12,345 below a million, then 1.2M, 3.4B: for tight spaces (cards, table
// cells). Callers that shorten a number put the full one in a title.
export function fmtCount(v) {
  if (!known(v)) return DASH;
  return Math.abs(v) < 1e6 ? intFmt.format(v) : compactFmt.format(v);
}

// A ratio 0..1 as a percentage: 0.5 -> "50%", 1/3 -> "33.3%".
export function fmtPct(v) {
  return known(v) ? pctFmt.format(v) : DASH;
}

// US dollars. Cents as usual; amounts under a cent keep enough digits to
// stay visible ($0.000135), since a cache saves many small amounts.
export function fmtUsd(v) {
  if (!known(v)) return DASH;
  const a = Math.abs(v);
  let digits = 2;
  if (a > 0 && a < 0.01) digits = Math.min(8, 1 - Math.floor(Math.log10(a)) + 1);
  return new Intl.NumberFormat('en-US', {
    style: 'currency',
    currency: 'USD',
    minimumFractionDigits: 2,
    maximumFractionDigits: digits,
  }).format(v);
}

// Bytes in binary units: 0 B, 512 B, 1.5 KiB, 12.3 MiB, 2 GiB.
export function fmtBytes(v) {
  if (!known(v)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let x = v;
  let u = 0;
  while (Math.abs(x) >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  const text = u === 0 ? String(Math.round(x)) : x.toFixed(x < 10 ? 1 : 0).replace(/\.0$/, '');
  return `${text} ${units[u]}`;
}

// A duration in milliseconds: 850 ms, 1.2 s, 45 s, 3 min 4 s, 2 h 5 min.
export function fmtMs(v) {
  if (!known(v)) return DASH;
  if (v < 1000) return `${Math.round(v)} ms`;
  const s = v / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m - h * 60} min`;
}

const clockFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const clockSecFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
const dayLongFmt = new Intl.DateTimeFormat(undefined, {
  weekday: 'short', year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC',
});

// Unix seconds as a local clock time: "14:05" (seconds: "14:05:09").
export function fmtClock(t, { seconds = false } = {}) {
  if (!known(t)) return DASH;
  return (seconds ? clockSecFmt : clockFmt).format(new Date(t * 1000));
}

// Unix seconds of 00:00 UTC as that day: "Mar 3" (long: "Mon, Mar 3, 2026").
export function fmtDay(t, { long = false } = {}) {
  if (!known(t)) return DASH;
  return (long ? dayLongFmt : dayFmt).format(new Date(t * 1000));
}

// Unix seconds as a UTC date and time, as relay-admin token list shows
// them: "2026-12-31 18:00 UTC".
export function fmtUtc(t) {
  if (!known(t)) return DASH;
  return `${new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

// The sum of the numeric arguments, or null when none is known.
export function sum(...values) {
  let total = null;
  for (const v of values) if (known(v)) total = (total ?? 0) + v;
  return total;
}

export { DASH, known };
