// The dashboard's token page: Relay client tokens from api/tokens (the admin
// API of engine/admin_tokens.c, the same code as relay-admin token), listed
// with their lists, budgets, limits and dates, and created, changed, rotated
// and revoked from dialogs.
//
//   initTokens({ onUnauthorized, upstreams });  // once, at start
//   showTokens();   // the view is shown: (re)load the list
//   clearTokens();  // sign-out or a refused admin token: nothing stays
//
// onUnauthorized(message) is called when Relay refuses the admin token
// (401); upstreams() names the [upstream.NAME]s the stats API listed, as a
// hint in the form (may be empty).
//
// A token's text arrives twice only, in the answers to create and rotate.
// It is shown in the secret dialog until the user dismisses it, and then
// removed: no variable, element, attribute, storage or URL keeps it. An
// answer that arrives after clearTokens() (the user left) is dropped, text
// and all. Everything the API says is written as text, never as HTML.

import { ApiError, Unauthorized, request } from './api.js';
import { $, el, setMessage } from './dom.js';
import { DASH, fmtInt, fmtUtc, known } from './format.js';

const API = 'api/tokens'; // relative: the page is served at /relay/admin/

// The form's fields, by the API's names (each input is #tf-FIELD), and how
// a field's text becomes a JSON value. Empty means none: no budget, no
// limit, no expiry, every upstream or model.
const FIELDS = {
  name: 'text',
  upstreams: 'list',
  models: 'list',
  budget_usd_day: 'usd',
  budget_usd_month: 'usd',
  budget_tokens_day: 'count',
  rpm: 'count',
  tpm: 'count',
  expires: 'time',
};

const listItems = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

// The field's text in the form, comparable with another (lists without
// their spacing).
function normal(kind, text) {
  return kind === 'list' ? listItems(text).join(',') : text.trim();
}

// The JSON value of a field's text, as admin_tokens.c reads it: USD as the
// exact string typed (never through a float), counts as text too (grouping
// commas dropped), lists as arrays, null for an empty field.
function bodyValue(kind, text) {
  const t = text.trim();
  if (kind === 'list') return listItems(t);
  if (kind === 'text') return t;
  if (!t) return null;
  if (kind === 'usd') return t.replace(/^\$\s*/, '');
  if (kind === 'count') return t.replace(/[,\s_]/g, '');
  return t;
}

// Unix seconds as the API takes a time back: 2026-12-31T18:00:00Z.
const isoUtc = (t) => new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

// A token's field as the form shows it.
function formText(t, field) {
  const v = t[field];
  switch (FIELDS[field]) {
    case 'list': return Array.isArray(v) ? v.join(', ') : '';
    case 'time': return known(v) ? isoUtc(v) : '';
    case 'count': return known(v) ? String(v) : '';
    default: return typeof v === 'string' ? v : '';
  }
}

// The field an API message is about ("budget_usd_day: 0 would allow
// nothing", "the name \"ci\" is taken"), or null.
function fieldOf(message) {
  const m = /^([a-z_]+)\b/.exec(message);
  if (m && m[1] in FIELDS) return m[1];
  return /\bname\b/.test(message) ? 'name' : null;
}

const state = {
  opts: null,
  // Bumped by clearTokens: an answer for an earlier generation is dropped.
  generation: 0,
  tokens: new Map(), // id -> the token as last listed
  form: null, // {mode: 'create' | 'edit', token, opener}
  target: null, // the token of the rotate or revoke dialog, and its opener
  busy: false,
  secretReturn: null, // what gets the focus when the secret dialog closes
  loaded: false,
};

// ------------------------------------------------------------ the list

// "$2.00 a day", "5,000 tokens a minute": a cell of lines, or muted `none`.
function linesCell(lines, none) {
  const td = el('td', 'lines');
  const shown = lines.filter(Boolean);
  if (!shown.length) td.append(el('div', 'muted', none));
  else td.append(...shown.map((line) => el('div', '', line)));
  return td;
}

function listCell(items, all) {
  return Array.isArray(items) && items.length
    ? linesCell(items.map(String), all)
    : linesCell([], all);
}

