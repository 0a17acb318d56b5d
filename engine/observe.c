/*
 * observe.c — Relay's own endpoints (see observe.h): which one answers,
 * /relay/health, the admin token, and the counters' rows that the metrics
 * (metrics.c) and the admin API (admin_api.c) report.
 */
#include "engine/observe.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/cluster_view.h"
#include "engine/observe_int.h"
#include "store/base/rl_secure.h"
#include "store/base/rl_version.h"
#include "store/secret.h"

stats *observe_stats(const exchange *x)
{
    return atomic_load(&x->w->e->stats);
}

void observe_send(exchange *x, int status, const char *ctype, const char *text, size_t len)
{
    if (exchange_start(x, status, ctype, NULL, -1, 0) == 0) {
        exchange_write(x, text, len);
        exchange_flush(x);
    }
}

double observe_usd(uint64_t nusd)
{
    return (double)nusd / 1e9;
}

/* ---- health ------------------------------------------------------------------ */

/* One line per upstream whose breaker refuses calls. */
static int breaker_problems(exchange *x, rl_buf *why)
{
    breaker *b = atomic_load(&x->w->e->breaker);
    uint64_t now = (uint64_t)time(NULL);
    int n = 0;
    for (size_t u = 0; u < x->cfg->nupstreams; u++) {
        const upstream_config *up = &x->cfg->upstreams[u];
        breaker_policy bp = breaker_policy_of(up);
        breaker_view v;
        breaker_view_of(b, up->name, &bp, now, &v);
        if (v.state == BREAKER_OPEN)
            (void)rl_buf_printf(why, "upstream %s: circuit open, %llu s left\n", up->name,
                                (unsigned long long)v.retry_in);
        else if (v.state == BREAKER_HALF_OPEN)
            (void)rl_buf_printf(why, "upstream %s: circuit half-open, %s\n", up->name,
                                v.prober ? "a probe call is under way" : "the next call probes");
        n += v.state != BREAKER_CLOSED;
    }
    return n;
}

int observe_cluster_status(exchange *x, uint64_t now, store_cluster_status *out)
{
    store *shared = x->cfg->cluster.site[0] ? exchange_shared(x) : NULL;
    return shared && store_cluster_status_get(shared, now, out) == RL_OK;
}

/* With [cluster]: the shared store unavailable (tokens and budgets are
 * refused), or no master known (reservations refused after
 * partition_grace). Cheap enough per health request: the status reads
 * repmgr's statistics, the site list and one record, never the network. */
static int cluster_problems(exchange *x, rl_buf *why)
{
    if (!x->cfg->cluster.site[0])
        return 0;
    if (!exchange_shared(x)) {
        (void)rl_buf_printf(why,
                            "cluster: shared store unavailable (%s): requests that need "
                            "tokens or budgets are refused\n",
                            x->cfg->cluster.home);
        return 1;
    }
    store_cluster_status st;
    if (!observe_cluster_status(x, (uint64_t)time(NULL), &st)) {
        (void)rl_buf_printf(why, "cluster: shared store unavailable (its status cannot be read)\n");
        return 1;
    }
    const char *problem = cluster_view_problem(&st);
    if (problem)
        (void)rl_buf_printf(why, "cluster: %s: reservations and token writes are refused\n",
                            problem);
    return problem != NULL;
}

int observe_health_problems(exchange *x, rl_buf *why)
{
    int n = 0;
    store *s = exchange_store(x);
    if (!s) {
        (void)rl_buf_printf(why, "store: unavailable (%s): serving without a cache\n",
                            x->cfg->store.home);
        n++;
    } else if (store_space_low(s)) {
        (void)rl_buf_printf(why,
                            "store: its file system is nearly full (%s): new answers replace the "
                            "oldest instead of growing the cache\n",
                            x->cfg->store.home);
        n++;
    }
    stats *st = observe_stats(x);
    char reason[512];
    if (!st)
        snprintf(reason, sizeof reason, "out of memory");
    if (!st || stats_problem(st, reason, sizeof reason)) {
        (void)rl_buf_printf(why, "stats: %s: nothing is counted\n", reason);
        n++;
    }
    n += cluster_problems(x, why);
    return n + breaker_problems(x, why);
}

/* /relay/health is open: "ok" or "degraded" and the reasons. With
 * ?verbose it also says which Relay this is, and then needs the admin
 * token: a version tells strangers which known flaws to try. */
static void serve_health(exchange *x)
{
    int verbose = prov_query_has(&x->preq, "verbose");
    if (verbose && !observe_admin_authorized(x))
        return;
    rl_buf why, out;
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    int problems = observe_health_problems(x, &why);
    rl_err err = rl_buf_error(&why);
    if (err == RL_OK)
        err = rl_buf_printf(&out, "%s\n%s", problems ? "degraded" : "ok", why.data ? why.data : "");
    if (err == RL_OK && verbose)
        err = rl_buf_printf(&out, "version: %s\n", rl_version());
    if (err == RL_OK)
        observe_send(x, problems ? 503 : 200, "text/plain; charset=utf-8", out.data, out.len);
    else
        exchange_fail(x, RL_NOMEM, NULL);
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

int observe_admin_authorized(exchange *x)
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

/* ---- the counters' rows ----------------------------------------------------------- */

static int collect_row(void *ctx, const stats_row *row)
{
    observe_rows *r = ctx;
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

rl_err observe_rows_collect(stats *st, observe_rows *r)
{
    memset(r, 0, sizeof *r);
    if (!st)
        return RL_OK;
    r->v = calloc(STATS_ROWS, sizeof *r->v);
    r->labels = calloc(STATS_ROWS, sizeof *r->labels);
    if (!r->v || !r->labels)
        return RL_NOMEM;
    r->cap = STATS_ROWS;
    stats_each_row(st, collect_row, r);
    return RL_OK;
}

void observe_rows_release(observe_rows *r)
{
    free(r->v);
    free(r->labels);
    memset(r, 0, sizeof *r);
}

/* ---- dispatch ---------------------------------------------------------------------- */

static void serve_admin_api(exchange *x)
{
    if (observe_admin_authorized(x))
        admin_api_serve(x);
}

/* Relay's endpoints by route kind. */
static const struct {
    route_kind kind;
    void (*serve)(exchange *x);
} endpoints[] = {
    {ROUTE_HEALTH, serve_health},
    {ROUTE_METRICS, metrics_serve},
    {ROUTE_ADMIN_API, serve_admin_api},
};

void observe_serve(exchange *x)
{
    for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++)
        if (endpoints[i].kind == x->rt.kind) {
            endpoints[i].serve(x);
            return;
        }
    exchange_fail(x, RL_INTERNAL, NULL);
}
