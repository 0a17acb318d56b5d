/*
 * xlate_anthropic.c — the Anthropic Messages dialect of the translation
 * model (xlate.h): answers, errors and SSE streams, read into the model
 * and written from it, and the xl_dialect xl_anthropic. Its requests
 * (POST /v1/messages bodies, decode_request and encode_request) are in
 * xlate_anthropic_request.c; what the two files share is in
 * xlate_anthropic_int.h.
 *
 * Answers: content blocks text, thinking, redacted_thinking, tool_use;
 * stop_reason table below; usage input_tokens EXCLUDES cache reads and
 * writes, while the model's usage.input includes them (as prov_anthropic's
 * usage reading does), so they are added on reading and taken out on
 * writing.
 *
 * Streams: message_start, content_block_start / _delta / _stop,
 * message_delta (stop reason and final usage), message_stop (the
 * terminator); ping skipped; error events. The encoder writes one block
 * at a time, in order, as the official SDK's MessageStream expects
 * (message_start first; deltas placed by index; message_delta's usage
 * overrides message_start's). Redacted thinking has no stream event in
 * the model: a stream decoder drops it (no other dialect can carry it).
 *
 * Threads: pure functions; each call uses only its arguments.
 */
#include "engine/xlate.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/prov_json.h"
#include "engine/xlate_anthropic_int.h"

/* ---- small helpers, shared with xlate_anthropic_request.c --------------- */

/* A pool copy of a JSON string (NULL only when out of memory). */
const char *anth_pstr(rl_pool *pool, const json_t *s)
{
    return rl_pstrndup(pool, json_string_value(s), json_string_length(s));
}

/* Parses JSON text the model holds (arguments, a schema), which must be
 * an object. NULL with *err set: RL_NOMEM, or bad for anything else. */
json_t *anth_load_object(const char *text, rl_err bad, rl_err *err)
{
    json_error_t jerr;
    json_t *j = prov_json_load(text, strlen(text), &jerr);
    if (!j) {
        *err = prov_json_failed(&jerr, bad);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *err = bad;
        return NULL;
    }
    return j;
}

/* ---- stop reasons and usage --------------------------------------------- */

/* Anthropic's stop_reason values and the model's, both ways. Reading
 * takes the first row with the name; writing uses enc_stop below. */
static const struct {
    const char *name;
    xl_stop stop;
} stop_reasons[] = {
    {"end_turn", XL_STOP_END},
    {"max_tokens", XL_STOP_LENGTH},
    {"stop_sequence", XL_STOP_SEQUENCE},
    {"tool_use", XL_STOP_TOOL},
    {"refusal", XL_STOP_FILTER},
    /* A long server-tool turn paused: the client is to send it again. */
    {"pause_turn", XL_STOP_OTHER},
    {"model_context_window_exceeded", XL_STOP_LENGTH},
};

/* What each model stop is called in an Anthropic answer. OTHER and UNSET
 * are end_turn: pause_turn would make Claude Code resend the turn. */
static const char *const enc_stop[] = {
    [XL_STOP_UNSET] = "end_turn",         [XL_STOP_END] = "end_turn",
    [XL_STOP_LENGTH] = "max_tokens",      [XL_STOP_TOOL] = "tool_use",
    [XL_STOP_SEQUENCE] = "stop_sequence", [XL_STOP_FILTER] = "refusal",
    [XL_STOP_OTHER] = "end_turn",
};

static xl_stop stop_of(const char *name)
{
    if (!name)
        return XL_STOP_UNSET;
    for (size_t i = 0; i < sizeof stop_reasons / sizeof stop_reasons[0]; i++)
        if (strcmp(stop_reasons[i].name, name) == 0)
            return stop_reasons[i].stop;
    return XL_STOP_OTHER;
}

/* Reads an Anthropic usage object into u, field by field (absent fields
 * keep their value): input counts cache reads and writes too. */
