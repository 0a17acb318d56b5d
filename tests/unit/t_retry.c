/*
 * t_retry.c — engine/retry.c: which outcomes retry, Retry-After (seconds
 * and HTTP dates, the cap), the full-jitter backoff's bounds with an
 * injected random source, the count and the total time bound, the fallback
 * checks of config_load; then through the engine (engine_harness.h) with a
 * clock that never sleeps: 503, 503, 200 is one 200 after 3 attempts with
 * nothing of the failures stored, and a fallback when the route's upstream
 * cannot be reached.
 */
#include <stdio.h>
#include <string.h>

#include "engine/retry.h"
#include "tests/unit/engine_harness.h"

/* ---- the pure parts ---------------------------------------------------- */

static void test_classify(void)
{
    double hint;
    is_int(retry_classify(RL_UPSTREAM_UNREACHABLE, 0, 0, NULL, 10, 0, &hint), RETRY_RETRYABLE,
           "no connection: retried");
    is_int(retry_classify(RL_UPSTREAM_TIMEOUT, 0, 0, NULL, 10, 0, &hint), RETRY_FINAL,
           "a timeout: not retried (it took the client's time already)");
    is_int(retry_classify(RL_CLIENT_GONE, 1, 503, NULL, 10, 0, &hint), RETRY_FINAL,
           "the client left: not retried");
    static const struct {
        int status;
        retry_verdict want;
    } statuses[] = {{200, RETRY_FINAL},     {400, RETRY_FINAL},     {401, RETRY_FINAL},
                    {404, RETRY_FINAL},     {500, RETRY_FINAL},     {501, RETRY_FINAL},
                    {502, RETRY_RETRYABLE}, {503, RETRY_RETRYABLE}, {504, RETRY_RETRYABLE},
                    {529, RETRY_FINAL},     {429, RETRY_FINAL}};
    for (size_t i = 0; i < NELEM(statuses); i++) {
        char what[64];
        snprintf(what, sizeof what, "status %d without Retry-After", statuses[i].status);
        is_int(retry_classify(RL_OK, 1, statuses[i].status, NULL, 10, 0, &hint), statuses[i].want,
               what);
    }
    is_int(retry_classify(RL_OK, 1, 429, "1", 10, 0, &hint), RETRY_RETRYABLE,
           "429 Retry-After: 1: retried");
    ok(hint == 1.0, "... after the second it asked for");
    is_int(retry_classify(RL_OK, 1, 429, "10", 10, 0, &hint), RETRY_RETRYABLE,
           "429 Retry-After at the cap: retried");
    is_int(retry_classify(RL_OK, 1, 429, "120", 10, 0, &hint), RETRY_FINAL,
           "429 Retry-After: 120 over the cap: passed on");
    is_int(retry_classify(RL_OK, 1, 503, "120", 10, 0, &hint), RETRY_RETRYABLE,
           "503 with a long Retry-After: retried with backoff");
    ok(hint < 0, "... not after the wait it asked for");
}

