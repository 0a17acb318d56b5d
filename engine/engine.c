/*
 * engine.c — the request flow: route, authenticate, key, policy, lookup,
 * upstream call, store. See DESIGN.md "Request flow".
 *
 * One exchange (struct exchange) lives for one request on one thread. The
 * client's status line is committed exactly once (exchange_start): for a
 * stream when the upstream's first byte arrives, for everything else when
 * the whole upstream answer is in, so a body cut short can still become a
 * clean 502 instead of a truncated 200.
 */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/ckey.h"
#include "engine/entry.h"
#include "engine/policy.h"
#include "engine/prov.h"
#include "engine/route.h"
#include "engine/sse.h"
#include "engine/upstream.h"
#include "store/base/rl_log.h"
#include "store/store.h"

struct engine {
    const relay_config *cfg;
    store *store; /* NULL when the store could not be opened: serve uncached */
};

struct engine_worker {
    engine *e;
    upstream_client *upstream;
};

/* Request headers that are never forwarded upstream: hop-by-hop headers,
 * what libcurl sets itself, what the front added, Relay's own controls, and
 * accept-encoding (the answer must arrive uncompressed to be cached and
 * re-rendered). */
static const char *const unforwarded_headers[] = {
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-connection", "accept-encoding", "cache-control",
    "cookie", "forwarded", "via", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-real-ip", "expect", NULL};

/* Upstream response headers that are not passed to the client. */
static const char *const unpassed_headers[] = {
    "connection", "keep-alive", "transfer-encoding", "content-length", "trailer", "upgrade",
    "set-cookie", "date", "server", "status", "alt-svc", NULL};

static int in_list(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(name, *list) == 0)
            return 1;
    return 0;
}

