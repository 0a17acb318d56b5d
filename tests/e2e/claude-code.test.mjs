// The real Claude Code CLI (@anthropic-ai/claude-code, pinned) through
// Caddy and Relay to the fake Anthropic upstream: `claude -p PROMPT`, run
// non-interactively (stdin is /dev/null), bounded and killed on timeout,
// with its own HOME and working directory. With the environment below it
// opens no connection but to ANTHROPIC_BASE_URL (checked with strace -e
// connect: two, HEAD / and the POST; no DNS). An HTTPS_PROXY would make it
// skip the HEAD / probe, so none is set.
//
// Between claude and Relay sits a small recording proxy (in this file), so
// the test sees every request Claude Code sends and Relay's X-Cache answer
// to it; Relay itself logs only what it stores ("stored KEY" at debug).
//
// What Claude Code 2.1.197 sends per `claude -p` run, as observed here:
//   - HEAD / (user-agent Bun/1.4.0): a reachability probe; Relay answers 404
//     and Claude Code goes on.
//   - POST /v1/messages?beta=true, one per run with
//     CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 (without it a second one
//     first, generating the session title: a short system prompt, the
//     prompt in <session> tags, output_config.format json_schema).
//     Headers: x-api-key (ANTHROPIC_API_KEY), anthropic-version 2023-06-01,
//     anthropic-beta claude-code-20250219,context-1m-2025-08-07,
//     interleaved-thinking-2025-05-14,... (eight or nine betas),
//     x-app: cli, user-agent claude-cli/2.1.197 (external, sdk-cli),
//     x-claude-code-session-id (a new UUID per run), x-stainless-*.
//     Body (~80 KB, above the harness's 64 KiB max_body: Relay would answer
//     413 and claude print "Request too large"): model claude-opus-4-8,
//     max_tokens 64000, stream true, no temperature (so the suite caches
//     with policy = always), thinking {type: adaptive}, context_management,
//     output_config {effort: high}, ~25 tools, system as text blocks (the
//     first "x-anthropic-billing-header: cc_version=2.1.197.XXX;
//     cc_entrypoint=sdk-cli;", XXX a hash of the prompt; cache_control on
//     some), an environment section naming the working directory, HOME's
//     memory path, platform and OS version; messages: the user turn
//     (a <system-reminder> with "Today's date is YYYY-MM-DD.", then the
//     prompt with cache_control) and a role "system" message listing the
//     agent types; metadata.user_id a JSON string {device_id, account_uuid,
//     session_id} with a new session_id per run.
//   Between two runs with the same prompt, HOME and working directory only
//   metadata.user_id (its session_id) and the x-claude-code-session-id
//   header differ, and neither is in Relay's key: the second run is a HIT.
//   The key does change with the working directory or HOME (both named in
//   the system prompt) and with the local date (in the first user block),
//   so two runs on either side of midnight are two entries.
//
// e2e-fronts: caddy (this is about the agent, not the front: run once,
// behind Caddy; tests/run.sh reads this line)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { describeRun, diffPaths, recordingProxy, runAgent, tempDirs } from './agents.mjs';
import { relaySuite, uniq, REPO, KEY_A } from './harness.mjs';

const CLAUDE = path.join(REPO, 'tests', 'node_modules', '.bin', 'claude');
const RUN_TIMEOUT = 60000; // one claude -p run
const T = { timeout: 3 * RUN_TIMEOUT };

// Runs `claude -p prompt` (bounded: RUN_TIMEOUT).
function runClaude(prompt, { baseUrl, home, cwd }) {
  return runAgent(CLAUDE, ['-p', prompt], {
    cwd,
    timeoutMs: RUN_TIMEOUT,
    env: {
      HOME: home,
      ANTHROPIC_BASE_URL: baseUrl, // without /v1
      ANTHROPIC_API_KEY: KEY_A,
      DISABLE_TELEMETRY: '1',
      DISABLE_ERROR_REPORTING: '1',
      DISABLE_AUTOUPDATER: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    },
  });
}

// The request body without its per-session field.
function withoutSession(body) {
  const j = JSON.parse(body);
  if (j.metadata) delete j.metadata.user_id;
  return j;
}

