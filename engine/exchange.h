/*
 * exchange.h — engine-internal: one request's state on its way through the
 * engine, and the ways of answering its client. Shared by engine.c (the
 * request flow, cache and upstream call) and coalesce.c (leading and
 * following in-flight requests). Not for use outside engine/.
 */
#ifndef RELAY_ENGINE_EXCHANGE_H
#define RELAY_ENGINE_EXCHANGE_H

#include <stdint.h>

#include "engine/engine.h"
#include "engine/entry.h"
#include "engine/policy.h"
#include "engine/prov.h"
#include "engine/route.h"
#include "engine/stats.h"
#include "engine/upstream.h"
#include "engine/frame.h"
#include "store/base/rl_buf.h"
#include "store/ledger.h"
#include "store/store.h"
#include "store/token.h"

struct engine {
    const relay_config *cfg;
    /* NULL while the store cannot be opened: requests are served uncached
     * and engine_maintain tries again now and then. Set once, read by every
     * request thread: atomic. */
    _Atomic(store *) store;
    uint64_t store_retry_at; /* engine_maintain's thread only */
    /* With [cluster]: the shared store (store/cluster.h) holding tokens
     * and budgets, replicated to every host; NULL until it opens (then
     * what needs it answers 503, never the local store's copy). */
    _Atomic(store *) shared;
    uint64_t shared_retry_at; /* engine_maintain's thread only */
    /* Shared counters (stats.h), opened at start whether or not the store
     * opens; NULL only when out of memory (stats_problem says whether they
     * count). Set once; atomic for the same reason as store. */
    _Atomic(stats *) stats;
    /* The keys Relay holds for upstreams (auth.h), read at start. */
    struct auth_held *held;
    /* Inspections of recent requests (memo.h), shared by the request
     * threads; NULL when it could not be allocated (every request is
     * parsed then). */
    struct memo *memo;
    /* Places for upstream calls shared by the pool (admission.h); NULL
     * when its file could not be mapped: calls are then not limited. */
    struct admission *admission;
    /* The circuit breakers shared by the pool (breaker.h); NULL while
     * breaker.map cannot be mapped (every call admitted). Set at start or
     * when the store opens again; atomic for the same reason as store. */
    _Atomic(struct breaker *) breaker;
};

struct engine_worker {
    engine *e;
    upstream_client *upstream;
    /* The upstream call: upstream_perform (engine_worker_new), or a test's
     * fake upstream (see upstream_perform_fn in upstream.h). */
    upstream_perform_fn *perform;
    /* The clock, sleep and chance of retries (retry.h): the system's, or a
     * test's that never sleeps. */
    const struct retry_clock *retry_clock;
};

typedef struct coalesce_clock coalesce_clock;

/* This request's part in a shared upstream call (see coalesce.h). */
typedef struct flight_role {
    const coalesce_clock *clock; /* NULL: the system's (coalesce_system_clock) */
    int active;                  /* coalescing applies to this request */
    int leading;                 /* this request calls upstream and publishes */
    uint32_t gen;                /* the flight generation it leads or follows */
    int publishing;              /* the leader still publishes (off after a failure) */
    uint32_t published;          /* chunks published so far (the next one's number) */
    uint64_t published_bytes;    /* their size, bounded by [coalesce] max_buffer */
    /* Quiet leading (coalesce.c): while nobody follows, an answer kept
     * whole for the cache is not published; its head waits here. */
    int loud;              /* publishes as it goes: a follower came, or nothing is kept */
    int head_held;         /* a head is waiting to be published with the backlog */
    int head_status;       /* ... its status, */
    entry_kind head_kind;  /* kind */
    const char *head_type; /* and content type (the request's pool) */
} flight_role;

/* What this request may spend (engine/spend.c). */
typedef struct spend_state {
    int has_token; /* it presented a Relay client token, checked */
    /* That token, in the request's pool: most requests carry none, and the
     * exchange, zeroed for every request (a hit too), stays small. */
    store_token *token;
    char scope[4 + 32 + 1]; /* "tok:" and 32 hex digits of its hash: the cache key's scope */
    const char *held_key;   /* sent upstream instead of the client's credential (borrowed) */
    int held;               /* a reservation is open */
    uint8_t hold_id[LEDGER_ID_LEN];
    uint64_t estimate[LEDGER_UNITS]; /* what it reserved in each row */
} spend_state;

