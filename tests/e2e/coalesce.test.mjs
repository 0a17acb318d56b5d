// Request coalescing (issue 3): identical requests in flight at the same
// time, in any process or thread of the pool, share one upstream call. The
// first is the leader (X-Cache MISS, or BYPASS when not cacheable); the
// others follow it (X-Cache COALESCED) and get its stream live, byte for
// byte, or the assembled answer in their own form. Failures: an upstream
// error before the first byte reaches every follower as it reached the
// leader's client; a cut stream ends every follower's stream with an error
// event; the leader's client leaving does not stop the call; the leader's
// process dying (SIGKILL) never leaves a follower hanging or splices two
// answers. Coalescing respects the cache scope and namespace and
// [coalesce] mode / max_buffer / max_wait, and leaves nothing behind that
// blocks a later identical request.
//
// The suites run the pool with 4 processes x 32 threads, so 100+
// concurrent streams fit (the SIGKILL suite uses 4 x 6, see there). Behind
// Apache's mod_fcgid (processModel 'fcgid') there is no pool: Apache runs
// one relay.fcgi process per request in flight, and each suite's
// `concurrency` has the harness get that many running before the tests.

import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import {
  relaySuite, chatBody, uniq, sleep, KEY_A, KEY_B, REQUEST_TIMEOUT, TEST_TIMEOUT,
} from './harness.mjs';
import { assertOpenAIError, assertValidChatStream, parseSse, streamPayloads } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const POOL = { workers: 4, threads: 32 };

// Wall-clock ms with sub-ms precision; the fake stamps call.writes the same way.
const now = () => performance.timeOrigin + performance.now();

const tally = (xs) => xs.reduce((o, x) => ((o[x] = (o[x] ?? 0) + 1), o), {});
const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
const ms = (x) => `${Math.round(x)} ms`;

// SSE events (blank-line terminated blocks) the fake has written for a call.
const eventsSent = (call) => (call ? (call.sent.match(/\n\n/g) ?? []).length : 0);

// Polls cond() every 20 ms until it returns a truthy value, which is
// returned; fails with what() after ms.
async function until(cond, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(20);
  }
}