const STATE_KIND = { live: 'good', expired: 'warn', revoked: 'bad' };

function stateCell(t) {
  const td = el('td', 'lines');
  const badge = el('div');
  badge.append(el('span', `badge ${STATE_KIND[t.state] ?? 'warn'}`, String(t.state ?? DASH)));
  td.append(badge);
  if (known(t.revoked)) td.append(el('div', 'muted', `since ${fmtUtc(t.revoked)}`));
  if (known(t.grace_until) && t.state !== 'revoked') {
    td.append(el('div', 'muted', `previous text until ${fmtUtc(t.grace_until)}`));
  }
  return td;
}

// A row's action button: "Edit" with the token's name for screen readers
// ("Edit ci-agent"), found again after a refresh by data-id and data-action.
function actionButton(t, action, label, cls = '') {
  const b = el('button', `btn small ${cls}`.trim(), label);
  b.type = 'button';
  b.dataset.id = t.id;
  b.dataset.action = action;
  b.append(el('span', 'visually-hidden', ` ${t.name}`));
  return b;
}

function tokenRow(t) {
  const tr = el('tr');
  if (t.state === 'revoked') tr.className = 'revoked';
  const name = el('th', 'name');
  name.scope = 'row';
  name.append(el('span', 'ident token-name', t.name ?? DASH), el('span', 'sub-id ident', `id ${t.id ?? DASH}`));
  const usd = (v, per) => (typeof v === 'string' ? `$${v} ${per}` : null);
  const count = (v, what) => (known(v) ? `${fmtInt(v)} ${what}` : null);
  const actions = el('td', 'row-actions');
  if (t.state !== 'revoked') {
    actions.append(
      actionButton(t, 'edit', 'Edit'),
      actionButton(t, 'rotate', 'Rotate'),
      actionButton(t, 'revoke', 'Revoke', 'danger'),
    );
  } else {
    actions.append(el('span', 'muted', DASH));
  }
  tr.append(
    name,
    stateCell(t),
    listCell(t.upstreams, 'every upstream'),
    listCell(t.models, 'every model'),
    linesCell([usd(t.budget_usd_day, 'a day'), usd(t.budget_usd_month, 'a month'),
      count(t.budget_tokens_day, 'tokens a day')], 'none'),
    linesCell([count(t.rpm, 'requests a minute'), count(t.tpm, 'tokens a minute')], 'none'),
    el('td', '', fmtUtc(t.created)),
    el('td', '', known(t.expires) ? fmtUtc(t.expires) : 'never'),
    actions,
  );
  return tr;
}

// Which row button has the focus, to give it back after the rows are
// replaced.
function focusedAction() {
  const a = document.activeElement;
  return a?.closest?.('#tokens-table') && a.dataset.action ? { id: a.dataset.id, action: a.dataset.action } : null;
}

function focusAction(id, action) {
  const b = document.querySelector(`#tokens-table button[data-id="${CSS.escape(id)}"][data-action="${CSS.escape(action)}"]`);
  b?.focus();
  return Boolean(b);
}

function render(list) {
  const tokens = Array.isArray(list?.tokens) ? list.tokens : [];
  const focused = focusedAction();
  state.tokens = new Map(tokens.map((t) => [t.id, t]));
  const tbody = $('tokens-table').tBodies[0];
  if (tokens.length) {
    tbody.replaceChildren(...tokens.map(tokenRow));
  } else {
    const tr = el('tr', 'empty');
    const td = el('td', '', 'No client token yet. Create one to give an app or an agent a key that is limited, revocable and never the provider\'s.');
    td.colSpan = $('tokens-table').tHead.rows[0].cells.length;
    tr.append(td);
    tbody.replaceChildren(tr);
  }
  const damaged = known(list?.damaged) ? list.damaged : 0;
  $('tokens-damaged').hidden = damaged === 0;
  $('tokens-damaged').textContent = damaged
    ? `${fmtInt(damaged)} token record${damaged === 1 ? ' does' : 's do'} not decode: relay-admin verify names them.`
    : '';
  if (focused && !focusAction(focused.id, focused.action)) $('tokens-title').focus();
}

