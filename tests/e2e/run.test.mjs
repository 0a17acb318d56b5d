// `make run` (deploy/run.sh) when `relay-admin init` fails (issue 12, defect
// 6): a key file other users can read, an empty key file. relay.fcgi serves
// uncached then, with /relay/health "degraded" (and says why), so run.sh
// must start it anyway, say so loudly and point at `relay-admin doctor`,
// rather than stop (set -e) before anything runs.
//
// And `make run` itself (issue 15): the real `make run` with a test ini on
// a free port, stopped by a signal to the make process alone (SIGTERM,
// SIGINT, SIGHUP as a supervisor or `kill PID` sends it; SIGKILL), must
// leave no process of the run and free the port; behind nginx and Apache
// (workers as www-data) it must serve when its ini, store and socket are in
// a 0700 directory (Debian 12 homes).
//
// e2e-fronts: caddy (this is about run.sh, which starts its own fronts: run
// once; the make run tests pick theirs)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { startFakeUpstream } from '../fake/upstream.mjs';
import { BUILD, KEY_A, REPO, chatBody, freePort, iniText, runBounded, sleep, exited, uniq } from './harness.mjs';

const RELAY_ADMIN = path.join(BUILD, 'relay-admin');
const START_BOUND = 20000; // ms for run.sh to serve

// Starts deploy/run.sh INI caddy on a free port; resolves {child, port,
// output()} (its stdout and stderr so far).
async function startRun(ini) {
  const port = await freePort();
  let out = '';
  const child = spawn(path.join(REPO, 'deploy', 'run.sh'), [ini, 'caddy'], {
    env: { ...process.env, RELAY_PORT: String(port), RELAY_BUILD: BUILD },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own group: run.sh, relay.fcgi and Caddy go together
  });
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return { child, port, output: () => out };
}

