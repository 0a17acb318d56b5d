// Ollama's native API through Caddy and Relay ([upstream.ollama] type =
// ollama), with the official `ollama` client and with raw fetch where the
// exact bytes matter: /api/chat and /api/generate (NDJSON streams ending with
// a done:true line; Ollama streams unless told "stream": false, while the
// client sends stream: false unless asked) and /api/embed. Ollama answers
// carry no id: the fake puts its call number in total_duration, so equal
// total_duration means the same upstream answer. No credential is needed,
// but an Authorization header still scopes the cache. Errors are Ollama's
// {"error": "text"}.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';

import { relaySuite, uniq, KEY_A, KEY_B, TEST_TIMEOUT } from './harness.mjs';

const T = { timeout: TEST_TIMEOUT };
const MODEL = 'llama3.2';
const KEY_RE = /^[0-9a-f]{16}$/;
// The ollama client stops reading a stream at its "done" line, before the
// response ends; the next request can then arrive while the first one's
// flight is still storing its answer, and it joins that flight. Either way
// Relay answers it, with no second upstream call (the tests count calls).
const FROM_RELAY = /^(HIT|COALESCED)$/;

// A deterministic chat request about text (no "stream": Ollama's default,
// a stream).
const chatBody = (text, extra = {}) => ({
  model: MODEL,
  messages: [{ role: 'user', content: text }],
  options: { temperature: 0 },
  ...extra,
});

// The lines of an NDJSON body, parsed; every line must be a JSON object and
// the body must end with a newline.
function ndjson(text) {
  assert.ok(text.endsWith('\n'), `an NDJSON body ends with a newline: ${JSON.stringify(text.slice(-100))}`);
  return text.slice(0, -1).split('\n').map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      return assert.fail(`not a JSON line: ${JSON.stringify(line)}`);
    }
  });
}

// Checks a complete NDJSON answer: done:false lines, then one done:true
// line, last. Returns the joined content (chat) or response (generate) and
// the final line.
function assertCompleteStream(text) {
  const lines = ndjson(text);
  assert.ok(lines.length >= 2, `too few lines: ${text}`);
  for (const l of lines.slice(0, -1)) {
    assert.equal(l.done, false, JSON.stringify(l));
    assert.equal(l.error, undefined, JSON.stringify(l));
  }
  const final = lines.at(-1);
  assert.equal(final.done, true, `the last line is not done:true: ${JSON.stringify(final)}`);
  const content = lines.map((l) => l.message?.content ?? l.response ?? '').join('');
  return { lines, final, content };
}

function assertOllamaError(r, status) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  const doc = JSON.parse(r.text);
  assert.deepEqual(Object.keys(doc), ['error'], r.text);
  assert.equal(typeof doc.error, 'string', r.text);
  assert.ok(doc.error.length > 0);
  return doc.error;
}

