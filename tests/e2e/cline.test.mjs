// The real Cline CLI (npm `cline`, pinned: a Bun-compiled binary,
// @cline/cli-linux-x64) through Caddy and Relay to the fake upstreams:
// `cline -P PROVIDER -m MODEL PROMPT`, its one-shot mode (a prompt argument
// runs one task in act mode with auto-approve and exits; stdout is the
// answer), stdin /dev/null, bounded and killed on timeout, with its own
// HOME and working directory. Once with the Anthropic provider (against
// tests/fake/anthropic.mjs), once with "OpenAI Compatible" (chat
// completions, tests/fake/upstream.mjs).
//
// Configuration, all by Cline's own settings under HOME/.cline/data/settings:
//   providers.json  {"version":1,"lastUsedProvider":P,"modes":{},"providers":
//                   {P:{"settings":{"provider":P,"apiKey":K,"model":M,
//                   "baseUrl":"RELAY/v1"},"updatedAt":ISO,"tokenSource":"manual"}}}
//                   baseUrl WITH /v1 for both providers (Cline appends
//                   /messages or /chat/completions). `cline auth
//                   openai-compatible -k K -m M -b RELAY/v1` writes this file;
//                   `cline auth anthropic` refuses -b ("base URL is only
//                   supported for OpenAI and OpenAI-compatible providers"),
//                   and ANTHROPIC_BASE_URL is ignored (Cline passes its own
//                   default https://api.anthropic.com/v1), so for Anthropic
//                   the baseUrl is written into the file. An entry without
//                   updatedAt is ignored ("API key is missing").
//   global-settings.json  {"telemetryOptOut":true,"autoUpdateEnabled":false}
// and the environment: CLINE_SESSION_BACKEND_MODE=local (by default
// `cline` starts a detached "hub" daemon, `cline --cline-hub-daemon --port
// N`, that outlives the run; local runs the session in-process),
// E2E_TEST=true (the only switch that stops the PostHog feature-flag poll
// of data.cline.bot; in this binary it changes nothing else) and
// CLINE_NO_AUTO_UPDATE=1 (with autoUpdateEnabled false: no npm update
// check; none was seen in one-shot runs without them either). Without
// telemetryOptOut it resolves otel.cline.bot (OpenTelemetry export). The
// provider is -P, else providers.json's lastUsedProvider, else "cline"
// (api.cline.bot). With all of the above, strace -f -e connect shows one
// connection only: to baseUrl (no DNS, no hub port); its children are git
// rev-parse and a machine-id probe (sh -c "cat /etc/machine-id ...").
//
// What cline 3.0.65 sends per run, as observed here (one request: a text
// answer without tool calls completes the task):
//   Anthropic: POST /v1/messages (no query), x-api-key, anthropic-version
//     2023-06-01, anthropic-beta structured-outputs-2025-11-13, user-agent
//     ai-sdk/anthropic/4.0.42 ... runtime/bun/1.3.13. Body (~21 KB): model,
//     max_tokens 32000, stream true, no temperature (hence policy = always
//     below), no metadata, tool_choice {type:auto}, ~26 tools (the server
//     tool web_search_20250305 first, then read_files, run_commands,
//     editor, team_*...), system one text block ("You are Cline, ..." with
//     an <env> section: Platform, "Date: MM/DD/YYYY" (local date),
//     "IDE: Terminal Shell", "Working Directory: CWD"), messages: one user
//     turn, the prompt as a text block with cache_control ephemeral.
//   OpenAI Compatible: POST /v1/chat/completions, Authorization: Bearer,
//     user-agent ai-sdk/openai-compatible/3.0.37 ... Body (~21 KB): model,
//     stream true, stream_options {include_usage:true}, no temperature, no
//     max_tokens, tool_choice "auto", ~25 function tools, messages: the
//     same system prompt as a role "system" message, the prompt as a string.
//   Nothing in either request varies between two runs with the same prompt,
//   HOME and working directory on the same day (no session or task id, no
//   timestamp finer than the date): the second run is a HIT with one
//   upstream call. The key changes with the working directory and the local
//   date (both in the system prompt), so a run in another directory or after
//   midnight is another entry.
//
// e2e-fronts: caddy (this is about the agent, not the front: run once,
// behind Caddy; tests/run.sh reads this line)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { describeRun, diffPaths, recordingProxy, runAgent, tempDirs } from './agents.mjs';
import { relaySuite, uniq, REPO, KEY_A } from './harness.mjs';

// The Linux x64 build, a direct optional dependency (see tests/package.json).
const CLINE = path.join(REPO, 'tests', 'node_modules', '@cline', 'cli-linux-x64', 'bin', 'cline');
const RUN_TIMEOUT = 60000; // one cline run
const T = { timeout: 3 * RUN_TIMEOUT };

