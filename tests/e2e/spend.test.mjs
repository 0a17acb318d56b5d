// Relay client tokens, held upstream keys, budgets and rate limits, end to
// end behind the pool (issue 13): the official SDKs and Claude Code work
// with a Relay token in place of the provider key; the key Relay holds
// reaches the upstream and the client's token never does; revoked and
// expired tokens are 401 and a model outside a token's list 403, without an
// upstream call; 50 concurrent requests against a budget of 10 requests'
// worth reach the upstream at most 11 times, the rest get 429 with
// Retry-After in the client's format; a rate limit holds under concurrency;
// answers from the cache consume nothing; spend survives a restart and a
// worker killed mid-stream (its reservation released, never blocking).
//
// e2e-fronts: caddy (this is about the pool and its store, not the front:
// run once, behind Caddy)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';

import { relaySuite, uniq, sleep, REPO, REQUEST_TIMEOUT, TEST_TIMEOUT } from './harness.mjs';
import { describeRun, runAgent, tempDirs } from './agents.mjs';
import { assertOpenAIError } from './wire.mjs';
import { heldKeyFile } from './tokens.mjs';

const T = { timeout: TEST_TIMEOUT };
const HELD = { openai: 'sk-held-openai-e2e', anthropic: 'sk-ant-held-e2e', gemini: 'AIza-held-e2e' };

// The held keys, in files only their owner may read.
const keyFile = (name) => heldKeyFile(HELD[name]).file;

const OPTIONS = {
  upstreams: [
    { name: 'anthropic', type: 'anthropic', api_key_file: keyFile('anthropic') },
    { name: 'gemini', type: 'gemini', api_key_file: keyFile('gemini') },
  ],
  ini: {
    // 64 concurrent requests: every one of the 50 below is in flight at once.
    fcgi: { workers: 4, threads: 16, max_body: 1 << 20 },
    'upstream.openai': { api_key_file: keyFile('openai') },
    pricing: { 'gpt-4o-mini': '0.15 0.60' },
  },
};

