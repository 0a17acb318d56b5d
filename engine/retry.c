#include "engine/retry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the system's clock ------------------------------------------------ */

static double system_now(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: jitter needs spread, not secrecy; one state per thread so
 * request threads neither share nor lock it. */
static double system_random(void *ctx)
{
    (void)ctx;
    static _Thread_local uint64_t s;
    if (!s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&s;
        s |= 1;
    }
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return (double)((s * 2685821657736338717ULL) >> 11) / 9007199254740992.0; /* 2^53 */
}

static void system_sleep(void *ctx, double seconds)
{
    (void)ctx;
    if (seconds <= 0)
        return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

const retry_clock retry_system_clock = {NULL, system_now, system_random, system_sleep};

/* ---- what retries ------------------------------------------------------ */

long retry_after_seconds(const char *value, uint64_t now_unix)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (errno || *end || v < 0)
            return -1;
        return v > 86400L * 365 ? 86400L * 365 : (long)v;
    }
    /* RFC 9110 asks recipients to read IMF-fixdate; the obsolete forms are
     * not sent by the APIs Relay fronts. strptime reads the C locale's day
     * and month names, which are the HTTP ones (the server never calls
     * setlocale). */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end)
        return -1;
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end)
        return -1;
    time_t at = timegm(&tm);
    if (at == (time_t)-1)
        return -1;
    return (uint64_t)at > now_unix ? (long)((uint64_t)at - now_unix) : 0;
}

/* Statuses an upstream sends for a failure on its side that a moment may
 * mend: a bad gateway, unavailable (overloaded, deploying), a gateway
 * timeout. 500 is not among them: it is as often the request's fault
 * (a body the model chokes on) and would be paid for again. */
static const int retryable_statuses[] = {502, 503, 504};

retry_verdict retry_classify(rl_err err, int got_head, int status, const char *retry_after,
                             long max_wait, uint64_t now_unix, double *hint)
{
    *hint = -1;
    if (!got_head)
        return err == RL_UPSTREAM_UNREACHABLE ? RETRY_RETRYABLE : RETRY_FINAL;
    if (err != RL_OK && err != RL_UPSTREAM_CUT)
        return RETRY_FINAL; /* the client left, a timeout, a protocol error */
    long after = retry_after_seconds(retry_after, now_unix);
    if (status == 429) {
        /* Without a Retry-After the limit's reset is unknown: passed on. */
        if (after < 0 || after > max_wait)
            return RETRY_FINAL;
        *hint = (double)after;
        return RETRY_RETRYABLE;
    }
    for (size_t i = 0; i < sizeof retryable_statuses / sizeof retryable_statuses[0]; i++)
        if (status == retryable_statuses[i]) {
            if (after >= 0 && after <= max_wait)
                *hint = (double)after;
            return RETRY_RETRYABLE;
        }
    return RETRY_FINAL;
}

/* ---- when ------------------------------------------------------------- */

double retry_backoff(int attempt, double cap, double rnd)
{
    double bound = RETRY_BASE_SECONDS;
    for (int i = 0; i < attempt && bound < cap; i++)
        bound *= 2;
    if (bound > cap)
        bound = cap;
    if (rnd < 0)
        rnd = 0;
    return rnd < 1 ? rnd * bound : bound;
}

void retry_plan_start(retry_plan *p, double now)
{
    p->retries_done = 0;
    p->started = now;
}

int retry_next(retry_plan *p, const upstream_config *up, double now, double hint, double rnd,
               double *wait)
{
    if (p->retries_done >= up->retries)
        return 0;
    double w = hint >= 0 ? hint : retry_backoff(p->retries_done, (double)up->retry_max_wait, rnd);
    if (now + w - p->started > (double)up->retry_max_wait)
        return 0;
    p->retries_done++;
    *wait = w;
    return 1;
}

/* ---- where ------------------------------------------------------------ */

int retry_same_wire(upstream_type a, upstream_type b)
{
    /* An OpenAI-compatible server takes OpenAI's paths and bodies; Azure's
     * paths (deployments) and every other format are their own. */
    if (a == UPSTREAM_TYPE_OPENAI_COMPATIBLE)
        a = UPSTREAM_TYPE_OPENAI;
    if (b == UPSTREAM_TYPE_OPENAI_COMPATIBLE)
        b = UPSTREAM_TYPE_OPENAI;
    return a == b;
}

const upstream_config *retry_pick_upstream(const relay_config *cfg, const upstream_config *route,
                                           int exhausted, uint64_t now_unix)
{
    (void)now_unix; /* an open breaker's fallback is chosen by the engine (engine.c) */
    if (!exhausted)
        return route;
    if (!route->fallback[0])
        return NULL;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (strcmp(cfg->upstreams[i].name, route->fallback) == 0)
            return &cfg->upstreams[i];
    return NULL;
}
