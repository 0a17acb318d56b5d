/*
 * recency.c — recency of use: the index eviction follows, the flush of the
 * table of recent uses (usemap.h) into it, direct hits when that table has
 * no room, and the indexing of entries stored before the index existed.
 * Contracts in store.h (store_cache_touch, store_recency_flush) and
 * store_int.h.
 *
 * Layout.
 *
 * recency.db  key: last use (8 bytes, big-endian) + digest; data: empty.
 *             Sorted by last use, so the first record is the least
 *             recently used entry. Maintained by hand, in the same
 *             transaction as the entry's header, whose 4-byte field after
 *             the magic (unused before, always written 0) holds the same
 *             time: unix seconds, enough until 2106. 0 there means "not
 *             indexed" (an entry written before this index).
 *             One record of another length, BUILD_KEY (sorted last), says
 *             how far the indexing of such entries got.
 *
 * Why a table and a flush: a hit used to be a write transaction (a log
 * record and a page lock on the entry) on the hottest path of the product.
 * Now a hit is a few atomic operations on a shared file, and one process a
 * second moves them into the database in batches. Readers add what is
 * pending (under the entry's lock, so a flush in between is seen whole or
 * not at all: the flush takes a key's pending hits while it holds the
 * entry's write lock, and puts them back if its transaction fails).
 *
 * Threads: any, through store_op_run. Failure: Berkeley DB codes from the
 * helpers; store_recency_flush and recency_build log through store_op_run.
 */
#include "store/store.h"

#include <db.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/base/rl_log.h"
#include "store/store_int.h"

#define FLUSH_BATCH 256 /* entries per flush transaction */
#define BUILD_BATCH 256 /* entries per indexing transaction */
#define BUILD_BUDGET_NS                                                                            \
    20000000LL /* indexing per maintenance run, so a large                                         \
                * old store is indexed over many seconds                                           \
                * rather than holding up one */
#define BUILD_KEY "\xffindex-build"
#define BUILD_DONE "done"

/* ---- the index ------------------------------------------------------------ */

static void time_key(uint8_t *out, uint64_t t, const uint8_t *key)
{
    store_put64(out, t);
    memcpy(out + 8, key, STORE_KEY_LEN);
}

int recency_index_put(handles *h, DB_TXN *txn, uint64_t used, const uint8_t *key)
{
    uint8_t rk[CACHE_TIME_KEY_LEN];
    DBT k, d;
    time_key(rk, used, key);
    dbt_in(&k, rk, sizeof rk);
    dbt_in(&d, "", 0);
    return h->recency->put(h->recency, txn, &k, &d, 0);
}

int recency_index_del(handles *h, DB_TXN *txn, uint64_t used, const uint8_t *key)
{
    uint8_t rk[CACHE_TIME_KEY_LEN];
    DBT k;
    time_key(rk, used, key);
    dbt_in(&k, rk, sizeof rk);
    int ret = h->recency->del(h->recency, txn, &k, 0);
    return ret == DB_NOTFOUND ? 0 : ret;
}

/* Reads key's header with a write lock; DB_NOTFOUND when absent or not a
 * header this code wrote (nothing to count on). */
static int hdr_read(handles *h, DB_TXN *txn, const uint8_t *key, store_meta *m)
{
    uint8_t hdr[CACHE_HDR_LEN];
    DBT k, d;
    dbt_in(&k, key, STORE_KEY_LEN);
    dbt_part(&d, hdr, 0, CACHE_HDR_LEN);
    int ret = h->cache->get(h->cache, txn, &k, &d, DB_RMW);
    if (ret)
        return ret;
    return cache_hdr_decode(hdr, d.size, m) == 0 ? 0 : DB_NOTFOUND;
}

/* Adds hits to the entry whose header is m and moves it to used in the
 * index if that is later than its stamp (the header is rewritten whole:
 * 40 bytes in place). */
