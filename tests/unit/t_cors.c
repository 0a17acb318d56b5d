/*
 * t_cors.c — CORS ([cors], engine/cors.c) with no server and no sleep.
 *
 * Part 1: [cors] allow_origins as relay.ini gives it: normalised as a
 * browser sends Origin, "*", "null", wildcards, paths and bad ports
 * refused with a reason naming the key and the origin; matching.
 *
 * Part 2: the request flow (engine_handle) with a fake upstream and a fake
 * client: a preflight is answered by Relay (204, the SDKs' headers allowed,
 * never upstream, no credential needed) for an allowed origin and refused
 * with 403 in the client's format otherwise; answers, errors, streams and
 * cache hits carry Access-Control-Allow-Origin for an allowed origin only;
 * Vary: Origin whenever [cors] lists origins; an upstream's own
 * Access-Control-* headers never reach the client; Relay's own endpoints
 * are not open to other origins.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "engine/config.h"
#include "engine/cors.h"
#include "engine/engine.h"
#include "engine/exchange.h"
#include "engine/upstream.h"
#include "store/base/rl_log.h"
#include "tests/unit/tap.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char tmp[] = "/tmp/t_cors.XXXXXX";

/* ---- part 1: the list ----------------------------------------------------- */

static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

/* Loads a relay.ini with [cors] allow_origins = value: RL_OK with the list
 * as relay-admin config shows it in got, or the error with its reason. */
static rl_err load_origins(const char *value, rl_buf *got)
{
    char text[1024];
    snprintf(text, sizeof text, "[upstream.openai]\ntype = openai\n[cors]\nallow_origins = %s\n",
             value);
    relay_config *cfg = NULL;
    rl_buf_reset(got);
    rl_err err = config_load(write_file("origins.ini", text), &cfg, got);
    if (err == RL_OK)
        config_get_text(cfg, "cors.allow_origins", got);
    config_free(cfg);
    return err;
}

static void test_parse(void)
{
    static const struct {
        const char *value, *want;
    } good[] = {
        {"", ""},
        {"   ", ""},
        {"https://app.example.com", "https://app.example.com"},
        {"HTTPS://App.Example.COM", "https://app.example.com"},
        {"https://a.example:443, http://b.example:80", "https://a.example http://b.example"},
        {"http://localhost:5173,https://a.example:8443",
         "http://localhost:5173 https://a.example:8443"},
        {"http://[::1]:8080 http://127.0.0.1:3000", "http://[::1]:8080 http://127.0.0.1:3000"},
        {"http://a.example:443", "http://a.example:443"},
        {"tauri://localhost", "tauri://localhost"},
    };
    for (size_t i = 0; i < NELEM(good); i++) {
        rl_buf got;
        rl_buf_init(&got, 0);
        char what[256];
        snprintf(what, sizeof what, "allow_origins = %s is accepted", good[i].value);
        if (!ok(load_origins(good[i].value, &got) == RL_OK, what))
            printf("#   %s\n", got.data ? got.data : "");
        snprintf(what, sizeof what, "allow_origins = %s reads as \"%s\"", good[i].value,
                 good[i].want);
        is_str(got.data ? got.data : "", good[i].want, what);
        rl_buf_release(&got);
    }
    static const struct {
        const char *value, *named, *reason;
    } bad[] = {
        {"*", "\"*\"", "wildcard would let every web page"},
        {"https://a.example *", "\"*\"", "wildcard"},
        {"null", "\"null\"", "sandboxed"},
        {"https://*.example.com", "\"https://*.example.com\"", "wildcards are not supported"},
        {"https://a.example/", "\"https://a.example/\"", "no path"},
        {"https://a.example/app", "\"https://a.example/app\"", "no path"},
        {"https://a.example?x=1", "\"https://a.example?x=1\"", "no path"},
        {"https://user@a.example", "\"https://user@a.example\"", "user name"},
        {"a.example", "\"a.example\"", "scheme://host[:port]"},
        {"https://", "\"https://\"", "expected a host"},
        {"https://a.example:0", "\"https://a.example:0\"", "port from 1 to 65535"},
        {"https://a.example:65536", "\"https://a.example:65536\"", "port from 1 to 65535"},
        {"https://a.example:", "\"https://a.example:\"", "port from 1 to 65535"},
        {"http://[zz]", "\"http://[zz]\"", "brackets"},
    };
    for (size_t i = 0; i < NELEM(bad); i++) {
        rl_buf why;
        rl_buf_init(&why, 0);
        char what[256];
        snprintf(what, sizeof what, "allow_origins = %s is refused", bad[i].value);
        is_int(load_origins(bad[i].value, &why), RL_CONFIG, what);
        const char *text = why.data ? why.data : "";
        snprintf(what, sizeof what, "the reason for %s names the key, %s and says \"%s\"",
                 bad[i].value, bad[i].named, bad[i].reason);
        if (!ok(strstr(text, "[cors] allow_origins: ") && strstr(text, bad[i].named) &&
                    strstr(text, bad[i].reason),
                what))
            printf("#   got: %s\n", text);
        rl_buf_release(&why);
    }
}