// What went wrong, as one sentence for the person; or null when Relay
// refused the admin token, which sends the user to the login form instead.
function failure(err) {
  if (err instanceof Unauthorized) {
    state.opts.onUnauthorized(err.message);
    return null;
  }
  if (err instanceof ApiError && err.status && err.detail) return err.detail;
  return err?.message || String(err);
}

async function load() {
  const generation = state.generation;
  if (!state.loaded) {
    const tbody = $('tokens-table').tBodies[0];
    const tr = el('tr', 'empty');
    const td = el('td', '', 'Loading…');
    td.colSpan = $('tokens-table').tHead.rows[0].cells.length;
    tr.append(td);
    tbody.replaceChildren(tr);
  }
  try {
    const list = await request(API);
    if (generation !== state.generation) return;
    state.loaded = true;
    render(list);
    if ($('tokens-status').dataset.kind === 'error') setMessage($('tokens-status'), '');
  } catch (err) {
    if (generation !== state.generation) return;
    const why = failure(err);
    if (why !== null) setMessage($('tokens-status'), `Could not read the tokens: ${why}`, 'error');
  }
}

// ------------------------------------------------------------- dialogs

function openDialog(d, focus) {
  if (!d.open) d.showModal();
  focus?.focus();
}

function closeDialog(d) {
  if (d.open) d.close();
}

// The error line under a form field (made the first time, and named in
// the field's aria-describedby, so a screen reader reads it with the field).
function errorLine(input) {
  let line = $(`${input.id}-error`);
  if (!line) {
    line = el('p', 'field-error');
    line.id = `${input.id}-error`;
    line.hidden = true;
    input.after(line);
    const described = input.getAttribute('aria-describedby');
    input.setAttribute('aria-describedby', described ? `${line.id} ${described}` : line.id);
  }
  return line;
}

// Marks the input of field (or none) as the one why is about, shows why
// under it and gives it the focus.
function markInvalid(field, why = '') {
  for (const input of document.querySelectorAll('#token-form [data-field]')) {
    const bad = input.dataset.field === field;
    if (bad) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    if (bad || $(`${input.id}-error`)) {
      const line = errorLine(input);
      line.textContent = bad ? why : '';
      line.hidden = !bad;
    }
  }
  if (field) $(`tf-${field}`).focus();
}

function setBusy(busy, ...buttons) {
  state.busy = busy;
  for (const b of buttons) b.disabled = busy;
}

function upstreamHint() {
  const names = state.opts.upstreams();
  const base = '[upstream.NAME] sections of relay.ini, comma-separated; empty: every upstream.';
  $('tf-upstreams-help').textContent = names.length ? `${base} This Relay has: ${names.join(', ')}.` : base;
}

function openForm(mode, token, opener) {
  state.form = { mode, token, opener };
  $('token-form').reset();
  for (const field of Object.keys(FIELDS)) $(`tf-${field}`).value = token ? formText(token, field) : '';
  markInvalid(null);
  setMessage($('token-form-message'), '');
  upstreamHint();
  $('token-dialog-title').textContent = mode === 'create' ? 'New client token' : `Edit ${token.name}`;
  $('token-submit').textContent = mode === 'create' ? 'Create token' : 'Save changes';
  openDialog($('token-dialog'), $('tf-name'));
}

// The body of a create (the fields given) or of an update (the fields
// changed); null when an update changes nothing.
function formBody(mode, token) {
  const body = {};
  for (const [field, kind] of Object.entries(FIELDS)) {
    const text = $(`tf-${field}`).value;
    if (mode === 'create' && !normal(kind, text)) continue;
    if (mode === 'edit' && normal(kind, text) === normal(kind, formText(token, field))) continue;
    body[field] = bodyValue(kind, text);
  }
  return Object.keys(body).length ? body : null;
}