// Resolves with p's value, or fails after timeoutMs.
async function within(p, timeoutMs, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

// Starts POST /v1/chat/completions and reads the answer to its end in the
// background, noting when each read arrived. Returns {done, firstEvent,
// abort}: done resolves (never rejects) to the outcome {status, cache, key,
// ctype, text, reads: [{at, bytes}], firstEventAt, endAt, error (the body or
// connection failed), timedOut (no end within bound), aborted};
// firstEvent resolves once the first SSE event (for a JSON answer: the
// first bytes) is in, or the request ended.
function startChat(relay, body, { key = KEY_A, headers = {}, bound = REQUEST_TIMEOUT } = {}) {
  const ctrl = new AbortController();
  let firstIn;
  const firstEvent = new Promise((resolve) => {
    firstIn = resolve;
  });
  const out = {
    status: 0, cache: null, key: null, ctype: null, text: '', reads: [],
    firstEventAt: null, endAt: null, error: null, timedOut: false, aborted: false, startAt: now(),
  };
  const h = { 'content-type': 'application/json', ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  const done = (async () => {
    try {
      const res = await fetch(`${relay.base}/v1/chat/completions`, {
        method: 'POST',
        headers: h,
        body: typeof body === 'string' ? body : JSON.stringify(body),
        signal: AbortSignal.any([ctrl.signal, AbortSignal.timeout(bound)]),
      });
      out.status = res.status;
      out.cache = res.headers.get('x-cache');
      out.key = res.headers.get('x-relay-key');
      out.ctype = res.headers.get('content-type') ?? '';
      const sse = out.ctype.startsWith('text/event-stream');
      const decoder = new TextDecoder();
      for await (const part of res.body) {
        out.text += decoder.decode(part, { stream: true });
        const at = now();
        out.reads.push({ at, bytes: out.text.length });
        if (out.firstEventAt === null && (!sse || out.text.includes('\n\n'))) {
          out.firstEventAt = at;
          firstIn();
        }
      }
    } catch (err) {
      if (ctrl.signal.aborted) out.aborted = true;
      else if (err.name === 'TimeoutError' || err.cause?.name === 'TimeoutError') {
        out.timedOut = true;
        // As relay.fetch does: a relay that hung once fails later tests at once.
        relay.unresponsive ??= `POST /v1/chat/completions got no complete answer within ${bound} ms`;
      } else out.error = err;
    }
    out.endAt = now();
    firstIn();
    return out;
  })();
  return { done, firstEvent, abort: () => ctrl.abort(), out };
}

// Starts n identical requests at once; resolves to their outcomes.
const chatAll = (relay, n, body, opts) =>
  Promise.all(Array.from({ length: n }, () => startChat(relay, body, opts).done));

// A request that completed (not hung, not cut in transit).
function assertEnded(r, what) {
  assert.equal(r.timedOut, false, `${what}: no end within its bound (got ${r.text.length} bytes: ${JSON.stringify(r.text.slice(-200))})`);
  assert.equal(r.error, null, `${what}: ${r.error?.message} (cause: ${r.error?.cause?.message ?? r.error?.cause?.code})`);
}

// Comment blocks (": ping" heartbeats) dropped, as clients drop them; only
// for streams that failed, where a follower may have been kept waiting.
const withoutComments = (text) => text.replace(/(^|\n\n)(:[^\n]*\n)+\n/g, '$1');

// A stream that ends with an OpenAI error event and no [DONE]. Returns the
// bytes before the error event (comments dropped), its chunks and the error.
function assertStreamEndsWithError(text, what = 'stream') {
  const clean = withoutComments(text);
  const { payloads, done } = streamPayloads(clean);
  assert.equal(done, false, `${what}: a failed stream must not end with data: [DONE]:\n${clean.slice(-300)}`);
  assert.ok(payloads.length > 0, `${what}: no events at all: ${JSON.stringify(text)}`);
  const error = assertOpenAIError(payloads.at(-1), `${what}: the last stream event`);
  const chunks = payloads.slice(0, -1);
  for (const p of chunks) assert.equal(p.object, 'chat.completion.chunk', `${what}: unexpected event ${JSON.stringify(p)}`);
  const events = parseSse(clean);
  const last = events.at(-1).raw;
  const before = clean.slice(0, clean.lastIndexOf(last));
  return { before, chunks, error };
}

// One upstream answer's chunks only: every chunk carries the same id.
function assertOneId(chunks, what) {
  const ids = new Set(chunks.map((c) => c.id));
  assert.ok(ids.size <= 1, `${what}: chunks of ${ids.size} upstream answers spliced together (${[...ids].join(', ')})`);
  return [...ids][0];
}

// A chat.completion JSON answer; returns it.
function assertCompletion(r, what) {
  assertEnded(r, what);
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
  assert.match(r.ctype, /^application\/json/, `${what}: content-type ${r.ctype}`);
  const c = JSON.parse(r.text);
  assert.equal(c.object, 'chat.completion', `${what}: ${r.text.slice(0, 300)}`);
  return c;
}

// The answer of a request sent once the flight ended: it must not wait on
// anything left of the flight (nor be a follower of a dead one).
async function assertServedPromptly(relay, body, { key = KEY_A, headers = {}, label = 'later request' } = {}) {
  const t0 = now();
  const r = await startChat(relay, body, { key, headers, bound: 5000 }).done;
  assertEnded(r, label);
  assert.equal(r.status, 200, `${label}: ${r.status} ${r.text}`);
  if (body.stream) assertValidChatStream(r.text);
  else assertCompletion(r, label);
  return { ...r, took: now() - t0 };
}

// ---- which process is which ------------------------------------------------

// The processes that serve requests: the pool's workers, or the relay.fcgi
// processes Apache started (processModel 'fcgid', one request at a time each).
const servers = (relay) => (relay.processModel === 'fcgid' ? relay.fcgidPids() : relay.workerPids());

// Whether a unix socket path is one relay.fcgi accepts FastCGI connections
// on: the pool's, or under mod_fcgid each process's own, in Apache's
// FcgidIPCDir.
const isRelaySocket = (relay, p) =>
  (relay.processModel === 'fcgid' ? p.startsWith(`${relay.fcgidSocketDir}/`) : p === relay.socket);

// Socket inodes of a process's open file descriptors.
function socketInodes(pid) {
  const out = new Set();
  let fds = [];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out; // gone
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

// FastCGI connections (one per request in progress: the fronts open one per
// request) held by each worker: the accepted unix sockets on the pool's
// socket path (under mod_fcgid, the processes' own), from /proc/net/unix,
// matched to each worker's descriptors.
function fcgiConnections(relay) {
  const accepted = new Set();
  for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path; St 03 = connected.
    if (f.length >= 8 && isRelaySocket(relay, f[7]) && f[5] === '03') accepted.add(f[6]);
  }
  const out = {};
  for (const pid of servers(relay)) {
    out[pid] = [...socketInodes(pid)].filter((i) => accepted.has(i)).length;
  }
  return out;
}

// The worker holding the TCP connection whose local port is `port` (the
// upstream connection the fake saw as call.remotePort), or null.
function workerWithTcpPort(relay, port) {
  const inodes = new Set();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let table = '';
    try {
      table = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of table.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const local = parseInt(f[1].split(':').at(-1), 16);
      const remote = parseInt(f[2].split(':').at(-1), 16);
      if (local === port && remote === relay.fake.port) inodes.add(f[9]);
    }
  }
  for (const pid of servers(relay)) {
    for (const i of socketInodes(pid)) if (inodes.has(i)) return pid;
  }
  return null;
}

// ---------------------------------------------------------------------------

relaySuite('coalescing', { ini: { fcgi: POOL }, concurrency: 100 }, (relay) => {
  // Every request body sent below, re-sent by the last test.
  const used = [];
  const use = (body, opts = {}) => {
    used.push({ body, ...opts });
    return body;
  };
  beforeEach(() => relay.fake?.reset());

  test('100 concurrent identical streams: 1 upstream call, 1 MISS + 99 COALESCED, every body byte for byte, live', T, async () => {
    const m = uniq('hundred');
    const body = use(chatBody(m, { stream: true }));
    relay.fake.enqueue({ chunks: 20, chunkDelayMs: 50 }); // 23 events over ~1.1 s
    const rs = await chatAll(relay, 100, body);

    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, `${calls.length} upstream calls for 100 identical requests`);
    const [call] = calls;
    assert.equal(assertValidChatStream(call.sent).content, `Echo: ${m}`);
    rs.forEach((r, i) => {
      assertEnded(r, `client ${i}`);
      assert.equal(r.status, 200, `client ${i}: ${r.status} ${r.text}`);
      assert.match(r.ctype, /^text\/event-stream/, `client ${i}`);
      assert.equal(r.text, call.sent, `client ${i} (X-Cache ${r.cache}) did not get the upstream's bytes`);
    });
    assert.deepEqual(tally(rs.map((r) => r.cache)), { MISS: 1, COALESCED: 99 });
    assert.equal(new Set(rs.map((r) => r.key)).size, 1, 'one X-Relay-Key');

    // Live: the chunks reached the clients as the upstream sent them, not
    // after its end.
    const upStart = call.writes[0].at;
    const upEnd = call.writes.at(-1).at;
    const firsts = rs.map((r) => r.firstEventAt - upStart).sort((a, b) => a - b);
    const early = rs.filter((r) => r.firstEventAt < upEnd).length;
    assert.ok(early >= 90,
      `only ${early} of 100 clients had their first chunk before the upstream ended (upstream took ${ms(upEnd - upStart)}; first chunk after the upstream's first: median ${ms(firsts[50])}, max ${ms(firsts[99])})`);
    const spread = rs.filter((r) => r.reads.at(-1).at - r.firstEventAt >= (upEnd - upStart) / 2).length;
    assert.ok(spread >= 90, `only ${spread} of 100 clients got their chunks spread over at least half the upstream's ${ms(upEnd - upStart)}: the others got them in a burst`);
  });

  test('a late joiner at ~50 % of the stream gets every chunk already sent, then the live ones, byte for byte', T, async () => {
    const m = uniq('late-joiner');
    const body = use(chatBody(m, { stream: true }));
    relay.fake.enqueue({ chunks: 20, chunkDelayMs: 50 });
    const leader = startChat(relay, body);
    await relay.fake.waitForCalls(() => eventsSent(relay.fake.callsFor(m)[0]) >= 11, 5000);
    const late = await startChat(relay, body).done;
    const lead = await leader.done;

    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, `${calls.length} upstream calls`);
    const [call] = calls;
    assertEnded(lead, 'leader');
    assert.equal(lead.cache, 'MISS');
    assert.equal(lead.text, call.sent);
    assertEnded(late, 'late joiner');
    assert.equal(late.status, 200, late.text);
    assert.equal(late.cache, 'COALESCED');
    assert.equal(late.text, call.sent, 'the late joiner got the whole stream byte for byte');
    const upEnd = call.writes.at(-1).at;
    assert.ok(late.firstEventAt < upEnd,
      `the late joiner's first chunk came ${ms(late.firstEventAt - upEnd)} after the upstream ended: it was not served live`);
    const liveReads = late.reads.filter((x) => x.at > late.firstEventAt + 20).length;
    assert.ok(liveReads >= 5, `the ~11 chunks sent after the join came in ${liveReads} later reads: not as they arrived`);
  });

  test('a streaming leader: stream followers get its bytes, non-stream followers the assembled chat.completion', T, async () => {
    const m = uniq('mixed-stream-leader');
    const streamBody = use(chatBody(m, { stream: true }));
    const jsonBody = use(chatBody(m));
    relay.fake.enqueue({ chunks: 10, chunkDelayMs: 60 });
    const leader = startChat(relay, streamBody);
    await relay.fake.waitForCalls(() => relay.fake.callsFor(m).length === 1, 5000);
    await within(leader.firstEvent, 5000, "the leader's first chunk");
    const followers = [
      ...Array.from({ length: 4 }, () => startChat(relay, streamBody)),
      ...Array.from({ length: 4 }, () => startChat(relay, jsonBody)),
    ];
    const lead = await leader.done;
    const rs = await Promise.all(followers.map((f) => f.done));

    assert.equal(relay.fake.callsFor(m).length, 1);
    const [call] = relay.fake.callsFor(m);
    assertEnded(lead, 'leader');
    assert.equal(lead.cache, 'MISS');
    const streamed = assertValidChatStream(call.sent);
    rs.slice(0, 4).forEach((r, i) => {
      assertEnded(r, `stream follower ${i}`);
      assert.equal(r.cache, 'COALESCED');
      assert.equal(r.text, call.sent, `stream follower ${i}`);
    });
    rs.slice(4).forEach((r, i) => {
      const c = assertCompletion(r, `non-stream follower ${i}`);
      assert.equal(r.cache, 'COALESCED');
      assert.equal(c.id, streamed.id);
      assert.equal(c.choices[0].message.role, 'assistant');
      assert.equal(c.choices[0].message.content, streamed.content);
      assert.equal(c.choices[0].finish_reason, 'stop');
    });
  });

  test('a non-stream leader: stream followers get valid chunks ending data: [DONE], non-stream followers its JSON', T, async () => {
    const m = uniq('mixed-json-leader');
    const streamBody = use(chatBody(m, { stream: true }));
    const jsonBody = use(chatBody(m));
    relay.fake.enqueue({ headerDelayMs: 1000 }); // followers join while the leader waits
    const leader = startChat(relay, jsonBody);
    await relay.fake.waitForCalls(() => relay.fake.callsFor(m).length === 1, 5000);
    const rs = await Promise.all([
      ...Array.from({ length: 3 }, () => startChat(relay, streamBody).done),
      ...Array.from({ length: 2 }, () => startChat(relay, jsonBody).done),
    ]);
    const lead = await leader.done;

    assert.equal(relay.fake.callsFor(m).length, 1);
    const [call] = relay.fake.callsFor(m);
    const a = assertCompletion(lead, 'leader');
    assert.equal(lead.cache, 'MISS');
    assert.equal(lead.text, call.sent);
    rs.slice(0, 3).forEach((r, i) => {
      assertEnded(r, `stream follower ${i}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.cache, 'COALESCED');
      assert.match(r.ctype, /^text\/event-stream/);
      assert.ok(r.text.endsWith('data: [DONE]\n\n'), `stream follower ${i}: ${r.text.slice(-200)}`);
      const got = assertValidChatStream(r.text);
      assert.equal(got.id, a.id);
      assert.equal(got.content, a.choices[0].message.content);
      assert.equal(got.finishReason, 'stop');
    });
    rs.slice(3).forEach((r, i) => {
      const c = assertCompletion(r, `non-stream follower ${i}`);
      assert.equal(r.cache, 'COALESCED');
      assert.deepEqual(c, a);
    });
  });

  test('an upstream 500 before the first byte: every follower gets the same status and body; nothing cached', T, async () => {
    const m = uniq('leader-500');
    const streamBody = use(chatBody(m, { stream: true }));
    const jsonBody = use(chatBody(m));
    const upstreamBody = JSON.stringify({ error: { message: `shared failure ${m}`, type: 'server_error', param: null, code: null } });
    relay.fake.enqueue({ headerDelayMs: 1000, status: 500, body: upstreamBody });
    const leader = startChat(relay, streamBody);
    await relay.fake.waitForCalls(() => relay.fake.callsFor(m).length === 1, 5000);
    const rs = await Promise.all([
      ...Array.from({ length: 3 }, () => startChat(relay, streamBody).done),
      ...Array.from({ length: 3 }, () => startChat(relay, jsonBody).done),
    ]);
    const lead = await leader.done;

    assert.equal(relay.fake.callsFor(m).length, 1, 'the followers did not call upstream themselves');
    assertEnded(lead, 'leader');
    assert.equal(lead.status, 500);
    assert.equal(lead.text, upstreamBody);
    rs.forEach((r, i) => {
      assertEnded(r, `follower ${i}`);
      assert.equal(r.status, 500, `follower ${i}: ${r.status} ${r.text}`);
      assert.equal(r.text, upstreamBody, `follower ${i} got another body`);
      assert.match(r.ctype, /^application\/json/, `follower ${i}`);
      assert.notEqual(r.cache, 'HIT');
    });

    // Nothing cached, nothing left in flight: the next request calls upstream.
    const next = await startChat(relay, streamBody).done;
    assertEnded(next, 'next request');
    assert.equal(next.status, 200, next.text);
    assert.equal(next.cache, 'MISS');
    assert.equal(assertValidChatStream(next.text).content, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a stream cut mid-way ends every follower with an error event; nothing cached', T, async () => {
    const m = uniq('cut');
    const streamBody = use(chatBody(m, { stream: true }));
    const jsonBody = use(chatBody(m));
    relay.fake.enqueue({ chunks: 10, chunkDelayMs: 60, cutAfter: 6 });
    const leader = startChat(relay, streamBody);
    await relay.fake.waitForCalls(() => eventsSent(relay.fake.callsFor(m)[0]) >= 2, 5000);
    const rs = await Promise.all([
      ...Array.from({ length: 5 }, () => startChat(relay, streamBody).done),
      ...Array.from({ length: 2 }, () => startChat(relay, jsonBody).done),
    ]);
    const lead = await leader.done;

    assert.equal(relay.fake.callsFor(m).length, 1);
    const [call] = relay.fake.callsFor(m);
    assertEnded(lead, 'leader');
    assert.equal(lead.status, 200);
    const l = assertStreamEndsWithError(lead.text, "the leader's stream");
    assert.equal(l.before, call.sent, "the leader's client got the 6 chunks, then the error");
    rs.slice(0, 5).forEach((r, i) => {
      const what = `stream follower ${i}`;
      assertEnded(r, what);
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      assert.equal(r.cache, 'COALESCED');
      const f = assertStreamEndsWithError(r.text, what);
      assert.equal(f.before, call.sent, `${what}: the chunks before the error are the upstream's`);
    });
    rs.slice(5).forEach((r, i) => {
      const what = `non-stream follower ${i}`;
      assertEnded(r, what);
      assert.ok(r.status >= 500, `${what}: a cut answer must not be a success: ${r.status} ${r.text}`);
      assertOpenAIError(r.text, what);
    });

    const next = await startChat(relay, streamBody).done;
    assertEnded(next, 'next request');
    assert.equal(next.status, 200, next.text);
    assert.equal(next.cache, 'MISS', 'the cut stream was not cached');
    assert.equal(assertValidChatStream(next.text).content, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test("the leader's client leaves mid-stream: the call goes on, followers complete, the answer is cached", T, async () => {
    const m = uniq('leader-leaves');
    const body = use(chatBody(m, { stream: true }));
    relay.fake.enqueue({ chunks: 20, chunkDelayMs: 50 });
    const leader = startChat(relay, body);
    await within(leader.firstEvent, 5000, "the leader's first chunk");
    const followers = Array.from({ length: 5 }, () => startChat(relay, body));
    await within(Promise.all(followers.map((f) => f.firstEvent)), 5000, "the followers' first chunks");
    leader.abort();
    const lead = await leader.done;
    const rs = await Promise.all(followers.map((f) => f.done));

    assert.equal(lead.aborted, true);
    assert.ok(!lead.text.includes('[DONE]'), 'the leader left before the end');
    const [call] = relay.fake.callsFor(m);
    assert.ok(call, 'the upstream was called');
    await until(() => call.writes.length && (call.aborted || call.sent.endsWith('data: [DONE]\n\n')), 5000, 'the upstream call to end');
    assert.equal(call.aborted, false, 'the upstream call was abandoned with followers attached');
    rs.forEach((r, i) => {
      assertEnded(r, `follower ${i}`);
      assert.equal(r.cache, 'COALESCED');
      assert.equal(r.text, call.sent, `follower ${i} got the whole stream`);
    });
    // Stored: the next request is a HIT, without another upstream call.
    await sleep(100);
    const next = await startChat(relay, body).done;
    assertEnded(next, 'next request');
    assert.equal(next.cache, 'HIT');
    assert.equal(next.text, call.sent);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('two credentials never share a call ([cache] scope = credential), nor two namespaces', T, async () => {
    const m = uniq('scope');
    const body = use(chatBody(m, { stream: true }));
    use(body, { key: KEY_B });
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 50 });
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 50 });
    const rs = await Promise.all([
      ...Array.from({ length: 3 }, () => startChat(relay, body, { key: KEY_A }).done),
      ...Array.from({ length: 3 }, () => startChat(relay, body, { key: KEY_B }).done),
    ]);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 2, `${calls.length} upstream calls for two credentials`);
    const callA = calls.find((c) => c.headers.authorization === `Bearer ${KEY_A}`);
    const callB = calls.find((c) => c.headers.authorization === `Bearer ${KEY_B}`);
    assert.ok(callA && callB, 'one call with each credential');
    for (const [group, call] of [[rs.slice(0, 3), callA], [rs.slice(3), callB]]) {
      group.forEach((r, i) => {
        assertEnded(r, `client ${i}`);
        assert.equal(r.text, call.sent, `a client of ${call.headers.authorization} got another call's answer`);
      });
      assert.deepEqual(tally(group.map((r) => r.cache)), { MISS: 1, COALESCED: 2 });
    }
    assert.notEqual(rs[0].key, rs[3].key);

    const n = uniq('namespace');
    const nbody = chatBody(n, { stream: true });
    use(nbody, { headers: { 'x-relay-namespace': 'ns-1' } });
    use(nbody, { headers: { 'x-relay-namespace': 'ns-2' } });
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 50 });
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 50 });
    const ns = await Promise.all([
      ...Array.from({ length: 2 }, () => startChat(relay, nbody, { headers: { 'x-relay-namespace': 'ns-1' } }).done),
      ...Array.from({ length: 2 }, () => startChat(relay, nbody, { headers: { 'x-relay-namespace': 'ns-2' } }).done),
    ]);
    ns.forEach((r, i) => assertEnded(r, `namespace client ${i}`));
    assert.equal(relay.fake.callsFor(n).length, 2, 'two namespaces, two upstream calls');
    assert.equal(ns[0].text, ns[1].text);
    assert.equal(ns[2].text, ns[3].text);
    assert.notEqual(ns[0].text, ns[2].text);
  });

  test('under mode = cacheable, a request that is not cacheable (temperature 0.7) is not coalesced', T, async () => {
    const m = uniq('not-cacheable');
    const body = use(chatBody(m, { stream: true, temperature: 0.7 }));
    for (let i = 0; i < 5; i++) relay.fake.enqueue({ chunks: 5, chunkDelayMs: 50 });
    const rs = await chatAll(relay, 5, body);
    rs.forEach((r, i) => {
      assertEnded(r, `client ${i}`);
      assert.equal(r.cache, 'BYPASS');
      assertValidChatStream(r.text);
    });
    assert.equal(relay.fake.callsFor(m).length, 5);
    assert.equal(new Set(rs.map((r) => r.text)).size, 5, 'each client got its own call');
  });

  test('afterwards every request above is answered at once: no in-flight record is left to block it', T, async () => {
    assert.ok(used.length >= 10);
    for (const [i, u] of used.entries()) {
      const label = `request ${i} again (${u.body.messages[1].content.split(' ')[0]}, stream ${Boolean(u.body.stream)})`;
      const r = await assertServedPromptly(relay, u.body, { ...u, label });
      assert.ok(['HIT', 'MISS', 'BYPASS'].includes(r.cache), `${label}: X-Cache ${r.cache}`);
      // no-cache skips the lookup: the request goes through the in-flight table.
      const headers = { ...(u.headers ?? {}), 'cache-control': 'no-cache' };
      const f = await assertServedPromptly(relay, u.body, { ...u, headers, label: `${label} with no-cache` });
      // (COALESCED: it may still join the answer another request just finished.)
      assert.ok(['MISS', 'BYPASS', 'COALESCED'].includes(f.cache), `${label} with no-cache: X-Cache ${f.cache}`);
    }
    relay.assertAlive();
  });
});

