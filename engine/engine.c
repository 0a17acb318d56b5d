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

#include <limits.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "engine/admission.h"
#include "engine/auth.h"
#include "engine/breaker.h"
#include "engine/ckey.h"
#include "engine/coalesce.h"
#include "engine/cors.h"
#include "engine/deadline.h"
#include "engine/exchange.h"
#include "engine/memo.h"
#include "engine/observe.h"
#include "engine/pricing.h"
#include "engine/retry.h"
#include "engine/spend.h"
#include "engine/upstream.h"
#include "store/base/rl_log.h"
#include "store/token.h"

const char *engine_header(const engine_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- lifecycle --------------------------------------------------------- */

/* Seconds between attempts to open a store that could not be opened. */
#define STORE_RETRY_SECONDS 10

/* Opens the store (creating the key file on a first run, so no init step
 * is needed); on failure logs once per attempt and leaves the engine
 * serving uncached. */
static void open_store(engine *e, uint64_t now)
{
    const relay_config *cfg = e->cfg;
    store_options so;
    config_store_options(cfg, &so);
    store *s = NULL;
    rl_err err = store_key_ensure(&so);
    if (err == RL_OK)
        err = store_open(&so, &s);
    if (err != RL_OK) {
        rl_error("the store at %s is unavailable (%s): serving without a cache; retrying in %d s",
                 cfg->store.home, rl_err_text(err), STORE_RETRY_SECONDS);
        e->store_retry_at = now + STORE_RETRY_SECONDS;
        return;
    }
    if (now)
        rl_info("the store at %s is available again", cfg->store.home);
    atomic_store(&e->store, s);
    /* breaker.map lives in the store's home, which exists from here on. */
    if (!atomic_load(&e->breaker))
        atomic_store(&e->breaker, breaker_new(cfg->store.home));
}

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
    /* The store first: on a first run it creates its home, where the
     * counters live. They do not need the store itself: requests are
     * counted while it cannot be opened (a wrong key file). */
    open_store(e, 0);
    atomic_store(&e->stats, stats_new(cfg->store.home));
    /* Beside the counters; without it calls are not limited (logged). */
    if (admission_open(cfg->store.home, &e->admission) == RL_OK)
        admission_reap(e->admission, NULL, admission_system_clock.now_ms(NULL), 1);
    /* Each process reads the keys it holds once; a reload restarts it. */
    e->held = auth_held_load(cfg);
    /* Without it every request is parsed, as before: not worth failing. */
    e->memo = memo_new();
    if (!e->held) {
        engine_free(e);
        return RL_NOMEM;
    }
    *out = e;
    return RL_OK;
}

void engine_free(engine *e)
{
    if (!e)
        return;
    store_close(atomic_load(&e->store));
    stats_close(atomic_load(&e->stats));
    admission_close(e->admission);
    breaker_free(atomic_load(&e->breaker));
    auth_held_free(e->held);
    memo_free(e->memo);
    upstream_global_cleanup();
    free(e);
}

