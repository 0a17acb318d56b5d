// The end-to-end harness: per suite, a fake upstream, a Relay pool
// (build/relay.fcgi) with its own relay.ini and store in a temp directory,
// and the real Caddy serving deploy/caddy/Caddyfile as-is on a free loopback
// port. Everything is torn down in an `after` hook, also when tests fail.
//
//   import { relaySuite } from './harness.mjs';
//   relaySuite('chat completions', {}, (relay) => {
//     test('...', async () => { const r = await relay.chat({...}); ... });
//   });
//
// `relay` is filled in by the suite's `before` hook: relay.base
// ("http://127.0.0.1:PORT"), relay.fake (see ../fake/upstream.mjs),
// relay.chat(), relay.fetch(), relay.client() (an openai SDK client), and
// relay.logs (where the relay's and Caddy's output went: tests/out/).
//
// Options:
//   ini       {section: {key: value}} merged over the test defaults below
//   upstream  'fake' (default) or 'dead': base_url points at a loopback port
//             nothing listens on (the fake still runs, and must see no call)
//   processModel  'pool' (default): `relay.fcgi -c INI` binds [fcgi] listen
//             and supervises its workers; 'managed': as under mod_fcgid,
//             `spawn-fcgi -n -s SOCKET -- relay.fcgi -c INI` binds the socket
//             and execs relay.fcgi with it on fd 0 (one process, one request
//             at a time); Caddy talks to that socket
//
// More helpers on `relay`: relay.admin(args) runs relay-admin -c INI args
// (bounded; {code, stdout, stderr}), relay.writeIni(over) rewrites the ini
// with `over` merged into the current settings (or writes a string as is),
// relay.restartPool() stops the relay process (SIGTERM, bounded) and starts
// it again on the same ini and store while Caddy and the fake keep running,
// relay.workerPids() lists the pool's worker processes.
//
// Environment:
//   RELAY_BUILD     build directory, relative to the repository (default build)
//   CI=true         a missing caddy or binary fails the suite; elsewhere the
//                   suite is skipped with the reason
//   RELAY_E2E_KEEP=1  keep the temp directory (store, ini) after the run
//
// Every wait is bounded, so a relay that is missing, crashes or hangs fails
// its tests quickly instead of hanging the run.

import { after, before, beforeEach, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

import { startFakeUpstream } from '../fake/upstream.mjs';
import { FRONTS, frontBinary, frontCommand, frontUser } from './fronts.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILD = path.resolve(REPO, process.env.RELAY_BUILD || 'build');
export const OUT = path.join(REPO, 'tests', 'out');
const IN_CI = process.env.CI === 'true';

const RELAY_FCGI = path.join(BUILD, 'relay.fcgi');
const RELAY_ADMIN = path.join(BUILD, 'relay-admin');
// The web server in front (tests/e2e/fronts.mjs): RELAY_FRONT, default caddy.
export const FRONT = process.env.RELAY_FRONT || 'caddy';
if (!FRONTS.includes(FRONT)) throw new Error(`RELAY_FRONT=${FRONT}: not one of ${FRONTS.join(', ')}`);

// Bounds on every wait (ms).
const START_TIMEOUT = 15000; // relay socket, the front's health
const STOP_TIMEOUT = 8000; // SIGTERM to SIGKILL (relay drain_timeout is 2 s)
export const REQUEST_TIMEOUT = 10000; // any single request in a test
export const TEST_TIMEOUT = 30000; // any single test

// Two credentials: the cache is scoped by credential by default.
export const KEY_A = 'sk-test-relay-e2e-aaaaaaaaaaaaaaaaaaaa';
export const KEY_B = 'sk-test-relay-e2e-bbbbbbbbbbbbbbbbbbbb';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A marker unique to this test run and call site: put one in every prompt so
// tests never share cache entries and can find their own upstream calls.
export function uniq(label = 'msg') {
  return `${label} ${randomUUID()}`;
}

// A deterministic (cacheable by default) chat request about `text`.
export function chatBody(text, extra = {}) {
  return {
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'You are a test.' },
      { role: 'user', content: text },
    ],
    temperature: 0,
    ...extra,
  };
}

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(':')) {
    const p = path.join(dir || '.', cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* keep looking */
    }
  }
  return null;
}

