/*
 * t_store.c — the Berkeley DB store in one process: key file, entries,
 * caps and eviction, purges, hits, persistence and encryption at rest.
 * Several processes, a process killed with SIGKILL in the middle of its
 * writes, and threads through a recovery are t_store_procs.c's.
 *
 * Time is passed in (meta->created/expires, now): nothing sleeps for expiry.
 * Everything lives in a mkdtemp directory (store_fixture.h), and the store
 * is removed at the end; the SysV segments are checked gone (as test
 * points) in t_store_procs.c, here a segment left behind fails the exit
 * status.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"
#include "tests/unit/store_fixture.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_keys.h"

static char keyfile2[160], keyfile_open[160];

/* ---- the tests ------------------------------------------------------------ */

static void test_keyfile(void)
{
    struct stat st;
    char *dir = strdup(keyfile);
    *strrchr(dir, '/') = '\0';
    is_int(store_keyfile_ensure(keyfile), RL_OK, "keyfile: created with missing parents");
    is_int(stat(keyfile, &st), 0, "keyfile: exists");
    is_int(st.st_mode & 0777, 0600, "keyfile: mode 0600");
    is_int(st.st_size, 65, "keyfile: 64 hex digits and a newline");
    is_int(stat(dir, &st), 0, "keyfile: parent exists");
    is_int(st.st_mode & 0777, 0700, "keyfile: parent mode 0700");
    free(dir);

    char before[128] = {0}, after[128] = {0};
    FILE *f = fopen(keyfile, "r");
    ok(f && fgets(before, sizeof before, f), "keyfile: readable");
    if (f)
        fclose(f);
    size_t hex = strspn(before, "0123456789abcdef");
    is_int(hex, 64, "keyfile: hex encoded");
    is_int(store_keyfile_ensure(keyfile), RL_OK, "keyfile: second ensure succeeds");
    f = fopen(keyfile, "r");
    ok(f && fgets(after, sizeof after, f), "keyfile: still readable");
    if (f)
        fclose(f);
    is_str(after, before, "keyfile: not overwritten");

    is_int(store_keyfile_ensure(keyfile2), RL_OK, "keyfile: a second key");
    FILE *g = fopen(keyfile2, "r");
    char other[128] = {0};
    ok(g && fgets(other, sizeof other, g), "keyfile: second key readable");
    if (g)
        fclose(g);
    ok(strcmp(other, before) != 0, "keyfile: two keys differ");
}

