// Relay's own handling of request bodies that do not come (issue 12, defect
// 2), seen on its FastCGI socket with no front in between: a front passes a
// body on as it comes (Caddy, mod_proxy_fcgi) but shows its own error to
// such a client (see slowbody.test.mjs), so what Relay answers is only seen
// here. [fcgi] body_timeout bounds the whole body, not each read; at most
// threads - reserve_threads threads of a worker wait on bodies, the others
// answer health checks and requests whose body is there.
//
// e2e-fronts: caddy (Relay's socket is used directly: the front does not
// matter, and under mod_fcgid there is no socket to reach)

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, KEY_A } from './harness.mjs';
import { fcgiRequest } from './fcgiclient.mjs';
import { assertOpenAIError } from './wire.mjs';

const BODY_TIMEOUT = 2; // s
const WORKERS = 2;
const THREADS = 8;
const RESERVE = 4;
const SLOTS = WORKERS * (THREADS - RESERVE); // threads that may wait on bodies
const BOUND = 20000; // ms: any request here ends well before

// The CGI variables a front sends for a POST of `length` body bytes.
function params(path, headers, length) {
  const p = {
    REQUEST_METHOD: 'POST',
    REQUEST_URI: path,
    SCRIPT_NAME: path,
    CONTENT_TYPE: 'application/json',
    CONTENT_LENGTH: String(length),
    SERVER_PROTOCOL: 'HTTP/1.1',
  };
  for (const [k, v] of Object.entries(headers)) p[`HTTP_${k.toUpperCase().replaceAll('-', '_')}`] = v;
  return p;
}

// Each wire format: a request, and the check that an error is in its shape.
const FORMATS = [
  {
    name: 'OpenAI',
    path: '/v1/chat/completions',
    headers: { authorization: `Bearer ${KEY_A}` },
    body: (m) => chatBody(m),
    check: (e) => assert.equal(assertOpenAIError(e).code, 'request_timeout'),
  },
  {
    name: 'Anthropic',
    path: '/v1/messages',
    headers: { 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' },
    body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: 8, temperature: 0, messages: [{ role: 'user', content: m }] }),
    check: (e) => {
      assert.equal(e.type, 'error');
      assert.equal(typeof e.error?.type, 'string');
      assert.match(e.error.message, /body_timeout/);
    },
  },
  {
    name: 'Gemini',
    path: '/v1beta/models/gemini-2.5-flash:generateContent',
    headers: { 'x-goog-api-key': KEY_A },
    body: (m) => ({ contents: [{ role: 'user', parts: [{ text: m }] }], generationConfig: { temperature: 0 } }),
    check: (e) => {
      assert.equal(e.error?.code, 408);
      assert.match(e.error.message, /body_timeout/);
    },
  },
  {
    name: 'Ollama',
    path: '/api/chat',
    headers: {},
    body: (m) => ({ model: 'llama3.2', stream: false, options: { temperature: 0 }, messages: [{ role: 'user', content: m }] }),
    check: (e) => assert.match(e.error, /body_timeout/),
  },
];

// Ends req after BOUND ms if Relay has not (the test then fails on it).
async function bounded(req) {
  const t = setTimeout(() => req.close(), BOUND);
  const r = await req.done;
  clearTimeout(t);
  return r;
}

