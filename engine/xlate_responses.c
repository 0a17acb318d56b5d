/*
 * xlate_responses.c — the OpenAI Responses API (POST /v1/responses) as a
 * dialect of the translation model (xlate.h): its answers, errors and
 * streams, and the dialect's xl_dialect table. The request side
 * (decode_request, encode_request) is in xlate_responses_request.c; what the
 * two files share is declared in xlate_responses_int.h.
 *
 * Answers: a response object; output items reasoning (summary_text) ->
 * THINKING, message output_text -> TEXT, refusal -> TEXT with stop FILTER,
 * function_call -> TOOL_CALL; status and incomplete_details.reason <->
 * stop (tables below); usage with input_tokens_details.cached_tokens and
 * output_tokens_details.reasoning_tokens. Streams are typed SSE events with
 * sequence numbers, ended by response.completed / response.incomplete (this
 * API has no separate terminator); errors are the `error` event (and
 * response.failed).
 */

#include "engine/xlate_responses_int.h"

#include <stdlib.h>
#include <string.h>

#include "engine/prov_json.h"
#include "engine/xlate.h"

/* ---- answers ------------------------------------------------------------ */

/* The model's stop as a response's status and incomplete reason. */
static const struct {
    xl_stop stop;
    const char *status;
    const char *reason; /* incomplete_details.reason, NULL: none */
} stop_out[] = {
    {XL_STOP_UNSET, "completed", NULL},
    {XL_STOP_END, "completed", NULL},
    {XL_STOP_LENGTH, "incomplete", "max_output_tokens"},
    {XL_STOP_TOOL, "completed", NULL},
    {XL_STOP_SEQUENCE, "completed", NULL},
    {XL_STOP_FILTER, "incomplete", "content_filter"},
    {XL_STOP_OTHER, "completed", NULL},
};

/* An incomplete response's reason as the model's stop. */
static const struct {
    const char *reason;
    xl_stop stop;
} reasons_in[] = {
    {"max_output_tokens", XL_STOP_LENGTH},
    {"content_filter", XL_STOP_FILTER},
};

static size_t stop_row(xl_stop stop)
{
    for (size_t k = 0; k < sizeof stop_out / sizeof stop_out[0]; k++)
        if (stop_out[k].stop == stop)
            return k;
    return 0;
}

/* The stop a finished response object says: completed is a natural end
 * (or tool calls, when it made some: this API has no stop reason of its
 * own for them); incomplete by its reason; failed or cancelled: other. */
static xl_stop stop_of(json_t *response, int calls)
{
    const char *status = json_string_value(json_object_get(response, "status"));
    if (!status || strcmp(status, "completed") == 0)
        return calls ? XL_STOP_TOOL : XL_STOP_END;
    if (strcmp(status, "incomplete") != 0)
        return XL_STOP_OTHER;
    const char *reason = json_string_value(
        json_object_get(json_object_get(response, "incomplete_details"), "reason"));
    for (size_t k = 0; reason && k < sizeof reasons_in / sizeof reasons_in[0]; k++)
        if (strcmp(reasons_in[k].reason, reason) == 0)
            return reasons_in[k].stop;
    return XL_STOP_OTHER;
}

static void usage_of(json_t *usage, prov_usage *u, int64_t *reasoning)
{
    if (!json_is_object(usage))
        return;
    u->input = prov_json_int(usage, "input_tokens");
    u->output = prov_json_int(usage, "output_tokens");
    u->cached_input =
        prov_json_int(json_object_get(usage, "input_tokens_details"), "cached_tokens");
    *reasoning = prov_json_int(json_object_get(usage, "output_tokens_details"), "reasoning_tokens");
}

