/*
 * t_store_recency.c — eviction by recency of use and hits without a write
 * per hit (store/recency.c, store/usemap.c): the least recently used entry
 * goes, pending hits count before and after a flush, across processes (one
 * killed with SIGKILL), for an entry deleted meanwhile, when the table of
 * uses is full, and in a store whose recency index is missing.
 *
 * Time is passed in (created, touch's and flush's now): nothing sleeps.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_keys.h"

#define USE_SLOTS 16384 /* store/usemap.h: keys n and n + USE_SLOTS share a home slot */
#define USE_PROBE 16

static char tmp[64], home[128], keyfile[160];

static store *open_cap(uint64_t max_entries)
{
    store_options o = {.home = home,
                       .key_file = keyfile,
                       .max_entries = max_entries,
                       .cache_mb = 8,
                       .max_threads = 16};
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return NULL;
    uint64_t removed;
    store_cache_purge_all(s, &removed);
    return s;
}

static rl_err put_at(store *s, uint32_t n, uint64_t now, uint64_t expires)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    store_meta m = {.created = now, .expires = expires};
    return store_cache_put(s, k, &m, "v", 1);
}

static rl_err hit_at(store *s, uint32_t n, uint64_t now)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    return store_cache_touch(s, k, now);
}

/* The entry's hits (UINT64_MAX when absent). */
static uint64_t hits_of(store *s, uint32_t n)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    store_meta m;
    return store_cache_get(s, k, &m, NULL) == RL_OK ? m.hits : UINT64_MAX;
}

static int has(store *s, uint32_t n)
{
    return hits_of(s, n) != UINT64_MAX;
}

/* The case, with and without a flush between the hit and the put. */
static void test_popular_kept(void)
{
    for (int flushed = 0; flushed < 2; flushed++) {
        store *s = open_cap(2);
        ok(s != NULL, "open with max_entries = 2");
        if (!s)
            return;
        const uint32_t A = 1, P = 2, B = 3;
        put_at(s, A, 100, 10000);
        put_at(s, P, 101, 10000);
        is_int(hit_at(s, A, 102), RL_OK, "hit A");
        if (flushed)
            is_int(store_recency_flush(s, 102, NULL), RL_OK, "flush");
        is_int(put_at(s, B, 103, 10000), RL_OK, "store B over the cap");
        ok(!has(s, P), flushed ? "P evicted (hit flushed)" : "P evicted (hit still pending)");
        ok(has(s, A), "A, used last, kept");
        ok(has(s, B), "B stored");
        is_int(hits_of(s, A), 1, "A's hit counted");
        store_close(s);
    }
}

/* 30 entries through a cap of 10, three of them hit every round: the hot
 * three and the seven newest stay. Flushes now and then mix flushed and
 * pending uses. */
static void test_three_times_cap(void)
{
    store *s = open_cap(10);
    ok(s != NULL, "open with max_entries = 10");
    if (!s)
        return;
    store_stats st0, st;
    store_stats_get(s, &st0);
    for (uint32_t i = 0; i < 10; i++)
        put_at(s, 100 + i, 1000 + i, 100000);
    for (uint32_t j = 10; j < 30; j++) {
        uint64_t now = 2000 + j;
        for (uint32_t h = 0; h < 3; h++)
            hit_at(s, 100 + h, now);
        if (j % 5 == 0)
            store_recency_flush(s, now, NULL);
        put_at(s, 100 + j, now, 100000);
    }
    int right = 1;
    for (uint32_t j = 0; j < 30; j++) {
        int want = j < 3 || j >= 23;
        if (has(s, 100 + j) != want) {
            printf("# entry %u: %s\n", j, want ? "evicted, should be kept" : "kept, should go");
            right = 0;
        }
    }
    ok(right, "the 10 most recently used are the 10 kept");
    is_int(hits_of(s, 100), 20, "a hot entry's hits: 20, flushed and pending");
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 10, "at the cap");
    is_int(st.evictions - st0.evictions, 20, "20 evictions");
    store_close(s);
}

