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

#include <jansson.h>
#include <math.h>
#include <time.h>

#include "engine/auth.h"
#include "engine/engine.h"
#include "engine/observe.h"
#include "engine/observe_int.h"
#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "store/base/rl_pool.h"
#include "store/base/rl_version.h"
#include "store/token.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_tokens.h"

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
    r->sink = (engine_sink){&r->c, sink_start, sink_write, sink_flush, NULL, NULL};
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
        metrics_page(&cfg, &rs, NULL, NULL, NULL, NULL, 0, METRICS_MAX_BYTES, &page) == RL_OK)
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
    is_int(metrics_page(&cfg, &rs, NULL, NULL, NULL, NULL, 0, 1000, &page), RL_TOO_LARGE,
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
    ok(r.c.body.data && strstr(r.c.body.data, "\"api\":5") != NULL, "and its own shape's number");
    ok(r.c.body.data && strstr(r.c.body.data, "\"cluster\":null") != NULL,
       "no [cluster]: \"cluster\" is null");
    request_release(&r);
}

/* ---- Relay client tokens and budgets, through a whole engine ------------- */

/*
 * A real engine on a real store (engine_new, as a worker starts), whose
 * upstream calls go to a fake that answers every chat completion with 10
 * input and 5 output tokens ($0.0000045 at gpt-4o-mini's price). Requests
 * with Relay tokens, refused or served, and a provider key; then the stats
 * API and the metrics page as the admin reads them: each token's spending
 * against its budgets, the [budget] rows, refusals by reason, and no
 * token's text or hash, no held key and no provider key anywhere in them
 * or in what the engine logged.
 */

#define HELD_KEY "sk-held-key-t-observe-0123456789"
#define OWN_KEY "sk-own-key-t-observe-9876543210"
#define ADMIN_TOKEN "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static int upstream_calls;
static char upstream_auth[256];

static rl_err fake_perform(upstream_client *c, const upstream_request *req,
                           const upstream_handler *h, int *got_head)
{
    (void)c;
    static const char body[] =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
        "\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}}";
    upstream_calls++;
    upstream_auth[0] = '\0';
    for (size_t i = 0; i < req->nheaders; i++)
        if (!strcmp(req->headers[i].name, "authorization"))
            snprintf(upstream_auth, sizeof upstream_auth, "%s", req->headers[i].value);
    rl_header head[] = {{"content-type", "application/json"}};
    *got_head = 1;
    if (h->on_head(h->ctx, 200, head, 1) != 0 || h->on_data(h->ctx, body, sizeof body - 1) != 0)
        return RL_CLIENT_GONE;
    return RL_OK;
}

/* Everything the engine logged while the test ran. */
static rl_buf logged;
static void log_sink(void *ctx, const char *line)
{
    (void)ctx;
    rl_buf_puts(&logged, line);
    rl_buf_puts(&logged, "\n");
}

/* method path, with "authorization: Bearer <bearer>" and body (may be NULL),
 * through engine_handle as the front hands it over. */
static void send(engine_worker *w, const char *method, const char *path, const char *bearer,
                 const char *body, client *a)
{
    memset(a, 0, sizeof *a);
    rl_buf_init(&a->body, 0);
    char auth[256];
    snprintf(auth, sizeof auth, "Bearer %s", bearer);
    rl_header h[] = {{"authorization", auth}, {"content-type", "application/json"}};
    rl_pool *pool = rl_pool_new();
    engine_request req = {.pool = pool,
                          .id = "t_observe",
                          .method = method,
                          .path = path,
                          .query = "",
                          .headers = h,
                          .nheaders = 2,
                          .body = body ? body : "",
                          .body_len = body ? strlen(body) : 0};
    engine_sink sink = {a, sink_start, sink_write, sink_flush, NULL, NULL};
    engine_handle(w, &req, &sink);
    rl_pool_free(pool);
}

/* A chat completion about `about` with credential (a token or a key). */
static int chat(engine_worker *w, const char *credential, const char *about, const char *model)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"temperature\":0,\"messages\":[{\"role\":\"user\","
             "\"content\":\"%s\"}]}",
             model, about);
    client a;
    send(w, "POST", "/v1/chat/completions", credential, body, &a);
    rl_buf_release(&a.body);
    return a.status;
}

static store_token token_new(const char *name, char text[AUTH_TOKEN_LEN + 1])
{
    return test_token(name, (uint64_t)time(NULL) - 60, text);
}

/* The client of the stats document whose id is id, or NULL. */
static json_t *client_of(json_t *doc, const char *id)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "clients"), i, c)
    {
        if (!strcmp(json_string_value(json_object_get(c, "client")), id))
            return c;
    }
    return NULL;
}

