// The real OpenCode CLI (opencode-ai, pinned) through Caddy and Relay to the
// fake upstream: `opencode run PROMPT`, run non-interactively (stdin is
// /dev/null), bounded and killed on timeout, with its own HOME and working
// directory. OpenCode reads its global config from
// $XDG_CONFIG_HOME/opencode/opencode.json (here HOME/.config/opencode); the
// one written below points the built-in "openai" and "anthropic" providers
// at Relay with options.baseURL = RELAY/v1 (the AI SDK appends /responses,
// /messages) and options.apiKey.
//
// Between opencode and Relay sits a small recording proxy (in this file), so
// the test sees every request OpenCode sends and Relay's X-Cache answer.
//
// Keeping it off the network (checked with strace -f -e connect: one
// connection, to the proxy; no DNS):
//   - OPENCODE_DISABLE_MODELS_FETCH=1: no models.dev fetch (at start and
//     hourly); the model list is the snapshot built into the binary, which
//     knows openai/gpt-5.4 and anthropic/claude-sonnet-4-5.
//   - For every config directory (HOME/.config/opencode, any .opencode up
//     from the cwd) OpenCode installs @opencode-ai/plugin from
//     registry.npmjs.org in the background (npm's Arborist, "Npm.install"),
//     unless the directory is not writable (root writes anyway) or already
//     has node_modules/ and a package-lock.json whose root dependencies cover
//     package.json's plus @opencode-ai/plugin. The test writes those three, so
//     nothing is installed. No plugin is configured, so no other install.
//   - OPENCODE_DISABLE_AUTOUPDATE=1 and "autoupdate": false (update check),
//     OPENCODE_DISABLE_SHARE=1 and "share": "disabled",
//     OPENCODE_DISABLE_LSP_DOWNLOAD=1 (language servers are fetched on first
//     use of a file type; no file is touched here anyway).
//
// What OpenCode 1.18.33 sends per `opencode run PROMPT`, as observed here:
//   - `opencode run` joins its arguments with spaces and wraps each one that
//     contains a space in double quotes: the model sees "PROMPT" in quotes.
//   - Two requests: the prompt on the session's model, and a session title
//     on the provider's small model (a "You are a title generator" prompt,
//     then "Generate a title for this conversation:" and the prompt).
//     `--title TEXT` skips the title request.
//   - openai provider: POST /v1/responses (the Responses API), no query,
//     Authorization: Bearer (options.apiKey), user-agent opencode/1.18.33
//     (linux ...) ai-sdk/provider-utils/4.0.40 runtime/bun/1.3.14,
//     originator: opencode, session-id / x-session-id / x-session-affinity:
//     the session id (ses_..., new per run).
//     Prompt request (~29 KB): model gpt-5.4, stream true, store false, no
//     temperature (so the suite caches with policy = always), reasoning
//     {effort: medium, summary: auto}, include [reasoning.encrypted_content],
//     text {verbosity: low}, tool_choice auto, 9 function tools (apply_patch,
//     bash, glob, grep, read, skill, task, todowrite, webfetch),
//     prompt_cache_key = the session id, input: a developer message (the
//     system prompt, whose <env> block names the working directory and
//     "Today's date: Tue Nov 24 2026") and the user message.
//     Title request (~2.5 KB): model gpt-5.4-nano, temperature 0.5, stream
//     true, store false, reasoning {effort: none}, no tools, no
//     prompt_cache_key.
//   - anthropic provider: POST /v1/messages, no query, x-api-key,
//     anthropic-version 2023-06-01, x-session-id / x-session-affinity,
//     no metadata in the body. Prompt request: model claude-sonnet-4-5,
//     max_tokens 32000, stream true, no temperature, system and the user
//     message as text blocks with cache_control ephemeral, 10 tools
//     (eager_input_streaming), tool_choice auto, anthropic-beta
//     structured-outputs-2025-11-13. Title request: claude-haiku-4-5-20251001,
//     max_tokens 48000, thinking {enabled, budget_tokens 16000}, no beta.
//   Between two runs with the same prompt, HOME and working directory only
//   the session id differs: in the session headers (never in Relay's key)
//   and, for OpenAI, in the body's prompt_cache_key, which Relay leaves out
//   of the key. The Anthropic bodies are byte-identical. So the second run is
//   a HIT for both requests. The key does change with the working directory
//   and the local date (both in the system prompt): a run in another
//   directory, or after midnight, is a new entry.
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
const OPENCODE = path.join(REPO, 'tests', 'node_modules', 'opencode-linux-x64', 'bin', 'opencode');
const RUN_TIMEOUT = 60000; // one opencode run
const T = { timeout: 3 * RUN_TIMEOUT };

