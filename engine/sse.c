#include "engine/sse.h"

#include <string.h>

void sse_init(sse_parser *p, size_t max_event, sse_event_fn on_event, void *ctx)
{
    memset(p, 0, sizeof *p);
    rl_buf_init(&p->line, max_event);
    rl_buf_init(&p->data, max_event);
    rl_buf_init(&p->event, 256);
    p->on_event = on_event;
    p->ctx = ctx;
}

void sse_release(sse_parser *p)
{
    rl_buf_release(&p->line);
    rl_buf_release(&p->data);
    rl_buf_release(&p->event);
}

/* Dispatches the pending event (if it has data) and starts a new one. */
static rl_err dispatch(sse_parser *p)
{
    int stop = 0;
    if (p->has_data)
        stop = p->on_event(p->ctx, p->event.len ? p->event.data : "message",
                           p->data.data ? p->data.data : "", p->data.len);
    rl_buf_reset(&p->data);
    rl_buf_reset(&p->event);
    p->has_data = 0;
    return stop ? RL_STOPPED : RL_OK;
}

/* Interprets one complete line (without its terminator). */
static rl_err process_line(sse_parser *p, const char *line, size_t len)
{
    if (len == 0)
        return dispatch(p);
    if (line[0] == ':')
        return RL_OK; /* comment, e.g. a keep-alive ping */
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - nlen - 1 : 0;
    if (vlen && value[0] == ' ') {
        value++;
        vlen--;
    }
    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        rl_err e;
        if (p->has_data && (e = rl_buf_append(&p->data, "\n", 1)) != RL_OK)
            return e;
        p->has_data = 1;
        return rl_buf_append(&p->data, value, vlen);
    }
    if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        rl_buf_reset(&p->event);
        return rl_buf_append(&p->event, value, vlen);
    }
    return RL_OK; /* id, retry and unknown fields do not matter here */
}

rl_err sse_feed(sse_parser *p, const char *bytes, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (p->last_cr && bytes[i] == '\n') {
            p->last_cr = 0;
            i++;
            continue;
        }
        p->last_cr = 0;
        /* Copy up to the next line end in one step. */
        size_t j = i;
        while (j < len && bytes[j] != '\n' && bytes[j] != '\r')
            j++;
        rl_err e = rl_buf_append(&p->line, bytes + i, j - i);
        if (e != RL_OK)
            return e;
        if (j == len)
            break;
        p->last_cr = bytes[j] == '\r';
        e = process_line(p, p->line.data ? p->line.data : "", p->line.len);
        rl_buf_reset(&p->line);
        if (e != RL_OK)
            return e;
        i = j + 1;
    }
    return RL_OK;
}

int sse_at_boundary(const sse_parser *p)
{
    return p->line.len == 0 && !p->has_data && p->event.len == 0;
}
