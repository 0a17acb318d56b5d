// The baseline side of the throughput bench: what Relay answers, captured
// over FastCGI; bench-baseline (tests/bench/baseline.c) replaying it; and a
// second instance of the front under test, rendered from the same deploy/
// config as Relay's (tests/e2e/fronts.mjs) with only the socket changed.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BUILD, childPids, exited, freePort, sleep } from '../../e2e/harness.mjs';
import { fcgiRequest } from '../../e2e/fcgiclient.mjs';
import { frontCommand } from '../../e2e/fronts.mjs';

// POSTs body to the FastCGI responder on socketPath as a front would and
// resolves with the exact bytes of its answer (the STDOUT stream: CGI head
// and body), for bench-baseline to replay. headers: HTTP request headers.
export async function captureAnswer(socketPath, { uri, body, headers }) {
  const params = {
    REQUEST_METHOD: 'POST', REQUEST_URI: uri, SCRIPT_NAME: '', PATH_INFO: uri, QUERY_STRING: '',
    SERVER_PROTOCOL: 'HTTP/1.1', GATEWAY_INTERFACE: 'CGI/1.1', REMOTE_ADDR: '127.0.0.1',
    CONTENT_LENGTH: String(Buffer.byteLength(body)), CONTENT_TYPE: headers['content-type'] ?? '',
  };
  for (const [k, v] of Object.entries(headers)) params[`HTTP_${k.toUpperCase().replace(/-/g, '_')}`] = v;
  const req = fcgiRequest(socketPath, params);
  // A STDIN record holds at most 65,535 bytes.
  const bodyBuf = Buffer.from(body);
  for (let i = 0; i < bodyBuf.length; i += 65535) req.send(bodyBuf.subarray(i, i + 65535));
  req.end();
  const { bytes, ended } = await req.done;
  if (!ended) throw new Error(`${socketPath}: no FCGI_END_REQUEST`);
  return bytes;
}

// The CGI head of a captured answer, lower-case names: {status, headers}.
export function answerHead(answer) {
  const end = answer.indexOf('\r\n\r\n');
  const headers = {};
  for (const l of answer.subarray(0, end < 0 ? answer.length : end).toString('latin1').split('\r\n')) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number((headers.status ?? '200').split(' ')[0]), headers, bodyBytes: end < 0 ? 0 : answer.length - end - 4 };
}

async function waitFor(cond, ms, what) {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(50)) {
    if (await cond()) return;
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Starts bench-baseline with `procs` processes on socket, answering with
// the bytes in answerFile. Resolves to {pids(), stop()} once it listens.
export async function startResponder({ socket, procs, answerFile, log }) {
  fs.rmSync(socket, { force: true });
  const fd = fs.openSync(log, 'a');
  // detached: a session of its own, as Relay's pool has (tests/e2e/harness.mjs)
  // and as a service has in production. With kernel.sched_autogroup_enabled
  // (Debian's default) each session is one scheduling group: in the bench's
  // session the baseline shared a group with wrk and the front, where
  // wake-ups between them preempt at once, while Relay's pool was a group
  // of its own that waits for its turn. Measured behind nginx, wrk -c32, in
  // one run: baseline in the bench's session p99 3.3-4.1 ms, in a session of
  // its own 15.8-21.8 ms (Relay's pool 13.7-130 ms either way).
  const child = spawn(path.join(BUILD, 'bench-baseline'), ['-s', socket, '-n', String(procs), answerFile],
    { stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  await waitFor(() => fs.existsSync(socket) || child.exitCode !== null, 10000, `bench-baseline on ${socket}`);
  if (child.exitCode !== null) throw new Error(`bench-baseline exited ${child.exitCode} (log ${log})`);
  return {
    pids: () => childPids(child.pid),
    stop: async () => {
      child.kill('SIGTERM');
      if (!(await exited(child, 5000))) child.kill('SIGKILL');
    },
  };
}

// Starts `front` (a name of tests/e2e/fronts.mjs) rendered into dir with
// the same variables the harness gives it for Relay, but for socket.
// Resolves to {base, stop()} once it answers.
export async function startFrontOn({ front, dir, socket, log }) {
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755); // nginx and Apache run their workers as www-data
  const www = path.join(dir, 'www');
  fs.mkdirSync(www, { recursive: true });
  const port = await freePort();
  const { cmd, args, env } = frontCommand(front, dir, {
    RELAY_HOST: '127.0.0.1', RELAY_PORT: String(port), RELAY_SOCKET: socket, RELAY_WWW: www,
    RELAY_FCGI: '/bin/false', RELAY_INI: '/dev/null', RELAY_BODY_TIMEOUT: '65',
  });
  const fd = fs.openSync(log, 'a');
  const child = spawn(cmd, args, { cwd: dir, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
  fs.closeSync(fd);
  const base = `http://127.0.0.1:${port}`;
  // Any path answers: bench-baseline gives every request the captured answer.
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`${cmd} exited ${child.exitCode} (log ${log})`);
    try {
      const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      return r.status === 200;
    } catch {
      return false;
    }
  }, 15000, `${front} on ${base} in front of bench-baseline`);
  return {
    base,
    stop: async () => {
      child.kill('SIGTERM');
      if (!(await exited(child, 5000))) child.kill('SIGKILL');
    },
  };
}
