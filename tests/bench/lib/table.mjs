// The throughput bench's targets (issue 14) and its one table.

// Each row: what is measured, Relay's figure, the baseline's, the figure
// compared with the target (a ratio or a difference), the target, and
// whether it is met. Figures are medians over the run's rounds.
export const TARGETS = {
  rpsRatio: { min: 0.8, text: '>= 0.80' },
  p99Ratio: { max: 1.5, text: '<= 1.5x' },
  p50DiffMs: { max: 0.1, text: '<= +0.1 ms' },
  cpuUs: { max: 60, text: '<= 60 us' },
  missDiffMs: { max: 0.5, text: '<= +0.5 ms' },
  privateMiB: { max: 16, text: '<= 16 MB' },
  sizeRatio: { max: 1.5, text: '<= 1.5x' },
};

export function verdict(target, value) {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a';
  if (target.min !== undefined && value < target.min) return 'MISSED';
  if (target.max !== undefined && value > target.max) return 'MISSED';
  return 'MET';
}

export const median = (xs) => {
  const s = xs.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const num = (x, digits) => (x === null || x === undefined ? '-' : x.toFixed(digits));
const signed = (x, digits) => (x === null || x === undefined ? '-' : `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`);

// A row: {front, measure, relay, baseline, value (already formatted), target, verdict}.
export function row(front, measure, relay, baseline, value, targetKey, rawValue) {
  const t = TARGETS[targetKey];
  return { front, measure, relay, baseline, value, target: t ? t.text : '', verdict: t ? verdict(t, rawValue) : '' };
}

// The rows of one front's results (see throughput.mjs for their shape).
export function frontRows(r) {
  const out = [];
  for (const part of r.parts ?? []) {
    const { label: name, relay, baseline } = part;
    const ratio = relay.rps !== null && baseline.rps ? relay.rps / baseline.rps : null;
    const p99 = relay.p99Ms !== null && baseline.p99Ms ? relay.p99Ms / baseline.p99Ms : null;
    const p50 = relay.c1p50Ms !== null && baseline.c1p50Ms !== null ? relay.c1p50Ms - baseline.c1p50Ms : null;
    out.push(row(r.front, `${name} req/s (c32)`, num(relay.rps, 0), num(baseline.rps, 0), num(ratio, 2), 'rpsRatio', ratio));
    out.push(row(r.front, `${name} p99 ms (c32)`, num(relay.p99Ms, 2), num(baseline.p99Ms, 2), `${num(p99, 2)}x`, 'p99Ratio', p99));
    out.push(row(r.front, `${name} p50 ms (1 conn)`, num(relay.c1p50Ms, 3), num(baseline.c1p50Ms, 3), signed(p50, 3), 'p50DiffMs', p50));
    out.push(row(r.front, `${name} CPU us/request`, num(relay.cpuUs, 0), num(baseline.cpuUs, 0), num(relay.cpuUs, 0), 'cpuUs', relay.cpuUs));
  }
  if (r.miss) {
    const d = r.miss.relayP50Ms !== null && r.miss.directP50Ms !== null ? r.miss.relayP50Ms - r.miss.directP50Ms : null;
    out.push(row(r.front, 'miss p50 ms (1 conn; baseline: the fake direct)', num(r.miss.relayP50Ms, 3), num(r.miss.directP50Ms, 3),
      signed(d, 3), 'missDiffMs', d));
  }
  for (const [m, when] of [[r.memory, 'after the hits'], [r.memoryAfterAll, 'after stream + 1 MiB hits']]) {
    if (!m) continue;
    out.push(row(r.front, `RSS / PSS MB per worker (largest), ${when}`, `${num(m.rss, 1)} / ${num(m.pss, 1)}`,
      m.baselineRss === null ? '-' : `${num(m.baselineRss, 1)} / ${num(m.baselinePss, 1)}`, '', null, null));
    out.push(row(r.front, `private MB per worker (largest), ${when}`, num(m.private, 1),
      num(m.baselinePrivate, 1), num(m.private, 1), 'privateMiB', m.private));
  }
  for (const s of r.sizes ?? []) {
    const base = r.sizes[0];
    const ratio = s.cpuUs !== null && base.cpuUs ? s.cpuUs / base.cpuUs : null;
    out.push(row(r.front, `hit at ${s.label} entries: CPU us (req/s)`, `${num(s.cpuUs, 0)} (${num(s.rps, 0)})`,
      `${num(base.cpuUs, 0)} (${num(base.rps, 0)}) at ${base.label}`, `${num(ratio, 2)}x`, s === base ? null : 'sizeRatio', ratio));
  }
  return out;
}

// The whole table as Markdown (pasted as is into the README).
export function markdown(rows) {
  const head = ['front', 'measure', 'Relay', 'baseline', 'ratio / diff', 'target', ''];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${[r.front, r.measure, r.relay, r.baseline, r.value, r.target, r.verdict].join(' | ')} |`);
  return lines.join('\n');
}
