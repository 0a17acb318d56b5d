// Admission control (engine/admission.h): [fcgi] max_inflight bounds the
// upstream calls in flight to one upstream across the whole pool, and a
// call past it waits up to [fcgi] queue_timeout for a place, then gets a 503
// in the client's format with Retry-After. Cache hits never queue.
//
// How many calls reach the fake at once is read from the fake's own record:
// a call spans from its arrival (call.at) to its last body write
// (call.writes), so overlapping spans are calls in flight together. No
// assertion is timed: the slow calls are slow (headerDelayMs) so that the
// limit, not the machine's speed, decides who gets through.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, KEY_A, TEST_TIMEOUT } from './harness.mjs';
import { assertOpenAIError } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const LIMIT = 4;
const SLOW_MS = 3000;

// The most calls of `calls` the fake was answering at once.
function mostAtOnce(calls) {
  const edges = [];
  for (const c of calls) {
    const end = c.writes.length ? c.writes[c.writes.length - 1].at : Date.now();
    edges.push([c.at, 1], [end, -1]);
  }
  // An end and a start at the same ms: the end first (not in flight together).
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of edges) {
    now += d;
    most = Math.max(most, now);
  }
  return most;
}

function metricValue(text, name, labels) {
  const want = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}} `;
  const line = text.split('\n').find((l) => l.startsWith(want));
  return line === undefined ? undefined : Number(line.slice(want.length));
}

const anthropicHeaders = { 'content-type': 'application/json', 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' };
const anthropicBody = (text) => ({ model: 'claude-sonnet-4-5', max_tokens: 64, temperature: 0, messages: [{ role: 'user', content: text }] });

relaySuite('admission: max_inflight 4, queue_timeout 1 s', {
  ini: { fcgi: { workers: 2, threads: 16, max_inflight: LIMIT, queue_timeout: 1 }, metrics: { access: 'open' } },
  upstreams: ['anthropic'],
  concurrency: 14, // mod_fcgid: a process for each request in flight at once
}, (relay) => {
  test('10 slow calls: 4 reach the upstream, 6 get 503 with Retry-After in OpenAI shape; a hit is served meanwhile', T, async () => {
    const cached = chatBody(uniq('admit-hit'));
    const first = await relay.chat(cached);
    assert.equal(first.status, 200, first.text);

    const tag = uniq('admit-slow');
    for (let i = 0; i < 10; i++) relay.fake.enqueue({ path: '/v1/chat/completions', headerDelayMs: SLOW_MS });
    const slow = Array.from({ length: 10 }, (_, i) => relay.chat(chatBody(`${tag} ${i}`)).then((r) => ({ ...r, doneAt: Date.now() })));

    // While LIMIT calls hold every place, a cached answer is still served.
    await relay.fake.waitForCalls((calls) => calls.filter((c) => c.body.includes(tag)).length >= LIMIT, 10000);
    const hit = await relay.chat(cached);
    const hitAt = Date.now();
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers.get('x-cache'), 'HIT');

    const answers = await Promise.all(slow);
    const served = answers.filter((r) => r.status === 200);
    const refused = answers.filter((r) => r.status === 503);
    assert.equal(served.length, LIMIT, answers.map((r) => `${r.status} ${r.text.slice(0, 200)}`).join('\n'));
    assert.equal(refused.length, 10 - LIMIT);
    for (const r of refused) {
      const err = assertOpenAIError(r.text);
      assert.equal(err.code, 'overloaded', r.text);
      assert.match(err.message, /max_inflight/);
      assert.equal(r.headers.get('retry-after'), '1');
    }
    assert.ok(served.every((r) => r.doneAt > hitAt), 'the hit was answered before any slow call ended');
    // The refused ones were answered after their queue wait, before the
    // slow calls ended: they never waited for a place past queue_timeout.
    const lastRefusal = Math.max(...refused.map((r) => r.doneAt));
    assert.ok(lastRefusal < Math.min(...served.map((r) => r.doneAt)), 'refusals came before the slow calls ended');

    const calls = relay.fake.callsFor(tag);
    assert.equal(calls.length, LIMIT, 'only the admitted calls reached the upstream');
    assert.equal(mostAtOnce(calls), LIMIT);

    const m = await relay.fetch('/relay/metrics');
    assert.equal(m.status, 200);
    assert.ok(metricValue(m.text, 'relay_rejections_total', { reason: 'queue_full' }) >= 10 - LIMIT, m.text);
    assert.equal(metricValue(m.text, 'relay_upstream_inflight', { upstream: 'openai' }), 0, 'every place was given back');
    assert.ok(metricValue(m.text, 'relay_admission_waits_total', { upstream: 'openai' }) >= 10 - LIMIT);
  });

  test('the refusal is in Anthropic shape for /v1/messages, and the places come back after errors', T, async () => {
    const tag = uniq('admit-anthropic');
    // Two of the admitted calls fail upstream: their places are given back too.
    relay.fake.enqueue({ path: '/v1/messages', headerDelayMs: SLOW_MS, status: 500 });
    relay.fake.enqueue({ path: '/v1/messages', headerDelayMs: SLOW_MS, status: 500 });
    for (let i = 0; i < 4; i++) relay.fake.enqueue({ path: '/v1/messages', headerDelayMs: SLOW_MS });
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => relay.fetch('/v1/messages', {
      method: 'POST', headers: anthropicHeaders, body: JSON.stringify(anthropicBody(`${tag} ${i}`)),
    })));
    const refused = answers.filter((r) => r.status === 503);
    assert.equal(refused.length, 6 - LIMIT, answers.map((r) => `${r.status} ${r.text.slice(0, 200)}`).join('\n'));
    for (const r of refused) {
      const doc = JSON.parse(r.text);
      assert.equal(doc.type, 'error', r.text);
      assert.equal(doc.error.type, 'overloaded_error', r.text);
      assert.ok(r.headers.get('retry-after'), 'Retry-After');
    }
    assert.equal(answers.filter((r) => r.status === 500).length, 2, 'the upstream errors passed on');
    assert.equal(relay.fake.callsFor(tag).length, LIMIT);

    // Every place is free again: LIMIT quick calls go through at once.
    relay.fake.reset();
    const again = await Promise.all(Array.from({ length: LIMIT }, (_, i) => relay.fetch('/v1/messages', {
      method: 'POST', headers: anthropicHeaders, body: JSON.stringify(anthropicBody(`${tag} again ${i}`)),
    })));
    assert.deepEqual(again.map((r) => r.status), Array(LIMIT).fill(200));
  });
});

relaySuite('admission: a queue long enough serves everyone, at most 4 at a time', {
  ini: { fcgi: { workers: 2, threads: 16, max_inflight: LIMIT, queue_timeout: 20 } },
  concurrency: 12,
}, (relay) => {
  test('10 streamed calls all get 200; the fake never had more than 4 at once, stream bodies included', T, async () => {
    const tag = uniq('admit-queue');
    // Streams whose body takes a while: the place is held until the end.
    for (let i = 0; i < 10; i++) relay.fake.enqueue({ path: '/v1/chat/completions', headerDelayMs: 300, chunks: 3, chunkDelayMs: 150 });
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => relay.chat(chatBody(`${tag} ${i}`, { stream: true }), { timeout: 25000 })));
    assert.deepEqual(answers.map((r) => r.status), Array(10).fill(200), answers.map((r) => r.text.slice(0, 200)).join('\n'));
    assert.ok(answers.every((r) => r.text.includes('data: [DONE]')), 'every stream complete');
    const calls = relay.fake.callsFor(tag);
    assert.equal(calls.length, 10);
    assert.ok(mostAtOnce(calls) <= LIMIT, `at most ${LIMIT} at once, saw ${mostAtOnce(calls)}`);
    assert.ok(mostAtOnce(calls) >= 2, 'calls did run side by side');
  });
});
