// Other /v1/* paths (not one of the cached endpoints: chat, completions,
// embeddings, responses, the model list) go to the same upstream with the
// client's own credential, method, query and body, and are never cached.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { relaySuite, uniq, KEY_A, KEY_B, TEST_TIMEOUT } from './harness.mjs';
import { assertOpenAIError } from './wire.mjs';

const T = { timeout: TEST_TIMEOUT };

relaySuite('forwarding other /v1 paths', {}, (relay) => {
  test('the SDK retrieves a model through Relay, every time from the upstream', T, async () => {
    const client = relay.client();
    const count = () => relay.fake.calls.filter((c) => c.path === '/v1/models/gpt-4o-mini').length;
    const before = count();
    const first = await client.models.retrieve('gpt-4o-mini').withResponse();
    assert.equal(first.data.id, 'gpt-4o-mini');
    assert.equal(first.response.headers.get('x-cache'), 'BYPASS');
    const second = await client.models.retrieve('gpt-4o-mini').withResponse();
    assert.equal(second.response.headers.get('x-cache'), 'BYPASS');

    const calls = relay.fake.calls.filter((c) => c.path === '/v1/models/gpt-4o-mini');
    assert.equal(count() - before, 2, 'not cached: two upstream calls');
    assert.equal(calls.at(-1).method, 'GET');
    assert.equal(calls.at(-1).headers.authorization, `Bearer ${KEY_A}`);
  });

  test('a POST body, the method and the query string arrive unchanged; answers are not cached', T, async () => {
    const m = uniq('batch');
    const raw = `{"input_file_id": "${m}",\n "endpoint":"/v1/chat/completions", "completion_window":"24h"}`;
    const send = () =>
      relay.fetch('/v1/batches?trace=1&x=a%20b', {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY_B}`, 'content-type': 'application/json' },
        body: raw,
      });
    const a = await send();
    const b = await send();
    assert.equal(a.status, 200, a.text);
    assert.equal(b.status, 200, b.text);
    assert.notEqual(b.headers.get('x-cache'), 'HIT');
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 2, 'not cached: two upstream calls');
    for (const c of calls) {
      assert.equal(c.method, 'POST');
      assert.equal(c.path, '/v1/batches');
      assert.equal(c.query, 'trace=1&x=a%20b');
      assert.equal(c.body, raw);
      assert.equal(c.headers.authorization, `Bearer ${KEY_B}`);
    }
    // The upstream's answer is passed back as sent.
    assert.equal(a.text, calls[0].sent);
  });

  test('GET and DELETE with an id in the path', T, async () => {
    const id = `file-${uniq('id').replace(/\W/g, '')}`;
    for (const method of ['GET', 'DELETE']) {
      const r = await relay.fetch(`/v1/files/${id}`, { method, headers: { authorization: `Bearer ${KEY_A}` } });
      assert.equal(r.status, 200, r.text);
      const echo = JSON.parse(r.text);
      assert.equal(echo.method, method);
      assert.equal(echo.path, `/v1/files/${id}`);
    }
  });

  test("the upstream's error status and body are passed through", T, async () => {
    const r = await relay.fetch('/v1/models/no-such-model', { headers: { authorization: `Bearer ${KEY_A}` } });
    assert.equal(r.status, 404, r.text);
    const err = assertOpenAIError(r.text);
    assert.equal(err.code, 'model_not_found');
    const call = relay.fake.calls.filter((c) => c.path === '/v1/models/no-such-model').at(-1);
    assert.equal(r.text, call.sent);
  });

  test('no credential: 401 and nothing forwarded', T, async () => {
    const before = relay.fake.calls.length;
    const r = await relay.fetch('/v1/models');
    assert.equal(r.status, 401, r.text);
    assertOpenAIError(r.text);
    const p = await relay.fetch('/v1/embeddings', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"input":"x","model":"m"}' });
    assert.equal(p.status, 401, p.text);
    assert.equal(relay.fake.calls.length, before);
  });

  // Not spelled out in the issue, but dropping them would silently bill
  // another organisation or project: Relay must be invisible.
  test('OpenAI-Organization and OpenAI-Project headers are forwarded', T, async () => {
    const client = relay.client({ organization: 'org-relaytest', project: 'proj_relaytest' });
    const model = await client.models.retrieve('gpt-4o');
    assert.equal(model.id, 'gpt-4o');
    const call = relay.fake.calls.filter((c) => c.path === '/v1/models/gpt-4o').at(-1);
    assert.equal(call.headers['openai-organization'], 'org-relaytest');
    assert.equal(call.headers['openai-project'], 'proj_relaytest');
  });
});
