// The process models of relay.fcgi: started by a FastCGI process manager
// (spawn-fcgi, as mod_fcgid does: the socket on fd 0, one request at a time),
// and the standalone pool's supervision: a killed worker is restarted,
// SIGTERM drains in-flight streams before the pool exits, SIGHUP reloads the
// configuration (and an invalid one is refused, the old one keeps serving).
//
// e2e-fronts: caddy (this is about the process model, not the front: run once,
// behind Caddy; tests/run.sh reads this line)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import {
  relaySuite, chatBody, uniq, sleep, exited, childPids, iniText, runBounded, BUILD, TEST_TIMEOUT,
} from './harness.mjs';
import { assertValidChatStream } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

// Polls cond() every 50 ms until it returns a truthy value, which is
// returned; fails with what() after ms.
async function until(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(50);
  }
}

// The relay's log so far. Only read where the log is the one observable
// (a refused reload): two runs of this file at once share the log file.
const logOf = (relay) => fs.readFileSync(relay.logs.relay, 'utf8');

// Reads a streaming response to its end, noting when each read arrived (ms
// since t0) and calling onFirstEvent once the first SSE event is in. A
// stream cut by the server is returned with cut set, not thrown.
async function readStream(res, t0, onFirstEvent) {
  const decoder = new TextDecoder();
  let text = '';
  let first = false;
  const arrivals = [];
  let cut = null;
  try {
    for await (const part of res.body) {
      text += decoder.decode(part, { stream: true });
      arrivals.push(Date.now() - t0);
      if (!first && text.includes('\n\n')) {
        first = true;
        await onFirstEvent?.();
      }
    }
  } catch (err) {
    cut = err;
  }
  return { text, arrivals, cut };
}

// One MISS then one HIT of a fresh request; returns the two responses.
async function missThenHit(relay, label) {
  const m = uniq(label);
  const r1 = await relay.chat(chatBody(m));
  assert.equal(r1.status, 200, r1.text);
  assert.equal(r1.headers.get('x-cache'), 'MISS');
  assert.equal(JSON.parse(r1.text).choices[0].message.content, `Echo: ${m}`);
  const r2 = await relay.chat(chatBody(m));
  assert.equal(r2.status, 200, r2.text);
  assert.equal(r2.headers.get('x-cache'), 'HIT');
  assert.equal(r2.text, r1.text);
  assert.equal(relay.fake.callsFor(m).length, 1);
  return [r1, r2];
}

relaySuite('managed by a process manager (spawn-fcgi -n, socket on fd 0)', { processModel: 'managed' }, (relay) => {
  test('spawn-fcgi execs relay.fcgi itself, listening on fd 0, without forking workers', T, async () => {
    const pid = relay.procs.relay.pid;
    assert.equal(fs.realpathSync(`/proc/${pid}/exe`), fs.realpathSync(`${BUILD}/relay.fcgi`));
    assert.match(fs.readlinkSync(`/proc/${pid}/fd/0`), /^socket:/);
    assert.deepEqual(childPids(pid), [], 'a managed process serves requests itself');
  });

  test('a chat request is a MISS, then a HIT, with one upstream call', T, async () => {
    await missThenHit(relay, 'managed-repeat');
  });

  test('a streaming request streams, and its HIT replays it', T, async () => {
    const m = uniq('managed-stream');
    const body = chatBody(m, { stream: true });
    relay.fake.enqueue({ chunks: 5, chunkDelayMs: 20 });
    const r1 = await relay.chat(body);
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.match(r1.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(assertValidChatStream(r1.text).content, `Echo: ${m}`);
    assert.equal(r1.text, relay.fake.callsFor(m)[0].sent);

    const r2 = await relay.chat(body);
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, r1.text);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a request arriving during a stream waits for it, then is served', T, async () => {
    const slow = uniq('managed-slow');
    const quick = uniq('managed-quick');
    relay.fake.enqueue({ chunks: 4, chunkDelayMs: 200 }); // ~1 s
    const t0 = Date.now();
    const res = await relay.chat(chatBody(slow, { stream: true }), { stream: true });
    assert.equal(res.status, 200);
    let quickDone = null;
    const quickReq = relay.chat(chatBody(quick)).then((r) => {
      quickDone = Date.now() - t0;
      return r;
    });
    const s = await readStream(res, t0);
    assert.equal(s.cut, null, `stream failed: ${s.cut}`);
    assertValidChatStream(s.text);
    const r = await quickReq;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-cache'), 'MISS');
    // One request at a time: the second was not answered before the stream ended.
    assert.ok(quickDone >= s.arrivals.at(-1) - 50,
      `second request done at ${quickDone} ms, the stream ended at ${s.arrivals.at(-1)} ms`);
  });

  test('relay-admin status: a process manager\'s relay.fcgi is no pool, and status says so', T, async () => {
    const r = await relay.admin(['--json', 'status']);
    assert.equal(r.code, 1, r.stdout);
    assert.equal(JSON.parse(r.stdout).running, false);
    assert.match(JSON.parse(r.stdout).reason, /not running/);
  });

  test('SIGTERM stops it (exit status 0)', T, async () => {
    const child = relay.procs.relay;
    child.kill('SIGTERM');
    assert.ok(await exited(child, 5000), 'relay.fcgi still running 5 s after SIGTERM');
    assert.equal(child.exitCode, 0, `exit ${child.exitCode ?? child.signalCode}`);
  });
});

