// Relay's dashboard: signs in with the admin token, polls api/stats (the
// stats API, "api": 5) every 5 seconds and shows it in the overview; the
// token page (tokens.js, #tokens) manages Relay client tokens.
//
// The admin token lives in sessionStorage only (api.js: this tab, until log
// out or close); it is sent as "Authorization: Bearer" and never put in a
// URL. A 401 at any time forgets it and returns to the login form with the
// reason. Everything the API says is written with textContent or DOM calls,
// never as HTML.

import { ApiError, Unauthorized, getToken, request, setToken } from './api.js';
import { BarChart, MONEY, TRAFFIC } from './chart.js';
import { $, el, setMessage } from './dom.js';
import {
  DASH, fmtBytes, fmtClock, fmtCount, fmtInt, fmtMs, fmtPct, fmtUsd, known, sum,
} from './format.js';
import { clearTokens, initTokens, showTokens } from './tokens.js';

const THEME_KEY = 'relay.theme';
const POLL_MS = 5000;
const API = 'api/stats'; // relative: the page is served at /relay/admin/
const API_SHAPE = 5; // the stats document this page reads (its "api")

// The views, by the URL's fragment: the element shown, its link, and what
// gets the focus when the user switches to it.
const VIEWS = {
  overview: { view: 'view-overview', nav: 'nav-overview', heading: 'dashboard-title' },
  tokens: { view: 'view-tokens', nav: 'nav-tokens', heading: 'tokens-title' },
};

const state = {
  timer: null,
  // Bumped on sign-in and sign-out, so an answer that arrives after the
  // user left (or came back with another token) is dropped.
  session: 0,
  stats: null,
  range: 'hour',
  receivedAt: null,
  chart: null,
  money: null,
  view: 'overview',
};

// ------------------------------------------------------------------ theme

function currentTheme() {
  return document.documentElement.getAttribute('data-theme') === 'dark' ? 'dark' : 'light';
}

function applyTheme(theme) {
  document.documentElement.setAttribute('data-theme', theme);
  const other = theme === 'dark' ? 'light' : 'dark';
  const button = $('theme-toggle');
  button.textContent = other === 'dark' ? 'Dark theme' : 'Light theme';
  button.setAttribute('aria-label', `Switch to ${other} theme`);
  button.title = `Switch to ${other} theme`;
}

function setupTheme() {
  applyTheme(currentTheme());
  $('theme-toggle').addEventListener('click', () => {
    const next = currentTheme() === 'dark' ? 'light' : 'dark';
    try {
      localStorage.setItem(THEME_KEY, next);
    } catch {
      /* not remembered, still applied */
    }
    applyTheme(next);
  });
  // Follow the system while the user has not chosen.
  const mq = window.matchMedia?.('(prefers-color-scheme: dark)');
  mq?.addEventListener?.('change', (e) => {
    let chosen = null;
    try {
      chosen = localStorage.getItem(THEME_KEY);
    } catch {
      /* follow the system */
    }
    if (chosen !== 'dark' && chosen !== 'light') applyTheme(e.matches ? 'dark' : 'light');
  });
}

// -------------------------------------------------------------------- API

// GET api/stats with the token. Resolves to the stats; rejects with
// Unauthorized on 401/403, or an Error saying what went wrong.
async function fetchStats(token) {
  let body;
  try {
    body = await request(API, { token });
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) throw new Unauthorized(err.detail || 'HTTP 403');
    throw err;
  }
  if (body.api !== API_SHAPE) {
    throw new Error(`unknown stats API ${JSON.stringify(body?.api ?? null)} (this page reads api ${API_SHAPE})`);
  }
  return body;
}

// ------------------------------------------------------------ sign in/out

function showLogin(message = '', kind = 'error') {
  clearTimeout(state.timer);
  state.session++;
  state.stats = null;
  clearDashboard();
  $('dashboard').hidden = true;
  $('logout').hidden = true;
  $('health-badge').hidden = true;
  $('login').hidden = false;
  setMessage($('login-message'), message, kind);
  $('token').focus();
}

function showDashboard() {
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('logout').hidden = false;
  showView(viewOf(location.hash) ?? state.view);
}

