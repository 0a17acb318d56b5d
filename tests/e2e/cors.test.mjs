// CORS behind each front ([cors], engine/cors.c): the front must pass a
// preflight (OPTIONS) and the Origin and Access-Control-Request-* headers to
// Relay, and Relay's Access-Control-* answer headers back, unchanged.
//
// A preflight from an allowed origin is answered by Relay itself (204, the
// SDKs' headers allowed), never upstream and with no credential; from any
// other origin it gets 403 in the client's format without
// Access-Control-Allow-Origin. Actual requests from an allowed origin get
// Access-Control-Allow-Origin (answers, errors, streams, hits), from another
// one they are served without it; an upstream's own Access-Control-*
// headers never reach the client. What a browser does with these answers is
// tests/browser/cors.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, KEY_A, TEST_TIMEOUT } from './harness.mjs';
import { assertOpenAIError, assertValidChatStream } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const APP = 'https://app.example';
const DEV = 'http://localhost:5173';
const EVIL = 'https://evil.example';

// What the official SDKs ask for in a browser (lower-case, as Chromium sends
// Access-Control-Request-Headers): openai, @anthropic-ai/sdk, @google/genai.
const SDK_HEADERS = [
  'authorization', 'content-type', 'x-stainless-arch', 'x-stainless-lang', 'x-stainless-os',
  'x-stainless-package-version', 'x-stainless-retry-count', 'x-stainless-runtime',
  'x-stainless-runtime-version', 'x-stainless-timeout', 'openai-organization', 'openai-project',
  'anthropic-version', 'anthropic-beta', 'anthropic-dangerous-direct-browser-access', 'x-api-key',
  'x-goog-api-key', 'x-goog-api-client', 'x-relay-ttl', 'x-relay-namespace', 'cache-control',
];

