/*
 * sse.h — an incremental Server-Sent Events parser.
 *
 * Bytes are fed as they arrive from the upstream, split anywhere; each
 * complete event (terminated by a blank line) is handed to a callback with
 * its event name and its data lines joined by "\n", as the WHATWG
 * EventSource rules say. Comment lines (": ping") and unknown fields are
 * skipped; CRLF, LF and CR line ends are all accepted. Memory is capped: an
 * event larger than max_event bytes is an error, not an allocation.
 */
#ifndef RELAY_ENGINE_SSE_H
#define RELAY_ENGINE_SSE_H

#include <stddef.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

/* Returns 0 to go on, non-zero to stop parsing (sse_feed then returns
 * RL_STOPPED and the parser must not be fed again). */
typedef int (*sse_event_fn)(void *ctx, const char *event, const char *data, size_t data_len);

typedef struct sse_parser {
    rl_buf line;  /* the current, unterminated line */
    rl_buf data;  /* data lines of the current event */
    rl_buf event; /* event name of the current event */
    int has_data; /* a data field was seen (even an empty one) */
    int last_cr;  /* the previous byte was CR: a following LF belongs to it */
    sse_event_fn on_event;
    void *ctx;
} sse_parser;

void sse_init(sse_parser *p, size_t max_event, sse_event_fn on_event, void *ctx);
void sse_release(sse_parser *p);

/* Feeds bytes. RL_TOO_LARGE when an event exceeds the cap, RL_NOMEM, or
 * RL_STOPPED when the callback asked to stop. After an error the parser
 * must not be fed again. */
rl_err sse_feed(sse_parser *p, const char *bytes, size_t len);

/* True when everything fed so far ended on an event boundary (no partial
 * line or event pending). */
int sse_at_boundary(const sse_parser *p);

#endif