/* An expired entry goes before any fresh one, however recently used. */
static void test_expired_first(void)
{
    store *s = open_cap(2);
    if (!s)
        return;
    put_at(s, 1, 100, 150);   /* X: expires at 150 */
    put_at(s, 2, 101, 10000); /* Y */
    hit_at(s, 1, 140);        /* X used last */
    is_int(put_at(s, 3, 200, 10000), RL_OK, "put at 200");
    ok(!has(s, 1), "the expired entry went first, though used last");
    ok(has(s, 2), "the fresh, least recently used one stayed");
    store_close(s);
}

/* Hits read the same before and after a flush, from get and from a scan. */
static int scan_hits(void *ctx, const store_item *it)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, 7);
    if (memcmp(it->key, k, STORE_KEY_LEN) == 0)
        *(uint64_t *)ctx = it->meta.hits;
    return 0;
}

static void test_counts_across_flush(void)
{
    store *s = open_cap(0);
    if (!s)
        return;
    put_at(s, 7, 100, 10000);
    for (int i = 0; i < 3; i++)
        hit_at(s, 7, 101);
    is_int(hits_of(s, 7), 3, "three pending hits read");
    uint64_t scanned = 0, moved = 0;
    store_cache_scan(s, 0, scan_hits, &scanned);
    is_int(scanned, 3, "a scan reads them too");
    is_int(store_recency_flush(s, 102, &moved), RL_OK, "flush");
    is_int(moved, 1, "one entry updated");
    is_int(hits_of(s, 7), 3, "three hits after the flush");
    hit_at(s, 7, 103);
    hit_at(s, 7, 104);
    is_int(hits_of(s, 7), 5, "flushed plus pending");
    store_cache_scan(s, 0, scan_hits, &scanned);
    is_int(scanned, 5, "the scan agrees");
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, 7);
    store_meta m;
    store_cache_get(s, k, &m, NULL);
    is_int(m.used, 104, "meta.used is the last hit");
    store_recency_info info;
    store_recency_info_get(s, &info);
    ok(info.pending_slots >= 1, "the table holds the pending key");
    store_recency_flush(s, 105, NULL);
    is_int(hits_of(s, 7), 5, "five after a second flush");
    store_recency_info_get(s, &info);
    is_int(info.pending_slots, 0, "a flush empties the table");

    /* A touch on an entry deleted (and stored again) meanwhile. */
    hit_at(s, 7, 106);
    uint8_t key[STORE_KEY_LEN];
    mkkey(key, 7);
    is_int(store_cache_del(s, key), RL_OK, "delete it with a hit pending");
    is_int(hit_at(s, 7, 107), RL_OK, "a hit after the delete is harmless");
    put_at(s, 7, 108, 10000);
    is_int(hits_of(s, 7), 0, "stored again: starts at 0 hits");
    is_int(store_recency_flush(s, 109, NULL), RL_OK, "flush");
    is_int(hits_of(s, 7), 0, "the deleted entry's hits went nowhere");
    store_close(s);
}

/* Hits from another process, which then dies by SIGKILL without a flush. */
static void test_other_process(void)
{
    store *s = open_cap(0);
    if (!s)
        return;
    put_at(s, 8, 100, 10000);
    hit_at(s, 8, 101);
    store_close(s); /* a handle does not survive fork: the child opens its own */
    pid_t pid = fork();
    if (pid == 0) {
        store_options o = {.home = home, .key_file = keyfile, .cache_mb = 8, .max_threads = 16};
        store *c = NULL;
        if (store_open(&o, &c) != RL_OK)
            _exit(2);
        for (int i = 0; i < 4; i++)
            if (hit_at(c, 8, 110 + (uint64_t)i) != RL_OK)
                _exit(3);
        if (hits_of(c, 8) != 5)
            _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child counted 5 and was killed");
    store_options o = {.home = home, .key_file = keyfile, .cache_mb = 8, .max_threads = 16};
    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "reopen (recovery after the kill)");
    if (!s)
        return;
    is_int(hits_of(s, 8), 5, "the killed child's hits survived it");
    is_int(store_maintain(s, 120), RL_OK, "maintenance flushes");
    store_recency_info info;
    store_recency_info_get(s, &info);
    is_int(info.pending_slots, 0, "nothing pending after maintenance");
    is_int(hits_of(s, 8), 5, "five, now in the entry");
    store_close(s);
}

