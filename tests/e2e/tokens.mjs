// Relay client tokens and held keys for end-to-end and browser tests.
//
//   const held = heldKeyFile('sk-held-...');        // before the suite starts
//   relaySuite('...', { ini: { 'upstream.openai': { api_key_file: held.file } } }, (relay) => {
//     const t = await makeToken(relay, 'ci agent', { usd_day: 1, rpm: 60 });
//     await relay.chat(body, { key: t.token });       // t.id: its public id
//   });
//
// makeToken runs `relay-admin token create --json` on the suite's store (as
// the user Relay runs as, like every relay.admin call) and returns the text
// it shows once.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { FRONT } from './harness.mjs';
import { frontProcessModel, frontUser } from './fronts.mjs';

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
  const flags = {
    usd_day: '--budget-usd-day', usd_month: '--budget-usd-month', tokens_day: '--budget-tokens-day',
    rpm: '--rpm', tpm: '--tpm', models: '--models',
  };
  const args = ['--json', 'token', 'create', '--name', name];
  for (const [k, v] of Object.entries(limits)) {
    if (k === 'revoked') continue;
    assert.ok(flags[k], `makeToken: no option for ${k}`);
    args.push(flags[k], Array.isArray(v) ? v.join(',') : String(v));
  }
  const r = await relay.admin(args);
  assert.equal(r.code, 0, `relay-admin ${args.join(' ')}: ${r.stderr}`);
  const { token, id } = JSON.parse(r.stdout);
  assert.match(token, /^rly-[0-9a-f]{64}$/, 'a Relay token');
  assert.match(id, /^[0-9a-f]{8}$/, 'its public id');
  if (limits.revoked) {
    const v = await relay.admin(['token', 'revoke', id]);
    assert.equal(v.code, 0, v.stderr);
  }
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