relaySuite('pool supervision: a killed worker is restarted', { ini: { fcgi: { workers: 2 } } }, (relay) => {
  test('SIGKILL of a worker: the parent starts a new one, requests keep succeeding', T, async () => {
    const before = await until(() => {
      const p = relay.workerPids();
      return p.length === 2 && p;
    }, 5000, () => `2 workers (have ${relay.workerPids()})`);
    await missThenHit(relay, 'before-kill');

    const victim = before[0];
    process.kill(victim, 'SIGKILL');
    const after = await until(() => {
      const p = relay.workerPids();
      return p.length === 2 && !p.includes(victim) && p;
    }, 5000, () => `a new worker in place of ${victim} (workers now ${relay.workerPids()})`);
    assert.ok(after.includes(before[1]), 'the other worker was left alone');

    // Several in a row, landing on either worker: all served, cache working.
    for (let i = 0; i < 4; i++) await missThenHit(relay, `after-kill-${i}`);
    const m = uniq('after-kill-stream');
    const r = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(r.status, 200, r.text);
    assertValidChatStream(r.text);
  });

  test('both workers killed mid-stream: the pool recovers, the cut stream is not cached', T, async () => {
    const m = uniq('killed-mid-stream');
    const body = chatBody(m, { stream: true });
    relay.fake.enqueue({ chunks: 10, chunkDelayMs: 200 });
    const t0 = Date.now();
    const res = await relay.chat(body, { stream: true });
    assert.equal(res.status, 200);
    const workers = relay.workerPids();
    assert.equal(workers.length, 2);
    const s = await readStream(res, t0, () => {
      for (const pid of workers) process.kill(pid, 'SIGKILL');
    });
    assert.ok(s.cut || !s.text.includes('data: [DONE]'), 'the stream could not have completed');

    await until(() => {
      const p = relay.workerPids();
      return p.length === 2 && !p.some((x) => workers.includes(x));
    }, 5000, () => `two new workers (now ${relay.workerPids()}, killed ${workers})`);

    // The store survived the killed processes (recovery) and holds no partial answer.
    relay.fake.enqueue({ chunks: 3 });
    const r = await relay.chat(body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-cache'), 'MISS');
    assert.equal(assertValidChatStream(r.text).content, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 2);
    const r2 = await relay.chat(body);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, r.text);
    for (let i = 0; i < 3; i++) await missThenHit(relay, `after-recovery-${i}`);
  });
});

