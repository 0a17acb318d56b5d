/*
 * translate.c — a call translated between the client's wire format and the
 * upstream's (translate.h).
 *
 * The answer is translated inside the upstream handler, before the engine
 * sees it: a 2xx stream event by event (upstream framing → the upstream
 * dialect's decoder → model events → the client dialect's encoder → the
 * client's framing), a body or an error whole once the call ended (they
 * are kept whole for the cache anyway, and a body cannot be translated
 * before it is complete JSON).
 */
#include "engine/translate.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "store/base/rl_log.h"

static const xl_dialect *const dialects[XL_DIALECTS] = {
    [XL_OPENAI_CHAT] = &xl_openai_chat, [XL_OPENAI_RESPONSES] = &xl_openai_responses,
    [XL_ANTHROPIC] = &xl_anthropic,     [XL_GEMINI] = &xl_gemini,
    [XL_OLLAMA] = &xl_ollama,
};

/* The dialects' names in X-Relay-Translated and the README's matrix. */
static const char *const dialect_names[XL_DIALECTS] = {
    [XL_OPENAI_CHAT] = "openai-chat", [XL_OPENAI_RESPONSES] = "openai-responses",
    [XL_ANTHROPIC] = "anthropic",     [XL_GEMINI] = "gemini",
    [XL_OLLAMA] = "ollama",
};

const xl_dialect *translate_dialect(xl_dialect_id id)
{
    return (unsigned)id < XL_DIALECTS ? dialects[id] : NULL;
}

/* The endpoints Relay translates, by the client's wire format. */
static const struct {
    const prov_ops *prov;
    const char *endpoint;
    xl_dialect_id dialect;
} client_endpoints[] = {
    {&prov_openai, "chat.completions", XL_OPENAI_CHAT},
    {&prov_openai, "responses", XL_OPENAI_RESPONSES},
    {&prov_anthropic, "messages", XL_ANTHROPIC},
    {&prov_gemini, "generateContent", XL_GEMINI},
    {&prov_ollama, "chat", XL_OLLAMA},
};

int translate_client_dialect(const prov_ops *prov, const char *endpoint)
{
    for (size_t i = 0; endpoint && i < sizeof client_endpoints / sizeof client_endpoints[0]; i++)
        if (client_endpoints[i].prov == prov && strcmp(client_endpoints[i].endpoint, endpoint) == 0)
            return (int)client_endpoints[i].dialect;
    return -1;
}

static const struct {
    upstream_type type;
    xl_dialect_id dialect;
    const char *endpoint; /* what promptcache.h knows it by */
    /* Before the dialect's path: Azure OpenAI's v1 API serves OpenAI's
     * paths under /openai (/openai/v1/chat/completions, the model in the
     * body, no api-version), so no deployment or version needs setting. */
    const char *path_prefix;
} upstream_dialects[] = {
    {UPSTREAM_TYPE_OPENAI, XL_OPENAI_CHAT, "chat.completions", ""},
    {UPSTREAM_TYPE_OPENAI_COMPATIBLE, XL_OPENAI_CHAT, "chat.completions", ""},
    {UPSTREAM_TYPE_AZURE, XL_OPENAI_CHAT, "chat.completions", "/openai"},
    {UPSTREAM_TYPE_ANTHROPIC, XL_ANTHROPIC, "messages", ""},
    {UPSTREAM_TYPE_GEMINI, XL_GEMINI, "generateContent", ""},
    {UPSTREAM_TYPE_OLLAMA, XL_OLLAMA, "chat", ""},
};

static size_t upstream_row(upstream_type type)
{
    for (size_t i = 0; i < sizeof upstream_dialects / sizeof upstream_dialects[0]; i++)
        if (upstream_dialects[i].type == type)
            return i;
    return 0;
}

xl_dialect_id translate_upstream_dialect(upstream_type type)
{
    return upstream_dialects[upstream_row(type)].dialect;
}

int translate_needed(const exchange *x, const upstream_config *up)
{
    return route_type_prov(up->type) != x->prov;
}

typedef enum { TR_BUFFER, TR_STREAM } translate_mode;

struct translate {
    exchange *x;
    const xl_dialect *client; /* the client's dialect */
    const xl_dialect *up;     /* this attempt's upstream's */
    xl_request req;           /* the client's request, decoded once */
    xl_reply reply;
    upstream_handler inner; /* the engine's own handler */
    int status;
    translate_mode mode;
    rl_buf body; /* TR_BUFFER: the upstream's body */
    frame_parser frame;
    int frame_ready;
    void *dec, *enc;
    rl_buf out;    /* TR_STREAM: the client's bytes not yet handed on */
    rl_err failed; /* the answer could not be translated (the call was aborted) */
    char fallback_id[24];
    char label[64]; /* X-Relay-Translated: "client=openai-chat; upstream=anthropic" */
    /* The last request encoded (in the pool) and the upstream it is for:
     * the refusal check before the guards and the call itself prepare the
     * same upstream, which is then encoded once. */
    const upstream_config *encoded_for;
    const char *encoded_body, *encoded_path;
    size_t encoded_len;
};

