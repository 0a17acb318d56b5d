/*
 * rl_buf.h — a growable byte buffer with a hard size cap.
 *
 * Every buffer that holds client or upstream bytes has a cap taken from
 * relay.ini, so hostile or runaway input fails with RL_TOO_LARGE instead of
 * exhausting memory. The data is always NUL-terminated (not counted in len)
 * once anything was appended, so text can be used as a C string.
 *
 * Errors are sticky (as sqlite's sqlite3_str): the first append that fails
 * (RL_TOO_LARGE past the cap, RL_NOMEM) leaves the contents as they were
 * and is remembered; every later append fails with the same error without
 * changing anything, until rl_buf_reset or rl_buf_release. So a sequence of
 * appends may ignore each result and check rl_buf_error once, before the
 * contents are used: a buffer whose rl_buf_error is not RL_OK holds a
 * prefix of what was meant (never send it as if it were whole).
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
    rl_err err; /* the first failed append's error, RL_OK while none failed */
} rl_buf;

/* Embeds an empty buffer whose length may never exceed max bytes. */
void rl_buf_init(rl_buf *b, size_t max);
/* Frees the storage; the buffer is empty, without error, and reusable. */
void rl_buf_release(rl_buf *b);
/* Forgets the contents and the error, keeps the storage. */
void rl_buf_reset(rl_buf *b);

/* RL_OK when every append since the last reset succeeded, else the first
 * error (the contents are then incomplete). */
rl_err rl_buf_error(const rl_buf *b);

/* Append n bytes. RL_TOO_LARGE (buffer unchanged) past the cap, RL_NOMEM;
 * or the error of an earlier append (sticky, see above). */
rl_err rl_buf_append(rl_buf *b, const void *p, size_t n);
rl_err rl_buf_puts(rl_buf *b, const char *s);
rl_err rl_buf_printf(rl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
rl_err rl_buf_vprintf(rl_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Makes data (from malloc, cap bytes, the first len of them used, len <
 * cap) the contents of the empty buffer b without copying it: b frees it
 * from then on. For a large value read by a library into memory of its
 * own (store_cache_get), which would otherwise be copied once more. The
 * same errors as rl_buf_append (RL_TOO_LARGE past b's cap; RL_INTERNAL
 * when b is not empty or len >= cap); on error data stays the caller's. */
rl_err rl_buf_adopt(rl_buf *b, char *data, size_t len, size_t cap);

/* Hands the storage to the caller (free() it) and leaves b empty. Never NULL
 * unless out of memory: an empty buffer yields "". */
char *rl_buf_steal(rl_buf *b, size_t *len);

#endif