static void test_config(void)
{
    relay_config *cfg = NULL;
    rl_buf why, v;
    rl_buf_init(&why, 0);
    rl_buf_init(&v, 0);
    is_int(config_load(write_file("plain.ini", "[upstream.openai]\ntype = openai\n"), &cfg, &why),
           RL_OK, "a file without [cors] loads");
    if (cfg) {
        is_str(cfg->cors.allow_origins, "", "allow_origins defaults to none");
        is_int(cfg->cors.max_age, 600, "max_age defaults to 600 s");
        config_free(cfg);
    }
    is_int(config_load(write_file("cors.ini",
                                  "[upstream.openai]\ntype = openai\n[cors]\nallow_origins = "
                                  "https://App.example:443, http://localhost:5173\n"
                                  "max_age = 7200\n"),
                       &cfg, &why),
           RL_OK, "[cors] with two origins loads");
    if (cfg) {
        config_get_text(cfg, "cors.allow_origins", &v);
        is_str(v.data, "https://app.example http://localhost:5173",
               "relay-admin config cors.allow_origins shows them normalised");
        is_int(cfg->cors.max_age, 7200, "max_age is read");
        ok(cors_origin_allowed(cfg, "https://app.example"), "a listed origin is allowed");
        ok(cors_origin_allowed(cfg, "http://localhost:5173"), "the second one too");
        ok(!cors_origin_allowed(cfg, "http://localhost:5174"), "another port is another origin");
        ok(!cors_origin_allowed(cfg, "https://app.example.evil"), "a longer host is not a match");
        ok(!cors_origin_allowed(cfg, "https://app.exampl"), "nor a shorter one");
        ok(!cors_origin_allowed(cfg, "http://app.example"), "nor another scheme");
        ok(!cors_origin_allowed(cfg, ""), "nor an empty Origin");
        ok(!cors_origin_allowed(cfg, "https://app.example http://localhost:5173"),
           "nor the list itself");
        config_free(cfg);
    }
    rl_buf_reset(&why);
    is_int(config_load(write_file("star.ini",
                                  "[upstream.openai]\ntype = openai\n[cors]\nallow_origins = *\n"),
                       &cfg, &why),
           RL_CONFIG, "allow_origins = * is a configuration error");
    if (!ok(why.data && strstr(why.data, "[cors] allow_origins: \"*\": a wildcard"),
            "the error names the key, the value and why"))
        printf("#   got: %s\n", why.data ? why.data : "(none)");
    rl_buf_reset(&why);
    is_int(config_load(
               write_file("age.ini", "[upstream.openai]\ntype = openai\n[cors]\nmax_age = 86401\n"),
               &cfg, &why),
           RL_CONFIG, "max_age above a day is refused");
    rl_buf_release(&why);
    rl_buf_release(&v);
}

/* ---- part 2: through the engine ------------------------------------------- */

/* The fake client: every header of its one start(), in order. */
typedef struct client {
    int starts, status;
    size_t nh;
    char names[160][64], values[160][4608]; /* room for a whole allowed list */
    rl_buf body;
} client;

static int sink_start(void *ctx, int status, const rl_header *h, size_t n)
{
    client *c = ctx;
    if (c->starts++)
        return 0;
    c->status = status;
    for (size_t i = 0; i < n && c->nh < NELEM(c->names); i++, c->nh++) {
        snprintf(c->names[c->nh], sizeof c->names[0], "%s", h[i].name);
        snprintf(c->values[c->nh], sizeof c->values[0], "%s", h[i].value);
    }
    return 0;
}

