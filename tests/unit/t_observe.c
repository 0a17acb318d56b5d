/*
 * t_observe.c — Relay's own endpoints (engine/observe.c, metrics.c,
 * admin_api.c) answering fake clients: the metrics page stays small after
 * junk traffic, and a page over its cap is an error, never a 200 cut
 * short; health says why it is degraded; an admin token in the query
 * string is refused however its name is spelt (prov_query_has); the
 * version is in /relay/health?verbose (admin token only) and the stats API.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "engine/observe.h"
#include "engine/observe_int.h"
#include "store/base/rl_version.h"
#include "tests/unit/tap.h"

/* ---- a fake client ------------------------------------------------------- */

typedef struct client {
    int status;
    char ctype[128];
    rl_buf body;
} client;

static int sink_start(void *ctx, int status, const rl_header *h, size_t n)
{
    client *c = ctx;
    c->status = status;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(h[i].name, "content-type"))
            snprintf(c->ctype, sizeof c->ctype, "%s", h[i].value);
    return 0;
}

static int sink_write(void *ctx, const void *p, size_t n)
{
    return rl_buf_append(&((client *)ctx)->body, p, n) == RL_OK ? 0 : -1;
}

static int sink_flush(void *ctx)
{
    (void)ctx;
    return 0;
}

static relay_config cfg;
static struct engine eng;
static engine_worker worker;

typedef struct request {
    exchange x;
    engine_request req;
    engine_sink sink;
    client c;
} request;

/* A request for Relay's route `kind`, with the given query and headers. */
static void request_init(request *r, route_kind kind, const char *query, const rl_header *headers,
                         size_t nheaders)
{
    memset(r, 0, sizeof *r);
    rl_buf_init(&r->c.body, 0);
    r->sink = (engine_sink){&r->c, sink_start, sink_write, sink_flush, NULL};
    r->req = (engine_request){.method = "GET",
                              .path = "/relay/",
                              .query = query,
                              .headers = headers,
                              .nheaders = nheaders};
    exchange *x = &r->x;
    x->w = &worker;
    x->cfg = &cfg;
    x->req = &r->req;
    x->sink = &r->sink;
    x->prov = &prov_openai;
    x->outcome = "";
    x->rt.kind = kind;
    x->preq = (prov_request){.method = "GET",
                             .path = "/relay/",
                             .query = query,
                             .headers = headers,
                             .nheaders = nheaders};
}

static void request_release(request *r)
{
    rl_buf_release(&r->c.body);
}

static stats_request junk(const char *model, const char *who, int status)
{
    stats_request r = {.upstream = "openai",
                       .model = model,
                       .outcome = "BYPASS",
                       .status = status,
                       .failed = status >= 400,
                       .client = who,
                       .tokens_in = -1,
                       .tokens_out = -1,
                       .tokens_cached_in = -1,
                       .model_vouched = status >= 200 && status < 300,
                       .client_vouched = status >= 200 && status < 300};
    return r;
}

static size_t page_size(stats *st)
{
    observe_rows rs;
    rl_buf page;
    size_t n = 0;
    if (observe_rows_collect(st, &rs) == RL_OK &&
        metrics_page(&cfg, &rs, NULL, METRICS_MAX_BYTES, &page) == RL_OK)
        n = page.len;
    else
        n = (size_t)-1;
    observe_rows_release(&rs);
    rl_buf_release(&page);
    return n;
}

/* Defect 9: junk model names and bogus keys made the page 884 KB. */
static void test_metrics_after_junk(const char *dir, uint64_t now)
{
    stats *st = NULL;
    is_int(stats_open(dir, &st), RL_OK, "a counters file");
    if (!st)
        return;
    atomic_store(&eng.stats, st);
    char model[64], key[16];
    for (int i = 0; i < 4200; i++) {
        snprintf(model, sizeof model, "junk-%d-%s", i, "padding-padding-padding-padding");
        snprintf(key, sizeof key, "%08x", 0x30000000u + (unsigned)i);
        stats_request r = junk(model, key, i % 2 ? 404 : 401);
        stats_record(st, &r, now);
    }
    size_t n = page_size(st);
    ok(n < 16384, "after 4,200 junk requests the metrics page stays small");
    printf("# metrics page: %zu bytes\n", n);

    request r;
    request_init(&r, ROUTE_METRICS, "", NULL, 0);
    observe_serve(&r.x);
    is_int(r.c.status, 200, "the page is served");
    ok(r.c.body.data && strstr(r.c.body.data, "model=\"(other)\"") != NULL,
       "the junk is counted under model=\"(other)\"");
    request_release(&r);
}

