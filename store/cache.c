/*
 * cache.c — the cache: entries, their expiry index, the store's totals,
 * eviction under the caps, and the purges of expired or all entries.
 * Contracts in store.h; what the admin scans (scan.c) share with it in
 * store_int.h.
 *
 * Layout.
 *
 * cache.db     key: the 32-byte digest
 *              data: header (CACHE_HDR_LEN bytes) followed by the value
 * expiry.db    key: expires (8 bytes, big-endian) + digest; data: empty.
 *              Sorted by expiry, so the first record is the first to
 *              expire: eviction takes it first when it already has, and
 *              purging expired entries is a scan from the start.
 *              Maintained by hand in the same transaction as cache.db.
 * recency.db   last use + digest: eviction's order otherwise (recency.c).
 * fuzzy.db     band hashes and docs of near-variant lookup (fuzzyidx.c),
 *              removed with their entry by cache_entry_remove.
 * counters.db  key: a total's name (no NUL); data: 8 bytes, big-endian.
 *              The store's totals (CTR_*), written in the same transaction
 *              as the entries they count, so stats are one read and always
 *              agree with the table.
 *
 * Integers are big-endian so that expiry keys sort numerically under the
 * default byte-wise btree comparison (and db_dump output reads the same).
 *
 * Threads: any, at once, through store_op_run. Every writer takes the
 * totals first (cache_totals_read), which serialises writers at their
 * first step.
 *
 * Failure: Berkeley DB failures are logged by store_op_run; a record whose
 * header this code did not write is dropped (warning) or refused (error),
 * never served.
 */
#include "store/store.h"

#include <db.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "store/base/rl_log.h"
#include "store/store_int.h"

#define HDR_MAGIC 0x524c4331u /* "RLC1": bump for an incompatible header */
/* header: magic 4, last use 4 (recency.c), created 8, expires 8, hits 8, size 8 */
#define EXP_KEY_LEN CACHE_TIME_KEY_LEN

#define CTR_ENTRIES "store.entries"
#define CTR_BYTES "store.bytes"
#define CTR_EVICTIONS "store.evictions"
#define CTR_EXPIRED "store.expired_removed"

void cache_hdr_encode(uint8_t *h, const store_meta *m)
{
    store_put32(h, HDR_MAGIC);
    store_put32(h + 4, m->used < UINT32_MAX ? (uint32_t)m->used : UINT32_MAX);
    store_put64(h + 8, m->created);
    store_put64(h + 16, m->expires);
    store_put64(h + 24, m->hits);
    store_put64(h + 32, m->size);
}

/* 0 on success, -1 if the bytes are not a header this code wrote. */
int cache_hdr_decode(const uint8_t *h, size_t n, store_meta *m)
{
    if (n < CACHE_HDR_LEN || store_get32(h) != HDR_MAGIC)
        return -1;
    m->created = store_get64(h + 8);
    m->expires = store_get64(h + 16);
    m->hits = store_get64(h + 24);
    m->size = store_get64(h + 32);
    m->used = store_get32(h + 4);
    return 0;
}

static void exp_key(uint8_t *out, uint64_t expires, const uint8_t *key)
{
    store_put64(out, expires);
    memcpy(out + 8, key, STORE_KEY_LEN);
}

/* ---- totals -------------------------------------------------------------- */

/* Reads a total; an absent one reads as 0. */
static int ctr_read(handles *h, DB_TXN *txn, const char *name, u_int32_t flags, uint64_t *v)
{
    uint8_t b[8];
    DBT k, d;
    dbt_in(&k, name, strlen(name));
    dbt_out(&d, b, sizeof b);
    int ret = h->counters->get(h->counters, txn, &k, &d, flags);
    *v = 0;
    if (ret == DB_NOTFOUND)
        return 0;
    if (ret == 0 && d.size == sizeof b)
        *v = store_get64(b);
    return ret;
}

static int ctr_write(handles *h, DB_TXN *txn, const char *name, uint64_t v)
{
    uint8_t b[8];
    DBT k, d;
    store_put64(b, v);
    dbt_in(&k, name, strlen(name));
    dbt_in(&d, b, sizeof b);
    return h->counters->put(h->counters, txn, &k, &d, 0);
}