static int sink_write(void *ctx, const void *p, size_t n)
{
    client *c = ctx;
    return rl_buf_append(&c->body, p, n) == RL_OK ? 0 : -1;
}

static int sink_flush(void *ctx)
{
    (void)ctx;
    return 0;
}

/* The value of header name (any case); NULL when absent, "(twice)" when it
 * came more than once. */
static const char *header(const client *c, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < c->nh; i++)
        if (strcasecmp(c->names[i], name) == 0) {
            if (v)
                return "(twice)";
            v = c->values[i];
        }
    return v;
}

/* What the fake upstream answers, and what it saw. */
static struct {
    int calls;
    int stream;
    char method[16];
} up;

static rl_err fake_perform(upstream_client *uc, const upstream_request *req,
                           const upstream_handler *h, int *got_head)
{
    (void)uc;
    up.calls++;
    snprintf(up.method, sizeof up.method, "%s", req->method);
    /* An upstream with a CORS policy of its own (Relay's must win). */
    rl_header head[] = {
        {"content-type", up.stream ? "text/event-stream" : "application/json"},
        {"access-control-allow-origin", "*"},
        {"access-control-expose-headers", "x-upstream-secret"},
        {"x-request-id", "req_fake"},
    };
    *got_head = 1;
    if (h->on_head(h->ctx, 200, head, NELEM(head)) != 0)
        return RL_CLIENT_GONE;
    static const char body[] =
        "{\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion\",\"created\":1,\"model\":"
        "\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,"
        "\"completion_tokens\":1,\"total_tokens\":2}}";
    static const char events[] =
        "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1,"
        "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
        "\"content\":\"hi\"},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1,"
        "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
        "\"stop\"}]}\n\ndata: [DONE]\n\n";
    const char *p = up.stream ? events : body;
    return h->on_data(h->ctx, p, strlen(p)) == 0 ? RL_OK : RL_CLIENT_GONE;
}

typedef struct relay {
    relay_config *cfg;
    engine *e;
    engine_worker *w;
} relay;

static int relay_start(relay *r, const char *name, const char *cors)
{
    memset(r, 0, sizeof *r);
    char dir[256], text[2048];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    mkdir(dir, 0700);
    snprintf(text, sizeof text,
             "[store]\nhome = %s/store\nkey_file = %s/relay.key\n"
             "[fcgi]\nworkers = 1\nthreads = 4\n"
             "[upstream.openai]\ntype = openai\nbase_url = http://127.0.0.1:9\n"
             "[upstream.anthropic]\ntype = anthropic\nbase_url = http://127.0.0.1:9\n"
             "%s",
             dir, dir, cors);
    char ini[300];
    snprintf(ini, sizeof ini, "%s/relay.ini", name);
    rl_buf why;
    rl_buf_init(&why, 0);
    rl_err err = config_load(write_file(ini, text), &r->cfg, &why);
    if (!ok(err == RL_OK, "relay.ini loads"))
        printf("#   %s\n", why.data ? why.data : "");
    rl_buf_release(&why);
    if (err != RL_OK)
        return -1;
    if (!ok(engine_new(r->cfg, &r->e) == RL_OK && (r->w = engine_worker_new(r->e)) != NULL,
            "the engine starts"))
        return -1;
    r->w->perform = fake_perform;
    ok(atomic_load(&r->e->store) != NULL, "its store opens");
    return 0;
}

static void relay_stop(relay *r)
{
    engine_worker_free(r->w);
    engine_free(r->e);
    if (r->cfg) {
        store_options so;
        config_store_options(r->cfg, &so);
        store_remove(&so); /* its SysV segments outlive the process */
        config_free(r->cfg);
    }
}

/* Hands a request to engine_handle as the front would (header names
 * lower-case); headers: "name", "value", ..., NULL. */
