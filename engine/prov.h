/*
 * prov.h — the contract every provider adapter (one file per wire format,
 * engine/prov_<format>.c) fulfils.
 *
 * An adapter knows its format's request bodies, credentials, streams,
 * usage figures and error shapes; it knows nothing of HTTP transport, the
 * cache or the store. Everything is bytes in, bytes out (no JSON library
 * type crosses this header), so the engine's request flow is the same for
 * every provider.
 *
 * Endpoint names (prov_request.endpoint, chosen by engine/route.c):
 *   openai (also Azure OpenAI and OpenAI-compatible servers):
 *       "chat.completions", "completions", "embeddings", "responses", "models"
 *   anthropic: "messages", "messages.count_tokens"
 *   gemini:    "generateContent" (streamGenerateContent too: info.stream),
 *              "countTokens", "embedContent"
 *   ollama:    "chat", "generate", "embed"
 */
#ifndef RELAY_ENGINE_PROV_H
#define RELAY_ENGINE_PROV_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/entry.h"
#include "engine/frame.h"
#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

/* The request as an adapter sees it. */
typedef struct prov_request {
    const char *endpoint; /* see above */
    const char *method;   /* "POST", "GET" */
    const char *path;     /* as forwarded upstream (a mount prefix removed) */
    const char *query;    /* raw, without '?', "" when none */
    const char *body;
    size_t body_len;
    const rl_header *headers; /* lower-case names */
    size_t nheaders;
} prov_request;

/* The value of header name (lower-case), or NULL. */
const char *prov_header(const prov_request *r, const char *name);
/* Copies the URL-decoded value of query parameter name into buf (cap
 * bytes, NUL-terminated); returns buf, or NULL when absent or too long. */
const char *prov_query_param(const prov_request *r, const char *name, char *buf, size_t cap);
/* The byte that "%XX" at s stands for (s holding avail bytes), or -1 when
 * s does not start with a percent escape. */
int prov_pct_byte(const char *s, size_t avail);
/* Credentials: a value counts as one only when it is a single token of
 * visible ASCII characters (no space, no control), so an empty
 * "Authorization: Bearer" or a stray header is not taken for a key (under
 * [cache] scope = shared any credential reads the cache). */
int prov_credential_ok(const char *value);
/* The token of "Authorization: <scheme> TOKEN" when the header has that
 * scheme (any case; NULL scheme: any scheme) and a valid token, else NULL.
 * Points into the header's value. */
const char *prov_auth_token(const prov_request *r, const char *scheme);
/* The key itself of credential (what ops->credential returned for r):
 * OpenAI's credential is its whole Authorization value, which an
 * upstream of another type must get without its scheme. Points into the
 * header or credential; NULL when credential is. */
const char *prov_credential_key(const prov_request *r, const char *credential);

/* 1 when the query has parameter name (lower-case ASCII; with a value of
 * any length, or none), else 0. Parameters are separated by '&' or ';';
 * their names are compared with percent-escapes and '+' decoded and ASCII
 * case ignored, as the servers and frameworks that read them may do:
 * ?Token=, ?tok%65n= and ?x=1;token= all have "token". */
int prov_query_has(const prov_request *r, const char *name);

/* What an adapter learned from a request. */
typedef struct prov_info {
    char model[256];
    int stream;         /* the client asked for a streamed answer */
    frame_kind framing; /* ... in this framing (SSE unless the format says otherwise) */
    int include_usage;  /* a streamed answer should end with a usage chunk (OpenAI) */
    int deterministic;  /* the answer repeats (temperature 0, a seed, embeddings, ...) */
    int stateful;       /* the answer depends on upstream state: never cached */
    int tools;          /* it offers the model tools ([upstream.X] cache_tools) */
    long max_ttl;       /* > 0: never keep the answer longer (model lists) */
    /* The most output tokens the request lets the model produce, all
     * choices together (max_tokens, max_completion_tokens,
     * max_output_tokens, maxOutputTokens, num_predict, times n or
     * candidateCount); 0 for endpoints that produce none (embeddings, token
     * counts, model lists); -1 when the request sets no cap. What a budget
     * reserves before the call (with the prompt's estimate). */
    int64_t max_output;
} prov_info;

/* Tokens of one answer; -1 where the answer does not say. input counts
 * every input token, cached_input (read from the provider's prompt cache)
 * and cache_write (written to it, which Anthropic bills above input)
 * included; output includes reasoning ("thinking") tokens. */