/* cache_totals.v, in this order. */
enum { T_ENTRIES, T_BYTES, T_EVICTIONS, T_EXPIRED };
static const char *const totals_names[4] = {CTR_ENTRIES, CTR_BYTES, CTR_EVICTIONS, CTR_EXPIRED};

/*
 * Writers read the totals first, with DB_RMW: every transaction that changes
 * the cache takes the write lock on the counters page before touching
 * cache.db or expiry.db. Writers are thereby serialised at their first step,
 * where a conflict costs nothing to retry, instead of colliding half-way
 * on each other's pages (cache misses are rare next to reads; serialising
 * their stores costs nothing that matters).
 */
int cache_totals_read(handles *h, DB_TXN *txn, cache_totals *t, u_int32_t flags)
{
    for (int i = 0; i < 4; i++) {
        int ret = ctr_read(h, txn, totals_names[i], flags, &t->v[i]);
        if (ret)
            return ret;
        t->orig[i] = t->v[i];
    }
    return 0;
}

int cache_totals_write(handles *h, DB_TXN *txn, const cache_totals *t)
{
    for (int i = 0; i < 4; i++) {
        if (t->v[i] == t->orig[i])
            continue;
        int ret = ctr_write(h, txn, totals_names[i], t->v[i]);
        if (ret)
            return ret;
    }
    return 0;
}

/* ---- entries ------------------------------------------------------------- */

/*
 * Deletes key's cache record and its expiry record and takes them off the
 * totals. *found says whether there was a record. A record whose header is
 * not ours is deleted too (it can't be served), with a warning.
 */
int cache_entry_remove(handles *h, DB_TXN *txn, const uint8_t *key, cache_totals *t, int *found)
{
    uint8_t hdr[CACHE_HDR_LEN];
    store_meta m;
    DBT k, d;
    *found = 0;
    dbt_in(&k, key, STORE_KEY_LEN);
    dbt_part(&d, hdr, 0, CACHE_HDR_LEN);
    int ret = h->cache->get(h->cache, txn, &k, &d, DB_RMW);
    if (ret == DB_NOTFOUND)
        return 0;
    if (ret)
        return ret;
    *found = 1;
    int good = cache_hdr_decode(hdr, d.size, &m) == 0;
    if ((ret = h->cache->del(h->cache, txn, &k, 0)) != 0)
        return ret;
    if ((ret = fuzzy_entry_remove(h, txn, key)) != 0)
        return ret;
    if (good) {
        uint8_t ek[EXP_KEY_LEN];
        DBT x;
        exp_key(ek, m.expires, key);
        dbt_in(&x, ek, sizeof ek);
        ret = h->expiry->del(h->expiry, txn, &x, 0);
        if (ret && ret != DB_NOTFOUND)
            return ret;
        if (m.used && (ret = recency_index_del(h, txn, m.used, key)) != 0)
            return ret;
        t->v[T_BYTES] -= m.size < t->v[T_BYTES] ? m.size : t->v[T_BYTES];
    } else {
        rl_warn("store %s: dropped a cache record with an unknown header", h->home);
    }
    if (t->v[T_ENTRIES])
        t->v[T_ENTRIES]--;
    return 0;
}

/*
 * Removes one entry to make room, in this order: one that expired before
 * now (the first expiry record), else the least recently used (recency.c),
 * else, in a store whose entries predate the recency index and are not
 * indexed yet, the one closest to expiry. *evicted is 0 when the expiry
 * record taken was an orphan (no cache entry), which is dropped.
 * DB_NOTFOUND when there is nothing left.
 */
