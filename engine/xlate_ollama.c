/*
 * xlate_ollama.c — the answer side of the Ollama /api/chat dialect of the
 * translation model (xlate.h): answers and NDJSON streams both ways, upstream
 * errors, and the xl_ollama table. Client requests in are in
 * xlate_ollama_request.c, upstream requests out in
 * xlate_ollama_request_encode.c; what the files share is declared in
 * xlate_ollama_int.h.
 *
 * Answers: done_reason stop/length (load/unload: other); "stop" with tool
 * calls is XL_STOP_TOOL. Ollama's answers have no id (the upstream's id is
 * dropped) and no cached-token figure (prompt_eval_count is every input
 * token). Content filter and stop-sequence stops are written as "stop",
 * the only natural end Ollama has.
 *
 * Streams are NDJSON: a line per piece ({"model","created_at","message":
 * {"role","content"},"done":false}), the last with "done": true, the stop
 * reason and the counts (that line is END). Ollama sends a tool call whole
 * (its arguments an object), so the encoder holds one call's argument
 * pieces until the call is complete (the next event that is not its
 * arguments); text and thinking are written as they come.
 */
#include "engine/xlate.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/xlate_ollama_int.h"

/* What Ollama's tool calls' arguments may grow to while the stream encoder
 * holds them (one call's arguments are one JSON object, well under this). */
#define OLLAMA_MAX_HELD_ARGS (8u << 20)

/* ---- shared helpers ---------------------------------------------------- */

/* v's compact JSON text, copied into pool; NULL when out of memory. */
const char *ollama_json_text(rl_pool *pool, json_t *v)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    const char *s = NULL;
    if (prov_json_dump(json_incref(v), OLLAMA_JSON_FLAGS, &b) == RL_OK)
        s = rl_pstrndup(pool, b.data ? b.data : "", b.len);
    json_decref(v);
    rl_buf_release(&b);
    return s;
}

/* Ollama's created_at: RFC 3339 in UTC, from unix seconds. */
static void rfc3339(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "1970-01-01T00:00:00Z");
}

/* ---- answers ----------------------------------------------------------- */

static const struct {
    const char *name;
    xl_stop stop;
} done_reasons[] = {
    {"stop", XL_STOP_END},
    {"length", XL_STOP_LENGTH},
    {"load", XL_STOP_OTHER},
    {"unload", XL_STOP_OTHER},
};

/* Ollama's done_reason for each stop: it knows only stop and length. */
static const char *const done_reason_of[] = {
    [XL_STOP_UNSET] = "stop", [XL_STOP_END] = "stop",      [XL_STOP_LENGTH] = "length",
    [XL_STOP_TOOL] = "stop",  [XL_STOP_SEQUENCE] = "stop", [XL_STOP_FILTER] = "stop",
    [XL_STOP_OTHER] = "stop",
};

/* The stop an answer's done_reason says; "stop" after tool calls is a stop
 * for tools (Ollama has no reason of its own for it). */
static xl_stop stop_of(json_t *reason, int called)
{
    xl_stop stop = reason ? XL_STOP_OTHER : XL_STOP_END;
    for (size_t i = 0; json_is_string(reason) && i < sizeof done_reasons / sizeof done_reasons[0];
         i++)
        if (strcmp(done_reasons[i].name, json_string_value(reason)) == 0)
            stop = done_reasons[i].stop;
    return stop == XL_STOP_END && called ? XL_STOP_TOOL : stop;
}

/* prompt_eval_count and eval_count; Ollama omits a zero count and reports
 * no cached tokens. */
static prov_usage usage_of(json_t *j)
{
    prov_usage u = PROV_USAGE_UNKNOWN;
    u.input = prov_json_int(j, "prompt_eval_count");
    u.output = prov_json_int(j, "eval_count");
    return u;
}

/* A tool call of an answer as a TOOL_CALL part (index: its place among the
 * answer's calls, for the id when it has none). */
static rl_err read_call(rl_pool *pool, json_t *call, int index, xl_part *p)
{
    json_t *fn = json_object_get(call, "function");
    json_t *args = json_object_get(fn, "arguments");
    json_t *id = json_object_get(call, "id");
    if (!json_is_string(json_object_get(fn, "name")))
        return RL_UPSTREAM_PROTOCOL;
    p->kind = XL_PART_TOOL_CALL;
    p->name = rl_pstrdup(pool, json_string_value(json_object_get(fn, "name")));
    p->id = json_string_length(id) ? rl_pstrdup(pool, json_string_value(id))
                                   : xlate_tool_id(pool, index);
    if (json_is_string(args)) /* a server that sends OpenAI's string form */
        p->arguments = rl_pstrdup(pool, json_string_value(args));
    else if (json_is_object(args))
        p->arguments = ollama_json_text(pool, args);
    else if (!args || json_is_null(args))
        p->arguments = rl_pstrdup(pool, "{}");
    else
        return RL_UPSTREAM_PROTOCOL;
    return p->name && p->id && p->arguments ? RL_OK : RL_NOMEM;
}

