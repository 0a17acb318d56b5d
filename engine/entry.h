/*
 * entry.h — the bytes of a cached answer, as the engine stores them.
 *
 * An entry keeps the answer exactly as the upstream sent it (raw SSE bytes
 * for a stream, the JSON body otherwise), so a stream replays byte for byte;
 * a small header says which of the two it is, its content type, and labels
 * for administration (relay-admin ls/show/purge): the upstream's name, the
 * model and the namespace (X-Relay-Namespace, "" when none).
 *
 * Layout, version 2: "RLE2", kind (1 byte), then four strings, each a
 * length byte n and n bytes: content type, upstream, model, namespace; then
 * the body. Version 1 ("RLE1", written before labels existed) has only the
 * content type; it still decodes, with labelled = 0 and empty labels.
 * Strings longer than 255 bytes are cut to ENTRY_LABEL_MAX (labels are for
 * people and filters; the cache key holds the full values).
 */
#ifndef RELAY_ENGINE_ENTRY_H
#define RELAY_ENGINE_ENTRY_H

#include <stddef.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

#define ENTRY_LABEL_MAX 255
/* The most bytes a header can take: enough of a value to decode labels. */
#define ENTRY_HEAD_MAX (4 + 1 + 4 * (1 + ENTRY_LABEL_MAX))

typedef enum { ENTRY_BODY = 0, ENTRY_STREAM = 1 } entry_kind;

/* Who an answer was for; NULL fields are stored as "". */
typedef struct entry_labels {
    const char *upstream; /* [upstream.NAME] */
    const char *model;
    const char *ns; /* X-Relay-Namespace */
} entry_labels;

typedef struct entry_view {
    entry_kind kind;
    int version;  /* 1 or 2 */
    int labelled; /* 0 for version 1 entries: the labels are unknown */
    char content_type[ENTRY_LABEL_MAX + 1];
    char upstream[ENTRY_LABEL_MAX + 1];
    char model[ENTRY_LABEL_MAX + 1];
    char ns[ENTRY_LABEL_MAX + 1];
    const char *body; /* points into the encoded bytes */
    size_t body_len;
} entry_view;

/* Appends the encoded entry (version 2) to out; labels may be NULL. */
rl_err entry_encode(rl_buf *out, entry_kind kind, const char *content_type,
                    const entry_labels *labels, const char *body, size_t len);
/* Decodes version 1 or 2. p may be only the first bytes of an entry (at
 * least ENTRY_HEAD_MAX, or all of it if shorter): the body is then what
 * was given. RL_BAD_ENTRY when the bytes are not an entry. */
rl_err entry_decode(const char *p, size_t len, entry_view *out);

#endif
