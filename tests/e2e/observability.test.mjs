// What Relay reports about itself, through the front: /relay/health,
// /relay/metrics (checked by promtool) and the dashboard's API
// (/relay/admin/api/, admin token from `relay-admin init`), with the
// numbers traffic leaves in them: outcomes, tokens, money at the [pricing]
// table's prices, a model with no price flagged, coalesced followers; and
// Relay client tokens: each one's spending against its budgets, the
// [budget] rows, refusals by reason, in the API, the metrics and
// relay-admin stats, with no token, hash or held key in any of them or in
// the logs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { relaySuite, chatBody, uniq, sleep, OUT, KEY_A, KEY_B } from './harness.mjs';
import { heldKeyFile, leaked, makeToken } from './tokens.mjs';

const T = { timeout: 60000 };
const PRICES = { 'gpt-4o-mini': '0.15 0.60 0.075' };

// The admin token relay-admin init created ([admin] token_file).
async function adminToken(relay) {
  const r = await relay.admin(['config', 'admin.token_file']);
  assert.equal(r.code, 0, r.stderr);
  const file = r.stdout.trim();
  assert.ok(fs.existsSync(file), `relay-admin init did not create the admin token file ${file}`);
  const token = fs.readFileSync(file, 'utf8').trim();
  assert.match(token, /^[0-9a-f]{64}$/, 'a token of 32 random bytes, hex');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'the token file is 0600');
  return token;
}

async function stats(relay, token) {
  const r = await relay.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /application\/json/);
  return JSON.parse(r.text);
}

async function metrics(relay, token) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  return relay.fetch('/relay/metrics', { headers });
}

function promtool(text) {
  return new Promise((resolve) => {
    const child = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, out: `${stdout}${stderr}`, missing: err?.code === 'ENOENT' });
    });
    child.stdin.end(text);
  });
}

