// Managing Relay client tokens against a live pool: `relay-admin token ...`
// and /relay/admin/api/tokens through the front. A token's text is shown
// once, at creation (and by rotate); list and show, in text and JSON, from
// relay-admin and from the API, never show a text or its SHA-256, and
// neither does Relay's log. Update, rotate and revoke take effect at once,
// in relay-admin and the API alike (they share engine/tokens.c); refused
// input is exit 2 or a 400 in OpenAI's error shape that names the field; the
// API answers nothing without the admin token. And relay-admin with its
// stdout closed makes no token and writes nothing into the store (it wrote
// its output, the text included, into the store's __db.register).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { relaySuite, runBounded, BUILD, FRONT, TEST_TIMEOUT } from './harness.mjs';
import { frontUser } from './fronts.mjs';

const T = { timeout: TEST_TIMEOUT };
const TEXT = /^rly-[0-9a-f]{64}$/;
const sha256 = (text) => createHash('sha256').update(text).digest('hex');

relaySuite('client tokens: relay-admin token and /relay/admin/api/tokens', {
  upstreams: [{ name: 'claude', type: 'anthropic' }],
}, (relay) => {
  const texts = []; // every text shown, to look for in what must not show them
  let adminToken;

  async function admin(args, want = 0) {
    const r = await relay.admin(args);
    assert.equal(r.code, want, `relay-admin ${args.join(' ')}: exit ${r.code}, wanted ${want}\n${r.stderr}${r.stdout}`);
    return r;
  }
  async function adminJson(args) {
    const r = await admin(['--json', ...args]);
    return JSON.parse(r.stdout);
  }
  function api(method, p, body, { token = adminToken } = {}) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    return relay.fetch(`/relay/admin/api${p}`, {
      method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  }
  // Neither a text shown so far nor its hash (whole, or from the 9th digit
  // on: an id is the first 8) is in s.
  function assertNoSecret(s, where) {
    for (const t of texts) {
      assert.ok(!s.includes(t), `${where} shows a token's text`);
      assert.ok(!s.includes(sha256(t).slice(8)), `${where} shows a token's hash`);
    }
    assert.doesNotMatch(s, /rly-[0-9a-f]{8}/, `${where} shows a token's text`);
  }

  test('create prints the token once; list and show never show it nor its hash', T, async () => {
    adminToken = fs.readFileSync((await admin(['config', 'admin.token_file'])).stdout.trim(), 'utf8').trim();
    const c = await admin(['token', 'create', '--name', 'ci', '--upstreams', 'openai',
      '--models', 'gpt-4o*,gpt-4.1*', '--budget-usd-day', '0.10', '--budget-usd-month', '12.5',
      '--budget-tokens-day', '200000', '--rpm', '60', '--tpm', '90000', '--expires', '30d']);
    const text = c.stdout.trim();
    assert.match(text, TEXT, 'stdout is the text alone');
    assert.equal(c.stdout, `${text}\n`);
    assert.match(c.stderr, /shown only this once/);
    assert.ok(!c.stderr.includes(text), 'stderr does not repeat it');
    texts.push(text);
    const made = await adminJson(['token', 'create', '--name', 'agent', '--expires', '2099-01-01']);
    assert.match(made.token, TEXT, '--json: the text as "token"');
    texts.push(made.token);

    const list = await adminJson(['token', 'list']);
    assert.deepEqual(list.tokens.map((t) => t.name), ['agent', 'ci']);
    const ci = list.tokens.find((t) => t.name === 'ci');
    assert.equal(ci.id, sha256(text).slice(0, 8), 'the id: the first 8 digits of the hash');
    assert.deepEqual(
      { ...ci, created: 0, expires: 0 },
      {
        id: ci.id, name: 'ci', state: 'live', upstreams: ['openai'], models: ['gpt-4o*', 'gpt-4.1*'],
        budget_usd_day: '0.10', budget_usd_month: '12.50', budget_tokens_day: 200000, rpm: 60, tpm: 90000,
        created: 0, expires: 0, revoked: null, grace_until: null,
      });
    assert.equal(ci.expires - ci.created, 30 * 86400, 'expires in 30 days');
    assert.equal(list.tokens.find((t) => t.name === 'agent').expires, Date.UTC(2099, 0, 1) / 1000);
    for (const args of [['token', 'list'], ['--json', 'token', 'list'], ['token', 'show', 'ci'],
      ['--json', 'token', 'show', ci.id], ['token', 'show', 'agent']]) {
      const r = await admin(args);
      assertNoSecret(r.stdout + r.stderr, `relay-admin ${args.join(' ')}`);
    }
    const text1 = (await admin(['token', 'list'])).stdout;
    assert.match(text1, /^ID +NAME +STATE +UPSTREAMS +MODELS +USD\/DAY +USD\/MONTH +TOKENS\/DAY +RPM +TPM +CREATED \(UTC\) +EXPIRES \(UTC\)$/m);
    assert.match(text1, new RegExp(`^${ci.id}  ci +live +openai +gpt-4o\\*,gpt-4\\.1\\* +0\\.10 +12\\.50 +200000 +60 +90000 `, 'm'));
    for (const p of ['/tokens', `/tokens/${ci.id}`, '/tokens/agent']) {
      const r = await api('GET', p);
      assert.equal(r.status, 200, `GET ${p}: ${r.text}`);
      assertNoSecret(r.text, `GET ${p}`);
    }
    assert.deepEqual(JSON.parse((await api('GET', `/tokens/${ci.id}`)).text), ci, 'the API shows what relay-admin shows');
  });

  test('update, rotate and revoke take effect (relay-admin)', T, async () => {
    const u = await adminJson(['token', 'update', 'ci', '--budget-usd-day', 'none', '--budget-usd-month=40',
      '--models', '', '--name', 'ci-main']);
    assert.equal(u.budget_usd_day, null);
    assert.equal(u.budget_usd_month, '40.00');
    assert.deepEqual(u.models, []);
    assert.equal(u.name, 'ci-main');
    assert.equal((await adminJson(['token', 'show', 'ci-main'])).id, u.id, 'found by its new name');
    await admin(['token', 'show', 'ci'], 4);

    const before = Math.floor(Date.now() / 1000);
    const r = await admin(['token', 'rotate', 'ci-main', '--grace', '1h']);
    const text = r.stdout.trim();
    assert.match(text, TEXT);
    assert.ok(!texts.includes(text), 'a new text');
    texts.push(text);
    assert.match(r.stderr, /shown only this once; the old one works until/);
    const rotated = await adminJson(['token', 'show', u.id]);
    assert.equal(rotated.id, u.id, 'the id stays');
    assert.equal(rotated.budget_usd_month, '40.00', 'and the budget');
    assert.ok(rotated.grace_until >= before + 3600 && rotated.grace_until <= before + 3700, `grace_until ${rotated.grace_until}`);

    const v = await admin(['token', 'revoke', u.id]);
    assert.match(v.stdout, /^revoked token /);
    const revoked = await adminJson(['token', 'show', u.id]);
    assert.equal(revoked.state, 'revoked', 'at once');
    assert.equal(revoked.grace_until, null, 'the old text stops too');
    assert.match((await admin(['token', 'update', u.id, '--rpm', '5'], 1)).stderr, /is revoked: it cannot be changed/);
    assert.match((await admin(['token', 'rotate', u.id], 1)).stderr, /is revoked/);
    assert.match((await admin(['token', 'revoke', u.id])).stdout, /was already revoked/);
    assert.match((await admin(['token', 'list'])).stdout, new RegExp(`^${u.id}  ci-main +revoked `, 'm'));
  });

  test('refused inputs: exit 2 (4: no such token, 1: a name taken) with a clear message', T, async () => {
    const cases = [
      [['create', '--name', 'x', '--budget-usd-day', '0'], 2, /--budget-usd-day: 0 would allow nothing/],
      [['create', '--name', 'x', '--budget-usd-day', '0.1234567891'], 2, /--budget-usd-day: "0\.1234567891" is not an amount of USD/],
      [['create', '--name', 'x', '--budget-usd-month', '1e3'], 2, /is not an amount of USD/],
      [['create', '--name', 'x', '--rpm', '-3'], 2, /--rpm: "-3" is not a whole number/],
      [['create', '--name', 'x', '--upstreams', 'openai,gemini'], 2, /--upstreams: relay\.ini has no \[upstream\.gemini\] \(it has: openai, claude[^)]*\)/],
      [['create', '--name', 'x', '--expires', '2026-02-30'], 2, /--expires: "2026-02-30" is not a duration/],
      [['create', '--name', 'x', '--expires', '2001-01-01'], 2, /is not in the future/],
      [['create', '--name', 'deadbeef'], 2, /reads as a token's id/],
      [['create', '--name', ' x'], 2, /--name: a name is 1 to 64 printable ASCII characters/],
      [['create'], 2, /a new token needs a name/],
      [['create', '--name', 'agent'], 1, /the name "agent" is taken by token [0-9a-f]{8}/],
      [['create', '--colour', 'red'], 2, /unknown option --colour/],
      [['show', 'nobody'], 4, /no token has the id or the name "nobody"/],
      [['update', 'agent'], 2, /nothing to change/],
      [['rotate', 'agent', '--grace', 'later'], 2, /--grace takes a duration/],
      [['explode'], 2, /unknown subcommand explode/],
    ];
    for (const [args, code, says] of cases) {
      const r = await admin(['token', ...args], code);
      assert.match(r.stderr, says, `relay-admin token ${args.join(' ')}`);
      assert.equal(r.stdout, '', `relay-admin token ${args.join(' ')}: nothing on stdout`);
    }
    const names = (await adminJson(['token', 'list'])).tokens.map((t) => t.name);
    assert.deepEqual(names, ['agent', 'ci-main'], 'no refused create made a token');
  });

  test('the API: create, show, update, rotate, revoke; refusals are 400 naming the field', T, async () => {
    const c = await api('POST', '/tokens', {
      name: 'browser app', upstreams: ['claude'], models: ['claude-*'], budget_usd_day: 0.07,
      budget_usd_month: '3', rpm: 20, expires: '7d',
    });
    assert.equal(c.status, 201, c.text);
    const made = JSON.parse(c.text);
    assert.match(made.token, TEXT, 'the text, once');
    texts.push(made.token);
    assert.equal(made.id, sha256(made.token).slice(0, 8));
    assert.equal(made.budget_usd_day, '0.07', '0.07 sent as a JSON number is 0.07 exactly');
    assert.deepEqual((await adminJson(['token', 'show', made.id])).models, ['claude-*'], 'relay-admin sees it');

    const enc = encodeURIComponent('browser app');
    const s = await api('GET', `/tokens/${enc}`);
    assert.equal(s.status, 200, s.text);
    assert.equal(JSON.parse(s.text).token, undefined, 'show has no text');
    assertNoSecret(s.text, 'GET /tokens/NAME');

    const refusals = [
      [{ budget_usd_day: 0.1234567891 }, /budget_usd_day: give an amount of USD as a string/],
      [{ budget_usd_day: '0' }, /budget_usd_day: 0 would allow nothing/],
      [{ rpm: 2.5 }, /rpm: give a whole number/],
      [{ upstreams: ['openai', 'nope'] }, /upstreams: relay\.ini has no \[upstream\.nope\]/],
      [{ expires: 'someday' }, /expires: "someday" is not a duration/],
      [{ name: 'agent' }, /"agent" is taken/, 409],
      [{ colour: 'red' }, /colour is not a field of a token/],
      [{}, /nothing to change/],
      ['not json', /Send a JSON object/],
    ];
    for (const [body, says, status = 400] of refusals) {
      const r = await api('PATCH', `/tokens/${made.id}`, body);
      assert.equal(r.status, status, `PATCH ${JSON.stringify(body)}: ${r.text}`);
      const e = JSON.parse(r.text).error;
      assert.match(e.message, says, `PATCH ${JSON.stringify(body)}`);
      assert.equal(typeof e.type, 'string', "OpenAI's error shape");
    }
    const p = await api('PATCH', `/tokens/${made.id}`, { budget_usd_day: null, tpm: 5000, expires: null });
    assert.equal(p.status, 200, p.text);
    const changed = JSON.parse(p.text);
    assert.deepEqual([changed.budget_usd_day, changed.tpm, changed.expires, changed.rpm], [null, 5000, null, 20]);

    const rot = await api('POST', `/tokens/${made.id}/rotate`, { grace: 600 });
    assert.equal(rot.status, 200, rot.text);
    const rotated = JSON.parse(rot.text);
    assert.match(rotated.token, TEXT);
    assert.notEqual(rotated.token, made.token);
    texts.push(rotated.token);
    assert.equal(rotated.id, made.id, 'the id stays');
    assert.ok(rotated.grace_until > rotated.created, 'the old text works a while');

    const d = await api('DELETE', `/tokens/${made.id}`);
    assert.equal(d.status, 200, d.text);
    assert.equal(JSON.parse(d.text).state, 'revoked');
    assert.equal((await adminJson(['token', 'show', made.id])).state, 'revoked', 'relay-admin sees it at once');
    assert.equal((await api('PATCH', `/tokens/${made.id}`, { rpm: 1 })).status, 403, 'a revoked token cannot change');
    assert.equal((await api('POST', `/tokens/${made.id}/rotate`)).status, 403);
    assert.equal((await api('GET', '/tokens/nobody')).status, 404);
    assert.equal((await api('PUT', '/tokens', {})).status, 405);
    const dup = await api('POST', '/tokens', { name: 'agent' });
    assert.equal(dup.status, 409, dup.text);
  });

  test('the API refuses every operation without the admin token', T, async () => {
    const before = (await adminJson(['token', 'list'])).tokens;
    const id = before.find((t) => t.name === 'agent').id;
    for (const token of [null, 'wrong', 'rly-' + '0'.repeat(64)]) {
      for (const [method, p, body] of [['GET', '/tokens'], ['POST', '/tokens', { name: 'intruder' }],
        ['GET', `/tokens/${id}`], ['PATCH', `/tokens/${id}`, { rpm: 1 }], ['DELETE', `/tokens/${id}`],
        ['POST', `/tokens/${id}/rotate`]]) {
        const r = await api(method, p, body, { token });
        assert.equal(r.status, 401, `${method} ${p} with ${token ?? 'no token'}: ${r.text}`);
        assert.ok(!r.text.includes('"tokens"') && !r.text.includes('"id"'), 'and shows nothing');
      }
    }
    assert.deepEqual((await adminJson(['token', 'list'])).tokens, before, 'and changed nothing');
  });

  test("no token's text in Relay's log", T, async () => {
    assert.ok(texts.length >= 5);
    assertNoSecret(fs.readFileSync(relay.logs.relay, 'utf8'), "Relay's log");
  });

  test('with stdout closed, relay-admin makes no token and writes nothing into the store', T, async () => {
    const register = path.join(relay.settings.store.home, '__db.register');
    const argv = [path.join(BUILD, 'relay-admin'), '-c', relay.ini, 'token', 'create', '--name', 'closed'];
    // The shell closes stdout, then runs relay-admin (as the user Relay runs
    // as behind mod_fcgid: setpriv goes last, so that it, not the shell,
    // opens a binary in a checkout that user may not traverse).
    const user = relay.processModel === 'fcgid' ? frontUser(FRONT) : null;
    const run = user ? ['setpriv', `--reuid=${user}`, `--regid=${user}`, '--clear-groups', ...argv] : argv;
    const cmd = ['sh', ['-c', 'exec "$@" >&-', 'sh', ...run]];
    const r = await runBounded(...cmd, 10000);
    assert.equal(r.code, 2, `exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /stdout is \/dev\/null \(or closed\)/);
    assert.doesNotMatch(fs.readFileSync(register, 'latin1'), /rly-/, 'no text in __db.register');
    assert.ok(!(await adminJson(['token', 'list'])).tokens.some((t) => t.name === 'closed'), 'no token made');
    assert.equal((await relay.fetch('/relay/health')).status, 200, 'the store is fine');
  });
});