// ------------------------------------------------------------------ views

const viewOf = (hash) => (Object.hasOwn(VIEWS, hash.slice(1)) ? hash.slice(1) : null);

// Shows one view and marks its link as the current page; the token page
// reads the tokens each time it is shown.
function showView(name, { focus = false } = {}) {
  state.view = name;
  for (const [key, v] of Object.entries(VIEWS)) {
    $(v.view).hidden = key !== name;
    if (key === name) $(v.nav).setAttribute('aria-current', 'page');
    else $(v.nav).removeAttribute('aria-current');
  }
  if (name === 'tokens') showTokens();
  if (focus) $(VIEWS[name].heading).focus();
}

async function onLogin(e) {
  e.preventDefault();
  const input = $('token');
  const submit = $('login-submit');
  const token = input.value.trim();
  if (!token) {
    setMessage($('login-message'), 'Enter the admin token.', 'error');
    input.focus();
    return;
  }
  submit.disabled = true;
  setMessage($('login-message'), 'Checking the token…', 'info');
  const session = ++state.session;
  try {
    const stats = await fetchStats(token);
    if (session !== state.session) return;
    if (!setToken(token)) {
      setMessage($('login-message'), 'This browser refuses session storage, so the token cannot be kept.', 'error');
      return;
    }
    input.value = '';
    setMessage($('login-message'), '');
    showDashboard();
    render(stats);
    $('dashboard-title').focus();
    schedulePoll();
  } catch (err) {
    if (session !== state.session) return;
    if (err instanceof Unauthorized) {
      setMessage($('login-message'), `Relay refused this token (${err.message}). Check it against the admin token file.`, 'error');
      input.select();
    } else {
      setMessage($('login-message'), `Could not sign in: ${err.message}.`, 'error');
    }
  } finally {
    submit.disabled = false;
  }
}

function logout() {
  setToken(null);
  showLogin('You are logged out.', 'info');
}

// ---------------------------------------------------------------- polling

function schedulePoll(delay = POLL_MS) {
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, delay);
}

async function poll() {
  const token = getToken();
  if (!token) {
    showLogin('Sign in with the admin token.', 'info');
    return;
  }
  // A hidden tab does not poll; it catches up when shown (visibilitychange).
  if (document.hidden) return;
  const session = state.session;
  try {
    const stats = await fetchStats(token);
    if (session !== state.session) return;
    render(stats);
    setMessage($('status'), '');
  } catch (err) {
    if (session !== state.session) return;
    if (err instanceof Unauthorized) {
      setToken(null);
      showLogin(`Relay refused the admin token (${err.message}): it may have changed. Sign in again.`, 'error');
      return;
    }
    const when = state.receivedAt ? ` The numbers below are from ${fmtClock(state.receivedAt, { seconds: true })}.` : '';
    setMessage($('status'), `Update failed: ${err.message}. Retrying every 5 s.${when}`, 'error');
  }
  schedulePoll();
}

// ----------------------------------------------------------------- render

function setText(id, text, title = '') {
  const el = $(id);
  el.textContent = text;
  if (title) el.title = title;
  else el.removeAttribute('title');
}

// A card's big value; a long one ($0.0000036) gets a smaller font to fit.
function setValue(id, text, title = '') {
  setText(id, text, title);
  $(id).classList.toggle('long', text.length > 8);
}

// "1 hit", "3 misses": a count and its noun.
const plural = (v, one, many) => `${fmtCount(v)} ${v === 1 ? one : many}`;

// A count for a table cell: short form, the exact number in the title.
function countCell(v) {
  const td = el('td', 'num', fmtCount(v));
  if (known(v) && Math.abs(v) >= 1e6) td.title = fmtInt(v);
  return td;
}

function textCell(text, cls = '') {
  return el('td', cls, text ?? DASH);
}

// Replaces a table's body with rows, or one row saying `empty`.
function fillTable(id, rows, empty) {
  const table = $(id);
  const tbody = table.tBodies[0];
  if (!rows.length) {
    const tr = el('tr', 'empty');
    const td = el('td', '', empty);
    td.colSpan = table.tHead.rows[0].cells.length;
    tr.append(td);
    tbody.replaceChildren(tr);
    return;
  }
  tbody.replaceChildren(...rows);
}

