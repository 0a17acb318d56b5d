// Claude Code on an OpenAI-compatible model (issue 17): the real `claude -p`
// (tests/node_modules, pinned; run as tests/e2e/claude-code.test.mjs runs
// it) with ANTHROPIC_BASE_URL at Relay and ANTHROPIC_MODEL local/qwen3-coder,
// served by an upstream of type openai-compatible that accepts anthropic:
//
//   [upstream.compat]  type = openai-compatible, accepts = anthropic
//   [models]           local/* = compat   (sends "qwen3-coder" upstream)
//
// There is no anthropic upstream, so /v1/messages routes to the first
// upstream accepting Anthropic's format, then [models] confirms it.
//
// The round trip is Claude Code's own tool loop: the fake answers the first
// request with a call to Claude Code's Read tool on a file in the working
// directory; Claude Code reads it and sends the tool_result; the fake answers
// "Tool said: " + that result, which Claude Code prints. A second identical
// run is answered from the cache twice over (the same call, id included,
// then the same result) without an upstream call. Observed natively (Claude
// Code 2.1.197 on the fake's Anthropic API): two POST /v1/messages?beta=true
// per run, the second ending with a user turn [tool_result (Read's output
// with line numbers, cache_control ephemeral)]; the first request's messages
// end with a role "system" message (the agent types), which Anthropic's own
// API takes and a translator must too.
//
// e2e-fronts: caddy (this is about the agent, not the front: run once,
// behind Caddy, as the other agent suites)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { describeRun, recordingProxy, runAgent, tempDirs } from './agents.mjs';
import { relaySuite, uniq, REPO, KEY_A } from './harness.mjs';
import { textOf } from './translate.mjs';

const CLAUDE_BIN = path.join(REPO, 'tests', 'node_modules', '.bin', 'claude');
const RUN_TIMEOUT = 60000; // one claude -p run
const T = { timeout: 3 * RUN_TIMEOUT };
const MODEL = 'local/qwen3-coder';

function runClaude(prompt, { baseUrl, home, cwd }) {
  // Read is allowed up front: -p has nobody to ask for permission.
  return runAgent(CLAUDE_BIN, ['-p', prompt, '--allowedTools', 'Read'], {
    cwd,
    timeoutMs: RUN_TIMEOUT,
    env: {
      HOME: home,
      ANTHROPIC_BASE_URL: baseUrl,
      ANTHROPIC_API_KEY: KEY_A,
      ANTHROPIC_MODEL: MODEL,
      ANTHROPIC_SMALL_FAST_MODEL: MODEL,
      DISABLE_TELEMETRY: '1',
      DISABLE_ERROR_REPORTING: '1',
      DISABLE_AUTOUPDATER: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    },
  });
}

relaySuite('translation: Claude Code (claude -p) on an OpenAI-compatible upstream', {
  upstreams: [{ name: 'compat', type: 'openai-compatible', accepts: 'anthropic' }],
  // Claude Code sends no temperature; its requests are ~80 KB.
  ini: { cache: { policy: 'always' }, fcgi: { max_body: 1 << 20 }, models: { 'local/*': 'compat' } },
}, (relay) => {
  let proxy;
  let env;
  const tmp = tempDirs();

  before(async () => {
    proxy = await recordingProxy(relay.base);
    env = { baseUrl: proxy.url, home: tmp.make('relay-xcc-home-'), cwd: tmp.make('relay-xcc-cwd-') };
  });
  const requestsFor = (marker) => proxy.seen.filter((r) => r.method === 'POST' && r.body.includes(marker));

  test('claude -p: Read called by the model, its result sent back, the answer printed; the second run is all HITs', T, async () => {
    assert.ok(fs.existsSync(CLAUDE_BIN), `${CLAUDE_BIN} is missing (npm ci in tests/)`);
    const m = uniq('xcc');
    const file = path.join(env.cwd, 'weather.txt');
    fs.writeFileSync(file, `sunny, 21C ${m}\n`);
    relay.fake.enqueue({ match: m, toolCalls: [{ name: 'Read', arguments: JSON.stringify({ file_path: file }) }] });
    const prompt = `What does weather.txt say? ${m}`;

    const r1 = await runClaude(prompt, env);
    assert.equal(r1.code, 0, describeRun(r1));
    assert.match(r1.stdout, /^Tool said: /, describeRun(r1));
    assert.ok(r1.stdout.includes(`sunny, 21C ${m}`), describeRun(r1));

    // Upstream: two Chat Completions calls, the model's prefix removed.
    const calls = relay.fake.callsFor(m);
    assert.deepEqual(calls.map((c) => `${c.method} ${c.path}`), ['POST /v1/chat/completions', 'POST /v1/chat/completions']);
    const [first, second] = calls.map((c) => JSON.parse(c.body));
    for (const b of [first, second]) {
      assert.equal(b.model, 'qwen3-coder', 'local/ is removed from the model sent upstream');
      assert.equal(b.stream, true);
      assert.equal(b.messages[0].role, 'system', 'Claude Code\'s system blocks lifted into a system message');
      assert.ok(b.tools.some((t) => t.type === 'function' && t.function.name === 'Read'), 'its tools offered as functions');
    }
    assert.equal(calls[0].headers.authorization, `Bearer ${KEY_A}`, 'the key as an OpenAI server takes it');
    const call = second.messages.find((x) => x.role === 'assistant' && x.tool_calls)?.tool_calls?.[0];
    assert.equal(call?.function?.name, 'Read', JSON.stringify(second.messages.slice(-3)));
    assert.deepEqual(JSON.parse(call.function.arguments), { file_path: file });
    const result = second.messages.at(-1);
    assert.equal(result.role, 'tool');
    assert.equal(result.tool_call_id, call.id, 'the result answers the call by its id');
    assert.ok(textOf(result.content).includes(`sunny, 21C ${m}`), JSON.stringify(result));

    const q1 = requestsFor(m);
    assert.deepEqual(q1.map((q) => q.xcache), ['MISS', 'MISS']);

    // The same run again: the same two requests (but for the session id),
    // both answered from the cache, the same answer printed.
    const r2 = await runClaude(prompt, env);
    assert.equal(r2.code, 0, describeRun(r2));
    const q2 = requestsFor(m).slice(2);
    assert.deepEqual(q2.map((q) => q.xcache), ['HIT', 'HIT'], 'the second run from the cache');
    assert.deepEqual(q2.map((q) => q.key), q1.map((q) => q.key));
    assert.equal(r2.stdout, r1.stdout);
    assert.equal(relay.fake.callsFor(m).length, 2, 'no upstream call in the second run');
  });

  after(async () => {
    await proxy?.close();
    tmp.removeAll();
  });
});