static void test_basic(void)
{
    store_options o = opts(0, 0, 4096);
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "open");
    if (!s)
        return;
    store *s2 = NULL;
    is_int(store_open(&o, &s2), RL_STORE, "a second handle in the same process is refused");
    ok(s2 == NULL, "no handle on failure");

    uint8_t k[STORE_KEY_LEN];
    mkkey(k, 1);
    store_meta m = {.created = 100, .expires = 200, .hits = 99};
    is_int(store_cache_put(s, k, &m, "hello world", 11), RL_OK, "put");
    rl_buf b;
    rl_buf_init(&b, 0);
    rl_buf_puts(&b, "pre:");
    store_meta got = {0};
    is_int(store_cache_get(s, k, &got, &b), RL_OK, "get");
    is_str(b.data, "pre:hello world", "get appends the value");
    is_int(got.created, 100, "meta.created kept");
    is_int(got.expires, 200, "meta.expires kept");
    is_int(got.hits, 0, "meta.hits starts at 0");
    is_int(got.size, 11, "meta.size filled in");

    is_int(store_cache_touch(s, k, 150), RL_OK, "touch");
    is_int(store_cache_touch(s, k, 151), RL_OK, "touch again");
    rl_buf_reset(&b);
    is_int(store_cache_get(s, k, &got, &b), RL_OK, "get after touch");
    is_int(got.hits, 2, "hits counted");
    is_str(b.data, "hello world", "value intact after touch");

    rl_buf small;
    rl_buf_init(&small, 4);
    is_int(store_cache_get(s, k, NULL, &small), RL_TOO_LARGE, "get into a too small buffer");
    rl_buf_release(&small);

    m.expires = 300;
    is_int(store_cache_put(s, k, &m, "bye", 3), RL_OK, "replace");
    rl_buf_reset(&b);
    is_int(store_cache_get(s, k, &got, &b), RL_OK, "get replaced");
    is_str(b.data, "bye", "replaced value");
    is_int(got.hits, 0, "replace resets hits");
    store_stats st;
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 1, "replace keeps one entry");
    is_int(st.bytes, 3, "replace updates bytes");

    is_int(store_cache_del(s, k), RL_OK, "del");
    is_int(store_cache_get(s, k, &got, &b), RL_NOTFOUND, "get after del");
    is_int(store_cache_del(s, k), RL_NOTFOUND, "del of a missing key");
    is_int(store_cache_touch(s, k, 160), RL_OK, "touch of a missing key: counted, harmless");
    is_int(store_recency_flush(s, 160, NULL), RL_OK, "flush drops a missing key's hit");
    is_int(store_cache_get(s, k, &got, &b), RL_NOTFOUND, "the flush created nothing");
    mkkey(k, 424242);
    is_int(store_cache_get(s, k, &got, &b), RL_NOTFOUND, "get of a never stored key");
    rl_buf_release(&b);

    char *big = calloc(1, 4097);
    is_int(store_cache_put(s, k, &m, big, 4097), RL_TOO_LARGE, "value over max_entry_bytes");
    is_int(store_cache_put(s, k, &m, big, 4096), RL_OK, "value at max_entry_bytes");
    is_int(store_cache_put(s, k, &m, "", 0), RL_OK, "empty value");
    rl_buf_init(&b, 0);
    is_int(store_cache_get(s, k, &got, &b), RL_OK, "get empty value");
    is_int(b.len, 0, "empty value is empty");
    rl_buf_release(&b);
    free(big);

    /* purge_all and scans over more than one batch */
    uint64_t removed = 0;
    is_int(store_cache_purge_all(s, &removed), RL_OK, "purge_all");
    is_int(removed, 1, "purge_all count");
    for (uint32_t i = 0; i < 150; i++)
        if (put_n(s, (i * 7919u) % 1000u, 1000 + i, 10 + i) != RL_OK)
            break;
    struct scan sc = scan_all(s);
    is_int(sc.entries, 150, "scan sees every entry");
    ok(sc.ordered, "scan in key order");
    check_consistent(s, "after 150 puts");
    struct scan stop = {.ordered = 1, .stop_after = 7};
    is_int(store_cache_scan(s, 0, scan_fn, &stop), RL_OK, "scan with early stop");
    is_int(stop.entries, 7, "scan stops when fn returns non-zero");
    struct scan del = {.ordered = 1, .del_from = s};
    is_int(store_cache_scan(s, 0, scan_fn, &del), RL_OK, "scan deleting from its callback");
    is_int(del.entries, 150, "scan visits all while deleting");
    check_consistent(s, "after deleting from a scan");
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 75, "every second entry deleted");
    is_int(store_cache_purge_all(s, &removed), RL_OK, "purge_all");
    is_int(removed, 75, "purge_all removed the rest");
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 0, "empty after purge_all");
    is_int(st.bytes, 0, "no bytes after purge_all");

    /* purge_expired with grace */
    put_n(s, 1, 100, 10);
    put_n(s, 2, 200, 20);
    put_n(s, 3, 300, 30);
    is_int(store_cache_purge_expired(s, 50, 100, &removed), RL_OK, "purge with grace > now");
    is_int(removed, 0, "nothing expired before 0");
    is_int(store_cache_purge_expired(s, 250, 100, &removed), RL_OK, "purge now=250 grace=100");
    is_int(removed, 1, "only the entry expired before 150 removed");
    store_meta gm;
    is_int(get_n(s, 1, &gm), RL_NOTFOUND, "expired entry gone");
    is_int(get_n(s, 2, &gm), RL_OK, "entry within grace kept");
    is_int(store_cache_purge_expired(s, 250, 0, &removed), RL_OK, "purge now=250 grace=0");
    is_int(removed, 1, "entry expired at 200 removed");
    is_int(get_n(s, 3, &gm), RL_OK, "fresh entry kept");
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.expired_removed, 2, "stats.expired_removed");
    check_consistent(s, "after purges");

    /* store_maintain purges entries an hour past expiry */
    is_int(store_maintain(s, 300 + 3600 + 10), RL_OK, "maintain");
    is_int(get_n(s, 3, &gm), RL_NOTFOUND, "maintain purged the long expired entry");
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 0, "empty after maintain");

    /* the marker stays stored for the persistence and plaintext checks */
    mkkey(k, 777);
    store_meta mm = {.created = 1, .expires = UINT64_MAX - 1};
    is_int(store_cache_put(s, k, &mm, MARKER, strlen(MARKER)), RL_OK, "put marker");
    for (int i = 0; i < 3; i++)
        is_int(store_cache_touch(s, k, 4000 + (uint64_t)i), RL_OK,
               "a hit on the marker before close");
    is_int(store_maintain(s, 5000), RL_OK, "maintain checkpoints");
    store_close(s);
}

