// Model (issue 18): several Relay hosts behind a load balancer. Hit rate and
// budget accuracy as the number of hosts H grows from 1 to 16. Not part of
// `make test`; run by tests/bench/run.sh (make bench) like the other
// benches, but it needs no build and starts no server: it is a deterministic
// simulation (seeded PRNG), so two runs with the same options print the same
// figures. It is a model, not a measurement; its assumptions are listed in
// the README ("Several hosts: a model") and below.
//
// 1. Hit rate. A stream of REQUESTS requests over DAYS days, evenly spaced,
//    each asking for one of PROMPTS distinct prompts drawn from a Zipf law of
//    exponent ZIPF (rank k has weight 1/k^ZIPF). H hosts each keep their own
//    cache (the issue keeps the answer cache per host): LRU of CACHE entries,
//    an entry fresh for TTL seconds after it was stored (a hit does not
//    extend it; Relay's default_ttl and max_entries are the defaults here).
//    The load balancer either
//      hash   hashes on the cache key with consistent hashing (a ketama ring,
//             160 points per host, as nginx `hash ... consistent`), so every
//             request for one key reaches the same host, or
//      rr     round-robin (random is the same in expectation): every host
//             sees every popular key and warms its own copy.
//    The same request stream is used for every H and both balancers.
//    Coalescing is not modelled (at these rates two identical requests are
//    almost never in flight together).
//
// 2. Budget accuracy. N requests arrive at once (within SPREAD_MS), spread
//    round-robin over H hosts, all against one budget of B requests' worth;
//    every request reserves one request's worth (its worst case) and uses
//    all of it (the worst case for overshoot). The ledger starts with a
//    fraction of a request already spent (uniform in [0, 1)), so the last
//    admission can overshoot. A host forwards its reservation to the master
//    over a repmgr channel; the master's dispatch commits reservations one
//    at a time (one FIFO server: they all write the same budget row); the
//    master's own host calls it directly (no channel). The master admits
//    while something is left, as one host does today. Scenarios:
//      normal   master reachable.
//      crash    the master host dies at a random moment inside the burst:
//               the others get DB_REP_UNAVAIL at once, a new master is
//               elected after ELECTION (SIGKILL figures) and answers its
//               first request FIRST_REQ later.
//      hung     the master hangs (or a silent partition): requests to it
//               block for the channel timeout (CHANNEL_TIMEOUT_MS, the
//               design's short per-call timeout), the others detect it by
//               heartbeat (HUNG_DETECT) and elect.
//    While a host has no master it grants at most one local reservation per
//    token (if its local copy of the ledger still shows something left;
//    that copy lags the master by the replication lag), then holds further
//    requests until a master is back (they go to it, after the host has
//    replayed its local grant) or PARTITION_GRACE_MS has passed (refused).
//    With ack QUORUM every reservation the master committed is on the new
//    master; with ack NONE a commit reaches the replica that wins the
//    election only after the replication lag, so the last commits before
//    the crash are lost and the new master admits that much again.
//    Worst case: normal, 1 reservation (what one host guarantees); without
//    a master, 1 + (H - 1) local grants = H reservations (with QUORUM).
//
// 3. Reservation latency added per miss: misses arrive as a Poisson stream
//    of MISS_RATE per second over H hosts; each costs one reservation
//    before the upstream call and one settlement after it (UPSTREAM_S later,
//    off the client's path but on the master's queue). The latency is the
//    reservation's: channel round trip (none on the master's own host),
//    waiting for the master, the commit.
//
// Parameters of 2 and 3 come from /work/scratch/i18/FINDINGS.md, measured on
// this 2-core machine over loopback with Berkeley DB 5.3.28 repmgr (three
// sites): channel echo round trip (§4), a reservation-like commit answered
// by the master's dispatch (`incr`, §4) minus the echo = the master's
// service time, replication lag (§2.2), election after SIGKILL (§5) and
// heartbeat detection of a hung master (§5, "fast" timeouts). Each is a
// lognormal fitted to the measured p50 and p99. A real network adds its own
// round trip per forwarded reservation (--net-rtt-ms).
//
//   node tests/bench/cluster_model.mjs [--seed 18] [--requests 2000000] [--prompts 1000000]
//        [--zipf 0.9] [--cache 200000] [--ttl 86400] [--days 2] [--concurrent 60]
//        [--budget 10] [--trials 2000] [--grace-ms 1000] [--channel-timeout-ms 100]
//        [--miss-rate 200] [--upstream-s 2] [--net-rtt-ms 0] [--hosts 1,2,4,8,16]
//
// Prints Markdown tables (pasted into the README) and writes
// tests/out/bench-cluster_model.json. There are no timed assertions; the
// exit status is 1 only if a simulated budget broke the bound the design
// claims for its scenario (normal: 1; crash or hung with QUORUM: H), which
// would be a bug in the model or in the design's reasoning.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// ---- options ----------------------------------------------------------------

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return dflt;
  const a = args[i];
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[i + 1];
};
const num = (name, dflt) => Number(opt(name, dflt));