const tok = (t) => t ?? {};
const savedTokens = (t) => sum(tok(t).saved_input, tok(t).saved_output);

function render(stats) {
  state.stats = stats;
  state.receivedAt = Date.now() / 1000;
  renderHeader(stats);
  renderTotals(stats);
  renderChart();
  renderMoney();
  renderHealth(stats.health);
  renderStore(stats.store);
  renderCluster(stats.cluster);
  renderModels(stats.models);
  renderUpstreams(stats.upstreams);
  renderClients(stats.clients);
  renderBudgets(stats.budgets);
  renderInflight(stats.inflight);
}

function renderHeader(stats) {
  const at = known(stats.now) ? fmtClock(stats.now, { seconds: true }) : fmtClock(state.receivedAt, { seconds: true });
  const version = typeof stats.version === 'string' && stats.version ? ` · Relay ${stats.version}` : '';
  setText('updated', `Updated ${at}${version}`);
}

function renderTotals(stats) {
  const t = stats.totals ?? {};
  const tokens = tok(t.tokens);
  const usd = t.usd ?? {};
  const unpriced = known(t.unpriced_requests) ? t.unpriced_requests : 0;
  const anyPriced = (stats.models ?? []).some((m) => m.priced);

  setValue('usd-saved', fmtUsd(usd.saved));
  setValue('usd-spent', fmtUsd(usd.spent));
  const priceNote = unpriced > 0 ? `priced models only` : anyPriced || !t.requests ? 'at list prices' : 'no priced model yet';
  setText('usd-saved-sub', priceNote);
  setText('usd-spent-sub', plural(t.upstream_calls, 'upstream call', 'upstream calls'));

  const saved = savedTokens(tokens);
  setValue('tokens-saved', fmtCount(saved), known(saved) && saved >= 1e6 ? fmtInt(saved) : '');
  setText('tokens-saved-sub', `${fmtCount(tokens.saved_input)} in · ${fmtCount(tokens.saved_output)} out`);

  // The provider's own prompt cache: paid calls whose prefix it billed at
  // its cached price; apart from what Relay's cache saved above.
  setValue('usd-provider-saved', fmtUsd(usd.provider_saved));
  setText('usd-provider-saved-sub', `${fmtCount(tokens.cached_input)} cached input tokens`);

  setValue('hit-rate', fmtPct(t.hit_rate));
  setText('hit-rate-sub', `${plural(sum(t.hits, t.stale), 'hit', 'hits')} · ${plural(t.misses, 'miss', 'misses')}`);

  setValue('total-requests', fmtCount(t.requests), known(t.requests) && t.requests >= 1e6 ? fmtInt(t.requests) : '');
  const extra = [plural(t.errors, 'error', 'errors')];
  if (t.bypass) extra.push(`${fmtCount(t.bypass)} bypass`);
  if (t.stale) extra.push(`${fmtCount(t.stale)} stale`);
  setText('total-requests-sub', extra.join(' · '));

  setValue('total-coalesced', fmtCount(t.coalesced));
  setText('total-coalesced-sub', 'shared an in-flight call');

  // Refused before any upstream call: the reasons that cost money first.
  setValue('total-refused', fmtCount(t.rejected));
  const why = t.rejections ?? {};
  const badToken = sum(why.token_unknown, why.token_revoked, why.token_expired, why.token_required);
  const refusals = [
    [why.budget, 'over budget'], [why.rate_limit, 'rate limited'],
    [sum(why.forbidden_model, why.forbidden_upstream), 'not allowed'], [badToken, 'bad token'],
    [why.unverifiable, 'unverifiable'], [why.queue_full, 'upstream busy'],
  ].filter(([n]) => n > 0).map(([n, what]) => `${fmtCount(n)} ${what}`);
  setText('total-refused-sub', refusals.length ? refusals.join(' · ') : 'by budgets, limits and tokens');

  const note = $('unpriced-note');
  if (unpriced > 0) {
    note.hidden = false;
    note.replaceChildren(
      el('span', 'badge warn', 'no price'),
      document.createTextNode(` ${fmtInt(unpriced)} request${unpriced === 1 ? '' : 's'} of models without a price `
        + 'are counted in tokens only, not in the dollar amounts. Add them to [pricing] in relay.ini.'),
    );
  } else {
    note.hidden = true;
    note.replaceChildren();
  }
}

