// The fake Anthropic Messages API, for Relay's tests (used by upstream.mjs).
//
// It answers POST /v1/messages (a message object, or with `stream: true` a
// text/event-stream of named events: message_start, content_block_start,
// ping, content_block_delta..., content_block_stop, message_delta,
// message_stop), POST /v1/messages/count_tokens ({"input_tokens": N}) and
// GET /v1/models with anthropic-version (its list, one page), in
// Anthropic's wire format, errors included:
// {"type":"error","error":{"type","message"}}.
//
// Answers are deterministic from the request: the text is "Echo: " + the
// last user message's text (a string, or its text blocks), the usage counts
// words. Only ids carry the call number ("msg_fake7", "toolu_fake7_0"), so
// a test can tell a replay from a second upstream call. The fake calls a
// tool when the request forces one (`tools` and tool_choice {type:"tool"} or
// {type:"any"}), and thinks first when the request enables thinking. A
// request whose last user turn holds tool_result blocks (the second half of
// a tool-call round trip) is answered with text, "Tool said: " + the
// results' text (a string content, or its text blocks) joined with " | ",
// never with another call unless behaviour toolCalls asks for one.
//
// upstream.mjs takes the behaviour, handles hang, headerDelayMs and status,
// then calls handleAnthropic(ctx). Behaviour fields used here (see
// upstream.mjs for the common ones):
//   content        answer with this text instead of the echo
//   toolCalls      true (one call to the request's tool) or
//                  [{name, arguments}] (arguments a JSON string)
//   finishReason   override stop_reason
//   chunks         stream: text and tool input pieces (default 3)
//   chunkDelayMs   stream: wait this long before each event after the first
//   cutAfter       stream: cut (ctx.cut) after this many events, always
//                  before message_stop; JSON: after this many body bytes
//   cutMode        "destroy" (default) or "end", as in upstream.mjs
//   stallAfter     stream: stop after this many events, keep the connection
//   errorAfter     stream: after this many events send an `event: error`
//                  (overloaded_error) and end the stream there
//   usage          merged into the answer's usage (e.g. cache_read_input_tokens)
//
// A request with context_management gets context_management
// {applied_edits: []} in the message, or on message_delta when streamed.

import { splitPieces } from './text.mjs';

// Anthropic's default wording per status.
const DEFAULT_ERRORS = {
  400: ['invalid_request_error', 'The fake upstream was told to reject this request.'],
  401: ['authentication_error', 'invalid x-api-key'],
  403: ['permission_error', 'Your API key does not have permission to use the specified resource.'],
  404: ['not_found_error', 'Not found'],
  413: ['request_too_large', 'Request exceeds the maximum allowed number of bytes.'],
  429: ['rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit.'],
  500: ['api_error', 'Internal server error'],
  502: ['api_error', 'Bad gateway'],
  503: ['overloaded_error', 'Service unavailable'],
  504: ['api_error', 'Request timed out'],
  529: ['overloaded_error', 'Overloaded'],
};

// The Anthropic error document for a status (message: its default wording
// unless given).
export function anthropicError(status, message) {
  const [type, dflt] =
    DEFAULT_ERRORS[status] ??
    (status >= 400 && status < 500
      ? ['invalid_request_error', `Fake upstream error ${status}.`]
      : ['api_error', `Fake upstream error ${status}.`]);
  return { type: 'error', error: { type, message: message ?? dflt } };
}

// The text of a content: a string, or the text of its text blocks.
function contentText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((b) => (b && b.type === 'text' && typeof b.text === 'string' ? b.text : '')).join('');
  }
  return '';
}

function lastUserText(messages) {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i] && messages[i].role === 'user') return contentText(messages[i].content);
  }
  return '';
}

// The texts of the tool_result blocks of the last turn, or null when it is
// not a user turn holding tool results.
function trailingToolResults(messages) {
  const last = messages[messages.length - 1];
  if (!last || last.role !== 'user' || !Array.isArray(last.content)) return null;
  const results = last.content.filter((b) => b && b.type === 'tool_result');
  return results.length ? results.map((b) => contentText(b.content)) : null;
}

const countWords = (s) => (s.match(/\S+/g) ?? []).length;

// Not a tokenizer, but a deterministic function of the request.
function inputTokens(req) {
  const messages = Array.isArray(req.messages) ? req.messages : [];
  return countWords(contentText(req.system)) + messages.reduce((n, m) => n + 3 + countWords(contentText(m?.content)), 0);
}

// count near-equal slices of text (repeated if too short to give every
// slice a character); an empty text stays one empty piece.
function pieces(text, count) {
  return text ? splitPieces(text, count) : [''];
}

