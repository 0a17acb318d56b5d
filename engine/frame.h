/*
 * frame.h — the framings of streamed answers, parsed incrementally.
 *
 * Providers stream in three framings:
 *   FRAME_SSE         text/event-stream (OpenAI, Anthropic, Gemini ?alt=sse)
 *   FRAME_NDJSON      one JSON document per line (Ollama)
 *   FRAME_JSON_ARRAY  one JSON array whose elements arrive one by one
 *                     (Gemini :streamGenerateContent without alt=sse)
 * A frame_parser is fed bytes as they arrive, split anywhere, and hands
 * each complete event to a callback: for SSE its event name and data (see
 * sse.h), for NDJSON one non-blank line (event NULL), for a JSON array one
 * element's JSON text (event NULL). Memory is capped per event.
 */
#ifndef RELAY_ENGINE_FRAME_H
#define RELAY_ENGINE_FRAME_H

#include <stddef.h>

#include "engine/sse.h"
#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

typedef enum { FRAME_SSE, FRAME_NDJSON, FRAME_JSON_ARRAY } frame_kind;

/* The framing a streamed answer with this content type uses:
 * text/event-stream -> SSE, application/x-ndjson (or jsonl) -> NDJSON,
 * anything else (application/json) -> JSON array. NULL -> SSE. */
frame_kind frame_kind_of(const char *content_type);
/* The content type to send a stream of this framing with. */
const char *frame_content_type(frame_kind kind);

/* Same contract as sse_event_fn: 0 goes on, non-zero stops parsing. */
typedef sse_event_fn frame_event_fn;

typedef struct frame_parser {
    frame_kind kind;
    sse_parser sse; /* FRAME_SSE */
    rl_buf item;    /* NDJSON: the current line; JSON array: the current element */
    int depth;      /* JSON array: nesting depth, 1 inside the array */
    int in_string, escaped;
    int opened, closed; /* JSON array: '[' and the matching ']' seen */
    int bad;            /* JSON array: bytes outside any element that do not belong */
    frame_event_fn on_event;
    void *ctx;
} frame_parser;

void frame_init(frame_parser *p, frame_kind kind, size_t max_event, frame_event_fn on_event,
                void *ctx);
void frame_release(frame_parser *p);

/* Feeds bytes. RL_TOO_LARGE when an event exceeds the cap, RL_NOMEM,
 * RL_UPSTREAM_PROTOCOL for a JSON array that is not one, or RL_STOPPED
 * when the callback asked to stop. After an error the parser must not be
 * fed again (its buffers' errors are sticky, rl_buf.h). */
rl_err frame_feed(frame_parser *p, const char *bytes, size_t len);

/* End of input: hands over a last SSE event or NDJSON line that lacks its
 * terminating blank line or newline. Same results as frame_feed. */
rl_err frame_finish(frame_parser *p);

/* True when what was fed so far is a whole stream as far as framing goes:
 * SSE and NDJSON at an event boundary, a JSON array closed by its ']'.
 * (Whether the *content* is complete is the adapter's terminator.) */
int frame_whole(const frame_parser *p);

/* Parses a complete stream in one go: init, feed, finish, release. */
rl_err frame_each(frame_kind kind, const char *bytes, size_t len, frame_event_fn on_event,
                  void *ctx);

#endif
