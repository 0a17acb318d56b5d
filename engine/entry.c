#include "engine/entry.h"

#include <string.h>

#define ENTRY_MAGIC "RLE1"
#define ENTRY_MAGIC_LEN 4

rl_err entry_encode(rl_buf *out, entry_kind kind, const char *content_type, const char *body,
                    size_t len)
{
    size_t ct_len = strlen(content_type);
    if (ct_len > 255)
        ct_len = 255;
    unsigned char head[2] = {(unsigned char)kind, (unsigned char)ct_len};
    rl_err e;
    if ((e = rl_buf_append(out, ENTRY_MAGIC, ENTRY_MAGIC_LEN)) != RL_OK ||
        (e = rl_buf_append(out, head, sizeof head)) != RL_OK ||
        (e = rl_buf_append(out, content_type, ct_len)) != RL_OK)
        return e;
    return rl_buf_append(out, body, len);
}

rl_err entry_decode(const char *p, size_t len, entry_view *out)
{
    if (len < ENTRY_MAGIC_LEN + 2 || memcmp(p, ENTRY_MAGIC, ENTRY_MAGIC_LEN) != 0)
        return RL_UPSTREAM_PROTOCOL;
    unsigned char kind = (unsigned char)p[4], ct_len = (unsigned char)p[5];
    if (kind > ENTRY_STREAM || len < ENTRY_MAGIC_LEN + 2 + (size_t)ct_len)
        return RL_UPSTREAM_PROTOCOL;
    out->kind = (entry_kind)kind;
    memcpy(out->content_type, p + 6, ct_len);
    out->content_type[ct_len] = '\0';
    out->body = p + 6 + ct_len;
    out->body_len = len - 6 - ct_len;
    return RL_OK;
}
