// What a front (RELAY_FRONT: Caddy, nginx, Apache; tests/e2e/fronts.mjs)
// must do for Relay, checked the same way behind each: stream every framing
// incrementally (SSE, NDJSON, a streamed JSON array), pass every provider's
// credential header through to Relay and on to the upstream, serve the
// dashboard's static files at /relay/admin/ and send its API to Relay.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { relaySuite, uniq, FRONT, KEY_A, REPO, TEST_TIMEOUT } from './harness.mjs';

const T = { timeout: TEST_TIMEOUT };
const CHUNKS = 5;
const GAP_MS = 200; // between upstream chunks: ~1 s per stream

// The streaming request of each framing, with the header carrying its key.
const STREAMS = [
  {
    name: 'OpenAI SSE',
    path: '/v1/chat/completions',
    headers: { authorization: `Bearer ${KEY_A}` },
    body: (m) => ({ model: 'gpt-4o-mini', temperature: 0, stream: true, messages: [{ role: 'user', content: m }] }),
  },
  {
    name: 'Anthropic SSE',
    path: '/v1/messages',
    headers: { 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' },
    body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: 64, temperature: 0, stream: true, messages: [{ role: 'user', content: m }] }),
  },
  {
    name: 'Gemini JSON array',
    path: '/v1beta/models/gemini-2.5-flash:streamGenerateContent',
    headers: { 'x-goog-api-key': KEY_A },
    body: (m) => ({ contents: [{ role: 'user', parts: [{ text: m }] }], generationConfig: { temperature: 0 } }),
  },
  {
    name: 'Ollama NDJSON',
    path: '/api/chat',
    headers: { authorization: `Bearer ${KEY_A}` },
    body: (m) => ({ model: 'llama3.2', stream: true, options: { temperature: 0 }, messages: [{ role: 'user', content: m }] }),
  },
];

