/*
 * metrics.c — GET /relay/metrics: the shared counters (stats.h) and the
 * store as Prometheus text (exposition format 0.0.4), generated from one
 * table of metric families, families[] below. Each row names a family and
 * where its samples come from; what every family shares (the HELP and TYPE
 * lines, label escaping, the page's cap) is written once.
 */
#include "engine/observe_int.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/admission.h"
#include "engine/budgets.h"
#include "engine/cluster_view.h"
#include "engine/pricing.h"
#include "store/flight.h"

/* ---- the page: a capped buffer with a sticky error ------------------------- */

typedef struct page {
    rl_buf buf;
    rl_err err; /* the first failed write; everything after it is skipped */
} page;

static void put(page *p, const char *s, size_t n)
{
    if (p->err == RL_OK)
        p->err = rl_buf_append(&p->buf, s, n);
}

static void puts_(page *p, const char *s)
{
    put(p, s, strlen(s));
}

static void putf(page *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(page *p, const char *fmt, ...)
{
    if (p->err != RL_OK)
        return;
    va_list ap;
    va_start(ap, fmt);
    p->err = rl_buf_vprintf(&p->buf, fmt, ap);
    va_end(ap);
}

/* name="value" with \, " and newlines escaped (the exposition format). */
static void put_label(page *p, const char *name, const char *value, int first)
{
    putf(p, "%s%s=\"", first ? "" : ",", name);
    for (const char *c = value; *c; c++) {
        if (*c == '\\')
            puts_(p, "\\\\");
        else if (*c == '"')
            puts_(p, "\\\"");
        else if (*c == '\n')
            puts_(p, "\\n");
        else
            put(p, c, 1);
    }
    puts_(p, "\"");
}

/* ---- where samples come from ------------------------------------------------ */

typedef struct source {
    const relay_config *cfg;
    const observe_rows *rows;
    store *s; /* NULL: the store is closed */
    store_stats ss;
    const budgets *b;               /* NULL: they could not be read */
    const store_cluster_status *cl; /* NULL: no [cluster], or its status unreadable */
    breaker *br;                    /* NULL: no breaker file (every breaker reads closed) */
    uint64_t now;
} source;

typedef struct family family;
/* Writes the samples of f. */
typedef void (*emit_fn)(page *p, const family *f, const source *src);

/* A family's second label, one sample per value (e.g. kind="input"). */
typedef struct variant {
    const char *value;
    int counter;
} variant;

struct family {
    const char *name, *type, *help;
    emit_fn emit;
    int counter;                          /* the row counter, or a histogram's first bucket */
    int sum;                              /* a histogram's sum (microseconds) */
    int money;                            /* nano-USD, shown in USD, for priced models only */
    const char *variant;                  /* the second label's name, or NULL */
    variant variants[3];                  /* its values */
    int needs_store;                      /* left out while the store is closed */
    int needs_budgets;                    /* left out while budgets cannot be read */
    int needs_cluster;                    /* left out without [cluster]'s status */
    uint64_t (*value)(const source *src); /* emit_value's */
};

/* The label names of each row kind (stats.h), in label order. */
static const char *const row_labels[][STATS_LABELS] = {
    [STATS_ROW_REQUESTS] = {"upstream", "model", "cache", "status"},
    [STATS_ROW_MODEL] = {"upstream", "model"},
    [STATS_ROW_UPSTREAM] = {"upstream"},
    [STATS_ROW_ATTEMPTS] = {"upstream", "outcome"},
    [STATS_ROW_FALLBACKS] = {"from", "to"},
};

static void sample_labels(page *p, const char *name, const stats_row *r)
{
    putf(p, "%s{", name);
    for (int l = 0; l < STATS_LABELS && row_labels[r->kind][l]; l++)
        put_label(p, row_labels[r->kind][l], r->labels[l], l == 0);
}

/* One sample per row of `kind`, per variant if the family has them. */
static void emit_rows(page *p, const family *f, const source *src, stats_row_kind kind)
{
    for (size_t i = 0; i < src->rows->n; i++) {
        const stats_row *r = &src->rows->v[i];
        if (r->kind != kind)
            continue;
        if (f->money && !pricing_find(src->cfg, r->labels[1]))
            continue; /* no price: no money figure, not a zero */
        for (int v = 0; v < 3 && (v == 0 || f->variants[v].value); v++) {
            int counter = f->variant ? f->variants[v].counter : f->counter;
            sample_labels(p, f->name, r);
            if (f->variant)
                put_label(p, f->variant, f->variants[v].value, 0);
            if (f->money)
                putf(p, "} %.9g\n", observe_usd(r->c[counter]));
            else
                putf(p, "} %llu\n", (unsigned long long)r->c[counter]);
        }
    }
}

static void emit_requests(page *p, const family *f, const source *src)
{
    emit_rows(p, f, src, STATS_ROW_REQUESTS);
}

static void emit_models(page *p, const family *f, const source *src)
{
    emit_rows(p, f, src, STATS_ROW_MODEL);
}

static void emit_upstreams(page *p, const family *f, const source *src)
{
    emit_rows(p, f, src, STATS_ROW_UPSTREAM);
}

static void emit_attempts(page *p, const family *f, const source *src)
{
    emit_rows(p, f, src, STATS_ROW_ATTEMPTS);
}

static void emit_fallbacks(page *p, const family *f, const source *src)
{
    emit_rows(p, f, src, STATS_ROW_FALLBACKS);
}

/* Cumulative buckets, _sum and _count per upstream. */
static void emit_histogram(page *p, const family *f, const source *src)
{
    for (size_t i = 0; i < src->rows->n; i++) {
        const stats_row *r = &src->rows->v[i];
        if (r->kind != STATS_ROW_UPSTREAM)
            continue;
        uint64_t cumulative = 0;
        for (int k = 0; k < STATS_BUCKETS; k++) {
            cumulative += r->c[f->counter + k];
            putf(p, "%s_bucket{", f->name);
            put_label(p, "upstream", r->labels[0], 1);
            if (k < STATS_BUCKETS - 1)
                putf(p, ",le=\"%.9g\"} %llu\n", stats_bucket_le[k], (unsigned long long)cumulative);
            else
                putf(p, ",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
        }
        putf(p, "%s_sum{", f->name);
        put_label(p, "upstream", r->labels[0], 1);
        putf(p, "} %.9g\n%s_count{", (double)r->c[f->sum] / 1e6, f->name);
        put_label(p, "upstream", r->labels[0], 1);
        putf(p, "} %llu\n", (unsigned long long)cumulative);
    }
}

/* Refusals by reason, every reason (zeros included): the MODEL rows add up
 * to every refusal (stats.h). */
static void emit_rejections(page *p, const family *f, const source *src)
{
    for (int i = 0; i < STATS_REJECTIONS; i++) {
        uint64_t n = 0;
        for (size_t r = 0; r < src->rows->n; r++)
            if (src->rows->v[r].kind == STATS_ROW_MODEL)
                n += src->rows->v[r].c[C_REJECTED + i];
        putf(p, "%s{", f->name);
        put_label(p, "reason", stats_rejection_reasons[i], 1);
        putf(p, "} %llu\n", (unsigned long long)n);
    }
}

/* What is left of each limit in unit f->counter (ledger_unit) that a live
 * token or a [budget] row sets, by window: {token="ID"} (its public id),
 * {upstream="NAME"} or {model="NAME"}. */
static void emit_budgets(page *p, const family *f, const source *src)
{
    for (size_t i = 0; i < src->b->n; i++) {
        const budget_status *st = &src->b->v[i];
        if (st->state != TOKEN_LIVE || st->unreadable)
            continue;
        for (int w = LEDGER_MINUTE; w <= LEDGER_MONTH; w++) {
            const budget_amount *a = &st->period[w].amount[f->counter];
            if (!st->period[w].charged || !a->limit)
                continue;
            putf(p, "%s{", f->name);
            put_label(p, budgets_kind_name(st->kind), st->kind == BUDGETS_TOKEN ? st->id : st->name,
                      1);
            put_label(p, "window", ledger_window_name((ledger_window)w), 0);
            if (f->money)
                putf(p, "} %.9g\n", observe_usd(budget_remaining(a)));
            else
                putf(p, "} %llu\n", (unsigned long long)budget_remaining(a));
        }
    }
}

static void emit_value(page *p, const family *f, const source *src)
{
    putf(p, "%s %llu\n", f->name, (unsigned long long)f->value(src));
}

static uint64_t store_up(const source *src)
{
    return src->s != NULL;
}

static uint64_t store_bytes(const source *src)
{
    return src->ss.bytes;
}

static uint64_t store_max_bytes(const source *src)
{
    return src->cfg->store.max_bytes;
}

static uint64_t store_entries(const source *src)
{
    return src->ss.entries;
}

static uint64_t store_evictions(const source *src)
{
    return src->ss.evictions;
}

static uint64_t store_expired(const source *src)
{
    return src->ss.expired_removed;
}

static int count_running(void *ctx, const uint8_t *key, const store_flight *f)
{
    (void)key;
    *(uint64_t *)ctx += f->state == FLIGHT_RUNNING && store_flight_leader_alive(f);
    return 0;
}

static uint64_t inflight(const source *src)
{
    uint64_t running = 0;
    store_flight_each(src->s, 100000, count_running, &running);
    return running;
}

/* relay_breaker_open: one sample per configured upstream, 1 while its
 * breaker refuses calls (open, or half-open with its probe). */
static void emit_breakers(page *p, const family *f, const source *src)
{
    for (size_t u = 0; u < src->cfg->nupstreams; u++) {
        const upstream_config *up = &src->cfg->upstreams[u];
        breaker_policy bp = breaker_policy_of(up);
        breaker_view v;
        breaker_view_of(src->br, up->name, &bp, src->now, &v);
        putf(p, "%s{", f->name);
        put_label(p, "upstream", up->name, 1);
        putf(p, "} %d\n", v.state != BREAKER_CLOSED);
    }
}

/* relay_cluster_role: one sample per role, 1 for this site's, so that a
 * change of role is a change of value, not a series that appears. */
static void emit_cluster_role(page *p, const family *f, const source *src)
{
    static const cluster_role roles[] = {CLUSTER_ROLE_MASTER, CLUSTER_ROLE_REPLICA,
                                         CLUSTER_ROLE_NONE};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        putf(p, "%s{", f->name);
        put_label(p, "role", cluster_role_name(roles[i]), 1);
        putf(p, "} %d\n", src->cl->role == roles[i]);
    }
}

/* No sample before the first beat: a lag of 0 would read as "in step". */
static void emit_cluster_lag(page *p, const family *f, const source *src)
{
    uint64_t lag;
    if (cluster_view_lag(src->cl, src->now, &lag))
        putf(p, "%s %llu\n", f->name, (unsigned long long)lag);
}

static uint64_t cluster_connected(const source *src)
{
    return cluster_view_connected(src->cl);
}

static uint64_t cluster_forwarded(const source *src)
{
    return src->cl->forwarded;
}

static uint64_t cluster_forward_failed(const source *src)
{
    return src->cl->forward_failed;
}

static uint64_t cluster_perm_failed(const source *src)
{
    return src->cl->perm_failed;
}

static uint64_t cluster_elections(const source *src)
{
    return src->cl->elections;
}

/* ---- the families ------------------------------------------------------------- */

/* clang-format off */
static const family families[] = {
    {"relay_requests_total", "counter",
     "Requests answered, by upstream, model, cache outcome (X-Cache) and status.",
     emit_requests, .counter = C_COUNT},
    {"relay_tokens_total", "counter", "Tokens paid for upstream, by kind.", emit_models,
     .variant = "kind",
     .variants = {{"input", C_TOKENS_IN}, {"output", C_TOKENS_OUT},
                  {"cached_input", C_TOKENS_CACHED_IN}}},
    {"relay_tokens_saved_total", "counter",
     "Tokens of answers served from the cache or a shared call instead of upstream.",
     emit_models, .variant = "kind",
     .variants = {{"input", C_SAVED_IN}, {"output", C_SAVED_OUT}}},
    {"relay_spent_usd_total", "counter",
     "USD spent upstream at the [pricing] table's prices (priced models only).",
     emit_models, .counter = C_NUSD_SPENT, .money = 1},
    {"relay_saved_usd_total", "counter",
     "USD saved by the cache and by coalescing at the [pricing] table's prices (priced "
     "models only).",
     emit_models, .counter = C_NUSD_SAVED, .money = 1},
    {"relay_provider_cached_tokens_total", "counter",
     "Input tokens the upstream read from its own prompt cache (billed at its cached price), "
     "of answers paid upstream.",
     emit_models, .counter = C_TOKENS_CACHED_IN},
    {"relay_provider_cache_savings_usd_total", "counter",
     "USD the upstream's own prompt cache saved (cached tokens at the input price less the "
     "cached price), apart from relay_saved_usd_total (priced models only).",
     emit_models, .counter = C_NUSD_PROVIDER_SAVED, .money = 1},
    {"relay_unpriced_requests_total", "counter",
     "Requests for models with no [pricing] row (their money is not counted).",
     emit_models, .counter = C_UNPRICED},
    {"relay_coalesced_requests_total", "counter",
     "Requests answered by following an identical request's upstream call.",
     emit_models, .counter = C_COALESCED},
    {"relay_fuzzy_hits_total", "counter",
     "Requests answered from a cached near-variant (X-Cache: FUZZY), apart from exact hits.",
     emit_models, .counter = C_FUZZY},
    {"relay_upstream_calls_total", "counter", "Calls made to each upstream.", emit_upstreams,
     .counter = C_UP_CALLS},
    {"relay_upstream_attempts_total", "counter",
     "Upstream call attempts by outcome: ok (its answer went to the client), retried (failed "
     "before the first byte; another attempt followed), failed (failed; none followed).",
     emit_attempts, .counter = C_COUNT},
    {"relay_upstream_fallbacks_total", "counter",
     "Requests sent to an upstream's fallback after its retries ran out.", emit_fallbacks,
     .counter = C_COUNT},
    {"relay_rejections_total", "counter",
     "Requests Relay refused before calling upstream, by reason (token_unknown, token_revoked, "
     "token_expired, token_required, forbidden_upstream, forbidden_model, budget, rate_limit, "
     "unverifiable, queue_full).",
     emit_rejections, .counter = 0},
    {"relay_upstream_latency_seconds", "histogram",
     "Duration of upstream calls, whole (streams to their end).", emit_histogram,
     .counter = C_UP_LATENCY_BUCKET, .sum = C_UP_LATENCY_SUM_US},
    {"relay_upstream_ttfb_seconds", "histogram",
     "Time from sending an upstream call to its status line.", emit_histogram,
     .counter = C_UP_TTFB_BUCKET, .sum = C_UP_TTFB_SUM_US},
    {"relay_breaker_open", "gauge",
     "1 while an upstream's circuit breaker refuses calls (open or half-open), else 0.",
     emit_breakers, .counter = 0},
    {"relay_store_up", "gauge", "1 when the cache store is open.", emit_value,
     .value = store_up},
    {"relay_store_bytes", "gauge", "Bytes of cached answers.", emit_value,
     .needs_store = 1, .value = store_bytes},
    {"relay_store_max_bytes", "gauge", "[store] max_bytes (0: no cap).", emit_value,
     .needs_store = 1, .value = store_max_bytes},
    {"relay_store_entries", "gauge", "Cached answers.", emit_value,
     .needs_store = 1, .value = store_entries},
    {"relay_store_evictions_total", "counter",
     "Entries evicted to stay under the store's caps.", emit_value,
     .needs_store = 1, .value = store_evictions},
    {"relay_store_expired_removed_total", "counter",
     "Expired entries removed by maintenance and purges.", emit_value,
     .needs_store = 1, .value = store_expired},
    {"relay_inflight_requests", "gauge",
     "Upstream calls in flight that identical requests can join.", emit_value,
     .needs_store = 1, .value = inflight},
    {"relay_budget_remaining_usd", "gauge",
     "USD left in the current UTC window of each budget set: a live Relay token's (by its id) "
     "or a [budget] row's (by upstream or model).",
     emit_budgets, .counter = LEDGER_USD, .money = 1, .needs_budgets = 1},
    {"relay_budget_remaining_tokens", "gauge",
     "Tokens left in the current UTC window (day; minute: tokens per minute) of each token "
     "budget set.",
     emit_budgets, .counter = LEDGER_TOKENS, .needs_budgets = 1},
    {"relay_budget_remaining_requests", "gauge",
     "Requests left in the current minute of each Relay token with a requests-per-minute limit.",
     emit_budgets, .counter = LEDGER_REQUESTS, .needs_budgets = 1},
    {"relay_cluster_role", "gauge",
     "1 for this site's role in the [cluster] group (master, replica, or none: no master "
     "known), 0 for the others.",
     emit_cluster_role, .needs_cluster = 1},
    {"relay_cluster_master_lag_seconds", "gauge",
     "Seconds since the master's last heartbeat this site has (the master writes one a "
     "second); no sample before the first.",
     emit_cluster_lag, .needs_cluster = 1},
    {"relay_cluster_sites_connected", "gauge",
     "Sites of the group this site's listener is connected to, itself included.", emit_value,
     .needs_cluster = 1, .value = cluster_connected},
    {"relay_cluster_forwarded_total", "counter",
     "Shared-store writes (reservations, settlements, token changes) this process sent to the "
     "master.",
     emit_value, .needs_cluster = 1, .value = cluster_forwarded},
    {"relay_cluster_forward_failed_total", "counter",
     "Of those, writes refused for want of a master (after [cluster] partition_grace).",
     emit_value, .needs_cluster = 1, .value = cluster_forward_failed},
    {"relay_cluster_perm_failed_total", "counter",
     "Commits this site, as master, could not get acknowledged under [cluster] ack_policy "
     "(since its shared store was opened).",
     emit_value, .needs_cluster = 1, .value = cluster_perm_failed},
    {"relay_cluster_elections_total", "counter",
     "Elections held since this site's shared store was opened.", emit_value,
     .needs_cluster = 1, .value = cluster_elections},
};
/* clang-format on */

rl_err metrics_page(const relay_config *cfg, const observe_rows *rs, store *s, store *shared,
                    const store_cluster_status *cl, breaker *br, uint64_t now, size_t max,
                    rl_buf *out)
{
    page p = {.err = RL_OK};
    rl_buf_init(&p.buf, max);
    source src = {.cfg = cfg, .rows = rs, .s = s, .cl = cl, .br = br, .now = now};
    if (s && store_stats_get(s, &src.ss) != RL_OK)
        src.s = NULL; /* reported as relay_store_up 0 */
    /* Budgets from where reservations are made: with [cluster] the shared
     * store, the group's spend, not this host's stale local copy. Without
     * it shared is s, whose failure above leaves the budgets out too. */
    if (shared == s)
        shared = src.s;
    budgets b = {0};
    if (shared && budgets_read(shared, cfg, now, &b) == RL_OK)
        src.b = &b; /* else left out, as the store's families (logged) */
    for (size_t i = 0; i < sizeof families / sizeof families[0] && p.err == RL_OK; i++) {
        const family *f = &families[i];
        if ((f->needs_store && !src.s) || (f->needs_budgets && !src.b) ||
            (f->needs_cluster && !src.cl))
            continue;
        putf(&p, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
        f->emit(&p, f, &src);
    }
    budgets_release(&b);
    *out = p.buf;
    return p.err;
}

/* Upstream call places (admission.h), pool-wide, per configured upstream:
 * appended to the page when the admission file is mapped. Not in
 * families[]: they come from the engine's mapping, not the counters. */
static void admission_families(page *p, const relay_config *cfg, const admission *a)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"relay_upstream_inflight", "gauge",
         "Calls in flight to each upstream across the pool ([fcgi] / [upstream.NAME] "
         "max_inflight bounds them)."},
        {"relay_admission_waits_total", "counter",
         "Upstream calls that found no free place under max_inflight and waited (at most "
         "[fcgi] queue_timeout); those still refused are relay_rejections_total "
         "{reason=\"queue_full\"}."},
        {"relay_admission_wait_seconds_total", "counter", "The time those calls waited."},
    };
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        putf(p, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (size_t u = 0; u < cfg->nupstreams; u++) {
            admission_counts c;
            admission_read(a, cfg->upstreams[u].name, &c);
            putf(p, "%s{", fam[f].name);
            put_label(p, "upstream", cfg->upstreams[u].name, 1);
            if (f == 0)
                putf(p, "} %llu\n", (unsigned long long)c.inflight);
            else if (f == 1)
                putf(p, "} %llu\n", (unsigned long long)c.waited);
            else
                putf(p, "} %.3f\n", (double)c.wait_ms / 1000);
        }
    }
}

