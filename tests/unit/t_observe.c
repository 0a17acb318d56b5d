/*
 * t_observe.c — Relay's own endpoints (engine/observe.c, metrics.c,
 * admin_api.c) answering fake clients: the metrics page stays small after
 * junk traffic, and a page over its cap is an error, never a 200 cut
 * short; health says why it is degraded; an admin token in the query
 * string is refused however its name is spelt (prov_query_has); the
 * version is in /relay/health?verbose (admin token only) and the stats API;
 * the tokens API (admin_tokens.c) on a real store: create shows the text
 * once and the store holds its hash, list and show never show either, a
 * USD budget sent as a JSON number is read exactly or refused, refused
 * values are 400 naming the field, a name taken 409, a revoked token 403,
 * rotate keeps the id with a grace period, revoke ends it at once, and
 * nothing without the admin token.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "engine/observe.h"
#include "engine/auth.h"
#include "engine/observe_int.h"
#include "store/base/rl_hex.h"
#include "store/base/rl_version.h"
#include "store/token.h"
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

/* ---- the tokens API (admin_tokens.c) ----------------------------------------- */

#define ADMIN_TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* METHOD /relay/admin/api/PATH with body (NULL: none), with the admin
 * token unless anonymous; the answer in r (request_release it). */
static void api(request *r, const char *method, const char *path, const char *body, int anonymous,
                uint64_t now)
{
    static rl_header h[] = {{"authorization", "Bearer " ADMIN_TOKEN}};
    request_init(r, ROUTE_ADMIN_API, "", h, anonymous ? 0 : 1);
    r->req.method = r->x.preq.method = method;
    r->req.body = body ? body : "";
    r->req.body_len = body ? strlen(body) : 0;
    r->x.rt.path = path;
    r->x.now = now;
    observe_serve(&r->x);
}

/* The string member name of the JSON answer r, into out ("" when none). */
static const char *member(const request *r, const char *name, char *out, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":\"", name);
    const char *p = r->c.body.data ? strstr(r->c.body.data, key) : NULL;
    size_t n = p ? strcspn(p + strlen(key), "\"") : 0;
    snprintf(out, cap, "%.*s", (int)n, p ? p + strlen(key) : "");
    return out;
}

static int has(const request *r, const char *text)
{
    return r->c.body.data && strstr(r->c.body.data, text) != NULL;
}

