/*
 * stats.h — engine-internal: what Relay did, counted across every process
 * on a store, for /relay/metrics, the dashboard's API and relay-admin.
 *
 * A memory-mapped file in the store's home (stats.map), shared by every
 * process, holds counters that any thread adds to with atomic
 * instructions: no lock, no transaction, no system call per request. Why
 * not the store's counters table: each request would add a write
 * transaction on the same few pages, and with a hundred processes such
 * writes contend (see store/flight.h for what that did to streams).
 *
 * Rows are keyed by a kind and up to STATS_LABELS labels in an
 * open-addressing table of STATS_ROWS rows. A row, once claimed, keeps its
 * labels for the life of the file, so rows go only to what an upstream
 * vouched for (stats_request.model_vouched, client_vouched): a model or a
 * client it did not vouch for yet counts under STATS_OTHER (model "(other)"
 * of its upstream, client "(other)"). Each client gives at most
 * STATS_MODELS_PER_CLIENT models a row; at most STATS_CLIENT_ROWS clients
 * have one. When the table is full even so, new label sets are counted in
 * their kind's "(other)" row. Time series: one slot per
 * minute for 24 hours and one per day (UTC) for 90 days, each cleared by
 * the first writer of a new period.
 *
 * Counters are totals since the file was created (relay-admin init, or the
 * first process); Prometheus takes rates itself. Money is in nano-USD.
 * Thread-safe; readers see each counter atomically, not a row as a whole.
 *
 * The file (stats_file.c) has a header (magic, version, a checksum of the
 * layout) that every process checks, with the rows and slots, before it
 * maps the file; a damaged file or one of another layout is rebuilt (its
 * counters are lost, with a log line). A file is built whole beside its
 * place and allocated to the last page before it is put there, so a full
 * file system makes the counters unavailable (stats_problem says why),
 * never a SIGBUS on a page first touched. The counters do not depend on
 * the cache store: they count while the store cannot be opened.
 */
#ifndef RELAY_ENGINE_STATS_H
#define RELAY_ENGINE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_err.h"

#define STATS_FILE "stats.map"
#define STATS_ROWS 4096
#define STATS_LABELS 4
#define STATS_LABEL_MAX 64 /* bytes, NUL included: longer labels are cut */
#define STATS_COUNTERS 32
#define STATS_MINUTES 1440
#define STATS_DAYS 90
#define STATS_OTHER "(other)"      /* the label of what has no row of its own */
#define STATS_CLIENT_ROWS 1024     /* clients with a row of their own */
#define STATS_MODELS_PER_CLIENT 32 /* models one client may give a row of their own */

typedef enum {
    STATS_ROW_REQUESTS = 1, /* upstream, model, cache outcome, status: C_COUNT */
    STATS_ROW_MODEL,        /* upstream, model: the usage counters */
    STATS_ROW_CLIENT,       /* client id: the usage counters */
    STATS_ROW_UPSTREAM,     /* upstream: calls, errors, latency histograms */
    STATS_ROW_ATTEMPTS,     /* upstream, outcome (ok, retried, failed): C_COUNT */
    STATS_ROW_FALLBACKS,    /* from upstream, to upstream: C_COUNT */
    STATS_ROW_LAST = STATS_ROW_FALLBACKS,
} stats_row_kind;

/* Counters of usage rows (MODEL, CLIENT). */
enum {
    C_REQUESTS,
    C_HIT,
    C_STALE,
    C_MISS,
    C_COALESCED,
    C_BYPASS,
    C_ERRORS,
    C_TOKENS_IN,
    C_TOKENS_OUT,
    C_TOKENS_CACHED_IN,
    C_SAVED_IN,
    C_SAVED_OUT,
    C_NUSD_SPENT,
    C_NUSD_SAVED,
    C_UNPRICED,     /* requests whose model has no price */
    C_MODELS_ADDED, /* CLIENT rows: models this client gave a row of their own */
    C_REJECTED,     /* ... STATS_REJECTIONS of them: refusals, by reason (below) */
    /* What the provider's own prompt cache saved on answers paid upstream
     * (pricing_provider_saving; their tokens are C_TOKENS_CACHED_IN): apart
     * from C_NUSD_SAVED, Relay's own cache. After the rejections, a slot
     * older files kept at zero. */
    C_NUSD_PROVIDER_SAVED = C_REJECTED + 10,
};

/* Why Relay refused a request before any upstream call (engine/spend.c
 * names the reason in exchange.rejected): C_REJECTED + i of a usage row
 * counts stats_rejection_reasons[i]. Every refused request has an
 * upstream, so the MODEL rows add up to every refusal; the CLIENT rows say
 * whose. A fixed table: these counters are what relay_rejections_total
 * shows for every reason, zeros included. */
#define STATS_REJECTIONS 10
extern const char *const stats_rejection_reasons[STATS_REJECTIONS];
_Static_assert(C_REJECTED + STATS_REJECTIONS <= STATS_COUNTERS, "rejection counters fit a row");
_Static_assert(C_NUSD_PROVIDER_SAVED == C_REJECTED + STATS_REJECTIONS &&
                   C_NUSD_PROVIDER_SAVED < STATS_COUNTERS,
               "the provider's saving follows the rejections");
/* Usage rows: requests answered from a near-variant's entry (X-Cache:
 * FUZZY, engine/fuzzy_serve.h), apart from C_HIT. In a counter no earlier
 * version used (older files keep it at zero), so no new file version. */
#define C_FUZZY (C_NUSD_PROVIDER_SAVED + 1)
_Static_assert(C_FUZZY < STATS_COUNTERS, "the fuzzy counter fits a row");

