/*
 * t_store_fuzzy.c — the fuzzy index (store/fuzzyidx.c): a near-variant's
 * entry is found by its bands at 10^5 entries reading a bounded number of
 * index records (counted), also when one band is shared by many entries;
 * docs come back as stored; rows go with their entry (delete, replacement,
 * eviction, expiry purge, purge of everything) and are never written for an
 * entry that is not there.
 *
 * Bands here are synthetic (what engine/fuzzy.c's fuzzy_bands would give):
 * the store only sees 64-bit hashes and opaque doc bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/fuzzyidx.h"
#include "store/store.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_keys.h"

#define NB 16         /* FUZZY_BANDS */
#define MAX_READS 32u /* what the engine asks for */
#define BIG 100000u   /* entries in the scale test */

static char tmp[64], home[128], keyfile[160];

static store *open_cap(uint64_t max_entries)
{
    store_options o = {.home = home,
                       .key_file = keyfile,
                       .max_entries = max_entries,
                       .cache_mb = 256,
                       .max_threads = 16};
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return NULL;
    uint64_t removed;
    store_cache_purge_all(s, &removed);
    return s;
}

/* Entry n's band hashes: distinct for every (n, band). */
static void bands_of(uint32_t n, uint64_t b[NB])
{
    for (unsigned i = 0; i < NB; i++) {
        uint64_t x = ((uint64_t)n << 8 | i) * 0x9e3779b97f4a7c15ull;
        b[i] = x ^ (x >> 29);
    }
}

/* Stores entry n (value "v") and its fuzzy rows, doc "doc-<n>". */
static rl_err put_fuzzy(store *s, uint32_t n, uint64_t now, uint64_t expires, const uint64_t *b)
{
    uint8_t k[STORE_KEY_LEN];
    char doc[32];
    mkkey(k, n);
    store_meta m = {.created = now, .expires = expires};
    rl_err e = store_cache_put(s, k, &m, "v", 1);
    if (e != RL_OK)
        return e;
    int len = snprintf(doc, sizeof doc, "doc-%u", n);
    return store_fuzzy_put(s, k, b, NB, doc, (size_t)len);
}

static rl_err put_n(store *s, uint32_t n, uint64_t now, uint64_t expires)
{
    uint64_t b[NB];
    bands_of(n, b);
    return put_fuzzy(s, n, now, expires, b);
}

typedef struct found {
    unsigned n;
    uint8_t keys[64][STORE_KEY_LEN];
    unsigned shared[64];
} found;

static int collect(void *ctx, const uint8_t key[STORE_KEY_LEN], unsigned shared)
{
    found *f = ctx;
    if (f->n < 64) {
        memcpy(f->keys[f->n], key, STORE_KEY_LEN);
        f->shared[f->n] = shared;
        f->n++;
    }
    return 0;
}

/* The candidates for bands b: how many, and the first one's key number in *first
 * (UINT32_MAX if none) and its shared bands in *shared. */
static unsigned lookup(store *s, const uint64_t *b, unsigned *reads, uint32_t *first,
                       unsigned *shared)
{
    found f = {0};
    rl_err e = store_fuzzy_candidates(s, b, NB, MAX_READS, collect, &f, reads);
    if (e != RL_OK)
        return 0;
    *first = UINT32_MAX;
    *shared = 0;
    if (f.n) {
        const uint8_t *k = f.keys[0];
        *first = (uint32_t)k[0] << 24 | (uint32_t)k[1] << 16 | (uint32_t)k[2] << 8 | k[3];
        *shared = f.shared[0];
    }
    return f.n;
}

static int has_rows(store *s, uint32_t n)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    rl_buf b;
    rl_buf_init(&b, 0);
    rl_err e = store_fuzzy_doc(s, k, &b);
    rl_buf_release(&b);
    if (e == RL_OK)
        return 1;
    uint64_t bands[NB];
    bands_of(n, bands);
    unsigned reads, shared;
    uint32_t first;
    return lookup(s, bands, &reads, &first, &shared) > 0;
}