static int apply_use(handles *h, DB_TXN *txn, const uint8_t *key, store_meta *m, uint64_t hits,
                     uint64_t used)
{
    store_meta n = *m;
    n.hits += hits;
    if (used > n.used)
        n.used = used;
    uint8_t hdr[CACHE_HDR_LEN];
    cache_hdr_encode(hdr, &n);
    cache_hdr_decode(hdr, sizeof hdr, &n); /* the stamp as stored (32 bits) */
    int ret;
    if (n.used != m->used) {
        if (m->used && (ret = recency_index_del(h, txn, m->used, key)) != 0)
            return ret;
        if ((ret = recency_index_put(h, txn, n.used, key)) != 0)
            return ret;
    } else if (n.hits == m->hits) {
        return 0;
    }
    DBT k, d;
    dbt_in(&k, key, STORE_KEY_LEN);
    dbt_in(&d, hdr, sizeof hdr);
    d.flags = DB_DBT_PARTIAL;
    d.doff = 0;
    d.dlen = sizeof hdr;
    if ((ret = h->cache->put(h->cache, txn, &k, &d, 0)) != 0)
        return ret;
    *m = n;
    return 0;
}

/* ---- eviction's choice -------------------------------------------------- */

int recency_victim(handles *h, DB_TXN *txn, store *s, uint8_t key[STORE_KEY_LEN])
{
    for (;;) {
        DBC *c = NULL;
        uint8_t rk[CACHE_TIME_KEY_LEN];
        DBT k, d;
        int ret = h->recency->cursor(h->recency, txn, &c, 0);
        if (ret)
            return ret;
        dbt_out(&k, rk, sizeof rk);
        dbt_part(&d, NULL, 0, 0);
        ret = c->get(c, &k, &d, DB_FIRST | DB_RMW);
        int closed = c->close(c);
        if (ret || (ret = closed) != 0)
            return ret;
        if (k.size != CACHE_TIME_KEY_LEN)
            return DB_NOTFOUND; /* only the build marker is left */
        uint64_t at = store_get64(rk);
        store_meta m;
        ret = hdr_read(h, txn, rk + 8, &m);
        if (ret && ret != DB_NOTFOUND)
            return ret;
        if (ret == DB_NOTFOUND || m.used != at) {
            /* An orphan, or a stale stamp: the entry is elsewhere or gone. */
            if ((ret = recency_index_del(h, txn, at, rk + 8)) != 0)
                return ret;
            continue;
        }
        uint64_t last = 0;
        (void)uses_pending(s->uses, rk + 8, &last);
        store_meta moved = m;
        if ((ret = apply_use(h, txn, rk + 8, &moved, 0, last)) != 0)
            return ret;
        if (moved.used != m.used)
            continue; /* used since its stamp: look at the next */
        memcpy(key, rk + 8, STORE_KEY_LEN);
        return 0;
    }
}

/* ---- direct hits -------------------------------------------------------- */

typedef struct touch_arg {
    const uint8_t *key;
    uint64_t now;
} touch_arg;

static int touch_body(handles *h, DB_TXN *txn, op *o)
{
    touch_arg *a = o->arg;
    store_meta m;
    int ret = hdr_read(h, txn, a->key, &m);
    return ret ? ret : apply_use(h, txn, a->key, &m, 1, a->now);
}

rl_err store_cache_touch(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now)
{
    if (uses_add(s->uses, key, 1, now) == 0)
        return RL_OK;
    /* No room near this key (its USE_PROBE slots all hold other keys until
     * the next flush): count it the old way, a write transaction. */
    uses_count_direct(s->uses);
    touch_arg a = {.key = key, .now = now};
    op o = {.what = "counting a cache hit", .body = touch_body, .arg = &a};
    return store_op_run(s, &o);
}

/* ---- the flush ----------------------------------------------------------- */

typedef struct flush_arg {
    unsigned n;
    uint8_t keys[FLUSH_BATCH][STORE_KEY_LEN];
    uint64_t hits[FLUSH_BATCH], last[FLUSH_BATCH]; /* taken by this attempt */
    uint64_t moved;                                /* by this attempt */
} flush_arg;

/* Puts back what a failed attempt took, so that the retry (or the next
 * flush) finds it. Counted hits are lost only if the table has no room. */