static rl_err ollama_decode_response(const char *body, size_t len, rl_pool *pool, xl_response *out)
{
    memset(out, 0, sizeof *out);
    out->usage = PROV_USAGE_UNKNOWN;
    out->reasoning_tokens = -1;
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    json_t *msg = json_object_get(root, "message");
    json_t *calls = json_object_get(msg, "tool_calls");
    json_t *thinking = json_object_get(msg, "thinking");
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || json_object_get(root, "error"))
        goto out;
    err = RL_NOMEM;
    size_t ncalls = json_array_size(calls);
    if (!(out->parts = rl_palloc(pool, (2 + ncalls) * sizeof *out->parts)))
        goto out;
    const char *model = json_string_value(json_object_get(root, "model"));
    if (model && !(out->model = rl_pstrdup(pool, model)))
        goto out;
    if (json_string_length(thinking)) {
        xl_part *p = &out->parts[out->nparts++];
        p->kind = XL_PART_THINKING;
        if (!(p->text = rl_pstrdup(pool, json_string_value(thinking))))
            goto out;
    }
    if (json_string_length(content) || ncalls == 0) {
        xl_part *p = &out->parts[out->nparts++];
        p->kind = XL_PART_TEXT;
        if (!(p->text =
                  rl_pstrdup(pool, json_is_string(content) ? json_string_value(content) : "")))
            goto out;
    }
    for (size_t i = 0; i < ncalls; i++)
        if ((err = read_call(pool, json_array_get(calls, i), (int)i, &out->parts[out->nparts++])) !=
            RL_OK)
            goto out;
    out->stop = stop_of(json_object_get(root, "done_reason"), ncalls > 0);
    out->usage = usage_of(root);
    err = RL_OK;
out:
    json_decref(root);
    return err;
}

/* The message of an answer: role, content, thinking, tool calls. */
static json_t *answer_message(const xl_response *resp, rl_err *err)
{
    xl_message m = {.role = XL_ROLE_ASSISTANT, .parts = resp->parts, .nparts = resp->nparts};
    json_t *msg =
        json_pack("{s:s,s:o}", "role", "assistant", "content", ollama_joined(&m, XL_PART_TEXT));
    int failed = !msg;
    if (ollama_has_kind(&m, XL_PART_THINKING))
        failed |= json_object_set_new(msg, "thinking", ollama_joined(&m, XL_PART_THINKING));
    json_t *calls = json_array();
    failed |= !calls;
    for (size_t i = 0; i < resp->nparts && !failed; i++)
        if (resp->parts[i].kind == XL_PART_TOOL_CALL)
            failed |= json_array_append_new(
                calls, ollama_enc_tool_call(&resp->parts[i], (int)json_array_size(calls), err));
    if (!failed && json_array_size(calls))
        failed |= json_object_set(msg, "tool_calls", calls);
    json_decref(calls);
    return prov_json_check(msg, failed);
}

static rl_err ollama_encode_response(const xl_response *resp, const xl_reply *reply, rl_buf *out)
{
    char created[32];
    rfc3339(reply->created, created, sizeof created);
    rl_err err = RL_NOMEM; /* RL_BAD_REQUEST: a call's arguments are not an object */
    json_t *msg = answer_message(resp, &err);
    if (!msg)
        return err == RL_BAD_REQUEST ? RL_UPSTREAM_PROTOCOL : RL_NOMEM;
    json_t *root =
        json_pack("{s:s,s:s,s:o,s:s,s:b}", "model", reply->model ? reply->model : "", "created_at",
                  created, "message", msg, "done_reason", done_reason_of[resp->stop], "done", 1);
    int failed = !root;
    if (resp->usage.input >= 0)
        failed |= json_object_set_new(root, "prompt_eval_count", json_integer(resp->usage.input));
    if (resp->usage.output >= 0)
        failed |= json_object_set_new(root, "eval_count", json_integer(resp->usage.output));
    return prov_json_put(out, "", prov_json_check(root, failed), OLLAMA_JSON_FLAGS, "");
}

/* {"error": "text"}; also {"error": {"message", "type"}} from the
 * OpenAI-style servers some put behind an Ollama URL. */
