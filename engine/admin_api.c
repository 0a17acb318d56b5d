/*
 * admin_api.c — /relay/admin/api/ (see observe.h), once the admin token
 * was checked (observe.c): GET stats, the dashboard's JSON, and POST purge;
 * the client tokens under /tokens are admin_tokens.c's.
 */
#include "engine/observe_int.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/budgets.h"
#include "engine/ckey.h"
#include "engine/cluster_view_int.h"
#include "engine/pricing.h"
#include "engine/prov_json.h"
#include "engine/purge.h"
#include "store/base/rl_log.h"
#include "store/base/rl_version.h"
#include "store/flight.h"

#define INFLIGHT_MAX 200 /* flights listed by the stats API */

static json_t *tokens_json(const uint64_t *c)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I}", "input", (json_int_t)c[C_TOKENS_IN], "output",
                     (json_int_t)c[C_TOKENS_OUT], "cached_input", (json_int_t)c[C_TOKENS_CACHED_IN],
                     "saved_input", (json_int_t)c[C_SAVED_IN], "saved_output",
                     (json_int_t)c[C_SAVED_OUT]);
}

static json_t *money_json(const uint64_t *c)
{
    return json_pack("{s:f,s:f,s:f}", "spent", observe_usd(c[C_NUSD_SPENT]), "saved",
                     observe_usd(c[C_NUSD_SAVED]), "provider_saved",
                     observe_usd(c[C_NUSD_PROVIDER_SAVED]));
}

/* The outcome counts of a usage row into obj. */
static void outcomes_into(json_t *obj, const uint64_t *c)
{
    static const struct {
        const char *name;
        int counter;
    } names[] = {
        {"requests", C_REQUESTS},   {"hits", C_HIT},      {"stale", C_STALE},   {"misses", C_MISS},
        {"coalesced", C_COALESCED}, {"bypass", C_BYPASS}, {"errors", C_ERRORS}, {"fuzzy", C_FUZZY}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        json_object_set_new(obj, names[i].name, json_integer((json_int_t)c[names[i].counter]));
}

static json_t *quantiles_json(const uint64_t *buckets)
{
    double p50 = stats_quantile(buckets, 0.5);
    if (p50 < 0)
        return json_null();
    return json_pack("{s:f,s:f,s:f}", "p50", p50 * 1000, "p95",
                     stats_quantile(buckets, 0.95) * 1000, "p99",
                     stats_quantile(buckets, 0.99) * 1000);
}

static json_t *series_json(stats *st, int per_day, uint64_t now)
{
    size_t n = per_day ? STATS_DAYS : STATS_MINUTES;
    stats_point *pts = calloc(n, sizeof *pts);
    json_t *arr = json_array();
    if (!pts || !arr) {
        free(pts);
        return arr;
    }
    stats_series(st, per_day, now, pts);
    for (size_t i = 0; i < n; i++) {
        const uint64_t *c = pts[i].c;
        json_array_append_new(
            arr,
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f}", "t", (json_int_t)pts[i].t,
                      "requests", (json_int_t)c[S_REQUESTS], "hits", (json_int_t)c[S_HITS],
                      "misses", (json_int_t)c[S_MISSES], "coalesced", (json_int_t)c[S_COALESCED],
                      "errors", (json_int_t)c[S_ERRORS], "tokens_in", (json_int_t)c[S_TOKENS_IN],
                      "tokens_out", (json_int_t)c[S_TOKENS_OUT], "usd_spent",
                      observe_usd(c[S_NUSD_SPENT]), "usd_saved", observe_usd(c[S_NUSD_SAVED])));
    }
    free(pts);
    return arr;
}

typedef struct inflight_arg {
    json_t *list;
    uint64_t now_ms;
    store *s;
} inflight_arg;

static int inflight_item(void *ctx, const uint8_t *key, const store_flight *f)
{
    inflight_arg *a = ctx;
    if (f->state != FLIGHT_RUNNING || !store_flight_leader_alive(f))
        return 0;
    char hex[17];
    ckey_hex16(key, hex); /* as X-Relay-Key shows it */
    uint64_t age = a->now_ms > f->started_ms ? a->now_ms - f->started_ms : 0;
    json_array_append_new(a->list,
                          json_pack("{s:s,s:I,s:i,s:b}", "key", hex, "age_ms", (json_int_t)age,
                                    "leader_pid", (int)f->leader_pid, "followers",
                                    store_flight_attended(a->s, key, a->now_ms)));
    return json_array_size(a->list) >= INFLIGHT_MAX;
}

