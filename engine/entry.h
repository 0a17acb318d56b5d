/*
 * entry.h — the bytes of a cached answer, as the engine stores them.
 *
 * An entry keeps the answer exactly as the upstream sent it (raw SSE bytes
 * for a stream, the JSON body otherwise), so a stream replays byte for byte;
 * a small header says which of the two it is and its content type.
 * Layout: "RLE1", kind (1 byte), content-type length n (1 byte), n bytes of
 * content type, then the body.
 */
#ifndef RELAY_ENGINE_ENTRY_H
#define RELAY_ENGINE_ENTRY_H

#include <stddef.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

typedef enum { ENTRY_BODY = 0, ENTRY_STREAM = 1 } entry_kind;

typedef struct entry_view {
    entry_kind kind;
    char content_type[256];
    const char *body; /* points into the encoded bytes */
    size_t body_len;
} entry_view;

/* Appends the encoded entry to out. */
rl_err entry_encode(rl_buf *out, entry_kind kind, const char *content_type, const char *body,
                    size_t len);
/* RL_UPSTREAM_PROTOCOL when the bytes are not an entry of this version. */
rl_err entry_decode(const char *p, size_t len, entry_view *out);

#endif