static void flush_restore(store *s, flush_arg *a)
{
    uint64_t lost = 0;
    for (unsigned i = 0; i < a->n; i++) {
        if ((a->hits[i] || a->last[i]) &&
            uses_add(s->uses, a->keys[i], a->hits[i], a->last[i]) != 0)
            lost += a->hits[i];
        a->hits[i] = a->last[i] = 0;
    }
    if (lost)
        rl_warn("store %s: %llu pending hits lost: no room to put them back after a failed flush",
                s->home, (unsigned long long)lost);
}

/* Takes each key's pending uses while holding its entry's write lock, and
 * stores them in the entry and the index. */
static int flush_body(handles *h, DB_TXN *txn, op *o)
{
    flush_arg *a = o->arg;
    int ret = 0;
    a->moved = 0;
    for (unsigned i = 0; i < a->n; i++) {
        store_meta m;
        ret = hdr_read(h, txn, a->keys[i], &m);
        if (ret == DB_NOTFOUND) {
            uint64_t last;
            (void)uses_take(o->s->uses, a->keys[i], &last); /* a gone entry's */
            ret = 0;
            continue;
        }
        if (ret)
            break;
        a->hits[i] = uses_take(o->s->uses, a->keys[i], &a->last[i]);
        if ((ret = apply_use(h, txn, a->keys[i], &m, a->hits[i], a->last[i])) != 0)
            break;
        a->moved++;
    }
    if (ret)
        flush_restore(o->s, a);
    return ret;
}

static rl_err flush_batch(store *s, flush_arg *a)
{
    memset(a->hits, 0, sizeof a->hits);
    memset(a->last, 0, sizeof a->last);
    /* Not idempotent: after a commit that met a recovery, retrying would
     * count the batch twice if it was applied; its hits are lost instead. */
    op o = {.what = "flushing recent cache hits", .body = flush_body, .arg = a};
    rl_err e = store_op_run(s, &o);
    a->n = 0;
    return e;
}

rl_err store_recency_flush(store *s, uint64_t now, uint64_t *moved)
{
    flush_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    rl_err e = RL_OK;
    uint64_t total = 0;
    for (uint32_t i = 0; i < USE_SLOTS && e == RL_OK; i++) {
        if (!uses_slot(s->uses, i, a->keys[a->n], now))
            continue;
        if (++a->n < FLUSH_BATCH)
            continue;
        e = flush_batch(s, a);
        total += a->moved;
    }
    if (e == RL_OK && a->n) {
        e = flush_batch(s, a);
        total += a->moved;
    }
    free(a);
    if (moved)
        *moved = total;
    return e;
}

rl_err store_recency_info_get(store *s, store_recency_info *out)
{
    uint8_t key[STORE_KEY_LEN];
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < USE_SLOTS; i++)
        out->pending_slots += (uint64_t)uses_slot(s->uses, i, key, 0);
    out->direct = uses_direct(s->uses);
    return RL_OK;
}

/* ---- indexing entries from before the index ------------------------------ */

typedef struct build_arg {
    uint8_t from[STORE_KEY_LEN]; /* the last key done, when started */
    int started;
    int done;
    unsigned n, seen;
    uint8_t keys[BUILD_BATCH][STORE_KEY_LEN]; /* this batch's entries */
    uint64_t indexed;
} build_arg;

/* Reads where the indexing got: *done, or a->from/started. */
static int build_state(handles *h, DB_TXN *txn, build_arg *a, int *done)
{
    uint8_t b[STORE_KEY_LEN];
    DBT k, d;
    *done = 0;
    a->started = 0;
    dbt_in(&k, BUILD_KEY, strlen(BUILD_KEY));
    dbt_out(&d, b, sizeof b);
    int ret = h->recency->get(h->recency, txn, &k, &d, DB_RMW);
    if (ret == DB_NOTFOUND)
        return 0;
    if (ret)
        return ret;
    if (d.size == strlen(BUILD_DONE) && memcmp(b, BUILD_DONE, d.size) == 0)
        *done = 1;
    else if (d.size == STORE_KEY_LEN) {
        memcpy(a->from, b, STORE_KEY_LEN);
        a->started = 1;
    }
    return 0;
}