const char *engine_header(const engine_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------- */

rl_err engine_new(const relay_config *cfg, engine **out)
{
    engine *e = calloc(1, sizeof *e);
    if (!e)
        return RL_NOMEM;
    e->cfg = cfg;
    rl_err err = upstream_global_init();
    if (err != RL_OK) {
        free(e);
        return err;
    }
    store_options so = {
        .home = cfg->store.home,
        .key_file = cfg->store.key_file,
        .max_bytes = cfg->store.max_bytes,
        .max_entries = cfg->store.max_entries,
        .max_entry_bytes = cfg->store.max_entry_bytes,
        .cache_mb = (uint32_t)cfg->store.cache_mb,
        .max_threads = (int)(cfg->fcgi.workers * (cfg->fcgi.threads + 2) + 16),
    };
    /* The key file is created here too, so a first run needs no init step. */
    err = store_keyfile_ensure(cfg->store.key_file);
    if (err == RL_OK)
        err = store_open(&so, &e->store);
    if (err != RL_OK) {
        rl_error("the store at %s is unavailable (%s): serving without a cache", cfg->store.home,
                 rl_err_text(err));
        e->store = NULL;
    }
    *out = e;
    return RL_OK;
}

void engine_free(engine *e)
{
    if (!e)
        return;
    store_close(e->store);
    upstream_global_cleanup();
    free(e);
}

engine_worker *engine_worker_new(engine *e)
{
    engine_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->e = e;
    w->upstream = upstream_client_new();
    if (!w->upstream) {
        free(w);
        return NULL;
    }
    return w;
}

void engine_worker_free(engine_worker *w)
{
    if (!w)
        return;
    upstream_client_free(w->upstream);
    free(w);
}

void engine_maintain(engine *e, uint64_t now)
{
    if (e->store)
        store_maintain(e->store, now);
}

/* ---- one exchange ------------------------------------------------------ */

typedef struct exchange {
    engine_worker *w;
    const relay_config *cfg;
    const engine_request *req;
    const engine_sink *sink;
    const prov_ops *prov;    /* error shapes; OpenAI's until routing says otherwise */
    route rt;
    prov_info info;
    cache_controls cc;
    policy_decision decision;
    uint8_t key[STORE_KEY_LEN];
    char key_hex[17];        /* "" when no key was computed */
    const char *cache_status; /* X-Cache value for a response from upstream */
    uint64_t now;

    int started;             /* status line committed */
    int client_gone;         /* a write or flush failed */

    /* the upstream answer */
    int up_status;
    int up_is_stream;        /* text/event-stream */
    int passing_through;     /* buffered body overflowed: committed, streaming as is */
    rl_header *up_headers;   /* pool copies, passed to the client */
    size_t up_nheaders;
    rl_buf body;             /* buffered non-stream body, or the stream for the cache */
    int capture;             /* keep collecting body for the cache */
    sse_parser sse;
    int sse_complete, sse_error;
} exchange;

static void exchange_release(void *p)
{
    exchange *x = p;
    rl_buf_release(&x->body);
    sse_release(&x->sse);
}

static int client_write(exchange *x, const void *p, size_t n)
{
    if (x->client_gone)
        return -1;
    if (n && x->sink->write(x->sink->ctx, p, n) != 0)
        x->client_gone = 1;
    return x->client_gone ? -1 : 0;
}

static int client_flush(exchange *x)
{
    if (!x->client_gone && x->sink->flush(x->sink->ctx) != 0)
        x->client_gone = 1;
    return x->client_gone ? -1 : 0;
}

/*
 * Commits the status line and headers: content type, Relay's headers
 * (X-Cache, X-Relay-Key, Age when age >= 0) and, for answers from upstream,
 * the upstream's own headers minus the unpassed ones.
 */
static int exchange_start(exchange *x, int status, const char *content_type,
                          const char *cache_status, long age, int with_upstream_headers)
{
    if (x->started)
        return 0;
    x->started = 1;
    rl_header h[96];
    size_t n = 0;
    char age_text[24];
    if (content_type)
        h[n++] = (rl_header){"content-type", content_type};
    if (cache_status)
        h[n++] = (rl_header){"x-cache", cache_status};
    if (x->key_hex[0])
        h[n++] = (rl_header){"x-relay-key", x->key_hex};
    if (age >= 0) {
        snprintf(age_text, sizeof age_text, "%ld", age);
        h[n++] = (rl_header){"age", age_text};
    }
    if (content_type && strncmp(content_type, "text/event-stream", 17) == 0)
        h[n++] = (rl_header){"cache-control", "no-cache"};
    if (with_upstream_headers)
        for (size_t i = 0; i < x->up_nheaders && n < sizeof h / sizeof h[0]; i++) {
            const rl_header *u = &x->up_headers[i];
            if (strcmp(u->name, "content-type") == 0 || strcmp(u->name, "cache-control") == 0 ||
                strcmp(u->name, "age") == 0 || strcmp(u->name, "x-cache") == 0 ||
                in_list(u->name, unpassed_headers))
                continue;
            h[n++] = *u;
        }
    if (x->sink->start(x->sink->ctx, status, h, n) != 0)
        x->client_gone = 1;
    return x->client_gone ? -1 : 0;
}

/*
 * Answers with an error in the client's format: a whole error response if
 * nothing was sent yet, else an error event that ends the stream.
 */
static void exchange_fail(exchange *x, rl_err err, const char *message)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    if (!x->started) {
        x->prov->error_body(&out, err, message);
        exchange_start(x, rl_err_status(err), "application/json", x->cache_status, -1, 0);
    } else if (x->up_is_stream) {
        x->prov->error_event(&out, err, message);
    }
    client_write(x, out.data, out.len);
    client_flush(x);
    rl_buf_release(&out);
}

static void count(exchange *x, const char *counter)
{
    store *s = x->w->e->store;
    if (s)
        store_counter_add(s, counter, 1);
}

/* ---- answering from the cache ----------------------------------------- */

