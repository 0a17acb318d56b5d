/*
 * token.c — Relay client tokens (contracts in token.h).
 *
 * Layout. tokens.db, encrypted like every database of the store:
 *   key: the 32-byte SHA-256 of the token text -> the token's record
 *   key: one byte 0x00 (WRITERS_KEY) -> 8 bytes, big-endian: the number of
 *        changes made to the table. Its only job is its lock: every
 *        writer reads it with DB_RMW first, so writers are serialised and
 *        the uniqueness check of a name or id sees every other writer's
 *        work (as the cache's totals do for cache writers).
 *
 * The record (RLT1): magic 4, id 4 (the public id's bytes), created 8,
 * expires 8, revoked 8, usd_day 8, usd_month 8, tokens_day 8, rpm 8, tpm 8,
 * then the name (length byte + bytes), the number of upstreams (a byte),
 * each (length byte + bytes), the number of model patterns, each. Integers
 * big-endian. A new layout gets a new magic, and the decoder keeps reading
 * the old ones.
 *
 * Threads: any, at once, through store_op_run. Readers use read-committed
 * reads, so a request's lookup holds up a writer for one record at most.
 *
 * Failure: Berkeley DB failures are logged by store_op_run; a record that
 * does not decode is logged here when read by hash and reported by the
 * scans, never taken for a token.
 */
#include "store/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "store/store_int.h"

#define WRITERS_KEY "\0" /* one byte: never a digest's length */
#define SCAN_BATCH 64

/* Takes the writers' lock (see the layout) and counts one more change. */
static int writers_lock(handles *h, DB_TXN *txn)
{
    uint8_t b[8] = {0};
    DBT k, d;
    dbt_in(&k, WRITERS_KEY, 1);
    dbt_out(&d, b, sizeof b);
    int ret = h->tokens->get(h->tokens, txn, &k, &d, DB_RMW);
    if (ret && ret != DB_NOTFOUND)
        return ret;
    uint64_t changes = ret == 0 && d.size == sizeof b ? store_get64(b) : 0;
    store_put64(b, changes + 1);
    dbt_in(&d, b, sizeof b);
    return h->tokens->put(h->tokens, txn, &k, &d, 0);
}

/* Reads and decodes the record of hash into t. DB_NOTFOUND, a Berkeley DB
 * error, or 0 with *bad set for a record that does not decode. */
static int rec_get(handles *h, DB_TXN *txn, const uint8_t *hash, store_token *t, u_int32_t flags,
                   int *bad)
{
    DBT k, d;
    dbt_in(&k, hash, STORE_KEY_LEN);
    memset(&d, 0, sizeof d);
    d.flags = DB_DBT_MALLOC;
    *bad = 0;
    int ret = h->tokens->get(h->tokens, txn, &k, &d, flags);
    if (ret)
        return ret;
    memcpy(t->hash, hash, STORE_KEY_LEN);
    *bad = store_token_decode(d.data, d.size, t) != RL_OK;
    free(d.data);
    return 0;
}

static int rec_put(handles *h, DB_TXN *txn, const store_token *t, op *o)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    rl_err e = store_token_encode(t, &b);
    if (e != RL_OK) {
        rl_buf_release(&b);
        o->err = e;
        return 0;
    }
    DBT k, d;
    dbt_in(&k, t->hash, STORE_KEY_LEN);
    dbt_in(&d, b.data, b.len);
    int ret = h->tokens->put(h->tokens, txn, &k, &d, 0);
    rl_buf_release(&b);
    return ret;
}

/* Whether a token not revoked other than skip1 and skip2 has t's name or
 * id: *taken. Reads every record (a small table, read only by writers,
 * who are serialised). Records that do not decode hold nothing. */
static int name_or_id_taken(handles *h, DB_TXN *txn, const store_token *t, const uint8_t *skip1,
                            const uint8_t *skip2, int *taken)
{
    DBC *c = NULL;
    *taken = 0;
    int ret = h->tokens->cursor(h->tokens, txn, &c, 0);
    if (ret)
        return ret;
    DBT k, d;
    memset(&k, 0, sizeof k);
    memset(&d, 0, sizeof d);
    k.flags = d.flags = DB_DBT_REALLOC;
    store_token *other = malloc(sizeof *other);
    if (!other) {
        c->close(c);
        return ENOMEM;
    }
    while (!*taken && (ret = c->get(c, &k, &d, DB_NEXT)) == 0) {
        if (k.size != STORE_KEY_LEN || memcmp(k.data, skip1, STORE_KEY_LEN) == 0 ||
            (skip2 && memcmp(k.data, skip2, STORE_KEY_LEN) == 0))
            continue;
        if (store_token_decode(d.data, d.size, other) != RL_OK || other->revoked)
            continue;
        *taken = strcmp(other->name, t->name) == 0 || strcmp(other->id, t->id) == 0;
    }
    free(other);
    free(k.data);
    free(d.data);
    int closed = c->close(c);
    if (ret == DB_NOTFOUND)
        ret = 0;
    return ret ? ret : closed;
}

