// What Relay reports about itself, through the front: /relay/health,
// /relay/metrics (checked by promtool) and the dashboard's API
// (/relay/admin/api/, admin token from `relay-admin init`), with the
// numbers traffic leaves in them: outcomes, tokens, money at the [pricing]
// table's prices, a model with no price flagged, coalesced followers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { relaySuite, chatBody, uniq, sleep, OUT, KEY_A, KEY_B } from './harness.mjs';

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
    assert.equal(s.api, 2);
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
    assert.ok(!JSON.stringify(s).includes(KEY_A), 'the credential never appears');
    const up = s.upstreams.find((u) => u.name === 'openai');
    assert.ok(up.upstream_calls >= 2);
    assert.ok(up.latency_ms && up.latency_ms.p50 > 0 && up.ttfb_ms.p50 > 0);
    assert.ok(!('breaker' in up) && !('budgets' in s), 'no placeholder for the breaker or budgets');
    for (const c of s.clients) assert.ok(!('budget' in c));
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
      'relay_store_evictions_total', 'relay_inflight_requests']) {
      assert.match(r.text, new RegExp(`^# HELP ${family} .+\\n# TYPE ${family} `, 'm'), family);
    }
    assert.ok(sample(r.text, 'relay_requests_total', { upstream: 'openai', model: 'gpt-4o-mini', cache: 'HIT', status: '200' }) >= 1);
    assert.ok(sample(r.text, 'relay_coalesced_requests_total', { upstream: 'openai', model: 'gpt-4o-mini' }) >= 2);
    assert.ok(sample(r.text, 'relay_saved_usd_total', { upstream: 'openai', model: 'gpt-4o-mini' }) > 0);
    assert.equal(sample(r.text, 'relay_spent_usd_total', { upstream: 'openai', model: 'mystery-model-1' }), undefined,
      'no money sample for a model with no price');
    assert.ok(sample(r.text, 'relay_unpriced_requests_total', { upstream: 'openai', model: 'mystery-model-1' }) >= 1);
    assert.doesNotMatch(r.text, /relay_breaker_open/, 'no breaker gauge until there is a breaker');
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