static void handle(const relay *r, const char *method, const char *path, const char *body,
                   client *c, const char *const *headers)
{
    memset(c, 0, sizeof *c);
    rl_buf_init(&c->body, 0);
    rl_pool *pool = rl_pool_new();
    rl_header h[32];
    size_t n = 0;
    for (; headers && headers[0] && n < NELEM(h); headers += 2)
        h[n++] = (rl_header){headers[0], headers[1]};
    engine_request req = {
        .pool = pool,
        .id = "t_cors",
        .method = method,
        .path = path,
        .query = "",
        .headers = h,
        .nheaders = n,
        .body = body ? body : "",
        .body_len = body ? strlen(body) : 0,
    };
    engine_sink sink = {c, sink_start, sink_write, sink_flush, NULL, NULL};
    engine_handle(r->w, &req, &sink);
    rl_pool_free(pool);
}

#define APP "https://app.example"
#define EVIL "https://evil.example"
#define CHAT                                                                                       \
    "{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"messages\":[{\"role\":\"user\","               \
    "\"content\":\"%s\"}]%s}"

static void check_no_cors(const client *c, const char *what)
{
    char w[256];
    snprintf(w, sizeof w, "%s: no Access-Control-Allow-Origin", what);
    is_str(header(c, "access-control-allow-origin"), NULL, w);
    snprintf(w, sizeof w, "%s: no Access-Control-Expose-Headers (the upstream's is dropped)", what);
    is_str(header(c, "access-control-expose-headers"), NULL, w);
}

static void check_cors(const client *c, const char *what)
{
    char w[256];
    snprintf(w, sizeof w, "%s: Access-Control-Allow-Origin is the page's origin, only", what);
    is_str(header(c, "access-control-allow-origin"), APP, w);
    const char *exposed = header(c, "access-control-expose-headers");
    snprintf(w, sizeof w, "%s: X-Cache, X-Relay-Key, Retry-After, X-Relay-Budget-Remaining exposed",
             what);
    if (!ok(exposed && strstr(exposed, "X-Cache") && strstr(exposed, "X-Relay-Key") &&
                strstr(exposed, "Retry-After") && strstr(exposed, "X-Relay-Budget-Remaining") &&
                !strstr(exposed, "x-upstream-secret"),
            w))
        printf("#   got: %s\n", exposed ? exposed : "(none)");
    snprintf(w, sizeof w, "%s: Access-Control-Allow-Credentials is never sent", what);
    is_str(header(c, "access-control-allow-credentials"), NULL, w);
}