relaySuite('coalescing: an upstream timeout before the first byte', {
  concurrency: 7,
  ini: { fcgi: POOL, 'upstream.openai': { connect_timeout: 1, idle_timeout: 1, timeout: 10 } },
}, (relay) => {
  beforeEach(() => relay.fake?.reset());

  test('every follower gets the leader\'s 504 (same status, same body); nothing cached; then a new call', T, async () => {
    const m = uniq('hang');
    const streamBody = chatBody(m, { stream: true });
    const jsonBody = chatBody(m);
    relay.fake.enqueue({ hang: true });
    const leader = startChat(relay, jsonBody);
    await relay.fake.waitForCalls(() => relay.fake.callsFor(m).length === 1, 5000);
    const rs = await Promise.all([
      ...Array.from({ length: 3 }, () => startChat(relay, streamBody).done),
      ...Array.from({ length: 3 }, () => startChat(relay, jsonBody).done),
    ]);
    const lead = await leader.done;
    assertEnded(lead, 'leader');
    assert.equal(lead.status, 504, lead.text);
    assertOpenAIError(lead.text, "the leader's answer");
    assert.equal(relay.fake.callsFor(m).length, 1, 'the followers did not call upstream themselves');
    rs.forEach((r, i) => {
      assertEnded(r, `follower ${i}`);
      assert.equal(r.status, 504, `follower ${i}: ${r.status} ${r.text}`);
      assert.equal(r.text, lead.text, `follower ${i} got another body`);
    });
    const next = await assertServedPromptly(relay, streamBody, { label: 'next request' });
    assert.equal(next.cache, 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });
});

relaySuite('coalescing: upstream unreachable', { upstream: 'dead', ini: { fcgi: POOL }, concurrency: 20 }, (relay) => {
  test('20 concurrent identical requests all get the same 502; none is left waiting; a later one fails at once too', T, async () => {
    const body = chatBody(uniq('dead'), { stream: true });
    const rs = await chatAll(relay, 20, body);
    rs.forEach((r, i) => {
      assertEnded(r, `client ${i}`);
      assert.equal(r.status, 502, `client ${i}: ${r.status} ${r.text}`);
      assertOpenAIError(r.text, `client ${i}`);
    });
    assert.equal(new Set(rs.map((r) => r.text)).size, 1, 'every client got the same body');
    const t0 = now();
    const again = await startChat(relay, body, { bound: 5000 }).done;
    assertEnded(again, 'later request');
    assert.equal(again.status, 502);
    assert.ok(now() - t0 < 3000, `the later request took ${ms(now() - t0)}`);
    assert.equal(relay.fake.calls.length, 0);
  });
});

// No `concurrency`: behind mod_fcgid Apache runs one relay.fcgi process when
// the burst comes and starts the others on demand, a second or more later
// (the harness warms the other suites up, see warmFcgid in harness.mjs).
// Those that reach Relay after the leader's answer was stored are HITs; all
// that matters holds all the same.
relaySuite('coalescing: a burst on a cold relay', { ini: { fcgi: POOL } }, (relay) => {
  test('20 identical streams at once on a just started relay: one upstream call, every client its bytes, none left waiting', T, async () => {
    const m = uniq('cold-burst');
    const body = chatBody(m, { stream: true });
    relay.fake.enqueue({ chunks: 20, chunkDelayMs: 50 });
    const rs = await chatAll(relay, 20, body);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, `${calls.length} upstream calls for 20 identical requests`);
    rs.forEach((r, i) => {
      assertEnded(r, `client ${i}`);
      assert.equal(r.status, 200, `client ${i}: ${r.status} ${r.text}`);
      assert.equal(r.text, calls[0].sent, `client ${i} (X-Cache ${r.cache}) did not get the upstream's bytes`);
    });
    const t = tally(rs.map((r) => r.cache));
    assert.equal(t.MISS, 1, JSON.stringify(t));
    assert.equal((t.COALESCED ?? 0) + (t.HIT ?? 0), 19, JSON.stringify(t));
  });
});

