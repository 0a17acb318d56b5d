/*
 * observe.c — health, metrics and the admin API (see observe.h).
 */
#include "engine/observe.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/pricing.h"
#include "engine/purge.h"
#include "engine/prov_json.h"
#include "store/base/rl_log.h"
#include "store/base/rl_secure.h"
#include "store/flight.h"
#include "store/secret.h"

#define INFLIGHT_MAX 200 /* flights listed by the stats API */

static stats *stats_of(const exchange *x)
{
    return atomic_load(&x->w->e->stats);
}

static void send_text(exchange *x, int status, const char *ctype, const char *text, size_t len)
{
    if (exchange_start(x, status, ctype, NULL, -1, 0) == 0) {
        exchange_write(x, text, len);
        exchange_flush(x);
    }
}

/* ---- health ------------------------------------------------------------------ */

/* Appends one line per problem to why; returns how many. */
static int health_problems(exchange *x, rl_buf *why)
{
    int n = 0;
    if (!exchange_store(x)) {
        rl_buf_printf(why, "store: unavailable (%s): serving without a cache\n",
                      x->cfg->store.home);
        n++;
    }
    if (!stats_of(x)) {
        rl_buf_puts(why, "stats: unavailable: nothing is counted\n");
        n++;
    }
    /* Each upstream's breaker joins here once there is one. */
    return n;
}

static void serve_health(exchange *x)
{
    rl_buf why, out;
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    int problems = health_problems(x, &why);
    rl_buf_printf(&out, "%s\n%s", problems ? "degraded" : "ok", why.data ? why.data : "");
    send_text(x, problems ? 503 : 200, "text/plain; charset=utf-8", out.data, out.len);
    rl_buf_release(&why);
    rl_buf_release(&out);
}

/* ---- the admin token ---------------------------------------------------------- */

/* Whether the query names a credential parameter, wherever it stands. */
static int token_in_query(const prov_request *r)
{
    static const char *const names[] = {"token", "access_token", "admin_token", "key", "auth"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (prov_query_has(r, names[i]))
            return 1;
    return 0;
}

/* 1 when x carries the admin token; else answers x (401) and returns 0. */
static int admin_authorized(exchange *x)
{
    if (token_in_query(&x->preq)) {
        exchange_fail(x, RL_UNAUTHORIZED,
                      "The admin token is accepted only in the Authorization header (Bearer), "
                      "never in the URL, where logs and browser histories keep it.");
        return 0;
    }
    /* Read at each request, so a token replaced in its file takes effect
     * at once; secret.h refuses a file other users may read. */
    secret want;
    rl_err e = secret_read(x->cfg->admin.token_file, &want, NULL);
    if (e != RL_OK) {
        exchange_fail(x, RL_UNAUTHORIZED,
                      e == RL_NOTFOUND    ? "This Relay has no admin token yet: run `relay-admin "
                                            "init`, which creates [admin] token_file."
                      : e == RL_FORBIDDEN ? "The admin token file is readable by other users, "
                                            "so it is not used: chmod 600 it (`relay-admin "
                                            "doctor` says where it is)."
                                          : "The admin token file cannot be used: `relay-admin "
                                            "doctor` tells why.");
        return 0;
    }
    const char *auth = engine_header(x->req, "authorization");
    int ok = 0;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *got = auth + 7;
        while (*got == ' ')
            got++;
        ok = rl_ct_equal(got, strlen(got), want.data, want.len);
    }
    secret_release(&want);
    if (!ok)
        exchange_fail(x, RL_UNAUTHORIZED,
                      auth ? "The admin token is not valid."
                           : "Send the admin token as \"Authorization: Bearer TOKEN\".");
    return ok;
}

/* ---- gathering ------------------------------------------------------------------ */

/* Every row of the shared counters, copied once per report. */
typedef struct rows {
    stats_row *v;
    size_t n, cap;
    char (*labels)[STATS_LABELS][STATS_LABEL_MAX]; /* the copies the views point to */
} rows;

