// Checks the fake upstream on its own, so a failing end-to-end test points at
// Relay and not at its test double. Run: node --test tests/fake/

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

import { startFakeUpstream } from './upstream.mjs';
import { assertOpenAIError, assertValidChatStream, parseSse, streamPayloads } from '../e2e/wire.mjs';

const KEY = 'sk-test-fake-selftest';
const T = { timeout: 15000 };

let fake;
before(async () => {
  fake = await startFakeUpstream();
});
after(async () => {
  await fake?.close();
});

function chat(body, { headers = {}, auth = true } = {}) {
  return fetch(`${fake.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(auth ? { authorization: `Bearer ${KEY}` } : {}),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
}

const req = (text, extra = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: text }],
  temperature: 0,
  ...extra,
});

describe('fake upstream', () => {
  test('answers a chat.completion derived from the last user message and records the raw body', T, async () => {
    const raw = '{"model":"gpt-4o-mini",  "messages":[{"role":"user","content":"hello one"}]}';
    const res = await chat(raw);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/json/);
    const body = await res.json();
    assert.equal(body.object, 'chat.completion');
    assert.match(body.id, /^chatcmpl-fake\d+$/);
    assert.equal(body.model, 'gpt-4o-mini');
    assert.equal(body.choices[0].message.role, 'assistant');
    assert.equal(body.choices[0].message.content, 'Echo: hello one');
    assert.equal(body.choices[0].finish_reason, 'stop');
    assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens);
    const [call] = fake.callsFor('hello one');
    assert.equal(call.body, raw, 'the recorded body is the raw bytes sent');
    assert.equal(call.method, 'POST');
    assert.equal(call.path, '/v1/chat/completions');
    assert.equal(call.headers.authorization, `Bearer ${KEY}`);
  });

  test('a second identical request is a second call with a new id', T, async () => {
    const a = await (await chat(req('twice'))).json();
    const b = await (await chat(req('twice'))).json();
    assert.notEqual(a.id, b.id);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    assert.equal(fake.callsFor('twice').length, 2);
  });

  test('streams chunks ending data: [DONE], with usage last when asked', T, async () => {
    const res = await chat(req('stream me please', { stream: true, stream_options: { include_usage: true } }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const text = await res.text();
    assert.ok(text.endsWith('data: [DONE]\n\n'));
    const [call] = fake.callsFor('stream me please');
    assert.equal(call.sent, text, 'call.sent is the body as written');
    assert.equal(call.status, 200);
    const got = assertValidChatStream(text);
    assert.equal(got.content, 'Echo: stream me please');
    assert.equal(got.role, 'assistant');
    assert.equal(got.finishReason, 'stop');
    const { payloads } = streamPayloads(text);
    const last = payloads.at(-1);
    assert.deepEqual(last.choices, [], 'the usage chunk has empty choices');
    assert.equal(last.usage.total_tokens, got.usage.total_tokens);
    for (const p of payloads.slice(0, -1)) assert.equal(p.usage, null, 'other chunks carry usage: null');
    // Same content as the non-stream answer to the same request.
    const json = await (await chat(req('stream me please'))).json();
    assert.equal(json.choices[0].message.content, got.content);
    assert.deepEqual(json.usage, got.usage);
  });

  test('without include_usage no chunk has a usage field', T, async () => {
    const text = await (await chat(req('no usage here', { stream: true }))).text();
    const { payloads } = streamPayloads(text);
    for (const p of payloads) assert.equal('usage' in p, false);
  });

  test('splits into N chunks with a delay between them', T, async () => {
    fake.enqueue({ chunks: 5, chunkDelayMs: 60 });
    const t0 = Date.now();
    const res = await chat(req('chunky', { stream: true }));
    const reader = res.body.getReader();
    const first = await reader.read();
    const tFirst = Date.now() - t0;
    let text = new TextDecoder().decode(first.value);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const total = Date.now() - t0;
    const got = assertValidChatStream(text);
    assert.equal(got.content, 'Echo: chunky');
    assert.equal(got.chunks, 1 + 5 + 1, 'role chunk, 5 content chunks, finish chunk');
    assert.ok(total - tFirst >= 300, `events were spread out (first at ${tFirst} ms, end at ${total} ms)`);
  });

  test('tool calls, streamed and not, agree', T, async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { query: { type: 'string' } } } } }];
    const body = req('weather in Paris', { tools, tool_choice: 'required' });
    const json = await (await chat(body)).json();
    const msg = json.choices[0].message;
    assert.equal(json.choices[0].finish_reason, 'tool_calls');
    assert.equal(msg.content, null);
    assert.equal(msg.tool_calls.length, 1);
    assert.equal(msg.tool_calls[0].type, 'function');
    assert.equal(msg.tool_calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { query: 'weather in Paris' });

    fake.enqueue({ chunks: 4 });
    const text = await (await chat({ ...body, stream: true })).text();
    const got = assertValidChatStream(text);
    assert.equal(got.finishReason, 'tool_calls');
    assert.equal(got.toolCalls.length, 1);
    assert.equal(got.toolCalls[0].function.name, 'get_weather');
    assert.equal(got.toolCalls[0].function.arguments, msg.tool_calls[0].function.arguments);
    assert.match(got.toolCalls[0].id, /^call_fake\d+_0$/);
  });

  test('a cut stream resets the connection before [DONE]', T, async () => {
    fake.enqueue({ cutAfter: 2 });
    const res = await chat(req('cut me off', { stream: true }));
    assert.equal(res.status, 200);
    await assert.rejects(res.text(), 'reading a reset chunked body fails');
    assert.equal(fake.callsFor('cut me off').length, 1);
  });

  test('cutMode end closes cleanly but without [DONE]', T, async () => {
    fake.enqueue({ cutAfter: 3, cutMode: 'end' });
    const text = await (await chat(req('end early', { stream: true }))).text();
    const { payloads, done } = streamPayloads(text);
    assert.equal(done, false);
    assert.equal(payloads.length, 3);
  });

  test('a cut JSON answer is shorter than its content-length', T, async () => {
    fake.enqueue({ cutAfter: 10 });
    const res = await chat(req('half json'));
    assert.equal(res.status, 200);
    await assert.rejects(res.text());
  });

  test('error behaviour: status, OpenAI body and extra headers', T, async () => {
    fake.enqueue({ status: 429, headers: { 'retry-after': '7' } });
    const res = await chat(req('too many'));
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '7');
    const err = assertOpenAIError(await res.text());
    assert.equal(err.code, 'rate_limit_exceeded');

    const custom = '{"error":{"message":"boom","type":"server_error","param":null,"code":null}}';
    fake.enqueue({ status: 500, body: custom });
    const res2 = await chat(req('boom'));
    assert.equal(res2.status, 500);
    assert.equal(await res2.text(), custom, 'a string body is sent verbatim');
  });

  test('header delay holds the status line back', T, async () => {
    fake.enqueue({ headerDelayMs: 300, status: 500 });
    const t0 = Date.now();
    const res = await chat(req('slow failure', { stream: true }));
    assert.ok(Date.now() - t0 >= 280);
    assert.equal(res.status, 500);
  });

  test('hang never answers', T, async () => {
    fake.enqueue({ hang: true });
    await assert.rejects(
      fetch(`${fake.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(req('hang')),
        signal: AbortSignal.timeout(300),
      }),
      /TimeoutError|aborted/i,
    );
  });

  test('behaviours are taken in order, optionally by path', T, async () => {
    fake.enqueue({ path: '/v1/models', status: 503 });
    fake.enqueue({ status: 418, body: { teapot: true } });
    const a = await chat(req('order one'));
    assert.equal(a.status, 418, 'the chat request skips the /v1/models behaviour');
    const m = await fetch(`${fake.url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(m.status, 503);
    assert.equal(fake.pending(), 0);
  });

  test('401 in OpenAI shape without a credential; invalid JSON and missing fields are 400', T, async () => {
    const r1 = await chat(req('no key'), { auth: false });
    assert.equal(r1.status, 401);
    assertOpenAIError(await r1.text());
    const r2 = await chat('{"model":');
    assert.equal(r2.status, 400);
    assertOpenAIError(await r2.text());
    const r3 = await chat({ messages: [] });
    assert.equal(r3.status, 400);
    const r4 = await chat({ model: 'x' });
    assert.equal(r4.status, 400);
  });

  test('models and echo for other /v1 paths', T, async () => {
    const h = { authorization: `Bearer ${KEY}` };
    const list = await (await fetch(`${fake.url}/v1/models`, { headers: h })).json();
    assert.equal(list.object, 'list');
    assert.ok(list.data.some((m) => m.id === 'gpt-4o-mini'));
    const one = await fetch(`${fake.url}/v1/models/nope`, { headers: h });
    assert.equal(one.status, 404);
    const echo = await (await fetch(`${fake.url}/v1/files?purpose=batch&limit=2`, { method: 'POST', headers: h, body: 'a=1' })).json();
    assert.equal(echo.object, 'fake.echo');
    assert.equal(echo.path, '/v1/files');
    assert.equal(echo.query, 'purpose=batch&limit=2');
    assert.equal(echo.body, 'a=1');
    assert.equal(echo.method, 'POST');
  });

  test('reset forgets calls but ids keep counting', T, async () => {
    const a = await (await chat(req('before reset'))).json();
    fake.reset();
    assert.equal(fake.calls.length, 0);
    const b = await (await chat(req('before reset'))).json();
    assert.equal(fake.calls.length, 1);
    assert.ok(Number(b.id.replace('chatcmpl-fake', '')) > Number(a.id.replace('chatcmpl-fake', '')));
  });

  test('the openai SDK reads its answers (non-stream, stream, tools, usage)', T, async () => {
    const client = new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 10000 });
    const r = await client.chat.completions.create(req('sdk plain'));
    assert.equal(r.choices[0].message.content, 'Echo: sdk plain');

    fake.enqueue({ chunks: 3, chunkDelayMs: 10 });
    const stream = await client.chat.completions.create(req('sdk stream', { stream: true, stream_options: { include_usage: true } }));
    let text = '';
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, 'Echo: sdk stream');
    assert.ok(usage && usage.total_tokens > 0);

    // The SDK's own stream assembler accepts the tool-call deltas.
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }];
    const runner = client.chat.completions.stream(req('sdk tools', { tools, tool_choice: 'required' }));
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.tool_calls[0].function.name, 'lookup');
    assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), { query: 'sdk tools' });

    // Embeddings: the SDK asks for base64 and decodes it to the same floats.
    const emb = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'] });
    assert.equal(emb.data.length, 2);
    assert.equal(emb.data[0].embedding.length, 8);
    const plain = await (await fetch(`${fake.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'text-embedding-3-small', input: 'one' }),
    })).json();
    assert.deepEqual(emb.data[0].embedding.map((x) => x.toFixed(4)), plain.data[0].embedding.map((x) => x.toFixed(4)));

    // A cut stream makes the SDK throw.
    fake.enqueue({ cutAfter: 2 });
    const cut = await client.chat.completions.create(req('sdk cut', { stream: true }));
    await assert.rejects(async () => {
      for await (const _ of cut) { /* drain */ }
    });
  });
});

