// e2e-fronts: caddy (doctor reads [fcgi] listen; behind apache-fcgid there is no pool socket)
//
// relay-admin doctor against a real pool, store and fake upstream: a healthy
// setup exits 0 with every check OK, WARN or SKIP; each broken thing (a key
// file other users can read, an upstream nobody listens on, no socket where
// [fcgi] listen says, a config that does not load) gives a FAIL line with
// its fix and exit 1, while the rest stays OK.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { relaySuite, freePort, BUILD, TEST_TIMEOUT } from './harness.mjs';

const T = { timeout: TEST_TIMEOUT };
const RELAY_ADMIN = path.join(BUILD, 'relay-admin');

function doctor(ini, json = true) {
  return new Promise((resolve) => {
    const args = ['-c', ini, ...(json ? ['--json'] : []), 'doctor'];
    execFile(RELAY_ADMIN, args, { timeout: 60000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      let out = null;
      if (json) {
        try {
          out = JSON.parse(stdout);
        } catch (e) {
          assert.fail(`doctor --json printed no JSON (${e.message}): ${stdout}\n${stderr}`);
        }
      }
      resolve({ code, stdout, stderr, out });
    });
  });
}

const find = (out, name) => out.checks.find((c) => c.check === name);

// Lists the checks that are not as expected, for an assertion message.
const listing = (out) => out.checks.map((c) => `${c.status} ${c.check}: ${c.detail}${c.fix ? ` -> ${c.fix}` : ''}`).join('\n');

