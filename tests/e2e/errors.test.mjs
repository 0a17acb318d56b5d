// Every error a client can meet, in OpenAI's shape and with the right
// status: bad requests never reach the upstream, upstream errors come back
// as they were and are never cached, the status line waits for the
// upstream's, and a stream cut before [DONE] ends with an error event.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import { relaySuite, chatBody, uniq, curl, KEY_A, TEST_TIMEOUT } from './harness.mjs';
import { assertOpenAIError, assertValidChatStream, streamPayloads } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };
const MAX_BODY = 65536; // the harness's [fcgi] max_body

// A stream that failed after its headers: some chunks, then one event whose
// data is an OpenAI error object, and nothing after it (no [DONE]: a client
// must not take the answer for complete). Returns the chunks and the error.
function assertStreamEndsWithError(text) {
  const { payloads, done } = streamPayloads(text);
  assert.equal(done, false, `a failed stream must not end with data: [DONE]:\n${text.slice(-300)}`);
  assert.ok(payloads.length > 0, `no events at all:\n${text}`);
  const last = payloads.at(-1);
  const error = assertOpenAIError(last, 'the last stream event');
  const chunks = payloads.slice(0, -1);
  for (const p of chunks) assert.equal(p.object, 'chat.completion.chunk', `unexpected event ${JSON.stringify(p)}`);
  return { chunks, error };
}

