/*
 * prov_gemini.c — the Gemini API wire format (generativelanguage v1beta and
 * v1): generateContent, streamGenerateContent, countTokens, embedContent.
 *
 * The model and method are in the path ("/v1beta/models/{model}:{method}"),
 * the key in an x-goog-api-key header or a ?key= query parameter (never in
 * the cache key's canonical body or key parts: the engine hashes it into
 * the scope). A streamed answer is a sequence of whole
 * GenerateContentResponse objects, each carrying the new parts only; the
 * last has a finishReason and the final usageMetadata. There is no [DONE].
 * With ?alt=sse they come as "data: {...}\r\n\r\n" events, without it as one
 * JSON array written element by element ("[{...}\n,\r\n{...}\n]").
 * Errors are {"error":{"code","message","status"}}.
 */
#include "engine/prov.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/prov_canon.h"
#include "engine/prov_json.h"

/* ---- requests ---------------------------------------------------------- */

/* The key: the x-goog-api-key header (what the SDKs and Gemini CLI send),
 * else ?key= copied into buf. Borrowed from r or buf. */
static const char *gemini_credential(const prov_request *r, char *buf, size_t cap)
{
    const char *key = prov_header(r, "x-goog-api-key");
    if (prov_credential_ok(key))
        return key;
    key = prov_query_param(r, "key", buf, cap);
    return prov_credential_ok(key) ? key : NULL;
}

/* What a path says: ".../{prefix}/models/{model}:{method}". */
typedef struct gemini_path {
    const char *prefix; /* the API version part, e.g. "/v1beta" */
    size_t prefix_len;
    const char *model;
    size_t model_len;
    const char *method; /* to the end of the path */
} gemini_path;

/* True when path has the shape above with a non-empty model (no '/' in
 * it) and a non-empty method. */
static int split_path(const char *path, gemini_path *out)
{
    static const char models[] = "/models/";
    const char *m = path ? strstr(path, models) : NULL;
    if (!m)
        return 0;
    out->prefix = path;
    out->prefix_len = (size_t)(m - path);
    out->model = m + sizeof models - 1;
    const char *colon = strchr(out->model, ':');
    if (!colon || colon == out->model || memchr(out->model, '/', (size_t)(colon - out->model)) ||
        !colon[1])
        return 0;
    out->model_len = (size_t)(colon - out->model);
    out->method = colon + 1;
    return 1;
}

static int is_zero(json_t *v)
{
    return json_is_number(v) && json_number_value(v) == 0.0;
}

/*
 * Validates a Gemini request. The stream/non-stream choice is in the
 * method and the framing in ?alt=, neither in the body, so both forms of a
 * request get the same canonical body and key parts. key_parts gets the
 * model and the API version from the path (v1 and v1beta accept and answer
 * different fields).
 */