/* ---- budgets ---------------------------------------------------------------- */

/* One unit of a window: {"limit", "spent", "reserved", "remaining"}, USD for
 * money; limit and remaining null when no limit is set. */
static json_t *amount_json(const budget_amount *a, ledger_unit u)
{
    json_t *o = json_object();
    if (u == LEDGER_USD) {
        json_object_set_new(o, "limit", a->limit ? json_real(observe_usd(a->limit)) : json_null());
        json_object_set_new(o, "spent", json_real(observe_usd(a->spent)));
        json_object_set_new(o, "reserved", json_real(observe_usd(a->reserved)));
        json_object_set_new(o, "remaining",
                            a->limit ? json_real(observe_usd(budget_remaining(a))) : json_null());
        return o;
    }
    json_object_set_new(o, "limit", a->limit ? json_integer((json_int_t)a->limit) : json_null());
    json_object_set_new(o, "spent", json_integer((json_int_t)a->spent));
    json_object_set_new(o, "reserved", json_integer((json_int_t)a->reserved));
    json_object_set_new(o, "remaining",
                        a->limit ? json_integer((json_int_t)budget_remaining(a)) : json_null());
    return o;
}

/* The windows a scope is charged in: "minute", "day", "month", each with
 * its start, when it resets, and every unit. */
static void periods_into(json_t *obj, const budget_status *st)
{
    for (int w = LEDGER_MINUTE; w <= LEDGER_MONTH; w++) {
        const budget_period *p = &st->period[w];
        if (!p->charged)
            continue;
        json_t *o =
            json_pack("{s:I,s:I}", "start", (json_int_t)p->start, "resets", (json_int_t)p->end);
        for (int u = 0; u < LEDGER_UNITS; u++)
            json_object_set_new(o, ledger_unit_name((ledger_unit)u),
                                amount_json(&p->amount[u], (ledger_unit)u));
        json_object_set_new(obj, ledger_window_name((ledger_window)w), o);
    }
    if (st->unreadable)
        json_object_set_new(obj, "unreadable", json_true());
}

/* A Relay token as its client row shows it: its public id, never its text
 * or hash. */
static json_t *token_json(const budget_status *st)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", st->id, "name", st->name, "state",
                          store_token_state_name(st->state));
    json_object_set_new(o, "expires",
                        st->expires ? json_integer((json_int_t)st->expires) : json_null());
    periods_into(o, st);
    return o;
}

/* The [budget] rows of relay.ini, and how many tokens were left out. */
static json_t *budgets_json(const budgets *b)
{
    json_t *global = json_array();
    for (size_t i = b->ntokens; i < b->n; i++) {
        const budget_status *st = &b->v[i];
        json_t *o = json_pack("{s:s,s:s}", "scope", budgets_kind_name(st->kind), "name", st->name);
        periods_into(o, st);
        json_array_append_new(global, o);
    }
    return json_pack("{s:o,s:I}", "global", global, "tokens_left_out", (json_int_t)b->left_out);
}

/* Refusals of a usage row's counters, all reasons together. */
static uint64_t rejected_sum(const uint64_t *c)
{
    uint64_t sum = 0;
    for (int i = 0; i < STATS_REJECTIONS; i++)
        sum += c[C_REJECTED + i];
    return sum;
}

/* Refusals by reason ({"budget": 2, ...}, every reason) of a usage row's
 * counters. */
static json_t *rejections_json(const uint64_t *c)
{
    json_t *o = json_object();
    for (int i = 0; i < STATS_REJECTIONS; i++)
        json_object_set_new(o, stats_rejection_reasons[i],
                            json_integer((json_int_t)c[C_REJECTED + i]));
    return o;
}

/* A client's row: id, outcomes, tokens, money, refusals, and its Relay
 * token when it is one (null for a provider key's hash). */