/* The index of reason in stats_rejection_reasons, or -1. */
int stats_rejection_index(const char *reason);

/* Counters of REQUESTS rows. */
enum { C_COUNT };

/* Upper bounds (seconds) of the latency histograms' buckets; the last
 * bucket is +Inf. */
#define STATS_BUCKETS 13
extern const double stats_bucket_le[STATS_BUCKETS - 1];

/* Counters of UPSTREAM rows: requests and errors routed there, upstream
 * calls, and two histograms (whole call, time to the first byte) as
 * per-bucket counts (not cumulative) and sums in microseconds. */
enum {
    C_UP_REQUESTS,
    C_UP_ERRORS,
    C_UP_CALLS,
    C_UP_LATENCY_SUM_US,
    C_UP_TTFB_SUM_US,
    C_UP_LATENCY_BUCKET,                                    /* ... STATS_BUCKETS of them */
    C_UP_TTFB_BUCKET = C_UP_LATENCY_BUCKET + STATS_BUCKETS, /* ... STATS_BUCKETS */
};
_Static_assert(C_UP_TTFB_BUCKET + STATS_BUCKETS <= STATS_COUNTERS, "upstream counters fit a row");

/* Counters of a time-series slot. */
enum {
    S_REQUESTS,
    S_HITS, /* fresh or stale */
    S_MISSES,
    S_COALESCED,
    S_ERRORS,
    S_TOKENS_IN,
    S_TOKENS_OUT,
    S_NUSD_SPENT,
    S_NUSD_SAVED,
    S_COUNTERS
};

typedef struct stats stats;

/* Maps (creating, mode 0600, or rebuilding when damaged) home/STATS_FILE.
 * RL_IO when it cannot be used (logged), RL_NOMEM; *out is then NULL. For
 * relay-admin and tests: a server uses stats_new. */
rl_err stats_open(const char *home, stats **out);

/* The same, but a handle even when the file cannot be used yet (logged):
 * then nothing is counted, readers see no rows, stats_problem says why and
 * stats_maintain tries again. NULL only when out of memory. */
stats *stats_new(const char *home);
void stats_close(stats *st);

/* 1 while nothing is counted, with the reason ("PATH cannot be allocated
 * (No space left on device)") in why; else 0. */
int stats_problem(stats *st, char *why, size_t cap);

/* Once a second, from one thread (engine_maintain), with unix seconds:
 * retries a handle that counts nothing (every 10 s); for one that counts,
 * checks the file (its header each call, everything each minute) and
 * follows it when another process rebuilt, replaced or removed it, or
 * rebuilds it when damaged. Any time, even while the store is closed. */
void stats_maintain(stats *st, uint64_t now);

/* One finished request, as the engine saw it. */
typedef struct stats_request {
    const char *upstream; /* route's upstream name, "" when unrouted */
    const char *model;    /* "" when unknown */
    const char *outcome;  /* HIT MISS COALESCED STALE FUZZY BYPASS, or "" when none applied */
    int status;           /* the status the client got; 0 when it got none */
    int failed;           /* the answer failed (an error status, or a stream cut) */
    const char *client;   /* the client's id, "" when none */
    int64_t tokens_in, tokens_out, tokens_cached_in; /* of the answer; -1 unknown */
    int priced;                                      /* the model has a price */
    uint64_t nusd;                                   /* what the answer costs at it */
    uint64_t provider_saved;  /* nano-USD the provider's prompt cache saved on it */
    int called_upstream;      /* with the timings: */
    double latency_s, ttfb_s; /* ttfb_s < 0: no byte came */
    /* An upstream answered 2xx for this model (now, or when the answer
     * served from the cache or a shared call was fetched): a model it has
     * not seen may get a row of its own. */
    int model_vouched;
    /* An upstream answered 2xx for this client's credential: a client it
     * has not seen may get a row of its own. */
    int client_vouched;
    /* Why Relay refused it before any upstream call (a name of
     * stats_rejection_reasons), or NULL when it did not. */
    const char *rejected;
} stats_request;

/* Counts r at unix time now (seconds). */
void stats_record(stats *st, const stats_request *r, uint64_t now);

/* Adds n to counter C_COUNT of the row (kind, labels), claiming it when
 * new. For labels Relay itself chose (upstream names from relay.ini, a
 * fixed outcome): nothing a client sends. */
void stats_count(stats *st, stats_row_kind kind, const char *const labels[STATS_LABELS],
                 uint64_t n);

/* A row as readers see it. */
typedef struct stats_row {
    stats_row_kind kind;
    const char *labels[STATS_LABELS]; /* "" where unused */
    uint64_t c[STATS_COUNTERS];
} stats_row;

/* Calls fn for every claimed row (table order); stops when fn returns
 * non-zero. */
void stats_each_row(stats *st, int (*fn)(void *ctx, const stats_row *row), void *ctx);

/* One slot of a series: its start (unix seconds) and counters. */
typedef struct stats_point {
    uint64_t t;
    uint64_t c[S_COUNTERS];
} stats_point;

/* The last STATS_MINUTES minutes (per_day 0) or STATS_DAYS days (per_day
 * 1) up to now, oldest first, zeros where nothing was counted: fills out
 * (STATS_MINUTES or STATS_DAYS points). */
void stats_series(stats *st, int per_day, uint64_t now, stats_point *out);

/* Quantile q (0..1) in seconds from per-bucket counts (linear within a
 * bucket; the +Inf bucket reports its lower bound). -1 when empty. */
double stats_quantile(const uint64_t *buckets, double q);

#endif
