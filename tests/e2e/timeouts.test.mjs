// Issue 15, part E: the four timeouts of an upstream call, each told apart
// in the client's own error format, and finish_after_timeout: a call whose
// client gave up (it left, or got client_timeout's 504) is finished in the
// background and stored, so the retry is a HIT with one upstream call.
//
// Timing bounds here are loose on purpose (a shared, noisy machine): each
// only tells one timeout from another (first byte well before the total).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';

import { relaySuite, chatBody, uniq, sleep, KEY_A, TEST_TIMEOUT } from './harness.mjs';
import { assertOpenAIError, streamPayloads } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

// The same short limits for every upstream of the first suite.
const LIMITS = { connect_timeout: 1, first_byte_timeout: 1, idle_timeout: 1, timeout: 8 };

const anthropicBody = (text) => ({
  model: 'claude-3-5-haiku-20241022', max_tokens: 64, temperature: 0,
  messages: [{ role: 'user', content: text }],
});
const geminiBody = (text) => ({
  contents: [{ role: 'user', parts: [{ text }] }], generationConfig: { temperature: 0 },
});

// One request per wire format, and how its error document names the message.
const SHAPES = [
  {
    name: 'openai',
    send: (relay, m) => relay.chat(chatBody(m)),
    message: (doc) => { assertOpenAIError(JSON.stringify(doc)); return doc.error.message; },
  },
  {
    name: 'anthropic',
    send: (relay, m) => relay.fetch('/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify(anthropicBody(m)),
    }),
    message: (doc) => {
      assert.equal(doc.type, 'error', JSON.stringify(doc));
      assert.equal(typeof doc.error.type, 'string');
      return doc.error.message;
    },
  },
  {
    name: 'gemini',
    send: (relay, m) => relay.fetch('/v1beta/models/gemini-2.0-flash:generateContent', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': KEY_A },
      body: JSON.stringify(geminiBody(m)),
    }),
    message: (doc) => {
      assert.equal(doc.error.code, 504, JSON.stringify(doc));
      assert.match(doc.error.status, /^[A-Z_]+$/);
      return doc.error.message;
    },
  },
];

// A request with only-if-cached: 200 once the answer is stored, else 504.
const cachedOnly = (relay, body) => relay.chat(body, { headers: { 'cache-control': 'only-if-cached' } });

// Polls until body's answer is in the cache (or ms pass); returns the last answer.
async function untilCached(relay, body, ms) {
  const end = Date.now() + ms;
  let r;
  do {
    r = await cachedOnly(relay, body);
    if (r.status === 200) return r;
    await sleep(200);
  } while (Date.now() < end);
  return r;
}

// An upstream that never accepts: a socket listening with a backlog of 0
// that nobody accepts from (Node's own servers always accept, so a small
// python3 process holds it), its queue filled by connections of ours: the
// kernel then drops every further SYN, and a connect waits as to a host that
// is down (curl --connect-timeout 1 to it: 'Timeout was reached' after
// 1001 ms).
const blackhole = spawn('python3', ['-c', [
  'import socket, sys',
  's = socket.socket()',
  "s.bind(('127.0.0.1', 0))",
  's.listen(0)',
  'print(s.getsockname()[1], flush=True)',
  'sys.stdin.read()', // until the test ends (its stdin closes)
].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
const blackholePort = Number(await new Promise((resolve, reject) => {
  blackhole.stdout.once('data', (d) => resolve(String(d).trim()));
  blackhole.once('error', reject);
}));
const fillers = [];
for (let i = 0; i < 3; i++) fillers.push(net.connect(blackholePort, '127.0.0.1').on('error', () => {}));
await sleep(200);
after(() => { fillers.forEach((s) => s.destroy()); blackhole.kill(); });

relaySuite('timeouts: connect, first byte, idle, total', {
  upstreams: [
    { name: 'anthropic', type: 'anthropic', ...LIMITS },
    { name: 'gemini', type: 'gemini', ...LIMITS },
    { name: 'blackhole', type: 'openai-compatible', mount: '/blackhole', base_url: `http://127.0.0.1:${blackholePort}`, ...LIMITS },
  ],
  ini: { 'upstream.openai': LIMITS },
}, (relay) => {
  for (const shape of SHAPES) {
    test(`${shape.name}: a stall before the headers is 504 after first_byte_timeout, not the total`, T, async () => {
      const m = uniq(`fb-${shape.name}`);
      relay.fake.enqueue({ headerDelayMs: 6000 });
      const t0 = Date.now();
      const r = await shape.send(relay, m);
      const took = Date.now() - t0;
      assert.equal(r.status, 504, r.text);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      const message = shape.message(JSON.parse(r.text));
      assert.match(message, /first_byte_timeout/, message);
      assert.ok(took < 6000, `504 after ${took} ms: first_byte_timeout = 1 s, timeout = 8 s`);
      assert.equal(relay.fake.callsFor(m).length, 1);
    });
  }

  test('a stall between chunks ends the stream with an error event naming idle_timeout; nothing stored', T, async () => {
    const m = uniq('idle');
    relay.fake.enqueue({ stallAfter: 2 });
    const r = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(r.status, 200);
    const { payloads, done } = streamPayloads(r.text);
    assert.equal(done, false, 'no [DONE] after a stall');
    assertOpenAIError(payloads.at(-1), 'the last event');
    assert.match(payloads.at(-1).error.message, /idle_timeout/);
    const again = await cachedOnly(relay, chatBody(m, { stream: true }));
    assert.equal(again.status, 504, 'the cut stream was not stored');
  });

  test('chunks closer than idle_timeout keep a stream going', T, async () => {
    const m = uniq('steady');
    relay.fake.enqueue({ chunks: 4, chunkDelayMs: 400 });
    const r = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(r.status, 200);
    assert.equal(streamPayloads(r.text).done, true, r.text);
  });

  test('a listening socket that never accepts (full backlog) is 504 after connect_timeout', T, async () => {
    const t0 = Date.now();
    const r = await relay.fetch('/blackhole/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY_A}` },
      body: JSON.stringify(chatBody(uniq('connect'))),
    });
    const took = Date.now() - t0;
    assert.equal(r.status, 504, r.text);
    assertOpenAIError(r.text);
    assert.match(JSON.parse(r.text).error.message, /connect_timeout/);
    assert.ok(took < 6000, `504 after ${took} ms: connect_timeout = 1 s`);
  });
});

relaySuite('timeouts: the total on a slow but steady stream', {
  ini: { 'upstream.openai': { first_byte_timeout: 2, idle_timeout: 2, timeout: 3 } },
}, (relay) => {
  test('a stream never idle but longer than timeout ends with an error event naming timeout', T, async () => {
    const m = uniq('total');
    relay.fake.enqueue({ chunks: 20, chunkDelayMs: 400 }); // 8 s, never 2 s of silence
    const r = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(r.status, 200);
    const { payloads, done } = streamPayloads(r.text);
    assert.equal(done, false);
    assert.ok(payloads.length > 2, 'some chunks passed before the bound');
    const last = payloads.at(-1);
    assert.match(last.error.message, /\[upstream\.openai\] timeout\)/, last.error.message);
  });
});