async function submitForm(e) {
  e.preventDefault();
  if (state.busy || !state.form) return;
  const { mode, token, opener } = state.form;
  const message = $('token-form-message');
  if (!$('tf-name').value.trim()) {
    setMessage(message, 'Give the token a name.', 'error');
    markInvalid('name', 'A token needs a name.');
    return;
  }
  const body = formBody(mode, token);
  if (!body) {
    setMessage(message, 'Nothing changed.', 'info');
    return;
  }
  markInvalid(null);
  setMessage(message, mode === 'create' ? 'Creating the token…' : 'Saving…', 'info');
  setBusy(true, $('token-submit'));
  const generation = state.generation;
  try {
    const path = mode === 'create' ? API : `${API}/${encodeURIComponent(token.id)}`;
    const t = await request(path, { method: mode === 'create' ? 'POST' : 'PATCH', body });
    if (generation !== state.generation) return;
    state.form = null;
    closeDialog($('token-dialog'));
    if (mode === 'create') {
      const text = t.token;
      delete t.token;
      showSecret(text, `Token for ${t.name}`,
        'Give it to the client as its API key (OPENAI_API_KEY, ANTHROPIC_API_KEY, …) with Relay\'s address as the base URL.',
        () => opener?.focus());
      setMessage($('tokens-status'), `Created ${t.name} (id ${t.id}).`, 'info');
    } else {
      setMessage($('tokens-status'), `Saved ${t.name}.`, 'info');
      focusAction(t.id, 'edit') || opener?.focus();
    }
    await load();
  } catch (err) {
    if (generation !== state.generation) return;
    const why = failure(err);
    if (why === null) return;
    setMessage(message, `${mode === 'create' ? 'Not created' : 'Not saved'}: ${why}`, 'error');
    markInvalid(fieldOf(why), why);
  } finally {
    if (generation === state.generation) setBusy(false, $('token-submit'));
  }
}

function cancelForm() {
  if (state.busy) return;
  closeDialog($('token-dialog'));
}

// ------------------------------------------------------------ the secret

// Shows a token's text once; returnFocus() runs when it is dismissed.
function showSecret(text, title, note, returnFocus) {
  $('secret-title').textContent = title;
  $('secret-text').value = text;
  $('secret-note').textContent = note;
  setMessage($('secret-status'), '');
  state.secretReturn = returnFocus;
  openDialog($('secret-dialog'), $('secret-copy'));
}

// Empties the secret dialog (on close, whatever closed it).
function wipeSecret() {
  $('secret-text').value = '';
  $('secret-note').textContent = '';
  setMessage($('secret-status'), '');
  window.getSelection?.()?.removeAllRanges();
  const back = state.secretReturn;
  state.secretReturn = null;
  back?.();
}

async function copySecret() {
  const input = $('secret-text');
  if (!input.value) return;
  let copied = false;
  try {
    await navigator.clipboard.writeText(input.value);
    copied = true;
  } catch {
    // No clipboard API (a page not served over https or from localhost) or
    // refused: the older command, on the selected text.
    input.focus();
    input.select();
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
  }
  setMessage($('secret-status'), copied
    ? 'Copied to the clipboard.'
    : 'The browser refused to copy: the text is selected, press Ctrl+C (⌘C on a Mac).', copied ? 'info' : 'error');
}

// ------------------------------------------------------ rotate, revoke

function openRotate(t, opener) {
  state.target = { token: t, opener };
  $('rotate-form').reset();
  $('rotate-title').textContent = `Rotate ${t.name}`;
  setMessage($('rotate-message'), '');
  openDialog($('rotate-dialog'), $('rotate-grace'));
}

function openRevoke(t, opener) {
  state.target = { token: t, opener };
  $('revoke-title').textContent = `Revoke ${t.name}?`;
  setMessage($('revoke-message'), '');
  // The safe choice first: Enter on a dialog opened by mistake revokes nothing.
  openDialog($('revoke-dialog'), $('revoke-cancel'));
}

// Runs a rotate or revoke of the target token; done(t) with its answer.
async function act(dialog, message, button, method, path, body, done) {
  if (state.busy || !state.target) return;
  const { token } = state.target;
  const generation = state.generation;
  setBusy(true, button);
  setMessage($(message), 'Working…', 'info');
  try {
    const t = await request(`${API}/${encodeURIComponent(token.id)}${path}`, { method, body });
    if (generation !== state.generation) return;
    state.target = null;
    closeDialog(dialog);
    done(t);
    await load();
  } catch (err) {
    if (generation !== state.generation) return;
    const why = failure(err);
    if (why !== null) setMessage($(message), why, 'error');
  } finally {
    if (generation === state.generation) setBusy(false, button);
  }
}