static json_t *client_json(const char *id, const uint64_t *c, const budget_status *token)
{
    json_t *o = json_pack("{s:s}", "client", id);
    outcomes_into(o, c);
    json_object_set_new(o, "tokens", tokens_json(c));
    json_object_set_new(o, "usd", money_json(c));
    json_object_set_new(o, "rejected", json_integer((json_int_t)rejected_sum(c)));
    json_object_set_new(o, "token", token ? token_json(token) : json_null());
    return o;
}

/* Every client row, each joined with its token; then the live tokens that
 * have no row yet (no request counted since the counters began). */
static json_t *clients_json(const observe_rows *rs, const budgets *b)
{
    json_t *clients = json_array();
    unsigned char *shown = b->ntokens ? calloc(b->ntokens, 1) : NULL;
    for (size_t i = 0; i < rs->n; i++) {
        const stats_row *r = &rs->v[i];
        if (r->kind != STATS_ROW_CLIENT)
            continue;
        const budget_status *t = budgets_token(b, r->labels[0]);
        if (t && shown)
            shown[t - b->v] = 1;
        json_array_append_new(clients, client_json(r->labels[0], r->c, t));
    }
    static const uint64_t none[STATS_COUNTERS];
    for (size_t i = 0; i < b->ntokens; i++)
        if (shown && !shown[i] && b->v[i].state == TOKEN_LIVE)
            json_array_append_new(clients, client_json(b->v[i].id, none, &b->v[i]));
    free(shown);
    return clients;
}

/* An upstream's circuit breaker (breaker.h) as the dashboard shows it:
 * its settings, its state, the failures in the current window, when it
 * last opened and how long its cool-down still runs. */
static json_t *breaker_json(exchange *x, const upstream_config *cu, uint64_t now)
{
    breaker_policy bp = breaker_policy_of(cu);
    breaker_view v;
    breaker_view_of(atomic_load(&x->w->e->breaker), cu->name, &bp, now, &v);
    json_t *o = json_pack("{s:b,s:s,s:I,s:I,s:I,s:I,s:I}", "enabled", bp.failures > 0, "state",
                          breaker_state_name(v.state), "failures", (json_int_t)v.failures,
                          "threshold", (json_int_t)bp.failures, "window_s", (json_int_t)bp.window,
                          "cooldown_s", (json_int_t)bp.cooldown, "opens", (json_int_t)v.opens);
    json_object_set_new(o, "opened_at",
                        v.opened_at ? json_integer((json_int_t)v.opened_at) : json_null());
    json_object_set_new(o, "retry_in",
                        v.state == BREAKER_OPEN ? json_integer((json_int_t)v.retry_in)
                                                : json_null());
    json_object_set_new(o, "prober", v.prober ? json_integer((json_int_t)v.prober) : json_null());
    return o;
}

