// The Gemini API through Caddy and Relay ([upstream.gemini] type = gemini),
// with Google's own SDK (@google/genai, which speaks /v1beta and streams with
// ?alt=sse) and with raw fetch where the SDK has no say (the streamed JSON
// array of :streamGenerateContent without alt, :embedContent, keys in the
// query). Each cacheable request: one upstream call, then a HIT (the fake
// puts its call number in responseId); stream and non-stream answer each
// other; the key scopes the cache but is never logged nor added to the
// forwarded query; errors in Google's shape {"error":{"code","message",
// "status"}}, never cached.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import { GoogleGenAI, ApiError } from '@google/genai';

import { relaySuite, uniq, KEY_A, KEY_B, TEST_TIMEOUT, REQUEST_TIMEOUT } from './harness.mjs';
import { parseSse } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const MODEL = 'gemini-2.5-flash';
const KEY_RE = /^[0-9a-f]{16}$/;

// A generateContent body about text, deterministic (cacheable) by default.
const genBody = (text, config = { temperature: 0 }) => ({
  contents: [{ role: 'user', parts: [{ text }] }],
  generationConfig: config,
});

// The Gemini error document: {"error":{"code","message","status"}}, code
// being the HTTP status.
function assertGeminiError(r, status) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  const doc = JSON.parse(r.text);
  assert.equal(typeof doc.error, 'object', r.text);
  assert.equal(doc.error.code, status, r.text);
  assert.equal(typeof doc.error.message, 'string', r.text);
  assert.ok(doc.error.message.length > 0, r.text);
  assert.match(doc.error.status, /^[A-Z_]+$/, r.text);
  return doc.error;
}

// The elements of a :streamGenerateContent answer without alt: one JSON array.
function parseJsonArrayStream(text) {
  let arr;
  try {
    arr = JSON.parse(text);
  } catch (err) {
    assert.fail(`not a JSON array stream (${err.message}):\n${text.slice(0, 400)}`);
  }
  assert.ok(Array.isArray(arr), `not an array: ${text.slice(0, 200)}`);
  return arr;
}

// The text of GenerateContentResponse chunks, joined.
const chunksText = (chunks) =>
  chunks.map((c) => (c.candidates?.[0]?.content?.parts ?? []).map((p) => p.text ?? '').join('')).join('');

