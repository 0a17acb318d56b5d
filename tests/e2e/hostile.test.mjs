// Hostile and unusual input that once took a worker down or slipped past a
// check (issue 12): bodies nested without bound, "\u0000" in JSON, ... Each
// is answered in the client's own format with the right status; nothing
// goes upstream that should not; no worker dies.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, uniq, curl, KEY_A, FRONT, TEST_TIMEOUT } from './harness.mjs';
import { assertOpenAIError } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const DEPTH_LIMIT = 128; // PROV_JSON_MAX_DEPTH, documented in relay.ini
const MAX_TTL = 31536000; // [cache] max_ttl's default

// One request per wire format, each with its credential, and the check of
// that format's error document.
const FORMATS = [
  {
    name: 'openai',
    path: '/v1/chat/completions',
    headers: { authorization: `Bearer ${KEY_A}` },
    body: (m, x) => `{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"${m}"}],"x":${x}}`,
    error: (text) => assertOpenAIError(text).message,
  },
  {
    name: 'anthropic',
    path: '/v1/messages',
    headers: { 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' },
    body: (m, x) => `{"model":"claude-sonnet-4-5","max_tokens":16,"temperature":0,"messages":[{"role":"user","content":"${m}"}],"x":${x}}`,
    error: (text) => {
      const doc = JSON.parse(text);
      assert.equal(doc.type, 'error', text);
      assert.equal(doc.error.type, 'invalid_request_error', text);
      return doc.error.message;
    },
  },
  {
    name: 'gemini',
    path: '/v1beta/models/gemini-2.5-flash:generateContent',
    headers: { 'x-goog-api-key': KEY_A },
    body: (m, x) => `{"contents":[{"role":"user","parts":[{"text":"${m}"}]}],"generationConfig":{"temperature":0},"x":${x}}`,
    error: (text) => {
      const doc = JSON.parse(text);
      assert.equal(doc.error.code, 400, text);
      assert.equal(doc.error.status, 'INVALID_ARGUMENT', text);
      return doc.error.message;
    },
  },
  {
    // Needs no credential at all: the cheapest way in for anyone.
    name: 'ollama',
    path: '/api/chat',
    headers: {},
    body: (m, x) => `{"model":"llama3","stream":false,"options":{"temperature":0},"messages":[{"role":"user","content":"${m}"}],"x":${x}}`,
    error: (text) => {
      const doc = JSON.parse(text);
      assert.equal(typeof doc.error, 'string', text);
      return doc.error;
    },
  },
];

const post = (relay, f, body) =>
  relay.fetch(f.path, { method: 'POST', headers: { 'content-type': 'application/json', ...f.headers }, body });

// The relay.fcgi processes serving the suite, to tell that none died.
const servingPids = (relay) =>
  (relay.processModel === 'fcgid' ? relay.fcgidPids() : relay.workerPids()).slice().sort();


const UPSTREAMS = [
  'anthropic', 'gemini', 'ollama',
  { name: 'compat', type: 'openai-compatible', mount: '/compat' },
];

relaySuite('hostile input', { upstreams: UPSTREAMS }, (relay) => {
  test('a body nested 1,700 levels is 400 naming the limit, in every format; no worker dies', T, async () => {
    const pids = servingPids(relay);
    const m = uniq('deep');
    for (const f of FORMATS) {
      // 30,000 levels: 60 KB, under the harness's max_body (64 KiB).
      for (const depth of [1700, 30000]) {
        const x = '['.repeat(depth) + ']'.repeat(depth);
        const r = await post(relay, f, f.body(m, x));
        assert.equal(r.status, 400, `${f.name} depth ${depth}: ${r.status} ${r.text.slice(0, 300)}`);
        assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
        assert.match(f.error(r.text), new RegExp(`${DEPTH_LIMIT} levels`), r.text);
      }
    }
    assert.equal(relay.fake.callsFor(m).length, 0, 'nothing went upstream');
    // Every worker still serves: each format answers a normal request.
    for (const f of FORMATS) {
      const ok = uniq(`after-deep-${f.name}`);
      const r = await post(relay, f, f.body(ok, '[]'));
      assert.equal(r.status, 200, `${f.name} after the deep bodies: ${r.text.slice(0, 300)}`);
    }
    assert.deepEqual(servingPids(relay), pids, 'the same relay.fcgi processes serve (none died)');
  });

  test('nesting just inside the limit is served and cached', T, async () => {
    const m = uniq('deep-ok');
    // The outer object is level 1.
    const x = '['.repeat(DEPTH_LIMIT - 1) + ']'.repeat(DEPTH_LIMIT - 1);
    const f = FORMATS[0];
    const a = await post(relay, f, f.body(m, x));
    assert.equal(a.status, 200, a.text.slice(0, 300));
    const b = await post(relay, f, f.body(m, x));
    assert.equal(b.status, 200, b.text.slice(0, 300));
    assert.equal(b.headers.get('x-cache'), 'HIT');
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('"\\u0000" in a string is legal JSON: forwarded as sent and keyed with what follows it', T, async () => {
    const m = uniq('nul');
    for (const f of FORMATS) {
      const one = f.body(`${m} ${f.name} before\\u0000after one`, '[]');
      const two = f.body(`${m} ${f.name} before\\u0000after two`, '[]');
      const a = await post(relay, f, one);
      assert.equal(a.status, 200, `${f.name}: ${a.text.slice(0, 300)}`);
      const b = await post(relay, f, two);
      assert.equal(b.status, 200, `${f.name}: ${b.text.slice(0, 300)}`);
      assert.notEqual(b.headers.get('x-cache'), 'HIT', `${f.name}: a body that differs after the NUL is another key`);
      const again = await post(relay, f, one);
      assert.equal(again.headers.get('x-cache'), 'HIT', `${f.name}: the same body is a hit`);
      const calls = relay.fake.callsFor(`${m} ${f.name}`);
      assert.equal(calls.length, 2, `${f.name}: two upstream calls`);
      assert.ok(calls[0].body.includes('before\\u0000after one'), `${f.name}: the body is forwarded as sent`);
    }
  });

  test('dot segments, empty segments, backslashes and encoded slashes never reach the upstream', T, async () => {
    const m = uniq('dots');
    const body = JSON.stringify({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: m }] });
    const targets = [
      '/v1/../../x',
      '/compat/v1/../../x',
      '/compat/v1/%2e%2e/%2E%2e/x',
      '/v1/.%2E/.%2e/x',
      '/v1/./chat/completions',
      '/v1//chat/completions',
      '/v1/chat%2fcompletions',
      '/v1/chat%5Ccompletions',
      '/v1\\..\\..\\x',
      '/api/../v1/chat/completions',
    ];
    for (const target of targets) {
      const r = await curl(['--path-as-is', '-X', 'POST', '-H', 'content-type: application/json',
        '-H', `authorization: Bearer ${KEY_A}`, '--data-binary', body, `${relay.base}${target}`]);
      // Some fronts refuse a few of these themselves (Apache: 404 for an
      // encoded slash): a client error either way, and nothing upstream.
      assert.ok(r.status >= 400 && r.status < 500, `${target}: ${r.status} ${r.body.slice(0, 300)}`);
      if (/^application\/json/.test(r.headers['content-type'] ?? '')) {
        assert.equal(r.status, 400, `${target}: ${r.body}`);
        const message = /^\/api\//.test(target) ? JSON.parse(r.body).error : assertOpenAIError(r.body).message;
        assert.match(message, /does not forward this request URL/, r.body);
      }
    }
    assert.equal(relay.fake.callsFor(m).length, 0, 'nothing reached the upstream');
    // What the upstream saw: never a path outside the API.
    for (const c of relay.fake.calls) assert.ok(!/\.\.|\/x$/.test(c.path), `upstream got ${c.path}`);
    // The same request on its real path is served.
    const ok = await relay.chat(body);
    assert.equal(ok.status, 200, ok.text);
  });

  test('an empty Bearer, a bare Authorization value or another API\'s key header is no credential: 401', T, async () => {
    const m = uniq('nocred');
    const body = JSON.stringify({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: m }] });
    for (const headers of [
      { authorization: 'Bearer ' },
      { authorization: 'Bearer' },
      { authorization: 'x' },
      { 'api-key': 'x' }, // Azure's header, on OpenAI's API
      { 'x-api-key': 'x' }, // Anthropic's
    ]) {
      const r = await relay.fetch('/v1/chat/completions', {
        method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body,
      });
      assert.equal(r.status, 401, `${JSON.stringify(headers)}: ${r.status} ${r.text}`);
      assertOpenAIError(r.text);
    }
    const a = await relay.fetch('/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': '', authorization: 'Bearer ', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: m }] }),
    });
    assert.equal(a.status, 401, a.text);
    assert.equal(JSON.parse(a.text).type, 'error');
    assert.equal(relay.fake.callsFor(m).length, 0, 'nothing went upstream');
  });

  test('an upstream that answers 431 and drops the connection mid-body reaches the client as 431, not 502', T, async () => {
    // The fake's HTTP server (Node's) refuses headers over 16 KiB in its
    // parser: a 431 head, then the connection destroyed while the body is
    // still coming. nginx and Apache refuse such a header themselves (400).
    const m = uniq('refused');
    const body = JSON.stringify({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: `${m} ${'x'.repeat(60000)}` }] });
    const r = await relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY_A}`, 'x-big': 'b'.repeat(20000) },
      body,
    });
    assert.notEqual(r.status, 502, r.text.slice(0, 300));
    assert.ok([431, 400].includes(r.status), `${r.status} ${r.text.slice(0, 300)}`);
    if (FRONT === 'caddy') assert.equal(r.status, 431, 'Caddy passes the header: the upstream\'s own answer');
    assert.equal(relay.fake.callsFor(m).length, 0, 'the upstream refused it in its parser');
  });

  test('X-Relay-TTL beyond [cache] max_ttl is cut to it; relay-admin show and ls handle the entry', T, async () => {
    const m = uniq('ttl');
    const body = { model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: m }] };
    const r = await relay.chat(body, { headers: { 'x-relay-ttl': '99999999999999999999999' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-cache'), 'MISS');
    const key = r.headers.get('x-relay-key');
    const shown = await relay.admin(['--json', 'show', key]);
    assert.equal(shown.code, 0, `show exited ${shown.code}: ${shown.stderr}`);
    const entry = JSON.parse(shown.stdout);
    assert.equal(entry.expires - entry.created, MAX_TTL, 'kept for max_ttl, not for the TTL asked');
    const text = await relay.admin(['show', key]);
    assert.equal(text.code, 0, text.stderr);
    const ls = await relay.admin(['ls', '--limit', '0']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal((await relay.chat(body)).headers.get('x-cache'), 'HIT');
  });
});

// Under a shared cache scope with pass-through credentials only ([auth]
// mode = passthrough) Relay cannot vouch for a credential: any string
// passes, so only-if-cached (which never reaches the upstream that would
// check it) is refused rather than become a free probe of what was asked.
relaySuite('hostile input: shared scope', { ini: { cache: { scope: 'shared' }, auth: { mode: 'passthrough' } } }, (relay) => {
  test('only-if-cached is 403 in the client\'s format, whatever the credential; nothing upstream', T, async () => {
    const m = uniq('probe');
    const body = { model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: m }] };
    const stored = await relay.chat(body);
    assert.equal(stored.status, 200, stored.text);
    for (const key of [KEY_A, 'x']) {
      const r = await relay.chat(body, { key, headers: { 'cache-control': 'only-if-cached' } });
      assert.equal(r.status, 403, `${key}: ${r.status} ${r.text}`);
      assert.match(assertOpenAIError(r.text).message, /only-if-cached.*shared/s);
    }
    assert.equal(relay.fake.callsFor(m).length, 1, 'only the first request went upstream');
  });
});

// Where Relay client tokens are allowed (the default [auth] mode = both),
// a shared scope is shared only between requests presenting a valid Relay
// token: a passed-through key keeps its own scope, so only-if-cached reads
// only what that key itself stored, and another string gets nothing.
relaySuite('hostile input: shared scope with tokens allowed', { ini: { cache: { scope: 'shared' } } }, (relay) => {
  test('only-if-cached answers a passed-through key from its own entries only; nothing upstream', T, async () => {
    const m = uniq('probe-own');
    const body = { model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: m }] };
    const stored = await relay.chat(body);
    assert.equal(stored.status, 200, stored.text);
    const own = await relay.chat(body, { key: KEY_A, headers: { 'cache-control': 'only-if-cached' } });
    assert.equal(own.status, 200, own.text);
    assert.equal(own.headers.get('x-cache'), 'HIT');
    const other = await relay.chat(body, { key: 'x', headers: { 'cache-control': 'only-if-cached' } });
    assert.equal(other.status, 504, `${other.status} ${other.text}`);
    assertOpenAIError(other.text);
    assert.equal(relay.fake.callsFor(m).length, 1, 'only the first request went upstream');
  });
});
