// Runs wrk (Debian's, installed by deploy/install-deps.sh --test) and reads
// its figures from a lua done() hook that prints them as one JSON line, so
// nothing depends on the layout of wrk's human-readable report.
//
//   const r = await runWrk({ url, body, headers, connections, threads, seconds, unique })
//   -> { requests, seconds, rps, p50Ms, p99Ms, errors: {connect, read, write, status, timeout} }
//
// body: the POST body sent on every request; with unique: a marker string
// in body that is replaced by "<run>-<thread>-<n>" on each request, so every
// request is a different one (cache misses). status errors are answers
// other than 2xx/3xx.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// A lua string literal for any bytes.
const luaString = (s) => `"${[...Buffer.from(s)].map((b) => `\\${b}`).join('')}"`;

function luaScript({ body, headers, unique }) {
  const lines = ['wrk.method = "POST"'];
  for (const [k, v] of Object.entries(headers)) lines.push(`wrk.headers[${luaString(k)}] = ${luaString(v)}`);
  if (unique) {
    const at = body.indexOf(unique);
    if (at < 0) throw new Error(`runWrk: the marker ${unique} is not in the body`);
    const run = randomUUID().slice(0, 8);
    lines.push(
      `local head, tail = ${luaString(body.slice(0, at))}, ${luaString(body.slice(at + unique.length))}`,
      'local threads = 0',
      // setup() runs in the main lua state, once per thread: give each its number.
      'function setup(thread) threads = threads + 1; thread:set("tid", threads) end',
      'local n = 0',
      'function request()',
      '  n = n + 1',
      `  return wrk.format(nil, nil, nil, head .. "${run}-" .. tid .. "-" .. n .. tail)`,
      'end',
    );
  } else {
    lines.push(`wrk.body = ${luaString(body)}`);
  }
  lines.push(
    'function done(s, latency, requests)',
    '  io.write(string.format(\'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' +
      '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n\',',
    '    s.requests, s.duration, latency:percentile(50), latency:percentile(99),',
    '    s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout))',
    'end',
  );
  return `${lines.join('\n')}\n`;
}

export async function runWrk({ url, body, headers = {}, connections = 32, threads = 2, seconds = 5, unique = null }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-wrk-'));
  const script = path.join(dir, 'post.lua');
  fs.writeFileSync(script, luaScript({ body, headers, unique }));
  const args = ['-t', String(Math.min(threads, connections)), '-c', String(connections), '-d', `${seconds}s`,
    '--timeout', '10s', '-s', script, url];
  try {
    const out = await new Promise((resolve, reject) => {
      execFile('wrk', args, { timeout: (seconds + 30) * 1000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
        if (err) reject(new Error(`wrk ${args.join(' ')}: ${err.message} ${stderr}`));
        else resolve(stdout);
      });
    });
    const m = /^WRKJSON (.*)$/m.exec(out);
    if (!m) throw new Error(`wrk printed no figures:\n${out}`);
    const j = JSON.parse(m[1]);
    const secs = j.duration_us / 1e6;
    return {
      requests: j.requests,
      seconds: secs,
      rps: j.requests / secs,
      p50Ms: j.p50_us / 1000,
      p99Ms: j.p99_us / 1000,
      errors: { connect: j.connect, read: j.read, write: j.write, status: j.status, timeout: j.timeout },
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The number of failed requests in a run (any kind of error).
export const wrkFailures = (r) => Object.values(r.errors).reduce((a, b) => a + b, 0);