relaySuite('claude code (claude -p) through relay', {
  upstreams: ['anthropic'],
  // Claude Code sends no temperature; its requests are ~80 KB.
  ini: { cache: { policy: 'always' }, fcgi: { max_body: 1 << 20 } },
}, (relay) => {
  let proxy;
  let env;
  const tmp = tempDirs();

  before(async () => {
    proxy = await recordingProxy(relay.base);
    env = { baseUrl: proxy.url, home: tmp.make('relay-cc-home-'), cwd: tmp.make('relay-cc-cwd-') };
  });

  // The requests of the proxy that carry marker.
  const requestsFor = (marker) => proxy.seen.filter((r) => r.body.includes(marker));

  test('claude -p prints the echo; a second identical run is answered from the cache', T, async (t) => {
    // A pinned dependency: missing is a failure, not a skip.
    assert.ok(fs.existsSync(CLAUDE), `${CLAUDE} is missing (npm ci in tests/)`);
    const m = uniq('claude-code');
    const prompt = `Reply with one word. ${m}`;
    const start = proxy.seen.length;

    const r1 = await runClaude(prompt, env);
    assert.equal(r1.code, 0, describeRun(r1));
    assert.match(r1.stdout, /^Echo: /, describeRun(r1));
    assert.ok(r1.stdout.includes(prompt), describeRun(r1));

    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, `upstream calls with the prompt: ${calls.map((c) => c.path).join(', ')}`);
    const [call] = calls;
    assert.equal(call.method, 'POST');
    assert.equal(call.path, '/v1/messages');
    assert.equal(call.query, 'beta=true');
    assert.equal(call.headers['x-api-key'], KEY_A);
    assert.equal(call.headers['anthropic-version'], '2023-06-01');
    assert.ok((call.headers['anthropic-beta'] ?? '').split(',').includes('claude-code-20250219'), call.headers['anthropic-beta']);
    const body = JSON.parse(call.body);
    assert.equal(body.stream, true);
    assert.equal(body.temperature, undefined);
    const session1 = JSON.parse(body.metadata.user_id).session_id;
    assert.match(session1, /^[0-9a-f-]{36}$/);

    const [q1] = requestsFor(m);
    assert.equal(q1.url, '/v1/messages?beta=true');
    assert.equal(q1.xcache, 'MISS');
    assert.equal(q1.body, call.body, 'forwarded untouched');
    // The probe came first and never reached the upstream.
    const run1 = proxy.seen.slice(start);
    assert.deepEqual(run1.map((r) => `${r.method} ${r.url}`), ['HEAD /', 'POST /v1/messages?beta=true'], 'what one run sends');
    assert.ok(!relay.fake.calls.some((c) => c.path === '/'), 'HEAD / is answered by Relay');

    const r2 = await runClaude(prompt, env);
    assert.equal(r2.code, 0, describeRun(r2));
    const [, q2] = requestsFor(m);
    assert.ok(q2, 'the second run sent its prompt');
    // What differs between the runs (the key must not see it).
    const session2 = JSON.parse(JSON.parse(q2.body).metadata.user_id).session_id;
    assert.notEqual(session2, session1, 'each run is a new session');
    assert.notEqual(q2.headers['x-claude-code-session-id'], q1.headers['x-claude-code-session-id']);
    const differs = diffPaths(withoutSession(q1.body), withoutSession(q2.body));
    assert.deepEqual(differs, [], 'the two runs differ besides metadata.user_id');
    assert.equal(q2.headers['anthropic-beta'], q1.headers['anthropic-beta']);
    assert.equal(q2.headers['anthropic-version'], q1.headers['anthropic-version']);

    assert.equal(q2.xcache, 'HIT', 'the second run is answered from the cache');
    assert.equal(q2.key, q1.key);
    assert.equal(r2.stdout, r1.stdout, 'and prints the same answer');
    assert.equal(relay.fake.callsFor(m).length, 1, 'one upstream call for both runs');
    // Relay stored the answer once (it logs each store at debug level).
    const stored = fs.readFileSync(relay.logs.relay, 'utf8').split('\n').filter((l) => l.includes(`stored ${q1.key}`));
    assert.equal(stored.length, 1, stored.join('\n'));
    t.diagnostic(`claude sent ${run1.length} requests per run; prompt request ${Math.round(q1.body.length / 1024)} KB, betas ${q1.headers['anthropic-beta']}`);
  });

  test('another prompt is another entry: one more upstream call', T, async () => {
    const m = uniq('claude-code-other');
    const r = await runClaude(`Reply with one word. ${m}`, env);
    assert.equal(r.code, 0, describeRun(r));
    assert.ok(r.stdout.includes(m), describeRun(r));
    assert.equal(relay.fake.callsFor(m).length, 1);
    assert.equal(requestsFor(m)[0].xcache, 'MISS');
  });

  after(async () => {
    await proxy?.close();
    tmp.removeAll();
  });
});
