// The Anthropic Messages API through Caddy and Relay with the official SDKs,
// both pinned generations: @anthropic-ai/sdk 1.x (Authorization: Bearer,
// anthropic-version 2026-10-21) and 0.x (x-api-key, 2023-06-01). Each: a
// repeat is a HIT with one upstream call and the same message id; a stream
// is passed through and replayed byte for byte; one entry answers both
// stream and non-stream requests (tool use and thinking blocks kept); the
// body goes upstream as the SDK sent it. Then what is in the key (system
// form, anthropic-version, anthropic-beta) and what is not
// (metadata.user_id, ?beta=true, the header carrying the key), count_tokens,
// errors in Anthropic's shape, and an upstream under a mount prefix.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import Anthropic0 from 'anthropic-sdk-0';

import { relaySuite, uniq, KEY_A, KEY_B, TEST_TIMEOUT, REQUEST_TIMEOUT } from './harness.mjs';
import { parseSse } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const MODEL = 'claude-haiku-4-5';

const SDKS = [
  {
    name: 'sdk 1.x',
    Client: Anthropic,
    version: '2026-10-21',
    // client.beta.messages posts to /v1/messages with anthropic-beta; 1.x
    // does not add ?beta=true (0.x and Claude Code do).
    betaQuery: '',
    // The credential headers the SDK sends, as the upstream must get them.
    auth: (h) => {
      assert.equal(h.authorization, `Bearer ${KEY_A}`);
      assert.equal(h['x-api-key'], undefined);
    },
  },
  {
    name: 'sdk 0.x',
    Client: Anthropic0,
    version: '2023-06-01',
    betaQuery: 'beta=true',
    auth: (h) => {
      assert.equal(h['x-api-key'], KEY_A);
      assert.equal(h.authorization, undefined);
    },
  },
];

// An SDK client on the relay that records what it sends: sent[i] is
// {url, headers (a Headers), body (the exact string)}.
function sdkClient(relay, sdk, { prefix = '', ...opts } = {}) {
  const sent = [];
  const client = new sdk.Client({
    baseURL: relay.base + prefix,
    apiKey: KEY_A,
    maxRetries: 0,
    timeout: REQUEST_TIMEOUT,
    fetch: async (url, init) => {
      sent.push({ url: String(url), headers: new Headers(init.headers), body: init.body });
      return fetch(url, init);
    },
    ...opts,
  });
  return { client, sent };
}

// A deterministic (temperature 0) request about text.
const ask = (text, extra = {}) => ({
  model: MODEL,
  max_tokens: 256,
  temperature: 0,
  messages: [{ role: 'user', content: text }],
  ...extra,
});

// Thinking needs temperature 1 at the real API: such requests are cached
// by X-Relay-Cache: on instead.
const FORCE = { headers: { 'x-relay-cache': 'on' } };
const LOOKUP = {
  name: 'lookup',
  description: 'Looks a query up',
  input_schema: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'] },
};
const thinkingToolRequest = (m) => ({
  model: MODEL,
  max_tokens: 2048,
  thinking: { type: 'enabled', budget_tokens: 1024 },
  tools: [LOOKUP],
  messages: [{ role: 'user', content: m }],
});

// Checks an error body has Anthropic's shape; returns its error member.
function anthropicErrorOf(text, type) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch {
    assert.fail(`error body is not JSON: ${JSON.stringify(text)}`);
  }
  assert.equal(doc.type, 'error', text);
  assert.equal(doc.error?.type, type, text);
  assert.equal(typeof doc.error.message, 'string', text);
  assert.ok(doc.error.message.length > 0, text);
  assert.equal(doc.choices, undefined);
  return doc.error;
}

// The text and event names of a raw Anthropic stream; fails unless it is
// complete (message_start first, message_stop last, no error event).
function streamText(raw) {
  const events = parseSse(raw);
  const names = events.map((e) => e.event);
  assert.equal(names[0], 'message_start', raw.slice(0, 300));
  assert.equal(names.at(-1), 'message_stop', raw.slice(-300));
  assert.ok(!names.includes('error'), raw);
  let text = '';
  for (const e of events) {
    const d = JSON.parse(e.data);
    assert.equal(d.type, e.event, 'the event name repeats the data type');
    if (d.type === 'content_block_delta' && d.delta.type === 'text_delta') text += d.delta.text;
  }
  return { text, names, id: JSON.parse(events[0].data).message.id };
}