// The value of the sample whose name and labels match exactly, or undefined.
function sample(text, name, labels) {
  const want = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}} `;
  const line = text.split('\n').find((l) => l.startsWith(want));
  return line === undefined ? undefined : Number(line.slice(want.length));
}

const modelRow = (s, model) => s.models.find((m) => m.model === model && m.upstream === 'openai');

relaySuite('observability: health, metrics and the stats API', {
  ini: { pricing: PRICES, coalesce: { mode: 'all' } },
  concurrency: 4, // mod_fcgid: processes for the coalesced requests, started beforehand
}, (relay) => {
  let token;

  test('GET /relay/health is open and says ok', T, async () => {
    const r = await relay.fetch('/relay/health');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'ok\n');
  });

  test('the admin API refuses a missing, wrong or query-string token', T, async () => {
    token = await adminToken(relay);
    const none = await relay.fetch('/relay/admin/api/stats');
    assert.equal(none.status, 401);
    assert.equal(JSON.parse(none.text).error.type, 'authentication_error');
    const wrong = await relay.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${'0'.repeat(64)}` } });
    assert.equal(wrong.status, 401);
    assert.match(JSON.parse(wrong.text).error.message, /not valid/);
    const shorter = await relay.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${token.slice(0, 63)}` } });
    assert.equal(shorter.status, 401, 'a prefix of the token is not the token');
    // However the name is spelt: case, percent-encoding, ';' as a separator.
    for (const q of [`token=${token}`, `access_token=${token}`, `v=1&token=${token}`, `Token=${token}`,
      `tok%65n=${token}`, `x=1;token=${token}`, `%74%6f%6b%65%6e=${token}`, `ACCESS_TOKEN=${token}`]) {
      const r = await relay.fetch(`/relay/admin/api/stats?${q}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 401, `?${q} is refused even with a good header`);
      assert.match(JSON.parse(r.text).error.message, /never in the URL/);
    }
    const tokenizer = await relay.fetch('/relay/admin/api/stats?tokenizer=1', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(tokenizer.status, 200, 'a parameter that only starts like one is not refused');
    const other = await relay.fetch('/relay/admin/api/nothing-here', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(other.status, 404);
    const s = await stats(relay, token);
    assert.equal(s.api, 5);
    assert.match(s.version, /^\d+\.\d+\.\d+( \(git [0-9a-f]+\))?$/, 'which Relay answers');
    assert.equal(s.health.status, 'ok');
    assert.equal(s.series.minute.length, 1440);
    assert.equal(s.series.day.length, 90);
    assert.ok(Math.abs(s.now - Date.now() / 1000) < 60);
  });

  test('/relay/health?verbose says the version, to the admin token only', T, async () => {
    const refused = await relay.fetch('/relay/health?verbose');
    assert.equal(refused.status, 401);
    assert.match(JSON.parse(refused.text).error.message, /Authorization/);
    const auth = { authorization: `Bearer ${token}` };
    const inQuery = await relay.fetch(`/relay/health?verbose&token=${token}`, { headers: auth });
    assert.equal(inQuery.status, 401, 'never the token in the URL');
    const r = await relay.fetch('/relay/health?verbose', { headers: auth });
    assert.equal(r.status, 200);
    const s = await stats(relay, token);
    assert.equal(r.text, `ok\nversion: ${s.version}\n`);
    assert.equal((await relay.fetch('/relay/health', { headers: auth })).text, 'ok\n', 'plain health is as it was');
  });

  test('a MISS, a HIT and an unpriced model: counts, tokens and money', T, async () => {
    const before = await stats(relay, token);
    const m = uniq('observe');
    const a = await relay.chat(chatBody(m));
    assert.equal(a.headers.get('x-cache'), 'MISS');
    const b = await relay.chat(chatBody(m));
    assert.equal(b.headers.get('x-cache'), 'HIT');
    const usage = JSON.parse(a.text).usage;
    assert.ok(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    const odd = await relay.chat(chatBody(uniq('unpriced'), { model: 'mystery-model-1' }), { key: KEY_B });
    assert.equal(odd.status, 200);
    const oddUsage = JSON.parse(odd.text).usage;

    const s = await stats(relay, token);
    assert.equal(s.totals.requests - before.totals.requests, 3);
    assert.equal(s.totals.hits - before.totals.hits, 1);
    assert.equal(s.totals.misses - before.totals.misses, 2);
    const row = modelRow(s, 'gpt-4o-mini');
    const was = modelRow(before, 'gpt-4o-mini');
    assert.ok(row?.priced, 'gpt-4o-mini is priced from [pricing]');
    assert.deepEqual(row.price, { input: 0.15, output: 0.6, cached_input: 0.075, cache_write: 0.15 });
    assert.equal(row.tokens.input - (was?.tokens.input ?? 0), usage.prompt_tokens, 'input tokens paid for');
    assert.equal(row.tokens.output - (was?.tokens.output ?? 0), usage.completion_tokens);
    assert.equal(row.tokens.saved_input - (was?.tokens.saved_input ?? 0), usage.prompt_tokens, 'the HIT saved the same');
    const cost = (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.6) / 1e6;
    assert.ok(Math.abs(row.usd.spent - (was?.usd.spent ?? 0) - cost) < 1e-9, `spent ${row.usd.spent}, want +${cost}`);
    assert.ok(Math.abs(row.usd.saved - (was?.usd.saved ?? 0) - cost) < 1e-9, `saved ${row.usd.saved}, want +${cost}`);

    const mystery = modelRow(s, 'mystery-model-1');
    assert.equal(mystery.priced, false);
    assert.equal(mystery.price, null);
    assert.equal(mystery.usd, null, 'no price: no money figure, not a zero');
    assert.equal(mystery.tokens.input, oddUsage.prompt_tokens, 'but its tokens are counted');
    assert.ok(s.totals.unpriced_requests >= 1);
    assert.ok(s.totals.usd.spent >= cost - 1e-9, 'only priced models in the money totals');

    assert.ok(s.clients.length >= 2, 'one row per credential');
    for (const c of s.clients) assert.match(c.client, /^([0-9a-f]{8}|\(other\))$/, 'a hash, never the key itself');
    for (const c of s.clients) assert.equal(c.token, null, 'a provider key is no Relay token: no budget');
    assert.ok(!JSON.stringify(s).includes(KEY_A), 'the credential never appears');
    const up = s.upstreams.find((u) => u.name === 'openai');
    assert.ok(up.upstream_calls >= 2);
    assert.ok(up.latency_ms && up.latency_ms.p50 > 0 && up.ttfb_ms.p50 > 0);
    assert.equal(up.breaker.state, 'closed', 'each upstream shows its breaker');
    assert.equal(up.breaker.retry_in, null, 'no cool-down while closed');
    assert.deepEqual(s.budgets, { global: [], tokens_left_out: 0 }, 'no [budget] row, no token');
    assert.equal(s.totals.rejected, 0, 'nothing refused');
    assert.ok(s.store.entries >= 2);
    const lastMinutes = s.series.minute.slice(-2).reduce((n, p) => n + p.requests, 0);
    assert.ok(lastMinutes >= 3, 'the minute series shows the requests');
    assert.ok(s.series.day.at(-1).requests >= 3);
  });

  test('coalesced followers save what their leader paid', T, async () => {
    const before = await stats(relay, token);
    const m = uniq('coalesce-observe');
    relay.fake.enqueue({ headerDelayMs: 800, chunks: 4, chunkDelayMs: 50 });
    const body = chatBody(m, { stream: true, stream_options: { include_usage: true } });
    const answers = await Promise.all([0, 150, 300].map(async (delay) => {
      await sleep(delay);
      return relay.chat(body);
    }));
    const outcomes = answers.map((r) => r.headers.get('x-cache')).sort();
    assert.deepEqual(outcomes, ['COALESCED', 'COALESCED', 'MISS']);
    assert.equal(relay.fake.callsFor(m).length, 1);
    const s = await stats(relay, token);
    assert.equal(s.totals.coalesced - before.totals.coalesced, 2);
    const row = modelRow(s, 'gpt-4o-mini');
    const was = modelRow(before, 'gpt-4o-mini');
    const spentIn = row.tokens.input - was.tokens.input;
    assert.ok(spentIn > 0, 'the leader paid for its stream (usage read as it passed)');
    assert.equal(row.tokens.saved_input - was.tokens.saved_input, 2 * spentIn, 'each follower saved it');
    assert.ok(Math.abs((row.usd.saved - was.usd.saved) - 2 * (row.usd.spent - was.usd.spent)) < 1e-9);
  });

  test('a model or a key the upstream refuses gets no row of its own: it counts under (other)', T, async () => {
    const before = await stats(relay, token);
    const junk = `no-such-model-${uniq('junk')}`;
    relay.fake.enqueue({ status: 404 });
    const r = await relay.chat(chatBody(uniq('junk'), { model: junk }), { key: 'sk-junk-key-never-valid' });
    assert.equal(r.status, 404);
    const s = await stats(relay, token);
    assert.equal(modelRow(s, junk), undefined, 'no row for a model the upstream refused');
    const other = modelRow(s, '(other)');
    assert.equal(other.requests - (modelRow(before, '(other)')?.requests ?? 0), 1, 'counted under (other)');
    assert.equal(other.errors - (modelRow(before, '(other)')?.errors ?? 0), 1);
    const client = s.clients.find((c) => c.client === '(other)');
    assert.ok(client && client.requests >= 1, 'and its key under the (other) client');
    assert.equal(s.clients.length, before.clients.length + (before.clients.some((c) => c.client === '(other)') ? 0 : 1),
      'no client row for a key the upstream refused');
    const m = await metrics(relay, token);
    assert.ok(!m.text.includes(junk), 'nor a metrics label');
  });

  test('/relay/metrics needs the admin token by default and passes promtool', T, async () => {
    const refused = await metrics(relay);
    assert.equal(refused.status, 401);
    const r = await metrics(relay, token);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, `metrics-${process.env.RELAY_FRONT || 'caddy'}.txt`), r.text);
    const check = await promtool(r.text);
    assert.ok(!check.missing, 'promtool is missing (deploy/install-deps.sh --test installs prometheus)');
    assert.equal(check.code, 0, check.out);
    for (const family of ['relay_requests_total', 'relay_tokens_total', 'relay_tokens_saved_total',
      'relay_spent_usd_total', 'relay_saved_usd_total', 'relay_unpriced_requests_total',
      'relay_coalesced_requests_total', 'relay_upstream_calls_total', 'relay_upstream_latency_seconds',
      'relay_upstream_ttfb_seconds', 'relay_store_bytes', 'relay_store_entries',
      'relay_store_evictions_total', 'relay_inflight_requests', 'relay_rejections_total',
      'relay_budget_remaining_usd']) {
      assert.match(r.text, new RegExp(`^# HELP ${family} .+\\n# TYPE ${family} `, 'm'), family);
    }
    assert.ok(sample(r.text, 'relay_requests_total', { upstream: 'openai', model: 'gpt-4o-mini', cache: 'HIT', status: '200' }) >= 1);
    assert.ok(sample(r.text, 'relay_coalesced_requests_total', { upstream: 'openai', model: 'gpt-4o-mini' }) >= 2);
    assert.ok(sample(r.text, 'relay_saved_usd_total', { upstream: 'openai', model: 'gpt-4o-mini' }) > 0);
    assert.equal(sample(r.text, 'relay_spent_usd_total', { upstream: 'openai', model: 'mystery-model-1' }), undefined,
      'no money sample for a model with no price');
    assert.ok(sample(r.text, 'relay_unpriced_requests_total', { upstream: 'openai', model: 'mystery-model-1' }) >= 1);
    assert.equal(sample(r.text, 'relay_breaker_open', { upstream: 'openai' }), 0, 'a breaker gauge per upstream');
    assert.equal(sample(r.text, 'relay_rejections_total', { reason: 'budget' }), 0, 'every reason, zeros too');
    assert.doesNotMatch(r.text, /^relay_budget_remaining_usd\{/m, 'no budget set, no remaining');
    const calls = sample(r.text, 'relay_upstream_calls_total', { upstream: 'openai' });
    assert.equal(sample(r.text, 'relay_upstream_latency_seconds_bucket', { upstream: 'openai', le: '+Inf' }), calls,
      'the histogram counts every call');
  });

  test('label values are escaped', T, async () => {
    const model = 'we"ird\\model\nname';
    const r = await relay.chat(chatBody(uniq('escape'), { model }));
    assert.equal(r.status, 200);
    const m = await metrics(relay, token);
    assert.ok(m.text.includes('model="we\\"ird\\\\model\\nname"'), 'quote, backslash and newline escaped');
    const check = await promtool(m.text);
    assert.equal(check.code, 0, check.out);
  });

  test('POST /relay/admin/api/purge empties the cache', T, async () => {
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const m = uniq('purge-api');
    assert.equal((await relay.chat(chatBody(m))).headers.get('x-cache'), 'MISS');
    const bad = await relay.fetch('/relay/admin/api/purge', { method: 'POST', headers: auth, body: '{}' });
    assert.equal(bad.status, 400);
    const get = await relay.fetch('/relay/admin/api/purge', { headers: auth });
    assert.equal(get.status, 405);
    const noAuth = await relay.fetch('/relay/admin/api/purge', { method: 'POST', body: '{"all":true}' });
    assert.equal(noAuth.status, 401);
    assert.equal((await relay.chat(chatBody(m))).headers.get('x-cache'), 'HIT', 'a refused purge removed nothing');
    const r = await relay.fetch('/relay/admin/api/purge', { method: 'POST', headers: auth, body: '{"all":true}' });
    assert.equal(r.status, 200, r.text);
    assert.ok(JSON.parse(r.text).removed >= 1);
    assert.equal((await relay.chat(chatBody(m))).headers.get('x-cache'), 'MISS');
    assert.equal((await stats(relay, token)).store.entries, 1);
  });

  test('POST /relay/admin/api/purge takes relay-admin purge\'s conditions; a wrong one removes nothing', T, async () => {
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const purge = (body) => relay.fetch('/relay/admin/api/purge', { method: 'POST', headers: auth, body });
    const keep = uniq('purge-keep'), drop = uniq('purge-drop'), other = uniq('purge-ns');
    const dropModel = `purge-model-${drop}`;
    const ns = { 'x-relay-namespace': 'purge-ns' };
    assert.equal((await relay.chat(chatBody(keep))).headers.get('x-cache'), 'MISS');
    assert.equal((await relay.chat(chatBody(drop, { model: dropModel }))).headers.get('x-cache'), 'MISS');
    assert.equal((await relay.chat(chatBody(other), { headers: ns })).headers.get('x-cache'), 'MISS');
    for (const body of ['{"all":true,"model":"x"}', '{"modle":"x"}', '{"older_than":"7d"}',
      '{"expired":false}', '{"model":3}', '[]', 'not json']) {
      const r = await purge(body);
      assert.equal(r.status, 400, body);
      assert.match(JSON.parse(r.text).error.message, /JSON|all/, body);
    }
    // A model that has entries, in the default namespace and older than 0 s: only that one goes.
    const r = await purge(JSON.stringify({ model: dropModel, older_than: 0, namespace: '' }));
    assert.equal(r.status, 200, r.text);
    assert.equal(JSON.parse(r.text).removed, 1);
    assert.equal((await relay.chat(chatBody(drop, { model: dropModel }))).headers.get('x-cache'), 'MISS');
    assert.equal((await relay.chat(chatBody(keep))).headers.get('x-cache'), 'HIT');
    assert.equal((await relay.chat(chatBody(other), { headers: ns })).headers.get('x-cache'), 'HIT');
    // By namespace: only the entry stored under it.
    const n = await purge('{"namespace":"purge-ns"}');
    assert.equal(JSON.parse(n.text).removed, 1);
    assert.equal((await relay.chat(chatBody(other), { headers: ns })).headers.get('x-cache'), 'MISS');
    assert.equal((await relay.chat(chatBody(keep))).headers.get('x-cache'), 'HIT');
  });
});