/*
 * Serves a stored entry in the form this request asked for. A stream entry
 * answers a stream request byte for byte; otherwise the adapter renders.
 * Returns RL_OK when the answer was sent; an entry that cannot be rendered
 * is reported so the caller can fall through to upstream.
 */
static rl_err serve_entry(exchange *x, const char *bytes, size_t len, const store_meta *meta,
                          const char *status)
{
    entry_view ev;
    rl_err err = entry_decode(bytes, len, &ev);
    if (err != RL_OK)
        return err;
    rl_buf rendered;
    rl_buf_init(&rendered, 0);
    const char *body = ev.body;
    size_t body_len = ev.body_len;
    const char *ctype = ev.content_type;
    if (x->info.stream && ev.kind == ENTRY_BODY) {
        err = x->prov->body_to_stream(ev.body, ev.body_len, &x->info, &rendered);
        ctype = "text/event-stream; charset=utf-8";
    } else if (!x->info.stream && ev.kind == ENTRY_STREAM) {
        err = x->prov->stream_to_body(ev.body, ev.body_len, &rendered);
        ctype = "application/json";
    }
    if (rendered.data) {
        body = rendered.data;
        body_len = rendered.len;
    }
    if (err == RL_OK) {
        long age = x->now > meta->created ? (long)(x->now - meta->created) : 0;
        if (exchange_start(x, 200, ctype, status, age, 0) == 0) {
            client_write(x, body, body_len);
            client_flush(x);
        }
    }
    rl_buf_release(&rendered);
    return err;
}

/* Looks the key up; RL_OK when the request was answered from the cache. */
static rl_err try_cache(exchange *x)
{
    store *s = x->w->e->store;
    rl_buf value;
    rl_buf_init(&value, 0);
    store_meta meta;
    rl_err err = store_cache_get(s, x->key, &meta, &value);
    if (err != RL_OK)
        goto out;
    entry_use use = policy_entry_use(&x->cc, &meta, x->now);
    if (use == ENTRY_UNUSABLE) {
        err = RL_NOTFOUND;
        goto out;
    }
    err = serve_entry(x, value.data, value.len, &meta, use == ENTRY_FRESH ? "HIT" : "STALE");
    if (err != RL_OK) {
        rl_error("cached entry %s cannot be rendered (%s): removing it", x->key_hex,
                 rl_err_text(err));
        store_cache_del(s, x->key);
        err = RL_NOTFOUND;
        goto out;
    }
    store_cache_touch(s, x->key);
    count(x, use == ENTRY_FRESH ? "requests.hit" : "requests.stale");
out:
    rl_buf_release(&value);
    return err;
}

/* ---- calling upstream ------------------------------------------------- */

static int on_sse_event(void *ctx, const char *event, const char *data, size_t len)
{
    exchange *x = ctx;
    switch (x->prov->classify_event(event, data, len)) {
    case PROV_EVENT_END:
        x->sse_complete = 1;
        break;
    case PROV_EVENT_ERROR:
        x->sse_error = 1;
        break;
    case PROV_EVENT_DATA:
        break;
    }
    return 0;
}

static int on_upstream_head(void *ctx, int status, const rl_header *headers, size_t n)
{
    exchange *x = ctx;
    x->up_status = status;
    x->up_headers = rl_palloc(x->req->pool, (n ? n : 1) * sizeof *x->up_headers);
    if (!x->up_headers)
        return -1;
    const char *ctype = NULL;
    for (size_t i = 0; i < n; i++) {
        x->up_headers[i].name = rl_pstrdup(x->req->pool, headers[i].name);
        x->up_headers[i].value = rl_pstrdup(x->req->pool, headers[i].value);
        if (!x->up_headers[i].name || !x->up_headers[i].value)
            return -1;
        if (strcmp(headers[i].name, "content-type") == 0)
            ctype = x->up_headers[i].value;
    }
    x->up_nheaders = n;
    x->up_is_stream = ctype && strncasecmp(ctype, "text/event-stream", 17) == 0;
    int success = status >= 200 && status < 300;
    /* Only complete successful answers are stored. */
    x->capture = x->capture && success;
    if (x->up_is_stream && success) {
        /* A stream is committed at once: the client sees the first token
         * as soon as the upstream sends it. */
        if (exchange_start(x, status, ctype, x->cache_status, -1, 1) != 0 && !x->capture)
            return -1;
        client_flush(x);
    }
    return 0;
}

