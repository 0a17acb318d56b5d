// Chat Completions through Caddy and Relay: a miss goes upstream once, a
// repeat is a hit, streams are passed through as they arrive and replayed
// byte for byte, and the upstream gets exactly what the client sent.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, curl, sleep, KEY_A, TEST_TIMEOUT } from './harness.mjs';
import { assertValidChatStream } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const KEY_RE = /^[0-9a-f]{16}$/;

relaySuite('chat completions: misses, hits and replay', {}, (relay) => {
  test('GET /relay/health answers 200 through Caddy', T, async () => {
    const r = await relay.fetch('/relay/health');
    assert.equal(r.status, 200);
  });

  test('a repeated request is a HIT, with one upstream call', T, async () => {
    const m = uniq('repeat');
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.match(r1.headers.get('x-relay-key') ?? '', KEY_RE);
    assert.match(r1.headers.get('content-type') ?? '', /^application\/json/);
    const a = JSON.parse(r1.text);
    assert.equal(a.object, 'chat.completion');
    assert.equal(a.choices[0].message.content, `Echo: ${m}`);

    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.headers.get('x-relay-key'), r1.headers.get('x-relay-key'));
    assert.match(r2.headers.get('age') ?? '', /^\d+$/, 'a cached answer carries Age');
    assert.match(r2.headers.get('content-type') ?? '', /^application\/json/);
    // Same id: the very answer of the first call (ids carry the fake's call number).
    assert.deepEqual(JSON.parse(r2.text), a);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('Age counts the seconds since the answer was stored', T, async () => {
    const m = uniq('age');
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    await sleep(2100);
    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    const age = Number(r2.headers.get('age'));
    assert.ok(age >= 2 && age <= 10, `Age ${r2.headers.get('age')} after ~2.1 s`);
  });

  test('the upstream gets the body byte for byte, with the client credential', T, async () => {
    const m = uniq('verbatim');
    // Odd spacing, key order, escapes and non-ASCII: nothing may be re-serialised.
    const raw = `{ "messages" : [\n  {"content":"${m} h\\u00e9llo ✓ \\"q\\"","role":"user"} ],\n\t"temperature":0.0, "model":"gpt-4o-mini" }`;
    const r = await relay.chat(raw);
    assert.equal(r.status, 200, r.text);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].body, raw);
    assert.equal(calls[0].method, 'POST');
    assert.equal(calls[0].path, '/v1/chat/completions');
    assert.equal(calls[0].headers.authorization, `Bearer ${KEY_A}`);
    assert.match(calls[0].headers['content-type'] ?? '', /^application\/json/);
    // And the client got the upstream's answer as sent.
    assert.equal(r.text, calls[0].sent);
  });

  test("the openai SDK's own request body is forwarded verbatim", T, async () => {
    const m = uniq('sdk-body');
    let sent = null;
    const client = relay.client({
      fetch: async (url, init) => {
        sent = init.body;
        return fetch(url, init);
      },
    });
    const r = await client.chat.completions.create({ ...chatBody(m), max_completion_tokens: 20 });
    assert.equal(r.choices[0].message.content, `Echo: ${m}`);
    assert.equal(typeof sent, 'string');
    const [call] = relay.fake.callsFor(m);
    assert.equal(call.body, sent);
    assert.equal(call.headers.authorization, `Bearer ${KEY_A}`);
  });

  test('a stream MISS passes the upstream bytes through; its HIT replays them byte for byte', T, async () => {
    const m = uniq('replay');
    const body = chatBody(m, { stream: true, stream_options: { include_usage: true } });
    relay.fake.enqueue({ chunks: 6, chunkDelayMs: 30 });
    const r1 = await relay.chat(body);
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.match(r1.headers.get('content-type') ?? '', /^text\/event-stream/);
    const got = assertValidChatStream(r1.text);
    assert.equal(got.content, `Echo: ${m}`);
    assert.ok(got.usage, 'usage chunk passed through');
    const [call] = relay.fake.callsFor(m);
    assert.equal(r1.text, call.sent, 'the client got the upstream stream unchanged');

    const r2 = await relay.chat(body);
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.match(r2.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.match(r2.headers.get('age') ?? '', /^\d+$/);
    assert.equal(r2.headers.get('x-relay-key'), r1.headers.get('x-relay-key'));
    assert.equal(r2.text, r1.text, 'replay is byte-identical');
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('stream events reach the client as the upstream sends them', T, async () => {
    const m = uniq('incremental');
    // role + 4 content + finish events, 250 ms apart, then [DONE]: ~1.5 s.
    relay.fake.enqueue({ chunks: 4, chunkDelayMs: 250 });
    const t0 = Date.now();
    const res = await relay.chat(chatBody(m, { stream: true }), { stream: true });
    assert.equal(res.status, 200);
    const arrivals = [];
    const decoder = new TextDecoder();
    let text = '';
    for await (const part of res.body) {
      text += decoder.decode(part, { stream: true });
      arrivals.push({ at: Date.now() - t0, events: (text.match(/\n\n/g) ?? []).length });
    }
    assertValidChatStream(text);
    const firstEvent = arrivals.find((a) => a.events >= 1).at;
    const end = arrivals.at(-1).at;
    // Buffered until the end, everything would arrive at once.
    assert.ok(end - firstEvent >= 1000, `first event at ${firstEvent} ms, last at ${end} ms: the stream was held back`);
    assert.ok(arrivals.length >= 4, `only ${arrivals.length} reads: events were batched`);
  });

  test('the openai SDK streams with for await; a HIT yields the same deltas', T, async () => {
    const m = uniq('sdk-stream');
    const client = relay.client();
    relay.fake.enqueue({ chunks: 5, chunkDelayMs: 10 });
    const run = async () => {
      const { data: stream, response } = await client.chat.completions
        .create({ ...chatBody(m), stream: true })
        .withResponse();
      const deltas = [];
      for await (const chunk of stream) {
        const d = chunk.choices[0]?.delta?.content;
        if (d) deltas.push(d);
      }
      return { deltas, cache: response.headers.get('x-cache') };
    };
    const first = await run();
    assert.equal(first.cache, 'MISS');
    assert.equal(first.deltas.length, 5);
    assert.equal(first.deltas.join(''), `Echo: ${m}`);
    const second = await run();
    assert.equal(second.cache, 'HIT');
    assert.deepEqual(second.deltas, first.deltas);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('the openai SDK, non-stream: MISS then HIT with the same completion', T, async () => {
    const m = uniq('sdk-json');
    const client = relay.client();
    const a = await client.chat.completions.create(chatBody(m)).withResponse();
    const b = await client.chat.completions.create(chatBody(m)).withResponse();
    assert.equal(a.response.headers.get('x-cache'), 'MISS');
    assert.equal(b.response.headers.get('x-cache'), 'HIT');
    assert.equal(a.data.choices[0].message.content, `Echo: ${m}`);
    assert.deepEqual(b.data, a.data);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('concurrent streams each get their own answer, then their own replay', T, async () => {
    // More requests than the pool has threads (2 x 8): some wait for a thread.
    const markers = Array.from({ length: 24 }, (_, i) => uniq(`concurrent-${i}`));
    for (let i = 0; i < markers.length; i++) relay.fake.enqueue({ chunks: 5, chunkDelayMs: 20 });
    const run = () => Promise.all(markers.map((m) => relay.chat(chatBody(m, { stream: true }))));
    const first = await run();
    first.forEach((r, i) => {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-cache'), 'MISS');
      assert.equal(assertValidChatStream(r.text).content, `Echo: ${markers[i]}`);
    });
    const second = await run();
    second.forEach((r, i) => {
      assert.equal(r.headers.get('x-cache'), 'HIT');
      assert.equal(r.text, first[i].text, `replay ${i} is its own`);
    });
    for (const m of markers) assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a client that goes away mid-stream does not disturb the relay', T, async () => {
    const m = uniq('walk-away');
    relay.fake.enqueue({ chunks: 20, chunkDelayMs: 100 });
    const ctrl = new AbortController();
    const res = await relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' },
      body: JSON.stringify(chatBody(m, { stream: true })),
      signal: ctrl.signal,
    }, { stream: true });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    await reader.read(); // the first event
    ctrl.abort();
    await reader.cancel().catch(() => {});
    // The relay keeps serving, in every worker.
    for (let i = 0; i < 6; i++) {
      const r = await relay.chat(chatBody(uniq('after-walk-away')));
      assert.equal(r.status, 200, r.text);
    }
    relay.assertAlive();
  });

  test('curl: a stream MISS then HIT, same bytes, headers as documented', T, async () => {
    const m = uniq('curl-stream');
    relay.fake.enqueue({ chunks: 3, chunkDelayMs: 20 });
    const args = [
      '-H', `Authorization: Bearer ${KEY_A}`,
      '-H', 'Content-Type: application/json',
      '--data-binary', JSON.stringify(chatBody(m, { stream: true })),
      `${relay.base}/v1/chat/completions`,
    ];
    const a = await curl(args);
    assert.equal(a.exitCode, 0, a.stderr);
    assert.equal(a.status, 200, a.body);
    assert.equal(a.headers['x-cache'], 'MISS');
    assert.match(a.headers['x-relay-key'] ?? '', KEY_RE);
    assert.match(a.headers['content-type'] ?? '', /^text\/event-stream/);
    assert.equal(a.headers.status, undefined, 'the CGI Status header is not leaked to the client');
    assert.ok(a.body.endsWith('data: [DONE]\n\n'), a.body.slice(-200));
    assert.equal(assertValidChatStream(a.body).content, `Echo: ${m}`);

    const b = await curl(args);
    assert.equal(b.status, 200);
    assert.equal(b.headers['x-cache'], 'HIT');
    assert.match(b.headers.age ?? '', /^\d+$/);
    assert.equal(b.body, a.body);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('curl: JSON MISS then HIT', T, async () => {
    const m = uniq('curl-json');
    const args = [
      '-H', `Authorization: Bearer ${KEY_A}`,
      '-H', 'Content-Type: application/json',
      '--data-binary', JSON.stringify(chatBody(m)),
      `${relay.base}/v1/chat/completions`,
    ];
    const a = await curl(args);
    const b = await curl(args);
    assert.equal(a.status, 200, a.body);
    assert.equal(a.headers['x-cache'], 'MISS');
    assert.equal(b.status, 200, b.body);
    assert.equal(b.headers['x-cache'], 'HIT');
    assert.equal(b.headers['x-relay-key'], a.headers['x-relay-key']);
    assert.deepEqual(JSON.parse(b.body), JSON.parse(a.body));
    assert.equal(relay.fake.callsFor(m).length, 1);
  });
});
