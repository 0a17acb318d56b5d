/*
 * token_rec.c — a Relay client token's fields and record (contracts in
 * token.h): its state, what it allows, its public id, the checks of its
 * fields, and the record's encoding (the layout is described in token.c).
 * Pure functions, any thread; no Berkeley DB call here, so the fuzzer
 * links it (tests/fuzz/fuzz_cluster.c decodes tokens forwarded between
 * hosts).
 */
#include "store/token.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/base/rl_hex.h"
#include "store/base/rl_reader.h"
#include "store/store_int.h" /* store_put64, store_get64 */

#define REC_MAGIC "RLT1"
#define REC_FIXED (4 + 4 + 8 * 8) /* magic, id, 3 times, 5 budgets */

/* ---- the token's fields -------------------------------------------------- */

token_state store_token_state(const store_token *t, uint64_t now)
{
    if (t->revoked && t->revoked <= now)
        return TOKEN_REVOKED;
    if (t->expires && t->expires <= now)
        return TOKEN_EXPIRED;
    return TOKEN_LIVE;
}

const char *store_token_state_name(token_state st)
{
    static const char *const names[] = {"live", "expired", "revoked"};
    return (unsigned)st < sizeof names / sizeof names[0] ? names[st] : "unknown";
}

int store_token_allows(const store_token *t, const char *upstream, const char *model)
{
    if (upstream && t->n_upstreams) {
        unsigned i = 0;
        while (i < t->n_upstreams && strcmp(t->upstreams[i], upstream) != 0)
            i++;
        if (i == t->n_upstreams)
            return 0;
    }
    if (model && t->n_models) {
        unsigned i = 0;
        while (i < t->n_models && fnmatch(t->models[i], model, 0) != 0)
            i++;
        if (i == t->n_models)
            return 0;
    }
    return 1;
}

void store_token_id_of(const uint8_t hash[STORE_KEY_LEN], char id[TOKEN_ID_LEN + 1])
{
    rl_hex_encode(hash, TOKEN_ID_LEN / 2, id);
}

/* Whether the field of size cap holds a string of 1..max bytes, each in
 * [lo, 0x7e], without a space at either end. */
static int text_ok(const char *p, size_t cap, size_t max, int lo)
{
    const char *nul = memchr(p, '\0', cap);
    size_t n = nul ? (size_t)(nul - p) : cap;
    if (n == 0 || n > max || p[0] == ' ' || p[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < lo || (unsigned char)p[i] > 0x7e)
            return 0;
    return 1;
}

const char *store_token_invalid(const store_token *t)
{
    for (int i = 0; i < TOKEN_ID_LEN; i++)
        if (!((t->id[i] >= '0' && t->id[i] <= '9') || (t->id[i] >= 'a' && t->id[i] <= 'f')))
            return "the id must be 8 lowercase hex digits";
    if (t->id[TOKEN_ID_LEN] != '\0')
        return "the id must be 8 lowercase hex digits";
    if (!text_ok(t->name, sizeof t->name, TOKEN_NAME_MAX, 0x20))
        return "the name must be 1 to 64 printable ASCII characters, without spaces at the ends";
    if (t->n_upstreams > TOKEN_LIST_MAX || t->n_models > TOKEN_LIST_MAX)
        return "at most 16 upstreams and 16 model patterns";
    for (unsigned i = 0; i < t->n_upstreams; i++)
        if (!text_ok(t->upstreams[i], sizeof t->upstreams[i], TOKEN_ITEM_MAX, 0x21))
            return "an upstream name must be 1 to 64 printable ASCII characters, without spaces";
    for (unsigned i = 0; i < t->n_models; i++)
        if (!text_ok(t->models[i], sizeof t->models[i], TOKEN_ITEM_MAX, 0x21))
            return "a model pattern must be 1 to 64 printable ASCII characters, without spaces";
    return NULL;
}

/* ---- the record ------------------------------------------------------------- */

static void put_text(rl_buf *out, const char *s)
{
    uint8_t n = (uint8_t)strlen(s); /* store_token_invalid bounds it */
    rl_buf_append(out, &n, 1);
    rl_buf_append(out, s, n);
}

rl_err store_token_encode(const store_token *t, rl_buf *out)
{
    if (store_token_invalid(t))
        return RL_BAD_REQUEST;
    uint8_t fixed[REC_FIXED], id[TOKEN_ID_LEN / 2];
    memcpy(fixed, REC_MAGIC, 4);
    (void)rl_hex_decode(t->id, TOKEN_ID_LEN, id);
    memcpy(fixed + 4, id, sizeof id);
    const uint64_t v[8] = {t->created,   t->expires,    t->revoked, t->usd_day,
                           t->usd_month, t->tokens_day, t->rpm,     t->tpm};
    for (int i = 0; i < 8; i++)
        store_put64(fixed + 8 + 8 * i, v[i]);
    /* Appends have a sticky error (rl_buf.h): checked once, at the end. */
    rl_buf_append(out, fixed, sizeof fixed);
    put_text(out, t->name);
    uint8_t n = (uint8_t)t->n_upstreams;
    rl_buf_append(out, &n, 1);
    for (unsigned i = 0; i < t->n_upstreams; i++)
        put_text(out, t->upstreams[i]);
    n = (uint8_t)t->n_models;
    rl_buf_append(out, &n, 1);
    for (unsigned i = 0; i < t->n_models; i++)
        put_text(out, t->models[i]);
    return rl_buf_error(out);
}

/* A length-prefixed string of at most max bytes into dst (NUL-terminated). */
static void take_text(rl_reader *r, char *dst, size_t max)
{
    const uint8_t *n = rl_read(r, 1);
    if (n && *n > max)
        r->bad = 1;
    const uint8_t *s = n ? rl_read(r, *n) : NULL;
    if (s) {
        memcpy(dst, s, *n);
        dst[*n] = '\0';
    }
}

/* A count byte (at most TOKEN_LIST_MAX) and that many items into list. */
static unsigned take_list(rl_reader *r, char (*list)[TOKEN_ITEM_MAX + 1])
{
    const uint8_t *n = rl_read(r, 1);
    if (!n || *n > TOKEN_LIST_MAX) {
        r->bad = 1;
        return 0;
    }
    for (unsigned i = 0; i < *n; i++)
        take_text(r, list[i], TOKEN_ITEM_MAX);
    return *n;
}

rl_err store_token_decode(const void *p, size_t n, store_token *t)
{
    rl_reader r = rl_reader_of(p, n);
    const uint8_t *fixed = rl_read(&r, REC_FIXED);
    if (!fixed || memcmp(fixed, REC_MAGIC, 4) != 0)
        return RL_BAD_ENTRY;
    uint8_t hash[STORE_KEY_LEN];
    memcpy(hash, t->hash, sizeof hash);
    memset(t, 0, sizeof *t);
    memcpy(t->hash, hash, sizeof hash);
    rl_hex_encode(fixed + 4, TOKEN_ID_LEN / 2, t->id);
    uint64_t *const v[8] = {&t->created,   &t->expires,    &t->revoked, &t->usd_day,
                            &t->usd_month, &t->tokens_day, &t->rpm,     &t->tpm};
    for (int i = 0; i < 8; i++)
        *v[i] = store_get64(fixed + 8 + 8 * i);
    take_text(&r, t->name, TOKEN_NAME_MAX);
    t->n_upstreams = take_list(&r, t->upstreams);
    t->n_models = take_list(&r, t->models);
    if (r.bad || r.left != 0 || store_token_invalid(t))
        return RL_BAD_ENTRY;
    return RL_OK;
}