// The second half of a tool-call round trip, in each wire format: the fake
// answers the results with text naming them, and a `match` behaviour waits
// for the request carrying its marker.
describe('fake upstream: tool results and match', () => {
  const sseJson = (text) => parseSse(text).filter((e) => e.data !== null).map((e) => JSON.parse(e.data));
  const post = (path, body, headers) => fetch(`${fake.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const anthropic = (body) => post('/v1/messages', body, { 'x-api-key': KEY, 'anthropic-version': '2023-06-01' });
  const gemini = (body, method = 'generateContent', query = '') =>
    post(`/v1beta/models/gemini-2.5-flash:${method}${query}`, body, { 'x-goog-api-key': KEY });

  test('OpenAI: trailing role tool messages are answered with their text, even when a tool is forced', T, async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    const body = req('weather in Oslo', { tools, tool_choice: 'required' });
    body.messages.push(
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'snow, -3C' },
      { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: 'wind 5 m/s' }] },
    );
    const json = await (await chat(body)).json();
    assert.equal(json.choices[0].finish_reason, 'stop');
    assert.equal(json.choices[0].message.content, 'Tool said: snow, -3C | wind 5 m/s');
    assert.equal(json.choices[0].message.tool_calls, undefined);
    const got = assertValidChatStream(await (await chat({ ...body, stream: true })).text());
    assert.equal(got.content, 'Tool said: snow, -3C | wind 5 m/s');
    assert.equal(got.finishReason, 'stop');
  });

  test('Anthropic: tool_use first (behaviour), then text for the tool_result turn', T, async () => {
    const tools = [{ name: 'get_weather', input_schema: { type: 'object' } }];
    const first = { model: 'claude-x', max_tokens: 100, tools, messages: [{ role: 'user', content: 'weather in Oslo' }] };
    fake.enqueue({ toolCalls: [{ name: 'get_weather', arguments: '{"city":"Oslo"}' }] });
    const a = await (await anthropic(first)).json();
    assert.equal(a.stop_reason, 'tool_use');
    assert.equal(a.content[0].type, 'tool_use');
    assert.deepEqual(a.content[0].input, { city: 'Oslo' });
    const second = {
      ...first,
      messages: [
        ...first.messages,
        { role: 'assistant', content: a.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: a.content[0].id, content: 'snow, -3C' }] },
      ],
    };
    const b = await (await anthropic(second)).json();
    assert.equal(b.stop_reason, 'end_turn');
    assert.deepEqual(b.content, [{ type: 'text', text: 'Tool said: snow, -3C' }]);
    const text = await (await anthropic({ ...second, stream: true })).text();
    const deltas = sseJson(text).filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join('');
    assert.equal(deltas, 'Tool said: snow, -3C');
  });

  test('Gemini: functionCall first (behaviour), then text for the functionResponse content', T, async () => {
    const tools = [{ functionDeclarations: [{ name: 'get_weather', parameters: { type: 'OBJECT' } }] }];
    const first = { contents: [{ role: 'user', parts: [{ text: 'weather in Oslo' }] }], tools };
    fake.enqueue({ toolCalls: true });
    const a = await (await gemini(first)).json();
    assert.deepEqual(a.candidates[0].content.parts, [{ functionCall: { name: 'get_weather', args: { query: 'weather in Oslo' } } }]);
    assert.equal(a.candidates[0].finishReason, 'STOP');
    assert.ok(a.usageMetadata.totalTokenCount > 0);
    const second = {
      ...first,
      contents: [
        ...first.contents,
        a.candidates[0].content,
        { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { result: 'snow' } } }] },
      ],
    };
    const b = await (await gemini(second)).json();
    assert.deepEqual(b.candidates[0].content.parts, [{ text: 'Tool said: {"result":"snow"}' }]);
    const text = await (await gemini(second, 'streamGenerateContent', '?alt=sse')).text();
    const chunks = sseJson(text);
    assert.equal(chunks.map((c) => c.candidates[0].content.parts[0].text).join(''), 'Tool said: {"result":"snow"}');
    assert.equal(chunks.at(-1).candidates[0].finishReason, 'STOP');
  });

  test('a match behaviour is left for the request whose body holds its marker', T, async () => {
    fake.enqueue({ match: 'marker-42', status: 429 });
    const other = await chat(req('no marker here'));
    assert.equal(other.status, 200, 'a request without the marker passes the behaviour by');
    assert.equal(fake.pending(), 1);
    const hit = await chat(req('this one has marker-42'));
    assert.equal(hit.status, 429);
    assert.equal(fake.pending(), 0);
  });
});

describe('fake upstream command line', () => {
  test('prints its port and is controlled over HTTP', T, async () => {
    const script = fileURLToPath(new URL('./upstream.mjs', import.meta.url));
    const child = spawn(process.execPath, [script, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      const port = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "listening PORT" line: ${out}`)), 5000);
        child.stdout.on('data', (d) => {
          out += d;
          const m = /listening (\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
        child.on('exit', () => reject(new Error(`fake exited: ${out}`)));
      });
      const base = `http://127.0.0.1:${port}`;
      const q = await fetch(`${base}/_fake/enqueue`, { method: 'POST', body: JSON.stringify({ status: 503 }) });
      assert.deepEqual(await q.json(), { queued: 1 });
      const r = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}` },
        body: JSON.stringify(req('cli')),
      });
      assert.equal(r.status, 503);
      const r2 = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}` },
        body: JSON.stringify(req('cli')),
      });
      assert.equal(r2.status, 200);
      const calls = await (await fetch(`${base}/_fake/calls`)).json();
      assert.equal(calls.length, 2);
      assert.equal(calls[0].path, '/v1/chat/completions');
      assert.equal(JSON.parse(calls[0].body).messages[1].content, 'cli');
      await fetch(`${base}/_fake/reset`, { method: 'POST' });
      assert.deepEqual(await (await fetch(`${base}/_fake/calls`)).json(), []);
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    }
  });
});
