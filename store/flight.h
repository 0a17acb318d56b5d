/*
 * flight.h — the in-flight table: identical requests that are in flight at
 * the same time, in any process or thread, share one upstream call.
 *
 * The first request for a key becomes the leader of a new *flight* and calls
 * upstream; it publishes what it receives as numbered chunks (chunk 0 is the
 * engine's "head": status and content type; the rest are body bytes exactly
 * as the leader's client got them). Identical requests arriving meanwhile
 * join as followers and read the chunks, from the first, while they keep
 * coming. A flight has a generation number: when a leader dies and a
 * follower takes over, or a finished flight is replaced by a new one, the
 * generation changes and chunks of the old one are never mixed in.
 *
 * Waking followers: every publish bumps a counter in a small shared-memory
 * file (one of a fixed number of slots, chosen by key) and wakes the futex
 * on it, so a follower blocked in store_flight_wait sees a new chunk within
 * microseconds, without polling the database. See flight.c for the
 * measurements behind this choice.
 *
 * Who writes: only leaders and maintenance write to the database. A leader
 * writes its flight's record when it starts and when it ends, and one
 * chunk per publish; followers only read (read-committed, one record's
 * lock at a time, see op.read_committed in store_int.h), and say they are
 * still there through a mark in shared memory (store_flight_attend), not a
 * count in the record. With a hundred
 * processes following one stream, a write per follower on the flights
 * table contended so much that streams stalled for seconds
 * (tests/bench/coalesce_lag.mjs --workers 50 --pool-threads 2).
 *
 * Lifetime: a finished flight can be joined for `linger_ms` when reusable
 * (a request that raced the cache store still gets the complete answer);
 * its chunks stay readable for FLIGHT_KEEP_MS, then store_maintain removes
 * them, and also flights whose leader process is gone and nobody took over.
 *
 * Thread safety and errors as for store.h. Times are unix milliseconds,
 * passed in.
 */
#ifndef RELAY_STORE_FLIGHT_H
#define RELAY_STORE_FLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* How long finished flights and their chunks are kept for late readers. */
#define FLIGHT_KEEP_MS 60000

typedef enum {
    FLIGHT_RUNNING = 0, /* the leader is receiving the answer */
    FLIGHT_DONE = 1,    /* complete: every chunk is published */
    FLIGHT_FAILED = 2,  /* ended early (cut, overflow): followers end with an error */
} flight_state;

typedef struct store_flight {
    uint32_t gen; /* generation of this flight */
    flight_state state;
    int reusable;        /* DONE and a new identical request may still join it */
    int32_t leader_pid;  /* process of the leader */
    uint64_t started_ms; /* when the leader took the flight */
    uint64_t updated_ms; /* when it started or ended */
} store_flight;

/* A follower that has not said it is there (store_flight_attend) for this
 * long is gone as far as store_flight_attended is concerned. */
#define FLIGHT_ATTEND_MS 2000

/*
 * Leads or follows. If key has no flight, or its flight is FAILED, or DONE
 * and not reusable, or DONE longer than linger_ms ago, or RUNNING with a dead
 * leader process: starts a new generation led by the calling process
 * (*leader = 1). Otherwise joins it as a follower (*leader = 0; that takes
 * a read only, and marks the follower there). *out receives the
 * flight either way.
 */
rl_err store_flight_join(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now_ms,
                         uint64_t linger_ms, store_flight *out, int *leader);

/*
 * Leader only: stores chunk number seq (0, 1, 2, ... in order: the leader
 * counts, and bounds the bytes it publishes) of generation gen and wakes
 * the followers. RL_NOTFOUND, with nothing stored, when the flight is no
 * longer this leader's running generation (a follower took over after
 * believing it dead). The flight's record is read, not written.
 */
rl_err store_flight_append(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t gen, uint32_t seq,
                           const void *data, size_t len, uint64_t now_ms);

/* Leader only: ends the flight (DONE or FAILED) and wakes the followers.
 * reusable: a complete successful answer that late joiners may take. */
rl_err store_flight_finish(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t gen,
                           flight_state state, int reusable, uint64_t now_ms);

/* Called for each chunk read, in order; return non-zero to stop reading. */
typedef int (*store_flight_chunk_fn)(void *ctx, uint32_t seq, const void *data, size_t len);

/*
 * Reads the flight's current record into *out and the chunks of generation
 * gen from number `from` on, in one read-only transaction (record first,
 * then chunks: a generation that ends meanwhile shows its end chunk); the
 * chunks are copied out first and fn is called after the transaction
 * ended, so a slow client never holds up the leader. *gen_state tells how generation gen
 * stands: RUNNING, DONE or FAILED as its leader ended it, and FAILED too
 * when it was abandoned (its leader died; out->gen then names the
 * generation that replaced it, if any). A finished generation stays
 * readable after a newer one replaced it, until store_maintain removes it.
 * fn may be NULL to read only the record. RL_NOTFOUND when the key has no
 * flight at all.
 */
rl_err store_flight_read(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t gen, uint32_t from,
                         store_flight_chunk_fn fn, void *ctx, store_flight *out,
                         flight_state *gen_state);

/*
 * Followers say they are still there (at least every FLIGHT_ATTEND_MS / 2
 * while they follow); a leader whose own client left asks whether anyone
 * did within FLIGHT_ATTEND_MS. Shared memory, no database. A hint: keys
 * that share a wake-up slot share the mark, so a leader may now and then
 * see another key's followers (and finish a call nobody needed), and a
 * follower stuck writing to a slow client longer than FLIGHT_ATTEND_MS
 * may be missed.
 */
void store_flight_attend(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now_ms);
int store_flight_attended(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now_ms);

/*
 * A follower that found the leader dead (store_flight_leader_alive) asks to
 * lead instead. If the flight is still generation old_gen, RUNNING, and its
 * leader is dead, starts generation old_gen + 1 led by the caller
 * (*won = 1). Otherwise *won = 0 (someone else took over, or the flight
 * ended); *out receives the flight either way.
 */
rl_err store_flight_takeover(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t old_gen,
                             uint64_t now_ms, store_flight *out, int *won);

/* Calls fn for every flight (key and record) read in one read-only
 * transaction, at most
 * `max` of them, in key order; fn's non-zero return stops early. For
 * reports (the dashboard's in-flight list, metrics). */
rl_err store_flight_each(store *s, unsigned max,
                         int (*fn)(void *ctx, const uint8_t key[STORE_KEY_LEN],
                                   const store_flight *f),
                         void *ctx);

/* Whether the leader process of f is alive. */
int store_flight_leader_alive(const store_flight *f);

/*
 * Waiting for news without polling the database: take a ticket *before*
 * reading the flight, then wait with it; the wait returns at once if
 * anything was published for a key in the same slot since the ticket was
 * taken, else when something is, or after timeout_ms.
 */
uint32_t store_flight_ticket(store *s, const uint8_t key[STORE_KEY_LEN]);
void store_flight_wait(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t ticket, int timeout_ms);

#endif
