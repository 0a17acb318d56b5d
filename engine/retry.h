/*
 * retry.h — engine-internal: retrying an upstream call before its first
 * byte reached anyone, and falling back to another upstream.
 *
 * What may be retried: a call that got no connection or no answer
 * (RL_UPSTREAM_UNREACHABLE before any head), an answer with status 502, 503
 * or 504, and a 429 whose Retry-After asks for a wait of at most the
 * upstream's retry_max_wait. Only while nothing of the answer was sent to
 * the client or published to followers: the engine asks retry_classify only
 * then (engine.c call_upstream). A timeout is not retried: its call already
 * took the whole time the client was promised.
 *
 * The waits: exponential backoff with full jitter, random(0, min(cap, base
 * * 2^attempt)) with cap = retry_max_wait, or the 429's own Retry-After;
 * at most `retries` retries per upstream, and none whose wait would end
 * more than retry_max_wait seconds after the first attempt started (the
 * bound on what retrying adds to a client's wait).
 *
 * Fallback: [upstream.X] fallback = Y (config.c checks Y exists, speaks X's
 * wire format and that no chain loops). retry_pick_upstream says which
 * upstream gets the next call; only one hop is ever taken for a request.
 *
 * Threads: every function is pure or reads only what it is given; the
 * clock, the sleep and the random source are passed in (retry_clock), so
 * unit tests never sleep.
 */
#ifndef RELAY_ENGINE_RETRY_H
#define RELAY_ENGINE_RETRY_H

#include <stdint.h>

#include "engine/config.h"
#include "store/base/rl_err.h"

/* The first backoff's upper bound in seconds; doubled on each retry. Short
 * enough that a 503 burst of a second is bridged by the first retry or two,
 * long enough that two retries do not land inside the same burst. */
#define RETRY_BASE_SECONDS 0.25

/* Time and chance, injected (engine_worker.retry_clock; NULL: the system's
 * retry_system_clock). */
typedef struct retry_clock {
    void *ctx;
    double (*now)(void *ctx);                 /* monotonic seconds */
    double (*random)(void *ctx);              /* uniform in [0, 1) */
    void (*sleep)(void *ctx, double seconds); /* waits that long */
} retry_clock;

/* CLOCK_MONOTONIC, a per-thread xorshift seeded from the clock and the
 * thread, and nanosleep. */
extern const retry_clock retry_system_clock;

/* What one attempt's outcome calls for. */
typedef enum {
    RETRY_FINAL,     /* an answer (or a failure) for the client: no retry */
    RETRY_RETRYABLE, /* a failure that another attempt may mend */
} retry_verdict;

/*
 * Classifies an attempt that ended with err, with a head of `status`
 * (got_head) whose Retry-After header was retry_after (NULL: none), at unix
 * time now_unix. On RETRY_RETRYABLE, *hint is the wait the upstream asked
 * for in seconds (a 429's Retry-After), or -1 when it asked for none.
 * max_wait: the upstream's retry_max_wait, the cap on a 429's wait.
 */
retry_verdict retry_classify(rl_err err, int got_head, int status, const char *retry_after,
                             long max_wait, uint64_t now_unix, double *hint);

/* Retry-After as seconds from now_unix: delta-seconds, or an HTTP date
 * (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"); a date in the past is 0.
 * -1 when value is NULL or neither. */
long retry_after_seconds(const char *value, uint64_t now_unix);

/* The full-jitter backoff before retry number attempt (0 for the first):
 * rnd * min(cap, RETRY_BASE_SECONDS * 2^attempt), rnd in [0, 1). */
double retry_backoff(int attempt, double cap, double rnd);

/* The retries of one upstream for one request. */
typedef struct retry_plan {
    int retries_done;
    double started; /* monotonic seconds of the first attempt */
} retry_plan;

void retry_plan_start(retry_plan *p, double now);

/*
 * Whether to retry up after a RETRY_RETRYABLE attempt, at monotonic time
 * now, with the upstream's hint (-1: none) and a random rnd in [0, 1).
 * 1 with the wait in *wait (and the retry counted), or 0: retries are
 * exhausted (the count, or the wait would end past retry_max_wait after
 * the first attempt).
 */
int retry_next(retry_plan *p, const upstream_config *up, double now, double hint, double rnd,
               double *wait);

/*
 * The upstream the next call of a request routed to `route` goes to: the
 * route's own, or its fallback when `exhausted` (its retries ran out before
 * the first byte). NULL when there is nowhere to go. (When the breaker of
 * part A arrives, "route's breaker is open" joins `exhausted` here.)
 */
const upstream_config *retry_pick_upstream(const relay_config *cfg, const upstream_config *route,
                                           int exhausted, uint64_t now_unix);

/* Whether two upstream types speak the same wire format on the same paths
 * (a fallback must: the request is sent to it as is). */
int retry_same_wire(upstream_type a, upstream_type b);

#endif