// The pool here has few threads per process (4 x 6): the leader's process
// can hold at most 5 followers, so most followers are in other processes.
// How each process is found: the fake records the port its upstream
// connection came from (call.remotePort), and the worker holding that TCP
// socket (/proc/net/tcp inode among its descriptors) is the leader's. Each
// request in progress holds one accepted FastCGI connection in its worker,
// so followers are started one at a time and each is placed in the worker
// whose connection count rose. Behind mod_fcgid each process serves one
// request: the leader is alone in its process, every follower elsewhere.
relaySuite('coalescing: the leader process is killed', { ini: { fcgi: { workers: 4, threads: 6 } }, concurrency: 17 }, (relay) => {
  test("SIGKILL of the leader's process mid-stream: no follower hangs, none is spliced; the rest take over or end with an error", { timeout: 60000 }, async () => {
    const m = uniq('kill-leader');
    const streamBody = chatBody(m, { stream: true });
    const jsonBody = chatBody(m);
    const bound = 20000;
    relay.fake.enqueue({ chunks: 60, chunkDelayMs: 100 }); // ~6 s
    const leader = startChat(relay, streamBody, { bound });
    await relay.fake.waitForCalls(() => relay.fake.callsFor(m).length === 1, 5000);
    await within(leader.firstEvent, 5000, "the leader's first chunk");
    const [call1] = relay.fake.callsFor(m);
    const victim = workerWithTcpPort(relay, call1.remotePort);
    assert.ok(victim, `no worker holds the upstream connection from port ${call1.remotePort}`);
    let conns = await until(() => {
      const c = fcgiConnections(relay);
      return sum(c) === 1 && c;
    }, 5000, () => `the leader's request in progress (FastCGI connections per worker: ${JSON.stringify(fcgiConnections(relay))})`);
    assert.equal(conns[victim], 1, `the leader's request is not in ${victim}, the process holding its upstream connection: ${JSON.stringify(conns)}`);

    const clients = [{ what: 'leader', stream: true, c: leader, pid: victim }];
    for (let i = 0; i < 16; i++) {
      const stream = i % 2 === 0;
      const c = startChat(relay, stream ? streamBody : jsonBody, { bound });
      const what = `${stream ? 'stream' : 'non-stream'} follower ${i >> 1}`;
      const prev = conns;
      conns = await until(() => {
        const x = fcgiConnections(relay);
        return sum(x) === clients.length + 1 && x;
      }, 5000, () => `${what} in progress (FastCGI connections per worker: ${JSON.stringify(fcgiConnections(relay))})`);
      const pid = Number(Object.keys(conns).find((p) => conns[p] === (prev[p] ?? 0) + 1));
      assert.ok(pid, `cannot tell which worker took ${what}: ${JSON.stringify(prev)} -> ${JSON.stringify(conns)}`);
      clients.push({ what, stream, c, pid });
      if (stream) await within(c.firstEvent, 5000, `the first chunk at ${what}`);
    }
    assert.ok(!call1.sent.includes('[DONE]'), 'the leader is still streaming');
    const inVictim = clients.filter((x) => x.pid === victim);
    const elsewhere = clients.filter((x) => x.pid !== victim);
    assert.ok(elsewhere.some((x) => x.stream) && elsewhere.some((x) => !x.stream),
      `no follower of each kind outside the leader's process (connections per worker: ${JSON.stringify(conns)})`);
    const killAt = now();
    const killWall = Date.now();
    process.kill(victim, 'SIGKILL');

    const rs = await Promise.all(clients.map((x) => x.c.done));
    const outcome = (r, stream) => {
      if (r.timedOut) return 'hung';
      if (r.error) return 'cut';
      // The front answers with its own error page when the process died
      // before the status line (Caddy an empty 502, nginx and Apache an
      // HTML 502 or 503); the relay's own errors are OpenAI-shaped JSON.
      if (r.status >= 500 && !r.text.trim().startsWith('{')) return 'cut';
      if (stream && r.status === 200 && r.ctype.startsWith('text/event-stream')) {
        const clean = withoutComments(r.text);
        if (!clean.endsWith('\n\n')) return 'cut';
        let p;
        try {
          p = streamPayloads(clean);
        } catch {
          return 'garbled';
        }
        if (p.done) return 'complete';
        // Caddy ends the response cleanly when its FastCGI connection dies.
        return p.payloads.at(-1)?.error ? 'error-event' : 'cut';
      }
      return 'answer';
    };
    clients.forEach((x, i) => {
      x.r = rs[i];
      x.outcome = outcome(rs[i], x.stream);
    });
    const summary = () => JSON.stringify(clients.map((x) => `${x.what} (${x.pid === victim ? 'killed process' : x.pid}): ${x.outcome}`));

    for (const x of clients) {
      assert.notEqual(x.outcome, 'hung', `${x.what} hung: ${summary()}`);
      assert.ok(x.r.endAt - killAt < 10000, `${x.what} ended ${ms(x.r.endAt - killAt)} after the kill`);
    }
    // Served by the killed process: cut (nothing can be sent by a dead process).
    for (const x of inVictim) assert.equal(x.outcome, 'cut', `${x.what} was in the killed process: ${summary()}`);

    // Elsewhere, followers that had sent bytes: the leader's bytes, then an
    // error event, within ~2 s of the kill.
    for (const x of elsewhere.filter((y) => y.stream)) {
      assert.equal(x.outcome, 'error-event', `${x.what} (process ${x.pid}): ${x.outcome}: ${JSON.stringify(x.r.text.slice(-300))}\n${summary()}`);
      const { before, chunks } = assertStreamEndsWithError(x.r.text, x.what);
      assertOneId(chunks, x.what);
      assert.ok(call1.sent.startsWith(before), `${x.what}: the bytes before the error event are not the leader's stream`);
      const noticed = x.r.reads.at(-1).at - killAt;
      assert.ok(noticed <= 2500, `${x.what}: the error event came ${ms(noticed)} after the kill (bound: 2 s)`);
    }
    // Elsewhere, followers that had sent nothing: one takes over with one
    // new upstream call, whose answer serves the rest.
    const jsonElsewhere = elsewhere.filter((y) => !y.stream);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 2, `${calls.length} upstream calls: expected the leader's and one takeover shared by the ${jsonElsewhere.length} waiting followers in other processes`);
    assert.ok(calls[1].at - killWall <= 2500, `the takeover called upstream ${ms(calls[1].at - killWall)} after the kill (bound: 2 s)`);
    for (const x of jsonElsewhere) {
      const c = assertCompletion(x.r, `${x.what} (process ${x.pid})`);
      assert.equal(c.id, `chatcmpl-fake${calls[1].n}`, `${x.what}: not the takeover's answer`);
      assert.equal(c.choices[0].message.content, `Echo: ${m}`);
    }

    // The pool replaces the worker (mod_fcgid has no count to restore: it
    // reaps the dead process and starts others as requests need them); the
    // store is consistent; an identical request is served (from the
    // takeover's stored answer, or a new call).
    if (relay.processModel === 'fcgid') {
      await until(() => !relay.fcgidPids().includes(victim), 5000, () => `${victim} to be gone (processes now ${relay.fcgidPids()})`);
    } else {
      await until(() => {
        const p = relay.workerPids();
        return p.length === 4 && !p.includes(victim);
      }, 5000, () => `a new worker in place of ${victim} (workers now ${relay.workerPids()})`);
    }
    const again = await assertServedPromptly(relay, streamBody, { label: 'identical stream request afterwards' });
    assert.equal(assertValidChatStream(again.text).content, `Echo: ${m}`);
    await assertServedPromptly(relay, jsonBody, { label: 'identical request afterwards' });
    const fresh = await assertServedPromptly(relay, streamBody, { headers: { 'cache-control': 'no-cache' }, label: 'identical no-cache request afterwards' });
    assert.ok(['MISS', 'COALESCED'].includes(fresh.cache), `no-cache request afterwards: X-Cache ${fresh.cache}`);
    for (let i = 0; i < 3; i++) {
      const n = uniq(`after-kill-${i}`);
      const a = await startChat(relay, chatBody(n)).done;
      const b = await startChat(relay, chatBody(n)).done;
      assertCompletion(a, 'fresh request');
      assert.equal(a.cache, 'MISS');
      assert.equal(b.cache, 'HIT');
      assert.equal(b.text, a.text);
    }
    const stats = await relay.admin(['stats']);
    assert.equal(stats.code, 0, `relay-admin stats: ${stats.stderr}`);
    relay.assertAlive();
  });
});