/* The encoder's own holdings (xlate.h: enc_release), once. */
static void encoder_release(translate *t)
{
    if (t->enc && t->client && t->client->enc_release)
        t->client->enc_release(t->enc);
    t->enc = NULL;
}

static void translate_release(void *p)
{
    translate *t = p;
    encoder_release(t);
    rl_buf_release(&t->body);
    rl_buf_release(&t->out);
    if (t->frame_ready)
        frame_release(&t->frame);
}

/* x's translation state, created on first use; NULL when out of memory. */
static translate *state_of(exchange *x)
{
    if (x->xl)
        return x->xl;
    translate *t = rl_palloc(x->req->pool, sizeof *t);
    if (!t)
        return NULL;
    t->x = x;
    rl_buf_init(&t->body, x->cfg->cache.max_response);
    rl_buf_init(&t->out, 0);
    if (rl_pool_cleanup(x->req->pool, translate_release, t) != 0)
        return NULL;
    x->xl = t;
    return t;
}

/* The client's request in the model, decoded on the first attempt. */
static rl_err decode_client(exchange *x, translate *t, rl_buf *why)
{
    if (t->client)
        return RL_OK;
    int id = translate_client_dialect(x->prov, x->rt.endpoint);
    if (id < 0) {
        rl_buf_printf(why,
                      "Relay translates chat requests only: this %s endpoint cannot be sent to "
                      "upstream %s, which speaks another format.",
                      x->prov->format, x->rt.upstream->name);
        return RL_BAD_REQUEST;
    }
    const xl_dialect *d = translate_dialect((xl_dialect_id)id);
    const char *path_model = id == XL_GEMINI ? x->info.model : NULL;
    rl_err err =
        d->decode_request(x->req->body, x->req->body_len, path_model, x->req->pool, &t->req, why);
    if (err == RL_OK)
        err = xlate_pair_tool_results(&t->req, why);
    if (err != RL_OK)
        return err;
    /* Gemini says "stream" in its path (:streamGenerateContent), which the
     * adapter read. */
    if (id == XL_GEMINI)
        t->req.stream = x->info.stream;
    t->client = d;
    snprintf(t->fallback_id, sizeof t->fallback_id, "relay-%s",
             x->key_hex[0] ? x->key_hex : "answer");
    t->reply = (xl_reply){
        .model = x->info.model[0] ? x->info.model : t->req.model,
        .id = t->fallback_id,
        .created = (int64_t)x->now,
        .include_usage = x->info.include_usage,
        .framing = x->info.framing,
    };
    return RL_OK;
}

rl_err translate_prepare(exchange *x, const upstream_config *up, const char **body, size_t *len,
                         const char **path, rl_buf *why)
{
    translate *t = state_of(x);
    if (!t)
        return RL_NOMEM;
    rl_err err = decode_client(x, t, why);
    if (err != RL_OK)
        return err;
    if (t->encoded_for == up) {
        *body = t->encoded_body;
        *len = t->encoded_len;
        *path = t->encoded_path;
        return RL_OK;
    }
    const xl_dialect *to = translate_dialect(translate_upstream_dialect(up->type));
    if ((err = xlate_check_features(&t->req, to, why)) != RL_OK)
        return err;
    xl_request req = t->req;
    if (x->upstream_model)
        req.model = x->upstream_model;
    rl_buf b, p;
    rl_buf_init(&b, 0);
    rl_buf_init(&p, 0);
    rl_buf_puts(&p, upstream_dialects[upstream_row(up->type)].path_prefix);
    err = to->encode_request(&req, &b, &p, why);
    if (err == RL_OK && (err = rl_buf_error(&b)) == RL_OK && (err = rl_buf_error(&p)) == RL_OK) {
        char *bs = rl_palloc(x->req->pool, b.len + 1);
        char *ps = rl_pstrdup(x->req->pool, p.data ? p.data : "");
        if (bs && ps) {
            memcpy(bs, b.data ? b.data : "", b.len);
            *body = t->encoded_body = bs;
            *len = t->encoded_len = b.len;
            *path = t->encoded_path = ps;
            t->encoded_for = up;
        } else
            err = RL_NOMEM;
    }
    rl_buf_release(&b);
    rl_buf_release(&p);
    t->up = to;
    snprintf(t->label, sizeof t->label, "client=%s; upstream=%s", dialect_names[t->client->id],
             dialect_names[to->id]);
    return err;
}

/* ---- the answer ----------------------------------------------------------- */