const RANGES = {
  hour: { series: 'minute', last: 60, bucket: 'minute', title: 'Last hour' },
  day: { series: 'minute', last: 1440, bucket: 'minute', title: 'Last 24 hours' },
  '90d': { series: 'day', last: 90, bucket: 'day', title: 'Last 90 days' },
};

function renderChart() {
  const r = RANGES[state.range];
  const all = state.stats?.series?.[r.series];
  const points = Array.isArray(all) ? all.slice(-r.last) : [];
  state.chart.update(points, r.bucket, r.title);
}

// Dollars spent and saved per day, from the 90-day series.
function renderMoney() {
  const all = state.stats?.series?.day;
  state.money.update(Array.isArray(all) ? all : [], 'day', 'Last 90 days');
}

function renderHealth(health) {
  const status = typeof health?.status === 'string' ? health.status : 'unknown';
  const kind = status === 'ok' ? 'good' : status === 'degraded' ? 'warn' : 'bad';
  for (const id of ['health-status', 'health-badge']) {
    const b = $(id);
    b.className = `badge ${kind}`;
    b.textContent = id === 'health-badge' ? `Health: ${status}` : status;
  }
  $('health-badge').hidden = false;
  const reasons = Array.isArray(health?.reasons) ? health.reasons : [];
  $('health-reasons').replaceChildren(...(reasons.length
    ? reasons.map((r) => el('li', '', String(r)))
    : [el('li', 'muted', 'No problem reported.')]));
}

// "used of max" with a meter, or "used (no limit)" when max is 0 or unknown.
function setUsage(textId, meterId, used, max, fmt) {
  const meter = $(meterId);
  if (known(max) && max > 0) {
    setText(textId, `${fmt(used)} of ${fmt(max)} (${fmtPct(known(used) ? used / max : null)})`);
    meter.max = max;
    meter.value = known(used) ? Math.min(used, max) : 0;
    meter.low = max * 0.8;
    meter.high = max * 0.95;
    meter.hidden = false;
    meter.setAttribute('aria-label', `${textId === 'store-bytes' ? 'Size' : 'Entries'} used`);
  } else {
    setText(textId, `${fmt(used)} (no limit)`);
    meter.hidden = true;
  }
}

function renderStore(store) {
  const s = store ?? {};
  setUsage('store-entries', 'store-entries-meter', s.entries, s.max_entries, fmtInt);
  setUsage('store-bytes', 'store-bytes-meter', s.bytes, s.max_bytes, fmtBytes);
  setText('store-evictions', fmtInt(s.evictions));
  setText('store-expired', fmtInt(s.expired_removed));
}

// Spent or saved of a model: dollars, or a "no price" flag (never $0).
function usdCell(priced, usd, which) {
  if (!priced || !usd) {
    const td = el('td', 'num');
    td.append(el('span', 'badge warn', 'no price'));
    td.title = 'No price in [pricing]: counted in tokens only';
    return td;
  }
  return el('td', 'num', fmtUsd(usd[which]));
}

const perMillion = (v) => fmtUsd(v);

