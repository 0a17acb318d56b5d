// Benchmark: how late do coalesced followers get each chunk of a shared
// stream? Not part of `make test`; run by tests/bench/run.sh (make bench).
//
// Starts the end-to-end environment (tests/e2e/harness.mjs: fake upstream,
// relay pool of 4 processes x 32 threads, Caddy), then sends CLIENTS
// identical streaming requests at once against an upstream that streams
// CHUNKS content chunks DELAY ms apart, the content of chunk i being
// "#0007 " (its sequence number). The fake stamps each write
// (call.writes, performance.timeOrigin + performance.now()); each client
// stamps each event as it reads it, the same way. Clients run in THREADS
// worker_threads so one event loop does not skew the others.
//
// Reported, per follower and chunk (COALESCED clients):
//   inside relay the measure: the leader receives a chunk -> a
//                follower's client is sent it, from the relay's debug trace
//                lines (engine/coalesce.c); BENCH_LOG_LEVEL=warn turns the
//                trace off to see what it costs (then only client-side numbers)
//   vs leader    follower receive - the leader's client's receive of the same chunk
//   vs upstream  follower receive - when the fake wrote it
// and, for reference, the leader's client vs upstream (plain pass-through).
// Percentiles p50/p95/p99/max over all (follower, chunk) samples, the same
// for the first chunk alone (it includes joining), and per chunk for a few
// sequence numbers; the whole per-chunk table goes to
// tests/out/bench-coalesce.json.
//
//   node tests/bench/coalesce_lag.mjs [--clients 100] [--chunks 100] [--delay 20] [--threads 4]
//        [--workers 4] [--pool-threads 32] [--header-delay 1000]
//
// The target (issue 3): inside-relay p99 <= TARGET_P99_MS. The verdict is
// printed and goes to the JSON.
//
// Environment: RELAY_BUILD as for the e2e tests. Targets are printed as
// MET or MISSED (one upstream call; the inside-relay p99, measured only with
// the debug trace on); exit status 1 only when a request was not answered
// as expected (a client error, a stream without every chunk, bytes that are
// not an upstream answer's), never for a missed target; 2 when the
// environment did not start. Clients are light socket clients
// (lib/sse_client.mjs): an event's time is when its bytes reached the
// client's socket.

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createHash } from 'node:crypto';

import { runClientWorkers, streamRequest } from './lib/sse_client.mjs';

const TARGET_P99_MS = 5;

// ---- client threads ---------------------------------------------------------

// One streaming request: when each content chunk arrived (at the socket,
// lib/sse_client.mjs: see there why not fetch()), and what came.
const runClient = ({ url, key, body }) => streamRequest({
  url, body, timeoutMs: 120000, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
});

if (!isMainThread) {
  const { count } = workerData;
  parentPort.postMessage({ ready: true });
  parentPort.once('message', async () => {
    const results = await Promise.all(Array.from({ length: count }, () => runClient(workerData)));
    parentPort.postMessage({ results });
  });
}

// ---- statistics -------------------------------------------------------------

function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] : null);
  const r = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return { n: s.length, p50: r(at(50)), p95: r(at(95)), p99: r(at(99)), max: r(s.at(-1) ?? null), min: r(s[0] ?? null) };
}

const fmt = (p) =>
  p.n ? `p50 ${p.p50.toFixed(2)}  p95 ${p.p95.toFixed(2)}  p99 ${p.p99.toFixed(2)}  max ${p.max.toFixed(2)} ms  (n=${p.n})` : 'no samples';

// ---- main -------------------------------------------------------------------