/* Model events from the upstream's decoder go straight to the client's
 * encoder. */
static int emit_to_client(void *ctx, const xl_event *ev)
{
    translate *t = ctx;
    rl_err err = t->client->enc_event(t->enc, &t->reply, ev, &t->out);
    if (err != RL_OK) {
        t->failed = err == RL_NOMEM ? RL_NOMEM : RL_UPSTREAM_PROTOCOL;
        return 1;
    }
    return 0;
}

static int on_upstream_event(void *ctx, const char *event, const char *data, size_t len)
{
    translate *t = ctx;
    rl_err err = t->up->dec_event(t->dec, t->x->req->pool, event, data, len, emit_to_client, t);
    if (err != RL_OK && !t->failed)
        t->failed = err == RL_NOMEM ? RL_NOMEM : RL_UPSTREAM_PROTOCOL;
    return t->failed ? 1 : 0;
}

/* Hands the client's bytes translated so far to the engine. */
static int pass_out(translate *t)
{
    if (rl_buf_error(&t->out) != RL_OK) {
        t->failed = RL_NOMEM;
        return -1;
    }
    if (!t->out.len)
        return 0;
    int r = t->inner.on_data(t->inner.ctx, t->out.data, t->out.len);
    rl_buf_reset(&t->out);
    return r;
}

static int is_stream_type(const char *ctype)
{
    return ctype && (strncasecmp(ctype, "text/event-stream", 17) == 0 ||
                     strncasecmp(ctype, "application/x-ndjson", 20) == 0);
}

/* Whether reasoning is lost on the way (X-Relay-Dropped: thinking): the
 * client asked for it and its format has no place for it in the answer,
 * or earlier turns hold some and the upstream's format has no place for
 * it in a request. Decided from the request, so a stream says it in its
 * headers before any reasoning could come. */
static int drops_thinking(const translate *t)
{
    if (t->req.features[XL_F_THINKING] && !t->client->carries_thinking)
        return 1;
    if (t->up->carries_thinking)
        return 0;
    for (size_t m = 0; m < t->req.nmessages; m++)
        for (size_t p = 0; p < t->req.messages[m].nparts; p++)
            if (t->req.messages[m].parts[p].kind == XL_PART_THINKING)
                return 1;
    return 0;
}

/* The upstream's headers minus the ones that describe its body, which the
 * client's gets instead. */
static int on_head(void *ctx, int status, const rl_header *headers, size_t n)
{
    translate *t = ctx;
    exchange *x = t->x;
    const char *ctype = NULL;
    rl_header *h = rl_palloc(x->req->pool, (n + 3) * sizeof *h);
    if (!h)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(headers[i].name, "content-type") == 0)
            ctype = headers[i].value;
        else if (strcmp(headers[i].name, "content-length") != 0 &&
                 strcmp(headers[i].name, "content-encoding") != 0)
            h[m++] = headers[i];
    }
    t->status = status;
    int stream = status >= 200 && status < 300 && x->info.stream && is_stream_type(ctype);
    t->mode = stream ? TR_STREAM : TR_BUFFER;
    h[m++] = (rl_header){"content-type",
                         stream ? frame_content_type(x->info.framing) : "application/json"};
    h[m++] = (rl_header){"x-relay-translated", t->label};
    if (drops_thinking(t))
        h[m++] = (rl_header){"x-relay-dropped", "thinking"};
    if (stream) {
        t->dec = rl_palloc(x->req->pool, t->up->dec_size ? t->up->dec_size : 1);
        t->enc = rl_palloc(x->req->pool, t->client->enc_size ? t->client->enc_size : 1);
        if (!t->dec || !t->enc)
            return -1;
        frame_init(&t->frame, t->up->stream_framing, x->cfg->cache.max_response, on_upstream_event,
                   t);
        t->frame_ready = 1;
    }
    return t->inner.on_head(t->inner.ctx, status, h, m);
}

static int on_data(void *ctx, const char *data, size_t len)
{
    translate *t = ctx;
    if (t->failed)
        return -1;
    if (t->mode == TR_BUFFER) {
        if (rl_buf_append(&t->body, data, len) == RL_OK)
            return 0;
        rl_warn("upstream answer to translate is larger than [cache] max_response");
        t->failed = RL_UPSTREAM_PROTOCOL;
        return -1;
    }
    if (frame_feed(&t->frame, data, len) != RL_OK && !t->failed)
        t->failed = RL_UPSTREAM_PROTOCOL;
    if (t->failed) {
        pass_out(t); /* what was translated before the fault */
        return -1;
    }
    return pass_out(t);
}

static int on_tick(void *ctx, double now)
{
    translate *t = ctx;
    return t->inner.on_tick ? t->inner.on_tick(t->inner.ctx, now) : 0;
}