static void usage_read(const json_t *usage, prov_usage *u)
{
    int64_t v, reads = prov_json_int(usage, "cache_read_input_tokens"),
               writes = prov_json_int(usage, "cache_creation_input_tokens");
    if (reads >= 0)
        u->cached_input = reads;
    if (writes >= 0)
        u->cache_write = writes;
    if ((v = prov_json_int(usage, "input_tokens")) >= 0)
        u->input = v + (u->cached_input > 0 ? u->cached_input : 0) +
                   (u->cache_write > 0 ? u->cache_write : 0);
    if ((v = prov_json_int(usage, "output_tokens")) >= 0)
        u->output = v;
}

/* The usage object of an Anthropic answer: input_tokens without the
 * cached reads and writes; unknown counts as 0 (the SDK's types require
 * both numbers), the cache counts only when known. NULL: out of memory. */
static json_t *usage_write(const prov_usage *u)
{
    int64_t cached = u->cached_input > 0 ? u->cached_input : 0;
    int64_t writes = u->cache_write > 0 ? u->cache_write : 0;
    int64_t input = u->input >= 0 ? u->input - cached - writes : 0;
    json_t *j = json_object();
    int failed = !j;
    failed |= json_object_set_new(j, "input_tokens", json_integer(input > 0 ? input : 0));
    failed |= json_object_set_new(j, "output_tokens", json_integer(u->output > 0 ? u->output : 0));
    if (u->cached_input >= 0)
        failed |= json_object_set_new(j, "cache_read_input_tokens", json_integer(u->cached_input));
    if (u->cache_write >= 0)
        failed |=
            json_object_set_new(j, "cache_creation_input_tokens", json_integer(u->cache_write));
    return prov_json_check(j, failed);
}

/* ---- answers ------------------------------------------------------------ */

/* One content block of an answer into a part: an answer's blocks have
 * the shapes of an assistant turn's, so the request's readers serve
 * (anth_block_types); what they would refuse in a request is an answer that
 * is not one. Server tool blocks cannot come: their tools are refused in
 * requests. */
static rl_err answer_part(rl_pool *pool, json_t *b, xl_part *p)
{
    const char *type = json_string_value(json_object_get(b, "type"));
    size_t k = 0;
    while (type && k < sizeof anth_block_types / sizeof anth_block_types[0] &&
           strcmp(anth_block_types[k].type, type) != 0)
        k++;
    if (!type || k == sizeof anth_block_types / sizeof anth_block_types[0] ||
        (anth_block_types[k].role >= 0 && anth_block_types[k].role != XL_ROLE_ASSISTANT))
        return RL_UPSTREAM_PROTOCOL;
    xl_request scratch;
    rl_buf why; /* the reason a request would get: not needed here */
    rl_buf_init(&why, 1);
    anth_dec d = {pool, &why, &scratch, NULL};
    rl_err err = anth_block_types[k].read(&d, b, "content", p);
    rl_buf_release(&why);
    return err == RL_BAD_REQUEST ? RL_UPSTREAM_PROTOCOL : err;
}

static rl_err anthropic_decode_response(const char *body, size_t len, rl_pool *pool,
                                        xl_response *out)
{
    memset(out, 0, sizeof *out);
    out->usage = PROV_USAGE_UNKNOWN;
    out->reasoning_tokens = -1; /* Anthropic does not count them apart */
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    const char *type = json_string_value(json_object_get(root, "type"));
    json_t *content = json_object_get(root, "content");
    json_t *id = json_object_get(root, "id"), *model = json_object_get(root, "model");
    json_t *seq = json_object_get(root, "stop_sequence");
    if (!type || strcmp(type, "message") != 0 || !json_is_array(content))
        goto out;
    err = RL_NOMEM;
    if ((json_is_string(id) && !(out->id = anth_pstr(pool, id))) ||
        (json_is_string(model) && !(out->model = anth_pstr(pool, model))) ||
        (json_is_string(seq) && !(out->stop_sequence = anth_pstr(pool, seq))))
        goto out;
    if (!(out->parts = rl_palloc(pool, (json_array_size(content) + 1) * sizeof *out->parts)))
        goto out;
    size_t i;
    json_t *b;
    err = RL_OK;
    json_array_foreach(content, i, b)
    {
        if ((err = answer_part(pool, b, &out->parts[out->nparts++])) != RL_OK)
            goto out;
    }
    out->stop = stop_of(json_string_value(json_object_get(root, "stop_reason")));
    usage_read(json_object_get(root, "usage"), &out->usage);
out:
    json_decref(root);
    return err;
}

