/*
 * fuzzyidx.c — the fuzzy index (contracts in fuzzyidx.h).
 *
 * Layout: one database, fuzzy.db, two kinds of record told apart by their
 * first byte.
 *
 *   band row  'b', band number (1), band hash (8, big-endian), digest (32)
 *             -> empty. Composite keys rather than a DB_DUPSORT table: rekey
 *             and the admin tools copy and walk every database as plain
 *             key/value records, and a lookup is the same range read either
 *             way (DB_SET_RANGE on the 10-byte prefix, then the next
 *             records while the prefix holds).
 *   doc row   'd', digest (32) -> number of bands (1), the band hashes
 *             (8 each), the doc bytes. The band hashes are what removal
 *             needs to find the entry's band rows without a scan.
 *
 * Removal (fuzzy_entry_remove) runs inside cache.c's cache_entry_remove,
 * so every way an entry goes takes its rows in the same transaction.
 *
 * Threads: any, through store_op_run. Failure: Berkeley DB codes from the
 * bodies, logged by store_op_run.
 */
#include "store/fuzzyidx.h"

#include <db.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define TAG_BAND 'b'
#define TAG_DOC 'd'
#define BAND_PREFIX_LEN 10 /* tag, band number, hash */
#define BAND_KEY_LEN (BAND_PREFIX_LEN + STORE_KEY_LEN)
#define DOC_KEY_LEN (1 + STORE_KEY_LEN)
#define DOC_HEAD_MAX (1 + 8 * STORE_FUZZY_BANDS_MAX)
#define KEY_BUF 512     /* longer than any key of fuzzy.db (rekey's COPY_KEY_MAX) */
#define CLEAR_BATCH 256 /* records per transaction when clearing the index */

static void band_key(uint8_t *out, unsigned i, uint64_t hash, const uint8_t *key)
{
    out[0] = TAG_BAND;
    out[1] = (uint8_t)i;
    store_put64(out + 2, hash);
    if (key)
        memcpy(out + BAND_PREFIX_LEN, key, STORE_KEY_LEN);
    else
        memset(out + BAND_PREFIX_LEN, 0, STORE_KEY_LEN);
}

static void doc_key(uint8_t *out, const uint8_t *key)
{
    out[0] = TAG_DOC;
    memcpy(out + 1, key, STORE_KEY_LEN);
}

/* ---- removal, for cache.c ------------------------------------------------ */

int fuzzy_entry_remove(handles *h, DB_TXN *txn, const uint8_t *key)
{
    uint8_t dk[DOC_KEY_LEN], head[DOC_HEAD_MAX];
    DBT k, d;
    doc_key(dk, key);
    dbt_in(&k, dk, sizeof dk);
    dbt_part(&d, head, 0, sizeof head);
    int ret = h->fuzzy->get(h->fuzzy, txn, &k, &d, DB_RMW);
    if (ret == DB_NOTFOUND)
        return 0;
    if (ret)
        return ret;
    unsigned n = d.size ? head[0] : 0;
    if (n > STORE_FUZZY_BANDS_MAX || d.size < 1 + 8 * (size_t)n)
        n = 0; /* not written by this code: the doc row goes, band rows (if any) are orphans
                * a lookup skips when it finds no doc */
    for (unsigned i = 0; i < n; i++) {
        uint8_t bk[BAND_KEY_LEN];
        DBT b;
        band_key(bk, i, store_get64(head + 1 + 8 * i), key);
        dbt_in(&b, bk, sizeof bk);
        ret = h->fuzzy->del(h->fuzzy, txn, &b, 0);
        if (ret && ret != DB_NOTFOUND)
            return ret;
    }
    ret = h->fuzzy->del(h->fuzzy, txn, &k, 0);
    return ret == DB_NOTFOUND ? 0 : ret;
}

int fuzzy_clear_batch(handles *h, DB_TXN *txn, unsigned *n)
{
    DBC *c = NULL;
    *n = 0;
    int ret = h->fuzzy->cursor(h->fuzzy, txn, &c, 0);
    if (ret)
        return ret;
    while (*n < CLEAR_BATCH) {
        uint8_t kb[KEY_BUF];
        DBT k, d;
        dbt_out(&k, kb, sizeof kb);
        dbt_part(&d, NULL, 0, 0);
        ret = c->get(c, &k, &d, DB_NEXT | DB_RMW);
        if (ret == DB_NOTFOUND) {
            ret = 0;
            break;
        }
        if (ret || (ret = c->del(c, 0)) != 0)
            break;
        ++*n;
    }
    int closed = c->close(c);
    return ret ? ret : closed;
}

/* ---- put ------------------------------------------------------------------- */

typedef struct put_arg {
    const uint8_t *key;
    const uint8_t *rec; /* doc row's data */
    size_t rec_len;
    const uint64_t *bands;
    size_t nbands;
} put_arg;