static int collect_row(void *ctx, const stats_row *row)
{
    rows *r = ctx;
    if (r->n == r->cap)
        return 1;
    stats_row *copy = &r->v[r->n];
    *copy = *row;
    for (int l = 0; l < STATS_LABELS; l++) {
        snprintf(r->labels[r->n][l], STATS_LABEL_MAX, "%s", row->labels[l]);
        copy->labels[l] = r->labels[r->n][l];
    }
    r->n++;
    return 0;
}

static int rows_collect(exchange *x, rows *r)
{
    memset(r, 0, sizeof *r);
    stats *st = stats_of(x);
    if (!st)
        return 0;
    r->v = calloc(STATS_ROWS, sizeof *r->v);
    r->labels = calloc(STATS_ROWS, sizeof *r->labels);
    if (!r->v || !r->labels)
        return -1;
    r->cap = STATS_ROWS;
    stats_each_row(st, collect_row, r);
    return 0;
}

static void rows_release(rows *r)
{
    free(r->v);
    free(r->labels);
}

static double usd(uint64_t nusd)
{
    return (double)nusd / 1e9;
}

/* ---- metrics ---------------------------------------------------------------------- */

/* A label value with \, " and newlines escaped (the exposition format). */
static void put_label(rl_buf *out, const char *name, const char *value, int first)
{
    rl_buf_printf(out, "%s%s=\"", first ? "" : ",", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            rl_buf_puts(out, "\\\\");
        else if (*p == '"')
            rl_buf_puts(out, "\\\"");
        else if (*p == '\n')
            rl_buf_puts(out, "\\n");
        else
            rl_buf_append(out, p, 1);
    }
    rl_buf_puts(out, "\"");
}