/* For TOKEN_UPDATE: RL_OK when the stored record (n bytes at p) is not
 * revoked, RL_FORBIDDEN when it is (at any time), RL_BAD_ENTRY when it does
 * not decode, RL_NOMEM. */
static rl_err update_allowed(const void *p, size_t n)
{
    store_token *t = malloc(sizeof *t);
    if (!t)
        return RL_NOMEM;
    rl_err e = store_token_decode(p, n, t);
    if (e == RL_OK && t->revoked)
        e = RL_FORBIDDEN;
    free(t);
    return e;
}

typedef struct put_arg {
    const store_token *t;
    token_put_mode mode;
    const rl_buf *rec; /* t's record */
} put_arg;

static int put_body(handles *h, DB_TXN *txn, op *o)
{
    put_arg *a = o->arg;
    int taken = 0, ret = writers_lock(h, txn);
    if (ret)
        return ret;
    DBT k, d;
    dbt_in(&k, a->t->hash, STORE_KEY_LEN);
    memset(&d, 0, sizeof d);
    d.flags = DB_DBT_MALLOC;
    ret = h->tokens->get(h->tokens, txn, &k, &d, DB_RMW);
    if (ret && ret != DB_NOTFOUND)
        return ret;
    /* The very record this put writes: an earlier attempt of this put was
     * committed (see idempotent in store_int.h), or nothing changes. */
    int same = ret == 0 && d.size == a->rec->len && memcmp(d.data, a->rec->data, d.size) == 0;
    rl_err refused = RL_OK;
    if (ret == 0 && !same && a->mode == TOKEN_UPDATE)
        refused = update_allowed(d.data, d.size);
    free(d.data);
    if (same)
        return 0;
    if ((ret == 0) != (a->mode != TOKEN_CREATE)) {
        o->err = ret == 0 ? RL_EXISTS : RL_NOTFOUND;
        return 0;
    }
    if (refused != RL_OK) {
        o->err = refused;
        return 0;
    }
    if (!a->t->revoked && (ret = name_or_id_taken(h, txn, a->t, a->t->hash, NULL, &taken)) != 0)
        return ret;
    if (taken) {
        o->err = RL_EXISTS;
        return 0;
    }
    dbt_in(&d, a->rec->data, a->rec->len);
    return h->tokens->put(h->tokens, txn, &k, &d, 0);
}

rl_err store_token_put(store *s, const store_token *t, token_put_mode mode)
{
    if (cluster_forwards(s))
        return cluster_token_put(s, t, (int)mode);
    rl_buf rec;
    rl_buf_init(&rec, 0);
    rl_err e = store_token_encode(t, &rec);
    if (e == RL_OK) {
        put_arg a = {t, mode, &rec};
        op o = {.what = "storing a client token", .body = put_body, .arg = &a, .idempotent = 1};
        e = store_op_run(s, &o);
    }
    rl_buf_release(&rec);
    return e;
}

typedef struct get_arg {
    const uint8_t *hash;
    store_token *out;
} get_arg;

static int get_body(handles *h, DB_TXN *txn, op *o)
{
    get_arg *a = o->arg;
    int bad;
    int ret = rec_get(h, txn, a->hash, a->out, 0, &bad);
    if (ret == 0 && bad)
        o->err = RL_BAD_ENTRY;
    return ret;
}

rl_err store_token_get(store *s, const uint8_t hash[STORE_KEY_LEN], store_token *out)
{
    get_arg a = {hash, out};
    op o = {.what = "reading a client token",
            .body = get_body,
            .arg = &a,
            .idempotent = 1,
            .read_committed = 1};
    rl_err e = store_op_run(s, &o);
    if (e == RL_BAD_ENTRY) {
        char id[TOKEN_ID_LEN + 1];
        store_token_id_of(hash, id);
        rl_error("store %s: the record of client token %s... does not decode; refusing it "
                 "(relay-admin verify reports it)",
                 store_home_of(s), id);
    }
    return e;
}

static int del_body(handles *h, DB_TXN *txn, op *o)
{
    int ret = writers_lock(h, txn);
    if (ret)
        return ret;
    DBT k;
    dbt_in(&k, o->arg, STORE_KEY_LEN);
    return h->tokens->del(h->tokens, txn, &k, 0);
}