// What is missing to run the end-to-end tests, or null.
export function missingPrerequisites(options = {}) {
  const missing = [];
  const front = frontBinary(FRONT);
  if (!which(front)) missing.push(`${front} (deploy/install-deps.sh --test installs it)`);
  if (options.processModel === 'managed' && !which('spawn-fcgi')) {
    missing.push('spawn-fcgi (deploy/install-deps.sh --test installs it)');
  }
  if (!which('curl')) missing.push('curl');
  for (const bin of [RELAY_FCGI, RELAY_ADMIN]) {
    if (!fs.existsSync(bin)) missing.push(`${path.relative(REPO, bin)} (run make)`);
  }
  return missing.length ? `missing: ${missing.join(', ')}` : null;
}

// A free loopback port: bind port 0, read it back, release it. Another
// process could take it before the front binds, so startFront retries.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// relay.ini text from {section: {key: value}}; keys at the start of their
// line (inih treats indented lines as continuations).
export function iniText(sections) {
  let out = '; written by tests/e2e/harness.mjs\n';
  for (const [name, keys] of Object.entries(sections)) {
    out += `\n[${name}]\n`;
    for (const [k, v] of Object.entries(keys)) {
      if (v !== undefined && v !== null) out += `${k} = ${v}\n`;
    }
  }
  return out;
}

function mergeIni(base, over = {}) {
  const out = {};
  for (const [s, keys] of Object.entries(base)) out[s] = { ...keys };
  for (const [s, keys] of Object.entries(over)) out[s] = { ...(out[s] ?? {}), ...keys };
  return out;
}

function tail(file, bytes = 3000) {
  try {
    const buf = fs.readFileSync(file);
    return buf.subarray(Math.max(0, buf.length - bytes)).toString('utf8');
  } catch {
    return '(no log)';
  }
}

export function runBounded(cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 'killed') : 0, stdout, stderr, err });
    });
  });
}