static rl_err gemini_inspect(const prov_request *r, prov_info *info, rl_buf *canonical,
                             rl_buf *key_parts, rl_buf *why)
{
    rl_err err = RL_BAD_REQUEST;
    json_error_t jerr;
    memset(info, 0, sizeof *info);
    info->framing = FRAME_SSE;

    gemini_path p;
    if (!split_path(r->path, &p)) {
        rl_buf_puts(why, "The request path must name a model and a method: "
                         "/v1beta/models/{model}:{method}.");
        return RL_BAD_REQUEST;
    }
    int generate = strcmp(r->endpoint, "generateContent") == 0;
    int count = strcmp(r->endpoint, "countTokens") == 0;
    int embed = strcmp(r->endpoint, "embedContent") == 0;
    if (generate && strcmp(p.method, "streamGenerateContent") == 0) {
        info->stream = 1;
        char alt[16];
        const char *a = prov_query_param(r, "alt", alt, sizeof alt);
        info->framing = a && strcmp(a, "sse") == 0 ? FRAME_SSE : FRAME_JSON_ARRAY;
    } else if (!(generate || count || embed) || strcmp(p.method, r->endpoint) != 0) {
        rl_buf_printf(why, "The method %s is not supported here.", p.method);
        return RL_BAD_REQUEST;
    }

    json_t *root = prov_json_load(r->body, r->body_len, &jerr);
    if (!root) {
        if ((err = prov_json_failed(&jerr, RL_BAD_JSON)) == RL_BAD_JSON)
            rl_buf_printf(why, "Invalid JSON payload received. %s (at byte %d).", jerr.text,
                          jerr.position);
        return err;
    }
    if (!json_is_object(root)) {
        rl_buf_puts(why, "Invalid JSON payload received. The request body must be a JSON "
                         "object.");
        err = RL_BAD_JSON;
        goto out;
    }

    if (generate || count) {
        json_t *contents = json_object_get(root, "contents");
        int nested = count && json_is_object(json_object_get(root, "generateContentRequest"));
        if (contents && !json_is_array(contents)) {
            rl_buf_puts(why, "Invalid JSON payload received. Invalid value at 'contents': "
                             "expected a list of Content.");
            goto out;
        }
        if (!contents && !nested) {
            rl_buf_printf(why, "* %s.contents: contents is not specified",
                          count ? "CountTokensRequest" : "GenerateContentRequest");
            goto out;
        }
    } else if (!json_is_object(json_object_get(root, "content"))) {
        rl_buf_puts(why, "* EmbedContentRequest.content: content is not specified");
        goto out;
    }

    /* info->model is a label (truncated if need be); the key gets it all. */
    snprintf(info->model, sizeof info->model, "%.*s", (int)p.model_len, p.model);
    if ((err = rl_buf_printf(key_parts, "model=%.*s\napi=%.*s\n", (int)p.model_len, p.model,
                             (int)p.prefix_len, p.prefix)) != RL_OK)
        goto out;

    /* Token counts and embeddings are functions of the input; generation
     * repeats with greedy decoding or a fixed seed (as for OpenAI's and
     * Ollama's requests; without one Gemini draws a random seed). */
    json_t *config = json_object_get(root, "generationConfig");
    info->deterministic = count || embed || is_zero(json_object_get(config, "temperature")) ||
                          json_is_integer(json_object_get(config, "seed"));
    info->max_output = count || embed ? 0
                                      : prov_max_output(prov_json_int(config, "maxOutputTokens"),
                                                        prov_json_int(config, "candidateCount"));

    /* Gemini bodies carry nothing volatile: the whole body is the key. */
    if ((err = prov_canon(root, "gemini", r->endpoint, info)) == RL_OK)
        err = prov_json_dump(root, PROV_JSON_CANONICAL, canonical);
out:
    json_decref(root);
    return err;
}

/* ---- streams ----------------------------------------------------------- */

/* An error element, a last chunk (a candidate with a finishReason, or a
 * blocked prompt) or an ordinary chunk. */
static prov_event_kind classify_chunk(json_t *j)
{
    if (!json_is_object(j))
        return PROV_EVENT_DATA;
    if (json_object_get(j, "error"))
        return PROV_EVENT_ERROR;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "candidates"), i, c)
    {
        json_t *finish = json_object_get(c, "finishReason");
        if (json_is_string(finish) && json_string_length(finish) > 0)
            return PROV_EVENT_END;
    }
    json_t *block = json_object_get(json_object_get(j, "promptFeedback"), "blockReason");
    if (json_is_string(block) && json_string_length(block) > 0)
        return PROV_EVENT_END;
    return PROV_EVENT_DATA;
}

static prov_event_kind gemini_classify_event(const char *event, const char *data, size_t len)
{
    (void)event;
    /* Most chunks are text: only parse those that could matter. (A quoted
     * key inside a string is escaped, so content cannot fake these.) */
    if (!memmem(data, len, "\"error\"", 7) && !memmem(data, len, "\"finishReason\"", 14) &&
        !memmem(data, len, "\"blockReason\"", 13))
        return PROV_EVENT_DATA;
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    if (!j && prov_json_failed(&jerr, RL_OK) == RL_NOMEM)
        return PROV_EVENT_ERROR; /* unreadable: see prov.h */
    prov_event_kind kind = classify_chunk(j);
    json_decref(j);
    return kind;
}

/* A whole answer: candidates (generateContent; or a blocked prompt, which
 * has none), totalTokens (countTokens) or an embedding (embedContent). */
static int gemini_body_complete(const char *body, size_t len)
{
    json_t *j = prov_json_load(body, len, NULL);
    int ok =
        json_is_object(j) && !json_object_get(j, "error") &&
        (json_is_array(json_object_get(j, "candidates")) ||
         json_is_integer(json_object_get(j, "totalTokens")) ||
         json_is_object(json_object_get(j, "embedding")) || classify_chunk(j) == PROV_EVENT_END);
    json_decref(j);
    return ok;
}