relaySuite('coalescing with [cache] scope = shared', { ini: { fcgi: POOL, cache: { scope: 'shared' }, auth: { mode: 'passthrough' } }, concurrency: 6 }, (relay) => {
  test('two credentials share one call', T, async () => {
    const m = uniq('shared-scope');
    const body = chatBody(m, { stream: true });
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 50 });
    const rs = await Promise.all([
      ...Array.from({ length: 3 }, () => startChat(relay, body, { key: KEY_A }).done),
      ...Array.from({ length: 3 }, () => startChat(relay, body, { key: KEY_B }).done),
    ]);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, `${calls.length} upstream calls`);
    rs.forEach((r, i) => {
      assertEnded(r, `client ${i}`);
      assert.equal(r.text, calls[0].sent);
    });
    assert.deepEqual(tally(rs.map((r) => r.cache)), { MISS: 1, COALESCED: 5 });
  });
});

relaySuite('coalescing with [coalesce] mode = off', { ini: { fcgi: POOL, coalesce: { mode: 'off' } }, concurrency: 5 }, (relay) => {
  test('N concurrent identical requests make N upstream calls', T, async () => {
    const m = uniq('mode-off');
    const body = chatBody(m, { stream: true });
    for (let i = 0; i < 5; i++) relay.fake.enqueue({ chunks: 5, chunkDelayMs: 50 });
    const rs = await chatAll(relay, 5, body);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 5);
    rs.forEach((r, i) => {
      assertEnded(r, `client ${i}`);
      assert.equal(r.cache, 'MISS');
      assert.ok(calls.some((c) => c.sent === r.text), `client ${i} got none of the upstream answers`);
    });
    assert.equal(new Set(rs.map((r) => r.text)).size, 5, 'each client got its own call');
    const next = await assertServedPromptly(relay, body, { label: 'next request' });
    assert.equal(next.cache, 'HIT', 'caching still works');
  });
});

