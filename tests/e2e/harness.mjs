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
//   fake      a started fake upstream (startFakeUpstream) to use instead of
//             one of the suite's own; the caller closes it (several
//             environments on one fake: tests/e2e/cluster.mjs)
//   concurrency  the most requests the suite has in flight at once. Under
//             processModel 'fcgid' the harness has Apache start that many
//             relay.fcgi processes before the tests run (see warmFcgid);
//             elsewhere the pool's workers x threads must hold them
//   processModel  'pool' (default): `relay.fcgi -c INI` binds [fcgi] listen
//             and supervises its workers; 'managed': as under mod_fcgid,
//             `spawn-fcgi -n -s SOCKET -- relay.fcgi -c INI` binds the socket
//             and execs relay.fcgi with it on fd 0 (one process, one request
//             at a time); Caddy talks to that socket. Under the front
//             apache-fcgid the model is 'fcgid' whatever the suite asks
//             (another explicit model is an error): Apache's mod_fcgid starts
//             relay.fcgi processes itself, the harness starts none, so
//             relay.procs has no 'relay' entry and relay.socket is null
//
// More helpers on `relay`: relay.admin(args) runs relay-admin -c INI args
// (bounded; {code, stdout, stderr}), relay.writeIni(over) rewrites the ini
// with `over` merged into the current settings (or writes a string as is),
// relay.restartPool() stops the relay process (SIGTERM, bounded) and starts
// it again on the same ini and store while Caddy and the fake keep running
// (relay.stopPool() and relay.startPool() do the two halves separately),
// relay.workerPids() lists the pool's worker processes (both fail under
// processModel 'fcgid', which has no pool: relay.fcgidPids() lists the
// relay.fcgi processes Apache started instead).
//
// Under 'fcgid' the relay.fcgi processes run as www-data: the harness runs
// `relay-admin init` (and relay.admin) as www-data too, since the store's
// files and SysV shared memory segments belong to whoever creates them
// (root's 0600 segments cannot be attached by www-data); their log goes to
// Apache's error log, so relay.logs.relay is the front's log. Apache runs a
// copy of relay.fcgi in the suite's directory (relay.fcgiBinary): a checkout
// in a private directory is out of www-data's reach.
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
import { spawn, execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

import { startFakeUpstream } from '../fake/upstream.mjs';
import { FRONTS, bodyTimeout, frontBinary, frontCommand, frontProcessModel, frontUser } from './fronts.mjs';

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
  if (frontProcessModel(FRONT) === 'fcgid' && !which('setpriv')) missing.push('setpriv (util-linux)');
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
// Suites whose relay.fcgi processes the front started (processModel
// 'fcgid'): killing the front may leave them behind.
const fcgidSuites = new Set();
process.on('exit', () => {
  for (const { child, group } of live) {
    try {
      if (group) process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const relay of fcgidSuites) abandonFcgidSync(relay);
});

function killQuietly(pid, sig = 'SIGKILL') {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(130));
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

// Starts fake upstream, relay pool and Caddy. Returns the relay handle; its
// stop() is safe to call at any point, also after a failed start.
// Options: ini (sections merged over the defaults), fake (a started fake
// upstream to use instead of a new one; the caller closes it), upstream: 'dead' (the
// upstreams point at a closed port), upstreams (more [upstream.NAME]
// sections on the fake besides [upstream.openai]: a type name, or
// {name, type, mount, ...}), processModel: 'managed' (under spawn-fcgi),
// healthy: false (the start waits for /relay/health to answer 200 or 503
// "degraded": a [cluster] site that starts before its peers is degraded).
export async function startRelay(name, options = {}) {
  const why = missingPrerequisites(options);
  if (why) throw new Error(`cannot start the end-to-end environment: ${why}`);

  fs.mkdirSync(OUT, { recursive: true });
  // Short: a unix socket path must fit in 108 bytes.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-e2e-'));
  const logName = `${slug(path.basename(process.argv[1] || 'e2e', '.test.mjs'))}--${slug(name)}`;
  const imposed = frontProcessModel(FRONT);
  if (imposed && options.processModel && options.processModel !== imposed) {
    throw new Error(`processModel '${options.processModel}' cannot run behind ${FRONT}, which starts relay.fcgi itself ('${imposed}')`);
  }
  const processModel = imposed ?? options.processModel ?? 'pool';
  const frontLog = path.join(OUT, `${logName}.${FRONT}.log`);
  const relay = {
    name,
    tmp,
    processModel,
    logs: {
      // Under mod_fcgid relay.fcgi's stderr is Apache's error log.
      relay: processModel === 'fcgid' ? frontLog : path.join(OUT, `${logName}.relay.log`),
      front: frontLog,
    },
    procs: {},
    fake: null,
  };
  relay.stop = () => stopRelay(relay);
  fs.writeFileSync(relay.logs.front, ''); // no stale log from an earlier run
  if (processModel === 'fcgid') fcgidSuites.add(relay);

  try {
    // options.fake: a fake upstream the caller owns and shares between
    // several environments (tests/e2e/cluster.mjs: three sites, one fake
    // that counts every site's calls); stopRelay leaves it running.
    relay.fake = options.fake ?? (await startFakeUpstream());
    relay.ownsFake = !options.fake;
    let baseUrl = relay.fake.url;
    if (options.upstream === 'dead') baseUrl = `http://127.0.0.1:${await freePort()}`;

    const socket = path.join(tmp, 'relay.sock');
    const sections = mergeIni(
      {
        fcgi: { listen: socket, workers: 2, threads: 8, max_body: 65536, drain_timeout: 2 },
        store: { home: path.join(tmp, 'store'), key_file: path.join(tmp, 'relay.key') },
        cache: {},
        // retries = 0: the other suites count one upstream call per failed
        // answer; tests/e2e/retry.test.mjs turns retries on where it tests them.
        'upstream.openai': {
          type: 'openai',
          base_url: baseUrl,
          connect_timeout: 2,
          idle_timeout: 5,
          timeout: 30,
          // Suites make many upstream failures in a row on one relay, each
          // testing one failure alone: the breaker (on by default in
          // relay.ini) would turn the later ones into 503s. breaker.test.mjs
          // turns it on through options.ini.
          breaker_failures: 0,
          retries: 0,
        },
        ...Object.fromEntries((options.upstreams ?? []).map((u) => {
          const { name, ...settings } = typeof u === 'string' ? { name: u, type: u } : u;
          return [`upstream.${name}`, {
            base_url: baseUrl, connect_timeout: 2, idle_timeout: 5, timeout: 30, retries: 0, breaker_failures: 0,
            ...settings,
          }];
        })),
        log: { level: 'debug' },
      },
      options.ini,
    );
    if (processModel === 'fcgid') {
      // Where warmFcgid's requests go: a fake of their own, under a mount
      // no test uses, last so that it is never the first of its type.
      relay.warmFake = await startFakeUpstream();
      sections[`upstream.${WARMUP}`] = {
        type: 'openai-compatible', base_url: relay.warmFake.url, mount: `/${WARMUP}`,
        connect_timeout: 2, idle_timeout: 10, timeout: 30, retries: 0,
      };
    }
    relay.ini = path.join(tmp, 'relay.ini');
    relay.settings = sections;
    fs.writeFileSync(relay.ini, iniText(sections));

    // A front whose workers run as another user must reach the socket in
    // here (the store stays 0700, the key file 0600).
    if (frontUser(FRONT)) fs.chmodSync(tmp, 0o755);
    // Under mod_fcgid relay.fcgi runs as the front's user: the store, its
    // key file and relay.ini are that user's, and the store is created by
    // that user (relay-admin as root would leave root's 0600 SysV segments,
    // which www-data cannot attach: "shmat: Permission denied").
    if (processModel === 'fcgid') {
      const { uid, gid } = userIds(frontUser(FRONT));
      fs.chownSync(tmp, uid, gid);
      fs.chownSync(relay.ini, uid, gid);
    }
    const init = await runBounded(...adminCommand(relay, ['init']), 10000);
    fs.writeFileSync(relay.logs.relay, `$ relay-admin -c ${relay.ini} init\n${init.stdout}${init.stderr}\n`);
    if (init.code !== 0) {
      throw new Error(`relay-admin init failed (${init.code}): ${init.stderr || init.stdout}`);
    }

    relay.socket = socket;
    if (processModel === 'managed') relay.socket = path.join(tmp, 'managed.sock');
    // Under mod_fcgid each process has its own socket, in FcgidIPCDir
    // (@RELAY_RUNDIR@/fcgid in deploy/apache/apache2-foreground.conf).
    if (processModel === 'fcgid') {
      relay.socket = null;
      relay.fcgidSocketDir = path.join(tmp, 'fcgid');
      relay.fcgiBinary = fcgidBinary(relay);
    } else {
      await startPool(relay);
    }

    await startFront(relay, relay.socket, { healthy: options.healthy ?? true });
    if (processModel === 'fcgid') await warmFcgid(relay, options.concurrency ?? 0);
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

// The [upstream.NAME] and mount of warmFcgid's requests.
const WARMUP = 'harness-warmup';

// mod_fcgid starts a relay.fcgi process only when a request finds none free,
// and makes that request wait a second first (a fixed step in mod_fcgid,
// whatever the spawn score allows). A suite that sends n identical requests
// at once to a cold Apache would thus see them reach Relay spread over a
// second or more, the later ones after the first one's answer was complete
// (HIT rather than COALESCED): not concurrent any more, whatever Relay does.
// A site under load has its processes running already (FcgidIdleTimeout,
// FcgidMinProcessesPerClass keep them), so the harness gets there first: n
// requests at once, each held by its upstream (a fake of its own) until
// Apache runs n relay.fcgi processes, then released by closing that fake
// (Relay answers them 502); the processes stay for the suite (idle timeout
// 600 s).
async function warmFcgid(relay, n) {
  const max = 128; // FcgidMaxProcessesPerClass in deploy/apache/relay-fcgid.conf
  if (n > max) throw new Error(`concurrency ${n}: mod_fcgid runs at most ${max} relay.fcgi processes`);
  const fake = relay.warmFake;
  relay.warmFake = null; // closed below, and not used again
  if (n > 0) {
    for (let i = 0; i < n; i++) fake.enqueue({ hang: true });
    const held = Array.from({ length: n }, async () => {
      try {
        const r = await fetch(`${relay.base}/${WARMUP}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'cache-control': 'no-store', authorization: `Bearer ${KEY_A}` },
          body: JSON.stringify(chatBody(uniq('warm-up'))),
          signal: AbortSignal.timeout(START_TIMEOUT * 2),
        });
        await r.arrayBuffer();
      } catch {
        /* the count below says whether it worked */
      }
    });
    try {
      await waitFor(
        () => fcgidPids(relay).length >= n,
        START_TIMEOUT,
        `Apache to run ${n} relay.fcgi processes for the suite's concurrency`,
        () => (isAlive(relay.procs.front) ? null : `apache2 exited (${exitText(relay.procs.front)})`),
        relay.logs.front,
      );
    } finally {
      await fake.close();
      await Promise.all(held);
    }
  } else {
    await fake.close();
  }
}

// relay-admin ARGS on the suite's ini, as the user relay.fcgi runs as:
// [cmd, args] for runBounded.
function adminCommand(relay, args) {
  const argv = [RELAY_ADMIN, '-c', relay.ini, ...args];
  if (relay.processModel !== 'fcgid') return [argv[0], argv.slice(1)];
  const user = frontUser(FRONT);
  return ['setpriv', [`--reuid=${user}`, `--regid=${user}`, '--clear-groups', ...argv]];
}

// The numeric uid and gid of a system user (from /etc/passwd).
function userIds(name) {
  const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no user ${name} in /etc/passwd`);
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
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

async function startFront(relay, socket, { healthy = true } = {}) {
  // The front's body limit follows the suite's [fcgi] body_timeout (its
  // default included), as deploy/run.sh renders it.
  const bt = await runBounded(...adminCommand(relay, ['config', 'fcgi.body_timeout']), 10000);
  if (bt.code !== 0) throw new Error(`relay-admin config fcgi.body_timeout failed: ${bt.stderr}`);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const { cmd, args, env } = frontCommand(FRONT, relay.tmp, {
      RELAY_HOST: '127.0.0.1',
      RELAY_PORT: String(port),
      RELAY_SOCKET: socket ?? '',
      RELAY_WWW: dashboardDir(relay),
      RELAY_FCGI: relay.fcgiBinary ?? RELAY_FCGI,
      RELAY_INI: relay.ini,
      RELAY_BODY_TIMEOUT: bodyTimeout(bt.stdout.trim()),
    });
    // Appended: startRelay emptied it, and under mod_fcgid it is also the
    // relay's log, which holds relay-admin init's output by now.
    const log = fs.openSync(relay.logs.front, 'a');
    fs.writeSync(log, `$ ${cmd} ${args.join(' ')}\n`);
    // Under mod_fcgid the relay.fcgi processes are Apache's children: in a
    // process group of its own, teardown can reach every one of them (and
    // Apache's own children) should Apache not stop them in time.
    const group = relay.processModel === 'fcgid';
    const front = spawnChild(cmd, args, {
      cwd: relay.tmp,
      stdio: ['ignore', log, log],
      env: { ...process.env, ...env },
      detached: group,
    });
    fs.closeSync(log);
    relay.procs.front = front;
    const entry = { child: front, group };
    live.add(entry);
    relay.port = port;
    relay.base = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        async () => {
          try {
            const r = await fetch(`${relay.base}/relay/health`, { signal: AbortSignal.timeout(2000) });
            await r.arrayBuffer();
            return r.status === 200 || (!healthy && r.status === 503);
          } catch {
            return false;
          }
        },
        START_TIMEOUT,
        `GET ${relay.base}/relay/health to answer ${healthy ? '200' : '200 or 503'} through ${FRONT}`,
        () => {
          if (!isAlive(front)) return `${cmd} exited (${exitText(front)})`;
          if (relay.procs.relay && !isAlive(relay.procs.relay)) return `relay.fcgi exited (${exitText(relay.procs.relay)})`;
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
  await stopPoolOnly(relay);
  if (dropSharedMemory) await removeShm(relay);
  await startPoolAgain(relay, { healthy });
}

// The two halves of restartPool, for tests that work on the store while no
// relay process runs (relay.stopPool(), then relay.startPool()).
async function stopPoolOnly(relay) {
  const old = relay.procs.relay;
  noteShmKeys(relay);
  await stopChild(old, true);
  for (const e of live) if (e.child === old) live.delete(e);
}

async function startPoolAgain(relay, { healthy = true } = {}) {
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

// The executable of a process (resolved), or null when it is gone or a
// zombie.
function exeOf(pid) {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

// The binary a front runs as www-data under mod_fcgid: a copy in the
// suite's directory, for the reason dashboardDir copies www/.
function fcgidBinary(relay) {
  const copy = path.join(relay.tmp, 'relay.fcgi');
  fs.copyFileSync(RELAY_FCGI, copy);
  fs.chmodSync(copy, 0o755);
  return fs.realpathSync(copy); // as /proc/PID/exe names it
}

// Under processModel 'fcgid': the live relay.fcgi processes among the
// front's descendants (Apache -> mod_fcgid's process manager -> relay.fcgi).
function fcgidPids(relay) {
  const root = relay.procs.front?.pid;
  if (!root) return [];
  const out = [];
  const seen = new Set();
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift();
    for (const c of childPids(pid)) {
      if (seen.has(c)) continue;
      seen.add(c);
      queue.push(c);
      if (exeOf(c) === relay.fcgiBinary) out.push(c);
    }
  }
  return out.sort((a, b) => a - b);
}

// Every relay.fcgi process started for this suite, wherever it is now (an
// orphan of a killed Apache included): the binary, with RELAY_INI naming
// this suite's ini in its environment (FcgidInitialEnv).
function fcgidLeftovers(relay) {
  const out = [];
  const marker = `\0RELAY_INI=${relay.ini}\0`;
  let entries = [];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || exeOf(e) !== relay.fcgiBinary) continue;
    try {
      if (`\0${fs.readFileSync(`/proc/${e}/environ`, 'latin1')}`.includes(marker)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

// The store keeps its Berkeley DB regions in SysV shared memory
// (DB_SYSTEM_MEM), and segments outlive the processes: once the temp
// directory is gone nothing could ever reuse or remove them, so each suite
// would leave a few MB of memory and ~3 of the system's 4096 segment ids
// behind. The keys are read from the running processes' mappings
// ("/SYSV<hex key>" in /proc/PID/maps) rather than recomputed, so the
// harness does not depend on how the store derives them.
function noteShmKeys(relay) {
  let pids = [];
  if (relay.processModel === 'fcgid') pids = fcgidPids(relay);
  else if (relay.procs.relay?.pid) pids = [relay.procs.relay.pid, ...childPids(relay.procs.relay.pid)];
  relay.shmKeys ??= new Set();
  for (const p of pids) {
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
  for (const shmid of unusedShm(relay)) await runBounded('ipcrm', ['-m', String(shmid)], 5000);
}

// The ids of the noted segments nobody is attached to any more (with
// attached: those still attached too).
function unusedShm(relay, { attached = false } = {}) {
  const out = [];
  if (!relay.shmKeys?.size) return out;
  let table = '';
  try {
    table = fs.readFileSync('/proc/sysvipc/shm', 'utf8');
  } catch {
    return out;
  }
  // Under mod_fcgid the segments are created by relay-admin init and the
  // relay.fcgi processes, as www-data.
  const owners = new Set([process.getuid()]);
  if (relay.processModel === 'fcgid') owners.add(userIds(frontUser(FRONT)).uid);
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [key, shmid, , , , , nattch, owner] = f.map(Number);
    if (relay.shmKeys.has(key) && (nattch === 0 || attached) && owners.has(owner)) out.push(shmid);
  }
  return out;
}

// stopRelay's cleanup for a suite whose relay.fcgi processes Apache started,
// done synchronously when the test process exits without it (a file timed
// out, an interrupt): the processes are not ours to reap, and their store's
// segments (~100 MB) would otherwise stay.
function abandonFcgidSync(relay) {
  const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  for (const pid of fcgidLeftovers(relay)) killQuietly(pid);
  for (let i = 0; i < 40 && fcgidLeftovers(relay).length; i++) sleepSync(50);
  if (process.env.RELAY_E2E_KEEP === '1') return;
  // Killed processes may not have detached yet: a segment still attached
  // is removed once the last one has (IPC_RMID).
  for (const shmid of unusedShm(relay, { attached: true })) {
    try {
      execFileSync('ipcrm', ['-m', String(shmid)], { timeout: 5000, stdio: 'ignore' });
    } catch {
      /* gone, or not ours */
    }
  }
  fs.rmSync(relay.tmp, { recursive: true, force: true });
}

async function stopRelay(relay) {
  if (relay.stopped) return;
  relay.stopped = true;
  noteShmKeys(relay);
  // A front waits for open connections when told to stop; a hung relay
  // would hold them forever, and the front's own shutdown is not under test.
  // (Apache with a hundred relay.fcgi processes takes ~3 s to stop them.)
  const fcgid = relay.processModel === 'fcgid';
  await stopChild(relay.procs.front, fcgid, fcgid ? STOP_TIMEOUT : 3000);
  await stopChild(relay.procs.relay, true);
  for (const e of live) if (e.child === relay.procs.front || e.child === relay.procs.relay) live.delete(e);
  if (relay.processModel === 'fcgid') {
    // Stopping Apache stops the relay.fcgi processes it started (or else
    // stopChild killed its process group, Apache's children included). A
    // hundred of them may take a few seconds to be gone; any left after
    // that are killed here, and said.
    let left = fcgidLeftovers(relay);
    for (const until = Date.now() + 5000; left.length && Date.now() < until; left = fcgidLeftovers(relay)) await sleep(50);
    if (left.length) {
      process.stderr.write(`harness: relay.fcgi ${left.join(', ')} still running 5 s after Apache stopped; killing them\n`);
      for (const pid of left) killQuietly(pid);
      for (const until = Date.now() + 5000; left.length && Date.now() < until; left = fcgidLeftovers(relay)) await sleep(50);
    }
    fcgidSuites.delete(relay);
  }
  if (relay.ownsFake) await relay.fake?.close();
  await relay.warmFake?.close();
  if (process.env.RELAY_E2E_KEEP !== '1') {
    await removeShm(relay);
    fs.rmSync(relay.tmp, { recursive: true, force: true });
  }
}

// Adds the request helpers to a started relay (relaySuite does; a file that
// starts several environments itself, as tests/e2e/cluster.mjs, calls it).
export function withHelpers(relay) {
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
    runBounded(...adminCommand(relay, args), timeout);
  relay.writeIni = (over) => {
    if (typeof over === 'string') {
      fs.writeFileSync(relay.ini, over);
      return;
    }
    relay.settings = mergeIni(relay.settings, over);
    fs.writeFileSync(relay.ini, iniText(relay.settings));
  };
  const noPool = (what) => () => {
    throw new Error(`relay.${what}(): there is no pool under processModel '${relay.processModel}' (${FRONT} starts relay.fcgi itself); this test belongs to the pool's fronts (// e2e-fronts: caddy)`);
  };
  if (relay.processModel === 'fcgid') {
    relay.restartPool = noPool('restartPool');
    relay.stopPool = noPool('stopPool');
    relay.startPool = noPool('startPool');
    relay.workerPids = noPool('workerPids');
  } else {
    relay.restartPool = (opts) => restartPool(relay, opts);
    relay.stopPool = () => stopPoolOnly(relay);
    relay.startPool = (opts) => startPoolAgain(relay, opts);
    relay.workerPids = () => childPids(relay.procs.relay.pid);
  }
  // The relay.fcgi processes Apache started (processModel 'fcgid' only).
  relay.fcgidPids = relay.processModel === 'fcgid' ? () => fcgidPids(relay) : () => {
    throw new Error(`relay.fcgidPids(): only under processModel 'fcgid' (RELAY_FRONT=apache-fcgid), not '${relay.processModel}'`);
  };
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
