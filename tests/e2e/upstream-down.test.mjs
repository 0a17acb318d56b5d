// An upstream that cannot be reached is 502; one that goes silent is 504
// (or, once a stream has started, an error event). Each suite has its own
// relay.ini: base_url at a dead port, and short timeouts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import { relaySuite, chatBody, uniq, KEY_A, TEST_TIMEOUT } from './harness.mjs';
import { assertOpenAIError, assertValidChatStream, streamPayloads } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

relaySuite('upstream unreachable', { upstream: 'dead' }, (relay) => {
  test('a chat request is 502 in OpenAI shape, streamed or not', T, async () => {
    for (const stream of [false, true]) {
      const r = await relay.chat(chatBody(uniq('dead'), { stream }));
      assert.equal(r.status, 502, `stream=${stream}: ${r.status} ${r.text}`);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/, 'an error before any byte is JSON, not a stream');
      assertOpenAIError(r.text);
    }
  });

  test('the SDK sees a 502 APIError', T, async () => {
    await assert.rejects(
      relay.client().chat.completions.create(chatBody(uniq('dead-sdk'))),
      (err) => err instanceof OpenAI.APIError && err.status === 502,
    );
  });

  test('a forwarded /v1 request is 502 too', T, async () => {
    const r = await relay.fetch('/v1/models', { headers: { authorization: `Bearer ${KEY_A}` } });
    assert.equal(r.status, 502, r.text);
    assertOpenAIError(r.text);
  });

  test('a failure is not cached: the same request fails again the same way', T, async () => {
    const body = chatBody(uniq('dead-twice'));
    const a = await relay.chat(body);
    const b = await relay.chat(body);
    assert.equal(a.status, 502);
    assert.equal(b.status, 502);
    assert.notEqual(b.headers.get('x-cache'), 'HIT');
    assert.equal(relay.fake.calls.length, 0, 'nothing reached the (unconfigured) fake');
  });
});

relaySuite('upstream timeouts', { ini: { 'upstream.openai': { connect_timeout: 1, idle_timeout: 1, timeout: 4 } } }, (relay) => {
  test('an upstream that never answers is 504 after idle_timeout', T, async () => {
    for (const stream of [false, true]) {
      const m = uniq(`hang-${stream}`);
      relay.fake.enqueue({ hang: true });
      const t0 = Date.now();
      const r = await relay.chat(chatBody(m, { stream }));
      const took = Date.now() - t0;
      assert.equal(r.status, 504, `stream=${stream}: ${r.status} ${r.text}`);
      assertOpenAIError(r.text);
      assert.ok(took >= 800 && took < 4500, `gave up after ${took} ms with idle_timeout = 1`);
      assert.equal(relay.fake.callsFor(m).length, 1);
    }
  });

  test('a stream that stalls ends with an error event and is not cached', T, async () => {
    const m = uniq('stall');
    relay.fake.enqueue({ stallAfter: 2 });
    const r = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(r.status, 200);
    const { payloads, done } = streamPayloads(r.text);
    assert.equal(done, false, 'no [DONE] after a stall');
    assert.equal(payloads.length, 3, `two chunks and an error event: ${r.text}`);
    assertOpenAIError(payloads.at(-1), 'the last event');

    const again = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(again.headers.get('x-cache'), 'MISS');
    assertValidChatStream(again.text);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a slow but steady stream longer than idle_timeout completes', T, async () => {
    const m = uniq('steady');
    // 5 gaps of 400 ms: 2 s in all, never 1 s of silence.
    relay.fake.enqueue({ chunks: 3, chunkDelayMs: 400 });
    const r = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(r.status, 200);
    assert.equal(assertValidChatStream(r.text).content, `Echo: ${m}`);
  });
});
