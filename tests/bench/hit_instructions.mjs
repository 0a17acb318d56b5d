// Benchmark: how many instructions does relay.fcgi spend on one cache hit?
// Not part of `make test`; run by tests/bench/run.sh (make bench).
//
// Counted by callgrind (valgrind --tool=callgrind), which counts
// instructions rather than time: the figure is the same on a busy machine
// and a quiet one, so a change on the hit path can be compared before and
// after to a fraction of a percent (wall-clock benchmarks on this 2-core
// machine vary by more than the effect of most such changes).
//
// relay.fcgi runs as one process under spawn-fcgi (the FastCGI socket on
// fd 0, one request at a time), in front of the fake upstream; this script
// talks FastCGI to it directly (no web server: its cost is not Relay's).
// Two runs: one miss then 0 hits, and one miss then N hits; the difference
// over N is the cost of a hit, start-up and the miss cancelling out (both
// runs also pay Relay's once-a-second maintenance while they last; the
// longer run pays a little more of it, so the figure errs high by a few
// hundred instructions).
//
//   node tests/bench/hit_instructions.mjs [--hits 200] [--build DIR] [--answer-bytes N]
//
// --answer-bytes N: the fake answers the miss with N bytes of content (the
// throughput bench's 1 MiB hit is --answer-bytes 1048000), to count what a
// large hit costs; by default its usual short answer. --profile FILE keeps
// the callgrind output of the run with hits (for callgrind_annotate).
//
// It also reads the store's own counts (relay-admin --json stats:
// store.transactions, store.log_records, every process together) after the
// miss and after the hits, and prints per hit: transactions begun, log
// records written, and "write transactions per hit", at most half the log
// records (a write transaction writes at least a change and a commit
// record; a read-only one writes none). Relay's maintenance, about once a
// second, writes a few records of its own (checkpoint, the flush of the
// hits' table): they are included, so the figure errs high.
//
// Writes tests/out/bench-hit-instructions.json. Exit status 1 when a
// request was not answered as expected (the miss, then HITs).

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startFakeUpstream } from '../fake/upstream.mjs';
import { fcgiRequest } from '../e2e/fcgiclient.mjs';
import { BUILD, OUT } from '../e2e/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const HITS = Number(opt('hits', 200));
const build = path.resolve(opt('build', BUILD));
const ANSWER_BYTES = Number(opt('answer-bytes', 0));
const PROFILE = opt('profile', null);

const BODY = JSON.stringify({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: 'Say hello to the benchmark' }] });

// ---- one request (FastCGI, one request per connection) -------------------------

// Resolves with the answer's X-Cache; rejects when nothing answered (valgrind
// starts slowly: the caller retries).
async function hitRequest(socket) {
  const req = fcgiRequest(socket, {
    REQUEST_METHOD: 'POST', REQUEST_URI: '/v1/chat/completions', SCRIPT_NAME: '', QUERY_STRING: '',
    CONTENT_TYPE: 'application/json', CONTENT_LENGTH: String(Buffer.byteLength(BODY)),
    HTTP_AUTHORIZATION: 'Bearer sk-bench-aaaaaaaaaaaaaaaaaaaaaaaa', SERVER_PROTOCOL: 'HTTP/1.1',
  });
  req.send(BODY);
  req.end();
  const { response, ended } = await req.done;
  if (!ended || !response) throw new Error(`no answer on ${socket}`);
  return response.headers['x-cache'] ?? '?';
}

// ---- one run -------------------------------------------------------------------

// The ids of the SysV shared memory segments nobody is attached to.
function shmIds() {
  return fs.readFileSync('/proc/sysvipc/shm', 'utf8').split('\n').slice(1)
    .map((l) => l.trim().split(/\s+/)).filter((f) => f.length > 7 && f[6] === '0').map((f) => Number(f[1]));
}

