// Prompt-cache savings (issue 16 part G), behind the real front: tokens the
// provider read from its own prompt cache (OpenAI's
// prompt_tokens_details.cached_tokens, Anthropic's cache_read_input_tokens)
// show in the stats API and /relay/metrics with their saving at the
// [pricing] table's prices, apart from Relay's own; with [upstream.X]
// prompt_cache = auto the body the fake upstream receives carries
// cache_control breakpoints (Anthropic) or a prompt_cache_key (OpenAI),
// a client's own hints go through untouched, and a repeat is still a HIT
// under the key of the client's original request.
//
// e2e-fronts: caddy (the rewrite and the counters are the pool's, not the
// front's: run once, behind Caddy)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { relaySuite, uniq, KEY_A } from './harness.mjs';

const T = { timeout: 60000 };
// Past the 4096-byte prefix Relay requires before it adds a hint.
const LONG = 'Answer as a careful reviewer would. '.repeat(150);

relaySuite('prompt-cache savings and hints', {
  upstreams: [{ name: 'anthropic', type: 'anthropic', prompt_cache: 'auto' }],
  ini: {
    'upstream.openai': { prompt_cache: 'auto' },
    metrics: { access: 'open' },
    pricing: { 'gpt-4o': '2.50 10.00 1.25', 'claude-sonnet-4-5': '3.00 15.00 0.30 3.75' },
  },
}, (relay) => {
  let token;
  const stats = async () => {
    if (!token) {
      const r = await relay.admin(['config', 'admin.token_file']);
      token = fs.readFileSync(r.stdout.trim(), 'utf8').trim();
    }
    const r = await relay.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, r.text);
    return JSON.parse(r.text);
  };
  const model = (s, name) => s.models.find((m) => m.model === name);
  const messages = (body) => relay.fetch('/v1/messages', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' },
    body: JSON.stringify(body),
  });

  test('provider-cached tokens are counted and priced as savings, apart from Relay\'s', T, async () => {
    const m = uniq('pc-usage');
    relay.fake.enqueue({ path: '/v1/chat/completions', usage: { prompt_tokens: 2000, prompt_tokens_details: { cached_tokens: 1500 } } });
    const a = await relay.chat({ model: 'gpt-4o', temperature: 0, messages: [{ role: 'user', content: `${m} openai` }] });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers.get('x-cache'), 'MISS');
    relay.fake.enqueue({ path: '/v1/messages', usage: { cache_read_input_tokens: 1000 } });
    const b = await messages({ model: 'claude-sonnet-4-5', max_tokens: 16, temperature: 0, messages: [{ role: 'user', content: `${m} anthropic` }] });
    assert.equal(b.status, 200, b.text);
    // A repeat is Relay's own saving; the provider's is not counted again.
    const again = await relay.chat({ model: 'gpt-4o', temperature: 0, messages: [{ role: 'user', content: `${m} openai` }] });
    assert.equal(again.headers.get('x-cache'), 'HIT');

    const s = await stats();
    const o = model(s, 'gpt-4o');
    assert.equal(o.tokens.cached_input, 1500);
    // 1500 x (2.50 - 1.25) per million
    assert.ok(Math.abs(o.usd.provider_saved - 0.001875) < 1e-9, JSON.stringify(o.usd));
    assert.ok(o.usd.saved > 0, 'the HIT is Relay\'s own saving');
    const c = model(s, 'claude-sonnet-4-5');
    assert.equal(c.tokens.cached_input, 1000);
    // 1000 x (3.00 - 0.30) per million
    assert.ok(Math.abs(c.usd.provider_saved - 0.0027) < 1e-9, JSON.stringify(c.usd));
    assert.ok(Math.abs(s.totals.usd.provider_saved - 0.004575) < 1e-9, JSON.stringify(s.totals.usd));
    assert.equal(s.totals.tokens.cached_input, 2500);

    const metrics = await relay.fetch('/relay/metrics');
    assert.match(metrics.text, /^relay_provider_cached_tokens_total\{upstream="openai",model="gpt-4o"\} 1500$/m);
    assert.match(metrics.text, /^relay_provider_cache_savings_usd_total\{upstream="anthropic",model="claude-sonnet-4-5"\} 0\.0027$/m);
  });

  test('Anthropic: breakpoints go upstream; the repeat is a HIT under the client\'s key', T, async () => {
    const m = uniq('pc-anthropic');
    const body = {
      model: 'claude-sonnet-4-5', max_tokens: 16, temperature: 0, system: LONG,
      messages: [
        { role: 'user', content: `${m} first` },
        { role: 'assistant', content: 'noted' },
        { role: 'user', content: `${m} second` },
      ],
    };
    const first = await messages(body);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    const [call] = relay.fake.callsFor(`${m} second`);
    const sent = JSON.parse(call.body);
    const ephemeral = { type: 'ephemeral' };
    assert.deepEqual(sent.system, [{ type: 'text', text: LONG, cache_control: ephemeral }]);
    assert.deepEqual(sent.messages[0].content, [{ type: 'text', text: `${m} first`, cache_control: ephemeral }]);
    assert.equal(sent.messages[2].content, `${m} second`, 'the last user turn is not marked');
    assert.equal(sent.model, body.model);

    const again = await messages(body);
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.equal(again.headers.get('x-relay-key'), first.headers.get('x-relay-key'));
    assert.equal(relay.fake.callsFor(`${m} second`).length, 1);

    // A client that placed its own breakpoint: its body goes as it came.
    const own = { ...body, messages: [...body.messages.slice(0, 2), { role: 'user', content: [{ type: 'text', text: `${m} own`, cache_control: ephemeral }] }] };
    const text = JSON.stringify(own);
    const r = await relay.fetch('/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': KEY_A, 'anthropic-version': '2023-06-01' },
      body: text,
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(relay.fake.callsFor(`${m} own`)[0].body, text);
  });

  test('OpenAI: a prompt_cache_key goes upstream; the repeat is a HIT; the client\'s own is kept', T, async () => {
    const m = uniq('pc-openai');
    const body = {
      model: 'gpt-4o', temperature: 0,
      messages: [
        { role: 'system', content: LONG },
        { role: 'user', content: `${m} first` },
        { role: 'assistant', content: 'noted' },
        { role: 'user', content: `${m} second` },
      ],
    };
    const first = await relay.chat(body);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    const sent = JSON.parse(relay.fake.callsFor(`${m} second`)[0].body);
    assert.match(sent.prompt_cache_key, /^relay-[0-9a-f]{32}$/);
    assert.deepEqual({ ...sent, prompt_cache_key: undefined }, { ...body, prompt_cache_key: undefined });

    const again = await relay.chat(body);
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.equal(again.headers.get('x-relay-key'), first.headers.get('x-relay-key'));

    // The next turn of the same conversation: another key? No — the same
    // stable prefix (system, first turn) gives the same prompt_cache_key.
    const next = { ...body, messages: [...body.messages.slice(0, 3), { role: 'user', content: `${m} third` }] };
    assert.equal((await relay.chat(next)).status, 200);
    assert.equal(JSON.parse(relay.fake.callsFor(`${m} third`)[0].body).prompt_cache_key, sent.prompt_cache_key);

    const own = { ...body, prompt_cache_key: 'mine', messages: [...body.messages.slice(0, 3), { role: 'user', content: `${m} own` }] };
    assert.equal((await relay.chat(own)).status, 200);
    assert.equal(JSON.parse(relay.fake.callsFor(`${m} own`)[0].body).prompt_cache_key, 'mine');
  });
});
