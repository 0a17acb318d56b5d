// A fake Ollama native API for Relay's tests, served by the fake upstream
// (upstream.mjs hands every /api/ request here, after taking the call's
// behaviour and handling `hang`, `headerDelayMs` and `status`).
//
//   POST /api/chat       {"model","message":{...},"done":true,...} or, by
//                        default, an application/x-ndjson stream of such lines
//   POST /api/generate   the same with "response" (and "context" at the end)
//   POST /api/embed      {"model","embeddings":[[...]],...}, never streamed
//   GET  /api/tags, GET /api/version
//
// Answers are deterministic from the request: "Echo: " + the last user
// message (chat) or the prompt (generate), unless the behaviour gives
// `content`. Ollama answers carry no id, so the call number goes into
// total_duration (1000000 + call number) on the body and the stream's final
// line: two answers with the same total_duration came from one upstream
// call, which is how a test tells a cache hit from a second call. (A
// fractional created_at would be fragile: it is a timestamp clients parse.)
//
// Behaviour fields used here (see upstream.mjs): chunks (content pieces,
// default 3), chunkDelayMs, cutAfter (stream: lines before the final
// done:true line; JSON: body bytes), cutMode, stallAfter, content, and
// toolCalls (true, or [{name, arguments}] with arguments an object or a JSON
// string) for a chat request that has `tools`.
//
// Like Ollama, a request with nothing to answer (a chat without messages, a
// generate without a prompt, an embed without input) is a "load the model"
// request, answered with one JSON object (done_reason "load", or "unload"
// with keep_alive 0) even when streaming was asked for.

import { embeddingOf, splitPieces } from './text.mjs';

const DEFAULT_MESSAGES = {
  400: 'The fake upstream was told to reject this request.',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'model "fake" not found, try pulling it first',
  429: 'too many requests',
  500: 'an error was encountered while running the model',
  502: 'bad gateway',
  503: 'server busy, please try again.  maximum pending requests exceeded',
};

// Ollama's error bodies: {"error": "text"}; the status carries the code.
export function ollamaError(status, message) {
  return { error: message ?? DEFAULT_MESSAGES[status] ?? `fake upstream error ${status}` };
}

const VERSION = '0.12.6';

const MODELS = [
  ['llama3.2:latest', 'llama', '3.2B', 'Q4_K_M', 2019393189],
  ['qwen3:8b', 'qwen3', '8.2B', 'Q4_K_M', 5225388164],
  ['all-minilm:latest', 'bert', '23M', 'F16', 45960996],
];

function tags() {
  return {
    models: MODELS.map(([name, family, parameterSize, quant, size], i) => ({
      name,
      model: name,
      modified_at: '2025-06-01T10:00:00.000000000Z',
      size,
      digest: `${(i + 1).toString(16).repeat(8)}${'0'.repeat(56)}`,
      details: {
        parent_model: '',
        format: 'gguf',
        family,
        families: [family],
        parameter_size: parameterSize,
        quantization_level: quant,
      },
    })),
  };
}

const countWords = (s) => (String(s).match(/\S+/g) ?? []).length;

// The text of a message's content (Ollama's is a string).
const contentText = (content) => (typeof content === 'string' ? content : '');

function lastUserText(messages) {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i] && messages[i].role === 'user') return contentText(messages[i].content);
  }
  return '';
}

// count near-equal slices of text; an empty text has none.
function split(text, count) {
  return text ? splitPieces(text, count) : [];
}

// Token ids for a generate answer's context: a stable hash per word, after
// the context the request brought (as Ollama's grows turn by turn).
function contextFor(previous, ...texts) {
  const ids = Array.isArray(previous) ? previous.filter(Number.isInteger) : [];
  for (const word of texts.join(' ').match(/\S+/g) ?? []) {
    let h = 2166136261;
    for (const ch of word) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
    ids.push(h % 128000);
  }
  return ids;
}


// The timings and counts of a final line; total_duration carries the call
// number (see the top of the file).
function metrics(callNo, promptCount, evalCount) {
  return {
    total_duration: 1000000 + callNo,
    load_duration: 1000,
    prompt_eval_count: promptCount,
    prompt_eval_duration: 2000,
    eval_count: evalCount,
    eval_duration: 3000,
  };
}