/* A text part that may be joined with its neighbour: "text" and at most
 * "thought" and "thoughtSignature" besides. */
static int text_part(json_t *part)
{
    if (!json_is_string(json_object_get(part, "text")))
        return 0;
    const char *key;
    json_t *v;
    json_object_foreach(part, key, v)
    {
        if (strcmp(key, "text") != 0 && strcmp(key, "thought") != 0 &&
            strcmp(key, "thoughtSignature") != 0)
            return 0;
    }
    return 1;
}

/* Appends the text of src to the text of dst (both text parts). */
static int append_text(json_t *dst, json_t *src)
{
    json_t *a = json_object_get(dst, "text"), *b = json_object_get(src, "text");
    size_t na = json_string_length(a), nb = json_string_length(b);
    rl_buf tmp;
    rl_buf_init(&tmp, 0);
    int rc = -1;
    if (rl_buf_append(&tmp, json_string_value(a), na) == RL_OK &&
        rl_buf_append(&tmp, json_string_value(b), nb) == RL_OK)
        rc = json_object_set_new(dst, "text", json_stringn(tmp.data ? tmp.data : "", tmp.len));
    rl_buf_release(&tmp);
    return rc;
}

/*
 * Adds a chunk's parts to the parts assembled so far. Only the first part
 * of a chunk is joined to the last part before it (same kind of text:
 * thoughts with thoughts, answer with answer; not after a part that already
 * carries a thoughtSignature), so the parts of a single-chunk stream come
 * back as they were. Other parts (functionCall, inlineData, ...) are kept
 * as they come, in order.
 */
static int merge_parts(json_t *merged, json_t *parts)
{
    size_t k;
    json_t *part;
    json_array_foreach(parts, k, part)
    {
        size_t n = json_array_size(merged);
        json_t *last = n ? json_array_get(merged, n - 1) : NULL;
        if (k == 0 && last && text_part(last) && text_part(part) &&
            json_is_true(json_object_get(last, "thought")) ==
                json_is_true(json_object_get(part, "thought")) &&
            !json_object_get(last, "thoughtSignature")) {
            if (append_text(last, part) != 0)
                return -1;
            json_t *sig = json_object_get(part, "thoughtSignature");
            if (sig && json_object_set(last, "thoughtSignature", sig) != 0)
                return -1;
            continue;
        }
        /* A shallow copy: joining later text replaces keys of the copy only. */
        if (json_array_append_new(merged, json_is_object(part) ? prov_json_copy(part)
                                                               : json_incref(part)) != 0)
            return -1;
    }
    return 0;
}

/* Merges a chunk's candidate into the assembled one: content parts as
 * above, every other field (finishReason, safetyRatings, citationMetadata,
 * groundingMetadata, ...) from the last chunk that has it. */
static int merge_candidate(json_t *merged, json_t *c)
{
    const char *key;
    json_t *v;
    json_object_foreach(c, key, v)
    {
        if (strcmp(key, "content") != 0) {
            if (json_object_set(merged, key, v) != 0)
                return -1;
            continue;
        }
        if (!json_is_object(v))
            continue;
        json_t *content = json_object_get(merged, "content");
        if (!content) {
            if (json_object_set_new(merged, "content", json_object()) != 0)
                return -1;
            content = json_object_get(merged, "content");
        }
        const char *ckey;
        json_t *cv;
        json_object_foreach(v, ckey, cv)
        {
            if (strcmp(ckey, "parts") != 0) {
                if (json_object_set(content, ckey, cv) != 0)
                    return -1;
                continue;
            }
            json_t *parts = json_object_get(content, "parts");
            if (!parts) {
                if (json_object_set_new(content, "parts", json_array()) != 0)
                    return -1;
                parts = json_object_get(content, "parts");
            }
            if (merge_parts(parts, cv) != 0)
                return -1;
        }
    }
    return 0;
}

typedef struct assembly {
    json_t *top;        /* the response's other fields, last value wins */
    json_t *candidates; /* merged candidates, in order of first appearance */
    json_t *indexes;    /* their candidate index, one integer each */
    int chunks;         /* chunks seen */
    int has_candidates; /* some chunk had a candidates array */
    rl_err err;         /* RL_UPSTREAM_PROTOCOL for a chunk that is not an object, RL_NOMEM */
} assembly;

