// One cache entry answers both kinds of client: a stored stream answers a
// non-stream request with the assembled chat.completion (content, tool
// calls, usage kept), and a stored chat.completion answers a stream request
// with valid chunks ending `data: [DONE]`. Either way one upstream call.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, chatBody, uniq, TEST_TIMEOUT } from './harness.mjs';
import { assertValidChatStream, assembleChunks } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather for a place',
      parameters: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'] },
    },
  },
];

// Content of a message that made tool calls: OpenAI sends null.
const noContent = (c) => c === null || c === undefined || c === '';

relaySuite('cross-mode answers', {}, (relay) => {
  test('a stream entry answers a non-stream request: content, finish_reason and usage kept', T, async () => {
    const m = uniq('s2j');
    relay.fake.enqueue({ chunks: 5 });
    const s = await relay.chat(chatBody(m, { stream: true, stream_options: { include_usage: true } }));
    assert.equal(s.status, 200, s.text);
    assert.equal(s.headers.get('x-cache'), 'MISS');
    const streamed = assertValidChatStream(s.text);
    assert.ok(streamed.usage, 'the upstream sent usage');

    const j = await relay.chat(chatBody(m));
    assert.equal(j.status, 200, j.text);
    assert.equal(j.headers.get('x-cache'), 'HIT');
    assert.equal(j.headers.get('x-relay-key'), s.headers.get('x-relay-key'));
    assert.match(j.headers.get('content-type') ?? '', /^application\/json/);
    const c = JSON.parse(j.text);
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.id, streamed.id);
    assert.equal(c.model, streamed.model);
    assert.equal(c.choices.length, 1);
    assert.equal(c.choices[0].index, 0);
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(c.choices[0].message.content, streamed.content);
    assert.equal(c.choices[0].message.content, `Echo: ${m}`);
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.deepEqual(c.usage, streamed.usage);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a stream entry with tool calls answers the SDK non-stream with the same tool_calls', T, async () => {
    const m = uniq('s2j-tools');
    const body = chatBody(m, { tools: TOOLS, tool_choice: 'required' });
    relay.fake.enqueue({ chunks: 4 });
    const s = await relay.chat({ ...body, stream: true, stream_options: { include_usage: true } });
    assert.equal(s.status, 200, s.text);
    const streamed = assertValidChatStream(s.text);
    assert.equal(streamed.finishReason, 'tool_calls');
    assert.equal(streamed.toolCalls.length, 1);

    const { data: c, response } = await relay.client().chat.completions.create(body).withResponse();
    assert.equal(response.headers.get('x-cache'), 'HIT');
    const msg = c.choices[0].message;
    assert.ok(noContent(msg.content), `content ${JSON.stringify(msg.content)} next to tool calls`);
    assert.deepEqual(
      msg.tool_calls.map((t) => ({ id: t.id, type: t.type, function: { name: t.function.name, arguments: t.function.arguments } })),
      streamed.toolCalls,
    );
    assert.equal(msg.tool_calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { query: m });
    assert.equal(c.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(c.usage, streamed.usage);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a non-stream entry answers a stream request with valid chunks ending [DONE]', T, async () => {
    const m = uniq('j2s');
    const j = await relay.chat(chatBody(m));
    assert.equal(j.status, 200, j.text);
    assert.equal(j.headers.get('x-cache'), 'MISS');
    const c = JSON.parse(j.text);

    const s = await relay.chat(chatBody(m, { stream: true, stream_options: { include_usage: true } }));
    assert.equal(s.status, 200, s.text);
    assert.equal(s.headers.get('x-cache'), 'HIT');
    assert.match(s.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.ok(s.text.endsWith('data: [DONE]\n\n'), `stream ends ${JSON.stringify(s.text.slice(-60))}`);
    const got = assertValidChatStream(s.text);
    assert.equal(got.id, c.id);
    assert.equal(got.role, 'assistant');
    assert.equal(got.content, c.choices[0].message.content);
    assert.equal(got.finishReason, c.choices[0].finish_reason);
    assert.deepEqual(got.usage, c.usage, 'include_usage asked: the usage is streamed');
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a non-stream entry with tool calls answers an SDK stream', T, async () => {
    const m = uniq('j2s-tools');
    const body = chatBody(m, { tools: TOOLS, tool_choice: 'required' });
    const client = relay.client();
    const first = await client.chat.completions.create(body).withResponse();
    assert.equal(first.response.headers.get('x-cache'), 'MISS');
    const msg = first.data.choices[0].message;
    assert.equal(msg.tool_calls.length, 1);

    const { data: stream, response } = await client.chat.completions
      .create({ ...body, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    assert.equal(response.headers.get('x-cache'), 'HIT');
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const got = assembleChunks(chunks);
    assert.equal(got.finishReason, 'tool_calls');
    assert.deepEqual(got.toolCalls, msg.tool_calls.map((t) => ({ id: t.id, type: t.type, function: { ...t.function } })));
    assert.ok(noContent(got.content));
    assert.deepEqual(got.usage, first.data.usage);
    assert.equal(relay.fake.callsFor(m).length, 1);

    // The SDK's own assembler accepts the replayed chunks too.
    const final = await client.chat.completions.stream(body).finalChatCompletion();
    assert.equal(final.choices[0].message.tool_calls[0].function.arguments, msg.tool_calls[0].function.arguments);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('stream, then non-stream, then stream again: one upstream call, one answer', T, async () => {
    const m = uniq('round-trip');
    const client = relay.client();
    relay.fake.enqueue({ chunks: 3 });
    const collect = async () => {
      let text = '';
      for await (const chunk of await client.chat.completions.create({ ...chatBody(m), stream: true })) {
        text += chunk.choices[0]?.delta?.content ?? '';
      }
      return text;
    };
    const a = await collect();
    const b = (await client.chat.completions.create(chatBody(m))).choices[0].message.content;
    const c = await collect();
    assert.equal(a, `Echo: ${m}`);
    assert.equal(b, a);
    assert.equal(c, a);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });
});