/* Reads one output item into parts. */
static rl_err read_item(rl_pool *pool, json_t *item, xl_response *out, int *calls)
{
    const char *type = json_string_value(json_object_get(item, "type"));
    if (!type)
        return RL_UPSTREAM_PROTOCOL;
    xl_part *p;
    if (strcmp(type, "function_call") == 0) {
        const char *id = json_string_value(json_object_get(item, "call_id"));
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *args = json_string_value(json_object_get(item, "arguments"));
        if (!id || !name)
            return RL_UPSTREAM_PROTOCOL;
        (*calls)++;
        if (!(p = resp_push(pool, (void **)&out->parts, &out->nparts, sizeof *p)))
            return RL_NOMEM;
        *p = (xl_part){.kind = XL_PART_TOOL_CALL};
        return (p->id = rl_pstrdup(pool, id)) && (p->name = rl_pstrdup(pool, name)) &&
                       (p->arguments = rl_pstrdup(pool, args && *args ? args : "{}"))
                   ? RL_OK
                   : RL_NOMEM;
    }
    if (strcmp(type, "reasoning") == 0) {
        rl_buf text;
        rl_buf_init(&text, 0);
        resp_join_texts(&text, json_object_get(item, "summary"));
        if (!text.len)
            resp_join_texts(&text, json_object_get(item, "content"));
        rl_err err = rl_buf_error(&text);
        if (err == RL_OK && text.len) {
            if (!(p = resp_push(pool, (void **)&out->parts, &out->nparts, sizeof *p)) ||
                !(p->text = rl_pstrdup(pool, text.data)))
                err = RL_NOMEM;
            else
                p->kind = XL_PART_THINKING;
        }
        rl_buf_release(&text);
        return err;
    }
    if (strcmp(type, "message") != 0)
        return RL_OK; /* built-in tool calls: never asked for by a translation */
    size_t j;
    json_t *part;
    json_array_foreach(json_object_get(item, "content"), j, part)
    {
        const char *ptype = json_string_value(json_object_get(part, "type"));
        int refusal = ptype && strcmp(ptype, "refusal") == 0;
        const char *text = json_string_value(json_object_get(part, refusal ? "refusal" : "text"));
        if (!text)
            continue;
        if (refusal)
            out->stop = XL_STOP_FILTER;
        if (!(p = resp_push(pool, (void **)&out->parts, &out->nparts, sizeof *p)) ||
            !(p->text = rl_pstrdup(pool, text)))
            return RL_NOMEM;
        p->kind = XL_PART_TEXT;
    }
    return RL_OK;
}

static rl_err resp_decode_response(const char *body, size_t len, rl_pool *pool, xl_response *out)
{
    *out = (xl_response){.usage = PROV_USAGE_UNKNOWN, .reasoning_tokens = -1};
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = RL_OK;
    json_t *output = json_object_get(root, "output");
    if (!json_is_array(output)) {
        err = RL_UPSTREAM_PROTOCOL;
        goto out;
    }
    const char *id = json_string_value(json_object_get(root, "id"));
    const char *model = json_string_value(json_object_get(root, "model"));
    if ((id && !(out->id = rl_pstrdup(pool, id))) ||
        (model && !(out->model = rl_pstrdup(pool, model)))) {
        err = RL_NOMEM;
        goto out;
    }
    int calls = 0;
    size_t i;
    json_t *item;
    json_array_foreach(output, i, item)
    {
        if ((err = read_item(pool, item, out, &calls)) != RL_OK)
            goto out;
    }
    if (out->stop == XL_STOP_UNSET)
        out->stop = stop_of(root, calls);
    usage_of(json_object_get(root, "usage"), &out->usage, &out->reasoning_tokens);
out:
    json_decref(root);
    return err;
}

static json_t *usage_json(const prov_usage *u, int64_t reasoning)
{
    if (u->input < 0 && u->output < 0)
        return json_null();
    json_int_t in = u->input > 0 ? u->input : 0, outp = u->output > 0 ? u->output : 0;
    return json_pack("{s:I, s:{s:I}, s:I, s:{s:I}, s:I}", "input_tokens", in,
                     "input_tokens_details", "cached_tokens",
                     (json_int_t)(u->cached_input > 0 ? u->cached_input : 0), "output_tokens", outp,
                     "output_tokens_details", "reasoning_tokens",
                     (json_int_t)(reasoning > 0 ? reasoning : 0), "total_tokens", in + outp);
}

/* The id of the output item at index: prefix and index, stable so a
 * cached answer and its stream replay the same ids. */
static json_t *item_id(const char *prefix, size_t index)
{
    return json_sprintf("%s_%zu", prefix, index);
}

static json_t *output_text(const char *text)
{
    return json_pack("{s:s, s:s, s:[]}", "type", "output_text", "text", text, "annotations");
}

static json_t *summary_text(const char *text)
{
    return json_pack("{s:s, s:s}", "type", "summary_text", "text", text);
}

/* The output items of resp: consecutive TEXT parts make one message item,
 * each THINKING a reasoning item, each TOOL_CALL a function_call item.
 * Redacted thinking (an opaque blob) has no place and is left out. */