relaySuite('observability: [metrics] access = open', {
  ini: { metrics: { access: 'open' } },
}, (relay) => {
  test('/relay/metrics answers without a token, the admin API still needs one', T, async () => {
    await relay.chat(chatBody(uniq('open-metrics')));
    const r = await metrics(relay);
    assert.equal(r.status, 200);
    assert.ok(sample(r.text, 'relay_requests_total', { upstream: 'openai', model: 'gpt-4o-mini', cache: 'MISS', status: '200' }) >= 1);
    assert.equal((await relay.fetch('/relay/admin/api/stats')).status, 401);
  });
});

// One worker, so that every request sees the same worker's store state.
relaySuite('observability: counted while the store is unavailable', {
  ini: { fcgi: { workers: 1 } },
}, (relay) => {
  test('a store that cannot open: health names the store only, and requests are counted', T, async () => {
    const token = await adminToken(relay);
    const keyFile = relay.settings.store.key_file;
    // A key file readable by others is refused: the store cannot open.
    fs.chmodSync(keyFile, 0o644);
    try {
      if (relay.processModel === 'fcgid') {
        // No pool to restart: end the processes Apache started; the next
        // request gets new ones, which cannot open the store.
        const old = relay.fcgidPids();
        for (const pid of old) process.kill(pid, 'SIGTERM');
        for (const until = Date.now() + 10000; relay.fcgidPids().some((p) => old.includes(p));) {
          assert.ok(Date.now() < until, `the relay processes ${old} did not end`);
          await sleep(100);
        }
      } else {
        await relay.restartPool({ healthy: false });
      }
      const h = await relay.fetch('/relay/health');
      assert.equal(h.status, 503);
      assert.match(h.text, /^degraded\nstore: unavailable/);
      assert.doesNotMatch(h.text, /stats:/, 'the counters do not need the store');
      const before = await stats(relay, token);
      assert.equal(before.store, null);
      const r = await relay.chat(chatBody(uniq('no-store')));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-cache'), 'BYPASS');
      const after = await stats(relay, token);
      assert.equal(after.totals.requests - before.totals.requests, 1, 'counted without a store');
      assert.equal(after.totals.bypass - before.totals.bypass, 1);
      assert.deepEqual(after.health.reasons.map((l) => l.split(':')[0]), ['store']);
    } finally {
      fs.chmodSync(keyFile, 0o600);
    }
  });
});