// The tool calls a chat answer makes: only when the request has tools and
// the behaviour asks for them.
function plannedToolCalls(req, beh, userText, callNo) {
  const tools = Array.isArray(req.tools) ? req.tools : [];
  if (!beh.toolCalls || !tools.length) return null;
  const calls = Array.isArray(beh.toolCalls)
    ? beh.toolCalls.map((t) => ({
        name: t.name,
        arguments: typeof t.arguments === 'string' ? JSON.parse(t.arguments) : (t.arguments ?? {}),
      }))
    : [{ name: tools[0]?.function?.name ?? 'lookup', arguments: { query: userText } }];
  return calls.map((t, i) => ({
    id: `call_fake${callNo}_${i}`,
    function: { index: i, name: t.name, arguments: t.arguments },
  }));
}

function parseBody(ctx) {
  const { res, call, sendJson, headers } = ctx;
  if (!call.body) {
    sendJson(res, 400, ollamaError(400, 'missing request body'), headers);
    return null;
  }
  let body;
  try {
    body = JSON.parse(call.body);
  } catch (err) {
    sendJson(res, 400, ollamaError(400, err.message), headers);
    return null;
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    sendJson(res, 400, ollamaError(400, 'json: cannot unmarshal request body into an object'), headers);
    return null;
  }
  if (typeof body.model !== 'string' || !body.model) {
    sendJson(res, 400, ollamaError(400, 'model is required'), headers);
    return null;
  }
  return body;
}

// A non-stream answer; beh.cutAfter sends that many bytes of it, having
// promised the whole length, then drops the connection.
function sendBody(ctx, obj) {
  const { res, beh, headers, sendJson } = ctx;
  const body = JSON.stringify(obj);
  if (beh.cutAfter !== undefined) {
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      ...headers,
    });
    res.write(body.slice(0, beh.cutAfter));
    setTimeout(() => res.destroy(), 20);
    return;
  }
  sendJson(res, 200, body, { 'content-type': 'application/json; charset=utf-8', ...headers });
}

// An NDJSON stream: lines (objects) one by one, the last being the final
// done:true line; cutAfter/stallAfter count the lines before it.
async function sendStream(ctx, lines) {
  const { res, beh, headers, sleep, gone, cut } = ctx;
  res.writeHead(200, { 'content-type': 'application/x-ndjson', ...headers });
  res.flushHeaders();
  const body = lines.slice(0, -1);
  for (let i = 0; i < body.length; i++) {
    if (i > 0 && beh.chunkDelayMs) await sleep(beh.chunkDelayMs);
    if (gone(res)) return;
    if (beh.cutAfter !== undefined && i >= beh.cutAfter) return cut(res, beh);
    if (beh.stallAfter !== undefined && i >= beh.stallAfter) return; // silent until closed
    res.write(`${JSON.stringify(body[i])}\n`);
  }
  if (body.length && beh.chunkDelayMs) await sleep(beh.chunkDelayMs);
  if (gone(res)) return;
  if (beh.cutAfter !== undefined && beh.cutAfter >= body.length) return cut(res, beh);
  if (beh.stallAfter !== undefined && beh.stallAfter >= body.length) return;
  res.end(`${JSON.stringify(lines[lines.length - 1])}\n`);
}

const wantsStream = (req) => req.stream !== false;

