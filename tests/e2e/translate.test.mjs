// The OpenAI SDK on Claude and on Gemini (issue 17): chat.completions and
// responses, through the front and Relay, to the fake's Anthropic and Gemini
// APIs, routed by model ([models] claude-* = claude, gemini-* = gemini; see
// translate.mjs). Each case is a tool-call round trip, streamed and not: the
// model asks for get_weather, the client sends the result, the model answers
// with text naming it; then the exact repeat of both requests is a HIT with
// the same answer and no new upstream call. The upstream's side is asserted
// too: what each translated request carried (system lifted, max_tokens,
// the tool's schema, the call and its result paired by id or name).
//
// Errors, cut streams and coalescing: translate-errors.test.mjs; the
// Anthropic and Gemini SDKs on an OpenAI upstream: translate-sdks.test.mjs;
// Claude Code: translate-claude-code.test.mjs.
//
// e2e-fronts: caddy nginx (translation is the pool's; two fronts check the
// translated streams pass both the same way)

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, uniq, TEST_TIMEOUT } from './harness.mjs';
import {
  TRANSLATE, CLAUDE, GEMINI, SYSTEM, MAX_TOKENS, RESULT, CITY_ARGS, PARAMS, TOOL, SAID,
  callTheTool, upstreamCall, assertAnthropicRequest, assertGeminiRequest, assertAnthropicToolTurns,
  assertGeminiToolTurns, readChatStream, readResponsesStream,
} from './translate.mjs';

const T = { timeout: TEST_TIMEOUT };

// Per upstream: the model that routes there, how its upstream request and
// its tool turns are checked, and the id its answers give the tool call
// (Anthropic's tool_use id, kept; Gemini's functionCall has none, so Relay
// numbers it: xlate_tool_id).
const TARGETS = [
  {
    name: 'Anthropic',
    model: CLAUDE,
    request: assertAnthropicRequest,
    toolTurns: assertAnthropicToolTurns,
    callId: /^toolu_fake\d+_0$/,
  },
  {
    name: 'Gemini',
    model: GEMINI,
    request: assertGeminiRequest,
    toolTurns: (b) => assertGeminiToolTurns(b),
    callId: /^call_0$/,
  },
];