relaySuite('relay-admin doctor', {}, (relay) => {
  // A copy of the suite's relay.ini with lines changed.
  function iniWith(name, edit) {
    const file = path.join(relay.tmp, name);
    fs.writeFileSync(file, edit(fs.readFileSync(relay.ini, 'utf8')));
    return file;
  }

  test('a healthy setup: exit 0, every part checked, nothing FAILs', T, async () => {
    const r = await doctor(relay.ini);
    assert.equal(r.code, 0, `doctor failed on a healthy setup:\n${listing(r.out)}`);
    assert.equal(r.out.ok, true);
    assert.equal(r.out.failed, 0);
    for (const c of r.out.checks) assert.ok(['OK', 'WARN', 'SKIP'].includes(c.status), `${c.check}: ${c.status} ${c.detail}`);
    for (const name of ['config', 'store home', 'store key', 'admin token', 'store', 'free space', 'front', 'pool', 'upstream openai: dns', 'upstream openai: tcp']) {
      assert.equal(find(r.out, name)?.status, 'OK', `${name} is OK:\n${listing(r.out)}`);
    }
    assert.match(find(r.out, 'pool').detail, /answers \/relay\/health .*: ok/);
    assert.match(find(r.out, 'store key').detail, /mode 600/);
    const auth = find(r.out, 'upstream openai: auth');
    assert.equal(auth.status, 'SKIP');
    assert.equal(auth.detail, 'no held key: skipped auth check');
    assert.equal(find(r.out, 'upstream openai: tls').status, 'SKIP', 'plain http on loopback needs no TLS');

    const text = await doctor(relay.ini, false);
    assert.equal(text.code, 0);
    const lines = text.stdout.split('\n').filter((l) => /^(OK|WARN|FAIL|SKIP) /.test(l));
    assert.equal(lines.length, r.out.checks.length, `one line per check:\n${text.stdout}`);
    assert.match(text.stdout, /\n\d+ checks: 0 failed/);
  });

  test('a key file other users can read: FAIL with chmod 600, exit 1', T, async () => {
    const key = relay.settings.store.key_file;
    fs.chmodSync(key, 0o644);
    try {
      const r = await doctor(relay.ini);
      assert.equal(r.code, 1, listing(r.out));
      const c = find(r.out, 'store key');
      assert.equal(c.status, 'FAIL', listing(r.out));
      assert.match(c.detail, /mode 644/);
      assert.equal(c.fix, `chmod 600 ${key}`);
      assert.equal(find(r.out, 'store').status, 'SKIP', 'the store is not opened with a refused key');
      const text = await doctor(relay.ini, false);
      assert.equal(text.code, 1);
      assert.ok(text.stdout.split('\n').some((l) => l.startsWith('FAIL  store key') && l.includes(`-> fix: chmod 600 ${key}`)),
        `the FAIL line carries its fix:\n${text.stdout}`);
    } finally {
      fs.chmodSync(key, 0o600);
    }
    assert.equal((await doctor(relay.ini)).code, 0, 'chmod 600 fixes it');
  });

  test('an upstream nobody listens on: its TCP check FAILs with the fix, exit 1', T, async () => {
    const port = await freePort();
    const ini = iniWith('doctor-down.ini', (t) => `${t}\n[upstream.down]\ntype = openai-compatible\nbase_url = http://127.0.0.1:${port}\nmount = /down\n`);
    const r = await doctor(ini);
    assert.equal(r.code, 1, listing(r.out));
    const tcp = find(r.out, 'upstream down: tcp');
    assert.equal(tcp?.status, 'FAIL', listing(r.out));
    assert.match(tcp.detail, new RegExp(`127\\.0\\.0\\.1 port ${port}: Connection refused`));
    assert.match(tcp.fix, /listening/);
    assert.equal(find(r.out, 'upstream down: auth'), undefined, 'nothing is checked past a failed connection');
    assert.equal(find(r.out, 'upstream openai: tcp').status, 'OK', 'the other upstream is still fine');
    assert.equal(r.out.failed, 1, listing(r.out));
  });

  test('no socket where [fcgi] listen says: the front FAILs with the fix, exit 1', T, async () => {
    const gone = path.join(relay.tmp, 'no-pool-here.sock');
    const ini = iniWith('doctor-nosock.ini', (t) => t.replace(/^listen = .*$/m, `listen = ${gone}`));
    const r = await doctor(ini);
    assert.equal(r.code, 1, listing(r.out));
    const front = find(r.out, 'front');
    assert.equal(front.status, 'FAIL');
    assert.match(front.detail, /no socket at .*no-pool-here\.sock/);
    assert.match(front.fix, /start the pool/);
    assert.equal(find(r.out, 'store').status, 'OK');

    // A file that is not a socket, and a socket nobody listens on.
    fs.writeFileSync(gone, '');
    const notSock = await doctor(ini);
    assert.equal(notSock.code, 1);
    assert.match(find(notSock.out, 'front').detail, /is not a socket/);
    fs.rmSync(gone);
  });

  test('[store] key_env unset: the key FAILs with where to set it, the store is not opened', T, async () => {
    const ini = iniWith('doctor-keyenv.ini', (t) => t.replace(/^key_file = .*$/m, (l) => `${l}\nkey_env = T_DOCTOR_UNSET_KEY`));
    const r = await doctor(ini);
    assert.equal(r.code, 1, listing(r.out));
    const key = find(r.out, 'store key');
    assert.equal(key.status, 'FAIL');
    assert.match(key.detail, /T_DOCTOR_UNSET_KEY is not set/);
    assert.match(key.fix, /Environment=/);
    assert.equal(find(r.out, 'store').status, 'SKIP');
  });

  test("a store another user owns is not opened (its shared memory would be doctor's)", T, async () => {
    const home = path.join(relay.tmp, 'doctor-other-owner');
    fs.mkdirSync(home, { recursive: true });
    fs.writeFileSync(path.join(home, 'cache.db'), '');
    // nobody (65534) owns it; the suite runs as root, as the harness's
    // chown of fronts' files does.
    assert.equal(process.getuid(), 0, 'giving a directory to another user needs root');
    fs.chownSync(home, 65534, 65534);
    const ini = iniWith('doctor-owner.ini', (t) => t.replace(/^home = .*$/m, `home = ${home}`));
    const r = await doctor(ini);
    const st = find(r.out, 'store');
    assert.equal(st.status, 'WARN', listing(r.out));
    assert.match(st.detail, /belongs to .*not opened/);
    assert.match(st.fix, /^run doctor as /);
    assert.ok(!fs.readdirSync(home).some((f) => f.startsWith('__db')), 'doctor created nothing in it');
  });

  test('a config that does not load: one FAIL naming the problem, exit 1', T, async () => {
    const ini = iniWith('doctor-broken.ini', (t) => `${t}\n[store]\nno_such_key = 1\n`);
    const r = await doctor(ini);
    assert.equal(r.code, 1);
    assert.equal(r.out.checks.length, 1, listing(r.out));
    assert.equal(r.out.checks[0].check, 'config');
    assert.equal(r.out.checks[0].status, 'FAIL');
    assert.match(r.out.checks[0].detail, /does not load/);
  });
});