function submitRotate(e) {
  e.preventDefault();
  const grace = $('rotate-grace').value;
  const opener = state.target?.opener;
  act($('rotate-dialog'), 'rotate-message', $('rotate-submit'), 'POST', '/rotate',
    grace ? { grace } : undefined, (t) => {
      const text = t.token;
      delete t.token;
      const note = known(t.grace_until)
        ? `The previous text keeps working until ${fmtUtc(t.grace_until)}; then only this one does.`
        : 'The previous text stopped working.';
      showSecret(text, `New token for ${t.name}`, note, () => focusAction(t.id, 'rotate') || opener?.focus());
      setMessage($('tokens-status'), `Rotated ${t.name}.`, 'info');
    });
}

function confirmRevoke() {
  act($('revoke-dialog'), 'revoke-message', $('revoke-confirm'), 'DELETE', '', undefined, (t) => {
    setMessage($('tokens-status'), `Revoked ${t.name}: it is refused from now on.`, 'info');
    $('tokens-title').focus();
  });
}

// ----------------------------------------------------------------- API

export function showTokens() {
  load();
}

export function clearTokens() {
  state.generation++;
  state.busy = false;
  state.form = null;
  state.target = null;
  state.secretReturn = null;
  state.loaded = false;
  state.tokens = new Map();
  for (const id of ['token-dialog', 'secret-dialog', 'rotate-dialog', 'revoke-dialog']) closeDialog($(id));
  wipeSecret();
  $('token-form').reset();
  for (const b of ['token-submit', 'rotate-submit', 'revoke-confirm']) $(b).disabled = false;
  $('tokens-table').tBodies[0].replaceChildren();
  $('tokens-damaged').hidden = true;
  setMessage($('tokens-status'), '');
}

export function initTokens(opts) {
  state.opts = opts;
  $('token-new').addEventListener('click', (e) => openForm('create', null, e.currentTarget));
  $('tokens-refresh').addEventListener('click', () => {
    setMessage($('tokens-status'), '');
    load();
  });
  $('tokens-table').tBodies[0].addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    const t = b && state.tokens.get(b.dataset.id);
    if (!t) return;
    if (b.dataset.action === 'edit') openForm('edit', t, b);
    else if (b.dataset.action === 'rotate') openRotate(t, b);
    else if (b.dataset.action === 'revoke') openRevoke(t, b);
  });

  $('token-form').addEventListener('submit', submitForm);
  $('token-cancel').addEventListener('click', cancelForm);
  $('rotate-form').addEventListener('submit', submitRotate);
  $('rotate-cancel').addEventListener('click', () => !state.busy && closeDialog($('rotate-dialog')));
  $('revoke-confirm').addEventListener('click', confirmRevoke);
  $('revoke-cancel').addEventListener('click', () => !state.busy && closeDialog($('revoke-dialog')));
  $('secret-copy').addEventListener('click', copySecret);
  // Emptied at once (the close event comes a task later).
  $('secret-done').addEventListener('click', () => {
    closeDialog($('secret-dialog'));
    wipeSecret();
  });

  // Escape: a dialog waiting for Relay's answer stays (the answer may hold
  // a new token's text); the secret closes only by its button, so that a
  // stray key does not lose a text that is never shown again.
  for (const id of ['token-dialog', 'rotate-dialog', 'revoke-dialog']) {
    $(id).addEventListener('cancel', (e) => {
      if (state.busy) e.preventDefault();
    });
  }
  $('secret-dialog').addEventListener('cancel', (e) => e.preventDefault());
  $('secret-dialog').addEventListener('close', wipeSecret);

  // Focus back where the user was when a dialog is dismissed.
  $('token-dialog').addEventListener('close', () => {
    if (state.form) state.form.opener?.focus();
    state.form = null;
  });
  for (const id of ['rotate-dialog', 'revoke-dialog']) {
    $(id).addEventListener('close', () => {
      if (state.target) state.target.opener?.focus();
      state.target = null;
    });
  }
}