static int evict_one(handles *h, DB_TXN *txn, store *s, uint64_t now, cache_totals *t, int *evicted)
{
    DBC *c = NULL;
    uint8_t ek[EXP_KEY_LEN];
    DBT k, d;
    *evicted = 0;
    int ret = h->expiry->cursor(h->expiry, txn, &c, 0);
    if (ret)
        return ret;
    dbt_out(&k, ek, sizeof ek);
    dbt_part(&d, NULL, 0, 0);
    ret = c->get(c, &k, &d, DB_FIRST | DB_RMW);
    int closed = c->close(c);
    if (ret || (ret = closed) != 0)
        return ret;
    if (k.size == EXP_KEY_LEN && store_get64(ek) >= now) {
        uint8_t key[STORE_KEY_LEN];
        ret = recency_victim(h, txn, s, key);
        if (ret == 0)
            return cache_entry_remove(h, txn, key, t, evicted);
        if (ret != DB_NOTFOUND)
            return ret;
    }
    if (k.size == EXP_KEY_LEN) {
        if ((ret = cache_entry_remove(h, txn, ek + 8, t, evicted)) != 0)
            return ret;
        if (*evicted)
            return 0;
    }
    DBT x;
    dbt_in(&x, ek, k.size);
    ret = h->expiry->del(h->expiry, txn, &x, 0);
    return ret == DB_NOTFOUND ? 0 : ret;
}

static int over_caps(const store *s, const cache_totals *t, uint64_t len)
{
    if (s->max_entries && t->v[T_ENTRIES] + 1 > s->max_entries)
        return 1;
    return s->max_bytes && t->v[T_BYTES] + len > s->max_bytes;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1 << 20);
}

/*
 * The cache must never fill its own disk: a store whose disk is full can
 * neither write a log record nor flush a page, so it can neither cache nor
 * evict nor checkpoint, and stays so until someone frees space (what made
 * issue 12's defect 7 last). Below STORE_HEADROOM_BYTES free, a new entry
 * replaces older ones (in eviction's order) instead of growing the store
 * (put_body); above half as much again, the store may grow.
 */
void cache_check_space(store *s)
{
    struct statvfs v;
    if (statvfs(s->home, &v) != 0)
        return;
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    int was = atomic_load_explicit(&s->space_low, memory_order_relaxed);
    int low = was ? avail < STORE_HEADROOM_BYTES + STORE_HEADROOM_BYTES / 2
                  : avail < STORE_HEADROOM_BYTES;
    if (low == was || atomic_exchange(&s->space_low, low) == low)
        return;
    if (low)
        rl_warn("store %s: %.1f MiB free on its file system, less than the %.0f MiB the store "
                "keeps for itself: new entries now replace the least recently used instead "
                "of growing the store",
                s->home, mib(avail), mib(STORE_HEADROOM_BYTES));
    else
        rl_info("store %s: %.1f MiB free on its file system again: the store may grow", s->home,
                mib(avail));
}

int store_space_low(store *s)
{
    return atomic_load_explicit(&s->space_low, memory_order_relaxed);
}

typedef struct put_arg {
    const uint8_t *key;
    uint64_t now; /* the entry's creation: its first use */
    uint64_t expires;
    const uint8_t *rec; /* header + value */
    size_t rec_len;
    uint64_t len;  /* value bytes */
    uint64_t used; /* the entry's last use as its header holds it */
} put_arg;

