// The Anthropic SDK and the Gemini SDK on an OpenAI-compatible upstream
// (issue 17): /v1/messages and /v1beta/models/gpt-4o-mini:generateContent
// through the front and Relay, routed by model (gpt-* = openai, an upstream
// that accepts anthropic and gemini; see translate.mjs) to the fake's Chat
// Completions. Each case is a tool-call round trip, streamed and not, then
// the exact repeats answered from the cache (HIT, no new upstream call).
//
// e2e-fronts: caddy nginx (translation is the pool's; two fronts check the
// translated streams pass both the same way)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';

import { relaySuite, uniq, KEY_A, REQUEST_TIMEOUT, TEST_TIMEOUT } from './harness.mjs';
import {
  TRANSLATE, GPT, SYSTEM, MAX_TOKENS, RESULT, CITY_ARGS, PARAMS, TOOL, SAID,
  callTheTool, upstreamCall, assertChatRequest, assertChatToolTurns, readAnthropicStream,
} from './translate.mjs';

const T = { timeout: TEST_TIMEOUT };

relaySuite('translation: the Anthropic and Gemini SDKs on an OpenAI upstream', TRANSLATE, (relay) => {
  const anthropic = () => new Anthropic({ baseURL: relay.base, apiKey: KEY_A, maxRetries: 0, timeout: REQUEST_TIMEOUT });
  const gemini = () => new GoogleGenAI({ apiKey: KEY_A, httpOptions: { baseUrl: relay.base, timeout: REQUEST_TIMEOUT } });

  for (const stream of [false, true]) {
    const how = stream ? 'streamed' : 'not streamed';

    test(`Anthropic SDK → OpenAI, ${how}: tool_use, tool_result, answer; the repeat is a HIT`, T, async () => {
      const m = uniq(`anthropic-sdk-${how}`);
      const ask = (messages) => ({
        model: GPT, system: SYSTEM, messages, max_tokens: MAX_TOKENS, temperature: 0,
        tools: [{ ...TOOL, input_schema: PARAMS }], ...(stream ? { stream: true } : {}),
      });
      // One message in the non-stream shape, either way.
      const send = async (body) => {
        const { data, response } = await anthropic().messages.create(body).withResponse();
        const xcache = response.headers.get('x-cache');
        if (!stream) return { xcache, id: data.id, content: data.content, stop: data.stop_reason, usage: data.usage };
        const s = await readAnthropicStream(data);
        return { xcache, id: s.id, content: s.blocks, stop: s.stop, usage: s.usage };
      };

      const messages = [{ role: 'user', content: `Weather in Oslo? ${m}` }];
      relay.fake.enqueue(callTheTool(m));
      const a = await send(ask(messages));
      assert.equal(a.xcache, 'MISS');
      assert.equal(a.stop, 'tool_use');
      const uses = a.content.filter((b) => b.type === 'tool_use');
      assert.equal(uses.length, 1, JSON.stringify(a.content));
      assert.match(uses[0].id, /^call_fake\d+_0$/, 'the upstream call id, kept');
      assert.equal(uses[0].name, TOOL.name);
      assert.deepEqual(uses[0].input, CITY_ARGS);
      assert.ok(a.usage.output_tokens > 0, JSON.stringify(a.usage));
      assertChatRequest(upstreamCall(relay, m, 1), { model: GPT, stream });

      const followUp = [
        ...messages,
        { role: 'assistant', content: a.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: uses[0].id, content: RESULT }] },
      ];
      const b = await send(ask(followUp));
      assert.equal(b.xcache, 'MISS');
      assert.equal(b.stop, 'end_turn');
      assert.equal(b.content.length, 1, JSON.stringify(b.content));
      assert.equal(b.content[0].type, 'text');
      assert.equal(b.content[0].text, `Tool said: ${RESULT}`);
      const up2 = assertChatRequest(upstreamCall(relay, m, 2), { model: GPT, stream });
      assertChatToolTurns(up2, uses[0].id);

      const a2 = await send(ask(messages));
      assert.equal(a2.xcache, 'HIT');
      assert.deepEqual(a2.content, a.content, 'the same tool_use, id included');
      assert.equal(a2.id, a.id);
      const b2 = await send(ask(followUp));
      assert.equal(b2.xcache, 'HIT');
      assert.deepEqual(b2.content, b.content);
      assert.deepEqual(b2.usage, b.usage, 'usage replayed');
      upstreamCall(relay, m, 2);
    });

    test(`Gemini SDK → OpenAI, ${how}: functionCall, functionResponse, answer; the repeat is a HIT`, T, async () => {
      const m = uniq(`gemini-sdk-${how}`);
      // Gemini's Schema (upper-case types), which OpenAI knows as JSON Schema.
      const geminiParams = { type: 'OBJECT', properties: { city: { type: 'STRING', description: 'the city' } }, required: ['city'] };
      const config = {
        systemInstruction: SYSTEM, temperature: 0, maxOutputTokens: MAX_TOKENS,
        tools: [{ functionDeclarations: [{ ...TOOL, parameters: geminiParams }] }],
      };
      // The answer as one response (a stream's chunks merged), with the
      // X-Cache of its first chunk.
      const send = async (contents) => {
        const req = { model: GPT, contents, config };
        if (!stream) {
          const r = await gemini().models.generateContent(req);
          return { xcache: r.sdkHttpResponse?.headers?.['x-cache'], parts: r.candidates[0].content.parts, content: r.candidates[0].content, finish: r.candidates[0].finishReason, usage: r.usageMetadata };
        }
        const chunks = [];
        for await (const c of await gemini().models.generateContentStream(req)) chunks.push(c);
        assert.ok(chunks.length >= 1);
        const parts = chunks.flatMap((c) => c.candidates?.[0]?.content?.parts ?? []);
        const text = parts.filter((p) => typeof p.text === 'string').map((p) => p.text).join('');
        const merged = [...parts.filter((p) => p.functionCall), ...(text ? [{ text }] : [])];
        return {
          xcache: chunks[0].sdkHttpResponse?.headers?.['x-cache'],
          parts: merged,
          content: { role: 'model', parts: merged },
          finish: chunks.at(-1).candidates[0].finishReason,
          usage: chunks.at(-1).usageMetadata,
        };
      };

      const contents = [{ role: 'user', parts: [{ text: `Weather in Oslo? ${m}` }] }];
      relay.fake.enqueue(callTheTool(m));
      const a = await send(contents);
      assert.equal(a.xcache, 'MISS');
      assert.equal(a.finish, 'STOP');
      const fcs = a.parts.filter((p) => p.functionCall).map((p) => p.functionCall);
      assert.equal(fcs.length, 1, JSON.stringify(a.parts));
      assert.equal(fcs[0].name, TOOL.name);
      assert.deepEqual(fcs[0].args, CITY_ARGS);
      assert.ok(a.usage.promptTokenCount > 0 && a.usage.candidatesTokenCount > 0, JSON.stringify(a.usage));
      // The schema as JSON Schema: lower-case types, which OpenAI requires.
      assertChatRequest(upstreamCall(relay, m, 1), { model: GPT, stream, params: PARAMS });

      const followUp = [
        ...contents,
        a.content,
        { role: 'user', parts: [{ functionResponse: { name: TOOL.name, response: { result: RESULT } } }] },
      ];
      const b = await send(followUp);
      assert.equal(b.xcache, 'MISS');
      assert.equal(b.finish, 'STOP');
      assert.equal(b.parts.length, 1, JSON.stringify(b.parts));
      assert.match(b.parts[0].text, SAID);
      const up2 = assertChatRequest(upstreamCall(relay, m, 2), { model: GPT, stream, params: PARAMS });
      // Gemini names no call id: the call and its result share one Relay made.
      const callId = up2.messages.at(-2).tool_calls?.[0]?.id;
      assert.ok(callId, JSON.stringify(up2.messages.at(-2)));
      assertChatToolTurns(up2, callId);

      const a2 = await send(contents);
      assert.equal(a2.xcache, 'HIT');
      assert.deepEqual(a2.parts, a.parts);
      const b2 = await send(followUp);
      assert.equal(b2.xcache, 'HIT');
      assert.deepEqual(b2.parts, b.parts);
      assert.deepEqual(b2.usage, b.usage, 'usage replayed');
      upstreamCall(relay, m, 2);
    });
  }
});