/* One part as a content block of an answer (the SDK's types: a thinking
 * block always has a signature string). */
static json_t *answer_block(const xl_part *p, rl_err *err)
{
    *err = RL_NOMEM;
    if (p->kind == XL_PART_TEXT)
        return json_pack("{s:s, s:s}", "type", "text", "text", p->text ? p->text : "");
    if (p->kind == XL_PART_THINKING && p->redacted)
        return json_pack("{s:s, s:s}", "type", "redacted_thinking", "data", p->data ? p->data : "");
    if (p->kind == XL_PART_THINKING)
        return json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", p->text ? p->text : "",
                         "signature", p->signature ? p->signature : "");
    if (p->kind == XL_PART_TOOL_CALL) {
        /* An upstream model that wrote arguments that are not a JSON
         * object: Anthropic's input cannot hold them. */
        json_t *input =
            anth_load_object(p->arguments ? p->arguments : "{}", RL_UPSTREAM_PROTOCOL, err);
        return input ? json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id",
                                 p->id ? p->id : "", "name", p->name ? p->name : "", "input", input)
                     : NULL;
    }
    *err = RL_UPSTREAM_PROTOCOL; /* images and tool results are not answers */
    return NULL;
}

static rl_err anthropic_encode_response(const xl_response *resp, const xl_reply *reply, rl_buf *out)
{
    json_t *content = json_array();
    rl_err err = content ? RL_OK : RL_NOMEM;
    for (size_t i = 0; i < resp->nparts && err == RL_OK; i++) {
        json_t *b = answer_block(&resp->parts[i], &err);
        if (b)
            err = json_array_append_new(content, b) == 0 ? RL_OK : RL_NOMEM;
    }
    if (err != RL_OK) {
        json_decref(content);
        return err;
    }
    int tools = 0;
    for (size_t i = 0; i < resp->nparts; i++)
        tools |= resp->parts[i].kind == XL_PART_TOOL_CALL;
    xl_stop stop = resp->stop == XL_STOP_UNSET && tools ? XL_STOP_TOOL : resp->stop;
    const char *id = resp->id ? resp->id : reply->id;
    json_t *msg =
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o}", "id", id ? id : "", "type", "message",
                  "role", "assistant", "model", reply->model ? reply->model : "", "content",
                  content, "stop_reason", enc_stop[stop], "stop_sequence",
                  stop == XL_STOP_SEQUENCE && resp->stop_sequence ? json_string(resp->stop_sequence)
                                                                  : json_null(),
                  "usage", usage_write(&resp->usage));
    return prov_json_put(out, "", msg, JSON_COMPACT, "");
}

static rl_err anthropic_decode_error(const char *body, size_t len, rl_pool *pool, xl_error *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_OK);
    /* {"type":"error","error":{...}}; the bare {"error":{...}} too, as
     * proxies in front of Anthropic answer. */
    json_t *e = json_object_get(root, "error");
    json_t *msg = json_object_get(e, "message"), *type = json_object_get(e, "type");
    rl_err err = RL_OK;
    if ((json_is_string(msg) && !(out->message = anth_pstr(pool, msg))) ||
        (json_is_string(type) && !(out->type = anth_pstr(pool, type))))
        err = RL_NOMEM;
    json_decref(root);
    return err;
}