relaySuite('client tokens, held keys, budgets', OPTIONS, (relay) => {
  // `relay-admin token create` with these flags: the token's text.
  async function makeToken(name, ...flags) {
    const r = await relay.admin(['--json', 'token', 'create', '--name', name, ...flags]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).token;
  }
  const chat = (token, text, extra = {}, headers = {}) =>
    relay.chat({ model: 'gpt-4o-mini', temperature: 1, messages: [{ role: 'user', content: text }], ...extra },
      { key: token, headers });
  // No call the fake recorded carries the token (header, path or query).
  function assertNeverUpstream(token) {
    for (const c of relay.fake.calls) {
      assert.ok(!JSON.stringify(c.headers).includes(token), `a token reached the upstream in ${c.method} ${c.path}`);
      assert.ok(!`${c.path}?${c.query}`.includes(token), `a token reached the upstream in ${c.path}?${c.query}`);
    }
  }

  test('the official SDKs work with a Relay token; the held key goes upstream, the token never', T, async () => {
    const token = await makeToken('sdks');
    const m = uniq('sdk');
    const openai = new OpenAI({ baseURL: `${relay.base}/v1`, apiKey: token, maxRetries: 0, timeout: REQUEST_TIMEOUT });
    const a = await openai.chat.completions.create({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: `${m} openai` }] });
    assert.match(a.choices[0].message.content, /Echo:/);
    const anthropic = new Anthropic({ baseURL: relay.base, apiKey: token, maxRetries: 0, timeout: REQUEST_TIMEOUT });
    const b = await anthropic.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, temperature: 0, messages: [{ role: 'user', content: `${m} anthropic` }] });
    assert.equal(b.type, 'message');
    const genai = new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: relay.base, timeout: REQUEST_TIMEOUT } });
    const g = await genai.models.generateContent({ model: 'gemini-2.5-flash', contents: `${m} gemini`, config: { temperature: 0 } });
    assert.ok(g.text, 'gemini answered');

    const [oc] = relay.fake.callsFor(`${m} openai`);
    assert.equal(oc.headers.authorization, `Bearer ${HELD.openai}`);
    const [ac] = relay.fake.callsFor(`${m} anthropic`);
    assert.equal(ac.headers['x-api-key'], HELD.anthropic);
    assert.equal(ac.headers.authorization, undefined, 'the client\'s Authorization is not forwarded');
    const [gc] = relay.fake.callsFor(`${m} gemini`);
    assert.equal(gc.headers['x-goog-api-key'], HELD.gemini);
    assertNeverUpstream(token);
    const log = fs.readFileSync(relay.logs.relay, 'utf8');
    assert.ok(!log.includes(token) && !log.includes(HELD.openai), 'neither the token nor a held key is logged');
  });

  test('Claude Code works with a Relay token as its API key', { timeout: 120000 }, async () => {
    const token = await makeToken('claude-code');
    const tmp = tempDirs();
    const m = uniq('cc-token');
    const r = await runAgent(path.join(REPO, 'tests', 'node_modules', '.bin', 'claude'), ['-p', `Reply with one word. ${m}`], {
      cwd: tmp.make('relay-cc-cwd-'),
      timeoutMs: 60000,
      env: {
        HOME: tmp.make('relay-cc-home-'), ANTHROPIC_BASE_URL: relay.base, ANTHROPIC_API_KEY: token,
        DISABLE_TELEMETRY: '1', DISABLE_ERROR_REPORTING: '1', DISABLE_AUTOUPDATER: '1',
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      },
    });
    tmp.cleanup?.();
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^Echo: /, describeRun(r));
    const [c] = relay.fake.callsFor(m);
    assert.equal(c.headers['x-api-key'], HELD.anthropic);
    assertNeverUpstream(token);
  });

  test('unknown, revoked and expired tokens are 401, a model outside the list 403; nothing upstream', T, async () => {
    const m = uniq('refused');
    const revoked = await makeToken('revoked');
    assert.equal((await relay.admin(['token', 'revoke', 'revoked'])).code, 0);
    const expiring = await makeToken('expiring', '--expires', '1s');
    const narrow = await makeToken('narrow', '--models', 'gpt-4.1*');
    await sleep(1100);
    for (const [token, status] of [
      [`rly-${'0'.repeat(64)}`, 401], [revoked, 401], [expiring, 401], [narrow, 403],
    ]) {
      const r = await chat(token, m);
      assert.equal(r.status, status, r.text);
      assertOpenAIError(r.text);
    }
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('50 concurrent requests against 10 requests\' worth of budget: at most 11 reach the upstream', { timeout: 60000 }, async (t) => {
    // A request's worst case: a token per 4 bytes of body, plus max_tokens.
    const m = uniq('budget');
    const body = (i) => JSON.stringify({ model: 'gpt-4o-mini', temperature: 1, max_tokens: 1000,
      messages: [{ role: 'user', content: `${m} ${String(i).padStart(3, '0')}` }] });
    const worst = Math.floor(body(0).length / 4) + 1 + 1000;
    const token = await makeToken('budget-10', '--budget-tokens-day', String(10 * worst));
    relay.fake.reset();
    for (let i = 0; i < 50; i++) relay.fake.enqueue({ headerDelayMs: 1500 });
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => relay.chat(body(i), { key: token, timeout: 20000 })));
    const reached = relay.fake.callsFor(m).length;
    relay.fake.reset();
    assert.ok(reached <= 11, `${reached} requests reached the upstream`);
    assert.ok(reached >= 1, 'some did');
    const refused = answers.filter((r) => r.status === 429);
    assert.equal(refused.length + answers.filter((r) => r.status === 200).length, 50, answers.map((r) => r.status).join(' '));
    assert.equal(refused.length, 50 - reached);
    t.diagnostic(`${reached} of 50 reached the upstream, ${refused.length} got 429`);
    for (const r of refused) {
      assert.match(assertOpenAIError(r.text).message, /budget of token "budget-10"/);
      const wait = Number(r.headers.get('retry-after'));
      assert.ok(wait >= 1 && wait <= 86400, `Retry-After ${r.headers.get('retry-after')}`);
    }
  });

  test('a refusal is in the client\'s own format: Anthropic and Gemini shapes', T, async () => {
    const token = await makeToken('spent', '--budget-tokens-day', '1');
    const m = uniq('shapes');
    // The first request is admitted (nothing used yet) and uses more than 1.
    assert.equal((await chat(token, m)).status, 200);
    const a = await relay.fetch('/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': token, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: m }] }),
    });
    assert.equal(a.status, 429, a.text);
    const ad = JSON.parse(a.text);
    assert.equal(ad.type, 'error');
    assert.equal(ad.error.type, 'rate_limit_error');
    assert.ok(Number(a.headers.get('retry-after')) >= 1);
    const g = await relay.fetch('/v1beta/models/gemini-2.5-flash:generateContent', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': token },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: m }] }] }),
    });
    assert.equal(g.status, 429, g.text);
    const gd = JSON.parse(g.text);
    assert.equal(gd.error.code, 429);
    assert.equal(gd.error.status, 'RESOURCE_EXHAUSTED');
    assert.ok(Number(g.headers.get('retry-after')) >= 1);
  });

  test('a rate limit holds under concurrency; answers from the cache consume nothing', T, async () => {
    const token = await makeToken('rpm-5', '--rpm', '5');
    const m = uniq('rpm');
    relay.fake.reset();
    for (let i = 0; i < 20; i++) relay.fake.enqueue({ headerDelayMs: 300 });
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => chat(token, `${m} ${i}`)));
    const reached = relay.fake.callsFor(m).length;
    relay.fake.reset();
    assert.equal(reached, 5, 'exactly the limit reached the upstream');
    assert.equal(answers.filter((r) => r.status === 429).length, 15);

    const once = await makeToken('rpm-1', '--rpm', '1');
    const h = uniq('hits');
    const det = { model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: h }] };
    const first = await relay.chat(det, { key: once });
    assert.equal(first.headers.get('x-cache'), 'MISS');
    for (let i = 0; i < 3; i++) {
      const hit = await relay.chat(det, { key: once });
      assert.equal(hit.status, 200, 'a hit is not counted against the rate limit');
      assert.equal(hit.headers.get('x-cache'), 'HIT');
    }
    assert.equal((await chat(once, `${h} other`)).status, 429, 'a second upstream call in the minute is');
  });

  test('spend survives a restart and a worker killed mid-stream, whose reservation is released', { timeout: 60000 }, async () => {
    const token = await makeToken('durable', '--budget-usd-day', '5');
    const remaining = async (text, extra) => {
      const r = await chat(token, text, extra);
      assert.equal(r.status, 200, r.text);
      const h = r.headers.get('x-relay-budget-remaining');
      assert.match(h ?? '', /^usd=\d+\.\d{6}; window=day$/);
      return Number(h.slice(4, h.indexOf(';')));
    };
    const m = uniq('durable');
    const before = await remaining(`${m} a`);
    await relay.restartPool();
    const after = await remaining(`${m} b`);
    assert.ok(after < before, `spend is kept across a restart: ${before} then ${after}`);

    // A stream whose worker is killed after its first chunk.
    relay.fake.enqueue({ chunks: 10, chunkDelayMs: 300 });
    const res = await relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ model: 'gpt-4o-mini', temperature: 1, stream: true, max_tokens: 200000, messages: [{ role: 'user', content: `${m} killed` }] }),
    }, { stream: true });
    const reader = res.body.getReader();
    await reader.read();
    for (const pid of relay.workerPids()) process.kill(pid, 'SIGKILL');
    await reader.read().catch(() => {});
    // The pool restarts its workers; maintenance releases the dead worker's
    // reservation within seconds (counted as spent): the budget is not
    // blocked, and what it reserved counts.
    let last;
    const until = Date.now() + 15000;
    for (;;) {
      try {
        last = await chat(token, `${m} after ${Date.now()}`);
        if (last.status === 200) break;
      } catch {
        /* the pool is restarting */
      }
      assert.ok(Date.now() < until, `the budget stayed blocked: ${last?.status} ${last?.text}`);
      await sleep(200);
    }
    const left = Number(last.headers.get('x-relay-budget-remaining').slice(4).split(';')[0]);
    assert.ok(left < after - 0.05, `the killed stream's reservation counts as spent: ${after} then ${left}`);
  });
});
