/*
 * rl_buf.h — a growable byte buffer with a hard size cap.
 *
 * Every buffer that holds client or upstream bytes has a cap taken from
 * relay.ini, so hostile or runaway input fails with RL_TOO_LARGE instead of
 * exhausting memory. The data is always NUL-terminated (not counted in len)
 * once anything was appended, so text can be used as a C string.
 */
#ifndef RELAY_STORE_BASE_RL_BUF_H
#define RELAY_STORE_BASE_RL_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "store/base/rl_err.h"

typedef struct rl_buf {
    char *data; /* NULL until the first append */
    size_t len; /* bytes used, excluding the trailing NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* largest len allowed; 0 means no cap (internal data only) */
} rl_buf;

/* Embeds an empty buffer whose length may never exceed max bytes. */
void rl_buf_init(rl_buf *b, size_t max);
/* Frees the storage; the buffer is empty (and reusable) afterwards. */
void rl_buf_release(rl_buf *b);
/* Forgets the contents, keeps the storage. */
void rl_buf_reset(rl_buf *b);

/* Append n bytes. RL_TOO_LARGE (buffer unchanged) past the cap, RL_NOMEM. */
rl_err rl_buf_append(rl_buf *b, const void *p, size_t n);
rl_err rl_buf_puts(rl_buf *b, const char *s);
rl_err rl_buf_printf(rl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
rl_err rl_buf_vprintf(rl_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Hands the storage to the caller (free() it) and leaves b empty. Never NULL
 * unless out of memory: an empty buffer yields "". */
char *rl_buf_steal(rl_buf *b, size_t *len);

#endif
