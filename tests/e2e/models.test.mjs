// Routing by model ([models] in relay.ini) between two fake OpenAI
// upstreams, and the model lists answered with every routed model in the
// three shapes clients ask for (OpenAI's and Anthropic's /v1/models,
// Gemini's /v1beta/models), each fake's calls counted.
//
//   [upstream.openai]  the harness's fake ("a"), accepts = gemini, anthropic
//   [upstream.b]       a second fake
//   [models]  gpt-a* = openai, gpt-b* = b, local/* = b (local/ removed
//             upstream), exact-model = b (a literal: listed as it is)

import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, uniq, KEY_A, TEST_TIMEOUT } from './harness.mjs';
import { startFakeUpstream } from '../fake/upstream.mjs';

const T = { timeout: TEST_TIMEOUT };
const fakeB = await startFakeUpstream();
after(() => fakeB.close());

const chatBody = (model, marker) => ({
  model,
  temperature: 0,
  messages: [{ role: 'user', content: `hello ${marker}` }],
});

relaySuite('routing by model', {
  upstreams: [{ name: 'b', type: 'openai' }],
  ini: {
    'upstream.openai': { accepts: 'gemini, anthropic' },
    'upstream.b': { base_url: fakeB.url },
    models: { 'gpt-a*': 'openai', 'gpt-b*': 'b', 'local/*': 'b', 'exact-model': 'b' },
  },
}, (relay) => {
  test('a model matching gpt-b* goes to b, gpt-a* to the first upstream; a repeat is a HIT', T, async () => {
    const mb = uniq('b');
    const rb = await relay.chat(chatBody('gpt-b-1', mb));
    assert.equal(rb.status, 200, rb.text);
    assert.equal(rb.headers.get('x-relay-upstream'), 'b');
    assert.equal(fakeB.callsFor(mb).length, 1, 'b got the call');
    assert.equal(relay.fake.callsFor(mb).length, 0, 'a did not');
    assert.equal(JSON.parse(fakeB.callsFor(mb)[0].body).model, 'gpt-b-1', 'the model unchanged');

    const again = await relay.chat(chatBody('gpt-b-1', mb));
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.equal(again.text, rb.text);
    assert.equal(fakeB.callsFor(mb).length, 1, 'no second call');

    const ma = uniq('a');
    const ra = await relay.chat(chatBody('gpt-a-1', ma));
    assert.equal(ra.status, 200, ra.text);
    assert.equal(ra.headers.get('x-relay-upstream'), 'openai');
    assert.equal(relay.fake.callsFor(ma).length, 1);
    assert.equal(fakeB.callsFor(ma).length, 0);
  });

  test('local/* removes local/ from the model b is asked for', T, async () => {
    const m = uniq('local');
    const r = await relay.chat(chatBody('local/llama3', m));
    assert.equal(r.status, 200, r.text);
    const calls = fakeB.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(JSON.parse(calls[0].body).model, 'llama3');
    assert.equal(JSON.parse(calls[0].body).messages[0].content, `hello ${m}`);
  });

  test('an Anthropic request for a model on b, which accepts only OpenAI, is a 400 in Anthropic\'s shape', T, async () => {
    const m = uniq('refused');
    const r = await relay.fetch('/v1/messages', {
      method: 'POST',
      headers: { 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-b-1', max_tokens: 16, messages: [{ role: 'user', content: m }] }),
    });
    assert.equal(r.status, 400, r.text);
    const body = JSON.parse(r.text);
    assert.equal(body.type, 'error');
    assert.match(body.error.message, /\[upstream\.b\].*accepts/);
    assert.equal(fakeB.callsFor(m).length + relay.fake.callsFor(m).length, 0, 'no upstream call');
  });

  test('the model lists: every routed model, in OpenAI\'s, Anthropic\'s and Gemini\'s shapes', T, async () => {
    const listCalls = (f) => f.calls.filter((c) => c.method === 'GET' && c.path === '/v1/models').length;
    fakeB.enqueue({
      path: '/v1/models',
      status: 200,
      body: { object: 'list', data: ['gpt-b-large', 'gpt-4o', 'llama3'].map((id) => ({ id, object: 'model', created: 1, owned_by: 'b' })) },
    });
    const a0 = listCalls(relay.fake);
    const b0 = listCalls(fakeB);
    const get = (p, headers) => relay.fetch(p, { headers });

    const openai = await get('/v1/models', { authorization: `Bearer ${KEY_A}` });
    assert.equal(openai.status, 200, openai.text);
    assert.equal(openai.headers.get('x-cache'), 'MISS');
    const list = JSON.parse(openai.text);
    assert.equal(list.object, 'list');
    assert.deepEqual(list.data.map((m) => [m.id, m.owned_by]), [
      ['gpt-4o-mini', 'openai'], ['gpt-4o', 'openai'], ['gpt-4.1-nano', 'openai'],
      ['text-embedding-3-small', 'openai'],
      // b's own models by a name that reaches b: as they are when they
      // route there, else with local/ (gpt-4o as it is goes to the first
      // upstream), then the literal line.
      ['gpt-b-large', 'b'], ['local/gpt-4o', 'b'], ['local/llama3', 'b'], ['exact-model', 'b'],
    ]);
    for (const m of list.data) assert.equal(m.object, 'model');
    assert.equal(listCalls(relay.fake) - a0, 1, 'a listed once');
    assert.equal(listCalls(fakeB) - b0, 1, 'b listed once');

    const cached = await get('/v1/models', { authorization: `Bearer ${KEY_A}` });
    assert.equal(cached.headers.get('x-cache'), 'HIT');
    assert.equal(cached.text, openai.text);

    // Anthropic's shape (its SDK's headers): only what an Anthropic client
    // can use — b does not accept Anthropic's format.
    const anthropic = await get('/v1/models', { 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' });
    assert.equal(anthropic.status, 200, anthropic.text);
    const al = JSON.parse(anthropic.text);
    assert.deepEqual(al.data.map((m) => m.id), ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1-nano', 'text-embedding-3-small']);
    assert.equal(al.has_more, false);
    assert.equal(al.first_id, 'gpt-4o-mini');
    assert.equal(al.last_id, 'text-embedding-3-small');
    for (const m of al.data) {
      assert.equal(m.type, 'model');
      assert.equal(typeof m.display_name, 'string');
      assert.equal(typeof m.created_at, 'string');
    }

    const gemini = await get('/v1beta/models', { 'x-goog-api-key': KEY_A });
    assert.equal(gemini.status, 200, gemini.text);
    const gl = JSON.parse(gemini.text);
    assert.deepEqual(gl.models.map((m) => m.name),
      ['models/gpt-4o-mini', 'models/gpt-4o', 'models/gpt-4.1-nano', 'models/text-embedding-3-small']);
    assert.ok(gl.models.every((m) => m.supportedGenerationMethods.includes('generateContent')));

    assert.equal(listCalls(relay.fake) - a0, 1, 'every later list from the cache (a)');
    assert.equal(listCalls(fakeB) - b0, 1, 'every later list from the cache (b)');

    // The upstream's credential is the client's, in the upstream's header.
    const last = fakeB.calls.filter((c) => c.path === '/v1/models').at(-1);
    assert.equal(last.headers.authorization, `Bearer ${KEY_A}`);
  });
});