// Resolves when child exits or after ms (to false then).
export function exited(child, ms) {
  if (!isAlive(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

const isAlive = (child) => child && !child.spawnError && child.exitCode === null && child.signalCode === null;
const exitText = (child) => (child.spawnError ? child.spawnError.message : String(child.exitCode ?? child.signalCode));

// spawn() reports a binary it cannot run as an 'error' event, which would
// otherwise crash the test process; keep it for isAlive and the message.
function spawnChild(cmd, args, opts) {
  const child = spawn(cmd, args, opts);
  child.on('error', (err) => {
    child.spawnError = err;
  });
  return child;
}

// Children of every harness in this process, killed synchronously if the
// test process exits without running its `after` hooks.
const live = new Set();
process.on('exit', () => {
  for (const { child, group } of live) {
    try {
      if (group) process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(130));
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

// Starts fake upstream, relay pool and Caddy. Returns the relay handle; its
// stop() is safe to call at any point, also after a failed start.
// Options: ini (sections merged over the defaults), upstream: 'dead' (the
// upstreams point at a closed port), upstreams (more [upstream.NAME]
// sections on the fake besides [upstream.openai]: a type name, or
// {name, type, mount, ...}), processModel: 'managed' (under spawn-fcgi).
export async function startRelay(name, options = {}) {
  const why = missingPrerequisites(options);
  if (why) throw new Error(`cannot start the end-to-end environment: ${why}`);

  fs.mkdirSync(OUT, { recursive: true });
  // Short: a unix socket path must fit in 108 bytes.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-e2e-'));
  const logName = `${slug(path.basename(process.argv[1] || 'e2e', '.test.mjs'))}--${slug(name)}`;
  const relay = {
    name,
    tmp,
    logs: {
      relay: path.join(OUT, `${logName}.relay.log`),
      front: path.join(OUT, `${logName}.${FRONT}.log`),
    },
    procs: {},
    fake: null,
  };
  relay.stop = () => stopRelay(relay);
  fs.writeFileSync(relay.logs.front, ''); // no stale log from an earlier run

  try {
    relay.fake = await startFakeUpstream();
    let baseUrl = relay.fake.url;
    if (options.upstream === 'dead') baseUrl = `http://127.0.0.1:${await freePort()}`;

    const socket = path.join(tmp, 'relay.sock');
    const sections = mergeIni(
      {
        fcgi: { listen: socket, workers: 2, threads: 8, max_body: 65536, drain_timeout: 2 },
        store: { home: path.join(tmp, 'store'), key_file: path.join(tmp, 'relay.key') },
        cache: {},
        'upstream.openai': {
          type: 'openai',
          base_url: baseUrl,
          connect_timeout: 2,
          idle_timeout: 5,
          timeout: 30,
        },
        ...Object.fromEntries((options.upstreams ?? []).map((u) => {
          const { name, ...settings } = typeof u === 'string' ? { name: u, type: u } : u;
          return [`upstream.${name}`, {
            base_url: baseUrl, connect_timeout: 2, idle_timeout: 5, timeout: 30, ...settings,
          }];
        })),
        log: { level: 'debug' },
      },
      options.ini,
    );
    relay.ini = path.join(tmp, 'relay.ini');
    relay.settings = sections;
    fs.writeFileSync(relay.ini, iniText(sections));

    const init = await runBounded(RELAY_ADMIN, ['-c', relay.ini, 'init'], 10000);
    fs.writeFileSync(relay.logs.relay, `$ relay-admin -c ${relay.ini} init\n${init.stdout}${init.stderr}\n`);
    if (init.code !== 0) {
      throw new Error(`relay-admin init failed (${init.code}): ${init.stderr || init.stdout}`);
    }

    // A front whose workers run as another user must reach the socket in
    // here (the store stays 0700, the key file 0600).
    if (frontUser(FRONT)) fs.chmodSync(tmp, 0o755);
    relay.socket = socket;
    relay.processModel = options.processModel ?? 'pool';
    if (relay.processModel === 'managed') relay.socket = path.join(tmp, 'managed.sock');
    await startPool(relay);

    await startFront(relay, relay.socket);
    noteShmKeys(relay);
    return relay;
  } catch (err) {
    await stopRelay(relay);
    err.message += `\n--- relay log (${relay.logs.relay}) ---\n${tail(relay.logs.relay)}\n--- ${FRONT} log (${relay.logs.front}) ---\n${tail(relay.logs.front, 1500)}`;
    throw err;
  }
}

// Starts the relay process on relay.ini: the standalone pool, or relay.fcgi
// under spawn-fcgi (processModel 'managed'). Resolves once its socket exists.
async function startPool(relay) {
  // A socket left behind (a killed pool, spawn-fcgi's) would satisfy the
  // wait below before the new process is listening.
  fs.rmSync(relay.socket, { force: true });
  const relayLog = fs.openSync(relay.logs.relay, 'a');
  let cmd = RELAY_FCGI;
  let args = ['-c', relay.ini];
  if (relay.processModel === 'managed') {
    // -n: no fork; spawn-fcgi binds the socket, puts it on fd 0 and execs
    // relay.fcgi, so the child's pid is relay.fcgi's.
    cmd = 'spawn-fcgi';
    // -M 0660: the mode relay.fcgi gives its own socket.
    args = ['-n', '-s', relay.socket, '-M', '0660', '--', RELAY_FCGI, '-c', relay.ini];
  }
  fs.writeSync(relayLog, `$ ${cmd} ${args.join(' ')}\n`);
  // The pool runs in its own process group so that teardown can reach the
  // workers too, should the parent fail to stop them.
  const pool = spawnChild(cmd, args, {
    cwd: relay.tmp,
    stdio: ['ignore', relayLog, relayLog],
    detached: true,
  });
  fs.closeSync(relayLog);
  relay.procs.relay = pool;
  live.add({ child: pool, group: true });
  await waitFor(() => fs.existsSync(relay.socket), START_TIMEOUT, `relay socket ${relay.socket}`, () => {
    if (!isAlive(pool)) return `relay.fcgi exited (${exitText(pool)}) before creating its socket`;
  }, relay.logs.relay);
  // The socket is 0660: a front whose workers run as another user connects
  // through its group, as a deployment gives Relay the web server's group.
  const user = frontUser(FRONT);
  if (user) fs.chownSync(relay.socket, process.getuid(), groupId(user));
}

// The numeric id of a system group (from /etc/group).
function groupId(name) {
  const line = fs.readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no group ${name} in /etc/group`);
  return Number(line.split(':')[2]);
}

// Polls cond() every 50 ms; throws after timeoutMs, or as soon as dead()
// returns a reason (a child that exited).
async function waitFor(cond, timeoutMs, what, dead, log) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    const reason = dead?.();
    if (reason) throw new Error(`${reason} (while waiting for ${what}; log: ${log})`);
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (log: ${log})`);
    await sleep(50);
  }
}

// The dashboard's directory for the front: the repository's www/, or a copy
// in the suite's directory when the front's workers run as another user (a
// checkout in a private directory, 0700, is out of their reach).
function dashboardDir(relay) {
  const www = path.join(REPO, 'www');
  if (!frontUser(FRONT)) return www;
  const copy = path.join(relay.tmp, 'www');
  fs.cpSync(www, copy, { recursive: true });
  return copy;
}

async function startFront(relay, socket) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const { cmd, args, env } = frontCommand(FRONT, relay.tmp, {
      RELAY_HOST: '127.0.0.1',
      RELAY_PORT: String(port),
      RELAY_SOCKET: socket,
      RELAY_WWW: dashboardDir(relay),
    });
    const log = fs.openSync(relay.logs.front, attempt === 1 ? 'w' : 'a');
    fs.writeSync(log, `$ ${cmd} ${args.join(' ')}\n`);
    const front = spawnChild(cmd, args, {
      cwd: relay.tmp,
      stdio: ['ignore', log, log],
      env: { ...process.env, ...env },
    });
    fs.closeSync(log);
    relay.procs.front = front;
    const entry = { child: front, group: false };
    live.add(entry);
    relay.port = port;
    relay.base = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        async () => {
          try {
            const r = await fetch(`${relay.base}/relay/health`, { signal: AbortSignal.timeout(2000) });
            await r.arrayBuffer();
            return r.status === 200;
          } catch {
            return false;
          }
        },
        START_TIMEOUT,
        `GET ${relay.base}/relay/health to answer 200 through ${FRONT}`,
        () => {
          if (!isAlive(front)) return `${cmd} exited (${exitText(front)})`;
          if (!isAlive(relay.procs.relay)) return `relay.fcgi exited (${exitText(relay.procs.relay)})`;
        },
        `${relay.logs.front}, ${relay.logs.relay}`,
      );
      return;
    } catch (err) {
      const busy = !isAlive(front) && /address already in use/i.test(tail(relay.logs.front));
      if (busy && attempt < 3) {
        live.delete(entry);
        continue; // lost the port race: try another port
      }
      throw err;
    }
  }
}