const OPENAI_MODEL = 'gpt-5.4';
const OPENAI_TITLE_MODEL = 'gpt-5.4-nano';
const ANTHROPIC_MODEL = 'claude-sonnet-4-5';
const ANTHROPIC_TITLE_MODEL = 'claude-haiku-4-5-20251001';

// A HOME whose global OpenCode config points both providers at baseUrl, and
// whose config directory needs no npm install (see the header).
function writeHome(home, baseUrl) {
  const dir = path.join(home, '.config', 'opencode');
  fs.mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
  const config = {
    $schema: 'https://opencode.ai/config.json',
    autoupdate: false,
    share: 'disabled',
    model: `openai/${OPENAI_MODEL}`,
    provider: {
      openai: { options: { baseURL: `${baseUrl}/v1`, apiKey: KEY_A } },
      anthropic: { options: { baseURL: `${baseUrl}/v1`, apiKey: KEY_A } },
    },
  };
  fs.writeFileSync(path.join(dir, 'opencode.json'), `${JSON.stringify(config, null, 2)}\n`);
  const deps = { '@opencode-ai/plugin': '1.18.33' };
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ dependencies: deps }));
  fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ lockfileVersion: 3, packages: { '': { dependencies: deps } } }));
}

// Runs `opencode run ...args` (bounded: RUN_TIMEOUT). No XDG_* variables:
// everything lives under HOME.
function runOpencode(args, { home, cwd }) {
  return runAgent(OPENCODE, ['run', ...args], {
    cwd,
    timeoutMs: RUN_TIMEOUT,
    env: {
      HOME: home,
      OPENCODE_DISABLE_MODELS_FETCH: '1',
      OPENCODE_DISABLE_AUTOUPDATE: '1',
      OPENCODE_DISABLE_SHARE: '1',
      OPENCODE_DISABLE_LSP_DOWNLOAD: '1',
    },
  });
}

// The last user message's text in a Responses input or Messages messages.
function lastUserText(items) {
  const user = items.filter((i) => i.role === 'user').at(-1);
  if (!user) return undefined;
  if (typeof user.content === 'string') return user.content;
  return user.content.map((p) => p.text ?? '').join('');
}