async function run(fake, hits) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-hitbench-'));
  const sock = path.join(dir, 'relay.sock');
  const ini = path.join(dir, 'relay.ini');
  fs.writeFileSync(ini, [
    '[fcgi]', `listen = ${sock}`, 'workers = 1', 'threads = 1',
    '[store]', `home = ${dir}/store`, `key_file = ${dir}/relay.key`,
    '[upstream.openai]', 'type = openai', `base_url = ${fake.url}`,
    '[log]', 'level = error', '',
  ].join('\n'));
  const out = path.join(dir, 'callgrind.out');
  const before = new Set(shmIds());
  const child = spawn('spawn-fcgi', ['-n', '-s', sock, '--', '/usr/bin/valgrind', '--tool=callgrind',
    `--callgrind-out-file=${out}`, path.join(build, 'relay.fcgi')], { env: { ...process.env, RELAY_INI: ini }, stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'relay.log'), 'w')] });
  for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
  const seen = [];
  const counts = [];
  if (ANSWER_BYTES) fake.enqueue({ content: 'x'.repeat(ANSWER_BYTES) });
  for (let i = 0; i <= hits; i++) {
    if (i === 1) counts.push(storeCounts(ini));
    for (let attempt = 0; ; attempt++) {
      try {
        seen.push(await hitRequest(sock));
        break;
      } catch (err) {
        if (attempt > 50) throw new Error(`${err.message}: ${fs.readFileSync(path.join(dir, 'relay.log'), 'utf8').slice(-2000)}`); // valgrind starts slowly
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  counts.push(storeCounts(ini));
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  const total = Number(/^summary: (\d+)/m.exec(fs.readFileSync(out, 'utf8'))?.[1]);
  if (PROFILE && hits > 0) fs.copyFileSync(out, PROFILE);
  // The store's SysV segments outlive it: remove the ones this run made.
  for (const id of shmIds()) {
    if (!before.has(id)) {
      try {
        execFileSync('ipcrm', ['-m', String(id)], { stdio: 'ignore' });
      } catch {
        /* gone */
      }
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return { total, seen, counts };
}

// The store's counts of transactions begun and log records written.
function storeCounts(ini) {
  const out = execFileSync(path.join(build, 'relay-admin'), ['-c', ini, '--json', 'stats'], { encoding: 'utf8' });
  const j = JSON.parse(out);
  return { transactions: j['store.transactions'], log_records: j['store.log_records'] };
}

const fake = await startFakeUpstream();
let status = 0;
try {
  const base = await run(fake, 0);
  const more = await run(fake, HITS);
  const want = ['MISS', ...Array(HITS).fill('HIT')];
  if (JSON.stringify(more.seen) !== JSON.stringify(want) || base.seen[0] !== 'MISS') {
    console.log(`not a valid measurement: answers ${[...new Set(more.seen)].join(', ')}`);
    status = 1;
  }
  const perHit = Math.round((more.total - base.total) / HITS);
  const size = ANSWER_BYTES ? `, answers of ${ANSWER_BYTES} bytes` : '';
  console.log(`instructions per cache hit inside relay.fcgi: ${perHit} (callgrind, ${HITS} hits${size}; ${build})`);
  const [c0, c1] = more.counts;
  const txPerHit = (c1.transactions - c0.transactions) / HITS;
  const recPerHit = (c1.log_records - c0.log_records) / HITS;
  const writesPerHit = recPerHit / 2;
  console.log(`store per hit: ${txPerHit.toFixed(3)} transactions begun, ${recPerHit.toFixed(3)} log records`);
  console.log(`write transactions per hit: ${writesPerHit.toFixed(3)} at most (maintenance included)`);
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'bench-hit-instructions.json'),
    `${JSON.stringify({
    hits: HITS, answer_bytes: ANSWER_BYTES || null, build, base: base.total, with_hits: more.total, per_hit: perHit,
    transactions_per_hit: txPerHit, log_records_per_hit: recPerHit, write_transactions_per_hit_max: writesPerHit,
  }, null, 2)}\n`);
} finally {
  await fake.close();
}
process.exit(status);
