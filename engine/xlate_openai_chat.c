/*
 * xlate_openai_chat.c — OpenAI Chat Completions as a dialect of the
 * translation model (xlate.h): what OpenAI, Azure OpenAI and the
 * OpenAI-compatible servers (vLLM, llama.cpp, Ollama's /v1, DeepSeek ...)
 * speak on POST /v1/chat/completions.
 *
 * This file holds the answers, errors and streams, and the dialect
 * (xl_openai_chat); the request side (a client's body -> the model ->
 * the upstream's body), with its table of what maps to what, is in
 * xlate_openai_chat_request.c (decoding) and
 * xlate_openai_chat_request_encode.c (encoding). What the files share is
 * declared in xlate_openai_chat_int.h.
 *
 * Answers: choices[0] only (n > 1 is a feature other formats lack, so a
 * translated request never asks for more). reasoning_content (or
 * reasoning) -> THINKING; content and refusal -> TEXT; tool_calls and the
 * legacy function_call -> TOOL_CALL (a call without id gets
 * xlate_tool_id's). finish_reason: see stop_reasons[]. Usage:
 * prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens,
 * completion_tokens_details.reasoning_tokens. Encoding drops THINKING
 * (carries_thinking 0); text parts are concatenated as a stream's deltas
 * would be.
 *
 * Streams: "data: {chat.completion.chunk}" events ending with "data:
 * [DONE]"; an error inside a stream is a data event {"error":{...}}, as
 * prov_openai.c's error_event writes it.
 */
#include "engine/xlate.h"

#include <jansson.h>
#include <string.h>

#include "engine/prov_json.h"
#include "engine/xlate_openai_chat_int.h"

/* The most tool calls one streamed answer may make: the decoder maps the
 * upstream's indices to the model's in a fixed table. */
#define CHAT_MAX_CALLS 128

/* ---- shared small helpers ------------------------------------------------ */

/* A pool copy of s into *out; RL_NOMEM when s is not NULL and the copy
 * failed. */
rl_err chat_dup_str(rl_pool *pool, const char *s, const char **out)
{
    *out = s ? rl_pstrdup(pool, s) : NULL;
    return s && !*out ? RL_NOMEM : RL_OK;
}

/* finish_reason <-> the model's stop, one table both ways: reading takes
 * the first row with the name, writing the first row with the stop. A
 * stop sequence is "stop" in Chat Completions (it does not say which), and
 * the legacy function_call reads as a tool call. */
static const struct {
    const char *reason;
    xl_stop stop;
} stop_reasons[] = {
    {"stop", XL_STOP_END},           {"length", XL_STOP_LENGTH},
    {"tool_calls", XL_STOP_TOOL},    {"content_filter", XL_STOP_FILTER},
    {"function_call", XL_STOP_TOOL}, {"stop", XL_STOP_SEQUENCE},
    {"stop", XL_STOP_OTHER},         {"stop", XL_STOP_UNSET},
};

static xl_stop stop_of(const char *reason)
{
    if (!reason)
        return XL_STOP_UNSET;
    for (size_t i = 0; i < sizeof stop_reasons / sizeof stop_reasons[0]; i++)
        if (strcmp(stop_reasons[i].reason, reason) == 0)
            return stop_reasons[i].stop;
    return XL_STOP_OTHER;
}

/* calls: the answer made tool calls. A format whose natural end also ends
 * a turn with calls (Gemini's STOP) reads as "tool_calls" here, the reason
 * agents built on the OpenAI SDK look for before running the calls. */
static const char *reason_of(xl_stop stop, int calls)
{
    if (calls && stop == XL_STOP_END)
        stop = XL_STOP_TOOL;
    for (size_t i = 0; i < sizeof stop_reasons / sizeof stop_reasons[0]; i++)
        if (stop_reasons[i].stop == stop)
            return stop_reasons[i].reason;
    return "stop";
}