static int on_upstream_data(void *ctx, const char *data, size_t len)
{
    exchange *x = ctx;
    if (x->up_is_stream && x->started) {
        if (sse_feed(&x->sse, data, len) != RL_OK)
            x->capture = 0; /* an event beyond max_response: pass on, don't store */
        if (x->capture && rl_buf_append(&x->body, data, len) != RL_OK) {
            x->capture = 0;
            rl_buf_release(&x->body);
        }
        if (client_write(x, data, len) == 0)
            client_flush(x);
        /* A gone client only stops the call when there is nothing to keep:
         * the tokens are paid for either way, so the answer is cached. */
        return x->client_gone && !x->capture ? -1 : 0;
    }
    if (x->passing_through) {
        if (client_write(x, data, len) == 0)
            client_flush(x);
        return x->client_gone ? -1 : 0;
    }
    if (rl_buf_append(&x->body, data, len) == RL_OK)
        return 0;
    /* Larger than max_response: no longer a candidate for the cache (nor for
     * a clean 502 on a cut); hand it over as it comes. */
    x->capture = 0;
    x->passing_through = 1;
    if (exchange_start(x, x->up_status, NULL, x->cache_status, -1, 1) != 0)
        return -1;
    if (client_write(x, x->body.data, x->body.len) != 0 || client_write(x, data, len) != 0)
        return -1;
    rl_buf_release(&x->body);
    client_flush(x);
    return x->client_gone ? -1 : 0;
}

/* Builds the upstream URL: base_url + the client's path + its query. */
static char *upstream_url(exchange *x)
{
    rl_buf url;
    rl_buf_init(&url, 0);
    char *s = NULL;
    if (rl_buf_printf(&url, "%s%s%s%s", x->rt.upstream->base_url, x->req->path,
                      x->req->query[0] ? "?" : "", x->req->query) == RL_OK)
        s = rl_pstrdup(x->req->pool, url.data);
    rl_buf_release(&url);
    return s;
}

static void store_answer(exchange *x, entry_kind kind, const char *ctype)
{
    store *s = x->w->e->store;
    rl_buf entry;
    rl_buf_init(&entry, 0);
    rl_err err = entry_encode(&entry, kind, ctype ? ctype : "application/json", x->body.data,
                              x->body.len);
    if (err == RL_OK) {
        store_meta meta = {.created = x->now, .expires = x->now + (uint64_t)x->decision.ttl};
        err = store_cache_put(s, x->key, &meta, entry.data, entry.len);
    }
    if (err == RL_OK)
        rl_debug("stored %s (%zu bytes, ttl %ld s)", x->key_hex, x->body.len, x->decision.ttl);
    else if (err == RL_TOO_LARGE)
        rl_info("answer %s not cached: larger than [store] max_entry_bytes", x->key_hex);
    rl_buf_release(&entry);
}

