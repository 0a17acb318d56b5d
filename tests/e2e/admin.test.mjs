// e2e-fronts: caddy (relay-admin does not depend on the front)
//
// relay-admin against a running relay: traffic goes through the front while
// each command runs, and the tests check what the commands did to the store
// (ls lists what was just cached with its labels, show prints the stored
// answer, purge by model makes the next request a MISS, verify and backup
// run under load, restore fills a fresh store, recover and rekey refuse
// while the pool runs and work once it is stopped), plus --help, --json and
// the exit codes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { relaySuite, chatBody, uniq, BUILD, TEST_TIMEOUT } from './harness.mjs';

const T = { timeout: TEST_TIMEOUT };
const RELAY_ADMIN = path.join(BUILD, 'relay-admin');

// relay-admin on another ini (the harness's relay.admin uses the suite's).
function adminWith(ini, args, env = process.env) {
  return new Promise((resolve) => {
    execFile(RELAY_ADMIN, ['-c', ini, ...args], { timeout: 60000, env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function json(relay, args) {
  const r = await relay.admin(['--json', ...args]);
  assert.equal(r.code, 0, `relay-admin ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    assert.fail(`relay-admin --json ${args.join(' ')} printed no JSON: ${e.message}\n${r.stdout}`);
  }
}

// The ls entries whose key starts with the X-Relay-Key of response r.
async function lsEntry(relay, r) {
  const key = r.headers.get('x-relay-key');
  assert.match(key ?? '', /^[0-9a-f]{16}$/, 'X-Relay-Key');
  const ls = await json(relay, ['ls', '--limit', '0']);
  return ls.entries.find((e) => e.key.startsWith(key));
}

relaySuite('relay-admin while the relay serves', {}, (relay) => {
  const cached = {}; // name -> {body, response} of requests stored by earlier tests

  async function miss(name, body, headers = {}) {
    const r = await relay.chat(body, { headers });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-cache'), 'MISS');
    cached[name] = { body, headers, response: r };
    return r;
  }

  test('--help lists every command and the exit codes; usage errors exit 2', T, async () => {
    const h = await relay.admin(['--help']);
    assert.equal(h.code, 0);
    for (const c of ['init', 'stats', 'ls', 'show', 'purge', 'verify', 'backup', 'restore', 'compact', 'recover', 'rekey', 'doctor', 'config']) {
      assert.match(h.stdout, new RegExp(`^  ${c}\\b`, 'm'), `--help lists ${c}`);
      const ch = await relay.admin([c, '--help']);
      assert.equal(ch.code, 0, `${c} --help`);
      assert.match(ch.stdout, new RegExp(`^usage: relay-admin ${c}`), `${c} --help: usage line`);
    }
    assert.match(h.stdout, /exit codes:[\s\S]*3\s+refused/);
    assert.equal((await relay.admin(['no-such-command'])).code, 2);
    assert.equal((await relay.admin(['ls', '--sort', 'sideways'])).code, 2);
    assert.equal((await relay.admin(['purge', '--older-than', 'soon'])).code, 2);
    assert.equal((await relay.admin(['purge', '--all', '--model', 'x'])).code, 2);
    assert.equal((await relay.admin(['show', 'abc'])).code, 2, 'show needs 8 digits');
    assert.equal((await relay.admin(['show', 'zzzzzzzz'])).code, 2, 'show needs hex');
    const nf = await relay.admin(['show', 'ffffffffffffffff']);
    assert.equal(nf.code, 4, 'show: not found');
    assert.match(nf.stderr, /no entry/);
  });

  test('init made the admin token file (0600, 64 hex digits) and never prints it unasked', T, async () => {
    const file = (await relay.admin(['config', 'admin.token_file'])).stdout.trim();
    const st = fs.statSync(file);
    assert.equal(st.mode & 0o777, 0o600);
    const token = fs.readFileSync(file, 'utf8');
    assert.match(token, /^[0-9a-f]{64}\n$/);
    const again = await relay.admin(['init']);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(!again.stdout.includes(token.trim()), 'init printed the token');
    assert.equal(fs.readFileSync(file, 'utf8'), token, 'init kept the token');
    const shown = await json(relay, ['init', '--show-admin-token']);
    assert.equal(shown.admin_token, token.trim());
    assert.equal(shown.admin_token_created, false);
  });

  test('the admin API refuses its token while the token file is readable by other users', T, async () => {
    const file = (await relay.admin(['config', 'admin.token_file'])).stdout.trim();
    const token = fs.readFileSync(file, 'utf8').trim();
    const stats = () => relay.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await stats()).status, 200, 'the token works from a 0600 file');
    fs.chmodSync(file, 0o644);
    try {
      const r = await stats();
      assert.equal(r.status, 401, `a token anyone on the machine can read is no secret: ${r.status} ${r.text.slice(0, 200)}`);
      assert.match(r.text, /chmod 600/, 'the answer says the fix');
    } finally {
      fs.chmodSync(file, 0o600);
    }
    assert.equal((await stats()).status, 200, 'chmod 600 makes it work again');
  });

  test('[store] key_env: the store key comes from the environment, no key file is made', T, async () => {
    const ini = path.join(relay.tmp, 'keyenv.ini');
    const keyFile = path.join(relay.tmp, 'keyenv-never.key');
    fs.writeFileSync(ini, fs.readFileSync(relay.ini, 'utf8')
      .replace(/^home = .*$/m, `home = ${path.join(relay.tmp, 'keyenv-store')}`)
      .replace(/^key_file = .*$/m, `key_file = ${keyFile}\nkey_env = T_RELAY_STORE_KEY`));
    const key = 'a1'.repeat(32);
    const withKey = { ...process.env, T_RELAY_STORE_KEY: key };
    const init = await adminWith(ini, ['--json', 'init'], withKey);
    assert.equal(init.code, 0, init.stderr);
    assert.equal(JSON.parse(init.stdout).key_env, 'T_RELAY_STORE_KEY');
    assert.ok(!fs.existsSync(keyFile), 'no key file is created when the key comes from the environment');
    assert.equal((await adminWith(ini, ['stats'], withKey)).code, 0, 'the store opens with the variable');
    const { T_RELAY_STORE_KEY: _, ...without } = withKey;
    const unset = await adminWith(ini, ['stats'], without);
    assert.equal(unset.code, 1, 'no variable, no store');
    assert.match(unset.stderr, /T_RELAY_STORE_KEY is not set/);
    const other = await adminWith(ini, ['stats'], { ...withKey, T_RELAY_STORE_KEY: 'b2'.repeat(32) });
    assert.equal(other.code, 1, 'another secret does not open the store');
    const bk = path.join(relay.tmp, 'keyenv-backup');
    assert.equal((await adminWith(ini, ['backup', bk, '--with-key'], withKey)).code, 0);
    assert.equal(fs.readFileSync(path.join(bk, 'relay.key'), 'utf8'), `${key}\n`, '--with-key writes the variable\'s secret');
    assert.equal(fs.statSync(path.join(bk, 'relay.key')).mode & 0o777, 0o600);
    const rekey = await adminWith(ini, ['rekey'], withKey);
    assert.equal(rekey.code, 1, 'rekey needs a key file');
    assert.match(rekey.stderr, /key_env/);
  });

  test('ls lists the entries just stored with their upstream, model and namespace; show prints them', T, async () => {
    const a = await miss('mini', chatBody(uniq('ls-mini')));
    const b = await miss('big', chatBody(uniq('ls-big'), { model: 'gpt-4o' }));
    const c = await miss('ns', chatBody(uniq('ls-ns')), { 'x-relay-namespace': 'team-x' });
    relay.fake.enqueue({ chunks: 3 });
    const sm = uniq('ls-stream');
    const s = await miss('stream', chatBody(sm, { stream: true }));

    const ea = await lsEntry(relay, a);
    assert.ok(ea, 'ls lists the new entry');
    assert.equal(ea.upstream, 'openai');
    assert.equal(ea.model, 'gpt-4o-mini');
    assert.equal(ea.namespace, '');
    assert.equal((await lsEntry(relay, b)).model, 'gpt-4o');
    assert.equal((await lsEntry(relay, c)).namespace, 'team-x');
    const es = await lsEntry(relay, s);
    assert.ok(es.size > 0 && es.hits === 0 && es.age >= 0, JSON.stringify(es));

    // Text: one line per entry starting with the 16-digit key.
    const text = await relay.admin(['ls', '--limit', '0']);
    assert.equal(text.code, 0, text.stderr);
    const line = text.stdout.split('\n').find((l) => l.startsWith(a.headers.get('x-relay-key')));
    assert.ok(line, `ls has a line for ${a.headers.get('x-relay-key')}:\n${text.stdout}`);
    assert.match(line, /\bopenai\s+gpt-4o-mini\s+\d+\s+\d+[smhd]\s+\d+\s+-$/);
    assert.equal((await json(relay, ['ls', '--limit', '1'])).entries.length, 1, '--limit');

    // A hit counts, and show prints the stored body.
    const hit = await relay.chat(cached.mini.body);
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    const key8 = a.headers.get('x-relay-key').slice(0, 8);
    const shown = await json(relay, ['show', key8]);
    assert.equal(shown.kind, 'body');
    assert.equal(shown.model, 'gpt-4o-mini');
    assert.equal(shown.upstream, 'openai');
    assert.equal(shown.body, a.text, 'show --json: the stored body');
    assert.ok(shown.hits >= 1, `hits ${shown.hits}`);
    assert.ok(shown.expires > shown.created);
    const st = await relay.admin(['show', s.headers.get('x-relay-key')]);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /^kind\s+stream$/m);
    assert.match(st.stdout, /^content type\s+text\/event-stream/m);
    assert.ok(st.stdout.includes('data: ') && st.stdout.includes('[DONE]'), 'show prints the raw stream');
    assert.ok(st.stdout.includes(s.text.split('\n')[0]), 'the stream as it was sent');
  });

  test('purge --model removes only that model: the next request for it is a MISS, the others HIT', T, async () => {
    const before = await json(relay, ['stats']);
    const p = await json(relay, ['purge', '--model', 'gpt-4o']);
    assert.equal(p.removed, 1, JSON.stringify(p));
    const after = await json(relay, ['stats']);
    assert.equal(after.entries, before.entries - 1);
    const big = await relay.chat(cached.big.body);
    assert.equal(big.headers.get('x-cache'), 'MISS', 'purged model');
    const mini = await relay.chat(cached.mini.body);
    assert.equal(mini.headers.get('x-cache'), 'HIT', 'other model kept');

    const n = await json(relay, ['purge', '--namespace', 'team-x', '--model', 'gpt-4o-mini']);
    assert.equal(n.removed, 1);
    const ns = await relay.chat(cached.ns.body, { headers: cached.ns.headers });
    assert.equal(ns.headers.get('x-cache'), 'MISS');
    assert.equal((await json(relay, ['purge', '--older-than', '7d'])).removed, 0, 'nothing is a week old');
    const text = await relay.admin(['purge', '--model', 'no-such-model']);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^removed 0 entries$/m);
  });

  test('verify exits 0 while requests flow, and 1 on a damaged backup', T, async () => {
    const flowing = Promise.all(Array.from({ length: 12 }, (_, i) => relay.chat(chatBody(uniq(`verify-${i}`)))));
    const v = await relay.admin(['--json', 'verify']);
    const rs = await flowing;
    for (const r of rs) assert.equal(r.status, 200);
    assert.equal(v.code, 0, `verify: ${v.stderr}`);
    const out = JSON.parse(v.stdout);
    assert.equal(out.ok, true);
    assert.deepEqual(out.problems, []);
    assert.ok(out.entries >= 3, `entries ${out.entries}`);

    const bk = path.join(relay.tmp, 'verify-backup');
    assert.equal((await relay.admin(['backup', bk])).code, 0);
    assert.equal((await relay.admin(['verify', '--backup', bk])).code, 0, 'a good backup verifies');
    const cache = path.join(bk, 'cache.db');
    const buf = fs.readFileSync(cache);
    for (let i = 4096 + 200; i < 4096 + 220 && i < buf.length; i++) buf[i] ^= 0x5a;
    fs.writeFileSync(cache, buf);
    const bad = await relay.admin(['verify', '--backup', bk]);
    assert.equal(bad.code, 1, `verify of a damaged copy: ${bad.stdout}${bad.stderr}`);
    assert.match(bad.stderr, /cache\.db/);
    const badJson = await relay.admin(['--json', 'verify', '--backup', bk]);
    assert.equal(badJson.code, 1);
    assert.equal(JSON.parse(badJson.stdout).ok, false);
  });

  test('backup while a stream is in flight; restore into a fresh store finds the entries', T, async () => {
    // A slow stream holds a worker in the store while the backup runs.
    relay.fake.enqueue({ chunks: 10, chunkDelayMs: 100 });
    const slow = relay.chat(chatBody(uniq('backup-slow'), { stream: true }));
    const bk = path.join(relay.tmp, 'backup');
    const b = await relay.admin(['--json', 'backup', bk]);
    assert.equal(b.code, 0, `backup: ${b.stderr}`);
    const out = JSON.parse(b.stdout);
    assert.ok(out.files >= 6 && out.bytes > 0, b.stdout);
    assert.equal(out.key_included, false);
    assert.match(b.stderr, /key file/, 'backup says the key file is not in it');
    assert.ok(!fs.existsSync(path.join(bk, 'relay.key')));
    assert.equal((await slow).status, 200);
    const again = await relay.admin(['backup', bk]);
    assert.equal(again.code, 2, 'backup into a non-empty directory');

    const withKey = path.join(relay.tmp, 'backup-key');
    assert.equal((await relay.admin(['backup', withKey, '--with-key'])).code, 0);
    assert.equal(fs.statSync(path.join(withKey, 'relay.key')).mode & 0o777, 0o600);

    // Restore into another store, as a second install would.
    const listed = await json(relay, ['ls', '--limit', '0']);
    const ini2 = path.join(relay.tmp, 'restored.ini');
    const home2 = path.join(relay.tmp, 'restored-store');
    fs.writeFileSync(ini2, fs.readFileSync(relay.ini, 'utf8').replace(/^home = .*$/m, `home = ${home2}`));
    const r = await adminWith(ini2, ['restore', bk]);
    assert.equal(r.code, 0, `restore: ${r.stderr}`);
    const ls2 = JSON.parse((await adminWith(ini2, ['--json', 'ls', '--limit', '0'])).stdout);
    const keys2 = new Set(ls2.entries.map((e) => e.key));
    for (const name of ['mini', 'stream']) {
      const key = cached[name].response.headers.get('x-relay-key');
      assert.ok([...keys2].some((k) => k.startsWith(key)), `restored store has ${name} (${key})`);
    }
    assert.ok(ls2.total >= listed.total - 1, `restored ${ls2.total} of ${listed.total}`);
    const mini = ls2.entries.find((e) => e.key.startsWith(cached.mini.response.headers.get('x-relay-key')));
    assert.equal(mini.model, 'gpt-4o-mini');
    const shown = JSON.parse((await adminWith(ini2, ['--json', 'show', mini.key.slice(0, 12)])).stdout);
    assert.equal(shown.body, cached.mini.response.text);
    assert.equal((await adminWith(ini2, ['verify'])).code, 0, 'the restored store verifies');

    // A --with-key backup on a machine whose init made another key: the
    // backup's key restores it and replaces the key file (the other kept).
    const ini4 = path.join(relay.tmp, 'newmachine.ini');
    const key4 = path.join(relay.tmp, 'newmachine.key');
    fs.writeFileSync(ini4, fs.readFileSync(relay.ini, 'utf8')
      .replace(/^home = .*$/m, `home = ${path.join(relay.tmp, 'newmachine-store')}`)
      .replace(/^key_file = .*$/m, `key_file = ${key4}`));
    assert.equal((await adminWith(ini4, ['init'])).code, 0);
    const freshKey = fs.readFileSync(key4, 'utf8');
    assert.notEqual(freshKey, fs.readFileSync(relay.settings.store.key_file, 'utf8'));
    const plain = await adminWith(ini4, ['restore', bk]);
    assert.equal(plain.code, 1, 'a backup without its key does not restore with another key');
    assert.match(plain.stderr, /--with-key/);
    assert.equal(fs.readFileSync(key4, 'utf8'), freshKey, 'a refused restore leaves the key file');
    const rk = await adminWith(ini4, ['--json', 'restore', withKey]);
    assert.equal(rk.code, 0, `restore --with-key backup: ${rk.stderr}`);
    assert.deepEqual(JSON.parse(rk.stdout).key_installed, true);
    assert.equal(JSON.parse(rk.stdout).old_key_file, `${key4}.old`);
    assert.equal(fs.readFileSync(key4, 'utf8'), fs.readFileSync(relay.settings.store.key_file, 'utf8'),
      "the backup's key is the store's key now");
    assert.equal(fs.statSync(key4).mode & 0o777, 0o600);
    assert.equal(fs.readFileSync(`${key4}.old`, 'utf8'), freshKey, 'the key it replaced is kept');
    const shown4 = JSON.parse((await adminWith(ini4, ['--json', 'show', mini.key.slice(0, 12)])).stdout);
    assert.equal(shown4.body, cached.mini.response.text, 'the restored entries read with the installed key');
    const same = await adminWith(ini4, ['--json', 'restore', withKey]);
    assert.equal(same.code, 0, same.stderr);
    assert.equal(JSON.parse(same.stdout).key_installed, false, 'the same key again: nothing to install');
    assert.ok(!fs.existsSync(`${key4}.old.2`));
  });

  test('compact returns free pages while the relay serves', T, async () => {
    const flowing = Promise.all(Array.from({ length: 8 }, (_, i) => relay.chat(chatBody(uniq(`compact-${i}`)))));
    const c = await json(relay, ['compact']);
    for (const r of await flowing) assert.equal(r.status, 200);
    for (const k of ['pages_freed', 'bytes_before', 'bytes_after']) assert.equal(typeof c[k], 'number', JSON.stringify(c));
    assert.equal((await relay.chat(cached.mini.body)).headers.get('x-cache'), 'HIT', 'entries survive compaction');
  });

  test('recover and rekey refuse while the pool runs (exit 3), work once it is stopped; the data stays readable', T, async () => {
    for (const cmd of ['recover', 'rekey']) {
      const r = await relay.admin([cmd]);
      assert.equal(r.code, 3, `${cmd} while running: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /refused: Relay processes are using the store/);
    }
    const bk = path.join(relay.tmp, 'backup');
    assert.equal((await relay.admin(['restore', bk])).code, 3, 'restore while running');

    const keyFile = relay.settings.store.key_file;
    const oldKey = fs.readFileSync(keyFile, 'utf8');
    const before = await json(relay, ['stats']);
    await relay.stopPool();
    let restarted = false;
    try {
      const rec = await relay.admin(['recover']);
      assert.equal(rec.code, 0, `recover: ${rec.stderr}`);
      const rk = await relay.admin(['--json', 'rekey']);
      assert.equal(rk.code, 0, `rekey: ${rk.stderr}`);
      const out = JSON.parse(rk.stdout);
      assert.ok(out.records >= before.entries, rk.stdout);
      assert.equal(fs.readFileSync(`${keyFile}.old`, 'utf8'), oldKey, 'the old key is kept as KEY.old');
      const newKey = fs.readFileSync(keyFile, 'utf8');
      assert.match(newKey, /^[0-9a-f]{64}\n$/);
      assert.notEqual(newKey, oldKey);
      assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
      const after = await json(relay, ['stats']);
      assert.equal(after.entries, before.entries, 'every entry is still there');
      assert.equal((await relay.admin(['verify'])).code, 0, 'the re-encrypted store verifies');
      // The old backup needs the old key now.
      const ini3 = path.join(relay.tmp, 'oldkey.ini');
      fs.writeFileSync(ini3, fs.readFileSync(relay.ini, 'utf8')
        .replace(/^home = .*$/m, `home = ${path.join(relay.tmp, 'store3')}`));
      const wrong = await adminWith(ini3, ['restore', bk]);
      assert.equal(wrong.code, 1, 'a backup made with the old key does not restore with the new one');
      assert.match(wrong.stderr, /key/);
    } finally {
      await relay.startPool();
      restarted = true;
    }
    assert.ok(restarted);
    const hit = await relay.chat(cached.mini.body);
    assert.equal(hit.headers.get('x-cache'), 'HIT', 'the relay reads the re-encrypted entries');
    assert.equal(hit.text, cached.mini.response.text);
  });
});
