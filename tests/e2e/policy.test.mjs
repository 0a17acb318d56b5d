// Which answers are cached and which are served from the cache: the default
// policy (temperature 0 or a seed), X-Relay-Cache, and the Cache-Control
// request directives. Outcomes are checked on the upstream's call log: an
// answer's id names the upstream call that produced it.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, sleep, TEST_TIMEOUT } from './harness.mjs';
import { assertOpenAIError, assertValidChatStream } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

// Sends body with extra headers; returns {status, cache, id, age, text}.
async function ask(relay, body, headers = {}) {
  const r = await relay.chat(body, { headers });
  let id = null;
  if (r.status === 200) {
    id = body.stream ? assertValidChatStream(r.text).id : JSON.parse(r.text).id;
  }
  return { status: r.status, cache: r.headers.get('x-cache'), id, age: r.headers.get('age'), text: r.text };
}

relaySuite('cache policy', {}, (relay) => {
  test('temperature 0 is cached', T, async () => {
    const m = uniq('t0');
    const a = await ask(relay, chatBody(m, { temperature: 0 }));
    const b = await ask(relay, chatBody(m, { temperature: 0 }));
    assert.deepEqual([a.cache, b.cache], ['MISS', 'HIT']);
    assert.equal(b.id, a.id);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a seed makes any temperature cacheable', T, async () => {
    const m = uniq('seed');
    const body = chatBody(m, { temperature: 0.9, seed: 42 });
    const a = await ask(relay, body);
    const b = await ask(relay, body);
    assert.deepEqual([a.cache, b.cache], ['MISS', 'HIT']);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('no temperature 0 and no seed: BYPASS, every request goes upstream', T, async () => {
    for (const extra of [{ temperature: 0.7 }, { temperature: undefined }]) {
      const m = uniq('sampled');
      const body = chatBody(m, extra);
      const a = await ask(relay, body);
      const b = await ask(relay, body);
      assert.deepEqual([a.cache, b.cache], ['BYPASS', 'BYPASS'], JSON.stringify(extra));
      assert.notEqual(b.id, a.id);
      assert.equal(relay.fake.callsFor(m).length, 2);
    }
  });

  test('X-Relay-Cache: on caches a sampled request', T, async () => {
    const m = uniq('force-on');
    const body = chatBody(m, { temperature: 1 });
    const a = await ask(relay, body, { 'x-relay-cache': 'on' });
    const b = await ask(relay, body, { 'x-relay-cache': 'on' });
    assert.deepEqual([a.cache, b.cache], ['MISS', 'HIT']);
    assert.equal(b.id, a.id);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('X-Relay-Cache: off neither looks up nor stores', T, async () => {
    const m = uniq('force-off');
    const body = chatBody(m);
    const stored = await ask(relay, body);
    assert.equal(stored.cache, 'MISS');
    const off = await ask(relay, body, { 'x-relay-cache': 'off' });
    assert.equal(off.cache, 'BYPASS');
    assert.notEqual(off.id, stored.id, 'off went upstream despite the entry');
    const after = await ask(relay, body);
    assert.equal(after.cache, 'HIT');
    assert.equal(after.id, stored.id, 'off did not replace the entry');
    assert.equal(relay.fake.callsFor(m).length, 2);

    const m2 = uniq('force-off-fresh');
    await ask(relay, chatBody(m2), { 'x-relay-cache': 'off' });
    assert.equal((await ask(relay, chatBody(m2))).cache, 'MISS', 'off did not store');
  });

  test('a malformed X-Relay-Cache is 400, not silently ignored', T, async () => {
    const m = uniq('force-bad');
    const r = await ask(relay, chatBody(m), { 'x-relay-cache': 'sometimes' });
    assert.equal(r.status, 400, r.text);
    assertOpenAIError(r.text);
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('Cache-Control: no-cache skips the lookup and stores the new answer', T, async () => {
    const m = uniq('no-cache');
    const body = chatBody(m);
    const first = await ask(relay, body);
    const refreshed = await ask(relay, body, { 'cache-control': 'no-cache' });
    assert.notEqual(refreshed.cache, 'HIT');
    assert.notEqual(refreshed.id, first.id, 'no-cache went upstream');
    const after = await ask(relay, body);
    assert.equal(after.cache, 'HIT');
    assert.equal(after.id, refreshed.id, 'the refreshed answer replaced the old one');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('Cache-Control: no-store does not store the answer', T, async () => {
    const m = uniq('no-store');
    const body = chatBody(m);
    const a = await ask(relay, body, { 'cache-control': 'no-store' });
    assert.notEqual(a.cache, 'HIT');
    const b = await ask(relay, body);
    assert.equal(b.cache, 'MISS', 'nothing was stored');
    assert.notEqual(b.id, a.id);
    const c = await ask(relay, body);
    assert.equal(c.cache, 'HIT');
    assert.equal(c.id, b.id);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('Cache-Control: max-age=N accepts only entries younger than N seconds', T, async () => {
    const m = uniq('max-age');
    const body = chatBody(m);
    const stored = await ask(relay, body);
    await sleep(1200);
    const young = await ask(relay, body, { 'cache-control': 'max-age=60' });
    assert.equal(young.cache, 'HIT');
    assert.equal(young.id, stored.id);
    assert.ok(Number(young.age) >= 1, `Age ${young.age}`);
    const strict = await ask(relay, body, { 'cache-control': 'max-age=0' });
    assert.notEqual(strict.cache, 'HIT', 'an entry over a second old is not younger than 0 s');
    assert.notEqual(strict.id, stored.id);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('Cache-Control: only-if-cached is 504 on a miss and never goes upstream', T, async () => {
    for (const extra of [{}, { stream: true }, { temperature: 1 }]) {
      const m = uniq('only-if-cached');
      const r = await ask(relay, chatBody(m, extra), { 'cache-control': 'only-if-cached' });
      assert.equal(r.status, 504, `${JSON.stringify(extra)}: ${r.status} ${r.text}`);
      assertOpenAIError(r.text);
      assert.equal(relay.fake.callsFor(m).length, 0);
    }
  });

  test('Cache-Control: only-if-cached answers from a stored entry', T, async () => {
    const m = uniq('only-if-cached-hit');
    const stored = await ask(relay, chatBody(m));
    const r = await ask(relay, chatBody(m), { 'cache-control': 'only-if-cached' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.cache, 'HIT');
    assert.equal(r.id, stored.id);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('several directives in one header are all honoured (no-cache, no-store)', T, async () => {
    const m = uniq('multi');
    const body = chatBody(m);
    const stored = await ask(relay, body);
    const r = await ask(relay, body, { 'cache-control': 'no-cache, no-store' });
    assert.notEqual(r.id, stored.id, 'no-cache skipped the entry');
    const after = await ask(relay, body);
    assert.equal(after.id, stored.id, 'no-store kept the old entry in place');
  });
});

relaySuite('stale entries (default_ttl = 1)', { ini: { cache: { default_ttl: 1 } } }, (relay) => {
  test('max-stale serves an expired entry as STALE; without it the entry is a MISS', T, async () => {
    const bodies = [chatBody(uniq('stale-n')), chatBody(uniq('stale-bare'))];
    const stored = [];
    for (const b of bodies) stored.push(await ask(relay, b));
    assert.deepEqual(stored.map((s) => s.cache), ['MISS', 'MISS']);
    await sleep(2300); // both entries are now expired by over a second

    const withN = await ask(relay, bodies[0], { 'cache-control': 'max-stale=600' });
    assert.equal(withN.status, 200, withN.text);
    assert.equal(withN.cache, 'STALE');
    assert.equal(withN.id, stored[0].id);
    assert.ok(Number(withN.age) >= 2, `Age ${withN.age}`);
    const bare = await ask(relay, bodies[1], { 'cache-control': 'max-stale' });
    assert.equal(bare.cache, 'STALE');
    assert.equal(bare.id, stored[1].id);

    const plain = await ask(relay, bodies[0]);
    assert.equal(plain.cache, 'MISS', 'an expired entry is not served without max-stale');
    assert.notEqual(plain.id, stored[0].id);
    assert.equal(relay.fake.callsFor(bodies[0].messages[1].content).length, 2);
  });
});
