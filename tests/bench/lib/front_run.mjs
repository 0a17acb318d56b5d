// The throughput bench behind one front (RELAY_FRONT, read by the harness
// when this module is first imported): see ../throughput.mjs for what is
// measured and why. measureFront(front, options) resolves to
// {front, workers, parts: [{name, relay, baseline, ...}], miss, memory,
// sizes, problems}; a request not answered as expected is a problem.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BUILD, KEY_A, OUT, chatBody, childPids, startRelay } from '../../e2e/harness.mjs';
import { answerHead, captureAnswer, startFrontOn, startResponder } from './baseline.mjs';
import { cpuSeconds, memoryMiB } from './procs.mjs';
import { median } from './table.mjs';
import { runWrk, wrkFailures } from './wrk.mjs';

const URI = '/v1/chat/completions';
const HEADERS = { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' };
const WARM_SECONDS = 2;
const MISS_MARKER = '@@MISS@@';

// A chat request of `bytes` bytes (the issue's hit: 188), its user text
// padded to length, temperature 0 (cacheable).
function chatRequest(label, extra = {}, bytes = 188) {
  const make = (pad) => JSON.stringify(chatBody(`${label}${'.'.repeat(pad)}`, extra));
  return make(Math.max(0, bytes - make(0).length));
}

// The kinds of hit: the request, and what the fake answers it with the one
// time it is asked (then it is stored). A streamed answer of 20 SSE events
// is a role event, 17 content events, the finish event and [DONE].
// short: measured with --short-seconds (the other kinds' ratios matter,
// less their precision; it keeps make bench well under 15 minutes).
const HIT_KINDS = {
  hit: { label: 'hit', body: chatRequest('Say hello to the benchmark'), fake: {}, short: false },
  stream: { label: 'stream hit', body: chatRequest('Stream hello to the benchmark', { stream: true }, 202), fake: { chunks: 17 }, short: true },
  '1mib': { label: '1 MiB hit', body: chatRequest('Say a mebibyte to the benchmark'), fake: { content: 'x'.repeat(1024 * 1024 - 600) }, short: true },
};

const log = (front, msg) => console.log(`  [${front}] ${msg}`);

async function post(base, body) {
  const r = await fetch(`${base}${URI}`, { method: 'POST', headers: HEADERS, body, signal: AbortSignal.timeout(30000) });
  const text = await r.text();
  return { status: r.status, cache: r.headers.get('x-cache'), key: r.headers.get('x-relay-key'), bytes: text.length };
}

// One wrk run against Relay, with the CPU its pool spent meanwhile.
async function relayRun(env, args) {
  const pids = [env.relay.procs.relay.pid, ...childPids(env.relay.procs.relay.pid)];
  const cpu0 = cpuSeconds(pids);
  const r = await runWrk({ url: `${env.relay.base}${URI}`, headers: HEADERS, ...args });
  r.cpuUs = r.requests ? ((cpuSeconds(pids) - cpu0) * 1e6) / r.requests : null;
  return r;
}

async function baselineRun(env, args) {
  const pids = env.responder.pids();
  const cpu0 = cpuSeconds(pids);
  const r = await runWrk({ url: `${env.front.base}${URI}`, headers: HEADERS, ...args });
  r.cpuUs = r.requests ? ((cpuSeconds(pids) - cpu0) * 1e6) / r.requests : null;
  return r;
}

function checkRuns(env, what, runs) {
  for (const r of runs) {
    const failed = wrkFailures(r);
    if (failed) env.problems.push(`${what}: ${failed} requests failed or were not 2xx (${JSON.stringify(r.errors)})`);
  }
}

// Stores the answer of kind through Relay, captures Relay's hit answer and
// has bench-baseline replay it. Resolves to the captured answer's facts.
async function prepareHit(env, name) {
  const kind = HIT_KINDS[name];
  env.relay.fake.enqueue(kind.fake);
  const miss = await post(env.relay.base, kind.body);
  const hit = await post(env.relay.base, kind.body);
  if (miss.status !== 200 || hit.status !== 200 || hit.cache !== 'HIT') {
    throw new Error(`${name}: storing the entry gave ${miss.status} ${miss.cache}, then ${hit.status} ${hit.cache}`);
  }
  const answer = await captureAnswer(env.relay.socket, { uri: URI, body: kind.body, headers: HEADERS });
  const head = answerHead(answer);
  if (head.status !== 200 || head.headers['x-cache'] !== 'HIT') {
    throw new Error(`${name}: Relay's answer over FastCGI was ${head.status} X-Cache ${head.headers['x-cache']}`);
  }
  const file = path.join(env.dir, `${name}.answer`);
  fs.writeFileSync(file, answer);
  await env.responder?.stop();
  env.responder = await startResponder({ socket: env.socket, procs: env.workers, answerFile: file, log: env.log });
  env.front ??= await startFrontOn({ front: env.frontName, dir: env.dir, socket: env.socket, log: env.log });
  const events = (answer.toString('utf8').match(/^data: /gm) ?? []).length;
  return { key: hit.key, answerBytes: answer.length, bodyBytes: head.bodyBytes, requestBytes: Buffer.byteLength(kind.body),
    contentType: head.headers['content-type'], contentLength: head.headers['content-length'] ?? null, sseEvents: events || null };
}

// Interleaved rounds of Relay and the baseline on one kind of hit.
async function compareHit(env, name, o) {
  const facts = await prepareHit(env, name);
  const body = HIT_KINDS[name].body;
  const seconds = HIT_KINDS[name].short ? o.shortSeconds : o.seconds;
  log(env.frontName, `${name}: answer ${facts.answerBytes} bytes (body ${facts.bodyBytes}${facts.sseEvents ? `, ${facts.sseEvents} SSE events` : ''}); warming up`);
  await relayRun(env, { body, seconds: WARM_SECONDS });
  await baselineRun(env, { body, seconds: WARM_SECONDS });
  const calls0 = env.relay.fake.calls.length;
  const relay = [];
  const base = [];
  for (let i = 0; i < o.rounds; i++) {
    relay.push(await relayRun(env, { body, seconds }));
    base.push(await baselineRun(env, { body, seconds }));
    const [r, b] = [relay[i], base[i]];
    log(env.frontName, `${name} round ${i + 1}: relay ${r.rps.toFixed(0)} req/s p99 ${r.p99Ms.toFixed(2)} ms `
      + `${r.cpuUs.toFixed(0)} us/req; baseline ${b.rps.toFixed(0)} req/s p99 ${b.p99Ms.toFixed(2)} ms`);
  }
  const relay1 = [];
  const base1 = [];
  for (let i = 0; i < o.rounds; i++) {
    relay1.push(await relayRun(env, { body, seconds: o.c1Seconds, connections: 1, threads: 1 }));
    base1.push(await baselineRun(env, { body, seconds: o.c1Seconds, connections: 1, threads: 1 }));
    log(env.frontName, `${name} one connection ${i + 1}: relay p50 ${relay1[i].p50Ms.toFixed(3)} ms; baseline p50 ${base1[i].p50Ms.toFixed(3)} ms`);
  }
  checkRuns(env, `${name} (Relay)`, [...relay, ...relay1]);
  checkRuns(env, `${name} (baseline)`, [...base, ...base1]);
  const calls = env.relay.fake.calls.length - calls0;
  if (calls) env.problems.push(`${name}: ${calls} requests reached the upstream during the hit runs`);
  const after = await post(env.relay.base, body);
  if (after.cache !== 'HIT') env.problems.push(`${name}: after the runs the request was answered ${after.status} ${after.cache}, not HIT`);
  const sum = (runs) => ({
    rps: median(runs.map((r) => r.rps)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    cpuUs: median(runs.map((r) => r.cpuUs)),
    requests: runs.reduce((a, r) => a + r.requests, 0),
  });
  return {
    name,
    label: HIT_KINDS[name].label,
    facts,
    relay: { ...sum(relay), c1p50Ms: median(relay1.map((r) => r.p50Ms)), runs: relay, c1runs: relay1 },
    baseline: { ...sum(base), c1p50Ms: median(base1.map((r) => r.p50Ms)), runs: base, c1runs: base1 },
  };
}

// Unique bodies at one connection: through Relay (each a miss, so a call to
// the fake) against the fake called directly.
async function compareMiss(env, o) {
  const body = chatRequest(`Miss ${MISS_MARKER} for the benchmark`);
  const args = { body, unique: MISS_MARKER, connections: 1, threads: 1, seconds: o.c1Seconds };
  const direct = (a) => runWrk({ url: `${env.relay.fake.url}${URI}`, headers: HEADERS, ...a });
  await relayRun(env, { ...args, seconds: WARM_SECONDS });
  await direct({ ...args, seconds: WARM_SECONDS });
  const relay = [];
  const fake = [];
  let calls = 0;
  for (let i = 0; i < o.rounds; i++) {
    const c0 = env.relay.fake.calls.length;
    relay.push(await relayRun(env, args));
    calls += env.relay.fake.calls.length - c0;
    fake.push(await direct(args));
    log(env.frontName, `miss round ${i + 1}: relay p50 ${relay[i].p50Ms.toFixed(3)} ms, fake direct p50 ${fake[i].p50Ms.toFixed(3)} ms`);
  }
  checkRuns(env, 'miss (Relay)', relay);
  checkRuns(env, 'miss (fake direct)', fake);
  const requests = relay.reduce((a, r) => a + r.requests, 0);
  // wrk may leave one request per round in flight at its end: it reached
  // the fake but is not counted.
  if (calls < requests || calls > requests + o.rounds) {
    env.problems.push(`miss: ${requests} requests through Relay but ${calls} upstream calls`);
  }
  return { relayP50Ms: median(relay.map((r) => r.p50Ms)), directP50Ms: median(fake.map((r) => r.p50Ms)),
    cpuUs: median(relay.map((r) => r.cpuUs)), requests, upstreamCalls: calls, runs: relay, directRuns: fake };
}

function memory(env) {
  const worst = (list, k) => (list.length ? Math.max(...list.map((m) => m[k])) : null);
  const relay = childPids(env.relay.procs.relay.pid).map(memoryMiB).filter(Boolean);
  const base = (env.responder?.pids() ?? []).map(memoryMiB).filter(Boolean);
  return { rss: worst(relay, 'rss'), pss: worst(relay, 'pss'), private: worst(relay, 'private'), perWorker: relay,
    baselineRss: worst(base, 'rss'), baselinePss: worst(base, 'pss'), baselinePrivate: worst(base, 'private') };
}

function fill(env, key, count) {
  return new Promise((resolve, reject) => {
    execFile(path.join(BUILD, 'bench-fill'), ['-c', env.relay.ini, '-k', key, String(count)],
      { timeout: 900000 }, (err, stdout, stderr) => (err ? reject(new Error(`bench-fill: ${err.message} ${stderr}`)) : resolve(stdout.trim())));
  });
}

// The hit's cost with the store grown to each size in turn (the same store).
async function hitBySize(env, o) {
  const body = HIT_KINDS.hit.body;
  const stored = await post(env.relay.base, body);
  if (stored.cache !== 'HIT' && stored.cache !== 'MISS') throw new Error(`sizes: the hit request was answered ${stored.status} ${stored.cache}`);
  const check = await post(env.relay.base, body);
  if (check.cache !== 'HIT') throw new Error(`sizes: the hit request was answered ${check.status} ${check.cache}`);
  const out = [];
  for (const n of o.sizes) {
    log(env.frontName, `store to ${n} entries: ${await fill(env, check.key, n)}`);
    await relayRun(env, { body, seconds: WARM_SECONDS });
    const calls0 = env.relay.fake.calls.length;
    const runs = [];
    for (let i = 0; i < o.rounds; i++) runs.push(await relayRun(env, { body, seconds: o.seconds }));
    checkRuns(env, `hit at ${n} entries`, runs);
    if (env.relay.fake.calls.length !== calls0) env.problems.push(`hit at ${n} entries: requests reached the upstream`);
    const after = await post(env.relay.base, body);
    if (after.cache !== 'HIT') env.problems.push(`hit at ${n} entries: answered ${after.status} ${after.cache}, not HIT`);
    const r = { entries: n, label: `10^${Math.round(Math.log10(n))}`, cpuUs: median(runs.map((x) => x.cpuUs)), rps: median(runs.map((x) => x.rps)), runs };
    log(env.frontName, `hit at ${n} entries: ${r.cpuUs.toFixed(0)} us CPU, ${r.rps.toFixed(0)} req/s`);
    out.push(r);
  }
  return out;
}

export async function measureFront(frontKey, o) {
  const frontName = process.env.RELAY_FRONT;
  const wantSizes = o.only.includes('sizes') && frontKey === o.sizesFront;
  const relay = await startRelay(`throughput ${frontKey}`, {
    ini: {
      // The shipped defaults (workers, threads, body cap) instead of the
      // harness's small test pool; its debug log would cost every request.
      fcgi: { workers: null, threads: null, max_body: null },
      log: { level: 'info' },
      // Caps act only when an entry is stored; lifted where the store is
      // grown to 10^6 entries.
      ...(wantSizes ? { store: { max_entries: 0, max_bytes: 0 } } : {}),
    },
  });
  const env = { relay, frontName, workers: childPids(relay.procs.relay.pid).length, problems: [],
    dir: path.join(relay.tmp, 'baseline'), log: path.join(OUT, `bench-throughput.${frontKey}.baseline.log`) };
  env.socket = path.join(env.dir, 'b.sock');
  fs.mkdirSync(env.dir, { recursive: true });
  fs.writeFileSync(env.log, '');
  const result = { front: frontKey, harnessFront: frontName, workers: env.workers, parts: [], problems: env.problems };
  try {
    log(frontKey, `Relay ${env.workers} workers behind ${frontName} on ${relay.base}`);
    for (const name of Object.keys(HIT_KINDS)) {
        if (!o.only.includes(name)) continue;
      result.parts.push(await compareHit(env, name, o));
      // After the plain hits (the issue's figure), and again after the
      // larger answers, whose buffers the workers keep.
      if (name === 'hit') result.memory = memory(env);
    }
    if (result.parts.length > (result.memory ? 1 : 0)) result.memoryAfterAll = memory(env);
    if (o.only.includes('miss')) result.miss = await compareMiss(env, o);
    if (wantSizes) result.sizes = await hitBySize(env, o);
  } finally {
    await env.front?.stop();
    await env.responder?.stop();
    await relay.stop();
  }
  return result;
}