/* Past the cap the page is an error, not a 200 cut short. */
static void test_metrics_cap(const char *dir, uint64_t now)
{
    stats *st = atomic_load(&eng.stats);
    if (!st)
        return;
    observe_rows rs;
    rl_buf page;
    is_int(observe_rows_collect(st, &rs), RL_OK, "collect the rows");
    is_int(metrics_page(&cfg, &rs, NULL, 1000, &page), RL_TOO_LARGE,
           "a page over its cap is RL_TOO_LARGE");
    ok(page.len <= 1000, "and never longer than the cap");
    rl_buf_release(&page);
    observe_rows_release(&rs);

    /* Accepted models with the longest labels, quotes doubled by escaping,
     * from requests without a client (no client's share bounds them) and an
     * upstream that says yes to anything: the page outgrows its cap. */
    char model[STATS_LABEL_MAX];
    for (int i = 0; i < STATS_ROWS; i++) {
        int used = snprintf(model, sizeof model, "%d", i);
        memset(model + used, '"', sizeof model - 1 - (size_t)used);
        model[sizeof model - 1] = '\0';
        stats_request r = junk(model, "", 200);
        stats_record(st, &r, now);
    }
    request r;
    request_init(&r, ROUTE_METRICS, "", NULL, 0);
    observe_serve(&r.x);
    is_int(r.c.status, 500, "an oversized metrics page is a 500");
    ok(r.c.body.data && strstr(r.c.body.data, "\"error\"") && !strstr(r.c.body.data, "# HELP"),
       "with an error body, not part of the page");
    request_release(&r);
    (void)dir;
}

/* Health names each problem: the store, and counters that cannot count. */
static void test_health(void)
{
    stats *was = atomic_load(&eng.stats);
    stats *down = stats_new("/nonexistent/relay-t-observe");
    atomic_store(&eng.stats, down);
    cfg.store.home = "/nonexistent/relay-t-observe";
    request r;
    request_init(&r, ROUTE_HEALTH, "", NULL, 0);
    observe_serve(&r.x);
    is_int(r.c.status, 503, "health: degraded is a 503");
    const char *t = r.c.body.data ? r.c.body.data : "";
    ok(!strncmp(t, "degraded\nstore: unavailable (/nonexistent/relay-t-observe)", 58),
       "health: the store first");
    ok(strstr(t, "\nstats: /nonexistent/relay-t-observe/stats.map cannot be created (No such "
                 "file or directory): nothing is counted\n") != NULL,
       "health: the counters, with the reason");
    printf("# %s", t);
    request_release(&r);
    stats_close(down);
    atomic_store(&eng.stats, was);
}