typedef struct prov_usage {
    int64_t input, output, cached_input, cache_write;
    /* An event could not be read for want of memory: the counts are
     * unknown (-1) and stay so, since counts put together from part of an
     * answer would be wrong ones (see usage_event). */
    int lost;
} prov_usage;

#define PROV_USAGE_UNKNOWN ((prov_usage){-1, -1, -1, -1, 0})

/* How a stream event counts toward completeness. */
typedef enum {
    PROV_EVENT_DATA,  /* an ordinary event */
    PROV_EVENT_END,   /* the terminator: the stream is complete */
    PROV_EVENT_ERROR, /* the upstream reported an error inside the stream */
} prov_event_kind;

typedef struct prov_ops {
    const char *format; /* "openai", ... — also the first field of the key */

    /* The credential the client presented, in this format's places
     * (headers, or a query parameter copied into buf), or NULL. It scopes
     * the cache key; it is never logged. */
    const char *(*credential)(const prov_request *r, char *buf, size_t cap);
    /* The 401 message when there is none, in this format's words. */
    const char *missing_credential;

    /* Validates the request and fills info. Appends to canonical the body
     * in canonical form (sorted keys, compact, volatile fields removed) and
     * to key_parts what else changes the answer (API version headers, a
     * model or deployment in the path), both for the cache key. RL_BAD_JSON
     * or RL_BAD_REQUEST with a message for the client appended to why.
     * Appends may fail (sticky, rl_buf.h): the engine checks canonical,
     * key_parts and why before using them.
     * A GET endpoint ("models") has no body. */
    rl_err (*inspect)(const prov_request *r, prov_info *info, rl_buf *canonical, rl_buf *key_parts,
                      rl_buf *why);
    /* The request headers inspect reads (lower-case, NULL-terminated, at
     * most MEMO_MAX_HEADERS; NULL: none). The engine hands inspect these
     * and no other (engine/memo.h: its results are reused for requests
     * equal in them, the body, endpoint, method, path and query), so
     * inspect must depend on nothing else: not time, config or
     * credentials. */
    const char *const *inspect_headers;

    /* Classifies one stream event (see frame.h: for SSE its event name and
     * data; for NDJSON a line; for a JSON array an element). An event it
     * cannot read for want of memory is PROV_EVENT_ERROR: whether the
     * stream is complete cannot be told, so it is passed on but not kept. */
    prov_event_kind (*classify_event)(const char *event, const char *data, size_t len);

    /* True when a non-stream success body is a complete answer worth
     * storing (valid JSON of the expected shape, no error inside). */
    int (*body_complete)(const char *body, size_t len);

    /* Renders a complete stream (raw bytes in the given framing) as the
     * non-stream answer a client would have received. */
    rl_err (*stream_to_body)(frame_kind framing, const char *stream, size_t len, rl_buf *out);

    /* Renders a non-stream answer as a valid stream in info->framing,
     * ending with the format's terminator; info is the *current* request. */
    rl_err (*body_to_stream)(const char *body, size_t len, const prov_info *info, rl_buf *out);

    /* Reads the token counts of a complete answer (a body, or a stream in
     * the given framing). RL_OK with -1 fields when it has none; RL_NOMEM
     * (and -1 fields) when it could not be read for want of memory. */
    rl_err (*usage)(entry_kind kind, frame_kind framing, const char *data, size_t len,
                    prov_usage *out);

    /* The same, one stream event at a time, as the stream passes (the
     * engine counts streams it does not keep): updates the prov_usage at
     * ctx with what the event says, keeping what earlier events said. An
     * event it cannot read for want of memory makes the usage lost (see
     * prov_usage), and later events leave a lost usage alone.
     * Shaped as a frame_event_fn; its return value means nothing. */
    int (*usage_event)(void *ctx, const char *event, const char *data, size_t len);

    /* Appends an error document in the format's shape. */
    rl_err (*error_body)(rl_buf *out, rl_err err, const char *message);

    /* Appends what ends a stream of the given framing with an error, for
     * failures after the status line was sent; opened: some of the stream
     * already went to the client (a JSON array needs its "[" otherwise). */
    rl_err (*error_event)(rl_buf *out, frame_kind framing, int opened, rl_err err,
                          const char *message);
} prov_ops;

extern const prov_ops prov_openai; /* also azure and openai-compatible */
extern const prov_ops prov_anthropic;
extern const prov_ops prov_gemini;
extern const prov_ops prov_ollama;

#endif