static int put_body(handles *h, DB_TXN *txn, op *o)
{
    put_arg *a = o->arg;
    cache_totals t;
    int found, ret;
    if ((ret = cache_totals_read(h, txn, &t, DB_RMW)) != 0)
        return ret;
    if ((ret = cache_entry_remove(h, txn, a->key, &t, &found)) != 0)
        return ret;
    /* On a nearly full disk (cache_check_space) the store does not grow:
     * what the new entry adds, older ones give back. */
    int low = atomic_load_explicit(&o->s->space_low, memory_order_relaxed);
    while (over_caps(o->s, &t, a->len) || (low && t.v[T_BYTES] + a->len > t.orig[T_BYTES])) {
        int evicted;
        ret = evict_one(h, txn, o->s, a->now, &t, &evicted);
        if (ret == DB_NOTFOUND && low && !over_caps(o->s, &t, a->len)) {
            o->err = RL_STORE; /* nothing left to give back: not stored */
            return 0;
        }
        if (ret == DB_NOTFOUND) {
            /* Nothing left to evict, yet the totals say we are over: they
             * drifted (they can't under normal operation). Start again
             * from an empty table rather than refusing every store. */
            rl_warn("store %s: totals (%llu entries, %llu bytes) disagree with an empty "
                    "expiry index; resetting them",
                    h->home, (unsigned long long)t.v[T_ENTRIES], (unsigned long long)t.v[T_BYTES]);
            t.v[T_ENTRIES] = t.v[T_BYTES] = 0;
            break;
        }
        if (ret)
            return ret;
        if (evicted)
            t.v[T_EVICTIONS]++;
    }
    DBT k, d;
    dbt_in(&k, a->key, STORE_KEY_LEN);
    dbt_in(&d, a->rec, a->rec_len);
    if ((ret = h->cache->put(h->cache, txn, &k, &d, 0)) != 0)
        return ret;
    uint8_t ek[EXP_KEY_LEN];
    DBT x, e;
    exp_key(ek, a->expires, a->key);
    dbt_in(&x, ek, sizeof ek);
    dbt_in(&e, "", 0);
    if ((ret = h->expiry->put(h->expiry, txn, &x, &e, 0)) != 0)
        return ret;
    if (a->used && (ret = recency_index_put(h, txn, a->used, a->key)) != 0)
        return ret;
    /* A new entry starts at 0 hits: hits still pending for the one it
     * replaces are dropped, under this entry's write lock. */
    uint64_t last;
    (void)uses_take(o->s->uses, a->key, &last);
    t.v[T_ENTRIES]++;
    t.v[T_BYTES] += a->len;
    return cache_totals_write(h, txn, &t);
}

