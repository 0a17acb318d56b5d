/*
 * admission.h — admission control: the most upstream calls in flight to
 * one upstream at once across the whole pool ([fcgi] / [upstream.NAME]
 * max_inflight), and a bounded wait for a free place ([fcgi]
 * queue_timeout) instead of an unbounded one in the socket backlog.
 *
 * The places live in admission.map, a file in the store's home mapped
 * shared by every process (store/mapfile.h): per upstream a row of
 * ADMISSION_SLOTS slots, each 0 (free) or the pid of the process whose
 * call holds it. A call takes a slot among the first max_inflight of its
 * row with one compare-and-swap, so the limit is exact across processes
 * with no lock, and a slot always names its owner: the slots of a process
 * killed with SIGKILL are found (kill(pid, 0), as store/env.c's isalive)
 * and freed by whoever next finds the row full, at most once a second.
 * A pid reused by a new process keeps the dead one's slots until it exits
 * too (as with Berkeley DB's own isalive): rare, and bounded.
 *
 * Waiting: a waiter sleeps on a futex word of the row that every release
 * bumps (Linux, MAP_SHARED: shared between processes), so a free slot is
 * taken within a wake-up, with no polling; a release wakes one waiter,
 * the longest waiting in the kernel's order (arrival order among waiters,
 * but a request arriving as a slot frees may take it first: no ticket
 * queue, whose dead holders would stall everyone behind them).
 *
 * Threads: any number, in any processes. Time and waiting go through an
 * admission_clock (the system's: admission_system_clock), so unit tests
 * drive the queue with a fake clock and never sleep.
 *
 * Failure: a file that cannot be mapped leaves admission_open with RL_IO
 * (logged): the caller then runs without limits (no request is refused
 * for want of the file). The file holds pids, counters and hashes of
 * upstream names: nothing secret, nothing from requests.
 */
#ifndef RELAY_ENGINE_ADMISSION_H
#define RELAY_ENGINE_ADMISSION_H

#include <stdint.h>

#include "store/base/rl_err.h"

#define ADMISSION_FILE "admission.map"
#define ADMISSION_ROWS 64      /* upstream names; twice CONFIG_MAX_UPSTREAMS, for reloads */
#define ADMISSION_SLOTS 1024   /* the highest max_inflight */
#define ADMISSION_REAP_MS 1000 /* between searches for a dead process's slots */

typedef struct admission admission;

/* The clock and the sleep of the queue. now_ms: monotonic milliseconds,
 * the same clock in every process (CLOCK_MONOTONIC is system-wide: the
 * last search for dead slots is a time in the shared file). wait: returns
 * when *word no longer holds seen, after timeout_ms, or sooner (callers
 * re-check). */
typedef struct admission_clock {
    uint64_t (*now_ms)(void *ctx);
    void (*wait)(void *ctx, uint32_t *word, uint32_t seen, uint64_t timeout_ms);
    void *ctx;
} admission_clock;

extern const admission_clock admission_system_clock;

/* Maps (creating, mode 0600) home/ADMISSION_FILE. RL_IO (logged) or
 * RL_NOMEM. */
rl_err admission_open(const char *home, admission **out);
void admission_close(admission *a); /* NULL is a no-op */

/* A place taken by admission_enter, for admission_leave. */
typedef struct admission_hold {
    int row; /* -1: nothing held (no limit, or no row for the upstream) */
    int slot;
} admission_hold;

/*
 * Takes a place for one call to upstream `name` whose limit is max (0: no
 * limit: RL_OK at once, with a place when one is free so that the call is
 * counted in flight, else none), waiting up to wait_ms for one to
 * come free. RL_OK with *hold to give back with admission_leave (on every
 * path, once), or RL_OVERLOADED when none came free in time (nothing
 * held). *waited_ms (may be NULL) gets how long it waited. The wait and
 * its outcome are counted in the row (admission_read).
 */
rl_err admission_enter(admission *a, const char *name, unsigned max, uint64_t wait_ms,
                       const admission_clock *clock, admission_hold *hold, uint64_t *waited_ms);

/* Gives the place back and wakes one waiter; a hold with row -1 is a
 * no-op, and the hold is emptied (a second call does nothing). */
void admission_leave(admission *a, admission_hold *hold);

/* Frees the slots of processes that no longer exist in the row of name
 * (every row when name is NULL), now or at most every ADMISSION_REAP_MS
 * (force: now). Returns how many were freed. admission_enter calls it
 * when it finds a row full. */
unsigned admission_reap(admission *a, const char *name, uint64_t now_ms, int force);

/* What the row of an upstream holds and counted, pool-wide. */
typedef struct admission_counts {
    uint64_t inflight; /* places held now */
    uint64_t waiting;  /* calls waiting now (a hint: a waiter killed stays counted) */
    uint64_t waited;   /* calls that found no free place and waited (admitted or not) */
    uint64_t wait_ms;  /* the sum of their waits */
    uint64_t refused;  /* calls refused after waiting queue_timeout */
} admission_counts;

/* Zeros when the upstream never had a row. */
void admission_read(const admission *a, const char *name, admission_counts *out);

#endif