const P = {
  seed: num('seed', 18),
  hosts: String(opt('hosts', '1,2,4,8,16')).split(',').map(Number),
  // hit rate
  requests: num('requests', 2000000),
  prompts: num('prompts', 1000000),
  zipf: num('zipf', 0.9),
  cache: num('cache', 200000), // relay.ini [cache] max_entries default
  ttl: num('ttl', 86400), // relay.ini [cache] default_ttl
  days: num('days', 2),
  ringPoints: 160,
  // budget
  concurrent: num('concurrent', 60),
  budget: num('budget', 10),
  trials: num('trials', 2000),
  spreadMs: num('spread-ms', 1),
  graceMs: num('grace-ms', 1000),
  channelTimeoutMs: num('channel-timeout-ms', 100),
  // latency
  missRate: num('miss-rate', 200),
  upstreamS: num('upstream-s', 2),
  latencyMisses: num('latency-misses', 20000),
  netRttMs: num('net-rtt-ms', 0),
};

// Measured figures (ms), FINDINGS.md; [p50, p99] of lognormals.
const F = {
  // §4 channel round trip replica -> master, `echo`
  echoNoShim: [0.032, 0.078], // p50 30-35 us, p99 59-97 us (Nagle maxima 40-47 ms not modelled)
  echoShim: [0.075, 0.36], // TCP_NODELAY shim: p50 69-82 us, p99 289-428 us
  // §4 `incr` (read-modify-write committed by the master's dispatch), one client
  incrNone: [0.105, 0.26], // ack NONE: p50 104-106, p99 220-298 us
  incrQuorumShim: [0.213, 0.68], // QUORUM + shim: p50 186-241, p99 410-947 us
  incrQuorumNoShim: [43.9, 49.8], // QUORUM, no shim: Nagle + delayed ACK
  // §2.2 replica sees a write after the master's commit started
  lagNone: [0.159, 0.738],
  lagQuorumShim: [0.195, 0.667],
  // §5 SIGKILL of the master: new master (REP_MASTER) 4.8-8.6 ms; first
  // channel request answered by it 6-56 ms after the event (§4)
  election: [6.7, 8.6],
  firstReq: [15, 56],
  // §5 hung master, heartbeat send 200 / monitor 700 ms: new master at 667 ms
  hungDetect: [660, 700],
};

const CONFIGS = {
  'quorum+nodelay': { echo: F.echoShim, incr: F.incrQuorumShim, lag: F.lagQuorumShim, acked: true,
    text: 'ack QUORUM, TCP_NODELAY on repmgr sockets' },
  none: { echo: F.echoNoShim, incr: F.incrNone, lag: F.lagNone, acked: false, text: 'ack NONE' },
  'quorum (no nodelay)': { echo: F.echoNoShim, incr: F.incrQuorumNoShim, lag: F.lagQuorumShim, acked: true,
    text: 'ack QUORUM, repmgr as shipped (Nagle)' },
};

// ---- PRNG (sfc32, seeded through splitmix32) ---------------------------------

