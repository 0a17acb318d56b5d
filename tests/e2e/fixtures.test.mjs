// Per-provider wire fixtures: for each case in tests/fixtures/providers/*.json,
// a client request goes through Caddy and Relay to the fake upstream, which
// answers with the case's canned reply (recorded in the provider's real wire
// format). The test checks, byte for byte:
//
//   request  -> upstream   the exact request Relay sent: method, path, query,
//                          headers that must be there (exact values) and must
//                          not (hop-by-hop, X-Relay-*, a credential moved to
//                          another place), and the body: the client's bytes
//   reply    -> client     status, headers (X-Cache, content-type, ...) and
//                          the exact body the client received
//   then                   follow-up requests: the same request again (a HIT,
//                          byte-identical, with Age), the other form (stream
//                          after non-stream and the reverse, rendered by Relay
//                          in the provider's format: the exact expected bytes
//                          are in the fixture), or a repeat after an upstream
//                          error (which must call upstream again)
//
// Fixture format (one JSON file per wire format, each a list of cases):
//
//   {
//     "name": "unique within the file",
//     "upstreams": [...],        harness option (default: only [upstream.openai])
//     "ini": {...},              harness option (default: none)
//     "request": {
//       "method": "POST", "path": "/v1/x?query",
//       "headers": {"name": "value"},
//       "body": {...} (sent as JSON.stringify of it) | "exact string"
//     },
//     "upstream": {              the request Relay must send (null: none)
//       "method", "path", "query" (raw, without "?"; "" for none),
//       "headers": {"name": "exact value" | {"re": "regexp"}},
//       "absent": ["header", ...],
//       "body": {"same": "request"} | "exact string"
//     },
//     "reply": {                 the fake's canned answer, sent verbatim
//       "status": 200, "headers": {"content-type": "..."},
//       "body": "exact string" | ["pieces", "joined", "as is"]
//     },
//     "client": {                what the client must receive
//       "status": 200,
//       "headers": {"name": "exact" | {"re": "regexp"} | {"same": "first"}},
//       "absent": ["header", ...],
//       "body": "exact" | ["pieces"] | {"same": "reply"} | {"same": "first"}
//     },
//     "then": [                  follow-ups, in order, on the same relay
//       {"name": "...", "request": {overrides: method, path, body; headers
//        merged, a null value removes one}, "upstream": null | {...},
//        "reply": {...} (only with an upstream), "client": {...}}
//     ]
//   }
//
// {"same": "first"} is the value the case's first response had; "reply" is
// the body of the reply of the same step. Whatever a case lists, every
// upstream request is also checked to carry none of ALWAYS_ABSENT.
//
// Cases are grouped by their harness options (upstreams, ini): one relay per
// group, cases in file order. Each case must carry a marker of its own in its
// request body (any text unique in the whole set, e.g. "fx-openai-chat-1"),
// so no two cases share a cache entry; the runner checks that no two cases
// send the same first request body.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { relaySuite, REPO, TEST_TIMEOUT } from './harness.mjs';

const DIR = path.join(REPO, 'tests', 'fixtures', 'providers');
// Every wire format has its file; a missing one is a failure, not a skip.
const REQUIRED = ['openai.json', 'azure.json', 'anthropic.json', 'gemini.json', 'ollama.json', 'openai-compatible.json'];

// Never forwarded upstream, whatever the client sent: hop-by-hop headers,
// what the front (Caddy) adds, Relay's own controls, and what only concerns
// the client's connection to Relay.
const ALWAYS_ABSENT = [
  'x-relay-cache', 'x-relay-ttl', 'x-relay-namespace', 'cache-control', 'cookie',
  'proxy-authorization', 'proxy-connection', 'keep-alive', 'te', 'trailer', 'upgrade',
  'forwarded', 'via', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip',
  'accept-encoding',
];

const T = { timeout: TEST_TIMEOUT };

// FIXTURES_DUMP=FILE appends what each step got (one JSON line per step),
// an aid for writing a new case: check every byte by hand before using it.
const DUMP = process.env.FIXTURES_DUMP;