static void family(rl_buf *out, const char *name, const char *type, const char *help)
{
    rl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{upstream="..",model=".."[,extra="v"]} value */
static void sample_um(rl_buf *out, const char *name, const stats_row *r, const char *extra,
                      const char *extra_value, const char *value)
{
    rl_buf_printf(out, "%s{", name);
    put_label(out, "upstream", r->labels[0], 1);
    put_label(out, "model", r->labels[1], 0);
    if (extra)
        put_label(out, extra, extra_value, 0);
    rl_buf_printf(out, "} %s\n", value);
}

static const char *u64(char *buf, uint64_t v)
{
    snprintf(buf, 24, "%llu", (unsigned long long)v);
    return buf;
}

static const char *dbl(char *buf, double v)
{
    snprintf(buf, 32, "%.9g", v);
    return buf;
}

static void histogram(rl_buf *out, const rows *rs, const char *name, int bucket0, int sum)
{
    char a[32], b[32];
    for (size_t i = 0; i < rs->n; i++) {
        const stats_row *r = &rs->v[i];
        if (r->kind != STATS_ROW_UPSTREAM)
            continue;
        uint64_t cumulative = 0;
        for (int k = 0; k < STATS_BUCKETS; k++) {
            cumulative += r->c[bucket0 + k];
            rl_buf_printf(out, "%s_bucket{", name);
            put_label(out, "upstream", r->labels[0], 1);
            if (k < STATS_BUCKETS - 1)
                rl_buf_printf(out, ",le=\"%s\"} %s\n", dbl(a, stats_bucket_le[k]),
                              u64(b, cumulative));
            else
                rl_buf_printf(out, ",le=\"+Inf\"} %s\n", u64(b, cumulative));
        }
        rl_buf_printf(out, "%s_sum{", name);
        put_label(out, "upstream", r->labels[0], 1);
        rl_buf_printf(out, "} %s\n%s_count{", dbl(a, (double)r->c[sum] / 1e6), name);
        put_label(out, "upstream", r->labels[0], 1);
        rl_buf_printf(out, "} %s\n", u64(b, cumulative));
    }
}

static int count_running(void *ctx, const uint8_t *key, const store_flight *f)
{
    (void)key;
    *(uint64_t *)ctx += f->state == FLIGHT_RUNNING && store_flight_leader_alive(f);
    return 0;
}

static void serve_metrics(exchange *x)
{
    if (x->cfg->metrics.access == METRICS_ADMIN && !admin_authorized(x))
        return;
    rows rs;
    rl_buf out;
    rl_buf_init(&out, 0);
    if (rows_collect(x, &rs) != 0) {
        rows_release(&rs);
        exchange_fail(x, RL_NOMEM, NULL);
        return;
    }
    char a[32];
    family(&out, "relay_requests_total", "counter",
           "Requests answered, by upstream, model, cache outcome (X-Cache) and status.");
    for (size_t i = 0; i < rs.n; i++) {
        const stats_row *r = &rs.v[i];
        if (r->kind != STATS_ROW_REQUESTS)
            continue;
        rl_buf_puts(&out, "relay_requests_total{");
        put_label(&out, "upstream", r->labels[0], 1);
        put_label(&out, "model", r->labels[1], 0);
        put_label(&out, "cache", r->labels[2], 0);
        put_label(&out, "status", r->labels[3], 0);
        rl_buf_printf(&out, "} %s\n", u64(a, r->c[C_COUNT]));
    }

    static const struct {
        const char *name, *type, *help, *extra, *extra_value;
        int counter;
        int money; /* nano-USD, only for priced models */
    } usage_samples[] = {
        {"relay_tokens_total", "counter", "Tokens paid for upstream, by kind.", "kind", "input",
         C_TOKENS_IN, 0},
        {"relay_tokens_total", NULL, NULL, "kind", "output", C_TOKENS_OUT, 0},
        {"relay_tokens_total", NULL, NULL, "kind", "cached_input", C_TOKENS_CACHED_IN, 0},
        {"relay_tokens_saved_total", "counter",
         "Tokens of answers served from the cache or a shared call instead of upstream.", "kind",
         "input", C_SAVED_IN, 0},
        {"relay_tokens_saved_total", NULL, NULL, "kind", "output", C_SAVED_OUT, 0},
        {"relay_spent_usd_total", "counter",
         "USD spent upstream at the [pricing] table's prices (priced models only).", NULL, NULL,
         C_NUSD_SPENT, 1},
        {"relay_saved_usd_total", "counter",
         "USD saved by the cache and by coalescing at the [pricing] table's prices (priced "
         "models only).",
         NULL, NULL, C_NUSD_SAVED, 1},
        {"relay_unpriced_requests_total", "counter",
         "Requests for models with no [pricing] row (their money is not counted).", NULL, NULL,
         C_UNPRICED, 0},
        {"relay_coalesced_requests_total", "counter",
         "Requests answered by following an identical request's upstream call.", NULL, NULL,
         C_COALESCED, 0},
    };
    for (size_t s = 0; s < sizeof usage_samples / sizeof usage_samples[0]; s++) {
        if (usage_samples[s].type)
            family(&out, usage_samples[s].name, usage_samples[s].type, usage_samples[s].help);
        for (size_t i = 0; i < rs.n; i++) {
            const stats_row *r = &rs.v[i];
            if (r->kind != STATS_ROW_MODEL)
                continue;
            uint64_t v = r->c[usage_samples[s].counter];
            if (usage_samples[s].money && !pricing_find(x->cfg, r->labels[1]))
                continue;
            sample_um(&out, usage_samples[s].name, r, usage_samples[s].extra,
                      usage_samples[s].extra_value,
                      usage_samples[s].money ? dbl(a, usd(v)) : u64(a, v));
        }
    }

    family(&out, "relay_upstream_calls_total", "counter", "Calls made to each upstream.");
    for (size_t i = 0; i < rs.n; i++)
        if (rs.v[i].kind == STATS_ROW_UPSTREAM) {
            rl_buf_puts(&out, "relay_upstream_calls_total{");
            put_label(&out, "upstream", rs.v[i].labels[0], 1);
            rl_buf_printf(&out, "} %s\n", u64(a, rs.v[i].c[C_UP_CALLS]));
        }
    family(&out, "relay_upstream_latency_seconds", "histogram",
           "Duration of upstream calls, whole (streams to their end).");
    histogram(&out, &rs, "relay_upstream_latency_seconds", C_UP_LATENCY_BUCKET,
              C_UP_LATENCY_SUM_US);
    family(&out, "relay_upstream_ttfb_seconds", "histogram",
           "Time from sending an upstream call to its status line.");
    histogram(&out, &rs, "relay_upstream_ttfb_seconds", C_UP_TTFB_BUCKET, C_UP_TTFB_SUM_US);

    family(&out, "relay_breaker_open", "gauge",
           "1 while the upstream's circuit breaker is open (requests fail fast).");
    for (size_t u = 0; u < x->cfg->nupstreams; u++) {
        rl_buf_puts(&out, "relay_breaker_open{");
        put_label(&out, "upstream", x->cfg->upstreams[u].name, 1);
        rl_buf_puts(&out, "} 0\n");
    }

    store *s = exchange_store(x);
    store_stats ss;
    int have_store = s && store_stats_get(s, &ss) == RL_OK;
    family(&out, "relay_store_up", "gauge", "1 when the cache store is open.");
    rl_buf_printf(&out, "relay_store_up %d\n", have_store);
    if (have_store) {
        family(&out, "relay_store_bytes", "gauge", "Bytes of cached answers.");
        rl_buf_printf(&out, "relay_store_bytes %s\n", u64(a, ss.bytes));
        family(&out, "relay_store_max_bytes", "gauge", "[store] max_bytes (0: no cap).");
        rl_buf_printf(&out, "relay_store_max_bytes %s\n", u64(a, x->cfg->store.max_bytes));
        family(&out, "relay_store_entries", "gauge", "Cached answers.");
        rl_buf_printf(&out, "relay_store_entries %s\n", u64(a, ss.entries));
        family(&out, "relay_store_evictions_total", "counter",
               "Entries evicted to stay under the store's caps.");
        rl_buf_printf(&out, "relay_store_evictions_total %s\n", u64(a, ss.evictions));
        family(&out, "relay_store_expired_removed_total", "counter",
               "Expired entries removed by maintenance and purges.");
        rl_buf_printf(&out, "relay_store_expired_removed_total %s\n", u64(a, ss.expired_removed));
        uint64_t running = 0;
        store_flight_each(s, 100000, count_running, &running);
        family(&out, "relay_inflight_requests", "gauge",
               "Upstream calls in flight that identical requests can join.");
        rl_buf_printf(&out, "relay_inflight_requests %s\n", u64(a, running));
    }
    rows_release(&rs);
    send_text(x, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    rl_buf_release(&out);
}

/* ---- the stats API ------------------------------------------------------------------- */

static json_t *tokens_json(const uint64_t *c)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I}", "input", (json_int_t)c[C_TOKENS_IN], "output",
                     (json_int_t)c[C_TOKENS_OUT], "cached_input", (json_int_t)c[C_TOKENS_CACHED_IN],
                     "saved_input", (json_int_t)c[C_SAVED_IN], "saved_output",
                     (json_int_t)c[C_SAVED_OUT]);
}