async function stopChild(child, group, boundMs = STOP_TIMEOUT) {
  if (!child) return;
  const signal = (sig) => {
    try {
      if (group) process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch {
      /* already gone */
    }
  };
  if (isAlive(child)) {
    // SIGTERM to the parent only: stopping its workers is its job.
    try {
      child.kill('SIGTERM');
    } catch {
      /* gone */
    }
    if (!(await exited(child, boundMs))) {
      process.stderr.write(`harness: ${child.spawnfile} did not stop within ${boundMs} ms of SIGTERM; killing it\n`);
    }
  }
  // Whatever is left (a stuck parent, orphaned workers) is killed.
  signal('SIGKILL');
  await exited(child, 2000);
}

// Stops the relay process alone (Caddy and the fake keep running) and
// starts it again on the same ini and store; resolves once /relay/health
// answers 200 through Caddy again. dropSharedMemory: remove the store's
// SysV segments in between, as a reboot does. healthy: false also accepts
// a relay that starts degraded (503, store unavailable).
async function restartPool(relay, { dropSharedMemory = false, healthy = true } = {}) {
  const old = relay.procs.relay;
  noteShmKeys(relay);
  await stopChild(old, true);
  for (const e of live) if (e.child === old) live.delete(e);
  if (dropSharedMemory) await removeShm(relay);
  await startPool(relay);
  await waitFor(
    async () => {
      try {
        const r = await fetch(`${relay.base}/relay/health`, { signal: AbortSignal.timeout(2000) });
        await r.arrayBuffer();
        // healthy: false accepts a relay that answers "degraded" (503).
        return r.status === 200 || (!healthy && r.status === 503);
      } catch {
        return false;
      }
    },
    START_TIMEOUT,
    'GET /relay/health to answer after restarting the relay',
    () => {
      if (!isAlive(relay.procs.relay)) return `relay.fcgi exited (${exitText(relay.procs.relay)})`;
    },
    relay.logs.relay,
  );
  noteShmKeys(relay);
}

// The pids of a process's children (its workers, for the pool parent).
export function childPids(pid) {
  const out = [];
  let tasks = [];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out; // gone
  }
  for (const t of tasks) {
    try {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(/\s+/)) {
        if (c) out.push(Number(c));
      }
    } catch {
      /* thread gone */
    }
  }
  return out.sort((a, b) => a - b);
}

