// `make run` (deploy/run.sh) when `relay-admin init` fails (issue 12, defect
// 6): a key file other users can read, an empty key file. relay.fcgi serves
// uncached then, with /relay/health "degraded" (and says why), so run.sh
// must start it anyway, say so loudly and point at `relay-admin doctor`,
// rather than stop (set -e) before anything runs.
//
// e2e-fronts: caddy (this is about run.sh, which starts its own front: run
// once, behind Caddy)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { BUILD, REPO, freePort, iniText, runBounded, sleep, exited } from './harness.mjs';

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