/* ---- streams: Anthropic events -> model events -------------------------- */

typedef enum { BLK_NONE, BLK_TEXT, BLK_THINKING, BLK_TOOL, BLK_OTHER } blk_kind;

/* Anthropic sends one content block at a time, so the decoder follows
 * the open one only. */
typedef struct dec_state {
    int started;
    json_int_t block; /* the open block's index */
    blk_kind kind;    /* ... and kind (BLK_NONE: none open) */
    int tool;         /* its tool call's index in the model (BLK_TOOL) */
    int ntools;       /* tool calls so far */
    prov_usage usage; /* counts told so far (started: initialised) */
} dec_state;

static int send_ev(xl_emit_fn emit, void *ctx, xl_event ev)
{
    return emit(ctx, &ev);
}

/* What each content_block_start type opens. */
static const struct {
    const char *type;
    blk_kind kind;
} start_kinds[] = {
    {"text", BLK_TEXT},
    {"thinking", BLK_THINKING},
    {"tool_use", BLK_TOOL},
};

static rl_err dec_block_start(dec_state *s, json_t *ev, xl_emit_fn emit, void *ctx)
{
    json_t *index = json_object_get(ev, "index"), *b = json_object_get(ev, "content_block");
    const char *type = json_string_value(json_object_get(b, "type"));
    if (!json_is_integer(index) || !type)
        return RL_UPSTREAM_PROTOCOL;
    s->block = json_integer_value(index);
    s->kind = BLK_OTHER; /* redacted_thinking and unknown blocks: nothing to carry */
    for (size_t i = 0; i < sizeof start_kinds / sizeof start_kinds[0]; i++)
        if (strcmp(start_kinds[i].type, type) == 0)
            s->kind = start_kinds[i].kind;
    int stop = 0;
    const char *text = NULL;
    if (s->kind == BLK_TEXT)
        text = json_string_value(json_object_get(b, "text"));
    else if (s->kind == BLK_THINKING)
        text = json_string_value(json_object_get(b, "thinking"));
    if (text && *text)
        stop = send_ev(
            emit, ctx,
            (xl_event){.kind = s->kind == BLK_TEXT ? XL_EV_TEXT : XL_EV_THINKING, .text = text});
    if (s->kind == BLK_TOOL) {
        json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name");
        json_t *input = json_object_get(b, "input");
        if (!json_is_string(id) || !json_is_string(name))
            return RL_UPSTREAM_PROTOCOL;
        s->tool = s->ntools++;
        stop = send_ev(emit, ctx,
                       (xl_event){.kind = XL_EV_TOOL_CALL,
                                  .index = s->tool,
                                  .id = json_string_value(id),
                                  .name = json_string_value(name)});
        /* The API starts tool_use with input {} and streams it; an input
         * already there is the first piece of the arguments. */
        if (!stop && json_is_object(input) && json_object_size(input)) {
            char *args = json_dumps(input, JSON_COMPACT);
            if (!args)
                return RL_NOMEM;
            stop = send_ev(emit, ctx,
                           (xl_event){.kind = XL_EV_TOOL_ARGS, .index = s->tool, .text = args});
            free(args);
        }
    }
    return stop ? RL_STOPPED : RL_OK;
}