static void test_retry_after(void)
{
    /* 1994-11-06 08:49:37 UTC */
    const uint64_t t = 784111777;
    is_int(retry_after_seconds(NULL, t), -1, "absent");
    is_int(retry_after_seconds("0", t), 0, "0 s");
    is_int(retry_after_seconds(" 7 ", t), 7, "7 s, blanks around");
    is_int(retry_after_seconds("7s", t), -1, "junk after the digits");
    is_int(retry_after_seconds("-3", t), -1, "negative");
    is_int(retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", t), 0, "a date now");
    is_int(retry_after_seconds("Sun, 06 Nov 1994 08:50:07 GMT", t), 30, "a date 30 s ahead");
    is_int(retry_after_seconds("Sun, 06 Nov 1994 08:00:00 GMT", t), 0, "a date in the past");
    is_int(retry_after_seconds("Sun, 06 Nov 1994 08:50:07", t), -1, "a date without GMT");
    is_int(retry_after_seconds("tomorrow", t), -1, "neither");
    double hint;
    is_int(retry_classify(RL_OK, 1, 429, "Sun, 06 Nov 1994 08:49:39 GMT", 10, t, &hint),
           RETRY_RETRYABLE, "429 with a date 2 s ahead: retried");
    ok(hint == 2.0, "... after 2 s");
    is_int(retry_classify(RL_OK, 1, 429, "Sun, 06 Nov 1994 09:49:37 GMT", 10, t, &hint),
           RETRY_FINAL, "429 with a date an hour ahead: passed on");
}

static void test_backoff(void)
{
    ok(retry_backoff(0, 10, 0) == 0, "rnd 0: no wait");
    ok(retry_backoff(0, 10, 0.999999) < RETRY_BASE_SECONDS, "first: below the base");
    ok(retry_backoff(0, 10, 0.5) == RETRY_BASE_SECONDS / 2, "first: rnd times the base");
    ok(retry_backoff(3, 10, 0.5) == RETRY_BASE_SECONDS * 8 / 2, "fourth: rnd times base * 2^3");
    ok(retry_backoff(30, 10, 0.5) == 5, "late: rnd times the cap");
    ok(retry_backoff(2, 0.5, 0.5) == 0.25, "a cap below base * 2^n bounds it");
    /* Full jitter covers [0, bound): the spread, not one point. */
    double lo = 1e9, hi = 0;
    for (int i = 0; i < 100; i++) {
        double w = retry_backoff(2, 10, i / 100.0);
        lo = w < lo ? w : lo;
        hi = w > hi ? w : hi;
    }
    ok(lo == 0 && hi > 0.95 && hi < 1.0, "attempt 2 spreads over [0, 1 s)");
}

static void test_plan(void)
{
    upstream_config up = {.retries = 2, .retry_max_wait = 10};
    retry_plan p;
    double wait;
    retry_plan_start(&p, 100);
    ok(retry_next(&p, &up, 100.1, -1, 0.5, &wait) == 1 && wait == RETRY_BASE_SECONDS / 2,
       "first retry after the jittered backoff");
    ok(retry_next(&p, &up, 101, -1, 0.5, &wait) == 1 && wait == RETRY_BASE_SECONDS,
       "second after twice the bound");
    ok(retry_next(&p, &up, 102, -1, 0.5, &wait) == 0, "no third: retries = 2");
    retry_plan_start(&p, 100);
    ok(retry_next(&p, &up, 105, 6, 0.5, &wait) == 0,
       "a wait that would end past retry_max_wait after the first attempt: none");
    ok(retry_next(&p, &up, 105, 5, 0.5, &wait) == 1 && wait == 5, "one that ends at it: taken");
    up.retries = 0;
    retry_plan_start(&p, 100);
    ok(retry_next(&p, &up, 100, -1, 0.5, &wait) == 0, "retries = 0: never");
}

/* ---- config ------------------------------------------------------------ */

static void expect_config(const char *tmp, const char *text, const char *want_why, const char *what)
{
    char path[256];
    snprintf(path, sizeof path, "%s/fallback.ini", tmp);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    rl_err err = config_load(path, &cfg, &why);
    if (!want_why)
        ok(err == RL_OK, what);
    else if (!ok(err == RL_CONFIG && why.data && strstr(why.data, want_why), what))
        printf("#   got %s: %s\n", rl_err_text(err), why.data ? why.data : "");
    config_free(cfg);
    rl_buf_release(&why);
}

static void test_config(const char *tmp)
{
    expect_config(tmp,
                  "[upstream.a]\nfallback = b\n[upstream.b]\ntype = openai-compatible\n"
                  "base_url = http://127.0.0.1:1\n",
                  NULL, "config: a fallback of the same wire format loads");
    expect_config(tmp, "[upstream.a]\nfallback = nope\n", "there is no [upstream.nope]",
                  "config: an unknown fallback is refused");
    expect_config(tmp, "[upstream.a]\nfallback = c\n[upstream.c]\ntype = anthropic\n",
                  "a fallback must take the same requests",
                  "config: a fallback of another wire format is refused");
    expect_config(tmp, "[upstream.a]\nfallback = a\n", "loops",
                  "config: a self-fallback is refused");
    expect_config(tmp, "[upstream.a]\nfallback = b\n[upstream.b]\nmount = /b\nfallback = a\n",
                  "loops", "config: a cycle is refused");
    expect_config(tmp, "[upstream.a]\nretries = 11\n", "retries",
                  "config: retries beyond 10 are refused");
}

/* ---- through the engine ------------------------------------------------ */

/* A clock that never sleeps: it adds the waits to its own time. */
typedef struct test_clock {
    double t;
    int sleeps;
    double slept;
} test_clock;

static double tc_now(void *ctx)
{
    return ((test_clock *)ctx)->t;
}

static double tc_random(void *ctx)
{
    (void)ctx;
    return 0.5;
}

static void tc_sleep(void *ctx, double s)
{
    test_clock *c = ctx;
    c->t += s;
    c->slept += s;
    c->sleeps++;
}

/* The first `failures` calls answer with failing (NULL: no connection),
 * then the reply of fake_reset; urls[] records each call's URL. */
static const json_t *failing;
static int failures;
static char urls[8][128];

static rl_err seq_perform(upstream_client *c, const upstream_request *req,
                          const upstream_handler *h, int *got_head)
{
    int n = fake.calls;
    if (n < (int)NELEM(urls))
        snprintf(urls[n], sizeof urls[n], "%s", req->url);
    if (n < failures) {
        const json_t *keep = fake.reply;
        fake.reply = failing;
        rl_err err = fake_perform(c, req, h, got_head);
        fake.reply = keep;
        return err;
    }
    return fake_perform(c, req, h, got_head);
}

#define CHAT_OK                                                                                    \
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-"      \
    "mini\","                                                                                      \
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"           \
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,"         \
    "\"total_tokens\":4}}"
#define CHAT_REQ                                                                                   \
    "{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":"   \
    "\"%s\"}]}"

static void send_chat(const relay *r, const char *marker, client *c)
{
    char body[512];
    snprintf(body, sizeof body, CHAT_REQ, marker);
    json_t *h = json_pack("{s:s,s:s}", "authorization", "Bearer sk-test-retry", "content-type",
                          "application/json");
    client_init(c, 0);
    handle(r, "POST", "/v1/chat/completions", h, body, strlen(body), c);
    json_decref(h);
}

static const char *hdr(const client *c, const char *name)
{
    return json_string_value(json_object_get(c->headers, name));
}

static void test_engine(const char *tmp)
{
    char dir[64];
    snprintf(dir, sizeof dir, "%.40s/engine", tmp);
    json_t *ups = json_pack("[{s:s,s:s,s:s,s:i}]", "name", "spare", "type", "openai-compatible",
                            "mount", "/spare", "retries", 0);
    json_t *ini = json_pack("{s:{s:i,s:i,s:s}}", "upstream.openai", "retries", 2, "retry_max_wait",
                            10, "fallback", "spare");
    relay r;
    if (relay_start(&r, dir, ups, ini, "retry") != 0) {
        json_decref(ups);
        json_decref(ini);
        return;
    }
    test_clock tc = {1000, 0, 0};
    retry_clock clk = {&tc, tc_now, tc_random, tc_sleep};
    r.w->retry_clock = &clk;
    r.w->perform = seq_perform;

    json_t *ok_reply = json_pack("{s:i,s:{s:s},s:s}", "status", 200, "headers", "content-type",
                                 "application/json", "body", CHAT_OK);
    json_t *busy =
        json_pack("{s:i,s:{s:s},s:s}", "status", 503, "headers", "content-type", "application/json",
                  "body", "{\"error\":{\"message\":\"overloaded (must not be stored)\"}}");

    /* 503, 503, 200: one 200 after 3 attempts; the repeat is a HIT of the
     * 200, nothing of the 503s. */
    fake_reset(ok_reply, FAKE_REPLY);
    failing = busy;
    failures = 2;
    client c;
    send_chat(&r, "retry-503-503-200", &c);
    is_int(fake.calls, 3, "503, 503, 200: 3 upstream calls");
    is_int(c.starts, 1, "... one answer");
    is_int(c.status, 200, "... a 200");
    is_bytes(c.body.data, c.body.len, CHAT_OK, strlen(CHAT_OK), "... with the 200's body only");
    is_str(hdr(&c, "x-cache"), "MISS", "... a MISS");
    is_str(hdr(&c, "x-relay-upstream"), "openai", "... served by the route's upstream");
    is_int(tc.sleeps, 2, "... two backoffs");
    ok(tc.slept == RETRY_BASE_SECONDS / 2 + RETRY_BASE_SECONDS, "... of the jittered bounds");
    client_release(&c);
    fake_reset(NULL, FAKE_REPLY);
    failures = 0;
    send_chat(&r, "retry-503-503-200", &c);
    is_int(fake.calls, 0, "the repeat: no upstream call");
    is_str(hdr(&c, "x-cache"), "HIT", "... a HIT");
    is_bytes(c.body.data, c.body.len, CHAT_OK, strlen(CHAT_OK), "... of the 200");
    client_release(&c);

    /* Three 503s: retries exhausted, the fallback answers (its own URL),
     * stored under the client's request: the repeat is a HIT. */
    fake_reset(ok_reply, FAKE_REPLY);
    failures = 3;
    send_chat(&r, "retry-fallback", &c);
    is_int(fake.calls, 4, "fallback: 3 calls to the route's upstream, 1 to the fallback");
    is_int(c.status, 200, "... a 200");
    is_str(hdr(&c, "x-relay-upstream"), "spare", "... X-Relay-Upstream: spare");
    ok(strstr(urls[0], "/v1/chat/completions") != NULL && strcmp(urls[0], urls[3]) == 0,
       "... the same URL (both point at the fake) and path");
    client_release(&c);
    fake_reset(NULL, FAKE_REPLY);
    failures = 0;
    send_chat(&r, "retry-fallback", &c);
    is_int(fake.calls, 0, "fallback, repeat: no upstream call");
    is_str(hdr(&c, "x-cache"), "HIT", "... a HIT");
    is_str(hdr(&c, "x-relay-upstream"), "openai", "... named by the route's upstream");
    client_release(&c);

    /* No connection anywhere: 502 in OpenAI's format after 3 + 1 calls;
     * nothing stored. */
    fake_reset(ok_reply, FAKE_REPLY);
    failing = NULL;
    failures = 4;
    send_chat(&r, "retry-down", &c);
    is_int(fake.calls, 4, "all down: 3 + 1 calls");
    is_int(c.status, 502, "... a 502");
    ok(c.body.data && strstr(c.body.data, "\"error\""), "... in OpenAI's format");
    client_release(&c);

    /* A 400 is the client's: passed on at once. */
    json_t *bad = json_pack("{s:i,s:{s:s},s:s}", "status", 400, "headers", "content-type",
                            "application/json", "body", "{\"error\":{\"message\":\"bad\"}}");
    fake_reset(bad, FAKE_REPLY);
    failures = 0;
    tc.sleeps = 0;
    send_chat(&r, "retry-400", &c);
    is_int(fake.calls, 1, "400: one call");
    is_int(c.status, 400, "... passed on");
    is_int(tc.sleeps, 0, "... no backoff");
    client_release(&c);

    json_decref(bad);
    json_decref(ok_reply);
    json_decref(busy);
    json_decref(ups);
    json_decref(ini);
    relay_stop(&r);
}

/* While the route's breaker is open, its fallback takes the call at once
 * (the route is not called) and its answer is served. */
static void test_breaker_fallback(const char *tmp)
{
    char dir[64];
    snprintf(dir, sizeof dir, "%.40s/breaker", tmp);
    json_t *ups = json_pack("[{s:s,s:s,s:s,s:i,s:i}]", "name", "spare", "type", "openai-compatible",
                            "mount", "/spare", "retries", 0, "breaker_failures", 1);
    json_t *ini = json_pack("{s:{s:i,s:s,s:i}}", "upstream.openai", "retries", 0, "fallback",
                            "spare", "breaker_failures", 1);
    relay r;
    if (relay_start(&r, dir, ups, ini, "breaker") != 0) {
        json_decref(ups);
        json_decref(ini);
        return;
    }
    test_clock tc = {1000, 0, 0};
    retry_clock clk = {&tc, tc_now, tc_random, tc_sleep};
    r.w->retry_clock = &clk;
    r.w->perform = seq_perform;
    json_t *ok_reply = json_pack("{s:i,s:{s:s},s:s}", "status", 200, "headers", "content-type",
                                 "application/json", "body", CHAT_OK);
    json_t *broken = json_pack("{s:i,s:{s:s},s:s}", "status", 500, "headers", "content-type",
                               "application/json", "body", "{\"error\":{\"message\":\"boom\"}}");
    client c;

    /* A 500 (neither retried nor a reason to fall back: the upstream
     * answered) opens the route's breaker (breaker_failures = 1). */
    fake_reset(ok_reply, FAKE_REPLY);
    failing = broken;
    failures = 1;
    send_chat(&r, "breaker-open-1", &c);
    is_int(fake.calls, 1, "a 500 on the route: one call");
    is_int(c.status, 500, "... passed on");
    client_release(&c);

    /* Open: the fallback alone is called. */
    fake_reset(ok_reply, FAKE_REPLY);
    failures = 0;
    send_chat(&r, "breaker-open-2", &c);
    is_int(fake.calls, 1, "breaker open: one call");
    ok(strstr(urls[0], "/v1/chat/completions") != NULL, "... of the chat path");
    is_int(c.status, 200, "... a 200");
    is_str(hdr(&c, "x-relay-upstream"), "spare", "... from the fallback");
    client_release(&c);

    json_decref(ok_reply);
    json_decref(broken);
    json_decref(ups);
    json_decref(ini);
    relay_stop(&r);
}

int main(void)
{
    char tmp[] = "/tmp/t_retry.XXXXXX";
    if (harness_begin(tmp) != 0)
        return 1;
    test_classify();
    test_retry_after();
    test_backoff();
    test_plan();
    test_config(tmp);
    test_engine(tmp);
    test_breaker_fallback(tmp);
    return harness_end(tmp);
}