static json_t *stats_json(exchange *x, const observe_rows *rs, uint64_t now)
{
    uint64_t totals[STATS_COUNTERS] = {0};
    uint64_t calls = 0;
    /* Budgets from where they live (the shared store with [cluster]); the
     * calls in flight and the cache's figures from this host's store. */
    store *shared = exchange_shared(x), *s = exchange_store(x);
    budgets b = {0};
    int have_budgets = shared && budgets_read(shared, x->cfg, now, &b) == RL_OK;
    json_t *models = json_array(), *upstreams = json_array();
    for (size_t i = 0; i < rs->n; i++) {
        const stats_row *r = &rs->v[i];
        if (r->kind == STATS_ROW_MODEL) {
            for (int c = 0; c < STATS_COUNTERS; c++)
                totals[c] += r->c[c];
            const model_price *p = pricing_find(x->cfg, r->labels[1]);
            json_t *m = json_pack("{s:s,s:s,s:b}", "model", r->labels[1], "upstream", r->labels[0],
                                  "priced", p != NULL);
            json_object_set_new(m, "price",
                                p ? json_pack("{s:f,s:f,s:f,s:f}", "input", p->input, "output",
                                              p->output, "cached_input", p->cached_input,
                                              "cache_write", p->cache_write)
                                  : json_null());
            outcomes_into(m, r->c);
            json_object_set_new(m, "tokens", tokens_json(r->c));
            json_object_set_new(m, "usd", p ? money_json(r->c) : json_null());
            json_array_append_new(models, m);
        }
    }
    json_t *clients = clients_json(rs, &b);
    for (size_t u = 0; u < x->cfg->nupstreams; u++) {
        const upstream_config *cu = &x->cfg->upstreams[u];
        static const uint64_t none[STATS_COUNTERS];
        const uint64_t *c = none;
        for (size_t i = 0; i < rs->n; i++)
            if (rs->v[i].kind == STATS_ROW_UPSTREAM && !strcmp(rs->v[i].labels[0], cu->name))
                c = rs->v[i].c;
        calls += c[C_UP_CALLS];
        static const char *const type_names[] = {"openai", "anthropic", "azure",
                                                 "gemini", "ollama",    "openai-compatible"};
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "name", cu->name, "type", type_names[cu->type],
                      "base_url", cu->base_url, "requests", (json_int_t)c[C_UP_REQUESTS], "errors",
                      (json_int_t)c[C_UP_ERRORS], "upstream_calls", (json_int_t)c[C_UP_CALLS]);
        json_object_set_new(o, "latency_ms", quantiles_json(c + C_UP_LATENCY_BUCKET));
        json_object_set_new(o, "ttfb_ms", quantiles_json(c + C_UP_TTFB_BUCKET));
        json_object_set_new(o, "breaker", breaker_json(x, cu, now));
        json_array_append_new(upstreams, o);
    }

    json_t *t = json_object();
    outcomes_into(t, totals);
    json_object_set_new(t, "upstream_calls", json_integer((json_int_t)calls));
    uint64_t served = totals[C_HIT] + totals[C_STALE] + totals[C_COALESCED];
    json_object_set_new(
        t, "hit_rate",
        json_real(totals[C_REQUESTS] ? (double)served / (double)totals[C_REQUESTS] : 0));
    json_object_set_new(t, "tokens", tokens_json(totals));
    json_object_set_new(t, "usd", money_json(totals));
    json_object_set_new(t, "unpriced_requests", json_integer((json_int_t)totals[C_UNPRICED]));
    json_object_set_new(t, "rejected", json_integer((json_int_t)rejected_sum(totals)));
    json_object_set_new(t, "rejections", rejections_json(totals));

    /* "api": this document's shape (3: budgets and refusals; 4: each
     * upstream's breaker; 5: "cluster"); "version": which Relay answers. */
    json_t *root =
        json_pack("{s:i,s:s,s:I}", "api", 5, "version", rl_version(), "now", (json_int_t)now);
    /* cluster_view.h's object; null without [cluster] or while the shared
     * store cannot be read (health says which). */
    store_cluster_status cl;
    json_t *cluster = observe_cluster_status(x, now, &cl) ? cluster_view_object(&cl, now) : NULL;
    json_object_set_new(root, "cluster", cluster ? cluster : json_null());
    json_object_set_new(root, "totals", t);
    json_object_set_new(root, "models", models);
    json_object_set_new(root, "upstreams", upstreams);
    json_object_set_new(root, "clients", clients);
    /* null while the store cannot be read: then no client shows its token */
    json_object_set_new(root, "budgets", have_budgets ? budgets_json(&b) : json_null());
    budgets_release(&b);
    stats *st = observe_stats(x);
    json_t *series = json_object();
    json_object_set_new(series, "minute", st ? series_json(st, 0, now) : json_array());
    json_object_set_new(series, "day", st ? series_json(st, 1, now) : json_array());
    json_object_set_new(root, "series", series);

    inflight_arg ia = {json_array(), now * 1000, s};
    if (s)
        store_flight_each(s, 100000, inflight_item, &ia);
    json_object_set_new(root, "inflight", ia.list);
    store_stats ss;
    if (s && store_stats_get(s, &ss) == RL_OK)
        json_object_set_new(
            root, "store",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "entries", (json_int_t)ss.entries, "bytes",
                      (json_int_t)ss.bytes, "max_bytes", (json_int_t)x->cfg->store.max_bytes,
                      "max_entries", (json_int_t)x->cfg->store.max_entries, "evictions",
                      (json_int_t)ss.evictions, "expired_removed", (json_int_t)ss.expired_removed));
    else
        json_object_set_new(root, "store", json_null());

    rl_buf why;
    rl_buf_init(&why, 0);
    int problems = observe_health_problems(x, &why);
    json_t *reasons = json_array();
    for (char *line = why.data, *end; line && *line; line = end + 1) {
        end = strchr(line, '\n');
        if (!end)
            break;
        json_array_append_new(reasons, json_stringn(line, (size_t)(end - line)));
    }
    rl_buf_release(&why);
    json_object_set_new(
        root, "health",
        json_pack("{s:s,s:o}", "status", problems ? "degraded" : "ok", "reasons", reasons));
    return root;
}