static rl_err dec_block_delta(dec_state *s, json_t *ev, xl_emit_fn emit, void *ctx)
{
    json_t *index = json_object_get(ev, "index"), *delta = json_object_get(ev, "delta");
    const char *type = json_string_value(json_object_get(delta, "type"));
    if (s->kind == BLK_NONE || !type || (index && json_integer_value(index) != s->block))
        return RL_UPSTREAM_PROTOCOL;
    /* delta type, the block it belongs to, the member holding the piece */
    static const struct {
        const char *type;
        blk_kind kind;
        const char *member;
        xl_event_kind ev;
    } deltas[] = {
        {"text_delta", BLK_TEXT, "text", XL_EV_TEXT},
        {"thinking_delta", BLK_THINKING, "thinking", XL_EV_THINKING},
        {"signature_delta", BLK_THINKING, "signature", XL_EV_THINKING},
        {"input_json_delta", BLK_TOOL, "partial_json", XL_EV_TOOL_ARGS},
    };
    for (size_t i = 0; i < sizeof deltas / sizeof deltas[0]; i++) {
        if (strcmp(deltas[i].type, type) != 0)
            continue;
        const char *piece = json_string_value(json_object_get(delta, deltas[i].member));
        if (deltas[i].kind != s->kind || !piece)
            return RL_UPSTREAM_PROTOCOL;
        if (!*piece)
            return RL_OK;
        xl_event e = {.kind = deltas[i].ev, .index = s->tool, .text = piece};
        if (strcmp(deltas[i].member, "signature") == 0) {
            e.text = "";
            e.signature = piece;
        }
        return emit(ctx, &e) ? RL_STOPPED : RL_OK;
    }
    return RL_OK; /* citations_delta and newer kinds: nothing to carry */
}

static rl_err emit_usage(dec_state *s, xl_emit_fn emit, void *ctx)
{
    xl_event e = {.kind = XL_EV_USAGE, .usage = s->usage, .reasoning_tokens = -1};
    return emit(ctx, &e) ? RL_STOPPED : RL_OK;
}

static rl_err anthropic_dec_event(void *state, rl_pool *pool, const char *event, const char *data,
                                  size_t len, xl_emit_fn emit, void *ctx)
{
    (void)pool;
    dec_state *s = state;
    if (!s->started) {
        s->usage = PROV_USAGE_UNKNOWN;
        s->started = 1;
    }
    if (event && strcmp(event, "ping") == 0)
        return RL_OK;
    json_error_t jerr;
    json_t *ev = prov_json_load(data, len, &jerr);
    if (!ev)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    /* The type inside the data names the event (the SSE name may lack). */
    const char *type = json_string_value(json_object_get(ev, "type"));
    rl_err err = RL_OK;
    if (!type) {
        err = RL_UPSTREAM_PROTOCOL;
    } else if (strcmp(type, "message_start") == 0) {
        json_t *m = json_object_get(ev, "message");
        xl_event e = {.kind = XL_EV_START,
                      .id = json_string_value(json_object_get(m, "id")),
                      .model = json_string_value(json_object_get(m, "model"))};
        if (emit(ctx, &e))
            err = RL_STOPPED;
        else if (json_is_object(json_object_get(m, "usage"))) {
            usage_read(json_object_get(m, "usage"), &s->usage);
            err = emit_usage(s, emit, ctx);
        }
    } else if (strcmp(type, "content_block_start") == 0) {
        err = dec_block_start(s, ev, emit, ctx);
    } else if (strcmp(type, "content_block_delta") == 0) {
        err = dec_block_delta(s, ev, emit, ctx);
    } else if (strcmp(type, "content_block_stop") == 0) {
        s->kind = BLK_NONE;
    } else if (strcmp(type, "message_delta") == 0) {
        json_t *delta = json_object_get(ev, "delta"), *usage = json_object_get(ev, "usage");
        const char *reason = json_string_value(json_object_get(delta, "stop_reason"));
        xl_event e = {.kind = XL_EV_STOP,
                      .stop = stop_of(reason),
                      .text = json_string_value(json_object_get(delta, "stop_sequence"))};
        if (reason && emit(ctx, &e))
            err = RL_STOPPED;
        else if (json_is_object(usage)) {
            usage_read(usage, &s->usage);
            err = emit_usage(s, emit, ctx);
        }
    } else if (strcmp(type, "message_stop") == 0) {
        err = send_ev(emit, ctx, (xl_event){.kind = XL_EV_END}) ? RL_STOPPED : RL_OK;
    } else if (strcmp(type, "error") == 0) {
        json_t *e = json_object_get(ev, "error");
        xl_event x = {.kind = XL_EV_ERROR,
                      .text = json_string_value(json_object_get(e, "message")),
                      .type = json_string_value(json_object_get(e, "type"))};
        err = emit(ctx, &x) ? RL_STOPPED : RL_OK;
    }
    /* ping (unnamed) and newer event types: nothing to carry */
    json_decref(ev);
    return err;
}

