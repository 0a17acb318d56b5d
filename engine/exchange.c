#include "engine/exchange.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Request headers that are never forwarded upstream: hop-by-hop headers,
 * what libcurl sets itself, what the front added, Relay's own controls, and
 * accept-encoding (the answer must arrive uncompressed to be cached and
 * re-rendered). */
/* clang-format off */
static const char *const unforwarded_headers[] = {
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-connection", "accept-encoding", "cache-control",
    "cookie", "forwarded", "via", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-real-ip", "expect",
    /* other gateways' cache controls, which Relay reads (alias.h) */
    "cf-aig-cache-ttl", "cf-aig-skip-cache", "helicone-cache-enabled", "helicone-cache-seed",
    "x-portkey-cache-force-refresh", NULL};
/* clang-format on */

/* Upstream response headers that are not passed to the client: hop-by-hop
 * ones, what the front sets itself, and Relay's own. */
/* clang-format off */
static const char *const unpassed_headers[] = {
    "connection", "keep-alive", "transfer-encoding", "content-length", "trailer", "upgrade",
    "set-cookie", "date", "server", "status", "alt-svc", "content-type", "cache-control",
    "age", "x-cache", "x-relay-key", NULL};
/* clang-format on */

static int in_list(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(name, *list) == 0)
            return 1;
    return 0;
}

int exchange_forwards_header(const char *name)
{
    return !in_list(name, unforwarded_headers) && strncmp(name, "x-relay-", 8) != 0;
}

store *exchange_store(const exchange *x)
{
    return atomic_load(&x->w->e->store);
}

store *exchange_shared(const exchange *x)
{
    const engine *e = x->w->e;
    return e->cfg->cluster.site[0] ? atomic_load(&e->shared) : atomic_load(&e->store);
}

frame_kind exchange_framing(const exchange *x)
{
    return x->up_is_stream ? frame_kind_of(x->up_ctype) : x->info.framing;
}

int exchange_write(exchange *x, const void *p, size_t n)
{
    if (x->client_gone)
        return -1;
    if (n && x->sink->write(x->sink->ctx, p, n) != 0)
        x->client_gone = 1;
    else
        x->sent += n;
    return x->client_gone ? -1 : 0;
}

int exchange_flush(exchange *x)
{
    if (!x->client_gone && x->sink->flush(x->sink->ctx) != 0)
        x->client_gone = 1;
    return x->client_gone ? -1 : 0;
}

int exchange_ready(exchange *x, size_t len)
{
    return !x->client_gone && x->sink->ready && x->sink->ready(x->sink->ctx, len);
}

int exchange_start(exchange *x, int status, const char *content_type, const char *cache_status,
                   long age, int with_upstream_headers)
{
    if (x->started)
        return x->client_gone ? -1 : 0;
    x->started = 1;
    x->status = status;
    if (cache_status)
        x->outcome = cache_status;
    rl_header h[96];
    size_t n = 0;
    char age_text[24];
    if (content_type)
        h[n++] = (rl_header){"content-type", content_type};
    if (cache_status)
        h[n++] = (rl_header){"x-cache", cache_status};
    if (x->key_hex[0])
        h[n++] = (rl_header){"x-relay-key", x->key_hex};
    if (x->served_by)
        h[n++] = (rl_header){"x-relay-upstream", x->served_by};
    if (age >= 0) {
        snprintf(age_text, sizeof age_text, "%ld", age);
        h[n++] = (rl_header){"age", age_text};
    }
    if (content_type && strncmp(content_type, "text/event-stream", 17) == 0)
        h[n++] = (rl_header){"cache-control", "no-cache"};
    for (size_t i = 0; i < x->nextra; i++)
        h[n++] = x->extra[i];
    if (with_upstream_headers)
        for (size_t i = 0; i < x->up_nheaders && n < sizeof h / sizeof h[0]; i++)
            if (!in_list(x->up_headers[i].name, unpassed_headers))
                h[n++] = x->up_headers[i];
    if (x->sink->start(x->sink->ctx, status, h, n) != 0)
        x->client_gone = 1;
    return x->client_gone ? -1 : 0;
}

void exchange_fail(exchange *x, rl_err err, const char *message)
{
    x->failed = 1;
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err rendered = RL_OK;
    if (!x->started) {
        rendered = x->prov->error_body(&out, err, message);
        exchange_start(x, rl_err_status(err), "application/json", x->cache_status, -1, 0);
    } else if (x->up_is_stream || x->info.stream) {
        rendered = x->prov->error_event(&out, exchange_framing(x), x->sent > 0, err, message);
    }
    /* Out of memory while rendering: the status says it alone, rather
     * than a document cut in the middle. */
    if (rendered != RL_OK || rl_buf_error(&out) != RL_OK)
        rl_buf_reset(&out);
    exchange_write(x, out.data, out.len);
    exchange_flush(x);
    rl_buf_release(&out);
}

rl_err exchange_send_answer(exchange *x, int status, entry_kind kind, const char *content_type,
                            const char *body, size_t len, const char *cache_status, long age)
{
    rl_buf plain, rendered;
    rl_buf_init(&plain, 0);
    rl_buf_init(&rendered, 0);
    rl_err err = RL_OK;
    int success = status >= 200 && status < 300;
    frame_kind want = x->info.framing;
    /* A stored stream in another framing (Gemini's SSE for a request
     * without alt=sse, say) goes through its non-stream form. */
    if (success && kind == ENTRY_STREAM &&
        (!x->info.stream || frame_kind_of(content_type) != want)) {
        err = x->prov->stream_to_body(frame_kind_of(content_type), body, len, &plain);
        if (err == RL_OK) {
            body = plain.data;
            len = plain.len;
            kind = ENTRY_BODY;
            content_type = "application/json";
        }
    }
    if (err == RL_OK && success && x->info.stream && kind == ENTRY_BODY) {
        err = x->prov->body_to_stream(body, len, &x->info, &rendered);
        body = rendered.data;
        len = rendered.len;
        content_type = frame_content_type(want);
    }
    if (err == RL_OK && exchange_start(x, status, content_type, cache_status, age, 0) == 0) {
        exchange_write(x, body, len);
        exchange_flush(x);
    }
    rl_buf_release(&plain);
    rl_buf_release(&rendered);
    return err;
}