static void test_put_find(void)
{
    store *s = open_cap(0);
    ok(s != NULL, "open");
    if (!s)
        return;
    is_int(put_n(s, 1, 100, 10000), RL_OK, "entry 1 with its fuzzy rows");
    is_int(put_n(s, 2, 100, 10000), RL_OK, "entry 2 with its fuzzy rows");
    uint64_t docs, rows;
    is_int(store_fuzzy_count(s, &docs, &rows), RL_OK, "count");
    is_int(docs, 2, "two docs");
    is_int(rows, 2 * NB, "their band rows");

    uint8_t k[STORE_KEY_LEN];
    rl_buf doc;
    rl_buf_init(&doc, 0);
    mkkey(k, 1);
    is_int(store_fuzzy_doc(s, k, &doc), RL_OK, "doc of entry 1");
    is_int(doc.len, 5, "doc length");
    ok(doc.len == 5 && memcmp(doc.data, "doc-1", 5) == 0, "doc bytes as stored");
    rl_buf_release(&doc);

    /* A near-variant: 12 of its 16 bands equal entry 1's. */
    uint64_t b[NB];
    bands_of(1, b);
    for (unsigned i = 0; i < 4; i++)
        b[i * 4] ^= 0xdeadbeef;
    unsigned reads, shared;
    uint32_t first;
    is_int(lookup(s, b, &reads, &first, &shared), 1, "one candidate");
    is_int(first, 1, "entry 1");
    is_int(shared, 12, "sharing 12 bands");
    ok(reads <= MAX_READS, "reads bounded");

    /* Band i only meets band i: entry 2's hashes moved one band along. */
    uint64_t b2[NB], moved[NB];
    bands_of(2, b2);
    for (unsigned i = 0; i < NB; i++)
        moved[i] = b2[(i + 1) % NB];
    is_int(lookup(s, moved, &reads, &first, &shared), 0, "hashes in other bands find nothing");

    /* No rows for an entry that is not in the cache. */
    uint64_t b9[NB];
    bands_of(9, b9);
    mkkey(k, 9);
    is_int(store_fuzzy_put(s, k, b9, NB, "x", 1), RL_NOTFOUND, "no entry, no rows");
    is_int(store_fuzzy_count(s, &docs, &rows), RL_OK, "count");
    is_int(docs, 2, "still two docs");

    /* Putting again replaces the rows (no band rows of the old bands left). */
    mkkey(k, 2);
    bands_of(3, b9);
    is_int(store_fuzzy_put(s, k, b9, NB, "new", 3), RL_OK, "entry 2's rows replaced");
    is_int(store_fuzzy_count(s, &docs, &rows), RL_OK, "count");
    is_int(rows, 2 * NB, "no stale band rows");
    is_int(lookup(s, b9, &reads, &first, &shared), 1, "found by its new bands");
    is_int(first, 2, "entry 2");
    is_int(lookup(s, b2, &reads, &first, &shared), 0, "not by its old ones");
    store_close(s);
}