// Cline's own settings for one provider, in home.
function writeSettings(home, { provider, model, baseUrl }) {
  const dir = path.join(home, '.cline', 'data', 'settings');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'providers.json'), JSON.stringify({
    version: 1,
    lastUsedProvider: provider,
    modes: {},
    providers: {
      [provider]: {
        settings: { provider, apiKey: KEY_A, model, baseUrl },
        updatedAt: new Date().toISOString(),
        tokenSource: 'manual',
      },
    },
  }, null, 2));
  fs.writeFileSync(path.join(dir, 'global-settings.json'),
    JSON.stringify({ telemetryOptOut: true, autoUpdateEnabled: false }, null, 2));
}

// Runs `cline -P provider -m model prompt` (bounded: RUN_TIMEOUT; what is
// left carrying this HOME afterwards is in `leftover`, killed).
function runCline(prompt, { provider, model, home, cwd }) {
  return runAgent(CLINE, ['-P', provider, '-m', model, prompt], {
    cwd,
    timeoutMs: RUN_TIMEOUT,
    env: {
      HOME: home,
      CLINE_NO_AUTO_UPDATE: '1',
      CLINE_SESSION_BACKEND_MODE: 'local',
      E2E_TEST: 'true',
    },
  });
}

// The <env> section of Cline's system prompt, for this working directory.
function assertEnvSection(system, cwd) {
  assert.match(system, /^You are Cline, an AI coding agent\./);
  assert.ok(system.includes(`Working Directory: ${cwd}\n`), 'the system prompt names the working directory');
  assert.match(system, /\n2\. Date: \d{1,2}\/\d{1,2}\/\d{4}\n/, 'and the local date');
}

