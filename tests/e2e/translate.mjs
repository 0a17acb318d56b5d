// Shared by the translation suites (issue 17: any client on any upstream):
// the relay.ini they run on, the tool every round trip offers, and readers
// for what each wire format carries (system prompts, tool results) written
// once, so each suite asserts what its upstream received and what its SDK
// client got.
//
// Routing under test (the config contract of issue 17): the path picks the
// first upstream of its type ([upstream.openai] for /v1/chat/completions and
// /v1/responses, [upstream.claude] for /v1/messages, [upstream.gemini] for
// /v1beta/...), then [models] sends the request to the upstream serving the
// model the client named, which must speak or `accepts` the client's format.
// All three upstreams are the suite's one fake (tests/fake/upstream.mjs
// answers each format at its own paths), so a call's path says which format
// it was translated to.

import assert from 'node:assert/strict';

// The harness options of a translating relay (relaySuite(name, TRANSLATE, ...)).
export const TRANSLATE = {
  upstreams: [
    { name: 'claude', type: 'anthropic', accepts: 'openai' },
    { name: 'gemini', type: 'gemini', accepts: 'openai' },
  ],
  ini: {
    'upstream.openai': { accepts: 'anthropic, gemini' },
    models: { 'claude-*': 'claude', 'gemini-*': 'gemini', 'gpt-*': 'openai' },
  },
  // Two identical streams at once (the coalescing case): under mod_fcgid the
  // harness has Apache run two relay.fcgi processes first.
  concurrency: 2,
};

// The models the clients name, one per upstream.
export const CLAUDE = 'claude-sonnet-4-5';
export const GEMINI = 'gemini-2.5-flash';
export const GPT = 'gpt-4o-mini';

export const SYSTEM = 'You are a terse weather bot.';
export const MAX_TOKENS = 200;
export const RESULT = 'sunny, 21C';
export const CITY_ARGS = { city: 'Oslo' };
// The tool's JSON schema (OpenAI and Anthropic carry JSON Schema as is).
export const PARAMS = {
  type: 'object',
  properties: { city: { type: 'string', description: 'the city' } },
  required: ['city'],
};
export const TOOL = { name: 'get_weather', description: 'The weather now in a city.' };

// What the fake answers to the first half of a round trip: a call to the
// tool with CITY_ARGS, taken only by the request carrying marker m.
export const callTheTool = (m) => ({ match: m, toolCalls: [{ name: TOOL.name, arguments: JSON.stringify(CITY_ARGS) }] });

// The text of an Anthropic system / tool_result content, or an OpenAI
// message content: a string, or the text of its text parts.
export function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p?.text === 'string' ? p.text : '')).join('');
  return '';
}

// The one upstream call that carries marker m, parsed; asserts there is
// exactly `count` of them and returns the last.
export function upstreamCall(relay, m, count = 1) {
  const calls = relay.fake.callsFor(m);
  assert.equal(calls.length, count, `upstream calls carrying the marker: ${calls.map((c) => `${c.method} ${c.path}`).join(', ')}`);
  const call = calls.at(-1);
  return { ...call, json: JSON.parse(call.body) };
}

// Asserts an upstream request in Anthropic's format: the system prompt
// lifted out of the messages, max_tokens set, the tool as input_schema.
export function assertAnthropicRequest(call, { model, stream, maxTokens = MAX_TOKENS }) {
  const b = call.json;
  assert.equal(call.path, '/v1/messages', 'translated to Anthropic Messages');
  assert.ok(call.headers['anthropic-version'], 'anthropic-version is sent');
  assert.equal(b.model, model);
  assert.equal(textOf(b.system), SYSTEM, 'the system prompt is lifted');
  assert.ok(b.messages.every((x) => x.role === 'user' || x.role === 'assistant'), JSON.stringify(b.messages));
  assert.equal(b.max_tokens, maxTokens);
  assert.equal(b.temperature, 0);
  assert.equal(Boolean(b.stream), stream);
  assert.deepEqual(b.tools, [{ ...TOOL, input_schema: PARAMS }]);
  return b;
}

