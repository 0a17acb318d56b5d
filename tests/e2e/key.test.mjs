// What the cache key ignores (stream, stream_options, metadata.user_id,
// prompt_cache_key, JSON key order and whitespace, user-agent and
// x-stainless-* headers) and what it includes (everything else in the body,
// the credential unless [cache] scope = shared, X-Relay-Namespace).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, uniq, KEY_A, KEY_B, TEST_TIMEOUT } from './harness.mjs';

const T = { timeout: TEST_TIMEOUT };

// The same object with its keys in reverse order, at every depth.
function reversedKeys(v) {
  if (Array.isArray(v)) return v.map(reversedKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).reverse().map((k) => [k, reversedKeys(v[k])]));
  }
  return v;
}

function baseBody(m) {
  return {
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'You are a test.' },
      { role: 'user', content: m },
    ],
    temperature: 0,
    metadata: { user_id: 'session-1', team: 'red' },
  };
}

// Sends a raw body; returns {status, cache, key, text}.
async function send(relay, raw, { key = KEY_A, headers = {} } = {}) {
  const r = await relay.chat(typeof raw === 'string' ? raw : JSON.stringify(raw), { key, headers });
  assert.equal(r.status, 200, r.text);
  return { status: r.status, cache: r.headers.get('x-cache'), key: r.headers.get('x-relay-key'), text: r.text };
}