/* Usage as Chat Completions reports it; fields it lacks stay -1. */
static void read_usage(json_t *usage, prov_usage *u, int64_t *reasoning)
{
    u->input = prov_json_int(usage, "prompt_tokens");
    u->output = prov_json_int(usage, "completion_tokens");
    u->cached_input =
        prov_json_int(json_object_get(usage, "prompt_tokens_details"), "cached_tokens");
    u->cache_write = -1;
    *reasoning =
        prov_json_int(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens");
}

/* The usage object for what is known (unknown counts are left out rather
 * than written as 0, so accounting downstream sees them as unknown); NULL
 * when nothing is known or out of memory (*failed set then). */
static json_t *usage_json(const prov_usage *u, int64_t reasoning, int *failed)
{
    if (u->input < 0 && u->output < 0)
        return NULL;
    json_t *o = json_object();
    int f = !o;
    if (u->input >= 0)
        f |= json_object_set_new(o, "prompt_tokens", json_integer(u->input));
    if (u->output >= 0)
        f |= json_object_set_new(o, "completion_tokens", json_integer(u->output));
    if (u->input >= 0 && u->output >= 0)
        f |= json_object_set_new(o, "total_tokens", json_integer(u->input + u->output));
    if (u->cached_input >= 0)
        f |= json_object_set_new(o, "prompt_tokens_details",
                                 json_pack("{s:I}", "cached_tokens", (json_int_t)u->cached_input));
    if (reasoning >= 0)
        f |= json_object_set_new(o, "completion_tokens_details",
                                 json_pack("{s:I}", "reasoning_tokens", (json_int_t)reasoning));
    *failed |= f;
    return prov_json_check(o, f);
}

/* ==== answers ============================================================= */

/* Where a server puts reasoning in a message or a delta: DeepSeek and
 * vLLM's reasoning parsers say reasoning_content, newer vLLM and
 * OpenRouter say reasoning. */
static const char *const reasoning_keys[] = {"reasoning_content", "reasoning"};

static const char *reasoning_of(json_t *msg)
{
    for (size_t i = 0; i < sizeof reasoning_keys / sizeof reasoning_keys[0]; i++) {
        const char *s = json_string_value(json_object_get(msg, reasoning_keys[i]));
        if (s && s[0])
            return s;
    }
    return NULL;
}

static rl_err add_part(rl_pool *pool, xl_response *r, size_t room, xl_part_kind kind,
                       const char *text, const char *id, const char *name, const char *args)
{
    if (r->nparts >= room)
        return RL_UPSTREAM_PROTOCOL;
    xl_part *p = &r->parts[r->nparts++];
    p->kind = kind;
    rl_err err = chat_dup_str(pool, text, &p->text);
    if (err == RL_OK)
        err = chat_dup_str(pool, id, &p->id);
    if (err == RL_OK)
        err = chat_dup_str(pool, name, &p->name);
    if (err == RL_OK)
        err = chat_dup_str(pool, args, &p->arguments);
    return err;
}

static rl_err decode_message(rl_pool *pool, json_t *msg, xl_response *out)
{
    json_t *calls = json_object_get(msg, "tool_calls");
    json_t *legacy = json_object_get(msg, "function_call");
    size_t room = 4 + json_array_size(calls);
    if (!(out->parts = rl_palloc(pool, room * sizeof *out->parts)))
        return RL_NOMEM;
    const char *thinking = reasoning_of(msg);
    const char *text = json_string_value(json_object_get(msg, "content"));
    const char *refusal = json_string_value(json_object_get(msg, "refusal"));
    rl_err err = RL_OK;
    if (thinking)
        err = add_part(pool, out, room, XL_PART_THINKING, thinking, NULL, NULL, NULL);
    if (err == RL_OK && text && text[0])
        err = add_part(pool, out, room, XL_PART_TEXT, text, NULL, NULL, NULL);
    if (err == RL_OK && refusal && refusal[0])
        err = add_part(pool, out, room, XL_PART_TEXT, refusal, NULL, NULL, NULL);
    size_t k;
    json_t *tc;
    json_array_foreach(calls, k, tc)
    {
        json_t *fn = json_object_get(tc, "function");
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        const char *id = json_string_value(json_object_get(tc, "id"));
        if (err == RL_OK && !id && !(id = xlate_tool_id(pool, (int)k)))
            err = RL_NOMEM;
        if (err == RL_OK)
            err = add_part(pool, out, room, XL_PART_TOOL_CALL, NULL, id,
                           json_string_value(json_object_get(fn, "name")),
                           args && args[0] ? args : "{}");
    }
    if (err == RL_OK && json_is_object(legacy)) {
        const char *args = json_string_value(json_object_get(legacy, "arguments"));
        const char *id = xlate_tool_id(pool, 0);
        err = !id ? RL_NOMEM
                  : add_part(pool, out, room, XL_PART_TOOL_CALL, NULL, id,
                             json_string_value(json_object_get(legacy, "name")),
                             args && args[0] ? args : "{}");
    }
    return err;
}

static rl_err chat_decode_response(const char *body, size_t len, rl_pool *pool, xl_response *out)
{
    memset(out, 0, sizeof *out);
    out->usage = PROV_USAGE_UNKNOWN;
    out->reasoning_tokens = -1;
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    json_t *choices = json_object_get(root, "choices");
    json_t *choice = json_array_get(choices, 0);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    if (!json_is_array(choices) || json_is_object(json_object_get(root, "error")))
        goto out;
    if ((err = chat_dup_str(pool, json_string_value(json_object_get(root, "id")), &out->id)) !=
            RL_OK ||
        (err = chat_dup_str(pool, json_string_value(json_object_get(root, "model")),
                            &out->model)) != RL_OK)
        goto out;
    if (choice && (err = decode_message(pool, json_object_get(choice, "message"), out)) != RL_OK)
        goto out;
    out->stop = choice ? stop_of(json_string_value(json_object_get(choice, "finish_reason")))
                       : XL_STOP_OTHER;
    json_t *usage = json_object_get(root, "usage");
    if (json_is_object(usage))
        read_usage(usage, &out->usage, &out->reasoning_tokens);
out:
    json_decref(root);
    return err;
}

static rl_err chat_encode_response(const xl_response *resp, const xl_reply *reply, rl_buf *out)
{
    rl_buf text;
    rl_buf_init(&text, 0);
    json_t *calls = json_array();
    int failed = !calls, has_text = 0;
    for (size_t i = 0; i < resp->nparts; i++) {
        const xl_part *p = &resp->parts[i];
        if (p->kind == XL_PART_TEXT) {
            has_text = 1;
            rl_buf_puts(&text, p->text ? p->text : "");
        } else if (p->kind == XL_PART_TOOL_CALL)
            failed |= json_array_append_new(
                calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", p->id ? p->id : "", "type",
                                 "function", "function", "name", p->name ? p->name : "",
                                 "arguments", p->arguments ? p->arguments : "{}"));
        /* THINKING: no place in a Chat Completions answer (header) */
    }
    failed |= rl_buf_error(&text) != RL_OK;
    json_t *message =
        json_pack("{s:s, s:o, s:n}", "role", "assistant", "content",
                  has_text ? json_string(text.data ? text.data : "") : json_null(), "refusal");
    if (message && json_array_size(calls))
        failed |= json_object_set(message, "tool_calls", calls);
    rl_buf_release(&text);
    json_t *doc =
        json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:n, s:s}]}", "id",
                  resp->id ? resp->id : (reply->id ? reply->id : "chatcmpl-relay"), "object",
                  "chat.completion", "created", (json_int_t)reply->created, "model",
                  reply->model ? reply->model : "", "choices", "index", 0, "message", message,
                  "logprobs", "finish_reason", reason_of(resp->stop, json_array_size(calls) > 0));
    json_decref(calls);
    json_t *usage = usage_json(&resp->usage, resp->reasoning_tokens, &failed);
    if (doc && usage)
        failed |= json_object_set_new(doc, "usage", usage);
    else
        json_decref(usage);
    return prov_json_put(out, "", prov_json_check(doc, failed), CHAT_JSON_FLAGS, "");
}