// ---- loading -------------------------------------------------------------

function loadCases() {
  const files = fs.existsSync(DIR) ? fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort() : [];
  const missing = REQUIRED.filter((f) => !files.includes(f));
  const cases = [];
  const problems = missing.map((f) => `${path.join(DIR, f)} is missing`);
  for (const file of files) {
    let list;
    try {
      list = JSON.parse(fs.readFileSync(path.join(DIR, file), 'utf8'));
    } catch (err) {
      problems.push(`${file}: not valid JSON: ${err.message}`);
      continue;
    }
    if (!Array.isArray(list) || list.length === 0) {
      problems.push(`${file}: must be a non-empty list of cases`);
      continue;
    }
    const names = new Set();
    for (const [i, c] of list.entries()) {
      const where = `${file} case ${i} (${c?.name ?? 'no name'})`;
      const why = validateCase(c);
      if (why) problems.push(`${where}: ${why}`);
      else if (names.has(c.name)) problems.push(`${where}: duplicate name`);
      else {
        names.add(c.name);
        cases.push({ ...c, file });
      }
    }
  }
  // No two cases may share their first request (they would share a cache
  // entry): each carries its own marker.
  const seen = new Map();
  for (const c of cases) {
    const k = `${optionsKey(c)}\n${c.request.path}\n${requestBody(c.request)}`;
    if (seen.has(k)) problems.push(`${c.file} "${c.name}": same request as "${seen.get(k)}" (give it its own marker)`);
    else seen.set(k, c.name);
  }
  return { cases, problems };
}

function validateStep(s, first) {
  if (typeof s !== 'object' || s === null) return 'not an object';
  if (first && typeof s.name !== 'string') return 'no name';
  if (first) {
    const r = s.request;
    if (!r || typeof r.method !== 'string' || typeof r.path !== 'string' || r.body === undefined) {
      return 'request needs method, path and body';
    }
  }
  if (!('upstream' in s)) return 'no upstream (null when none is expected)';
  if (s.upstream !== null) {
    const u = s.upstream;
    for (const k of ['method', 'path', 'query', 'headers', 'body']) {
      if (!(k in u)) return `upstream.${k} missing`;
    }
    if (!s.reply || typeof s.reply.status !== 'number' || s.reply.body === undefined) {
      return 'an expected upstream call needs a reply with status and body';
    }
  } else if (s.reply) {
    return 'a reply without an upstream call';
  }
  if (!s.client || typeof s.client.status !== 'number' || s.client.body === undefined) {
    return 'client needs status and body';
  }
  return null;
}

function validateCase(c) {
  const why = validateStep(c, true);
  if (why) return why;
  for (const [i, t] of (c.then ?? []).entries()) {
    const w = validateStep(t, false);
    if (w) return `then[${i}]: ${w}`;
    if (typeof t.name !== 'string') return `then[${i}]: no name`;
  }
  return null;
}

const optionsKey = (c) => JSON.stringify({ upstreams: c.upstreams ?? [], ini: c.ini ?? {} });

// ---- values --------------------------------------------------------------

const joined = (v) => (Array.isArray(v) ? v.join('') : v);

function requestBody(r) {
  return typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
}

// The request of a follow-up: the case's request with the step's overrides.
function stepRequest(base, over = {}) {
  const headers = { ...base.headers };
  for (const [k, v] of Object.entries(over.headers ?? {})) {
    if (v === null) delete headers[k];
    else headers[k] = v;
  }
  return {
    method: over.method ?? base.method,
    path: over.path ?? base.path,
    headers,
    body: over.body ?? base.body,
  };
}