static void test_preflights(const relay *r)
{
    static client c; /* large: not on the stack */
    static const char *const asked[] = {
        "origin",
        APP,
        "access-control-request-method",
        "POST",
        "access-control-request-headers",
        "authorization,content-type, X-Stainless-OS ,x-stainless-retry-count,openai-project,"
        "anthropic-version,anthropic-dangerous-direct-browser-access,x-api-key,x-goog-api-key,"
        "x-goog-api-client,x-relay-ttl,cache-control,x-custom-thing,bad name",
        NULL,
    };
    up.calls = 0;
    handle(r, "OPTIONS", "/v1/chat/completions", NULL, &c, asked);
    is_int(c.status, 204, "preflight from an allowed origin, no credential: 204");
    is_int(up.calls, 0, "a preflight never reaches the upstream");
    is_str(header(&c, "access-control-allow-origin"), APP, "it allows the page's origin");
    is_str(header(&c, "access-control-allow-methods"), "GET, POST, OPTIONS",
           "it allows GET, POST and OPTIONS");
    is_str(header(&c, "access-control-allow-headers"),
           "authorization, content-type, x-stainless-os, x-stainless-retry-count, openai-project, "
           "anthropic-version, anthropic-dangerous-direct-browser-access, x-api-key, "
           "x-goog-api-key, x-goog-api-client, x-relay-ttl, cache-control",
           "it allows the SDKs' and Relay's headers asked for, not others");
    is_str(header(&c, "access-control-max-age"), "600", "Access-Control-Max-Age is [cors] max_age");
    is_str(header(&c, "access-control-allow-credentials"), NULL, "never Allow-Credentials");
    ok(header(&c, "vary") && strstr(header(&c, "vary"), "Origin"),
       "the preflight varies on Origin");
    is_int(c.body.len, 0, "a 204 has no body");
    rl_buf_release(&c.body);

    static const char *const evil[] = {"origin",
                                       EVIL,
                                       "access-control-request-method",
                                       "POST",
                                       "access-control-request-headers",
                                       "authorization",
                                       NULL};
    handle(r, "OPTIONS", "/v1/chat/completions", NULL, &c, evil);
    is_int(c.status, 403, "preflight from an origin not listed: 403");
    is_int(up.calls, 0, "it never reaches the upstream");
    check_no_cors(&c, "refused preflight");
    ok(c.body.data && strstr(c.body.data, "{\"error\":{") &&
           strstr(c.body.data, "https://evil.example is not in this Relay's [cors] allow_origins"),
       "it says why in OpenAI's shape");
    rl_buf_release(&c.body);

    handle(r, "OPTIONS", "/v1/messages", NULL, &c, evil);
    is_int(c.status, 403, "refused preflight on /v1/messages: 403");
    ok(c.body.data && strstr(c.body.data, "\"type\":\"error\""), "in Anthropic's shape");
    rl_buf_release(&c.body);

    /* Hostile lists: long, with names too long to be headers, with bytes
     * that are not a header name's, and empty items. */
    rl_buf many;
    rl_buf_init(&many, 0);
    rl_buf_puts(&many, ",, x-stainless-");
    for (int i = 0; i < 300; i++)
        rl_buf_puts(&many, "aaaa");
    rl_buf_puts(&many, ", x-relay-\r\nset-cookie: a, \"x-relay-ttl\", ");
    for (int i = 0; i < 2000; i++)
        rl_buf_printf(&many, "x-stainless-h%d,", i);
    const char *hostile[] = {
        "origin",  APP, "access-control-request-method", "POST", "access-control-request-headers",
        many.data, NULL};
    handle(r, "OPTIONS", "/v1/chat/completions", NULL, &c, hostile);
    is_int(c.status, 204, "a preflight asking for 2,000 headers and junk: 204");
    const char *list = header(&c, "access-control-allow-headers");
    ok(list && strlen(list) <= 4096 && strlen(list) > 4000,
       "the allowed list fills up to its cap of 4096 bytes, not beyond");
    ok(list && strncmp(list, "x-stainless-h0, x-stainless-h1, ", 32) == 0,
       "junk and over-long names are left out");
    size_t len = list ? strlen(list) : 0;
    ok(len > 2 && list[len - 1] != ' ' && list[len - 1] != ',' &&
           strspn(list, "abcdefghijklmnopqrstuvwxyz0123456789-, ") == len,
       "whole names only, never one cut short");
    rl_buf_release(&many);
    rl_buf_release(&c.body);

    handle(r, "OPTIONS", "/relay/admin/api/stats", NULL, &c, asked);
    is_int(c.status, 403, "preflight to Relay's admin API, allowed origin: 403");
    check_no_cors(&c, "admin API preflight");
    ok(c.body.data && strstr(c.body.data, "Relay's own endpoints"), "it says why");
    rl_buf_release(&c.body);
    is_int(up.calls, 0, "no preflight reached the upstream");
}

