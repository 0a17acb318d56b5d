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
    long connect_timeout, idle_timeout, timeout; /* seconds */
} upstream_request;

typedef struct upstream_handler {
    void *ctx;
    /* Once, with the final status and the response headers (names
     * lower-case), before any on_data. Return -1 to abort the call. */
    int (*on_head)(void *ctx, int status, const rl_header *headers, size_t nheaders);
    /* Body bytes as they arrive. Return -1 to abort the call. */
    int (*on_data)(void *ctx, const char *data, size_t len);
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
 * The idle timer of a call: idle_timeout is "seconds without any byte", in
 * either direction, measured from the last byte (libcurl's own low-speed
 * limit averages over a window and fired at ~16 s for 10). Checked from
 * libcurl's progress callback, which runs at least once a second; exposed
 * so that its unit test passes the time in.
 */
typedef struct upstream_idle {
    double last;   /* monotonic seconds of the last byte (or of the start) */
    int64_t moved; /* bytes received + sent so far */
} upstream_idle;

/* Starts the timer at now. */
void upstream_idle_start(upstream_idle *t, double now);
/* Records that moved bytes have been moved in all by now; returns 1 when
 * more than idle_timeout seconds passed since the last byte. */
int upstream_idle_expired(upstream_idle *t, double now, int64_t moved, long idle_timeout);

#endif