relaySuite('coalescing with [coalesce] mode = all', { ini: { fcgi: POOL, coalesce: { mode: 'all' } }, concurrency: 10 }, (relay) => {
  beforeEach(() => relay.fake?.reset());

  test('requests that are not cacheable (temperature 0.7) share one call, and nothing is stored', T, async () => {
    const m = uniq('mode-all');
    const body = chatBody(m, { stream: true, temperature: 0.7 });
    relay.fake.enqueue({ chunks: 10, chunkDelayMs: 50 });
    const rs = await chatAll(relay, 10, body);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, `${calls.length} upstream calls`);
    rs.forEach((r, i) => {
      assertEnded(r, `client ${i}`);
      assert.equal(r.text, calls[0].sent, `client ${i}`);
    });
    assert.deepEqual(tally(rs.map((r) => r.cache)), { BYPASS: 1, COALESCED: 9 });

    // Neither cached nor reused from the finished flight: a new call.
    const next = await assertServedPromptly(relay, body, { label: 'next request' });
    assert.equal(next.cache, 'BYPASS');
    assert.equal(relay.fake.callsFor(m).length, 2);
    assert.notEqual(next.text, calls[0].sent);
  });

  test("the leader's client leaves: the call goes on while followers remain, though nothing will be stored", T, async () => {
    const m = uniq('mode-all-leaves');
    const body = chatBody(m, { stream: true, temperature: 0.7 });
    relay.fake.enqueue({ chunks: 20, chunkDelayMs: 50 });
    const leader = startChat(relay, body);
    await within(leader.firstEvent, 5000, "the leader's first chunk");
    const followers = Array.from({ length: 3 }, () => startChat(relay, body));
    await within(Promise.all(followers.map((f) => f.firstEvent)), 5000, "the followers' first chunks");
    leader.abort();
    const lead = await leader.done;
    const rs = await Promise.all(followers.map((f) => f.done));
    assert.equal(lead.aborted, true);
    const [call] = relay.fake.callsFor(m);
    assert.equal(relay.fake.callsFor(m).length, 1);
    rs.forEach((r, i) => {
      assertEnded(r, `follower ${i}`);
      assert.equal(r.cache, 'COALESCED');
      assert.equal(r.text, call.sent, `follower ${i} got the whole stream`);
    });
    assert.equal(call.aborted, false);
  });
});