// Asserts an upstream request in Gemini's format.
export function assertGeminiRequest(call, { model, stream }) {
  const b = call.json;
  const method = stream ? 'streamGenerateContent' : 'generateContent';
  assert.equal(call.path, `/v1beta/models/${model}:${method}`);
  if (stream) assert.match(call.query, /(^|&)alt=sse(&|$)/, 'streams ask for SSE');
  assert.ok(call.headers['x-goog-api-key'] || /(^|&)key=/.test(call.query), 'a Gemini credential is sent');
  assert.equal(textOf(b.systemInstruction?.parts), SYSTEM, 'the system prompt is systemInstruction');
  assert.ok(b.contents.every((c) => c.role === 'user' || c.role === 'model'), JSON.stringify(b.contents));
  assert.equal(b.generationConfig?.maxOutputTokens, MAX_TOKENS);
  assert.equal(b.generationConfig?.temperature, 0);
  const decls = (b.tools ?? []).flatMap((t) => t.functionDeclarations ?? []);
  assert.equal(decls.length, 1, JSON.stringify(b.tools));
  assert.equal(decls[0].name, TOOL.name);
  assert.equal(decls[0].description, TOOL.description);
  return b;
}

// Asserts an upstream request in OpenAI Chat Completions' format.
export function assertChatRequest(call, { model, stream, params = PARAMS }) {
  const b = call.json;
  assert.equal(call.path, '/v1/chat/completions', 'translated to OpenAI Chat Completions');
  assert.equal(b.model, model);
  assert.equal(b.messages[0].role, 'system');
  assert.equal(textOf(b.messages[0].content), SYSTEM);
  assert.equal(b.max_completion_tokens ?? b.max_tokens, MAX_TOKENS);
  assert.equal(b.temperature, 0);
  assert.equal(Boolean(b.stream), stream);
  if (stream) assert.equal(b.stream_options?.include_usage, true, 'a translated stream asks for its usage');
  assert.equal(b.tools.length, 1);
  assert.equal(b.tools[0].type, 'function');
  assert.equal(b.tools[0].function.name, TOOL.name);
  assert.equal(b.tools[0].function.description, TOOL.description);
  assert.deepEqual(b.tools[0].function.parameters, params);
  return b;
}

// The second half of a round trip as an Anthropic upstream received it:
// the assistant's tool_use (id kept) and the user's tool_result for it.
export function assertAnthropicToolTurns(b, id) {
  const [assistant, user] = b.messages.slice(-2);
  assert.equal(assistant.role, 'assistant');
  const use = assistant.content.find((x) => x.type === 'tool_use');
  assert.deepEqual({ id: use.id, name: use.name, input: use.input }, { id, name: TOOL.name, input: CITY_ARGS });
  assert.equal(user.role, 'user');
  const result = user.content.find((x) => x.type === 'tool_result');
  assert.equal(result.tool_use_id, id);
  assert.equal(textOf(result.content), RESULT);
}

// The same for a Gemini upstream: functionCall in a model turn, then the
// functionResponse (named, as Gemini pairs by name) carrying the result.
export function assertGeminiToolTurns(b) {
  const [model, user] = b.contents.slice(-2);
  assert.equal(model.role, 'model');
  const fc = model.parts.find((p) => p.functionCall)?.functionCall;
  assert.equal(fc?.name, TOOL.name, JSON.stringify(model));
  assert.deepEqual(fc.args, CITY_ARGS);
  assert.equal(user.role, 'user');
  const fr = user.parts.find((p) => p.functionResponse)?.functionResponse;
  assert.equal(fr?.name, TOOL.name, JSON.stringify(user));
  assert.ok(JSON.stringify(fr.response).includes(RESULT), JSON.stringify(fr));
}