typedef struct exchange {
    engine_worker *w;
    const relay_config *cfg;
    const engine_request *req;
    const engine_sink *sink;
    const prov_ops *prov; /* error shapes; OpenAI's until routing says otherwise */
    route rt;
    /* The model named upstream when it differs from the client's (a
     * [models] line "PREFIX/" and a star removed PREFIX/: models.h), in the
     * pool; NULL when unchanged. A translated request is written with it. */
    const char *upstream_model;
    prov_request preq; /* the request as the adapter sees it */
    prov_info info;
    cache_controls cc;
    policy_decision decision;
    uint8_t key[STORE_KEY_LEN];
    char key_hex[17];         /* "" when no key was computed */
    const char *ns;           /* the key's namespace (alias.h: alias_namespace), NULL none */
    const char *cache_status; /* X-Cache value for an answer from upstream */
    /* The key's scope ("shared", "cred:…", "tok:…"; NULL before it is
     * known): also what OpenAI's prompt_cache_key is hashed with
     * (promptcache.h). Points at a string that outlives the call (a
     * literal, x->spend.scope, or serve_api's own buffer): no copy on a
     * hit, which never needs it. */
    const char *key_scope;
    /* X-Relay-Upstream: the upstream that served the answer (a fallback
     * after the route's own failed), else the route's; NULL off API routes. */
    const char *served_by;
    uint64_t now; /* unix seconds at the start of the request */

    int started;     /* status line committed */
    int client_gone; /* a write or flush failed */
    size_t sent;     /* body bytes written to the client */
    int status;      /* the status committed (0 before) */
    int failed;      /* an error was rendered (a status, or an event ending a stream) */

    /* For the accounts (stats.h), kept by the flow as it goes: */
    char client[9];        /* the client's id: 8 hex digits of its credential's hash */
    const char *outcome;   /* X-Cache of the answer the client got, "" when none */
    prov_usage usage;      /* tokens of that answer (-1 unknown) */
    int called_upstream;   /* this request called upstream */
    double latency_s;      /* the upstream call, whole */
    double ttfb_s;         /* until its status line; -1 when none came */
    double upstream_start; /* monotonic seconds */

    flight_role flight;
    spend_state spend;
    /* Why Relay refused the request before any upstream call, for the
     * counters: "token_unknown", "token_revoked", "token_expired",
     * "token_required", "forbidden_upstream", "forbidden_model",
     * "budget", "rate_limit", "unverifiable" (the store could not tell),
     * "queue_full" (no place for an upstream call in time: admission.h);
     * NULL when it did not. */
    const char *rejected;
    /* Headers of Relay's own for this answer, whatever it is
     * (Retry-After on a refusal, X-Relay-Budget-Remaining). */
    rl_header extra[3];
    size_t nextra;
    char retry_after[24], budget_remaining[64];
    char similarity[8]; /* X-Relay-Similarity of a fuzzy hit: "0.983" */
    /* The request split for fuzzy matching (engine/fuzzy_serve.h), in the
     * pool; NULL when fuzzy matching does not apply to it. */
    struct fuzzy_state *fuzzy;
    /* A call translated between the client's format and the upstream's
     * (translate.h), in the pool; NULL until one is prepared. */
    struct translate *xl;

    /* the upstream answer */
    int up_status;
    int up_is_stream;      /* a stream (SSE, NDJSON, or a streamed JSON array) */
    int passing_through;   /* buffered body overflowed: committed, streaming as is */
    rl_header *up_headers; /* pool copies, passed to the client */
    size_t up_nheaders;
    const char *up_ctype;
    rl_buf body;        /* buffered non-stream body, or the stream for the cache */
    int capture;        /* keep collecting body for the cache */
    frame_parser frame; /* of a streamed answer, from its head on */
    int frame_ready;
    int frame_lost; /* the parser failed (an event over its cap): passed on unparsed */
    int stream_complete, stream_error; /* the format's terminator, an error event */
    rl_err up_err;                     /* the route's upstream's last attempt (for its breaker) */
    int route_status;                  /* ... and its status (0: no answer) */
    int route_called;                  /* the route's upstream was called at all */
    /* Set when the route's breaker is open and its fallback takes the call
     * (with the key Relay holds for it, or NULL). */
    const upstream_config *first_fallback;
    const char *first_fallback_key;
    int breaker_verdict;          /* breaker_verdict that admitted the call */
    upstream_timed_out timed_out; /* which of the call's timeouts ended it */
    int detached; /* client_timeout answered the client and ended its request (deadline.h) */
} exchange;

store *exchange_store(const exchange *x);
/* Where tokens and budgets live: the shared store with [cluster] (NULL
 * while it cannot be opened), else the store. */
store *exchange_shared(const exchange *x);

/* The framing of the stream the client is receiving (or would receive). */
frame_kind exchange_framing(const exchange *x);

/* Whether a client request header goes upstream: not hop-by-hop ones,
 * not what libcurl or the front set, not Relay's own controls. */
int exchange_forwards_header(const char *name);

/* Write to / flush the client; -1 once it is gone (remembered). */
int exchange_write(exchange *x, const void *p, size_t n);
int exchange_flush(exchange *x);
/* Whether about len bytes can go to the client now without waiting for it
 * (engine_sink.ready); 0 when the client is gone or the front cannot tell. */
int exchange_ready(exchange *x, size_t len);

/*
 * Commits the status line and headers exactly once: content type, Relay's
 * headers (X-Cache = cache_status, X-Relay-Key, Age when age >= 0) and, when
 * with_upstream_headers, the upstream's own headers minus hop-by-hop ones.
 * Returns -1 if the client is gone.
 */
int exchange_start(exchange *x, int status, const char *content_type, const char *cache_status,
                   long age, int with_upstream_headers);

/* Renders an error in the client's format: a whole response if nothing was
 * sent yet, else an error event that ends the stream. message NULL: the
 * error's own text. */
void exchange_fail(exchange *x, rl_err err, const char *message);

/* The text composed in b for exchange_fail, or NULL when composing it
 * failed (rl_buf's sticky error): a message cut short is never sent as if
 * it were whole; the error's own text is sent instead. */
static inline const char *exchange_message(const rl_buf *b)
{
    return rl_buf_error(b) == RL_OK ? b->data : NULL;
}

/*
 * Sends a complete answer (status, content type, body of `kind`) in the form
 * this request asked for: a stream request gets a stream, a non-stream
 * request a body, converted by the adapter when the forms differ (only for
 * 2xx answers; errors pass as they are). RL_OK when sent, else the
 * conversion's error (nothing sent).
 */
rl_err exchange_send_answer(exchange *x, int status, entry_kind kind, const char *content_type,
                            const char *body, size_t len, const char *cache_status, long age);

#endif
