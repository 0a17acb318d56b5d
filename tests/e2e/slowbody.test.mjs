// Slow request bodies behind each front (issue 12, defect 2): clients that
// send their headers and then their body a byte every 2 s, or ten bytes and
// then nothing, more of them than the pool has threads. Health checks and
// requests whose body is whole must still be answered meanwhile, and every
// slow client must be ended: by Relay ([fcgi] body_timeout, 408; 503 when
// too many wait at once) and, since no front passes Relay's answer on to a
// client still sending its body, by the front at its own limit
// (RELAY_BODY_TIMEOUT in deploy/: body_timeout + 5 s). What Relay itself
// answers is checked on its socket in body-fcgi.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, sleep, FRONT, KEY_A } from './harness.mjs';
import { slowRequest } from './rawhttp.mjs';

const BODY_TIMEOUT = 3; // s: [fcgi] body_timeout here, so the fronts' limit is 8 s
const THREADS = 16; // the harness's pool: 2 workers x 8 threads
const TRICKLERS = 2 * THREADS;
const SILENT = 8;
const EVERY_MS = 2000;
const BOUND = 30000; // ms: every slow client here is ended well before

// How each front ends a slow client at its limit, and whether the request
// reaches Relay before its body is whole. status null: the connection is
// closed without an answer.
const CUT = {
  // servers timeouts read_body: the whole request.
  caddy: { relayReads: true, trickle: [504], silent: [504] },
  // RequestReadTimeout (408); 503 when Relay has dropped the body first
  // (mod_proxy_fcgi's next write fails).
  'apache-proxy-fcgi': { relayReads: true, trickle: [408, 503], silent: [408, 503] },
  // client_body_timeout bounds each read, not the body: a trickle goes on
  // for as long as the client likes, in nginx, which reads the whole body
  // before passing the request on; a silent client is closed.
  nginx: { relayReads: false, trickle: 'held', silent: [null, 408] },
  // RequestReadTimeout; mod_fcgid (which also reads the whole body first)
  // turns the failed read into 500.
  'apache-fcgid': { relayReads: false, trickle: [500, 408], silent: [500, 408] },
}[FRONT];

// Requests Relay answered with status, from /relay/metrics.
async function relayCount(relay, status) {
  const r = await relay.fetch('/relay/metrics');
  assert.equal(r.status, 200, r.text.slice(0, 300));
  let n = 0;
  for (const m of r.text.matchAll(new RegExp(`^relay_requests_total\\{[^}]*status="${status}"[^}]*\\} (\\d+)$`, 'gm'))) n += Number(m[1]);
  return n;
}

relaySuite(`slow request bodies behind ${FRONT}`, {
  ini: { fcgi: { body_timeout: BODY_TIMEOUT }, metrics: { access: 'open' } },
}, (relay) => {
  test('clients trickling their bodies take no thread that health checks and whole requests need', { timeout: BOUND * 2 }, async () => {
    const start = (i, how) => {
      const body = JSON.stringify(chatBody(uniq(`slow ${i}`))).padEnd(2000, ' ');
      const head = [
        'POST /v1/chat/completions HTTP/1.1',
        `Host: 127.0.0.1:${relay.port}`,
        'Content-Type: application/json',
        `Authorization: Bearer ${KEY_A}`,
        `Content-Length: ${body.length}`,
        'Connection: close',
      ].join('\r\n');
      if (how === 'trickle') return slowRequest(relay.port, { head, first: body[0], rest: body.slice(1), everyMs: EVERY_MS, timeoutMs: BOUND });
      return slowRequest(relay.port, { head, first: body.slice(0, 10), timeoutMs: BOUND });
    };
    const tricklers = Array.from({ length: TRICKLERS }, (_, i) => start(i, 'trickle'));
    const silent = Array.from({ length: SILENT }, (_, i) => start(i, 'silent'));
    const ended = new Set();
    for (const c of [...tricklers, ...silent]) c.done.then(() => ended.add(c));
    // Long enough for every one to reach Relay (or to be held by the
    // front), and for Relay to refuse those beyond its slots.
    await sleep(600);

    const health = await relay.fetch('/relay/health');
    assert.equal(health.status, 200, health.text);
    const m = uniq('a whole body meanwhile');
    const chat = await relay.chat(chatBody(m));
    assert.equal(chat.status, 200, chat.text);
    assert.equal(chat.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 1);
    const pending = TRICKLERS + SILENT - ended.size;
    assert.ok(pending > THREADS,
      `only ${pending} slow clients were still sending when the health check was answered: it proves nothing`);

    // Every silent client is ended at the front's limit.
    const statusOf = (o) => (o.answer ? o.answer.status : null);
    for (const o of await Promise.all(silent.map((c) => c.done))) {
      assert.notEqual(o.ended, 'timeout', `a silent client was never ended (${FRONT})`);
      assert.ok(CUT.silent.includes(statusOf(o)), `a silent client got ${statusOf(o)} (${o.ended}) from ${FRONT}`);
    }
    if (CUT.trickle === 'held') {
      // Still held by the front, which never passed them on.
      assert.equal(tricklers.filter((c) => ended.has(c)).length, 0, `${FRONT} ended a trickling client`);
      for (const c of tricklers) c.close();
    } else {
      for (const o of await Promise.all(tricklers.map((c) => c.done))) {
        assert.notEqual(o.ended, 'timeout', `a trickling client was never ended (${FRONT})`);
        assert.ok(CUT.trickle.includes(statusOf(o)), `a trickling client got ${statusOf(o)} (${o.ended}) from ${FRONT}`);
      }
    }

    // Relay answered every slow request it was passed, each with its own
    // 408 (body_timeout) or 503 (no slot free), and sent none upstream.
    const timedOut = await relayCount(relay, 408);
    const refused = await relayCount(relay, 503);
    if (CUT.relayReads) {
      assert.equal(timedOut + refused, TRICKLERS + SILENT, `Relay answered ${timedOut} with 408 and ${refused} with 503`);
      assert.ok(timedOut >= 1, 'Relay timed out none of the bodies itself');
    } else {
      assert.equal(timedOut + refused, 0, `${FRONT} passed on requests whose body was not whole`);
    }
    assert.equal(relay.fake.callsFor('slow ').length, 0, 'nothing went upstream');
  });
});