static rl_err chat_decode_error(const char *body, size_t len, rl_pool *pool, xl_error *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root) /* not JSON: not one of its shapes (RL_NOMEM stays one) */
        return prov_json_failed(&jerr, RL_OK);
    json_t *e = json_object_get(root, "error");
    /* {"error":{"message","type"}} is OpenAI's; OpenAI-compatible servers
     * also answer {"error":"text"} (Ollama) or {"message":...}. */
    const char *message = json_is_string(e)   ? json_string_value(e)
                          : json_is_object(e) ? json_string_value(json_object_get(e, "message"))
                                              : json_string_value(json_object_get(root, "message"));
    const char *type = json_string_value(json_object_get(e, "type"));
    rl_err err = chat_dup_str(pool, message, &out->message);
    if (err == RL_OK)
        err = chat_dup_str(pool, type, &out->type);
    json_decref(root);
    return err;
}

/* ==== streams: upstream chunks -> model events ============================= */

typedef struct chat_dec {
    int started, done;
    int ncalls;
    int upstream_index[CHAT_MAX_CALLS];  /* the model's call i is the upstream's index ... */
    const char *call_id[CHAT_MAX_CALLS]; /* ... with this id (pool), for servers without index */
} chat_dec;

static rl_err emit_ev(xl_emit_fn emit, void *ctx, const xl_event *ev)
{
    return emit(ctx, ev) ? RL_STOPPED : RL_OK;
}