relaySuite('request bodies on Relay\'s FastCGI socket', {
  ini: { fcgi: { workers: WORKERS, threads: THREADS, reserve_threads: RESERVE, body_timeout: BODY_TIMEOUT } },
  upstreams: ['anthropic', 'gemini', 'ollama'],
}, (relay) => {
  test('a body that stops coming gets 408 in the client\'s own format, and nothing goes upstream', { timeout: BOUND * 2 }, async () => {
    await Promise.all(FORMATS.map(async (f) => {
      const m = uniq(`stalled ${f.name}`);
      const body = JSON.stringify(f.body(m));
      const req = fcgiRequest(relay.socket, params(f.path, f.headers, body.length));
      req.send(body.slice(0, 10)); // and then nothing
      const r = await bounded(req);
      assert.equal(r.closedBy, 'relay', `${f.name}: Relay never answered`);
      assert.equal(r.response?.status, 408, `${f.name}: ${JSON.stringify(r.response)}`);
      assert.match(r.response.headers['content-type'] ?? '', /^application\/json/);
      f.check(JSON.parse(r.response.body));
      assert.ok(r.ended, `${f.name}: the request was ended (FCGI_END_REQUEST)`);
      assert.equal(relay.fake.callsFor(m).length, 0, `${f.name}: nothing went upstream`);
    }));
  });

  test('a body sent a byte at a time is cut at the whole-body deadline, not per read', { timeout: BOUND * 2 }, async () => {
    const body = JSON.stringify(chatBody(uniq('trickle'))).padEnd(2000, ' ');
    const req = fcgiRequest(relay.socket, params('/v1/chat/completions', { authorization: `Bearer ${KEY_A}` }, body.length));
    // Each byte comes well within body_timeout of the one before: only a
    // deadline for the whole body ends this.
    let sent = 0;
    const timer = setInterval(() => req.send(body[sent++]), 200);
    const r = await bounded(req);
    clearInterval(timer);
    assert.equal(r.closedBy, 'relay', 'Relay never answered the trickling body');
    assert.equal(r.response?.status, 408, JSON.stringify(r.response));
    assert.equal(assertOpenAIError(r.response.body).code, 'request_timeout');
    assert.ok(sent > 3 && sent < body.length, `answered while the body was still coming (${sent} of ${body.length} bytes sent)`);
  });

  test('with every slot waiting on a slow body, more slow bodies get 503 and the reserve serves the rest', { timeout: BOUND * 2 }, async () => {
    const n = SLOTS + 2 * THREADS; // more than all threads of the pool
    const events = []; // the order in which answers came
    const slow = Array.from({ length: n }, (_, i) => {
      const body = JSON.stringify(chatBody(uniq(`slow ${i}`)));
      const req = fcgiRequest(relay.socket, params('/v1/chat/completions', { authorization: `Bearer ${KEY_A}` }, body.length));
      req.send(body.slice(0, 10));
      return bounded(req).then((r) => {
        events.push(r.response?.status ?? 'none');
        return r;
      });
    });
    // The refused ones come first (each after a short grace), while the
    // slot holders wait for their bodies.
    const firstRefusals = n - SLOTS;
    const deadline = Date.now() + BOUND;
    while (events.filter((s) => s === 503).length < firstRefusals && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(events.filter((s) => s === 503).length >= firstRefusals, `503s so far: ${events}`);
    assert.ok(!events.includes(408), `a slot holder timed out before the refusals were all in: ${events}`);
    // Every thread not waiting on a body serves: a health check and a chat
    // request through the front, while the slot holders still wait.
    const health = await relay.fetch('/relay/health');
    assert.equal(health.status, 200, health.text);
    const m = uniq('whole body meanwhile');
    const chat = await relay.chat(chatBody(m));
    assert.equal(chat.status, 200, chat.text);
    assert.equal(relay.fake.callsFor(m).length, 1);
    assert.ok(!events.includes(408), `the slot holders were answered before the health check: ${events}`);

    const all = await Promise.all(slow);
    const refused = all.filter((r) => r.response?.status === 503);
    const timedOut = all.filter((r) => r.response?.status === 408);
    assert.equal(refused.length + timedOut.length, n, `every slow body answered 503 or 408: ${all.map((r) => r.response?.status)}`);
    assert.ok(timedOut.length >= 1 && timedOut.length <= SLOTS, `${timedOut.length} waited for their bodies (slots: ${SLOTS})`);
    for (const r of refused) {
      const e = assertOpenAIError(r.response.body);
      assert.equal(e.code, 'overloaded');
      assert.match(e.message, /busy receiving other request bodies/);
    }
  });
});