async function main() {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { startRelay, chatBody, uniq, KEY_A, OUT } = await import('../e2e/harness.mjs');

  const arg = (name, dflt) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? Number(process.argv[i + 1]) : Number(process.env[`BENCH_${name.toUpperCase()}`] ?? dflt);
  };
  const CLIENTS = arg('clients', 100);
  const CHUNKS = arg('chunks', 100);
  const DELAY = arg('delay', 20);
  const THREADS = Math.max(1, Math.min(arg('threads', 4), CLIENTS));
  // The pool's shape matters: many single-threaded processes (as under
  // mod_fcgid) contend on the store far more than a few threaded ones.
  const POOL = { workers: arg('workers', 4), threads: arg('pool-threads', 32) };
  const HEADER_DELAY = arg('header-delay', 1000);

  let relay;
  try {
    relay = await startRelay('coalesce lag', {
      ini: {
        fcgi: POOL,
        'upstream.openai': { idle_timeout: 30, timeout: 300 },
        log: { level: process.env.BENCH_LOG_LEVEL || 'debug' },
      },
    });
  } catch (err) {
    console.error(`bench: the environment did not start: ${err.message}`);
    process.exit(2);
  }

  let valid = false;
  let targetMet = null;
  try {
    // Warm up: the pool, Caddy and the upstream connection.
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${relay.base}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' },
        body: JSON.stringify(chatBody(uniq('warm-up'), { stream: true })),
        signal: AbortSignal.timeout(10000),
      });
      await r.text();
    }

    const marker = uniq('coalesce-lag');
    const content = Array.from({ length: CHUNKS }, (_, i) => `#${String(i).padStart(4, '0')} `).join('');
    relay.fake.reset();
    // The upstream answers after 1 s (--header-delay), so every client has
    // joined before the first chunk: what is measured is the multicast lag, not the time the
    // 100 connections take to arrive (late joiners are tested in e2e).
    relay.fake.enqueue({ headerDelayMs: HEADER_DELAY, chunks: CHUNKS, chunkDelayMs: DELAY, content });
    const body = JSON.stringify(chatBody(marker, { stream: true }));

    const per = Array.from({ length: THREADS }, (_, i) => Math.floor(CLIENTS / THREADS) + (i < CLIENTS % THREADS ? 1 : 0));
    const { clients, startAt } = await runClientWorkers(new URL(import.meta.url),
      per.map((count) => ({ url: `${relay.base}/v1/chat/completions`, key: KEY_A, body, count })));

    // What the upstream sent, and when each chunk left it.
    const calls = relay.fake.callsFor(marker);
    const call = calls[0];
    const sentAt = {};
    let prev = 0;
    for (const w of call?.writes ?? []) {
      const piece = call.sent.slice(prev, w.bytes);
      prev = w.bytes;
      for (const m of piece.matchAll(/"content":"#(\d{4}) "/g)) sentAt[Number(m[1])] ??= w.at;
    }
    // Every client must get the bytes of an upstream answer (of the one
    // call, or of one of them when coalescing failed and there were more).
    const sentShas = new Set(calls.map((c) => createHash('sha256').update(c.sent).digest('hex')));

    const tally = {};
    for (const c of clients) tally[c.cache ?? `status ${c.status}`] = (tally[c.cache ?? `status ${c.status}`] ?? 0) + 1;
    const leaders = clients.filter((c) => c.cache === 'MISS');
    const followers = clients.filter((c) => c.cache === 'COALESCED');
    const leader = leaders.length === 1 ? leaders[0] : null;
    const identical = clients.filter((c) => sentShas.has(c.sha256)).length;
    const complete = clients.filter((c) => c.done && Object.keys(c.times).length === CHUNKS).length;
    const problems = [];
    if (identical !== CLIENTS) problems.push(`${CLIENTS - identical} clients did not get the upstream's bytes`);
    if (complete !== CLIENTS) problems.push(`${CLIENTS - complete} clients without every chunk`);
    for (const c of clients.filter((x) => x.error).slice(0, 3)) problems.push(`client error: ${c.error}`);
    valid = problems.length === 0;

    const vsLeader = [];
    const vsUpstream = [];
    const leaderVsUpstream = [];
    const firstVsLeader = [];
    const firstVsUpstream = [];
    const perChunk = [];
    for (let s = 0; s < CHUNKS; s++) {
      const fl = [];
      const fu = [];
      for (const f of followers) {
        const t = f.times[s];
        if (t === undefined) continue;
        if (leader?.times[s] !== undefined) fl.push(t - leader.times[s]);
        if (sentAt[s] !== undefined) fu.push(t - sentAt[s]);
      }
      vsLeader.push(...fl);
      vsUpstream.push(...fu);
      if (s === 0) {
        firstVsLeader.push(...fl);
        firstVsUpstream.push(...fu);
      }
      if (leader?.times[s] !== undefined && sentAt[s] !== undefined) leaderVsUpstream.push(leader.times[s] - sentAt[s]);
      perChunk.push({ seq: s, sentAt: sentAt[s] ?? null, vsLeader: percentiles(fl), vsUpstream: percentiles(fu) });
    }
    const steadyLeader = perChunk.filter((c) => c.seq >= 5).flatMap((c) => {
      const s = c.seq;
      return followers.filter((f) => f.times[s] !== undefined && leader?.times[s] !== undefined).map((f) => f.times[s] - leader.times[s]);
    });

    // The issue's own measure, inside Relay: the leader receives a chunk ->
    // a follower's client is sent it (written and flushed). engine/coalesce.c
    // logs both moments at debug level with wall-clock microseconds.
    const received = new Map();
    const inside = [];
    const insideFrom5 = [];
    for (const line of fs.readFileSync(relay.logs.relay, 'utf8').split('\n')) {
      const m = /flight (\w+) gen (\d+) chunk (\d+) (received|sent) at (\d+)\.(\d+)/.exec(line);
      if (!m) continue;
      const id = `${m[1]}/${m[2]}/${m[3]}`;
      const at = Number(m[5]) * 1000 + Number(m[6]) / 1000;
      if (m[4] === 'received') received.set(id, at);
      else if (received.has(id)) {
        inside.push(at - received.get(id));
        // Relay's chunk 0 is the head, 1 the role event: 5 on is the
        // fake's content #0003 on. Followers that join while the stream
        // runs (--header-delay 0) are sent the first chunks when they
        // arrive, which this measure cannot tell from lag.
        if (Number(m[3]) >= 5) insideFrom5.push(at - received.get(id));
      }
    }

    const insideRelay = percentiles(inside);
    targetMet = insideRelay.n > 0 ? insideRelay.p99 <= TARGET_P99_MS : null;
    const target = { p99Ms: TARGET_P99_MS, met: targetMet, oneUpstreamCall: calls.length === 1 };

    const upSpan = call?.writes?.length ? call.writes.at(-1).at - call.writes[0].at : null;
    const result = {
      benchmark: 'coalesce_lag',
      date: new Date().toISOString(),
      valid,
      problems,
      target,
      config: { clients: CLIENTS, chunks: CHUNKS, chunkDelayMs: DELAY, clientThreads: THREADS, pool: POOL },
      upstreamCalls: calls.length,
      xCache: tally,
      identicalBodies: identical,
      completeStreams: complete,
      upstreamStreamMs: upSpan,
      lastClientEndMs: Math.max(...clients.map((c) => c.endAt)) - startAt,
      lagMs: {
        insideRelay,
        insideRelayFromChunk5: percentiles(insideFrom5),
        followerVsLeader: percentiles(vsLeader),
        followerVsLeaderFromChunk5: percentiles(steadyLeader),
        followerVsUpstream: percentiles(vsUpstream),
        leaderVsUpstream: percentiles(leaderVsUpstream),
        firstChunkFollowerVsLeader: percentiles(firstVsLeader),
        firstChunkFollowerVsUpstream: percentiles(firstVsUpstream),
      },
      perChunk,
    };

    console.log(`coalesce_lag: ${CLIENTS} identical streams (${THREADS} client threads), upstream ${CHUNKS} chunks x ${DELAY} ms, pool ${POOL.workers} x ${POOL.threads}`);
    console.log(`  upstream calls ${calls.length}; X-Cache ${JSON.stringify(tally)}; byte-identical ${identical}/${CLIENTS}; complete ${complete}/${CLIENTS}`);
    console.log(`  upstream stream ${upSpan === null ? '?' : upSpan.toFixed(0)} ms; last client done ${result.lastClientEndMs.toFixed(0)} ms after start`);
    console.log(`  inside relay (leader receives -> follower sent)  ${fmt(result.lagMs.insideRelay)}`);
    console.log(`  inside relay (chunk >= 5)   ${fmt(result.lagMs.insideRelayFromChunk5)}`);
    console.log(`  follower vs leader          ${fmt(result.lagMs.followerVsLeader)}`);
    console.log(`  follower vs leader (>= #5)  ${fmt(result.lagMs.followerVsLeaderFromChunk5)}`);
    console.log(`  follower vs upstream        ${fmt(result.lagMs.followerVsUpstream)}`);
    console.log(`  leader   vs upstream        ${fmt(result.lagMs.leaderVsUpstream)}`);
    console.log(`  first chunk: follower vs leader   ${fmt(result.lagMs.firstChunkFollowerVsLeader)}`);
    console.log(`  first chunk: follower vs upstream ${fmt(result.lagMs.firstChunkFollowerVsUpstream)}`);
    console.log('  per chunk (follower vs leader / vs upstream, p50 p99 max ms):');
    for (const s of [0, 1, 2, 5, 10, 25, 50, 75, CHUNKS - 1]) {
      const c = perChunk[s];
      if (!c || s >= CHUNKS) continue;
      const p = (x) => (x.n ? `${x.p50.toFixed(2)} ${x.p99.toFixed(2)} ${x.max.toFixed(2)}` : '-');
      console.log(`    #${String(s).padStart(4, '0')}  ${p(c.vsLeader).padEnd(22)} / ${p(c.vsUpstream)}`);
    }
    console.log(`  target: 1 upstream call: ${calls.length === 1 ? 'MET' : 'MISSED'} (${calls.length}; ${leaders.length} MISS clients)`);
    if (target.met !== null) console.log(`  target: inside relay p99 <= ${TARGET_P99_MS} ms: ${target.met ? 'MET' : 'MISSED'}`);
    if (!valid) console.log(`  NOT A VALID MEASUREMENT: ${problems.join('; ')}`);

    fs.mkdirSync(OUT, { recursive: true });
    const file = path.join(OUT, 'bench-coalesce.json');
    fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`  written: ${path.relative(process.cwd(), file)} (relay log: ${path.relative(process.cwd(), relay.logs.relay)})`);
  } finally {
    await relay.stop();
  }
  process.exit(valid ? 0 : 1);
}

if (isMainThread) {
  main().catch((err) => {
    console.error(err);
    process.exit(2);
  });
}