// The content blocks and stop reason the fake answers with.
function planAnswer(req, beh, n) {
  const messages = Array.isArray(req.messages) ? req.messages : [];
  const userText = lastUserText(messages);
  const tools = Array.isArray(req.tools) ? req.tools : [];
  const results = trailingToolResults(messages);
  const forced = !results && tools.length > 0 && (req.tool_choice?.type === 'tool' || req.tool_choice?.type === 'any');
  let calls = null;
  if (Array.isArray(beh.toolCalls)) {
    calls = beh.toolCalls.map((t) => {
      let input = {};
      try {
        input = t.arguments === undefined || t.arguments === '' ? {} : JSON.parse(t.arguments);
      } catch {
        input = {};
      }
      return { name: t.name, input };
    });
  } else if (beh.toolCalls || forced) {
    const name = (req.tool_choice?.type === 'tool' && req.tool_choice.name) || tools[0]?.name || 'lookup';
    calls = [{ name, input: { query: userText } }];
  }

  const blocks = [];
  if (req.thinking && req.thinking.type === 'enabled') {
    const thinking = `The user said: ${userText}`;
    blocks.push({ type: 'thinking', thinking, signature: Buffer.from(thinking).toString('base64') });
  }
  let outputText;
  if (calls) {
    calls.forEach((c, i) => blocks.push({ type: 'tool_use', id: `toolu_fake${n}_${i}`, name: c.name, input: c.input }));
    outputText = calls.map((c) => JSON.stringify(c.input)).join(' ');
  } else {
    outputText = beh.content ?? (results ? `Tool said: ${results.join(' | ')}` : `Echo: ${userText}`);
    blocks.push({ type: 'text', text: outputText });
  }
  const usage = {
    input_tokens: inputTokens(req),
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: Math.max(1, countWords(outputText)),
    service_tier: 'standard',
    ...(beh.usage ?? {}),
  };
  return { blocks, stopReason: beh.finishReason ?? (calls ? 'tool_use' : 'end_turn'), usage };
}

// With context editing (the context-management beta: the request's
// context_management, as Claude Code sends it) the API reports the edits it
// applied: a message member, in a stream on message_delta (not message_start).
const appliedEdits = (req) =>
  req.context_management && typeof req.context_management === 'object' ? { applied_edits: [] } : undefined;

function messageObject(req, plan, n) {
  const msg = {
    id: `msg_fake${n}`,
    type: 'message',
    role: 'assistant',
    model: req.model,
    content: plan.blocks,
    stop_reason: plan.stopReason,
    stop_sequence: null,
    usage: plan.usage,
  };
  const edits = appliedEdits(req);
  if (edits) msg.context_management = edits;
  return msg;
}

// The [name, data] events of a stream answer, in the API's order.
function streamEvents(req, plan, beh, n) {
  const count = beh.chunks ?? 3;
  const ev = [];
  const { context_management: edits, ...msg } = messageObject(req, plan, n);
  ev.push(['message_start', { type: 'message_start', message: { ...msg, content: [], stop_reason: null, stop_sequence: null, usage: { ...plan.usage, output_tokens: 1 } } }]);
  plan.blocks.forEach((block, index) => {
    const delta = (d) => ev.push(['content_block_delta', { type: 'content_block_delta', index, delta: d }]);
    if (block.type === 'thinking') {
      ev.push(['content_block_start', { type: 'content_block_start', index, content_block: { type: 'thinking', thinking: '' } }]);
    } else if (block.type === 'tool_use') {
      ev.push(['content_block_start', { type: 'content_block_start', index, content_block: { ...block, input: {} } }]);
    } else {
      ev.push(['content_block_start', { type: 'content_block_start', index, content_block: { type: 'text', text: '' } }]);
    }
    if (index === 0) ev.push(['ping', { type: 'ping' }]);
    if (block.type === 'thinking') {
      for (const p of pieces(block.thinking, 2)) delta({ type: 'thinking_delta', thinking: p });
      delta({ type: 'signature_delta', signature: block.signature });
    } else if (block.type === 'tool_use') {
      // As the API does: an empty first piece, then the JSON in pieces.
      delta({ type: 'input_json_delta', partial_json: '' });
      for (const p of pieces(JSON.stringify(block.input), count)) delta({ type: 'input_json_delta', partial_json: p });
    } else {
      for (const p of pieces(block.text, count)) delta({ type: 'text_delta', text: p });
    }
    ev.push(['content_block_stop', { type: 'content_block_stop', index }]);
  });
  ev.push(['message_delta', {
    type: 'message_delta',
    delta: { stop_reason: plan.stopReason, stop_sequence: null },
    usage: { output_tokens: plan.usage.output_tokens },
    ...(edits ? { context_management: edits } : {}),
  }]);
  ev.push(['message_stop', { type: 'message_stop' }]);
  return ev;
}

