/*
 * usemap.h — store-internal: the table of recent uses, a file in the
 * store's home mapped shared by every process, through which a cache hit
 * records "key used at now, one more hit" with a few atomic operations
 * instead of a write transaction. store_maintain moves what it holds into
 * the database in batches (recency.c); readers of hit counts add what is
 * still pending here.
 *
 * Layout: USE_SLOTS slots, each a 64-bit word (a 48-bit fingerprint of the
 * key and a 16-bit count of pending hits; 0 = free), the time of the last
 * use and the 32-byte key. A key lives in one of the USE_PROBE slots from
 * its home slot (its first bytes, which are uniformly random); it may, for
 * a moment, hold two of them (two processes claiming at once, or a count
 * that reached 65535): every reader sums them. A count is changed only by
 * a compare-and-swap of the whole word, so a hit is either counted in a
 * slot that a flush then takes whole, or retried: never half-lost.
 *
 * Threads and processes: any, at once, lock-free. Nothing here blocks.
 * A process killed at any point loses nothing already counted: the counts
 * live in the file, not the process. A kill in the few instructions
 * between claiming a slot and publishing its key leaves the slot claimed;
 * uses_reap frees such a slot after USE_STUCK seconds.
 *
 * Times are whatever unit the callers pass (unix seconds in the store),
 * compared only with each other. The file holds digests, counts and times:
 * nothing secret, nothing from requests.
 */
#ifndef RELAY_STORE_USEMAP_H
#define RELAY_STORE_USEMAP_H

#include <stdint.h>

#include "store/base/rl_err.h"

#define USE_SLOTS 16384 /* 16384 x 48 bytes + header: 768 KiB */
#define USE_PROBE 16
#define USE_FILE "recency.map"
#define USE_KEY_LEN 32
#define USE_STUCK 60 /* seconds a claimed, unpublished slot is left alone */

typedef struct store_uses store_uses;

/* Maps (creating, mode 0600) home/USE_FILE. RL_IO (logged) or RL_NOMEM. */
rl_err uses_open(const char *home, store_uses **out);
void uses_close(store_uses *u); /* NULL is a no-op */

/* Adds n hits and a use at now to key. 0, or -1 when the key has no slot
 * and none of its USE_PROBE slots is free (the caller then counts it in
 * the database itself: see store_cache_touch). */
int uses_add(store_uses *u, const uint8_t *key, uint64_t n, uint64_t now);

/* The hits pending for key (the sum over its slots) and, in *last (may be
 * NULL), its latest use, 0 if none. Reads only. */
uint64_t uses_pending(store_uses *u, const uint8_t *key, uint64_t *last);

/* Takes key's slots whole, freeing them: their hits (the return) and latest
 * use (*last, 0 if none) are the caller's to store. */
uint64_t uses_take(store_uses *u, const uint8_t *key, uint64_t *last);

/* Slot i (< USE_SLOTS): 1 and its key in key when a key is published in
 * it, else 0. Frees a slot claimed but left unpublished for more than
 * USE_STUCK before now (its claimer died mid-claim). For the flush's walk. */
int uses_slot(store_uses *u, uint32_t i, uint8_t key[USE_KEY_LEN], uint64_t now);

/* Hits counted in the database directly because the table had no slot
 * (see uses_add), since the file was created; bumped by the store. */
void uses_count_direct(store_uses *u);
uint64_t uses_direct(store_uses *u);

#endif