engine_worker *engine_worker_new(engine *e)
{
    engine_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->e = e;
    w->perform = upstream_perform;
    w->retry_clock = &retry_system_clock;
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

int engine_maintain(engine *e, uint64_t now)
{
    /* Gives back to the system the pages freed since the last call: large
     * answers (a 1 MiB hit holds a 1 MiB buffer while it is sent) leave
     * free chunks in malloc's arenas as high as the most that were in
     * flight at once, which glibc keeps for good otherwise (see
     * fcgi/main.c tune_malloc for the figures). About once a second: the
     * next large answers fault their pages in again, a few per second. */
    malloc_trim(0);
    stats_maintain(atomic_load(&e->stats), now);
    store *s = atomic_load(&e->store);
    if (!s) {
        if (now >= e->store_retry_at)
            open_store(e, now);
        return 0;
    }
    store_maintain(s, now);
    unsigned stranded = store_stranded_threads(s);
    if (stranded)
        rl_error("%u request threads are stranded in the store after a crash elsewhere: "
                 "replacing this worker",
                 stranded);
    return stranded > 0;
}

static void exchange_release(void *p)
{
    exchange *x = p;
    rl_buf_release(&x->body);
    if (x->frame_ready)
        frame_release(&x->frame);
}

/* ---- answering from the cache ----------------------------------------- */

/* Looks the key up; RL_OK when the request was answered from the cache. */
static rl_err try_cache(exchange *x)
{
    store *s = exchange_store(x);
    rl_buf value;
    rl_buf_init(&value, 0);
    store_meta meta;
    entry_view ev;
    rl_err err = store_cache_get(s, x->key, &meta, &value);
    if (err != RL_OK)
        goto out;
    entry_use use = policy_entry_use(&x->cc, &meta, x->now);
    if (use == ENTRY_UNUSABLE) {
        err = RL_NOTFOUND;
        goto out;
    }
    long age = x->now > meta.created ? (long)(x->now - meta.created) : 0;
    err = entry_decode(value.data, value.len, &ev);
    if (err == RL_OK)
        err = exchange_send_answer(x, 200, ev.kind, ev.content_type, ev.body, ev.body_len,
                                   use == ENTRY_FRESH ? "HIT" : "STALE", age);
    if (err == RL_NOMEM) {
        /* The entry is fine; this process is short of memory. Neither throw
         * the entry away nor pay the upstream for what is stored. */
        exchange_fail(x, RL_NOMEM, NULL);
        err = RL_OK;
        goto out;
    }
    if (err != RL_OK) {
        rl_error("cached entry %s cannot be rendered (%s): removing it", x->key_hex,
                 rl_err_text(err));
        store_cache_del(s, x->key);
        err = RL_NOTFOUND;
        goto out;
    }
    store_cache_touch(s, x->key, x->now);
    /* What the answer cost when it was fetched: saved this time. Read when
     * it was stored (entry.h); entries stored before that was done, or
     * whose usage could not be read then, are parsed as before. */
    if (ev.has_usage)
        x->usage = (prov_usage){ev.usage.input, ev.usage.output, ev.usage.cached_input,
                                ev.usage.cache_write, 0};
    else
        x->prov->usage(ev.kind, frame_kind_of(ev.content_type), ev.body, ev.body_len, &x->usage);
out:
    rl_buf_release(&value);
    return err;
}

/* ---- calling upstream ------------------------------------------------- */

static int on_stream_event(void *ctx, const char *event, const char *data, size_t len)
{
    exchange *x = ctx;
    x->prov->usage_event(&x->usage, event, data, len);
    switch (x->prov->classify_event(event, data, len)) {
    case PROV_EVENT_END:
        x->stream_complete = 1;
        break;
    case PROV_EVENT_ERROR:
        x->stream_error = 1;
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
    x->ttfb_s = mono_seconds() - x->upstream_start;
    x->up_headers = rl_palloc(x->req->pool, (n ? n : 1) * sizeof *x->up_headers);
    if (!x->up_headers)
        return -1;
    for (size_t i = 0; i < n; i++) {
        x->up_headers[i].name = rl_pstrdup(x->req->pool, headers[i].name);
        x->up_headers[i].value = rl_pstrdup(x->req->pool, headers[i].value);
        if (!x->up_headers[i].name || !x->up_headers[i].value)
            return -1;
        if (strcmp(headers[i].name, "content-type") == 0)
            x->up_ctype = x->up_headers[i].value;
    }
    x->up_nheaders = n;
    int success = status >= 200 && status < 300;
    /* Streams: SSE and NDJSON say so by their type; Gemini's streamed JSON
     * array only by the request that asked for it. */
    frame_kind framing = frame_kind_of(x->up_ctype);
    x->up_is_stream =
        x->up_ctype && (framing != FRAME_JSON_ARRAY ||
                        (success && x->info.stream && x->info.framing == FRAME_JSON_ARRAY &&
                         strncasecmp(x->up_ctype, "application/json", 16) == 0));
    if (x->up_is_stream) {
        frame_init(&x->frame, framing, x->cfg->cache.max_response, on_stream_event, x);
        x->frame_ready = 1;
    }
    /* Only complete successful answers are stored. */
    x->capture = x->capture && success;
    if (x->up_is_stream && success) {
        /* A stream is committed at once: the client (and every follower)
         * sees the first token as soon as the upstream sends it. */
        coalesce_publish_head(x, status, ENTRY_STREAM, x->up_ctype);
        exchange_start(x, status, x->up_ctype, x->cache_status, -1, 1);
        exchange_flush(x);
    }
    return 0;
}

/* Whether a leader whose client left should keep the upstream call going
 * (deadline.h: [upstream.X] finish_after_timeout). */
static int worth_continuing(exchange *x)
{
    return deadline_keeps_call(x->rt.upstream->finish_after_timeout, x->capture,
                               coalesce_has_followers(x));
}

/* The call's tick: the client's own deadline (deadline.h). */
static int on_upstream_tick(void *ctx, double now)
{
    return deadline_tick(ctx, now);
}

static int on_upstream_data(void *ctx, const char *data, size_t len)
{
    exchange *x = ctx;
    if (x->up_is_stream && x->started) {
        /* An event beyond max_response (or no memory for it): the parser
         * cannot go on (its buffers' errors are sticky), so the stream is
         * passed on as it comes, unparsed and not stored. */
        if (!x->frame_lost && frame_feed(&x->frame, data, len) != RL_OK) {
            x->frame_lost = 1;
            x->capture = 0;
        }
        if (x->capture && rl_buf_append(&x->body, data, len) != RL_OK) {
            x->capture = 0;
            rl_buf_release(&x->body);
        }
        /* Followers first: they must not wait for a slow leader client. */
        coalesce_publish_data(x, data, len);
        if (exchange_write(x, data, len) == 0)
            exchange_flush(x);
        return x->client_gone && !worth_continuing(x) ? -1 : 0;
    }
    if (x->passing_through) {
        coalesce_publish_data(x, data, len);
        if (exchange_write(x, data, len) == 0)
            exchange_flush(x);
        return x->client_gone && !worth_continuing(x) ? -1 : 0;
    }
    if (rl_buf_append(&x->body, data, len) == RL_OK)
        return 0;
    /* Larger than max_response: no longer a candidate for the cache (nor for
     * a clean 502 on a cut); hand it over as it comes. */
    x->capture = 0;
    x->passing_through = 1;
    coalesce_publish_head(x, x->up_status, ENTRY_BODY, x->up_ctype);
    coalesce_publish_data(x, x->body.data, x->body.len);
    coalesce_publish_data(x, data, len);
    exchange_start(x, x->up_status, x->up_ctype, x->cache_status, -1, 1);
    exchange_write(x, x->body.data, x->body.len);
    exchange_write(x, data, len);
    rl_buf_release(&x->body);
    exchange_flush(x);
    return x->client_gone && !worth_continuing(x) ? -1 : 0;
}

/* Builds the upstream URL: up's base_url + the routed path + the query;
 * held: the key Relay sends for this call, or NULL. */
static char *upstream_url(exchange *x, const upstream_config *up, const char *held)
{
    rl_buf url, query;
    rl_buf_init(&url, 0);
    rl_buf_init(&query, 0);
    char *s = NULL;
    /* With the key Relay holds, the client's token (Gemini's ?key=) stays
     * here. */
    const char *q = x->req->query;
    if (held && auth_query_without_key(q, &query) == RL_OK)
        q = query.data ? query.data : "";
    if (rl_buf_printf(&url, "%s%s%s%s", up->base_url, x->rt.path, q[0] ? "?" : "", q) == RL_OK)
        s = rl_pstrdup(x->req->pool, url.data);
    rl_buf_release(&url);
    rl_buf_release(&query);
    return s;
}

/* The header carrying held, the key Relay holds for up, in x's pool;
 * -1 when out of memory. */
static int held_key_header(exchange *x, const upstream_config *up, const char *held, rl_header *out)
{
    const char *prefix;
    auth_key_header(up->type, &out->name, &prefix);
    size_t n = strlen(prefix) + strlen(held) + 1;
    char *v = rl_palloc(x->req->pool, n);
    if (!v)
        return -1;
    snprintf(v, n, "%s%s", prefix, held);
    out->value = v;
    return 0;
}

/*
 * The usage a hit on the stored answer accounts, exactly as try_cache would
 * read it from the stored bytes: for a body that is x->usage, read by the
 * same call on the same bytes (the framing is only used for streams); for a
 * stream it is read here, once per stored answer instead of once per hit,
 * because x->usage was put together event by event as the stream passed,
 * which for some formats reads other events than the whole-answer reading.
 * 0 when it could not be read for want of memory: nothing is recorded, and
 * hits read it themselves.
 */
static int stored_usage(exchange *x, entry_kind kind, const char *ctype, entry_usage *out)
{
    prov_usage u = x->usage;
    if (kind == ENTRY_STREAM)
        x->prov->usage(kind, frame_kind_of(ctype), x->body.data, x->body.len, &u);
    if (u.lost)
        return 0;
    *out = (entry_usage){u.input, u.output, u.cached_input, u.cache_write};
    return 1;
}

/* Stores the captured answer; returns 1 when it was stored. */
static int store_answer(exchange *x, entry_kind kind)
{
    store *s = exchange_store(x);
    rl_buf entry;
    rl_buf_init(&entry, 0);
    /* Labels for relay-admin (ls, show, purge --model/--namespace). */
    const char *ns = engine_header(x->req, "x-relay-namespace");
    entry_labels labels = {
        .upstream = x->rt.upstream->name, .model = x->info.model, .ns = ns ? ns : ""};
    const char *ctype = x->up_ctype ? x->up_ctype : "application/json";
    entry_usage usage;
    int known = stored_usage(x, kind, ctype, &usage);
    rl_err err = entry_encode(&entry, kind, ctype, &labels, known ? &usage : NULL, x->body.data,
                              x->body.len);
    if (err == RL_OK) {
        store_meta meta = {.created = x->now, .expires = x->now + (uint64_t)x->decision.ttl};
        err = store_cache_put(s, x->key, &meta, entry.data, entry.len);
    }
    if (err == RL_OK) {
        /* x->usage was read as the answer came (see call_upstream). */
        rl_debug("stored %s (%zu bytes, ttl %ld s; tokens in %lld out %lld cached %lld)",
                 x->key_hex, x->body.len, x->decision.ttl, (long long)x->usage.input,
                 (long long)x->usage.output, (long long)x->usage.cached_input);
    } else if (err == RL_TOO_LARGE)
        rl_info("answer %s not cached: larger than [store] max_entry_bytes", x->key_hex);
    rl_buf_release(&entry);
    return err == RL_OK;
}

/* Fails the request before anything was sent; followers get the same. */
static void fail_before_answer(exchange *x, rl_err err, const char *message)
{
    coalesce_publish_error(x, err, message);
    exchange_fail(x, err, message);
}

/* The call of x to up, with held (the key Relay holds for up, or NULL:
 * the client's credential goes as it came), in x's pool. -1 when out of
 * memory. */
static int prepare_call(exchange *x, const upstream_config *up, const char *held,
                        upstream_request *ur)
{
    const engine_request *req = x->req;
    rl_header *fwd = rl_palloc(req->pool, (req->nheaders + 1) * sizeof *fwd);
    char *url = upstream_url(x, up, held);
    if (!fwd || !url)
        return -1;
    size_t nfwd = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (exchange_forwards_header(req->headers[i].name) &&
            !(held && auth_is_credential_header(req->headers[i].name)))
            fwd[nfwd++] = req->headers[i];
    if (held && held_key_header(x, up, held, &fwd[nfwd++]) != 0)
        return -1;
    *ur = (upstream_request){
        .method = req->method,
        .url = url,
        .headers = fwd,
        .nheaders = nfwd,
        .body = req->body_len || strcmp(req->method, "POST") == 0 ? req->body : NULL,
        .body_len = req->body_len,
        .connect_timeout = up->connect_timeout,
        .first_byte_timeout = up->first_byte_timeout,
        .idle_timeout = up->idle_timeout,
        .timeout = up->timeout,
        .timed_out = &x->timed_out,
    };
    return 0;
}

/* Forgets what a failed attempt left (its head, its body, its parser), so
 * that the next attempt starts clean: a retried answer's bytes never reach
 * the client, a follower or the cache. */
static void attempt_reset(exchange *x)
{
    x->up_status = 0;
    x->up_headers = NULL;
    x->up_nheaders = 0;
    x->up_ctype = NULL;
    x->up_is_stream = 0;
    rl_buf_reset(&x->body);
    if (x->frame_ready)
        frame_release(&x->frame);
    x->frame_ready = 0;
    x->frame_lost = 0;
    x->stream_complete = 0;
    x->stream_error = 0;
    x->usage = PROV_USAGE_UNKNOWN;
    x->ttfb_s = -1;
    x->timed_out = (upstream_timed_out){UPSTREAM_TIMEOUT_NONE, 0};
    x->capture = x->decision.store && exchange_store(x) && x->key_hex[0];
}

static const char *up_header(const exchange *x, const char *name)
{
    for (size_t i = 0; i < x->up_nheaders; i++)
        if (strcmp(x->up_headers[i].name, name) == 0)
            return x->up_headers[i].value;
    return NULL;
}

static void count_attempt(exchange *x, const upstream_config *up, const char *outcome)
{
    const char *labels[STATS_LABELS] = {up->name, outcome, "", ""};
    stats_count(atomic_load(&x->w->e->stats), STATS_ROW_ATTEMPTS, labels, 1);
}

/*
 * The fallback of up for x when up's retries ran out, with the key Relay
 * holds for it in *held when x is sent with a held key; NULL when there is
 * none, or when x needs a held key the fallback does not have.
 */
static const upstream_config *pick_fallback(exchange *x, const upstream_config *up,
                                            const char **held)
{
    const upstream_config *to = retry_pick_upstream(x->cfg, up, 1, x->now);
    /* A token limited to some upstreams is never served by another. */
    if (to && x->spend.has_token && !store_token_allows(x->spend.token, to->name, NULL)) {
        rl_info("no fallback to [upstream.%s]: the request's token may not use it", to->name);
        return NULL;
    }
    if (!to || !x->spend.held_key)
        return to;
    const char *why = NULL;
    *held = auth_held_key(x->w->e->held, to, &why);
    if (!*held) {
        rl_warn("no fallback to [upstream.%s] for a Relay token's request: %s", to->name,
                why ? why : "no key held");
        return NULL;
    }
    return to;
}

/*
 * Performs the call with its retries and at most one fallback (retry.h):
 * another attempt only while nothing of the answer was sent or published
 * (x->started is 0: a buffered answer is relayed after the call, a stream
 * when its 2xx head arrives). Returns the last attempt's result; x holds
 * its answer, x->served_by names who gave it.
 */
static rl_err perform_with_retries(exchange *x, upstream_request *ur, int *got_head)
{
    const retry_clock *clk = x->w->retry_clock ? x->w->retry_clock : &retry_system_clock;
    const upstream_config *up = x->rt.upstream;
    upstream_handler h = {x, on_upstream_head, on_upstream_data, on_upstream_tick};
    int fell_back = 0;
    if (x->first_fallback) {
        /* The route's breaker is open: straight to its fallback. */
        up = x->first_fallback;
        if (prepare_call(x, up, x->first_fallback_key, ur) != 0)
            return RL_NOMEM;
        fell_back = 1;
        const char *pair[STATS_LABELS] = {x->rt.upstream->name, up->name, "", ""};
        stats_count(atomic_load(&x->w->e->stats), STATS_ROW_FALLBACKS, pair, 1);
        rl_info("[upstream.%s]'s circuit breaker is open: [upstream.%s] takes the call",
                x->rt.upstream->name, up->name);
    }
    retry_plan plan;
    retry_plan_start(&plan, clk->now(clk->ctx));
    for (;;) {
        attempt_reset(x);
        x->served_by = up->name;
        *got_head = 0;
        x->upstream_start = mono_seconds();
        rl_err err = x->w->perform(x->w->upstream, ur, &h, got_head);
        x->latency_s = mono_seconds() - x->upstream_start;
        if (up == x->rt.upstream) {
            x->route_called = 1;
            x->up_err = err;
            x->route_status = x->up_status;
        }
        double hint = -1, wait = 0;
        if (x->started ||
            retry_classify(err, *got_head, x->up_status, up_header(x, "retry-after"),
                           up->retry_max_wait, (uint64_t)time(NULL), &hint) == RETRY_FINAL) {
            count_attempt(x, up, err == RL_OK ? "ok" : "failed");
            return err;
        }
        if (retry_next(&plan, up, clk->now(clk->ctx), hint, clk->random(clk->ctx), &wait)) {
            count_attempt(x, up, "retried");
            rl_info("[upstream.%s] answered %d (%s): retry %d in %.2f s", up->name, x->up_status,
                    rl_err_text(err), plan.retries_done, wait);
            clk->sleep(clk->ctx, wait);
            continue;
        }
        const char *held = NULL;
        const upstream_config *to = fell_back ? NULL : pick_fallback(x, up, &held);
        if (!to || prepare_call(x, to, held, ur) != 0) {
            count_attempt(x, up, "failed");
            return err;
        }
        count_attempt(x, up, "retried");
        const char *pair[STATS_LABELS] = {up->name, to->name, "", ""};
        stats_count(atomic_load(&x->w->e->stats), STATS_ROW_FALLBACKS, pair, 1);
        rl_info("[upstream.%s] failed (%d, %s) after %d retries: falling back to [upstream.%s]",
                up->name, x->up_status, rl_err_text(err), plan.retries_done, to->name);
        up = to;
        fell_back = 1;
        retry_plan_start(&plan, clk->now(clk->ctx));
    }
}

/*
 * Forwards the request and relays the answer (publishing it for followers
 * when leading a flight); stores it when the decision says so and the
 * answer is complete and successful.
 */
static void call_upstream(exchange *x)
{
    const engine_request *req = x->req;
    upstream_request ur;
    rl_buf_init(&x->body, x->cfg->cache.max_response);
    if (rl_pool_cleanup(req->pool, exchange_release, x) != 0 ||
        prepare_call(x, x->rt.upstream, x->spend.held_key, &ur) != 0) {
        fail_before_answer(x, RL_NOMEM, NULL);
        return;
    }
    int got_head = 0;
    x->called_upstream = 1;
    rl_err err = perform_with_retries(x, &ur, &got_head);
    if (!x->up_is_stream && !x->passing_through && err == RL_OK)
        x->prov->usage(ENTRY_BODY, FRAME_SSE, x->body.data, x->body.len, &x->usage);

    if (x->up_is_stream && x->started && x->frame_lost) {
        /* Not parsed to its end: nothing can tell whether it is complete,
         * so it is neither stored nor ended with an error of Relay's. */
        if (err != RL_OK && err != RL_CLIENT_GONE)
            rl_warn("unparsed stream ended early: %s", rl_err_text(err));
        coalesce_finish(x, err == RL_OK, 0);
        return;
    }
    if (x->up_is_stream && x->started) {
        /* Streams: complete only with the format's terminator (and, for a
         * JSON array, its closing bracket). */
        int complete = x->stream_complete && frame_whole(&x->frame);
        if (err == RL_OK && !complete && !x->stream_error)
            err = RL_UPSTREAM_CUT;
        if (err == RL_CLIENT_GONE && complete)
            err = RL_OK;
        if (err != RL_OK) {
            rl_warn("stream %s ended early: %s", x->key_hex[0] ? x->key_hex : "(uncached)",
                    rl_err_text(err));
            coalesce_finish(x, 0, 0);
            if (err != RL_CLIENT_GONE) {
                rl_buf msg;
                rl_buf_init(&msg, 1024);
                const char *why = deadline_message(x, &msg);
                exchange_fail(x, err,
                              why ? why : "The upstream stream ended before it was complete.");
                rl_buf_release(&msg);
            }
            return;
        }
        int stored = x->capture && complete && !x->stream_error && store_answer(x, ENTRY_STREAM);
        /* Store first, then finish: a request that arrives in between finds
         * the flight reusable or the entry in the cache, never neither. */
        coalesce_finish(x, 1, stored);
        return;
    }
    if (x->passing_through) {
        if (err != RL_OK && err != RL_CLIENT_GONE)
            rl_warn("uncached pass-through answer ended early: %s", rl_err_text(err));
        coalesce_finish(x, err == RL_OK, 0);
        return;
    }
    if (err != RL_OK) {
        if (err == RL_CLIENT_GONE) {
            coalesce_finish(x, 0, 0);
        } else {
            rl_buf msg;
            rl_buf_init(&msg, 1024);
            fail_before_answer(x, err, deadline_message(x, &msg));
            rl_buf_release(&msg);
        }
        return;
    }
    /* A whole buffered answer: relay it with the upstream's status. */
    entry_kind kind = x->up_is_stream ? ENTRY_STREAM : ENTRY_BODY;
    coalesce_publish_head(x, x->up_status, kind, x->up_ctype);
    coalesce_publish_data(x, x->body.data, x->body.len);
    if (exchange_start(x, x->up_status, x->up_ctype, x->cache_status, -1, 1) == 0) {
        exchange_write(x, x->body.data, x->body.len);
        exchange_flush(x);
    }
    int stored =
        x->capture && x->prov->body_complete(x->body.data, x->body.len) && store_answer(x, kind);
    coalesce_finish(x, 1, stored);
}

/* Takes a place for x's upstream call (admission.h), waiting up to [fcgi]
 * queue_timeout; 0, or -1 when refused (answered 503 with Retry-After, and
 * followers get the refusal too). Only calls take places: hits and
 * followers never come here. */
static int admit(exchange *x, admission_hold *hold)
{
    const upstream_config *up = x->rt.upstream;
    long wait_s = x->cfg->fcgi.queue_timeout;
    if (admission_enter(x->w->e->admission, up->name, (unsigned)up->max_inflight,
                        (uint64_t)wait_s * 1000, &admission_system_clock, hold, NULL) == RL_OK)
        return 0;
    /* Slots free at the pace calls end: a client that waited queue_timeout
     * for none had better wait about as long again. */
    snprintf(x->retry_after, sizeof x->retry_after, "%ld", wait_s > 0 ? wait_s : 1);
    if (x->nextra < sizeof x->extra / sizeof x->extra[0])
        x->extra[x->nextra++] = (rl_header){"retry-after", x->retry_after};
    x->rejected = "queue_full";
    rl_buf msg;
    rl_buf_init(&msg, 4096);
    rl_buf_printf(&msg,
                  "Relay is making as many calls to upstream %s as it allows at once (%ld, "
                  "max_inflight) and none ended within %ld s ([fcgi] queue_timeout); retry later.",
                  up->name, up->max_inflight, wait_s);
    fail_before_answer(x, RL_OVERLOADED, exchange_message(&msg));
    rl_buf_release(&msg);
    return -1;
}

/* ---- the circuit breaker (breaker.h) ---------------------------------- */

/* Answers a request the upstream's open breaker refuses: with a stored
 * answer of any age the store still keeps (stale-if-error: an old answer
 * beats none while the upstream fails), else 503 with Retry-After, the
 * cool-down left. A flight led by x ends unanswered: each follower takes
 * over and is refused (or served) the same way. */
static void refuse_for_breaker(exchange *x, uint64_t retry_in)
{
    const upstream_config *up = x->rt.upstream;
    if (up->stale_if_error && x->key_hex[0] && exchange_store(x)) {
        x->cc.max_age = POLICY_UNSET;
        x->cc.max_stale = LONG_MAX;
        if (try_cache(x) == RL_OK) {
            coalesce_finish(x, 0, 0);
            return;
        }
    }
    snprintf(x->retry_after, sizeof x->retry_after, "%llu", (unsigned long long)retry_in);
    x->extra[x->nextra++] = (rl_header){"retry-after", x->retry_after};
    rl_buf msg;
    rl_buf_init(&msg, 4096);
    rl_buf_printf(&msg,
                  "Upstream %s is failing, so Relay's circuit breaker for it is open: try again "
                  "in %llu s.",
                  up->name, (unsigned long long)retry_in);
    fail_before_answer(x, RL_CIRCUIT_OPEN, exchange_message(&msg));
    rl_buf_release(&msg);
}

/* Calls upstream once its breaker admits the call (or, while it is open,
 * sends it to the upstream's fallback), x's worst case fits its budgets and
 * rate limits (spend.h) and a place for the call is free (admission.h);
 * records the route's outcome for its breaker and settles what it used; a
 * refusal reaches followers too. */
static void call_upstream_within_budget(exchange *x)
{
    rl_err err;
    const char *message;
    breaker *b = atomic_load(&x->w->e->breaker);
    breaker_policy bp = breaker_policy_of(x->rt.upstream);
    uint32_t pid = (uint32_t)getpid();
    uint64_t retry_in;
    x->breaker_verdict = breaker_admit(b, x->rt.upstream->name, &bp, x->now, pid, &retry_in);
    if (x->breaker_verdict == BREAKER_REFUSE) {
        /* Open: the fallback takes the call, unless it is failing too. */
        x->first_fallback = pick_fallback(x, x->rt.upstream, &x->first_fallback_key);
        if (!x->first_fallback || breaker_is_open(b, x->first_fallback->name, x->now)) {
            refuse_for_breaker(x, retry_in);
            return;
        }
    }
    if (spend_reserve(x, &err, &message) != 0) {
        /* Gives a probe's claim back: this request never called. */
        breaker_record(b, x->rt.upstream->name, &bp, x->breaker_verdict, BREAKER_NEUTRAL, x->now,
                       pid);
        fail_before_answer(x, err, message);
        return;
    }
    admission_hold hold;
    if (admit(x, &hold) == 0) {
        call_upstream(x); /* returns on every path: the place is given back */
        admission_leave(x->w->e->admission, &hold);
    }
    /* The route's own upstream: what its last attempt got (a fallback's
     * answer says nothing about it). */
    breaker_outcome o =
        x->route_called ? breaker_classify(x->up_err, x->route_status) : BREAKER_NEUTRAL;
    breaker_record(b, x->rt.upstream->name, &bp, x->breaker_verdict, o, (uint64_t)time(NULL), pid);
    spend_settle(x);
}

/* ---- the request flow ------------------------------------------------- */

/* Computes the cache key; leaves key_hex empty when it cannot. */
static void compute_key(exchange *x, const char *credential_scope, const rl_buf *canonical,
                        const rl_buf *key_parts)
{
    const char *scope = x->cfg->cache.scope == CACHE_SCOPE_SHARED ? "shared" : credential_scope;
    const char *ns = engine_header(x->req, "x-relay-namespace");
    ckey_input in = {
        .format = x->prov->format,
        .endpoint = x->rt.endpoint,
        .upstream = x->rt.upstream->name,
        .path_parts = key_parts->data ? key_parts->data : "",
        .scope = scope,
        .ns = ns ? ns : "",
        .body = canonical->data ? canonical->data : "",
        .body_len = canonical->len,
    };
    if (ckey_compute(&in, x->key) == RL_OK)
        ckey_hex16(x->key, x->key_hex);
}

static void serve_api(exchange *x)
{
    const engine_request *req = x->req;
    x->served_by = x->rt.upstream->name; /* a fallback's name once one serves */
    rl_buf msg;
    rl_buf_init(&msg, 4096);
    rl_buf canonical, key_parts;
    rl_buf_init(&canonical, 0);
    rl_buf_init(&key_parts, 0);

    if (req->body_too_large) {
        rl_buf_printf(&msg, "The request body is larger than this Relay accepts (%llu bytes).",
                      (unsigned long long)x->cfg->fcgi.max_body);
        exchange_fail(x, RL_TOO_LARGE, exchange_message(&msg));
        goto out;
    }
    /* Never spend anything on an unauthenticated request. Local servers
     * (Ollama, OpenAI-compatible ones) may have no keys at all: there the
     * client's own absence of one is passed on. */
    char credential_buf[1024];
    const char *credential = x->prov->credential(&x->preq, credential_buf, sizeof credential_buf);
    /* The credential's hash, once: the cache key's scope and, for the
     * accounts, the client's id. */
    char credential_scope[5 + 32 + 1];
    ckey_credential_scope(credential ? credential : "", credential_scope);
    if (credential)
        snprintf(x->client, sizeof x->client, "%.8s", credential_scope + 5);
    /* A Relay client token: checked, and its scope and id stand for it. */
    if (spend_authorize(x, credential) != 0)
        goto out;
    const char *scope = x->spend.has_token ? x->spend.scope : credential_scope;
    upstream_type type = x->rt.upstream->type;
    if (!credential && type != UPSTREAM_TYPE_OLLAMA && type != UPSTREAM_TYPE_OPENAI_COMPATIBLE) {
        exchange_fail(x, RL_UNAUTHORIZED, x->prov->missing_credential);
        goto out;
    }
    if (!x->rt.endpoint) {
        /* Not a cacheable endpoint: forwarded as is. */
        x->cache_status = "BYPASS";
        call_upstream_within_budget(x);
        goto out;
    }
    if (strcmp(req->method, x->rt.method) != 0) {
        rl_buf_printf(&msg, "%s is not allowed on %s; use %s.", req->method, req->path,
                      x->rt.method);
        exchange_fail(x, RL_METHOD, exchange_message(&msg));
        goto out;
    }

    rl_err err =
        memo_inspect(x->w->e->memo, x->prov, &x->preq, &x->info, &canonical, &key_parts, &msg);
    if (err != RL_OK) {
        exchange_fail(x, err, exchange_message(&msg));
        goto out;
    }
    /* A key from parts cut short would be another request's key. */
    if ((err = rl_buf_error(&canonical)) != RL_OK || (err = rl_buf_error(&key_parts)) != RL_OK) {
        exchange_fail(x, err, NULL);
        goto out;
    }
    if (spend_allows(x) != 0)
        goto out;
    const char *why = NULL;
    err = policy_parse(engine_header(req, "cache-control"), engine_header(req, "x-relay-cache"),
                       engine_header(req, "x-relay-ttl"), &x->cc, &why);
    if (err != RL_OK) {
        exchange_fail(x, err, why);
        goto out;
    }
    if (x->cc.only_if_cached && x->cfg->cache.scope == CACHE_SCOPE_SHARED) {
        /* Under a shared scope any string passes for a credential (Relay
         * cannot check a provider key without spending it), and an
         * only-if-cached answer never reaches the upstream that would:
         * anyone could test for free whether a prompt was asked. */
        exchange_fail(x, RL_FORBIDDEN,
                      "Cache-Control: only-if-cached is refused when this Relay shares its cache "
                      "between credentials ([cache] scope = shared): it cannot vouch for yours.");
        goto out;
    }
    x->decision = policy_decide(x->cfg, &x->cc, x->info.deterministic, x->info.stateful);
    if (x->info.max_ttl > 0 && x->decision.ttl > x->info.max_ttl)
        x->decision.ttl = x->info.max_ttl;
    /* A key is needed to look up, to store, and to share an in-flight call
     * ([coalesce] mode = all shares even answers that are not cached). */
    int wants_key = x->decision.lookup || x->decision.store ||
                    (x->cfg->coalesce.mode == COALESCE_ALL && !x->info.stateful);
    if (exchange_store(x) && wants_key)
        compute_key(x, scope, &canonical, &key_parts);

    if (x->key_hex[0] && x->decision.lookup && try_cache(x) == RL_OK)
        goto out;
    if (x->cc.only_if_cached) {
        exchange_fail(x, RL_ONLY_IF_CACHED,
                      "The answer is not in Relay's cache and the request sent only-if-cached.");
        goto out;
    }
    x->cache_status = x->key_hex[0] && x->decision.store ? "MISS" : "BYPASS";
    switch (coalesce_join(x)) {
    case COALESCE_ANSWERED:
        goto out;
    case COALESCE_CACHED:
        /* Stored a moment ago; gone again only after an eviction or a
         * purge in between, and then the request calls upstream alone. */
        if (try_cache(x) == RL_OK)
            goto out;
        break;
    case COALESCE_LEAD:
    case COALESCE_ALONE:
        break;
    }
    call_upstream_within_budget(x);
out:
    rl_buf_release(&msg);
    rl_buf_release(&canonical);
    rl_buf_release(&key_parts);
}

/* Counts the finished request (stats.h): its outcome and status, and what
 * its answer cost or, served from the cache or a shared call, saved. */
static void account(exchange *x)
{
    stats *st = atomic_load(&x->w->e->stats);
    if (!st)
        return;
    const model_price *price = pricing_find(x->cfg, x->info.model);
    /* A 2xx answer came from an upstream (now, or stored from one): the
     * model exists there. The credential too, when this request reached
     * the upstream, or when the answer was keyed by that credential. */
    int answered = x->status >= 200 && x->status < 300;
    int own_key = x->cfg->cache.scope == CACHE_SCOPE_CREDENTIAL;
    stats_request r = {
        .upstream = x->rt.upstream ? x->rt.upstream->name : "",
        .model = x->info.model,
        .outcome = x->outcome ? x->outcome : "",
        .status = x->status,
        .failed = x->failed || x->status >= 400,
        .client = x->client,
        .tokens_in = x->usage.input,
        .tokens_out = x->usage.output,
        .tokens_cached_in = x->usage.cached_input,
        .priced = price != NULL,
        .nusd = price ? pricing_cost(price, &x->usage) : 0,
        .called_upstream = x->called_upstream,
        .latency_s = x->latency_s,
        .ttfb_s = x->ttfb_s,
        .model_vouched = answered,
        /* A Relay token was vouched for by Relay itself (it is in the
         * store), so even its refusals count in its own row. */
        .client_vouched = x->spend.has_token || (answered && (x->called_upstream || own_key)),
        .rejected = x->rejected,
    };
    stats_record(st, &r, (uint64_t)time(NULL));
}

/* The front could not read the whole body (engine.h): answered in the
 * client's format for the route, counted like any refused API request. */
static void fail_body(exchange *x)
{
    rl_buf msg;
    rl_buf_init(&msg, 4096);
    if (x->req->body_error == RL_BODY_TIMEOUT)
        rl_buf_printf(&msg, "The request body did not arrive within %ld s ([fcgi] body_timeout).",
                      x->cfg->fcgi.body_timeout);
    else
        rl_buf_puts(&msg, "Relay is busy receiving other request bodies; try again.");
    exchange_fail(x, x->req->body_error, exchange_message(&msg));
    rl_buf_release(&msg);
    if (x->rt.kind == ROUTE_API)
        account(x);
}

/* A CORS preflight (engine/cors.h): answered here, never upstream, never
 * asking for a credential, not counted as a request; a refusal in the
 * client's format. */
static void answer_preflight(exchange *x, cors_sink *cors)
{
    rl_buf why;
    rl_buf_init(&why, 4096);
    if (cors_preflight(cors, x->req, &why) != RL_OK)
        exchange_fail(x, RL_FORBIDDEN, exchange_message(&why));
    rl_buf_release(&why);
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
    x->outcome = "";
    x->usage = PROV_USAGE_UNKNOWN;
    x->ttfb_s = -1;

    route_match(x->cfg, req->path, &x->rt);
    x->prov = x->rt.prov;
    x->preq = (prov_request){
        .endpoint = x->rt.endpoint,
        .method = req->method,
        .path = x->rt.path,
        .query = req->query,
        .body = req->body,
        .body_len = req->body_len,
        .headers = req->headers,
        .nheaders = req->nheaders,
    };
    x->info.framing = FRAME_SSE;
    /* Every answer from here on, errors and streams included, goes through
     * the CORS sink, which lives as long as this call (the request). The
     * provider API paths, and unknown ones, are open to other origins. */
    cors_sink cors;
    cors_sink_init(&cors, x->cfg, req, x->rt.kind == ROUTE_API || x->rt.kind == ROUTE_NONE, sink);
    x->sink = &cors.sink;
    if (req->body_error != RL_OK) {
        fail_body(x);
        return;
    }
    if (cors_is_preflight(req)) {
        answer_preflight(x, &cors);
        return;
    }
    const char *refusal = route_target_refusal(req->path, req->query);
    if (refusal) {
        /* Answered in the format the path resembles (routing chose it). */
        rl_buf msg;
        rl_buf_init(&msg, 4096);
        rl_buf_printf(&msg,
                      "Relay does not forward this request URL: its path or query contains %s.",
                      refusal);
        exchange_fail(x, RL_BAD_REQUEST, exchange_message(&msg));
        rl_buf_release(&msg);
        account(x);
        return;
    }
    switch (x->rt.kind) {
    case ROUTE_HEALTH:
    case ROUTE_METRICS:
    case ROUTE_ADMIN_API:
        observe_serve(x);
        return; /* Relay's own endpoints are not counted as requests */
    case ROUTE_API:
        serve_api(x);
        break;
    case ROUTE_NONE: {
        rl_buf msg;
        rl_buf_init(&msg, 4096);
        rl_buf_printf(&msg,
                      "Unknown request URL: %s %s. Relay serves the provider API paths "
                      "(such as /v1/chat/completions) and /relay/.",
                      req->method, req->path);
        exchange_fail(x, RL_NO_ROUTE, exchange_message(&msg));
        rl_buf_release(&msg);
        break;
    }
    }
    account(x);
}
