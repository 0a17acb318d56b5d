/*
 * stats.c — what is counted in the shared counters (see stats.h): rows,
 * series, recording. The file itself (header, checks, allocation,
 * rebuilding, mapping) is stats_file.c.
 */
#include "engine/stats.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stats_int.h"

const double stats_bucket_le[STATS_BUCKETS - 1] = {0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                                   5,    10,  30,   60,  120, 300};

/* In the order of the C_REJECTED counters: only appended to, since the
 * counters of a file outlive the binary that wrote them. */
const char *const stats_rejection_reasons[STATS_REJECTIONS] = {
    "token_unknown",   "token_revoked", "token_expired", "token_required", "forbidden_upstream",
    "forbidden_model", "budget",        "rate_limit",    "unverifiable",   "queue_full",
};

int stats_rejection_index(const char *reason)
{
    for (int i = 0; reason && i < STATS_REJECTIONS; i++)
        if (strcmp(reason, stats_rejection_reasons[i]) == 0)
            return i;
    return -1;
}

#define SPINS 1000 /* yields before giving up on a row or slot in transition */
/* Rows kept for the kinds' "(other)" rows, so that a full table still
 * counts everything somewhere. */
#define OTHER_RESERVE 8

/* ---- rows ------------------------------------------------------------------ */

uint64_t stats_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Labels cut to what a row holds, so that lookups compare like with like. */
static size_t label_len(const char *l)
{
    size_t n = strlen(l);
    return n < STATS_LABEL_MAX ? n : STATS_LABEL_MAX - 1;
}

uint64_t stats_row_hash(stats_row_kind kind, const char *const *labels)
{
    uint64_t h = stats_fnv(STATS_FNV0, &kind, sizeof kind);
    for (int i = 0; i < STATS_LABELS; i++)
        h = stats_fnv(h, labels[i], label_len(labels[i]) + 1);
    return h;
}

static int row_matches(const row *r, stats_row_kind kind, uint64_t hash, const char *const *labels)
{
    if (r->kind != (uint32_t)kind || r->hash != hash)
        return 0;
    for (int i = 0; i < STATS_LABELS; i++) {
        size_t n = label_len(labels[i]);
        if (strncmp(r->labels[i], labels[i], n) != 0 || r->labels[i][n] != '\0')
            return 0;
    }
    return 1;
}

/*
 * The row of (kind, labels); when it has none yet and `claim`, a new one
 * (*claimed = 1). NULL when there is none and it may not or cannot claim
 * one: without `claim`, or when the table is full even for the kind's
 * "(other)" row. Rows are never freed, so a lookup stops at the first free
 * row of its probe sequence.
 */
static row *find_row(stats_file *f, stats_row_kind kind, const char *const *labels, int claim,
                     int *claimed)
{
    static const char *const other[STATS_LABELS] = {STATS_OTHER, "", "", ""};
    int is_other = strcmp(labels[0], other[0]) == 0 && !labels[1][0];
    uint64_t hash = stats_row_hash(kind, labels);
    int may_claim = claim;
    if (claimed)
        *claimed = 0;
    for (size_t i = 0; i < STATS_ROWS; i++) {
        row *r = &f->rows[(hash + i) % STATS_ROWS];
        uint32_t state = atomic_load_explicit(&r->state, memory_order_acquire);
        if (state == ROW_FREE && !claim)
            return NULL;
        if (state == ROW_FREE && may_claim) {
            if (atomic_fetch_add(&f->rows_used, 1) >= STATS_ROWS - OTHER_RESERVE && !is_other) {
                atomic_fetch_sub(&f->rows_used, 1);
                may_claim = 0; /* full: look on for an existing row, else (other) */
                continue;
            }
            uint32_t expected = ROW_FREE;
            if (atomic_compare_exchange_strong(&r->state, &expected, ROW_CLAIMING)) {
                r->kind = (uint32_t)kind;
                r->hash = hash;
                for (int l = 0; l < STATS_LABELS; l++)
                    snprintf(r->labels[l], STATS_LABEL_MAX, "%s", labels[l]);
                atomic_store_explicit(&r->state, ROW_READY, memory_order_release);
                if (claimed)
                    *claimed = 1;
                return r;
            }
            atomic_fetch_sub(&f->rows_used, 1);
            state = expected;
        }
        /* Another thread is writing the labels; one killed meanwhile leaves
         * the row claimed for good, so give up on it after a while. */
        for (int spin = 0; state == ROW_CLAIMING && spin < SPINS; spin++) {
            sched_yield();
            state = atomic_load_explicit(&r->state, memory_order_acquire);
        }
        if (state == ROW_READY && row_matches(r, kind, hash, labels))
            return r;
    }
    return is_other || !claim ? NULL : find_row(f, kind, other, 1, NULL);
}

