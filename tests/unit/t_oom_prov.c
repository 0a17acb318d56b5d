/*
 * t_oom_prov.c — allocation failures in the provider adapters (the
 * machinery and its checks: tests/unit/oom_inject.h). For each case of the
 * fixtures in tests/fixtures/providers and of tests/unit/t_oom_prov.json
 * (the same format: answers whose renderings the fixtures do not reach),
 * the adapter's inspect on the client request, then on the canned reply:
 * each stream event classified and counted for usage (frame_each),
 * stream_to_body or body_complete, usage, body_to_stream, and error_body /
 * error_event. For every N: each call returns what it returns without the
 * failure (and the same bytes), or RL_NOMEM, or its conservative answer
 * (not complete, so not stored; usage unknown; an event read as an error),
 * and inspect decides the same cache key or fails with RL_NOMEM.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/frame.h"
#include "engine/prov.h"
#include "engine/route.h"
#include "store/base/rl_log.h"
#include "tests/unit/oom_inject.h"
#include "tests/unit/tap.h"

/* A call's result that is not bytes (a flag, a count), as text. An
 * allocation that fails here makes the comparison fail, so write it
 * unarmed. */
static void done_text(run *r, rl_buf *out, const char *fmt, long long v)
{
    int was = oom.armed;
    oom.armed = 0;
    char text[64];
    snprintf(text, sizeof text, fmt, v);
    rl_buf_puts(out, text);
    oom.armed = was;
    done(r, RL_OK);
}

/* ---- adapters, from the provider fixtures ----------------------------------- */

#define MAX_HEADERS 48

typedef struct acase {
    const prov_ops *P;
    prov_request req;
    rl_header headers[MAX_HEADERS];
    char path[512];
    char query[512];
    char *body;
    size_t body_len;
    int status;
    char ctype[128];
    char *reply;
    size_t reply_len;
} acase;

static relay_config routes;

static void route_add(const char *name, upstream_type type, const char *mount)
{
    upstream_config *u = &routes.upstreams[routes.nupstreams++];
    u->name = (char *)name;
    u->type = type;
    u->base_url = (char *)"http://upstream";
    u->mount = (char *)mount;
}

/* A JSON string, an object serialised, or a list of strings joined. */
static char *text_of(const json_t *v, size_t *len)
{
    char *s = NULL;
    if (json_is_string(v)) {
        *len = json_string_length(v);
        s = malloc(*len + 1);
        if (s)
            memcpy(s, json_string_value(v), *len + 1);
    } else if (json_is_array(v)) {
        size_t i, total = 0;
        json_t *e;
        json_array_foreach(v, i, e) total += json_string_length(e);
        s = malloc(total + 1);
        *len = 0;
        json_array_foreach(v, i, e)
        {
            memcpy(s + *len, json_string_value(e), json_string_length(e));
            *len += json_string_length(e);
        }
        s[*len] = '\0';
    } else if (v && !json_is_null(v)) {
        s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
        *len = s ? strlen(s) : 0;
    } else {
        s = calloc(1, 1);
        *len = 0;
    }
    return s;
}

/* Reads one fixture case into c; 0 when usable. */
static int acase_load(acase *c, const json_t *fx)
{
    memset(c, 0, sizeof *c);
    const json_t *rq = json_object_get(fx, "request");
    const json_t *rp = json_object_get(fx, "reply");
    const char *full = json_string_value(json_object_get(rq, "path"));
    if (!rq || !rp || !full)
        return -1;
    const char *q = strchr(full, '?');
    snprintf(c->path, sizeof c->path, "%.*s", (int)(q ? q - full : (long)strlen(full)), full);
    snprintf(c->query, sizeof c->query, "%s", q ? q + 1 : "");
    route rt;
    route_match(&routes, c->path, &rt);
    if (rt.kind != ROUTE_API || !rt.endpoint)
        return -1;
    c->P = rt.prov;
    const char *key;
    json_t *v;
    size_t nh = 0;
    json_object_foreach(json_object_get(rq, "headers"), key, v)
    {
        if (nh < MAX_HEADERS && json_is_string(v))
            c->headers[nh++] = (rl_header){key, json_string_value(v)};
    }
    c->body = text_of(json_object_get(rq, "body"), &c->body_len);
    c->req = (prov_request){.endpoint = rt.endpoint,
                            .method = json_string_value(json_object_get(rq, "method")),
                            .path = rt.path,
                            .query = c->query,
                            .body = c->body,
                            .body_len = c->body_len,
                            .headers = c->headers,
                            .nheaders = nh};
    c->status = (int)json_integer_value(json_object_get(rp, "status"));
    const char *ct =
        json_string_value(json_object_get(json_object_get(rp, "headers"), "content-type"));
    snprintf(c->ctype, sizeof c->ctype, "%s", ct ? ct : "application/json");
    c->reply = text_of(json_object_get(rp, "body"), &c->reply_len);
    return c->body && c->reply ? 0 : -1;
}

