/*
 * engine.c — the request flow: route, authenticate, key, policy, lookup
 * (engine/hit.c), the upstream call and its store (engine/call.c). See
 * DESIGN.md "Request flow".
 *
 * One exchange (struct exchange) lives for one request on one thread. The
 * client's status line is committed exactly once (exchange_start): for a
 * stream when the upstream's first byte arrives, for everything else when
 * the whole upstream answer is in, so a body cut short can still become a
 * clean 502 instead of a truncated 200.
 */
#include "engine/engine.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/admission.h"
#include "engine/alias.h"
#include "engine/auth.h"
#include "engine/breaker.h"
#include "engine/cluster_host.h"
#include "engine/call.h"
#include "engine/ckey.h"
#include "engine/coalesce.h"
#include "engine/cors.h"
#include "engine/exchange.h"
#include "engine/fuzzy_serve.h"
#include "engine/hit.h"
#include "engine/memo.h"
#include "engine/models.h"
#include "engine/models_list.h"
#include "engine/observe.h"
#include "engine/pricing.h"
#include "engine/retry.h"
#include "engine/spend.h"
#include "engine/upstream.h"
#include "store/base/rl_log.h"

const char *engine_header(const engine_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
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

/* With [cluster]: opens the shared store as a subordinate of the host's
 * cluster process (fcgi/cluster.c runs the listener); retried like the
 * store. */
static void open_shared(engine *e, uint64_t now)
{
    const relay_config *cfg = e->cfg;
    store *s = NULL;
    rl_err err = cluster_host_store_open(cfg, 0, &s);
    if (err != RL_OK) {
        rl_error("the shared store at %s is unavailable (%s): requests that need tokens or "
                 "budgets are refused; retrying in %d s",
                 cfg->cluster.home, rl_err_text(err), STORE_RETRY_SECONDS);
        e->shared_retry_at = now + STORE_RETRY_SECONDS;
        return;
    }
    if (now)
        rl_info("the shared store at %s is available again", cfg->cluster.home);
    atomic_store(&e->shared, s);
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
    if (cfg->cluster.site[0])
        open_shared(e, 0);
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
    store_close(atomic_load(&e->shared));
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
    if (e->cfg->cluster.site[0]) {
        store *shared = atomic_load(&e->shared);
        if (shared)
            store_maintain(shared, now);
        else if (now >= e->shared_retry_at)
            open_shared(e, now);
    }
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

/* ---- the request flow ------------------------------------------------- */

/* Whether x's key is shared between clients ([cache] scope = shared).
 * Relay cannot check a provider key it passes through without spending
 * it, so with pass-through alone any credential string shares the cache.
 * Where Relay client tokens are in use ([auth] mode = tokens or both) it
 * shares only between requests presenting a valid token, which Relay
 * checked itself; a passed-through key then keeps its own scope. */
static int shares_cache(const exchange *x)
{
    return x->cfg->cache.scope == CACHE_SCOPE_SHARED &&
           (x->cfg->auth.mode == AUTH_MODE_PASSTHROUGH || x->spend.has_token);
}

/* Computes the cache key; leaves key_hex empty when it cannot. *in gets
 * what it was computed from. */
/* Whether x's upstream refuses calls without a key: local servers
 * (Ollama, OpenAI-compatible ones) may have none, and there the client's
 * own absence of one is passed on. */
static int needs_credential(const exchange *x)
{
    upstream_type type = x->rt.upstream->type;
    return type != UPSTREAM_TYPE_OLLAMA && type != UPSTREAM_TYPE_OPENAI_COMPATIBLE;
}

static void compute_key(exchange *x, const char *credential_scope, const rl_buf *canonical,
                        const rl_buf *key_parts, ckey_input *in)
{
    const char *scope = shares_cache(x) ? "shared" : credential_scope;
    const char *ns = x->ns;
    *in = (ckey_input){
        .format = x->prov->format,
        .endpoint = x->rt.endpoint,
        .upstream = x->rt.upstream->name,
        .path_parts = key_parts->data ? key_parts->data : "",
        .scope = scope,
        .ns = ns ? ns : "",
        .body = canonical->data ? canonical->data : "",
        .body_len = canonical->len,
    };
    if (ckey_compute(in, x->key) == RL_OK)
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
    /* A merged model list (models_list.h) reads the credential of the
     * shape it answers in, and answers once the client is known. */
    int merged_list = models_list_claim(x);
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
    /* The scope compute_key uses, kept for the call (promptcache.h). */
    x->key_scope = shares_cache(x) ? "shared" : scope;
    /* With [models] lines the upstream is known only once the body is
     * read: the check waits for it (after models_reroute). */
    if (!credential && !x->cfg->models.n && needs_credential(x)) {
        exchange_fail(x, RL_UNAUTHORIZED, x->prov->missing_credential);
        goto out;
    }
    if (merged_list) {
        models_list_serve(x, credential);
        goto out;
    }
    if (!x->rt.endpoint) {
        /* Not a cacheable endpoint: forwarded as is. */
        x->cache_status = "BYPASS";
        call_upstream_guarded(x);
        goto out;
    }
    if (strcmp(req->method, x->rt.method) != 0) {
        rl_buf_printf(&msg, "%s is not allowed on %s; use %s.", req->method, req->path,
                      x->rt.method);
        exchange_fail(x, RL_METHOD, exchange_message(&msg));
        goto out;
    }

    alias_body alias;
    if (alias_take(x, &alias) != 0)
        goto out;
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
    /* By the model, now known: the upstream may change, so before the
     * budgets and the key, which both name it. */
    if (models_reroute(x) != 0)
        goto out;
    if (!credential && needs_credential(x)) {
        exchange_fail(x, RL_UNAUTHORIZED, x->prov->missing_credential);
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
    if (alias_apply(x, &alias) != 0)
        goto out;
    if (x->cc.only_if_cached && shares_cache(x) && !x->spend.has_token) {
        /* Under a shared scope any string passes for a credential (Relay
         * cannot check a provider key without spending it), and an
         * only-if-cached answer never reaches the upstream that would:
         * anyone could test for free whether a prompt was asked. */
        exchange_fail(x, RL_FORBIDDEN,
                      "Cache-Control: only-if-cached is refused when this Relay shares its cache "
                      "between credentials ([cache] scope = shared): it cannot vouch for yours.");
        goto out;
    }
    x->decision = policy_decide(x->rt.upstream, &x->cc, x->info.deterministic, x->info.stateful,
                                x->info.tools);
    if (x->info.max_ttl > 0 && x->decision.ttl > x->info.max_ttl)
        x->decision.ttl = x->info.max_ttl;
    /* A key is needed to look up, to store, and to share an in-flight call
     * ([coalesce] mode = all shares even answers that are not cached). */
    int wants_key = x->decision.lookup || x->decision.store ||
                    (x->cfg->coalesce.mode == COALESCE_ALL && !x->info.stateful);
    ckey_input key_in;
    if (exchange_store(x) && wants_key) {
        compute_key(x, scope, &canonical, &key_parts, &key_in);
        fuzzy_prepare(x, &key_in);
    }

    if (x->key_hex[0] && x->decision.lookup && hit_serve(x) == RL_OK)
        goto out;
    if (x->fuzzy && fuzzy_serve(x) == RL_OK)
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
        if (hit_serve(x) == RL_OK)
            goto out;
        break;
    case COALESCE_LEAD:
    case COALESCE_ALONE:
        break;
    }
    call_upstream_guarded(x);
out:
    fuzzy_finish(x);
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
    int own_key = !shares_cache(x);
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
        .provider_saved = price ? pricing_provider_saving(price, &x->usage) : 0,
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