/* Anthropic streams end with message_stop, which dec_event saw (or not:
 * then the stream was cut, and the caller knows it from no END). */
static rl_err anthropic_dec_finish(void *state, rl_pool *pool, xl_emit_fn emit, void *ctx)
{
    (void)state;
    (void)pool;
    (void)emit;
    (void)ctx;
    return RL_OK;
}

/* ---- streams: model events -> Anthropic events -------------------------- */

/* Tool calls whose block the encoder remembers, for arguments that come
 * after a later block opened (OpenAI may interleave parallel calls). */
#define ENC_TOOLS 64
#define ENC_STOP_SEQ 256

typedef struct enc_state {
    int started, over;         /* message_start written; the stream ended (END or ERROR) */
    int next_block;            /* index of the next content block */
    blk_kind open;             /* the open block's kind (BLK_NONE: none) */
    int open_tool;             /* the open tool_use block's call index */
    int tools;                 /* a tool call was written */
    int tool_block[ENC_TOOLS]; /* call index -> its block index + 1 (0: not seen) */
    xl_stop stop;
    int has_seq;
    char seq[ENC_STOP_SEQ];
    int has_usage;
    prov_usage usage;
} enc_state;

/* Appends "event: NAME\ndata: JSON\n\n"; the reference to ev is taken
 * (NULL: out of memory). */
static rl_err put_event(rl_buf *out, const char *name, json_t *ev)
{
    char head[64];
    snprintf(head, sizeof head, "event: %s\ndata: ", name);
    return prov_json_put(out, head, ev, JSON_COMPACT, "\n\n");
}

static rl_err put_start(enc_state *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    const char *id = ev && ev->id ? ev->id : reply->id;
    /* The usage is not known yet (the SDK needs the object); message_delta
     * brings the counts at the end. */
    prov_usage u = s->has_usage ? s->usage : PROV_USAGE_UNKNOWN;
    u.output = 0;
    s->started = 1;
    return put_event(out, "message_start",
                     json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:o}}", "type",
                               "message_start", "message", "id", id ? id : "", "type", "message",
                               "role", "assistant", "model", reply->model ? reply->model : "",
                               "content", "stop_reason", "stop_sequence", "usage",
                               usage_write(&u)));
}

static rl_err close_block(enc_state *s, rl_buf *out)
{
    if (s->open == BLK_NONE)
        return RL_OK;
    s->open = BLK_NONE;
    return put_event(
        out, "content_block_stop",
        json_pack("{s:s, s:i}", "type", "content_block_stop", "index", s->next_block - 1));
}

/* Closes the open block unless it is of kind, and opens one of kind
 * whose start block is block (taken). */
static rl_err open_block(enc_state *s, blk_kind kind, json_t *block, rl_buf *out)
{
    rl_err err = close_block(s, out);
    if (err != RL_OK) {
        json_decref(block);
        return err;
    }
    s->open = kind;
    return put_event(out, "content_block_start",
                     json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index",
                               s->next_block++, "content_block", block));
}

static rl_err put_delta(rl_buf *out, int index, const char *type, const char *member,
                        const char *piece)
{
    return put_event(out, "content_block_delta",
                     json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta", "index",
                               index, "delta", "type", type, member, piece));
}

