#include "engine/entry.h"

#include <string.h>

#define ENTRY_MAGIC_V1 "RLE1"
#define ENTRY_MAGIC_V2 "RLE2"
#define ENTRY_MAGIC_V3 "RLE3"
#define ENTRY_MAGIC_LEN 4

static rl_err put_string(rl_buf *out, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > ENTRY_LABEL_MAX)
        n = ENTRY_LABEL_MAX;
    unsigned char len = (unsigned char)n;
    rl_err e = rl_buf_append(out, &len, 1);
    return e == RL_OK && n ? rl_buf_append(out, s, n) : e;
}

/* The usage byte, then the four counts little-endian (the same bytes on
 * every machine, so a store copied elsewhere still reads). */
static rl_err put_usage(rl_buf *out, const entry_usage *u)
{
    unsigned char b[ENTRY_USAGE_BYTES] = {0};
    if (!u)
        return rl_buf_append(out, b, 1);
    const int64_t counts[4] = {u->input, u->output, u->cached_input, u->cache_write};
    b[0] = 1;
    for (int i = 0; i < 4; i++) {
        uint64_t v = (uint64_t)counts[i];
        for (int j = 0; j < 8; j++)
            b[1 + 8 * i + j] = (unsigned char)(v >> (8 * j));
    }
    return rl_buf_append(out, b, sizeof b);
}

rl_err entry_encode(rl_buf *out, entry_kind kind, const char *content_type,
                    const entry_labels *labels, const entry_usage *usage, const char *body,
                    size_t len)
{
    static const entry_labels none = {0};
    if (!labels)
        labels = &none;
    unsigned char k = (unsigned char)kind;
    rl_err e;
    if ((e = rl_buf_append(out, ENTRY_MAGIC_V3, ENTRY_MAGIC_LEN)) != RL_OK ||
        (e = rl_buf_append(out, &k, 1)) != RL_OK || (e = put_string(out, content_type)) != RL_OK ||
        (e = put_string(out, labels->upstream)) != RL_OK ||
        (e = put_string(out, labels->model)) != RL_OK ||
        (e = put_string(out, labels->ns)) != RL_OK || (e = put_usage(out, usage)) != RL_OK)
        return e;
    return rl_buf_append(out, body, len);
}

/* Reads one length-prefixed string at *pos into dst (NUL-terminated);
 * -1 when it runs past len. */
static int get_string(const char *p, size_t len, size_t *pos, char *dst)
{
    if (*pos >= len)
        return -1;
    size_t n = (unsigned char)p[*pos];
    if (len - *pos - 1 < n)
        return -1;
    memcpy(dst, p + *pos + 1, n);
    dst[n] = '\0';
    *pos += 1 + n;
    return 0;
}

/* Reads the usage byte and counts at *pos; -1 when they run past len or
 * the byte is neither 0 nor 1. */
static int get_usage(const char *p, size_t len, size_t *pos, entry_view *out)
{
    if (*pos >= len || (unsigned char)p[*pos] > 1)
        return -1;
    if (p[*pos] == 0) {
        *pos += 1;
        return 0;
    }
    if (len - *pos < ENTRY_USAGE_BYTES)
        return -1;
    const unsigned char *b = (const unsigned char *)p + *pos + 1;
    int64_t counts[4];
    for (int i = 0; i < 4; i++) {
        uint64_t v = 0;
        for (int j = 7; j >= 0; j--)
            v = v << 8 | b[8 * i + j];
        counts[i] = (int64_t)v;
    }
    out->usage = (entry_usage){counts[0], counts[1], counts[2], counts[3]};
    out->has_usage = 1;
    *pos += ENTRY_USAGE_BYTES;
    return 0;
}

rl_err entry_decode(const char *p, size_t len, entry_view *out)
{
    if (len < ENTRY_MAGIC_LEN + 2)
        return RL_BAD_ENTRY;
    int version;
    if (memcmp(p, ENTRY_MAGIC_V3, ENTRY_MAGIC_LEN) == 0)
        version = 3;
    else if (memcmp(p, ENTRY_MAGIC_V2, ENTRY_MAGIC_LEN) == 0)
        version = 2;
    else if (memcmp(p, ENTRY_MAGIC_V1, ENTRY_MAGIC_LEN) == 0)
        version = 1;
    else
        return RL_BAD_ENTRY;
    unsigned char kind = (unsigned char)p[4];
    if (kind > ENTRY_STREAM)
        return RL_BAD_ENTRY;
    out->kind = (entry_kind)kind;
    out->version = version;
    out->labelled = version >= 2;
    out->has_usage = 0;
    out->usage = (entry_usage){-1, -1, -1, -1};
    out->upstream[0] = out->model[0] = out->ns[0] = '\0';
    size_t pos = ENTRY_MAGIC_LEN + 1;
    if (get_string(p, len, &pos, out->content_type) != 0)
        return RL_BAD_ENTRY;
    if (version >= 2 &&
        (get_string(p, len, &pos, out->upstream) != 0 ||
         get_string(p, len, &pos, out->model) != 0 || get_string(p, len, &pos, out->ns) != 0))
        return RL_BAD_ENTRY;
    if (version >= 3 && get_usage(p, len, &pos, out) != 0)
        return RL_BAD_ENTRY;
    out->body = p + pos;
    out->body_len = len - pos;
    return RL_OK;
}
