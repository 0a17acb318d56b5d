#include "store/base/rl_buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rl_buf_init(rl_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->err = RL_OK;
}

void rl_buf_release(rl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->err = RL_OK;
}

void rl_buf_reset(rl_buf *b)
{
    b->len = 0;
    b->err = RL_OK;
    if (b->data)
        b->data[0] = '\0';
}

rl_err rl_buf_error(const rl_buf *b)
{
    return b->err;
}

/* Makes room for n more bytes plus the terminating NUL; remembers a
 * failure (sticky). */
static rl_err buf_reserve(rl_buf *b, size_t n)
{
    if (b->err != RL_OK)
        return b->err;
    if (b->max && (n > b->max || b->len > b->max - n))
        return b->err = RL_TOO_LARGE;
    if (n >= SIZE_MAX - b->len)
        return b->err = RL_NOMEM;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return RL_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return b->err = RL_NOMEM;
    b->data = p;
    b->cap = cap;
    return RL_OK;
}

rl_err rl_buf_append(rl_buf *b, const void *p, size_t n)
{
    rl_err e = buf_reserve(b, n);
    if (e != RL_OK)
        return e;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return RL_OK;
}

rl_err rl_buf_puts(rl_buf *b, const char *s)
{
    return rl_buf_append(b, s, strlen(s));
}

rl_err rl_buf_vprintf(rl_buf *b, const char *fmt, va_list ap)
{
    if (b->err != RL_OK)
        return b->err;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return b->err = RL_INTERNAL;
    rl_err e = buf_reserve(b, (size_t)n);
    if (e != RL_OK)
        return e;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return RL_OK;
}

rl_err rl_buf_printf(rl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rl_err e = rl_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return e;
}

rl_err rl_buf_adopt(rl_buf *b, char *data, size_t len, size_t cap)
{
    if (b->err != RL_OK)
        return b->err;
    if (b->len != 0 || len >= cap)
        return b->err = RL_INTERNAL;
    if (b->max && len > b->max)
        return b->err = RL_TOO_LARGE;
    free(b->data);
    b->data = data;
    b->len = len;
    b->cap = cap;
    b->data[len] = '\0';
    return RL_OK;
}

char *rl_buf_steal(rl_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->err = RL_OK;
    return p;
}
