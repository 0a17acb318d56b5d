// CORS in a real browser ([cors], engine/cors.c): headless Chromium (as in
// dashboard.test.mjs) opens a page served by a tiny static server on another
// loopback port, so the page's origin is not Relay's, and the page calls
// Relay with fetch(): a real Relay client token (made with `relay-admin
// token create`, as an operator hands one to a browser app) and the headers
// the official SDKs send (so the browser sends a preflight), and then the
// official openai SDK itself, loaded into the page from tests/node_modules.
// Relay holds the upstreams' keys, so what reaches the fake upstream is the
// held key, never the page's token.
//
// Two page origins: one listed in [cors] allow_origins, whose calls with the
// token succeed and can read Relay's headers (X-Cache, X-Relay-Key) and
// errors (a token Relay does not know: 401); one not listed, whose calls with
// the same token fail in the browser at the preflight, so nothing reaches the
// upstream. Chromium enforces it all; the test only looks at what the page
// got and what the fake upstream saw.
//
// A missing Chromium is a failure, never a skip (deploy/install-deps.sh
// --test installs it).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { REPO, chatBody, relaySuite, uniq } from '../e2e/harness.mjs';
import { heldKeyFile, leaked, makeToken } from '../e2e/tokens.mjs';

const CHROMIUM = process.env.RELAY_CHROMIUM || '/usr/bin/chromium';
const T = { timeout: 40000 };
// The keys Relay holds for the fake upstream: what it sends for the token.
const HELD = {
  openai: heldKeyFile('sk-held-browser-cors-openai-5c1d'),
  anthropic: heldKeyFile('sk-ant-held-browser-cors-7e2a'),
};
// A token in Relay's form that Relay never made.
const UNKNOWN = `rly-${'0123456789abcdef'.repeat(4)}`;
// The SDK's files, served to the page as ES modules (it has no dependency).
const OPENAI_DIR = path.join(REPO, 'tests', 'node_modules', 'openai');

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>a browser app on another origin</title>
<script type="module">
  import OpenAI from '/openai/index.mjs';
  window.OpenAI = OpenAI;
  document.title = 'ready';
