/*
 * engine.h — what the front (fcgi/) hands to the engine and how the engine
 * answers.
 *
 * The front parses a FastCGI request into an engine_request (pool-owned
 * strings, header names lower-case with dashes, body already read and
 * capped) and implements an engine_sink that writes to the client. The
 * engine decides everything else: route, authentication, cache key, policy,
 * lookup, the upstream call and what is stored.
 *
 * Threads: one engine per process, shared; one engine_worker per request
 * thread (it owns the thread's upstream connection for keep-alive).
 */
#ifndef RELAY_ENGINE_ENGINE_H
#define RELAY_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "store/base/rl_err.h"
#include "store/base/rl_pool.h"

typedef struct rl_header {
    const char *name; /* lower-case, e.g. "content-type" */
    const char *value;
} rl_header;

typedef struct engine_request {
    rl_pool *pool;      /* owns everything below and dies with the request */
    const char *id;     /* short request id for logs and X-Request-Id */
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* raw path without the query, e.g. "/v1/chat/completions" */
    const char *query;  /* raw query without '?', "" if none */
    const rl_header *headers;
    size_t nheaders;
    const char *body; /* NUL-terminated for convenience; may contain NULs */
    size_t body_len;
    int body_too_large; /* the front stopped reading at [fcgi] max_body */
    /* RL_OK, or why the front has no whole body: RL_BODY_TIMEOUT (not all
     * there within [fcgi] body_timeout), RL_OVERLOADED (too many slow bodies
     * at once). The engine answers it in the client's format, whatever the
     * route, and looks at nothing else. */
    rl_err body_error;
} engine_request;

/*
 * The client connection. start() commits the status line and headers and
 * is called exactly once, before any write. write() queues bytes; flush()
 * pushes them to the client now (used per stream chunk). Both return 0, or
 * -1 once the client is known to be gone; after -1 the engine stops writing
 * but may finish its upstream work (to cache an answer already paid for).
 *
 * ready() (optional, NULL when the front cannot tell) returns 1 when about
 * len bytes, headers included, can be written and flushed right now without
 * waiting for the client to read, else 0. It lets another thread write for
 * this request without risking being held up by it (engine/coalesce.c);
 * the writes themselves stay blocking.
 *
 * end() (optional, NULL when the front cannot) says the answer written so
 * far is whole: the front ends the request now, so the client gets it while
 * the engine's thread goes on with upstream work it no longer reports
 * (engine/deadline.h: client_timeout). Every call after it returns -1; the
 * request (its pool, body and headers) stays valid until engine_handle
 * returns.
 */
typedef struct engine_sink {
    void *ctx;
    int (*start)(void *ctx, int status, const rl_header *headers, size_t nheaders);
    int (*write)(void *ctx, const void *data, size_t len);
    int (*flush)(void *ctx);
    int (*ready)(void *ctx, size_t len);
    int (*end)(void *ctx);
} engine_sink;

typedef struct engine engine;
typedef struct engine_worker engine_worker;

/* Creates the process's engine: opens the store (a store that cannot be
 * opened is logged and the engine serves uncached), initialises libcurl.
 * Call once per process, after fork and before threads start. The config
 * is borrowed and must outlive the engine. */
rl_err engine_new(const relay_config *cfg, engine **out);
void engine_free(engine *e);

/* Per-thread state; NULL when out of memory. */
engine_worker *engine_worker_new(engine *e);
void engine_worker_free(engine_worker *w);

/* Serves one request to completion. Never fails: every problem becomes a
 * response in the client's wire format (or, after the status was sent, an
 * error event in the stream). */
void engine_handle(engine_worker *w, const engine_request *req, const engine_sink *sink);

/* Housekeeping for the store; call about once a second from one thread.
 * Returns 1 when this process should be replaced (drain and exit, so the
 * supervisor starts a fresh one): some of its threads are stranded for good
 * in the store after another process was killed mid-write. */
int engine_maintain(engine *e, uint64_t now);

/* Looks up a header by lower-case name; NULL if absent. */
const char *engine_header(const engine_request *req, const char *name);

#endif