static rl_err enc_text(enc_state *s, const xl_event *ev, rl_buf *out)
{
    rl_err err = RL_OK;
    if (!ev->text || !*ev->text)
        return RL_OK;
    if (s->open != BLK_TEXT)
        err = open_block(s, BLK_TEXT, json_pack("{s:s, s:s}", "type", "text", "text", ""), out);
    if (err == RL_OK)
        err = put_delta(out, s->next_block - 1, "text_delta", "text", ev->text);
    return err;
}

static rl_err enc_thinking(enc_state *s, const xl_event *ev, rl_buf *out)
{
    int has_text = ev->text && *ev->text, has_sig = ev->signature && *ev->signature;
    rl_err err = RL_OK;
    if (!has_text && !has_sig)
        return RL_OK;
    if (s->open != BLK_THINKING)
        err = open_block(
            s, BLK_THINKING,
            json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", "", "signature", ""), out);
    if (err == RL_OK && has_text)
        err = put_delta(out, s->next_block - 1, "thinking_delta", "thinking", ev->text);
    if (err == RL_OK && has_sig)
        err = put_delta(out, s->next_block - 1, "signature_delta", "signature", ev->signature);
    return err;
}

static rl_err enc_tool_call(enc_state *s, const xl_event *ev, rl_buf *out)
{
    rl_err err =
        open_block(s, BLK_TOOL,
                   json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id",
                             ev->id ? ev->id : "", "name", ev->name ? ev->name : "", "input"),
                   out);
    s->open_tool = ev->index;
    s->tools = 1;
    if (ev->index >= 0 && ev->index < ENC_TOOLS)
        s->tool_block[ev->index] = s->next_block; /* its index + 1 */
    return err;
}

static rl_err enc_tool_args(enc_state *s, const xl_event *ev, rl_buf *out)
{
    int block;
    if (s->open == BLK_TOOL && s->open_tool == ev->index)
        block = s->next_block - 1;
    else if (ev->index >= 0 && ev->index < ENC_TOOLS && s->tool_block[ev->index])
        /* A call whose block is closed: the SDK places deltas by index. */
        block = s->tool_block[ev->index] - 1;
    else
        return RL_UPSTREAM_PROTOCOL;
    if (!ev->text || !*ev->text)
        return RL_OK;
    return put_delta(out, block, "input_json_delta", "partial_json", ev->text);
}

static rl_err enc_stop_ev(enc_state *s, const xl_event *ev, rl_buf *out)
{
    (void)out;
    s->stop = ev->stop;
    s->has_seq = ev->text && strlen(ev->text) < sizeof s->seq;
    if (s->has_seq)
        snprintf(s->seq, sizeof s->seq, "%s", ev->text);
    return RL_OK;
}

/* Counts told later replace earlier ones, field by field. */
static rl_err enc_usage(enc_state *s, const xl_event *ev, rl_buf *out)
{
    (void)out;
    if (!s->has_usage)
        s->usage = PROV_USAGE_UNKNOWN;
    s->has_usage = 1;
    const prov_usage *u = &ev->usage;
    if (u->input >= 0)
        s->usage.input = u->input;
    if (u->output >= 0)
        s->usage.output = u->output;
    if (u->cached_input >= 0)
        s->usage.cached_input = u->cached_input;
    if (u->cache_write >= 0)
        s->usage.cache_write = u->cache_write;
    return RL_OK;
}

/* message_delta with the stop reason and every count (the SDK takes
 * input and cache counts from it when present), then message_stop. */
