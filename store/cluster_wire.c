/*
 * cluster_wire.c — the messages of forwarded writes (contract in
 * cluster_wire.h).
 */
#include "store/cluster_wire.h"

#include <string.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_reader.h"

/* ---- integers and strings ------------------------------------------------------ */

static void put8(rl_buf *b, uint8_t v)
{
    (void)rl_buf_append(b, &v, 1); /* rl_buf's errors are sticky: checked at the end */
}

static void put64(rl_buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (56 - 8 * i));
    (void)rl_buf_append(b, x, 8);
}

/* A string of 1 to max bytes with no NUL: its length byte and bytes. */
static int put_str(rl_buf *b, const char *s, size_t max)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    if (n == 0 || n > max || n > 255)
        return -1;
    put8(b, (uint8_t)n);
    (void)rl_buf_append(b, s, n);
    return 0;
}

/* A string put_str wrote, into out (max + 1 bytes). */
static void get_str(rl_reader *r, char *out, size_t max)
{
    size_t n = rl_read8(r);
    out[0] = 0;
    if (n == 0 || n > max) {
        r->bad = 1;
        return;
    }
    const uint8_t *p = rl_read(r, n);
    if (!p)
        return;
    if (memchr(p, 0, n)) {
        r->bad = 1;
        return;
    }
    memcpy(out, p, n);
    out[n] = 0;
}

/* A token: its hash, then store_token_encode's record with a length. */
static void put_token(rl_buf *b, const store_token *t)
{
    rl_buf rec;
    rl_buf_init(&rec, 0);
    if (store_token_encode(t, &rec) != RL_OK) {
        if (b->err == RL_OK)
            b->err = RL_BAD_REQUEST;
    } else {
        (void)rl_buf_append(b, t->hash, STORE_KEY_LEN);
        put64(b, rec.len);
        (void)rl_buf_append(b, rec.data, rec.len);
    }
    rl_buf_release(&rec);
}

static void get_token(rl_reader *r, store_token *t)
{
    memset(t, 0, sizeof *t);
    rl_read_bytes(r, t->hash, STORE_KEY_LEN);
    uint64_t n = rl_read64(r);
    if (r->bad || n > r->left) {
        r->bad = 1;
        return;
    }
    const uint8_t *p = rl_read(r, (size_t)n);
    if (p && store_token_decode(p, (size_t)n, t) != RL_OK)
        r->bad = 1;
}

/* ---- the operations --------------------------------------------------------------- */

static void reserve_put(const cluster_msg *m, rl_buf *b)
{
    put64(b, m->now);
    (void)rl_buf_append(b, m->id, LEDGER_ID_LEN);
    put64(b, (uint64_t)(uint32_t)m->pid);
    put64(b, m->pid_start);
    if (put_str(b, m->site, LEDGER_SITE_MAX) != 0 || m->n == 0 || m->n > LEDGER_MAX_CHARGES) {
        b->err = b->err ? b->err : RL_BAD_REQUEST;
        return;
    }
    put8(b, (uint8_t)m->n);
    for (unsigned i = 0; i < m->n; i++) {
        const ledger_charge *c = &m->charges[i];
        if (put_str(b, c->scope, LEDGER_SCOPE_MAX) != 0) {
            b->err = b->err ? b->err : RL_BAD_REQUEST;
            return;
        }
        put8(b, (uint8_t)c->window);
        put8(b, (uint8_t)(c->partial != 0));
        for (int u = 0; u < LEDGER_UNITS; u++)
            put64(b, c->amount[u]);
        for (int u = 0; u < LEDGER_UNITS; u++)
            put64(b, c->limit[u]);
    }
}

static void reserve_get(rl_reader *r, cluster_msg *m)
{
    m->now = rl_read64(r);
    rl_read_bytes(r, m->id, LEDGER_ID_LEN);
    uint64_t pid = rl_read64(r);
    if (pid > INT32_MAX)
        r->bad = 1;
    m->pid = (int32_t)pid;
    m->pid_start = rl_read64(r);
    get_str(r, m->site, LEDGER_SITE_MAX);
    m->n = rl_read8(r);
    if (m->n == 0 || m->n > LEDGER_MAX_CHARGES) {
        r->bad = 1;
        return;
    }
    for (unsigned i = 0; i < m->n && !r->bad; i++) {
        ledger_charge *c = &m->charges[i];
        get_str(r, m->scopes[i], LEDGER_SCOPE_MAX);
        c->scope = m->scopes[i];
        c->window = (ledger_window)rl_read8(r); /* an unknown kind: the ledger refuses it */
        c->partial = rl_read8(r) != 0;
        for (int u = 0; u < LEDGER_UNITS; u++)
            c->amount[u] = rl_read64(r);
        for (int u = 0; u < LEDGER_UNITS; u++)
            c->limit[u] = rl_read64(r);
    }
}