// The comparable part of a message (the SDK may add members of its own).
const core = (msg) => ({
  id: msg.id,
  model: msg.model,
  role: msg.role,
  content: msg.content,
  stop_reason: msg.stop_reason,
  stop_sequence: msg.stop_sequence,
  usage: msg.usage,
});

// The headers of a raw POST like the SDK's (credential in its place).
function rawHeaders(sdk) {
  const h = { 'content-type': 'application/json', 'anthropic-version': sdk.version };
  if (sdk.Client === Anthropic) h.authorization = `Bearer ${KEY_A}`;
  else h['x-api-key'] = KEY_A;
  return h;
}

relaySuite('anthropic messages with the official SDKs', { upstreams: ['anthropic'] }, (relay) => {
  for (const sdk of SDKS) {
    test(`${sdk.name}: messages.create at temperature 0 is a MISS, then a HIT with the same message`, T, async () => {
      const { client, sent } = sdkClient(relay, sdk);
      const m = uniq(`${sdk.name} create`);
      const { data: a, response: h1 } = await client.messages.create(ask(m)).withResponse();
      assert.equal(h1.headers.get('x-cache'), 'MISS');
      assert.equal(a.type, 'message');
      assert.equal(a.content[0].text, `Echo: ${m}`);
      assert.match(a.id, /^msg_fake\d+$/);
      const { data: b, response: h2 } = await client.messages.create(ask(m)).withResponse();
      assert.equal(h2.headers.get('x-cache'), 'HIT');
      assert.match(h2.headers.get('age') ?? '', /^\d+$/);
      assert.equal(h2.headers.get('x-relay-key'), h1.headers.get('x-relay-key'));
      assert.deepEqual(b, a, 'the very same message');

      const calls = relay.fake.callsFor(m);
      assert.equal(calls.length, 1);
      assert.equal(calls[0].method, 'POST');
      assert.equal(calls[0].path, '/v1/messages');
      assert.equal(calls[0].query, '');
      assert.equal(calls[0].headers['anthropic-version'], sdk.version);
      sdk.auth(calls[0].headers);
      assert.equal(calls[0].body, sent[0].body, 'the body as the SDK sent it');
    });

    test(`${sdk.name}: a stream arrives as it is sent; the repeat is a HIT replayed byte for byte`, T, async () => {
      const { client, sent } = sdkClient(relay, sdk);
      const m = uniq(`${sdk.name} stream`);
      relay.fake.enqueue({ chunks: 4, chunkDelayMs: 20 });
      const s1 = client.messages.stream(ask(m));
      const deltas = [];
      s1.on('text', (t) => deltas.push(t));
      const { response: h1 } = await s1.withResponse();
      assert.equal(h1.headers.get('x-cache'), 'MISS');
      assert.match(h1.headers.get('content-type') ?? '', /^text\/event-stream/);
      const first = await s1.finalMessage();
      assert.equal(first.content[0].text, `Echo: ${m}`);
      assert.equal(deltas.length, 4, 'the text came in its pieces');
      assert.equal(deltas.join(''), `Echo: ${m}`);
      const calls = relay.fake.callsFor(m);
      assert.equal(calls.length, 1);
      assert.equal(calls[0].body, sent[0].body);
      assert.equal(JSON.parse(calls[0].body).stream, true);

      // The same request, raw: the stored stream exactly as the upstream sent it.
      const raw = await relay.fetch('/v1/messages', { method: 'POST', headers: rawHeaders(sdk), body: sent[0].body });
      assert.equal(raw.status, 200, raw.text);
      assert.equal(raw.headers.get('x-cache'), 'HIT');
      assert.match(raw.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal(raw.text, calls[0].sent, 'byte for byte');
      assert.equal(streamText(raw.text).text, `Echo: ${m}`);

      // And the SDK again, from the cache.
      const s2 = client.messages.stream(ask(m));
      const { response: h2 } = await s2.withResponse();
      assert.equal(h2.headers.get('x-cache'), 'HIT');
      assert.deepEqual(core(await s2.finalMessage()), core(first));
      assert.equal(relay.fake.callsFor(m).length, 1);
    });

    test(`${sdk.name}: a stored non-stream answer answers a stream request, and the reverse`, T, async () => {
      const { client } = sdkClient(relay, sdk);
      // Non-stream first, then create({stream: true}).
      const m1 = uniq(`${sdk.name} json-then-stream`);
      const { data: msg } = await client.messages.create(ask(m1)).withResponse();
      const { data: stream, response: h } = await client.messages.create({ ...ask(m1), stream: true }).withResponse();
      assert.equal(h.headers.get('x-cache'), 'HIT');
      const types = [];
      let text = '';
      let id = null;
      for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'message_start') id = ev.message.id;
        if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
      }
      assert.equal(types[0], 'message_start');
      assert.equal(types.at(-1), 'message_stop');
      assert.ok(types.includes('message_delta'));
      assert.equal(text, `Echo: ${m1}`);
      assert.equal(id, msg.id, 'rendered from the stored message');
      assert.equal(relay.fake.callsFor(m1).length, 1);

      // Stream first, then non-stream.
      const m2 = uniq(`${sdk.name} stream-then-json`);
      const s = client.messages.stream(ask(m2));
      const streamed = await s.finalMessage();
      const { data: assembled, response: h2 } = await client.messages.create(ask(m2)).withResponse();
      assert.equal(h2.headers.get('x-cache'), 'HIT');
      assert.deepEqual(core(assembled), core(streamed));
      assert.equal(assembled.type, 'message');
      assert.equal(relay.fake.callsFor(m2).length, 1);
    });

    test(`${sdk.name}: tool use and thinking blocks survive stream -> message and message -> stream`, T, async () => {
      const { client } = sdkClient(relay, sdk);
      const check = (msg, m) => {
        assert.deepEqual(msg.content.map((b) => b.type), ['thinking', 'tool_use'], JSON.stringify(msg.content));
        const [thinking, tool] = msg.content;
        assert.equal(thinking.thinking, `The user said: ${m}`);
        assert.equal(thinking.signature, Buffer.from(`The user said: ${m}`).toString('base64'));
        assert.equal(tool.name, 'lookup');
        assert.match(tool.id, /^toolu_fake\d+_0$/);
        assert.deepEqual(tool.input, { query: m });
        assert.equal(msg.stop_reason, 'tool_use');
      };

      // Upstream streamed; a non-stream client gets the assembled message.
      const m1 = uniq(`${sdk.name} tools-stream`);
      relay.fake.enqueue({ toolCalls: true, chunks: 3 });
      const s = client.messages.stream(thinkingToolRequest(m1), FORCE);
      const { response: h1 } = await s.withResponse();
      assert.equal(h1.headers.get('x-cache'), 'MISS');
      const streamed = await s.finalMessage();
      check(streamed, m1);
      const { data: assembled, response: h2 } = await client.messages.create(thinkingToolRequest(m1), FORCE).withResponse();
      assert.equal(h2.headers.get('x-cache'), 'HIT');
      check(assembled, m1);
      assert.deepEqual(core(assembled), core(streamed));
      assert.equal(relay.fake.callsFor(m1).length, 1);

      // Upstream answered JSON; a stream client gets it as events.
      const m2 = uniq(`${sdk.name} tools-json`);
      relay.fake.enqueue({ toolCalls: true });
      const { data: msg, response: h3 } = await client.messages.create(thinkingToolRequest(m2), FORCE).withResponse();
      assert.equal(h3.headers.get('x-cache'), 'MISS');
      check(msg, m2);
      const s2 = client.messages.stream(thinkingToolRequest(m2), FORCE);
      const { response: h4 } = await s2.withResponse();
      assert.equal(h4.headers.get('x-cache'), 'HIT');
      const fromStream = await s2.finalMessage();
      check(fromStream, m2);
      assert.deepEqual(core(fromStream), core(msg));
      assert.equal(relay.fake.callsFor(m2).length, 1);
    });

    test(`${sdk.name}: system as a string and as blocks with cache_control are two keys, both forwarded untouched`, T, async () => {
      const { client, sent } = sdkClient(relay, sdk);
      const m = uniq(`${sdk.name} system`);
      const asString = ask('hi', { system: `You are terse. ${m}` });
      const asBlocks = ask('hi', { system: [{ type: 'text', text: `You are terse. ${m}`, cache_control: { type: 'ephemeral' } }] });
      const { response: h1 } = await client.messages.create(asString).withResponse();
      const { response: h2 } = await client.messages.create(asBlocks).withResponse();
      assert.equal(h1.headers.get('x-cache'), 'MISS');
      assert.equal(h2.headers.get('x-cache'), 'MISS');
      assert.notEqual(h1.headers.get('x-relay-key'), h2.headers.get('x-relay-key'));
      const calls = relay.fake.callsFor(m);
      assert.equal(calls.length, 2);
      assert.equal(calls[0].body, sent[0].body);
      assert.equal(calls[1].body, sent[1].body);
      assert.deepEqual(JSON.parse(calls[1].body).system[0].cache_control, { type: 'ephemeral' });
      // Each is cached under its own key.
      const { response: h3 } = await client.messages.create(asBlocks).withResponse();
      const { response: h4 } = await client.messages.create(asString).withResponse();
      assert.equal(h3.headers.get('x-cache'), 'HIT');
      assert.equal(h4.headers.get('x-cache'), 'HIT');
      assert.equal(h3.headers.get('x-relay-key'), h2.headers.get('x-relay-key'));
      assert.equal(relay.fake.callsFor(m).length, 2);
    });

    test(`${sdk.name}: beta.messages is cached; count_tokens too`, T, async () => {
      const { client } = sdkClient(relay, sdk);
      const m = uniq(`${sdk.name} beta`);
      const req = { ...ask(m), betas: ['context-management-2025-06-27'] };
      const { data: a, response: h1 } = await client.beta.messages.create(req).withResponse();
      const { data: b, response: h2 } = await client.beta.messages.create(req).withResponse();
      assert.equal(h1.headers.get('x-cache'), 'MISS');
      assert.equal(h2.headers.get('x-cache'), 'HIT');
      assert.equal(b.id, a.id);
      const calls = relay.fake.callsFor(m);
      assert.equal(calls.length, 1);
      assert.equal(calls[0].path, '/v1/messages');
      assert.equal(calls[0].query, sdk.betaQuery);
      assert.equal(calls[0].headers['anthropic-beta'], 'context-management-2025-06-27');
      assert.equal(JSON.parse(calls[0].body).betas, undefined, 'betas travel as a header');

      const mc = uniq(`${sdk.name} count`);
      const creq = { model: MODEL, messages: [{ role: 'user', content: `count these words ${mc}` }] };
      const { data: c1, response: hc1 } = await client.messages.countTokens(creq).withResponse();
      const { data: c2, response: hc2 } = await client.messages.countTokens(creq).withResponse();
      assert.equal(hc1.headers.get('x-cache'), 'MISS');
      assert.equal(hc2.headers.get('x-cache'), 'HIT');
      assert.equal(typeof c1.input_tokens, 'number');
      assert.deepEqual(c2, c1);
      const ccalls = relay.fake.callsFor(mc);
      assert.equal(ccalls.length, 1);
      assert.equal(ccalls[0].path, '/v1/messages/count_tokens');
    });

    test(`${sdk.name}: an upstream 529 and 500 reach the SDK as APIError with that status; nothing is cached`, T, async () => {
      const { client } = sdkClient(relay, sdk);
      for (const [status, type] of [[529, 'overloaded_error'], [500, 'api_error']]) {
        const m = uniq(`${sdk.name} ${status}`);
        relay.fake.enqueue({ status });
        await assert.rejects(client.messages.create(ask(m)), (err) => {
          assert.ok(err instanceof sdk.Client.APIError, String(err));
          assert.equal(err.status, status);
          assert.equal(err.error?.type, 'error', JSON.stringify(err.error));
          assert.equal(err.error.error.type, type);
          return true;
        });
        // The stream form too: the status comes before any event.
        relay.fake.enqueue({ status });
        await assert.rejects(client.messages.stream(ask(m)).finalMessage(), (err) => {
          assert.ok(err instanceof sdk.Client.APIError, String(err));
          assert.equal(err.status, status);
          return true;
        });
        const { data, response } = await client.messages.create(ask(m)).withResponse();
        assert.equal(response.headers.get('x-cache'), 'MISS', `a ${status} was not cached`);
        assert.equal(data.content[0].text, `Echo: ${m}`);
        assert.equal(relay.fake.callsFor(m).length, 3);
      }
    });

    test(`${sdk.name}: a stream cut mid-way or ended by an error event fails in the SDK; nothing is cached`, T, async () => {
      const { client } = sdkClient(relay, sdk);
      for (const beh of [{ chunks: 4, cutAfter: 5 }, { chunks: 4, cutAfter: 5, cutMode: 'end' }, { chunks: 4, errorAfter: 4 }]) {
        const m = uniq(`${sdk.name} cut`);
        relay.fake.enqueue(beh);
        const s = client.messages.stream(ask(m));
        const deltas = [];
        s.on('text', (t) => deltas.push(t));
        await assert.rejects(s.finalMessage(), JSON.stringify(beh));
        assert.ok(deltas.length >= 1, `some text arrived before the failure (${JSON.stringify(beh)})`);
        const { response } = await client.messages.create(ask(m)).withResponse();
        assert.equal(response.headers.get('x-cache'), 'MISS', JSON.stringify(beh));
        assert.equal(relay.fake.callsFor(m).length, 2, JSON.stringify(beh));
      }
    });

    test(`${sdk.name}: without a credential: 401 authentication_error, nothing sent upstream`, T, async () => {
      const m = uniq(`${sdk.name} nokey`);
      // The SDK sends no credential header when it is explicitly nulled.
      const header = sdk.Client === Anthropic ? 'authorization' : 'x-api-key';
      const { client, sent } = sdkClient(relay, sdk, { defaultHeaders: { [header]: null } });
      await assert.rejects(client.messages.create(ask(m)), (err) => {
        assert.ok(err instanceof sdk.Client.AuthenticationError, String(err));
        assert.equal(err.status, 401);
        assert.equal(err.error?.type, 'error', JSON.stringify(err.error));
        assert.equal(err.error.error.type, 'authentication_error');
        return true;
      });
      assert.equal(sent[0].headers.get('x-api-key'), null);
      assert.equal(sent[0].headers.get('authorization'), null);
      assert.equal(relay.fake.callsFor(m).length, 0);
    });
  }

  test('context_management (reported on message_delta when streamed) survives stream -> message and back', T, async () => {
    // Claude Code sends context_management; the API reports the edits it
    // applied, in a stream on message_delta, which the SDK's
    // BetaMessageStream copies into the message.
    const { client } = sdkClient(relay, SDKS[1]);
    const req = (m) => ({
      ...thinkingToolRequest(m),
      betas: ['context-management-2025-06-27'],
      context_management: { edits: [{ type: 'clear_thinking_20251015', keep: 'all' }] },
    });
    const m1 = uniq('ctx stream-then-json');
    const s = client.beta.messages.stream(req(m1), FORCE);
    const streamed = await s.finalMessage();
    assert.deepEqual(streamed.context_management, { applied_edits: [] }, 'the SDK took it from message_delta');
    const { data: assembled, response: h1 } = await client.beta.messages.create(req(m1), FORCE).withResponse();
    assert.equal(h1.headers.get('x-cache'), 'HIT');
    assert.deepEqual(assembled.context_management, { applied_edits: [] }, 'kept in the assembled message');
    assert.deepEqual(core(assembled), core(streamed));

    const m2 = uniq('ctx json-then-stream');
    const { data: msg } = await client.beta.messages.create(req(m2), FORCE).withResponse();
    assert.deepEqual(msg.context_management, { applied_edits: [] });
    const raw = await relay.fetch('/v1/messages?beta=true', {
      method: 'POST',
      headers: { ...rawHeaders(SDKS[1]), 'anthropic-beta': 'context-management-2025-06-27', 'x-relay-cache': 'on' },
      body: JSON.stringify({ ...req(m2), betas: undefined, stream: true }),
    });
    assert.equal(raw.headers.get('x-cache'), 'HIT');
    const delta = parseSse(raw.text).find((e) => e.event === 'message_delta');
    assert.deepEqual(JSON.parse(delta.data).context_management, { applied_edits: [] }, 'rendered on message_delta, as the API does');
    const fromStream = await client.beta.messages.stream(req(m2), FORCE).finalMessage();
    assert.deepEqual(fromStream.context_management, { applied_edits: [] });
    assert.equal(relay.fake.callsFor(m1).length, 1);
    assert.equal(relay.fake.callsFor(m2).length, 1);
  });

  test('no credential, raw: 401 in Anthropic\'s shape, stream or not, ?beta=true or count_tokens', T, async () => {
    const m = uniq('raw nokey');
    for (const [p, body] of [
      ['/v1/messages', ask(m)],
      ['/v1/messages?beta=true', { ...ask(m), stream: true }],
      ['/v1/messages/count_tokens', { model: MODEL, messages: [{ role: 'user', content: m }] }],
    ]) {
      const r = await relay.fetch(p, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify(body),
      });
      assert.equal(r.status, 401, `${p}: ${r.text}`);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      anthropicErrorOf(r.text, 'authentication_error');
    }
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('an invalid request is refused with 400 invalid_request_error before going upstream', T, async () => {
    const m = uniq('invalid');
    const post = (body) => relay.fetch('/v1/messages', {
      method: 'POST',
      headers: rawHeaders(SDKS[1]),
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const cases = [
      [{ model: MODEL, messages: [{ role: 'user', content: m }] }, /max_tokens/],
      [{ max_tokens: 5, messages: [{ role: 'user', content: m }] }, /model/],
      [`{"model":"${MODEL}","max_tokens":5,"messages":[{"role":"user","content":"${m}"}`, /pars|JSON/i],
    ];
    for (const [body, why] of cases) {
      const r = await post(body);
      assert.equal(r.status, 400, r.text);
      assert.match(anthropicErrorOf(r.text, 'invalid_request_error').message, why);
    }
    assert.equal(relay.fake.callsFor(m).length, 0);
    // The SDK sees a BadRequestError.
    const { client } = sdkClient(relay, SDKS[0]);
    await assert.rejects(client.messages.create({ model: MODEL, messages: [{ role: 'user', content: m }] }),
      (err) => err instanceof Anthropic.BadRequestError && err.error.error.type === 'invalid_request_error');
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('a body over [fcgi] max_body is a 413 request_too_large, nothing sent upstream', T, async () => {
    // Claude Code's requests are ~80 KB: over the harness's 64 KiB.
    const m = uniq('too large');
    const r = await relay.fetch('/v1/messages?beta=true', {
      method: 'POST',
      headers: rawHeaders(SDKS[1]),
      body: JSON.stringify(ask(`${m} ${'x'.repeat(70000)}`)),
    });
    assert.equal(r.status, 413, r.text);
    anthropicErrorOf(r.text, 'request_too_large');
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('anthropic-version is in the key; the header carrying the key is not', T, async () => {
    const m = uniq('version');
    const { client: c1 } = sdkClient(relay, SDKS[0]);
    const { client: c0 } = sdkClient(relay, SDKS[1]);
    // 1.x as it is (2026-10-21), then 1.x told to speak 2023-06-01.
    const { response: h1 } = await c1.messages.create(ask(m)).withResponse();
    const { response: h2 } = await c1.messages.create(ask(m), { headers: { 'anthropic-version': '2023-06-01' } }).withResponse();
    assert.equal(h1.headers.get('x-cache'), 'MISS');
    assert.equal(h2.headers.get('x-cache'), 'MISS', 'another API version is another answer');
    assert.notEqual(h2.headers.get('x-relay-key'), h1.headers.get('x-relay-key'));
    const calls = relay.fake.callsFor(m);
    assert.deepEqual(calls.map((c) => c.headers['anthropic-version']), ['2026-10-21', '2023-06-01']);
    // 0.x (x-api-key, 2023-06-01) with the same key: the entry of the second.
    const { data, response: h3 } = await c0.messages.create(ask(m)).withResponse();
    assert.equal(h3.headers.get('x-cache'), 'HIT', 'one key is one credential whichever header carries it');
    assert.equal(h3.headers.get('x-relay-key'), h2.headers.get('x-relay-key'));
    assert.equal(data.id, `msg_fake${calls[1].n}`);
    assert.equal(relay.fake.callsFor(m).length, 2);
    // Another credential does not see it.
    const { client: cb } = sdkClient(relay, SDKS[1], { apiKey: KEY_B });
    const { response: h4 } = await cb.messages.create(ask(m)).withResponse();
    assert.equal(h4.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 3);
  });

  test('anthropic-beta is in the key: two betas, two calls; the same set in another order, a HIT', T, async () => {
    for (const sdk of SDKS) {
      const { client } = sdkClient(relay, sdk);
      const m = uniq(`${sdk.name} betas`);
      const one = 'interleaved-thinking-2025-05-14';
      const two = 'context-1m-2025-08-07';
      const { response: h1 } = await client.beta.messages.create({ ...ask(m), betas: [one] }).withResponse();
      const { response: h2 } = await client.beta.messages.create({ ...ask(m), betas: [two] }).withResponse();
      assert.equal(h1.headers.get('x-cache'), 'MISS');
      assert.equal(h2.headers.get('x-cache'), 'MISS', 'another beta is another answer');
      assert.deepEqual(relay.fake.callsFor(m).map((c) => c.headers['anthropic-beta']), [one, two]);
      const { response: h3 } = await client.beta.messages.create({ ...ask(m), betas: [one, two] }).withResponse();
      const { response: h4 } = await client.beta.messages.create({ ...ask(m), betas: [two, one] }).withResponse();
      assert.equal(h3.headers.get('x-cache'), 'MISS');
      assert.equal(h4.headers.get('x-cache'), 'HIT', 'the same set of betas');
      // No beta at all is a third answer; beta.messages without betas (with
      // ?beta=true for 0.x) is that same request.
      const { response: h5 } = await client.messages.create(ask(m)).withResponse();
      const { response: h6 } = await client.beta.messages.create(ask(m)).withResponse();
      assert.equal(h5.headers.get('x-cache'), 'MISS');
      assert.equal(h6.headers.get('x-cache'), 'HIT', 'beta.messages without a beta header is the same request');
      assert.equal(relay.fake.callsFor(m).length, 4);
    }
  });

  test('without temperature 0 (Anthropic samples at 1.0) nothing is cached unless X-Relay-Cache: on', T, async () => {
    const { client } = sdkClient(relay, SDKS[1]);
    for (const extra of [{ temperature: undefined }, { temperature: 0.7 }]) {
      const m = uniq('sampled');
      const req = ask(m, extra);
      const { response: h1 } = await client.messages.create(req).withResponse();
      const { response: h2 } = await client.messages.create(req).withResponse();
      assert.equal(h1.headers.get('x-cache'), 'BYPASS', JSON.stringify(extra));
      assert.equal(h2.headers.get('x-cache'), 'BYPASS', JSON.stringify(extra));
      assert.equal(relay.fake.callsFor(m).length, 2);
      const { response: h3 } = await client.messages.create(req, FORCE).withResponse();
      const { response: h4 } = await client.messages.create(req, FORCE).withResponse();
      assert.equal(h3.headers.get('x-cache'), 'MISS');
      assert.equal(h4.headers.get('x-cache'), 'HIT');
      assert.equal(relay.fake.callsFor(m).length, 3);
    }
  });

  test('metadata.user_id (Claude Code\'s session id) is not in the key, and is forwarded', T, async () => {
    const m = uniq('user_id');
    const userId = (session) => JSON.stringify({ device_id: 'dev1', account_uuid: '', session_id: session });
    const { client, sent } = sdkClient(relay, SDKS[1]);
    const { data: a, response: h1 } = await client.messages.create(ask(m, { metadata: { user_id: userId('session-1') } })).withResponse();
    const { data: b, response: h2 } = await client.messages.create(ask(m, { metadata: { user_id: userId('session-2') } })).withResponse();
    const { response: h3 } = await client.messages.create(ask(m)).withResponse();
    assert.equal(h1.headers.get('x-cache'), 'MISS');
    assert.equal(h2.headers.get('x-cache'), 'HIT');
    assert.equal(h3.headers.get('x-cache'), 'HIT', 'no metadata at all is the same request');
    assert.equal(b.id, a.id);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].body, sent[0].body);
    assert.equal(JSON.parse(calls[0].body).metadata.user_id, userId('session-1'));
  });

  test('a stream HIT is replayed byte for byte to curl-like raw clients of both header styles', T, async () => {
    // A stream stored from a 0.x request (x-api-key) answers a raw request
    // that carries the key as a bearer token, with the same version.
    const m = uniq('raw replay');
    relay.fake.enqueue({ chunks: 5 });
    const body = JSON.stringify({ ...ask(m), stream: true });
    const r1 = await relay.fetch('/v1/messages', { method: 'POST', headers: rawHeaders(SDKS[1]), body });
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.equal(r1.text, relay.fake.callsFor(m)[0].sent, 'passed through as sent');
    const r2 = await relay.fetch('/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', authorization: `Bearer ${KEY_A}` },
      body,
    });
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, r1.text);
    assert.equal(streamText(r2.text).text, `Echo: ${m}`);
    // ?beta=true (Claude Code's path) selects nothing of its own.
    const r3 = await relay.fetch('/v1/messages?beta=true', { method: 'POST', headers: rawHeaders(SDKS[1]), body });
    assert.equal(r3.headers.get('x-cache'), 'HIT');
    assert.equal(r3.text, r1.text);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });
});

relaySuite('anthropic messages under a mount', {
  upstreams: [{ name: 'claude', type: 'anthropic', mount: '/anthropic' }],
}, (relay) => {
  for (const sdk of SDKS) {
    test(`${sdk.name} with baseURL .../anthropic: MISS then HIT, stream from the entry, count_tokens`, T, async () => {
      const { client, sent } = sdkClient(relay, sdk, { prefix: '/anthropic' });
      const m = uniq(`${sdk.name} mount`);
      const { data: a, response: h1 } = await client.messages.create(ask(m)).withResponse();
      const { data: b, response: h2 } = await client.messages.create(ask(m)).withResponse();
      assert.equal(sent[0].url, `${relay.base}/anthropic/v1/messages`);
      assert.equal(h1.headers.get('x-cache'), 'MISS');
      assert.equal(h2.headers.get('x-cache'), 'HIT');
      assert.equal(b.id, a.id);
      assert.equal(a.content[0].text, `Echo: ${m}`);
      const s = client.messages.stream(ask(m));
      const { response: h3 } = await s.withResponse();
      assert.equal(h3.headers.get('x-cache'), 'HIT');
      assert.equal(await s.finalText(), `Echo: ${m}`);
      const calls = relay.fake.callsFor(m);
      assert.equal(calls.length, 1);
      assert.equal(calls[0].path, '/v1/messages', 'the mount prefix is not sent upstream');
      assert.equal(calls[0].body, sent[0].body);
      sdk.auth(calls[0].headers);

      const { response: hb } = await client.beta.messages.create({ ...ask(m), betas: ['context-1m-2025-08-07'] }).withResponse();
      assert.equal(hb.headers.get('x-cache'), 'MISS');
      assert.equal(relay.fake.callsFor(m).at(-1).query, sdk.betaQuery);

      const creq = { model: MODEL, messages: [{ role: 'user', content: m }] };
      const { response: hc1 } = await client.messages.countTokens(creq).withResponse();
      const { response: hc2 } = await client.messages.countTokens(creq).withResponse();
      assert.equal(hc1.headers.get('x-cache'), 'MISS');
      assert.equal(hc2.headers.get('x-cache'), 'HIT');
      assert.equal(relay.fake.callsFor(m).filter((c) => c.path === '/v1/messages/count_tokens').length, 1);
    });
  }

  test('under the mount: no credential is a 401 in Anthropic\'s shape; an upstream 529 is passed through', T, async () => {
    const m = uniq('mount errors');
    const r = await relay.fetch('/anthropic/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify(ask(m)),
    });
    assert.equal(r.status, 401, r.text);
    anthropicErrorOf(r.text, 'authentication_error');
    assert.equal(relay.fake.callsFor(m).length, 0);
    const { client } = sdkClient(relay, SDKS[1], { prefix: '/anthropic' });
    relay.fake.enqueue({ status: 529 });
    await assert.rejects(client.messages.create(ask(m)), (err) => err instanceof Anthropic0.APIError && err.status === 529 && err.error.error.type === 'overloaded_error');
    const { response } = await client.messages.create(ask(m)).withResponse();
    assert.equal(response.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });
});