/* The model's index of one tool_calls delta entry (k-th in its chunk),
 * emitting TOOL_CALL when it starts a call. Servers that leave out index
 * (some OpenAI-compatible ones) are followed by id: a new id is a new
 * call, none continues the last. */
static rl_err dec_call(chat_dec *s, rl_pool *pool, json_t *tc, xl_emit_fn emit, void *ctx,
                       int *index)
{
    json_t *fn = json_object_get(tc, "function");
    const char *id = json_string_value(json_object_get(tc, "id"));
    json_t *jindex = json_object_get(tc, "index");
    int up = json_is_integer(jindex) ? (int)json_integer_value(jindex) : -1;
    *index = -1;
    for (int i = 0; i < s->ncalls; i++)
        if (up >= 0 ? s->upstream_index[i] == up
                    : (id ? s->call_id[i] && strcmp(s->call_id[i], id) == 0 : i == s->ncalls - 1))
            *index = i;
    if (*index >= 0)
        return RL_OK;
    if (s->ncalls >= CHAT_MAX_CALLS)
        return RL_UPSTREAM_PROTOCOL;
    *index = s->ncalls++;
    s->upstream_index[*index] = up >= 0 ? up : *index;
    if (!id && !(id = xlate_tool_id(pool, *index)))
        return RL_NOMEM;
    if (!(s->call_id[*index] = rl_pstrdup(pool, id)))
        return RL_NOMEM;
    xl_event ev = {.kind = XL_EV_TOOL_CALL,
                   .index = *index,
                   .id = id,
                   .name = json_string_value(json_object_get(fn, "name"))};
    if (!ev.name)
        ev.name = "";
    return emit_ev(emit, ctx, &ev);
}

static rl_err dec_args(int index, json_t *fn, xl_emit_fn emit, void *ctx)
{
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    if (!args || !args[0])
        return RL_OK;
    xl_event ev = {.kind = XL_EV_TOOL_ARGS, .index = index, .text = args};
    return emit_ev(emit, ctx, &ev);
}