static json_t *money_json(const uint64_t *c)
{
    return json_pack("{s:f,s:f}", "spent", usd(c[C_NUSD_SPENT]), "saved", usd(c[C_NUSD_SAVED]));
}

/* The outcome counts of a usage row into obj. */
static void outcomes_into(json_t *obj, const uint64_t *c)
{
    static const struct {
        const char *name;
        int counter;
    } names[] = {
        {"requests", C_REQUESTS},   {"hits", C_HIT},      {"stale", C_STALE},  {"misses", C_MISS},
        {"coalesced", C_COALESCED}, {"bypass", C_BYPASS}, {"errors", C_ERRORS}};
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
                      "tokens_out", (json_int_t)c[S_TOKENS_OUT], "usd_spent", usd(c[S_NUSD_SPENT]),
                      "usd_saved", usd(c[S_NUSD_SAVED])));
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
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    uint64_t age = a->now_ms > f->started_ms ? a->now_ms - f->started_ms : 0;
    json_array_append_new(a->list,
                          json_pack("{s:s,s:I,s:i,s:b}", "key", hex, "age_ms", (json_int_t)age,
                                    "leader_pid", (int)f->leader_pid, "followers",
                                    store_flight_attended(a->s, key, a->now_ms)));
    return json_array_size(a->list) >= INFLIGHT_MAX;
}

