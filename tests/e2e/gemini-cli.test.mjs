// The real Gemini CLI (@google/gemini-cli, pinned) through Caddy and Relay
// to the fake Gemini upstream ([upstream.gemini] type = gemini): `gemini -p
// PROMPT`, run non-interactively (stdin is /dev/null), bounded and killed
// (its whole process group: it relaunches itself as a child node process)
// on timeout, with its own HOME and working directory.
//
// Settings, all from the CLI's own documentation and bundle:
//   - GOOGLE_GEMINI_BASE_URL: the base URL without /v1beta (the bundled
//     @google/genai appends /v1beta/models/...). Only read when the auth
//     type is the API key's: without security.auth.selectedType
//     "gemini-api-key" in settings.json, the base URL alone selects the
//     "gateway" auth type, which `gemini -p` rejects ("Invalid auth method
//     selected.", exit 41).
//   - GEMINI_API_KEY: sent as the x-goog-api-key header, never in the query.
//   - GEMINI_CLI_TRUST_WORKSPACE=true: headless runs in an untrusted folder
//     exit 55 ("not running in a trusted directory").
//   - privacy.usageStatisticsEnabled false: otherwise the CLI resolves
//     play.googleapis.com (Clearcut usage logging) and adds an
//     x-gemini-api-privileged-user-id header (the installation id in
//     ~/.gemini/installation_id) to every request.
//   - model.name: without it the model is "auto" (see below).
//   - telemetry.enabled, ide.enabled (both off by default), and
//     general.enableAutoUpdate(Notification) (the update check runs only
//     in the interactive UI) are set off explicitly.
// With these, one run opens no connection but to the base URL (checked with
// strace -f -e connect,sendto: one TCP connection, no DNS query); it
// spawns only its relaunched node child and `git rev-parse`.
//
// What Gemini CLI 0.61.0 sends per `gemini -p` run, as observed here:
//   - With model.name "gemini-2.5-flash": one request,
//     POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse,
//     headers x-goog-api-key, user-agent "GeminiCLI-tui/0.61.0/MODEL (linux;
//     x64; terminal)", x-goog-api-client "google-genai-sdk/1.30.0
//     gl-node/vNODE". Body (~31 KB): contents = one user turn with two text
//     parts, a <session_context> (today's date, the OS, the project's temp
//     directory under HOME, the working directory and its listing) and the
//     prompt; systemInstruction (~25 KB, the agent prompt); tools (8
//     functionDeclarations: list_directory, read_file, grep_search, ...);
//     generationConfig {temperature 1, topP 0.95, topK 64, thinkingConfig
//     {includeThoughts, thinkingBudget 8192}}. No countTokens (only for
//     media), no next-speaker check (model.skipNextSpeakerCheck defaults to
//     true), no loop-detection call (its LLM check starts after 30 turns).
//   - With the default model "auto": first a routing classifier,
//     POST /v1beta/models/gemini-3.5-flash-lite:generateContent (not
//     streamed; a complexity-rubric systemInstruction, the same contents as
//     two user turns, generationConfig {temperature 1, responseMimeType
//     application/json, responseJsonSchema {complexity_reasoning,
//     complexity_score}, thinkingConfig}); its score picks the model of the
//     main request (a score of 1, the fake's answer: gemini-3.8-flash,
//     streamGenerateContent?alt=sse as above, ~38 KB). The user-agent names
//     gemini-3.1-pro-preview on both. Answered anything but JSON, the CLI
//     retries the classifier with backoff for minutes, so the fake answers a
//     JSON-mode request with an instance of its schema.
//   No temperature 0 anywhere, so the suite caches with policy = always.
//   Between two runs with the same prompt, HOME and working directory the
//   requests are byte for byte identical, headers included: no session id
//   or timestamp is sent (the session id only names the local chat file,
//   ~/.gemini/tmp/<dir>/chats/session-<time>-<id>.jsonl). A repeat is a HIT
//   for every request of the run. The key does change with the working
//   directory or HOME (both named in the <session_context>), with the files
//   in the working directory (listed there) and with the local date (in the
//   same part), so two runs on either side of midnight are two entries.
//
// e2e-fronts: caddy (this is about the agent, not the front: run once,
// behind Caddy; tests/run.sh reads this line)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { describeRun, diffPaths, recordingProxy, runAgent, tempDirs } from './agents.mjs';
import { relaySuite, uniq, REPO, KEY_A } from './harness.mjs';

const GEMINI = path.join(REPO, 'tests', 'node_modules', '.bin', 'gemini');
const RUN_TIMEOUT = 60000; // one gemini -p run
const T = { timeout: 3 * RUN_TIMEOUT };
const MODEL = 'gemini-2.5-flash';

