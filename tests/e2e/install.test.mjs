// `make install` / `make uninstall` into a temporary DESTDIR: every file and
// mode, the config kept on a second install, the unit's paths and
// `systemd-analyze verify`, the installed config as relay-admin reads it.
//
// make runs with `-o all`: it installs the binaries this run built (in
// RELAY_BUILD, e.g. build-asan) and never rebuilds them with other flags.
// Nothing here needs root or a running systemd: the unit is checked offline.
//
// e2e-fronts: caddy (this is about installation, not the front: run once,
// and no front is started)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { BUILD, REPO, runBounded } from './harness.mjs';

const IN_CI = process.env.CI === 'true';
const MAKE_TIMEOUT = 60000;

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(':')) {
    try {
      fs.accessSync(path.join(dir || '.', cmd), fs.constants.X_OK);
      return path.join(dir || '.', cmd);
    } catch {
      /* keep looking */
    }
  }
  return null;
}

async function make(target, destdir, prefix) {
  const r = await runBounded(
    'make',
    ['-C', REPO, '--no-print-directory', '-o', 'all', target, `DESTDIR=${destdir}`, `PREFIX=${prefix}`, `BUILD=${BUILD}`],
    MAKE_TIMEOUT,
  );
  assert.equal(r.code, 0, `make ${target} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

// Every file under dir: {relative path: mode (e.g. 0o644)}.
function filesUnder(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = fs.lstatSync(p).mode & 0o7777;
    }
  };
  walk(dir);
  return out;
}

const sha = (p) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
const octal = (m) => `0${m.toString(8)}`;

// What install must put, with modes, for PREFIX=/usr: the binaries, the
// dashboard, the front configs (every deploy/ folder but systemd/, executable
// files kept executable), the shipped config, the user's config, the unit
// and the sysusers entry.
function expectedFiles() {
  const want = {
    'usr/bin/relay.fcgi': 0o755,
    'usr/bin/relay-admin': 0o755,
    'usr/share/relay/relay.ini': 0o644,
    'etc/relay/relay.ini': 0o644,
    'lib/systemd/system/relay.service': 0o644,
    'usr/lib/sysusers.d/relay.conf': 0o644,
  };
  for (const [f] of Object.entries(filesUnder(path.join(REPO, 'www')))) want[`usr/share/relay/www/${f}`] = 0o644;
  for (const d of fs.readdirSync(path.join(REPO, 'deploy'), { withFileTypes: true })) {
    if (!d.isDirectory() || d.name === 'systemd') continue;
    for (const [f, mode] of Object.entries(filesUnder(path.join(REPO, 'deploy', d.name)))) {
      want[`usr/share/relay/deploy/${d.name}/${f}`] = mode & 0o111 ? 0o755 : 0o644;
    }
  }
  return want;
}

// relay.ini values as relay-admin resolves them.
async function iniValue(admin, ini, key) {
  const r = await runBounded(admin, ['-c', ini, 'config', key], 10000);
  assert.equal(r.code, 0, `relay-admin config ${key} failed: ${r.stderr}`);
  return r.stdout.trim();
}

describe('make install and make uninstall (DESTDIR, PREFIX=/usr)', () => {
  let dest;
  let other;
  before(() => {
    for (const bin of ['relay.fcgi', 'relay-admin']) {
      assert.ok(fs.existsSync(path.join(BUILD, bin)), `${path.relative(REPO, path.join(BUILD, bin))} is missing (run make)`);
    }
    dest = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-install-'));
    other = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-install-'));
  });
  after(() => {
    for (const d of [dest, other]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  test('installs every file with its mode, and nothing else', async () => {
    await make('install', dest, '/usr');
    const got = filesUnder(dest);
    const want = expectedFiles();
    assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
    for (const [f, mode] of Object.entries(want)) assert.equal(octal(got[f]), octal(mode), `mode of ${f}`);
    for (const bin of ['relay.fcgi', 'relay-admin']) {
      assert.equal(sha(path.join(dest, 'usr/bin', bin)), sha(path.join(BUILD, bin)), `${bin} is the built one`);
    }
    for (const f of Object.keys(filesUnder(path.join(REPO, 'www')))) {
      assert.equal(sha(path.join(dest, 'usr/share/relay/www', f)), sha(path.join(REPO, 'www', f)), `www/${f}`);
    }
    // The user's config starts as the shipped one.
    assert.equal(sha(path.join(dest, 'etc/relay/relay.ini')), sha(path.join(dest, 'usr/share/relay/relay.ini')));
  });

  test('the installed config loads and points at the service directories', async () => {
    const admin = path.join(dest, 'usr/bin/relay-admin');
    const ini = path.join(dest, 'etc/relay/relay.ini');
    assert.equal(await iniValue(admin, ini, 'fcgi.listen'), '/run/relay/relay.sock');
    assert.equal(await iniValue(admin, ini, 'fcgi.status_file'), '/run/relay/relay.status');
    assert.equal(await iniValue(admin, ini, 'store.home'), '/var/lib/relay/store');
    assert.equal(await iniValue(admin, ini, 'store.key_file'), '/var/lib/relay/relay.key');
    // Every other key keeps the repository's default.
    const repoIni = path.join(REPO, 'relay.ini');
    for (const key of ['fcgi.workers', 'fcgi.threads', 'fcgi.drain_timeout', 'cache.policy', 'store.cache_mb']) {
      assert.equal(await iniValue(admin, ini, key), await iniValue(admin, repoIni, key), key);
    }
  });

  test('the unit runs the installed binaries on the installed config', async () => {
    const unit = fs.readFileSync(path.join(dest, 'lib/systemd/system/relay.service'), 'utf8');
    const line = (k) => unit.split('\n').filter((l) => l.startsWith(`${k}=`)).map((l) => l.slice(k.length + 1));
    assert.deepEqual(line('ExecStart'), ['/usr/bin/relay.fcgi -c /etc/relay/relay.ini']);
    assert.equal(line('ExecStartPre').length, 1);
    assert.match(line('ExecStartPre')[0], /\/usr\/bin\/relay-admin -c \/etc\/relay\/relay\.ini init/);
    assert.deepEqual(line('ExecReload'), ['/bin/kill -HUP $MAINPID']);
    assert.deepEqual(line('Type'), ['simple']);
    assert.deepEqual(line('User'), ['relay']);
    assert.deepEqual(line('StateDirectory'), ['relay']);
    assert.deepEqual(line('RuntimeDirectory'), ['relay']);
    // The store's SysV segments must survive a stop (see the unit).
    assert.deepEqual(line('RemoveIPC'), ['no']);
    assert.deepEqual(line('DynamicUser'), []);
    // systemd must wait for the drain (relay.fcgi kills what is left 5 s
    // after drain_timeout) before it sends SIGKILL.
    const drain = Number(await iniValue(path.join(dest, 'usr/bin/relay-admin'), path.join(dest, 'etc/relay/relay.ini'), 'fcgi.drain_timeout'));
    const stop = Number(line('TimeoutStopSec')[0]);
    assert.ok(stop > drain + 5, `TimeoutStopSec=${stop} must be above drain_timeout (${drain}) + 5`);
    const users = fs.readFileSync(path.join(dest, 'usr/lib/sysusers.d/relay.conf'), 'utf8');
    assert.match(users, /^u relay - .* \/var\/lib\/relay$/m);
  });

  test('another PREFIX is substituted in the unit', async () => {
    await make('install', other, '/opt/relay');
    const unit = fs.readFileSync(path.join(other, 'lib/systemd/system/relay.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/opt\/relay\/bin\/relay\.fcgi -c \/etc\/relay\/relay\.ini$/m);
    assert.match(unit, /^ExecStartPre=.*\/opt\/relay\/bin\/relay-admin -c \/etc\/relay\/relay\.ini init/m);
    assert.doesNotMatch(unit, /\/usr\/bin\/relay/);
    assert.ok(fs.existsSync(path.join(other, 'opt/relay/bin/relay.fcgi')));
    assert.ok(fs.existsSync(path.join(other, 'opt/relay/share/relay/www/index.html')));
  });

  test('systemd-analyze verify accepts the unit', async (t) => {
    const tool = which('systemd-analyze');
    if (!tool) {
      const why = 'systemd-analyze is missing (Debian package systemd)';
      if (IN_CI) assert.fail(why);
      t.skip(why);
      return;
    }
    // verify checks that the commands exist: point them into DESTDIR.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-unit-'));
    try {
      const unit = fs
        .readFileSync(path.join(dest, 'lib/systemd/system/relay.service'), 'utf8')
        .replaceAll('/usr/bin/relay', path.join(dest, 'usr/bin/relay'));
      fs.writeFileSync(path.join(dir, 'relay.service'), unit);
      const r = await runBounded(tool, ['verify', '--man=no', path.join(dir, 'relay.service')], 30000);
      assert.equal(r.code, 0, `systemd-analyze verify failed:\n${r.stdout}${r.stderr}`);
      assert.equal(r.stderr.trim(), '', `systemd-analyze verify warned:\n${r.stderr}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // ExecStartPre as systemd would run it, with the installed binaries and
  // the given config in place of /etc/relay/relay.ini: {code, stderr}.
  async function execStartPre(ini) {
    const unit = fs.readFileSync(path.join(dest, 'lib/systemd/system/relay.service'), 'utf8');
    const [value] = unit.split('\n').filter((l) => l.startsWith('ExecStartPre=')).map((l) => l.slice(13));
    const local = value.replaceAll('/usr/bin/relay', path.join(dest, 'usr/bin/relay')).replaceAll('/etc/relay/relay.ini', ini);
    // "-" would tell systemd to ignore a failure; either way the unit
    // must not fail to start.
    const ignored = local.startsWith('-');
    const cmd = ignored ? local.slice(1) : local;
    const sh = cmd.match(/^\/bin\/sh -c '(.*)'$/);
    const r = sh ? await runBounded('/bin/sh', ['-c', sh[1]], 10000) : await runBounded(cmd.split(' ')[0], cmd.split(' ').slice(1), 10000);
    return { code: ignored ? 0 : r.code, stderr: r.stderr, stdout: r.stdout };
  }

  test('ExecStartPre lets the service start when relay-admin init fails, and says why and what to run', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-unit-init-'));
    try {
      const ini = path.join(dir, 'relay.ini');
      fs.writeFileSync(ini, [
        '[fcgi]', `listen = ${dir}/relay.sock`,
        '[store]', `home = ${dir}/store`, `key_file = ${dir}/relay.key`,
        '[admin]', `token_file = ${dir}/admin.token`,
        '[upstream.openai]', 'type = openai', '',
      ].join('\n'));
      const good = await execStartPre(ini);
      assert.equal(good.code, 0, `ExecStartPre failed on a new store: ${good.stderr}`);
      assert.doesNotMatch(good.stderr, /starts anyway|doctor/);

      // A key file other users can read: relay-admin init refuses it (and
      // relay.fcgi serves uncached, /relay/health degraded).
      fs.chmodSync(path.join(dir, 'relay.key'), 0o644);
      const init = await runBounded(path.join(dest, 'usr/bin/relay-admin'), ['-c', ini, 'init'], 10000);
      assert.notEqual(init.code, 0, 'relay-admin init should refuse a 0644 key file');
      const bad = await execStartPre(ini);
      assert.equal(bad.code, 0, `ExecStartPre failed, so systemd would not start relay.fcgi: ${bad.stderr}`);
      assert.match(bad.stderr, /starts anyway/);
      assert.match(bad.stderr, new RegExp(`relay-admin -c ${ini.replaceAll('.', '\\.')} doctor`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a second install keeps a changed config', async () => {
    const ini = path.join(dest, 'etc/relay/relay.ini');
    const mine = fs.readFileSync(ini, 'utf8').replace(/^workers = .*$/m, 'workers = 7');
    fs.writeFileSync(ini, mine);
    const r = await make('install', dest, '/usr');
    assert.match(r.stdout, /kept .*etc\/relay\/relay\.ini/);
    assert.equal(fs.readFileSync(ini, 'utf8'), mine);
    assert.equal(await iniValue(path.join(dest, 'usr/bin/relay-admin'), ini, 'fcgi.workers'), '7');
    // Still every file, and the shipped config is the pristine one.
    assert.deepEqual(Object.keys(filesUnder(dest)).sort(), Object.keys(expectedFiles()).sort());
    assert.doesNotMatch(fs.readFileSync(path.join(dest, 'usr/share/relay/relay.ini'), 'utf8'), /^workers = 7$/m);
  });

  test('make uninstall leaves only the config', async () => {
    await make('uninstall', dest, '/usr');
    assert.deepEqual(Object.keys(filesUnder(dest)), ['etc/relay/relay.ini']);
    assert.ok(!fs.existsSync(path.join(dest, 'usr/share/relay')), 'usr/share/relay is removed');
    // Twice is harmless.
    await make('uninstall', dest, '/usr');
    assert.deepEqual(Object.keys(filesUnder(dest)), ['etc/relay/relay.ini']);
  });
});
