// A fake upstream for Relay's tests: OpenAI's API here, and Anthropic's,
// Gemini's and Ollama's in tests/fake/anthropic.mjs, gemini.mjs and
// ollama.mjs (dispatched by path: /v1/messages..., /v1beta/..., /api/...);
// Azure OpenAI paths (/openai/deployments/D/..., /openai/v1/...) are
// answered as OpenAI's (call.path is the OpenAI path, call.azurePath the
// original), with the api-key header accepted.
//
// For OpenAI it answers POST /v1/chat/completions in OpenAI's wire format (a
// chat.completion JSON object, or a text/event-stream of
// chat.completion.chunk events ending `data: [DONE]`), POST /v1/embeddings
// (deterministic vectors, float or base64), POST /v1/responses (a response
// object, or its typed event stream ending response.completed), POST
// /v1/completions (legacy text_completion), GET /v1/models and
// /v1/models/ID, and echoes any other /v1/* request as JSON, so forwarding
// can be checked. Every /v1/* request is recorded with its raw body, and the
// next request can be told to misbehave (fail, delay, cut its stream, hang).
//
// Answers are deterministic from the request (the content echoes the last
// user message), except for the call number, which is in every id
// ("chatcmpl-fake7"): two answers with the same id came from one upstream
// call, which is how a test tells a cache hit from a second call.
// Call numbers never repeat within one fake's life, even across reset().
//
// Library:
//   const fake = await startFakeUpstream();   // 127.0.0.1, a free port
//   fake.url, fake.port, fake.calls, fake.callsFor('marker'),
//   (a call is {n, method, path, query, headers, body, status, sent, aborted,
//   writes, remotePort}: body is the raw request body, sent the response body
//   as written, writes one {at, bytes} per body write (at: wall-clock ms with
//   sub-ms precision, performance.timeOrigin + performance.now(); bytes: the
//   length of call.sent after it), remotePort the client's TCP port, which
//   tells which process holds the upstream connection)
//   fake.enqueue({...}), fake.reset(), await fake.waitForCalls(fn, ms),
//   await fake.close()
//
// Command line (same server, controlled over HTTP):
//   node tests/fake/upstream.mjs [--port N] [--host H]    prints "listening PORT"
//   GET  /_fake/calls      the recorded calls, as JSON
//   POST /_fake/reset      forget calls and queued behaviours
//   POST /_fake/enqueue    queue a behaviour (JSON object, or an array of them)
//
// A behaviour is taken by the next /v1/* request that passes the credential
// check (and whose path equals `path`, when given). Fields, all optional:
//   path           only a request to this path (without query) takes it
//   match          only a request whose raw body contains this string takes
//                  it (a test's marker: an agent's other requests, or another
//                  test's, leave the behaviour for the one it is meant for)
//   status, body   answer with this status and body (string sent verbatim,
//                  anything else as JSON; the default body is an OpenAI-shaped
//                  error matching the status); extra `headers` are added
//   headers        extra response headers, for any behaviour
//   headerDelayMs  wait this long before sending the status line
//   chunks         stream: split the content (or tool arguments) into this
//                  many content events
//   chunkDelayMs   stream: wait this long before each event after the first
//   cutAfter       stream: destroy the socket after this many `data:` events,
//                  before `data: [DONE]`; JSON: after this many body bytes
//   cutMode        "destroy" (default: the connection is reset mid-body) or
//                  "end" (the body ends cleanly but without `data: [DONE]`)
//   stallAfter     stream: stop after this many events and keep the
//                  connection open without another byte
//   hang           never answer at all (for timeouts)
//   content        answer with this text instead of the echo
//   toolCalls      answer with tool calls: true (one call to the request's
//                  tool), or [{name, arguments}] (arguments a string)
//   finishReason   override finish_reason
//   usage          merged into the answer's usage, streamed or not (chat
//                  completions here; Anthropic's in anthropic.mjs), e.g.
//                  {prompt_tokens_details: {cached_tokens: 1500}} for tokens
//                  read from the provider's prompt cache
//
// The fake also calls a tool on its own when the request sets `tools` and
// forces a call (tool_choice "required" or {type:"function",...}), so a
// request that is answered twice gets the same kind of answer both times.
// A request whose last turn holds tool results (role "tool" messages) is
// the second half of a tool-call round trip: it is answered with text,
// "Tool said: " + the results' text joined with " | " (unless `content`),
// never with another call unless `toolCalls` asks for one; so a test can
// see the result reached the upstream. anthropic.mjs and gemini.mjs do the
// same for tool_result blocks and functionResponse parts.
//
// Sockets get TCP_NODELAY: without it Nagle + delayed ACK add ~40 ms stalls
// to small SSE writes (PLATFORM.md).