// A body's structure, for a readable diff: a JSON document, or its events
// (SSE) or lines (NDJSON) with their JSON parsed. null when it has none.
function structure(text) {
  const tryJson = (s) => {
    try {
      return { json: JSON.parse(s) };
    } catch {
      return null;
    }
  };
  const whole = tryJson(text);
  if (whole) return whole.json;
  if (/^(data|event|:)/m.test(text)) {
    return text.replace(/\r\n/g, '\n').split(/\n\n/).filter((b) => b.trim()).map((block) => {
      const ev = {};
      for (const line of block.split('\n')) {
        const i = line.indexOf(':');
        const name = i < 0 ? line : line.slice(0, i);
        const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        const parsed = name === 'data' ? tryJson(value) : null;
        ev[name] = parsed ? parsed.json : value;
      }
      return ev;
    });
  }
  const lines = text.split('\n').filter((l) => l.trim());
  const parsed = lines.map(tryJson);
  return parsed.every(Boolean) ? parsed.map((p) => p.json) : null;
}

// The body as lines (each with its line end), so a diff points at a line.
const lines = (text) => text.split(/(?<=\n)/);

// Compares got with want (a header value spec); returns the value to put on
// the "want" side of the diff: got itself when it matches.
function expectHeader(got, spec, first) {
  if (spec && typeof spec === 'object') {
    if ('re' in spec) return got !== undefined && new RegExp(spec.re).test(got) ? got : `(matching /${spec.re}/)`;
    if (spec.same === 'first') return first ?? '(the first response had none)';
    throw new Error(`bad header spec ${JSON.stringify(spec)}`);
  }
  return spec;
}

// Asserts that got (a {status, headers: lower-case object, body}) is what
// want describes; one deepStrictEqual so every difference shows at once.
function assertMatches(label, got, want, ctx) {
  const gotView = { status: got.status, headers: {}, absent: {}, body: lines(got.body) };
  const wantView = { status: want.status, headers: {}, absent: {}, body: lines(want.body) };
  for (const [name, spec] of Object.entries(want.headers ?? {})) {
    const n = name.toLowerCase();
    gotView.headers[n] = got.headers[n];
    wantView.headers[n] = expectHeader(got.headers[n], spec, ctx.firstHeaders?.[n]);
  }
  for (const name of want.absent ?? []) {
    const n = name.toLowerCase();
    gotView.absent[n] = got.headers[n];
    wantView.absent[n] = undefined;
  }
  if (got.body !== want.body) {
    const a = structure(got.body);
    const b = structure(want.body);
    if (a !== null && b !== null) {
      gotView.parsed = a;
      wantView.parsed = b;
    }
  }
  assert.deepStrictEqual(gotView, wantView, `${label}: got (actual) differs from the fixture (expected)`);
}

const headersObject = (h) => Object.fromEntries([...h.entries()].map(([k, v]) => [k.toLowerCase(), v]));

// ---- running -------------------------------------------------------------