relaySuite('ollama: chat, generate, embed', { upstreams: ['ollama'] }, (relay) => {
  // The ollama client pointed at Relay. It does not show response headers,
  // so its fetch keeps the last response's in `seen`.
  const client = (headers) => {
    const c = new Ollama({
      host: relay.base,
      headers,
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        c.seen = res.headers;
        return res;
      },
    });
    return c;
  };

  // POST /api/{endpoint}: body an object (as JSON) or the exact string.
  const post = (endpoint, body, { headers = {}, stream = false } = {}) =>
    relay.fetch(`/api/${endpoint}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    }, { stream });

  test('client chat, stream: false: MISS then HIT with the same answer, one upstream call', T, async () => {
    const m = uniq('chat');
    const c = client();
    const req = { model: MODEL, messages: [{ role: 'user', content: m }], options: { temperature: 0 } };
    const a1 = await c.chat(req);
    assert.equal(c.seen.get('x-cache'), 'MISS');
    const key = c.seen.get('x-relay-key');
    assert.match(key ?? '', KEY_RE);
    assert.equal(a1.message.content, `Echo: ${m}`);
    assert.equal(a1.done, true);
    const a2 = await c.chat(req);
    assert.equal(c.seen.get('x-cache'), 'HIT');
    assert.equal(c.seen.get('x-relay-key'), key);
    assert.equal(a2.total_duration, a1.total_duration, 'the very answer of the first call');
    assert.deepEqual(a2, a1);

    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].path, '/api/chat');
    assert.equal(JSON.parse(calls[0].body).stream, false);
    assert.equal(calls[0].headers.authorization, undefined, 'no credential made up');
  });

  test('a chat without temperature 0 or a seed is not cached', T, async () => {
    const m = uniq('chat-random');
    const req = { model: MODEL, messages: [{ role: 'user', content: m }], stream: false };
    const r1 = await post('chat', req);
    const r2 = await post('chat', req);
    assert.equal(r1.headers.get('x-cache'), 'BYPASS');
    assert.equal(r2.headers.get('x-cache'), 'BYPASS');
    assert.notEqual(JSON.parse(r2.text).total_duration, JSON.parse(r1.text).total_duration);
    // A fixed seed makes it repeatable.
    const seeded = { ...req, options: { seed: 42 } };
    const s1 = await post('chat', seeded);
    const s2 = await post('chat', seeded);
    assert.deepEqual([s1, s2].map((r) => r.headers.get('x-cache')), ['MISS', 'HIT']);
    assert.equal(relay.fake.callsFor(m).length, 3);
  });

  test('chat streaming (the default): NDJSON lines arrive as they are sent; the repeat is a HIT byte for byte', T, async () => {
    const m = uniq('chat-stream');
    // 4 content lines 250 ms apart, then the done line: ~1 s.
    relay.fake.enqueue({ chunks: 4, chunkDelayMs: 250 });
    const t0 = Date.now();
    const res = await post('chat', chatBody(m), { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-cache'), 'MISS');
    assert.match(res.headers.get('content-type') ?? '', /^application\/x-ndjson/);
    const decoder = new TextDecoder();
    let text = '';
    const arrivals = [];
    for await (const part of res.body) {
      text += decoder.decode(part, { stream: true });
      arrivals.push({ at: Date.now() - t0, lines: (text.match(/\n/g) ?? []).length });
    }
    const first = arrivals.find((a) => a.lines >= 1).at;
    const end = arrivals.at(-1).at;
    // Held back until the end (a proxy buffering NDJSON), everything would
    // arrive at once.
    assert.ok(end - first >= 750, `first line at ${first} ms, last at ${end} ms: the stream was held back`);
    assert.ok(arrivals.length >= 4, `only ${arrivals.length} reads: lines were batched`);
    const { content, final, lines } = assertCompleteStream(text);
    assert.equal(lines.length, 5);
    assert.equal(content, `Echo: ${m}`);
    const [call] = relay.fake.callsFor(m);
    assert.equal(text, call.sent, 'the client got the upstream stream unchanged');
    assert.equal(JSON.parse(call.body).stream, undefined, 'the body went upstream as sent');

    const r2 = await post('chat', chatBody(m));
    assert.equal(r2.status, 200);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.match(r2.headers.get('content-type') ?? '', /^application\/x-ndjson/);
    assert.equal(r2.text, text, 'the replay is byte for byte');
    assert.equal(assertCompleteStream(r2.text).final.total_duration, final.total_duration);
    // "stream": true explicitly is the same request.
    const r3 = await post('chat', chatBody(m, { stream: true }));
    assert.equal(r3.headers.get('x-cache'), 'HIT');
    assert.equal(r3.text, text);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('client chat, stream: true: the parts, ending done; a repeat yields the same parts', T, async () => {
    const m = uniq('client-stream');
    relay.fake.enqueue({ chunks: 3, chunkDelayMs: 10 });
    const c = client();
    const run = async () => {
      const parts = [];
      for await (const p of await c.chat({ ...chatBody(m), stream: true })) parts.push(p);
      return { parts, cache: c.seen.get('x-cache') };
    };
    const first = await run();
    assert.equal(first.cache, 'MISS');
    assert.equal(first.parts.length, 4);
    assert.equal(first.parts.map((p) => p.message.content).join(''), `Echo: ${m}`);
    assert.equal(first.parts.at(-1).done, true);
    const second = await run();
    assert.match(second.cache, FROM_RELAY);
    assert.deepEqual(second.parts, first.parts);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a stream request is answered from a stored non-stream answer', T, async () => {
    const m = uniq('body-then-stream');
    const r1 = await post('chat', chatBody(m, { stream: false }));
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    const body = JSON.parse(r1.text);
    const r2 = await post('chat', chatBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.match(r2.headers.get('content-type') ?? '', /^application\/x-ndjson/);
    const { content, final } = assertCompleteStream(r2.text);
    assert.equal(content, `Echo: ${m}`);
    assert.equal(final.total_duration, body.total_duration);
    assert.equal(final.done_reason, 'stop');
    assert.equal(final.eval_count, body.eval_count);
    // And the client's stream of it.
    const c = client();
    const parts = [];
    for await (const p of await c.chat({ ...chatBody(m), stream: true })) parts.push(p);
    assert.equal(c.seen.get('x-cache'), 'HIT');
    assert.equal(parts.map((p) => p.message.content).join(''), `Echo: ${m}`);
    assert.equal(parts.at(-1).done, true);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a non-stream request is answered from a stored stream', T, async () => {
    const m = uniq('stream-then-body');
    relay.fake.enqueue({ chunks: 5 });
    const r1 = await post('chat', chatBody(m));
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    const { final } = assertCompleteStream(r1.text);
    const c = client();
    const a = await c.chat({ ...chatBody(m), stream: false });
    assert.equal(c.seen.get('x-cache'), 'HIT');
    assert.equal(a.message.role, 'assistant');
    assert.equal(a.message.content, `Echo: ${m}`, 'the pieces joined');
    assert.equal(a.done, true);
    assert.equal(a.done_reason, 'stop');
    assert.equal(a.total_duration, final.total_duration);
    assert.equal(a.prompt_eval_count, final.prompt_eval_count);
    assert.equal(a.eval_count, final.eval_count);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('generate, stream and not: cached, cross-served, the context in the final line', T, async () => {
    const m = uniq('generate');
    const c = client();
    const req = { model: MODEL, prompt: m, options: { temperature: 0 } };
    relay.fake.enqueue({ chunks: 3 });
    const parts = [];
    for await (const p of await c.generate({ ...req, stream: true })) parts.push(p);
    assert.equal(c.seen.get('x-cache'), 'MISS');
    assert.equal(parts.map((p) => p.response).join(''), `Echo: ${m}`);
    const final = parts.at(-1);
    assert.equal(final.done, true);
    assert.ok(Array.isArray(final.context) && final.context.length > 0, 'context on the final line');

    const g = await c.generate({ ...req, stream: false });
    assert.match(c.seen.get('x-cache'), FROM_RELAY);
    assert.equal(g.response, `Echo: ${m}`);
    assert.deepEqual(g.context, final.context);
    assert.equal(g.total_duration, final.total_duration);
    const again = [];
    for await (const p of await c.generate({ ...req, stream: true })) again.push(p);
    assert.equal(c.seen.get('x-cache'), 'HIT');
    assert.deepEqual(again, parts);
    assert.equal(relay.fake.callsFor(m).length, 1);

    // The next turn brings the context back: another request, another key.
    const n = uniq('generate-next');
    const t1 = await c.generate({ ...req, prompt: n, context: final.context, stream: false });
    assert.equal(c.seen.get('x-cache'), 'MISS');
    const t2 = await c.generate({ ...req, prompt: n, stream: false });
    assert.equal(c.seen.get('x-cache'), 'MISS', 'without the context it is not the same request');
    assert.ok(t1.context.length > t2.context.length);
    const t3 = await c.generate({ ...req, prompt: n, context: final.context, stream: false });
    assert.equal(c.seen.get('x-cache'), 'HIT');
    assert.equal(t3.total_duration, t1.total_duration);
    assert.equal(relay.fake.callsFor(n).length, 2);
  });

  test('generate non-stream first, then its stream rendered from it', T, async () => {
    const m = uniq('generate-body');
    const req = { model: MODEL, prompt: m, options: { temperature: 0 } };
    const r1 = await post('generate', { ...req, stream: false });
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    const body = JSON.parse(r1.text);
    const r2 = await post('generate', req);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    const { content, final } = assertCompleteStream(r2.text);
    assert.equal(content, `Echo: ${m}`);
    assert.deepEqual(final.context, body.context);
    assert.equal(final.total_duration, body.total_duration);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('keep_alive is not part of the key', T, async () => {
    const m = uniq('keep-alive');
    const r1 = await post('chat', chatBody(m, { stream: false, keep_alive: '5m' }));
    const r2 = await post('chat', chatBody(m, { stream: false, keep_alive: 0 }));
    assert.deepEqual([r1, r2].map((r) => r.headers.get('x-cache')), ['MISS', 'HIT']);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('embed is cached (deterministic, whatever the options)', T, async () => {
    const m = uniq('embed');
    const c = client();
    const req = { model: 'all-minilm', input: [m, `${m} again`] };
    const e1 = await c.embed(req);
    assert.equal(c.seen.get('x-cache'), 'MISS');
    const e2 = await c.embed(req);
    assert.equal(c.seen.get('x-cache'), 'HIT');
    assert.equal(e1.embeddings.length, 2);
    assert.equal(e1.embeddings[0].length, 8);
    assert.deepEqual(e2, e1);
    const other = await c.embed({ ...req, input: [m] });
    assert.equal(c.seen.get('x-cache'), 'MISS');
    assert.deepEqual(other.embeddings[0], e1.embeddings[0], 'the fake is deterministic per text');
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 2);
    assert.equal(calls[0].path, '/api/embed');
  });

  test('a load request (no messages) is never cached', T, async () => {
    const r1 = await post('chat', { model: MODEL, options: { temperature: 0 } });
    const r2 = await post('chat', { model: MODEL, options: { temperature: 0 } });
    for (const r of [r1, r2]) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-cache'), 'BYPASS');
      assert.equal(JSON.parse(r.text).done_reason, 'load');
    }
  });

  test('other /api paths are forwarded as they are, never cached', T, async () => {
    for (const p of ['/api/tags', '/api/version']) {
      const r1 = await relay.fetch(p);
      const r2 = await relay.fetch(p);
      assert.equal(r1.status, 200, r1.text);
      assert.deepEqual([r1, r2].map((r) => r.headers.get('x-cache')), ['BYPASS', 'BYPASS']);
      assert.equal(r2.text, r1.text);
    }
    const tags = await client().list();
    assert.ok(tags.models.some((x) => x.name === 'llama3.2:latest'));
    assert.equal(relay.fake.calls.filter((c) => c.path === '/api/tags').length, 3);
  });

  test('no Authorization is needed, but one is forwarded and scopes the cache', T, async () => {
    const m = uniq('auth');
    const none = await post('chat', chatBody(m, { stream: false }));
    const a = await post('chat', chatBody(m, { stream: false }), { headers: { authorization: `Bearer ${KEY_A}` } });
    const b = await post('chat', chatBody(m, { stream: false }), { headers: { authorization: `Bearer ${KEY_B}` } });
    const b2 = await client({ authorization: `Bearer ${KEY_B}` }).chat({ ...chatBody(m), stream: false });
    for (const r of [none, a, b]) assert.equal(r.status, 200, r.text);
    assert.deepEqual([none, a, b].map((r) => r.headers.get('x-cache')), ['MISS', 'MISS', 'MISS']);
    assert.equal(new Set([none, a, b].map((r) => r.headers.get('x-relay-key'))).size, 3);
    assert.equal(b2.total_duration, JSON.parse(b.text).total_duration, 'the same key: a HIT');
    const calls = relay.fake.callsFor(m);
    assert.deepEqual(calls.map((c) => c.headers.authorization), [undefined, `Bearer ${KEY_A}`, `Bearer ${KEY_B}`]);
  });

  test('an upstream 500 reaches the client as a ResponseError with the status; nothing cached', T, async () => {
    const m = uniq('chat-500');
    const c = client();
    relay.fake.enqueue({ status: 500 });
    await assert.rejects(c.chat({ ...chatBody(m), stream: false }), (err) => {
      assert.equal(err.name, 'ResponseError', String(err));
      assert.equal(err.status_code, 500);
      assert.equal(err.error, 'an error was encountered while running the model');
      return true;
    });
    relay.fake.enqueue({ status: 500 });
    await assert.rejects(c.chat({ ...chatBody(m), stream: true }), (err) => err.name === 'ResponseError' && err.status_code === 500);
    relay.fake.enqueue({ status: 500 });
    const raw = await post('chat', chatBody(m));
    assert.equal(assertOllamaError(raw, 500), 'an error was encountered while running the model');
    assert.notEqual(raw.headers.get('x-cache'), 'HIT');

    const ok = await c.chat({ ...chatBody(m), stream: false });
    assert.equal(c.seen.get('x-cache'), 'MISS', 'the error was not stored');
    assert.equal(ok.message.content, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 4);
  });

  test('a cut NDJSON stream: the client raises; nothing is cached', T, async () => {
    const m = uniq('cut');
    relay.fake.enqueue({ chunks: 4, cutAfter: 2 });
    const c = client();
    const parts = [];
    await assert.rejects(async () => {
      for await (const p of await c.chat({ ...chatBody(m), stream: true })) parts.push(p);
    });
    assert.equal(parts.length, 2, 'the lines before the cut arrived');
    assert.ok(parts.every((p) => p.done === false));

    // Raw: the lines as sent, then an {"error"} line, no done:true line.
    relay.fake.enqueue({ chunks: 4, cutAfter: 2 });
    const r = await post('chat', chatBody(m));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-cache'), 'MISS');
    const lines = ndjson(r.text);
    assert.equal(lines.length, 3, r.text);
    assert.ok(!lines.some((l) => l.done === true), 'no done line');
    assert.equal(typeof lines.at(-1).error, 'string');
    assert.deepEqual(Object.keys(lines.at(-1)), ['error']);

    const ok = await post('chat', chatBody(m));
    assert.equal(ok.headers.get('x-cache'), 'MISS');
    assert.equal(assertCompleteStream(ok.text).content, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 3);
  });

  test('an NDJSON stream that ends cleanly without its done line is incomplete: an error line, not cached', T, async () => {
    const m = uniq('short');
    relay.fake.enqueue({ chunks: 4, cutAfter: 4, cutMode: 'end' });
    const r = await post('generate', { model: MODEL, prompt: m, options: { temperature: 0 } });
    assert.equal(r.status, 200);
    const [call] = relay.fake.callsFor(m);
    assert.ok(r.text.startsWith(call.sent), 'what the upstream sent, unchanged, comes first');
    const lines = ndjson(r.text);
    assert.equal(lines.length, 5, r.text);
    assert.equal(lines.slice(0, 4).map((l) => l.response).join(''), `Echo: ${m}`);
    assert.deepEqual(Object.keys(lines.at(-1)), ['error']);
    const c = client();
    const g = await c.generate({ model: MODEL, prompt: m, options: { temperature: 0 }, stream: false });
    assert.equal(c.seen.get('x-cache'), 'MISS');
    assert.equal(g.response, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a non-stream answer cut mid-way: 502 {"error"} and not cached', T, async () => {
    const m = uniq('cut-body');
    relay.fake.enqueue({ cutAfter: 40 });
    const r1 = await post('chat', chatBody(m, { stream: false }));
    assertOllamaError(r1, 502);
    const r2 = await post('chat', chatBody(m, { stream: false }));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a bad body: 400 {"error"} from Relay, nothing sent upstream', T, async () => {
    const m = uniq('bad');
    const bodies = [
      [`{"model":"${MODEL}","messages":[{"role":"user","content":"${m}"}]`, /JSON/i], // truncated
      [JSON.stringify({ messages: [{ role: 'user', content: m }] }), /model is required/],
      [JSON.stringify({ model: MODEL, messages: m }), /messages/],
      [JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: m }], stream: 'yes' }), /stream/],
      [JSON.stringify([{ model: MODEL, note: m }]), /object/],
    ];
    for (const [body, why] of bodies) {
      const r = await post('chat', body);
      assert.match(assertOllamaError(r, 400), why, body);
    }
    const g = await post('generate', { model: MODEL, prompt: [m] });
    assert.match(assertOllamaError(g, 400), /prompt/);
    const e = await post('embed', { model: 'all-minilm', input: [m, 3] });
    assertOllamaError(e, 400);
    const c = client();
    await assert.rejects(c.chat({ model: '', messages: [{ role: 'user', content: m }] }),
      (err) => err.name === 'ResponseError' && err.status_code === 400 && /model is required/.test(err.error));
    assert.equal(relay.fake.callsFor(m).length, 0);
  });
});