/* doc.a.b.c... as a number (json_number_value: 0 when missing). */
static double num_at(json_t *doc, const char *path)
{
    char copy[256], *save = NULL;
    snprintf(copy, sizeof copy, "%s", path);
    json_t *v = doc;
    for (char *k = strtok_r(copy, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    return json_number_value(v);
}

/* The value of the metrics sample that starts with `sample` ("name{labels}"). */
static double sample_of(const char *page, const char *sample)
{
    char want[256];
    snprintf(want, sizeof want, "\n%s ", sample);
    const char *at = page ? strstr(page, want) : NULL;
    return at ? strtod(at + strlen(want), NULL) : NAN;
}

/* Whether any secret of secrets[] shows in text: the text itself, or (for
 * tokens) 16 hex digits of its hash past the public id, as the cache
 * scope "tok:..." would show them. */
static int leaks(const char *text, const char *const *secrets, size_t n)
{
    for (size_t i = 0; text && i < n; i++) {
        if (strstr(text, secrets[i]))
            return 1;
        if (!strncmp(secrets[i], AUTH_TOKEN_PREFIX, 4)) {
            uint8_t hash[AUTH_HASH_LEN];
            char hex[2 * AUTH_HASH_LEN + 1];
            auth_token_hash(secrets[i], hash);
            rl_hex_encode(hash, sizeof hash, hex);
            hex[24] = '\0';
            if (strstr(text, hex + 8) || strstr(text, secrets[i] + 4))
                return 1;
        }
    }
    return 0;
}

static void test_spend_observed(const char *tmp)
{
    char dir[200], path[300], ini[2048];
    snprintf(dir, sizeof dir, "%s/engine", tmp);
    snprintf(path, sizeof path, "%s/store", dir);
    mkdir(dir, 0700);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/admin.token", dir);
    FILE *f = fopen(path, "w");
    if (!f || fchmod(fileno(f), 0600) != 0 || fprintf(f, "%s\n", ADMIN_TOKEN) < 0 ||
        fclose(f) != 0) {
        ok(0, "write the admin token file");
        return;
    }
    setenv("T_OBSERVE_HELD_KEY", HELD_KEY, 1);
    snprintf(ini, sizeof ini,
             "[fcgi]\nlisten = %s/relay.sock\n"
             "[store]\nhome = %s/store\nkey_file = %s/relay.key\n"
             "[upstream.openai]\ntype = openai\nbase_url = http://127.0.0.1:9\n"
             "api_key_env = T_OBSERVE_HELD_KEY\n"
             "[admin]\ntoken_file = %s\n"
             "[pricing]\ngpt-4o-mini = 0.15 0.60\n"
             "[budget]\nupstream.openai.usd_day = 20\nmodel.gpt-4o-mini.tokens_day = 1000000\n",
             dir, dir, dir, path);
    snprintf(path, sizeof path, "%s/relay.ini", dir);
    f = fopen(path, "w");
    if (!f || fputs(ini, f) < 0 || fclose(f) != 0) {
        ok(0, "write relay.ini");
        return;
    }
    relay_config *rc = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    engine *e = NULL;
    engine_worker *w = NULL;
    if (!ok(config_load(path, &rc, &why) == RL_OK, "relay.ini loads")) {
        printf("# %s\n", why.data ? why.data : "");
        rl_buf_release(&why);
        return;
    }
    rl_buf_release(&why);
    if (!ok(engine_new(rc, &e) == RL_OK && (w = engine_worker_new(e)) != NULL &&
                atomic_load(&e->store) != NULL,
            "an engine with its store"))
        goto out;
    w->perform = fake_perform;
    store *s = atomic_load(&e->store);

    /* A: budgets in USD and limits per minute; B: 10 tokens a day (its
     * first request passes it, the next is refused); C: never used; D: may
     * ask only for other models; R: revoked. */
    char ta[AUTH_TOKEN_LEN + 1], tb[AUTH_TOKEN_LEN + 1], tc[AUTH_TOKEN_LEN + 1],
        td[AUTH_TOKEN_LEN + 1], tr[AUTH_TOKEN_LEN + 1], tu[AUTH_TOKEN_LEN + 1];
    store_token a = token_new("observed agent", ta), b = token_new("small budget", tb),
                c = token_new("quiet one", tc), d = token_new("claude only", td),
                r = token_new("revoked one", tr);
    a.usd_day = 1000000000;    /* $1 */
    a.usd_month = 10000000000; /* $10 */
    a.rpm = 100;
    a.tpm = 100000;
    b.tokens_day = 10;
    c.usd_day = 2000000000;
    d.n_models = 1;
    snprintf(d.models[0], sizeof d.models[0], "claude-*");
    r.revoked = (uint64_t)time(NULL) - 1;
    const store_token *all[] = {&a, &b, &c, &d, &r};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        is_int(store_token_put(s, all[i], TOKEN_CREATE), RL_OK, "a token in the store");
    if (auth_token_new(tu) != RL_OK)
        goto out;

    rl_buf_init(&logged, 0);
    rl_log_set_level(RL_LOG_DEBUG);
    rl_log_set_thread_sink(log_sink, NULL);
    is_int(chat(w, ta, "observed one", "gpt-4o-mini"), 200, "A: a miss");
    is_str(upstream_auth, "Bearer " HELD_KEY, "the held key went upstream");
    is_int(chat(w, ta, "observed one", "gpt-4o-mini"), 200, "A: the same again, a hit");
    is_int(chat(w, tb, "small one", "gpt-4o-mini"), 200, "B: admitted while its budget lasts");
    is_int(chat(w, tb, "small two", "gpt-4o-mini"), 429, "B: then refused over its budget");
    is_int(chat(w, td, "not for d", "gpt-4o-mini"), 403, "D: a model it may not use");
    is_int(chat(w, tr, "revoked", "gpt-4o-mini"), 401, "R: revoked");
    is_int(chat(w, tu, "unknown", "gpt-4o-mini"), 401, "an unknown token");
    is_int(chat(w, OWN_KEY, "own key", "gpt-4o-mini"), 200, "a provider key, passed through");
    is_int(upstream_calls, 3, "three upstream calls");

    client st, mt;
    send(w, "GET", "/relay/admin/api/stats", ADMIN_TOKEN, NULL, &st);
    send(w, "GET", "/relay/metrics", ADMIN_TOKEN, NULL, &mt);
    rl_log_set_thread_sink(NULL, NULL);
    rl_log_set_level(RL_LOG_ERROR);
    is_int(st.status, 200, "the stats API answers");
    is_int(mt.status, 200, "the metrics page too");
    json_t *doc = json_loadb(st.body.data ? st.body.data : "", st.body.len, 0, NULL);
    ok(json_is_object(doc), "with JSON");

    const double cost = (10 * 0.15 + 5 * 0.60) / 1e6;
    is_int((long long)num_at(doc, "api"), 5, "api 5: with budgets, breakers and cluster");
    is_int((long long)num_at(doc, "totals.rejected"), 4, "four refusals");
    is_int((long long)num_at(doc, "totals.rejections.budget"), 1, "one over a budget");
    is_int((long long)num_at(doc, "totals.rejections.forbidden_model"), 1, "one model refused");
    is_int((long long)num_at(doc, "totals.rejections.token_revoked"), 1, "one revoked token");
    is_int((long long)num_at(doc, "totals.rejections.token_unknown"), 1, "one unknown token");
    is_int((long long)num_at(doc, "totals.rejections.rate_limit"), 0, "no rate limit hit");

    json_t *ca = client_of(doc, a.id);
    ok(ca != NULL, "A is a client, by its id");
    is_str(json_string_value(json_object_get(json_object_get(ca, "token"), "name")),
           "observed agent", "with its token's name");
    is_int((long long)num_at(ca, "requests"), 2, "A: two requests");
    is_int((long long)num_at(ca, "hits"), 1, "A: one a hit");
    ok(fabs(num_at(ca, "token.day.usd.limit") - 1.0) < 1e-12, "A: $1 a day");
    ok(fabs(num_at(ca, "token.day.usd.spent") - cost) < 1e-12, "A: the miss's cost spent today");
    ok(fabs(num_at(ca, "token.day.usd.remaining") - (1.0 - cost)) < 1e-12, "A: the rest left");
    ok(fabs(num_at(ca, "token.month.usd.spent") - cost) < 1e-12, "A: spent this month");
    ok(fabs(num_at(ca, "token.month.usd.limit") - 10.0) < 1e-12, "A: $10 a month");
    is_int((long long)num_at(ca, "token.minute.requests.limit"), 100, "A: rpm");
    is_int((long long)num_at(ca, "token.minute.requests.spent"), 1,
           "A: one upstream call this minute (the hit reserved nothing)");
    is_int((long long)num_at(ca, "token.minute.tokens.limit"), 100000, "A: tpm");
    is_int((long long)num_at(ca, "token.day.usd.reserved"), 0, "A: nothing under way");
    ok(json_is_null(json_object_get(
           json_object_get(json_object_get(json_object_get(ca, "token"), "day"), "tokens"),
           "limit")),
       "A: no token budget: a null limit, not a zero");
    json_t *cb = client_of(doc, b.id);
    is_int((long long)num_at(cb, "rejected"), 1, "B: one refusal");
    is_int((long long)num_at(cb, "token.day.tokens.spent"), 15, "B: 15 tokens today");
    is_int((long long)num_at(cb, "token.day.tokens.remaining"), 0, "B: none left");
    json_t *cc = client_of(doc, c.id);
    ok(cc && num_at(cc, "requests") == 0 && num_at(cc, "token.day.usd.limit") == 2.0,
       "C: listed with its budget before any request");
    is_int((long long)num_at(client_of(doc, d.id), "rejected"), 1,
           "D: its refusal counts as its own (a token Relay checked)");
    ok(client_of(doc, r.id) == NULL, "R: refused as revoked, never a client of its own");
    size_t i;
    json_t *g, *up = NULL;
    json_array_foreach(json_object_get(json_object_get(doc, "budgets"), "global"), i, g)
    {
        if (!strcmp(json_string_value(json_object_get(g, "scope")), "upstream"))
            up = g;
    }
    ok(up && !strcmp(json_string_value(json_object_get(up, "name")), "openai"),
       "the [budget] row of upstream openai");
    ok(fabs(num_at(up, "day.usd.spent") - 3 * cost) < 1e-12, "with every call's cost today");
    ok(fabs(num_at(up, "day.usd.limit") - 20) < 1e-12, "against its $20");

    const char *page = mt.body.data;
    char want[128];
    snprintf(want, sizeof want, "relay_rejections_total{reason=\"budget\"}");
    is_int((long long)sample_of(page, want), 1, "metrics: refusals by reason");
    ok(sample_of(page, "relay_rejections_total{reason=\"token_required\"}") == 0,
       "metrics: every reason, zeros included");
    snprintf(want, sizeof want, "relay_budget_remaining_usd{token=\"%s\",window=\"day\"}", a.id);
    ok(fabs(sample_of(page, want) - (1.0 - cost)) < 1e-9, "metrics: A's USD left today");
    snprintf(want, sizeof want, "relay_budget_remaining_usd{token=\"%s\",window=\"month\"}", a.id);
    ok(fabs(sample_of(page, want) - (10.0 - cost)) < 1e-9, "metrics: and this month");
    snprintf(want, sizeof want, "relay_budget_remaining_requests{token=\"%s\",window=\"minute\"}",
             a.id);
    is_int((long long)sample_of(page, want), 99, "metrics: A's requests left this minute");
    snprintf(want, sizeof want, "relay_budget_remaining_tokens{token=\"%s\",window=\"day\"}", b.id);
    is_int((long long)sample_of(page, want), 0, "metrics: B's tokens left today");
    ok(fabs(sample_of(page, "relay_budget_remaining_usd{upstream=\"openai\",window=\"day\"}") -
            (20 - 3 * cost)) < 1e-9,
       "metrics: the [budget] row of openai");
    snprintf(want, sizeof want, "token=\"%s\"", r.id);
    ok(page && !strstr(page, want), "metrics: no gauge for a revoked token");
    snprintf(want, sizeof want, "relay_budget_remaining_usd{token=\"%s\"", b.id);
    ok(page && !strstr(page, want), "metrics: nor for a budget a token does not have");

    const char *secrets[] = {ta, tb, tc, td, tr, tu, HELD_KEY, OWN_KEY};
    ok(!leaks(st.body.data, secrets, 8), "no token, hash or key in the stats API");
    ok(!leaks(page, secrets, 8), "nor in the metrics");
    ok(logged.len > 0 && !leaks(logged.data, secrets, 8), "nor in what the engine logged");
    json_decref(doc);
    rl_buf_release(&st.body);
    rl_buf_release(&mt.body);
    rl_buf_release(&logged);
out:
    engine_worker_free(w);
    engine_free(e);
    store_options so;
    config_store_options(rc, &so);
    store_remove(&so);
    config_free(rc);
}

/* ---- the tokens API (admin_tokens.c) ----------------------------------------- */

/* METHOD /relay/admin/api/PATH with body (NULL: none), with the admin
 * token unless anonymous; the answer in r (request_release it). */
static void api(request *r, const char *method, const char *path, const char *body, int anonymous,
                uint64_t now)
{
    /* the token test_admin_query wrote into [admin] token_file */
    static rl_header h[] = {
        {"authorization",
         "Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}};
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
    static char no_cluster[] = ""; /* config_load's default: no [cluster] */
    cfg.cluster.site = no_cluster;
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
    test_spend_observed(dir);

    stats_close(atomic_load(&eng.stats));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return tap_done();
}