relaySuite('coalescing: [coalesce] max_buffer and max_wait', {
  concurrency: 5,
  ini: { fcgi: POOL, coalesce: { max_buffer: 3000, max_wait: 1 }, 'upstream.openai': { idle_timeout: 3 } },
}, (relay) => {
  beforeEach(() => relay.fake?.reset());

  test('an answer larger than max_buffer: followers end with an error, the leader\'s client is unaffected', T, async () => {
    const m = uniq('max-buffer');
    const streamBody = chatBody(m, { stream: true });
    relay.fake.enqueue({ chunks: 20, chunkDelayMs: 50 }); // ~5 KB of events
    const leader = startChat(relay, streamBody);
    await within(leader.firstEvent, 5000, "the leader's first chunk");
    const rs = await Promise.all([
      ...Array.from({ length: 3 }, () => startChat(relay, streamBody).done),
      startChat(relay, chatBody(m)).done,
    ]);
    const lead = await leader.done;
    const [call] = relay.fake.callsFor(m);
    assert.ok(call.sent.length > 3000, `the answer is only ${call.sent.length} bytes`);
    assertEnded(lead, 'leader');
    assert.equal(lead.text, call.sent, "the leader's client got the whole answer");
    rs.slice(0, 3).forEach((r, i) => {
      assertEnded(r, `stream follower ${i}`);
      const { before } = assertStreamEndsWithError(r.text, `stream follower ${i}`);
      assert.ok(call.sent.startsWith(before), `stream follower ${i}: not a prefix of the upstream's stream`);
    });
    const j = rs[3];
    assertEnded(j, 'non-stream follower');
    assert.ok(j.status >= 500, `non-stream follower: ${j.status} ${j.text}`);
    assertOpenAIError(j.text, 'non-stream follower');
    const next = await assertServedPromptly(relay, streamBody, { label: 'next request' });
    assert.equal(next.cache, 'HIT', "the leader's complete answer was stored");
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a leader that stalls: stream followers give up after max_wait with an error event, long before its idle timeout', T, async () => {
    const m = uniq('max-wait');
    const streamBody = chatBody(m, { stream: true });
    relay.fake.enqueue({ chunks: 10, chunkDelayMs: 50, stallAfter: 4 });
    // The leader's own client waits for the upstream idle timeout (libcurl's
    // low-speed check: some seconds more than idle_timeout).
    const leader = startChat(relay, streamBody, { bound: 20000 });
    await relay.fake.waitForCalls(() => eventsSent(relay.fake.callsFor(m)[0]) >= 4, 5000);
    const followers = [
      ...Array.from({ length: 2 }, () => startChat(relay, streamBody)),
      startChat(relay, chatBody(m)),
    ];
    const rs = await Promise.all(followers.map((f) => f.done));
    const lead = await leader.done;
    const [call] = relay.fake.callsFor(m);
    const stallAt = call.writes.at(-1).at;
    assertEnded(lead, 'leader');
    assertStreamEndsWithError(lead.text, "the leader's stream (idle_timeout)");
    rs.slice(0, 2).forEach((r, i) => {
      const what = `stream follower ${i}`;
      assertEnded(r, what);
      const { before } = assertStreamEndsWithError(r.text, what);
      assert.equal(before, call.sent, `${what}: the chunks before the error are the upstream's`);
      const gaveUp = r.reads.at(-1).at - stallAt;
      assert.ok(gaveUp >= 900 && gaveUp <= 2500, `${what} gave up ${ms(gaveUp)} after the last chunk (max_wait = 1 s)`);
      assert.ok(r.reads.at(-1).at < lead.endAt - 1000, `${what} waited for the leader's idle timeout`);
    });
    // One that had sent nothing may call upstream alone; it is never left waiting.
    const j = rs[2];
    assertEnded(j, 'non-stream follower');
    if (j.status === 200) assertCompletion(j, 'non-stream follower');
    else assertOpenAIError(j.text, 'non-stream follower');
  });
});