static json_t *output_json(const xl_response *resp, const char *item_status)
{
    json_t *output = json_array();
    json_t *content = NULL;
    int failed = !output;
    for (size_t p = 0; p < resp->nparts && !failed; p++) {
        const xl_part *part = &resp->parts[p];
        size_t index = json_array_size(output);
        if (part->kind == XL_PART_TEXT) {
            if (!content &&
                !(content = resp_append_with_content(
                      output, json_pack("{s:o, s:s, s:s, s:s, s:[]}", "id", item_id("msg", index),
                                        "type", "message", "status", item_status, "role",
                                        "assistant", "content")))) {
                failed = 1;
                break;
            }
            failed |= json_array_append_new(content, output_text(part->text ? part->text : ""));
            continue;
        }
        content = NULL;
        if (part->kind == XL_PART_THINKING && !part->redacted)
            failed |= json_array_append_new(
                output,
                json_pack("{s:o, s:s, s:[o]}", "id", item_id("rs", index), "type", "reasoning",
                          "summary", summary_text(part->text ? part->text : "")));
        else if (part->kind == XL_PART_TOOL_CALL)
            failed |= json_array_append_new(
                output, json_pack("{s:o, s:s, s:s, s:s, s:s, s:s}", "id", item_id("fc", index),
                                  "type", "function_call", "status", "completed", "call_id",
                                  part->id ? part->id : "", "name", part->name ? part->name : "",
                                  "arguments", part->arguments ? part->arguments : "{}"));
    }
    return prov_json_check(output, failed);
}

/* A whole response object (the non-stream answer, and response.completed
 * of a stream). */
static json_t *response_json(const xl_response *resp, const xl_reply *reply)
{
    size_t row = stop_row(resp->stop);
    json_t *details =
        stop_out[row].reason ? json_pack("{s:s}", "reason", stop_out[row].reason) : json_null();
    return json_pack("{s:s, s:s, s:I, s:s, s:n, s:o, s:s, s:o, s:o}", "id",
                     resp->id ? resp->id : (reply->id ? reply->id : ""), "object", "response",
                     "created_at", (json_int_t)reply->created, "status", stop_out[row].status,
                     "error", "incomplete_details", details, "model",
                     reply->model ? reply->model : "", "output",
                     output_json(resp, stop_out[row].reason ? "incomplete" : "completed"), "usage",
                     usage_json(&resp->usage, resp->reasoning_tokens));
}

static rl_err resp_encode_response(const xl_response *resp, const xl_reply *reply, rl_buf *out)
{
    return prov_json_put(out, "", response_json(resp, reply), JSON_COMPACT, "");
}

static rl_err resp_decode_error(const char *body, size_t len, rl_pool *pool, xl_error *out)
{
    *out = (xl_error){0};
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_OK);
    /* {"error":{message,type,code}} as a body; a stream's error event has
     * message and code at its top; response.failed has response.error. */
    json_t *e = json_object_get(root, "error");
    if (!json_is_object(e))
        e = json_object_get(json_object_get(root, "response"), "error");
    if (!json_is_object(e))
        e = root;
    const char *message = json_string_value(json_object_get(e, "message"));
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!type || strcmp(type, "error") == 0)
        type = json_string_value(json_object_get(e, "code"));
    rl_err err = RL_OK;
    if ((message && !(out->message = rl_pstrdup(pool, message))) ||
        (type && !(out->type = rl_pstrdup(pool, type))))
        err = RL_NOMEM;
    json_decref(root);
    return err;
}

/* ---- streams: upstream side --------------------------------------------- */

typedef struct dec_state {
    int started, ended;
    int *call_out;  /* the output_index of each call (pool) */
    int *call_args; /* whether argument text was emitted for it */
    size_t ncalls;
} dec_state;

typedef struct dec_call {
    dec_state *s;
    rl_pool *pool;
    json_t *ev;
    xl_emit_fn emit;
    void *ctx;
} dec_call;

static rl_err emit(dec_call *d, const xl_event *ev)
{
    return d->emit(d->ctx, ev) ? RL_STOPPED : RL_OK;
}

/* START once, before anything else. */
static rl_err start(dec_call *d, json_t *response)
{
    if (d->s->started)
        return RL_OK;
    d->s->started = 1;
    xl_event ev = {.kind = XL_EV_START,
                   .id = json_string_value(json_object_get(response, "id")),
                   .model = json_string_value(json_object_get(response, "model"))};
    return emit(d, &ev);
}

static rl_err on_created(dec_call *d)
{
    return start(d, json_object_get(d->ev, "response"));
}

static rl_err delta(dec_call *d, xl_event_kind kind)
{
    const char *text = json_string_value(json_object_get(d->ev, "delta"));
    rl_err err = start(d, NULL);
    if (err != RL_OK || !text || !*text)
        return err;
    xl_event ev = {.kind = kind, .text = text};
    return emit(d, &ev);
}

static rl_err on_text(dec_call *d)
{
    return delta(d, XL_EV_TEXT);
}

static rl_err on_thinking(dec_call *d)
{
    return delta(d, XL_EV_THINKING);
}

/* The model's index of the call streamed at output_index, or -1. */
static int call_index(dec_call *d)
{
    json_int_t out = json_integer_value(json_object_get(d->ev, "output_index"));
    for (size_t i = 0; i < d->s->ncalls; i++)
        if (d->s->call_out[i] == out)
            return (int)i;
    return -1;
}