function splitmix32(a) {
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}
function rng(seed) {
  const s = splitmix32(seed);
  let a = s(), b = s(), c = s(), d = s();
  return () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    const t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    const r = (t + d) | 0;
    c = (c + r) | 0;
    return (r >>> 0) / 4294967296;
  };
}
// A lognormal with the given p50 and p99.
function lognormal(rand, [p50, p99]) {
  const sigma = Math.log(p99 / p50) / 2.3263;
  const u1 = rand() || 1e-12;
  const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * rand());
  return p50 * Math.exp(sigma * z);
}
const expo = (rand, mean) => -Math.log(1 - rand()) * mean;

// 32-bit mixer (murmur3 fmix32) for the keys and the ring.
function fmix32(h) {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function pct(xs, p) {
  if (!xs.length) return null;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

// ---- 1. hit rate ---------------------------------------------------------------

function zipfStream() {
  const cdf = new Float64Array(P.prompts);
  let sum = 0;
  for (let k = 0; k < P.prompts; k++) { sum += 1 / Math.pow(k + 1, P.zipf); cdf[k] = sum; }
  const rand = rng(P.seed);
  const keys = new Uint32Array(P.requests);
  const seen = new Uint8Array(P.prompts);
  let distinct = 0;
  for (let i = 0; i < P.requests; i++) {
    const u = rand() * sum;
    let lo = 0, hi = P.prompts - 1;
    while (lo < hi) { const m = (lo + hi) >>> 1; if (cdf[m] < u) lo = m + 1; else hi = m; }
    keys[i] = lo;
    if (!seen[lo]) { seen[lo] = 1; distinct++; }
  }
  return { keys, distinct };
}

function ring(h) {
  const pts = [];
  for (let host = 0; host < h; host++) {
    for (let v = 0; v < P.ringPoints; v++) pts.push([fmix32(fmix32(host + 1) ^ Math.imul(v + 1, 0x27d4eb2d)), host]);
  }
  pts.sort((a, b) => a[0] - b[0]);
  const pos = Uint32Array.from(pts.map((p) => p[0]));
  const owner = Uint8Array.from(pts.map((p) => p[1]));
  return (key) => {
    const x = fmix32(key + 0x9e3779b9);
    let lo = 0, hi = pos.length;
    while (lo < hi) { const m = (lo + hi) >>> 1; if (pos[m] < x) lo = m + 1; else hi = m; }
    return owner[lo === pos.length ? 0 : lo];
  };
}

// One host's cache: LRU of P.cache entries (a Map from key to slot, the
// recency order a doubly linked list over the slots; no Map iteration, which
// is slow on a Map with many deletions).
function lru(cap) {
  const slotOf = new Map();
  const key = new Uint32Array(cap), stored = new Float64Array(cap);
  const prev = new Int32Array(cap), next = new Int32Array(cap);
  let head = -1, tail = -1, used = 0; // head = most recent
  const unlink = (i) => {
    if (prev[i] >= 0) next[prev[i]] = next[i]; else head = next[i];
    if (next[i] >= 0) prev[next[i]] = prev[i]; else tail = prev[i];
  };
  const front = (i) => { prev[i] = -1; next[i] = head; if (head >= 0) prev[head] = i; head = i; if (tail < 0) tail = i; };
  return {
    // true on a fresh hit (moved to the front); on a miss the answer is stored
    access(k, now, ttl) {
      const i = slotOf.get(k);
      if (i !== undefined) {
        unlink(i); front(i);
        if (now - stored[i] < ttl) return true;
        stored[i] = now; // expired: the miss's answer replaces it
        return false;
      }
      let j;
      if (used < cap) j = used++;
      else { j = tail; unlink(j); slotOf.delete(key[j]); } // evict the least recently used
      key[j] = k; stored[j] = now; slotOf.set(k, j); front(j);
      return false;
    },
  };
}

function hitRate(keys, h, lb) {
  const caches = Array.from({ length: h }, () => lru(P.cache));
  const pick = lb === 'hash' ? ring(h) : null;
  const load = new Float64Array(h);
  const dt = (P.days * 86400) / P.requests;
  const half = P.requests >>> 1;
  let hits = 0, hits2 = 0;
  for (let i = 0; i < P.requests; i++) {
    const key = keys[i];
    const host = pick ? pick(key) : i % h;
    load[host]++;
    if (caches[host].access(key, i * dt, P.ttl)) {
      hits++;
      if (i >= half) hits2++;
    }
  }
  return { hit: hits / P.requests, hitSecondHalf: hits2 / (P.requests - half), maxLoad: Math.max(...load) / (P.requests / h) };
}

// ---- 2. budget ------------------------------------------------------------------

// One burst: returns { calls, overshoot, refused, latencies }.
function burst(rand, h, scenario, cfg) {
  const N = P.concurrent;
  const spent0 = rand(); // a fraction of a request already spent
  const serv = () => Math.max(0.001, lognormal(rand, cfg.incr) - cfg.echo[0]);
  const rtt = () => lognormal(rand, cfg.echo) + P.netRttMs;
  const tFail = scenario === 'normal' ? Infinity : rand() * P.spreadMs;
  // When a master answers again (ms), and who: master 0 until tFail, then 1.
  const newMasterAt = scenario === 'crash'
    ? tFail + lognormal(rand, F.election) + lognormal(rand, F.firstReq)
    : scenario === 'hung' ? tFail + lognormal(rand, F.hungDetect) + lognormal(rand, F.firstReq) : Infinity;
  // Ledger of each master: committed reservations with their commit time.
  const commits0 = []; // on the old master
  let free0 = 0; // old master's queue free at
  const reqs = [];
  for (let i = 0; i < N; i++) reqs.push({ t: rand() * P.spreadMs, host: i % h });
  reqs.sort((a, b) => a.t - b.t);
  // Phase 1: old master, in arrival order at the master (FIFO).
  const events = [];
  for (const r of reqs) {
    const oneWay = r.host === 0 ? 0 : rtt() / 2;
    const arrive = r.t + oneWay;
    const start = Math.max(arrive, free0);
    const done = start + serv();
    if (done >= tFail) { r.pending = true; continue; } // not answered by the old master
    free0 = done;
    const admitted = spent0 + commits0.length < P.budget; // something left
    if (admitted) commits0.push(done);
    r.decided = true; r.admitted = admitted; r.latency = done + oneWay - r.t;
    events.push(r);
  }
  if (scenario === 'normal') {
    const calls = reqs.filter((r) => r.admitted).length;
    return { calls, overshoot: spent0 + calls - P.budget, refused: N - calls, latencies: reqs.map((r) => r.latency) };
  }
  // The old master is gone (crash) or silent (hung): its own host's pending
  // requests die with it (crash) or hang (hung) - either way none reaches
  // the upstream. What the new master knows of the old one's commits:
  const lagOf = () => lognormal(rand, cfg.lag);
  const known = cfg.acked ? commits0.length : commits0.filter((t) => t + lagOf() < tFail).length;
  // Each surviving host: at most one local grant, if its local copy shows
  // something left (its copy: the old master's commits older than the lag).
  const localUsed = new Array(h).fill(false);
  let locals = 0;
  const waiting = [];
  for (const r of reqs) {
    if (!r.pending) continue;
    if (r.host === 0) { r.decided = true; r.admitted = false; continue; } // the master's own host
    // when this host learns there is no master
    const noMasterAt = scenario === 'crash' ? Math.max(r.t, tFail) : Math.max(r.t, tFail) + P.channelTimeoutMs;
    const view = commits0.filter((t) => t + lagOf() < noMasterAt).length;
    if (!localUsed[r.host] && spent0 + view < P.budget) {
      localUsed[r.host] = true; locals++;
      r.decided = true; r.admitted = true; r.local = true; r.latency = noMasterAt - r.t;
    } else if (newMasterAt - noMasterAt <= P.graceMs) {
      waiting.push(r);
    } else {
      r.decided = true; r.admitted = false;
    }
  }
  // The new master: starts from what it knows, plus the replayed local
  // grants, then serves the waiting requests in order.
  let count = known + locals;
  let free1 = newMasterAt;
  for (const r of waiting.sort((a, b) => a.t - b.t)) {
    const done = Math.max(free1, newMasterAt) + serv();
    free1 = done;
    r.decided = true;
    r.admitted = spent0 + count < P.budget;
    if (r.admitted) count++;
    r.latency = done - r.t;
  }
  const calls = reqs.filter((r) => r.admitted).length;
  return { calls, overshoot: spent0 + calls - P.budget, refused: N - calls, locals, lost: commits0.length - known,
    latencies: reqs.filter((r) => r.latency !== undefined).map((r) => r.latency) };
}

function budgetRuns(h, scenario, cfgName) {
  const rand = rng(P.seed * 1000003 + h * 101 + scenario.length * 7 + cfgName.length);
  const cfg = CONFIGS[cfgName];
  const over = [], calls = [], locals = [], lost = [];
  for (let t = 0; t < P.trials; t++) {
    const r = burst(rand, h, scenario, cfg);
    over.push(r.overshoot); calls.push(r.calls); locals.push(r.locals ?? 0); lost.push(r.lost ?? 0);
  }
  const bound = scenario === 'normal' || h === 1 ? 1 : h;
  const maxOver = Math.max(...over);
  return {
    h, scenario, config: cfgName, bound,
    overshoot: { p50: pct(over, 50), p99: pct(over, 99), max: maxOver, mean: over.reduce((a, b) => a + b, 0) / over.length },
    calls: { p50: pct(calls, 50), max: Math.max(...calls) },
    localGrants: { mean: locals.reduce((a, b) => a + b, 0) / locals.length, max: Math.max(...locals) },
    lostCommits: { mean: lost.reduce((a, b) => a + b, 0) / lost.length, max: Math.max(...lost) },
    withinBound: maxOver <= bound + 1e-9,
  };
}

// ---- 3. latency per miss --------------------------------------------------------

function latencyRun(h, cfgName) {
  const cfg = CONFIGS[cfgName];
  const rand = rng(P.seed * 7919 + h * 13 + cfgName.length);
  const serv = () => Math.max(0.001, lognormal(rand, cfg.incr) - cfg.echo[0]);
  // Jobs at the master: reservations (whose latency we keep) and settlements.
  const jobs = [];
  let t = 0;
  for (let i = 0; i < P.latencyMisses; i++) {
    t += expo(rand, 1000 / P.missRate);
    const host = Math.floor(rand() * h);
    const one = host === 0 ? 0 : rtt(rand, cfg) / 2;
    jobs.push({ at: t + one, t, one, keep: true });
    jobs.push({ at: t + P.upstreamS * 1000 + one, one, keep: false }); // settlement
  }
  jobs.sort((a, b) => a.at - b.at);
  let free = 0, busy = 0;
  const lat = [];
  for (const j of jobs) {
    const s = serv();
    const done = Math.max(free, j.at) + s;
    busy += s; free = done;
    if (j.keep) lat.push(done + j.one - j.t);
  }
  return { h, config: cfgName, p50: pct(lat, 50), p99: pct(lat, 99), mean: lat.reduce((a, b) => a + b, 0) / lat.length,
    masterBusy: busy / free, capacityMissesPerS: 1000 / (2 * (cfg.incr[0] - cfg.echo[0])) };
}
function rtt(rand, cfg) { return lognormal(rand, cfg.echo) + P.netRttMs; }

// ---- main ---------------------------------------------------------------------------

const t0 = Date.now();
const out = { params: P, measured: F, hit: [], budget: [], latency: [] };
const f1 = (x) => (x === null ? '-' : (100 * x).toFixed(1));

const { keys, distinct } = zipfStream();
out.stream = { distinct, repeatCeiling: 1 - distinct / P.requests };
console.log(`# hit rate: ${P.requests} requests over ${P.days} d, ${P.prompts} prompts Zipf s=${P.zipf} ` +
  `(${distinct} distinct: no cache can hit more than ${f1(1 - distinct / P.requests)} %), ` +
  `LRU ${P.cache} entries per host, TTL ${P.ttl} s`);
const hitLines = ['| hosts | hash on key: hit % | round robin: hit % | round robin / hash | 2nd day: hash / rr % | busiest host (hash), x mean |',
  '|---|---|---|---|---|---|'];
for (const h of P.hosts) {
  const a = hitRate(keys, h, 'hash');
  const b = hitRate(keys, h, 'rr');
  out.hit.push({ h, hash: a, rr: b });
  hitLines.push(`| ${h} | ${f1(a.hit)} | ${f1(b.hit)} | ${(b.hit / a.hit).toFixed(2)} | ${f1(a.hitSecondHalf)} / ${f1(b.hitSecondHalf)} | ${a.maxLoad.toFixed(2)} |`);
}
console.log(hitLines.join('\n'));

console.log(`\n# budget: ${P.concurrent} concurrent requests (within ${P.spreadMs} ms) over H hosts, budget ${P.budget} requests' worth, ` +
  `${P.trials} trials each; overshoot in reservations (requests' worth) beyond the budget`);
const budLines = ['| hosts | scenario | ack | upstream calls p50 / max | overshoot p50 / p99 / max | worst case (design) | local grants mean / max | lost commits max |',
  '|---|---|---|---|---|---|---|---|'];
let broken = false;
const scen = [['normal', 'quorum+nodelay'], ['crash', 'quorum+nodelay'], ['hung', 'quorum+nodelay'], ['crash', 'none']];
for (const [s, c] of scen) {
  for (const h of P.hosts) {
    if (h === 1 && s !== 'normal') continue; // one host: no master to lose but itself
    const r = budgetRuns(h, s, c);
    out.budget.push(r);
    const claimed = c !== 'none';
    if (claimed && !r.withinBound) broken = true;
    budLines.push(`| ${h} | ${s} | ${c === 'none' ? 'NONE' : 'QUORUM'} | ${r.calls.p50} / ${r.calls.max} | ` +
      `${r.overshoot.p50.toFixed(2)} / ${r.overshoot.p99.toFixed(2)} / ${r.overshoot.max.toFixed(2)} | ` +
      `${r.bound}${claimed ? (r.withinBound ? '' : ' BROKEN') : ' (not guaranteed)'} | ${r.localGrants.mean.toFixed(2)} / ${r.localGrants.max} | ${r.lostCommits.max} |`);
  }
}
console.log(budLines.join('\n'));

console.log(`\n# reservation latency added per miss: ${P.missRate} misses/s Poisson over H hosts (+ a settlement each, ` +
  `${P.upstreamS} s later), ms; network round trip added: ${P.netRttMs} ms`);
const cfgNames = Object.keys(CONFIGS);
const latLines = [`| hosts | ${cfgNames.map((c) => `${c}: p50 / p99 ms`).join(' | ')} |`, `|---|${cfgNames.map(() => '---').join('|')}|`];
for (const h of P.hosts) {
  const cells = cfgNames.map((c) => {
    const r = latencyRun(h, c);
    out.latency.push(r);
    return r.masterBusy > 0.98 ? `saturated: ~${r.capacityMissesPerS.toFixed(0)} misses/s max; alone ~${CONFIGS[c].incr[0].toFixed(0)} ms` : `${r.p50.toFixed(3)} / ${r.p99.toFixed(3)}`;
  });
  latLines.push(`| ${h} | ${cells.join(' | ')} |`);
}
console.log(latLines.join('\n'));
for (const c of cfgNames) {
  const cap = 1000 / (2 * (CONFIGS[c].incr[0] - CONFIGS[c].echo[0]));
  console.log(`  ${c} (${CONFIGS[c].text}): the master's queue handles ~${cap.toFixed(0)} misses/s for the whole group (reserve + settle)`);
}

out.tables = { hit: hitLines.join('\n'), budget: budLines.join('\n'), latency: latLines.join('\n') };
out.boundsHeld = !broken;
out.seconds = (Date.now() - t0) / 1000;
fs.mkdirSync(path.join(ROOT, 'tests', 'out'), { recursive: true });
fs.writeFileSync(path.join(ROOT, 'tests', 'out', 'bench-cluster_model.json'), `${JSON.stringify(out, null, 2)}\n`);
console.log(`\nbudget bounds (normal 1, no master H, ack QUORUM): ${broken ? 'BROKEN' : 'held in every trial'}; ` +
  `${out.seconds.toFixed(1)} s; tests/out/bench-cluster_model.json`);
process.exit(broken ? 1 : 0);