// A follower's client that stops reading: each process's reader writes the
// new chunks for the followers parked there (engine/coalesce.c) only while
// their connection can take them at once; this client's cannot, so it must
// be written to from its own thread while the others go on.
relaySuite('coalescing: a follower whose client stops reading', { ini: { fcgi: POOL }, concurrency: 12 }, (relay) => {
  test('holds up no other follower; once it reads again it gets the whole stream', { timeout: 60000 }, async () => {
    const http = await import('node:http');
    const m = uniq('stalled-client');
    const body = JSON.stringify(chatBody(m, { stream: true }));
    // ~12 MB in 300 events: far more than the buffers between Relay and a
    // client that does not read (the socket pair to Caddy, Caddy's own
    // buffers, the TCP connection to the client) can hold.
    relay.fake.enqueue({ content: 'x'.repeat(12 << 20), chunks: 300, chunkDelayMs: 3 });
    const leader = startChat(relay, body, { bound: 30000 });
    await within(leader.firstEvent, 5000, "the leader's first chunk");

    // The stalled client: its response is paused before any byte is read.
    let stalled;
    const stalledIn = new Promise((resolve, reject) => {
      const req = http.request(`${relay.base}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      }, (res) => {
        res.pause();
        stalled = res;
        resolve(res);
      });
      req.on('error', reject);
      req.end(body);
    });
    const res = await within(stalledIn, 5000, "the stalled client's response head");
    assert.equal(res.headers['x-cache'], 'COALESCED');

    const others = await Promise.all(Array.from({ length: 10 }, () => startChat(relay, body, { bound: 30000 }).done));
    const lead = await leader.done;
    const [call] = relay.fake.callsFor(m);
    assert.equal(relay.fake.callsFor(m).length, 1);
    assertEnded(lead, 'leader');
    assert.equal(lead.text, call.sent, "the leader's client got the whole stream");
    others.forEach((r, i) => {
      assertEnded(r, `follower ${i}`);
      assert.equal(r.cache, 'COALESCED', `follower ${i}`);
      assert.equal(r.text, call.sent, `follower ${i} got the whole stream while one client did not read`);
    });
    // The back-pressure reached Relay: that follower was written to from its
    // own thread (the debug line of engine/coalesce.c fan_out()). Behind
    // mod_fcgid (processModel 'fcgid') there is no such line to expect: each
    // relay.fcgi process serves one request, so no process holds another
    // follower for its reader to write to, and the stalled client holds up
    // its own process alone (Apache stops reading from it); what matters,
    // that the others complete and it gets everything later, is checked
    // all the same.
    if (relay.processModel !== 'fcgid') {
      const log = fs.readFileSync(relay.logs.relay, 'utf8');
      assert.match(log, new RegExp(`flight ${res.headers['x-relay-key']} gen \\d+: a follower's client is not ready`),
        "no follower was found not ready: the test did not stall a client's connection");
    }

    // Now it reads: everything, byte for byte.
    const chunks = [];
    const text = await within(new Promise((resolve, reject) => {
      stalled.on('data', (c) => chunks.push(c));
      stalled.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      stalled.on('error', reject);
      stalled.resume();
    }), 30000, "the stalled client's stream");
    assert.equal(text, call.sent, 'the stalled client got the whole stream once it read again');
  });
});
