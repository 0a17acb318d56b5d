/*
 * prov_ollama.c — Ollama's native API: POST /api/chat, /api/generate and
 * /api/embed.
 *
 * Ollama streams by default: unless a request says "stream": false the
 * answer is application/x-ndjson, one JSON object per line, each carrying a
 * piece of the text (message.content for chat, response for generate) and
 * "done": false, the last one "done": true with done_reason, the timings and
 * the token counts (prompt_eval_count, eval_count). The non-stream answer is
 * that last object with the pieces joined. Answers have no id. Errors are
 * {"error": "text"}, as a body (the HTTP status carries the code) and, once a
 * stream has begun, as a line of the stream.
 *
 * Requests with nothing to answer (a chat without messages, a generate
 * without a prompt, an embed without input) are how clients load or unload
 * a model: Ollama answers them with done_reason "load" or "unload". They act
 * on the server, so they are marked stateful and never answered from the
 * cache.
 */
#include "engine/prov.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/prov_canon.h"
#include "engine/prov_json.h"

typedef enum { EP_CHAT, EP_GENERATE, EP_EMBED, EP_UNKNOWN } ollama_endpoint;

static ollama_endpoint endpoint_of(const char *name)
{
    if (!name)
        return EP_UNKNOWN;
    if (strcmp(name, "chat") == 0)
        return EP_CHAT;
    if (strcmp(name, "generate") == 0)
        return EP_GENERATE;
    if (strcmp(name, "embed") == 0)
        return EP_EMBED;
    return EP_UNKNOWN;
}

/* ---- requests ---------------------------------------------------------- */

/* Ollama has no authentication; hosted Ollama servers put a Bearer token in
 * Authorization. The returned pointer is borrowed from r. */
static const char *ollama_credential(const prov_request *r, char *buf, size_t cap)
{
    (void)buf;
    (void)cap;
    /* Any scheme: an Ollama behind a proxy may use Basic auth. The whole
     * header scopes the cache, as it always has. */
    return prov_auth_token(r, NULL) ? prov_header(r, "authorization") : NULL;
}