static void acase_release(acase *c)
{
    free(c->body);
    free(c->reply);
}

/* frame_each's callback: each event's kind and the usage as it passes. */
typedef struct events {
    const prov_ops *P;
    rl_buf *kinds;
    prov_usage usage;
    rl_err err;
} events;

static int on_event(void *ctx, const char *event, const char *data, size_t len)
{
    events *e = ctx;
    prov_event_kind k = e->P->classify_event(event, data, len);
    if (e->err == RL_OK)
        e->err = rl_buf_puts(e->kinds, k == PROV_EVENT_END     ? "E"
                                       : k == PROV_EVENT_ERROR ? "X"
                                                               : "D");
    e->P->usage_event(&e->usage, event, data, len);
    return 0;
}

static void usage_text(run *r, rl_buf *out, rl_err err, const prov_usage *u)
{
    int was = oom.armed;
    oom.armed = 0;
    if (err == RL_OK)
        rl_buf_printf(out, "%lld %lld %lld %lld", (long long)u->input, (long long)u->output,
                      (long long)u->cached_input, (long long)u->cache_write);
    oom.armed = was;
    done(r, err);
}

static void adapter_work(scenario *sc, run *r)
{
    acase *c = sc->ctx;
    const prov_ops *P = c->P;
    char cred[512];
    r->n = 0;

    rl_buf *out = call(r, "credential");
    const char *who = P->credential(&c->req, cred, sizeof cred);
    done_text(r, out, "%lld", who ? (long long)strlen(who) : -1LL);

    prov_info info;
    memset(&info, 0, sizeof info);
    rl_buf parts, why;
    rl_buf_init(&parts, 0);
    rl_buf_init(&why, 0);
    out = call(r, "inspect");
    rl_err err = P->inspect(&c->req, &info, out, &parts, &why);
    done(r, err);
    out = call(r, "inspect: key parts and info");
    if (err == RL_OK) {
        int was = oom.armed;
        oom.armed = 0;
        rl_buf_printf(out, "%s|%s|%d %d %d %d %d %ld", parts.data ? parts.data : "", info.model,
                      info.stream, (int)info.framing, info.include_usage, info.deterministic,
                      info.stateful, info.max_ttl);
        oom.armed = was;
    }
    done(r, err);
    rl_buf_release(&parts);
    rl_buf_release(&why);
    if (err != RL_OK)
        return; /* inspect failed: the request goes no further */

    if (c->status / 100 == 2 && info.stream) {
        frame_kind fk = frame_kind_of(c->ctype);
        out = call(r, "frame_each: classify_event");
        r->kinds[r->n] = 1;
        events ev = {.P = P, .kinds = out, .usage = PROV_USAGE_UNKNOWN};
        err = frame_each(fk, c->reply, c->reply_len, on_event, &ev);
        done(r, err == RL_OK ? ev.err : err);
        out = call(r, "frame_each: usage_event");
        r->degraded[r->n] = "-1 -1 -1 -1"; /* it cannot report a failure */
        usage_text(r, out, err, &ev.usage);
        out = call(r, "usage (stream)");
        r->degraded[r->n] = "-1 -1 -1 -1";
        prov_usage u = PROV_USAGE_UNKNOWN;
        usage_text(r, out, P->usage(ENTRY_STREAM, fk, c->reply, c->reply_len, &u), &u);
        rl_buf *body = call(r, "stream_to_body");
        err = P->stream_to_body(fk, c->reply, c->reply_len, body);
        done(r, err);
        if (err != RL_OK)
            return;
        /* the body rendered back into a stream, as a stored stream's
         * assembled body would be */
        rl_buf *stream = call(r, "body_to_stream");
        done(r, P->body_to_stream(body->data, body->len, &info, stream));
    } else if (c->status / 100 == 2) {
        out = call(r, "body_complete");
        r->degraded[r->n] = "0"; /* not complete: not stored */
        done_text(r, out, "%lld", P->body_complete(c->reply, c->reply_len));
        out = call(r, "usage (body)");
        r->degraded[r->n] = "-1 -1 -1 -1";
        prov_usage u = PROV_USAGE_UNKNOWN;
        usage_text(r, out, P->usage(ENTRY_BODY, FRAME_SSE, c->reply, c->reply_len, &u), &u);
        prov_info as_stream = info;
        as_stream.stream = 1;
        out = call(r, "body_to_stream");
        done(r, P->body_to_stream(c->reply, c->reply_len, &as_stream, out));
    }
    out = call(r, "error_body");
    done(r,
         P->error_body(out, RL_UPSTREAM_UNREACHABLE, "upstream unreachable: connection refused"));
    out = call(r, "error_event (before the stream)");
    done(r, P->error_event(out, info.framing, 0, RL_UPSTREAM_CUT, "the upstream stream was cut"));
    out = call(r, "error_event (mid-stream)");
    done(r, P->error_event(out, info.framing, 1, RL_NOMEM, "out of memory"));
}

