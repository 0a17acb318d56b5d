/* Unit tests for engine/sse: events split at every possible byte. */
#include <stdio.h>
#include <string.h>

#include "engine/sse.h"
#include "tests/unit/tap.h"

typedef struct seen {
    char log[2048];
    int n;
} seen;

static int on_event(void *ctx, const char *event, const char *data, size_t len)
{
    seen *s = ctx;
    size_t used = strlen(s->log);
    snprintf(s->log + used, sizeof s->log - used, "[%s|%.*s]", event, (int)len, data);
    s->n++;
    return 0;
}

static int stop_at_second(void *ctx, const char *event, const char *data, size_t len)
{
    (void)event;
    (void)data;
    (void)len;
    return ++*(int *)ctx == 2;
}

static const char stream[] = ": ping\r\n\r\n"
                             "data: {\"a\":1}\n\n"
                             "event: message_start\ndata: x\ndata:  y\n\n"
                             "data:z\r\r"
                             "id: 7\nretry: 5\ndata\n\n"
                             "data: [DONE]\n\n";
static const char want[] =
    "[message|{\"a\":1}][message_start|x\n y][message|z][message|][message|[DONE]]";

int main(void)
{
    seen s;
    sse_parser p;

    memset(&s, 0, sizeof s);
    sse_init(&p, 0, on_event, &s);
    is_int(sse_feed(&p, stream, sizeof stream - 1), RL_OK, "whole stream parses");
    is_str(s.log, want, "events, names, multi-line data, CR and CRLF line ends");
    ok(sse_at_boundary(&p), "ends on an event boundary");
    sse_release(&p);

    int all_same = 1;
    for (size_t cut = 1; cut < sizeof stream - 1; cut++) {
        memset(&s, 0, sizeof s);
        sse_init(&p, 0, on_event, &s);
        sse_feed(&p, stream, cut);
        sse_feed(&p, stream + cut, sizeof stream - 1 - cut);
        if (strcmp(s.log, want) != 0) {
            all_same = 0;
            printf("# split at %zu: %s\n", cut, s.log);
        }
        sse_release(&p);
    }
    ok(all_same, "the same events whatever the split point");

    int bytewise = 1;
    memset(&s, 0, sizeof s);
    sse_init(&p, 0, on_event, &s);
    for (size_t i = 0; i < sizeof stream - 1; i++)
        sse_feed(&p, stream + i, 1);
    bytewise = strcmp(s.log, want) == 0;
    sse_release(&p);
    ok(bytewise, "the same events fed one byte at a time");

    memset(&s, 0, sizeof s);
    sse_init(&p, 0, on_event, &s);
    sse_feed(&p, "data: partial", 13);
    ok(!sse_at_boundary(&p), "a partial event is not a boundary");
    is_int(s.n, 0, "a partial event is not dispatched");
    sse_release(&p);

    memset(&s, 0, sizeof s);
    sse_init(&p, 16, on_event, &s);
    is_int(sse_feed(&p, "data: 0123456789abcdefXYZ\n\n", 27), RL_TOO_LARGE,
           "an event over the cap is refused");
    is_int(sse_feed(&p, "data: a\n\n", 9), RL_TOO_LARGE,
           "and the parser stays failed (rl_buf errors are sticky)");
    sse_release(&p);

    int calls = 0;
    sse_init(&p, 0, stop_at_second, &calls);
    is_int(sse_feed(&p, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 27), RL_STOPPED,
           "a callback that asks to stop: RL_STOPPED, not an internal error");
    is_int(calls, 2, "no event after the stop");
    sse_release(&p);
    return tap_done();
}
