// The dashboard (www/) in a real browser: headless Chromium (Debian's
// chromium package, /usr/bin/chromium, or RELAY_CHROMIUM) driven through
// playwright-core, against the real environment of tests/e2e/harness.mjs:
// the fake upstream, a Relay pool, Caddy serving www/ at /relay/admin/ and
// relay-admin init, whose admin token file the test signs in with.
//
// One page goes through what a user does: a wrong token is refused, the
// right one signs in, the numbers are Relay's, traffic sent through Relay
// shows up within a poll or two (in the cards, the tables and both charts:
// requests, and dollars spent and saved per day), a Relay client token's
// budget and refusals show in the clients table and the [budget] rows in
// their own, with no token or key anywhere on the page; the token page lists
// the tokens of /relay/admin/api/tokens, a token created there (a refused
// value first, its field named) is shown once with a copy button and is gone
// from the page and from storage once dismissed, works for a real request
// through Relay (the held key upstream) and shows its spend in the clients
// table; its budgets and limits are changed, it is rotated (the old text
// stops, or works through a grace period; the new one works) and revoked
// after a confirmation (401 for every text), and the page and its form fit
// 360 px; a stream in flight is listed while it runs, the theme switches and
// is remembered, the page fits a phone, a token replaced in its file (Relay
// reads it at each request) and logging out both return to the login form.
// Screenshots of the dark and light themes, a phone view and the token page
// (wide, and its form at 360 px) go to tests/out/dashboard-*.png.
//
// A missing Chromium is a failure, never a skip (deploy/install-deps.sh
// --test installs it). Chromium runs with --no-sandbox as root, where its
// sandbox cannot start.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { KEY_A, OUT, REPO, chatBody, relaySuite, uniq } from '../e2e/harness.mjs';
import { heldKeyFile, leaked, makeToken } from '../e2e/tokens.mjs';

const CHROMIUM = process.env.RELAY_CHROMIUM || '/usr/bin/chromium';
const T = { timeout: 40000 };
// The dashboard polls every 5 s: "within a poll or two", with slack for a
// loaded machine.
const TWO_POLLS = 12000;

const TOKEN_KEY = 'relay.admin.token';
const THEME_KEY = 'relay.theme';
const PRICED = 'gpt-4o-mini';
const UNPRICED = 'relay-test-unpriced-model';
// The key Relay holds for the fake upstream, sent for requests with a Relay token.
const HELD = heldKeyFile('sk-held-dashboard-3b9e1f6a0c2d4e57');

// A number as the page shows it ("1,234", "50%", "$0.000135") -> 1234, 50,
// 0.000135; null when there is none ("—").
function parseShown(text) {
  const m = String(text ?? '').replace(/,/g, '').match(/-?\d+(\.\d+)?/);
  return m ? Number(m[0]) : null;
}