static const char *find_header(const rl_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

/*
 * Forwards the request and relays the answer; stores it when the decision
 * says so and the answer is complete and successful.
 */
static void call_upstream(exchange *x)
{
    const engine_request *req = x->req;
    const upstream_config *up = x->rt.upstream;
    rl_header *fwd = rl_palloc(req->pool, (req->nheaders + 1) * sizeof *fwd);
    char *url = upstream_url(x);
    if (!fwd || !url) {
        exchange_fail(x, RL_NOMEM, NULL);
        return;
    }
    size_t nfwd = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (!in_list(req->headers[i].name, unforwarded_headers) &&
            strncmp(req->headers[i].name, "x-relay-", 8) != 0)
            fwd[nfwd++] = req->headers[i];

    rl_buf_init(&x->body, x->cfg->cache.max_response);
    sse_init(&x->sse, x->cfg->cache.max_response, on_sse_event, x);
    if (rl_pool_cleanup(req->pool, exchange_release, x) != 0) {
        exchange_fail(x, RL_NOMEM, NULL);
        return;
    }
    x->capture = x->decision.store && x->w->e->store && x->key_hex[0];

    upstream_request ur = {
        .method = req->method,
        .url = url,
        .headers = fwd,
        .nheaders = nfwd,
        .body = req->body_len || strcmp(req->method, "POST") == 0 ? req->body : NULL,
        .body_len = req->body_len,
        .connect_timeout = up->connect_timeout,
        .idle_timeout = up->idle_timeout,
        .timeout = up->timeout,
    };
    upstream_handler h = {x, on_upstream_head, on_upstream_data};
    int got_head = 0;
    count(x, "upstream.calls");
    rl_err err = upstream_perform(x->w->upstream, &ur, &h, &got_head);
    const char *ctype = find_header(x->up_headers, x->up_nheaders, "content-type");

    if (x->up_is_stream && x->started) {
        /* Streams: complete only with the format's terminator. */
        if (err == RL_OK && !x->sse_complete && !x->sse_error)
            err = RL_UPSTREAM_CUT;
        if (err != RL_OK) {
            if (err != RL_CLIENT_GONE) {
                rl_warn("stream %s ended early: %s", x->key_hex[0] ? x->key_hex : "(uncached)",
                        rl_err_text(err));
                exchange_fail(x, err, "The upstream stream ended before it was complete.");
            }
            return;
        }
        if (x->capture && x->sse_complete && !x->sse_error)
            store_answer(x, ENTRY_STREAM, ctype);
        return;
    }
    if (x->passing_through) {
        if (err != RL_OK && err != RL_CLIENT_GONE)
            rl_warn("uncached pass-through answer ended early: %s", rl_err_text(err));
        return;
    }
    if (err != RL_OK) {
        if (err != RL_CLIENT_GONE)
            exchange_fail(x, err, NULL);
        return;
    }
    /* A whole buffered answer: relay it with the upstream's status. */
    if (exchange_start(x, x->up_status, ctype, x->cache_status, -1, 1) == 0) {
        client_write(x, x->body.data, x->body.len);
        client_flush(x);
    }
    if (x->capture && x->prov->body_complete(x->body.data, x->body.len))
        store_answer(x, x->up_is_stream ? ENTRY_STREAM : ENTRY_BODY, ctype);
}

/* ---- the request flow ------------------------------------------------- */

static void serve_health(exchange *x)
{
    const char *text = x->w->e->store ? "ok\n" : "degraded: store unavailable\n";
    exchange_start(x, x->w->e->store ? 200 : 503, "text/plain; charset=utf-8", NULL, -1, 0);
    client_write(x, text, strlen(text));
    client_flush(x);
}

static void serve_api(exchange *x)
{
    const engine_request *req = x->req;
    rl_buf msg;
    rl_buf_init(&msg, 4096);
    rl_buf canonical;
    rl_buf_init(&canonical, 0);

    if (req->body_too_large) {
        rl_buf_printf(&msg, "The request body is larger than this Relay accepts (%llu bytes).",
                      (unsigned long long)x->cfg->fcgi.max_body);
        exchange_fail(x, RL_TOO_LARGE, msg.data);
        goto out;
    }
    /* Never spend anything on an unauthenticated request. */
    const char *auth = engine_header(req, "authorization");
    if (!auth || !auth[0]) {
        exchange_fail(x, RL_UNAUTHORIZED,
                      "You didn't provide an API key. You need to provide your API key in an "
                      "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
        goto out;
    }
    if (!x->rt.endpoint) {
        /* Not a cacheable endpoint: forwarded as is. */
        x->cache_status = "BYPASS";
        count(x, "requests.bypass");
        call_upstream(x);
        goto out;
    }
    if (strcmp(req->method, "POST") != 0) {
        rl_buf_printf(&msg, "%s is not allowed on %s; use POST.", req->method, req->path);
        exchange_fail(x, RL_METHOD, msg.data);
        goto out;
    }

    rl_err err = x->prov->inspect(x->rt.endpoint, req->body, req->body_len, &x->info, &canonical,
                                  &msg);
    if (err != RL_OK) {
        exchange_fail(x, err, msg.data);
        goto out;
    }
    const char *why = NULL;
    err = policy_parse(engine_header(req, "cache-control"), engine_header(req, "x-relay-cache"),
                       engine_header(req, "x-relay-ttl"), &x->cc, &why);
    if (err != RL_OK) {
        exchange_fail(x, err, why);
        goto out;
    }
    x->decision = policy_decide(x->cfg, &x->cc, x->info.deterministic, x->info.stateful);
    store *s = x->w->e->store;

    if (s && (x->decision.lookup || x->decision.store)) {
        char scope[5 + 32 + 1];
        if (x->cfg->cache.scope == CACHE_SCOPE_SHARED)
            snprintf(scope, sizeof scope, "shared");
        else
            ckey_credential_scope(auth, scope);
        const char *ns = engine_header(req, "x-relay-namespace");
        ckey_input in = {
            .format = x->prov->format,
            .endpoint = x->rt.endpoint,
            .upstream = x->rt.upstream->name,
            .path_parts = "",
            .scope = scope,
            .ns = ns ? ns : "",
            .body = canonical.data ? canonical.data : "",
            .body_len = canonical.len,
        };
        if (ckey_compute(&in, x->key) == RL_OK)
            ckey_hex16(x->key, x->key_hex);
    }

    if (x->key_hex[0] && x->decision.lookup && try_cache(x) == RL_OK)
        goto out;
    if (x->cc.only_if_cached) {
        count(x, "requests.only_if_cached_miss");
        exchange_fail(x, RL_ONLY_IF_CACHED,
                      "The answer is not in Relay's cache and the request sent only-if-cached.");
        goto out;
    }
    x->cache_status = x->key_hex[0] && x->decision.store ? "MISS" : "BYPASS";
    count(x, x->cache_status[0] == 'M' ? "requests.miss" : "requests.bypass");
    call_upstream(x);
out:
    rl_buf_release(&msg);
    rl_buf_release(&canonical);
}

void engine_handle(engine_worker *w, const engine_request *req, const engine_sink *sink)
{
    exchange *x = rl_palloc(req->pool, sizeof *x);
    if (!x) {
        /* Not even the exchange fits: answer without one. */
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":\"out_of_memory\"}}";
        rl_header h = {"content-type", "application/json"};
        if (sink->start(sink->ctx, 500, &h, 1) == 0)
            sink->write(sink->ctx, oom, sizeof oom - 1);
        return;
    }
    x->w = w;
    x->cfg = w->e->cfg;
    x->req = req;
    x->sink = sink;
    x->prov = &prov_openai;
    x->now = (uint64_t)time(NULL);

    route_match(x->cfg, req->path, &x->rt);
    if (x->rt.prov)
        x->prov = x->rt.prov;
    switch (x->rt.kind) {
    case ROUTE_HEALTH:
        serve_health(x);
        break;
    case ROUTE_API:
        serve_api(x);
        break;
    case ROUTE_NONE: {
        rl_buf msg;
        rl_buf_init(&msg, 4096);
        rl_buf_printf(&msg, "Unknown request URL: %s %s. Relay serves the provider API paths "
                            "(such as /v1/chat/completions) and /relay/.",
                      req->method, req->path);
        exchange_fail(x, RL_NO_ROUTE, msg.data);
        rl_buf_release(&msg);
        break;
    }
    }
}