import http from 'node:http';
import { pathToFileURL } from 'node:url';

import { anthropicError, handleAnthropic } from './anthropic.mjs';
import { embeddingOf, splitPieces } from './text.mjs';
import { geminiError, handleGemini } from './gemini.mjs';
import { ollamaError, handleOllama } from './ollama.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// OpenAI's error bodies: {"error":{"message","type","param","code"}}.
export function openaiError(message, type = 'invalid_request_error', code = null, param = null) {
  return { error: { message, type, param, code } };
}

const DEFAULT_ERRORS = {
  400: ['The fake upstream was told to reject this request.', 'invalid_request_error', null],
  401: ['Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key'],
  403: ['You are not allowed to sample from this model.', 'invalid_request_error', null],
  404: ['The model does not exist or you do not have access to it.', 'invalid_request_error', 'model_not_found'],
  429: ['Rate limit reached for requests.', 'requests', 'rate_limit_exceeded'],
  500: ['The server had an error while processing your request. Sorry about that!', 'server_error', null],
  502: ['Bad gateway.', 'server_error', null],
  503: ['The engine is currently overloaded, please try again later.', 'server_error', null],
};

function defaultErrorBody(status) {
  const [message, type, code] = DEFAULT_ERRORS[status] ?? [`Fake upstream error ${status}.`, 'server_error', null];
  return openaiError(message, type, code);
}

// The text of a message's content: a string, or an array of parts.
function contentText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join('');
  }
  return '';
}

function lastUserText(messages) {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i] && messages[i].role === 'user') return contentText(messages[i].content);
  }
  return '';
}

// The texts of the tool results that end the conversation (the trailing
// role "tool" messages), or null when the last turn is not tool results.
function trailingToolResults(messages) {
  let i = messages.length;
  while (i > 0 && messages[i - 1] && messages[i - 1].role === 'tool') i--;
  if (i === messages.length) return null;
  return messages.slice(i).map((m) => contentText(m.content));
}

const countWords = (s) => (s.match(/\S+/g) ?? []).length;

// Token counts are not real tokenizer output, but they are a deterministic
// function of the request and answer, which is all the tests need.
function usageFor(messages, completionText) {
  const prompt = messages.reduce((n, m) => n + 3 + countWords(contentText(m?.content)), 0);
  const completion = Math.max(1, countWords(completionText));
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}


// What the fake answers to a chat completion request: content or tool calls,
// decided from the request and the behaviour.
function planAnswer(req, beh, callNo) {
  const messages = Array.isArray(req.messages) ? req.messages : [];
  const userText = lastUserText(messages);
  let toolCalls = null;
  const tools = Array.isArray(req.tools) ? req.tools : [];
  const results = trailingToolResults(messages);
  const forced =
    !results && (req.tool_choice === 'required' || (req.tool_choice && req.tool_choice.type === 'function'));
  if (Array.isArray(beh.toolCalls)) {
    toolCalls = beh.toolCalls.map((t) => ({ name: t.name, arguments: t.arguments }));
  } else if (beh.toolCalls || (tools.length && forced)) {
    const name =
      req.tool_choice?.function?.name ?? tools[0]?.function?.name ?? 'lookup';
    toolCalls = [{ name, arguments: JSON.stringify({ query: userText }) }];
  }
  if (toolCalls) {
    toolCalls = toolCalls.map((t, i) => ({ ...t, id: `call_fake${callNo}_${i}` }));
  }
  const said = results ? `Tool said: ${results.join(' | ')}` : `Echo: ${userText}`;
  const content = toolCalls ? null : (beh.content ?? said);
  const finishReason = beh.finishReason ?? (toolCalls ? 'tool_calls' : 'stop');
  const completionText = content ?? toolCalls.map((t) => t.arguments).join(' ');
  return { content, toolCalls, finishReason, usage: { ...usageFor(messages, completionText), ...(beh.usage ?? {}) } };
}

