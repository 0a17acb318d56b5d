// Benchmark: how many concurrent streams does the pool hold, live, and at
// what memory cost? Not part of `make test`; run by tests/bench/run.sh
// (make bench). Issue 14: "a stream must not cost a thread for its whole
// life".
//
// Three runs, each on its own environment (tests/e2e/harness.mjs: fake
// upstream, relay pool, Caddy), the pool otherwise on relay.ini's defaults:
//
//  distinct   DISTINCT (2000) concurrent streams with distinct prompts from
//             a slow upstream (CHUNKS events, CHUNK_MS apart: seconds per
//             stream), pool 4 workers x 32 threads. A stream is live when
//             its client's first event arrives before the first of all the
//             upstream streams has ended: then every live stream was open
//             at once. Memory per open stream: the workers' summed RSS and
//             PSS (/proc/PID/smaps_rollup) at their peak during the run
//             minus before it, divided by the streams.
//  identical  IDENTICAL (200) concurrent identical streams, same pool: the
//             upstream answers after 1 s so all have joined, then streams.
//             Upstream calls (target 1), live = first event before the
//             upstream's last write (a client that waited for a thread gets
//             the stream after its end, as a HIT), and the follower lag:
//             when a COALESCED client gets an event minus when the leader's
//             (MISS) client got it (as in coalesce_lag.mjs).
//  many       MANY (100) identical streams with workers = 50 x 2 threads (as
//             mod_fcgid runs many processes; the README's coalesce_lag
//             command: 20 events 50 ms apart, clients arriving while it
//             runs). Upstream calls and follower lag.
//
// Targets (issue 14): distinct all live; identical 1 call, all live, lag
// p99 <= 5 ms; many 1 call, lag p99 <= 20 ms. Figures are printed and
// written to tests/out/bench-streams.json, each target as MET or MISSED.
// Exit 1 only when a request was not answered as expected (a client
// failed, a stream incomplete or not the upstream's events), never for a
// missed target; 2 when the environment did not start.
//
// Clients are light socket clients (lib/sse_client.mjs) in THREADS worker
// threads; an event's time is when its bytes reached the client's socket.
//
//   node tests/bench/streams.mjs [--distinct 2000] [--identical 200] [--many 100]
//        [--chunks 20] [--chunk-ms 500] [--only distinct,identical,many]

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';

import { runClientWorkers, streamRequest } from './lib/sse_client.mjs';


// ---- client threads ---------------------------------------------------------

// One streaming request: when each numbered event arrived (lib/sse_client.mjs,
// timed at the socket: see there why not fetch()).
const runClient = ({ url, key, body }) => streamRequest({
  url, body, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
});

if (!isMainThread) {
  parentPort.postMessage({ ready: true });
  parentPort.once('message', async () => {
    const { url, key, bodies, spreadMs } = workerData;
    const results = await Promise.all(bodies.map(async (body, i) => {
      // Arrivals spread over spreadMs (0: all at once).
      if (spreadMs) await new Promise((r) => setTimeout(r, (spreadMs * i) / bodies.length));
      return runClient({ url, key, body });
    }));
    parentPort.postMessage({ results });
  });
}

// ---- helpers ----------------------------------------------------------------

function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] : null);
  const r = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return { n: s.length, p50: r(at(50)), p95: r(at(95)), p99: r(at(99)), max: r(s.at(-1) ?? null) };
}

const fmt = (p) => (p.n ? `p50 ${p.p50.toFixed(2)}  p95 ${p.p95.toFixed(2)}  p99 ${p.p99.toFixed(2)}  max ${p.max.toFixed(2)} ms (n=${p.n})` : 'no samples');

// Runs bodies as concurrent clients spread over THREADS worker threads.
async function runClients(url, key, bodies, threads, spreadMs = 0) {
  const per = Array.from({ length: threads }, () => []);
  bodies.forEach((b, i) => per[i % threads].push(b));
  return runClientWorkers(new URL(import.meta.url), per.map((list) => ({ url, key, bodies: list, spreadMs })));
}

