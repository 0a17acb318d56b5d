// More end-to-end translation cases (issue 17 follow-up), through real
// clients: the `ollama` client on an OpenAI upstream (NDJSON streams, a tool
// round trip), the OpenAI SDK on an Ollama upstream, a Gemini stream asked
// for without alt=sse (a JSON array), thinking asked for where one side has
// no place for it (X-Relay-Dropped), and GET /v1/models merged over
// upstreams of different formats.
//
// Routing (translate.mjs's, plus two upstreams): /api/chat goes first to
// [upstream.local] (type ollama), /v1/messages to [upstream.claude], then
// [models] sends gpt-* to [upstream.openai] (which accepts anthropic,
// gemini and ollama), llama* to local (which accepts openai) and claude-*
// to claude (which accepts openai). Claude has a fake of its own, so its
// model list can differ from the OpenAI fake's.
//
// e2e-fronts: caddy nginx (translation is the pool's; two fronts check the
// translated streams pass both the same way)

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';

import { relaySuite, uniq, KEY_A, REQUEST_TIMEOUT, TEST_TIMEOUT } from './harness.mjs';
import { startFakeUpstream } from '../fake/upstream.mjs';
import {
  CLAUDE, GPT, SYSTEM, MAX_TOKENS, RESULT, CITY_ARGS, PARAMS, TOOL, SAID,
  callTheTool, upstreamCall, assertChatRequest, assertChatToolTurns, readChatStream, readAnthropicStream,
} from './translate.mjs';

const T = { timeout: TEST_TIMEOUT };
const LLAMA = 'llama3.2';

const fakeClaude = await startFakeUpstream();
after(() => fakeClaude.close());

const MORE = {
  upstreams: [
    { name: 'claude', type: 'anthropic', accepts: 'openai' },
    { name: 'local', type: 'ollama', accepts: 'openai' },
  ],
  ini: {
    'upstream.openai': { accepts: 'anthropic, gemini, ollama' },
    'upstream.claude': { base_url: fakeClaude.url },
    models: { 'claude-*': 'claude', 'gpt-*': 'openai', 'llama*': 'local' },
  },
  concurrency: 2,
};

// The one call to fake f carrying marker m (asserting there are `count`),
// parsed.
function callOn(f, m, count = 1) {
  const calls = f.callsFor(m);
  assert.equal(calls.length, count, `calls carrying the marker: ${calls.map((c) => `${c.method} ${c.path}`).join(', ')}`);
  return { ...calls.at(-1), json: JSON.parse(calls.at(-1).body) };
}