const list = (v) => (v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

relaySuite('CORS', {
  ini: { cors: { allow_origins: `${APP}, ${DEV}`, max_age: 1234 } },
  upstreams: ['anthropic', 'gemini'],
}, (relay) => {
  const preflight = (path, origin, headers = 'authorization, content-type') =>
    relay.fetch(path, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        ...(headers ? { 'access-control-request-headers': headers } : {}),
      },
    });

  function assertAllowed(r, origin, what) {
    assert.equal(r.headers.get('access-control-allow-origin'), origin,
      `${what}: Access-Control-Allow-Origin is the page's origin, once (an upstream's "*" never passes)`);
    const exposed = list(r.headers.get('access-control-expose-headers'));
    for (const h of ['x-cache', 'x-relay-key', 'retry-after', 'x-relay-budget-remaining']) {
      assert.ok(exposed.includes(h), `${what}: ${h} is exposed (${exposed})`);
    }
    assert.equal(r.headers.get('access-control-allow-credentials'), null, `${what}: never Allow-Credentials`);
    assert.ok(list(r.headers.get('vary')).includes('origin'), `${what}: Vary: Origin (${r.headers.get('vary')})`);
  }

  function assertNotAllowed(r, what) {
    for (const h of ['access-control-allow-origin', 'access-control-expose-headers', 'access-control-allow-credentials']) {
      assert.equal(r.headers.get(h), null, `${what}: no ${h}`);
    }
  }

  test('a preflight from an allowed origin: 204 from Relay, the SDKs\' headers allowed, no credential, never upstream', T, async () => {
    const before = relay.fake.calls.length;
    for (const [path, origin] of [['/v1/chat/completions', APP], ['/v1/messages', DEV],
      ['/v1beta/models/gemini-2.0-flash:streamGenerateContent', APP], ['/v1/responses', APP]]) {
      const r = await preflight(path, origin, `${SDK_HEADERS.join(',')},x-not-an-sdk-header`);
      assert.equal(r.status, 204, `${path} from ${origin}: ${r.status} ${r.text}`);
      assert.equal(r.text, '', 'a 204 has no body');
      assert.equal(r.headers.get('access-control-allow-origin'), origin);
      assert.deepEqual(list(r.headers.get('access-control-allow-methods')), ['get', 'post', 'options']);
      const allowed = list(r.headers.get('access-control-allow-headers'));
      for (const h of SDK_HEADERS) assert.ok(allowed.includes(h), `${h} is allowed (${allowed})`);
      assert.ok(!allowed.includes('x-not-an-sdk-header'), 'a header Relay does not know is not allowed');
      assert.equal(r.headers.get('access-control-max-age'), '1234', '[cors] max_age');
      assert.equal(r.headers.get('access-control-allow-credentials'), null);
      assert.ok(list(r.headers.get('vary')).includes('origin'));
    }
    assert.equal(relay.fake.calls.length, before, 'no preflight reached the upstream');
  });

  test('a preflight from another origin: 403 in the client\'s format, no Access-Control-Allow-Origin', T, async () => {
    const before = relay.fake.calls.length;
    const r = await preflight('/v1/chat/completions', EVIL);
    assert.equal(r.status, 403, r.text);
    assertNotAllowed(r, 'refused preflight');
    const e = assertOpenAIError(r.text);
    assert.match(e.message, /https:\/\/evil\.example is not in this Relay's \[cors\] allow_origins/);

    const a = await preflight('/v1/messages', 'http://localhost:5174');
    assert.equal(a.status, 403, a.text);
    assertNotAllowed(a, 'refused preflight on /v1/messages');
    assert.equal(JSON.parse(a.text).type, 'error', `Anthropic's shape: ${a.text}`);

    // Relay's own endpoints are not open to other origins, even allowed ones.
    const own = await preflight('/relay/admin/api/stats', APP);
    assert.equal(own.status, 403, own.text);
    assertNotAllowed(own, 'preflight to the admin API');
    assert.equal(relay.fake.calls.length, before, 'no preflight reached the upstream');
  });

  test('answers to an allowed origin carry Access-Control-Allow-Origin: miss, hit, error, stream', T, async () => {
    const m = uniq('cors answer');
    // An upstream with a CORS policy of its own: Relay's is the only one.
    relay.fake.enqueue({ headers: { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'x-secret' } });
    const miss = await relay.chat(chatBody(m), { headers: { origin: APP } });
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers.get('x-cache'), 'MISS');
    assertAllowed(miss, APP, 'miss');
    assert.ok(!list(miss.headers.get('access-control-expose-headers')).includes('x-secret'));

    const hit = await relay.chat(chatBody(m), { headers: { origin: APP } });
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    assertAllowed(hit, APP, 'hit');
    assert.equal(relay.fake.callsFor(m).length, 1);

    const denied = await relay.chat(chatBody(uniq('cors 401')), { key: null, headers: { origin: DEV } });
    assert.equal(denied.status, 401, denied.text);
    assertAllowed(denied, DEV, '401');
    assertOpenAIError(denied.text);

    const s = await relay.chat(chatBody(uniq('cors stream'), { stream: true }), { headers: { origin: APP } });
    assert.equal(s.status, 200, s.text);
    assert.match(s.headers.get('content-type') ?? '', /^text\/event-stream/);
    assertAllowed(s, APP, 'stream');
    assertValidChatStream(s.text);

    const missing = await relay.fetch('/no-such-api', { method: 'POST', headers: { origin: APP } });
    assert.equal(missing.status, 404, missing.text);
    assertAllowed(missing, APP, 'an unknown path');
  });

  test('another origin is served without Access-Control-Allow-Origin (the browser keeps the answer from its page)', T, async () => {
    const m = uniq('cors other origin');
    relay.fake.enqueue({ headers: { 'access-control-allow-origin': '*' } });
    const r = await relay.chat(chatBody(m), { headers: { origin: EVIL } });
    assert.equal(r.status, 200, r.text);
    assertNotAllowed(r, 'another origin');
    assert.ok(list(r.headers.get('vary')).includes('origin'), 'Vary: Origin');
    assert.equal(relay.fake.callsFor(m).length, 1);

    const plain = await relay.chat(chatBody(uniq('cors no origin')), { key: KEY_A });
    assert.equal(plain.status, 200);
    assertNotAllowed(plain, 'no Origin');
    assert.ok(list(plain.headers.get('vary')).includes('origin'), 'Vary: Origin on answers without Origin too');

    const health = await relay.fetch('/relay/health', { headers: { origin: APP } });
    assert.equal(health.status, 200);
    assertNotAllowed(health, '/relay/health');
  });
});

relaySuite('CORS off (the default)', {}, (relay) => {
  test('no [cors]: a preflight is refused naming the key to set; answers carry no Access-Control-*', T, async () => {
    const before = relay.fake.calls.length;
    const r = await relay.fetch('/v1/chat/completions', {
      method: 'OPTIONS',
      headers: { origin: APP, 'access-control-request-method': 'POST' },
    });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    assert.match(assertOpenAIError(r.text).message, /\[cors\] allow_origins is empty/);
    assert.equal(relay.fake.calls.length, before);

    relay.fake.enqueue({ headers: { 'access-control-allow-origin': '*' } });
    const a = await relay.chat(chatBody(uniq('cors off')), { headers: { origin: APP } });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers.get('access-control-allow-origin'), null, 'an upstream\'s "*" does not pass');
    assert.equal(a.headers.get('vary'), null);
  });
});
