// What the coding-agent tests (claude-code, gemini-cli, opencode, cline)
// share: a recording proxy between the agent and Relay, a bounded run of
// the agent's CLI in a process group of its own, and failure messages.
//
//   const proxy = await recordingProxy(relay.base);  // agent -> proxy -> Relay
//   const r = await runAgent(BIN, ['-p', prompt], { cwd, env, timeoutMs });
//   assert.equal(r.code, 0, describeRun(r));
//
// An agent gets only the environment it is given (PATH is added), so
// nothing of the caller's leaks in, and stdin is closed, so it cannot wait
// for a human.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

// A proxy in front of target (Relay) that records each request and Relay's
// answer headers: seen[] of {method, url, headers, body, status, xcache,
// key, error}. Bodies are passed through as they are.
export async function recordingProxy(target) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const rec = { method: req.method, url: req.url, headers: { ...req.headers }, body: body.toString('utf8') };
      seen.push(rec);
      const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (ur) => {
        rec.status = ur.statusCode;
        rec.xcache = ur.headers['x-cache'];
        rec.key = ur.headers['x-relay-key'];
        res.writeHead(ur.statusCode, ur.headers);
        ur.pipe(res);
      });
      up.on('error', (err) => {
        rec.error = err.message;
        res.destroy();
      });
      up.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

// Temporary directories (an agent's HOME, its working directory), removed
// together: const tmp = tempDirs(); tmp.make('relay-x-home-'); tmp.removeAll().
export function tempDirs() {
  const made = [];
  return {
    make(prefix) {
      const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
      made.push(d);
      return d;
    },
    removeAll() {
      for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true });
    },
  };
}

// Process groups of runs still going, killed if the test process exits.
const running = new Set();
const killGroup = (pid) => {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
};
process.on('exit', () => {
  for (const pid of running) killGroup(pid);
});

// The processes (other than ours) whose environment has HOME=home: what is
// left of an agent's run, wherever it went (a daemon that called setsid too).
export function processesWithHome(home) {
  const needle = `\0HOME=${home}\0`;
  const out = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const env = `\0${fs.readFileSync(`/proc/${p}/environ`, 'latin1')}`;
      if (env.includes(needle)) out.push(Number(p));
    } catch {
      /* gone, or not ours */
    }
  }
  return out;
}

function killAll(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

// Runs bin with args to completion or timeoutMs, then SIGKILLs its whole
// process group (agents relaunch themselves or start helper processes).
// With env.HOME (a temp directory of the run's own), the processes still
// carrying it afterwards are listed in `leftover` and killed too.
// Resolves {code, signal, stdout, stderr, timedOut, timeoutMs, leftover}.
export function runAgent(bin, args, { cwd, env, timeoutMs = 60000 }) {
  return new Promise((resolve) => {
    const child = spawn(bin, args, {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { PATH: process.env.PATH, ...env },
    });
    if (child.pid) running.add(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const leftovers = () => (env.HOME ? processesWithHome(env.HOME) : []);
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
      // A daemon holding our pipes would keep 'close' from firing.
      killAll(leftovers());
    }, timeoutMs);
    const done = (r) => {
      clearTimeout(timer);
      running.delete(child.pid);
      const leftover = leftovers();
      if (child.pid) killGroup(child.pid);
      killAll(leftover);
      resolve({ ...r, stdout, timedOut, timeoutMs, leftover });
    };
    child.on('error', (err) => done({ code: null, signal: null, stderr: `${stderr}${err.message}` }));
    child.on('close', (code, signal) => done({ code, signal, stderr }));
  });
}

// A run's outcome and the tail of its output, for an assertion message.
export const describeRun = (r) =>
  `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}${r.timedOut ? ` killed after ${r.timeoutMs} ms` : ''}\n` +
  `stdout: ${r.stdout.slice(-800)}\nstderr: ${r.stderr.slice(-800)}`;

// The JSON paths at which a and b differ (for a failure message).
export function diffPaths(a, b, at = '') {
  if (a === b) return [];
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) {
    return [`${at || '.'}: ${JSON.stringify(a)?.slice(0, 120)} vs ${JSON.stringify(b)?.slice(0, 120)}`];
  }
  const out = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) out.push(...diffPaths(a[k], b[k], `${at}.${k}`));
  return out;
}