// The workers' summed memory, kB, from /proc (RSS and PSS).
function poolMemory(pids) {
  let rss = 0;
  let pss = 0;
  for (const pid of pids) {
    try {
      const t = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      rss += Number(/^Rss:\s+(\d+)/m.exec(t)?.[1] ?? 0);
      pss += Number(/^Pss:\s+(\d+)/m.exec(t)?.[1] ?? 0);
    } catch {
      /* a worker that ended */
    }
  }
  return { rssKb: rss, pssKb: pss };
}

function threadsOf(pids) {
  let n = 0;
  for (const pid of pids) {
    try {
      n += Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return n;
}

function tally(clients) {
  const t = {};
  for (const c of clients) {
    const k = c.error ? 'error' : (c.cache ?? `status ${c.status}`);
    t[k] = (t[k] ?? 0) + 1;
  }
  return t;
}

// Follower lag vs the leader's client, per numbered event.
function followerLag(clients, fromSeq = 0) {
  const leader = clients.find((c) => c.cache === 'MISS');
  const lag = [];
  if (!leader) return percentiles(lag);
  for (const f of clients) {
    if (f.cache !== 'COALESCED') continue;
    for (const [seq, t] of Object.entries(f.times)) {
      if (Number(seq) >= fromSeq && leader.times[seq] !== undefined) lag.push(t - leader.times[seq]);
    }
  }
  return percentiles(lag);
}

// ---- main -------------------------------------------------------------------

async function main() {
  const path = await import('node:path');
  const { startRelay, childPids, chatBody, uniq, KEY_A, OUT } = await import('../e2e/harness.mjs');
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : (process.env[`BENCH_${name.toUpperCase().replaceAll('-', '_')}`] ?? dflt);
  };
  const DISTINCT = Number(arg('distinct', 2000));
  const IDENTICAL = Number(arg('identical', 200));
  const MANY = Number(arg('many', 100));
  const CHUNKS = Number(arg('chunks', 20));
  const CHUNK_MS = Number(arg('chunk-ms', 500));
  const ONLY = String(arg('only', 'distinct,identical,many')).split(',');
  const THREADS = 4;
  const content = (n) => Array.from({ length: n }, (_, i) => `#${String(i).padStart(4, '0')} `).join('');
  // connect_timeout: the fake (one Node event loop, listen backlog 511) takes
  // seconds to accept 2,000 connections at once; the harness's 2 s cut them.
  const upstream = { 'upstream.openai': { connect_timeout: 60, idle_timeout: 60, timeout: 300 } };

  // Every stream holds client, Caddy and Relay descriptors (and the fake's,
  // in this process): check the hard limit now rather than fail midway.
  const need = 4 * DISTINCT + 1024;
  const hard = Number(execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim());
  const soft = Number(execFileSync('bash', ['-c', 'ulimit -Sn'], { encoding: 'utf8' }).trim());
  if (Math.min(hard, soft) < need && !process.env.BENCH_STREAMS_RAISED) {
    // Node raises its soft limit to the hard one; only the hard one may
    // need raising (as root): run again under a raised limit.
    const r = spawnSync('bash', ['-c', `ulimit -n ${need} && exec "$0" "$@"`, process.execPath, ...process.argv.slice(1)], {
      stdio: 'inherit', env: { ...process.env, BENCH_STREAMS_RAISED: '1' },
    });
    if (r.status === null || (r.status === 1 && !fs.existsSync(path.join(OUT, 'bench-streams.json')))) {
      console.error(`bench: open files limit ${hard} below the ${need} needed and cannot be raised`);
    }
    process.exit(r.status ?? 2);
  }

  const result = { benchmark: 'streams', date: new Date().toISOString(), build: process.env.RELAY_BUILD || 'build', runs: {} };
  const problems = [];
  const targets = [];
  // A target is reported, MET or MISSED; only a request not answered as
  // expected (problems) makes the bench fail.
  const target = (name, met, value) => targets.push({ name, met: Boolean(met), value });

  const start = async (name, fcgi) => {
    try {
      return await startRelay(`streams ${name}`, { ini: { fcgi, ...upstream, log: { level: 'warn' } } });
    } catch (err) {
      console.error(`bench: the environment did not start: ${err.message}`);
      process.exit(2);
    }
  };
  const warm = async (relay) => {
    for (let i = 0; i < 8; i++) {
      const r = await fetch(`${relay.base}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' },
        body: JSON.stringify(chatBody(uniq('warm-up'), { stream: true })),
      });
      await r.text();
    }
  };

  // ---- distinct ----
  if (ONLY.includes('distinct')) {
    const relay = await start('distinct', { workers: 4, threads: 32 });
    try {
      await warm(relay);
      const pids = childPids(relay.procs.relay.pid);
      const idle = poolMemory(pids);
      const idleThreads = threadsOf(pids);
      relay.fake.reset();
      const markers = Array.from({ length: DISTINCT }, (_, i) => uniq(`distinct ${i}`));
      for (let i = 0; i < DISTINCT; i++) relay.fake.enqueue({ chunks: CHUNKS, chunkDelayMs: CHUNK_MS, content: content(CHUNKS) });
      let peak = { rssKb: 0, pssKb: 0 };
      let peakThreads = 0;
      const sampler = setInterval(() => {
        const m = poolMemory(pids);
        if (m.rssKb > peak.rssKb) peak = m;
        peakThreads = Math.max(peakThreads, threadsOf(pids));
      }, 200);
      const { clients, startAt } = await runClients(`${relay.base}/v1/chat/completions`, KEY_A,
        markers.map((m) => JSON.stringify(chatBody(m, { stream: true }))), THREADS);
      clearInterval(sampler);
      const calls = relay.fake.calls.filter((c) => c.writes?.length);
      const ends = calls.map((c) => c.writes.at(-1).at);
      const firstEnd = Math.min(...ends);
      const live = clients.filter((c) => c.firstAt !== null && c.firstAt < firstEnd).length;
      const complete = clients.filter((c) => c.done && Object.keys(c.times).length === CHUNKS).length;
      const ttfb = percentiles(clients.filter((c) => c.firstAt).map((c) => c.firstAt - startAt));
      const perStream = {
        rssKb: Math.round((peak.rssKb - idle.rssKb) / DISTINCT),
        pssKb: Math.round((peak.pssKb - idle.pssKb) / DISTINCT),
      };
      const r = {
        streams: DISTINCT, upstream: { chunks: CHUNKS, chunkMs: CHUNK_MS }, pool: '4 x 32 (max_threads: default)',
        xCache: tally(clients), upstreamCalls: calls.length, live, complete, firstEventMs: ttfb,
        memory: { idle, peak, perStream, threadsIdle: idleThreads, threadsPeak: peakThreads },
        errors: clients.filter((c) => c.error).slice(0, 3).map((c) => c.error),
      };
      result.runs.distinct = r;
      console.log(`distinct: ${DISTINCT} concurrent distinct streams (${CHUNKS} events x ${CHUNK_MS} ms), pool 4 x 32`);
      console.log(`  X-Cache ${JSON.stringify(r.xCache)}; upstream calls ${calls.length}; complete ${complete}/${DISTINCT}`);
      console.log(`  live (first event before any upstream stream ended): ${live}/${DISTINCT}`);
      console.log(`  first event after start: ${fmt(ttfb)}`);
      console.log(`  workers' memory idle RSS ${(idle.rssKb / 1024).toFixed(1)} MiB PSS ${(idle.pssKb / 1024).toFixed(1)} MiB (${idleThreads} threads); peak RSS ${(peak.rssKb / 1024).toFixed(1)} MiB PSS ${(peak.pssKb / 1024).toFixed(1)} MiB (${peakThreads} threads)`);
      console.log(`  per open stream: RSS ${perStream.rssKb} KiB, PSS ${perStream.pssKb} KiB`);
      if (complete !== DISTINCT) problems.push(`distinct: ${DISTINCT - complete} streams incomplete ${r.errors.join('; ')}`);
      target('distinct: all streams live', live === DISTINCT, `${live}/${DISTINCT}`);
    } finally {
      await relay.stop();
    }
  }

  // ---- identical ----
  if (ONLY.includes('identical')) {
    const relay = await start('identical', { workers: 4, threads: 32 });
    try {
      await warm(relay);
      const marker = uniq('identical');
      relay.fake.reset();
      relay.fake.enqueue({ headerDelayMs: 1000, chunks: 100, chunkDelayMs: 20, content: content(100) });
      const body = JSON.stringify(chatBody(marker, { stream: true }));
      const { clients } = await runClients(`${relay.base}/v1/chat/completions`, KEY_A, Array(IDENTICAL).fill(body), THREADS);
      const calls = relay.fake.callsFor(marker);
      const lastWrite = calls[0]?.writes?.at(-1)?.at ?? 0;
      const live = clients.filter((c) => c.firstAt !== null && c.firstAt < lastWrite).length;
      const complete = clients.filter((c) => c.done && Object.keys(c.times).length === 100).length;
      const lag = followerLag(clients);
      const lag5 = followerLag(clients, 5);
      const r = { streams: IDENTICAL, upstreamCalls: calls.length, xCache: tally(clients), live, complete, followerLagMs: lag, followerLagFromEvent5Ms: lag5 };
      result.runs.identical = r;
      console.log(`identical: ${IDENTICAL} concurrent identical streams (100 events x 20 ms after 1 s), pool 4 x 32`);
      console.log(`  upstream calls ${calls.length}; X-Cache ${JSON.stringify(r.xCache)}; complete ${complete}/${IDENTICAL}`);
      console.log(`  live (first event before the upstream's last write): ${live}/${IDENTICAL}`);
      console.log(`  follower lag vs leader: ${fmt(lag)}`);
      console.log(`  from event 5:           ${fmt(lag5)}`);
      if (complete !== IDENTICAL) problems.push(`identical: ${IDENTICAL - complete} streams incomplete`);
      target('identical: 1 upstream call', calls.length === 1, `${calls.length}`);
      target('identical: all streams live', live === IDENTICAL, `${live}/${IDENTICAL}`);
      target('identical: follower lag p99 <= 5 ms', lag.p99 <= 5, `${lag.p99} ms`);
    } finally {
      await relay.stop();
    }
  }

  // ---- many processes ----
  if (ONLY.includes('many')) {
    const relay = await start('many', { workers: 50, threads: 2 });
    try {
      await warm(relay);
      const marker = uniq('many');
      relay.fake.reset();
      relay.fake.enqueue({ headerDelayMs: 0, chunks: 20, chunkDelayMs: 50, content: content(20) });
      const body = JSON.stringify(chatBody(marker, { stream: true }));
      const { clients } = await runClients(`${relay.base}/v1/chat/completions`, KEY_A, Array(MANY).fill(body), THREADS);
      const calls = relay.fake.callsFor(marker);
      const complete = clients.filter((c) => c.done && Object.keys(c.times).length === 20).length;
      const lag = followerLag(clients);
      const lag5 = followerLag(clients, 5);
      const r = { streams: MANY, pool: '50 x 2', upstreamCalls: calls.length, xCache: tally(clients), complete, followerLagMs: lag, followerLagFromEvent5Ms: lag5 };
      result.runs.many = r;
      console.log(`many: ${MANY} identical streams (20 events x 50 ms), pool 50 x 2`);
      console.log(`  upstream calls ${calls.length}; X-Cache ${JSON.stringify(r.xCache)}; complete ${complete}/${MANY}`);
      console.log(`  follower lag vs leader: ${fmt(lag)}`);
      console.log(`  from event 5:           ${fmt(lag5)}`);
      if (complete !== MANY) problems.push(`many: ${MANY - complete} streams incomplete`);
      target('many: 1 upstream call', calls.length === 1, `${calls.length}`);
      target('many: follower lag p99 <= 20 ms', lag.p99 <= 20, `${lag.p99} ms`);
    } finally {
      await relay.stop();
    }
  }

  result.valid = problems.length === 0;
  result.problems = problems;
  result.targets = targets;
  result.targetsMissed = targets.filter((t) => !t.met).map((t) => `${t.name}: ${t.value}`);
  console.log('targets (issue 14):');
  for (const t of targets) console.log(`  ${t.met ? 'MET   ' : 'MISSED'} ${t.name}: ${t.value}`);
  if (problems.length) console.log(`  NOT A VALID MEASUREMENT: ${problems.join('; ')}`);
  fs.mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, 'bench-streams.json');
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`  written: ${path.relative(process.cwd(), file)}`);
  process.exit(problems.length ? 1 : 0);
}

if (isMainThread) {
  main().catch((err) => {
    console.error(err);
    process.exit(2);
  });
}