// The settings.json of every run; the auto-routing test leaves out model.
const SETTINGS = {
  security: { auth: { selectedType: 'gemini-api-key' } },
  model: { name: MODEL },
  privacy: { usageStatisticsEnabled: false },
  telemetry: { enabled: false },
  general: { enableAutoUpdate: false, enableAutoUpdateNotification: false },
  ide: { enabled: false },
};

// Runs `gemini -p prompt` (bounded: RUN_TIMEOUT).
function runGemini(prompt, { baseUrl, home, cwd }) {
  return runAgent(GEMINI, ['-p', prompt], {
    cwd,
    timeoutMs: RUN_TIMEOUT,
    env: {
      HOME: home,
      GOOGLE_GEMINI_BASE_URL: baseUrl, // without /v1beta
      GEMINI_API_KEY: KEY_A,
      GEMINI_CLI_TRUST_WORKSPACE: 'true',
    },
  });
}

relaySuite('gemini cli (gemini -p) through relay', {
  upstreams: ['gemini'],
  // Gemini CLI sends temperature 1; its requests are ~31-38 KB.
  ini: { cache: { policy: 'always' }, fcgi: { max_body: 1 << 20 } },
}, (relay) => {
  let proxy;
  const tmp = tempDirs();
  // A HOME with .gemini/settings.json and a working directory inside it.
  // An empty ~/.env ends the CLI's upward search for a .env file (which
  // would otherwise go on from the working directory to /tmp and /).
  const makeEnv = (settings) => {
    const home = tmp.make('relay-gcli-home-');
    fs.mkdirSync(path.join(home, '.gemini'));
    fs.writeFileSync(path.join(home, '.gemini', 'settings.json'), JSON.stringify(settings, null, 2));
    fs.writeFileSync(path.join(home, '.env'), '');
    const cwd = path.join(home, 'project');
    fs.mkdirSync(cwd);
    return { baseUrl: proxy.url, home, cwd };
  };
  let env;

  before(async () => {
    proxy = await recordingProxy(relay.base);
    env = makeEnv(SETTINGS);
  });

  // The requests of the proxy that carry marker.
  const requestsFor = (marker) => proxy.seen.filter((r) => r.body.includes(marker));
  const storedLines = (key) =>
    fs.readFileSync(relay.logs.relay, 'utf8').split('\n').filter((l) => l.includes(`stored ${key}`));

  test('gemini -p prints the echo; a second identical run is answered from the cache', T, async (t) => {
    // A pinned dependency: missing is a failure, not a skip.
    assert.ok(fs.existsSync(GEMINI), `${GEMINI} is missing (npm ci in tests/)`);
    const m = uniq('gemini-cli');
    const prompt = `Reply with one word. ${m}`;
    const start = proxy.seen.length;

    const r1 = await runGemini(prompt, env);
    assert.equal(r1.code, 0, describeRun(r1));
    assert.match(r1.stdout, /^Echo: /, describeRun(r1));
    assert.ok(r1.stdout.includes(prompt), describeRun(r1));

    // What one run sends: the prompt's request and nothing else.
    const run1 = proxy.seen.slice(start);
    const streamPath = `/v1beta/models/${MODEL}:streamGenerateContent`;
    assert.deepEqual(run1.map((r) => `${r.method} ${r.url}`), [`POST ${streamPath}?alt=sse`], 'what one run sends');

    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, `upstream calls with the prompt: ${calls.map((c) => c.path).join(', ')}`);
    const [call] = calls;
    assert.equal(call.method, 'POST');
    assert.equal(call.path, streamPath);
    assert.equal(call.query, 'alt=sse', 'the key is not in the query');
    assert.equal(call.headers['x-goog-api-key'], KEY_A);
    assert.equal(call.headers.authorization, undefined);
    assert.match(call.headers['user-agent'] ?? '', new RegExp(`^GeminiCLI-tui/0\\.61\\.0/${MODEL} `));
    assert.equal(call.headers['x-gemini-api-privileged-user-id'], undefined, 'usage statistics are off');

    const body = JSON.parse(call.body);
    assert.deepEqual(Object.keys(body).sort(), ['contents', 'generationConfig', 'systemInstruction', 'tools']);
    assert.equal(body.contents.length, 1);
    assert.equal(body.contents[0].role, 'user');
    const texts = body.contents[0].parts.map((p) => p.text);
    assert.equal(texts.length, 2);
    assert.match(texts[0], /^<session_context>\n/);
    assert.match(texts[0], /Today's date is /);
    assert.ok(texts[0].includes(env.cwd), 'the working directory is in the session context');
    assert.equal(texts[1], prompt);
    assert.match(body.systemInstruction.parts[0].text, /CLI agent/);
    const functions = body.tools.flatMap((tool) => tool.functionDeclarations ?? []).map((f) => f.name);
    assert.ok(functions.includes('read_file'), functions.join(', '));
    assert.equal(body.generationConfig.temperature, 1, 'not 0: cached only with policy = always');
    assert.ok(body.generationConfig.thinkingConfig, JSON.stringify(body.generationConfig));

    const [q1] = requestsFor(m);
    assert.equal(q1.xcache, 'MISS');
    assert.equal(q1.status, 200);
    assert.equal(q1.body, call.body, 'forwarded untouched');

    const r2 = await runGemini(prompt, env);
    assert.equal(r2.code, 0, describeRun(r2));
    const run2 = proxy.seen.slice(start + run1.length);
    assert.deepEqual(run2.map((r) => `${r.method} ${r.url}`), [`POST ${streamPath}?alt=sse`], 'the second run sends the same');
    const [q2] = run2;
    // Nothing differs between the runs: no session id, no timestamp.
    assert.deepEqual(diffPaths(JSON.parse(q1.body), JSON.parse(q2.body)), [], 'the two runs\' bodies differ');
    assert.equal(q2.body, q1.body, 'byte for byte');
    assert.deepEqual(q2.headers, q1.headers, 'the same headers');

    assert.equal(q2.xcache, 'HIT', 'the second run is answered from the cache');
    assert.equal(q2.key, q1.key);
    assert.equal(r2.stdout, r1.stdout, 'and prints the same answer');
    assert.equal(relay.fake.callsFor(m).length, 1, 'one upstream call for both runs');
    // Relay stored the answer once (it logs each store at debug level).
    const stored = storedLines(q1.key);
    assert.equal(stored.length, 1, stored.join('\n'));
    t.diagnostic(`gemini sent ${run1.length} request per run; ${Math.round(q1.body.length / 1024)} KB; tools ${functions.join(',')}`);
  });

  test('another prompt is another entry: one more upstream call', T, async () => {
    const m = uniq('gemini-cli-other');
    const r = await runGemini(`Reply with one word. ${m}`, env);
    assert.equal(r.code, 0, describeRun(r));
    assert.ok(r.stdout.includes(m), describeRun(r));
    assert.equal(relay.fake.callsFor(m).length, 1);
    assert.equal(requestsFor(m).length, 1);
    assert.equal(requestsFor(m)[0].xcache, 'MISS');
  });

  test('the default model (auto): a routing classifier request, then the prompt; a repeat is two HITs', T, async () => {
    const { model, ...autoSettings } = SETTINGS;
    assert.ok(model);
    const autoEnv = makeEnv(autoSettings);
    const m = uniq('gemini-cli-auto');
    const prompt = `Reply with one word. ${m}`;
    const start = proxy.seen.length;

    const r1 = await runGemini(prompt, autoEnv);
    assert.equal(r1.code, 0, describeRun(r1));
    assert.match(r1.stdout, /^Echo: /, describeRun(r1));
    assert.ok(r1.stdout.includes(prompt), describeRun(r1));
    const run1 = proxy.seen.slice(start);
    const urls = run1.map((r) => `${r.method} ${r.url}`);
    assert.equal(run1.length, 2, urls.join('\n'));
    const [classify, main] = run1;
    assert.match(classify.url, /^\/v1beta\/models\/[^/:]+:generateContent$/, 'the classifier is not streamed');
    assert.match(main.url, /^\/v1beta\/models\/[^/:]+:streamGenerateContent\?alt=sse$/);
    const cls = JSON.parse(classify.body);
    assert.equal(cls.generationConfig.responseMimeType, 'application/json');
    assert.ok(cls.generationConfig.responseJsonSchema?.properties?.complexity_score, classify.body.slice(0, 400));
    assert.match(cls.systemInstruction.parts[0].text, /Complexity Score/);
    assert.ok(cls.contents.some((c) => c.parts.some((p) => p.text === prompt)), 'the classifier sees the prompt');
    assert.ok(JSON.parse(main.body).contents[0].parts.some((p) => p.text === prompt));
    assert.deepEqual(run1.map((r) => r.xcache), ['MISS', 'MISS']);
    assert.equal(relay.fake.callsFor(m).length, 2);

    const r2 = await runGemini(prompt, autoEnv);
    assert.equal(r2.code, 0, describeRun(r2));
    const run2 = proxy.seen.slice(start + run1.length);
    assert.deepEqual(run2.map((r) => `${r.method} ${r.url}`), urls, 'the second run sends the same');
    assert.deepEqual(run2.map((r) => r.body), run1.map((r) => r.body), 'byte for byte');
    assert.deepEqual(run2.map((r) => r.xcache), ['HIT', 'HIT'], 'both answered from the cache');
    assert.deepEqual(run2.map((r) => r.key), run1.map((r) => r.key));
    assert.notEqual(run1[0].key, run1[1].key);
    assert.equal(r2.stdout, r1.stdout);
    assert.equal(relay.fake.callsFor(m).length, 2, 'no upstream call for the second run');
  });

  after(async () => {
    await proxy?.close();
    tmp.removeAll();
  });
});