static rl_err dec_delta(chat_dec *s, rl_pool *pool, json_t *delta, xl_emit_fn emit, void *ctx)
{
    rl_err err = RL_OK;
    const char *thinking = reasoning_of(delta);
    const char *text = json_string_value(json_object_get(delta, "content"));
    const char *refusal = json_string_value(json_object_get(delta, "refusal"));
    if (thinking)
        err = emit_ev(emit, ctx, &(xl_event){.kind = XL_EV_THINKING, .text = thinking});
    if (err == RL_OK && text && text[0])
        err = emit_ev(emit, ctx, &(xl_event){.kind = XL_EV_TEXT, .text = text});
    if (err == RL_OK && refusal && refusal[0])
        err = emit_ev(emit, ctx, &(xl_event){.kind = XL_EV_TEXT, .text = refusal});
    size_t k;
    json_t *tc;
    json_array_foreach(json_object_get(delta, "tool_calls"), k, tc)
    {
        int index;
        if (err == RL_OK)
            err = dec_call(s, pool, tc, emit, ctx, &index);
        if (err == RL_OK)
            err = dec_args(index, json_object_get(tc, "function"), emit, ctx);
    }
    json_t *legacy = json_object_get(delta, "function_call");
    if (err == RL_OK && json_is_object(legacy)) {
        /* the legacy single call: index 0 */
        json_t *as_call = json_pack("{s:i, s:O}", "index", 0, "function", legacy);
        int index;
        err = as_call ? dec_call(s, pool, as_call, emit, ctx, &index) : RL_NOMEM;
        if (err == RL_OK)
            err = dec_args(index, legacy, emit, ctx);
        json_decref(as_call);
    }
    return err;
}

static rl_err chat_dec_event(void *state, rl_pool *pool, const char *event, const char *data,
                             size_t len, xl_emit_fn emit, void *ctx)
{
    chat_dec *s = state;
    (void)event; /* Chat Completions streams are unnamed data events */
    if (s->done)
        return RL_OK;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->done = 1;
        return emit_ev(emit, ctx, &(xl_event){.kind = XL_EV_END});
    }
    json_error_t jerr;
    json_t *chunk = prov_json_load(data, len, &jerr);
    if (!chunk)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = json_is_object(chunk) ? RL_OK : RL_UPSTREAM_PROTOCOL;
    json_t *error = json_object_get(chunk, "error");
    if (err == RL_OK && error) {
        s->done = 1;
        xl_event ev = {.kind = XL_EV_ERROR,
                       .text = json_string_value(
                           json_is_object(error) ? json_object_get(error, "message") : error),
                       .type = json_string_value(json_object_get(error, "type"))};
        err = emit_ev(emit, ctx, &ev);
        goto out;
    }
    if (err == RL_OK && !s->started) {
        s->started = 1;
        xl_event ev = {.kind = XL_EV_START,
                       .id = json_string_value(json_object_get(chunk, "id")),
                       .model = json_string_value(json_object_get(chunk, "model"))};
        err = emit_ev(emit, ctx, &ev);
    }
    json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    if (err == RL_OK && choice)
        err = dec_delta(s, pool, json_object_get(choice, "delta"), emit, ctx);
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    if (err == RL_OK && finish)
        err = emit_ev(emit, ctx, &(xl_event){.kind = XL_EV_STOP, .stop = stop_of(finish)});
    json_t *usage = json_object_get(chunk, "usage");
    if (err == RL_OK && json_is_object(usage)) {
        xl_event ev = {.kind = XL_EV_USAGE};
        read_usage(usage, &ev.usage, &ev.reasoning_tokens);
        err = emit_ev(emit, ctx, &ev);
    }
out:
    json_decref(chunk);
    return err;
}

static rl_err chat_dec_finish(void *state, rl_pool *pool, xl_emit_fn emit, void *ctx)
{
    /* [DONE] ends a complete stream; bytes that end without it are a cut
     * stream, which the caller tells from the missing END. */
    (void)state, (void)pool, (void)emit, (void)ctx;
    return RL_OK;
}

/* ==== streams: model events -> client chunks =============================== */

typedef struct chat_enc {
    int started, stopped, over, ncalls, have_usage;
    prov_usage usage;
    int64_t reasoning;
    char id[192]; /* the upstream's id when it fits, else reply->id is used */
} chat_enc;

static const char *enc_id(const chat_enc *s, const xl_reply *r)
{
    return s->id[0] ? s->id : (r->id ? r->id : "chatcmpl-relay");
}

/* "data: {chunk}\n\n" with one choice (delta taken; finish NULL: null);
 * "usage": null in every chunk when the client asked for usage, as
 * OpenAI writes them. */
