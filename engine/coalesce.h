/*
 * coalesce.h — engine-internal: identical requests in flight at the same
 * time share one upstream call (see store/flight.h for the shared table).
 *
 * The leader calls upstream and publishes the head (status, content type,
 * stream or body) and then every body chunk as its own client receives it;
 * followers relay those chunks live (a stream to a stream request) or
 * collect them and render the complete answer in their own form. The
 * leader's death is noticed by its followers within about a second: one
 * that has sent nothing yet takes over (one new upstream call, shared by the
 * rest); one that already streamed bytes ends with an error event, never a
 * spliced stream.
 *
 * The flight protocol (joining, leading, following, takeover, max_wait)
 * is here; the per-process reader that hands chunks to the followers of
 * one process is engine/fanout.c.
 *
 * Time: every decision reads x->flight.clock (NULL: the system's clocks),
 * so tests drive the protocol with a clock of their own and never sleep
 * (tests/unit/t_coalesce.c).
 */
#ifndef RELAY_ENGINE_COALESCE_H
#define RELAY_ENGINE_COALESCE_H

#include "engine/exchange.h"

/* How long a follower waits for news before it looks at the leader's
 * liveness again. Wake-ups for new chunks are immediate (futex); this only
 * bounds how late a dead leader is noticed: DESIGN asks for within 2 s. */
#define COALESCE_TICK_MS 250
/* How often a follower with no news asks whether its leader lives. */
#define COALESCE_LIVENESS_MS 500

/* The clocks and the one wait of the protocol. */
struct coalesce_clock {
    void *ctx;
    /* Unix milliseconds: flight records, liveness checks, max_wait. */
    uint64_t (*now_ms)(void *ctx);
    /* Waits up to timeout_ms for news of key published after `ticket` was
     * taken (store_flight_wait). A test runs its next step here instead. */
    void (*wait)(void *ctx, store *s, const uint8_t key[STORE_KEY_LEN], uint32_t ticket,
                 int timeout_ms);
};

/* CLOCK_REALTIME and store_flight_wait. */
extern const coalesce_clock coalesce_system_clock;

typedef enum {
    COALESCE_ALONE,    /* not coalesced: call upstream without publishing */
    COALESCE_LEAD,     /* x->flight is set: call upstream and publish */
    COALESCE_ANSWERED, /* followed a leader: the client has its answer */
    COALESCE_CACHED,   /* the leader stored its answer without publishing it: read
                        * the cache (or, if it is gone already, call upstream alone) */
} coalesce_outcome;

/* Whether this request coalesces (config mode, cache decision, a key and a
 * store), and if so leads, or follows to the end. */
coalesce_outcome coalesce_join(exchange *x);

/* Leader hooks; each is a no-op unless x leads a flight and still
 * publishes. Publishing fails the flight (followers end with an error) when
 * it exceeds [coalesce] max_buffer. A leader of a buffered answer kept for
 * the cache (x->capture, not x->up_is_stream) publishes it only if a
 * follower is there (quiet leading, see coalesce.c): the data given to
 * coalesce_publish_data must then be x->body's. */
void coalesce_publish_head(exchange *x, int status, entry_kind kind, const char *content_type);
void coalesce_publish_data(exchange *x, const char *data, size_t len);
/* Publishes a whole error answer exactly as exchange_fail renders it for a
 * client that was sent nothing yet, and ends the flight. */
void coalesce_publish_error(exchange *x, rl_err err, const char *message);
/* Ends the flight: complete (DONE) or not (FAILED); reusable: the answer
 * was stored in the cache, so late joiners may take it. */
void coalesce_finish(exchange *x, int complete, int reusable);

/* Whether followers are attached right now (a leader whose own client left
 * keeps the upstream call going for them). */
int coalesce_has_followers(exchange *x);

#endif