relaySuite('timeouts: finish_after_timeout = on', {
  ini: { 'upstream.openai': { client_timeout: 1, first_byte_timeout: 10, idle_timeout: 10, timeout: 15, finish_after_timeout: 'on' } },
}, (relay) => {
  test('the client gets 504 at client_timeout; the call finishes and its retry is a HIT with one upstream call', T, async () => {
    const m = uniq('finish-504');
    const body = chatBody(m);
    relay.fake.enqueue({ headerDelayMs: 2500 });
    const t0 = Date.now();
    const r = await relay.chat(body);
    const took = Date.now() - t0;
    assert.equal(r.status, 504, r.text);
    assertOpenAIError(r.text);
    assert.match(JSON.parse(r.text).error.message, /client_timeout/);
    assert.ok(took < 2500, `the client was answered after ${took} ms, before the upstream (2.5 s)`);
    const cached = await untilCached(relay, body, 10000);
    assert.equal(cached.status, 200, `stored once the upstream finished: ${cached.text}`);
    const again = await relay.chat(body);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.equal(relay.fake.callsFor(m).length, 1, 'one upstream call in all');
  });

  test('a client that aborts mid-stream: the stream is finished and stored', T, async () => {
    const m = uniq('finish-abort');
    const body = chatBody(m, { stream: true });
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 250 });
    const ac = new AbortController();
    const res = await relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY_A}` },
      body: JSON.stringify(body),
      signal: ac.signal,
    }, { stream: true });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    await reader.read(); // the first chunk, then the client leaves
    ac.abort();
    await reader.cancel().catch(() => {});
    const cached = await untilCached(relay, body, 10000);
    assert.equal(cached.status, 200, `stored after the client left: ${cached.text}`);
    assert.equal(streamPayloads(cached.text).done, true);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });
});

relaySuite('timeouts: finish_after_timeout = off', {
  ini: { 'upstream.openai': { client_timeout: 1, first_byte_timeout: 10, idle_timeout: 10, timeout: 15, finish_after_timeout: 'off' } },
}, (relay) => {
  test('the client gets 504 at client_timeout, the call is abandoned and nothing stored', T, async () => {
    const m = uniq('abandon');
    const body = chatBody(m);
    relay.fake.enqueue({ headerDelayMs: 2500 });
    const r = await relay.chat(body);
    assert.equal(r.status, 504, r.text);
    assert.doesNotMatch(JSON.parse(r.text).error.message, /caches its answer/);
    await sleep(3500); // past the upstream's answer
    assert.equal((await cachedOnly(relay, body)).status, 504, 'nothing was stored');
    const again = await relay.chat(body);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a client that aborts mid-stream: the call is abandoned, nothing stored', T, async () => {
    const m = uniq('abandon-abort');
    const body = chatBody(m, { stream: true });
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 250 });
    const ac = new AbortController();
    const res = await relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY_A}` },
      body: JSON.stringify(body),
      signal: ac.signal,
    }, { stream: true });
    const reader = res.body.getReader();
    await reader.read();
    ac.abort();
    await reader.cancel().catch(() => {});
    await sleep(3500); // past the whole stream (2 s)
    assert.equal((await cachedOnly(relay, body)).status, 504, 'nothing was stored');
  });
});
