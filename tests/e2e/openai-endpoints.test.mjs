// The OpenAI endpoints besides Chat Completions, through Caddy and Relay with
// the official `openai` SDK: the Responses API (stream events ending with
// response.completed, no [DONE]; previous_response_id and store:true never
// cached), Embeddings (cacheable whatever the temperature policy), legacy
// Completions, the model list (cached, briefly), and Azure OpenAI
// (deployments, api-version and api-key). Each: one upstream call, then a
// HIT; errors in OpenAI's shape.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { AzureOpenAI } from 'openai';

import { relaySuite, uniq, KEY_A, KEY_B, TEST_TIMEOUT, REQUEST_TIMEOUT } from './harness.mjs';
import { parseSse } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

relaySuite('openai endpoints: responses, embeddings, completions, models', {}, (relay) => {
  const client = () => relay.client();

  test('responses: a repeat is a HIT with the same response; stream and non-stream share it', T, async () => {
    const m = uniq('responses');
    const req = { model: 'gpt-4.1-nano', input: m, temperature: 0, store: false };
    const { data: r1, response: h1 } = await client().responses.create(req).withResponse();
    assert.equal(h1.headers.get('x-cache'), 'MISS');
    assert.equal(r1.output_text, `Echo: ${m}`);
    const { data: r2, response: h2 } = await client().responses.create(req).withResponse();
    assert.equal(h2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.id, r1.id, 'the very same response');

    // A stream of the same request: rendered from the stored answer, typed
    // events ending with response.completed.
    const stream = await client().responses.create({ ...req, stream: true });
    const types = [];
    let text = '';
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'response.output_text.delta') text += ev.delta;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
    assert.equal(text, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('responses: a streamed answer is passed through live and stored; the raw replay is byte for byte', T, async () => {
    const m = uniq('responses-stream');
    relay.fake.enqueue({ chunks: 4, chunkDelayMs: 30 });
    const body = JSON.stringify({ model: 'gpt-4.1-nano', input: [{ role: 'user', content: m }], temperature: 0, store: false, stream: true });
    const post = () => relay.fetch('/v1/responses', {
      method: 'POST', headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' }, body,
    });
    const r1 = await post();
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    const events = parseSse(r1.text);
    assert.equal(events.at(-1).event, 'response.completed');
    assert.ok(!r1.text.includes('[DONE]'), 'a Responses stream has no [DONE]');
    const r2 = await post();
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, r1.text, 'the replay is the stream as it came');
    assert.equal(relay.fake.callsFor(m).length, 1);
    // And the SDK's non-stream call gets the assembled response.
    const r3 = await client().responses.create({ model: 'gpt-4.1-nano', input: [{ role: 'user', content: m }], temperature: 0, store: false });
    assert.equal(r3.output_text, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('responses with previous_response_id or store: true are never cached', T, async () => {
    for (const extra of [{ previous_response_id: 'resp_abc' }, { store: true }]) {
      const m = uniq('responses-stateful');
      const req = { model: 'gpt-4.1-nano', input: m, temperature: 0, ...extra };
      const { response: h1 } = await client().responses.create(req).withResponse();
      const { response: h2 } = await client().responses.create(req).withResponse();
      assert.equal(h1.headers.get('x-cache'), 'BYPASS', JSON.stringify(extra));
      assert.equal(h2.headers.get('x-cache'), 'BYPASS', JSON.stringify(extra));
      assert.equal(relay.fake.callsFor(m).length, 2, JSON.stringify(extra));
    }
  });

  test('responses: a stream cut before response.completed ends with an error; nothing is cached', T, async () => {
    const m = uniq('responses-cut');
    relay.fake.enqueue({ chunks: 4, cutAfter: 5 });
    const stream = await client().responses.create({ model: 'gpt-4.1-nano', input: m, temperature: 0, store: false, stream: true });
    await assert.rejects(async () => {
      for await (const ev of stream) void ev;
    });
    const { response: h } = await client().responses.create({ model: 'gpt-4.1-nano', input: m, temperature: 0, store: false }).withResponse();
    assert.equal(h.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('embeddings are cached even without temperature 0 (deterministic)', T, async () => {
    const m = uniq('embed');
    const req = { model: 'text-embedding-3-small', input: [m, `${m} again`] };
    const { data: e1, response: h1 } = await client().embeddings.create(req).withResponse();
    const { data: e2, response: h2 } = await client().embeddings.create(req).withResponse();
    assert.equal(h1.headers.get('x-cache'), 'MISS');
    assert.equal(h2.headers.get('x-cache'), 'HIT');
    assert.equal(e1.data.length, 2);
    assert.deepEqual(e2.data, e1.data);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('legacy completions: stream and non-stream, a repeat is a HIT', T, async () => {
    const m = uniq('legacy');
    const req = { model: 'gpt-3.5-turbo-instruct', prompt: m, temperature: 0 };
    const { data: c1, response: h1 } = await client().completions.create(req).withResponse();
    assert.equal(h1.headers.get('x-cache'), 'MISS');
    assert.equal(c1.choices[0].text, `Echo: ${m}`);
    const stream = await client().completions.create({ ...req, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    assert.equal(text, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 1, 'the stream was rendered from the stored answer');
  });

  test('GET /v1/models is cached (briefly) per credential', T, async () => {
    relay.fake.reset();
    const l1 = await relay.fetch('/v1/models', { headers: { authorization: `Bearer ${KEY_B}` } });
    const l2 = await relay.fetch('/v1/models', { headers: { authorization: `Bearer ${KEY_B}` } });
    assert.equal(l1.status, 200, l1.text);
    assert.equal(l1.headers.get('x-cache'), 'MISS');
    assert.equal(l2.headers.get('x-cache'), 'HIT');
    assert.equal(l2.text, l1.text);
    assert.equal(relay.fake.calls.filter((c) => c.path === '/v1/models').length, 1);
    const list = await client().models.list();
    assert.ok(list.data.some((x) => x.id === 'gpt-4o-mini'));
  });

  test('POST /v1/models is refused with 405 in OpenAI\'s shape', T, async () => {
    const r = await relay.fetch('/v1/models', { method: 'POST', headers: { authorization: `Bearer ${KEY_A}` }, body: '{}' });
    assert.equal(r.status, 405);
    assert.ok(JSON.parse(r.text).error.message);
  });

  test('an upstream 500 reaches the SDK as an APIError with the status; nothing cached', T, async () => {
    const m = uniq('responses-500');
    relay.fake.enqueue({ status: 500 });
    await assert.rejects(client().responses.create({ model: 'gpt-4.1-nano', input: m, temperature: 0, store: false }),
      (err) => err instanceof OpenAI.APIError && err.status === 500);
    const { response: h } = await client().responses.create({ model: 'gpt-4.1-nano', input: m, temperature: 0, store: false }).withResponse();
    assert.equal(h.headers.get('x-cache'), 'MISS');
  });

  test('an upstream 429 on embeddings and 503 on a Responses stream reach the SDK in OpenAI\'s shape; nothing cached', T, async () => {
    const m = uniq('endpoint-errors');
    relay.fake.enqueue({ status: 429, path: '/v1/embeddings' });
    const embed = { model: 'text-embedding-3-small', input: m };
    await assert.rejects(client().embeddings.create(embed), (err) => {
      assert.ok(err instanceof OpenAI.RateLimitError, String(err));
      assert.equal(err.status, 429);
      assert.equal(err.code, 'rate_limit_exceeded');
      assert.equal(err.type, 'requests');
      return true;
    });
    const { response: h1 } = await client().embeddings.create(embed).withResponse();
    assert.equal(h1.headers.get('x-cache'), 'MISS', 'the error was not cached');
    assert.equal(relay.fake.callsFor(m).length, 2);

    const m2 = uniq('responses-stream-503');
    relay.fake.enqueue({ status: 503, path: '/v1/responses' });
    const req = { model: 'gpt-4.1-nano', input: m2, temperature: 0, store: false, stream: true };
    await assert.rejects(async () => {
      for await (const ev of await client().responses.create(req)) void ev;
    }, (err) => err instanceof OpenAI.InternalServerError && err.status === 503 && typeof err.error?.message === 'string');
    const events = [];
    for await (const ev of await client().responses.create(req)) events.push(ev.type);
    assert.equal(events.at(-1), 'response.completed');
    assert.equal(relay.fake.callsFor(m2).length, 2);
  });
});

relaySuite('azure openai: deployments, api-version, api-key', { upstreams: ['azure'] }, (relay) => {
  const azure = (opts = {}) => new AzureOpenAI({
    endpoint: relay.base,
    apiKey: KEY_A,
    apiVersion: '2024-10-21',
    deployment: 'gpt4o-prod',
    maxRetries: 0,
    timeout: REQUEST_TIMEOUT,
    ...opts,
  });

  test('chat through a deployment: api-key forwarded, a repeat is a HIT', T, async () => {
    const m = uniq('azure');
    const req = { model: 'ignored-by-azure', messages: [{ role: 'user', content: m }], temperature: 0 };
    const { data: a1, response: h1 } = await azure().chat.completions.create(req).withResponse();
    const { response: h2 } = await azure().chat.completions.create(req).withResponse();
    assert.equal(a1.choices[0].message.content, `Echo: ${m}`);
    assert.equal(h1.headers.get('x-cache'), 'MISS');
    assert.equal(h2.headers.get('x-cache'), 'HIT');
    const [call] = relay.fake.callsFor(m);
    assert.equal(call.azurePath, '/openai/deployments/gpt4o-prod/chat/completions');
    assert.match(call.query, /api-version=2024-10-21/);
    assert.equal(call.headers['api-key'], KEY_A);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('the deployment and the api-version are part of the key', T, async () => {
    const m = uniq('azure-key');
    const req = { model: 'x', messages: [{ role: 'user', content: m }], temperature: 0 };
    const { response: a } = await azure().chat.completions.create(req).withResponse();
    const { response: b } = await azure({ deployment: 'other' }).chat.completions.create(req).withResponse();
    const { response: c } = await azure({ apiVersion: '2025-01-01-preview' }).chat.completions.create(req).withResponse();
    assert.deepEqual([a, b, c].map((r) => r.headers.get('x-cache')), ['MISS', 'MISS', 'MISS']);
    assert.equal(new Set([a, b, c].map((r) => r.headers.get('x-relay-key'))).size, 3);
    assert.equal(relay.fake.callsFor(m).length, 3);
  });

  test('no api-key and no Authorization: 401 in OpenAI\'s shape, nothing sent upstream', T, async () => {
    const m = uniq('azure-nokey');
    const r = await relay.fetch('/openai/deployments/d/chat/completions?api-version=2024-10-21', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: m }] }),
    });
    assert.equal(r.status, 401);
    assert.ok(JSON.parse(r.text).error.message);
    assert.equal(relay.fake.callsFor(m).length, 0);
  });
});