/* The merged candidate for index (appended when new), or NULL. */
static json_t *candidate_for(assembly *a, json_int_t index)
{
    size_t i;
    json_t *v;
    json_array_foreach(a->indexes, i, v)
    {
        if (json_integer_value(v) == index)
            return json_array_get(a->candidates, i);
    }
    json_t *c = json_object();
    if (!c || json_array_append_new(a->candidates, c) != 0 ||
        json_array_append_new(a->indexes, json_integer(index)) != 0)
        return NULL;
    return c;
}

static int assemble_chunk(void *ctx, const char *event, const char *data, size_t len)
{
    assembly *a = ctx;
    (void)event;
    json_error_t jerr;
    json_t *chunk = prov_json_load(data, len, &jerr);
    if (!json_is_object(chunk)) {
        a->err = chunk ? RL_UPSTREAM_PROTOCOL : prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
        json_decref(chunk);
        return 1;
    }
    if (json_object_get(chunk, "error")) { /* such a stream is never stored */
        json_decref(chunk);
        return 0;
    }
    a->chunks++;
    const char *key;
    json_t *v;
    json_object_foreach(chunk, key, v)
    {
        if (strcmp(key, "candidates") == 0)
            continue;
        if (json_object_set(a->top, key, v) != 0)
            a->err = RL_NOMEM;
    }
    json_t *candidates = json_object_get(chunk, "candidates");
    if (json_is_array(candidates)) {
        a->has_candidates = 1;
        size_t i;
        json_t *c;
        json_array_foreach(candidates, i, c)
        {
            if (!json_is_object(c))
                continue;
            json_t *index = json_object_get(c, "index");
            json_t *m = candidate_for(a, json_is_integer(index) ? json_integer_value(index)
                                                                : (json_int_t)i);
            if (!m || merge_candidate(m, c) != 0)
                a->err = RL_NOMEM;
        }
    }
    json_decref(chunk);
    return a->err != RL_OK;
}

/* One GenerateContentResponse from the chunks of a stream in either
 * framing: candidates first, then the other fields as they first came. */
static rl_err gemini_stream_to_body(frame_kind framing, const char *stream, size_t len, rl_buf *out)
{
    assembly a = {json_object(), json_array(), json_array(), 0, 0, RL_OK};
    json_t *body = json_object();
    rl_err err = RL_NOMEM;
    if (!a.top || !a.candidates || !a.indexes || !body)
        goto out;
    err = frame_each(framing, stream, len, assemble_chunk, &a);
    if (a.err != RL_OK)
        err = a.err;
    else if (err == RL_OK && a.chunks == 0)
        err = RL_UPSTREAM_PROTOCOL;
    if (err != RL_OK)
        goto out;
    if (a.has_candidates && json_object_set(body, "candidates", a.candidates) != 0) {
        err = RL_NOMEM;
        goto out;
    }
    if (json_object_update(body, a.top) != 0) {
        err = RL_NOMEM;
        goto out;
    }
    err = prov_json_dump(body, JSON_COMPACT | JSON_PRESERVE_ORDER, out);
out:
    json_decref(a.top);
    json_decref(a.candidates);
    json_decref(a.indexes);
    json_decref(body);
    return err;
}

/*
 * The whole answer as one chunk: Gemini's chunks are whole responses, so
 * one carrying everything (finishReason included) is a valid stream. SSE:
 * "data: {...}\r\n\r\n", as Google writes it; JSON array: "[{...}\n]",
 * pretty-printed like Google's.
 */
static rl_err gemini_body_to_stream(const char *body, size_t len, const prov_info *info,
                                    rl_buf *out)
{
    json_error_t jerr;
    json_t *j = prov_json_load(body, len, &jerr);
    rl_err err = j ? RL_UPSTREAM_PROTOCOL : prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    if (!json_is_object(j))
        goto out;
    switch (info->framing) {
    case FRAME_JSON_ARRAY:
        if ((err = rl_buf_puts(out, "[")) == RL_OK &&
            (err = prov_json_dump(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER, out)) == RL_OK)
            err = rl_buf_puts(out, "\n]");
        break;
    case FRAME_NDJSON:
        if ((err = prov_json_dump(j, JSON_COMPACT | JSON_PRESERVE_ORDER, out)) == RL_OK)
            err = rl_buf_puts(out, "\n");
        break;
    case FRAME_SSE:
        if ((err = rl_buf_puts(out, "data: ")) == RL_OK &&
            (err = prov_json_dump(j, JSON_COMPACT | JSON_PRESERVE_ORDER, out)) == RL_OK)
            err = rl_buf_puts(out, "\r\n\r\n");
        break;
    }
out:
    json_decref(j);
    return err;
}