static void test_answers(const relay *r)
{
    static client c; /* large: not on the stack */
    char body[512];
    snprintf(body, sizeof body, CHAT, "cors answer", "");
    static const char *const from_app[] = {
        "origin",           APP, "authorization", "Bearer sk-test-a", "content-type",
        "application/json", NULL};
    up.calls = 0;
    up.stream = 0;
    handle(r, "POST", "/v1/chat/completions", body, &c, from_app);
    is_int(c.status, 200, "a request from an allowed origin is answered");
    is_int(up.calls, 1, "by the upstream");
    is_str(header(&c, "x-cache"), "MISS", "a miss");
    check_cors(&c, "answer");
    is_str(header(&c, "vary"), "Origin", "Vary: Origin");
    is_str(header(&c, "x-request-id"), "req_fake", "the upstream's other headers pass");
    rl_buf_release(&c.body);

    handle(r, "POST", "/v1/chat/completions", body, &c, from_app);
    is_str(header(&c, "x-cache"), "HIT", "the same request again is a hit");
    is_int(up.calls, 1, "not sent upstream");
    check_cors(&c, "cache hit");
    rl_buf_release(&c.body);

    static const char *const from_evil[] = {
        "origin",           EVIL, "authorization", "Bearer sk-test-a", "content-type",
        "application/json", NULL};
    handle(r, "POST", "/v1/chat/completions", body, &c, from_evil);
    is_int(c.status, 200,
           "a request from an origin not listed is still served (the browser "
           "keeps the answer from its page)");
    check_no_cors(&c, "answer to another origin");
    is_str(header(&c, "vary"), "Origin", "Vary: Origin there too");
    rl_buf_release(&c.body);

    static const char *const server_side[] = {"authorization", "Bearer sk-test-a", NULL};
    snprintf(body, sizeof body, CHAT, "cors server side", "");
    handle(r, "POST", "/v1/chat/completions", body, &c, server_side);
    is_int(c.status, 200, "a request without Origin is served");
    check_no_cors(&c, "answer without Origin");
    is_str(header(&c, "vary"), "Origin", "with Vary: Origin (the answer depends on it)");
    rl_buf_release(&c.body);

    static const char *const no_key[] = {"origin", APP, NULL};
    handle(r, "POST", "/v1/chat/completions", body, &c, no_key);
    is_int(c.status, 401, "no credential from an allowed origin: 401");
    check_cors(&c, "401");
    rl_buf_release(&c.body);

    handle(r, "POST", "/v1/nothing-here/x/../y", body, &c, from_app);
    is_int(c.status, 400, "a refused path from an allowed origin: 400");
    check_cors(&c, "400");
    rl_buf_release(&c.body);

    handle(r, "GET", "/nowhere", NULL, &c, from_app);
    is_int(c.status, 404, "an unknown path from an allowed origin: 404");
    check_cors(&c, "404");
    rl_buf_release(&c.body);

    up.stream = 1;
    snprintf(body, sizeof body, CHAT, "cors stream", ",\"stream\":true");
    handle(r, "POST", "/v1/chat/completions", body, &c, from_app);
    is_int(c.status, 200, "a stream to an allowed origin");
    ok(header(&c, "content-type") && strstr(header(&c, "content-type"), "text/event-stream"),
       "is a stream");
    check_cors(&c, "stream");
    ok(c.body.data && strstr(c.body.data, "data: [DONE]"), "whole");
    rl_buf_release(&c.body);
    up.stream = 0;

    handle(r, "GET", "/relay/health", NULL, &c, from_app);
    is_int(c.status, 200, "/relay/health answers");
    check_no_cors(&c, "/relay/health (Relay's own endpoint)");
    is_str(header(&c, "vary"), NULL, "without Vary: Origin");
    rl_buf_release(&c.body);
}

/* With no [cors]: preflights refused, naming the key; answers as before,
 * minus the upstream's Access-Control-* headers. */
static void test_off(const relay *r)
{
    static client c; /* large: not on the stack */
    static const char *const asked[] = {"origin", APP, "access-control-request-method", "POST",
                                        NULL};
    up.calls = 0;
    handle(r, "OPTIONS", "/v1/chat/completions", NULL, &c, asked);
    is_int(c.status, 403, "no [cors]: a preflight gets 403");
    check_no_cors(&c, "no [cors], preflight");
    ok(c.body.data && strstr(c.body.data, "[cors] allow_origins is empty") &&
           strstr(c.body.data, "Add https://app.example to it"),
       "naming the key to set");
    rl_buf_release(&c.body);
    char body[512];
    snprintf(body, sizeof body, CHAT, "cors off", "");
    static const char *const from_app[] = {"origin", APP, "authorization", "Bearer sk-test-a",
                                           NULL};
    handle(r, "POST", "/v1/chat/completions", body, &c, from_app);
    is_int(c.status, 200, "no [cors]: a request with Origin is served");
    is_int(up.calls, 1, "once, upstream");
    check_no_cors(&c, "no [cors], answer");
    is_str(header(&c, "vary"), NULL, "no Vary: Origin (nothing depends on it)");
    rl_buf_release(&c.body);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    rl_log_set_level(RL_LOG_ERROR);
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_parse();
    test_config();

    relay r;
    if (relay_start(&r, "on",
                    "[cors]\nallow_origins = https://app.example, http://localhost:5173\n") == 0) {
        test_preflights(&r);
        test_answers(&r);
    }
    relay_stop(&r);
    if (relay_start(&r, "off", "") == 0)
        test_off(&r);
    relay_stop(&r);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