static rl_err args(dec_call *d, int index, const char *text)
{
    if (!text || !*text)
        return RL_OK;
    d->s->call_args[index] = 1;
    xl_event ev = {.kind = XL_EV_TOOL_ARGS, .index = index, .text = text};
    return emit(d, &ev);
}

static rl_err on_item_added(dec_call *d)
{
    json_t *item = json_object_get(d->ev, "item");
    const char *type = json_string_value(json_object_get(item, "type"));
    rl_err err = start(d, NULL);
    if (err != RL_OK || !type || strcmp(type, "function_call") != 0)
        return err;
    dec_state *s = d->s;
    size_t n = s->ncalls;
    int *out = resp_push(d->pool, (void **)&s->call_out, &n, sizeof *out);
    n = s->ncalls;
    int *emitted = resp_push(d->pool, (void **)&s->call_args, &n, sizeof *emitted);
    if (!out || !emitted)
        return RL_NOMEM;
    *out = (int)json_integer_value(json_object_get(d->ev, "output_index"));
    int index = (int)s->ncalls++;
    xl_event ev = {.kind = XL_EV_TOOL_CALL,
                   .index = index,
                   .id = json_string_value(json_object_get(item, "call_id")),
                   .name = json_string_value(json_object_get(item, "name"))};
    if (!ev.id || !ev.name)
        return RL_UPSTREAM_PROTOCOL;
    if ((err = emit(d, &ev)) != RL_OK)
        return err;
    return args(d, index, json_string_value(json_object_get(item, "arguments")));
}

static rl_err on_args(dec_call *d)
{
    int index = call_index(d);
    if (index < 0)
        return RL_UPSTREAM_PROTOCOL;
    return args(d, index, json_string_value(json_object_get(d->ev, "delta")));
}

/* Arguments sent whole at the end only (no deltas): passed on then. */
static rl_err on_args_done(dec_call *d)
{
    int index = call_index(d);
    if (index < 0)
        return RL_UPSTREAM_PROTOCOL;
    if (d->s->call_args[index])
        return RL_OK;
    return args(d, index, json_string_value(json_object_get(d->ev, "arguments")));
}

static rl_err on_finished(dec_call *d)
{
    json_t *response = json_object_get(d->ev, "response");
    rl_err err = start(d, response);
    if (err != RL_OK)
        return err;
    xl_event ev = {.kind = XL_EV_STOP, .stop = stop_of(response, d->s->ncalls > 0)};
    if ((err = emit(d, &ev)) != RL_OK)
        return err;
    ev = (xl_event){.kind = XL_EV_USAGE, .usage = PROV_USAGE_UNKNOWN, .reasoning_tokens = -1};
    usage_of(json_object_get(response, "usage"), &ev.usage, &ev.reasoning_tokens);
    if ((err = emit(d, &ev)) != RL_OK)
        return err;
    d->s->ended = 1;
    ev = (xl_event){.kind = XL_EV_END};
    return emit(d, &ev);
}

static rl_err on_error(dec_call *d)
{
    json_t *e = json_object_get(json_object_get(d->ev, "response"), "error");
    if (!json_is_object(e))
        e = json_is_object(json_object_get(d->ev, "error")) ? json_object_get(d->ev, "error")
                                                            : d->ev;
    xl_event ev = {.kind = XL_EV_ERROR,
                   .text = json_string_value(json_object_get(e, "message")),
                   .type = json_string_value(json_object_get(e, "code"))};
    if (!ev.type)
        ev.type = json_string_value(json_object_get(e, "type"));
    d->s->ended = 1;
    return emit(d, &ev);
}

/* The events that carry something for the model; the others
 * (in_progress, content_part.*, *.done of text, output_item.done) repeat
 * what the deltas said. */
static const struct {
    const char *type;
    rl_err (*on)(dec_call *d);
} dec_events[] = {
    {"response.created", on_created},
    {"response.output_item.added", on_item_added},
    {"response.output_text.delta", on_text},
    {"response.refusal.delta", on_text},
    {"response.reasoning_summary_text.delta", on_thinking},
    {"response.reasoning_text.delta", on_thinking},
    {"response.function_call_arguments.delta", on_args},
    {"response.function_call_arguments.done", on_args_done},
    {"response.completed", on_finished},
    {"response.incomplete", on_finished},
    {"response.failed", on_error},
    {"error", on_error},
};

static rl_err resp_dec_event(void *state, rl_pool *pool, const char *event, const char *data,
                             size_t len, xl_emit_fn emit_fn, void *ctx)
{
    dec_state *s = state;
    if (s->ended)
        return RL_OK;
    json_error_t jerr;
    json_t *ev = prov_json_load(data, len, &jerr);
    if (!ev)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    /* The type is in the data; the SSE event name repeats it. */
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type && event && strcmp(event, "message") != 0)
        type = event;
    dec_call d = {s, pool, ev, emit_fn, ctx};
    rl_err err = RL_OK;
    for (size_t k = 0; type && k < sizeof dec_events / sizeof dec_events[0]; k++)
        if (strcmp(dec_events[k].type, type) == 0) {
            err = dec_events[k].on(&d);
            break;
        }
    json_decref(ev);
    return err;
}

