/*
 * breaker.h — engine-internal: a circuit breaker per upstream, shared by
 * every process of the pool, so one worker's failures open it for all.
 *
 * States (per upstream): CLOSED (calls go through; failures are counted in
 * a window), OPEN (for the cool-down every call is refused), HALF_OPEN
 * (the cool-down is over: exactly one call at a time, across every
 * process, is let through as a probe; its success closes the breaker, its
 * failure opens it for another cool-down).
 *
 * What counts (breaker_classify): 5xx answers, timeouts and connection
 * failures (and a stream cut by the upstream). Never a client's 4xx, never
 * a 429 (the upstream is up and says so), never a client that left.
 *
 * Where the state lives: a file of its own in the store's home,
 * breaker.map, mapped MAP_SHARED by every process through
 * store/mapfile.h (allocated on disk, so no SIGBUS on a full file system).
 * Not a section of stats.map: that file's layout is checksummed and any
 * change rebuilds it, losing every counter once; and its rows are claimed
 * for good, while a breaker's words are rewritten on every transition.
 * Not the Berkeley DB store: a transaction per upstream call would be a
 * write on one hot page by every process (see stats.h for what that cost),
 * and the breaker must keep working while the store is closed.
 *
 * Every transition is one compare-and-swap on a 64-bit word, so no lock is
 * held and a process killed at any point leaves a consistent state. The
 * half-open probe is a claim word holding the prober's pid and a deadline:
 * a prober whose process died (kill(pid, 0) says ESRCH) or whose deadline
 * passed no longer holds it, so a dead prober never wedges the breaker.
 *
 * Outcomes are recorded per upstream attempt: a retry loop (engine/retry.c)
 * calls breaker_record once per attempt it made, with the verdict that
 * admitted the request (a probe's first attempt decides the probe).
 *
 * Time: unix seconds, passed in everywhere (tests use a fake clock and
 * never sleep). Threads: any; the handle is shared by a process's threads.
 * Failure: a breaker that cannot be mapped (logged once) admits every
 * call; breaker_new returns NULL only when out of memory or when the file
 * cannot be used, and every function accepts a NULL breaker.
 */
#ifndef RELAY_ENGINE_BREAKER_H
#define RELAY_ENGINE_BREAKER_H

#include <stdint.h>

#include "engine/config.h"
#include "store/base/rl_err.h"

#define BREAKER_FILE "breaker.map"
#define BREAKER_SLOTS 128   /* upstream names a file remembers (config allows 32 at once) */
#define BREAKER_NAME_MAX 64 /* bytes of an upstream name, NUL included; longer ones are cut */

typedef struct breaker breaker;

/* One upstream's settings ([upstream.X] breaker_*). failures == 0: no
 * breaker (every call admitted, nothing recorded). probe_bound: seconds a
 * probe may hold its claim (the upstream's total timeout). */
typedef struct breaker_policy {
    uint32_t failures, window, cooldown, probe_bound;
} breaker_policy;

typedef enum {
    BREAKER_CALL,   /* closed (or off): call as usual */
    BREAKER_PROBE,  /* half-open: this call is the one probe; record its outcome */
    BREAKER_REFUSE, /* open, or half-open with a probe under way: do not call */
} breaker_verdict;

typedef enum {
    BREAKER_NEUTRAL, /* says nothing about the upstream's health (4xx, 429, client gone) */
    BREAKER_SUCCESS,
    BREAKER_FAILURE,
} breaker_outcome;

typedef enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state;

/* What the stats API, the metrics and /relay/health show of one upstream. */
typedef struct breaker_view {
    breaker_state state;
    uint32_t failures;  /* in the current window (0 once it has passed) */
    uint64_t opened_at; /* unix s of the last opening; 0 never */
    uint64_t retry_in;  /* OPEN: seconds of cool-down left */
    uint32_t prober;    /* HALF_OPEN: pid of the live probe's process, 0 none */
    uint64_t opens;     /* times it opened since the file was made */
} breaker_view;

/* The settings of [upstream.X]; a probe may hold its claim for the
 * upstream's whole timeout. */
breaker_policy breaker_policy_of(const upstream_config *up);

/* Maps (creating) home/BREAKER_FILE. NULL when it cannot (logged): the
 * caller then has no breaker, and every call is admitted. Call once per
 * process, after fork. */
breaker *breaker_new(const char *home);
void breaker_free(breaker *b);

/* The outcome an upstream attempt tells: err is the call's (RL_OK when an
 * answer came), status the upstream's status (0 when none came). */
breaker_outcome breaker_classify(rl_err err, int status);

/* Before an upstream call of `upstream` by process pid: CALL, PROBE (this
 * caller now holds the one half-open claim; it must call breaker_record)
 * or REFUSE, with *retry_in the seconds a client should wait (at least 1). */
breaker_verdict breaker_admit(breaker *b, const char *upstream, const breaker_policy *p,
                              uint64_t now, uint32_t pid, uint64_t *retry_in);

/* After one upstream attempt admitted with verdict v (CALL or PROBE):
 * counts a failure (opening the breaker at p->failures within p->window),
 * or settles the probe (success closes, failure re-opens, neutral only
 * gives the claim back for the next request to probe). */
void breaker_record(breaker *b, const char *upstream, const breaker_policy *p, breaker_verdict v,
                    breaker_outcome o, uint64_t now, uint32_t pid);

/* 1 while a call to upstream would be refused (open, or half-open with a
 * live probe under way): for the fallback logic, which then sends the
 * request elsewhere. 0 closed, half-open with no probe, or no breaker. */
int breaker_is_open(breaker *b, const char *upstream, uint64_t now);

/* The state of upstream at now (a zeroed CLOSED view when unknown). */
void breaker_view_of(breaker *b, const char *upstream, const breaker_policy *p, uint64_t now,
                     breaker_view *out);

/* "closed", "open", "half_open". */
const char *breaker_state_name(breaker_state s);

#endif