static rl_err ollama_decode_error(const char *body, size_t len, rl_pool *pool, xl_error *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL) == RL_NOMEM ? RL_NOMEM : RL_OK;
    json_t *e = json_object_get(root, "error");
    const char *message =
        json_is_object(e) ? json_string_value(json_object_get(e, "message")) : json_string_value(e);
    const char *type = json_string_value(json_object_get(e, "type"));
    rl_err err = RL_OK;
    if ((message && !(out->message = rl_pstrdup(pool, message))) ||
        (type && !(out->type = rl_pstrdup(pool, type))))
        err = RL_NOMEM;
    json_decref(root);
    return err;
}

/* ---- streams: Ollama's NDJSON -> model events -------------------------- */

typedef struct ollama_dec {
    int started; /* START emitted */
    int ncalls;  /* tool calls seen: the next one's index */
    int done;    /* the done:true line came: nothing after it counts */
} ollama_dec;

static rl_err emit_ev(xl_emit_fn emit, void *ctx, const xl_event *ev)
{
    return emit(ctx, ev) ? RL_STOPPED : RL_OK;
}

static rl_err dec_line_calls(ollama_dec *d, rl_pool *pool, json_t *calls, xl_emit_fn emit,
                             void *ctx)
{
    rl_err err = RL_OK;
    for (size_t i = 0; i < json_array_size(calls) && err == RL_OK; i++) {
        xl_part p = {0};
        if ((err = read_call(pool, json_array_get(calls, i), d->ncalls, &p)) != RL_OK)
            break;
        xl_event ev = {.kind = XL_EV_TOOL_CALL, .index = d->ncalls, .id = p.id, .name = p.name};
        if ((err = emit_ev(emit, ctx, &ev)) != RL_OK)
            break;
        xl_event args = {.kind = XL_EV_TOOL_ARGS, .index = d->ncalls++, .text = p.arguments};
        err = emit_ev(emit, ctx, &args);
    }
    return err;
}

static rl_err ollama_dec_event(void *state, rl_pool *pool, const char *event, const char *data,
                               size_t len, xl_emit_fn emit, void *ctx)
{
    (void)event;
    ollama_dec *d = state;
    if (d->done)
        return RL_OK;
    json_error_t jerr;
    json_t *line = prov_json_load(data, len, &jerr);
    if (!line)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    json_t *error = json_object_get(line, "error");
    json_t *msg = json_object_get(line, "message");
    if (!json_is_object(line))
        goto out;
    if (error) {
        xl_event ev = {.kind = XL_EV_ERROR,
                       .text = json_is_string(error) ? json_string_value(error) : NULL};
        d->done = 1;
        err = emit_ev(emit, ctx, &ev);
        goto out;
    }
    err = RL_OK;
    if (!d->started) {
        xl_event ev = {.kind = XL_EV_START,
                       .model = json_string_value(json_object_get(line, "model"))};
        d->started = 1;
        if ((err = emit_ev(emit, ctx, &ev)) != RL_OK)
            goto out;
    }
    json_t *thinking = json_object_get(msg, "thinking");
    json_t *content = json_object_get(msg, "content");
    if (json_string_length(thinking)) {
        xl_event ev = {.kind = XL_EV_THINKING, .text = json_string_value(thinking)};
        if ((err = emit_ev(emit, ctx, &ev)) != RL_OK)
            goto out;
    }
    if (json_string_length(content)) {
        xl_event ev = {.kind = XL_EV_TEXT, .text = json_string_value(content)};
        if ((err = emit_ev(emit, ctx, &ev)) != RL_OK)
            goto out;
    }
    if ((err = dec_line_calls(d, pool, json_object_get(msg, "tool_calls"), emit, ctx)) != RL_OK)
        goto out;
    if (json_is_true(json_object_get(line, "done"))) {
        d->done = 1;
        xl_event stop = {.kind = XL_EV_STOP,
                         .stop = stop_of(json_object_get(line, "done_reason"), d->ncalls > 0)};
        xl_event usage = {.kind = XL_EV_USAGE, .usage = usage_of(line), .reasoning_tokens = -1};
        xl_event end = {.kind = XL_EV_END};
        if ((err = emit_ev(emit, ctx, &stop)) == RL_OK &&
            (err = emit_ev(emit, ctx, &usage)) == RL_OK)
            err = emit_ev(emit, ctx, &end);
    }
out:
    json_decref(line);
    return err;
}

/* Ollama's stream ends with its done:true line, which dec_event handled:
 * nothing is pending at the end of the bytes. */
static rl_err ollama_dec_finish(void *state, rl_pool *pool, xl_emit_fn emit, void *ctx)
{
    (void)state;
    (void)pool;
    (void)emit;
    (void)ctx;
    return RL_OK;
}

