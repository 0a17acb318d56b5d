// Reading OpenAI's wire format in tests: SSE streams of chat.completion.chunk
// events, and the checks that an error body has OpenAI's shape.
//
// Deliberately independent of the SDK, so a test can look at the exact bytes
// a client received and the SDK tests can be compared against it.

import assert from 'node:assert/strict';

// Splits an SSE body into events. Each event is {event, data, fields, raw}:
// event is its `event:` name (null without one), data joins its `data:`
// lines with "\n" (as the SSE spec says), fields keeps every field, raw is
// the event's text. Comment lines (": ping") are
// dropped, as clients drop them. Accepts "\n" and "\r\n" line ends.
export function parseSse(text) {
  const events = [];
  for (const block of text.replace(/\r\n/g, '\n').split(/\n\n/)) {
    if (block.trim() === '') continue;
    const data = [];
    const fields = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const name = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      fields.push([name, value]);
      if (name === 'data') data.push(value);
    }
    if (fields.length === 0) continue; // only comments
    const named = fields.filter(([n]) => n === 'event').at(-1);
    events.push({ event: named ? named[1] : null, data: data.length ? data.join('\n') : null, fields, raw: block });
  }
  return events;
}

// The JSON payloads of a stream's data events, up to (not including)
// `[DONE]`, plus whether `[DONE]` was there and was last.
export function streamPayloads(text) {
  const events = parseSse(text).filter((e) => e.data !== null);
  const payloads = [];
  let done = false;
  let afterDone = 0;
  for (const e of events) {
    if (done) {
      afterDone++;
      continue;
    }
    if (e.data === '[DONE]') {
      done = true;
      continue;
    }
    let json;
    try {
      json = JSON.parse(e.data);
    } catch {
      assert.fail(`stream event is not JSON: ${JSON.stringify(e.data)}`);
    }
    payloads.push(json);
  }
  return { payloads, done, afterDone };
}

// Checks a complete, successful chat completion stream: every event before
// `data: [DONE]` is a chat.completion.chunk of one id, and `[DONE]` is the
// last event. Returns what a client would assemble from it.
export function assertValidChatStream(text) {
  const { payloads, done, afterDone } = streamPayloads(text);
  assert.ok(done, `stream does not end with data: [DONE]:\n${text.slice(-400)}`);
  assert.equal(afterDone, 0, 'events after data: [DONE]');
  assert.ok(payloads.length > 0, 'no chunks before [DONE]');
  const ids = new Set();
  for (const p of payloads) {
    assert.equal(p.error, undefined, `error event in a successful stream: ${JSON.stringify(p)}`);
    assert.equal(p.object, 'chat.completion.chunk', `not a chunk: ${JSON.stringify(p)}`);
    assert.ok(Array.isArray(p.choices), `chunk without choices: ${JSON.stringify(p)}`);
    assert.equal(typeof p.created, 'number');
    assert.equal(typeof p.model, 'string');
    ids.add(p.id);
  }
  assert.equal(ids.size, 1, `chunks carry different ids: ${[...ids].join(', ')}`);
  return assembleChunks(payloads);
}

// What a client makes of a list of chunks (choice 0): the id, content,
// tool calls (arguments concatenated per index), finish reason and usage.
export function assembleChunks(payloads) {
  let content = null;
  let role = null;
  let finishReason = null;
  let usage = null;
  let id = null;
  let model = null;
  const tools = [];
  for (const p of payloads) {
    id ??= p.id;
    model ??= p.model;
    if (p.usage) usage = p.usage;
    const choice = (p.choices ?? []).find((c) => c.index === 0);
    if (!choice) continue;
    const d = choice.delta ?? {};
    if (d.role) role = d.role;
    if (typeof d.content === 'string') content = (content ?? '') + d.content;
    for (const tc of d.tool_calls ?? []) {
      const t = (tools[tc.index] ??= { id: null, type: null, function: { name: '', arguments: '' } });
      if (tc.id) t.id = tc.id;
      if (tc.type) t.type = tc.type;
      if (tc.function?.name) t.function.name += tc.function.name;
      if (tc.function?.arguments) t.function.arguments += tc.function.arguments;
    }
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
  return {
    id,
    model,
    role,
    content,
    toolCalls: tools.length ? tools : null,
    finishReason,
    usage,
    chunks: payloads.length,
  };
}

// Checks {"error":{"message":string,"type":string,"code":...}} and returns
// the inner object.
export function assertOpenAIError(body, what = 'error body') {
  let json = body;
  if (typeof body === 'string') {
    try {
      json = JSON.parse(body);
    } catch {
      assert.fail(`${what} is not JSON: ${JSON.stringify(body.slice(0, 300))}`);
    }
  }
  assert.ok(json && typeof json === 'object' && json.error && typeof json.error === 'object',
    `${what} is not OpenAI-shaped {"error":{...}}: ${JSON.stringify(json)}`);
  assert.equal(typeof json.error.message, 'string', `${what}: error.message is not a string`);
  assert.ok(json.error.message.length > 0, `${what}: error.message is empty`);
  assert.equal(typeof json.error.type, 'string', `${what}: error.type is not a string`);
  assert.ok('code' in json.error, `${what}: error.code is missing (null is fine)`);
  return json.error;
}