relaySuite('pool drain on SIGTERM', { ini: { fcgi: { workers: 2, drain_timeout: 10 } } }, (relay) => {
  test('a stream in flight at SIGTERM completes, then the pool exits; the answer was stored', T, async () => {
    const m = uniq('drain');
    const body = chatBody(m, { stream: true });
    const pool = relay.procs.relay;
    const workers = relay.workerPids();
    assert.equal(workers.length, 2);
    // role + 8 content + finish events 250 ms apart: ~2.5 s.
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 250 });
    const t0 = Date.now();
    const res = await relay.chat(body, { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-cache'), 'MISS');
    let termAt = null;
    const s = await readStream(res, t0, () => {
      termAt = Date.now() - t0;
      pool.kill('SIGTERM');
    });
    assert.equal(s.cut, null, `the stream broke after SIGTERM: ${s.cut}`);
    assert.ok(termAt !== null);
    const got = assertValidChatStream(s.text);
    assert.equal(got.content, `Echo: ${m}`);
    assert.ok(s.text.endsWith('data: [DONE]\n\n'), s.text.slice(-100));
    assert.equal(s.text, relay.fake.callsFor(m)[0].sent, 'the client got the whole upstream stream');
    assert.ok(s.arrivals.at(-1) - termAt >= 1000,
      `SIGTERM at ${termAt} ms, stream over at ${s.arrivals.at(-1)} ms: it was not in flight`);

    // The pool goes once the stream is done (well inside drain_timeout + 5).
    assert.ok(await exited(pool, 8000), 'the pool still runs 8 s after its last stream ended');
    assert.equal(pool.exitCode, 0, `pool exit ${pool.exitCode ?? pool.signalCode}`);
    for (const pid of workers) assert.ok(!fs.existsSync(`/proc/${pid}`), `worker ${pid} outlived the pool`);
    assert.ok(!fs.existsSync(relay.socket), 'the pool removes its socket');

    // The drained stream was complete, so it was cached.
    await relay.restartPool();
    const r = await relay.chat(body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-cache'), 'HIT');
    assert.equal(r.text, s.text);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });
});

relaySuite('pool reload on SIGHUP', { ini: { fcgi: { workers: 2 } } }, (relay) => {
  test('SIGHUP applies a changed ini; an invalid ini is refused and the running config kept', T, async () => {
    const pool = relay.procs.relay;
    const oldWorkers = relay.workerPids();
    assert.equal(oldWorkers.length, 2);
    await missThenHit(relay, 'before-reload');

    relay.writeIni({ cache: { policy: 'never' } });
    pool.kill('SIGHUP');
    // Until the old workers have drained either config may answer.
    await until(async () => {
      const r = await relay.chat(chatBody(uniq('reload-probe')));
      assert.equal(r.status, 200, r.text);
      return r.headers.get('x-cache') === 'BYPASS';
    }, 10000, 'a temperature-0 request to be BYPASS after the reload');
    await until(() => {
      const p = relay.workerPids();
      return p.length === 2 && !p.some((x) => oldWorkers.includes(x));
    }, 5000, () => `the old workers ${oldWorkers} to be replaced (now ${relay.workerPids()})`);
    assert.equal(pool.pid, relay.procs.relay.pid);

    const m = uniq('after-reload');
    for (let i = 0; i < 2; i++) {
      const r = await relay.chat(chatBody(m));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-cache'), 'BYPASS');
    }
    assert.equal(relay.fake.callsFor(m).length, 2);

    // An invalid ini: the reload is refused, the workers and policy stay.
    const workers = relay.workerPids();
    const logBefore = logOf(relay).length;
    relay.writeIni(iniText({ ...relay.settings, cache: { ...relay.settings.cache, policy: 'sometimes' } }));
    pool.kill('SIGHUP');
    await until(() => /reload refused/.test(logOf(relay).slice(logBefore)), 5000, 'the log to say "reload refused"');
    assert.match(logOf(relay).slice(logBefore), /\[cache\] policy/, 'the refusal names the bad key');
    const m2 = uniq('after-bad-reload');
    for (let i = 0; i < 3; i++) {
      const r = await relay.chat(chatBody(m2));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-cache'), 'BYPASS');
    }
    assert.equal(relay.fake.callsFor(m2).length, 3);
    assert.deepEqual(relay.workerPids(), workers, 'a refused reload restarts nothing');
    relay.assertAlive();

    // A valid ini again: caching is back.
    relay.writeIni({ cache: { policy: 'deterministic' } });
    pool.kill('SIGHUP');
    await until(async () => {
      const r = await relay.chat(chatBody(uniq('reload-back-probe')));
      assert.equal(r.status, 200, r.text);
      return r.headers.get('x-cache') === 'MISS';
    }, 10000, 'caching to be back after the second reload');
    await until(() => {
      const p = relay.workerPids();
      return p.length === 2 && !p.some((x) => workers.includes(x));
    }, 5000, () => `the workers ${workers} to be replaced (now ${relay.workerPids()})`);
    await missThenHit(relay, 'after-reload-back');
  });
});

// What `relay-admin status` reads, as the pool writes it once a second.
async function status(relay) {
  const r = await relay.admin(['--json', 'status']);
  return { code: r.code, json: r.stdout ? JSON.parse(r.stdout) : null, stderr: r.stderr };
}

relaySuite('relay.fcgi --version and relay-admin status', { ini: { fcgi: { workers: 2 } } }, (relay) => {
  test('relay.fcgi --version prints the version and exits 0', T, async () => {
    for (const flag of ['--version', '-V']) {
      const r = await runBounded(`${BUILD}/relay.fcgi`, [flag], 5000);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^relay\.fcgi \d+\.\d+\.\d+( \(git [0-9a-f]+\))?\n$/);
    }
  });

  test('status: the pool\'s pid, version, uptime and workers, in text and JSON', T, async () => {
    const version = (await runBounded(`${BUILD}/relay.fcgi`, ['--version'], 5000)).stdout.trim().replace(/^relay\.fcgi /, '');
    const workers = await until(() => {
      const p = relay.workerPids();
      return p.length === 2 && p;
    }, 5000, '2 workers');
    const s = await until(async () => {
      const st = await status(relay);
      return st.code === 0 && st.json.workers.length === 2 && st.json;
    }, 5000, 'status to show both workers');
    assert.equal(s.running, true);
    assert.equal(s.pid, relay.procs.relay.pid);
    assert.equal(s.version, version);
    assert.equal(s.admin_version, version);
    assert.equal(s.listen, relay.socket);
    assert.equal(s.workers_configured, 2);
    assert.equal(s.threads, relay.settings.fcgi.threads);
    assert.deepEqual(s.workers.map((w) => w.pid).sort((a, b) => a - b), workers);
    assert.ok(s.uptime >= 0 && s.started <= Date.now() / 1000, JSON.stringify(s));
    const later = await until(async () => {
      const st = (await status(relay)).json;
      return st.uptime > s.uptime && st;
    }, 5000, 'the uptime to grow');
    assert.equal(later.started, s.started);

    const text = await relay.admin(['status']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^pool +running, pid ${s.pid}, up \\d+[smhd]`, 'm'));
    assert.match(text.stdout, new RegExp(`^version +${version.replace(/[()]/g, '\\$&')}$`, 'm'));
    assert.match(text.stdout, /^workers +2 of 2 running, \d+ threads each$/m);
    for (const pid of workers) assert.match(text.stdout, new RegExp(`worker ${pid}: \\d+ in flight`));
  });

  test('status counts the requests in flight, per worker', T, async () => {
    const m = uniq('status-in-flight');
    relay.fake.enqueue({ chunks: 6, chunkDelayMs: 400 }); // ~2.5 s
    const res = await relay.chat(chatBody(m, { stream: true }), { stream: true });
    assert.equal(res.status, 200);
    const busy = await until(async () => {
      const st = (await status(relay)).json;
      return st.requests_in_flight >= 1 && st;
    }, 5000, 'status to count the stream in flight');
    assert.equal(busy.requests_in_flight, busy.workers.reduce((n, w) => n + w.requests, 0));
    await res.text();
    await until(async () => (await status(relay)).json.requests_in_flight === 0, 5000,
      'status to count no request in flight once the stream ended');
  });

  test('status shows a worker of the old configuration draining its stream after a reload', T, async () => {
    const m = uniq('status-draining');
    relay.fake.enqueue({ chunks: 8, chunkDelayMs: 300 }); // ~2.5 s
    const res = await relay.chat(chatBody(m, { stream: true }), { stream: true });
    assert.equal(res.status, 200);
    const busy = await until(async () => {
      const st = (await status(relay)).json;
      return st.requests_in_flight === 1 && st;
    }, 5000, 'the stream in flight');
    const streaming = busy.workers.find((w) => w.requests === 1).pid;
    relay.procs.relay.kill('SIGHUP');
    const draining = await until(async () => {
      const st = (await status(relay)).json;
      const old = st.workers.find((w) => w.pid === streaming);
      return old?.draining && st.workers.filter((w) => !w.draining).length === 2 && st;
    }, 5000, () => `worker ${streaming} to show as draining`);
    assert.equal(draining.workers.find((w) => w.pid === streaming).requests, 1);
    await res.text();
    await until(async () => !(await status(relay)).json.workers.some((w) => w.draining), 5000,
      'the drained worker to leave the status');
  });

  test('status says when the pool is not running: stopped, or killed', T, async () => {
    await relay.stopPool(); // SIGTERM: the pool removes its status file
    const gone = await status(relay);
    assert.equal(gone.code, 1);
    assert.equal(gone.json.running, false);
    assert.match(gone.json.reason, /not running: no .*relay\.status/);
    const text = await relay.admin(['status']);
    assert.equal(text.code, 1);
    assert.match(text.stderr, /pool is not running.*mod_fcgid/s);
    await relay.startPool();
    assert.equal((await status(relay)).json.running, true);

    // SIGKILL leaves the file behind: its pid is gone.
    const pool = relay.procs.relay;
    process.kill(-pool.pid, 'SIGKILL');
    assert.ok(await exited(pool, 5000), 'the pool was killed');
    const stale = await status(relay);
    assert.equal(stale.code, 1);
    assert.match(stale.json.reason, new RegExp(`names pid ${pool.pid}, which is gone`));
    await relay.startPool();
  });

  test('status follows a restarted worker', T, async () => {
    const before = await until(() => {
      const p = relay.workerPids();
      return p.length === 2 && p;
    }, 5000, '2 workers');
    process.kill(before[0], 'SIGKILL');
    const after = await until(async () => {
      const st = (await status(relay)).json;
      const pids = st.workers.map((w) => w.pid);
      return pids.length === 2 && !pids.includes(before[0]) && pids;
    }, 5000, 'status to show the new worker');
    assert.ok(after.includes(before[1]));
  });
});