/* USE_PROBE + 1 keys sharing a home slot: the last one finds no slot and
 * is counted directly; every count stays exact. */
static void test_full_table(void)
{
    store *s = open_cap(0);
    if (!s)
        return;
    store_recency_flush(s, 100, NULL);
    store_recency_info before, after;
    store_recency_info_get(s, &before);
    for (uint32_t j = 0; j <= USE_PROBE; j++)
        put_at(s, 5 + j * USE_SLOTS, 100, 10000);
    int all_ok = 1;
    for (uint32_t j = 0; j <= USE_PROBE; j++)
        all_ok &= hit_at(s, 5 + j * USE_SLOTS, 101) == RL_OK;
    ok(all_ok, "17 colliding keys hit");
    store_recency_info_get(s, &after);
    is_int(after.direct - before.direct, 1, "one hit written directly (no slot)");
    is_int(after.pending_slots, USE_PROBE, "the others wait in the table");
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, 5 + 16 * USE_SLOTS);
    is_int(store_cache_touch(s, k, 102), RL_OK, "a second direct hit");
    int exact = 1;
    for (uint32_t j = 0; j <= USE_PROBE; j++)
        exact &= hits_of(s, 5 + j * USE_SLOTS) == (j == USE_PROBE ? 2u : 1u);
    ok(exact, "every count exact with a full table");
    store_recency_flush(s, 103, NULL);
    exact = 1;
    for (uint32_t j = 0; j <= USE_PROBE; j++)
        exact &= hits_of(s, 5 + j * USE_SLOTS) == (j == USE_PROBE ? 2u : 1u);
    ok(exact, "and after the flush");
    mkkey(k, 999999);
    is_int(store_cache_touch(s, k, 104), RL_OK, "after the flush there is room again");
    store_recency_info_get(s, &before);
    is_int(before.direct, after.direct + 1, "no more direct hits");
    store_close(s);
}

/* A store without recency.db (an older store, or a copy without it) works
 * and indexes its entries at maintenance. */
static void test_missing_index(void)
{
    store *s = open_cap(0);
    if (!s)
        return;
    put_at(s, 11, 100, 10000);
    put_at(s, 12, 101, 10000);
    put_at(s, 13, 102, 10000);
    hit_at(s, 11, 103);
    store_recency_flush(s, 103, NULL);
    store_close(s);
    char path[256];
    snprintf(path, sizeof path, "%s/recency.db", home);
    is_int(unlink(path), 0, "recency.db removed (no handle open)");
    store_options o = {
        .home = home, .key_file = keyfile, .max_entries = 3, .cache_mb = 8, .max_threads = 16};
    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "a store without recency.db opens");
    if (!s)
        return;
    is_int(store_maintain(s, 104), RL_OK, "maintenance indexes its entries");
    is_int(put_at(s, 14, 105, 10000), RL_OK, "put over the cap");
    ok(!has(s, 12), "the least recently used (12) evicted");
    ok(has(s, 11) && has(s, 13) && has(s, 14), "the others kept");
    store_close(s);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(60);
    snprintf(tmp, sizeof tmp, "/tmp/t_store_recency.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);
    is_int(store_keyfile_ensure(keyfile), RL_OK, "key file");

    test_popular_kept();
    test_three_times_cap();
    test_expired_first();
    test_counts_across_flush();
    test_other_process();
    test_full_table();
    test_missing_index();

    store_options o = {.home = home, .key_file = keyfile};
    is_int(store_remove(&o), RL_OK, "store_remove");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