static void test_caps(void)
{
    store_options o = opts(0, 3, 0);
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "open creates the store (max_entries=3)");
    if (!s)
        return;
    learn_keys();
    ok(key_base >= 0, "the store's SysV keys are known");
    uint64_t removed;
    store_stats st0, st;
    store_meta m;
    is_int(store_cache_purge_all(s, &removed), RL_OK, "start empty");
    is_int(store_stats_get(s, &st0), RL_OK, "stats");
    put_n(s, 101, 100, 10);
    put_n(s, 102, 50, 10);
    put_n(s, 103, 200, 10);
    is_int(put_n(s, 104, 300, 10), RL_OK, "fourth put over max_entries");
    is_int(get_n(s, 102, &m), RL_NOTFOUND, "expired entries go first, the first expired first");
    is_int(get_n(s, 101, &m), RL_OK, "others kept (101)");
    is_int(get_n(s, 103, &m), RL_OK, "others kept (103)");
    is_int(get_n(s, 104, &m), RL_OK, "new entry stored");
    put_n(s, 105, 150, 10);
    is_int(get_n(s, 101, &m), RL_NOTFOUND, "next expired entry evicted");
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 3, "entries at the cap");
    is_int(st.evictions - st0.evictions, 2, "evictions counted");
    is_int(put_n(s, 103, 400, 10), RL_OK, "replacing at the cap");
    is_int(get_n(s, 104, &m), RL_OK, "replacing evicts nothing");
    is_int(get_n(s, 105, &m), RL_OK, "replacing evicts nothing (105)");
    check_consistent(s, "entry cap");
    store_cache_purge_all(s, &removed);
    store_close(s);

    o = opts(1000, 0, 0);
    is_int(store_open(&o, &s), RL_OK, "open with max_bytes=1000");
    if (!s)
        return;
    is_int(store_stats_get(s, &st0), RL_OK, "stats");
    put_n(s, 201, 10, 400);
    put_n(s, 202, 30, 400);
    is_int(put_n(s, 203, 20, 400), RL_OK, "third 400-byte put over 1000 bytes");
    is_int(get_n(s, 201, &m), RL_NOTFOUND, "expired first, for bytes too");
    is_int(get_n(s, 202, &m), RL_OK, "202 kept");
    is_int(get_n(s, 203, &m), RL_OK, "203 kept");
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.bytes, 800, "bytes under the cap");
    is_int(put_n(s, 204, 40, 900), RL_OK, "900-byte put");
    is_int(get_n(s, 203, &m), RL_NOTFOUND, "evicted 203 (expires 20)");
    is_int(get_n(s, 202, &m), RL_NOTFOUND, "evicted 202 (expires 30)");
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 1, "one entry left");
    is_int(st.bytes, 900, "900 bytes");
    is_int(st.evictions - st0.evictions, 3, "three evictions");
    is_int(put_n(s, 205, 50, 1001), RL_TOO_LARGE, "value larger than max_bytes");
    check_consistent(s, "byte cap");
    store_cache_purge_all(s, &removed);
    store_close(s);
}

static void test_persist_and_secret(void)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "reopen after close");
    if (s) {
        uint8_t k[STORE_KEY_LEN];
        mkkey(k, 777);
        rl_buf b;
        rl_buf_init(&b, 0);
        store_meta m = {0};
        is_int(store_cache_get(s, k, &m, &b), RL_OK, "marker persisted");
        is_str(b.data, MARKER, "marker value intact");
        is_int(m.hits, 3, "the marker's hits persisted");
        rl_buf_release(&b);
        store_close(s);
    }

    store_options bad = o;
    bad.key_file = keyfile2;
    s = NULL;
    is_int(store_open(&bad, &s), RL_STORE, "wrong secret refused");
    ok(s == NULL, "no handle with the wrong secret");

    write_file(keyfile_open, "0123456789abcdef0123456789abcdef\n", 0644);
    bad.key_file = keyfile_open;
    is_int(store_open(&bad, &s), RL_STORE, "world-readable key file refused");
    bad.key_file = "/nonexistent/relay/key";
    is_int(store_open(&bad, &s), RL_STORE, "missing key file refused");

    is_int(store_open(&o, &s), RL_OK, "right secret still opens");
    store_close(s);
}

int main(void)
{
    if (fixture_setup("t_store") != 0)
        return 1;
    snprintf(keyfile2, sizeof keyfile2, "%s/keys/other.key", tmp);
    snprintf(keyfile_open, sizeof keyfile_open, "%s/keys/open.key", tmp);

    test_keyfile();
    test_caps();
    test_basic();
    test_persist_and_secret();
    test_no_plaintext();

    store_options o = opts(0, 0, 0);
    int left = store_remove(&o) != RL_OK || our_segments() != 0;
    if (left)
        printf("# store_remove failed or left a shared memory segment behind\n");
    int rc = fixture_finish();
    return left ? 1 : rc;
}
