// The fake upstream's Gemini API (generativelanguage v1beta, also v1):
// POST /v1beta/models/{model}:generateContent | :streamGenerateContent |
// :countTokens | :embedContent. tests/fake/upstream.mjs dispatches /v1beta/
// paths here, after taking the request's behaviour and handling `hang`,
// `headerDelayMs` and `status`.
//
// Wire format, as Google sends it:
//   - key: an x-goog-api-key header or a ?key= query parameter; none ->
//     403 PERMISSION_DENIED; the key "invalid" -> 400 API_KEY_INVALID;
//   - errors: {"error":{"code","message","status"}};
//   - generateContent: a GenerateContentResponse, pretty-printed;
//   - streamGenerateContent?alt=sse: text/event-stream, one
//     "data: {chunk}\r\n\r\n" per chunk, no terminator other than the last
//     chunk's finishReason;
//   - streamGenerateContent without alt: application/json, one JSON array
//     written element by element: "[{...}\n,\r\n{...}\n]";
//   - countTokens: {"totalTokens": N}; embedContent: {"embedding":{"values"}}.
//
// Answers are deterministic from the request: the text echoes the last user
// content ("Echo: " + its text parts) unless beh.content; token counts count
// words; modelVersion is the path's model; responseId is "fake" + the call
// number, so two answers with the same responseId came from one upstream
// call. A request with functionDeclarations and
// toolConfig.functionCallingConfig.mode "ANY" (or beh.toolCalls) is answered
// with a functionCall part (args {"query": the user text}, or
// beh.toolCalls[i].arguments parsed). A request whose last content holds
// functionResponse parts (the second half of a tool-call round trip) is
// answered with text, "Tool said: " + each part's `response` as compact
// JSON, joined with " | ", never with another call unless beh.toolCalls
// asks for one. A request for JSON output
// (generationConfig.responseMimeType "application/json") is answered with
// a JSON document: the smallest instance of its responseJsonSchema or
// responseSchema (required properties, or all when none are required;
// strings are the echo, integers and numbers their minimum or 1, booleans
// true, arrays one item, enums their first value), or the echo as a JSON
// string without a schema.
//
// Stream behaviours (see upstream.mjs): chunks (text pieces, default 3),
// chunkDelayMs, cutAfter (events; for a non-stream answer, body bytes),
// cutMode, stallAfter, finishReason. A JSON array stream cut or stalled
// after its last element lacks the closing "]".

import { embeddingOf, splitPieces } from './text.mjs';

const STATUS_NAMES = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  413: 'INVALID_ARGUMENT',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  500: 'INTERNAL',
  501: 'UNIMPLEMENTED',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

const DEFAULT_MESSAGES = {
  400: 'Request contains an invalid argument.',
  401: 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
  403: "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
  404: 'Requested entity was not found.',
  429: 'Resource has been exhausted (e.g. check quota).',
  500: 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting',
  502: 'The service is currently unavailable.',
  503: 'The model is overloaded. Please try again later.',
  504: 'Deadline expired before operation could complete.',
};

// Google's error document: {"error":{"code","message","status"}}.
export function geminiError(status, message) {
  return {
    error: {
      code: status,
      message: message ?? DEFAULT_MESSAGES[status] ?? `Fake upstream error ${status}.`,
      status: STATUS_NAMES[status] ?? (status < 500 ? 'FAILED_PRECONDITION' : 'INTERNAL'),
    },
  };
}

const PATH_RE = /^\/(v1beta|v1)\/models\/([^/:]+):(generateContent|streamGenerateContent|countTokens|embedContent)$/;

const countWords = (s) => (s.match(/\S+/g) ?? []).length;

// The text parts of a Content, joined.
function contentText(content) {
  const parts = Array.isArray(content?.parts) ? content.parts : [];
  return parts.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join('');
}

// The last user turn's text (a content without a role is the user's).
function lastUserText(contents) {
  for (let i = contents.length - 1; i >= 0; i--) {
    const c = contents[i];
    if (c && (c.role === undefined || c.role === 'user')) return contentText(c);
  }
  return '';
}

// The responses of the functionResponse parts of the last content, as
// compact JSON, or null when it holds none.
function trailingToolResults(contents) {
  const parts = contents[contents.length - 1]?.parts;
  if (!Array.isArray(parts)) return null;
  const results = parts.filter((p) => p && p.functionResponse);
  return results.length ? results.map((p) => JSON.stringify(p.functionResponse.response ?? null)) : null;
}

const promptTokens = (contents) => contents.reduce((n, c) => n + 3 + countWords(contentText(c)), 0);