/* ---- streams: model events -> Ollama's NDJSON -------------------------- */

typedef struct ollama_enc {
    int over;         /* END or ERROR written: the stream is finished */
    int held;         /* a tool call is being gathered */
    int index;        /* its index */
    rl_buf id, name;  /* its id and name (copied: events are borrowed) */
    rl_buf args;      /* its arguments' pieces so far */
    xl_stop stop;     /* from STOP */
    prov_usage usage; /* from USAGE events, merged */
    int have_usage;
} ollama_enc;

/* Appends one line of the client's stream: NDJSON, or an SSE data event
 * should the client's framing be SSE. j is released. */
static rl_err put_line(rl_buf *out, const xl_reply *reply, json_t *j)
{
    int sse = reply->framing == FRAME_SSE;
    return prov_json_put(out, sse ? "data: " : "", j, OLLAMA_JSON_FLAGS, sse ? "\n\n" : "\n");
}

/* A content line: {"model","created_at","message":{...},"done":false}. */
static rl_err put_message(rl_buf *out, const xl_reply *reply, json_t *msg)
{
    char created[32];
    rfc3339(reply->created, created, sizeof created);
    return put_line(out, reply,
                    json_pack("{s:s,s:s,s:o,s:b}", "model", reply->model ? reply->model : "",
                              "created_at", created, "message", msg, "done", 0));
}

static void release_held(ollama_enc *e)
{
    rl_buf_release(&e->id);
    rl_buf_release(&e->name);
    rl_buf_release(&e->args);
    e->held = 0;
}

/* xl_dialect.enc_release: a stream given up before its END (the client
 * left, the upstream was cut) still frees a held call. */
static void ollama_enc_release(void *state)
{
    release_held(state);
}

/* Writes the held tool call as one line (its arguments complete now). */
static rl_err flush_call(ollama_enc *e, const xl_reply *reply, rl_buf *out)
{
    if (!e->held)
        return RL_OK;
    rl_err err = rl_buf_error(&e->args);
    if (err == RL_OK)
        err = rl_buf_error(&e->id) != RL_OK ? rl_buf_error(&e->id) : rl_buf_error(&e->name);
    json_t *args = NULL;
    if (err == RL_OK && e->args.len) {
        json_error_t jerr;
        args = prov_json_load(e->args.data, e->args.len, &jerr);
        if (!args)
            err = prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
        else if (!json_is_object(args))
            err = RL_UPSTREAM_PROTOCOL;
    } else if (err == RL_OK && !(args = json_object()))
        err = RL_NOMEM;
    json_t *call = NULL;
    if (err == RL_OK) {
        json_t *fn = json_pack("{s:i,s:s,s:O}", "index", e->index, "name",
                               e->name.data ? e->name.data : "", "arguments", args);
        call = e->id.len ? json_pack("{s:s,s:o}", "id", e->id.data, "function", fn)
                         : json_pack("{s:o}", "function", fn);
        err = call ? RL_OK : RL_NOMEM;
    }
    json_decref(args);
    release_held(e);
    if (err != RL_OK) {
        json_decref(call);
        return err;
    }
    return put_message(
        out, reply,
        json_pack("{s:s,s:s,s:[o]}", "role", "assistant", "content", "", "tool_calls", call));
}

static rl_err enc_final(ollama_enc *e, const xl_reply *reply, rl_buf *out)
{
    char created[32];
    rfc3339(reply->created, created, sizeof created);
    json_t *j =
        json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:b}", "model", reply->model ? reply->model : "",
                  "created_at", created, "message", "role", "assistant", "content", "",
                  "done_reason", done_reason_of[e->stop], "done", 1);
    int failed = !j;
    if (e->have_usage && e->usage.input >= 0)
        failed |= json_object_set_new(j, "prompt_eval_count", json_integer(e->usage.input));
    if (e->have_usage && e->usage.output >= 0)
        failed |= json_object_set_new(j, "eval_count", json_integer(e->usage.output));
    return put_line(out, reply, prov_json_check(j, failed));
}

typedef rl_err (*enc_fn)(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out);

/* Ollama's stream has no opening line. */
static rl_err enc_start(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)e;
    (void)reply;
    (void)ev;
    (void)out;
    return RL_OK;
}

static rl_err enc_text(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)e;
    if (!ev->text || !ev->text[0])
        return RL_OK;
    return put_message(out, reply,
                       json_pack("{s:s,s:s}", "role", "assistant", "content", ev->text));
}