// Runs one step: enqueues its reply, sends its request, checks the upstream
// call (or that there was none) and the client's answer. Returns the
// client's answer.
async function runStep(relay, label, req, step, ctx) {
  const fake = relay.fake;
  const reqBody = requestBody(req);
  let replyBody = null;
  if (step.upstream) {
    replyBody = joined(step.reply.body);
    // The fake matches a behaviour on the path it sees; for Azure paths
    // that is the OpenAI path it answers as.
    const azure = /^\/openai\/(?:deployments\/[^/]+|v1)(\/.*)$/.exec(step.upstream.path);
    fake.enqueue({
      path: azure ? `/v1${azure[1]}` : step.upstream.path,
      status: step.reply.status,
      body: replyBody,
      headers: step.reply.headers ?? {},
    });
  }
  const before = fake.calls.length;
  const res = await relay.fetch(req.path, {
    method: req.method,
    headers: req.headers ?? {},
    body: req.method === 'GET' || req.method === 'HEAD' ? undefined : reqBody,
  }, { stream: true });
  const body = Buffer.from(await res.arrayBuffer()).toString('utf8');
  const got = { status: res.status, headers: headersObject(res.headers), body };
  const calls = fake.calls.slice(before);
  if (DUMP) fs.appendFileSync(DUMP, `${JSON.stringify({ label, status: got.status, headers: got.headers, body, upstream: calls.map((c) => ({ method: c.method, path: c.azurePath ?? c.path, query: c.query, headers: c.headers, body: c.body })) })}\n`);

  // The upstream side.
  if (!step.upstream) {
    assert.deepStrictEqual(
      calls.map((c) => `${c.method} ${c.azurePath ?? c.path}${c.query ? `?${c.query}` : ''}`),
      [],
      `${label}: expected no upstream call (answered from the cache); client got ${got.status} x-cache=${got.headers['x-cache']}:\n${body.slice(0, 600)}`,
    );
  } else {
    assert.equal(calls.length, 1, `${label}: expected exactly one upstream call, got ${calls.length}; client got ${got.status} x-cache=${got.headers['x-cache']}:\n${body.slice(0, 600)}`);
    assert.equal(fake.pending(), 0, `${label}: the canned reply was not taken (the call went to ${calls[0].path})`);
    const call = calls[0];
    const u = step.upstream;
    const wantBody = u.body && typeof u.body === 'object' && u.body.same === 'request' ? reqBody : joined(u.body);
    const gotView = {
      method: call.method, path: call.azurePath ?? call.path, query: call.query, headers: {}, absent: {}, body: lines(call.body),
    };
    const wantView = { method: u.method, path: u.path, query: u.query, headers: {}, absent: {}, body: lines(wantBody) };
    for (const [name, spec] of Object.entries(u.headers ?? {})) {
      const n = name.toLowerCase();
      gotView.headers[n] = call.headers[n];
      wantView.headers[n] = expectHeader(call.headers[n], spec);
    }
    for (const name of new Set([...(u.absent ?? []), ...ALWAYS_ABSENT])) {
      const n = name.toLowerCase();
      gotView.absent[n] = call.headers[n];
      wantView.absent[n] = undefined;
    }
    for (const n of Object.keys(call.headers)) {
      if (n.startsWith('x-relay-')) {
        gotView.absent[n] = call.headers[n];
        wantView.absent[n] = undefined;
      }
    }
    assert.deepStrictEqual(gotView, wantView, `${label}: the upstream request (actual) differs from the fixture (expected)`);
  }

  // The client side.
  let wantBody = step.client.body;
  if (wantBody && typeof wantBody === 'object' && !Array.isArray(wantBody)) {
    if (wantBody.same === 'reply') {
      assert.ok(replyBody !== null, `${label}: client.body {"same":"reply"} in a step without a reply`);
      wantBody = replyBody;
    } else if (wantBody.same === 'first') {
      wantBody = ctx.firstBody;
    } else {
      throw new Error(`${label}: bad client.body ${JSON.stringify(wantBody)}`);
    }
  } else {
    wantBody = joined(wantBody);
  }
  assertMatches(`${label}: the client's answer`, got, { ...step.client, body: wantBody }, ctx);
  return got;
}

const { cases, problems } = loadCases();

test('the provider fixtures are complete and well-formed', () => {
  assert.deepStrictEqual(problems, []);
  for (const f of REQUIRED) {
    assert.ok(cases.some((c) => c.file === f), `${f} has no usable case`);
  }
});

const groups = new Map();
for (const c of cases) {
  const k = optionsKey(c);
  if (!groups.has(k)) groups.set(k, []);
  groups.get(k).push(c);
}

for (const [, group] of groups) {
  const files = [...new Set(group.map((c) => c.file))].join(', ');
  const { upstreams, ini } = group[0];
  const options = {};
  if (upstreams) options.upstreams = upstreams;
  if (ini) options.ini = ini;
  const what = upstreams ? upstreams.map((u) => (typeof u === 'string' ? u : `${u.name}:${u.type}${u.mount ? ` at ${u.mount}` : ''}`)).join(', ') : 'openai';
  relaySuite(`fixtures ${files} (upstreams: ${what})`, options, (relay) => {
    for (const c of group) {
      test(`${c.file}: ${c.name}`, T, async () => {
        relay.fake.reset();
        const label = `${c.file} "${c.name}"`;
        const ctx = {};
        const first = await runStep(relay, label, c.request, c, ctx);
        ctx.firstBody = first.body;
        ctx.firstHeaders = first.headers;
        for (const t of c.then ?? []) {
          await runStep(relay, `${label} then "${t.name}"`, stepRequest(c.request, t.request), t, ctx);
        }
      });
    }
  });
}
