// Other gateways' cache controls (engine/alias.h) through the front to the
// fake upstream: each spelling's effect (MISS / HIT / BYPASS), LiteLLM's
// body field kept from the upstream and from the key, and key stability
// between OpenAI SDK call styles (engine/prov_canon.h).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, uniq, TEST_TIMEOUT } from './harness.mjs';

const T = { timeout: TEST_TIMEOUT };

// A chat body; deterministic (cached by default) unless told otherwise.
function body(m, { deterministic = true, ...extra } = {}) {
  return {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: m }],
    ...(deterministic ? { temperature: 0 } : {}),
    ...extra,
  };
}

async function send(relay, raw, headers = {}) {
  const r = await relay.chat(raw, { headers });
  return { status: r.status, cache: r.headers.get('x-cache'), key: r.headers.get('x-relay-key'), text: r.text };
}

const ALIAS_HEADERS = ['cf-aig-cache-ttl', 'cf-aig-skip-cache', 'helicone-cache-enabled', 'helicone-cache-seed', 'x-portkey-cache-force-refresh'];

relaySuite('other gateways\' cache controls', {}, (relay) => {
  test('cf-aig-cache-ttl sets the TTL and is not forwarded', T, async () => {
    const m = uniq('cf-ttl');
    const a = await send(relay, body(m), { 'cf-aig-cache-ttl': '600' });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.cache, 'MISS');
    assert.equal((await send(relay, body(m))).cache, 'HIT');
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    for (const h of ALIAS_HEADERS) assert.equal(calls[0].headers[h], undefined, `${h} went upstream`);
    const bad = await send(relay, body(uniq('cf-ttl-bad')), { 'cf-aig-cache-ttl': 'soon' });
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.text, /cf-aig-cache-ttl/);
  });

  test('cf-aig-skip-cache: true neither looks up nor stores', T, async () => {
    const m = uniq('cf-skip');
    assert.equal((await send(relay, body(m))).cache, 'MISS');
    const skipped = await send(relay, body(m), { 'cf-aig-skip-cache': 'true' });
    assert.equal(skipped.cache, 'BYPASS');
    assert.equal((await send(relay, body(m))).cache, 'HIT');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('Helicone-Cache-Enabled: true caches a sampled request; false bypasses', T, async () => {
    const m = uniq('helicone-on');
    const sampled = body(m, { deterministic: false });
    assert.equal((await send(relay, sampled)).cache, 'BYPASS', 'not cached by default');
    assert.equal((await send(relay, sampled, { 'helicone-cache-enabled': 'true' })).cache, 'MISS');
    assert.equal((await send(relay, sampled, { 'Helicone-Cache-Enabled': 'TRUE' })).cache, 'HIT');
    const m2 = uniq('helicone-off');
    assert.equal((await send(relay, body(m2), { 'helicone-cache-enabled': 'false' })).cache, 'BYPASS');
    assert.equal((await send(relay, body(m2))).cache, 'MISS', 'nothing was stored');
  });

  test('Helicone-Cache-Seed partitions like a namespace', T, async () => {
    const m = uniq('seed');
    const a = await send(relay, body(m), { 'helicone-cache-seed': 'one' });
    assert.equal(a.cache, 'MISS');
    assert.equal((await send(relay, body(m), { 'helicone-cache-seed': 'one' })).cache, 'HIT');
    assert.equal((await send(relay, body(m), { 'helicone-cache-seed': 'two' })).cache, 'MISS');
    assert.equal((await send(relay, body(m), { 'x-relay-namespace': 'one' })).cache, 'MISS', 'a seed is not X-Relay-Namespace');
    assert.equal(relay.fake.callsFor(m).length, 3);
  });

  test('x-portkey-cache-force-refresh: true refreshes the entry', T, async () => {
    const m = uniq('portkey');
    assert.equal((await send(relay, body(m))).cache, 'MISS');
    assert.equal((await send(relay, body(m), { 'x-portkey-cache-force-refresh': 'true' })).cache, 'MISS');
    assert.equal((await send(relay, body(m))).cache, 'HIT');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('LiteLLM\'s body field: removed upstream and from the key, its values applied', T, async () => {
    const m = uniq('litellm');
    const withField = JSON.stringify(body(m, { cache: { ttl: 60 } }));
    const a = await send(relay, withField);
    assert.equal(a.status, 200, a.text);
    assert.equal(a.cache, 'MISS');
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(JSON.parse(calls[0].body).cache, undefined, 'the field went upstream');
    assert.equal(calls[0].body, JSON.stringify(body(m)), 'the rest of the body as sent');
    const plain = await send(relay, body(m));
    assert.equal(plain.cache, 'HIT', 'the same key as without the field');
    assert.equal(plain.key, a.key);
    const refresh = await send(relay, body(m, { cache: { 'no-cache': true } }));
    assert.equal(refresh.cache, 'MISS');
    const ns = await send(relay, body(m, { cache: { namespace: 'team' } }));
    assert.equal(ns.cache, 'MISS', 'its namespace partitions');
    assert.equal(relay.fake.callsFor(m).length, 3);
    const bad = await send(relay, body(uniq('litellm-bad'), { cache: { ttl: '60' } }));
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.text, /LiteLLM/);
  });
});

relaySuite('key stability through the OpenAI SDK', {}, (relay) => {
  test('n: 1 and penalties of 0 spelled out, or 0.0 for 0: one key', T, async () => {
    const client = relay.client();
    const m = uniq('sdk-style');
    const base = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: m }], temperature: 0 };
    const first = await client.chat.completions.create(base).withResponse();
    assert.equal(first.response.headers.get('x-cache'), 'MISS');
    const styles = [
      { ...base, n: 1 },
      { ...base, presence_penalty: 0, frequency_penalty: 0 },
      { ...base, temperature: 0.0, logprobs: false },
      { ...base, stream: false },
    ];
    for (const s of styles) {
      const r = await client.chat.completions.create(s).withResponse();
      assert.equal(r.response.headers.get('x-cache'), 'HIT', JSON.stringify(s));
      assert.equal(r.response.headers.get('x-relay-key'), first.response.headers.get('x-relay-key'));
    }
    const other = await client.chat.completions.create({ ...base, n: 2 }).withResponse();
    assert.equal(other.response.headers.get('x-cache'), 'MISS', 'n: 2 is another request');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });
});