/*
 * The row of (kind, labels) when it exists; else, if `allowed`, a new one
 * unless the counter `*quota` (of the file, or of a client's row) already
 * reached `cap`. NULL when neither: the caller counts it as (other).
 */
static row *find_or_add(stats_file *f, stats_row_kind kind, const char *const *labels, int allowed,
                        _Atomic uint64_t *quota, uint64_t cap)
{
    row *r = find_row(f, kind, labels, 0, NULL);
    if (r || !allowed)
        return r;
    if (quota && atomic_fetch_add(quota, 1) >= cap) {
        atomic_fetch_sub(quota, 1);
        return NULL;
    }
    int claimed = 0;
    r = find_row(f, kind, labels, 1, &claimed);
    if (quota && !claimed)
        atomic_fetch_sub(quota, 1); /* another thread added it, or the table is full */
    return r;
}

static void add(row *r, int counter, uint64_t n)
{
    if (r && n)
        atomic_fetch_add_explicit(&r->c[counter], n, memory_order_relaxed);
}

void stats_each_row(stats *st, int (*fn)(void *ctx, const stats_row *row), void *ctx)
{
    stats_file *f = atomic_load_explicit(&st->f, memory_order_acquire);
    for (size_t i = 0; f && i < STATS_ROWS; i++) {
        row *r = &f->rows[i];
        if (atomic_load_explicit(&r->state, memory_order_acquire) != ROW_READY)
            continue;
        stats_row view = {.kind = (stats_row_kind)r->kind};
        for (int l = 0; l < STATS_LABELS; l++)
            view.labels[l] = r->labels[l];
        for (int c = 0; c < STATS_COUNTERS; c++)
            view.c[c] = atomic_load_explicit(&r->c[c], memory_order_relaxed);
        if (fn(ctx, &view) != 0)
            return;
    }
}

/* ---- series ----------------------------------------------------------------- */

/* The slot of the period starting at start (index = period number), made
 * current if it still holds an older period; NULL when a concurrent writer
 * is clearing it or it already counts a newer one (a late writer). */
static slot *slot_for(slot *ring, size_t n, uint64_t index, uint64_t start)
{
    slot *s = &ring[index % n];
    uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_acquire);
    for (int spin = 0; spin < SPINS; spin++) {
        if (stamp == start)
            return s;
        if (stamp & SLOT_BUSY) {
            sched_yield();
            stamp = atomic_load_explicit(&s->stamp, memory_order_acquire);
            continue;
        }
        if (stamp > start)
            return NULL;
        if (atomic_compare_exchange_strong(&s->stamp, &stamp, start | SLOT_BUSY)) {
            for (int c = 0; c < S_COUNTERS; c++)
                atomic_store_explicit(&s->c[c], 0, memory_order_relaxed);
            atomic_store_explicit(&s->stamp, start, memory_order_release);
            return s;
        }
    }
    return NULL;
}

static void slot_add(slot *s, const uint64_t *v)
{
    if (!s)
        return;
    for (int c = 0; c < S_COUNTERS; c++)
        if (v[c])
            atomic_fetch_add_explicit(&s->c[c], v[c], memory_order_relaxed);
}

void stats_series(stats *st, int per_day, uint64_t now, stats_point *out)
{
    uint64_t step = per_day ? 86400 : 60;
    size_t n = per_day ? STATS_DAYS : STATS_MINUTES;
    stats_file *f = atomic_load_explicit(&st->f, memory_order_acquire);
    slot *ring = !f ? NULL : per_day ? f->days : f->minutes;
    uint64_t last = now / step;
    for (size_t i = 0; i < n; i++) {
        uint64_t index = last + 1 - n + i;
        stats_point *p = &out[i];
        p->t = index * step;
        slot *s = ring ? &ring[index % n] : NULL;
        int current = s && atomic_load_explicit(&s->stamp, memory_order_acquire) == p->t;
        for (int c = 0; c < S_COUNTERS; c++)
            p->c[c] = current ? atomic_load_explicit(&s->c[c], memory_order_relaxed) : 0;
    }
}

