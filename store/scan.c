/*
 * scan.c — walks over a database in batches (store_walk_batch, also used
 * by flight.c and maint.c) and the admin scans of the cache built on it:
 * store_cache_scan (ls, show, verify), store_cache_find (a key by its hex
 * prefix) and store_cache_purge_match (purge by labels). Contracts in
 * store.h and store_int.h.
 *
 * Threads: any, at once with Relay's requests. Each batch is one short
 * transaction through store_op_run. The scan and the find read with
 * read-committed cursors (a read lock on one record at a time), so they
 * hold up Relay's writers for at most one record; a purge by match takes
 * the totals first, like every cache writer, and holds its batch's locks
 * until the batch commits.
 *
 * Failure: Berkeley DB failures are logged by store_op_run; callbacks
 * decide nothing about errors (their non-zero return only stops a scan).
 */
#include "store/store.h"

#include <db.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/base/rl_buf.h"
#include "store/store_int.h"

#define SCAN_BATCH 64               /* records per transaction of a scan */
#define SCAN_BATCH_BYTES (4u << 20) /* ... or this many value bytes */

typedef struct scan_item {
    uint8_t key[STORE_KEY_LEN];
    store_meta meta;
    size_t off, len; /* of the value prefix in scan_arg.values */
    int damaged;
} scan_item;

typedef struct scan_arg {
    size_t prefix; /* value bytes wanted; SIZE_MAX: all */
    uint8_t last[STORE_KEY_LEN];
    int started;
    int done;
    unsigned n;
    scan_item items[SCAN_BATCH];
    rl_buf values; /* the batch's value prefixes, back to back */
    DBT data;      /* DB_DBT_REALLOC, reused across records */
} scan_arg;

/* Decodes a record read into d (header + the first bytes of the value; the
 * whole value when whole) as an item; sets damaged when it is not ours. */
static void item_from_record(const DBT *d, int whole, store_meta *m, int *damaged)
{
    memset(m, 0, sizeof *m);
    *damaged = cache_hdr_decode(d->data, d->size, m) != 0 ||
               (whole ? d->size - CACHE_HDR_LEN != m->size : d->size - CACHE_HDR_LEN > m->size);
    if (*damaged)
        memset(m, 0, sizeof *m);
}

/* Sets up a cursor read of key + the first a->prefix value bytes. */
static void scan_dbts(scan_arg *a, DBT *k, uint8_t *kb)
{
    dbt_out(k, kb, STORE_KEY_LEN);
    a->data.flags = DB_DBT_REALLOC;
    if (a->prefix != SIZE_MAX) {
        a->data.flags |= DB_DBT_PARTIAL;
        a->data.doff = 0;
        a->data.dlen = (u_int32_t)(CACHE_HDR_LEN + (a->prefix < UINT32_MAX - CACHE_HDR_LEN
                                                        ? a->prefix
                                                        : UINT32_MAX - CACHE_HDR_LEN));
    }
}

int store_walk_batch(DB *db, DB_TXN *txn, u_int32_t cursor_flags, const void *from, size_t from_len,
                     int after_from, DBT *k, DBT *d, walk_visit visit, void *ctx, int *at_end)
{
    DBC *c = NULL;
    *at_end = 0;
    int ret = db->cursor(db, txn, &c, cursor_flags);
    if (ret)
        return ret;
    if (from) {
        memcpy(k->data, from, from_len);
        k->size = (u_int32_t)from_len;
        ret = c->get(c, k, d, DB_SET_RANGE);
        if (ret == 0 && after_from && k->size == from_len && memcmp(k->data, from, from_len) == 0)
            ret = c->get(c, k, d, DB_NEXT);
    } else {
        ret = c->get(c, k, d, DB_FIRST);
    }
    for (int stop = 0; ret == 0; ret = c->get(c, k, d, DB_NEXT))
        if ((ret = visit(ctx, k, d, &stop)) != 0 || stop)
            break;
    if (ret == DB_NOTFOUND) {
        *at_end = 1;
        ret = 0;
    }
    int closed = c->close(c);
    return ret ? ret : closed;
}