relaySuite('errors', {}, (relay) => {
  test('invalid JSON is 400 in OpenAI shape and nothing goes upstream', T, async () => {
    const m = uniq('badjson');
    for (const raw of [
      `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${m}"}]`, // truncated
      `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${m}"}]} trailing`,
      `model=gpt-4o-mini&content=${m}`,
      `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${m}",}]}`, // trailing comma
    ]) {
      const r = await relay.chat(raw);
      assert.equal(r.status, 400, `${raw} -> ${r.status} ${r.text}`);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      assertOpenAIError(r.text);
    }
    const before = relay.fake.calls.length;
    const empty = await relay.chat('');
    assert.equal(empty.status, 400, empty.text);
    assertOpenAIError(empty.text);
    assert.equal(relay.fake.calls.length, before);
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('missing model or messages (or a body that is not an object) is 400', T, async () => {
    const m = uniq('missing');
    for (const body of [
      { messages: [{ role: 'user', content: m }], temperature: 0 },
      { model: 'gpt-4o-mini', temperature: 0, prompt: m },
      [{ model: 'gpt-4o-mini', messages: [{ role: 'user', content: m }] }],
      `"${m}"`,
    ]) {
      const r = await relay.chat(typeof body === 'string' ? body : JSON.stringify(body));
      assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${r.text}`);
      assertOpenAIError(r.text);
    }
    assert.equal(relay.fake.callsFor(m).length, 0);

    // The SDK surfaces it as a BadRequestError.
    const before = relay.fake.calls.length;
    await assert.rejects(
      relay.client().chat.completions.create({ model: 'gpt-4o-mini' }),
      (err) => err instanceof OpenAI.BadRequestError && err.status === 400 && typeof err.error?.message === 'string',
    );
    assert.equal(relay.fake.calls.length, before);
  });

  test('a body over max_body is 413 and nothing goes upstream; one just under is served', T, async () => {
    const m = uniq('big');
    const over = JSON.stringify(chatBody(`${m} ${'x'.repeat(MAX_BODY)}`));
    const r = await relay.chat(over);
    assert.equal(r.status, 413, r.text.slice(0, 300));
    assertOpenAIError(r.text);
    assert.equal(relay.fake.callsFor(m).length, 0);

    const m2 = uniq('under');
    const under = JSON.stringify(chatBody(`${m2} ${'y'.repeat(MAX_BODY - 1024)}`));
    assert.ok(under.length < MAX_BODY);
    const ok = await relay.chat(under);
    assert.equal(ok.status, 200, ok.text.slice(0, 300));
    assert.equal(relay.fake.callsFor(m2)[0].body, under);
  });

  test('a chunked request body (no Content-Length) is read to its end; over max_body it is 413', T, async () => {
    const chunked = (text) =>
      relay.fetch('/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' },
        // A stream body makes fetch send Transfer-Encoding: chunked.
        body: new ReadableStream({
          start(c) {
            const bytes = new TextEncoder().encode(text);
            for (let i = 0; i < bytes.length; i += 4096) c.enqueue(bytes.subarray(i, i + 4096));
            c.close();
          },
        }),
        duplex: 'half',
      });
    const m = uniq('chunked');
    const raw = JSON.stringify(chatBody(`${m} ${'z'.repeat(20000)}`));
    const r = await chunked(raw);
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(relay.fake.callsFor(m)[0].body, raw);

    const m2 = uniq('chunked-big');
    const big = await chunked(JSON.stringify(chatBody(`${m2} ${'z'.repeat(MAX_BODY * 2)}`)));
    assert.equal(big.status, 413, big.text.slice(0, 300));
    assertOpenAIError(big.text);
    assert.equal(relay.fake.callsFor(m2).length, 0);
  });

  test('an unknown path is 404 in OpenAI shape', T, async () => {
    const before = relay.fake.calls.length;
    for (const [method, p] of [
      ['GET', '/not-a-route'],
      ['POST', '/v2/chat/completions'],
      ['POST', '/chat/completions'],
      ['GET', '/relay/no-such-thing'],
    ]) {
      const r = await relay.fetch(p, {
        method,
        headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' },
        body: method === 'POST' ? JSON.stringify(chatBody('404')) : undefined,
      });
      assert.equal(r.status, 404, `${method} ${p} -> ${r.status} ${r.text}`);
      assertOpenAIError(r.text, `${method} ${p}`);
    }
    assert.equal(relay.fake.calls.length, before);
  });

  test('no credential at all is 401 and nothing goes upstream', T, async () => {
    const m = uniq('nokey');
    const r = await relay.chat(chatBody(m), { key: null });
    assert.equal(r.status, 401, r.text);
    assertOpenAIError(r.text);
    const s = await relay.chat(chatBody(m, { stream: true }), { key: null });
    assert.equal(s.status, 401, s.text);
    assertOpenAIError(s.text);
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('upstream 500: its status and body are passed through and not cached', T, async () => {
    const m = uniq('u500');
    const upstreamBody = '{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}';
    relay.fake.enqueue({ status: 500, body: upstreamBody });
    const r1 = await relay.chat(chatBody(m));
    assert.equal(r1.status, 500);
    assert.equal(r1.text, upstreamBody);
    assert.notEqual(r1.headers.get('x-cache'), 'HIT');

    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'MISS', 'the error was not cached');
    assert.equal(relay.fake.callsFor(m).length, 2);
    const r3 = await relay.chat(chatBody(m));
    assert.equal(r3.headers.get('x-cache'), 'HIT', 'the success after it was');
  });

  test('upstream 429 reaches the SDK as a RateLimitError with the upstream message', T, async () => {
    const m = uniq('u429');
    const upstreamError = { message: `Rate limit reached for ${m}`, type: 'requests', param: null, code: 'rate_limit_exceeded' };
    relay.fake.enqueue({ status: 429, body: { error: upstreamError }, headers: { 'retry-after': '7' } });
    await assert.rejects(relay.client().chat.completions.create(chatBody(m)), (err) => {
      assert.ok(err instanceof OpenAI.RateLimitError, `got ${err?.constructor?.name}: ${err?.message}`);
      assert.equal(err.status, 429);
      assert.deepEqual(err.error, upstreamError);
      return true;
    });
    assert.equal(relay.fake.callsFor(m).length, 1);
  });

  test('upstream 429 keeps Retry-After (SDK backoff depends on it)', T, async () => {
    const m = uniq('retry-after');
    relay.fake.enqueue({ status: 429, headers: { 'retry-after': '7' } });
    const r = await relay.chat(chatBody(m));
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '7');
  });

  test('upstream 400 to a stream request comes back as 400 JSON, not as a stream', T, async () => {
    const m = uniq('u400-stream');
    const upstreamBody = JSON.stringify({ error: { message: `Invalid value for ${m}`, type: 'invalid_request_error', param: 'messages', code: null } });
    relay.fake.enqueue({ status: 400, body: upstreamBody });
    const r = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(r.status, 400);
    assert.equal(r.text, upstreamBody);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    const again = await relay.chat(chatBody(m, { stream: true }));
    assert.equal(again.status, 200);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('the status line waits for the upstream status (delayed 500 is not a 200)', T, async () => {
    for (const stream of [true, false]) {
      const m = uniq(`late-500-${stream}`);
      const upstreamBody = JSON.stringify({ error: { message: `late failure ${m}`, type: 'server_error', param: null, code: null } });
      relay.fake.enqueue({ headerDelayMs: 300, status: 500, body: upstreamBody });
      const t0 = Date.now();
      const r = await relay.chat(chatBody(m, { stream }));
      assert.ok(Date.now() - t0 >= 250, 'the upstream delay was observed');
      assert.equal(r.status, 500, `stream=${stream}: the client got ${r.status} before the upstream answered`);
      assert.equal(r.text, upstreamBody);
    }
  });

  test('curl: a delayed upstream 503 on a stream is a 503 status line, body intact', T, async () => {
    const m = uniq('curl-503');
    const upstreamBody = JSON.stringify({ error: { message: `overloaded ${m}`, type: 'server_error', param: null, code: null } });
    relay.fake.enqueue({ headerDelayMs: 300, status: 503, body: upstreamBody });
    const r = await curl([
      '-H', `Authorization: Bearer ${KEY_A}`,
      '-H', 'Content-Type: application/json',
      '--data-binary', JSON.stringify(chatBody(m, { stream: true })),
      `${relay.base}/v1/chat/completions`,
    ]);
    assert.equal(r.status, 503, r.statusLine);
    assert.equal(r.body, upstreamBody);
  });

  for (const cutMode of ['destroy', 'end']) {
    const how = cutMode === 'destroy' ? 'connection reset' : 'clean close without [DONE]';
    test(`a stream cut before [DONE] (${how}) ends with an error event and is not cached`, T, async () => {
      const m = uniq(`cut-${cutMode}`);
      const body = chatBody(m, { stream: true });
      relay.fake.enqueue({ chunks: 6, chunkDelayMs: 20, cutAfter: 3, cutMode });
      const r1 = await relay.chat(body);
      assert.equal(r1.status, 200, 'the upstream said 200 before it failed');
      assert.match(r1.headers.get('content-type') ?? '', /^text\/event-stream/);
      const { chunks } = assertStreamEndsWithError(r1.text);
      assert.equal(chunks.length, 3, 'the chunks sent before the cut were passed on');
      const [call] = relay.fake.callsFor(m);
      assert.ok(r1.text.startsWith(call.sent), 'they were passed on unchanged');

      const r2 = await relay.chat(body);
      assert.equal(r2.status, 200, r2.text);
      assert.equal(r2.headers.get('x-cache'), 'MISS', 'the cut stream was not cached');
      assert.equal(assertValidChatStream(r2.text).content, `Echo: ${m}`);
      assert.equal(relay.fake.callsFor(m).length, 2);
    });
  }

  test('the SDK raises an APIError for a cut stream, after the deltas it got', T, async () => {
    const m = uniq('sdk-cut');
    relay.fake.enqueue({ chunks: 6, chunkDelayMs: 20, cutAfter: 4 });
    const stream = await relay.client().chat.completions.create({ ...chatBody(m), stream: true });
    const deltas = [];
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta?.content ?? '');
      })(),
      (err) => err instanceof OpenAI.APIError,
    );
    assert.ok(deltas.join('').length > 0, 'some content arrived before the error');
    assert.ok(deltas.join('').length < `Echo: ${m}`.length, 'but not all of it');
  });

  test('a non-stream answer cut mid-body is not served as a success and not cached', T, async () => {
    const m = uniq('cut-json');
    relay.fake.enqueue({ cutAfter: 40 });
    const r1 = await relay.chat(chatBody(m)).catch((err) => ({ status: 0, text: '', err }));
    let complete = false;
    try {
      complete = r1.status === 200 && JSON.parse(r1.text).object === 'chat.completion';
    } catch {
      complete = false;
    }
    assert.equal(complete, false, `a cut answer reached the client as a success: ${r1.status} ${r1.text}`);
    if (r1.status >= 400) assertOpenAIError(r1.text);

    const r2 = await relay.chat(chatBody(m));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-cache'), 'MISS');
    assert.equal(relay.fake.callsFor(m).length, 2);
  });
});