/* True for a string or array value that has something in it. */
static int nonempty(const json_t *v)
{
    return (json_is_string(v) && json_string_length(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0);
}

/*
 * Validates a request the way Ollama would (same 400 wording where Ollama
 * has its own, e.g. "model is required") and fills info. Canonical form:
 * sorted, compact, without "stream" (a stream and a body answer render into
 * each other) and "keep_alive" (how long the server keeps the model loaded
 * changes nothing in the answer). A generate request's "context" (the
 * previous turn's state, sent by the client) stays in the key.
 */
static rl_err ollama_inspect(const prov_request *r, prov_info *info, rl_buf *canonical,
                             rl_buf *key_parts, rl_buf *why)
{
    (void)key_parts; /* everything that changes the answer is in the body */
    rl_err err = RL_BAD_REQUEST;
    json_error_t jerr;
    memset(info, 0, sizeof *info);
    info->framing = FRAME_NDJSON;

    ollama_endpoint ep = endpoint_of(r->endpoint);
    if (ep == EP_UNKNOWN) {
        rl_buf_puts(why, "404 page not found");
        return RL_NO_ROUTE;
    }
    if (!r->body || r->body_len == 0) {
        rl_buf_puts(why, "missing request body");
        return RL_BAD_JSON;
    }
    json_t *root = prov_json_load(r->body, r->body_len, &jerr);
    if (!root) {
        if ((err = prov_json_failed(&jerr, RL_BAD_JSON)) == RL_BAD_JSON)
            rl_buf_printf(why, "invalid JSON in request body: %s (at byte %d)", jerr.text,
                          jerr.position);
        return err;
    }
    if (!json_is_object(root)) {
        rl_buf_puts(why, "the request body must be a JSON object");
        goto out;
    }

    json_t *model = json_object_get(root, "model");
    if (!json_is_string(model) || json_string_length(model) == 0) {
        rl_buf_puts(why, "model is required");
        goto out;
    }
    snprintf(info->model, sizeof info->model, "%s", json_string_value(model));

    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        rl_buf_puts(why, "stream must be a boolean");
        goto out;
    }
    json_t *options = json_object_get(root, "options");
    if (options && !json_is_object(options) && !json_is_null(options)) {
        rl_buf_puts(why, "options must be an object");
        goto out;
    }

    /* Absent or null fields are Go's zero values to Ollama: "nothing to
     * answer", a load request (see the top of the file). */
    switch (ep) {
    case EP_CHAT: {
        json_t *messages = json_object_get(root, "messages");
        if (messages && !json_is_array(messages) && !json_is_null(messages)) {
            rl_buf_puts(why, "messages must be an array");
            goto out;
        }
        info->stateful = !nonempty(messages);
        break;
    }
    case EP_GENERATE: {
        json_t *prompt = json_object_get(root, "prompt");
        if (prompt && !json_is_string(prompt) && !json_is_null(prompt)) {
            rl_buf_puts(why, "prompt must be a string");
            goto out;
        }
        info->stateful = !nonempty(prompt);
        break;
    }
    case EP_EMBED: {
        json_t *input = json_object_get(root, "input");
        int valid = !input || json_is_null(input) || json_is_string(input);
        if (json_is_array(input)) {
            size_t i;
            json_t *v;
            valid = 1;
            json_array_foreach(input, i, v) valid = valid && json_is_string(v);
        }
        if (!valid) {
            rl_buf_puts(why, "invalid input type");
            goto out;
        }
        info->stateful = !nonempty(input);
        break;
    }
    case EP_UNKNOWN:
        break;
    }

    /* num_predict caps the output; -1 (Ollama's default) and -2 (fill the
     * context) set no cap. */
    info->max_output =
        ep == EP_EMBED ? 0 : prov_max_output(prov_json_int(options, "num_predict"), 1);

    /* Ollama streams unless told not to; embeddings never stream. */
    info->stream = ep != EP_EMBED && !json_is_false(stream);

    /* Repeatable: embeddings, greedy decoding, or a fixed seed (a negative
     * seed, Ollama's default -1, means a random one). */
    json_t *temperature = json_object_get(options, "temperature");
    json_t *seed = json_object_get(options, "seed");
    info->deterministic = ep == EP_EMBED ||
                          (json_is_number(temperature) && json_number_value(temperature) == 0.0) ||
                          (json_is_integer(seed) && json_integer_value(seed) >= 0);

    json_object_del(root, "stream");
    json_object_del(root, "keep_alive");
    if ((err = prov_canon(root, "ollama", r->endpoint, info)) == RL_OK)
        err = prov_json_dump(root, PROV_JSON_CANONICAL, canonical);
out:
    json_decref(root);
    return err;
}

/* ---- streams ----------------------------------------------------------- */

/* A line that is not a JSON object counts as an error: Ollama never sends
 * one, and a stream with one must not be stored. So does a line that could
 * not be read for want of memory (see prov.h). */
static prov_event_kind ollama_classify_event(const char *event, const char *data, size_t len)
{
    (void)event;
    json_t *j = prov_json_load(data, len, NULL);
    prov_event_kind kind = PROV_EVENT_ERROR;
    if (json_is_object(j) && !json_object_get(j, "error"))
        kind = json_is_true(json_object_get(j, "done")) ? PROV_EVENT_END : PROV_EVENT_DATA;
    json_decref(j);
    return kind;
}

static int ollama_body_complete(const char *body, size_t len)
{
    json_t *j = prov_json_load(body, len, NULL);
    int done = json_is_true(json_object_get(j, "done"));
    int ok = json_is_object(j) && !json_object_get(j, "error") &&
             ((done && json_is_object(json_object_get(j, "message"))) ||
              (done && json_is_string(json_object_get(j, "response"))) ||
              json_is_array(json_object_get(j, "embeddings")));
    json_decref(j);
    return ok;
}