/* Every way an entry goes takes its rows. */
static void test_rows_go(void)
{
    store *s = open_cap(3);
    ok(s != NULL, "open with max_entries = 3");
    if (!s)
        return;
    uint8_t k[STORE_KEY_LEN];
    put_n(s, 1, 100, 200); /* expires first */
    put_n(s, 2, 100, 10000);
    put_n(s, 3, 101, 10000);
    ok(has_rows(s, 1) && has_rows(s, 2) && has_rows(s, 3), "three entries with rows");

    mkkey(k, 2);
    is_int(store_cache_del(s, k), RL_OK, "delete entry 2");
    ok(!has_rows(s, 2), "its rows are gone");

    store_meta m = {.created = 102, .expires = 10000};
    mkkey(k, 3);
    is_int(store_cache_put(s, k, &m, "w", 1), RL_OK, "entry 3 replaced");
    ok(!has_rows(s, 3), "the replaced entry's rows are gone");
    put_n(s, 3, 102, 10000);

    put_n(s, 4, 103, 10000);
    put_n(s, 5, 300, 10000); /* over the cap at 300: entry 1 has expired, it goes */
    mkkey(k, 1);
    is_int(store_cache_get(s, k, NULL, NULL), RL_NOTFOUND, "entry 1 evicted");
    ok(!has_rows(s, 1), "the evicted entry's rows are gone");
    put_n(s, 6, 301, 10000); /* over again: the least recently used (3) goes */
    mkkey(k, 3);
    is_int(store_cache_get(s, k, NULL, NULL), RL_NOTFOUND, "entry 3 evicted");
    ok(!has_rows(s, 3), "its rows are gone");

    put_n(s, 7, 400, 500);
    uint64_t removed = 0;
    is_int(store_cache_purge_expired(s, 600, 0, &removed), RL_OK, "purge expired");
    is_int(removed, 1, "one expired entry purged");
    ok(!has_rows(s, 7), "the purged entry's rows are gone");
    ok(has_rows(s, 5) && has_rows(s, 6), "the others keep theirs");

    is_int(store_cache_purge_all(s, &removed), RL_OK, "purge all");
    uint64_t docs = 1, rows = 1;
    is_int(store_fuzzy_count(s, &docs, &rows), RL_OK, "count");
    is_int(docs, 0, "no docs after purging everything");
    is_int(rows, 0, "no band rows");
    store_close(s);
}

/* 10^5 entries: the near-variant's entry is found reading at most
 * MAX_READS records, also when one of its bands is shared by 5,000 others
 * (a common system prompt); and a request unlike any finds none. */
static void test_scale(void)
{
    store *s = open_cap(0);
    ok(s != NULL, "open");
    if (!s)
        return;
    const uint64_t popular = 0x1234567887654321ull;
    rl_err e = RL_OK;
    for (uint32_t n = 0; n < BIG && e == RL_OK; n++) {
        uint64_t b[NB];
        bands_of(n, b);
        if (n % 20 == 0)
            b[0] = popular;
        e = put_fuzzy(s, n, 1000, 100000, b);
    }
    is_int(e, RL_OK, "100000 entries stored with their fuzzy rows");
    uint64_t docs, rows;
    is_int(store_fuzzy_count(s, &docs, &rows), RL_OK, "count");
    is_int(docs, BIG, "100000 docs");
    is_int(rows, (uint64_t)BIG * NB, "1.6 million band rows");

    const uint32_t target = 77780; /* a multiple of 20: it has the popular band */
    uint64_t b[NB];
    bands_of(target, b);
    b[0] = popular;
    for (unsigned i = 1; i < NB; i += 3)
        b[i] ^= 1; /* 5 bands changed: 11 shared */
    unsigned reads = 0, shared = 0;
    uint32_t first = 0;
    unsigned n = lookup(s, b, &reads, &first, &shared);
    ok(n >= 1, "candidates found");
    is_int(first, target, "the near-variant's entry comes first");
    ok(shared >= 10,
       "sharing the most bands read (11 shared; the popular band may be read past it)");
    ok(reads <= MAX_READS, "at most 32 index records read");
    printf("# %u index records read at %u entries (%u candidates)\n", reads, BIG, n);

    uint64_t none[NB];
    bands_of(BIG + 5, none);
    n = lookup(s, none, &reads, &first, &shared);
    is_int(n, 0, "a request unlike any has no candidate");
    is_int(reads, NB, "one read per band to learn it");
    store_close(s);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(300);
    snprintf(tmp, sizeof tmp, "/tmp/t_store_fuzzy.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);
    is_int(store_keyfile_ensure(keyfile), RL_OK, "key file");

    test_put_find();
    test_rows_go();
    test_scale();

    store_options o = {.home = home, .key_file = keyfile};
    is_int(store_remove(&o), RL_OK, "store_remove");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
