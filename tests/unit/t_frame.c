/* Unit tests for engine/frame: the three stream framings, fed in pieces. */
#include <stdio.h>
#include <string.h>

#include "engine/frame.h"
#include "tests/unit/tap.h"

typedef struct seen {
    char events[16][128];
    char names[16][32];
    int n;
} seen;

static int collect(void *ctx, const char *event, const char *data, size_t len)
{
    seen *s = ctx;
    if (s->n < 16) {
        snprintf(s->events[s->n], sizeof s->events[0], "%.*s", (int)len, data);
        snprintf(s->names[s->n], sizeof s->names[0], "%s", event ? event : "(null)");
    }
    s->n++;
    return 0;
}

/* Feeds text one byte at a time (the hardest split). */
static rl_err feed_bytes(frame_parser *p, const char *text)
{
    for (size_t i = 0; text[i]; i++) {
        rl_err err = frame_feed(p, text + i, 1);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

int main(void)
{
    is_int(frame_kind_of("text/event-stream; charset=utf-8"), FRAME_SSE, "SSE by type");
    is_int(frame_kind_of("application/x-ndjson"), FRAME_NDJSON, "NDJSON by type");
    is_int(frame_kind_of("application/json; charset=UTF-8"), FRAME_JSON_ARRAY,
           "JSON: a streamed array");
    is_int(frame_kind_of(NULL), FRAME_SSE, "no type: SSE");
    is_str(frame_content_type(FRAME_NDJSON), "application/x-ndjson", "NDJSON's type");

    frame_parser p;
    seen s = {.n = 0};
    frame_init(&p, FRAME_NDJSON, 1024, collect, &s);
    is_int(feed_bytes(&p, "{\"a\":1}\n\n{\"b\":\"x\\ny\"}\r\n{\"done\":true}"), RL_OK,
           "NDJSON fed byte by byte");
    is_int(s.n, 2, "two whole lines so far (blank lines skipped)");
    ok(!frame_whole(&p), "a last line without its newline is not whole");
    is_int(frame_finish(&p), RL_OK, "finish");
    is_int(s.n, 3, "finish hands over the last line");
    is_str(s.events[1], "{\"b\":\"x\\ny\"}\r", "a line keeps its bytes (CR included)");
    is_str(s.names[0], "(null)", "NDJSON events have no name");
    frame_release(&p);

    memset(&s, 0, sizeof s);
    frame_init(&p, FRAME_JSON_ARRAY, 1024, collect, &s);
    const char *array = "[{\"t\":\"a]},{\"}\n,\r\n{\"n\":[1,{\"x\":[]}],\"e\":\"\\\"\"}\n]";
    is_int(feed_bytes(&p, array), RL_OK, "a JSON array fed byte by byte");
    is_int(s.n, 2, "two elements");
    is_str(s.events[0], "{\"t\":\"a]},{\"}", "brackets and commas inside strings are text");
    is_str(s.events[1], "{\"n\":[1,{\"x\":[]}],\"e\":\"\\\"\"}", "nesting and escapes");
    ok(frame_whole(&p), "closed by its bracket");
    frame_release(&p);

    memset(&s, 0, sizeof s);
    frame_init(&p, FRAME_JSON_ARRAY, 1024, collect, &s);
    is_int(frame_feed(&p, "[{\"a\":1},{\"b\"", 13), RL_OK, "a cut array");
    is_int(s.n, 1, "only the whole element");
    ok(!frame_whole(&p), "a cut array is not whole");
    frame_release(&p);

    memset(&s, 0, sizeof s);
    frame_init(&p, FRAME_JSON_ARRAY, 1024, collect, &s);
    is_int(frame_feed(&p, "{\"error\":1}", 11), RL_UPSTREAM_PROTOCOL,
           "an object where an array should be is refused");
    frame_release(&p);
    frame_init(&p, FRAME_JSON_ARRAY, 1024, collect, &s);
    is_int(frame_feed(&p, "[1] x", 5), RL_UPSTREAM_PROTOCOL, "bytes after the array are refused");
    frame_release(&p);

    memset(&s, 0, sizeof s);
    frame_init(&p, FRAME_JSON_ARRAY, 16, collect, &s);
    is_int(frame_feed(&p, "[{\"long\":\"0123456789abcdef\"}]", 29), RL_TOO_LARGE,
           "an element over the cap is RL_TOO_LARGE");
    frame_release(&p);

    memset(&s, 0, sizeof s);
    frame_init(&p, FRAME_SSE, 1024, collect, &s);
    is_int(feed_bytes(&p, "event: message_start\ndata: {\"a\":1}\n\n: ping\n\ndata: [DONE]"), RL_OK,
           "SSE fed byte by byte");
    is_int(s.n, 1, "one event so far");
    is_str(s.names[0], "message_start", "the event name");
    ok(!frame_whole(&p), "an unterminated event is not whole");
    is_int(frame_finish(&p), RL_OK, "finish");
    is_int(s.n, 2, "finish dispatches the last event");
    is_str(s.events[1], "[DONE]", "its data");
    frame_release(&p);

    memset(&s, 0, sizeof s);
    is_int(frame_each(FRAME_NDJSON, "{}\n{}\n", 6, collect, &s), RL_OK, "frame_each");
    is_int(s.n, 2, "frame_each saw both lines");
    return tap_done();
}
