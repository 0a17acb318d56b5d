// Benchmark: the cost of a fuzzy lookup (issue 16) as the store grows.
// Not part of `make test`; run by tests/bench/run.sh (make bench).
//
// Runs BUILD/bench-fuzzy (tests/bench/fuzzy.c), which grows a store of its
// own to each size, every entry with its fuzzy rows, and at each size
// looks up near-variants of stored entries as engine/fuzzy_serve.c does:
// index records read (bounded at 32 by design, whatever the size), docs
// read, whether the variant's entry came first, and microseconds per
// lookup. The claim checked: records read do not grow with the store
// (printed MET or MISSED; the exit status is 1 only when the program
// failed). The times are printed for the ratio between sizes measured in
// the same run, not as a target (a shared machine).
//
//   node tests/bench/fuzzy_lookup.mjs [--max=100000]
//
// --max=1000000 adds the 10^6 step (the fill then takes minutes: every
// entry is two transactions and 17 index records, each log record
// encrypted by Berkeley DB). Results in tests/out/bench-fuzzy.json.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const maxArg = process.argv.slice(2).find((a) => a.startsWith('--max='));
const max = maxArg ? Number(maxArg.slice('--max='.length)) : 100000;
const sizes = [10000, 100000, 1000000].filter((n) => n <= max);

const build = path.resolve(process.env.RELAY_BUILD || 'build');
const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'relay-bench-fuzzy-')), 'run');
let out;
try {
  out = execFileSync(path.join(build, 'bench-fuzzy'), [dir, ...sizes.map(String)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
} catch (err) {
  console.error(`bench-fuzzy failed: ${err.message}`);
  process.exit(1);
} finally {
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
}
const rows = out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
for (const r of rows) {
  console.log(`${String(r.entries).padStart(8)} entries: ${r.records_read_mean.toFixed(1)} index records read ` +
    `(max ${r.records_read_max}), ${r.docs_read_mean.toFixed(2)} docs, found first ${(r.found_first * 100).toFixed(1)} %, ` +
    `${r.us_p50.toFixed(0)} us p50, ${r.us_p99.toFixed(0)} us p99`);
}
const flat = rows.length > 0 && rows.every((r) => r.records_read_max <= 32);
const first = rows[0];
const last = rows[rows.length - 1];
const ratio = first && last ? last.us_p50 / first.us_p50 : NaN;
console.log(`records read bounded (<= 32 at every size): ${flat ? 'MET' : 'MISSED'}; ` +
  `p50 time at ${last?.entries} vs ${first?.entries} entries: x${ratio.toFixed(2)}`);
fs.mkdirSync('tests/out', { recursive: true });
fs.writeFileSync('tests/out/bench-fuzzy.json', JSON.stringify({ rows, flat, ratio }, null, 2));
process.exit(rows.length === sizes.length ? 0 : 1);