// The store keeps its Berkeley DB regions in SysV shared memory
// (DB_SYSTEM_MEM), and segments outlive the processes: once the temp
// directory is gone nothing could ever reuse or remove them, so each suite
// would leave a few MB of memory and ~3 of the system's 4096 segment ids
// behind. The keys are read from the running processes' mappings
// ("/SYSV<hex key>" in /proc/PID/maps) rather than recomputed, so the
// harness does not depend on how the store derives them.
function noteShmKeys(relay) {
  const pid = relay.procs.relay?.pid;
  if (!pid) return;
  relay.shmKeys ??= new Set();
  for (const p of [pid, ...childPids(pid)]) {
    let maps = '';
    try {
      maps = fs.readFileSync(`/proc/${p}/maps`, 'utf8');
    } catch {
      continue; // gone
    }
    for (const m of maps.matchAll(/\/SYSV([0-9a-f]{8})/g)) {
      const key = parseInt(m[1], 16);
      if (key !== 0) relay.shmKeys.add(key);
    }
  }
}

// Removes the noted segments nobody is attached to any more.
async function removeShm(relay) {
  if (!relay.shmKeys?.size) return;
  let table = '';
  try {
    table = fs.readFileSync('/proc/sysvipc/shm', 'utf8');
  } catch {
    return;
  }
  const uid = process.getuid();
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [key, shmid, , , , , nattch, owner] = f.map(Number);
    if (relay.shmKeys.has(key) && nattch === 0 && owner === uid) {
      await runBounded('ipcrm', ['-m', String(shmid)], 5000);
    }
  }
}

async function stopRelay(relay) {
  if (relay.stopped) return;
  relay.stopped = true;
  noteShmKeys(relay);
  // A front waits for open connections when told to stop; a hung relay
  // would hold them forever, and the front's own shutdown is not under test.
  await stopChild(relay.procs.front, false, 3000);
  await stopChild(relay.procs.relay, true);
  for (const e of live) if (e.child === relay.procs.front || e.child === relay.procs.relay) live.delete(e);
  await relay.fake?.close();
  if (process.env.RELAY_E2E_KEEP !== '1') {
    await removeShm(relay);
    fs.rmSync(relay.tmp, { recursive: true, force: true });
  }
}

