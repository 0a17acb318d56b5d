/*
 * call.c — one request's upstream call behind its guards (call.h).
 */
#include "engine/call.h"

#include <limits.h>
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
#include "engine/coalesce.h"
#include "engine/deadline.h"
#include "engine/fuzzy_serve.h"
#include "engine/hit.h"
#include "engine/promptcache.h"
#include "engine/retry.h"
#include "engine/spend.h"
#include "engine/translate.h"
#include "engine/upstream.h"
#include "store/base/rl_log.h"
#include "store/token.h"

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void exchange_release(void *p)
{
    exchange *x = p;
    rl_buf_release(&x->body);
    if (x->frame_ready)
        frame_release(&x->frame);
}

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

/* The URL of a translated call: up's base_url + the path (and query) its
 * format's translator chose; the client's query is its own format's. */
static char *translated_url(exchange *x, const upstream_config *up, const char *path)
{
    rl_buf url;
    rl_buf_init(&url, 0);
    char *s = NULL;
    if (rl_buf_printf(&url, "%s%s", up->base_url, path) == RL_OK)
        s = rl_pstrdup(x->req->pool, url.data);
    rl_buf_release(&url);
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
        fuzzy_remember(x);
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

/* The client's credential, moved to up's own header when the call is
 * translated and Relay holds no key (the client's header is another
 * format's); in x's pool, or NULL when it presented none. */
static const char *client_credential(exchange *x)
{
    char buf[1024];
    const char *c = prov_credential_key(&x->preq, x->prov->credential(&x->preq, buf, sizeof buf));
    return c ? rl_pstrdup(x->req->pool, c) : NULL;
}

/* The call of x to up, with held (the key Relay holds for up, or NULL:
 * the client's credential goes as it came, or in up's header when the call
 * is translated), in x's pool. RL_NOMEM, or, for a request that cannot be
 * translated for up, RL_BAD_REQUEST with the client's message in why. */
static rl_err prepare_call(exchange *x, const upstream_config *up, const char *held,
                           upstream_request *ur, rl_buf *why)
{
    const engine_request *req = x->req;
    int translated = translate_needed(x, up);
    const char *body = req->body_len || strcmp(req->method, "POST") == 0 ? req->body : NULL;
    size_t body_len = req->body_len;
    const char *url;
    if (translated) {
        const char *path;
        rl_err err = translate_prepare(x, up, &body, &body_len, &path, why);
        if (err != RL_OK)
            return err;
        url = translated_url(x, up, path);
        if (!held)
            held = client_credential(x);
    } else
        url = upstream_url(x, up, held);
    rl_header *fwd =
        rl_palloc(req->pool, (req->nheaders + 1 + TRANSLATE_MAX_HEADERS) * sizeof *fwd);
    if (!fwd || !url)
        return RL_NOMEM;
    size_t nfwd = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (exchange_forwards_header(req->headers[i].name) &&
            !(held && auth_is_credential_header(req->headers[i].name)) &&
            !(translated && !translate_forwards_header(req->headers[i].name)))
            fwd[nfwd++] = req->headers[i];
    if (held && held_key_header(x, up, held, &fwd[nfwd++]) != 0)
        return RL_NOMEM;
    if (translated)
        nfwd += translate_upstream_headers(up, &fwd[nfwd]);
    *ur = (upstream_request){
        .method = req->method,
        .url = url,
        .headers = fwd,
        .nheaders = nfwd,
        .body = body,
        .body_len = body_len,
        .connect_timeout = up->connect_timeout,
        .first_byte_timeout = up->first_byte_timeout,
        .idle_timeout = up->idle_timeout,
        .timeout = up->timeout,
        .timed_out = &x->timed_out,
    };
    /* Prompt-cache hints for up (promptcache.h): the body sent only; the
     * key was made from the client's own. */
    const char *endpoint = translated ? translate_upstream_endpoint(up) : x->rt.endpoint;
    return promptcache_upstream_body(req->pool, up, endpoint, x->key_scope, &ur->body,
                                     &ur->body_len) == 0
               ? RL_OK
               : RL_NOMEM;
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
static rl_err perform_with_retries(exchange *x, upstream_request *ur, int *got_head, rl_buf *why)
{
    const retry_clock *clk = x->w->retry_clock ? x->w->retry_clock : &retry_system_clock;
    const upstream_config *up = x->rt.upstream;
    const upstream_handler direct = {x, on_upstream_head, on_upstream_data, on_upstream_tick};
    int fell_back = 0;
    if (x->first_fallback) {
        /* The route's breaker is open: straight to its fallback. */
        up = x->first_fallback;
        rl_err err = prepare_call(x, up, x->first_fallback_key, ur, why);
        if (err != RL_OK)
            return err;
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
        /* A translated call hands the engine the client's format
         * (translate.h); each attempt's upstream may speak another. */
        int translated = translate_needed(x, up);
        upstream_handler h = direct;
        if (translated)
            translate_handler(x, up, &direct, &h);
        x->upstream_start = mono_seconds();
        rl_err err = x->w->perform(x->w->upstream, ur, &h, got_head);
        if (translated)
            err = translate_finish(x, err);
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
        rl_buf refusal;
        rl_buf_init(&refusal, 4096);
        rl_err prepared = to ? prepare_call(x, to, held, ur, &refusal) : RL_NOTFOUND;
        if (to && prepared != RL_OK)
            rl_info("no fallback to [upstream.%s]: %s", to->name,
                    exchange_message(&refusal) ? refusal.data : rl_err_text(prepared));
        rl_buf_release(&refusal);
        if (prepared != RL_OK) {
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
    rl_buf refusal;
    rl_buf_init(&refusal, 4096);
    rl_err err = rl_pool_cleanup(req->pool, exchange_release, x) != 0
                     ? RL_NOMEM
                     : prepare_call(x, x->rt.upstream, x->spend.held_key, &ur, &refusal);
    if (err != RL_OK) {
        fail_before_answer(x, err, refusal.len ? exchange_message(&refusal) : NULL);
        rl_buf_release(&refusal);
        return;
    }
    int got_head = 0;
    x->called_upstream = 1;
    err = perform_with_retries(x, &ur, &got_head, &refusal);
    if (refusal.len && !got_head) {
        /* The breaker's fallback could not take this request (translate.h). */
        fail_before_answer(x, err, exchange_message(&refusal));
        rl_buf_release(&refusal);
        return;
    }
    rl_buf_release(&refusal);
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
        if (hit_serve(x) == RL_OK) {
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

/* A request its route's upstream cannot be sent in its own format and that
 * cannot be translated for it is refused before any guard counts it (no
 * budget held, no place taken): 400 naming the field, followers too. The
 * request it encodes is kept for the call (translate.h). -1 when refused. */
static int refuse_untranslatable(exchange *x)
{
    if (!translate_needed(x, x->rt.upstream))
        return 0;
    const char *body, *path;
    size_t len;
    rl_buf why;
    rl_buf_init(&why, 4096);
    rl_err err = translate_prepare(x, x->rt.upstream, &body, &len, &path, &why);
    if (err != RL_OK)
        fail_before_answer(x, err, exchange_message(&why));
    rl_buf_release(&why);
    return err == RL_OK ? 0 : -1;
}

/* Calls upstream once its breaker admits the call (or, while it is open,
 * sends it to the upstream's fallback), x's worst case fits its budgets and
 * rate limits (spend.h) and a place for the call is free (admission.h);
 * records the route's outcome for its breaker and settles what it used; a
 * refusal reaches followers too. */
void call_upstream_guarded(exchange *x)
{
    rl_err err;
    const char *message;
    if (refuse_untranslatable(x) != 0)
        return;
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