/* ---- usage ------------------------------------------------------------- */

/* Counts absent from a present usageMetadata are zero (proto3 JSON leaves
 * zeros out); a countTokens answer has only totalTokens (the input). */
static void read_usage(json_t *j, prov_usage *u)
{
    json_t *m = json_object_get(j, "usageMetadata");
    if (json_is_object(m)) {
        int64_t prompt = prov_json_int(m, "promptTokenCount");
        int64_t answer = prov_json_int(m, "candidatesTokenCount");
        int64_t thoughts = prov_json_int(m, "thoughtsTokenCount");
        int64_t cached = prov_json_int(m, "cachedContentTokenCount");
        u->input = prompt < 0 ? 0 : prompt;
        u->output = (answer < 0 ? 0 : answer) + (thoughts < 0 ? 0 : thoughts);
        u->cached_input = cached < 0 ? 0 : cached;
    } else if (json_is_integer(json_object_get(j, "totalTokens"))) {
        u->input = prov_json_int(j, "totalTokens");
        u->output = -1;
        u->cached_input = prov_json_int(j, "cachedContentTokenCount");
    }
}

static int usage_chunk(void *ctx, const char *event, const char *data, size_t len)
{
    (void)event;
    prov_usage *u = ctx;
    if (u->lost || !memmem(data, len, "\"usageMetadata\"", 15))
        return 0;
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    if (!j)
        return prov_usage_failed(u, &jerr) != RL_OK;
    read_usage(j, u); /* the last chunk with usage holds the totals */
    json_decref(j);
    return 0;
}

static rl_err gemini_usage(entry_kind kind, frame_kind framing, const char *data, size_t len,
                           prov_usage *out)
{
    *out = PROV_USAGE_UNKNOWN;
    if (kind == ENTRY_STREAM) {
        rl_err err = frame_each(framing, data, len, usage_chunk, out);
        return out->lost ? RL_NOMEM : err;
    }
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    if (!j)
        return prov_usage_failed(out, &jerr);
    read_usage(j, out);
    json_decref(j);
    return RL_OK;
}

/* ---- errors ------------------------------------------------------------ */

/* google.rpc.Code names for the statuses Relay answers with. */
static const char *status_name(int status)
{
    switch (status) {
    case 400:
    case 413:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 502:
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return status < 500 ? "FAILED_PRECONDITION" : "INTERNAL";
    }
}

static json_t *error_object(rl_err err, const char *message)
{
    int status = rl_err_status(err);
    return json_pack("{s:{s:i, s:s, s:s}}", "error", "code", status, "message",
                     message && message[0] ? message : rl_err_text(err), "status",
                     status_name(status));
}

static rl_err gemini_error_body(rl_buf *out, rl_err err, const char *message)
{
    return prov_json_put(out, "", error_object(err, message), JSON_COMPACT | JSON_PRESERVE_ORDER,
                         "");
}

/*
 * SSE: one "data: {error}" event. JSON array: the error document as the
 * last element, then the closing bracket: ",\r\n{error}\n]" after what was
 * sent, or "[{error}\n]" when nothing of the stream was (opened is 0).
 */
static rl_err gemini_error_event(rl_buf *out, frame_kind framing, int opened, rl_err err,
                                 const char *message)
{
    const char *before = "data: ", *after = "\r\n\r\n";
    if (framing == FRAME_JSON_ARRAY) {
        before = opened ? ",\r\n" : "[";
        after = "\n]";
    } else if (framing == FRAME_NDJSON) {
        before = "";
        after = "\n";
    }
    return prov_json_put(out, before, error_object(err, message),
                         JSON_COMPACT | JSON_PRESERVE_ORDER, after);
}

const prov_ops prov_gemini = {
    .format = "gemini",
    .credential = gemini_credential,
    .missing_credential =
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    .inspect = gemini_inspect,
    .classify_event = gemini_classify_event,
    .body_complete = gemini_body_complete,
    .stream_to_body = gemini_stream_to_body,
    .body_to_stream = gemini_body_to_stream,
    .usage = gemini_usage,
    .usage_event = usage_chunk,
    .error_body = gemini_error_body,
    .error_event = gemini_error_event,
};