static int build_visit(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    build_arg *a = ctx;
    (void)d;
    if (k->size == STORE_KEY_LEN) {
        memcpy(a->keys[a->n++], k->data, STORE_KEY_LEN);
        memcpy(a->from, k->data, STORE_KEY_LEN);
    }
    *stop = ++a->seen == BUILD_BATCH;
    return 0;
}

/* Whether the index has key's record at used. */
static int indexed(handles *h, DB_TXN *txn, uint64_t used, const uint8_t *key, int *yes)
{
    uint8_t rk[CACHE_TIME_KEY_LEN];
    DBT k, d;
    time_key(rk, used, key);
    dbt_in(&k, rk, sizeof rk);
    dbt_part(&d, NULL, 0, 0);
    int ret = h->recency->get(h->recency, txn, &k, &d, 0);
    *yes = ret == 0;
    return ret == DB_NOTFOUND ? 0 : ret;
}

/* One batch: the next BUILD_BATCH entries after the last one done. Those
 * without a stamp (written before the index) get their creation time as
 * last use ("missing is oldest": older than anything used since the
 * upgrade) and a record; those with a stamp but no record (a recency.db
 * lost or left out of a copy) get their record. */
static int build_body(handles *h, DB_TXN *txn, op *o)
{
    build_arg *a = o->arg;
    uint8_t kb[STORE_KEY_LEN];
    DBT k, d, mk, mv;
    int done, ret;
    a->n = a->seen = 0;
    a->indexed = 0;
    if ((ret = build_state(h, txn, a, &done)) != 0)
        return ret;
    if (done) {
        a->done = 1;
        return 0;
    }
    dbt_out(&k, kb, sizeof kb);
    dbt_part(&d, NULL, 0, 0);
    uint8_t from[STORE_KEY_LEN];
    memcpy(from, a->from, sizeof from);
    if ((ret = store_walk_batch(h->cache, txn, 0, a->started ? from : NULL, STORE_KEY_LEN, 1, &k,
                                &d, build_visit, a, &a->done)) != 0)
        return ret;
    for (unsigned i = 0; i < a->n; i++) {
        store_meta m;
        if ((ret = hdr_read(h, txn, a->keys[i], &m)) == DB_NOTFOUND)
            continue;
        if (ret)
            return ret;
        if (m.used) {
            int yes;
            if ((ret = indexed(h, txn, m.used, a->keys[i], &yes)) != 0)
                return ret;
            if (!yes && (ret = recency_index_put(h, txn, m.used, a->keys[i])) != 0)
                return ret;
            a->indexed += (uint64_t)!yes;
            continue;
        }
        if ((ret = apply_use(h, txn, a->keys[i], &m, 0, m.created ? m.created : 1)) != 0)
            return ret;
        a->indexed++;
    }
    dbt_in(&mk, BUILD_KEY, strlen(BUILD_KEY));
    if (a->done)
        dbt_in(&mv, BUILD_DONE, strlen(BUILD_DONE));
    else
        dbt_in(&mv, a->from, STORE_KEY_LEN);
    return h->recency->put(h->recency, txn, &mk, &mv, 0);
}

void recency_build(store *s)
{
    if (atomic_load_explicit(&s->recency_built, memory_order_relaxed))
        return;
    build_arg *a = calloc(1, sizeof *a);
    if (!a)
        return;
    uint64_t indexed = 0;
    int64_t until = store_mono_ns() + BUILD_BUDGET_NS;
    op o = {.what = "indexing cache entries by last use",
            .body = build_body,
            .arg = a,
            .idempotent = 1};
    while (store_op_run(s, &o) == RL_OK) {
        indexed += a->indexed;
        if (a->done) {
            atomic_store_explicit(&s->recency_built, 1, memory_order_relaxed);
            break;
        }
        if (store_mono_ns() > until)
            break;
    }
    if (indexed)
        rl_info("store %s: indexed %llu cache entries from before the recency index%s", s->home,
                (unsigned long long)indexed, a->done ? "; done" : "");
    free(a);
}