/* ---- recording ---------------------------------------------------------------- */

static int outcome_counter(const char *outcome)
{
    if (!strcmp(outcome, "HIT"))
        return C_HIT;
    if (!strcmp(outcome, "STALE"))
        return C_STALE;
    if (!strcmp(outcome, "MISS"))
        return C_MISS;
    if (!strcmp(outcome, "COALESCED"))
        return C_COALESCED;
    if (!strcmp(outcome, "FUZZY"))
        return C_FUZZY;
    if (!strcmp(outcome, "BYPASS"))
        return C_BYPASS;
    return -1;
}

static uint64_t known(int64_t v)
{
    return v > 0 ? (uint64_t)v : 0;
}

/* Adds the usage counters of r to a MODEL or CLIENT row. */
static void add_usage(row *u, const stats_request *r, int from_cache)
{
    add(u, C_REQUESTS, 1);
    int oc = outcome_counter(r->outcome);
    if (oc >= 0)
        add(u, oc, 1);
    add(u, C_ERRORS, r->failed);
    if (from_cache) {
        add(u, C_SAVED_IN, known(r->tokens_in));
        add(u, C_SAVED_OUT, known(r->tokens_out));
        add(u, C_NUSD_SAVED, r->priced ? r->nusd : 0);
    } else {
        add(u, C_TOKENS_IN, known(r->tokens_in));
        add(u, C_TOKENS_OUT, known(r->tokens_out));
        add(u, C_TOKENS_CACHED_IN, known(r->tokens_cached_in));
        add(u, C_NUSD_SPENT, r->priced ? r->nusd : 0);
        add(u, C_NUSD_PROVIDER_SAVED, r->priced ? r->provider_saved : 0);
    }
    add(u, C_UNPRICED, !r->priced && r->model[0]);
    int why = stats_rejection_index(r->rejected);
    if (why >= 0)
        add(u, C_REJECTED + why, 1);
}

static void add_timing(row *up, int sum, int bucket0, double seconds)
{
    int b = 0;
    while (b < STATS_BUCKETS - 1 && seconds > stats_bucket_le[b])
        b++;
    add(up, bucket0 + b, 1);
    add(up, sum, (uint64_t)(seconds * 1e6));
}

/* The client's row: its own once an upstream vouched for it, while
 * STATS_CLIENT_ROWS are not taken; else the (other) client's. *own tells
 * which. NULL for a request without a client. */
static row *client_row(stats_file *f, const stats_request *r, int *own)
{
    *own = 0;
    if (!r->client[0])
        return NULL;
    const char *labels[STATS_LABELS] = {r->client, "", "", ""};
    row *c = find_or_add(f, STATS_ROW_CLIENT, labels, r->client_vouched, &f->clients_used,
                         STATS_CLIENT_ROWS);
    if (c) {
        *own = 1;
        return c;
    }
    const char *other[STATS_LABELS] = {STATS_OTHER, "", "", ""};
    return find_row(f, STATS_ROW_CLIENT, other, 1, NULL);
}

/* The model label r counts under: its own when its row exists, or when an
 * upstream vouched for it and its client (if any) has a row of its own
 * with models to spare; else STATS_OTHER. Claims the model's row. */
static row *model_row(stats_file *f, const stats_request *r, row *client, int client_own,
                      const char **model)
{
    *model = r->model;
    const char *labels[STATS_LABELS] = {r->upstream, r->model, "", ""};
    int allowed = r->model_vouched && (!r->client[0] || client_own);
    row *m = find_or_add(f, STATS_ROW_MODEL, labels, allowed,
                         client_own ? &client->c[C_MODELS_ADDED] : NULL, STATS_MODELS_PER_CLIENT);
    if (m || !r->model[0])
        return m ? m : find_row(f, STATS_ROW_MODEL, labels, 1, NULL);
    *model = STATS_OTHER;
    labels[1] = STATS_OTHER;
    return find_row(f, STATS_ROW_MODEL, labels, 1, NULL);
}