const sse = (name, data) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

async function answerStream(ctx, req, plan) {
  const { res, call, beh, headers, sleep, gone, cut } = ctx;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    ...headers,
  });
  res.flushHeaders();
  const events = streamEvents(req, plan, beh, call.n);
  const last = events.length - 1; // message_stop
  for (let i = 0; i < events.length; i++) {
    if (i > 0 && beh.chunkDelayMs) await sleep(beh.chunkDelayMs);
    if (gone(res)) return;
    if (beh.cutAfter !== undefined && i >= Math.min(beh.cutAfter, last)) return cut(res, beh);
    if (beh.stallAfter !== undefined && i >= beh.stallAfter) return; // silent until closed
    if (beh.errorAfter !== undefined && i >= beh.errorAfter) {
      res.end(sse('error', anthropicError(529, 'Overloaded')));
      return;
    }
    if (i === last) res.end(sse(...events[i]));
    else res.write(sse(...events[i]));
  }
}

// What is wrong with a request body, in Anthropic's words, or null.
function requestProblem(req, isCount) {
  if (req === null || typeof req !== 'object' || Array.isArray(req)) {
    return 'Input should be a valid dictionary or object to extract fields from';
  }
  if (req.model === undefined) return 'model: Field required';
  if (typeof req.model !== 'string' || !req.model) return 'model: Input should be a valid string';
  if (req.messages === undefined) return 'messages: Field required';
  if (!Array.isArray(req.messages)) return 'messages: Input should be a valid list';
  if (isCount) return null;
  if (req.max_tokens === undefined) return 'max_tokens: Field required';
  if (!Number.isInteger(req.max_tokens)) return 'max_tokens: Input should be a valid integer';
  return null;
}

// Anthropic's model list (GET /v1/models): one page, newest first.
const MODELS = [
  ['claude-sonnet-4-5', 'Claude Sonnet 4.5', '2025-09-29T00:00:00Z'],
  ['claude-haiku-4-5', 'Claude Haiku 4.5', '2025-10-01T00:00:00Z'],
];

function modelList() {
  const data = MODELS.map(([id, display_name, created_at]) => ({ type: 'model', id, display_name, created_at }));
  return { data, has_more: false, first_id: data[0].id, last_id: data.at(-1).id };
}

// Handles POST /v1/messages, /v1/messages/count_tokens and GET /v1/models
// (upstream.mjs sends the list here only with anthropic-version); false for
// any other request (upstream.mjs answers those).
export async function handleAnthropic(ctx) {
  const { res, call, beh, sendJson } = ctx;
  const isMessages = call.path === '/v1/messages';
  const isCount = call.path === '/v1/messages/count_tokens';
  const isList = call.method === 'GET' && call.path === '/v1/models';
  if (!isList && (call.method !== 'POST' || (!isMessages && !isCount))) return false;
  const headers = { 'request-id': `req_fake${call.n}`, ...(ctx.headers ?? {}) };
  const fail = (status, message) => sendJson(res, status, anthropicError(status, message), headers);

  const key = call.headers['x-api-key'];
  const auth = call.headers.authorization;
  if (!(key && key.length) && !(auth && /^Bearer \S+/.test(auth))) {
    fail(401, 'x-api-key header is required');
    return true;
  }
  if (isList) {
    sendJson(res, 200, modelList(), headers);
    return true;
  }
  if (!call.headers['anthropic-version']) {
    fail(400, 'anthropic-version: header is required');
    return true;
  }
  let req;
  try {
    req = JSON.parse(call.body);
  } catch (err) {
    fail(400, `There was an error parsing the body of your request: ${err.message}`);
    return true;
  }
  const invalid = requestProblem(req, isCount);
  if (invalid) {
    fail(400, invalid);
    return true;
  }
  if (isCount) {
    sendJson(res, 200, { input_tokens: inputTokens(req) }, headers);
    return true;
  }

  const plan = planAnswer(req, beh, call.n);
  if (req.stream === true) {
    await answerStream(ctx, req, plan);
    return true;
  }
  const body = JSON.stringify(messageObject(req, plan, call.n));
  if (beh.cutAfter !== undefined) {
    // Promise the whole length, send part of it, then drop the connection.
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
    res.write(body.slice(0, beh.cutAfter));
    setTimeout(() => res.destroy(), 20);
    return true;
  }
  sendJson(res, 200, body, headers);
  return true;
}
