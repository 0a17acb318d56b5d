#include "engine/frame.h"

#include <string.h>
#include <strings.h>

frame_kind frame_kind_of(const char *content_type)
{
    if (!content_type || strncasecmp(content_type, "text/event-stream", 17) == 0)
        return FRAME_SSE;
    if (strncasecmp(content_type, "application/x-ndjson", 20) == 0 ||
        strncasecmp(content_type, "application/jsonl", 17) == 0 ||
        strncasecmp(content_type, "application/ndjson", 18) == 0)
        return FRAME_NDJSON;
    return FRAME_JSON_ARRAY;
}

const char *frame_content_type(frame_kind kind)
{
    switch (kind) {
    case FRAME_NDJSON:
        return "application/x-ndjson";
    case FRAME_JSON_ARRAY:
        return "application/json; charset=UTF-8";
    case FRAME_SSE:
        break;
    }
    return "text/event-stream; charset=utf-8";
}

void frame_init(frame_parser *p, frame_kind kind, size_t max_event, frame_event_fn on_event,
                void *ctx)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    if (kind == FRAME_SSE)
        sse_init(&p->sse, max_event, on_event, ctx);
    rl_buf_init(&p->item, max_event);
    p->on_event = on_event;
    p->ctx = ctx;
}

void frame_release(frame_parser *p)
{
    if (p->kind == FRAME_SSE)
        sse_release(&p->sse);
    rl_buf_release(&p->item);
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* Hands the collected item (an NDJSON line or an array element) over. */
static rl_err emit(frame_parser *p)
{
    rl_err err = RL_OK;
    if (p->item.len && !blank(p->item.data, p->item.len) &&
        p->on_event(p->ctx, NULL, p->item.data, p->item.len) != 0)
        err = RL_STOPPED;
    rl_buf_reset(&p->item);
    return err;
}

static rl_err feed_ndjson(frame_parser *p, const char *s, size_t len)
{
    while (len) {
        const char *nl = memchr(s, '\n', len);
        size_t n = nl ? (size_t)(nl - s) : len;
        rl_err err = rl_buf_append(&p->item, s, n);
        if (err == RL_OK && nl)
            err = emit(p);
        if (err != RL_OK)
            return err;
        s += n + (nl ? 1 : 0);
        len -= n + (nl ? 1 : 0);
    }
    return RL_OK;
}

/*
 * A JSON array streamed element by element: "[" elem ("," elem)* "]".
 * Only strings and nesting need tracking to find where an element ends;
 * the adapter parses each element itself.
 */
static rl_err feed_array(frame_parser *p, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (p->closed) {
            if (!blank(&c, 1))
                return RL_UPSTREAM_PROTOCOL;
            continue;
        }
        if (!p->opened) {
            if (c == '[') {
                p->opened = 1;
                p->depth = 1;
            } else if (!blank(&c, 1)) {
                return RL_UPSTREAM_PROTOCOL;
            }
            continue;
        }
        if (p->depth == 1 && !p->in_string) {
            /* Between elements. */
            if (c == ',' || blank(&c, 1)) {
                rl_err err = emit(p);
                if (err != RL_OK)
                    return err;
                continue;
            }
            if (c == ']') {
                rl_err err = emit(p);
                p->closed = 1;
                p->depth = 0;
                if (err != RL_OK)
                    return err;
                continue;
            }
        }
        rl_err err = rl_buf_append(&p->item, &c, 1);
        if (err != RL_OK)
            return err;
        if (p->in_string) {
            if (p->escaped)
                p->escaped = 0;
            else if (c == '\\')
                p->escaped = 1;
            else if (c == '"')
                p->in_string = 0;
        } else if (c == '"') {
            p->in_string = 1;
        } else if (c == '{' || c == '[') {
            p->depth++;
        } else if (c == '}' || c == ']') {
            if (--p->depth == 1) {
                err = emit(p);
                if (err != RL_OK)
                    return err;
            }
        }
    }
    return RL_OK;
}

rl_err frame_feed(frame_parser *p, const char *bytes, size_t len)
{
    switch (p->kind) {
    case FRAME_NDJSON:
        return feed_ndjson(p, bytes, len);
    case FRAME_JSON_ARRAY:
        return feed_array(p, bytes, len);
    case FRAME_SSE:
        break;
    }
    return sse_feed(&p->sse, bytes, len);
}

rl_err frame_finish(frame_parser *p)
{
    switch (p->kind) {
    case FRAME_NDJSON:
        return emit(p);
    case FRAME_JSON_ARRAY:
        return RL_OK; /* an element is only ever handed over whole */
    case FRAME_SSE:
        break;
    }
    return sse_at_boundary(&p->sse) ? RL_OK : sse_feed(&p->sse, "\n\n", 2);
}

int frame_whole(const frame_parser *p)
{
    switch (p->kind) {
    case FRAME_NDJSON:
        return p->item.len == 0 || blank(p->item.data, p->item.len);
    case FRAME_JSON_ARRAY:
        return p->closed;
    case FRAME_SSE:
        break;
    }
    return sse_at_boundary(&p->sse);
}

rl_err frame_each(frame_kind kind, const char *bytes, size_t len, frame_event_fn on_event,
                  void *ctx)
{
    frame_parser p;
    frame_init(&p, kind, 0, on_event, ctx);
    rl_err err = frame_feed(&p, bytes, len);
    if (err == RL_OK)
        err = frame_finish(&p);
    frame_release(&p);
    return err;
}