void stats_record(stats *st, const stats_request *r, uint64_t now)
{
    stats_file *f = st ? atomic_load_explicit(&st->f, memory_order_acquire) : NULL;
    if (!f)
        return;
    /* Served without spending: what the answer would have cost is saved. */
    int from_cache = !strcmp(r->outcome, "HIT") || !strcmp(r->outcome, "STALE") ||
                     !strcmp(r->outcome, "COALESCED") || !strcmp(r->outcome, "FUZZY");
    char status[16];
    snprintf(status, sizeof status, "%d", r->status);
    const char *outcome = r->outcome[0] ? r->outcome : "NONE";

    /* Rows are for what an upstream vouched for: label sets that anyone
     * can make up (model names, credentials) share "(other)" rows until
     * then, so that junk cannot fill the table for good. */
    int client_own = 0;
    row *client = client_row(f, r, &client_own);
    const char *model = r->model;
    if (r->upstream[0]) {
        add_usage(model_row(f, r, client, client_own, &model), r, from_cache);
        const char *up_labels[STATS_LABELS] = {r->upstream, "", "", ""};
        row *up = find_row(f, STATS_ROW_UPSTREAM, up_labels, 1, NULL);
        add(up, C_UP_REQUESTS, 1);
        add(up, C_UP_ERRORS, r->failed);
        if (r->called_upstream) {
            add(up, C_UP_CALLS, 1);
            add_timing(up, C_UP_LATENCY_SUM_US, C_UP_LATENCY_BUCKET, r->latency_s);
            if (r->ttfb_s >= 0)
                add_timing(up, C_UP_TTFB_SUM_US, C_UP_TTFB_BUCKET, r->ttfb_s);
        }
    }
    const char *req_labels[STATS_LABELS] = {r->upstream, model, outcome, status};
    add(find_row(f, STATS_ROW_REQUESTS, req_labels, 1, NULL), C_COUNT, 1);
    if (client)
        add_usage(client, r, from_cache);

    uint64_t v[S_COUNTERS] = {0};
    v[S_REQUESTS] = 1;
    v[S_HITS] = !strcmp(r->outcome, "HIT") || !strcmp(r->outcome, "STALE");
    v[S_MISSES] = !strcmp(r->outcome, "MISS");
    v[S_COALESCED] = !strcmp(r->outcome, "COALESCED");
    v[S_ERRORS] = (uint64_t)r->failed;
    if (!from_cache) {
        v[S_TOKENS_IN] = known(r->tokens_in);
        v[S_TOKENS_OUT] = known(r->tokens_out);
        v[S_NUSD_SPENT] = r->priced ? r->nusd : 0;
    } else {
        v[S_NUSD_SAVED] = r->priced ? r->nusd : 0;
    }
    slot_add(slot_for(f->minutes, STATS_MINUTES, now / 60, now / 60 * 60), v);
    slot_add(slot_for(f->days, STATS_DAYS, now / 86400, now / 86400 * 86400), v);
}

void stats_count(stats *st, stats_row_kind kind, const char *const labels[STATS_LABELS], uint64_t n)
{
    stats_file *f = st ? atomic_load_explicit(&st->f, memory_order_acquire) : NULL;
    if (f)
        add(find_row(f, kind, labels, 1, NULL), C_COUNT, n);
}

double stats_quantile(const uint64_t *buckets, double q)
{
    uint64_t total = 0;
    for (int b = 0; b < STATS_BUCKETS; b++)
        total += buckets[b];
    if (!total)
        return -1;
    double rank = q * (double)total, seen = 0;
    for (int b = 0; b < STATS_BUCKETS; b++) {
        double lo = b ? stats_bucket_le[b - 1] : 0;
        if (b == STATS_BUCKETS - 1)
            return lo;
        if (seen + (double)buckets[b] >= rank && buckets[b]) {
            double hi = stats_bucket_le[b];
            return lo + (hi - lo) * ((rank - seen) / (double)buckets[b]);
        }
        seen += (double)buckets[b];
    }
    return -1;
}