static rl_err enc_end(enc_state *s, const xl_event *ev, rl_buf *out)
{
    (void)ev;
    rl_err err = close_block(s, out);
    xl_stop stop = s->stop == XL_STOP_UNSET && s->tools ? XL_STOP_TOOL : s->stop;
    prov_usage u = s->has_usage ? s->usage : PROV_USAGE_UNKNOWN;
    s->over = 1;
    if (err == RL_OK)
        err = put_event(
            out, "message_delta",
            json_pack("{s:s, s:{s:s, s:o}, s:o}", "type", "message_delta", "delta", "stop_reason",
                      enc_stop[stop], "stop_sequence",
                      stop == XL_STOP_SEQUENCE && s->has_seq ? json_string(s->seq) : json_null(),
                      "usage", usage_write(&u)));
    if (err == RL_OK)
        err = put_event(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
    return err;
}

/* Anthropic's error types; another dialect's type becomes api_error. */
static const char *const error_types[] = {
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "request_too_large",     "rate_limit_error",     "api_error",        "overloaded_error",
    "billing_error",         "timeout_error",
};

static rl_err enc_error(enc_state *s, const xl_event *ev, rl_buf *out)
{
    const char *type = "api_error";
    for (size_t i = 0; ev->type && i < sizeof error_types / sizeof error_types[0]; i++)
        if (strcmp(error_types[i], ev->type) == 0)
            type = error_types[i];
    s->over = 1;
    return put_event(out, "error",
                     json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type,
                               "message",
                               ev->text && *ev->text ? ev->text : "upstream stream error"));
}

static rl_err enc_start(enc_state *s, const xl_event *ev, rl_buf *out)
{
    (void)s;
    (void)ev;
    (void)out;
    return RL_OK; /* written by anthropic_enc_event, which has the reply */
}

/* One writer per model event. */
static rl_err (*const enc_fns[])(enc_state *s, const xl_event *ev, rl_buf *out) = {
    [XL_EV_START] = enc_start,         [XL_EV_TEXT] = enc_text,
    [XL_EV_THINKING] = enc_thinking,   [XL_EV_TOOL_CALL] = enc_tool_call,
    [XL_EV_TOOL_ARGS] = enc_tool_args, [XL_EV_STOP] = enc_stop_ev,
    [XL_EV_USAGE] = enc_usage,         [XL_EV_END] = enc_end,
    [XL_EV_ERROR] = enc_error,
};

static rl_err anthropic_enc_event(void *state, const xl_reply *reply, const xl_event *ev,
                                  rl_buf *out)
{
    enc_state *s = state;
    if (s->over) /* after the terminator or the error event: nothing more */
        return RL_OK;
    if ((unsigned)ev->kind >= sizeof enc_fns / sizeof enc_fns[0])
        return RL_INTERNAL;
    /* message_start comes first whatever the upstream's first event was
     * (the SDK refuses anything before it), except before an error: an
     * error event alone is what the API itself sends. USAGE and STOP wait
     * for content, so message_start can carry the input counts. */
    if (!s->started && ev->kind != XL_EV_ERROR && ev->kind != XL_EV_USAGE &&
        ev->kind != XL_EV_STOP) {
        rl_err err = put_start(s, reply, ev->kind == XL_EV_START ? ev : NULL, out);
        if (err != RL_OK)
            return err;
    }
    return enc_fns[ev->kind](s, ev, out);
}

const xl_dialect xl_anthropic = {
    .id = XL_ANTHROPIC,
    .name = "Anthropic Messages",
    .caps = (1u << XL_F_TOP_K) | (1u << XL_F_IMAGE_URL) | (1u << XL_F_IMAGE) | (1u << XL_F_TOOLS) |
            (1u << XL_F_PARALLEL_OFF) | (1u << XL_F_THINKING) | (1u << XL_F_STOP),
    .carries_thinking = 1,
    .decode_request = anthropic_decode_request,
    .encode_request = anthropic_encode_request,
    .decode_response = anthropic_decode_response,
    .encode_response = anthropic_encode_response,
    .decode_error = anthropic_decode_error,
    .stream_framing = FRAME_SSE,
    .dec_size = sizeof(dec_state),
    .dec_event = anthropic_dec_event,
    .dec_finish = anthropic_dec_finish,
    .enc_size = sizeof(enc_state),
    .enc_event = anthropic_enc_event,
};