static json_t *stats_json(exchange *x, const rows *rs, uint64_t now)
{
    uint64_t totals[STATS_COUNTERS] = {0};
    uint64_t calls = 0;
    json_t *models = json_array(), *upstreams = json_array(), *clients = json_array();
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
        } else if (r->kind == STATS_ROW_CLIENT) {
            json_t *c = json_pack("{s:s}", "client", r->labels[0]);
            outcomes_into(c, r->c);
            json_object_set_new(c, "tokens", tokens_json(r->c));
            json_object_set_new(c, "usd", money_json(r->c));
            json_object_set_new(c, "budget", json_null());
            json_array_append_new(clients, c);
        }
    }
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
        json_object_set_new(o, "breaker", json_null()); /* no breaker yet */
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

    json_t *root = json_pack("{s:i,s:I}", "version", 1, "now", (json_int_t)now);
    json_object_set_new(root, "totals", t);
    json_object_set_new(root, "models", models);
    json_object_set_new(root, "upstreams", upstreams);
    json_object_set_new(root, "clients", clients);
    stats *st = stats_of(x);
    json_t *series = json_object();
    json_object_set_new(series, "minute", st ? series_json(st, 0, now) : json_array());
    json_object_set_new(series, "day", st ? series_json(st, 1, now) : json_array());
    json_object_set_new(root, "series", series);

    store *s = exchange_store(x);
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
    int problems = health_problems(x, &why);
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
    json_object_set_new(root, "budgets", json_array());
    return root;
}

static void send_json(exchange *x, int status, json_t *j)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    if (!j || prov_json_dump(j, JSON_COMPACT, &out) != RL_OK)
        exchange_fail(x, RL_NOMEM, NULL);
    else
        send_text(x, status, "application/json", out.data, out.len);
    json_decref(j);
    rl_buf_release(&out);
}

static void serve_stats(exchange *x)
{
    rows rs;
    if (rows_collect(x, &rs) != 0) {
        rows_release(&rs);
        exchange_fail(x, RL_NOMEM, NULL);
        return;
    }
    send_json(x, 200, stats_json(x, &rs, (uint64_t)time(NULL)));
    rows_release(&rs);
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
    json_t *body = json_loadb(x->req->body ? x->req->body : "", x->req->body_len, 0, NULL);
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

static void serve_admin_api(exchange *x)
{
    if (!admin_authorized(x))
        return;
    const char *path = x->rt.path, *method = x->req->method;
    if (!strcmp(path, "/stats") && !strcmp(method, "GET"))
        serve_stats(x);
    else if (!strcmp(path, "/purge") && !strcmp(method, "POST"))
        serve_purge(x);
    else if (!strcmp(path, "/stats") || !strcmp(path, "/purge"))
        exchange_fail(x, RL_METHOD, "Use GET for /relay/admin/api/stats, POST for .../purge.");
    else
        exchange_fail(x, RL_NO_ROUTE, "Unknown admin API path: see /relay/admin/api/stats.");
}

void observe_serve(exchange *x)
{
    switch (x->rt.kind) {
    case ROUTE_HEALTH:
        serve_health(x);
        break;
    case ROUTE_METRICS:
        serve_metrics(x);
        break;
    case ROUTE_ADMIN_API:
        serve_admin_api(x);
        break;
    default:
        exchange_fail(x, RL_INTERNAL, NULL);
        break;
    }
}