// Stops run.sh as Ctrl-C would (SIGTERM), bounded; kills the group after.
async function stopRun(run) {
  if (!run || run.child.exitCode !== null || run.child.signalCode !== null) return;
  run.child.kill('SIGTERM');
  if (!(await exited(run.child, 10000))) {
    try {
      process.kill(-run.child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await exited(run.child, 2000);
  }
}

// GET /relay/health until it answers (any status) or run.sh exits.
async function health(run) {
  const until = Date.now() + START_BOUND;
  while (Date.now() < until) {
    if (run.child.exitCode !== null) return { exited: run.child.exitCode };
    try {
      const r = await fetch(`http://127.0.0.1:${run.port}/relay/health`, { signal: AbortSignal.timeout(2000) });
      return { status: r.status, text: await r.text() };
    } catch {
      await sleep(100);
    }
  }
  return { timedOut: true };
}

describe('make run (deploy/run.sh) when relay-admin init fails', () => {
  let dir;
  let ini;
  let run = null;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-run-'));
    ini = path.join(dir, 'relay.ini');
    fs.writeFileSync(ini, iniText({
      fcgi: { listen: path.join(dir, 'relay.sock'), workers: 1, threads: 4, drain_timeout: 1 },
      store: { home: path.join(dir, 'store'), key_file: path.join(dir, 'relay.key') },
      admin: { token_file: path.join(dir, 'admin.token') },
      'upstream.openai': { type: 'openai', base_url: 'http://127.0.0.1:9' },
    }));
    const init = await runBounded(RELAY_ADMIN, ['-c', ini, 'init'], 10000);
    assert.equal(init.code, 0, `the first init failed: ${init.stderr}`);
  });
  after(async () => {
    await stopRun(run);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const [what, breakIt] of [
    ['a key file other users can read (0644)', (key) => fs.chmodSync(key, 0o644)],
    ['an empty key file', (key) => {
      fs.writeFileSync(key, '');
      fs.chmodSync(key, 0o600);
    }],
  ]) {
    test(`${what}: Relay starts anyway, degraded, and run.sh says why and what to run`, { timeout: START_BOUND * 2 }, async () => {
      const key = path.join(dir, 'relay.key');
      const good = fs.readFileSync(key);
      breakIt(key);
      try {
        const failing = await runBounded(RELAY_ADMIN, ['-c', ini, 'init'], 10000);
        assert.notEqual(failing.code, 0, 'relay-admin init should fail here');

        run = await startRun(ini);
        const h = await health(run);
        assert.equal(h.exited, undefined, `run.sh exited (${h.exited}) instead of serving:\n${run.output()}`);
        assert.ok(!h.timedOut, `nothing answered on port ${run.port}:\n${run.output()}`);
        assert.equal(h.status, 503, `health: ${h.status} ${h.text}`);
        assert.match(h.text, /degraded/);
        assert.match(run.output(), /starts anyway/i, `run.sh did not say it starts anyway:\n${run.output()}`);
        assert.match(run.output(), /relay-admin -c \S+ doctor/, `run.sh did not point at relay-admin doctor:\n${run.output()}`);
        await stopRun(run);
        assert.ok(run.child.exitCode !== null || run.child.signalCode !== null, 'run.sh stopped');
      } finally {
        await stopRun(run);
        fs.writeFileSync(key, good);
        fs.chmodSync(key, 0o600);
      }
    });
  }

  test('with a store that opens, run.sh says nothing of the kind', { timeout: START_BOUND * 2 }, async () => {
    run = await startRun(ini);
    const h = await health(run);
    assert.equal(h.status, 200, `health: ${JSON.stringify(h)}\n${run.output()}`);
    assert.doesNotMatch(run.output(), /starts anyway|doctor/i);
    await stopRun(run);
  });
});

// ---- make run, stopped by a signal to make alone --------------------------

const STOP_BOUND = 15000; // ms for every process of a run to go after the signal

// The processes of group pgid (make's, detached: run.sh, relay.fcgi and the
// front and its workers, whatever user they run as), as "pid args" lines.
function groupProcesses(pgid) {
  const out = execFileSync('ps', ['-eo', 'pid=,pgid=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length > 2 && Number(f[1]) === pgid)
    .map((f) => `${f[0]} ${f.slice(2).join(' ')}`);
}

function killGroup(pgid) {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

// True once the port can be bound on 127.0.0.1 (the front let it go).
function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// `make -C REPO run RELAY_INI=ini FRONT=front` on a free port, in a process
// group of its own (detached) that the test can check and, if all else
// fails, kill. BUILD: the binaries under test (make asan's too: make finds
// them up to date and builds nothing).
async function startMakeRun(ini, front) {
  const port = await freePort();
  let out = '';
  const child = spawn(
    'make',
    ['--no-print-directory', '-C', REPO, 'run', `RELAY_INI=${ini}`, `FRONT=${front}`, `BUILD=${path.relative(REPO, BUILD)}`],
    {
      env: { ...process.env, RELAY_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return { child, port, pgid: child.pid, output: () => out };
}

// Sends sig to make alone and waits (bounded) until nothing of its group
// is left; {gone, left, ms}.
// 'group:SIG' sends SIG to the whole group instead, as Ctrl-C in a terminal
// does (to the foreground process group).
async function signalMake(run, sig) {
  const started = Date.now();
  if (sig.startsWith('group:')) process.kill(-run.pgid, sig.slice(6));
  else process.kill(run.child.pid, sig);
  let left = [];
  while (Date.now() - started < STOP_BOUND) {
    left = groupProcesses(run.pgid);
    if (left.length === 0) return { gone: true, left, ms: Date.now() - started };
    await sleep(100);
  }
  return { gone: false, left, ms: Date.now() - started };
}

describe('make run stopped by a signal to make alone', () => {
  let dir;
  let fake;
  const runs = [];
  before(async () => {
    fake = await startFakeUpstream();
    // A private directory, as a clone under a Debian 12 home: the ini's
    // relative paths put the store and the socket in it.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-makerun-'));
    fs.chmodSync(dir, 0o700);
    fs.writeFileSync(path.join(dir, 'relay.ini'), iniText({
      fcgi: { listen: 'var/relay.sock', status_file: 'var/relay.status', workers: 1, threads: 4, drain_timeout: 1 },
      store: { home: 'var/store', key_file: 'var/relay.key' },
      admin: { token_file: 'var/admin.token' },
      'upstream.openai': { type: 'openai', base_url: fake.url },
    }));
  });
  after(async () => {
    for (const run of runs) killGroup(run.pgid);
    if (fake) await fake.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  // Starts make run and waits for a 200 from /relay/health; returns the run.
  async function serving(front) {
    const run = await startMakeRun(path.join(dir, 'relay.ini'), front);
    runs.push(run);
    const h = await health(run);
    assert.equal(h.status, 200, `make run FRONT=${front} did not serve: ${JSON.stringify(h)}\n${run.output()}`);
    return run;
  }

  async function assertAllGone(run, sig) {
    const during = groupProcesses(run.pgid);
    assert.ok(during.some((l) => /relay\.fcgi/.test(l)), `no relay.fcgi in the run's group:\n${during.join('\n')}`);
    const r = await signalMake(run, sig);
    assert.ok(r.gone, `${sig} (to make alone, unless group:): after ${r.ms} ms still running:\n${r.left.join('\n')}\n${run.output()}`);
    assert.ok(await portFree(run.port), `port ${run.port} still held after ${sig} to make`);
    assert.ok(!fs.existsSync(path.join(dir, 'var', 'relay.sock')), 'the socket is left behind');
  }

  for (const [front, sig] of [
    ['caddy', 'SIGTERM'],
    ['caddy', 'SIGINT'],
    ['caddy', 'SIGHUP'],
    ['caddy', 'SIGKILL'],
    ['caddy', 'group:SIGINT'],
    ['nginx', 'SIGTERM'],
    ['apache-proxy-fcgi', 'SIGTERM'],
  ]) {
    test(`FRONT=${front}, ${sig.startsWith('group:') ? `${sig.slice(6)} to the group (Ctrl-C)` : `${sig} to make`}: no process of the run is left and the port is free`, { timeout: START_BOUND + STOP_BOUND + 10000 }, async () => {
      const run = await serving(front);
      await assertAllGone(run, sig);
    });
  }

  for (const front of ['nginx', 'apache-proxy-fcgi']) {
    test(`FRONT=${front} from a 0700 directory serves a request through the upstream`, { timeout: START_BOUND + STOP_BOUND + 10000 }, async () => {
      const run = await serving(front);
      const text = uniq('makerun');
      const r = await fetch(`http://127.0.0.1:${run.port}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY_A}` },
        body: JSON.stringify(chatBody(text)),
        signal: AbortSignal.timeout(10000),
      });
      const body = await r.text();
      assert.equal(r.status, 200, `${r.status} ${body}\n${run.output()}`);
      assert.match(body, new RegExp(`Echo: ${text}`));
      assert.equal(fake.callsFor(text).length, 1, 'one upstream call');
      if (process.getuid() === 0) {
        // As root the workers are www-data: the socket moved out of reach
        // of the private directory, which is left as it was.
        assert.match(run.output(), /cannot reach .*this run's socket is in its own directory/);
        assert.equal(fs.statSync(path.join(dir, 'var')).gid, 0, "var/ keeps root's group");
      }
      await assertAllGone(run, 'SIGTERM');
    });
  }
});