// Adds the request helpers to a started relay.
function withHelpers(relay) {
  // fetch against Caddy, bounded. Reads the whole body into `text` unless
  // stream:true (then `res` is returned unread).
  relay.fetch = async (p, init = {}, { stream = false, timeout = REQUEST_TIMEOUT } = {}) => {
    try {
      const res = await fetch(relay.base + p, { signal: AbortSignal.timeout(timeout), ...init });
      if (stream) return res;
      const text = await res.text();
      return { status: res.status, headers: res.headers, text, res };
    } catch (err) {
      if (err.name === 'TimeoutError') {
        // A relay that hangs once will hang again: later tests fail at once
        // instead of each waiting out its own timeout.
        relay.unresponsive ??= `${init.method ?? 'GET'} ${p} got no complete answer within ${timeout} ms`;
        throw new Error(`${relay.unresponsive} (relay log: ${relay.logs.relay})`, { cause: err });
      }
      throw err;
    }
  };
  // POST /v1/chat/completions. body: an object (sent as JSON) or the exact
  // string to send. key: the bearer credential (null: none).
  relay.chat = (body, { key = KEY_A, headers = {}, ...rest } = {}) => {
    const h = { 'content-type': 'application/json', ...headers };
    if (key) h.authorization = `Bearer ${key}`;
    return relay.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: h,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    }, rest);
  };
  relay.client = (opts = {}) =>
    new OpenAI({
      baseURL: `${relay.base}/v1`,
      apiKey: KEY_A,
      maxRetries: 0,
      timeout: REQUEST_TIMEOUT,
      ...opts,
    });
  relay.admin = (args, { timeout = REQUEST_TIMEOUT } = {}) =>
    runBounded(RELAY_ADMIN, ['-c', relay.ini, ...args], timeout);
  relay.writeIni = (over) => {
    if (typeof over === 'string') {
      fs.writeFileSync(relay.ini, over);
      return;
    }
    relay.settings = mergeIni(relay.settings, over);
    fs.writeFileSync(relay.ini, iniText(relay.settings));
  };
  relay.restartPool = (opts) => restartPool(relay, opts);
  relay.workerPids = () => childPids(relay.procs.relay.pid);
  // Fails fast (with the log tail) when a process of the environment died.
  relay.assertAlive = () => {
    if (relay.unresponsive) assert.fail(`not run: the relay stopped answering earlier (${relay.unresponsive})`);
    for (const [what, child] of Object.entries(relay.procs)) {
      if (!isAlive(child)) {
        const log = what === 'relay' ? relay.logs.relay : relay.logs.front;
        assert.fail(`${what} is no longer running (exit ${exitText(child)}); log ${log}:\n${tail(log)}`);
      }
    }
  };
  return relay;
}

// A describe() block with its own environment. body(relay) defines the
// tests; relay's fields are filled in before the first test runs.
export function relaySuite(name, options, body) {
  const missing = missingPrerequisites(options);
  const skip = missing && !IN_CI ? `${missing} (set CI=true to make this a failure)` : false;
  const relay = {};
  describe(name, { skip, timeout: options.suiteTimeout ?? 10 * 60 * 1000 }, () => {
    before(async () => {
      Object.assign(relay, withHelpers(await startRelay(name, options)));
    }, { timeout: START_TIMEOUT * 3 });
    after(async () => {
      if (relay.stop) await relay.stop();
    }, { timeout: STOP_TIMEOUT * 3 });
    beforeEach(() => {
      assert.ok(relay.base, 'the environment did not start (see the before hook)');
      relay.assertAlive();
    });
    body(relay);
  });
  return relay;
}

// Runs curl (-sS -i -N plus args) against the relay, bounded. Returns the
// status, the headers (lower-case names; the last value wins) and the body
// exactly as received, after the final header block (a 100 Continue block
// is skipped).
export function curl(args, { timeout = REQUEST_TIMEOUT } = {}) {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '-i', '-N', '--max-time', String(Math.ceil(timeout / 1000)), ...args],
      { encoding: 'buffer', maxBuffer: 64 << 20, timeout: timeout + 2000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err && !stdout.length) {
          reject(new Error(`curl failed: ${err.message} ${stderr}`));
          return;
        }
        let raw = stdout.toString('utf8');
        let head;
        for (;;) {
          const end = raw.indexOf('\r\n\r\n');
          if (end < 0) {
            reject(new Error(`curl output without a header block: ${JSON.stringify(raw.slice(0, 300))}`));
            return;
          }
          head = raw.slice(0, end);
          raw = raw.slice(end + 4);
          if (!/^HTTP\/\S+ 1\d\d/.test(head)) break;
        }
        const [statusLine, ...lines] = head.split('\r\n');
        const headers = {};
        for (const l of lines) {
          const i = l.indexOf(':');
          if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        resolve({
          status: Number(statusLine.split(' ')[1]),
          statusLine,
          headers,
          body: raw,
          exitCode: err ? err.code : 0,
          stderr: stderr.toString('utf8'),
        });
      });
  });
}