</script>
`;

// A static server on a free loopback port: the page, and the openai SDK's
// .mjs files under /openai/. Resolves to {server, origin}.
function startPageServer() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
      return;
    }
    const file = path.join(OPENAI_DIR, path.normalize(url.pathname.replace(/^\/openai\//, '/')));
    if (!url.pathname.startsWith('/openai/') || !file.startsWith(OPENAI_DIR + path.sep) ||
        !file.endsWith('.mjs') || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

// Both page servers exist before Relay starts: the allowed one's origin goes
// into its relay.ini.
const allowedPage = await startPageServer();
const otherPage = await startPageServer();

relaySuite('CORS in a browser', {
  ini: {
    cors: { allow_origins: allowedPage.origin },
    'upstream.openai': { api_key_file: HELD.openai.file },
    'upstream.anthropic': { api_key_file: HELD.anthropic.file },
  },
  upstreams: ['anthropic'],
}, (relay) => {
  let browser;
  let appToken; // the Relay client token the browser app holds (before())
  const consoleLines = [];

  // Every upstream call so far carried a held key, and none the token.
  function upstreamSawNoToken() {
    for (const c of relay.fake.calls) {
      assert.equal(leaked(JSON.stringify(c.headers), { tokens: [appToken] }), null,
        `the page's token reached the upstream: ${c.method} ${c.path}`);
    }
  }

  // A fresh page on origin, with the SDK loaded.
  async function pageOn(origin) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(10000);
    page.on('console', (msg) => consoleLines.push(`${origin} ${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => consoleLines.push(`${origin} page error: ${err.message}`));
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => document.title === 'ready');
    return page;
  }

  // fetch() from the page, as a browser app without an SDK would: the
  // credential and the SDK's headers make it a non-simple request.
  // Returns what the page could read, or {error} when the browser refused.
  function pageFetch(page, url, { headers, body }) {
    return page.evaluate(async ({ url, headers, body }) => {
      try {
        const r = await fetch(url, { method: 'POST', headers, body });
        return {
          status: r.status,
          text: await r.text(),
          xCache: r.headers.get('x-cache'),
          xRelayKey: r.headers.get('x-relay-key'),
        };
      } catch (err) {
        return { error: String(err) };
      }
    }, { url, headers, body });
  }

  const openaiHeaders = () => ({
    authorization: `Bearer ${appToken}`,
    'content-type': 'application/json',
    'x-stainless-lang': 'js',
    'x-stainless-os': 'Unknown',
    'x-stainless-arch': 'unknown',
    'x-stainless-runtime': 'browser:chrome',
    'x-stainless-retry-count': '0',
    'openai-project': 'proj_test',
    'x-relay-ttl': '600',
  });

  before(async () => {
    assert.ok(fs.existsSync(CHROMIUM),
      `Chromium is missing: no ${CHROMIUM} (deploy/install-deps.sh --test installs Debian's chromium; RELAY_CHROMIUM names another)`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
      timeout: 20000,
    });
    ({ token: appToken } = await makeToken(relay, 'browser app'));
  }, { timeout: 40000 });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => allowedPage.server.close(resolve));
    await new Promise((resolve) => otherPage.server.close(resolve));
  });

  test('the page and Relay are on different origins', () => {
    for (const p of [allowedPage, otherPage]) assert.notEqual(new URL(p.origin).origin, new URL(relay.base).origin);
    assert.notEqual(allowedPage.origin, otherPage.origin);
  });

  test('an allowed origin: fetch() with a Bearer token and the OpenAI SDK\'s headers gets the answer and Relay\'s headers', T, async () => {
    const page = await pageOn(allowedPage.origin);
    const m = uniq('browser cors openai');
    const r = await pageFetch(page, `${relay.base}/v1/chat/completions`, {
      headers: openaiHeaders(), body: JSON.stringify(chatBody(m)),
    });
    assert.equal(r.error, undefined, `the browser refused the call: ${r.error}\n${consoleLines.join('\n')}`);
    assert.equal(r.status, 200, r.text);
    assert.match(JSON.parse(r.text).choices[0].message.content, new RegExp(m.split(' ').at(-1)));
    assert.equal(r.xCache, 'MISS', 'X-Cache is exposed to the page');
    assert.match(r.xRelayKey ?? '', /^[0-9a-f]{16}$/, 'X-Relay-Key is exposed to the page');
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, 'one upstream call');
    assert.equal(calls[0].method, 'POST');
    assert.equal(calls[0].headers.authorization, `Bearer ${HELD.openai.key}`, 'the held key went upstream');
    upstreamSawNoToken();
    assert.ok(!relay.fake.calls.some((c) => c.method === 'OPTIONS'), 'no preflight reached the upstream');

    const again = await pageFetch(page, `${relay.base}/v1/chat/completions`, {
      headers: openaiHeaders(), body: JSON.stringify(chatBody(m)),
    });
    assert.equal(again.xCache, 'HIT', 'the same call again is a hit the page can see');
    assert.equal(relay.fake.callsFor(m).length, 1);
    await page.context().close();
  });

  test('an allowed origin: Anthropic\'s browser headers (x-api-key, anthropic-version, -dangerous-direct-browser-access) pass', T, async () => {
    const page = await pageOn(allowedPage.origin);
    const m = uniq('browser cors anthropic');
    const r = await pageFetch(page, `${relay.base}/v1/messages`, {
      headers: {
        'x-api-key': appToken,
        'anthropic-version': '2023-06-01',
        'anthropic-beta': 'prompt-caching-2024-07-31',
        'anthropic-dangerous-direct-browser-access': 'true',
        'content-type': 'application/json',
        'x-stainless-lang': 'js',
        'x-stainless-timeout': '600',
      },
      body: JSON.stringify({ model: 'claude-3-5-haiku', max_tokens: 16, temperature: 0, messages: [{ role: 'user', content: m }] }),
    });
    assert.equal(r.error, undefined, `the browser refused the call: ${r.error}\n${consoleLines.join('\n')}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(JSON.parse(r.text).type, 'message');
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].headers['x-api-key'], HELD.anthropic.key, 'the held key went upstream');
    upstreamSawNoToken();
    await page.context().close();
  });

  test('an allowed origin: the official openai SDK in the page works through Relay, stream included', T, async () => {
    const page = await pageOn(allowedPage.origin);
    const m = uniq('browser cors sdk');
    const got = await page.evaluate(async ({ base, token, m }) => {
      const client = new window.OpenAI({ baseURL: `${base}/v1`, apiKey: token, dangerouslyAllowBrowser: true, maxRetries: 0 });
      const body = { model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: m }] };
      try {
        const { data, response } = await client.chat.completions.create(body).withResponse();
        let streamed = '';
        const stream = await client.chat.completions.create({ ...body, stream: true });
        for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
        return { content: data.choices[0].message.content, xCache: response.headers.get('x-cache'), streamed };
      } catch (err) {
        return { error: String(err) };
      }
    }, { base: relay.base, token: appToken, m });
    assert.equal(got.error, undefined, `the SDK failed: ${got.error}\n${consoleLines.join('\n')}`);
    assert.ok(got.content.includes(m.split(' ').at(-1)), got.content);
    assert.equal(got.xCache, 'MISS');
    assert.equal(got.streamed, got.content, 'the stream (a hit, rendered as a stream) says the same');
    const calls = relay.fake.callsFor(m);
    assert.equal(calls.length, 1, 'the stream was answered from the cache');
    assert.match(calls[0].headers['x-stainless-lang'] ?? '', /js/, 'the SDK\'s own headers went through');
    assert.equal(calls[0].headers.authorization, `Bearer ${HELD.openai.key}`);
    upstreamSawNoToken();
    await page.context().close();
  });

  test('an allowed origin can read Relay\'s errors: no credential, and a token Relay does not know (401)', T, async () => {
    const page = await pageOn(allowedPage.origin);
    const { authorization, ...noKey } = openaiHeaders();
    const r = await pageFetch(page, `${relay.base}/v1/chat/completions`, {
      headers: noKey, body: JSON.stringify(chatBody(uniq('browser cors 401'))),
    });
    assert.equal(r.error, undefined, `the browser refused the call: ${r.error}`);
    assert.equal(r.status, 401);
    assert.match(JSON.parse(r.text).error.message, /API key/);

    const m = uniq('browser cors unknown token');
    const unknown = await pageFetch(page, `${relay.base}/v1/chat/completions`, {
      headers: { ...noKey, authorization: `Bearer ${UNKNOWN}` }, body: JSON.stringify(chatBody(m)),
    });
    assert.equal(unknown.error, undefined, `the browser refused the call: ${unknown.error}`);
    assert.equal(unknown.status, 401, unknown.text);
    assert.equal(JSON.parse(unknown.text).error.type, 'authentication_error', unknown.text);
    assert.equal(relay.fake.callsFor(m).length, 0, 'an unknown token reaches no upstream');
    await page.context().close();
  });

  test('another origin: the same token is refused by the browser at the preflight and nothing reaches the upstream', T, async () => {
    const page = await pageOn(otherPage.origin);
    const m = uniq('browser cors refused');
    const r = await pageFetch(page, `${relay.base}/v1/chat/completions`, {
      headers: openaiHeaders(), body: JSON.stringify(chatBody(m)),
    });
    assert.match(r.error ?? '', /TypeError: Failed to fetch/, `the page read an answer: ${JSON.stringify(r)}`);
    const sdk = await page.evaluate(async ({ base, token, m }) => {
      const client = new window.OpenAI({ baseURL: `${base}/v1`, apiKey: token, dangerouslyAllowBrowser: true, maxRetries: 0 });
      try {
        await client.chat.completions.create({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: m }] });
        return 'answered';
      } catch (err) {
        return err.constructor.name;
      }
    }, { base: relay.base, token: appToken, m });
    assert.equal(sdk, 'APIConnectionError', 'the SDK sees a connection error');
    assert.equal(relay.fake.callsFor(m).length, 0, 'the request itself was never sent');
    assert.ok(consoleLines.some((l) => l.startsWith(otherPage.origin) && /blocked by CORS policy/.test(l)),
      `Chromium says why:\n${consoleLines.join('\n')}`);
    await page.context().close();
  });

  test('an allowed origin with a header Relay does not allow: refused by the browser, nothing upstream', T, async () => {
    const page = await pageOn(allowedPage.origin);
    const m = uniq('browser cors odd header');
    const r = await pageFetch(page, `${relay.base}/v1/chat/completions`, {
      headers: { ...openaiHeaders(), 'x-my-app-header': '1' }, body: JSON.stringify(chatBody(m)),
    });
    assert.match(r.error ?? '', /Failed to fetch/, JSON.stringify(r));
    assert.equal(relay.fake.callsFor(m).length, 0);
    assert.ok(consoleLines.some((l) => /x-my-app-header is not allowed by Access-Control-Allow-Headers/.test(l)),
      `Chromium names the header:\n${consoleLines.join('\n')}`);
    await page.context().close();
  });
});