static const rl_err adapter_allowed[] = {RL_NOMEM};

/* Every call of c's work succeeds without a failure injected: a case
 * written to reach renderings does reach them. */
static int renders_whole(scenario *sc)
{
    run r;
    run_init(&r);
    sc->work(sc, &r);
    int whole = r.n > 0;
    for (int i = 0; i < r.n; i++)
        if (r.err[i] != RL_OK) {
            printf("#   %s: %s\n", r.what[i], rl_err_text(r.err[i]));
            whole = 0;
        }
    run_release(&r);
    return whole;
}

/* Sweeps each case of a file in the fixtures' format (label #1, #2, ...);
 * whole: each case must also render without a failure. */
static void test_case_file(const char *path, const char *label, int whole, int *cases)
{
    json_error_t jerr;
    json_t *all = json_load_file(path, 0, &jerr);
    if (!ok(json_is_array(all), "a fixture file loads")) {
        printf("#   %s: %s\n", path, jerr.text);
        return;
    }
    size_t i;
    json_t *fx;
    json_array_foreach(all, i, fx)
    {
        acase c;
        scenario sc = {.work = adapter_work, .allowed = adapter_allowed, .nallowed = 1, .ctx = &c};
        snprintf(sc.name, sizeof sc.name, "%s #%zu", label, i + 1);
        if (acase_load(&c, fx) != 0) {
            ok(0, sc.name);
            printf("#   the fixture case does not route to a cacheable endpoint\n");
            acase_release(&c);
            continue;
        }
        if (whole) {
            char what[200];
            snprintf(what, sizeof what, "%s (%s) renders without a failure", sc.name,
                     json_string_value(json_object_get(fx, "name")));
            ok(renders_whole(&sc), what);
        }
        sweep(&sc, 0);
        sweep(&sc, 1);
        acase_release(&c);
        ++*cases;
    }
    json_decref(all);
}

static void test_adapters(const char *dir, int *cases)
{
    static const char *const files[] = {"openai",    "azure",  "openai-compatible",
                                        "anthropic", "gemini", "ollama"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.json", dir, files[f]);
        test_case_file(path, files[f], 0, cases);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(600);
    oom_init();

    route_add("openai", UPSTREAM_TYPE_OPENAI, "");
    route_add("anthropic", UPSTREAM_TYPE_ANTHROPIC, "");
    route_add("gemini", UPSTREAM_TYPE_GEMINI, "");
    route_add("azure", UPSTREAM_TYPE_AZURE, "");
    route_add("ollama", UPSTREAM_TYPE_OLLAMA, "");
    route_add("vllm", UPSTREAM_TYPE_OPENAI_COMPATIBLE, "/vllm");
    route_add("llamacpp", UPSTREAM_TYPE_OPENAI_COMPATIBLE, "/llamacpp");

    int cases = 0;
    test_adapters("tests/fixtures/providers", &cases);
    ok(cases >= 30, "every fixture case ran");
    printf("# %d fixture cases\n", cases);
    /* Renderings the fixtures do not reach: logprobs and refusals, a
     * Responses function call, Anthropic's thinking, redacted thinking,
     * citations and tool input, Gemini's candidates, Ollama's thinking. */
    int extra = 0;
    test_case_file("tests/unit/t_oom_prov.json", "extra", 1, &extra);
    ok(extra >= 5, "every extra case ran");
    printf("# %lu log lines while failures were injected\n", log_lines);
    return tap_done();
}