/* A signature alone has nothing to show: Ollama carries no signatures. */
static rl_err enc_thinking(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)e;
    if (!ev->text || !ev->text[0])
        return RL_OK;
    return put_message(
        out, reply,
        json_pack("{s:s,s:s,s:s}", "role", "assistant", "content", "", "thinking", ev->text));
}

static rl_err enc_tool_call_ev(ollama_enc *e, const xl_reply *reply, const xl_event *ev,
                               rl_buf *out)
{
    (void)reply;
    (void)out;
    rl_buf_init(&e->id, OLLAMA_MAX_HELD_ARGS);
    rl_buf_init(&e->name, OLLAMA_MAX_HELD_ARGS);
    rl_buf_init(&e->args, OLLAMA_MAX_HELD_ARGS);
    e->held = 1;
    e->index = ev->index;
    rl_buf_puts(&e->id, ev->id ? ev->id : "");
    rl_buf_puts(&e->name, ev->name ? ev->name : "");
    return RL_OK; /* buffer errors are sticky: flush_call reports them */
}

static rl_err enc_tool_args(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    (void)out;
    if (!e->held || ev->index != e->index)
        return RL_UPSTREAM_PROTOCOL; /* arguments of a call it was not told of */
    if (ev->text)
        rl_buf_puts(&e->args, ev->text); /* sticky: flush_call reports a failure */
    return RL_OK;
}

static rl_err enc_stop(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    (void)out;
    e->stop = ev->stop;
    return RL_OK;
}

static rl_err enc_usage(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    (void)out;
    if (!e->have_usage)
        e->usage = PROV_USAGE_UNKNOWN;
    e->have_usage = 1;
    if (ev->usage.input >= 0)
        e->usage.input = ev->usage.input;
    if (ev->usage.output >= 0)
        e->usage.output = ev->usage.output;
    return RL_OK;
}

static rl_err enc_end(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)ev;
    e->over = 1;
    return enc_final(e, reply, out);
}

/* Ollama's clients raise on an {"error"} line; a call still held is
 * dropped, its arguments incomplete. */
static rl_err enc_error(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    release_held(e);
    e->over = 1;
    return put_line(
        out, reply,
        json_pack("{s:s}", "error", ev->text && ev->text[0] ? ev->text : "upstream error"));
}

static const struct {
    enc_fn fn;
    int completes_call; /* the held tool call's arguments are whole once this comes */
} enc_events[] = {
    [XL_EV_START] = {enc_start, 1},         [XL_EV_TEXT] = {enc_text, 1},
    [XL_EV_THINKING] = {enc_thinking, 1},   [XL_EV_TOOL_CALL] = {enc_tool_call_ev, 1},
    [XL_EV_TOOL_ARGS] = {enc_tool_args, 0}, [XL_EV_STOP] = {enc_stop, 1},
    [XL_EV_USAGE] = {enc_usage, 0},         [XL_EV_END] = {enc_end, 1},
    [XL_EV_ERROR] = {enc_error, 0},
};

static rl_err ollama_enc_event(void *state, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    ollama_enc *e = state;
    if (e->over)
        return RL_OK; /* nothing follows the end of a stream */
    if ((unsigned)ev->kind >= sizeof enc_events / sizeof enc_events[0])
        return RL_UPSTREAM_PROTOCOL;
    int completes = enc_events[ev->kind].completes_call ||
                    (ev->kind == XL_EV_TOOL_ARGS && ev->index != e->index);
    if (e->held && completes) {
        rl_err err = flush_call(e, reply, out);
        if (err != RL_OK)
            return err;
    }
    return enc_events[ev->kind].fn(e, reply, ev, out);
}

const xl_dialect xl_ollama = {
    .id = XL_OLLAMA,
    .name = "Ollama",
    .caps = (1u << XL_F_TOP_K) | (1u << XL_F_SEED) | (1u << XL_F_PENALTIES) |
            (1u << XL_F_JSON_OBJECT) | (1u << XL_F_JSON_SCHEMA) | (1u << XL_F_IMAGE) |
            (1u << XL_F_TOOLS) | (1u << XL_F_THINKING) | (1u << XL_F_STOP),
    .carries_thinking = 1,
    .decode_request = ollama_decode_request,
    .encode_request = ollama_encode_request,
    .decode_response = ollama_decode_response,
    .encode_response = ollama_encode_response,
    .decode_error = ollama_decode_error,
    .stream_framing = FRAME_NDJSON,
    .dec_size = sizeof(ollama_dec),
    .dec_event = ollama_dec_event,
    .dec_finish = ollama_dec_finish,
    .enc_size = sizeof(ollama_enc),
    .enc_event = ollama_enc_event,
    .enc_release = ollama_enc_release,
};
