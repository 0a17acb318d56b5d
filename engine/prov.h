/*
 * prov.h — the contract every provider adapter (one file per wire format,
 * engine/prov_<format>.c) fulfils.
 *
 * An adapter knows its format's request bodies, streams and error shapes;
 * it knows nothing of HTTP, the cache or the store. Everything is bytes in,
 * bytes out (no JSON library type crosses this header), so the engine's
 * request flow is the same for every provider.
 */
#ifndef RELAY_ENGINE_PROV_H
#define RELAY_ENGINE_PROV_H

#include <stddef.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

/* What an adapter learned from a request body. */
typedef struct prov_info {
    char model[256];
    int stream;        /* the client asked for a streamed answer */
    int include_usage; /* a streamed answer should end with a usage chunk */
    int deterministic; /* the answer repeats (temperature 0, a seed, ...) */
    int stateful;      /* the answer depends on upstream state: never cached */
} prov_info;

/* How a stream event counts toward completeness. */
typedef enum {
    PROV_EVENT_DATA,  /* an ordinary event */
    PROV_EVENT_END,   /* the terminator: the stream is complete */
    PROV_EVENT_ERROR, /* the upstream reported an error inside the stream */
} prov_event_kind;

typedef struct prov_ops {
    const char *format; /* "openai", ... — also the first field of the key */

    /* Validates a request body for endpoint and fills info. Appends to
     * canonical the body in canonical form (sorted keys, compact, volatile
     * fields removed) for the cache key. RL_BAD_JSON or RL_BAD_REQUEST with
     * a message for the client appended to why. */
    rl_err (*inspect)(const char *endpoint, const char *body, size_t len, prov_info *info,
                      rl_buf *canonical, rl_buf *why);

    /* Classifies one parsed SSE event (see sse.h). */
    prov_event_kind (*classify_event)(const char *event, const char *data, size_t len);

    /* True when a non-stream success body is a complete answer worth
     * storing (valid JSON of the expected shape, no error inside). */
    int (*body_complete)(const char *body, size_t len);

    /* Renders a complete stream (raw SSE bytes) as the non-stream answer a
     * client would have received. */
    rl_err (*stream_to_body)(const char *sse, size_t len, rl_buf *out);

    /* Renders a non-stream answer as a valid stream ending with the
     * format's terminator; info is the *current* request (include_usage). */
    rl_err (*body_to_stream)(const char *body, size_t len, const prov_info *info, rl_buf *out);

    /* Appends an error document in the format's shape. */
    rl_err (*error_body)(rl_buf *out, rl_err err, const char *message);

    /* Appends an SSE event that ends a stream with an error, for failures
     * after the status line was sent. */
    rl_err (*error_event)(rl_buf *out, rl_err err, const char *message);
} prov_ops;

extern const prov_ops prov_openai;

#endif