relaySuite('dashboard in a browser', {
  // gpt-4o-mini has a price (so savings show in dollars); UNPRICED has none.
  ini: {
    pricing: { [PRICED]: '0.15 0.60 0.075' },
    'upstream.openai': { api_key_file: HELD.file },
    budget: { 'upstream.openai.usd_day': 20 },
  },
}, (relay) => {
  let browser;
  let context;
  let page;
  let token;
  let tokenFile;
  const problems = []; // page errors and console errors, checked at the end
  let badRequests = 0; // 400s Chromium logged: only the one the token form provokes

  const shown = async (id) => (await page.locator(`#${id}`).textContent())?.trim();
  const visible = (sel) => page.locator(sel).isVisible();
  const session = () => page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY);

  // GET api/stats as the dashboard does, from the test.
  async function apiStats() {
    const r = await relay.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, `GET /relay/admin/api/stats with the admin token: ${r.status} ${r.text.slice(0, 300)}`);
    return JSON.parse(r.text);
  }

  async function signIn(withToken) {
    await page.locator('#token').fill(withToken);
    await page.locator('#token').press('Enter'); // the keyboard path; the button is tested too
  }

  async function screenshot(name, { fullPage = true } = {}) {
    fs.mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: path.join(OUT, `dashboard-${name}.png`), fullPage });
  }

  before(async () => {
    assert.ok(fs.existsSync(CHROMIUM),
      `Chromium is missing: no ${CHROMIUM} (deploy/install-deps.sh --test installs Debian's chromium; RELAY_CHROMIUM names another)`);

    // The admin token, from the file relay-admin init creates.
    const cfg = await relay.admin(['config', 'admin.token_file']);
    assert.equal(cfg.code, 0, `relay-admin config admin.token_file: ${cfg.stderr}`);
    tokenFile = cfg.stdout.trim();
    assert.ok(fs.existsSync(tokenFile),
      `relay-admin init did not create the admin token file ${tokenFile} ([admin] token_file)`);
    token = fs.readFileSync(tokenFile, 'utf8').trim();
    assert.ok(token.length >= 16, `the admin token in ${tokenFile} is too short to be one (${token.length} characters)`);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
      timeout: 20000,
    });
    context = await browser.newContext({ colorScheme: 'dark', viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(10000);
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      // A refused token is an expected 401, which Chromium logs; so is the
      // 400 of a value the token form sends and Relay refuses (counted).
      if (msg.type() !== 'error' || /status of 401/.test(msg.text())) return;
      if (/status of 400/.test(msg.text())) badRequests++;
      else problems.push(`console: ${msg.text()}`);
    });
  }, { timeout: 40000 });

  after(async () => {
    await browser?.close();
  });

  test('www/ is static and self-contained: no HTML from data, nothing from elsewhere', T, () => {
    const dir = path.join(REPO, 'www');
    for (const f of fs.readdirSync(dir)) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      if (f.endsWith('.js')) {
        assert.doesNotMatch(text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, `${f} writes HTML`);
      }
      // The SVG namespace is a name, not a request.
      const urls = [...text.matchAll(/https?:\/\/[^\s'"`)<>]+/g)].map((m) => m[0])
        .filter((u) => u !== 'http://www.w3.org/2000/svg');
      assert.deepEqual(urls, [], `${f} refers to another site`);
    }
  });

  test('the login form asks for the admin token and refuses a wrong one with a message', T, async () => {
    await page.goto(`${relay.base}/relay/admin/`);
    assert.ok(await visible('#login'), 'the login form is shown');
    assert.ok(!(await visible('#dashboard')), 'no numbers before signing in');
    assert.ok(await page.getByLabel('Admin token').isVisible(), 'the token field is labelled');
    assert.equal(await page.locator('#token').getAttribute('type'), 'password');

    await signIn(`${token}-wrong`);
    await page.waitForFunction(() => /refused/i.test(document.getElementById('login-message').textContent));
    assert.match(await shown('login-message'), /refused this token/);
    assert.ok(!(await visible('#dashboard')), 'still no numbers');
    assert.equal(await session(), null, 'a refused token is not kept');
    assert.ok(!page.url().includes('wrong'), `the token is not in the URL: ${page.url()}`);
  });

  test('the right token signs in; the page shows what the stats API says', T, async () => {
    await page.locator('#token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    assert.ok(!(await visible('#login')), 'the login form is gone');
    assert.ok(await visible('#logout'), 'a log out button');

    // Kept for this tab only, never in localStorage or the URL.
    assert.equal(await session(), token);
    const local = await page.evaluate(() => Object.keys(localStorage).map((k) => `${k}=${localStorage.getItem(k)}`));
    assert.ok(!local.some((kv) => kv.includes(token)), `the token is not in localStorage: ${local}`);
    assert.ok(!page.url().includes(token), 'the token is not in the URL');

    // The numbers shown are Relay's (no traffic yet, so they hold still).
    await page.waitForFunction(() => document.getElementById('total-requests').textContent.trim() !== '—');
    const stats = await apiStats();
    assert.equal(stats.api, 5);
    assert.match(stats.version, /^\d+\.\d+\.\d+/);
    assert.ok((await shown('updated')).endsWith(`Relay ${stats.version}`), 'the version is shown');
    assert.equal(parseShown(await shown('total-requests')), stats.totals.requests, 'requests shown');
    assert.equal(parseShown(await shown('total-coalesced')), stats.totals.coalesced, 'coalesced shown');
    assert.match(await shown('health-badge'), new RegExp(`Health: ${stats.health.status}`));
    const upstreams = await page.locator('#upstreams-table tbody th').allTextContents();
    assert.deepEqual(upstreams.sort(), stats.upstreams.map((u) => u.name).sort(), 'every upstream has a row');
    assert.match(await shown('store-entries'), new RegExp(`^${stats.store.entries}`));
    // Each upstream's circuit breaker has a column.
    assert.ok(stats.upstreams.every((u) => u.breaker && u.breaker.state === 'closed'), 'breaker fields');
    const heads = await page.locator('#upstreams-table thead th, #clients-table thead th').allTextContents();
    assert.ok(heads.includes('Breaker'), `a breaker column: ${heads}`);
    const cells = await page.locator('#upstreams-table tbody td:last-child').allTextContents();
    assert.ok(cells.length && cells.every((c) => /^(closed|off)/.test(c.trim())), `breaker cells: ${cells}`);
    assert.ok(heads.includes('Budget') && heads.includes('Refused'), `a budget and a refusals column: ${heads}`);
  });

  test('traffic through Relay moves the numbers within a poll or two', T, async () => {
    const before = await apiStats();
    const requestsBefore = parseShown(await shown('total-requests'));

    // A MISS then a HIT on a priced model, and a MISS on a model with no price.
    const body = chatBody(uniq('dashboard'));
    const miss = await relay.chat(body);
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers.get('x-cache'), 'MISS');
    const hit = await relay.chat(body);
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    const unpriced = await relay.chat(chatBody(uniq('dashboard unpriced'), { model: UNPRICED }));
    assert.equal(unpriced.status, 200, unpriced.text);

    const sent = Date.now();
    await page.waitForFunction(
      (n) => Number(document.getElementById('total-requests').textContent.replace(/,/g, '')) >= n,
      requestsBefore + 3, { timeout: TWO_POLLS },
    ).catch(async () => {
      assert.fail(`after ${Date.now() - sent} ms the page still shows ${await shown('total-requests')} requests ` +
        `(${requestsBefore} before, 3 sent; the API says ${(await apiStats()).totals.requests})`);
    });

    // Now the page and the API agree, and the API saw the traffic.
    const stats = await apiStats();
    assert.ok(stats.totals.requests >= before.totals.requests + 3, `requests ${before.totals.requests} -> ${stats.totals.requests}`);
    assert.ok(stats.totals.hits >= before.totals.hits + 1, 'the HIT counted');
    assert.equal(parseShown(await shown('total-requests')), stats.totals.requests);
    assert.ok(stats.totals.hit_rate > 0);
    assert.ok(Math.abs(parseShown(await shown('hit-rate')) - stats.totals.hit_rate * 100) < 0.1,
      `hit rate shown ${await shown('hit-rate')}, API ${stats.totals.hit_rate}`);
    const saved = stats.totals.tokens.saved_input + stats.totals.tokens.saved_output;
    assert.ok(saved > 0, 'the HIT saved tokens');
    assert.equal(parseShown(await shown('tokens-saved')), saved, 'tokens saved shown');
    assert.ok(stats.totals.usd.saved > 0, 'the HIT on a priced model saved money');
    assert.ok(parseShown(await shown('usd-saved')) > 0, `money saved shown: ${await shown('usd-saved')}`);
    assert.match(await shown('usd-saved'), /^\$/);

    // The priced model in dollars; the unpriced one in tokens, flagged, never $0.
    const pricedRow = page.locator('#models-table tbody tr', { hasText: PRICED });
    assert.equal(await pricedRow.count(), 1, `a row for ${PRICED}`);
    assert.match(await pricedRow.textContent(), /\$/);
    const unpricedRow = page.locator('#models-table tbody tr', { hasText: UNPRICED });
    assert.equal(await unpricedRow.count(), 1, `a row for ${UNPRICED}`);
    const cells = await unpricedRow.locator('td, th').allTextContents();
    assert.ok(cells.some((c) => /no price/.test(c)), `"no price" flag: ${cells}`);
    assert.ok(!cells.some((c) => /\$/.test(c)), `no dollar amount for a model with no price: ${cells}`);
    assert.match(await shown('unpriced-note'), /no price.*tokens only/s);

    // The chart of the last hour shows the hit.
    const readout = await shown('traffic-readout');
    const hits = Number(readout.match(/(\d[\d,]*) hits?\b/)?.[1].replace(/,/g, ''));
    assert.ok(hits >= 1, `chart readout: ${readout}`);
    assert.notEqual(await page.locator('#traffic-chart path.series-hits').getAttribute('d'), '', 'hit bars drawn');

    // The money chart: today's bar holds what the MISS spent and the HIT saved.
    const today = stats.series.day.at(-1);
    assert.ok(today.usd_spent > 0 && today.usd_saved > 0, `today in the API: ${JSON.stringify(today)}`);
    const summary = await shown('money-readout');
    assert.match(summary, /^Last 90 days: \$[\d.,]+ spent, \$[\d.,]+ saved \(without Relay: \$[\d.,]+\)/, summary);
    for (const cls of ['series-spent', 'series-saved']) {
      assert.notEqual(await page.locator(`#money-chart path.${cls}`).getAttribute('d'), '', `${cls} bars drawn`);
    }
    // By keyboard: focus the chart, End picks the last day, today.
    await page.locator('#money-chart .plot').focus();
    await page.keyboard.press('End');
    const day = await shown('money-readout');
    const [daySpent, daySaved] = [...day.matchAll(/\$([\d.,]+) (spent|saved)/g)]
      .map((m) => Number(m[1].replace(/,/g, '')));
    assert.ok(daySpent > 0 && daySaved > 0, `today's bar: ${day}`);
    assert.ok(Math.abs(daySaved - today.usd_saved) <= today.usd_saved * 0.01 + 1e-8,
      `saved today shown ${daySaved}, API ${today.usd_saved}`);
    await page.keyboard.press('Escape');
    await page.locator('#money-chart .plot').blur();
    assert.match(await page.locator('#money-chart .y-top').textContent(), /^\$/, 'the axis is in dollars');
  });

  test('a Relay token shows its budget and refusals; the [budget] rows their own; no token or key on the page', T, async () => {
    const agent = await makeToken(relay, 'dashboard agent', { usd_day: 1, usd_month: 10, rpm: 60 });
    const picky = await makeToken(relay, 'claude only', { models: ['claude-*'] });
    const sentMinute = Math.floor(Date.now() / 60000);
    const ok = await relay.chat(chatBody(uniq('dashboard token')), { key: agent.token });
    assert.equal(ok.status, 200, ok.text);
    const refused = await relay.chat(chatBody(uniq('dashboard refused')), { key: picky.token });
    assert.equal(refused.status, 403, refused.text);

    const row = page.locator('#clients-table tbody tr', { hasText: 'dashboard agent' });
    await row.waitFor({ timeout: TWO_POLLS });
    assert.match(await row.locator('th').textContent(), new RegExp(`token ${agent.id}`), 'its public id');
    const budget = await row.locator('td.limits').innerText();
    const usedToday = Number(budget.match(/\$([\d.]+) of \$1\.00 today \(\d+(\.\d)?%\)/)?.[1]);
    assert.ok(usedToday > 0, `what it used of its $1 a day: ${budget}`);
    assert.match(budget, /\$[\d.]+ of \$10\.00 this month/, budget);
    // Rate limits count fixed UTC minutes: when one ended between the request
    // and the poll the page shows, the new minute has none yet.
    const sameMinute = Math.floor(Date.now() / 60000) === sentMinute;
    assert.match(budget, sameMinute ? /rpm 1\/60/ : /rpm [01]\/60/, budget);
    const meter = row.locator('td.limits meter').first();
    assert.equal(await meter.getAttribute('aria-label'), 'Dollars used today by dashboard agent');
    assert.ok(Number(await meter.getAttribute('value')) > 0, 'the meter shows what was used');

    const pickyRow = page.locator('#clients-table tbody tr', { hasText: 'claude only' });
    await pickyRow.waitFor({ timeout: TWO_POLLS });
    const cells = await pickyRow.locator('td').allTextContents();
    assert.equal(cells[6], '1', `its refusal counted: ${cells}`);
    assert.equal(cells[7], 'no limit');
    const keyRow = page.locator('#clients-table tbody tr').filter({ hasNotText: /token [0-9a-f]{8}/ }).first();
    assert.equal((await keyRow.locator('td.limits').textContent()).trim(), '—', 'a provider key has no budget');
    assert.ok(parseShown(await shown('total-refused')) >= 1);
    assert.match(await shown('total-refused-sub'), /1 not allowed/);

    assert.ok(await visible('#budgets'), 'the [budget] rows of relay.ini are shown');
    const up = page.locator('#budgets-table tbody tr', { hasText: 'openai' });
    assert.match(await up.innerText(), /\$[\d.]+ of \$20\.00 today/);

    const html = await page.content();
    const text = await page.locator('body').innerText();
    const secrets = { tokens: [agent.token, picky.token], keys: [HELD.key, KEY_A] };
    assert.equal(leaked(html, secrets), null, 'no token, hash or key in the page\'s HTML');
    assert.equal(leaked(text, secrets), null, 'nor in its text');
  });

  test('what clients send is shown as text, never run as HTML', T, async () => {
    const evil = '<img src=x onerror="window.__relayXss=1">';
    const r = await relay.chat(chatBody(uniq('dashboard xss'), { model: evil }));
    assert.equal(r.status, 200, r.text);
    const row = page.locator('#models-table tbody tr', { hasText: evil });
    await row.waitFor({ timeout: TWO_POLLS });
    assert.equal(await page.locator('#models-table tbody img').count(), 0, 'no element made from the name');
    assert.equal(await page.evaluate(() => window.__relayXss), undefined);
  });

  // ------------------------------------------------------------ token page

  // GET api/tokens from the test: the token named name (as the API shows it).
  async function apiToken(name) {
    const r = await relay.fetch('/relay/admin/api/tokens', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, `GET /relay/admin/api/tokens: ${r.status} ${r.text.slice(0, 300)}`);
    const all = JSON.parse(r.text).tokens;
    return all.filter((t) => t.name === name).sort((a, b) => b.created - a.created)[0];
  }

  // Every place a token's text could stay behind in the page: its HTML, its
  // text, the values of its form fields, and both storages.
  async function pageLeaks(texts) {
    const where = await page.evaluate(() => ({
      html: document.documentElement.outerHTML,
      text: document.body.innerText,
      values: [...document.querySelectorAll('input, textarea, select, output')].map((e) => e.value).join('\n'),
      storage: [sessionStorage, localStorage].map((s) => Object.keys(s).map((k) => `${k}=${s.getItem(k)}`).join('\n')).join('\n'),
    }));
    for (const [place, text] of Object.entries(where)) {
      const l = leaked(text, { tokens: texts });
      if (l) return `${l} in the page's ${place}`;
    }
    return null;
  }

  const tokenRow = (name) => page.locator('#tokens-table tbody tr', { has: page.locator('th', { hasText: name }) });
  const dialog = (name) => page.getByRole('dialog', { name });
  // A field of the token form, by its label.
  const field = (label) => page.locator('#token-dialog').getByLabel(label, { exact: true });

  // The text the secret dialog shows once, after checking how it says so
  // and that the copy button puts it on the clipboard; then dismissed.
  async function takeShownToken(title) {
    const shownOnce = dialog(title);
    await shownOnce.waitFor({ state: 'visible' });
    assert.match(await shownOnce.innerText(), /you will not see it again/i);
    const text = await page.getByLabel('Token text').inputValue();
    assert.match(text, /^rly-[0-9a-f]{64}$/, 'a Relay token, whole');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'secret-copy', 'the copy button has the focus');
    await page.keyboard.press('Enter');
    await page.locator('#secret-status').filter({ hasText: /copied/i }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), text, 'the copy button copied it');
    assert.equal(await pageLeaks([text]).then((l) => (l?.includes('storage') ? l : null)), null, 'never in storage');
    await page.keyboard.press('Escape');
    assert.ok(await shownOnce.isVisible(), 'a stray Escape does not lose the text');
    await shownOnce.getByRole('button', { name: 'Done: hide the token' }).click();
    await shownOnce.waitFor({ state: 'hidden' });
    assert.equal(await pageLeaks([text]), null, 'gone from the page once dismissed');
    return text;
  }

  let pageToken; // the text the page showed for "page agent" (rotated below)
  let pageTokenId;

  test('the token page lists every token of the API: id, name, state, lists, budgets, limits, dates (as text)', T, async () => {
    const evil = '<img src=x onerror="window.__relayXss=2">';
    await makeToken(relay, evil);
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.locator('#view-tokens').waitFor({ state: 'visible' });
    assert.ok(!(await visible('#view-overview')), 'the overview is hidden');
    assert.equal(await page.getByRole('link', { name: 'Tokens' }).getAttribute('aria-current'), 'page');
    assert.ok(page.url().endsWith('#tokens'), `the view is in the URL: ${page.url()}`);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'tokens-title', 'focus moves to the view');

    const agent = await apiToken('dashboard agent');
    const row = tokenRow('dashboard agent');
    await row.waitFor();
    const cells = await row.innerText();
    assert.match(cells, new RegExp(`id ${agent.id}`), cells);
    assert.match(cells, /\blive\b/, cells);
    assert.match(cells, /\$1\.00 a day/, cells);
    assert.match(cells, /\$10\.00 a month/, cells);
    assert.match(cells, /60 requests a minute/, cells);
    assert.match(cells, /\bnever\b/, 'no expiry');
    const created = new Date(agent.created * 1000).toISOString().slice(0, 16).replace('T', ' ');
    assert.ok(cells.includes(`${created} UTC`), `created ${created} UTC in: ${cells}`);
    assert.match(await tokenRow('claude only').innerText(), /claude-\*/, 'its models');
    assert.match(await tokenRow('claude only').innerText(), /every upstream/, 'no upstream list: all');

    const names = await page.locator('#tokens-table tbody th .token-name').allTextContents();
    const r = await relay.fetch('/relay/admin/api/tokens', { headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual(names, JSON.parse(r.text).tokens.map((t) => t.name), 'one row per token, in the API\'s order');
    assert.equal(await tokenRow(evil).count(), 1, 'a name with markup is listed as text');
    assert.equal(await page.locator('#tokens-table img').count(), 0, 'no element made from a name');
    assert.equal(await page.evaluate(() => window.__relayXss), undefined);
  });

  test('a token created in the page is refused with the field named, then shown once with a copy button, and gone when dismissed', T, async () => {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: relay.base });
    const opener = page.getByRole('button', { name: 'New token' });
    await opener.click();
    const form = dialog('New client token');
    await form.waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'tf-name', 'the name field has the focus');

    // Without a name: said in the dialog, nothing sent.
    await form.getByRole('button', { name: 'Create token' }).click();
    await page.locator('#token-form-message').filter({ hasText: /name/i }).waitFor();
    assert.equal(await field('Name').getAttribute('aria-invalid'), 'true');

    // A value Relay refuses: its message, naming the field, which gets the focus.
    await field('Name').fill('page agent');
    await field('Models').fill('gpt-4o*');
    await field('USD a day').fill('0');
    await field('Requests a minute').fill('30');
    await field('Expires').fill('7d');
    await form.getByRole('button', { name: 'Create token' }).click();
    await page.locator('#token-form-message').filter({ hasText: /budget_usd_day/ }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'tf-budget_usd_day');
    assert.equal(await field('USD a day').getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator('#tf-budget_usd_day-error').textContent(), /^budget_usd_day: /, 'said under the field too');
    assert.equal(await page.locator('#tf-name-error').isVisible(), false, 'the name is no longer marked');
    assert.equal(await apiToken('page agent'), undefined, 'nothing was made');

    await field('USD a day').fill('0.50');
    const before = Math.floor(Date.now() / 1000);
    await field('USD a day').press('Enter'); // the keyboard path
    pageToken = await takeShownToken('Token for page agent');
    assert.ok(!(await form.isVisible()), 'the form closed');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'New token', 'focus back where it was');

    const made = await apiToken('page agent');
    pageTokenId = made.id;
    assert.equal(made.state, 'live');
    assert.equal(made.budget_usd_day, '0.50');
    assert.equal(made.rpm, 30);
    assert.deepEqual(made.models, ['gpt-4o*']);
    assert.ok(Math.abs(made.expires - (before + 7 * 86400)) < 60, `expires in 7 days: ${made.expires}`);
    const row = tokenRow('page agent');
    await row.waitFor();
    assert.match(await row.innerText(), /\$0\.50 a day/);
    assert.match(await row.innerText(), new RegExp(`id ${made.id}`));
  });

  test('the created token works through Relay, with the held key upstream, and its spend shows in the clients table', T, async () => {
    const m = uniq('dashboard page token');
    const r = await relay.chat(chatBody(m), { key: pageToken });
    assert.equal(r.status, 200, r.text);
    assert.equal(relay.fake.callsFor(m)[0].headers.authorization, `Bearer ${HELD.key}`);

    await page.getByRole('link', { name: 'Overview' }).click();
    await page.locator('#view-overview').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'dashboard-title');
    const row = page.locator('#clients-table tbody tr', { hasText: 'page agent' });
    await row.waitFor({ timeout: TWO_POLLS });
    assert.match(await row.locator('th').textContent(), new RegExp(`token ${pageTokenId}`));
    const spent = parseShown((await row.locator('td').allTextContents())[4]);
    assert.ok(spent > 0, `what it spent: ${await row.innerText()}`);
    assert.match(await row.locator('td.limits').innerText(), /of \$0\.50 today/);
  });

  test('its budgets and limits are changed in the page; what was not touched stays', T, async () => {
    await page.getByRole('link', { name: 'Tokens' }).click();
    await tokenRow('page agent').getByRole('button', { name: 'Edit page agent' }).click();
    const form = dialog('Edit page agent');
    await form.waitFor({ state: 'visible' });
    assert.equal(await field('USD a day').inputValue(), '0.50', 'the form shows what is set');
    assert.equal(await field('Models').inputValue(), 'gpt-4o*');
    await field('USD a day').fill('2');
    await field('Requests a minute').fill(''); // no rate limit any more
    await field('Tokens a minute').fill('5000');
    await form.getByRole('button', { name: 'Save changes' }).click();
    await form.waitFor({ state: 'hidden' });
    await page.locator('#tokens-status').filter({ hasText: /Saved page agent/ }).waitFor();

    const t = await apiToken('page agent');
    assert.equal(t.budget_usd_day, '2.00');
    assert.equal(t.rpm, null, 'an emptied limit is removed');
    assert.equal(t.tpm, 5000);
    assert.deepEqual(t.models, ['gpt-4o*'], 'untouched');
    assert.ok(t.expires > 0, 'the expiry is untouched');
    await tokenRow('page agent').filter({ hasText: '$2.00 a day' }).waitFor();
    assert.match(await tokenRow('page agent').innerText(), /5,000 tokens a minute/);
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.textContent),
      'Edit page agent', 'focus back on the row\'s Edit button');
  });

  test('rotating in the page shows the new text once: the old text stops (or works through a grace period), the new one works', T, async () => {
    const old = pageToken;
    await tokenRow('page agent').getByRole('button', { name: 'Rotate page agent' }).click();
    const ask = dialog('Rotate page agent');
    await ask.waitFor({ state: 'visible' });
    assert.equal(await page.getByLabel('The old text keeps working').inputValue(), '', 'no grace period unless chosen');
    await ask.getByRole('button', { name: 'Rotate' }).click();
    const fresh = await takeShownToken('New token for page agent');
    assert.notEqual(fresh, old);

    const refused = await relay.chat(chatBody(uniq('dashboard old text')), { key: old });
    assert.equal(refused.status, 401, `the old text: ${refused.text}`);
    const works = await relay.chat(chatBody(uniq('dashboard new text')), { key: fresh });
    assert.equal(works.status, 200, `the new text: ${works.text}`);
    const t = await apiToken('page agent');
    assert.equal(t.id, pageTokenId, 'the same token: its id (and budgets) kept');
    assert.equal(t.budget_usd_day, '2.00');

    // Again, with an hour's grace: both texts work until then, and the row says so.
    await tokenRow('page agent').getByRole('button', { name: 'Rotate page agent' }).click();
    await page.getByLabel('The old text keeps working').selectOption('1h');
    await ask.getByRole('button', { name: 'Rotate' }).click();
    const shown = dialog('New token for page agent');
    await shown.waitFor({ state: 'visible' });
    assert.match(await shown.innerText(), /previous text keeps working until \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    const third = await takeShownToken('New token for page agent');
    for (const [what, key] of [['the text in its grace period', fresh], ['the new text', third]]) {
      const r = await relay.chat(chatBody(uniq('dashboard grace')), { key });
      assert.equal(r.status, 200, `${what}: ${r.text}`);
    }
    assert.ok((await apiToken('page agent')).grace_until > Date.now() / 1000 + 3000);
    await tokenRow('page agent').filter({ hasText: /previous text until/ }).waitFor();
    pageToken = [fresh, third];
    assert.equal(await pageLeaks([old, fresh, third]), null, 'no text in the page');
  });

  test('revoking in the page asks first; afterwards every text of the token gets 401', T, async () => {
    const revoke = () => tokenRow('page agent').getByRole('button', { name: 'Revoke page agent' }).click();
    await revoke();
    const ask = dialog('Revoke page agent?');
    await ask.waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Cancel', 'Cancel has the focus');
    await page.keyboard.press('Escape');
    await ask.waitFor({ state: 'hidden' });
    assert.equal((await apiToken('page agent')).state, 'live', 'Escape revokes nothing');

    await revoke();
    await ask.getByRole('button', { name: 'Revoke token' }).click();
    await ask.waitFor({ state: 'hidden' });
    await page.locator('#tokens-status').filter({ hasText: /Revoked page agent/ }).waitFor();
    assert.equal((await apiToken('page agent')).state, 'revoked');
    const row = tokenRow('page agent');
    assert.match(await row.innerText(), /revoked/);
    assert.equal(await row.getByRole('button').count(), 0, 'a revoked token has nothing left to do');
    for (const key of pageToken) {
      const m = uniq('dashboard revoked');
      const r = await relay.chat(chatBody(m), { key });
      assert.equal(r.status, 401, r.text);
      assert.equal(relay.fake.callsFor(m).length, 0, 'nothing upstream');
    }
    assert.equal(await pageLeaks(pageToken), null, 'no token text left in the page or in storage');
  });

  test('the token page and its form fit a phone (360 px), and the overview comes back', T, async () => {
    await page.setViewportSize({ width: 360, height: 740 });
    await page.waitForTimeout(200);
    let width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 360, `the token page is ${width} px wide at 360 px`);
    await page.getByRole('button', { name: 'New token' }).click();
    const form = dialog('New client token');
    await form.waitFor({ state: 'visible' });
    const box = await form.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 360, `the form is within the screen: ${JSON.stringify(box)}`);
    width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 360, `${width} px wide with the form open`);
    await screenshot('tokens-phone', { fullPage: false }); // a dialog: what the screen shows
    await form.getByRole('button', { name: 'Cancel' }).click();
    await form.waitFor({ state: 'hidden' });
    await page.setViewportSize({ width: 1280, height: 900 });
    await screenshot('tokens');
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.locator('#view-overview').waitFor({ state: 'visible' });
  });

  test('a stream in flight is listed live, and gone once it ends', T, async () => {
    // ~9 s of stream: at least one poll sees it.
    relay.fake.enqueue({ chunks: 10, chunkDelayMs: 1000 });
    const res = await relay.chat(chatBody(uniq('dashboard in flight'), { stream: true }), { stream: true, timeout: 30000 });
    assert.equal(res.status, 200);
    const key = res.headers.get('x-relay-key');
    assert.match(key ?? '', /^[0-9a-f]{16}$/, 'X-Relay-Key');
    const done = res.text();
    try {
      const row = page.locator('#inflight-table tbody tr', { hasText: key });
      await row.waitFor({ timeout: TWO_POLLS });
      assert.match(await shown('inflight-count'), /\(\d+\)/);
      assert.match(await row.textContent(), /\d+(\.\d)? (ms|s)/, 'its age');
    } finally {
      await done;
    }
    await page.locator('#inflight-table tbody tr', { hasText: key }).waitFor({ state: 'detached', timeout: TWO_POLLS });
  });

  test('the theme switches, is remembered, and outlives a reload', T, async () => {
    const theme = () => page.evaluate(() => document.documentElement.getAttribute('data-theme'));
    const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(await theme(), 'dark', 'the system prefers dark (the context says so)');
    const dark = await background();
    await screenshot('dark');

    const toggle = page.getByRole('button', { name: 'Switch to light theme' });
    await toggle.focus();
    await page.keyboard.press('Enter');
    assert.equal(await theme(), 'light');
    assert.notEqual(await background(), dark, 'the colours changed');
    assert.equal(await page.evaluate((k) => localStorage.getItem(k), THEME_KEY), 'light');

    await page.reload();
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    assert.equal(await theme(), 'light', 'the choice outlives a reload (over the system preference)');
    await page.waitForFunction(() => document.getElementById('total-requests').textContent.trim() !== '—');
    assert.ok(await visible('#dashboard'), 'still signed in after a reload (same tab)');
    await screenshot('light');
  });

  test('the page fits a phone (390 px) without sideways scrolling', T, async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `the page is ${width} px wide at 390 px`);
    for (const id of ['usd-saved', 'hit-rate', 'total-requests', 'logout', 'theme-toggle']) {
      assert.ok(await visible(`#${id}`), `#${id} is visible`);
    }
    await screenshot('phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('a token replaced while signed in returns to the login form with the reason, and wipes a token text on show', T, async () => {
    // A new client token's text is on screen when the admin token stops
    // working: the login form replaces it, and nothing of it stays.
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.getByRole('button', { name: 'New token' }).click();
    await field('Name').fill('left on screen');
    await field('Name').press('Enter');
    await dialog('Token for left on screen').waitFor({ state: 'visible' });
    const onScreen = await page.getByLabel('Token text').inputValue();
    assert.match(onScreen, /^rly-/);

    // Relay reads the token file at each request: replace it, as an admin
    // rotating the token would, and the page's next poll is refused.
    const replacement = randomBytes(32).toString('hex');
    fs.writeFileSync(tokenFile, `${replacement}\n`, { mode: 0o600 });
    await page.locator('#login').waitFor({ state: 'visible', timeout: TWO_POLLS });
    assert.match(await shown('login-message'), /refused the admin token/);
    assert.ok(!(await visible('#secret-dialog')), 'the token text is no longer shown');
    assert.equal(await pageLeaks([onScreen]), null, 'nor anywhere in the page or in storage');
    assert.equal(await page.locator('#tokens-table tbody tr').count(), 0, 'no token left listed');
    assert.equal(await session(), null, 'the refused token is forgotten');
    assert.equal(await page.locator('#models-table tbody tr').count(), 0, 'no numbers left on the page');

    token = replacement;
    await signIn(token);
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    assert.equal(await session(), token);
  });

  test('log out forgets the token and clears the page', T, async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('#login').waitFor({ state: 'visible' });
    assert.match(await shown('login-message'), /logged out/);
    assert.equal(await session(), null);
    assert.ok(!(await visible('#dashboard')));
    assert.equal(await page.locator('#models-table tbody tr').count(), 0, 'no numbers left on the page');
    assert.equal(await shown('total-requests'), '—');
    assert.equal(await page.locator('#tokens-table tbody tr').count(), 0, 'no token left listed');
    await page.reload();
    assert.ok(await visible('#login'), 'still logged out after a reload');
  });

  test('no script error and no console error along the way', T, () => {
    assert.deepEqual(problems, []);
    assert.equal(badRequests, 1, 'one 400: the budget of 0 the token form sent');
  });
});
