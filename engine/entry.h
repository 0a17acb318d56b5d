/*
 * entry.h — the bytes of a cached answer, as the engine stores them.
 *
 * An entry keeps the answer exactly as the upstream sent it (raw SSE bytes
 * for a stream, the JSON body otherwise), so a stream replays byte for byte;
 * a small header says which of the two it is, its content type, and labels
 * for administration (relay-admin ls/show/purge): the upstream's name, the
 * model and the namespace (X-Relay-Namespace, "" when none).
 *
 * The header also carries the answer's token usage, read once when the
 * answer is stored: a hit accounts what it saved from it instead of parsing
 * the stored answer again (that parse was 124k of the 295k instructions a
 * hit cost, measured with tests/bench/hit_instructions.mjs).
 *
 * Layout, version 3: "RLE3", kind (1 byte), then four strings, each a
 * length byte n and n bytes: content type, upstream, model, namespace; then
 * a usage byte (0: not recorded, 1: recorded) and, when 1, four signed
 * 64-bit little-endian counts (input, output, cached input, cache write; -1
 * for a count the answer does not give); then the body. Version 2 ("RLE2")
 * is version 3 without the usage byte and counts; version 1 ("RLE1",
 * written before labels existed) has only the content type. Both still
 * decode, with has_usage = 0 (the caller reads the usage from the body as
 * before), and version 1 with labelled = 0 and empty labels. Strings longer
 * than 255 bytes are cut to ENTRY_LABEL_MAX (labels are for people and
 * filters; the cache key holds the full values).
 *
 * An older Relay reads a version 3 entry as damaged (RL_BAD_ENTRY), and the
 * engine then removes it: going back to an older binary empties the cache
 * as it is used, it never serves a wrong answer.
 */
#ifndef RELAY_ENGINE_ENTRY_H
#define RELAY_ENGINE_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

#define ENTRY_LABEL_MAX 255
/* The usage byte and four 8-byte counts. */
#define ENTRY_USAGE_BYTES (1 + 4 * 8)
/* The most bytes a header can take: enough of a value to decode labels. */
#define ENTRY_HEAD_MAX (4 + 1 + 4 * (1 + ENTRY_LABEL_MAX) + ENTRY_USAGE_BYTES)

typedef enum { ENTRY_BODY = 0, ENTRY_STREAM = 1 } entry_kind;

/* Who an answer was for; NULL fields are stored as "". */
typedef struct entry_labels {
    const char *upstream; /* [upstream.NAME] */
    const char *model;
    const char *ns; /* X-Relay-Namespace */
} entry_labels;

/* The tokens an answer used, as prov.h's prov_usage counts them (-1: not
 * given). Its own type because prov.h includes this header. */
typedef struct entry_usage {
    int64_t input, output, cached_input, cache_write;
} entry_usage;

typedef struct entry_view {
    entry_kind kind;
    int version;   /* 1, 2 or 3 */
    int labelled;  /* 0 for version 1 entries: the labels are unknown */
    int has_usage; /* 1 when usage was recorded (version 3, read when stored) */
    entry_usage usage;
    char content_type[ENTRY_LABEL_MAX + 1];
    char upstream[ENTRY_LABEL_MAX + 1];
    char model[ENTRY_LABEL_MAX + 1];
    char ns[ENTRY_LABEL_MAX + 1];
    const char *body; /* points into the encoded bytes */
    size_t body_len;
} entry_view;

/* Appends the encoded entry (version 3) to out; labels may be NULL, and
 * usage NULL when it is not known (a hit then reads it from the body). */
rl_err entry_encode(rl_buf *out, entry_kind kind, const char *content_type,
                    const entry_labels *labels, const entry_usage *usage, const char *body,
                    size_t len);
/* Decodes version 1, 2 or 3. p may be only the first bytes of an entry (at
 * least ENTRY_HEAD_MAX, or all of it if shorter): the body is then what
 * was given. RL_BAD_ENTRY when the bytes are not an entry. */
rl_err entry_decode(const char *p, size_t len, entry_view *out);

#endif