rl_err store_token_del(store *s, const uint8_t hash[STORE_KEY_LEN])
{
    if (cluster_forwards(s))
        return cluster_token_del(s, hash);
    op o = {
        .what = "deleting a client token", .body = del_body, .arg = (void *)hash, .idempotent = 1};
    return store_op_run(s, &o);
}

/* The earlier of a revocation time already set (0: none) and when. */
static uint64_t revoke_at(uint64_t revoked, uint64_t when)
{
    return revoked && revoked < when ? revoked : when;
}

typedef struct revoke_arg {
    const uint8_t *hash;
    uint64_t now;
    store_token *out;
} revoke_arg;

static int revoke_body(handles *h, DB_TXN *txn, op *o)
{
    revoke_arg *a = o->arg;
    int bad, ret = writers_lock(h, txn);
    if (ret == 0)
        ret = rec_get(h, txn, a->hash, a->out, DB_RMW, &bad);
    if (ret)
        return ret;
    if (bad) {
        o->err = RL_BAD_ENTRY;
        return 0;
    }
    a->out->revoked = revoke_at(a->out->revoked, a->now);
    return rec_put(h, txn, a->out, o);
}

rl_err store_token_revoke(store *s, const uint8_t hash[STORE_KEY_LEN], uint64_t now,
                          store_token *out)
{
    if (cluster_forwards(s))
        return cluster_token_revoke(s, hash, now, out);
    store_token *t = malloc(sizeof *t);
    if (!t)
        return RL_NOMEM;
    revoke_arg a = {hash, now, t};
    op o = {.what = "revoking a client token", .body = revoke_body, .arg = &a, .idempotent = 1};
    rl_err e = store_op_run(s, &o);
    if (e == RL_OK && out)
        *out = *t;
    free(t);
    return e;
}

typedef struct rotate_arg {
    const uint8_t *old_hash, *new_hash;
    uint64_t now, old_until;
    store_token *old, *fresh;
} rotate_arg;

static int rotate_body(handles *h, DB_TXN *txn, op *o)
{
    rotate_arg *a = o->arg;
    int bad, taken, ret = writers_lock(h, txn);
    if (ret == 0)
        ret = rec_get(h, txn, a->old_hash, a->old, DB_RMW, &bad);
    if (ret)
        return ret;
    if (bad) {
        o->err = RL_BAD_ENTRY;
        return 0;
    }
    if (store_token_state(a->old, a->now) == TOKEN_REVOKED) {
        o->err = RL_FORBIDDEN;
        return 0;
    }
    ret = rec_get(h, txn, a->new_hash, a->fresh, DB_RMW, &bad);
    if (ret != DB_NOTFOUND) {
        if (ret == 0)
            o->err = RL_EXISTS;
        return ret;
    }
    *a->fresh = *a->old;
    memcpy(a->fresh->hash, a->new_hash, STORE_KEY_LEN);
    a->fresh->created = a->now;
    a->fresh->revoked = 0;
    a->old->revoked = revoke_at(a->old->revoked, a->old_until > a->now ? a->old_until : a->now);
    /* Another token may have taken the name or id while this one's old
     * record held it with a grace period running. */
    if ((ret = name_or_id_taken(h, txn, a->fresh, a->old_hash, a->new_hash, &taken)) != 0)
        return ret;
    if (taken) {
        o->err = RL_EXISTS;
        return 0;
    }
    if ((ret = rec_put(h, txn, a->old, o)) != 0 || o->err != RL_OK)
        return ret;
    return rec_put(h, txn, a->fresh, o);
}

