// The encrypted store, seen through a running relay: cached answers and the
// secret never appear in the clear under [store] home, relay-admin works on
// the store while the pool serves, and the cache outlives a restart.
//
// e2e-fronts: caddy (this is about the store, not the front: run once,
// behind Caddy; tests/run.sh reads this line)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { relaySuite, chatBody, uniq, sleep, TEST_TIMEOUT } from './harness.mjs';
import { assertValidChatStream } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

// Every regular file under dir, recursively.
function filesUnder(dir) {
  const out = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...filesUnder(p));
    else if (ent.isFile()) out.push(p);
  }
  return out;
}

// The files under dir (recursively) whose bytes contain any of needles,
// as "file: needle" lines; also the total bytes read.
function filesContaining(dir, needles) {
  const hits = [];
  let bytes = 0;
  for (const f of filesUnder(dir)) {
    const buf = fs.readFileSync(f);
    bytes += buf.length;
    for (const n of needles) if (buf.includes(Buffer.from(n, 'utf8'))) hits.push(`${f}: ${JSON.stringify(n)}`);
  }
  return { hits, bytes };
}

// The marker part of uniq() (the UUID), which survives any JSON framing.
const uuidOf = (m) => m.split(' ').at(-1);

async function stats(relay) {
  const r = await relay.admin(['--json', 'stats']);
  assert.equal(r.code, 0, `relay-admin stats failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// Polls relay-admin stats until ok(stats) holds (counters are written by
// the worker as the request finishes; bounded).
async function statsUntil(relay, ok, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await stats(relay);
    if (ok(s)) return s;
    if (Date.now() > end) assert.fail(`stats never showed ${what}: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

relaySuite('encrypted store through the running relay', {}, (relay) => {
  const keyFile = () => relay.settings.store.key_file;
  const home = () => relay.settings.store.home;
  const secret = () => fs.readFileSync(keyFile(), 'utf8').trim();

  test('the key file is mode 0600, the store home 0700', T, async () => {
    assert.equal(fs.statSync(keyFile()).mode & 0o777, 0o600);
    assert.equal(fs.statSync(home()).mode & 0o777, 0o700);
    assert.ok(secret().length >= 16, 'the key file holds a secret');
  });

  test('a cached answer and the secret appear nowhere in the store files, nor the secret in the log', T, async () => {
    const m = uniq('plaintext');
    const streamed = uniq('plaintext-stream');
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.ok(r1.text.includes(uuidOf(m)));
    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    relay.fake.enqueue({ chunks: 3 });
    const s1 = await relay.chat(chatBody(streamed, { stream: true }));
    assert.equal(s1.headers.get('x-cache'), 'MISS');
    const s2 = await relay.chat(chatBody(streamed, { stream: true }));
    assert.equal(s2.headers.get('x-cache'), 'HIT');

    const needles = [uuidOf(m), uuidOf(streamed), secret()];
    const live = filesContaining(home(), needles);
    assert.ok(live.bytes > 0, 'the store home holds files');
    assert.deepEqual(live.hits, [], 'plain text in the store while the relay runs');
    const log = fs.readFileSync(relay.logs.relay, 'utf8');
    assert.ok(!log.includes(secret()), 'the secret is in the relay log');

    // Stopping flushes logs and pages to disk; the restarted pool still
    // answers from them, so they were written, encrypted.
    await relay.restartPool();
    const after = filesContaining(home(), needles);
    assert.deepEqual(after.hits, [], 'plain text in the store after a restart');
    const r3 = await relay.chat(chatBody(m));
    assert.equal(r3.headers.get('x-cache'), 'HIT');
    assert.equal(r3.text, r1.text);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('relay-admin stats --json while the relay runs: entries, hit and miss counters', T, async () => {
    const before = await stats(relay);
    for (const k of ['entries', 'bytes', 'requests.hit', 'requests.miss', 'upstream.calls']) {
      assert.equal(typeof before[k], 'number', `stats has no ${k}: ${JSON.stringify(before)}`);
    }
    const m = uniq('stats');
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    const after = await statsUntil(
      relay,
      (s) => s['requests.hit'] > before['requests.hit'] && s['requests.miss'] > before['requests.miss'],
      5000,
      'the hit and miss counters move',
    );
    assert.ok(after.entries >= 1, `entries ${after.entries}`);
    assert.ok(after.entries > before.entries, `entries ${before.entries} -> ${after.entries}`);
    assert.ok(after.bytes > before.bytes, `bytes ${before.bytes} -> ${after.bytes}`);
    assert.ok(after['upstream.calls'] > before['upstream.calls']);

    const text = await relay.admin(['stats']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^entries\s+\d+$/m);
  });

  test('relay-admin purge --all while the relay runs: the next identical request is a MISS', T, async () => {
    const m = uniq('purge');
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.equal((await relay.chat(chatBody(m))).headers.get('x-cache'), 'HIT');

    const p = await relay.admin(['--json', 'purge', '--all']);
    assert.equal(p.code, 0, `purge failed (${p.code}): ${p.stderr}`);
    assert.ok(JSON.parse(p.stdout).removed >= 1, p.stdout);
    assert.equal((await stats(relay)).entries, 0);

    const r3 = await relay.chat(chatBody(m));
    assert.equal(r3.status, 200, r3.text);
    assert.equal(r3.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
    assert.notEqual(JSON.parse(r3.text).id, JSON.parse(r1.text).id, 'a new upstream answer');
    assert.equal((await relay.chat(chatBody(m))).headers.get('x-cache'), 'HIT', 'and it is cached again');
  });

  test('relay-admin usage: --help exits 0, an unknown command or option exits 2', T, async () => {
    const help = await relay.admin(['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /usage: relay-admin/);
    assert.match(help.stdout, /purge/);

    const unknown = await relay.admin(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command frobnicate/);

    const bogus = await relay.admin(['purge', '--bogus']);
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /--bogus/);

    const none = await relay.admin([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /usage: relay-admin/);
  });

  test('the cache survives a restart of the pool: the same request is a HIT, no new upstream call', T, async () => {
    const m = uniq('restart');
    const streamed = uniq('restart-stream');
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    relay.fake.enqueue({ chunks: 4 });
    const s1 = await relay.chat(chatBody(streamed, { stream: true }));
    assert.equal(s1.headers.get('x-cache'), 'MISS');
    assertValidChatStream(s1.text);

    const pid = relay.procs.relay.pid;
    await relay.restartPool();
    assert.notEqual(relay.procs.relay.pid, pid, 'a new pool');

    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, r1.text);
    const s2 = await relay.chat(chatBody(streamed, { stream: true }));
    assert.equal(s2.headers.get('x-cache'), 'HIT');
    assert.equal(s2.text, s1.text, 'the stream replays byte for byte after the restart');
    assert.equal(relay.fake.callsFor(m).length, 1);
    assert.equal(relay.fake.callsFor(streamed).length, 1);
  });

  test('the cache survives losing its shared memory (as after a reboot): the pool starts and the entry is a HIT', T, async () => {
    const m = uniq('reboot');
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    await relay.restartPool({ dropSharedMemory: true });
    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, r1.text);
    assert.equal(relay.fake.callsFor(m).length, 1);
    const stats = await relay.admin(['--json', 'stats']);
    assert.equal(stats.code, 0, stats.stderr);
  });
});

// One worker, so that every request sees the same worker's store state.
relaySuite('a store that is unavailable at start', { ini: { fcgi: { workers: 1 } } }, (relay) => {
  test('the relay serves uncached and degraded, then opens the store once it can', { timeout: 60000 }, async () => {
    const keyFile = relay.settings.store.key_file;
    const m = uniq('store-later');
    // A key file readable by others is refused: the store cannot open.
    fs.chmodSync(keyFile, 0o644);
    await relay.restartPool({ healthy: false });
    const h = await relay.fetch('/relay/health');
    assert.equal(h.status, 503);
    assert.match(h.text, /degraded/);
    for (let i = 0; i < 2; i++) {
      const r = await relay.chat(chatBody(m));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-cache'), 'BYPASS');
    }
    assert.equal(relay.fake.callsFor(m).length, 2, 'without a store every request goes upstream');

    fs.chmodSync(keyFile, 0o600);
    const until = Date.now() + 30000;
    for (;;) {
      const r = await relay.fetch('/relay/health');
      if (r.status === 200) break;
      assert.ok(Date.now() < until, 'the store was not reopened within 30 s');
      await sleep(250);
    }
    const a = await relay.chat(chatBody(m));
    assert.equal(a.headers.get('x-cache'), 'MISS');
    const b = await relay.chat(chatBody(m));
    assert.equal(b.headers.get('x-cache'), 'HIT');
    assert.equal(relay.fake.callsFor(m).length, 3);
  });
});
