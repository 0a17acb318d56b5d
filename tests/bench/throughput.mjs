// Benchmark: Relay's cache hit against the smallest FastCGI responder, behind
// the same front (issue 14). Not part of `make test`; run by
// tests/bench/run.sh (make bench).
//
// For each front (Caddy, nginx, Apache mod_proxy_fcgi), in a child process
// of its own (the harness picks its front once, from RELAY_FRONT):
//   - the end-to-end environment (tests/e2e/harness.mjs: fake upstream,
//     Relay's pool with the shipped [fcgi] defaults, 4 workers x 32
//     threads, and the front serving deploy/'s config);
//   - per kind of hit (hit: a 188-byte temperature-0 chat request, its
//     634-byte JSON answer; stream: the same with stream:true, an SSE answer
//     of 20 events; 1MiB: an answer of 1 MiB), the answer is stored through
//     Relay, then captured over FastCGI straight from Relay's socket, and
//     bench-baseline (tests/bench/baseline.c) replays those very bytes with
//     as many one-thread processes as Relay has workers, behind a second
//     instance of the same front config (only the socket differs);
//   - warm-up, then interleaved rounds (Relay, baseline, Relay, ...) of
//     `wrk -t2 -c32` and of `wrk -t1 -c1` (the one-connection p50); Relay's
//     CPU per request is the utime+stime of its pool's processes (/proc)
//     over the requests of its -c32 rounds;
//   - a miss: unique bodies at one connection, through Relay (every request
//     goes to the fake) against the same requests sent to the fake directly;
//   - RSS, PSS and private memory per worker (/proc/PID/smaps_rollup), the
//     largest of the pool's workers, after the runs;
//   - (one front only, --sizes-front, default the first) the hit's CPU and
//     req/s with the store grown by bench-fill (tests/bench/fill.c) to
//     10^4, 10^5 and 10^6 entries; that front's store caps are raised so
//     nothing is evicted (the caps only act when an entry is stored).
// Then one table of medians, with the targets of issue 14 and MET/MISSED,
// and everything in tests/out/bench-throughput.json.
//
//   node tests/bench/throughput.mjs [--front caddy,nginx,apache] [--only hit,stream,1mib,miss,sizes]
//        [--rounds 3] [--seconds 5] [--short-seconds 3] [--c1-seconds 2] [--sizes 10000,100000,1000000]
//        [--sizes-front caddy]
//   --seconds: each -c32 round of the plain hit and of the sizes; --short-seconds: of the stream
//   and 1 MiB hits; --c1-seconds: each one-connection round. With the defaults the three fronts
//   take about 10 minutes on the 2-core dev machine (the 10^6-entry fill ~45 s of it).
//   (or tests/bench/run.sh build throughput -- --front caddy --only hit)
//
// Exit status 1 when a request was not answered as expected (a hit that
// was not a HIT or reached the upstream, a wrk error or non-2xx answer, a
// miss that did not reach the upstream), 2 when an environment did not
// start. The figures themselves never fail the run.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { frontRows, markdown } from './lib/table.mjs';

const SELF = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SELF), '..', '..');
const OUT = path.join(REPO, 'tests', 'out');

// --front names, and the harness's (tests/e2e/fronts.mjs).
const FRONTS = { caddy: 'caddy', nginx: 'nginx', apache: 'apache-proxy-fcgi' };
const PARTS = ['hit', 'stream', '1mib', 'miss', 'sizes'];

function options(argv) {
  const get = (name, dflt) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  const list = (name, dflt) => get(name, dflt).split(',').map((s) => s.trim()).filter(Boolean);
  const o = {
    fronts: list('front', Object.keys(FRONTS).join(',')),
    only: list('only', PARTS.join(',')),
    rounds: Number(get('rounds', 3)),
    seconds: Number(get('seconds', 5)),
    shortSeconds: Number(get('short-seconds', 3)),
    c1Seconds: Number(get('c1-seconds', 2)),
    sizes: list('sizes', '10000,100000,1000000').map(Number),
    child: get('child', null),
    result: get('result', null),
  };
  o.sizesFront = get('sizes-front', o.fronts[0]);
  for (const f of o.fronts) if (!FRONTS[f]) throw new Error(`--front ${f}: not one of ${Object.keys(FRONTS).join(', ')}`);
  for (const p of o.only) if (!PARTS.includes(p)) throw new Error(`--only ${p}: not one of ${PARTS.join(', ')}`);
  return o;
}

// ---- the parent: one child per front, then the table --------------------------

function runChild(front, argv) {
  const result = path.join(os.tmpdir(), `relay-bench-${process.pid}-${front}.json`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SELF, ...argv, '--child', front, '--result', result], {
      stdio: 'inherit',
      env: { ...process.env, RELAY_FRONT: FRONTS[front] },
    });
    child.on('exit', (code) => {
      let r = null;
      try {
        r = JSON.parse(fs.readFileSync(result, 'utf8'));
        fs.rmSync(result, { force: true });
      } catch {
        /* the child failed before writing it */
      }
      resolve({ code: code ?? 2, result: r ?? { front, problems: [`the run behind ${front} ended with status ${code} before its results`] } });
    });
  });
}

async function parent(o, argv) {
  const started = new Date();
  const results = [];
  let status = 0;
  for (const front of o.fronts) {
    console.log(`# throughput behind ${front}`);
    const { code, result } = await runChild(front, argv);
    results.push(result);
    status = Math.max(status, code);
  }
  const rows = results.flatMap(frontRows);
  const table = markdown(rows);
  const commit = gitHead();
  console.log(`\nthroughput: medians of ${o.rounds} interleaved rounds, wrk -t2 -c32 ${o.seconds} s `
    + `(stream, 1 MiB: ${o.shortSeconds} s) and -t1 -c1 ${o.c1Seconds} s; ${os.cpus().length} cores; `
    + `${started.toISOString()}${commit ? `; commit ${commit}` : ''}\n`);
  console.log(table);
  const problems = results.flatMap((r) => (r.problems ?? []).map((p) => `${r.front}: ${p}`));
  for (const p of problems) console.log(`PROBLEM: ${p}`);
  fs.mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, 'bench-throughput.json');
  const opts = { ...o, child: undefined, result: undefined };
  const doc = { benchmark: 'throughput', date: started.toISOString(), commit, cores: os.cpus().length, options: opts, results, rows, problems };
  fs.writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`written: ${path.relative(process.cwd(), file)}`);
  return problems.length && !status ? 1 : status;
}

// The commit measured (the build is assumed to be of it), or null.
function gitHead() {
  try {
    return execFileSync('git', ['-C', REPO, 'rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

// ---- the child: one front -------------------------------------------------------

async function child(o) {
  const { measureFront } = await import('./lib/front_run.mjs');
  const front = o.child;
  let result;
  let code = 0;
  try {
    result = await measureFront(front, o);
    if (result.problems.length) code = 1;
  } catch (err) {
    console.error(`throughput behind ${front}: ${err.stack ?? err.message}`);
    result = { front, problems: [err.message.split('\n')[0]] };
    code = 2;
  }
  fs.writeFileSync(o.result, JSON.stringify(result));
  return code;
}

const argv = process.argv.slice(2);
const o = options(argv);
// The parent passes its own arguments on to each child, with --child and
// --result added.
const code = o.child ? await child(o) : await parent(o, argv);
process.exit(code);