relaySuite('translation: more clients and directions', MORE, (relay) => {
  // The ollama client shows no response headers: its fetch keeps the last
  // response's in `seen`.
  const ollama = () => {
    const c = new Ollama({
      host: relay.base,
      headers: { authorization: `Bearer ${KEY_A}` },
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        c.seen = res.headers;
        return res;
      },
    });
    return c;
  };
  const openai = () => relay.client({ maxRetries: 0, timeout: REQUEST_TIMEOUT });
  const anthropic = () => new Anthropic({ baseURL: relay.base, apiKey: KEY_A, maxRetries: 0, timeout: REQUEST_TIMEOUT });

  // 1. The ollama client on an OpenAI upstream.
  for (const stream of [false, true]) {
    const how = stream ? 'streamed (NDJSON)' : 'not streamed';

    test(`ollama client → OpenAI, ${how}: tool_calls, a tool message, answer; the repeat is a HIT`, T, async () => {
      const m = uniq(`ollama-client-${stream}`);
      const tools = [{ type: 'function', function: { ...TOOL, parameters: PARAMS } }];
      // One answer in the non-stream shape, either way: a stream's lines
      // joined, its last line's counts and done_reason.
      const send = async (messages) => {
        const c = ollama();
        const req = { model: GPT, messages, tools, stream, options: { temperature: 0, num_predict: MAX_TOKENS } };
        if (!stream) {
          const r = await c.chat(req);
          return { xcache: c.seen.get('x-cache'), message: r.message, done: r.done_reason, evalCount: r.eval_count, lines: 1 };
        }
        const parts = [];
        for await (const p of await c.chat(req)) parts.push(p);
        assert.ok(parts.length >= 2, JSON.stringify(parts));
        for (const p of parts.slice(0, -1)) assert.equal(p.done, false, JSON.stringify(p));
        const last = parts.at(-1);
        assert.equal(last.done, true, JSON.stringify(last));
        assert.match(c.seen.get('content-type') ?? '', /^application\/x-ndjson/);
        const message = {
          role: 'assistant',
          content: parts.map((p) => p.message?.content ?? '').join(''),
          tool_calls: parts.flatMap((p) => p.message?.tool_calls ?? []),
        };
        if (!message.tool_calls.length) delete message.tool_calls;
        return { xcache: c.seen.get('x-cache'), message, done: last.done_reason, evalCount: last.eval_count, lines: parts.length };
      };

      const messages = [{ role: 'system', content: SYSTEM }, { role: 'user', content: `Weather in Oslo? ${m}` }];
      relay.fake.enqueue(callTheTool(m));
      const a = await send(messages);
      assert.equal(a.xcache, 'MISS');
      assert.equal(a.message.tool_calls?.length, 1, JSON.stringify(a.message));
      assert.equal(a.message.tool_calls[0].function.name, TOOL.name);
      assert.deepEqual(a.message.tool_calls[0].function.arguments, CITY_ARGS, 'arguments as an object, Ollama\'s way');
      assert.ok(a.evalCount > 0, 'usage carried');
      const up1 = assertChatRequest(upstreamCall(relay, m, 1), { model: GPT, stream });
      assert.equal(up1.messages.at(-1).content, `Weather in Oslo? ${m}`);

      const followUp = [...messages, a.message, { role: 'tool', content: RESULT, tool_name: TOOL.name }];
      const b = await send(followUp);
      assert.equal(b.xcache, 'MISS');
      assert.match(b.message.content, SAID);
      assert.equal(b.message.tool_calls, undefined);
      assert.equal(b.done, 'stop');
      const up2 = assertChatRequest(upstreamCall(relay, m, 2), { model: GPT, stream });
      // The client gave no call id: the call and its result share one Relay
      // made (or the upstream's, kept).
      const callId = up2.messages.at(-2).tool_calls?.[0]?.id;
      assert.ok(callId, JSON.stringify(up2.messages.at(-2)));
      assertChatToolTurns(up2, callId);

      const a2 = await send(messages);
      assert.equal(a2.xcache, 'HIT');
      assert.deepEqual(a2.message, a.message);
      const b2 = await send(followUp);
      assert.equal(b2.xcache, 'HIT');
      assert.deepEqual(b2, { ...b, xcache: 'HIT' });
      upstreamCall(relay, m, 2);
    });
  }

  // 2. The OpenAI SDK on an Ollama upstream.
  for (const stream of [false, true]) {
    const how = stream ? 'streamed' : 'not streamed';

    test(`OpenAI SDK → Ollama, ${how}: the answer, /api/chat with stream set; the repeat is a HIT`, T, async () => {
      const m = uniq(`openai-on-ollama-${stream}`);
      const body = {
        model: LLAMA, temperature: 0, max_completion_tokens: MAX_TOKENS,
        messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: m }],
        ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
      };
      const send = async () => {
        const { data, response } = await openai().chat.completions.create(body).withResponse();
        const xcache = response.headers.get('x-cache');
        if (!stream) return { xcache, id: data.id, content: data.choices[0].message.content, finish: data.choices[0].finish_reason, usage: data.usage };
        const s = await readChatStream(data);
        return { xcache, id: [...s.ids][0], content: s.content, finish: s.finish, usage: s.usage };
      };

      const a = await send();
      assert.equal(a.xcache, 'MISS');
      assert.equal(a.content, `Echo: ${m}`);
      assert.equal(a.finish, 'stop');
      assert.ok(a.usage?.completion_tokens > 0, JSON.stringify(a.usage));
      const up = callOn(relay.fake, m);
      assert.equal(up.path, '/api/chat');
      assert.equal(up.json.stream, stream, 'stream set explicitly: Ollama streams unless told not to');
      assert.equal(up.json.model, LLAMA);
      assert.deepEqual(up.json.messages, [{ role: 'system', content: SYSTEM }, { role: 'user', content: m }]);
      assert.equal(up.json.options?.num_predict, MAX_TOKENS);
      assert.equal(up.json.options?.temperature, 0);

      const a2 = await send();
      assert.equal(a2.xcache, 'HIT');
      assert.deepEqual({ ...a2, xcache: 'MISS' }, a, 'the same answer, id included');
      callOn(relay.fake, m);
    });
  }

  // 3. A Gemini stream without alt=sse. The Gemini SDK cannot ask for one:
  // @google/genai 2.x sets alt=sse on every stream request, whatever the
  // URL already holds, and reads only SSE. So this is the raw request other
  // Gemini clients (curl, the REST docs) make, answered with a JSON array.
  test('Gemini :streamGenerateContent without alt=sse → OpenAI: a JSON array of chunks; the repeat is a HIT', T, async () => {
    const m = uniq('gemini-array');
    const body = JSON.stringify({
      systemInstruction: { parts: [{ text: SYSTEM }] },
      contents: [{ role: 'user', parts: [{ text: m }] }],
      generationConfig: { temperature: 0, maxOutputTokens: MAX_TOKENS },
    });
    const send = () => relay.fetch(`/v1beta/models/${GPT}:streamGenerateContent`, {
      method: 'POST', headers: { 'x-goog-api-key': KEY_A, 'content-type': 'application/json' }, body,
    });
    relay.fake.enqueue({ match: m, chunks: 3 });
    const a = await send();
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers.get('x-cache'), 'MISS');
    assert.match(a.headers.get('content-type') ?? '', /^application\/json/);
    const chunks = JSON.parse(a.text);
    assert.ok(Array.isArray(chunks) && chunks.length >= 2, a.text);
    for (const c of chunks) {
      assert.equal(c.candidates?.length, 1, JSON.stringify(c));
      assert.equal(c.candidates[0].content?.role ?? 'model', 'model');
    }
    const text = chunks.flatMap((c) => c.candidates[0].content?.parts ?? []).map((p) => p.text ?? '').join('');
    assert.equal(text, `Echo: ${m}`);
    assert.equal(chunks.at(-1).candidates[0].finishReason, 'STOP');
    assert.ok(chunks.slice(0, -1).every((c) => !c.candidates[0].finishReason), 'finishReason on the last chunk only');
    assert.ok(chunks.at(-1).usageMetadata?.candidatesTokenCount > 0, JSON.stringify(chunks.at(-1)));
    const up = callOn(relay.fake, m);
    assert.equal(up.path, '/v1/chat/completions');
    assert.equal(up.json.stream, true, 'asked upstream as a stream');

    const a2 = await send();
    assert.equal(a2.headers.get('x-cache'), 'HIT');
    assert.equal(a2.text, a.text, 'replayed byte for byte');
    callOn(relay.fake, m);
  });

  // 4. Thinking. An Anthropic client has a place for thinking, an OpenAI
  // Chat upstream returns none: nothing is dropped on a first turn. An
  // earlier turn's thinking block is what that upstream cannot take back.
  test('Anthropic SDK with thinking → OpenAI: reasoning_effort sent, no X-Relay-Dropped; an earlier thinking turn is dropped and said so', T, async () => {
    const m = uniq('thinking-to-openai');
    const ask = (messages) => ({
      model: GPT, max_tokens: 4096, system: SYSTEM, messages,
      thinking: { type: 'enabled', budget_tokens: 2048 },
    });
    // No temperature (Anthropic takes none but 1 with thinking), so the
    // default policy does not cache these: the point here is the header.
    const send = async (body) => {
      const { data, response } = await anthropic().messages.create(body).withResponse();
      return { data, dropped: response.headers.get('x-relay-dropped') };
    };
    const first = [{ role: 'user', content: `Think first. ${m}` }];
    const a = await send(ask(first));
    assert.equal(a.dropped, null, 'nothing dropped: the answer has no reasoning, the client format could carry it');
    assert.deepEqual(a.data.content.map((b) => [b.type, b.text]), [['text', `Echo: Think first. ${m}`]]);
    const up = callOn(relay.fake, m);
    assert.equal(up.path, '/v1/chat/completions');
    assert.equal(up.json.reasoning_effort, 'low', 'a 2048-token budget is low effort');
    assert.equal(up.json.thinking, undefined);
    assert.equal(up.json.max_completion_tokens ?? up.json.max_tokens, 4096, 'the cap as is: both count reasoning in it');

    const m2 = uniq('thinking-turn-to-openai');
    const later = [
      { role: 'user', content: `Think first. ${m2}` },
      { role: 'assistant', content: [
        { type: 'thinking', thinking: 'The user wants an echo.', signature: 'c2ln' },
        { type: 'text', text: 'Echo.' },
      ] },
      { role: 'user', content: `Again. ${m2}` },
    ];
    const b = await send(ask(later));
    assert.equal(b.dropped, 'thinking', 'the earlier thinking block has no place upstream');
    assert.equal(b.data.content[0].text, `Echo: Again. ${m2}`);
    const up2 = callOn(relay.fake, m2);
    assert.equal(up2.json.messages.at(-2).role, 'assistant');
    assert.equal(up2.json.messages.at(-2).content, 'Echo.', 'the text kept, the thinking gone');
  });

  for (const stream of [false, true]) {
    const how = stream ? 'streamed' : 'not streamed';

    test(`OpenAI SDK with reasoning_effort → Anthropic thinking, ${how}: X-Relay-Dropped: thinking, the text intact`, T, async () => {
      const m = uniq(`effort-to-anthropic-${stream}`);
      // No token cap: Anthropic's default (4096) plus the budget. No
      // temperature either (Anthropic takes none but 1 with thinking), so the
      // answer is cached because the client asks (X-Relay-Cache: on).
      const body = {
        model: CLAUDE, reasoning_effort: 'low',
        messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: m }],
        ...(stream ? { stream: true } : {}),
      };
      const send = async () => {
        const { data, response } = await openai().chat.completions.create(body, { headers: { 'x-relay-cache': 'on' } }).withResponse();
        const r = { xcache: response.headers.get('x-cache'), dropped: response.headers.get('x-relay-dropped') };
        if (!stream) return { ...r, content: data.choices[0].message.content, finish: data.choices[0].finish_reason };
        const s = await readChatStream(data);
        return { ...r, content: s.content, finish: s.finish };
      };
      const a = await send();
      assert.equal(a.xcache, 'MISS');
      assert.equal(a.dropped, 'thinking');
      assert.equal(a.content, `Echo: ${m}`, 'the text alone, no thinking in it');
      assert.equal(a.finish, 'stop');
      const up = callOn(fakeClaude, m);
      assert.equal(up.path, '/v1/messages');
      assert.deepEqual(up.json.thinking, { type: 'enabled', budget_tokens: 2048 });
      assert.equal(up.json.max_tokens, 4096 + 2048, 'the budget on top of the default cap');
      // What the fake sent did hold a thinking block.
      assert.match(up.sent, /thinking/);

      const a2 = await send();
      assert.equal(a2.xcache, 'HIT');
      assert.equal(a2.content, a.content);
      callOn(fakeClaude, m);
    });
  }

  // 5. The model list over an Anthropic and an OpenAI (and an Ollama)
  // upstream, through the OpenAI SDK.
  test('OpenAI SDK models.list(): the models of the Anthropic, OpenAI and Ollama upstreams', T, async () => {
    // The Anthropic fake's own list (tests/fake/anthropic.mjs).
    const claudeModels = ['claude-sonnet-4-5', 'claude-haiku-4-5'];
    const listed = [];
    for await (const model of openai().models.list()) listed.push([model.id, model.owned_by]);
    // The path's own upstream first (its models that route to no other),
    // then each [models] target's models that route back to it: Claude's
    // (listed by the Anthropic fake in its own shape) and the Ollama
    // upstream's llama* ones (qwen3 routes nowhere near it: left out).
    assert.deepEqual(listed, [
      ['gpt-4o-mini', 'openai'], ['gpt-4o', 'openai'], ['gpt-4.1-nano', 'openai'], ['text-embedding-3-small', 'openai'],
      ...claudeModels.map((id) => [id, 'claude']),
      ['llama3.2:latest', 'local'],
    ]);
    const claudeCalls = fakeClaude.calls.filter((c) => c.method === 'GET' && c.path === '/v1/models');
    assert.equal(claudeCalls.length, 1);
    assert.ok(claudeCalls[0].headers['anthropic-version'], 'listed in Anthropic\'s format');
    assert.equal(claudeCalls[0].headers['x-api-key'], KEY_A, 'the client\'s key in Anthropic\'s header');
    assert.equal(relay.fake.calls.filter((c) => c.method === 'GET' && c.path === '/v1/models').length, 1);
    assert.equal(relay.fake.calls.filter((c) => c.method === 'GET' && c.path === '/api/tags').length, 1);
  });
});
