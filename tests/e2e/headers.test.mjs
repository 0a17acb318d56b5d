// Relay's control headers in their underscore spelling (issue 12, defect
// 13): X_Relay_TTL, X_Relay_Namespace, X_Relay_Cache must not act as
// X-Relay-TTL, ... A front passes a header X-A_B as the FastCGI parameter
// HTTP_X_A_B whatever its separators, so Relay cannot tell the spellings
// apart (fcgi/params.h): the fronts must drop header names with an
// underscore, as nginx and Apache do by default and the shipped Caddyfile
// does (request_header -*_*).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, TEST_TIMEOUT } from './harness.mjs';

const T = { timeout: TEST_TIMEOUT };

relaySuite('control headers spelled with underscores', {}, (relay) => {
  // The stored entry of the answer r (its X-Relay-Key), from relay-admin ls.
  async function entryOf(r) {
    const key = r.headers.get('x-relay-key');
    assert.ok(key, 'the answer has an X-Relay-Key');
    const ls = await relay.admin(['--json', 'ls', '--limit', '0']);
    assert.equal(ls.code, 0, ls.stderr);
    const e = JSON.parse(ls.stdout).entries.find((x) => x.key.startsWith(key));
    assert.ok(e, `no entry ${key} in relay-admin ls`);
    return e;
  }

  test('X_Relay_TTL is not X-Relay-TTL', T, async () => {
    const dash = await relay.chat(chatBody(uniq('ttl dash')), { headers: { 'X-Relay-TTL': '1234' } });
    assert.equal(dash.status, 200, dash.text);
    const e1 = await entryOf(dash);
    assert.equal(e1.expires - e1.created, 1234, 'X-Relay-TTL sets the TTL');

    const under = await relay.chat(chatBody(uniq('ttl underscore')), { headers: { X_Relay_TTL: '1234' } });
    assert.equal(under.status, 200, under.text);
    assert.equal(under.headers.get('x-cache'), 'MISS');
    const e2 = await entryOf(under);
    assert.equal(e2.expires - e2.created, 86400, 'X_Relay_TTL was taken for X-Relay-TTL (default_ttl is 86400)');
  });

  test('X_Relay_Namespace is not X-Relay-Namespace', T, async () => {
    const body = chatBody(uniq('namespace underscore'));
    const inNs = await relay.chat(body, { headers: { 'X-Relay-Namespace': 'ns-a' } });
    assert.equal(inNs.headers.get('x-cache'), 'MISS');
    // Were it taken for X-Relay-Namespace, this would be a HIT in ns-a.
    const under = await relay.chat(body, { headers: { X_Relay_Namespace: 'ns-a' } });
    assert.equal(under.status, 200, under.text);
    assert.equal(under.headers.get('x-cache'), 'MISS', 'X_Relay_Namespace was taken for X-Relay-Namespace');
    const plain = await relay.chat(body);
    assert.equal(plain.headers.get('x-cache'), 'HIT', 'the underscore request went to the default namespace');
  });

  test('X_Relay_Cache is not X-Relay-Cache', T, async () => {
    const m = uniq('cache underscore');
    const first = await relay.chat(chatBody(m), { headers: { X_Relay_Cache: 'off' } });
    assert.equal(first.headers.get('x-cache'), 'MISS', 'X_Relay_Cache: off was taken for X-Relay-Cache');
    const again = await relay.chat(chatBody(m));
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.equal(relay.fake.callsFor(m).length, 1);
  });
});