static int put_body(handles *h, DB_TXN *txn, op *o)
{
    put_arg *a = o->arg;
    DBT k, d;
    /* The entry first, write-locked (the order cache_entry_remove takes
     * them in): while this transaction holds it, the entry cannot go, so
     * the rows written below cannot outlive it. */
    dbt_in(&k, a->key, STORE_KEY_LEN);
    dbt_part(&d, NULL, 0, 0);
    int ret = h->cache->get(h->cache, txn, &k, &d, DB_RMW);
    if (ret)
        return ret; /* DB_NOTFOUND: RL_NOTFOUND */
    if ((ret = fuzzy_entry_remove(h, txn, a->key)) != 0)
        return ret;
    for (size_t i = 0; i < a->nbands; i++) {
        uint8_t bk[BAND_KEY_LEN];
        band_key(bk, (unsigned)i, a->bands[i], a->key);
        dbt_in(&k, bk, sizeof bk);
        dbt_in(&d, "", 0);
        if ((ret = h->fuzzy->put(h->fuzzy, txn, &k, &d, 0)) != 0)
            return ret;
    }
    uint8_t dk[DOC_KEY_LEN];
    doc_key(dk, a->key);
    dbt_in(&k, dk, sizeof dk);
    dbt_in(&d, a->rec, a->rec_len);
    return h->fuzzy->put(h->fuzzy, txn, &k, &d, 0);
}