rl_err store_cache_put(store *s, const uint8_t key[STORE_KEY_LEN], const store_meta *meta,
                       const void *value, size_t len)
{
    if ((s->max_entry_bytes && len > s->max_entry_bytes) || (s->max_bytes && len > s->max_bytes) ||
        len > UINT32_MAX - CACHE_HDR_LEN)
        return RL_TOO_LARGE;
    uint8_t *rec = malloc(CACHE_HDR_LEN + len);
    if (!rec)
        return RL_NOMEM;
    store_meta m = {.created = meta->created,
                    .expires = meta->expires,
                    .hits = 0,
                    .size = len,
                    .used = meta->created ? meta->created : 1};
    cache_hdr_encode(rec, &m);
    store_meta stored;
    (void)cache_hdr_decode(rec, CACHE_HDR_LEN, &stored); /* used as stored: 32 bits */
    if (len)
        memcpy(rec + CACHE_HDR_LEN, value, len);
    put_arg a = {.key = key,
                 .now = meta->created,
                 .used = stored.used,
                 .expires = meta->expires,
                 .rec = rec,
                 .rec_len = CACHE_HDR_LEN + len,
                 .len = len};
    op o = {.what = "storing a cache entry", .body = put_body, .idempotent = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    free(rec);
    return e;
}

typedef struct get_arg {
    const uint8_t *key;
    DBT data;         /* DB_DBT_REALLOC: survives retries, freed by the caller */
    uint64_t pending; /* hits not yet flushed (recency.c) ... */
    uint64_t last;    /* ... and the latest use among them */
} get_arg;

/* The pending hits are read while the entry's read lock is held: a flush
 * takes them only under its write lock, so they are counted once, either
 * in the record read or here. */
static int get_body(handles *h, DB_TXN *txn, op *o)
{
    get_arg *a = o->arg;
    DBT k;
    dbt_in(&k, a->key, STORE_KEY_LEN);
    int ret = h->cache->get(h->cache, txn, &k, &a->data, 0);
    if (ret == 0)
        a->pending = uses_pending(o->s->uses, a->key, &a->last);
    return ret;
}

rl_err store_cache_get(store *s, const uint8_t key[STORE_KEY_LEN], store_meta *meta, rl_buf *value)
{
    get_arg a = {.key = key};
    a.data.flags = DB_DBT_REALLOC;
    op o = {.what = "reading a cache entry", .body = get_body, .idempotent = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (e != RL_OK)
        goto out;
    store_meta m;
    if (cache_hdr_decode(a.data.data, a.data.size, &m) != 0 ||
        a.data.size - CACHE_HDR_LEN != m.size) {
        rl_error("store %s: a cache entry has a damaged header; ignoring it", s->home);
        e = RL_STORE;
        goto out;
    }
    /* The value is handed over in the memory Berkeley DB read it into, moved
     * down over the header, rather than copied: for a 1 MiB answer that is
     * one buffer per hit instead of two (private memory per worker after
     * the bench's 1 MiB hits 39 -> 28 MB) and one copy less. */
    if (value && value->len == 0) {
        memmove(a.data.data, (uint8_t *)a.data.data + CACHE_HDR_LEN, (size_t)m.size);
        if ((e = rl_buf_adopt(value, a.data.data, (size_t)m.size, a.data.size)) != RL_OK)
            goto out;
        a.data.data = NULL;
    } else if (value && (e = rl_buf_append(value, (uint8_t *)a.data.data + CACHE_HDR_LEN,
                                           (size_t)m.size)) != RL_OK) {
        goto out;
    }
    m.hits += a.pending;
    m.used = a.last > m.used ? a.last : m.used;
    if (meta)
        *meta = m;
out:
    free(a.data.data);
    return e;
}

static int del_body(handles *h, DB_TXN *txn, op *o)
{
    cache_totals t;
    int found, ret;
    if ((ret = cache_totals_read(h, txn, &t, DB_RMW)) != 0)
        return ret;
    if ((ret = cache_entry_remove(h, txn, o->arg, &t, &found)) != 0)
        return ret;
    if (!found)
        return DB_NOTFOUND;
    return cache_totals_write(h, txn, &t);
}

rl_err store_cache_del(store *s, const uint8_t key[STORE_KEY_LEN])
{
    op o = {
        .what = "deleting a cache entry", .body = del_body, .idempotent = 1, .arg = (void *)key};
    return store_op_run(s, &o);
}

typedef struct purge_arg {
    uint64_t cutoff;  /* purge_expired: entries with expires < cutoff go */
    int all;          /* purge_all */
    uint64_t removed; /* this batch */
    int done;
    uint8_t keys[CACHE_PURGE_BATCH][EXP_KEY_LEN];
} purge_arg;

/* Collects up to CACHE_PURGE_BATCH keys from the start of db (with write locks, as
 * they are about to be deleted). When purging expired entries (the expiry
 * index, !a->all), stops at the first record not older than cutoff.
 * Returns the count in *n. */
static int collect_keys(DB_TXN *txn, DB *db, size_t key_len, uint64_t cutoff, purge_arg *a,
                        unsigned *n)
{
    DBC *c = NULL;
    DBT k, d;
    *n = 0;
    int ret = db->cursor(db, txn, &c, 0);
    if (ret)
        return ret;
    for (u_int32_t flag = DB_FIRST; *n < CACHE_PURGE_BATCH; flag = DB_NEXT) {
        uint8_t *out = a->keys[*n];
        dbt_out(&k, out, EXP_KEY_LEN);
        dbt_part(&d, NULL, 0, 0);
        ret = c->get(c, &k, &d, flag | DB_RMW);
        if (ret == DB_NOTFOUND) {
            ret = 0;
            break;
        }
        if (ret)
            break;
        if (k.size != key_len)
            continue; /* not written by this code; leave it */
        if (key_len == EXP_KEY_LEN && !a->all && store_get64(out) >= cutoff)
            break;
        ++*n;
    }
    int closed = c->close(c);
    return ret ? ret : closed;
}

static int purge_body(handles *h, DB_TXN *txn, op *o)
{
    purge_arg *a = o->arg;
    cache_totals t;
    unsigned n;
    int found, ret;
    a->removed = 0;
    a->done = 0;
    if ((ret = cache_totals_read(h, txn, &t, DB_RMW)) != 0)
        return ret;
    if (a->all) {
        if ((ret = collect_keys(txn, h->cache, STORE_KEY_LEN, 0, a, &n)) != 0)
            return ret;
        for (unsigned i = 0; i < n; i++) {
            if ((ret = cache_entry_remove(h, txn, a->keys[i], &t, &found)) != 0)
                return ret;
            a->removed += (uint64_t)found;
        }
        if (n == 0) {
            /* The table is empty: drop index orphans, if any, and make the
             * totals agree with the emptiness. */
            if ((ret = collect_keys(txn, h->expiry, EXP_KEY_LEN, 0, a, &n)) != 0)
                return ret;
            for (unsigned i = 0; i < n; i++) {
                DBT x;
                dbt_in(&x, a->keys[i], EXP_KEY_LEN);
                if ((ret = h->expiry->del(h->expiry, txn, &x, 0)) != 0 && ret != DB_NOTFOUND)
                    return ret;
            }
            unsigned nr = 0;
            if (n == 0 && (ret = collect_keys(txn, h->recency, EXP_KEY_LEN, 0, a, &nr)) != 0)
                return ret;
            for (unsigned i = 0; i < nr; i++) {
                DBT x;
                dbt_in(&x, a->keys[i], EXP_KEY_LEN);
                if ((ret = h->recency->del(h->recency, txn, &x, 0)) != 0 && ret != DB_NOTFOUND)
                    return ret;
            }
            n += nr;
            if (n == 0 && (ret = fuzzy_clear_batch(h, txn, &nr)) != 0)
                return ret;
            n += nr;
            if (n == 0) {
                t.v[T_ENTRIES] = t.v[T_BYTES] = 0;
                a->done = 1;
            }
        }
    } else {
        if ((ret = collect_keys(txn, h->expiry, EXP_KEY_LEN, a->cutoff, a, &n)) != 0)
            return ret;
        for (unsigned i = 0; i < n; i++) {
            if ((ret = cache_entry_remove(h, txn, a->keys[i] + 8, &t, &found)) != 0)
                return ret;
            if (found) {
                a->removed++;
                t.v[T_EXPIRED]++;
            } else {
                DBT x;
                dbt_in(&x, a->keys[i], EXP_KEY_LEN);
                if ((ret = h->expiry->del(h->expiry, txn, &x, 0)) != 0 && ret != DB_NOTFOUND)
                    return ret;
            }
        }
        a->done = n < CACHE_PURGE_BATCH;
    }
    return cache_totals_write(h, txn, &t);
}

/* Purges in transactions of CACHE_PURGE_BATCH entries so that no transaction
 * holds many locks or blocks writers for long. */
static rl_err purge_run(store *s, purge_arg *a, const char *what, uint64_t *removed)
{
    uint64_t total = 0;
    rl_err e = RL_OK;
    op o = {.what = what, .body = purge_body, .idempotent = 1, .arg = a};
    do {
        if ((e = store_op_run(s, &o)) != RL_OK)
            break;
        total += a->removed;
    } while (!a->done);
    if (removed)
        *removed = total;
    return e;
}

rl_err store_cache_purge_expired(store *s, uint64_t now, uint64_t grace, uint64_t *removed)
{
    purge_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    a->cutoff = now > grace ? now - grace : 0;
    rl_err e = purge_run(s, a, "purging expired cache entries", removed);
    free(a);
    return e;
}

rl_err store_cache_purge_all(store *s, uint64_t *removed)
{
    purge_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    a->all = 1;
    rl_err e = purge_run(s, a, "purging the cache", removed);
    free(a);
    return e;
}

static int stats_body(handles *h, DB_TXN *txn, op *o)
{
    cache_totals t;
    int ret = cache_totals_read(h, txn, &t, 0);
    if (ret == 0)
        memcpy(o->arg, t.v, sizeof t.v);
    return ret;
}

rl_err store_stats_get(store *s, store_stats *out)
{
    uint64_t v[4];
    op o = {.what = "reading store statistics", .body = stats_body, .idempotent = 1, .arg = v};
    rl_err e = store_op_run(s, &o);
    if (e != RL_OK)
        return e;
    out->entries = v[T_ENTRIES];
    out->bytes = v[T_BYTES];
    out->evictions = v[T_EVICTIONS];
    out->expired_removed = v[T_EXPIRED];
    return RL_OK;
}
