/*
 * upstream.h — one HTTP call to an upstream API, with libcurl.
 *
 * The status and headers are handed over once, before the first body byte
 * (so the engine can commit the client's status line only once the
 * upstream's is known), then body bytes as they arrive. Each request thread
 * owns one upstream_client and reuses its connection (keep-alive) across
 * requests.
 */
#ifndef RELAY_ENGINE_UPSTREAM_H
#define RELAY_ENGINE_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "store/base/rl_err.h"

typedef struct upstream_client upstream_client;

/* Once per process, before any thread starts. */
rl_err upstream_global_init(void);
void upstream_global_cleanup(void);

upstream_client *upstream_client_new(void);
void upstream_client_free(upstream_client *c);

typedef struct upstream_request {
    const char *method;
    const char *url;
    const rl_header *headers; /* sent as is (name: value) */
    size_t nheaders;
    const char *body; /* NULL for none */
    size_t body_len;
    /* Seconds (see upstream_timer below): connecting; from the start of
     * the call to the response's status line and headers; without a byte
     * once they arrived; the whole call. */
    long connect_timeout, first_byte_timeout, idle_timeout, timeout;
    /* When not NULL, set to the timeout that ended the call (or
     * UPSTREAM_TIMEOUT_NONE) whenever it returns. */
    struct upstream_timed_out *timed_out;
} upstream_request;

typedef struct upstream_handler {
    void *ctx;
    /* Once, with the final status and the response headers (names
     * lower-case), before any on_data. Return -1 to abort the call. */
    int (*on_head)(void *ctx, int status, const rl_header *headers, size_t nheaders);
    /* Body bytes as they arrive. Return -1 to abort the call. */
    int (*on_data)(void *ctx, const char *data, size_t len);
    /* Optional (NULL for none): called at least once a second while the
     * call runs, with monotonic seconds, on the calling thread. Return -1
     * to abort the call (it then ends with RL_CLIENT_GONE). */
    int (*on_tick)(void *ctx, double now);
} upstream_handler;

/*
 * Performs the call. RL_OK when the whole response was received (whatever
 * its status). Otherwise: RL_UPSTREAM_UNREACHABLE (no connection or no
 * response), RL_UPSTREAM_TIMEOUT, RL_UPSTREAM_CUT (the body ended early
 * after on_head), RL_UPSTREAM_PROTOCOL, RL_CLIENT_GONE (a callback aborted).
 * *got_head tells whether on_head was called. libcurl's error text goes to
 * the log, never to the client.
 */
rl_err upstream_perform(upstream_client *c, const upstream_request *req, const upstream_handler *h,
                        int *got_head);

/*
 * upstream_perform's type. Each engine_worker calls upstream through a
 * pointer of this type (engine/exchange.h), upstream_perform unless a test
 * put a fake there: the request flow is then driven in-process, with canned
 * answers and failures at chosen points (tests/unit/t_engine.c). A fake
 * keeps upstream_perform's whole contract above.
 */
typedef rl_err upstream_perform_fn(upstream_client *c, const upstream_request *req,
                                   const upstream_handler *h, int *got_head);

/*
 * The timeouts of one call, each a distinct reason for the logs, the
 * metrics and the client's 504 message. libcurl has a connect timeout and a
 * total one but no first-byte one, and its low-speed limit (the closest to
 * "idle") averages over a window and fired at ~16 s for 10: so everything
 * but connecting is timed here, from libcurl's progress callback, which runs
 * at least once a second (libcurl's total TIMEOUT stays set, slightly
 * later, as a backstop). The time is passed in so the unit test does not
 * sleep.
 */
typedef enum {
    UPSTREAM_TIMEOUT_NONE,
    UPSTREAM_TIMEOUT_CONNECT,    /* no connection within connect_timeout */
    UPSTREAM_TIMEOUT_FIRST_BYTE, /* no status line and headers within first_byte_timeout */
    UPSTREAM_TIMEOUT_IDLE,       /* after the headers, no byte for idle_timeout */
    UPSTREAM_TIMEOUT_TOTAL,      /* the whole call over timeout */
    UPSTREAM_TIMEOUT_KINDS
} upstream_timeout_kind;

/* "connect_timeout", "first_byte_timeout", "idle_timeout", "timeout": the
 * [upstream.X] key that bounds it ("" for NONE). */
const char *upstream_timeout_key(upstream_timeout_kind k);
/* "connect", "first_byte", "idle", "total" (a metric label; "" for NONE). */
const char *upstream_timeout_label(upstream_timeout_kind k);

typedef struct upstream_timed_out {
    upstream_timeout_kind kind;
    long seconds; /* the limit that was passed */
} upstream_timed_out;

typedef struct upstream_timer {
    double start;                 /* monotonic seconds of the call's start */
    double last;                  /* ... of the last byte moved (or of the start) */
    int64_t moved;                /* bytes received + sent so far */
    int got_head;                 /* the headers had arrived at the last check */
    int connected;                /* the request is being sent (connecting is over) */
    double sent;                  /* ... since then: the first-byte clock starts there */
    long first_byte, idle, total; /* the limits, seconds */
} upstream_timer;

/* Starts the timer at now with req's limits. */
void upstream_timer_start(upstream_timer *t, const upstream_request *req, double now);

/*
 * Records that moved bytes have been moved in all (either direction: a
 * large body still uploading is progress) by now, whether the connection is
 * made (the request is being sent) and whether the response's headers have
 * arrived; returns the timeout that is over, or UPSTREAM_TIMEOUT_NONE.
 * While connecting only the total applies here (connect_timeout is
 * libcurl's own, so a host that does not answer is told apart from one
 * that is slow to). From the request sent to the headers first_byte
 * applies: an LLM thinking before its first token is silent, and that wait
 * is what first_byte_timeout bounds; idle_timeout bounds the gaps after it
 * (between stream chunks).
 */
upstream_timeout_kind upstream_timer_check(upstream_timer *t, double now, int64_t moved,
                                           int connected, int got_head);

#endif
