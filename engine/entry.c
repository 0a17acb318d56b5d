#include "engine/entry.h"

#include <string.h>

#define ENTRY_MAGIC_V1 "RLE1"
#define ENTRY_MAGIC_V2 "RLE2"
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

rl_err entry_encode(rl_buf *out, entry_kind kind, const char *content_type,
                    const entry_labels *labels, const char *body, size_t len)
{
    static const entry_labels none = {0};
    if (!labels)
        labels = &none;
    unsigned char k = (unsigned char)kind;
    rl_err e;
    if ((e = rl_buf_append(out, ENTRY_MAGIC_V2, ENTRY_MAGIC_LEN)) != RL_OK ||
        (e = rl_buf_append(out, &k, 1)) != RL_OK || (e = put_string(out, content_type)) != RL_OK ||
        (e = put_string(out, labels->upstream)) != RL_OK ||
        (e = put_string(out, labels->model)) != RL_OK || (e = put_string(out, labels->ns)) != RL_OK)
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

rl_err entry_decode(const char *p, size_t len, entry_view *out)
{
    if (len < ENTRY_MAGIC_LEN + 2)
        return RL_BAD_ENTRY;
    int version;
    if (memcmp(p, ENTRY_MAGIC_V2, ENTRY_MAGIC_LEN) == 0)
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
    out->upstream[0] = out->model[0] = out->ns[0] = '\0';
    size_t pos = ENTRY_MAGIC_LEN + 1;
    if (get_string(p, len, &pos, out->content_type) != 0)
        return RL_BAD_ENTRY;
    if (version >= 2 &&
        (get_string(p, len, &pos, out->upstream) != 0 ||
         get_string(p, len, &pos, out->model) != 0 || get_string(p, len, &pos, out->ns) != 0))
        return RL_BAD_ENTRY;
    out->body = p + pos;
    out->body_len = len - pos;
    return RL_OK;
}
