// The circuit breaker shared by the pool (engine/breaker.h), behind the real
// front: an upstream answering 500s opens it after breaker_failures calls,
// and then no process of the pool calls it (the fake's call count stops);
// a key cached earlier (expired) is answered from the cache (X-Cache:
// STALE, no Warning); a key never cached gets 503 with Retry-After in the
// client's own format (OpenAI's and Anthropic's); after the cool-down
// exactly one probe among many concurrent requests reaches the upstream,
// and its success closes the breaker. /relay/health, relay_breaker_open and
// the stats API say so throughout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { relaySuite, chatBody, uniq, sleep, KEY_A } from './harness.mjs';

const T = { timeout: 60000 };
const FAILURES = 3;
const COOLDOWN = 4; // seconds: short, so the suite waits little for half-open

const settings = { breaker_failures: FAILURES, breaker_window: 60, breaker_cooldown: COOLDOWN };

function sample(text, name, labels) {
  const want = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}} `;
  const line = text.split('\n').find((l) => l.startsWith(want));
  return line === undefined ? undefined : Number(line.slice(want.length));
}

relaySuite('breaker: a circuit breaker per upstream, shared by every process', {
  upstreams: [{ name: 'anthropic', type: 'anthropic', ...settings }],
  ini: {
    'upstream.openai': settings,
    metrics: { access: 'open' },
    fcgi: { workers: 3, threads: 4 },
  },
  concurrency: 8, // mod_fcgid: processes for the concurrent requests, started beforehand
}, (relay) => {
  let token;
  const cached = uniq('stale');

  const breakerOpen = async (upstream) => {
    const r = await relay.fetch('/relay/metrics');
    assert.equal(r.status, 200, r.text);
    return sample(r.text, 'relay_breaker_open', { upstream });
  };
  const stats = async () => {
    const r = await relay.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, r.text);
    return JSON.parse(r.text);
  };
  const messages = (text, key = KEY_A) => relay.fetch('/v1/messages', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: text }] }),
  });

  test('closed: an answer is cached (for 1 s), a 4xx and a 429 never count', T, async () => {
    const r = await relay.admin(['config', 'admin.token_file']);
    token = fs.readFileSync(r.stdout.trim(), 'utf8').trim();
    const first = await relay.chat(chatBody(cached), { headers: { 'x-relay-ttl': '1' } });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    for (const status of [400, 404, 429, 400, 429]) {
      relay.fake.enqueue({ status });
      const c = await relay.chat(chatBody(uniq('client-error')));
      assert.equal(c.status, status);
    }
    assert.equal(await breakerOpen('openai'), 0, 'five 4xx/429 answers leave it closed');
    const s = await stats();
    const up = s.upstreams.find((u) => u.name === 'openai');
    assert.equal(up.breaker.state, 'closed');
    assert.equal(up.breaker.failures, 0, 'not counted as failures');
    assert.equal(up.breaker.threshold, FAILURES);
  });

  test('500s open it after breaker_failures calls, for every process', T, async () => {
    await sleep(1100); // the cached answer expires (X-Relay-TTL: 1)
    for (let i = 0; i < FAILURES; i++) {
      relay.fake.enqueue({ status: 500 });
      const r = await relay.chat(chatBody(uniq('fail')));
      assert.equal(r.status, 500, 'the upstream\'s own 500 is passed on');
    }
    const calls = relay.fake.calls.length;
    // Concurrent requests, more than one worker's threads: several processes
    // answer them, and none calls the upstream.
    const many = await Promise.all(Array.from({ length: 12 }, () => relay.chat(chatBody(uniq('refused')))));
    for (const r of many) {
      assert.equal(r.status, 503, r.text);
      const retry = Number(r.headers.get('retry-after'));
      assert.ok(retry >= 1 && retry <= COOLDOWN, `Retry-After ${r.headers.get('retry-after')}`);
      const body = JSON.parse(r.text);
      assert.equal(body.error.code, 'upstream_circuit_open', 'OpenAI\'s error shape');
      assert.match(body.error.message, /circuit breaker/);
    }
    assert.equal(relay.fake.calls.length, calls, 'no process called the failing upstream');
    assert.equal(await breakerOpen('openai'), 1, 'relay_breaker_open 1');
    assert.equal(await breakerOpen('anthropic'), 0, 'another upstream\'s breaker is its own');
    const health = await relay.fetch('/relay/health');
    assert.equal(health.status, 503);
    assert.match(health.text, /^degraded\n/);
    assert.match(health.text, /upstream openai: circuit open, \d+ s left/);
    const up = (await stats()).upstreams.find((u) => u.name === 'openai');
    assert.equal(up.breaker.state, 'open');
    assert.ok(up.breaker.retry_in >= 1 && up.breaker.retry_in <= COOLDOWN);
    assert.ok(up.breaker.opened_at > 0 && up.breaker.opens >= 1);
  });

  test('while open, an expired cached answer is served as STALE, with no Warning', T, async () => {
    const calls = relay.fake.calls.length;
    const r = await relay.chat(chatBody(cached));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-cache'), 'STALE');
    assert.equal(r.headers.get('warning'), null);
    assert.match(JSON.parse(r.text).choices[0].message.content, new RegExp(cached));
    assert.equal(relay.fake.calls.length, calls, 'not from the upstream');
  });

  test('Anthropic\'s breaker: 503 overloaded_error in its own format with Retry-After', T, async () => {
    for (let i = 0; i < FAILURES; i++) {
      relay.fake.enqueue({ status: 500, path: '/v1/messages' });
      const r = await messages(uniq('anthropic-fail'));
      assert.equal(r.status, 500);
    }
    const calls = relay.fake.calls.length;
    const r = await messages(uniq('anthropic-refused'));
    assert.equal(r.status, 503, r.text);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    const body = JSON.parse(r.text);
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'overloaded_error');
    assert.match(body.error.message, /circuit breaker/);
    assert.equal(relay.fake.calls.length, calls);
  });

  test('after the cool-down exactly one probe reaches the upstream; its success closes it', T, async () => {
    const deadline = Date.now() + (COOLDOWN + 3) * 1000;
    while ((await breakerOpen('openai')) === 1 && Date.now() < deadline) {
      const h = await relay.fetch('/relay/health');
      if (/openai: circuit half-open/.test(h.text)) break;
      await sleep(200);
    }
    const calls = relay.fake.calls.length;
    relay.fake.enqueue({ headerDelayMs: 1500 }); // the probe: slow, then a success
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      sleep(i ? 100 : 0).then(() => relay.chat(chatBody(uniq('probe'))))));
    const ok = answers.filter((r) => r.status === 200);
    assert.equal(relay.fake.calls.length - calls, 1, 'one probe among ten concurrent requests');
    assert.equal(ok.length, 1, 'the probe\'s client got the answer');
    for (const r of answers.filter((a) => a.status !== 200)) {
      assert.equal(r.status, 503);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    }
    assert.equal(await breakerOpen('openai'), 0, 'closed by the probe');
    const r = await relay.chat(chatBody(uniq('after')));
    assert.equal(r.status, 200, 'calls go through again');
    assert.equal((await stats()).upstreams.find((u) => u.name === 'openai').breaker.state, 'closed');
  });

  test('a probe that fails opens it for another cool-down', T, async () => {
    // Anthropic's breaker is still open from above: wait for its cool-down.
    await sleep(COOLDOWN * 1000 + 500);
    relay.fake.enqueue({ status: 503, path: '/v1/messages' });
    const probe = await messages(uniq('anthropic-probe'));
    assert.equal(probe.status, 503);
    assert.equal(probe.headers.get('retry-after'), null, 'the upstream\'s own 503 (no Retry-After of Relay\'s)');
    const calls = relay.fake.calls.length;
    const r = await messages(uniq('anthropic-again'));
    assert.equal(r.status, 503);
    assert.ok(Number(r.headers.get('retry-after')) >= COOLDOWN - 1, 'a whole new cool-down');
    assert.equal(relay.fake.calls.length, calls);
    assert.equal(await breakerOpen('anthropic'), 1);
  });
});