/* What stream_to_body gathers from the lines of a stream. */
typedef struct assembly {
    rl_buf text;        /* message.content (chat) or response (generate), joined */
    rl_buf thinking;    /* message.thinking or thinking, joined */
    json_t *tool_calls; /* from every line that has them, in order */
    json_t *logprobs;   /* likewise */
    json_t *final;      /* the done:true line (owned) */
    rl_err err;
} assembly;

static rl_err append_string(rl_buf *b, const json_t *v)
{
    return json_is_string(v) ? rl_buf_append(b, json_string_value(v), json_string_length(v))
                             : RL_OK;
}

static int assemble_line(void *ctx, const char *event, const char *data, size_t len)
{
    (void)event;
    assembly *a = ctx;
    if (a->final)
        return 0; /* nothing after the end counts */
    json_error_t jerr;
    json_t *line = prov_json_load(data, len, &jerr);
    if (!json_is_object(line) || json_object_get(line, "error")) {
        a->err = line ? RL_UPSTREAM_PROTOCOL : prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
        json_decref(line);
        return 1;
    }
    json_t *message = json_object_get(line, "message");
    int chat = json_is_object(message);
    json_t *src = chat ? message : line;
    rl_err err = append_string(&a->text, json_object_get(src, chat ? "content" : "response"));
    if (err == RL_OK)
        err = append_string(&a->thinking, json_object_get(src, "thinking"));
    json_t *calls = json_object_get(src, "tool_calls");
    if (err == RL_OK && json_is_array(calls) && json_array_extend(a->tool_calls, calls) != 0)
        err = RL_NOMEM;
    json_t *lp = json_object_get(line, "logprobs");
    if (err == RL_OK && json_is_array(lp) && json_array_extend(a->logprobs, lp) != 0)
        err = RL_NOMEM;
    if (err != RL_OK) {
        json_decref(line);
        a->err = err;
        return 1;
    }
    if (json_is_true(json_object_get(line, "done")))
        a->final = line;
    else
        json_decref(line);
    return 0;
}

/* The final chat message: role, the joined content and thinking, the other
 * fields of the last line's message, the collected tool calls — in the
 * order Ollama writes them. NULL when out of memory. */
static json_t *final_message(assembly *a, json_t *last)
{
    json_t *msg = json_object();
    json_t *role = json_object_get(last, "role");
    int failed = !msg;
    failed |= json_object_set_new(
        msg, "role", json_is_string(role) ? json_incref(role) : json_string("assistant"));
    failed |= json_object_set_new(msg, "content",
                                  json_stringn(a->text.data ? a->text.data : "", a->text.len));
    if (a->thinking.len)
        failed |=
            json_object_set_new(msg, "thinking", json_stringn(a->thinking.data, a->thinking.len));
    const char *key;
    json_t *v;
    json_object_foreach(last, key, v)
    {
        if (!json_object_get(msg, key) && strcmp(key, "thinking") != 0 &&
            strcmp(key, "tool_calls") != 0)
            failed |= json_object_set(msg, key, v);
    }
    if (json_array_size(a->tool_calls))
        failed |= json_object_set(msg, "tool_calls", a->tool_calls);
    if (failed) {
        json_decref(msg);
        return NULL;
    }
    return msg;
}

/* The final generate answer: the last line's fields in their order, with
 * the joined response and, right after it, the joined thinking. */
static json_t *final_generate(assembly *a)
{
    json_t *result = json_object();
    int failed = !result;
    const char *key;
    json_t *v;
    json_object_foreach(a->final, key, v)
    {
        if (strcmp(key, "thinking") == 0)
            continue;
        if (strcmp(key, "response") != 0) {
            failed |= json_object_set(result, key, v);
            continue;
        }
        failed |= json_object_set_new(result, "response",
                                      json_stringn(a->text.data ? a->text.data : "", a->text.len));
        if (a->thinking.len)
            failed |= json_object_set_new(result, "thinking",
                                          json_stringn(a->thinking.data, a->thinking.len));
    }
    if (failed) {
        json_decref(result);
        return NULL;
    }
    return result;
}