static void test_tokens_api(const char *dir, uint64_t now)
{
    static char openai[] = "openai", home[256], key[256];
    snprintf(home, sizeof home, "%s/store", dir);
    snprintf(key, sizeof key, "%s/relay.key", dir);
    store_options so = {.home = home, .key_file = key, .cache_mb = 8, .max_threads = 8};
    store *s = NULL;
    request r;
    char text[128], id[16], hex[2 * STORE_KEY_LEN + 1];

    api(&r, "GET", "/tokens", NULL, 0, now);
    is_int(r.c.status, 503, "tokens API without a store: 503");
    request_release(&r);
    if (!ok(store_keyfile_ensure(key) == RL_OK && store_open(&so, &s) == RL_OK, "a store"))
        return;
    atomic_store(&eng.store, s);
    cfg.upstreams[0].name = openai;
    cfg.nupstreams = 1;

    api(&r, "POST", "/tokens", "{\"name\":\"ci\"}", 1, now);
    is_int(r.c.status, 401, "create without the admin token: 401");
    ok(!has(&r, "rly-"), "and no token");
    request_release(&r);

    api(&r, "POST", "/tokens",
        "{\"name\":\"ci bot\",\"upstreams\":[\"openai\"],\"models\":[\"gpt-4o*\"],"
        "\"budget_usd_day\":0.1,\"budget_usd_month\":\"12.5\",\"rpm\":60,\"expires\":\"7d\"}",
        0, now);
    is_int(r.c.status, 201, "create: 201");
    member(&r, "token", text, sizeof text);
    is_int(strlen(text), 68, "with the token's text");
    ok(!strncmp(text, "rly-", 4), "rly-...");
    member(&r, "id", id, sizeof id);
    uint8_t h[STORE_KEY_LEN];
    auth_token_hash(text, h);
    rl_hex_encode(h, STORE_KEY_LEN, hex);
    ok(!strncmp(hex, id, 8), "the id is the first 8 digits of its SHA-256");
    ok(has(&r, "\"budget_usd_day\":\"0.10\"") && has(&r, "\"budget_usd_month\":\"12.50\""),
       "0.1 as a JSON number is 0.10 exactly");
    ok(has(&r, "\"rpm\":60") && has(&r, "\"upstreams\":[\"openai\"]"), "the other fields");
    printf("# %s\n", r.c.body.data);
    request_release(&r);
    store_token t;
    is_int(store_token_get(s, h, &t), RL_OK, "the store has it under the text's hash");
    is_int(t.usd_day, 100000000, "budget in nano-USD");
    is_int(t.expires, now + 7 * 86400, "expiring in 7 days");

    api(&r, "GET", "/tokens", NULL, 0, now);
    is_int(r.c.status, 200, "list: 200");
    ok(has(&r, "\"tokens\":[{") && has(&r, "\"name\":\"ci bot\""), "lists it");
    ok(!has(&r, text) && !has(&r, hex) && !has(&r, "\"token\""), "never its text or hash");
    request_release(&r);
    char path[64];
    snprintf(path, sizeof path, "/tokens/%s", id);
    api(&r, "GET", path, NULL, 0, now);
    is_int(r.c.status, 200, "show by id: 200");
    ok(!has(&r, text) && !has(&r, hex), "never its text or hash");
    request_release(&r);
    api(&r, "GET", "/tokens/ci%20bot", NULL, 0, now);
    is_int(r.c.status, 200, "show by a percent-encoded name: 200");
    ok(has(&r, id), "the same token");
    request_release(&r);
    api(&r, "GET", "/tokens/nobody", NULL, 0, now);
    is_int(r.c.status, 404, "an unknown token: 404");
    ok(has(&r, "no token has the id or the name \\\"nobody\\\""), "says so");
    request_release(&r);

    static const struct {
        const char *body;
        int status;
        const char *says;
    } patches[] = {
        {"{\"budget_usd_day\":0.1234567891}", 400,
         "budget_usd_day: give an amount of USD as a "
         "string"},
        {"{\"budget_usd_day\":10000000.5}", 400, "budget_usd_day: give an amount"},
        {"{\"budget_usd_day\":\"0\"}", 400, "budget_usd_day: 0 would allow nothing"},
        {"{\"budget_usd_day\":-1}", 400, "budget_usd_day: \\\"-1\\\" is not an amount"},
        {"{\"rpm\":1.5}", 400, "rpm: give a whole number"},
        {"{\"rpm\":true}", 400, "rpm: give a whole number"},
        {"{\"upstreams\":[\"gemini\"]}", 400, "upstreams: relay.ini has no [upstream.gemini]"},
        {"{\"upstreams\":\"openai, gemini\"}", 400,
         "upstreams: relay.ini has no [upstream.gemini]"},
        {"{\"models\":[\"a,b\"]}", 400, "models: give an array"},
        {"{\"name\":null}", 400, "name: give a string"},
        {"{\"expires\":\"yesterday\"}", 400, "expires: \\\"yesterday\\\" is not a duration"},
        {"{\"frob\":1}", 400, "frob is not a field"},
        {"{}", 400, "nothing to change"},
        {"[1]", 400, "Send a JSON object"},
        {"{\"name\":", 400, "Send a JSON object"},
        {"{\"budget_usd_day\":\"0.07\",\"rpm\":null,\"expires\":1900000000,\"models\":null}", 200,
         "\"budget_usd_day\":\"0.07\""},
    };
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        char what[160];
        api(&r, "PATCH", path, patches[i].body, 0, now);
        snprintf(what, sizeof what, "PATCH %s: %d", patches[i].body, patches[i].status);
        is_int(r.c.status, patches[i].status, what);
        if (!ok(has(&r, patches[i].says), "with a clear message"))
            printf("#   %s\n", r.c.body.data ? r.c.body.data : "");
        request_release(&r);
    }
    is_int(store_token_get(s, h, &t), RL_OK, "read back");
    ok(t.usd_day == 70000000 && t.rpm == 0 && t.expires == 1900000000 && t.n_models == 0,
       "the last PATCH changed what it gave; the refused ones nothing");
    ok(t.usd_month == 12500000000 && t.n_upstreams == 1, "and kept the rest");

    api(&r, "POST", "/tokens", "{\"name\":\"agent\"}", 0, now);
    is_int(r.c.status, 201, "a second token");
    request_release(&r);
    api(&r, "PATCH", "/tokens/agent", "{\"name\":\"ci bot\"}", 0, now);
    is_int(r.c.status, 409, "renamed onto a name taken: 409");
    request_release(&r);
    api(&r, "POST", "/tokens", "{\"name\":\"agent\"}", 0, now);
    is_int(r.c.status, 409, "created with a name taken: 409");
    ok(has(&r, "\\\"agent\\\" is taken by token"), "says by which");
    request_release(&r);

    char rot[96], text2[128], what_buf[96];
    snprintf(rot, sizeof rot, "%s/rotate", path);
    api(&r, "POST", rot, "{\"grace\":\"1h\"}", 0, now + 10);
    is_int(r.c.status, 200, "rotate: 200");
    member(&r, "token", text2, sizeof text2);
    ok(strlen(text2) == 68 && strcmp(text, text2) != 0, "a new text");
    ok(has(&r, id), "the same id");
    snprintf(what_buf, sizeof what_buf, "\"grace_until\":%llu", (unsigned long long)now + 3610);
    ok(has(&r, what_buf), "the old text works one more hour");
    request_release(&r);
    api(&r, "POST", rot, "{\"grace\":\"soon\"}", 0, now + 10);
    is_int(r.c.status, 400, "a grace that is no duration: 400");
    request_release(&r);

    api(&r, "DELETE", path, NULL, 0, now + 20);
    is_int(r.c.status, 200, "revoke: 200");
    ok(has(&r, "\"state\":\"revoked\""), "revoked");
    request_release(&r);
    is_int(store_token_get(s, h, &t), RL_OK, "the old text's record");
    ok(t.revoked == now + 20, "stops now, not in an hour");
    api(&r, "PATCH", path, "{\"rpm\":5}", 0, now + 20);
    is_int(r.c.status, 403, "a revoked token cannot be changed: 403");
    request_release(&r);
    api(&r, "POST", rot, NULL, 0, now + 20);
    is_int(r.c.status, 403, "nor rotated");
    ok(!has(&r, "rly-"), "no text");
    request_release(&r);

    api(&r, "PUT", "/tokens", "{}", 0, now);
    is_int(r.c.status, 405, "PUT /tokens: 405");
    ok(has(&r, "Use GET (list) or POST (create) here."), "names the methods");
    request_release(&r);
    api(&r, "GET", "/tokens/a/b", NULL, 0, now);
    is_int(r.c.status, 404, "/tokens/a/b: 404");
    request_release(&r);
    api(&r, "GET", "/tokens/", NULL, 0, now);
    is_int(r.c.status, 404, "/tokens/: 404");
    request_release(&r);

    atomic_store(&eng.store, NULL);
    store_close(s);
    store_remove(&so);
    cfg.nupstreams = 0;
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
    test_tokens_api(dir, now);

    stats_close(atomic_load(&eng.stats));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return tap_done();
}