relaySuite(`front ${FRONT}: streaming, credentials, dashboard`, {
  upstreams: ['anthropic', 'gemini', 'ollama'],
}, (relay) => {
  for (const s of STREAMS) {
    test(`${s.name} arrives chunk by chunk, as the upstream sends it`, T, async () => {
      const m = uniq(`incremental ${s.name}`);
      relay.fake.enqueue({ chunks: CHUNKS, chunkDelayMs: GAP_MS });
      const res = await relay.fetch(s.path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...s.headers },
        body: JSON.stringify(s.body(m)),
      }, { stream: true });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-cache'), 'MISS');
      const arrivals = []; // {at, bytes}: when each read completed, bytes so far
      let bytes = 0;
      for await (const part of res.body) {
        bytes += part.length;
        arrivals.push({ at: performance.timeOrigin + performance.now(), bytes });
      }
      const [call] = relay.fake.callsFor(m);
      assert.ok(call, 'the request reached the upstream');
      assert.equal(bytes, Buffer.byteLength(call.sent), 'every byte arrived');
      // Held back by the front, the whole answer would arrive at the end in
      // one or two reads. Instead each upstream write must have reached the
      // client before the upstream's last write was made.
      const writes = call.writes.filter((w) => w.bytes > 0);
      assert.ok(writes.length >= CHUNKS, `the fake wrote ${writes.length} times`);
      const last = writes.at(-1).at;
      const early = arrivals.filter((a) => a.at < last);
      assert.ok(early.length >= CHUNKS - 1,
        `only ${early.length} reads before the upstream's last write (${arrivals.length} in all): ${FRONT} buffered the stream`);
      const upstreamSpan = last - writes[0].at;
      const clientSpan = arrivals.at(-1).at - arrivals[0].at;
      assert.ok(clientSpan >= upstreamSpan * 0.6,
        `the upstream spread its writes over ${Math.round(upstreamSpan)} ms, the client's reads over ${Math.round(clientSpan)} ms`);
    });
  }

  test('each provider\'s credential header reaches the upstream untouched', T, async () => {
    const cases = [
      { path: '/v1/chat/completions', headers: { authorization: `Bearer ${KEY_A}` }, body: { model: 'gpt-4o-mini', messages: [] }, check: (h) => h.authorization === `Bearer ${KEY_A}` },
      { path: '/v1/messages', headers: { authorization: `Bearer ${KEY_A}`, 'anthropic-version': '2023-06-01' }, body: { model: 'claude-sonnet-4-5', max_tokens: 8, messages: [] }, check: (h) => h.authorization === `Bearer ${KEY_A}` },
      { path: '/v1/messages', headers: { 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' }, body: { model: 'claude-sonnet-4-5', max_tokens: 8, messages: [] }, check: (h) => h['x-api-key'] === KEY_A },
      { path: '/v1beta/models/gemini-2.5-flash:generateContent', headers: { 'x-goog-api-key': KEY_A }, body: { contents: [] }, check: (h) => h['x-goog-api-key'] === KEY_A },
    ];
    for (const c of cases) {
      const m = uniq('credential');
      const body = JSON.parse(JSON.stringify(c.body));
      if (body.messages) body.messages.push({ role: 'user', content: m });
      else body.contents.push({ role: 'user', parts: [{ text: m }] });
      const r = await relay.fetch(c.path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...c.headers },
        body: JSON.stringify(body),
      });
      assert.equal(r.status, 200, `${c.path} ${Object.keys(c.headers)}: ${r.text.slice(0, 300)}`);
      const [call] = relay.fake.callsFor(m);
      assert.ok(call && c.check(call.headers), `${c.path}: the upstream saw ${JSON.stringify(call?.headers)}`);
    }
  });

  test('a request without a credential is refused by Relay, not by the front', T, async () => {
    const r = await relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: uniq('nokey') }] }),
    });
    assert.equal(r.status, 401);
    const { error } = JSON.parse(r.text);
    assert.equal(typeof error?.message, 'string', r.text);
    assert.ok(!relay.fake.calls.some((c) => c.body.includes('nokey')), 'nothing went upstream');
  });

  test('the dashboard is served as static files at /relay/admin/; its API goes to Relay', T, async () => {
    const index = fs.readFileSync(path.join(REPO, 'www', 'index.html'), 'utf8');
    const r = await relay.fetch('/relay/admin/');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(r.text, index);
    const bare = await relay.fetch('/relay/admin', { redirect: 'manual' });
    assert.ok([301, 302, 308].includes(bare.status), `GET /relay/admin: ${bare.status}`);
    assert.match(bare.headers.get('location') ?? '', /\/relay\/admin\/$/);
    // Every file of the dashboard, with a type the browser accepts: a module
    // script served as anything but JavaScript is refused.
    const types = { '.html': /^text\/html/, '.js': /^(text|application)\/javascript/, '.css': /^text\/css/ };
    for (const f of fs.readdirSync(path.join(REPO, 'www'))) {
      const file = await relay.fetch(`/relay/admin/${f}`);
      assert.equal(file.status, 200, `GET /relay/admin/${f}`);
      assert.equal(file.text, fs.readFileSync(path.join(REPO, 'www', f), 'utf8'), `${f} served as is`);
      const want = types[path.extname(f)];
      if (want) assert.match(file.headers.get('content-type') ?? '', want, `${f}: content-type`);
    }
    // Anything under api/ is Relay's (an answer in Relay's JSON, not a file).
    const api = await relay.fetch('/relay/admin/api/stats');
    assert.notEqual(api.status, 200, 'no such file is served');
    assert.doesNotThrow(() => JSON.parse(api.text), `not Relay's answer: ${api.status} ${api.text.slice(0, 200)}`);
  });

  // Answers of 32 KiB and more leave libfcgi's 8 KiB buffer aside and go to
  // the connection in records of ~64 KiB (fcgi/front.c put_direct): every
  // front must still get them whole and in order, after the head libfcgi
  // wrote, on a miss (the buffered upstream body) and on a hit (the stored
  // answer), and the connection must serve the next requests.
  test('a large answer (~600 KiB) arrives whole on a miss and on a hit', T, async () => {
    const m = uniq('large-answer');
    // Not a multiple of 8 nor of the record size: the last record is padded.
    const content = Array.from({ length: 600 * 1024 + 13 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    relay.fake.enqueue({ content });
    const body = JSON.stringify({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: m }] });
    const ask = () => relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY_A}` },
      body,
    });
    const miss = await ask();
    assert.equal(miss.status, 200, miss.text.slice(0, 300));
    assert.equal(miss.headers.get('x-cache'), 'MISS');
    assert.equal(JSON.parse(miss.text).choices[0].message.content, content);
    for (let i = 0; i < 3; i++) {
      const hit = await ask();
      assert.equal(hit.status, 200, hit.text.slice(0, 300));
      assert.equal(hit.headers.get('x-cache'), 'HIT');
      assert.equal(hit.text, miss.text, 'the hit is the miss byte for byte');
    }
    const health = await relay.fetch('/relay/health');
    assert.equal(health.status, 200);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a large request body (1 MiB) reaches Relay whole', T, async () => {
    const m = uniq('large');
    const filler = 'x'.repeat(1 << 20);
    const r = await relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY_A}` },
      body: JSON.stringify({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: `${m} ${filler}` }] }),
    });
    // Over the suite's max_body (64 KiB): Relay's own 413 in OpenAI's shape,
    // not the front's page.
    assert.equal(r.status, 413, r.text.slice(0, 300));
    assert.equal(JSON.parse(r.text).error.code, 'request_too_large');
    assert.equal(relay.fake.callsFor(m).length, 0);
  });
});