rl_err store_fuzzy_put(store *s, const uint8_t key[STORE_KEY_LEN], const uint64_t *bands,
                       size_t nbands, const void *doc, size_t doc_len)
{
    if (nbands == 0 || nbands > STORE_FUZZY_BANDS_MAX)
        return RL_INTERNAL;
    if ((s->max_entry_bytes && doc_len > s->max_entry_bytes) || doc_len > UINT32_MAX / 2)
        return RL_TOO_LARGE;
    size_t head = 1 + 8 * nbands;
    uint8_t *rec = malloc(head + doc_len);
    if (!rec)
        return RL_NOMEM;
    rec[0] = (uint8_t)nbands;
    for (size_t i = 0; i < nbands; i++)
        store_put64(rec + 1 + 8 * i, bands[i]);
    if (doc_len)
        memcpy(rec + head, doc, doc_len);
    put_arg a = {
        .key = key, .rec = rec, .rec_len = head + doc_len, .bands = bands, .nbands = nbands};
    op o = {.what = "storing a fuzzy index entry", .body = put_body, .idempotent = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    free(rec);
    return e;
}

/* ---- candidates ---------------------------------------------------------- */

typedef struct cand {
    uint8_t key[STORE_KEY_LEN];
    unsigned shared;
} cand;

typedef struct cand_arg {
    const uint64_t *bands;
    size_t nbands;
    unsigned max_reads;
    unsigned reads;
    unsigned ncands;
    cand *cands; /* max_reads of them */
} cand_arg;

static void cand_add(cand_arg *a, const uint8_t *key)
{
    for (unsigned i = 0; i < a->ncands; i++) {
        if (memcmp(a->cands[i].key, key, STORE_KEY_LEN) == 0) {
            a->cands[i].shared++;
            return;
        }
    }
    memcpy(a->cands[a->ncands].key, key, STORE_KEY_LEN);
    a->cands[a->ncands++].shared = 1;
}

/* The smallest key after k (fixed length): k + 1 as a big-endian number.
 * 0 when k was all 0xff (nothing after it). */
static int key_after(uint8_t *k, size_t len)
{
    for (size_t i = len; i-- > 0;)
        if (++k[i] != 0)
            return 1;
    return 0;
}

/*
 * Round by round, one record of each band still open: positioned with
 * DB_SET_RANGE at the band's next possible key, so each step is one read
 * whether or not the previous record is still there. A band is done at the
 * first record outside its prefix.
 */
static int cand_body(handles *h, DB_TXN *txn, op *o)
{
    cand_arg *a = o->arg;
    uint8_t next[STORE_FUZZY_BANDS_MAX][BAND_KEY_LEN];
    unsigned char open[STORE_FUZZY_BANDS_MAX];
    DBC *c = NULL;
    a->reads = a->ncands = 0;
    for (size_t i = 0; i < a->nbands; i++) {
        band_key(next[i], (unsigned)i, a->bands[i], NULL);
        open[i] = 1;
    }
    int ret = h->fuzzy->cursor(h->fuzzy, txn, &c, 0);
    if (ret)
        return ret;
    for (int any = 1; any && a->reads < a->max_reads;) {
        any = 0;
        for (size_t i = 0; i < a->nbands && a->reads < a->max_reads; i++) {
            if (!open[i])
                continue;
            uint8_t kb[BAND_KEY_LEN];
            DBT k, d;
            memcpy(kb, next[i], sizeof kb);
            dbt_out(&k, kb, sizeof kb);
            k.size = sizeof kb;
            dbt_part(&d, NULL, 0, 0);
            a->reads++;
            ret = c->get(c, &k, &d, DB_SET_RANGE);
            if (ret == DB_NOTFOUND || ret == DB_BUFFER_SMALL ||
                (ret == 0 && (k.size != BAND_KEY_LEN || memcmp(kb, next[i], BAND_PREFIX_LEN)))) {
                open[i] = 0; /* past the band (or a longer, foreign key) */
                ret = 0;
                continue;
            }
            if (ret)
                goto out;
            cand_add(a, kb + BAND_PREFIX_LEN);
            memcpy(next[i], kb, sizeof kb);
            open[i] = (unsigned char)key_after(next[i], sizeof kb);
            any = 1;
        }
    }
out:;
    int closed = c->close(c);
    return ret ? ret : closed;
}

static int by_shared(const void *x, const void *y)
{
    const cand *a = x, *b = y;
    if (a->shared != b->shared)
        return a->shared > b->shared ? -1 : 1;
    return memcmp(a->key, b->key, STORE_KEY_LEN);
}

rl_err store_fuzzy_candidates(store *s, const uint64_t *bands, size_t nbands, unsigned max_reads,
                              store_fuzzy_fn fn, void *ctx, unsigned *reads)
{
    if (reads)
        *reads = 0;
    if (nbands == 0 || nbands > STORE_FUZZY_BANDS_MAX || max_reads == 0)
        return RL_INTERNAL;
    cand_arg a = {.bands = bands, .nbands = nbands, .max_reads = max_reads};
    a.cands = malloc(sizeof *a.cands * max_reads);
    if (!a.cands)
        return RL_NOMEM;
    op o = {.what = "looking up fuzzy candidates",
            .body = cand_body,
            .idempotent = 1,
            .read_committed = 1,
            .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (reads)
        *reads = a.reads;
    if (e == RL_OK) {
        qsort(a.cands, a.ncands, sizeof *a.cands, by_shared);
        for (unsigned i = 0; i < a.ncands; i++)
            if (fn(ctx, a.cands[i].key, a.cands[i].shared))
                break;
    }
    free(a.cands);
    return e;
}

/* ---- docs ------------------------------------------------------------------ */

typedef struct doc_arg {
    const uint8_t *key;
    DBT data; /* DB_DBT_REALLOC: survives retries, freed by the caller */
} doc_arg;

static int doc_body(handles *h, DB_TXN *txn, op *o)
{
    doc_arg *a = o->arg;
    uint8_t dk[DOC_KEY_LEN];
    DBT k;
    doc_key(dk, a->key);
    dbt_in(&k, dk, sizeof dk);
    return h->fuzzy->get(h->fuzzy, txn, &k, &a->data, 0);
}

rl_err store_fuzzy_doc(store *s, const uint8_t key[STORE_KEY_LEN], rl_buf *out)
{
    doc_arg a = {.key = key};
    a.data.flags = DB_DBT_REALLOC;
    op o = {.what = "reading a fuzzy doc",
            .body = doc_body,
            .idempotent = 1,
            .read_committed = 1,
            .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (e == RL_OK) {
        const uint8_t *p = a.data.data;
        size_t head = a.data.size ? 1 + 8 * (size_t)p[0] : 1;
        if (a.data.size < head) {
            e = RL_NOTFOUND; /* not a record this code wrote: no doc */
        } else {
            e = rl_buf_append(out, p + head, a.data.size - head);
        }
    }
    free(a.data.data);
    return e;
}

typedef struct count_arg {
    uint64_t docs, bands;
} count_arg;

static int count_body(handles *h, DB_TXN *txn, op *o)
{
    count_arg *a = o->arg;
    DBC *c = NULL;
    a->docs = a->bands = 0;
    int ret = h->fuzzy->cursor(h->fuzzy, txn, &c, 0);
    if (ret)
        return ret;
    for (;;) {
        uint8_t kb[KEY_BUF];
        DBT k, d;
        dbt_out(&k, kb, sizeof kb);
        dbt_part(&d, NULL, 0, 0);
        ret = c->get(c, &k, &d, DB_NEXT);
        if (ret == DB_NOTFOUND) {
            ret = 0;
            break;
        }
        if (ret)
            break;
        a->docs += kb[0] == TAG_DOC;
        a->bands += kb[0] == TAG_BAND;
    }
    int closed = c->close(c);
    return ret ? ret : closed;
}

rl_err store_fuzzy_count(store *s, uint64_t *docs, uint64_t *band_rows)
{
    count_arg a = {0};
    op o = {.what = "counting the fuzzy index",
            .body = count_body,
            .idempotent = 1,
            .read_committed = 1,
            .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (docs)
        *docs = a.docs;
    if (band_rows)
        *band_rows = a.bands;
    return e;
}
