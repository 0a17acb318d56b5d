// Translation's failures, as each client SDK sees them (issue 17): a field
// the upstream's format cannot carry is a 400 naming it, in the client's
// error type, and never reaches the upstream; an upstream error (429) comes
// back as the client SDK's error class with its status, in the client's
// error shape; a stream cut upstream makes the client SDK raise (the
// client's format ends with its error event) and is not cached; two
// identical translated streams at once make one upstream call (X-Cache:
// COALESCED on one). Routing and upstreams as in translate.mjs.
//
// e2e-fronts: caddy nginx (the error statuses and the stream's error event
// must pass both fronts)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { ApiError, GoogleGenAI } from '@google/genai';

import { relaySuite, uniq, KEY_A, REQUEST_TIMEOUT, TEST_TIMEOUT } from './harness.mjs';
import { TRANSLATE, CLAUDE, GEMINI, GPT, MAX_TOKENS, readChatStream, readAnthropicStream } from './translate.mjs';
import { parseSse } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

relaySuite('translation: refusals, upstream errors, cut streams, coalescing', TRANSLATE, (relay) => {
  const openai = () => relay.client();
  const anthropic = () => new Anthropic({ baseURL: relay.base, apiKey: KEY_A, maxRetries: 0, timeout: REQUEST_TIMEOUT });
  const gemini = () => new GoogleGenAI({ apiKey: KEY_A, httpOptions: { baseUrl: relay.base, timeout: REQUEST_TIMEOUT } });
  const chatBody = (model, text, extra = {}) => ({
    model, messages: [{ role: 'user', content: text }], temperature: 0, max_tokens: MAX_TOKENS, ...extra,
  });
  const anthropicBody = (text, extra = {}) => ({
    model: GPT, max_tokens: MAX_TOKENS, temperature: 0, messages: [{ role: 'user', content: text }], ...extra,
  });
  const geminiReq = (text, config = {}) => ({ model: GPT, contents: text, config: { temperature: 0, ...config } });

  // ---- fields that cannot be carried ----------------------------------------

  test('OpenAI SDK → Anthropic: logit_bias is refused with a BadRequestError naming it; nothing goes upstream', T, async () => {
    const m = uniq('refuse-logit-bias');
    await assert.rejects(
      openai().chat.completions.create(chatBody(CLAUDE, m, { logit_bias: { 50256: -100 } })),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `${err.constructor.name}: ${err.message}`);
        assert.equal(err.status, 400);
        assert.match(err.message, /logit_bias/);
        assert.equal(err.error?.type, 'invalid_request_error', JSON.stringify(err.error));
        return true;
      },
    );
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('OpenAI SDK → Gemini: logprobs (not in the common model) is refused with a BadRequestError naming it', T, async () => {
    const m = uniq('refuse-logprobs');
    await assert.rejects(
      openai().chat.completions.create(chatBody(GEMINI, m, { logprobs: true, top_logprobs: 2 })),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `${err.constructor.name}: ${err.message}`);
        assert.match(err.message, /logprobs/);
        return true;
      },
    );
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('Anthropic SDK → OpenAI: top_k is refused with a BadRequestError naming it', T, async () => {
    const m = uniq('refuse-top-k');
    await assert.rejects(anthropic().messages.create(anthropicBody(m, { top_k: 5 })), (err) => {
      assert.ok(err instanceof Anthropic.BadRequestError, `${err.constructor.name}: ${err.message}`);
      assert.equal(err.status, 400);
      assert.match(err.message, /top_k/);
      assert.equal(err.error?.type, 'error', 'the Anthropic error shape');
      assert.equal(err.error?.error?.type, 'invalid_request_error');
      return true;
    });
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  test('Gemini SDK → OpenAI: topK is refused with an ApiError 400 naming it', T, async () => {
    const m = uniq('refuse-topk');
    await assert.rejects(gemini().models.generateContent(geminiReq(m, { topK: 5 })), (err) => {
      assert.ok(err instanceof ApiError, `${err.constructor.name}: ${err.message}`);
      assert.equal(err.status, 400);
      assert.match(err.message, /topK/);
      assert.match(err.message, /INVALID_ARGUMENT/, 'the Google error shape');
      return true;
    });
    assert.equal(relay.fake.callsFor(m).length, 0);
  });

  // ---- upstream errors ------------------------------------------------------

  test('OpenAI SDK → Anthropic 429: RateLimitError with status 429, in OpenAI\'s shape, not cached', T, async () => {
    const m = uniq('upstream-429-openai');
    relay.fake.enqueue({ match: m, status: 429 });
    await assert.rejects(openai().chat.completions.create(chatBody(CLAUDE, m)), (err) => {
      assert.ok(err instanceof OpenAI.RateLimitError, `${err.constructor.name}: ${err.message}`);
      assert.equal(err.status, 429);
      assert.equal(typeof err.error?.message, 'string', JSON.stringify(err.error));
      return true;
    });
    assert.equal(relay.fake.callsFor(m)[0].path, '/v1/messages');
    const { data, response } = await openai().chat.completions.create(chatBody(CLAUDE, m)).withResponse();
    assert.equal(response.headers.get('x-cache'), 'MISS', 'the error was not stored');
    assert.equal(data.choices[0].message.content, `Echo: ${m}`);
    assert.equal(relay.fake.callsFor(m).length, 2);
  });

  test('Anthropic SDK → OpenAI 429: RateLimitError with status 429, in Anthropic\'s shape', T, async () => {
    const m = uniq('upstream-429-anthropic');
    relay.fake.enqueue({ match: m, status: 429 });
    await assert.rejects(anthropic().messages.create(anthropicBody(m)), (err) => {
      assert.ok(err instanceof Anthropic.RateLimitError, `${err.constructor.name}: ${err.message}`);
      assert.equal(err.status, 429);
      assert.equal(err.error?.type, 'error', JSON.stringify(err.error));
      assert.equal(err.error?.error?.type, 'rate_limit_error');
      return true;
    });
    assert.equal(relay.fake.callsFor(m)[0].path, '/v1/chat/completions');
  });

  test('Gemini SDK → OpenAI 429: ApiError with status 429 (RESOURCE_EXHAUSTED)', T, async () => {
    const m = uniq('upstream-429-gemini');
    relay.fake.enqueue({ match: m, status: 429 });
    await assert.rejects(gemini().models.generateContent(geminiReq(m)), (err) => {
      assert.ok(err instanceof ApiError, `${err.constructor.name}: ${err.message}`);
      assert.equal(err.status, 429);
      assert.match(err.message, /RESOURCE_EXHAUSTED/);
      return true;
    });
    assert.equal(relay.fake.callsFor(m)[0].path, '/v1/chat/completions');
  });

  // ---- streams cut upstream -------------------------------------------------

  // After a cut, the same request goes upstream again (nothing was stored)
  // and is answered whole.
  async function notCached(m, again) {
    const r = await again();
    assert.equal(r.xcache, 'MISS', 'the cut stream was not stored');
    assert.equal(relay.fake.callsFor(m).length, 2);
    return r;
  }

  test('OpenAI SDK stream → Anthropic, cut upstream: the SDK raises; the repeat goes upstream again', T, async () => {
    const m = uniq('cut-openai');
    const body = chatBody(CLAUDE, m, { stream: true });
    // message_start, content_block_start, ping, then two text deltas: cut.
    relay.fake.enqueue({ match: m, chunks: 4, cutAfter: 5 });
    const { data, response } = await openai().chat.completions.create(body).withResponse();
    assert.equal(response.status, 200, 'the status was committed before the cut');
    await assert.rejects(readChatStream(data), (err) => {
      assert.ok(err instanceof Error, String(err));
      return true;
    });
    const r = await notCached(m, async () => {
      const { data: d, response: h } = await openai().chat.completions.create(body).withResponse();
      return { xcache: h.headers.get('x-cache'), s: await readChatStream(d) };
    });
    assert.equal(r.s.content, `Echo: ${m}`);
  });

  test('Anthropic SDK stream → OpenAI, cut upstream: the SDK raises; the repeat goes upstream again', T, async () => {
    const m = uniq('cut-anthropic');
    const body = anthropicBody(m, { stream: true });
    // The role chunk and two content chunks, then the connection drops.
    relay.fake.enqueue({ match: m, chunks: 4, cutAfter: 3 });
    const { data } = await anthropic().messages.create(body).withResponse();
    await assert.rejects(readAnthropicStream(data));
    const r = await notCached(m, async () => {
      const { data: d, response: h } = await anthropic().messages.create(body).withResponse();
      return { xcache: h.headers.get('x-cache'), s: await readAnthropicStream(d) };
    });
    assert.equal(r.s.blocks[0].text, `Echo: ${m}`);
  });

  test('Gemini SDK stream → OpenAI, cut upstream: the SDK raises; the repeat goes upstream again', T, async () => {
    const m = uniq('cut-gemini');
    relay.fake.enqueue({ match: m, chunks: 4, cutAfter: 3 });
    const read = async () => {
      const chunks = [];
      for await (const c of await gemini().models.generateContentStream(geminiReq(m))) chunks.push(c);
      return chunks;
    };
    await assert.rejects(read());
    const r = await notCached(m, async () => {
      const chunks = await read();
      return { xcache: chunks[0].sdkHttpResponse?.headers?.['x-cache'], chunks };
    });
    assert.equal(r.chunks.map((c) => c.text ?? '').join(''), `Echo: ${m}`);
    assert.equal(r.chunks.at(-1).candidates[0].finishReason, 'STOP');
  });

  // The bytes of a cut translated stream: whatever the front does with the
  // connection's end (Caddy closes a chunked body cleanly, PLATFORM.md), the
  // stream's last event is the client format's error event, so no client
  // can take the partial answer for a whole one.
  const CUT_ENDS = [
    {
      client: 'OpenAI chat', path: '/v1/chat/completions', auth: { authorization: `Bearer ${KEY_A}` },
      body: (m) => chatBody(CLAUDE, m, { stream: true }), cutAfter: 5,
      check: (last) => assert.equal(typeof JSON.parse(last.data).error?.message, 'string', last.raw),
    },
    {
      client: 'Anthropic', path: '/v1/messages', auth: { 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' },
      body: (m) => anthropicBody(m, { stream: true }), cutAfter: 3,
      check: (last) => {
        assert.equal(last.event, 'error', last.raw);
        assert.equal(JSON.parse(last.data).type, 'error', last.raw);
      },
    },
    {
      client: 'Gemini', path: `/v1beta/models/${GPT}:streamGenerateContent?alt=sse`, auth: { 'x-goog-api-key': KEY_A },
      body: (m) => ({ contents: [{ role: 'user', parts: [{ text: m }] }], generationConfig: { temperature: 0 } }), cutAfter: 3,
      check: (last) => assert.equal(typeof JSON.parse(last.data).error?.message, 'string', last.raw),
    },
  ];
  for (const c of CUT_ENDS) {
    test(`${c.client} client, stream cut upstream: the last event is its format's error event`, T, async () => {
      const m = uniq(`cut-bytes-${c.client}`);
      relay.fake.enqueue({ match: m, chunks: 4, cutAfter: c.cutAfter });
      let r;
      try {
        r = await relay.fetch(c.path, {
          method: 'POST', headers: { 'content-type': 'application/json', ...c.auth }, body: JSON.stringify(c.body(m)),
        });
      } catch (err) {
        assert.fail(`the client's connection failed instead of ending with an error event: ${err.message}`);
      }
      assert.equal(r.status, 200, r.text);
      const events = parseSse(r.text);
      assert.ok(events.length > 1, r.text);
      c.check(events.at(-1));
      assert.equal(relay.fake.callsFor(m).length, 1);
    });
  }

  // ---- coalescing -----------------------------------------------------------

  test('two identical translated streams at once: one upstream call, one answer COALESCED', T, async () => {
    const m = uniq('coalesce');
    const body = chatBody(CLAUDE, m, { stream: true });
    // Slow enough that the second request arrives while the first streams.
    relay.fake.enqueue({ match: m, chunks: 6, chunkDelayMs: 150 });
    const one = async () => {
      const { data, response } = await openai().chat.completions.create(body).withResponse();
      return { xcache: response.headers.get('x-cache'), s: await readChatStream(data) };
    };
    const first = one();
    await relay.fake.waitForCalls((calls) => calls.some((c) => c.body.includes(m)), 5000);
    const both = await Promise.all([first, one()]);
    assert.deepEqual(both.map((r) => r.xcache).sort(), ['COALESCED', 'MISS']);
    for (const r of both) {
      assert.equal(r.s.content, `Echo: ${m}`);
      assert.equal(r.s.finish, 'stop');
    }
    assert.deepEqual([...both[0].s.ids], [...both[1].s.ids], 'one answer, the same id');
    assert.equal(relay.fake.callsFor(m).length, 1, 'one upstream call');
  });
});