function renderModels(models) {
  const list = Array.isArray(models) ? [...models] : [];
  list.sort((a, b) => (b.requests ?? 0) - (a.requests ?? 0));
  fillTable('models-table', list.map((m) => {
    const tr = el('tr');
    if (!m.priced) tr.className = 'unpriced';
    const name = el('th', 'name');
    name.scope = 'row';
    name.append(el('span', 'ident', m.model ?? DASH));
    if (!m.priced) name.append(' ', el('span', 'badge warn', 'no price'));
    else if (m.price) {
      name.append(el('span', 'price', `${perMillion(m.price.input)} in · ${perMillion(m.price.output)} out per M tokens`));
    }
    const t = tok(m.tokens);
    const served = sum(m.hits, m.stale, m.coalesced);
    const rate = known(m.requests) && m.requests > 0 && known(served) ? served / m.requests : null;
    tr.append(
      name,
      textCell(m.upstream),
      countCell(m.requests),
      countCell(sum(m.hits, m.stale)),
      countCell(m.coalesced),
      countCell(m.misses),
      countCell(m.errors),
      el('td', 'num', fmtPct(rate)),
      countCell(t.input),
      countCell(t.output),
      countCell(savedTokens(t)),
      usdCell(m.priced, m.usd, 'spent'),
      usdCell(m.priced, m.usd, 'saved'),
    );
    return tr;
  }), 'No model has been asked yet.');
}

// "p50 / p95 / p99" of a {p50, p95, p99} or a dash when there is none.
function percentiles(p) {
  if (!p) return DASH;
  return `${fmtMs(p.p50)} / ${fmtMs(p.p95)} / ${fmtMs(p.p99)}`;
}

// An upstream's circuit breaker: "closed (1 failure of 5)", "open, retry
// in 12 s", "half-open (probing)", or "off" when breaker_failures = 0.
function breakerText(b) {
  if (!b) return DASH;
  if (!b.enabled) return 'off';
  if (b.state === 'open') return `open, retry in ${b.retry_in} s`;
  if (b.state === 'half_open') return b.prober ? 'half-open (probing)' : 'half-open';
  return b.failures ? `closed (${plural(b.failures, 'failure', 'failures')} of ${b.threshold})` : 'closed';
}

function renderUpstreams(upstreams) {
  const list = Array.isArray(upstreams) ? upstreams : [];
  fillTable('upstreams-table', list.map((u) => {
    const tr = el('tr');
    const name = el('th', 'name', u.name ?? DASH);
    name.scope = 'row';
    tr.append(
      name,
      textCell(u.type),
      textCell(u.base_url, 'ident url'),
      countCell(u.requests),
      countCell(u.upstream_calls),
      countCell(u.errors),
      el('td', 'num', percentiles(u.latency_ms)),
      el('td', 'num', percentiles(u.ttfb_ms)),
      el('td', u.breaker?.state && u.breaker.state !== 'closed' ? 'breaker-open' : '', breakerText(u.breaker)),
    );
    return tr;
  }), 'No upstream is configured.');
}

// The limits set in one window of a budget, as lines for a cell: "$0.42 of
// $1.00 today (42%)" with the share used as a meter.
const LIMITS = [
  { window: 'day', unit: 'usd', when: 'today' },
  { window: 'month', unit: 'usd', when: 'this month' },
  { window: 'day', unit: 'tokens', when: 'today' },
];
// Rate limits, as "rpm 3/60".
const RATES = [
  { window: 'minute', unit: 'requests', short: 'rpm' },
  { window: 'minute', unit: 'tokens', short: 'tpm' },
];

const used = (a) => sum(a?.spent, a?.reserved);

// One line of a budget cell: its text, and a meter of used against limit.
function limitLine(text, a, label) {
  const line = el('div', '', text);
  if (known(a?.limit) && a.limit > 0) {
    const meter = el('meter');
    meter.min = 0;
    meter.max = a.limit;
    meter.value = Math.min(used(a) ?? 0, a.limit);
    meter.low = a.limit * 0.8;
    meter.high = a.limit * 0.95;
    meter.optimum = 0;
    meter.setAttribute('aria-label', label);
    line.append(meter);
  }
  return line;
}

// "$0.42 of $1.00 today (42%)", "1,200 of 5,000 tokens today (24%)": what
// is used (spent, and reserved by requests under way) of a limit, as the
// store's sizes read.
function usedText(a, unit, when) {
  const u = used(a);
  const share = known(u) && a.limit > 0 ? ` (${fmtPct(u / a.limit)})` : '';
  return unit === 'usd'
    ? `${fmtUsd(u)} of ${fmtUsd(a.limit)} ${when}${share}`
    : `${fmtCount(u)} of ${fmtCount(a.limit)} ${unit} ${when}${share}`;
}