static void send_json(exchange *x, int status, json_t *j)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    if (!j || prov_json_dump(j, JSON_COMPACT, &out) != RL_OK)
        exchange_fail(x, RL_NOMEM, NULL);
    else
        observe_send(x, status, "application/json", out.data, out.len);
    json_decref(j);
    rl_buf_release(&out);
}

static void serve_stats(exchange *x)
{
    observe_rows rs;
    if (observe_rows_collect(observe_stats(x), &rs) != RL_OK)
        exchange_fail(x, RL_NOMEM, NULL);
    else
        send_json(x, 200, stats_json(x, &rs, (uint64_t)time(NULL)));
    observe_rows_release(&rs);
}

/* Reads the purge request's conditions into f (strings point into body);
 * NULL when they make sense, else what is wrong, for the client. */
static const char *purge_request(json_t *body, purge_filter *f)
{
    static const char usage[] =
        "Send a JSON object with {\"all\": true}, or with one or more of \"expired\": true, "
        "\"older_than\": SECONDS, \"model\", \"namespace\", \"upstream\" (all must hold).";
    if (!json_is_object(body))
        return usage;
    const char *name;
    json_t *v;
    int conditions = 0;
    json_object_foreach(body, name, v)
    {
        const char **label = !strcmp(name, "model")       ? &f->model
                             : !strcmp(name, "namespace") ? &f->ns
                             : !strcmp(name, "upstream")  ? &f->upstream
                                                          : NULL;
        if (label) {
            if (!json_is_string(v))
                return usage;
            *label = json_string_value(v);
        } else if (!strcmp(name, "all") || !strcmp(name, "expired")) {
            if (!json_is_true(v))
                return usage;
            *(!strcmp(name, "all") ? &f->all : &f->expired) = 1;
        } else if (!strcmp(name, "older_than")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return usage;
            f->older = 1;
            f->older_than = (uint64_t)json_integer_value(v);
        } else {
            return usage;
        }
        conditions++;
    }
    if (!conditions)
        return usage;
    return purge_check(f);
}

static void serve_purge(exchange *x)
{
    json_t *body = prov_json_load(x->req->body, x->req->body_len, NULL);
    purge_filter f = {0};
    const char *wrong = purge_request(body, &f);
    if (wrong) {
        exchange_fail(x, body ? RL_BAD_REQUEST : RL_BAD_JSON, wrong);
        json_decref(body);
        return;
    }
    store *s = exchange_store(x);
    uint64_t removed = 0;
    rl_err err = s ? purge_run(s, &f, (uint64_t)time(NULL), &removed) : RL_STORE;
    json_decref(body);
    if (!s) {
        exchange_fail(x, RL_STORE, "The store is unavailable: there is nothing to purge.");
        return;
    }
    if (err != RL_OK) {
        rl_warn("admin API: purge failed after removing %llu entries: %s",
                (unsigned long long)removed, rl_err_text(err));
        exchange_fail(x, err, "The purge failed part way; see Relay's log.");
        return;
    }
    rl_info("admin API: purged %llu entries", (unsigned long long)removed);
    send_json(x, 200, json_pack("{s:I}", "removed", (json_int_t)removed));
}

void admin_api_serve(exchange *x)
{
    const char *path = x->rt.path, *method = x->req->method;
    if (!strcmp(path, "/stats") && !strcmp(method, "GET"))
        serve_stats(x);
    else if (!strcmp(path, "/purge") && !strcmp(method, "POST"))
        serve_purge(x);
    else if (!strcmp(path, "/tokens") || !strncmp(path, "/tokens/", 8))
        admin_tokens_serve(x);
    else if (!strcmp(path, "/stats") || !strcmp(path, "/purge"))
        exchange_fail(x, RL_METHOD, "Use GET for /relay/admin/api/stats, POST for .../purge.");
    else
        exchange_fail(x, RL_NO_ROUTE, "Unknown admin API path: see /relay/admin/api/stats.");
}