static rl_err put_chunk(const chat_enc *s, const xl_reply *r, json_t *delta, const char *finish,
                        rl_buf *out)
{
    json_t *chunk = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:n, s:s?}]}", "id", enc_id(s, r),
                              "object", "chat.completion.chunk", "created", (json_int_t)r->created,
                              "model", r->model ? r->model : "", "choices", "index", 0, "delta",
                              delta, "logprobs", "finish_reason", finish);
    if (chunk && r->include_usage)
        chunk = prov_json_check(chunk, json_object_set_new(chunk, "usage", json_null()));
    return prov_json_put(out, "data: ", chunk, CHAT_JSON_FLAGS, "\n\n");
}

/* The first chunk: the role, with content "" as OpenAI sends it. */
static rl_err enc_start(chat_enc *s, const xl_reply *r, const char *id, rl_buf *out)
{
    s->started = 1;
    if (id && strlen(id) < sizeof s->id)
        memcpy(s->id, id, strlen(id) + 1);
    return put_chunk(s, r, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, out);
}

static rl_err enc_end(chat_enc *s, const xl_reply *r, rl_buf *out)
{
    rl_err err = RL_OK;
    if (!s->stopped) /* the upstream ended without saying why: the natural end */
        err = put_chunk(s, r, json_object(), reason_of(XL_STOP_END, s->ncalls > 0), out);
    int failed = 0;
    json_t *usage = s->have_usage ? usage_json(&s->usage, s->reasoning, &failed) : NULL;
    if (err == RL_OK && r->include_usage && (usage || failed)) {
        json_t *chunk = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", enc_id(s, r), "object",
                                  "chat.completion.chunk", "created", (json_int_t)r->created,
                                  "model", r->model ? r->model : "", "choices", "usage", usage);
        usage = NULL;
        err = prov_json_put(out, "data: ", chunk, CHAT_JSON_FLAGS, "\n\n");
    }
    json_decref(usage);
    s->over = 1;
    return err == RL_OK ? rl_buf_puts(out, "data: [DONE]\n\n") : err;
}

static rl_err enc_error(chat_enc *s, const xl_event *ev, rl_buf *out)
{
    s->over = 1;
    json_t *e = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message",
                          ev->text && ev->text[0] ? ev->text : rl_err_text(RL_UPSTREAM_CUT), "type",
                          ev->type ? ev->type : rl_err_type(RL_UPSTREAM_CUT), "param", "code");
    return prov_json_put(out, "data: ", e, CHAT_JSON_FLAGS, "\n\n");
}

static void merge_usage(chat_enc *s, const xl_event *ev)
{
    if (!s->have_usage) {
        s->usage = PROV_USAGE_UNKNOWN;
        s->reasoning = -1;
        s->have_usage = 1;
    }
    /* Each USAGE tells the counts so far; -1 fields were not told. */
    if (ev->usage.input >= 0)
        s->usage.input = ev->usage.input;
    if (ev->usage.output >= 0)
        s->usage.output = ev->usage.output;
    if (ev->usage.cached_input >= 0)
        s->usage.cached_input = ev->usage.cached_input;
    if (ev->reasoning_tokens >= 0)
        s->reasoning = ev->reasoning_tokens;
}

static rl_err enc_text(chat_enc *s, const xl_reply *r, const xl_event *ev, rl_buf *out)
{
    return put_chunk(s, r, json_pack("{s:s}", "content", ev->text ? ev->text : ""), NULL, out);
}

/* A call's first delta: index, id, type and name, arguments "" (the
 * OpenAI SDK starts the call from it and appends later pieces). */
static rl_err enc_call(chat_enc *s, const xl_reply *r, const xl_event *ev, rl_buf *out)
{
    if (ev->index != s->ncalls)
        return RL_UPSTREAM_PROTOCOL; /* calls come in order, 0, 1, ... */
    s->ncalls++;
    return put_chunk(s, r,
                     json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls", "index",
                               ev->index, "id", ev->id ? ev->id : "", "type", "function",
                               "function", "name", ev->name ? ev->name : "", "arguments", ""),
                     NULL, out);
}

