/*
 * wake.h — store-internal: a small shared-memory file through which the
 * processes on one store signal each other without the database.
 *
 * The file, in the store's home and mapped shared by every process, holds
 * three tables:
 *
 *  - wake-ups: WAKE_SLOTS 32-bit counters. A publisher bumps the counter of
 *    a slot and wakes the futex on it; a waiter that read the counter before
 *    looking for news sleeps on the futex until the counter moves or a
 *    timeout passes.
 *  - marks: one time per slot, the last time someone said "I am here" for
 *    a key of that slot (followers of a flight; see flight.h).
 *  - turns: a few times shared by the whole store, each the last time some
 *    process took a turn at a periodic job (maintenance), so that one
 *    process does it per interval instead of every process.
 *
 * Keys hash to slots, so unrelated keys may share one: they wake each other
 * now and then (waiters re-check, so that costs a read, never correctness)
 * and share marks (users treat a mark as a hint).
 *
 * Why not the database: these are written by hundreds of threads many
 * times a second, and every write there is a transaction on a hot page.
 *
 * The file holds only counters and times: nothing secret, nothing from
 * requests. Linux-only (futex on a MAP_SHARED mapping), like the rest of
 * Relay. A file of an older, smaller layout is grown in place.
 */
#ifndef RELAY_STORE_WAKE_H
#define RELAY_STORE_WAKE_H

#include <stdint.h>

#include "store/base/rl_err.h"

#define WAKE_SLOTS 4096
#define WAKE_TURNS 8
#define WAKE_FILE "wake.map"

typedef struct store_wake store_wake;

/* Maps (creating, mode 0600) home/WAKE_FILE. RL_IO on failure (logged). */
rl_err wake_open(const char *home, store_wake **out);
void wake_close(store_wake *w);

/* The slot of a key (its first bytes are already uniformly random). */
uint32_t wake_slot(const uint8_t *key);

uint32_t wake_ticket(store_wake *w, uint32_t slot);
/* Bumps the slot and wakes everyone waiting on it. */
void wake_bump(store_wake *w, uint32_t slot);
/* Returns when the slot moved past ticket, or after timeout_ms. */
void wake_wait(store_wake *w, uint32_t slot, uint32_t ticket, int timeout_ms);

/* Sets the slot's mark to now (any unit; only ever compared by callers). */
void wake_mark(store_wake *w, uint32_t slot, uint64_t now);
/* The slot's last mark, 0 if never marked. */
uint64_t wake_marked(store_wake *w, uint32_t slot);

/*
 * Takes turn number `turn` (< WAKE_TURNS) if nobody took it in the last
 * `interval` (same unit as now): returns 1 to exactly one caller per
 * interval across all processes, 0 to the others. A turn taken "in the
 * future" (the clock went back) counts as due.
 */
int wake_take_turn(store_wake *w, unsigned turn, uint64_t now, uint64_t interval);

#endif