/* response.completed ends the stream; nothing is pending at the end of the
 * bytes (a stream without it was cut, and gets no END). */
static rl_err resp_dec_finish(void *state, rl_pool *pool, xl_emit_fn emit_fn, void *ctx)
{
    (void)state, (void)pool, (void)emit_fn, (void)ctx;
    return RL_OK;
}

/* ---- streams: client side ----------------------------------------------- */

/* The most text the encoder keeps to repeat at the end. The upstream's
 * answer is already held to [limits] max_response (32 MiB by default)
 * before it reaches a translator; this only bounds the copy if that limit
 * is raised far. */
#define ENC_MAX_TEXT ((size_t)256 << 20)

typedef enum { IT_MESSAGE, IT_REASONING, IT_CALL } item_kind;

/* One output item as streamed so far. */
typedef struct enc_item {
    item_kind kind;
    int tool; /* IT_CALL: the model's index of the call */
    int closed;
    rl_buf text; /* the text, the reasoning or the arguments so far */
    rl_buf call_id, name;
} enc_item;

typedef struct enc_state {
    int started, over;
    int seq;
    rl_buf id; /* the response id given at START */
    enc_item
        *items; /* malloc: freed at END, ERROR or by resp_enc_release (xl_dialect.enc_release) */
    size_t nitems;
    size_t open; /* 1 + the index of the open message or reasoning item, 0: none */
    xl_stop stop;
    int have_usage;
    prov_usage usage;
    int64_t reasoning;
} enc_state;

/* xl_dialect.enc_release: frees the copies the state holds; the state is
 * then as if zeroed. Safe on a zeroed state and after END or ERROR. */
static void resp_enc_release(void *state)
{
    enc_state *s = state;
    for (size_t i = 0; i < s->nitems; i++) {
        rl_buf_release(&s->items[i].text);
        rl_buf_release(&s->items[i].call_id);
        rl_buf_release(&s->items[i].name);
    }
    free(s->items);
    rl_buf_release(&s->id);
    *s = (enc_state){0};
}

/* Appends "event: TYPE\ndata: {...}\n\n": type and sequence_number
 * first, as OpenAI writes them (easier to read in a log), then ev's
 * members (taking ev; NULL, a json_pack that failed, is RL_NOMEM). */
static rl_err put_event(enc_state *s, rl_buf *out, const char *type, json_t *ev)
{
    if (!ev)
        return RL_NOMEM;
    json_t *full = json_pack("{s:s, s:I}", "type", type, "sequence_number", (json_int_t)s->seq++);
    if (full && json_object_update(full, ev) != 0) {
        json_decref(full);
        full = NULL;
    }
    json_decref(ev);
    rl_buf_printf(out, "event: %s\ndata: ", type);
    return prov_json_put(out, "", full, JSON_COMPACT, "\n\n");
}

static const char *text_of(const rl_buf *b)
{
    return b->data ? b->data : "";
}

/* The response as response.created shows it: no output yet. */
static json_t *response_start(enc_state *s, const xl_reply *reply)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:n, s:n, s:s, s:[], s:n}", "id", text_of(&s->id),
                     "object", "response", "created_at", (json_int_t)reply->created, "status",
                     "in_progress", "error", "incomplete_details", "model",
                     reply->model ? reply->model : "", "output", "usage");
}

static rl_err ensure_started(enc_state *s, const xl_reply *reply, const char *id, rl_buf *out)
{
    if (s->started)
        return RL_OK;
    s->started = 1;
    rl_buf_init(&s->id, 0);
    rl_buf_puts(&s->id, id ? id : (reply->id ? reply->id : ""));
    if (rl_buf_error(&s->id) != RL_OK)
        return RL_NOMEM;
    rl_err err = put_event(s, out, "response.created",
                           json_pack("{s:o}", "response", response_start(s, reply)));
    if (err == RL_OK)
        err = put_event(s, out, "response.in_progress",
                        json_pack("{s:o}", "response", response_start(s, reply)));
    return err;
}

/* A new output item of kind, announced (output_item.added and, for text,
 * its part). NULL when out of memory (err set). */