// The chat.completion object for a non-stream answer.
function completionObject(req, plan, callNo, created) {
  const message = { role: 'assistant', content: plan.content, refusal: null, annotations: [] };
  if (plan.toolCalls) {
    message.tool_calls = plan.toolCalls.map((t) => ({
      id: t.id,
      type: 'function',
      function: { name: t.name, arguments: t.arguments },
    }));
  }
  return {
    id: `chatcmpl-fake${callNo}`,
    object: 'chat.completion',
    created,
    model: req.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: plan.finishReason }],
    usage: plan.usage,
    service_tier: 'default',
    system_fingerprint: 'fp_fake',
  };
}

// The chat.completion.chunk objects for a stream answer, in order, as
// OpenAI sends them: a role chunk, content (or tool-call argument) deltas,
// a chunk with finish_reason, and with stream_options.include_usage a last
// chunk with empty choices and the usage (the others then carry
// "usage": null). Content deltas carry an "obfuscation" padding field, as
// OpenAI's do since 2025; clients ignore it.
function streamChunks(req, plan, beh, callNo, created) {
  const includeUsage = Boolean(req.stream_options && req.stream_options.include_usage);
  const base = () => ({
    id: `chatcmpl-fake${callNo}`,
    object: 'chat.completion.chunk',
    created,
    model: req.model,
    service_tier: 'default',
    system_fingerprint: 'fp_fake',
  });
  const chunk = (choice, extra = {}) => {
    const c = { ...base(), choices: [{ index: 0, ...choice }], ...extra };
    if (includeUsage) c.usage = null;
    return c;
  };
  const out = [];
  if (plan.toolCalls) {
    plan.toolCalls.forEach((t, i) => {
      const start = {
        index: i,
        id: t.id,
        type: 'function',
        function: { name: t.name, arguments: '' },
      };
      const delta = i === 0 ? { role: 'assistant', content: null, tool_calls: [start], refusal: null } : { tool_calls: [start] };
      out.push(chunk({ delta, logprobs: null, finish_reason: null }));
      for (const piece of splitPieces(t.arguments, beh.chunks)) {
        out.push(chunk({ delta: { tool_calls: [{ index: i, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }));
      }
    });
  } else {
    out.push(chunk({ delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }));
    splitPieces(plan.content, beh.chunks).forEach((piece, i) => {
      out.push(chunk({ delta: { content: piece }, logprobs: null, finish_reason: null }, { obfuscation: 'x'.repeat(1 + ((callNo + i) % 7)) }));
    });
  }
  out.push(chunk({ delta: {}, logprobs: null, finish_reason: plan.finishReason }));
  if (includeUsage) out.push({ ...base(), choices: [], usage: plan.usage });
  return out;
}


// The Responses API: the text of the last user input (a string, or items
// whose content is a string or input_text parts).
function responsesInputText(input) {
  if (typeof input === 'string') return input;
  if (!Array.isArray(input)) return '';
  for (let i = input.length - 1; i >= 0; i--) {
    const item = input[i];
    if (item && (item.role === 'user' || item.type === 'input_text')) {
      return typeof item.content === 'string' || Array.isArray(item.content) ? contentText(item.content) : String(item.text ?? '');
    }
  }
  return '';
}

function responseObject(req, text, callNo, created, status = 'completed') {
  const input = countWords(responsesInputText(req.input)) + 3;
  const output = Math.max(1, countWords(text));
  return {
    id: `resp_fake${callNo}`,
    object: 'response',
    created_at: created,
    status,
    background: false,
    error: null,
    incomplete_details: null,
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    model: req.model,
    output: status === 'completed' ? [{
      id: `msg_fake${callNo}`,
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
    }] : [],
    parallel_tool_calls: true,
    previous_response_id: req.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    store: req.store ?? true,
    temperature: req.temperature ?? 1,
    text: { format: { type: 'text' }, verbosity: 'medium' },
    tool_choice: 'auto',
    tools: [],
    top_p: 1,
    truncation: 'disabled',
    usage: status === 'completed' ? {
      input_tokens: input,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: output,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: input + output,
    } : null,
    user: null,
    metadata: {},
  };
}

// The events of a streamed response, in OpenAI's order.
function responseEvents(req, text, beh, callNo, created) {
  const done = responseObject(req, text, callNo, created);
  const item = done.output[0];
  const itemId = item.id;
  const events = [];
  const add = (type, fields) => events.push({ type, sequence_number: events.length, ...fields });
  add('response.created', { response: responseObject(req, text, callNo, created, 'in_progress') });
  add('response.in_progress', { response: responseObject(req, text, callNo, created, 'in_progress') });
  add('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } });
  add('response.content_part.added', { item_id: itemId, output_index: 0, content_index: 0, part: { type: 'output_text', annotations: [], logprobs: [], text: '' } });
  for (const piece of splitPieces(text, beh.chunks)) {
    add('response.output_text.delta', { item_id: itemId, output_index: 0, content_index: 0, delta: piece, logprobs: [], obfuscation: 'xyz' });
  }
  add('response.output_text.done', { item_id: itemId, output_index: 0, content_index: 0, text, logprobs: [] });
  add('response.content_part.done', { item_id: itemId, output_index: 0, content_index: 0, part: item.content[0] });
  add('response.output_item.done', { output_index: 0, item });
  add('response.completed', { response: done });
  return events;
}

function textCompletion(req, text, callNo, created, stream) {
  const prompt = countWords(String(req.prompt ?? '')) || 1;
  const completion = Math.max(1, countWords(text));
  return {
    id: `cmpl-fake${callNo}`,
    object: 'text_completion',
    created,
    model: req.model,
    choices: [{ text, index: 0, logprobs: null, finish_reason: stream ? null : 'stop' }],
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  };
}

function modelList(created) {
  return ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1-nano', 'text-embedding-3-small'].map((id) => ({
    id,
    object: 'model',
    created,
    owned_by: 'system',
  }));
}

export async function startFakeUpstream({ port = 0, host = '127.0.0.1' } = {}) {
  const calls = [];
  const queue = [];
  const sockets = new Set();
  let callCount = 0;

  function sendJson(res, status, obj, extraHeaders = {}) {
    const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      ...extraHeaders,
    });
    res.end(body);
  }

  function takeBehaviour(path, body) {
    const i = queue.findIndex((b) =>
      (b.path === undefined || b.path === path) && (b.match === undefined || body.includes(b.match)));
    return i < 0 ? {} : queue.splice(i, 1)[0];
  }

  // True once the client has gone (nothing more should be written).
  const gone = (res) => res.destroyed || res.writableEnded;

  async function answerChat(res, call, req, beh, headers) {
    const created = Math.floor(Date.now() / 1000);
    const plan = planAnswer(req, beh, call.n);
    if (!req.stream) {
      const body = JSON.stringify(completionObject(req, plan, call.n, created));
      if (beh.cutAfter !== undefined) {
        // Promise the whole length, send part of it, then drop the connection.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
        res.write(body.slice(0, beh.cutAfter));
        setTimeout(() => res.destroy(), 20);
        return;
      }
      sendJson(res, 200, body, headers);
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      ...headers,
    });
    // OpenAI sends its headers before the first token; so does the fake.
    res.flushHeaders();
    const chunks = streamChunks(req, plan, beh, call.n, created);
    for (let i = 0; i < chunks.length; i++) {
      if (i > 0 && beh.chunkDelayMs) await sleep(beh.chunkDelayMs);
      if (gone(res)) return;
      if (beh.cutAfter !== undefined && i >= beh.cutAfter) return cut(res, beh);
      if (beh.stallAfter !== undefined && i >= beh.stallAfter) return; // silent until closed
      res.write(`data: ${JSON.stringify(chunks[i])}\n\n`);
    }
    if (beh.chunkDelayMs) await sleep(beh.chunkDelayMs);
    if (gone(res)) return;
    if (beh.cutAfter !== undefined && beh.cutAfter >= chunks.length) return cut(res, beh);
    if (beh.stallAfter !== undefined && beh.stallAfter >= chunks.length) return;
    res.end('data: [DONE]\n\n');
  }

  function cut(res, beh) {
    if (beh.cutMode === 'end') {
      res.end();
    } else {
      // Give the written events a moment to leave, then reset: the client
      // sees a chunked body without its terminating chunk.
      setTimeout(() => res.destroy(), 20);
    }
  }

  async function handleV1(req, res, call) {
    const auth = req.headers.authorization;
    const azureKey = call.azurePath && req.headers['api-key'];
    if (!azureKey && (!auth || !/^Bearer \S+/.test(auth))) {
      sendJson(
        res,
        401,
        openaiError(
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
          'invalid_request_error',
        ),
      );
      return;
    }
    const beh = takeBehaviour(call.path, call.body);
    call.behaviour = beh;
    if (beh.hang) return; // never answer; close() or the client ends it
    if (beh.headerDelayMs) await sleep(beh.headerDelayMs);
    if (gone(res)) return;
    const headers = {
      'x-request-id': `req_fake${call.n}`,
      'openai-processing-ms': '1',
      ...(beh.headers ?? {}),
    };
    if (beh.status !== undefined) {
      const body = beh.body === undefined ? defaultErrorBody(beh.status) : beh.body;
      sendJson(res, beh.status, body, headers);
      return;
    }

    if (call.method === 'POST' && call.path === '/v1/chat/completions') {
      let body;
      try {
        body = JSON.parse(call.body);
      } catch {
        sendJson(res, 400, openaiError(
          "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        ), headers);
        return;
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        sendJson(res, 400, openaiError('The body must be a JSON object.'), headers);
        return;
      }
      if (typeof body.model !== 'string') {
        sendJson(res, 400, openaiError('you must provide a model parameter', 'invalid_request_error', null, 'model'), headers);
        return;
      }
      if (!Array.isArray(body.messages)) {
        sendJson(res, 400, openaiError("Missing required parameter: 'messages'.", 'invalid_request_error', 'missing_required_parameter', 'messages'), headers);
        return;
      }
      await answerChat(res, call, body, beh, headers);
      return;
    }

    if (call.method === 'POST' && (call.path === '/v1/responses' || call.path === '/v1/completions')) {
      let body;
      try {
        body = JSON.parse(call.body);
      } catch {
        sendJson(res, 400, openaiError('We could not parse the JSON body of your request.'), headers);
        return;
      }
      const created = Math.floor(Date.now() / 1000);
      const responses = call.path === '/v1/responses';
      const text = beh.content ?? `Echo: ${responses ? responsesInputText(body.input) : String(body.prompt ?? '')}`;
      if (!body.stream) {
        sendJson(res, 200, responses ? responseObject(body, text, call.n, created) : textCompletion(body, text, call.n, created, false), headers);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...headers });
      res.flushHeaders();
      const events = responses
        ? responseEvents(body, text, beh, call.n, created).map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`)
        : [
          ...splitPieces(text, beh.chunks).map((piece) => {
            const c = textCompletion(body, piece, call.n, created, true);
            delete c.usage;
            return `data: ${JSON.stringify(c)}\n\n`;
          }),
          `data: ${JSON.stringify({ ...textCompletion(body, '', call.n, created, false), choices: [{ text: '', index: 0, logprobs: null, finish_reason: 'stop' }] })}\n\n`,
          'data: [DONE]\n\n',
        ];
      for (let i = 0; i < events.length; i++) {
        if (i > 0 && beh.chunkDelayMs) await sleep(beh.chunkDelayMs);
        if (gone(res)) return;
        if (beh.cutAfter !== undefined && i >= beh.cutAfter) return cut(res, beh);
        if (beh.stallAfter !== undefined && i >= beh.stallAfter) return;
        res.write(events[i]);
      }
      res.end();
      return;
    }

    const created = 1700000000;
    if (call.method === 'GET' && call.path === '/v1/models') {
      sendJson(res, 200, { object: 'list', data: modelList(created) }, headers);
      return;
    }
    const m = /^\/v1\/models\/([^/]+)$/.exec(call.path);
    if (call.method === 'GET' && m) {
      const model = modelList(created).find((x) => x.id === decodeURIComponent(m[1]));
      if (model) sendJson(res, 200, model, headers);
      else sendJson(res, 404, openaiError(`The model '${decodeURIComponent(m[1])}' does not exist`, 'invalid_request_error', 'model_not_found', 'model'), headers);
      return;
    }
    if (call.method === 'POST' && call.path === '/v1/embeddings') {
      let body;
      try {
        body = JSON.parse(call.body);
      } catch {
        sendJson(res, 400, openaiError('We could not parse the JSON body of your request.'), headers);
        return;
      }
      const inputs = Array.isArray(body.input) ? body.input : [body.input];
      const data = inputs.map((input, index) => {
        const v = embeddingOf(String(input), body.dimensions ?? 8);
        const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
        return { object: 'embedding', index, embedding };
      });
      const tokens = inputs.reduce((n, s) => n + countWords(String(s)), 0);
      sendJson(res, 200, { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }, headers);
      return;
    }
    // Anything else under /v1: say what arrived, so forwarding can be checked.
    sendJson(res, 200, {
      object: 'fake.echo',
      call: call.n,
      method: call.method,
      path: call.path,
      query: call.query,
      body: call.body,
    }, headers);
  }

  // The other wire formats, each in its own module (tests/fake/*.mjs).
  const PROVIDERS = [
    // GET /v1/models is Anthropic's when it carries anthropic-version, as
    // Relay lists an Anthropic upstream (x-api-key, no Bearer).
    {
      test: (p, req) => p === '/v1/messages' || p.startsWith('/v1/messages/') ||
        (p === '/v1/models' && req.method === 'GET' && Boolean(req.headers['anthropic-version'])),
      handle: handleAnthropic,
      error: anthropicError,
    },
    { test: (p) => p.startsWith('/v1beta/') || /^\/v1\/models\/[^/]+:/.test(p), handle: handleGemini, error: geminiError },
    { test: (p) => p.startsWith('/api/'), handle: handleOllama, error: ollamaError },
  ];
  const providerOf = (path, req) => PROVIDERS.find((p) => p.test(path, req)) ?? null;

  async function handleProvider(provider, req, res, call) {
    const beh = takeBehaviour(call.path, call.body);
    call.behaviour = beh;
    if (beh.hang) return;
    if (beh.headerDelayMs) await sleep(beh.headerDelayMs);
    if (gone(res)) return;
    const headers = { 'x-request-id': `req_fake${call.n}`, ...(beh.headers ?? {}) };
    if (beh.status !== undefined) {
      const body = beh.body === undefined ? provider.error(beh.status) : beh.body;
      sendJson(res, beh.status, body, headers);
      return;
    }
    const ctx = { req, res, call, beh, headers, sendJson, sleep, gone, cut };
    if (!(await provider.handle(ctx))) {
      sendJson(res, 404, provider.error(404, `Unknown path ${req.method} ${call.path}`), headers);
    }
  }

  function handleControl(req, res, path, body) {
    if (req.method === 'GET' && path === '/_fake/calls') return sendJson(res, 200, calls);
    if (req.method === 'POST' && path === '/_fake/reset') {
      api.reset();
      return sendJson(res, 200, { ok: true });
    }
    if (req.method === 'POST' && path === '/_fake/enqueue') {
      let beh;
      try {
        beh = JSON.parse(body);
      } catch {
        return sendJson(res, 400, openaiError('enqueue expects a JSON behaviour'));
      }
      for (const b of Array.isArray(beh) ? beh : [beh]) api.enqueue(b);
      return sendJson(res, 200, { queued: queue.length });
    }
    return sendJson(res, 404, openaiError(`Unknown fake control ${req.method} ${path}`));
  }

  // Keeps what the fake answered in call.status and call.sent (the body
  // text as written, so a test can compare it with what the client got),
  // when each part was written (call.writes), and marks call.aborted when
  // the client went away before the end.
  function recordResponse(res, call) {
    call.status = null;
    call.sent = '';
    call.writes = [];
    const write = res.write.bind(res);
    const end = res.end.bind(res);
    const keep = (chunk) => {
      if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
        call.sent += chunk.toString();
        call.writes.push({ at: performance.timeOrigin + performance.now(), bytes: call.sent.length });
      }
    };
    res.write = (chunk, ...rest) => {
      keep(chunk);
      return write(chunk, ...rest);
    };
    res.end = (chunk, ...rest) => {
      keep(chunk);
      return end(chunk, ...rest);
    };
    const writeHead = res.writeHead.bind(res);
    res.writeHead = (status, ...rest) => {
      call.status = status;
      return writeHead(status, ...rest);
    };
    res.on('close', () => {
      if (!res.writableFinished) call.aborted = true;
    });
  }

  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const raw = Buffer.concat(parts);
      const q = req.url.indexOf('?');
      const path = q < 0 ? req.url : req.url.slice(0, q);
      const query = q < 0 ? '' : req.url.slice(q + 1);
      if (path.startsWith('/_fake/')) return handleControl(req, res, path, raw.toString('utf8'));
      const call = {
        n: ++callCount,
        method: req.method,
        path,
        query,
        headers: { ...req.headers },
        body: raw.toString('utf8'),
        at: Date.now(),
        aborted: false,
        remotePort: req.socket.remotePort,
      };
      calls.push(call);
      recordResponse(res, call);
      const provider = providerOf(path, req);
      if (provider) {
        handleProvider(provider, req, res, call).catch((err) => {
          if (!res.headersSent) sendJson(res, 500, provider.error(500, `fake upstream bug: ${err.message}`));
          else res.destroy();
        });
        return;
      }
      // Azure OpenAI: /openai/deployments/D/X and /openai/v1/X speak OpenAI.
      const azure = /^\/openai\/(?:deployments\/[^/]+|v1)(\/.*)$/.exec(path);
      if (azure) {
        call.azurePath = path;
        call.path = `/v1${azure[1]}`;
      } else if (!path.startsWith('/v1/')) {
        sendJson(res, 404, openaiError(`Invalid URL (${req.method} ${path})`, 'invalid_request_error'));
        return;
      }
      handleV1(req, res, call).catch((err) => {
        if (!res.headersSent) sendJson(res, 500, openaiError(`fake upstream bug: ${err.message}`, 'server_error'));
        else res.destroy();
      });
    });
  });
  server.on('connection', (socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actualPort = server.address().port;

  const api = {
    port: actualPort,
    url: `http://${host}:${actualPort}`,
    calls, // live array; reset() empties it in place
    // The calls whose raw body contains marker (tests put a unique marker in
    // every prompt, so they never see each other's calls).
    callsFor(marker) {
      return calls.filter((c) => c.body.includes(marker));
    },
    enqueue(behaviour) {
      queue.push({ ...behaviour });
    },
    reset() {
      calls.length = 0;
      queue.length = 0;
    },
    pending() {
      return queue.length;
    },
    // Resolves once pred(calls) is true; rejects after timeoutMs.
    async waitForCalls(pred, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      while (!pred(calls)) {
        if (Date.now() > until) throw new Error(`fake upstream: condition not met within ${timeoutMs} ms`);
        await sleep(10);
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return api;
}

// Command-line mode.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
  };
  const fake = await startFakeUpstream({ port: Number(opt('--port', 0)), host: opt('--host', '127.0.0.1') });
  console.log(`listening ${fake.port}`);
  const stop = async () => {
    await fake.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