const PROVIDERS = [
  {
    name: 'anthropic',
    provider: 'anthropic',
    model: 'claude-sonnet-4-5',
    path: '/v1/messages',
    // What one run sends, checked on the upstream call.
    check(call, prompt, cwd) {
      assert.equal(call.headers['x-api-key'], KEY_A);
      assert.equal(call.headers.authorization, undefined);
      assert.equal(call.headers['anthropic-version'], '2023-06-01');
      assert.equal(call.headers['anthropic-beta'], 'structured-outputs-2025-11-13');
      assert.match(call.headers['user-agent'] ?? '', /^ai-sdk\/anthropic\//);
      const body = JSON.parse(call.body);
      assert.deepEqual(Object.keys(body).sort(),
        ['max_tokens', 'messages', 'model', 'stream', 'system', 'tool_choice', 'tools']);
      assert.equal(body.model, this.model);
      assert.equal(body.stream, true);
      assert.equal(body.max_tokens, 32000);
      assert.deepEqual(body.tool_choice, { type: 'auto' });
      assert.equal(body.system.length, 1);
      assert.equal(body.system[0].type, 'text');
      assertEnvSection(body.system[0].text, cwd);
      const tools = body.tools.map((t) => t.name);
      for (const n of ['web_search', 'read_files', 'run_commands', 'editor']) assert.ok(tools.includes(n), tools.join());
      assert.deepEqual(body.messages, [
        { role: 'user', content: [{ type: 'text', text: prompt, cache_control: { type: 'ephemeral' } }] },
      ]);
    },
  },
  {
    name: 'OpenAI Compatible',
    provider: 'openai-compatible',
    model: 'gpt-4o-mini',
    path: '/v1/chat/completions',
    check(call, prompt, cwd) {
      assert.equal(call.headers.authorization, `Bearer ${KEY_A}`);
      assert.match(call.headers['user-agent'] ?? '', /^ai-sdk\/openai-compatible\//);
      const body = JSON.parse(call.body);
      assert.deepEqual(Object.keys(body).sort(),
        ['messages', 'model', 'stream', 'stream_options', 'tool_choice', 'tools']);
      assert.equal(body.model, this.model);
      assert.equal(body.stream, true);
      assert.deepEqual(body.stream_options, { include_usage: true });
      assert.equal(body.tool_choice, 'auto');
      const tools = body.tools.map((t) => t.type === 'function' && t.function.name);
      for (const n of ['read_files', 'run_commands', 'apply_patch']) assert.ok(tools.includes(n), tools.join());
      assert.equal(body.messages.length, 2);
      assert.equal(body.messages[0].role, 'system');
      assertEnvSection(body.messages[0].content, cwd);
      assert.deepEqual(body.messages[1], { role: 'user', content: prompt });
    },
  },
];

relaySuite('cline (cline -P PROVIDER PROMPT) through relay', {
  upstreams: ['anthropic'],
  // Cline sends no temperature.
  ini: { cache: { policy: 'always' } },
}, (relay) => {
  let proxy;
  const tmp = tempDirs();

  before(async () => {
    proxy = await recordingProxy(relay.base);
  });

  // The requests of the proxy that carry marker.
  const requestsFor = (marker) => proxy.seen.filter((r) => r.body.includes(marker));

  for (const p of PROVIDERS) {
    test(`${p.name}: cline prints the echo; a second identical run is answered from the cache`, T, async (t) => {
      // A pinned dependency: missing is a failure, not a skip.
      assert.ok(fs.existsSync(CLINE), `${CLINE} is missing (npm ci in tests/)`);
      const env = { provider: p.provider, model: p.model, home: tmp.make('relay-cline-home-'), cwd: tmp.make('relay-cline-cwd-') };
      writeSettings(env.home, { provider: p.provider, model: p.model, baseUrl: `${proxy.url}/v1` });
      const m = uniq(`cline-${p.provider}`);
      const prompt = `Reply with one word. ${m}`;
      const start = proxy.seen.length;

      const r1 = await runCline(prompt, env);
      assert.equal(r1.code, 0, describeRun(r1));
      assert.equal(r1.stdout, `Echo: ${prompt}\n`, describeRun(r1));
      assert.deepEqual(r1.leftover, [], 'no process of the run outlives it');

      const calls = relay.fake.callsFor(m);
      assert.equal(calls.length, 1, `upstream calls with the prompt: ${calls.map((c) => c.path).join(', ')}`);
      const [call] = calls;
      assert.equal(call.method, 'POST');
      assert.equal(call.path, p.path);
      assert.equal(call.query, '');
      p.check(call, prompt, env.cwd);

      const run1 = proxy.seen.slice(start);
      assert.deepEqual(run1.map((r) => `${r.method} ${r.url}`), [`POST ${p.path}`], 'what one run sends');
      const [q1] = run1;
      assert.equal(q1.xcache, 'MISS');
      assert.equal(q1.body, call.body, 'forwarded untouched');

      const r2 = await runCline(prompt, env);
      assert.equal(r2.code, 0, describeRun(r2));
      assert.deepEqual(r2.leftover, [], 'no process of the run outlives it');
      const run2 = proxy.seen.slice(start + run1.length);
      assert.deepEqual(run2.map((r) => `${r.method} ${r.url}`), [`POST ${p.path}`], 'what the second run sends');
      const [q2] = run2;
      // Nothing differs between the runs: no session id, no timestamp.
      assert.deepEqual(diffPaths(JSON.parse(q1.body), JSON.parse(q2.body)), [], 'the two runs differ');
      for (const h of ['authorization', 'x-api-key', 'anthropic-version', 'anthropic-beta']) {
        assert.equal(q2.headers[h], q1.headers[h], h);
      }

      assert.equal(q2.xcache, 'HIT', 'the second run is answered from the cache');
      assert.equal(q2.key, q1.key);
      assert.equal(r2.stdout, r1.stdout, 'and prints the same answer');
      assert.equal(relay.fake.callsFor(m).length, 1, 'one upstream call for both runs');
      // Relay stored the answer once (it logs each store at debug level).
      const stored = fs.readFileSync(relay.logs.relay, 'utf8').split('\n').filter((l) => l.includes(`stored ${q1.key}`));
      assert.equal(stored.length, 1, stored.join('\n'));
      t.diagnostic(`${p.provider}: ${run1.length} request per run, ${Math.round(q1.body.length / 1024)} KB`);
    });
  }

  test('another working directory is another entry (it is in the system prompt)', T, async () => {
    const p = PROVIDERS[0];
    const env = { provider: p.provider, model: p.model, home: tmp.make('relay-cline-home-'), cwd: tmp.make('relay-cline-cwd-') };
    writeSettings(env.home, { provider: p.provider, model: p.model, baseUrl: `${proxy.url}/v1` });
    const m = uniq('cline-cwd');
    const prompt = `Reply with one word. ${m}`;
    const r1 = await runCline(prompt, env);
    assert.equal(r1.code, 0, describeRun(r1));
    const r2 = await runCline(prompt, { ...env, cwd: tmp.make('relay-cline-cwd-') });
    assert.equal(r2.code, 0, describeRun(r2));
    assert.equal(r2.stdout, r1.stdout);
    const [q1, q2] = requestsFor(m);
    assert.deepEqual(diffPaths(JSON.parse(q1.body), JSON.parse(q2.body)).map((d) => d.split(':')[0]), ['.system.0.text']);
    assert.deepEqual([q1.xcache, q2.xcache], ['MISS', 'MISS']);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  after(async () => {
    await proxy?.close();
    tmp.removeAll();
  });
});