// The smallest instance of a JSON schema (JSON Schema or Gemini's Schema,
// whose types are upper case), its strings being echo.
function schemaInstance(schema, echo, depth = 0) {
  if (!schema || typeof schema !== 'object' || depth > 8) return echo;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  if ('const' in schema) return schema.const;
  const alt = schema.anyOf ?? schema.oneOf;
  if (Array.isArray(alt) && alt.length > 0) return schemaInstance(alt[0], echo, depth + 1);
  let type = Array.isArray(schema.type) ? schema.type.find((t) => String(t).toLowerCase() !== 'null') : schema.type;
  type = String(type ?? (schema.properties ? 'object' : schema.items ? 'array' : 'string')).toLowerCase();
  switch (type) {
    case 'object': {
      const props = schema.properties && typeof schema.properties === 'object' ? schema.properties : {};
      const names = Array.isArray(schema.required) && schema.required.length > 0 ? schema.required : Object.keys(props);
      return Object.fromEntries(names.map((n) => [n, schemaInstance(props[n], echo, depth + 1)]));
    }
    case 'array':
      return [schemaInstance(schema.items, echo, depth + 1)];
    case 'integer':
    case 'number': {
      const min = Number(schema.minimum);
      return Number.isFinite(min) ? min : 1;
    }
    case 'boolean':
      return true;
    case 'null':
      return null;
    default:
      return echo;
  }
}

// What to answer: text or function calls, decided from request and behaviour.
function planAnswer(req, beh, model, callNo) {
  const contents = Array.isArray(req.contents) ? req.contents : [];
  const userText = lastUserText(contents);
  const declarations = (Array.isArray(req.tools) ? req.tools : []).flatMap((t) =>
    Array.isArray(t?.functionDeclarations) ? t.functionDeclarations : [],
  );
  const fcc = req.toolConfig?.functionCallingConfig;
  const results = trailingToolResults(contents);
  const forced = !results && declarations.length > 0 && fcc?.mode === 'ANY';
  let calls = null;
  if (Array.isArray(beh.toolCalls)) {
    calls = beh.toolCalls.map((t) => {
      let args = {};
      try {
        args = typeof t.arguments === 'string' ? JSON.parse(t.arguments) : (t.arguments ?? {});
      } catch {
        args = { raw: t.arguments };
      }
      return { name: t.name, args };
    });
  } else if (beh.toolCalls || forced) {
    const name = fcc?.allowedFunctionNames?.[0] ?? declarations[0]?.name ?? 'lookup';
    calls = [{ name, args: { query: userText } }];
  }
  const gc = req.generationConfig ?? {};
  let text = null;
  if (!calls) {
    text = beh.content ?? (results ? `Tool said: ${results.join(' | ')}` : `Echo: ${userText}`);
    if (beh.content === undefined && !results && gc.responseMimeType === 'application/json') {
      text = JSON.stringify(schemaInstance(gc.responseJsonSchema ?? gc.responseSchema, text));
    }
  }
  const prompt = promptTokens(contents);
  const answerWords = text ?? calls.map((c) => JSON.stringify(c.args)).join(' ');
  const candidates = Math.max(1, countWords(answerWords));
  return {
    text,
    calls,
    finishReason: beh.finishReason ?? 'STOP',
    model,
    responseId: `fake${callNo}`,
    prompt,
    usage: {
      promptTokenCount: prompt,
      candidatesTokenCount: candidates,
      totalTokenCount: prompt + candidates,
      promptTokensDetails: [{ modality: 'TEXT', tokenCount: prompt }],
    },
  };
}

// One GenerateContentResponse: these parts, and when last, the finishReason
// and the full usage (earlier chunks carry the prompt count only, as
// Google's do).
function responseObject(plan, parts, last) {
  const candidate = { content: { parts, role: 'model' } };
  if (last) candidate.finishReason = plan.finishReason;
  candidate.index = 0;
  const usageMetadata = last
    ? plan.usage
    : { promptTokenCount: plan.prompt, totalTokenCount: plan.prompt, promptTokensDetails: plan.usage.promptTokensDetails };
  return { candidates: [candidate], usageMetadata, modelVersion: plan.model, responseId: plan.responseId };
}

function answerParts(plan) {
  return plan.calls ? plan.calls.map((c) => ({ functionCall: { name: c.name, args: c.args } })) : [{ text: plan.text }];
}

// The chunks of a streamed answer: the text in beh.chunks pieces, the last
// with finishReason and usage; function calls come whole in one chunk.
function streamChunks(plan, beh) {
  if (plan.calls) return [responseObject(plan, answerParts(plan), true)];
  const pieces = splitPieces(plan.text, beh.chunks ?? 3);
  return pieces.map((piece, i) => responseObject(plan, [{ text: piece }], i === pieces.length - 1));
}