/* Adds one cache record to the batch (o's scan_arg). */
static int scan_visit(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    op *o = ctx;
    scan_arg *a = o->arg;
    if (k->size == STORE_KEY_LEN) {
        scan_item *it = &a->items[a->n];
        memcpy(it->key, k->data, STORE_KEY_LEN);
        item_from_record(d, a->prefix == SIZE_MAX, &it->meta, &it->damaged);
        if (!it->damaged) {
            /* Hits not flushed yet, read under the record's lock (the
             * cursor is on it), as store_cache_get does. */
            uint64_t last;
            it->meta.hits += uses_pending(o->s->uses, it->key, &last);
            it->meta.used = last > it->meta.used ? last : it->meta.used;
        }
        it->off = a->values.len;
        it->len = d->size > CACHE_HDR_LEN ? d->size - CACHE_HDR_LEN : 0;
        if (it->len &&
            rl_buf_append(&a->values, (uint8_t *)d->data + CACHE_HDR_LEN, it->len) != RL_OK) {
            o->err = RL_NOMEM;
            *stop = 1;
            return 0;
        }
        a->n++;
    }
    *stop = a->n == SCAN_BATCH || a->values.len >= SCAN_BATCH_BYTES;
    return 0;
}

static int scan_body(handles *h, DB_TXN *txn, op *o)
{
    scan_arg *a = o->arg;
    uint8_t kb[STORE_KEY_LEN];
    DBT k;
    a->n = 0;
    a->values.len = 0;
    scan_dbts(a, &k, kb);
    return store_walk_batch(h->cache, txn, DB_READ_COMMITTED, a->started ? a->last : NULL,
                            STORE_KEY_LEN, 1, &k, &a->data, scan_visit, o, &a->done);
}

rl_err store_cache_scan(store *s, size_t prefix, int (*fn)(void *ctx, const store_item *item),
                        void *ctx)
{
    rl_err e = RL_OK;
    scan_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    a->prefix = prefix;
    rl_buf_init(&a->values, 0);
    op o = {.what = "scanning cache entries", .body = scan_body, .idempotent = 1, .arg = a};
    for (;;) {
        if ((e = store_op_run(s, &o)) != RL_OK)
            break;
        for (unsigned i = 0; i < a->n; i++) {
            const scan_item *it = &a->items[i];
            store_item item = {.meta = it->meta,
                               .value = (const uint8_t *)a->values.data + it->off,
                               .value_len = it->len,
                               .damaged = it->damaged};
            memcpy(item.key, it->key, STORE_KEY_LEN);
            if (fn(ctx, &item) != 0)
                goto out;
        }
        if (a->done || a->n == 0)
            break;
        memcpy(a->last, a->items[a->n - 1].key, STORE_KEY_LEN);
        a->started = 1;
    }
out:
    free(a->data.data);
    rl_buf_release(&a->values);
    free(a);
    return e;
}

typedef struct find_arg {
    const uint8_t *prefix;
    unsigned nibbles;
    uint8_t key[STORE_KEY_LEN];
    unsigned matches;
} find_arg;

static int key_has_prefix(const uint8_t *key, const uint8_t *prefix, unsigned nibbles)
{
    unsigned whole = nibbles / 2;
    if (memcmp(key, prefix, whole) != 0)
        return 0;
    return nibbles % 2 == 0 || (key[whole] & 0xf0) == (prefix[whole] & 0xf0);
}

static int find_body(handles *h, DB_TXN *txn, op *o)
{
    find_arg *a = o->arg;
    DBC *c = NULL;
    uint8_t kb[STORE_KEY_LEN];
    DBT k, d;
    a->matches = 0;
    int ret = h->cache->cursor(h->cache, txn, &c, DB_READ_COMMITTED);
    if (ret)
        return ret;
    /* The smallest key with the prefix: the prefix, then zero bits. */
    memset(kb, 0, sizeof kb);
    memcpy(kb, a->prefix, (a->nibbles + 1) / 2);
    if (a->nibbles % 2)
        kb[a->nibbles / 2] &= 0xf0;
    dbt_out(&k, kb, sizeof kb);
    k.size = sizeof kb;
    dbt_part(&d, NULL, 0, 0);
    ret = c->get(c, &k, &d, DB_SET_RANGE);
    while (ret == 0 && a->matches < 2) {
        if (k.size != STORE_KEY_LEN || !key_has_prefix(kb, a->prefix, a->nibbles))
            break;
        if (a->matches++ == 0)
            memcpy(a->key, kb, STORE_KEY_LEN);
        ret = c->get(c, &k, &d, DB_NEXT);
    }
    if (ret == DB_NOTFOUND)
        ret = 0;
    int closed = c->close(c);
    return ret ? ret : closed;
}

