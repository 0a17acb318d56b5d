/*
 * observe_int.h — what the three parts of Relay's own endpoints share
 * (observe.c: dispatch, health, the admin token and the counters' rows;
 * metrics.c: /relay/metrics; admin_api.c: /relay/admin/api/). Not for use
 * outside them.
 */
#ifndef RELAY_ENGINE_OBSERVE_INT_H
#define RELAY_ENGINE_OBSERVE_INT_H

#include "engine/breaker.h"
#include "engine/exchange.h"
#include "store/cluster.h"

/* The process's counters, NULL while they cannot be used. */
stats *observe_stats(const exchange *x);

/* Sends a whole 200-or-other answer of one content type. */
void observe_send(exchange *x, int status, const char *ctype, const char *text, size_t len);

/* 1 when x carries the admin token; else answers x (401) and returns 0. */
int observe_admin_authorized(exchange *x);

/* Appends one line per problem ("what: why\n") to why; returns how many.
 * RL_NOMEM is not a problem here: a line that does not fit is left out. */
int observe_health_problems(exchange *x, rl_buf *why);

/* With [cluster] and the shared store open: its status at unix time now
 * into out, 1; else 0 (no [cluster], the store closed or unreadable). */
int observe_cluster_status(exchange *x, uint64_t now, store_cluster_status *out);

/* Every row of the shared counters, copied once per report (labels
 * included: the views point into the copy, not into the shared file). */
typedef struct observe_rows {
    stats_row *v;
    size_t n, cap;
    char (*labels)[STATS_LABELS][STATS_LABEL_MAX];
} observe_rows;

/* Copies every row of st (none when st is NULL). RL_NOMEM. */
rl_err observe_rows_collect(stats *st, observe_rows *r);
void observe_rows_release(observe_rows *r);

/* nano-USD to USD. */
double observe_usd(uint64_t nusd);

/* GET /relay/metrics (metrics.c). */
void metrics_serve(exchange *x);

/* The largest metrics page Relay sends: a page that would be larger is an
 * error (500), never a 200 cut short. Rows are bounded (stats.h), and so
 * are the budgets' gauges (budgets.h: at most 5 per token reported, 3 per
 * [budget] row), so only a damaged counters file or a change of layout
 * gets near it. */
#define METRICS_MAX_BYTES (2u << 20)

/*
 * Writes the metrics page (Prometheus text 0.0.4) of rows rs into out,
 * which it initialises with the cap max (the caller releases it); the
 * cache store's families only when s is not NULL; the budgets' (read at
 * unix time now) only when shared, where tokens and budgets live
 * (exchange_shared: s itself without [cluster]), is not NULL; the
 * group's (relay_cluster_*) only when cl, [cluster]'s status, is not NULL;
 * relay_breaker_open from br (NULL: every breaker closed). RL_TOO_LARGE
 * when the page would exceed max bytes (out then holds a partial page that
 * must not be sent), RL_NOMEM.
 */
rl_err metrics_page(const relay_config *cfg, const observe_rows *rs, store *s, store *shared,
                    const store_cluster_status *cl, breaker *br, uint64_t now, size_t max,
                    rl_buf *out);

/* /relay/admin/api/... once authorized (admin_api.c). */
void admin_api_serve(exchange *x);

/* /relay/admin/api/tokens... (admin_tokens.c), called by admin_api_serve. */
void admin_tokens_serve(exchange *x);

#endif