async function answerGenerate(ctx, plan, stream, sse) {
  const { res, beh, headers, sendJson, sleep, gone, cut } = ctx;
  if (!stream) {
    const body = JSON.stringify(responseObject(plan, answerParts(plan), true), null, 2);
    const h = { 'content-type': 'application/json; charset=UTF-8', ...headers };
    if (beh.cutAfter !== undefined) {
      // Promise the whole length, send part of it, then drop the connection.
      res.writeHead(200, { ...h, 'content-length': Buffer.byteLength(body) });
      res.write(body.slice(0, beh.cutAfter));
      setTimeout(() => res.destroy(), 20);
      return;
    }
    sendJson(res, 200, body, h);
    return;
  }
  res.writeHead(200, {
    'content-type': sse ? 'text/event-stream' : 'application/json; charset=UTF-8',
    'cache-control': 'no-cache',
    ...headers,
  });
  res.flushHeaders();
  const chunks = streamChunks(plan, beh);
  for (let i = 0; i < chunks.length; i++) {
    if (i > 0 && beh.chunkDelayMs) await sleep(beh.chunkDelayMs);
    if (gone(res)) return;
    if (beh.cutAfter !== undefined && i >= beh.cutAfter) return cut(res, beh);
    if (beh.stallAfter !== undefined && i >= beh.stallAfter) return; // silent until closed
    if (sse) res.write(`data: ${JSON.stringify(chunks[i])}\r\n\r\n`);
    else res.write(`${i === 0 ? '[' : ',\r\n'}${JSON.stringify(chunks[i], null, 2)}\n`);
  }
  if (sse && beh.cutAfter === undefined && beh.stallAfter === undefined) {
    res.end();
    return;
  }
  // What is left: an SSE stream's clean end, or a JSON array's "]".
  if (beh.chunkDelayMs) await sleep(beh.chunkDelayMs);
  if (gone(res)) return;
  if (beh.cutAfter !== undefined && beh.cutAfter >= chunks.length) return cut(res, beh);
  if (beh.stallAfter !== undefined && beh.stallAfter >= chunks.length) return;
  res.end(sse ? undefined : ']');
}

// Handles a Gemini request; false when the path or method is not one of
// Gemini's (the caller answers 404).
export async function handleGemini(ctx) {
  const { req, res, call, headers, sendJson } = ctx;
  const m = PATH_RE.exec(call.path);
  if (!m || call.method !== 'POST') return false;
  const [, , model, method] = m;
  const query = new URLSearchParams(call.query ?? '');

  const key = req.headers['x-goog-api-key'] || query.get('key');
  if (!key) {
    sendJson(res, 403, geminiError(403), headers);
    return true;
  }
  if (key === 'invalid') {
    const doc = geminiError(400, 'API key not valid. Please pass a valid API key.');
    doc.error.details = [{
      '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: 'API_KEY_INVALID',
      domain: 'googleapis.com',
      metadata: { service: 'generativelanguage.googleapis.com' },
    }];
    sendJson(res, 400, doc, headers);
    return true;
  }

  let body;
  try {
    body = JSON.parse(call.body);
  } catch {
    sendJson(res, 400, geminiError(400, 'Invalid JSON payload received. Unexpected token.'), headers);
    return true;
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    sendJson(res, 400, geminiError(400, 'Invalid JSON payload received. Expected an object.'), headers);
    return true;
  }

  if (method === 'countTokens') {
    const contents = Array.isArray(body.contents) ? body.contents : body.generateContentRequest?.contents;
    if (!Array.isArray(contents)) {
      sendJson(res, 400, geminiError(400, '* CountTokensRequest.contents: contents is not specified\n'), headers);
      return true;
    }
    const n = promptTokens(contents);
    sendJson(res, 200, { totalTokens: n, promptTokensDetails: [{ modality: 'TEXT', tokenCount: n }] }, headers);
    return true;
  }
  if (method === 'embedContent') {
    if (!body.content || typeof body.content !== 'object') {
      sendJson(res, 400, geminiError(400, '* EmbedContentRequest.content: content is not specified\n'), headers);
      return true;
    }
    const values = embeddingOf(contentText(body.content), body.outputDimensionality ?? 8);
    sendJson(res, 200, { embedding: { values } }, headers);
    return true;
  }

  if (!Array.isArray(body.contents)) {
    sendJson(res, 400, geminiError(400, '* GenerateContentRequest.contents: contents is not specified\n'), headers);
    return true;
  }
  const plan = planAnswer(body, ctx.beh, model, call.n);
  await answerGenerate(ctx, plan, method === 'streamGenerateContent', query.get('alt') === 'sse');
  return true;
}
