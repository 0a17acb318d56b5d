// Retries before the first byte and fallbacks (engine/retry.c), through a
// real front and pool against the fake upstream: 503, 503 then an answer is
// one 200 after 3 calls and then a HIT; a 429 with a short Retry-After is
// retried, a long one passed on; a stream is retried before its first byte;
// an upstream that refuses connections falls back to another one
// (X-Relay-Upstream), whose answer is a HIT on repeat; a coalesced flight
// retries once for all its followers. No timed assertions: the fake counts
// calls.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, TEST_TIMEOUT } from './harness.mjs';
import { assertValidChatStream } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

relaySuite('retries before the first byte', {
  ini: { 'upstream.openai': { retries: 2, retry_max_wait: 10 }, metrics: { access: 'open' } },
}, (relay) => {
  test('503, 503, then an answer: the client gets 200 after 3 upstream calls, then a HIT', T, async () => {
    const m = uniq('retry-503');
    for (let i = 0; i < 2; i++) relay.fake.enqueue({ status: 503 });
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.equal(r1.headers.get('x-relay-upstream'), 'openai');
    assert.equal(relay.fake.callsFor(m).length, 3);
    assert.doesNotMatch(r1.text, /error/, 'nothing of the failures in the answer');
    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, r1.text, 'the stored answer is the 200');
    assert.equal(relay.fake.callsFor(m).length, 3);
  });

  test('three 503s: retries exhausted, the last 503 reaches the client, nothing stored', T, async () => {
    const m = uniq('retry-503x3');
    for (let i = 0; i < 3; i++) relay.fake.enqueue({ status: 503 });
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.status, 503, r1.text);
    assert.equal(relay.fake.callsFor(m).length, 3);
    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.status, 200);
    assert.equal(r2.headers.get('x-cache'), 'MISS');
  });

  test('429 with Retry-After: 1 is retried; with Retry-After: 120 passed on', T, async () => {
    const m = uniq('retry-429');
    relay.fake.enqueue({ status: 429, headers: { 'retry-after': '1' } });
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.status, 200, r1.text);
    assert.equal(relay.fake.callsFor(m).length, 2);

    const m2 = uniq('retry-429-long');
    relay.fake.enqueue({ status: 429, headers: { 'retry-after': '120' } });
    const r2 = await relay.chat(chatBody(m2));
    assert.equal(r2.status, 429, r2.text);
    assert.equal(r2.headers.get('retry-after'), '120');
    assert.equal(relay.fake.callsFor(m2).length, 1);
  });

  test('a stream request is retried before its first byte', T, async () => {
    const m = uniq('retry-stream');
    relay.fake.enqueue({ status: 502 });
    const r = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    assertValidChatStream(r.text);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a coalesced flight retries once for all its followers', T, async () => {
    const m = uniq('retry-flight');
    relay.fake.enqueue({ status: 503, headerDelayMs: 800 });
    const leader = relay.chat(chatBody(m));
    await relay.fake.waitForCalls((calls) => calls.some((c) => c.body.includes(m)), 5000);
    const followers = Array.from({ length: 3 }, () => relay.chat(chatBody(m)));
    const all = await Promise.all([leader, ...followers]);
    for (const r of all) assert.equal(r.status, 200, r.text);
    assert.equal(relay.fake.callsFor(m).length, 2, 'one failed call and one retry, for all four');
    const cache = all.map((r) => r.headers.get('x-cache')).sort();
    assert.equal(cache.filter((c) => c === 'MISS').length, 1, `one leader: ${cache}`);
  });

  test('the attempts are counted', T, async () => {
    const r = await relay.fetch('/relay/metrics');
    assert.equal(r.status, 200);
    assert.match(r.text, /relay_upstream_attempts_total\{upstream="openai",outcome="retried"\} [1-9]/);
  });
});

relaySuite('fallback to a second upstream', {
  upstreams: [{ name: 'spare', type: 'openai-compatible', mount: '/spare' }],
  // Port 9 (discard): nothing listens on loopback, the connection is refused.
  ini: { 'upstream.openai': { base_url: 'http://127.0.0.1:9', retries: 1, retry_max_wait: 5, fallback: 'spare' } },
}, (relay) => {
  test('the first upstream refuses connections: the fallback answers, then a HIT', T, async () => {
    const m = uniq('fallback');
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-relay-upstream'), 'spare');
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 1, 'one call reached the fallback');
    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.headers.get('x-cache'), 'HIT', 'keyed by the client request');
    assert.equal(r2.text, r1.text);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });
});