/*
 * A whole stream as the body Ollama gives for "stream": false: the done:true
 * line with the pieces of every line joined in. RL_UPSTREAM_CUT when there
 * is no done:true line, RL_UPSTREAM_PROTOCOL for a line that is not an
 * object or is an error.
 */
static rl_err ollama_stream_to_body(frame_kind framing, const char *stream, size_t len, rl_buf *out)
{
    assembly a = {.tool_calls = json_array(), .logprobs = json_array(), .err = RL_OK};
    rl_buf_init(&a.text, 0);
    rl_buf_init(&a.thinking, 0);
    json_t *result = NULL;
    rl_err err = RL_NOMEM;
    if (!a.tool_calls || !a.logprobs)
        goto out;
    err = frame_each(framing, stream, len, assemble_line, &a);
    if (a.err != RL_OK)
        err = a.err;
    if (err != RL_OK)
        goto out;
    err = RL_UPSTREAM_CUT;
    if (!a.final)
        goto out;

    err = RL_NOMEM;
    json_t *message = json_object_get(a.final, "message");
    if (json_is_object(message)) {
        result = json_deep_copy(a.final);
        json_t *msg = final_message(&a, message);
        if (!result || !msg) {
            json_decref(msg);
            goto out;
        }
        if (json_object_set_new(result, "message", msg) != 0)
            goto out;
    } else {
        result = final_generate(&a);
        if (!result)
            goto out;
    }
    if (json_array_size(a.logprobs) && json_object_set(result, "logprobs", a.logprobs) != 0)
        goto out;
    err = prov_json_dump(result, JSON_COMPACT | JSON_PRESERVE_ORDER, out);
out:
    json_decref(result);
    json_decref(a.final);
    json_decref(a.tool_calls);
    json_decref(a.logprobs);
    rl_buf_release(&a.text);
    rl_buf_release(&a.thinking);
    return err;
}

/* Appends j as one NDJSON line and releases it. */
static rl_err put_line(rl_buf *out, json_t *j)
{
    return prov_json_put(out, "", j, JSON_COMPACT | JSON_PRESERVE_ORDER, "\n");
}

/* Fields of an answer that belong on the content line of a stream: identity
 * and the content itself; everything else (done_reason, context, timings,
 * counts) is only on the final line. */
static int on_content_line(const char *key)
{
    static const char *const keys[] = {"model",      "remote_model", "remote_host",
                                       "created_at", "message",      "response",
                                       "thinking",   "tool_calls",   "logprobs"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(key, keys[i]) == 0)
            return 1;
    return 0;
}

/*
 * A non-stream chat or generate answer as the NDJSON stream Ollama would
 * have sent: one line with all the content and "done": false, then the
 * answer itself with the content emptied and "done": true. Ollama has no
 * other stream framing, so info->framing is not consulted.
 * stream_to_body() of the result gives back the body.
 */
static rl_err ollama_body_to_stream(const char *body, size_t len, const prov_info *info,
                                    rl_buf *out)
{
    (void)info;
    json_error_t jerr;
    json_t *answer = prov_json_load(body, len, &jerr);
    json_t *first = NULL, *last = NULL;
    rl_err err = answer ? RL_UPSTREAM_PROTOCOL : prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    json_t *message = json_object_get(answer, "message");
    if (!json_is_object(answer) ||
        (!json_is_object(message) && !json_is_string(json_object_get(answer, "response"))))
        goto out;

    err = RL_NOMEM;
    first = json_object();
    last = json_deep_copy(answer);
    if (!first || !last)
        goto out;
    const char *key;
    json_t *v;
    int failed = 0;
    json_object_foreach(answer, key, v)
    {
        if (on_content_line(key))
            failed |= json_object_set(first, key, v);
    }
    failed |= json_object_set_new(first, "done", json_false());

    if (json_is_object(message)) {
        json_t *lm = json_object_get(last, "message");
        failed |= json_object_set_new(lm, "content", json_string(""));
        json_object_del(lm, "thinking");
        json_object_del(lm, "tool_calls");
    } else {
        failed |= json_object_set_new(last, "response", json_string(""));
        json_object_del(last, "thinking");
        json_object_del(last, "tool_calls");
    }
    json_object_del(last, "logprobs");
    failed |= json_object_set_new(last, "done", json_true());
    if (failed)
        goto out;

    err = put_line(out, first);
    first = NULL;
    if (err == RL_OK) {
        err = put_line(out, last);
        last = NULL; /* else still ours to drop */
    }
out:
    json_decref(first);
    json_decref(last);
    json_decref(answer);
    return err;
}