// The same for an OpenAI Chat upstream: the assistant's tool_calls, then a
// role "tool" message answering the call's id.
export function assertChatToolTurns(b, id) {
  const [assistant, tool] = b.messages.slice(-2);
  assert.equal(assistant.role, 'assistant');
  assert.equal(assistant.tool_calls.length, 1);
  const [tc] = assistant.tool_calls;
  assert.equal(tc.id, id);
  assert.equal(tc.type, 'function');
  assert.equal(tc.function.name, TOOL.name);
  assert.deepEqual(JSON.parse(tc.function.arguments), CITY_ARGS);
  assert.equal(tool.role, 'tool');
  assert.equal(tool.tool_call_id, id);
  assert.ok(textOf(tool.content).includes(RESULT), JSON.stringify(tool));
}

// The final text the fakes give for a tool result (RESULT itself for
// OpenAI and Anthropic, inside the functionResponse's JSON for Gemini).
export const SAID = new RegExp(`^Tool said: .*${RESULT}`);

// Reads an OpenAI chat stream (the SDK's chunks) into one answer, checking
// the chunks' shape on the way: one id, tool call arguments in pieces
// indexed, finish_reason once, usage only on the last chunk.
export async function readChatStream(stream) {
  const out = { ids: new Set(), content: '', toolCalls: [], finish: null, usage: null, chunks: 0 };
  for await (const c of stream) {
    out.chunks++;
    assert.equal(out.usage, null, 'a chunk after the usage chunk');
    out.ids.add(c.id);
    assert.equal(c.object, 'chat.completion.chunk');
    if (c.usage) out.usage = c.usage;
    for (const ch of c.choices ?? []) {
      if (ch.delta?.content) out.content += ch.delta.content;
      for (const t of ch.delta?.tool_calls ?? []) {
        const slot = (out.toolCalls[t.index] ??= { id: null, name: '', arguments: '' });
        if (t.id) slot.id = t.id;
        if (t.function?.name) slot.name += t.function.name;
        if (t.function?.arguments) slot.arguments += t.function.arguments;
      }
      if (ch.finish_reason) {
        assert.equal(out.finish, null, 'finish_reason twice');
        out.finish = ch.finish_reason;
      }
    }
  }
  assert.equal(out.ids.size, 1, `chunk ids: ${[...out.ids]}`);
  return out;
}

// Reads a Responses API stream (the SDK's events): the event types in
// order, the function call arguments' deltas joined, and the final
// response of response.completed.
export async function readResponsesStream(stream) {
  const out = { types: [], argDeltas: '', textDeltas: '', final: null };
  for await (const e of stream) {
    out.types.push(e.type);
    if (e.type === 'response.function_call_arguments.delta') out.argDeltas += e.delta;
    if (e.type === 'response.output_text.delta') out.textDeltas += e.delta;
    if (e.type === 'response.completed') out.final = e.response;
  }
  assert.equal(out.types[0], 'response.created', out.types.join(' '));
  assert.equal(out.types.at(-1), 'response.completed', out.types.join(' '));
  return out;
}

// Reads an Anthropic stream (the SDK's raw events) into a message: blocks
// assembled from their deltas (tool input from input_json_delta pieces),
// the stop reason and usage of message_delta.
export async function readAnthropicStream(stream) {
  const out = { types: [], blocks: [], stop: null, usage: null, id: null };
  for await (const e of stream) {
    out.types.push(e.type);
    if (e.type === 'message_start') out.id = e.message.id;
    if (e.type === 'content_block_start') out.blocks[e.index] = { ...e.content_block, json: '' };
    if (e.type === 'content_block_delta') {
      const b = out.blocks[e.index];
      if (e.delta.type === 'text_delta') b.text += e.delta.text;
      if (e.delta.type === 'input_json_delta') b.json += e.delta.partial_json;
    }
    if (e.type === 'message_delta') {
      out.stop = e.delta.stop_reason;
      out.usage = e.usage;
    }
  }
  assert.equal(out.types[0], 'message_start', out.types.join(' '));
  assert.equal(out.types.at(-1), 'message_stop', out.types.join(' '));
  for (const b of out.blocks) {
    if (b.type === 'tool_use') b.input = JSON.parse(b.json || '{}');
    delete b.json;
  }
  return out;
}
