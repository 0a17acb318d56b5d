// Benchmark: what a budget reservation costs in a group of hosts (issue
// 18). Not part of `make test`; run by tests/bench/run.sh (make bench).
//
// Runs BUILD/bench-cluster (tests/bench/cluster.c): three sites of one
// replicated group on loopback in one process, ack policy quorum, and
// times reserve + settle pairs on the master and from a replica (each one
// thread, then THREADS at once), a token read on a replica, and the same pairs on
// a store that is not replicated (one host, for the ratio). Loopback adds no
// network delay: these are the software's costs, to which a real network
// adds one round trip per reservation and per settlement. Nothing is
// asserted on time (a shared machine); the exit status is 1 only when a
// call failed. Results in tests/out/bench-cluster.json.
//
//   node tests/bench/cluster_reserve.mjs [--count=2000] [--threads=8]

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const arg = (name, dflt) => {
  const a = process.argv.slice(2).find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.slice(name.length + 3)) : dflt;
};
const count = arg('count', 2000);
const threads = arg('threads', 8);
const build = path.resolve(process.env.RELAY_BUILD || 'build');
let out;
try {
  out = execFileSync(path.join(build, 'bench-cluster'), [String(count), String(threads)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
} catch (err) {
  console.error(`bench-cluster failed: ${err.message}`);
  process.exit(1);
}
const rows = out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
for (const r of rows) {
  if (r.case === 'read') {
    console.log(`token read on a replica (local): ${r.read_p50} us p50, ${r.read_p99} us p99`);
    continue;
  }
  console.log(`${r.case.padEnd(9)} x${String(r.threads).padEnd(2)} reserve ${r.reserve_p50} / ${r.reserve_p90} / ` +
    `${r.reserve_p99} us (p50 / p90 / p99), settle ${r.settle_p50} us p50, ${r.pairs_per_s} pairs/s`);
}
fs.mkdirSync('tests/out', { recursive: true });
fs.writeFileSync('tests/out/bench-cluster.json', JSON.stringify({ count, threads, rows }, null, 2));
process.exit(rows.length === 6 && rows.every((r) => !r.failed) ? 0 : 1);