static void settle_put(const cluster_msg *m, rl_buf *b)
{
    (void)rl_buf_append(b, m->id, LEDGER_ID_LEN);
    for (int u = 0; u < LEDGER_UNITS; u++)
        put64(b, m->actual[u]);
    put64(b, m->now);
}

static void settle_get(rl_reader *r, cluster_msg *m)
{
    rl_read_bytes(r, m->id, LEDGER_ID_LEN);
    for (int u = 0; u < LEDGER_UNITS; u++)
        m->actual[u] = rl_read64(r);
    m->now = rl_read64(r);
}

static void release_put(const cluster_msg *m, rl_buf *b)
{
    (void)rl_buf_append(b, m->id, LEDGER_ID_LEN);
    put64(b, m->now);
}

static void release_get(rl_reader *r, cluster_msg *m)
{
    rl_read_bytes(r, m->id, LEDGER_ID_LEN);
    m->now = rl_read64(r);
}

static void put_put(const cluster_msg *m, rl_buf *b)
{
    put8(b, (uint8_t)m->mode);
    put_token(b, &m->token);
}

static void put_get(rl_reader *r, cluster_msg *m)
{
    m->mode = rl_read8(r);
    if (m->mode != TOKEN_CREATE && m->mode != TOKEN_REPLACE && m->mode != TOKEN_UPDATE)
        r->bad = 1;
    get_token(r, &m->token);
}

static void del_put(const cluster_msg *m, rl_buf *b)
{
    (void)rl_buf_append(b, m->hash, STORE_KEY_LEN);
}

static void del_get(rl_reader *r, cluster_msg *m)
{
    rl_read_bytes(r, m->hash, STORE_KEY_LEN);
}

static void revoke_put(const cluster_msg *m, rl_buf *b)
{
    (void)rl_buf_append(b, m->hash, STORE_KEY_LEN);
    put64(b, m->now);
}

static void revoke_get(rl_reader *r, cluster_msg *m)
{
    rl_read_bytes(r, m->hash, STORE_KEY_LEN);
    m->now = rl_read64(r);
}

static void rotate_put(const cluster_msg *m, rl_buf *b)
{
    (void)rl_buf_append(b, m->hash, STORE_KEY_LEN);
    (void)rl_buf_append(b, m->new_hash, STORE_KEY_LEN);
    put64(b, m->now);
    put64(b, m->until);
}

static void rotate_get(rl_reader *r, cluster_msg *m)
{
    rl_read_bytes(r, m->hash, STORE_KEY_LEN);
    rl_read_bytes(r, m->new_hash, STORE_KEY_LEN);
    m->now = rl_read64(r);
    m->until = rl_read64(r);
}

static const struct {
    cluster_op op;
    const char *name;
    void (*put)(const cluster_msg *m, rl_buf *b);
    void (*get)(rl_reader *r, cluster_msg *m);
} ops[] = {
    {CLUSTER_OP_RESERVE, "a budget reservation", reserve_put, reserve_get},
    {CLUSTER_OP_SETTLE, "a budget settlement", settle_put, settle_get},
    {CLUSTER_OP_TOKEN_PUT, "a token's record", put_put, put_get},
    {CLUSTER_OP_TOKEN_DEL, "a token's deletion", del_put, del_get},
    {CLUSTER_OP_TOKEN_REVOKE, "a token's revocation", revoke_put, revoke_get},
    {CLUSTER_OP_TOKEN_ROTATE, "a token's rotation", rotate_put, rotate_get},
    {CLUSTER_OP_RELEASE_HELD, "the release of a dead process's reservation", release_put,
     release_get},
};

static int op_row(cluster_op op)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (ops[i].op == op)
            return (int)i;
    return -1;
}