relaySuite('opencode (opencode run) through relay', {
  upstreams: ['anthropic'],
  // OpenCode sends no temperature on the prompt request; it is ~30 KB, under
  // the 64 KiB default, but the tool descriptions grow from version to
  // version.
  ini: { cache: { policy: 'always' }, fcgi: { max_body: 1 << 20 } },
}, (relay) => {
  let proxy;
  let env;
  const tmp = tempDirs();

  before(async () => {
    proxy = await recordingProxy(relay.base);
    env = { home: tmp.make('relay-oc-home-'), cwd: tmp.make('relay-oc-cwd-') };
    writeHome(env.home, proxy.url);
  });

  // The proxy's requests that carry marker, by model.
  const requestsFor = (marker, model) =>
    proxy.seen.filter((r) => r.body.includes(marker) && JSON.parse(r.body).model === model);
  const callsFor = (marker, model) => relay.fake.callsFor(marker).filter((c) => JSON.parse(c.body).model === model);
  const storedLines = (key) => fs.readFileSync(relay.logs.relay, 'utf8').split('\n').filter((l) => l.includes(`stored ${key}`));

  test('openai provider: opencode run prints the echo; a second identical run is answered from the cache', T, async (t) => {
    // A pinned dependency: missing is a failure, not a skip.
    assert.ok(fs.existsSync(OPENCODE), `${OPENCODE} is missing (npm ci in tests/)`);
    const m = uniq('opencode');
    const prompt = `Reply with one word. ${m}`;
    const start = proxy.seen.length;

    const r1 = await runOpencode([prompt], env);
    assert.equal(r1.code, 0, describeRun(r1));
    // `opencode run` quotes an argument with spaces; the fake echoes it.
    assert.equal(r1.stdout, `Echo: "${prompt}"\n`, describeRun(r1));

    // One run: the prompt and a title request, both to /v1/responses.
    const run1 = proxy.seen.slice(start);
    assert.deepEqual(run1.map((r) => `${r.method} ${r.url}`), ['POST /v1/responses', 'POST /v1/responses'], 'what one run sends');
    assert.deepEqual(run1.map((r) => JSON.parse(r.body).model).sort(), [OPENAI_MODEL, OPENAI_TITLE_MODEL].sort());
    assert.equal(relay.fake.callsFor(m).length, 2, 'the prompt request and the title request');

    // The prompt request.
    const calls = callsFor(m, OPENAI_MODEL);
    assert.equal(calls.length, 1, `upstream calls for the prompt: ${calls.map((c) => c.path).join(', ')}`);
    const [call] = calls;
    assert.equal(call.method, 'POST');
    assert.equal(call.path, '/v1/responses');
    assert.equal(call.query, '');
    assert.equal(call.headers.authorization, `Bearer ${KEY_A}`);
    assert.match(call.headers['user-agent'], /^opencode\/1\.18\.33 /);
    const body = JSON.parse(call.body);
    assert.equal(body.stream, true);
    assert.equal(body.store, false, 'store: false (else Relay would not cache it)');
    assert.equal(body.temperature, undefined);
    assert.equal(body.previous_response_id, undefined);
    assert.equal(body.tool_choice, 'auto');
    const toolNames = body.tools.map((x) => x.name);
    for (const name of ['bash', 'read', 'grep', 'glob', 'apply_patch']) assert.ok(toolNames.includes(name), toolNames.join(','));
    const session1 = body.prompt_cache_key;
    assert.match(session1, /^ses_\w+$/);
    assert.equal(call.headers['session-id'], session1, 'prompt_cache_key is the session id');
    assert.equal(call.headers['x-session-id'], session1);
    assert.equal(body.input[0].role, 'developer');
    assert.ok(body.input[0].content.includes(`Working directory: ${env.cwd}`), 'the system prompt names the cwd');
    assert.match(body.input[0].content, /Today's date: \w{3} \w{3} \d{2} \d{4}/, 'and the date');
    assert.equal(lastUserText(body.input), `"${prompt}"`);

    // The title request: the small model, no session in the body.
    const titleCalls = callsFor(m, OPENAI_TITLE_MODEL);
    assert.equal(titleCalls.length, 1);
    const title = JSON.parse(titleCalls[0].body);
    assert.equal(titleCalls[0].path, '/v1/responses');
    assert.equal(title.stream, true);
    assert.equal(title.store, false);
    assert.equal(title.temperature, 0.5);
    assert.equal(title.prompt_cache_key, undefined);
    assert.equal(title.tools, undefined);
    assert.match(title.input[0].content, /^You are a title generator/);
    assert.equal(lastUserText(title.input), `"${prompt}"`);

    const [q1] = requestsFor(m, OPENAI_MODEL);
    const [t1] = requestsFor(m, OPENAI_TITLE_MODEL);
    assert.equal(q1.xcache, 'MISS');
    assert.equal(t1.xcache, 'MISS');
    assert.equal(q1.body, call.body, 'forwarded untouched');

    const r2 = await runOpencode([prompt], env);
    assert.equal(r2.code, 0, describeRun(r2));
    const [, q2] = requestsFor(m, OPENAI_MODEL);
    const [, t2] = requestsFor(m, OPENAI_TITLE_MODEL);
    assert.ok(q2 && t2, 'the second run sent both requests');
    // What differs between the runs: the session, in prompt_cache_key and
    // the session headers (Relay's key sees neither).
    const b2 = JSON.parse(q2.body);
    assert.notEqual(b2.prompt_cache_key, session1, 'each run is a new session');
    assert.equal(q2.headers['session-id'], b2.prompt_cache_key);
    const differs = diffPaths(JSON.parse(q1.body), b2);
    assert.deepEqual(differs, [`.prompt_cache_key: ${JSON.stringify(session1)} vs ${JSON.stringify(b2.prompt_cache_key)}`],
      'the two prompt requests differ only in prompt_cache_key');
    assert.equal(t2.body, t1.body, 'the title requests are identical');

    assert.equal(q2.xcache, 'HIT', 'the second prompt request is answered from the cache');
    assert.equal(q2.key, q1.key);
    assert.equal(t2.xcache, 'HIT', 'and so is the title request');
    assert.equal(t2.key, t1.key);
    assert.equal(r2.stdout, r1.stdout, 'and prints the same answer');
    assert.equal(callsFor(m, OPENAI_MODEL).length, 1, 'one upstream call for the prompt over both runs');
    assert.equal(callsFor(m, OPENAI_TITLE_MODEL).length, 1, 'one for the title');
    // Relay stored each answer once (it logs each store at debug level).
    assert.equal(storedLines(q1.key).length, 1, storedLines(q1.key).join('\n'));
    assert.equal(storedLines(t1.key).length, 1, storedLines(t1.key).join('\n'));
    t.diagnostic(`prompt request ${Math.round(q1.body.length / 1024)} KB, title request ${Math.round(t1.body.length / 1024)} KB`);
  });

  test('openai provider: with --title there is no title request; another prompt is another entry', T, async () => {
    const m = uniq('opencode-titled');
    const prompt = `Reply with one word. ${m}`;
    const start = proxy.seen.length;
    const r = await runOpencode(['--title', 'fixed', prompt], env);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(r.stdout, `Echo: "${prompt}"\n`, describeRun(r));
    const run = proxy.seen.slice(start);
    assert.deepEqual(run.map((x) => `${x.method} ${x.url} ${JSON.parse(x.body).model}`), [`POST /v1/responses ${OPENAI_MODEL}`]);
    assert.equal(run[0].xcache, 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('anthropic provider: POST /v1/messages; a second identical run is answered from the cache', T, async () => {
    const m = uniq('opencode-anthropic');
    const prompt = `Reply with one word. ${m}`;
    const args = ['--model', `anthropic/${ANTHROPIC_MODEL}`, prompt];
    const start = proxy.seen.length;

    const r1 = await runOpencode(args, env);
    assert.equal(r1.code, 0, describeRun(r1));
    assert.equal(r1.stdout, `Echo: "${prompt}"\n`, describeRun(r1));
    const run1 = proxy.seen.slice(start);
    assert.deepEqual(run1.map((r) => `${r.method} ${r.url}`), ['POST /v1/messages', 'POST /v1/messages'], 'what one run sends');
    assert.deepEqual(run1.map((r) => JSON.parse(r.body).model).sort(), [ANTHROPIC_MODEL, ANTHROPIC_TITLE_MODEL].sort());

    const calls = callsFor(m, ANTHROPIC_MODEL);
    assert.equal(calls.length, 1);
    const [call] = calls;
    assert.equal(call.path, '/v1/messages');
    assert.equal(call.query, '');
    assert.equal(call.headers['x-api-key'], KEY_A);
    assert.equal(call.headers.authorization, undefined);
    assert.equal(call.headers['anthropic-version'], '2023-06-01');
    assert.equal(call.headers['anthropic-beta'], 'structured-outputs-2025-11-13');
    assert.match(call.headers['x-session-id'], /^ses_\w+$/);
    const body = JSON.parse(call.body);
    assert.equal(body.stream, true);
    assert.equal(body.temperature, undefined);
    assert.equal(body.metadata, undefined, 'no session in the body');
    assert.equal(body.max_tokens, 32000);
    assert.ok(body.system.at(-1).text.includes(`Working directory: ${env.cwd}`));
    assert.deepEqual(body.system.at(-1).cache_control, { type: 'ephemeral' });
    assert.ok(body.tools.some((x) => x.name === 'bash'));
    assert.equal(lastUserText(body.messages), `"${prompt}"`);
    const titleCalls = callsFor(m, ANTHROPIC_TITLE_MODEL);
    assert.equal(titleCalls.length, 1);
    assert.deepEqual(JSON.parse(titleCalls[0].body).thinking, { type: 'enabled', budget_tokens: 16000 });

    const [q1] = requestsFor(m, ANTHROPIC_MODEL);
    const [t1] = requestsFor(m, ANTHROPIC_TITLE_MODEL);
    assert.equal(q1.xcache, 'MISS');
    assert.equal(t1.xcache, 'MISS');
    assert.equal(q1.body, call.body, 'forwarded untouched');

    const r2 = await runOpencode(args, env);
    assert.equal(r2.code, 0, describeRun(r2));
    const [, q2] = requestsFor(m, ANTHROPIC_MODEL);
    const [, t2] = requestsFor(m, ANTHROPIC_TITLE_MODEL);
    assert.ok(q2 && t2, 'the second run sent both requests');
    assert.notEqual(q2.headers['x-session-id'], q1.headers['x-session-id'], 'each run is a new session');
    assert.equal(q2.body, q1.body, 'the prompt requests are byte-identical');
    assert.equal(t2.body, t1.body);
    assert.equal(q2.xcache, 'HIT');
    assert.equal(q2.key, q1.key);
    assert.equal(t2.xcache, 'HIT');
    assert.equal(r2.stdout, r1.stdout);
    assert.equal(callsFor(m, ANTHROPIC_MODEL).length, 1, 'one upstream call for the prompt over both runs');
    assert.equal(callsFor(m, ANTHROPIC_TITLE_MODEL).length, 1);
  });

  test('nothing was installed from npm; every request went to Relay and was answered', T, () => {
    // Without the prepared config directory each run installs
    // @opencode-ai/plugin there, filling node_modules/ and HOME/.npm.
    const dir = path.join(env.home, '.config', 'opencode');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'node_modules')), [], 'nothing was installed');
    assert.ok(!fs.existsSync(path.join(env.home, '.npm')), 'npm never ran');
    assert.ok(proxy.seen.length >= 9, `requests seen: ${proxy.seen.length}`);
    assert.deepEqual(proxy.seen.filter((r) => r.status !== 200).map((r) => `${r.method} ${r.url} ${r.status ?? r.error}`), []);
  });

  after(async () => {
    await proxy?.close();
    tmp.removeAll();
  });
});