rl_err store_token_rotate(store *s, const uint8_t old_hash[STORE_KEY_LEN],
                          const uint8_t new_hash[STORE_KEY_LEN], uint64_t now, uint64_t old_until,
                          store_token *out)
{
    if (cluster_forwards(s))
        return cluster_token_rotate(s, old_hash, new_hash, now, old_until, out);
    store_token *two = malloc(2 * sizeof *two);
    if (!two)
        return RL_NOMEM;
    rotate_arg a = {old_hash, new_hash, now, old_until, &two[0], &two[1]};
    /* Not idempotent: applied once, a second run finds new_hash taken. */
    op o = {.what = "rotating a client token", .body = rotate_body, .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (e == RL_OK && out)
        *out = two[1];
    free(two);
    return e;
}

/* ---- scans ----------------------------------------------------------------- */

typedef struct scan_arg {
    uint8_t from[STORE_KEY_LEN]; /* the batch starts after this key ... */
    int started;                 /* ... unless it is the first */
    uint8_t last[STORE_KEY_LEN]; /* the last key of the batch */
    int done;
    unsigned n;
    store_token *items; /* SCAN_BATCH */
    int bad[SCAN_BATCH];
} scan_arg;

static int scan_visit(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    scan_arg *a = ctx;
    if (k->size != STORE_KEY_LEN)
        return 0; /* the writers' lock */
    store_token *t = &a->items[a->n];
    memcpy(t->hash, k->data, STORE_KEY_LEN);
    a->bad[a->n] = store_token_decode(d->data, d->size, t) != RL_OK;
    memcpy(a->last, k->data, STORE_KEY_LEN);
    *stop = ++a->n == SCAN_BATCH;
    return 0;
}

static int scan_body(handles *h, DB_TXN *txn, op *o)
{
    scan_arg *a = o->arg;
    uint8_t kb[STORE_KEY_LEN];
    DBT k, d;
    a->n = 0;
    dbt_out(&k, kb, sizeof kb);
    memset(&d, 0, sizeof d);
    d.flags = DB_DBT_REALLOC;
    int ret = store_walk_batch(h->tokens, txn, 0, a->started ? a->from : NULL, STORE_KEY_LEN, 1, &k,
                               &d, scan_visit, a, &a->done);
    free(d.data);
    return ret;
}

rl_err store_token_scan(store *s,
                        int (*fn)(void *ctx, const uint8_t hash[STORE_KEY_LEN],
                                  const store_token *t),
                        void *ctx)
{
    scan_arg *a = calloc(1, sizeof *a);
    store_token *items = malloc(SCAN_BATCH * sizeof *items);
    rl_err e = RL_NOMEM;
    if (!a || !items)
        goto out;
    a->items = items;
    for (int stop = 0; !stop;) {
        op o = {.what = "listing client tokens",
                .body = scan_body,
                .arg = a,
                .idempotent = 1,
                .read_committed = 1};
        if ((e = store_op_run(s, &o)) != RL_OK)
            break;
        for (unsigned i = 0; i < a->n && !stop; i++)
            stop = fn(ctx, items[i].hash, a->bad[i] ? NULL : &items[i]) != 0;
        memcpy(a->from, a->last, sizeof a->from);
        a->started = 1;
        stop = stop || a->done || a->n == 0;
    }
out:
    free(items);
    free(a);
    return e;
}

typedef struct find_arg {
    uint8_t want[TOKEN_ID_LEN];
    size_t digits;
    const char *name; /* find by name instead */
    int include_revoked;
    store_token *out;
    unsigned matches;
} find_arg;

static int find_visit(void *ctx, const uint8_t hash[STORE_KEY_LEN], const store_token *t)
{
    (void)hash;
    find_arg *a = ctx;
    if (!t || (t->revoked && !a->include_revoked))
        return 0;
    if (a->name ? strcmp(t->name, a->name) != 0 : memcmp(t->id, a->want, a->digits) != 0)
        return 0;
    if (a->matches++ == 0)
        *a->out = *t;
    return a->matches > 1;
}

rl_err store_token_find(store *s, const char *prefix, int include_revoked, store_token *out,
                        unsigned *matches)
{
    find_arg a = {.include_revoked = include_revoked, .out = out};
    a.digits = prefix ? strlen(prefix) : 0;
    *matches = 0;
    if (a.digits == 0 || a.digits > TOKEN_ID_LEN)
        return RL_BAD_REQUEST;
    for (size_t i = 0; i < a.digits; i++) {
        int v = rl_hex_digit((unsigned char)prefix[i]);
        if (v < 0)
            return RL_BAD_REQUEST;
        a.want[i] = (uint8_t) "0123456789abcdef"[v];
    }
    rl_err e = store_token_scan(s, find_visit, &a);
    *matches = a.matches > 2 ? 2 : a.matches;
    return e;
}

rl_err store_token_find_name(store *s, const char *name, store_token *out)
{
    find_arg a = {.name = name, .out = out};
    rl_err e = store_token_scan(s, find_visit, &a);
    return e == RL_OK && a.matches == 0 ? RL_NOTFOUND : e;
}

/* ---- verify ------------------------------------------------------------------ */

typedef struct verify_arg {
    store_problem_fn problem;
    void *ctx;
    unsigned *problems;
} verify_arg;

static int verify_visit(void *ctx, const uint8_t hash[STORE_KEY_LEN], const store_token *t)
{
    verify_arg *a = ctx;
    if (t)
        return 0;
    char id[TOKEN_ID_LEN + 1], what[96];
    store_token_id_of(hash, id);
    snprintf(what, sizeof what, "the record of token %s... does not decode", id);
    ++*a->problems;
    if (a->problem)
        a->problem(a->ctx, "tokens.db", what);
    return 0;
}

rl_err token_verify(store *s, store_problem_fn problem, void *ctx, unsigned *problems)
{
    verify_arg a = {problem, ctx, problems};
    return store_token_scan(s, verify_visit, &a);
}