/* Defect 12: ?Token=, ?tok%65n= and ?x=1;token= passed. */
static void test_query_names(void)
{
    static const struct {
        const char *query;
        int has;
    } cases[] = {
        {"token=abc", 1},
        {"Token=abc", 1},
        {"TOKEN=abc", 1},
        {"tok%65n=abc", 1},
        {"tok%45N=abc", 1},
        {"%74%6F%6B%65%6E=abc", 1},
        {"x=1;token=abc", 1},
        {"x=1&y=2;Tok%65n", 1},
        {"v=1&token", 1},
        {"token", 1},
        {"tokenizer=1", 0},
        {"tok=1&en=2", 0},
        {"x=token", 0},
        {"to+ken=1", 0},
        {"tok%2=1", 0},
        {"token%00=1", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        prov_request q = {.query = cases[i].query};
        char what[96];
        snprintf(what, sizeof what, "?%s %s token", cases[i].query,
                 cases[i].has ? "names" : "does not name");
        is_int(prov_query_has(&q, "token"), cases[i].has, what);
    }
    prov_request none = {.query = NULL};
    is_int(prov_query_has(&none, "token"), 0, "no query names nothing");
}

/* The admin API refuses those queries even with a good token in the header. */
static void test_admin_query(const char *dir)
{
    static char file[256];
    char auth[128];
    const char *token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    snprintf(file, sizeof file, "%s/admin.token", dir);
    FILE *f = fopen(file, "w");
    /* secret.h refuses a token file that other users may read */
    if (!f || fchmod(fileno(f), 0600) != 0 || fprintf(f, "%s\n", token) < 0 || fclose(f) != 0) {
        ok(0, "write an admin token file");
        return;
    }
    cfg.admin.token_file = file;
    snprintf(auth, sizeof auth, "Bearer %s", token);
    rl_header h[] = {{"authorization", auth}};
    static const char *const refused[] = {"Token=x", "tok%65n=x", "x=1;token=x", "ACCESS_TOKEN=x",
                                          "v=1&Key=x"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        request r;
        request_init(&r, ROUTE_ADMIN_API, refused[i], h, 1);
        r.x.rt.path = "/stats";
        observe_serve(&r.x);
        char what[96];
        snprintf(what, sizeof what, "?%s is refused with a good header", refused[i]);
        is_int(r.c.status, 401, what);
        ok(r.c.body.data && strstr(r.c.body.data, "never in the URL"), "and says why");
        request_release(&r);
    }
    request r;
    request_init(&r, ROUTE_ADMIN_API, "tokenizer=1", h, 1);
    r.x.rt.path = "/stats";
    observe_serve(&r.x);
    is_int(r.c.status, 200, "?tokenizer=1 is no token: the stats are served");
    request_release(&r);
}

/* The version: in the verbose health (admin only) and the stats API. */
static void test_version(void)
{
    char auth[128], want[160];
    snprintf(auth, sizeof auth, "Bearer %s",
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    rl_header h[] = {{"authorization", auth}};
    snprintf(want, sizeof want, "\nversion: %s\n", rl_version());

    request r;
    request_init(&r, ROUTE_HEALTH, "verbose", NULL, 0);
    observe_serve(&r.x);
    is_int(r.c.status, 401, "health?verbose without the admin token is refused");
    ok(r.c.body.data && strstr(r.c.body.data, "\"error\"") && !strstr(r.c.body.data, "version"),
       "with an error, never the version");
    request_release(&r);

    request_init(&r, ROUTE_HEALTH, "verbose", h, 1);
    observe_serve(&r.x);
    const char *t = r.c.body.data ? r.c.body.data : "";
    ok(r.c.status == 200 || r.c.status == 503, "health?verbose with the token answers");
    ok(strstr(t, want) != NULL, "with the version");
    printf("# %s", t);
    request_release(&r);

    request_init(&r, ROUTE_HEALTH, "", NULL, 0);
    observe_serve(&r.x);
    ok(r.c.body.data && !strstr(r.c.body.data, "version"), "plain health does not say it");
    request_release(&r);

    request_init(&r, ROUTE_ADMIN_API, "", h, 1);
    r.x.rt.path = "/stats";
    observe_serve(&r.x);
    snprintf(want, sizeof want, "\"version\":\"%s\"", rl_version());
    ok(r.c.body.data && strstr(r.c.body.data, want) != NULL, "the stats API has the version");
    ok(r.c.body.data && strstr(r.c.body.data, "\"api\":2") != NULL, "and its own shape's number");
    request_release(&r);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    char dir[] = "/tmp/t_observe.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    cfg.metrics.access = METRICS_OPEN;
    eng.cfg = &cfg;
    worker.e = &eng;
    const uint64_t now = 1800000000;

    test_metrics_after_junk(dir, now);
    test_metrics_cap(dir, now);
    test_health();
    test_query_names();
    test_admin_query(dir);
    test_version();

    stats_close(atomic_load(&eng.stats));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return tap_done();
}