void metrics_serve(exchange *x)
{
    if (x->cfg->metrics.access == METRICS_ADMIN && !observe_admin_authorized(x))
        return;
    observe_rows rs;
    rl_buf out;
    uint64_t now = (uint64_t)time(NULL);
    store_cluster_status cl;
    int have_cluster = observe_cluster_status(x, now, &cl);
    rl_err err = observe_rows_collect(observe_stats(x), &rs);
    if (err == RL_OK)
        err = metrics_page(x->cfg, &rs, exchange_store(x), exchange_shared(x),
                           have_cluster ? &cl : NULL, atomic_load(&x->w->e->breaker), now,
                           METRICS_MAX_BYTES, &out);
    else
        rl_buf_init(&out, 0);
    if (err == RL_OK && x->w->e->admission) {
        page p = {.buf = out, .err = RL_OK};
        admission_families(&p, x->cfg, x->w->e->admission);
        out = p.buf;
        err = p.err;
    }
    if (err == RL_OK)
        observe_send(x, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    else if (err == RL_TOO_LARGE)
        exchange_fail(x, RL_INTERNAL,
                      "The metrics page would be larger than Relay sends (2 MiB): see the "
                      "counters with relay-admin stats.");
    else
        exchange_fail(x, err, NULL);
    observe_rows_release(&rs);
    rl_buf_release(&out);
}