void translate_handler(exchange *x, const upstream_config *up, const upstream_handler *inner,
                       upstream_handler *out)
{
    translate *t = x->xl;
    (void)up; /* translate_prepare chose t->up for this attempt */
    if (t->frame_ready)
        frame_release(&t->frame);
    t->frame_ready = 0;
    rl_buf_reset(&t->body);
    rl_buf_reset(&t->out);
    t->failed = RL_OK;
    t->status = 0;
    encoder_release(t);
    t->dec = NULL;
    t->inner = *inner;
    *out = (upstream_handler){t, on_head, on_data, on_tick};
}

/* A whole successful body: the upstream's answer in the client's words. */
static rl_err finish_body(translate *t)
{
    exchange *x = t->x;
    xl_response resp;
    memset(&resp, 0, sizeof resp);
    rl_err err =
        t->up->decode_response(t->body.data ? t->body.data : "", t->body.len, x->req->pool, &resp);
    if (err != RL_OK)
        return err == RL_NOMEM ? RL_NOMEM : RL_UPSTREAM_PROTOCOL;
    err = t->client->encode_response(&resp, &t->reply, &t->out);
    if (err == RL_OK)
        err = rl_buf_error(&t->out);
    if (err != RL_OK)
        return err == RL_NOMEM ? RL_NOMEM : RL_UPSTREAM_PROTOCOL;
    return pass_out(t) == 0 ? RL_OK : RL_CLIENT_GONE;
}

/* An error answer: its message, in the client's error shape, with the
 * upstream's status. */
static rl_err finish_error(translate *t)
{
    exchange *x = t->x;
    xl_error e = {0};
    if (t->up->decode_error(t->body.data ? t->body.data : "", t->body.len, x->req->pool, &e) !=
        RL_OK)
        return RL_NOMEM;
    rl_buf msg;
    rl_buf_init(&msg, 4096);
    if (e.message)
        rl_buf_printf(&msg, "%s", e.message);
    else
        rl_buf_printf(&msg, "Upstream %s answered %d.", x->served_by ? x->served_by : "",
                      t->status);
    rl_err err = rl_buf_error(&msg);
    if (err == RL_OK)
        err = x->prov->error_body(&t->out, xlate_status_err(t->status), msg.data);
    rl_buf_release(&msg);
    if (err != RL_OK)
        return err;
    return pass_out(t) == 0 ? RL_OK : RL_CLIENT_GONE;
}

rl_err translate_finish(exchange *x, rl_err err)
{
    translate *t = x->xl;
    if (t->failed)
        return t->failed == RL_NOMEM ? RL_NOMEM : RL_UPSTREAM_PROTOCOL;
    if (err != RL_OK && t->mode == TR_BUFFER)
        return err;
    if (t->mode == TR_STREAM) {
        /* What the bytes left: a last event without its blank line, and a
         * terminator-less format's end (Gemini's). Only when the upstream
         * ended its answer: a cut stream stays cut. */
        if (err == RL_OK && frame_finish(&t->frame) == RL_OK && !t->failed)
            t->up->dec_finish(t->dec, x->req->pool, emit_to_client, t);
        if (pass_out(t) != 0 && err == RL_OK)
            err = RL_CLIENT_GONE;
        return t->failed ? (t->failed == RL_NOMEM ? RL_NOMEM : RL_UPSTREAM_PROTOCOL) : err;
    }
    if (!t->status)
        return err;
    return t->status >= 200 && t->status < 300 ? finish_body(t) : finish_error(t);
}

/* ---- the request's headers -------------------------------------------------- */

/* Headers of the client's own format: they mean nothing (or something
 * else) to an upstream of another, whose own ones Relay sets. */
static const char *const format_header_prefixes[] = {"anthropic-", "openai-", "x-goog-",
                                                     "content-type", "accept"};

int translate_forwards_header(const char *name)
{
    for (size_t i = 0; i < sizeof format_header_prefixes / sizeof format_header_prefixes[0]; i++)
        if (strncmp(name, format_header_prefixes[i], strlen(format_header_prefixes[i])) == 0)
            return 0;
    return 1;
}

/* The API version Relay speaks to Anthropic in: the one its translator
 * writes (the Messages API's only stable version). */
#define TRANSLATE_ANTHROPIC_VERSION "2023-06-01"

size_t translate_upstream_headers(const upstream_config *up, rl_header *h)
{
    size_t n = 0;
    h[n++] = (rl_header){"content-type", "application/json"};
    if (up->type == UPSTREAM_TYPE_ANTHROPIC)
        h[n++] = (rl_header){"anthropic-version", TRANSLATE_ANTHROPIC_VERSION};
    return n;
}

const char *translate_upstream_endpoint(const upstream_config *up)
{
    return upstream_dialects[upstream_row(up->type)].endpoint;
}
