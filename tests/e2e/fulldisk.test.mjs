// A full disk under [store] home (issue 12, defect 3): the store and the
// counters live on a small tmpfs this test mounts and then fills. Relay
// must go on answering (from the cache it has, and uncached), say
// "degraded" on /relay/health with the reason, never lose a worker (the
// sparse stats.map and wake.map once died of SIGBUS on a page first
// touched: a new model name needs a new counter row), and be healthy again
// once space is freed.
//
// e2e-fronts: caddy (this is about the store's disk, not the front: run
// once, behind Caddy)

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

import { relaySuite, chatBody, uniq, sleep, TEST_TIMEOUT } from './harness.mjs';

const T = { timeout: TEST_TIMEOUT };

// The tests run as root (CI too); a mount that fails is a failure here,
// not a skip: the defect cannot be shown without a full file system.
const disk = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-fulldisk-'));
execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0700', 'tmpfs', disk]);
after(() => {
  try {
    execFileSync('umount', ['-l', disk]);
    fs.rmdirSync(disk);
  } catch {
    /* the suite already failed loudly */
  }
});

const filler = path.join(disk, 'filler');

// Fills the file system to its last byte.
function fill() {
  const fd = fs.openSync(filler, 'a');
  const block = Buffer.alloc(1 << 16, 0x61);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (err) {
    if (err.code !== 'ENOSPC') throw err;
  }
  for (;;) {
    try {
      fs.writeSync(fd, Buffer.alloc(1, 0x61));
    } catch (err) {
      if (err.code !== 'ENOSPC') throw err;
      break;
    }
  }
  fs.closeSync(fd);
}

const freeBytes = () => {
  const s = fs.statfsSync(disk);
  return s.bavail * s.bsize;
};

async function health(relay) {
  const r = await relay.fetch('/relay/health');
  return { status: r.status, text: r.text };
}

// Polls health until pred holds (store_maintain looks once a second).
async function healthUntil(relay, pred, what) {
  const until = Date.now() + 10000;
  let h;
  for (;;) {
    h = await health(relay);
    if (pred(h)) return h;
    if (Date.now() > until) assert.fail(`health never became ${what}: ${h.status} ${h.text}`);
    await sleep(200);
  }
}

relaySuite('a full disk under the store', { ini: { store: { home: path.join(disk, 'store') } } }, (relay) => {
  test('answers go on, health says degraded and why, no worker dies; healthy again once space is back', T, async () => {
    const pids = relay.workerPids().slice().sort();
    const cached = chatBody(uniq('before-full'));
    const first = await relay.chat(cached);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    assert.equal((await health(relay)).status, 200);

    fill();
    assert.ok(freeBytes() < 1 << 20, `the disk is full: ${freeBytes()} bytes free`);
    const h = await healthUntil(relay, (x) => x.status === 503, 'degraded');
    assert.match(h.text, /^degraded\n/);
    assert.match(h.text, /store: its file system is nearly full/);

    // A stored answer is still a hit; new requests, with model names the
    // counters never saw (a new row each), are answered uncached or not.
    const hit = await relay.chat(cached);
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    for (let i = 0; i < 40; i++) {
      const r = await relay.chat(chatBody(uniq(`full-${i}`), { model: `gpt-full-disk-${i}` }));
      assert.equal(r.status, 200, `request ${i}: ${r.status} ${r.text}`);
      const s = await relay.chat(chatBody(uniq(`full-s-${i}`), { stream: true, model: `gpt-full-s-${i}` }));
      assert.equal(s.status, 200, `stream ${i}: ${s.status} ${s.text.slice(0, 200)}`);
      assert.match(s.text, /data: \[DONE\]/);
    }
    assert.deepEqual(relay.workerPids().slice().sort(), pids, 'no worker died (no SIGBUS)');

    fs.rmSync(filler);
    const back = await healthUntil(relay, (x) => x.status === 200, 'ok again');
    assert.match(back.text, /^ok\n/);
    const after = chatBody(uniq('after-full'));
    assert.equal((await relay.chat(after)).headers.get('x-cache'), 'MISS');
    assert.equal((await relay.chat(after)).headers.get('x-cache'), 'HIT', 'caching again');
    assert.deepEqual(relay.workerPids().slice().sort(), pids, 'still the same workers');
  });
});