relaySuite('cache key', {}, (relay) => {
  test('what the key ignores: each variant is a HIT with the same X-Relay-Key', T, async () => {
    const m = uniq('ignored');
    const base = baseBody(m);
    const first = await send(relay, base);
    assert.equal(first.cache, 'MISS');
    assert.match(first.key ?? '', /^[0-9a-f]{16}$/);

    const variants = {
      'pretty-printed, keys in reverse order': JSON.stringify(reversedKeys(base), null, 2),
      'tabs and spaces between tokens': JSON.stringify(base).replace(/([,:{[])/g, '$1 \t').replace(/([}\]])/g, ' \n$1'),
      'stream: false': { ...base, stream: false },
      'stream: true with stream_options': { ...base, stream: true, stream_options: { include_usage: true } },
      'another metadata.user_id': { ...base, metadata: { team: 'red', user_id: 'session-2' } },
      'a prompt_cache_key': { ...base, prompt_cache_key: 'pck-1' },
      'another prompt_cache_key': { ...base, prompt_cache_key: 'pck-2' },
    };
    for (const [what, raw] of Object.entries(variants)) {
      const r = await send(relay, raw);
      assert.equal(r.cache, 'HIT', `${what}: ${r.cache}`);
      assert.equal(r.key, first.key, `${what}: key`);
    }
    const headerVariants = {
      'user-agent': { 'user-agent': 'SomethingElse/9.9' },
      'x-stainless-*': { 'x-stainless-retry-count': '3', 'x-stainless-os': 'Plan9', 'x-stainless-lang': 'cobol' },
    };
    for (const [what, headers] of Object.entries(headerVariants)) {
      const r = await send(relay, base, { headers });
      assert.equal(r.cache, 'HIT', `${what}: ${r.cache}`);
      assert.equal(r.key, first.key, `${what}: key`);
    }
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('what the key includes: each change is a MISS with another X-Relay-Key', T, async () => {
    const m = uniq('included');
    const base = baseBody(m);
    const first = await send(relay, base);
    assert.equal(first.cache, 'MISS');
    const variants = {
      model: { ...base, model: 'gpt-4o' },
      'user message': { ...base, messages: [base.messages[0], { role: 'user', content: `${m}!` }] },
      'system message': { ...base, messages: [{ role: 'system', content: 'Be terse.' }, base.messages[1]] },
      'other metadata': { ...base, metadata: { user_id: 'session-1', team: 'blue' } },
      max_tokens: { ...base, max_tokens: 5 },
    };
    const keys = new Set([first.key]);
    for (const [what, raw] of Object.entries(variants)) {
      const r = await send(relay, raw);
      assert.equal(r.cache, 'MISS', `${what}: ${r.cache}`);
      assert.ok(!keys.has(r.key), `${what}: key ${r.key} seen before`);
      keys.add(r.key);
    }
    assert.equal(relay.fake.callsFor(m).length, 1 + Object.keys(variants).length);
  });

  test('the credential is part of the key (scope = credential)', T, async () => {
    const m = uniq('scope');
    const a = await send(relay, baseBody(m), { key: KEY_A });
    const b = await send(relay, baseBody(m), { key: KEY_B });
    assert.equal(a.cache, 'MISS');
    assert.equal(b.cache, 'MISS', "another credential does not see A's entry");
    assert.notEqual(b.key, a.key);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 2);
    assert.equal(calls[1].headers.authorization, `Bearer ${KEY_B}`, "B's call used B's credential");
    assert.equal((await send(relay, baseBody(m), { key: KEY_B })).cache, 'HIT');
    assert.equal((await send(relay, baseBody(m), { key: KEY_A })).cache, 'HIT');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('X-Relay-Namespace partitions the cache', T, async () => {
    const m = uniq('namespace');
    const none = await send(relay, baseBody(m));
    const ns1 = await send(relay, baseBody(m), { headers: { 'x-relay-namespace': 'team-one' } });
    const ns1again = await send(relay, baseBody(m), { headers: { 'x-relay-namespace': 'team-one' } });
    const ns2 = await send(relay, baseBody(m), { headers: { 'x-relay-namespace': 'team-two' } });
    const noneAgain = await send(relay, baseBody(m));
    assert.deepEqual(
      [none.cache, ns1.cache, ns1again.cache, ns2.cache, noneAgain.cache],
      ['MISS', 'MISS', 'HIT', 'MISS', 'HIT'],
    );
    assert.equal(new Set([none.key, ns1.key, ns2.key]).size, 3);
    assert.equal(ns1again.key, ns1.key);
    assert.equal(relay.fake.callsFor(m).length, 3);
  });
});

relaySuite('cache key with scope = shared', { ini: { cache: { scope: 'shared' }, auth: { mode: 'passthrough' } } }, (relay) => {
  test('with pass-through alone, any credential string shares the entry; the namespace still partitions', T, async () => {
    const m = uniq('shared');
    const a = await send(relay, baseBody(m), { key: KEY_A });
    const b = await send(relay, baseBody(m), { key: KEY_B });
    assert.equal(a.cache, 'MISS');
    assert.equal(b.cache, 'HIT');
    assert.equal(b.key, a.key);
    const ns = await send(relay, baseBody(m), { key: KEY_B, headers: { 'x-relay-namespace': 'other' } });
    assert.equal(ns.cache, 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a request without a credential is still refused', T, async () => {
    const m = uniq('shared-nokey');
    await send(relay, baseBody(m), { key: KEY_A });
    const r = await relay.chat(baseBody(m), { key: null });
    assert.equal(r.status, 401, r.text);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });
});

// With Relay client tokens in use ([auth] mode = both, the default), shared
// means shared between token holders: a passed-through key cannot be
// checked, so it keeps its own scope (t_engine_spend covers the tokens).
relaySuite('cache key with scope = shared and [auth] mode = both', { ini: { cache: { scope: 'shared' } } }, (relay) => {
  test('passed-through keys keep their own scope', T, async () => {
    const m = uniq('shared-both');
    const a = await send(relay, baseBody(m), { key: KEY_A });
    const b = await send(relay, baseBody(m), { key: KEY_B });
    assert.equal(a.cache, 'MISS');
    assert.equal(b.cache, 'MISS');
    assert.notEqual(b.key, a.key);
    const again = await send(relay, baseBody(m), { key: KEY_A });
    assert.equal(again.cache, 'HIT');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });
});
