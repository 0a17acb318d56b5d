// Relay client tokens and held keys for end-to-end and browser tests.
//
//   const held = heldKeyFile('sk-held-...');        // before the suite starts
//   relaySuite('...', { ini: { 'upstream.openai': { api_key_file: held.file } } }, (relay) => {
//     const t = await makeToken(relay, 'ci agent', { usd_day: 1, rpm: 60 });
//     await relay.chat(body, { key: t.token });       // t.id: its public id
//   });
//
// makeToken runs BUILD/tests/relay-test-token (tests/helpers/relay-test-token.c,
// built by `make unit-bins` and `make test-e2e`) on the suite's relay.ini, as
// the user Relay runs as (the store's files and shared memory are that
// user's): it stores a token as `relay-admin token create` will, and prints
// its text once. A missing helper is a failure, never a skip.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { FRONT, BUILD, runBounded } from './harness.mjs';
import { frontProcessModel, frontUser } from './fronts.mjs';

const HELPER = path.join(BUILD, 'tests', 'relay-test-token');

// Whether Relay's processes run as another user (Apache's mod_fcgid starts
// them as its own), and which.
function relayUser(relay) {
  return relay.processModel === 'fcgid' ? frontUser(FRONT) : null;
}

// A held upstream key in a file of its own (mode 0600, readable by the user
// Relay runs as behind this front), for [upstream.NAME] api_key_file. Made
// before the suite's relay.ini is written; removed when the process exits.
export function heldKeyFile(key) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-held-'));
  fs.chmodSync(dir, 0o755);
  const file = path.join(dir, 'upstream.key');
  fs.writeFileSync(file, `${key}\n`, { mode: 0o600 });
  const user = frontUser(FRONT);
  if (user && frontProcessModel(FRONT) === 'fcgid') {
    const id = (flag) => Number(execFileSync('id', [flag, user], { encoding: 'utf8' }));
    fs.chownSync(file, id('-u'), id('-g'));
  }
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return { file, key };
}

// Makes a token named name in relay's store. limits: usd_day, usd_month
// (dollars), tokens_day, rpm, tpm, models (an array of patterns), revoked
// (true). Resolves to {token, id}.
export async function makeToken(relay, name, limits = {}) {
  assert.ok(fs.existsSync(HELPER), `${HELPER} is missing: run make unit-bins (or make test-e2e)`);
  const args = ['-c', relay.ini, name];
  for (const [k, v] of Object.entries(limits)) {
    if (k === 'revoked') {
      if (v) args.push('revoked');
    } else if (k === 'models') {
      args.push(`models=${v.join(',')}`);
    } else {
      args.push(`${k}=${v}`);
    }
  }
  const user = relayUser(relay);
  const r = user
    ? await runBounded('setpriv', [`--reuid=${user}`, `--regid=${user}`, '--clear-groups', HELPER, ...args], 10000)
    : await runBounded(HELPER, args, 10000);
  assert.equal(r.code, 0, `relay-test-token ${args.slice(2).join(' ')}: ${r.stderr}`);
  const [token, id] = r.stdout.trim().split(' ');
  assert.match(token, /^rly-[0-9a-f]{64}$/, 'a Relay token');
  assert.match(id, /^[0-9a-f]{8}$/, 'its public id');
  return { token, id };
}

// What of secrets shows in text, or null: a provider key or a token as it
// is, a token's hex digits without "rly-", or its SHA-256 (how the store
// knows it) past the public id's 8 digits, as the cache scope "tok:" or a
// careless log line would show it.
export function leaked(text, { tokens = [], keys = [] }) {
  for (const k of keys) if (text.includes(k)) return `the key ${k.slice(0, 8)}...`;
  for (const t of tokens) {
    const hash = createHash('sha256').update(t).digest('hex');
    if (text.includes(t.slice(4))) return `the token ${t.slice(0, 8)}...`;
    if (text.includes(hash.slice(8, 24))) return `the hash of the token ${t.slice(0, 8)}... (${hash.slice(0, 8)}...)`;
  }
  return null;
}