/* ---- usage ------------------------------------------------------------- */

static void read_counts(const json_t *obj, prov_usage *out)
{
    out->input = prov_json_int(obj, "prompt_eval_count");
    out->output = prov_json_int(obj, "eval_count");
}

static int usage_line(void *ctx, const char *event, const char *data, size_t len)
{
    (void)event;
    /* Runs on every line of every stream and cache hit: only the last line
     * ("done": true) has the counts, so skip the parse of the others. */
    prov_usage *u = ctx;
    if (u->lost || !memmem(data, len, "eval_count", 10))
        return 0;
    json_error_t jerr;
    json_t *line = prov_json_load(data, len, &jerr);
    if (!line)
        return prov_usage_failed(u, &jerr) != RL_OK;
    int stop = json_is_true(json_object_get(line, "done"));
    if (stop)
        read_counts(line, u);
    json_decref(line);
    return stop;
}

/*
 * prompt_eval_count -> input, eval_count -> output (an embed answer has
 * only the former), from the body or the stream's done:true line. Ollama
 * never reports cached prompt tokens. Ollama omits a count of zero, so an
 * absent count reads as -1 here, not as 0.
 */
static rl_err ollama_usage(entry_kind kind, frame_kind framing, const char *data, size_t len,
                           prov_usage *out)
{
    *out = PROV_USAGE_UNKNOWN;
    if (kind == ENTRY_STREAM) {
        rl_err err = frame_each(framing, data, len, usage_line, out);
        /* RL_STOPPED is usage_line stopping at the done line. */
        return out->lost ? RL_NOMEM : err == RL_STOPPED ? RL_OK : err;
    }
    json_error_t jerr;
    json_t *body = prov_json_load(data, len, &jerr);
    if (!body)
        return prov_usage_failed(out, &jerr) == RL_NOMEM ? RL_NOMEM : RL_UPSTREAM_PROTOCOL;
    rl_err err = json_is_object(body) ? RL_OK : RL_UPSTREAM_PROTOCOL;
    if (err == RL_OK)
        read_counts(body, out);
    json_decref(body);
    return err;
}

/* ---- errors ------------------------------------------------------------ */

static json_t *error_object(rl_err err, const char *message)
{
    return json_pack("{s:s}", "error", message && message[0] ? message : rl_err_text(err));
}

static rl_err ollama_error_body(rl_buf *out, rl_err err, const char *message)
{
    return prov_json_put(out, "", error_object(err, message), JSON_COMPACT, "");
}

/* One {"error": ...} line: the ollama clients raise on it. Should a stream
 * of another framing ever end here, it gets an SSE data event. */
static rl_err ollama_error_event(rl_buf *out, frame_kind framing, int opened, rl_err err,
                                 const char *message)
{
    (void)opened; /* its streams need no opening */
    if (framing != FRAME_SSE)
        return put_line(out, error_object(err, message));
    return prov_json_put(out, "data: ", error_object(err, message), JSON_COMPACT, "\n\n");
}

const prov_ops prov_ollama = {
    .format = "ollama",
    .credential = ollama_credential,
    .missing_credential = "Authorization header required",
    .inspect = ollama_inspect,
    .classify_event = ollama_classify_event,
    .body_complete = ollama_body_complete,
    .stream_to_body = ollama_stream_to_body,
    .body_to_stream = ollama_body_to_stream,
    .usage = ollama_usage,
    .usage_event = usage_line,
    .error_body = ollama_error_body,
    .error_event = ollama_error_event,
};