relaySuite('translation: the OpenAI SDK on Anthropic and Gemini upstreams', TRANSLATE, (relay) => {
  const client = () => relay.client();

  for (const target of TARGETS) {
    for (const stream of [false, true]) {
      const how = stream ? 'streamed' : 'not streamed';

      test(`chat.completions → ${target.name}, ${how}: tool call, result, answer; the repeat is a HIT`, T, async () => {
        const m = uniq(`chat-${target.name}-${how}`);
        const tools = [{ type: 'function', function: { ...TOOL, parameters: PARAMS } }];
        const ask = (messages) => ({
          model: target.model, messages, tools, temperature: 0, max_tokens: MAX_TOKENS,
          ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
        });
        // One answer in the shape non-stream answers have, either way.
        const send = async (body) => {
          const { data, response } = await client().chat.completions.create(body).withResponse();
          const xcache = response.headers.get('x-cache');
          if (!stream) {
            const [choice] = data.choices;
            return { xcache, id: data.id, message: choice.message, finish: choice.finish_reason, usage: data.usage };
          }
          const s = await readChatStream(data);
          const message = { role: 'assistant', content: s.content || null };
          if (s.toolCalls.length) {
            message.tool_calls = s.toolCalls.map((t) => ({ id: t.id, type: 'function', function: { name: t.name, arguments: t.arguments } }));
          }
          return { xcache, id: [...s.ids][0], message, finish: s.finish, usage: s.usage };
        };

        const messages = [{ role: 'system', content: SYSTEM }, { role: 'user', content: `Weather in Oslo? ${m}` }];
        relay.fake.enqueue(callTheTool(m));
        const a = await send(ask(messages));
        assert.equal(a.xcache, 'MISS');
        assert.equal(a.finish, 'tool_calls');
        assert.equal(a.message.tool_calls.length, 1, JSON.stringify(a.message));
        const [call] = a.message.tool_calls;
        assert.match(call.id, target.callId);
        assert.equal(call.function.name, TOOL.name);
        assert.deepEqual(JSON.parse(call.function.arguments), CITY_ARGS);
        assert.ok(a.usage.prompt_tokens > 0 && a.usage.completion_tokens > 0, JSON.stringify(a.usage));
        assert.equal(a.usage.total_tokens, a.usage.prompt_tokens + a.usage.completion_tokens);
        const up1 = target.request(upstreamCall(relay, m, 1), { model: target.model, stream });
        assert.equal(up1.messages?.length ?? up1.contents.length, 1, 'one user turn');

        // The SDK's own message goes back as is, as its docs show.
        const followUp = [...messages, a.message, { role: 'tool', tool_call_id: call.id, content: RESULT }];
        const b = await send(ask(followUp));
        assert.equal(b.xcache, 'MISS');
        assert.equal(b.finish, 'stop');
        assert.match(b.message.content, SAID);
        assert.equal(b.message.tool_calls ?? undefined, undefined);
        const up2 = target.request(upstreamCall(relay, m, 2), { model: target.model, stream });
        target.toolTurns(up2, call.id);

        // The exact repeats: answered from the cache, in the client's format.
        const a2 = await send(ask(messages));
        assert.equal(a2.xcache, 'HIT');
        assert.deepEqual(a2.message.tool_calls, a.message.tool_calls, 'the same call, ids included');
        assert.equal(a2.id, a.id);
        const b2 = await send(ask(followUp));
        assert.equal(b2.xcache, 'HIT');
        assert.equal(b2.message.content, b.message.content);
        assert.deepEqual(b2.usage, b.usage, 'usage replayed');
        upstreamCall(relay, m, 2); // still two
      });

      test(`responses → ${target.name}, ${how}: function_call, function_call_output, answer; the repeat is a HIT`, T, async () => {
        const m = uniq(`responses-${target.name}-${how}`);
        const tools = [{ type: 'function', ...TOOL, parameters: PARAMS, strict: false }];
        // store: false: a stored response is upstream state, which Relay
        // does not cache (DESIGN.md); stateless clients send it.
        const ask = (input) => ({
          model: target.model, instructions: SYSTEM, input, tools, temperature: 0,
          max_output_tokens: MAX_TOKENS, store: false, ...(stream ? { stream: true } : {}),
        });
        const send = async (body) => {
          const { data, response } = await client().responses.create(body).withResponse();
          const xcache = response.headers.get('x-cache');
          if (!stream) return { xcache, r: data };
          const s = await readResponsesStream(data);
          const calls = s.final.output.filter((o) => o.type === 'function_call');
          if (calls.length) {
            assert.ok(s.types.includes('response.function_call_arguments.delta'), s.types.join(' '));
            assert.equal(s.argDeltas, calls.map((c) => c.arguments).join(''), 'the arguments as streamed');
          } else {
            assert.ok(s.types.includes('response.output_text.delta'), s.types.join(' '));
          }
          return { xcache, r: s.final, textDeltas: s.textDeltas };
        };
        const textOut = (r) => r.output.filter((o) => o.type === 'message')
          .flatMap((o) => o.content).filter((c) => c.type === 'output_text').map((c) => c.text).join('');

        const input = [{ role: 'user', content: `Weather in Oslo? ${m}` }];
        relay.fake.enqueue(callTheTool(m));
        const a = await send(ask(input));
        assert.equal(a.xcache, 'MISS');
        assert.equal(a.r.status, 'completed');
        const fcs = a.r.output.filter((o) => o.type === 'function_call');
        assert.equal(fcs.length, 1, JSON.stringify(a.r.output));
        assert.match(fcs[0].call_id, target.callId);
        assert.equal(fcs[0].name, TOOL.name);
        assert.deepEqual(JSON.parse(fcs[0].arguments), CITY_ARGS);
        assert.ok(a.r.usage.input_tokens > 0 && a.r.usage.output_tokens > 0, JSON.stringify(a.r.usage));
        target.request(upstreamCall(relay, m, 1), { model: target.model, stream });

        // The output items go back as they came, then the result.
        const followUp = [...input, ...a.r.output, { type: 'function_call_output', call_id: fcs[0].call_id, output: RESULT }];
        const b = await send(ask(followUp));
        assert.equal(b.xcache, 'MISS');
        assert.match(textOut(b.r), SAID);
        if (stream) assert.equal(b.textDeltas, textOut(b.r));
        assert.equal(b.r.output.filter((o) => o.type === 'function_call').length, 0);
        const up2 = target.request(upstreamCall(relay, m, 2), { model: target.model, stream });
        target.toolTurns(up2, fcs[0].call_id);

        const a2 = await send(ask(input));
        assert.equal(a2.xcache, 'HIT');
        assert.deepEqual(a2.r.output, a.r.output, 'the same output items, ids included');
        const b2 = await send(ask(followUp));
        assert.equal(b2.xcache, 'HIT');
        assert.equal(textOut(b2.r), textOut(b.r));
        upstreamCall(relay, m, 2);
      });
    }
  }

  test('chat.completions → Anthropic: a plain answer keeps stop and usage; stream and non-stream share one entry', T, async () => {
    const m = uniq('chat-plain');
    const body = { model: CLAUDE, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: m }], temperature: 0, max_tokens: MAX_TOKENS };
    const { data: a, response: h1 } = await client().chat.completions.create(body).withResponse();
    assert.equal(h1.headers.get('x-cache'), 'MISS');
    assert.equal(a.object, 'chat.completion');
    assert.equal(a.model, CLAUDE, 'the model as the client named it');
    assert.equal(a.choices[0].message.content, `Echo: ${m}`);
    assert.equal(a.choices[0].finish_reason, 'stop');
    const up = upstreamCall(relay, m);
    assert.equal(up.json.max_tokens, MAX_TOKENS);
    assert.equal(up.json.tools, undefined, 'no tools invented');
    // The same request streamed: the entry answers it, in chunks.
    const { data: s, response: h2 } = await client().chat.completions.create({ ...body, stream: true }).withResponse();
    assert.equal(h2.headers.get('x-cache'), 'HIT');
    const got = await readChatStream(s);
    assert.equal(got.content, `Echo: ${m}`);
    assert.equal(got.finish, 'stop');
    upstreamCall(relay, m, 1);
  });
});