// The Budget cell of a client: a token's limits (what is used of each) and
// rate limits; a provider key has none (Relay holds no budget for it).
function budgetCell(c) {
  const td = el('td', 'limits');
  const t = c.token;
  if (!t) {
    td.textContent = DASH;
    td.title = 'A provider key passed through: Relay holds no budget for it';
    return td;
  }
  const lines = [];
  if (t.state && t.state !== 'live') {
    const line = el('div');
    line.append(el('span', 'badge bad', t.state));
    lines.push(line);
  }
  for (const l of LIMITS) {
    const a = t[l.window]?.[l.unit];
    if (!known(a?.limit)) continue;
    const what = `${l.unit === 'usd' ? 'Dollars' : 'Tokens'} used ${l.when} by ${t.name}`;
    lines.push(limitLine(usedText(a, l.unit, l.when), a, what));
  }
  const rates = RATES.map((r) => [r, t[r.window]?.[r.unit]]).filter(([, a]) => known(a?.limit))
    .map(([r, a]) => `${r.short} ${fmtCount(used(a))}/${fmtCount(a.limit)}`);
  if (rates.length) lines.push(el('div', '', rates.join(' · ')));
  if (!lines.length) lines.push(el('div', 'muted', 'no limit'));
  td.append(...lines);
  return td;
}

function renderClients(clients) {
  const list = Array.isArray(clients) ? [...clients] : [];
  list.sort((a, b) => (b.requests ?? 0) - (a.requests ?? 0));
  fillTable('clients-table', list.map((c) => {
    const tr = el('tr');
    const name = el('th', 'name');
    name.scope = 'row';
    if (c.token) {
      name.append(el('span', 'ident', c.token.name ?? DASH), el('span', 'sub-id ident', `token ${c.token.id ?? DASH}`));
    } else {
      name.append(el('span', 'ident', c.client ?? DASH));
    }
    const t = tok(c.tokens);
    const usd = c.usd ?? null;
    tr.append(
      name,
      countCell(c.requests),
      countCell(t.input),
      countCell(t.output),
      countCell(savedTokens(t)),
      el('td', 'num', usd ? fmtUsd(usd.spent) : DASH),
      el('td', 'num', usd ? fmtUsd(usd.saved) : DASH),
      countCell(c.rejected),
      budgetCell(c),
    );
    return tr;
  }), 'No client has sent a request yet.');
}

// A [budget] row's window: each unit with a limit ("$3 of $20"), else what
// was spent; the share used as a meter.
function periodCell(b, window, when) {
  const td = el('td', 'limits');
  const p = b[window];
  if (!p) {
    td.textContent = DASH;
    return td;
  }
  const lines = [];
  for (const unit of ['usd', 'tokens']) {
    const a = p[unit];
    if (!known(a?.limit)) continue;
    const what = `${unit === 'usd' ? 'Dollars' : 'Tokens'} used ${when} by ${b.scope} ${b.name}`;
    lines.push(limitLine(usedText(a, unit, when), a, what));
  }
  if (!lines.length) lines.push(el('div', '', `${fmtUsd(p.usd?.spent)} spent, no limit`));
  td.append(...lines);
  return td;
}

// The [budget] rows of relay.ini; the panel is hidden when there are none.
function renderBudgets(budgets) {
  const rows = Array.isArray(budgets?.global) ? budgets.global : [];
  $('budgets').hidden = rows.length === 0;
  fillTable('budgets-table', rows.map((b) => {
    const tr = el('tr');
    const name = el('th', 'name');
    name.scope = 'row';
    name.append(el('span', 'ident', b.name ?? DASH), el('span', 'sub-id', b.scope === 'model' ? 'model' : 'upstream'));
    tr.append(name, periodCell(b, 'day', 'today'), periodCell(b, 'month', 'this month'));
    return tr;
  }), 'No [budget] row in relay.ini.');
}