static enc_item *open_item(enc_state *s, item_kind kind, const xl_event *ev, rl_buf *out,
                           rl_err *err)
{
    size_t n = s->nitems;
    if (n == 0 || (n & (n - 1)) == 0) {
        enc_item *bigger = realloc(s->items, sizeof *bigger * (n ? n * 2 : 4));
        if (!bigger) {
            *err = RL_NOMEM;
            return NULL;
        }
        s->items = bigger;
    }
    enc_item *it = &s->items[s->nitems++];
    *it = (enc_item){.kind = kind, .tool = ev->index};
    rl_buf_init(&it->text, ENC_MAX_TEXT);
    rl_buf_init(&it->call_id, 0);
    rl_buf_init(&it->name, 0);
    json_int_t index = (json_int_t)n;
    json_t *item = NULL;
    if (kind == IT_MESSAGE)
        item = json_pack("{s:o, s:s, s:s, s:s, s:[]}", "id", item_id("msg", n), "type", "message",
                         "status", "in_progress", "role", "assistant", "content");
    else if (kind == IT_REASONING)
        item =
            json_pack("{s:o, s:s, s:[]}", "id", item_id("rs", n), "type", "reasoning", "summary");
    else {
        rl_buf_puts(&it->call_id, ev->id ? ev->id : "");
        rl_buf_puts(&it->name, ev->name ? ev->name : "");
        if (rl_buf_error(&it->call_id) == RL_OK && rl_buf_error(&it->name) == RL_OK)
            item = json_pack("{s:o, s:s, s:s, s:s, s:s, s:s}", "id", item_id("fc", n), "type",
                             "function_call", "status", "in_progress", "call_id",
                             text_of(&it->call_id), "name", text_of(&it->name), "arguments", "");
    }
    *err = put_event(s, out, "response.output_item.added",
                     item ? json_pack("{s:I, s:o}", "output_index", index, "item", item) : NULL);
    if (*err == RL_OK && kind == IT_MESSAGE)
        *err = put_event(s, out, "response.content_part.added",
                         json_pack("{s:o, s:I, s:i, s:o}", "item_id", item_id("msg", n),
                                   "output_index", index, "content_index", 0, "part",
                                   output_text("")));
    if (*err == RL_OK && kind == IT_REASONING)
        *err =
            put_event(s, out, "response.reasoning_summary_part.added",
                      json_pack("{s:o, s:I, s:i, s:o}", "item_id", item_id("rs", n), "output_index",
                                index, "summary_index", 0, "part", summary_text("")));
    return *err == RL_OK ? it : NULL;
}

/* The item as the output array holds it when complete. */
static json_t *item_done_json(const enc_item *it, size_t n)
{
    if (it->kind == IT_MESSAGE)
        return json_pack("{s:o, s:s, s:s, s:s, s:[o]}", "id", item_id("msg", n), "type", "message",
                         "status", "completed", "role", "assistant", "content",
                         output_text(text_of(&it->text)));
    if (it->kind == IT_REASONING)
        return json_pack("{s:o, s:s, s:[o]}", "id", item_id("rs", n), "type", "reasoning",
                         "summary", summary_text(text_of(&it->text)));
    return json_pack("{s:o, s:s, s:s, s:s, s:s, s:s}", "id", item_id("fc", n), "type",
                     "function_call", "status", "completed", "call_id", text_of(&it->call_id),
                     "name", text_of(&it->name), "arguments",
                     it->text.len ? text_of(&it->text) : "{}");
}

/* The *.done events of item n, which repeat its whole text. */
static rl_err close_item(enc_state *s, size_t n, rl_buf *out)
{
    enc_item *it = &s->items[n];
    if (it->closed)
        return RL_OK;
    it->closed = 1;
    if (rl_buf_error(&it->text) != RL_OK)
        return rl_buf_error(&it->text);
    json_int_t index = (json_int_t)n;
    const char *text = text_of(&it->text);
    rl_err err = RL_OK;
    if (it->kind == IT_MESSAGE) {
        err = put_event(s, out, "response.output_text.done",
                        json_pack("{s:o, s:I, s:i, s:s, s:[]}", "item_id", item_id("msg", n),
                                  "output_index", index, "content_index", 0, "text", text,
                                  "logprobs"));
        if (err == RL_OK)
            err = put_event(s, out, "response.content_part.done",
                            json_pack("{s:o, s:I, s:i, s:o}", "item_id", item_id("msg", n),
                                      "output_index", index, "content_index", 0, "part",
                                      output_text(text)));
    } else if (it->kind == IT_REASONING) {
        err = put_event(s, out, "response.reasoning_summary_text.done",
                        json_pack("{s:o, s:I, s:i, s:s}", "item_id", item_id("rs", n),
                                  "output_index", index, "summary_index", 0, "text", text));
        if (err == RL_OK)
            err = put_event(s, out, "response.reasoning_summary_part.done",
                            json_pack("{s:o, s:I, s:i, s:o}", "item_id", item_id("rs", n),
                                      "output_index", index, "summary_index", 0, "part",
                                      summary_text(text)));
    } else {
        err = put_event(s, out, "response.function_call_arguments.done",
                        json_pack("{s:o, s:I, s:s}", "item_id", item_id("fc", n), "output_index",
                                  index, "arguments", it->text.len ? text : "{}"));
    }
    if (err == RL_OK)
        err = put_event(
            s, out, "response.output_item.done",
            json_pack("{s:I, s:o}", "output_index", index, "item", item_done_json(it, n)));
    return err;
}