void cluster_wire_head(cluster_op op, uint8_t head[CLUSTER_WIRE_HEAD])
{
    memcpy(head, CLUSTER_WIRE_MAGIC, 4);
    head[4] = (uint8_t)op;
}

cluster_op cluster_wire_head_op(const void *head, size_t n)
{
    const uint8_t *h = head;
    if (n != CLUSTER_WIRE_HEAD || memcmp(h, CLUSTER_WIRE_MAGIC, 4) != 0 || op_row(h[4]) < 0)
        return 0;
    return (cluster_op)h[4];
}

const char *cluster_wire_op_name(cluster_op op)
{
    int i = op_row(op);
    return i < 0 ? "" : ops[i].name;
}

rl_err cluster_msg_encode(const cluster_msg *m, rl_buf *out)
{
    int i = op_row(m->op);
    if (i < 0)
        return RL_INTERNAL;
    ops[i].put(m, out);
    return rl_buf_error(out);
}

rl_err cluster_msg_decode(cluster_op op, const void *p, size_t n, cluster_msg *m)
{
    int i = op_row(op);
    memset(m, 0, sizeof *m);
    if (i < 0)
        return RL_BAD_REQUEST;
    m->op = op;
    rl_reader r = rl_reader_of(p, n);
    ops[i].get(&r, m);
    return r.bad || r.left ? RL_BAD_REQUEST : RL_OK; /* every byte, and only them */
}

/* ---- answers ----------------------------------------------------------------------- */

rl_err cluster_answer_encode(rl_err e, const uint8_t *token, const rl_buf *results, rl_buf *out)
{
    uint8_t head[4] = {(uint8_t)((uint32_t)e >> 24), (uint8_t)((uint32_t)e >> 16),
                       (uint8_t)((uint32_t)e >> 8), (uint8_t)e};
    (void)rl_buf_append(out, head, sizeof head);
    put8(out, token != NULL);
    if (token)
        (void)rl_buf_append(out, token, CLUSTER_WIRE_TOKEN);
    if (results && results->len)
        (void)rl_buf_append(out, results->data, results->len);
    return rl_buf_error(out);
}

rl_err cluster_answer_decode(const void *p, size_t n, rl_err *e, int *has_token,
                             uint8_t token_out[CLUSTER_WIRE_TOKEN], const uint8_t **results,
                             size_t *results_len)
{
    rl_reader r = rl_reader_of(p, n);
    const uint8_t *h = rl_read(&r, 4);
    uint32_t v = h ? (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3] : 0;
    *has_token = rl_read8(&r);
    if (*has_token > 1)
        r.bad = 1;
    if (*has_token)
        rl_read_bytes(&r, token_out, CLUSTER_WIRE_TOKEN);
    if (r.bad || v >= RL_ERR_COUNT)
        return RL_BAD_REQUEST;
    *e = (rl_err)v;
    *results = r.p;
    *results_len = r.left;
    return RL_OK;
}

/* ---- the results ----------------------------------------------------------------- */

rl_err cluster_refusal_encode(const ledger_refusal *why, rl_buf *out)
{
    put8(out, (uint8_t)why->charge);
    put8(out, (uint8_t)why->unit);
    put64(out, why->limit);
    put64(out, why->used);
    put64(out, why->amount);
    put64(out, why->start);
    put64(out, why->reset);
    return rl_buf_error(out);
}

rl_err cluster_refusal_decode(const void *p, size_t n, unsigned charges, ledger_refusal *why)
{
    rl_reader r = rl_reader_of(p, n);
    why->charge = rl_read8(&r);
    why->unit = (ledger_unit)rl_read8(&r);
    why->limit = rl_read64(&r);
    why->used = rl_read64(&r);
    why->amount = rl_read64(&r);
    why->start = rl_read64(&r);
    why->reset = rl_read64(&r);
    if (r.bad || r.left || why->charge >= charges || (unsigned)why->unit >= LEDGER_UNITS)
        return RL_BAD_REQUEST;
    return RL_OK;
}

rl_err cluster_token_encode(const store_token *t, rl_buf *out)
{
    put_token(out, t);
    return rl_buf_error(out);
}

rl_err cluster_token_decode(const void *p, size_t n, store_token *t)
{
    rl_reader r = rl_reader_of(p, n);
    get_token(&r, t);
    return r.bad || r.left ? RL_BAD_REQUEST : RL_OK;
}
