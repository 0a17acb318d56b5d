/*
 * fanout.h — engine-internal, for coalesce.c: one reader per process for
 * the followers of a shared answer, and the fan-out of what it reads.
 *
 * Followers of the same flight generation in one process share one
 * process-local copy of its chunks (fanout_local). Whichever follower
 * finds nobody reading fetches the new chunks from the store (waiting on
 * the futex for them) into that copy, then hands them itself to every
 * follower that is parked (caught up and asleep) and whose client can take
 * them at once. Every other case goes back to the follower's own thread:
 * a client not ready for the bytes (so a slow client never holds up the
 * others), the end of the flight, a failure, a new generation, and the
 * protocol's own checks (coalesce.c: liveness, takeover, max_wait).
 *
 * Chosen by measurement (tests/bench/coalesce_lag.mjs: 100 followers over
 * 4 processes on 2 cores, the web server and the clients on the same
 * cores; lag = the leader receives a chunk -> a follower's client is sent
 * it):
 * - each follower reading the store itself: a hundred threads queued on
 *   the latch of the same B-tree page for every chunk, p99 tens of ms;
 * - one reader per process, every follower woken to copy its chunk and
 *   write it: about 200 context switches per chunk (the broadcast, then
 *   the convoy on the copy's mutex) and the last writes of each burst
 *   queued behind the web server and the clients: p99 about 8 ms;
 * - the reader writing for parked followers: one wake-up per process and
 *   chunk, p99 2-3 ms (README.md, Benchmarks).
 *
 * A follower (fanout_sub) is in one of the states of fanout_state; every
 * change of state happens under its copy's mutex and is checked against
 * the table of allowed transitions in fanout.c (a wrong one aborts the
 * process with a log line: the pool replaces it, which is better than a
 * thread writing to a client another thread also writes to).
 *
 * Threads: fanout_sub is used by its own thread, except while a reader
 * borrows it (then only the reader calls its ops). The ops may be called
 * from another follower's thread, never concurrently for one follower.
 */
#ifndef RELAY_ENGINE_FANOUT_H
#define RELAY_ENGINE_FANOUT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/coalesce.h"
#include "store/flight.h"

typedef struct fanout_local fanout_local;
typedef struct fanout_sub fanout_sub;

/* What the fan-out asks of a follower. */
typedef struct fanout_ops {
    /* Whether it can take no more chunks (its answer is broken or its
     * client gone): it is then never parked again, but called. */
    int (*stopped)(fanout_sub *sub);
    /* Whether `pending` bytes of chunks can be handed to it right now
     * without waiting for its client; a reader writes for it only then. */
    int (*ready)(fanout_sub *sub, size_t pending);
    /* Chunk seq (0 is the flight's head), in order, no gaps; sub->next_seq
     * is already seq + 1. Non-zero stops this delivery (the op set
     * sub->broken, or the client is gone). */
    int (*chunk)(fanout_sub *sub, uint32_t seq, const void *data, size_t len);
} fanout_ops;

typedef enum {
    FANOUT_OWN,        /* its own thread runs it; in no list */
    FANOUT_PARKED,     /* asleep in the copy's parked list: a reader may borrow it */
    FANOUT_BORROWED,   /* out of the list: a reader hands it chunks */
    FANOUT_RECLAIMING, /* borrowed, and its own thread woke meanwhile: the reader
                          must call it when done, not park it again */
    FANOUT_CALLED,     /* out of the list, woken to look for itself */
    FANOUT_STATES
} fanout_state;

struct fanout_sub {
    const fanout_ops *ops;
    void *owner;         /* the follower the ops work on */
    fanout_local *local; /* NULL before fanout_follow or when out of memory */
    uint64_t seen_version;
    uint32_t next_seq; /* the next chunk it needs */
    int broken;        /* its answer cannot be completed (set by the ops, or no copy) */
    /* Under local's mutex: */
    fanout_state state;
    fanout_sub *next_parked;
    pthread_cond_t cond; /* woken by the reader (call) */
};

/* What a follower learned from the process-local copy in one look. */
typedef struct fanout_look {
    rl_err err;         /* the last store read's error */
    store_flight rec;   /* the flight's record as last read */
    flight_state state; /* the followed generation's state */
    int broken;         /* the copy is unusable (memory, max_buffer) */
    int known;          /* a read happened since the follower started */
    uint32_t nchunks;   /* chunks in the copy at that moment */
} fanout_look;

/* Embeds a follower (state OWN, no copy yet). */
void fanout_sub_init(fanout_sub *sub, const fanout_ops *ops, void *owner);
/* Leaves its copy (handing the reader's role on if it held it). */
void fanout_sub_release(fanout_sub *sub);

/* (Re)attaches sub to generation gen of key, from chunk 0: the copy that
 * this process's other followers of that generation share, or a new one
 * holding at most max_bytes. sub->broken when out of memory. */
void fanout_follow(fanout_sub *sub, const uint8_t key[STORE_KEY_LEN], uint32_t gen,
                   size_t max_bytes);

/*
 * Brings the follower up to date: when it has everything the copy holds,
 * it reads the store for everyone if nobody is (waiting with clock->wait
 * for news, up to COALESCE_TICK_MS), else parks until the reader has news
 * for it or COALESCE_TICK_MS passed. Then it hands itself the chunks it
 * still lacks (with the copy's mutex released, so a slow client holds up
 * nobody else) and reports what it saw.
 */
void fanout_take_news(fanout_sub *sub, store *s, const coalesce_clock *clock, size_t max_bytes,
                      fanout_look *out);

/* The tokens of the complete shared answer (chunks 1.. of the copy, of
 * `kind` and `framing`), read once per process: what each follower saved.
 * PROV_USAGE_UNKNOWN when the copy is broken. */
void fanout_usage(fanout_sub *sub, const prov_ops *prov, entry_kind kind, frame_kind framing,
                  prov_usage *out);

/*
 * Debug-level trace of each chunk's way from leader to followers, with
 * wall-clock microseconds: tests/bench/coalesce_lag.mjs reads these lines
 * to measure the follower lag inside Relay (leader receives -> follower
 * sent). While a reader writes for many followers their lines wait and are
 * logged after the burst: a log write between two sends would slow the
 * very thing measured. key_hex: 16 hex digits.
 */
void fanout_trace(const char *key_hex, uint32_t gen, const char *what, uint32_t seq);

#endif