async function answerChat(ctx, req) {
  const { res, call, beh, headers, sendJson } = ctx;
  if (req.messages !== undefined && req.messages !== null && !Array.isArray(req.messages)) {
    sendJson(res, 400, ollamaError(400, 'json: cannot unmarshal messages into []api.Message'), headers);
    return;
  }
  const messages = req.messages ?? [];
  const createdAt = new Date().toISOString();
  if (!messages.length) {
    sendJson(res, 200, {
      model: req.model,
      created_at: createdAt,
      message: { role: 'assistant', content: '' },
      done_reason: req.keep_alive === 0 ? 'unload' : 'load',
      done: true,
    }, headers);
    return;
  }
  const userText = lastUserText(messages);
  const toolCalls = plannedToolCalls(req, beh, userText, call.n);
  const content = toolCalls ? '' : (beh.content ?? `Echo: ${userText}`);
  const promptCount = Math.max(1, messages.reduce((n, m) => n + countWords(contentText(m?.content)), 0));
  const evalCount = Math.max(1, countWords(content || JSON.stringify(toolCalls)));
  const final = (message) => ({
    model: req.model,
    created_at: new Date().toISOString(),
    message,
    done_reason: 'stop',
    done: true,
    ...metrics(call.n, promptCount, evalCount),
  });
  if (!wantsStream(req)) {
    const message = { role: 'assistant', content };
    if (toolCalls) message.tool_calls = toolCalls;
    sendBody(ctx, final(message));
    return;
  }
  const line = (message) => ({ model: req.model, created_at: new Date().toISOString(), message, done: false });
  const lines = split(content, Math.max(1, beh.chunks ?? 3)).map((piece) => line({ role: 'assistant', content: piece }));
  if (toolCalls) lines.push(line({ role: 'assistant', content: '', tool_calls: toolCalls }));
  lines.push(final({ role: 'assistant', content: '' }));
  await sendStream(ctx, lines);
}

async function answerGenerate(ctx, req) {
  const { res, call, beh, headers, sendJson } = ctx;
  if (req.prompt !== undefined && req.prompt !== null && typeof req.prompt !== 'string') {
    sendJson(res, 400, ollamaError(400, 'json: cannot unmarshal prompt into string'), headers);
    return;
  }
  if (!req.prompt) {
    sendJson(res, 200, {
      model: req.model,
      created_at: new Date().toISOString(),
      response: '',
      done: true,
      done_reason: req.keep_alive === 0 ? 'unload' : 'load',
    }, headers);
    return;
  }
  const content = beh.content ?? `Echo: ${req.prompt}`;
  const final = (response) => ({
    model: req.model,
    created_at: new Date().toISOString(),
    response,
    done: true,
    done_reason: 'stop',
    context: contextFor(req.context, req.prompt, content),
    ...metrics(call.n, Math.max(1, countWords(req.prompt)), Math.max(1, countWords(content))),
  });
  if (!wantsStream(req)) {
    sendBody(ctx, final(content));
    return;
  }
  const lines = split(content, Math.max(1, beh.chunks ?? 3)).map((piece) => ({
    model: req.model,
    created_at: new Date().toISOString(),
    response: piece,
    done: false,
  }));
  lines.push(final(''));
  await sendStream(ctx, lines);
}

function answerEmbed(ctx, req) {
  const { res, call, headers, sendJson } = ctx;
  const input = req.input;
  const valid =
    input === undefined || input === null || typeof input === 'string' ||
    (Array.isArray(input) && input.every((s) => typeof s === 'string'));
  if (!valid) {
    sendJson(res, 400, ollamaError(400, 'invalid input type'), headers);
    return;
  }
  const inputs = (Array.isArray(input) ? input : [input ?? '']).filter((s) => s !== '');
  if (!inputs.length) {
    sendJson(res, 200, { model: req.model, embeddings: [] }, headers);
    return;
  }
  const dims = Number.isInteger(req.dimensions) && req.dimensions > 0 ? req.dimensions : 8;
  sendBody(ctx, {
    model: req.model,
    embeddings: inputs.map((s) => embeddingOf(s, dims)),
    total_duration: 1000000 + call.n,
    load_duration: 1000,
    prompt_eval_count: inputs.reduce((n, s) => n + Math.max(1, countWords(s)), 0),
  });
}

// Answers an /api/ request; false when the path is not one the fake knows.
export async function handleOllama(ctx) {
  const { res, call, headers, sendJson } = ctx;
  const { method, path } = call;
  if (method === 'GET' && path === '/api/version') {
    sendJson(res, 200, { version: VERSION }, headers);
    return true;
  }
  if (method === 'GET' && path === '/api/tags') {
    sendJson(res, 200, tags(), headers);
    return true;
  }
  const answer = { '/api/chat': answerChat, '/api/generate': answerGenerate, '/api/embed': answerEmbed }[path];
  if (method !== 'POST' || !answer) return false;
  const req = parseBody(ctx);
  if (req) await answer(ctx, req);
  return true;
}