/* A piece of text or reasoning: into the open item of that kind, or a new
 * one (closing the open one of the other kind). */
static rl_err enc_piece(enc_state *s, item_kind kind, const xl_event *ev, rl_buf *out)
{
    if (!ev->text || !*ev->text)
        return RL_OK; /* a signature alone, or an empty piece */
    rl_err err = RL_OK;
    if (!s->open || s->items[s->open - 1].kind != kind) {
        if (s->open && (err = close_item(s, s->open - 1, out)) != RL_OK)
            return err;
        s->open = 0;
        if (!open_item(s, kind, ev, out, &err))
            return err;
        s->open = s->nitems;
    }
    size_t n = s->open - 1;
    if ((err = rl_buf_puts(&s->items[n].text, ev->text)) != RL_OK)
        return err;
    json_int_t index = (json_int_t)n;
    if (kind == IT_MESSAGE)
        return put_event(s, out, "response.output_text.delta",
                         json_pack("{s:o, s:I, s:i, s:s, s:[]}", "item_id", item_id("msg", n),
                                   "output_index", index, "content_index", 0, "delta", ev->text,
                                   "logprobs"));
    return put_event(s, out, "response.reasoning_summary_text.delta",
                     json_pack("{s:o, s:I, s:i, s:s}", "item_id", item_id("rs", n), "output_index",
                               index, "summary_index", 0, "delta", ev->text));
}

/* A call opens its own item; it stays open until the end so that
 * arguments of calls streamed side by side (index 0, 1, 0 ...) still find
 * their item. */
static rl_err enc_call(enc_state *s, const xl_event *ev, rl_buf *out)
{
    rl_err err = RL_OK;
    if (s->open && (err = close_item(s, s->open - 1, out)) != RL_OK)
        return err;
    s->open = 0;
    open_item(s, IT_CALL, ev, out, &err);
    return err;
}

static rl_err enc_args(enc_state *s, const xl_event *ev, rl_buf *out)
{
    size_t n = 0;
    while (n < s->nitems && !(s->items[n].kind == IT_CALL && s->items[n].tool == ev->index))
        n++;
    if (n == s->nitems || s->items[n].closed)
        return RL_UPSTREAM_PROTOCOL;
    if (!ev->text || !*ev->text)
        return RL_OK;
    rl_err err = rl_buf_puts(&s->items[n].text, ev->text);
    if (err != RL_OK)
        return err;
    return put_event(s, out, "response.function_call_arguments.delta",
                     json_pack("{s:o, s:I, s:s}", "item_id", item_id("fc", n), "output_index",
                               (json_int_t)n, "delta", ev->text));
}

/* The whole answer streamed so far, for response.completed: the items as
 * model parts (one per item, so output_json gives each the same id). */
static rl_err enc_end(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)ev;
    rl_err err = RL_OK;
    for (size_t n = 0; n < s->nitems && err == RL_OK; n++)
        err = close_item(s, n, out);
    if (err != RL_OK)
        return err;
    xl_part *parts = calloc(s->nitems + 1, sizeof *parts);
    if (!parts)
        return RL_NOMEM;
    static const xl_part_kind part_kind[] = {[IT_MESSAGE] = XL_PART_TEXT,
                                             [IT_REASONING] = XL_PART_THINKING,
                                             [IT_CALL] = XL_PART_TOOL_CALL};
    for (size_t n = 0; n < s->nitems; n++) {
        const enc_item *it = &s->items[n];
        parts[n] = (xl_part){.kind = part_kind[it->kind],
                             .text = text_of(&it->text),
                             .id = text_of(&it->call_id),
                             .name = text_of(&it->name),
                             .arguments = it->text.len ? text_of(&it->text) : "{}"};
    }
    xl_response resp = {.id = text_of(&s->id),
                        .parts = parts,
                        .nparts = s->nitems,
                        .stop = s->stop,
                        .usage = s->have_usage ? s->usage : PROV_USAGE_UNKNOWN,
                        .reasoning_tokens = s->have_usage ? s->reasoning : -1};
    const char *status = stop_out[stop_row(s->stop)].status;
    err = put_event(
        s, out, strcmp(status, "incomplete") == 0 ? "response.incomplete" : "response.completed",
        json_pack("{s:o}", "response", response_json(&resp, reply)));
    free(parts);
    return err;
}