// Relay client tokens with budgets, behind the front: what they spend and
// what is refused, everywhere it shows, and never a token or a key.
const HELD = heldKeyFile('sk-held-e2e-observe-5f1c0e7a9b2d4c68');

relaySuite('observability: Relay tokens, budgets and refusals', {
  ini: {
    pricing: PRICES,
    'upstream.openai': { api_key_file: HELD.file },
    budget: { 'upstream.openai.usd_day': 20, 'model.gpt-4o-mini.tokens_day': 5000000 },
  },
}, (relay) => {
  let admin;
  const t = {}; // name -> {token, id}
  const unknown = `rly-${'5a'.repeat(32)}`;

  test('tokens are served with the held key, or refused by budget, rate, model and revocation', T, async () => {
    admin = await adminToken(relay);
    t.a = await makeToken(relay, 'observed agent', { usd_day: 1, usd_month: 10, rpm: 100, tpm: 100000 });
    t.b = await makeToken(relay, 'small budget', { tokens_day: 10 });
    t.c = await makeToken(relay, 'quiet one', { usd_day: 2 });
    t.d = await makeToken(relay, 'claude only', { models: ['claude-*'] });
    t.e = await makeToken(relay, 'one a minute', { rpm: 1 });
    t.r = await makeToken(relay, 'revoked one', { revoked: true });

    const m = uniq('token observed');
    const miss = await relay.chat(chatBody(m), { key: t.a.token });
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers.get('x-cache'), 'MISS');
    assert.match(miss.headers.get('x-relay-budget-remaining') ?? '', /^usd=0\.99\d+; window=day$/);
    const [call] = relay.fake.callsFor(m);
    assert.equal(call.headers.authorization, `Bearer ${HELD.key}`, 'the held key went upstream');
    assert.equal(leaked(JSON.stringify(call), { tokens: [t.a.token] }), null, 'the token did not');
    const hit = await relay.chat(chatBody(m), { key: t.a.token });
    assert.equal(hit.headers.get('x-cache'), 'HIT');

    assert.equal((await relay.chat(chatBody(uniq('small one')), { key: t.b.token })).status, 200,
      'admitted while its budget lasts');
    const over = await relay.chat(chatBody(uniq('small two')), { key: t.b.token });
    assert.equal(over.status, 429, over.text);
    assert.ok(Number(over.headers.get('retry-after')) >= 1, 'Retry-After');
    assert.match(JSON.parse(over.text).error.message, /budget of token "small budget"/);
    assert.equal((await relay.chat(chatBody(uniq('once')), { key: t.e.token })).status, 200);
    const rate = await relay.chat(chatBody(uniq('twice')), { key: t.e.token });
    // A minute's turn between the two starts a new window: then it passes.
    assert.ok(rate.status === 429 || rate.status === 200, rate.text);
    t.e.limited = rate.status === 429;
    assert.equal((await relay.chat(chatBody(uniq('not d')), { key: t.d.token })).status, 403);
    assert.equal((await relay.chat(chatBody(uniq('revoked')), { key: t.r.token })).status, 401);
    assert.equal((await relay.chat(chatBody(uniq('unknown')), { key: unknown })).status, 401);
    assert.equal((await relay.chat(chatBody(uniq('own key')))).status, 200, 'a provider key still passes');
  });

  test('the stats API: each token\'s spending against its budgets, the [budget] rows, refusals by reason', T, async () => {
    const s = await stats(relay, admin);
    assert.equal(s.api, 5);
    const why = s.totals.rejections;
    assert.equal(why.budget, 1);
    assert.equal(why.forbidden_model, 1);
    assert.equal(why.token_revoked, 1);
    assert.equal(why.token_unknown, 1);
    assert.equal(why.rate_limit, t.e.limited ? 1 : 0);
    assert.equal(s.totals.rejected, 4 + why.rate_limit);

    const client = (id) => s.clients.find((c) => c.client === id);
    const a = client(t.a.id);
    assert.ok(a, `token ${t.a.id} is a client`);
    assert.equal(a.token.name, 'observed agent');
    assert.equal(a.token.state, 'live');
    assert.equal(a.requests, 2);
    assert.equal(a.hits, 1);
    const spent = a.usd.spent;
    assert.ok(spent > 0, 'its miss cost something');
    assert.equal(a.token.day.usd.limit, 1);
    assert.ok(Math.abs(a.token.day.usd.spent - spent) < 1e-9, `spent today ${a.token.day.usd.spent}, counted ${spent}`);
    assert.ok(Math.abs(a.token.day.usd.remaining - (1 - spent)) < 1e-9);
    assert.equal(a.token.month.usd.limit, 10);
    assert.equal(a.token.day.tokens.limit, null, 'no token budget: null, not 0');
    assert.equal(a.token.minute.requests.limit, 100);
    assert.equal(a.token.minute.tokens.limit, 100000);
    assert.ok(a.token.day.resets > s.now && a.token.day.resets - a.token.day.start === 86400, 'a UTC day');

    const b = client(t.b.id);
    assert.equal(b.rejected, 1);
    assert.equal(b.token.day.tokens.limit, 10);
    assert.ok(b.token.day.tokens.spent > 10, 'its one request passed the budget');
    assert.equal(b.token.day.tokens.remaining, 0);
    const c = client(t.c.id);
    assert.ok(c && c.requests === 0 && c.token.day.usd.limit === 2, 'a token not used yet is listed with its budget');
    assert.equal(client(t.d.id)?.rejected, 1, 'a refused token counts in its own row');
    assert.equal(client(t.r.id), undefined, 'a revoked token is no client');

    const up = s.budgets.global.find((g) => g.scope === 'upstream' && g.name === 'openai');
    assert.equal(up.day.usd.limit, 20);
    assert.ok(up.day.usd.spent > spent, 'every call to openai counts in its [budget] row');
    const model = s.budgets.global.find((g) => g.scope === 'model' && g.name === 'gpt-4o-mini');
    assert.equal(model.day.tokens.limit, 5000000);
    assert.ok(model.day.tokens.spent > 0);
  });

  test('/relay/metrics: what is left of each budget, refusals by reason; promtool passes', T, async () => {
    const r = await metrics(relay, admin);
    assert.equal(r.status, 200);
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, `metrics-tokens-${process.env.RELAY_FRONT || 'caddy'}.txt`), r.text);
    const check = await promtool(r.text);
    assert.ok(!check.missing, 'promtool is missing (deploy/install-deps.sh --test installs prometheus)');
    assert.equal(check.code, 0, check.out);
    const s = await stats(relay, admin);
    const a = s.clients.find((c) => c.client === t.a.id);
    assert.equal(sample(r.text, 'relay_rejections_total', { reason: 'budget' }), 1);
    assert.equal(sample(r.text, 'relay_rejections_total', { reason: 'token_unknown' }), 1);
    assert.ok(Math.abs(sample(r.text, 'relay_budget_remaining_usd', { token: t.a.id, window: 'day' }) -
      a.token.day.usd.remaining) < 1e-9);
    assert.ok(Math.abs(sample(r.text, 'relay_budget_remaining_usd', { token: t.a.id, window: 'month' }) -
      a.token.month.usd.remaining) < 1e-9);
    assert.equal(sample(r.text, 'relay_budget_remaining_tokens', { token: t.b.id, window: 'day' }), 0);
    assert.ok(sample(r.text, 'relay_budget_remaining_requests', { token: t.a.id, window: 'minute' }) <= 100);
    assert.ok(sample(r.text, 'relay_budget_remaining_usd', { upstream: 'openai', window: 'day' }) < 20);
    assert.ok(sample(r.text, 'relay_budget_remaining_tokens', { model: 'gpt-4o-mini', window: 'day' }) < 5000000);
    assert.ok(!r.text.includes(`token="${t.r.id}"`), 'no gauge for a revoked token');
  });

  test('relay-admin stats: refusals and each token\'s spending', T, async () => {
    const j = await relay.admin(['--json', 'stats']);
    assert.equal(j.code, 0, j.stderr);
    const out = JSON.parse(j.stdout);
    assert.equal(out['rejected.budget'], 1);
    const a = out.tokens.find((x) => x.id === t.a.id);
    assert.equal(a.name, 'observed agent');
    assert.equal(a.day.usd.limit, 1);
    assert.ok(a.day.usd.spent > 0);
    assert.ok(out.budgets.some((g) => g.scope === 'upstream' && g.name === 'openai'));
    const text = await relay.admin(['stats']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^token ${t.a.id} +observed agent \\(live\\)$`, 'm'));
    assert.match(text.stdout, /^rejected\.budget +1$/m);
    assert.match(text.stdout, /^ {2}day +\$0\.\d+ of \$1\.00, \d+ tokens, 1 requests$/m);
  });

  test('no token, token hash or key in the stats API, the metrics, relay-admin stats or the logs', T, async () => {
    const secrets = { tokens: [...Object.values(t).map((x) => x.token), unknown], keys: [HELD.key, KEY_A] };
    const api = await relay.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${admin}` } });
    assert.equal(leaked(api.text, secrets), null, 'stats API');
    assert.equal(leaked((await metrics(relay, admin)).text, secrets), null, 'metrics');
    for (const args of [['stats'], ['--json', 'stats']]) {
      assert.equal(leaked((await relay.admin(args)).stdout, secrets), null, `relay-admin ${args.join(' ')}`);
    }
    for (const log of new Set([relay.logs.relay, relay.logs.front])) {
      const text = fs.readFileSync(log, 'utf8');
      assert.ok(text.length > 0, `${log} has lines`);
      assert.equal(leaked(text, secrets), null, `the log ${log} ([log] level = debug)`);
    }
  });
});