relaySuite('gemini: generateContent, streams, countTokens, embedContent', { upstreams: ['gemini'] }, (relay) => {
  // Google's SDK pointed at Relay. No retries: every upstream call counts.
  const ai = (apiKey = KEY_A) =>
    new GoogleGenAI({ apiKey, httpOptions: { baseUrl: relay.base, timeout: REQUEST_TIMEOUT } });
  // A response header of an SDK answer (a plain object of lower-case names).
  const hdr = (resp, name) => resp.sdkHttpResponse?.headers?.[name];

  // POST /{version}/models/{model}:{method}[?query] with the key in
  // x-goog-api-key (key: null for none). body: an object or the exact string.
  const post = (method, body, { model = MODEL, version = 'v1beta', key = KEY_A, query = '', headers = {} } = {}) => {
    const h = { 'content-type': 'application/json', ...headers };
    if (key) h['x-goog-api-key'] = key;
    return relay.fetch(`/${version}/models/${model}:${method}${query ? `?${query}` : ''}`, {
      method: 'POST',
      headers: h,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  };

  // The keys used in this suite, to look for in the log at the end.
  const QUERY_KEY = `AIzaSy-query-${randomUUID()}`;

  test('SDK generateContent: MISS then HIT, one upstream call, the same responseId', T, async () => {
    const m = uniq('gen');
    const req = { model: MODEL, contents: m, config: { temperature: 0 } };
    const r1 = await ai().models.generateContent(req);
    assert.equal(r1.text, `Echo: ${m}`);
    assert.equal(hdr(r1, 'x-cache'), 'MISS');
    assert.match(hdr(r1, 'x-relay-key') ?? '', KEY_RE);
    assert.match(r1.responseId, /^fake\d+$/);
    assert.equal(r1.candidates[0].finishReason, 'STOP');

    const r2 = await ai().models.generateContent(req);
    assert.equal(hdr(r2, 'x-cache'), 'HIT');
    assert.equal(hdr(r2, 'x-relay-key'), hdr(r1, 'x-relay-key'));
    assert.equal(r2.responseId, r1.responseId, 'the very answer of the first call');
    assert.equal(r2.text, r1.text);
    assert.deepEqual(r2.usageMetadata, r1.usageMetadata);

    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].method, 'POST');
    assert.equal(calls[0].path, `/v1beta/models/${MODEL}:generateContent`);
    assert.equal(calls[0].headers['x-goog-api-key'], KEY_A);
    assert.equal(calls[0].query, '', 'the key in the header is not added to the forwarded query');
  });

  test('SDK generateContent without temperature 0 or a seed is not cached (BYPASS)', T, async () => {
    const m = uniq('gen-random');
    const req = { model: MODEL, contents: m, config: { temperature: 1 } };
    const r1 = await ai().models.generateContent(req);
    const r2 = await ai().models.generateContent(req);
    assert.equal(hdr(r1, 'x-cache'), 'BYPASS');
    assert.equal(hdr(r2, 'x-cache'), 'BYPASS');
    assert.notEqual(r2.responseId, r1.responseId);
    // A fixed seed makes it repeatable.
    const seeded = { ...req, config: { temperature: 1, seed: 42 } };
    const s1 = await ai().models.generateContent(seeded);
    const s2 = await ai().models.generateContent(seeded);
    assert.deepEqual([s1, s2].map((r) => hdr(r, 'x-cache')), ['MISS', 'HIT']);
    assert.equal(s2.responseId, s1.responseId);
    assert.equal(relay.fake.callsFor(m).length, 3);
  });

  test('SDK generateContentStream (alt=sse): the chunks arrive; a repeat is a HIT with the same chunks', T, async () => {
    const m = uniq('stream');
    relay.fake.enqueue({ chunks: 4, chunkDelayMs: 20 });
    const run = async () => {
      const stream = await ai().models.generateContentStream({ model: MODEL, contents: m, config: { temperature: 0 } });
      const chunks = [];
      for await (const c of stream) chunks.push(c);
      return chunks;
    };
    const first = await run();
    assert.equal(first.length, 4);
    assert.equal(first.map((c) => c.text).join(''), `Echo: ${m}`);
    assert.equal(hdr(first[0], 'x-cache'), 'MISS');
    assert.match(hdr(first[0], 'content-type') ?? '', /^text\/event-stream/);
    assert.equal(first.at(-1).candidates[0].finishReason, 'STOP');
    const [call] = relay.fake.callsFor(m);
    assert.equal(call.path, `/v1beta/models/${MODEL}:streamGenerateContent`);
    assert.equal(call.query, 'alt=sse', 'the forwarded query is the client\'s, without the key');
    assert.equal(call.headers['x-goog-api-key'], KEY_A);

    const second = await run();
    assert.equal(hdr(second[0], 'x-cache'), 'HIT');
    assert.deepEqual(second.map((c) => c.text), first.map((c) => c.text));
    assert.deepEqual(second.map((c) => c.responseId), first.map((c) => c.responseId));
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a streamed answer reaches the client as it is sent, and its replay is byte for byte (raw SSE)', T, async () => {
    const m = uniq('sse-raw');
    relay.fake.enqueue({ chunks: 4, chunkDelayMs: 250 });
    const t0 = Date.now();
    const res = await relay.fetch(`/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': KEY_A },
      body: JSON.stringify(genBody(m)),
    }, { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-cache'), 'MISS');
    const decoder = new TextDecoder();
    let text = '';
    const arrivals = [];
    for await (const part of res.body) {
      text += decoder.decode(part, { stream: true });
      arrivals.push({ at: Date.now() - t0, events: (text.match(/\r\n\r\n/g) ?? []).length });
    }
    const first = arrivals.find((a) => a.events >= 1).at;
    const end = arrivals.at(-1).at;
    assert.ok(end - first >= 600, `first event at ${first} ms, last at ${end} ms: the stream was held back`);
    const [call] = relay.fake.callsFor(m);
    assert.equal(text, call.sent, 'the client got the upstream stream unchanged');
    const events = parseSse(text).map((e) => JSON.parse(e.data));
    assert.equal(chunksText(events), `Echo: ${m}`);

    const r2 = await post('streamGenerateContent', genBody(m), { query: 'alt=sse' });
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, text, 'the replay is the stream as it came');
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a stream request is answered from a stored non-stream answer', T, async () => {
    const m = uniq('body-then-stream');
    const req = { model: MODEL, contents: m, config: { temperature: 0 } };
    const r1 = await ai().models.generateContent(req);
    assert.equal(hdr(r1, 'x-cache'), 'MISS');
    const chunks = [];
    for await (const c of await ai().models.generateContentStream(req)) chunks.push(c);
    assert.ok(chunks.length >= 1);
    assert.equal(hdr(chunks[0], 'x-cache'), 'HIT');
    assert.equal(chunks.map((c) => c.text).join(''), `Echo: ${m}`);
    assert.equal(chunks.at(-1).candidates[0].finishReason, 'STOP');
    assert.equal(chunks.at(-1).responseId, r1.responseId);
    assert.deepEqual(chunks.at(-1).usageMetadata, r1.usageMetadata);
    // And as a JSON array (no alt=sse): one element, the whole answer.
    const r3 = await post('streamGenerateContent', genBody(m));
    assert.equal(r3.status, 200, r3.text);
    assert.equal(r3.headers.get('x-cache'), 'HIT');
    assert.match(r3.headers.get('content-type') ?? '', /^application\/json/);
    const arr = parseJsonArrayStream(r3.text);
    assert.equal(chunksText(arr), `Echo: ${m}`);
    assert.equal(arr.at(-1).responseId, r1.responseId);
    assert.equal(arr.at(-1).candidates[0].finishReason, 'STOP');
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a non-stream request is answered from a stored stream', T, async () => {
    const m = uniq('stream-then-body');
    relay.fake.enqueue({ chunks: 5 });
    const req = { model: MODEL, contents: m, config: { temperature: 0 } };
    const chunks = [];
    for await (const c of await ai().models.generateContentStream(req)) chunks.push(c);
    assert.equal(chunks.length, 5);
    assert.equal(hdr(chunks[0], 'x-cache'), 'MISS');
    const r = await ai().models.generateContent(req);
    assert.equal(hdr(r, 'x-cache'), 'HIT');
    assert.equal(r.text, `Echo: ${m}`, 'the pieces joined into one answer');
    assert.equal(r.candidates.length, 1);
    assert.equal(r.candidates[0].content.parts.length, 1, 'one text part, as a non-stream answer has');
    assert.equal(r.candidates[0].content.role, 'model');
    assert.equal(r.candidates[0].finishReason, 'STOP');
    assert.equal(r.responseId, chunks[0].responseId);
    assert.deepEqual(r.usageMetadata, chunks.at(-1).usageMetadata, 'the final usage');
    assert.equal(r.modelVersion, MODEL);
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test(':streamGenerateContent without alt=sse: a JSON array passed through and replayed byte for byte', T, async () => {
    const m = uniq('json-array');
    // 3 elements 250 ms apart, then "]": ~750 ms. Held back by a proxy
    // (application/json is not text/event-stream), it would come at once.
    relay.fake.enqueue({ chunks: 3, chunkDelayMs: 250 });
    const t0 = Date.now();
    const res = await relay.fetch(`/v1beta/models/${MODEL}:streamGenerateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': KEY_A },
      body: JSON.stringify(genBody(m)),
    }, { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-cache'), 'MISS');
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const decoder = new TextDecoder();
    const arrivals = [];
    let text = '';
    for await (const part of res.body) {
      text += decoder.decode(part, { stream: true });
      arrivals.push(Date.now() - t0);
    }
    assert.ok(arrivals.at(-1) - arrivals[0] >= 400, `first bytes at ${arrivals[0]} ms, last at ${arrivals.at(-1)} ms: the array was held back`);
    const [call] = relay.fake.callsFor(m);
    assert.equal(call.query, '');
    assert.equal(text, call.sent, 'the client got the upstream array unchanged');
    const arr = parseJsonArrayStream(text);
    assert.equal(arr.length, 3);
    assert.equal(chunksText(arr), `Echo: ${m}`);

    const r2 = await post('streamGenerateContent', genBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.match(r2.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(r2.text, text, 'the replay is byte for byte');
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('a JSON array stream is served from an answer stored with alt=sse, and the reverse', T, async () => {
    const m = uniq('sse-then-array');
    relay.fake.enqueue({ chunks: 3 });
    const r1 = await post('streamGenerateContent', genBody(m), { query: 'alt=sse' });
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    const sse = parseSse(r1.text).map((e) => JSON.parse(e.data));
    const r2 = await post('streamGenerateContent', genBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.match(r2.headers.get('content-type') ?? '', /^application\/json/);
    const arr = parseJsonArrayStream(r2.text);
    assert.equal(chunksText(arr), `Echo: ${m}`);
    assert.equal(arr.at(-1).candidates[0].finishReason, 'STOP');
    assert.equal(arr.at(-1).responseId, sse[0].responseId);
    assert.equal(relay.fake.callsFor(m).length, 1);

    const n = uniq('array-then-sse');
    const r3 = await post('streamGenerateContent', genBody(n));
    assert.equal(r3.headers.get('x-cache'), 'MISS');
    const r4 = await post('streamGenerateContent', genBody(n), { query: 'alt=sse' });
    assert.equal(r4.status, 200, r4.text);
    assert.equal(r4.headers.get('x-cache'), 'HIT');
    assert.match(r4.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events = parseSse(r4.text).map((e) => JSON.parse(e.data));
    assert.equal(chunksText(events), `Echo: ${n}`);
    assert.equal(events.at(-1).candidates[0].finishReason, 'STOP');
    assert.equal(relay.fake.callsFor(n).length, 1);
  });

  test('countTokens is cached (SDK)', T, async () => {
    const m = uniq('count');
    const req = { model: MODEL, contents: `${m} one two three` };
    const c1 = await ai().models.countTokens(req);
    const c2 = await ai().models.countTokens(req);
    assert.equal(typeof c1.totalTokens, 'number');
    assert.ok(c1.totalTokens > 0);
    assert.equal(c2.totalTokens, c1.totalTokens);
    assert.equal(hdr(c1, 'x-cache'), 'MISS');
    assert.equal(hdr(c2, 'x-cache'), 'HIT');
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].path, `/v1beta/models/${MODEL}:countTokens`);
  });

  test('embedContent is cached (deterministic)', T, async () => {
    const m = uniq('embed');
    const body = { content: { parts: [{ text: m }] }, outputDimensionality: 16 };
    const r1 = await post('embedContent', body, { model: 'text-embedding-004' });
    const r2 = await post('embedContent', body, { model: 'text-embedding-004' });
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    const e = JSON.parse(r1.text);
    assert.equal(e.embedding.values.length, 16);
    assert.deepEqual(JSON.parse(r2.text), e);
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].path, '/v1beta/models/text-embedding-004:embedContent');
  });

  test('the key in ?key= works too, is forwarded as given and scopes like the same key in the header', T, async () => {
    const m = uniq('query-key');
    const r1 = await post('generateContent', genBody(m), { key: null, query: `key=${QUERY_KEY}` });
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    assert.equal(JSON.parse(r1.text).candidates[0].content.parts[0].text, `Echo: ${m}`);
    const [call] = relay.fake.callsFor(m);
    assert.equal(call.query, `key=${QUERY_KEY}`);
    assert.equal(call.headers['x-goog-api-key'], undefined, 'no header made up from the query');

    // The same key, now in the header: the same scope, so a HIT.
    const r2 = await post('generateContent', genBody(m), { key: QUERY_KEY });
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.headers.get('x-relay-key'), r1.headers.get('x-relay-key'));
    // Another key in the query: another scope.
    const r3 = await post('generateContent', genBody(m), { key: null, query: `alt=json&key=${KEY_B}` });
    assert.equal(r3.status, 200, r3.text);
    assert.equal(r3.headers.get('x-cache'), 'MISS');
    assert.notEqual(r3.headers.get('x-relay-key'), r1.headers.get('x-relay-key'));
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('two different keys: two upstream calls, two cache keys (the cache is scoped by key)', T, async () => {
    const m = uniq('scope');
    const req = { model: MODEL, contents: m, config: { temperature: 0 } };
    const a = await ai(KEY_A).models.generateContent(req);
    const b = await ai(KEY_B).models.generateContent(req);
    const b2 = await ai(KEY_B).models.generateContent(req);
    assert.equal(hdr(a, 'x-cache'), 'MISS');
    assert.equal(hdr(b, 'x-cache'), 'MISS');
    assert.equal(hdr(b2, 'x-cache'), 'HIT');
    assert.notEqual(hdr(a, 'x-relay-key'), hdr(b, 'x-relay-key'));
    assert.notEqual(a.responseId, b.responseId);
    assert.equal(b2.responseId, b.responseId);
    const calls = relay.fake.callsFor(m);
    assert.deepEqual(calls.map((c) => c.headers['x-goog-api-key']), [KEY_A, KEY_B]);
    assert.deepEqual(calls.map((c) => c.query), ['', '']);
  });

  test('the model and the API version in the path are part of the key', T, async () => {
    const m = uniq('models');
    const r1 = await post('generateContent', genBody(m), { model: 'gemini-2.5-flash' });
    const r2 = await post('generateContent', genBody(m), { model: 'gemini-2.5-pro' });
    const r3 = await post('generateContent', genBody(m), { model: 'gemini-2.5-flash', version: 'v1' });
    for (const r of [r1, r2, r3]) assert.equal(r.status, 200, r.text);
    assert.deepEqual([r1, r2, r3].map((r) => r.headers.get('x-cache')), ['MISS', 'MISS', 'MISS']);
    assert.equal(new Set([r1, r2, r3].map((r) => r.headers.get('x-relay-key'))).size, 3);
    assert.equal(JSON.parse(r2.text).modelVersion, 'gemini-2.5-pro');
    assert.deepEqual(relay.fake.callsFor(m).map((c) => c.path), [
      '/v1beta/models/gemini-2.5-flash:generateContent',
      '/v1beta/models/gemini-2.5-pro:generateContent',
      '/v1/models/gemini-2.5-flash:generateContent',
    ]);
    const again = await post('generateContent', genBody(m), { model: 'gemini-2.5-pro' });
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.equal(again.text, r2.text);
  });

  test('no key: refused by Relay in Gemini\'s error shape, nothing sent upstream', T, async () => {
    const m = uniq('nokey');
    for (const method of ['generateContent', 'streamGenerateContent', 'countTokens']) {
      const r = await post(method, genBody(m), { key: null, query: method === 'streamGenerateContent' ? 'alt=sse' : '' });
      assert.ok(r.status === 401 || r.status === 403, `${method}: ${r.status} ${r.text}`);
      const err = assertGeminiError(r, r.status);
      assert.match(err.status, /^(UNAUTHENTICATED|PERMISSION_DENIED)$/);
    }
    // An empty key is no key.
    const r = await post('generateContent', genBody(m), { key: null, query: 'key=' });
    assert.ok(r.status === 401 || r.status === 403, r.text);
    assertGeminiError(r, r.status);
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('invalid JSON or a body without contents: 400 INVALID_ARGUMENT from Relay, nothing sent upstream', T, async () => {
    const m = uniq('badjson');
    const r1 = await post('generateContent', `{"contents": [{"parts":[{"text":"${m}"}]}`);
    const e1 = assertGeminiError(r1, 400);
    assert.equal(e1.status, 'INVALID_ARGUMENT');
    const r2 = await post('generateContent', { generationConfig: { temperature: 0 }, note: m });
    const e2 = assertGeminiError(r2, 400);
    assert.equal(e2.status, 'INVALID_ARGUMENT');
    assert.match(e2.message, /contents/);
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('an upstream 500 reaches the SDK as an ApiError with the status; nothing is cached', T, async () => {
    const m = uniq('gen-500');
    const req = { model: MODEL, contents: m, config: { temperature: 0 } };
    relay.fake.enqueue({ status: 500 });
    await assert.rejects(ai().models.generateContent(req), (err) => {
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.status, 500);
      assert.match(err.message, /INTERNAL/);
      return true;
    });
    // The raw body is Google's, passed through.
    relay.fake.enqueue({ status: 500 });
    const raw = await post('generateContent', genBody(m, { temperature: 0 }));
    assert.equal(assertGeminiError(raw, 500).status, 'INTERNAL');
    assert.notEqual(raw.headers.get('x-cache'), 'HIT');
    // And the stream form.
    relay.fake.enqueue({ status: 500 });
    await assert.rejects(async () => {
      for await (const c of await ai().models.generateContentStream(req)) void c;
    }, (err) => err instanceof ApiError && err.status === 500);

    const ok = await ai().models.generateContent(req);
    assert.equal(hdr(ok, 'x-cache'), 'MISS', 'the error was not stored');
    assert.equal(ok.text, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 4);
  });

  test('an SSE stream cut mid-way: the SDK raises; nothing is cached', T, async () => {
    const m = uniq('cut-sse');
    const req = { model: MODEL, contents: m, config: { temperature: 0 } };
    relay.fake.enqueue({ chunks: 4, cutAfter: 2 });
    const texts = [];
    await assert.rejects(async () => {
      for await (const c of await ai().models.generateContentStream(req)) texts.push(c.text);
    }, (err) => err instanceof ApiError && err.status >= 500);
    assert.equal(texts.length, 2, 'the chunks before the cut arrived');
    const ok = await ai().models.generateContent(req);
    assert.equal(hdr(ok, 'x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('an SSE stream that ends cleanly before its finishReason chunk is incomplete: an error event, not cached', T, async () => {
    const m = uniq('short-sse');
    relay.fake.enqueue({ chunks: 4, cutAfter: 2, cutMode: 'end' });
    const r1 = await post('streamGenerateContent', genBody(m), { query: 'alt=sse' });
    assert.equal(r1.status, 200);
    const [call] = relay.fake.callsFor(m);
    assert.ok(r1.text.startsWith(call.sent), 'what the upstream sent, unchanged, comes first');
    const events = parseSse(r1.text).map((e) => JSON.parse(e.data));
    assert.equal(events.length, 3, r1.text);
    const err = events.at(-1).error;
    assert.ok(err, `no error event at the end: ${r1.text.slice(-300)}`);
    assert.ok(err.code >= 500);
    const r2 = await post('streamGenerateContent', genBody(m), { query: 'alt=sse' });
    assert.equal(r2.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a JSON array stream cut mid-way ends with an error element; nothing is cached', T, async () => {
    const m = uniq('cut-array');
    relay.fake.enqueue({ chunks: 4, cutAfter: 2 });
    const r1 = await post('streamGenerateContent', genBody(m));
    assert.equal(r1.status, 200, 'the status line went out with the first element');
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    const [call] = relay.fake.callsFor(m);
    assert.ok(r1.text.startsWith(call.sent), 'what the upstream sent, unchanged, comes first');
    // The break is told in the array itself: a last element in Gemini's
    // error shape, then the closing bracket (what Google does mid-stream).
    const arr = parseJsonArrayStream(r1.text);
    assert.equal(arr.length, 3, r1.text.slice(-300));
    assert.equal(chunksText(arr.slice(0, 2)).length > 0, true);
    assert.ok(!arr.some((c) => c.candidates?.[0]?.finishReason), 'no finished chunk');
    const err = arr.at(-1).error;
    assert.ok(err, `no error element at the end: ${r1.text.slice(-300)}`);
    assert.equal(typeof err.code, 'number');
    assert.ok(err.code >= 500, JSON.stringify(err));
    assert.match(err.status, /^[A-Z_]+$/);

    const r2 = await post('streamGenerateContent', genBody(m));
    assert.equal(r2.headers.get('x-cache'), 'MISS');
    assert.equal(chunksText(parseJsonArrayStream(r2.text)), `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a JSON array stream cut before its first element is still one valid JSON document', T, async () => {
    const m = uniq('cut-array-empty');
    relay.fake.enqueue({ chunks: 3, cutAfter: 0 });
    const r1 = await post('streamGenerateContent', genBody(m));
    let doc;
    assert.doesNotThrow(() => (doc = JSON.parse(r1.text)), r1.text);
    // Either the error before the status line (a 5xx document) or, once the
    // 200 went out, an array whose only element is the error.
    const err = r1.status === 200 ? (assert.equal(doc.length, 1, r1.text), doc[0].error) : doc.error;
    assert.ok(err, r1.text);
    assert.ok(err.code >= 500, JSON.stringify(err));
    const r2 = await post('streamGenerateContent', genBody(m));
    assert.equal(r2.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a JSON array stream with every element but no closing bracket is incomplete: not cached', T, async () => {
    const m = uniq('no-bracket');
    // All three elements, the last with its finishReason, then a clean end.
    relay.fake.enqueue({ chunks: 3, cutAfter: 3, cutMode: 'end' });
    const r1 = await post('streamGenerateContent', genBody(m));
    assert.equal(r1.status, 200);
    const [call] = relay.fake.callsFor(m);
    assert.ok(!call.sent.trimEnd().endsWith(']'));
    const arr = parseJsonArrayStream(r1.text);
    assert.ok(arr.at(-1).error, `no error element at the end: ${r1.text.slice(-300)}`);
    const r2 = await post('streamGenerateContent', genBody(m));
    assert.equal(r2.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('a non-stream answer cut mid-way: a 5xx in Gemini\'s shape, not cached', T, async () => {
    const m = uniq('cut-body');
    relay.fake.enqueue({ cutAfter: 40 });
    const r1 = await post('generateContent', genBody(m));
    const err = assertGeminiError(r1, 502);
    assert.equal(err.status, 'UNAVAILABLE');
    const r2 = await post('generateContent', genBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('no key ever appears in Relay\'s log', T, async () => {
    const log = fs.readFileSync(relay.logs.relay, 'utf8');
    assert.ok(log.length > 0);
    for (const key of [KEY_A, KEY_B, QUERY_KEY]) {
      assert.ok(!log.includes(key), `the key ${key} is in ${relay.logs.relay}`);
    }
  });
});