/* The error event, then response.failed so that a client keeping the
 * response's state (the SDK's ResponseStream) ends with status failed. */
static rl_err enc_error(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    const char *code = ev->type ? ev->type : "api_error";
    const char *message = ev->text ? ev->text : "the upstream's stream failed";
    rl_err err = put_event(s, out, "error",
                           json_pack("{s:s, s:s, s:n}", "code", code, "message", message, "param"));
    if (err != RL_OK || !s->started)
        return err;
    json_t *response = response_start(s, reply);
    if (response &&
        (json_object_set_new(response, "status", json_string("failed")) != 0 ||
         json_object_set_new(response, "error",
                             json_pack("{s:s, s:s}", "code", code, "message", message)) != 0)) {
        json_decref(response);
        response = NULL;
    }
    return put_event(s, out, "response.failed",
                     response ? json_pack("{s:o}", "response", response) : NULL);
}

static rl_err on_enc_text(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    return enc_piece(s, IT_MESSAGE, ev, out);
}

static rl_err on_enc_thinking(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    return enc_piece(s, IT_REASONING, ev, out);
}

static rl_err on_enc_call(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    return enc_call(s, ev, out);
}

static rl_err on_enc_args(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    return enc_args(s, ev, out);
}

static rl_err on_enc_stop(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply, (void)out;
    s->stop = ev->stop;
    return RL_OK;
}

/* Counts told so far; a later event may tell more of them. */
static rl_err on_enc_usage(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply, (void)out;
    if (!s->have_usage) {
        s->have_usage = 1;
        s->usage = PROV_USAGE_UNKNOWN;
        s->reasoning = -1;
    }
    s->usage.input = ev->usage.input >= 0 ? ev->usage.input : s->usage.input;
    s->usage.output = ev->usage.output >= 0 ? ev->usage.output : s->usage.output;
    s->usage.cached_input =
        ev->usage.cached_input >= 0 ? ev->usage.cached_input : s->usage.cached_input;
    s->reasoning = ev->reasoning_tokens >= 0 ? ev->reasoning_tokens : s->reasoning;
    return RL_OK;
}

typedef rl_err (*enc_fn)(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out);

/* What each model event does to the client's stream; START (NULL) only
 * makes the response begin, which every event does first. END and ERROR
 * end the stream (resp_enc_event). */
static const enc_fn enc_on[] = {
    [XL_EV_START] = NULL,
    [XL_EV_TEXT] = on_enc_text,
    [XL_EV_THINKING] = on_enc_thinking,
    [XL_EV_TOOL_CALL] = on_enc_call,
    [XL_EV_TOOL_ARGS] = on_enc_args,
    [XL_EV_STOP] = on_enc_stop,
    [XL_EV_USAGE] = on_enc_usage,
    [XL_EV_END] = enc_end,
    [XL_EV_ERROR] = enc_error,
};

static rl_err resp_enc_event(void *state, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    enc_state *s = state;
    if (s->over || (size_t)ev->kind >= sizeof enc_on / sizeof enc_on[0])
        return RL_OK;
    rl_err err = RL_OK;
    /* An error before the response began is the error event alone. */
    if (ev->kind != XL_EV_ERROR)
        err = ensure_started(s, reply, ev->kind == XL_EV_START ? ev->id : NULL, out);
    if (err == RL_OK && enc_on[ev->kind])
        err = enc_on[ev->kind](s, reply, ev, out);
    if (ev->kind == XL_EV_END || ev->kind == XL_EV_ERROR) {
        resp_enc_release(s);
        s->over = 1;
    }
    return err;
}

/* ---- the dialect ---------------------------------------------------------- */

const xl_dialect xl_openai_responses = {
    .id = XL_OPENAI_RESPONSES,
    .name = "OpenAI Responses",
    .caps = 1u << XL_F_JSON_OBJECT | 1u << XL_F_JSON_SCHEMA | 1u << XL_F_IMAGE_URL |
            1u << XL_F_IMAGE | 1u << XL_F_TOOLS | 1u << XL_F_PARALLEL_OFF | 1u << XL_F_THINKING,
    .carries_thinking = 1,
    .decode_request = resp_decode_request,
    .encode_request = resp_encode_request,
    .decode_response = resp_decode_response,
    .encode_response = resp_encode_response,
    .decode_error = resp_decode_error,
    .stream_framing = FRAME_SSE,
    .dec_size = sizeof(dec_state),
    .dec_event = resp_dec_event,
    .dec_finish = resp_dec_finish,
    .enc_size = sizeof(enc_state),
    .enc_event = resp_enc_event,
    /* A stream abandoned before END or ERROR (the client left, the
     * upstream was cut) must still free the copies the encoder holds. */
    .enc_release = resp_enc_release,
};
