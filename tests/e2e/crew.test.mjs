// The request threads of a worker (fcgi/crew.c, issue 14): more
// concurrent streams than [fcgi] threads are all served live, the threads
// started for them drain on SIGTERM like the others, and a connection the
// front keeps (FCGI_KEEP_CONN) is served request after request without
// holding a thread meanwhile. Orderings of events are asserted, never
// timings.
//
// e2e-fronts: caddy (the crew is the pool's, whatever the front: run once;
// the fronts' own suites stream through it behind every front)

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, exited, TEST_TIMEOUT } from './harness.mjs';
import { fcgiAnswerThenWrite, fcgiKeptRequests } from './fcgiclient.mjs';
import { assertValidChatStream } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const STREAMS = 6; // with 1 worker x 2 threads (max_threads 8)

// Reads a streaming response to its end, logging 'first i' at its first
// byte and 'end i' at its end into the shared events list.
async function follow(res, i, events) {
  let text = '';
  const decoder = new TextDecoder();
  for await (const part of res.body) {
    if (!text) events.push(`first ${i}`);
    text += decoder.decode(part, { stream: true });
  }
  events.push(`end ${i}`);
  return text;
}

// Starts STREAMS distinct streams at once; resolves when all ended, with
// their texts and the order of first bytes and ends.
async function concurrentStreams(relay, label, onAllStarted) {
  const events = [];
  const markers = Array.from({ length: STREAMS }, (_, i) => uniq(`${label} ${i}`));
  // role + 6 content + finish events 250 ms apart: ~2 s each.
  for (let i = 0; i < STREAMS; i++) relay.fake.enqueue({ chunks: 6, chunkDelayMs: 250 });
  let started = 0;
  const texts = await Promise.all(markers.map(async (m, i) => {
    const res = await relay.chat(chatBody(m, { stream: true }), { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-cache'), 'MISS');
    const p = follow(res, i, events);
    if (++started === STREAMS && onAllStarted) onAllStarted();
    return p;
  }));
  return { markers, texts, events };
}

relaySuite('request threads on demand', {
  ini: { fcgi: { workers: 1, threads: 2, max_threads: 8, drain_timeout: 10 } },
}, (relay) => {
  test(`${STREAMS} concurrent streams on a worker of 2 threads (max_threads 8) all start before any ends`, T, async () => {
    const { markers, texts, events } = await concurrentStreams(relay, 'on demand');
    const firstEnd = events.findIndex((e) => e.startsWith('end'));
    const lastFirst = Math.max(...events.map((e, i) => (e.startsWith('first') ? i : -1)));
    assert.ok(lastFirst < firstEnd, `a stream began only after another ended: ${events.join(', ')}`);
    texts.forEach((text, i) => {
      assert.equal(assertValidChatStream(text).content, `Echo: ${markers[i]}`);
      assert.equal(relay.fake.callsFor(markers[i]).length, 1);
    });
  });

  test('SIGTERM with threads beyond `threads` serving: every stream completes, then the pool exits', T, async () => {
    const pool = relay.procs.relay;
    let termSent = false;
    const { markers, texts, events } = await concurrentStreams(relay, 'drain', () => {
      termSent = true;
      pool.kill('SIGTERM');
    });
    assert.ok(termSent);
    assert.ok(events.slice(0, STREAMS).every((e) => e.startsWith('first')), events.join(', '));
    texts.forEach((text, i) => {
      assert.ok(text.endsWith('data: [DONE]\n\n'), `stream ${i} was cut by the drain: ${text.slice(-80)}`);
      assert.equal(text, relay.fake.callsFor(markers[i])[0].sent);
    });
    assert.ok(await exited(pool, 8000), 'the pool still runs 8 s after its streams ended');
    assert.equal(pool.exitCode, 0, `pool exit ${pool.exitCode ?? pool.signalCode}`);
    await relay.restartPool();
  });

  test('a kept connection (FCGI_KEEP_CONN) is served request after request and stays open', T, async () => {
    const get = { REQUEST_METHOD: 'GET', REQUEST_URI: '/relay/health', SCRIPT_NAME: '/relay/health', SERVER_PROTOCOL: 'HTTP/1.1' };
    // More requests than threads, with pauses in which a thread waiting on
    // the connection would be held: the health checks in between, on their
    // own connections, are still answered.
    const kept = fcgiKeptRequests(relay.socket, Array(5).fill(get), { gapMs: 100 });
    const others = await Promise.all(Array.from({ length: 4 }, () => relay.fetch('/relay/health')));
    for (const o of others) assert.equal(o.status, 200);
    const { responses, closed } = await kept;
    assert.equal(responses.length, 5);
    for (const r of responses) assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(closed, false, 'Relay closed the kept connection after its last request');
  });

  test('a connection the front does not keep is closed outright once answered', T, async () => {
    // libfcgi's own close only shuts Relay's write side and then holds the
    // thread until the front closes too (up to 2 s): a front that answers
    // its client first kept a thread of Relay's asleep on every request.
    // The body was read to its end and nothing else is unread, so Relay
    // closes at once: the front's next write fails.
    const get = { REQUEST_METHOD: 'GET', REQUEST_URI: '/relay/health', SCRIPT_NAME: '/relay/health', SERVER_PROTOCOL: 'HTTP/1.1' };
    const r = await fcgiAnswerThenWrite(relay.socket, get);
    assert.equal(r.ended, true, 'no FCGI_END_REQUEST');
    assert.equal(r.status, 200);
    assert.equal(r.writeError, 'EPIPE', 'the connection was still open for reading after the answer');
  });
});

relaySuite('max_threads below threads', { ini: {} }, (relay) => {
  test('is refused at start, naming the key', T, async () => {
    relay.writeIni({ fcgi: { threads: 4, max_threads: 2 } });
    const r = await relay.admin(['config', 'fcgi.max_threads']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\[fcgi\] max_threads: 2 is below threads \(4\)/);
  });
});