rl_err store_cache_find(store *s, const uint8_t *prefix, unsigned nibbles,
                        uint8_t key[STORE_KEY_LEN], unsigned *matches)
{
    if (nibbles == 0 || nibbles > 2 * STORE_KEY_LEN)
        return RL_INTERNAL;
    find_arg a = {.prefix = prefix, .nibbles = nibbles};
    op o = {.what = "looking up a key prefix", .body = find_body, .idempotent = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (e != RL_OK)
        return e;
    *matches = a.matches;
    if (a.matches)
        memcpy(key, a.key, STORE_KEY_LEN);
    return RL_OK;
}

typedef struct match_arg {
    scan_arg scan; /* cursor position and read buffers */
    int (*match)(void *ctx, const store_item *item);
    void *ctx;
    uint8_t from[STORE_KEY_LEN]; /* where the batch starts: after the last */
    int from_started;            /* record of the last committed batch */
    uint64_t removed;            /* this batch */
    unsigned seen;               /* records this batch looked at */
    unsigned nkeys;
    uint8_t keys[CACHE_PURGE_BATCH][STORE_KEY_LEN];
} match_arg;

/* Asks match about one cache record; keeps its key when chosen. */
static int purge_visit(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    match_arg *m = ctx;
    if (k->size == STORE_KEY_LEN) {
        store_item item = {.value = (const uint8_t *)d->data + CACHE_HDR_LEN};
        memcpy(item.key, k->data, STORE_KEY_LEN);
        item_from_record(d, m->scan.prefix == SIZE_MAX, &item.meta, &item.damaged);
        item.value_len = d->size > CACHE_HDR_LEN ? d->size - CACHE_HDR_LEN : 0;
        if (m->match(m->ctx, &item))
            memcpy(m->keys[m->nkeys++], k->data, STORE_KEY_LEN);
        memcpy(m->scan.last, k->data, STORE_KEY_LEN); /* the batch's last, for the next */
    }
    *stop = ++m->seen == CACHE_PURGE_BATCH;
    return 0;
}

/*
 * One batch: reads up to CACHE_PURGE_BATCH records after the last one seen, asks
 * match about each, and deletes the chosen ones in the same transaction.
 * Like every cache writer it takes the totals first (see totals_read).
 */
static int purge_match_body(handles *h, DB_TXN *txn, op *o)
{
    match_arg *m = o->arg;
    scan_arg *a = &m->scan;
    cache_totals t;
    uint8_t kb[STORE_KEY_LEN];
    DBT k;
    m->removed = 0;
    m->seen = 0;
    m->nkeys = 0;
    memcpy(a->last, m->from, STORE_KEY_LEN); /* an attempt may be a retry */
    int ret = cache_totals_read(h, txn, &t, DB_RMW);
    if (ret)
        return ret;
    scan_dbts(a, &k, kb);
    if ((ret = store_walk_batch(h->cache, txn, 0, m->from_started ? m->from : NULL, STORE_KEY_LEN,
                                1, &k, &a->data, purge_visit, m, &a->done)) != 0)
        return ret;
    for (unsigned i = 0; i < m->nkeys; i++) {
        int found;
        if ((ret = cache_entry_remove(h, txn, m->keys[i], &t, &found)) != 0)
            return ret;
        m->removed += (uint64_t)found;
    }
    return cache_totals_write(h, txn, &t);
}

rl_err store_cache_purge_match(store *s, size_t prefix,
                               int (*match)(void *ctx, const store_item *item), void *ctx,
                               uint64_t *removed)
{
    match_arg *m = calloc(1, sizeof *m);
    if (!m)
        return RL_NOMEM;
    m->scan.prefix = prefix;
    m->match = match;
    m->ctx = ctx;
    uint64_t total = 0;
    rl_err e = RL_OK;
    op o = {.what = "purging matching cache entries",
            .body = purge_match_body,
            .idempotent = 1,
            .arg = m};
    for (;;) {
        if ((e = store_op_run(s, &o)) != RL_OK)
            break;
        total += m->removed;
        if (m->scan.done)
            break;
        memcpy(m->from, m->scan.last, STORE_KEY_LEN);
        m->from_started = 1;
    }
    if (removed)
        *removed = total;
    free(m->scan.data.data);
    free(m);
    return e;
}