static rl_err enc_args(chat_enc *s, const xl_reply *r, const xl_event *ev, rl_buf *out)
{
    if (ev->index < 0 || ev->index >= s->ncalls)
        return RL_UPSTREAM_PROTOCOL; /* arguments of a call never started */
    return put_chunk(s, r,
                     json_pack("{s:[{s:i, s:{s:s}}]}", "tool_calls", "index", ev->index, "function",
                               "arguments", ev->text ? ev->text : ""),
                     NULL, out);
}

static rl_err enc_stop(chat_enc *s, const xl_reply *r, const xl_event *ev, rl_buf *out)
{
    if (s->stopped) /* one finish chunk per choice */
        return RL_OK;
    s->stopped = 1;
    return put_chunk(s, r, json_object(), reason_of(ev->stop, s->ncalls > 0), out);
}

static rl_err enc_usage(chat_enc *s, const xl_reply *r, const xl_event *ev, rl_buf *out)
{
    (void)r, (void)out; /* written at END, in the last chunk */
    merge_usage(s, ev);
    return RL_OK;
}

static rl_err enc_end_ev(chat_enc *s, const xl_reply *r, const xl_event *ev, rl_buf *out)
{
    (void)ev;
    return enc_end(s, r, out);
}

static rl_err enc_nothing(chat_enc *s, const xl_reply *r, const xl_event *ev, rl_buf *out)
{
    (void)s, (void)r, (void)ev, (void)out;
    return RL_OK;
}

typedef rl_err (*enc_fn)(chat_enc *s, const xl_reply *r, const xl_event *ev, rl_buf *out);

/* What each model event becomes. START's role chunk is written before the
 * first event of any kind (so a stream whose decoder starts with text
 * still opens properly); THINKING has no place in Chat Completions. */
static const enc_fn enc_fns[] = {
    [XL_EV_START] = enc_nothing,  [XL_EV_TEXT] = enc_text,      [XL_EV_THINKING] = enc_nothing,
    [XL_EV_TOOL_CALL] = enc_call, [XL_EV_TOOL_ARGS] = enc_args, [XL_EV_STOP] = enc_stop,
    [XL_EV_USAGE] = enc_usage,    [XL_EV_END] = enc_end_ev,     [XL_EV_ERROR] = NULL,
};

static rl_err chat_enc_event(void *state, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    chat_enc *s = state;
    if (s->over || (unsigned)ev->kind >= sizeof enc_fns / sizeof enc_fns[0])
        return RL_UPSTREAM_PROTOCOL;
    if (ev->kind == XL_EV_ERROR) /* no role chunk first: the stream ends here */
        return enc_error(s, ev, out);
    rl_err err = RL_OK;
    if (!s->started)
        err = enc_start(s, reply, ev->kind == XL_EV_START ? ev->id : NULL, out);
    return err == RL_OK ? enc_fns[ev->kind](s, reply, ev, out) : err;
}

/* ==== the dialect ========================================================= */

#define CAP(f) (1u << (f))

const xl_dialect xl_openai_chat = {
    .id = XL_OPENAI_CHAT,
    .name = "OpenAI Chat Completions",
    /* Not XL_F_CHOICES: the model's answer holds one choice, so a
     * translated answer would lose the others (a Gemini client's
     * candidateCount 2 would get one candidate back). */
    .caps = CAP(XL_F_SEED) | CAP(XL_F_PENALTIES) | CAP(XL_F_JSON_OBJECT) | CAP(XL_F_JSON_SCHEMA) |
            CAP(XL_F_IMAGE_URL) | CAP(XL_F_IMAGE) | CAP(XL_F_TOOLS) | CAP(XL_F_PARALLEL_OFF) |
            CAP(XL_F_THINKING) | CAP(XL_F_STOP),
    .carries_thinking = 0,
    .decode_request = chat_decode_request,
    .encode_request = chat_encode_request,
    .decode_response = chat_decode_response,
    .encode_response = chat_encode_response,
    .decode_error = chat_decode_error,
    .stream_framing = FRAME_SSE,
    .dec_size = sizeof(chat_dec),
    .dec_event = chat_dec_event,
    .dec_finish = chat_dec_finish,
    .enc_size = sizeof(chat_enc),
    .enc_event = chat_enc_event,
};