// The replication group ([cluster]) as this host sees it: its role, the
// master, how long ago its last heartbeat came, and each site. The panel is
// hidden without [cluster] (cluster null).
function renderCluster(cluster) {
  $('cluster').hidden = !cluster;
  if (!cluster) return;
  setText('cluster-role', typeof cluster.role === 'string' ? cluster.role : DASH);
  setText('cluster-master', cluster.master || 'none known');
  setText('cluster-lag', known(cluster.lag) ? `${fmtInt(cluster.lag)} s ago` : 'none yet');
  const sites = Array.isArray(cluster.sites) ? cluster.sites : [];
  fillTable('cluster-table', sites.map((site) => {
    const tr = el('tr');
    const addr = el('th', 'name ident', site.addr ?? DASH);
    addr.scope = 'row';
    const roles = [site.self ? 'this host' : '', site.master ? 'master' : ''].filter(Boolean);
    tr.append(
      addr,
      el('td', '', roles.length ? roles.join(', ') : DASH),
      el('td', site.connected ? '' : 'site-down', site.connected ? 'connected' : 'disconnected'),
    );
    return tr;
  }), 'No site is known.');
}

function renderInflight(inflight) {
  const list = Array.isArray(inflight) ? inflight : [];
  $('inflight-count').textContent = list.length ? `(${fmtInt(list.length)})` : '';
  fillTable('inflight-table', list.map((f) => {
    const tr = el('tr');
    const key = el('th', 'name ident', f.key ?? DASH);
    key.scope = 'row';
    tr.append(
      key,
      el('td', 'num', fmtMs(f.age_ms)),
      el('td', 'num', known(f.leader_pid) ? String(f.leader_pid) : DASH),
      el('td', '', f.followers ? 'yes' : 'no'),
    );
    return tr;
  }), 'No request is in flight.');
}

// Removes every number from the page (log out, a refused token), so nothing
// of the previous session stays on screen or in the DOM.
function clearDashboard() {
  for (const dd of document.querySelectorAll('#dashboard .card dd')) dd.textContent = dd.classList.contains('value') ? DASH : '';
  for (const id of ['models-table', 'upstreams-table', 'clients-table', 'budgets-table', 'inflight-table', 'cluster-table']) {
    $(id).tBodies[0].replaceChildren();
  }
  $('unpriced-note').hidden = true;
  $('unpriced-note').replaceChildren();
  $('health-reasons').replaceChildren();
  $('inflight-count').textContent = '';
  setText('health-status', DASH);
  for (const id of ['store-entries', 'store-bytes', 'store-evictions', 'store-expired', 'updated']) setText(id, id === 'updated' ? '' : DASH);
  for (const id of ['store-entries-meter', 'store-bytes-meter']) $(id).hidden = true;
  $('budgets').hidden = true;
  $('cluster').hidden = true;
  for (const id of ['cluster-role', 'cluster-master', 'cluster-lag']) setText(id, DASH);
  setMessage($('status'), '');
  state.chart?.clear();
  state.money?.clear();
  clearTokens();
}

// ------------------------------------------------------------------ start

function start() {
  setupTheme();
  state.chart = new BarChart($('traffic-chart'), TRAFFIC);
  state.money = new BarChart($('money-chart'), MONEY);
  initTokens({
    onUnauthorized(message) {
      setToken(null);
      showLogin(`Relay refused the admin token (${message}): it may have changed. Sign in again.`, 'error');
    },
    upstreams: () => (Array.isArray(state.stats?.upstreams) ? state.stats.upstreams.map((u) => String(u.name)) : []),
  });
  window.addEventListener('hashchange', () => {
    const view = viewOf(location.hash);
    if (view && !$('dashboard').hidden) showView(view, { focus: true });
  });
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', logout);
  for (const radio of document.querySelectorAll('#range input[name="range"]')) {
    radio.addEventListener('change', () => {
      if (!radio.checked) return;
      state.range = radio.value;
      if (state.stats) renderChart();
    });
  }
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && getToken() && !$('dashboard').hidden) schedulePoll(0);
  });
  if (getToken()) {
    // Signed in earlier in this tab: show the page and fetch at once; a
    // refused token sends the user to the login form.
    showDashboard();
    setMessage($('status'), 'Loading…', 'info');
    schedulePoll(0);
  } else {
    showLogin();
  }
}

start();
