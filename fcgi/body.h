/*
 * body.h — reading a request body against a whole-body deadline, with a
 * reserve of threads kept for requests whose body is already there.
 *
 * Why: a worker thread reads the body before the engine sees the request,
 * with blocking reads on the request's connection. Caddy and Apache's
 * mod_proxy_fcgi pass a client's body on as it comes, so a client sending
 * one byte every two seconds would hold a thread for as long as it likes,
 * and workers x threads such clients would stall Relay, /relay/health
 * included. So:
 *  - the whole body must arrive within [fcgi] body_timeout (a deadline for
 *    the body, not for each read: a trickle that never pauses long still
 *    ends), else BODY_TIMED_OUT (the engine answers 408);
 *  - at most threads - [fcgi] reserve_threads threads of a process wait on
 *    bodies at once (a "slot" each). A request that finds every slot taken
 *    is read without one only for a short grace: a body that is already
 *    there (or comes at once) is read whole, a slow one gets
 *    BODY_OVERLOADED (503) at the end of the grace. The reserve threads
 *    thus go from one cheap request to the next, whatever slow clients do.
 *
 * Kept apart from front.c (which owns libfcgi) so that the policy is
 * unit-tested with a scripted source and a fake clock: nothing here sleeps,
 * reads a clock or touches a socket.
 */
#ifndef RELAY_FCGI_BODY_H
#define RELAY_FCGI_BODY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"

/* What body_source.read returns besides a count. */
enum { BODY_SRC_TIMEOUT = -1, BODY_SRC_ERROR = -2 };

/* Where a body comes from (front.c: the FastCGI request's stdin). */
typedef struct body_source {
    void *ctx;
    /* Copies up to cap (> 0) bytes of the body into buf. Bytes already
     * received are returned at once; otherwise it waits for the connection
     * for at most wait_ms (> 0). Returns the count (> 0), 0 at the end of
     * the body, BODY_SRC_TIMEOUT when nothing came within wait_ms, or
     * BODY_SRC_ERROR when the connection broke. After either of the last
     * two, body_read never calls it again (libfcgi's stream is closed). */
    long (*read)(void *ctx, char *buf, size_t cap, uint64_t wait_ms);
    /* A monotonic clock, in milliseconds. */
    uint64_t (*now_ms)(void *ctx);
} body_source;

/* The slots of one process: shared by its threads, lock-free. */
typedef struct body_gate {
    atomic_int held;
    int slots;
} body_gate;

/* threads - reserve slots; at least one, so that a process with a single
 * thread (under mod_fcgid or spawn-fcgi) can still read a body. */
void body_gate_init(body_gate *g, int threads, int reserve);

typedef struct body_limits {
    size_t max_body;     /* [fcgi] max_body */
    uint64_t timeout_ms; /* [fcgi] body_timeout: the whole body, from the first read */
    uint64_t grace_ms;   /* how long a request without a slot may wait in all */
} body_limits;

typedef enum {
    BODY_COMPLETE,   /* the whole body is in out */
    BODY_TOO_LARGE,  /* over max_body: out is empty; the rest was drained until the end or
                      * the deadline */
    BODY_TIMED_OUT,  /* not all there before the deadline */
    BODY_OVERLOADED, /* every slot taken, and the body not there within the grace */
    BODY_BROKEN,     /* the connection failed (the front is gone) */
    BODY_NOMEM,
} body_result;

/*
 * Reads the body from src into out (an empty buffer whose cap is
 * lim->max_body), holding one of gate's slots, when it can get one, until
 * it returns. *at_end is 1 when the body was read to its end, 0 when
 * reading stopped before (the caller must not read the connection again,
 * and should shut its read side so that the front stops sending).
 */
body_result body_read(const body_source *src, body_gate *gate, const body_limits *lim, rl_buf *out,
                      int *at_end);

#endif
