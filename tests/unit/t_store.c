/*
 * t_store.c — the Berkeley DB store: key file, entries, caps and eviction,
 * purges, hits, encryption at rest, several processes, and a process
 * killed with SIGKILL in the middle of its writes.
 *
 * Time is passed in (meta->created/expires, now): nothing sleeps for expiry.
 * The only pauses are the few milliseconds before a SIGKILL, to hit the
 * victim at a random moment. Everything lives in a mkdtemp directory, and
 * the SysV segments the test's processes created are checked gone at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_keys.h"

#define MARKER "PLAINTEXT-MARKER-7f3a9c-relay-test"
#define CHILDREN 3
#define CHILD_ITERS 400
#ifndef KILL_ROUNDS
#define KILL_ROUNDS 4
#endif

/*
 * Under LeakSanitizer (make asan): Berkeley DB 5.3 abandons the memory of an
 * environment handle closed after a panic (__env_close_pp returns before
 * destroying it; about 25 KB per recovery), and the kill rounds below cause
 * such panics on purpose. Allocations of our own code stay checked; a run
 * built with -DKILL_ROUNDS=0 is leak-free without this.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libdb-5.3.so\n";
}

static char tmp[64];
static char self[4096]; /* this binary, for spawn_exec */
static char home[128], keyfile[160], keyfile2[160], keyfile_open[160];

static store_options opts(uint64_t max_bytes, uint64_t max_entries, uint64_t max_entry_bytes)
{
    store_options o = {.home = home,
                       .key_file = keyfile,
                       .max_bytes = max_bytes,
                       .max_entries = max_entries,
                       .max_entry_bytes = max_entry_bytes,
                       .cache_mb = 8,
                       .max_threads = 16};
    return o;
}

static rl_err put_n(store *s, uint32_t n, uint64_t expires, size_t len)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    char *v = malloc(len + 1);
    if (!v)
        return RL_NOMEM;
    memset(v, 'a' + (int)(n % 26), len);
    store_meta m = {.created = 1000, .expires = expires};
    rl_err e = store_cache_put(s, k, &m, v, len);
    free(v);
    return e;
}

static rl_err get_n(store *s, uint32_t n, store_meta *m)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    rl_buf b;
    rl_buf_init(&b, 0);
    rl_err e = store_cache_get(s, k, m, &b);
    rl_buf_release(&b);
    return e;
}

/*
 * Tallies: entries whose hit count the processes below add to, as a shared
 * counter. A hit (store_cache_touch) is not idempotent, so it is never
 * retried after a commit that met a recovery: "counted once, never twice"
 * is checked on them.
 */
enum {
    TALLY_SUM = 0x70000000u,
    TALLY_SUM2,
    TALLY_BUSY,
    TALLY_AFTER,
    TALLY_FRESH,
    TALLY_THREADS,
    TALLY_THREADS_AFTER,
};
#define TALLIES 7

static rl_err tally_new(store *s, uint32_t n)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    store_meta m = {.created = 1, .expires = UINT64_MAX - 1};
    return store_cache_put(s, k, &m, "tally", 5);
}

static rl_err tally_add(store *s, uint32_t n)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    return store_cache_touch(s, k, 2000);
}

static rl_err tally_get(store *s, uint32_t n, uint64_t *v)
{
    store_meta m = {0};
    rl_err e = get_n(s, n, &m);
    *v = m.hits;
    return e;
}

struct scan {
    uint64_t entries, bytes;
    int ordered;
    uint8_t last[STORE_KEY_LEN];
    int stop_after;  /* stop when this many seen; 0 = never */
    store *del_from; /* delete every second entry from the callback */
};

static int scan_fn(void *ctx, const store_item *item)
{
    struct scan *sc = ctx;
    if (item->damaged)
        return 0;
    if (sc->entries && memcmp(sc->last, item->key, STORE_KEY_LEN) >= 0)
        sc->ordered = 0;
    memcpy(sc->last, item->key, STORE_KEY_LEN);
    sc->entries++;
    sc->bytes += item->meta.size;
    if (sc->del_from && sc->entries % 2 == 0)
        store_cache_del(sc->del_from, item->key);
    return sc->stop_after && sc->entries >= (uint64_t)sc->stop_after;
}

static struct scan scan_all(store *s)
{
    struct scan sc = {.ordered = 1};
    rl_err e = store_cache_scan(s, 0, scan_fn, &sc);
    if (e != RL_OK)
        sc.entries = UINT64_MAX;
    return sc;
}

/* Stats must agree with what a full scan sees. */
static void check_consistent(store *s, const char *what)
{
    store_stats st;
    char msg[160];
    is_int(store_stats_get(s, &st), RL_OK, "stats readable");
    struct scan sc = scan_all(s);
    snprintf(msg, sizeof msg, "%s: stats.entries matches a scan", what);
    is_int(st.entries, sc.entries, msg);
    snprintf(msg, sizeof msg, "%s: stats.bytes matches a scan", what);
    is_int(st.bytes, sc.bytes, msg);
}

/* Does any file under dir contain needle? Reads every byte of every file. */
static int tree_contains(const char *dir, const void *needle, size_t n, char *which, size_t wlen)
{
    int found = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            found = tree_contains(path, needle, n, which, wlen) == 1;
            continue;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        char *buf = malloc((size_t)st.st_size + 1);
        size_t got = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
        fclose(f);
        if (buf && memmem(buf, got, needle, n)) {
            found = 1;
            snprintf(which, wlen, "%s", path);
        }
        free(buf);
    }
    closedir(d);
    return found;
}

/*
 * The store's SysV segments: Berkeley DB creates them under keys base +
 * region number, base a multiple of 32 that the store derives from its
 * home (see shm_key_for in store/env.c). The base is learnt from a segment
 * this process created (learn_keys, after its first open); counting by
 * creator pid alone miscounted, as pids of this machine wrap within
 * minutes and another test's store then matched a pid of ours.
 */
static long long key_base = -1;

static int segments_scan(int learn)
{
    FILE *f = fopen("/proc/sysvipc/shm", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        /* key shmid perms size cpid ...: the key, and the creator's pid */
        char *p = line, *end;
        long long field[5];
        int fields = 0;
        for (; fields < 5; fields++, p = end) {
            field[fields] = strtoll(p, &end, 10);
            if (end == p)
                break;
        }
        if (fields != 5)
            continue;
        long long key = field[0], cpid = field[4];
        if (learn && cpid == getpid() && key > 0)
            key_base = key - key % 32;
        else if (!learn && key_base >= 0 && key >= key_base && key < key_base + 32)
            n++;
    }
    fclose(f);
    return n;
}

static void learn_keys(void)
{
    if (key_base < 0)
        (void)segments_scan(1);
}

static int our_segments(void)
{
    return segments_scan(0);
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return -1;
    size_t n = strlen(text);
    int rc = write(fd, text, n) == (ssize_t)n ? 0 : -1;
    if (fchmod(fd, mode) != 0)
        rc = -1;
    close(fd);
    return rc;
}

/* ---- child processes: exit status 0 = all good, else the failing step -- */

static int child_worker(int id)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 10;
    int rc = 0;
    for (int i = 0; i < CHILD_ITERS && !rc; i++) {
        uint8_t k[STORE_KEY_LEN];
        char val[64];
        mkkey(k, 0x10000000u + (uint32_t)id * 0x10000u + (uint32_t)(i % 40));
        int len = snprintf(val, sizeof val, "child %d iteration %d", id, i);
        store_meta m = {.created = 1000, .expires = 5000 + (uint64_t)i};
        if (store_cache_put(s, k, &m, val, (size_t)len) != RL_OK) {
            rc = 11;
            break;
        }
        rl_buf b;
        rl_buf_init(&b, 0);
        store_meta got;
        if (store_cache_get(s, k, &got, &b) != RL_OK || b.len != (size_t)len ||
            memcmp(b.data, val, (size_t)len) != 0 || got.expires != m.expires)
            rc = 12;
        rl_buf_release(&b);
        if (!rc && tally_add(s, TALLY_SUM) != RL_OK)
            rc = 13;
        for (int t = 0; t < 2 && !rc; t++)
            if (tally_add(s, TALLY_SUM2) != RL_OK)
                rc = 14;
    }
    store_close(s);
    return rc;
}

/* Writes as fast as it can until killed; reports readiness on fd. */
static int child_busy(int fd)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 10;
    char val[2048];
    memset(val, 'z', sizeof val);
    for (uint32_t i = 0;; i++) {
        uint8_t k[STORE_KEY_LEN];
        mkkey(k, 0x20000000u + i % 300);
        store_meta m = {.created = 1000, .expires = 3000 + i % 1000};
        if (store_cache_put(s, k, &m, val, sizeof val - (i % 1000)) != RL_OK)
            return 11;
        if (tally_add(s, TALLY_BUSY) != RL_OK)
            return 12;
        if (i % 3 == 0 && store_cache_del(s, k) != RL_OK)
            return 13;
        if (i == 50 && write(fd, "r", 1) != 1)
            return 14;
    }
}

/* A process arriving after a crash: its open runs recovery. */
static int child_fresh(uint64_t min_busy)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 10;
    int rc = 0;
    uint64_t busy = 0;
    if (tally_get(s, TALLY_BUSY, &busy) != RL_OK || busy < min_busy)
        rc = 11;
    if (!rc && put_n(s, 0x30000000u, 9000, 100) != RL_OK)
        rc = 12;
    store_meta m;
    if (!rc && (get_n(s, 0x30000000u, &m) != RL_OK || m.size != 100))
        rc = 13;
    if (!rc && tally_add(s, TALLY_FRESH) != RL_OK)
        rc = 14;
    store_close(s);
    return rc;
}

static pid_t spawn(int (*fn)(int), int arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0)
        _exit(fn(arg));
    return p;
}

static int child_fresh_int(int min_busy)
{
    return child_fresh((uint64_t)min_busy);
}

static int wait_status(pid_t p)
{
    int st;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

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

/* Run with no handle open in this process (see store.h on __db.register). */
static void test_no_plaintext(void)
{
    char secret[128] = {0}, which[512] = "";
    FILE *f = fopen(keyfile, "r");
    ok(f && fgets(secret, sizeof secret, f), "read the secret");
    if (f)
        fclose(f);
    secret[strcspn(secret, "\n")] = '\0';

    /* The scanner itself must find what is there. */
    char probe_dir[128], probe[160];
    snprintf(probe_dir, sizeof probe_dir, "%s/probe", tmp);
    mkdir(probe_dir, 0700);
    snprintf(probe, sizeof probe, "%s/p", probe_dir);
    write_file(probe, "xx" MARKER "yy", 0600);
    is_int(tree_contains(probe_dir, MARKER, strlen(MARKER), which, sizeof which), 1,
           "scanner finds a planted marker");

    int r = tree_contains(home, secret, strlen(secret), which, sizeof which);
    if (!ok(r == 0, "no file under home holds the secret"))
        printf("#   found in %s\n", which);
    r = tree_contains(home, MARKER, strlen(MARKER), which, sizeof which);
    if (!ok(r == 0, "no file under home holds the stored value in plain text"))
        printf("#   found in %s\n", which);
    r = tree_contains(home, "store.entries", 13, which, sizeof which);
    if (!ok(r == 0, "no file under home holds a total's name in plain text"))
        printf("#   found in %s\n", which);
}

static void test_processes(void)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "parent opens");
    if (!s)
        return;

    int made = 1;
    for (uint32_t t = TALLY_SUM; t < TALLY_SUM + TALLIES; t++)
        if (tally_new(s, t) != RL_OK)
            made = 0;
    ok(made, "tallies stored");
    pid_t kids[CHILDREN];
    for (int i = 0; i < CHILDREN; i++)
        kids[i] = spawn(child_worker, i);
    int parent_ok = 1;
    for (int i = 0; i < CHILD_ITERS; i++)
        if (tally_add(s, TALLY_SUM) != RL_OK)
            parent_ok = 0;
    ok(parent_ok, "parent's hits during the children's");
    for (int i = 0; i < CHILDREN; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "worker %d exits cleanly", i);
        is_int(wait_status(kids[i]), 0, msg);
    }
    uint64_t sum = 0, sum2 = 0;
    is_int(tally_get(s, TALLY_SUM, &sum), RL_OK, "read the shared tally");
    is_int(sum, (CHILDREN + 1) * CHILD_ITERS, "hits sum exactly across processes");
    is_int(tally_get(s, TALLY_SUM2, &sum2), RL_OK, "read the second tally");
    is_int(sum2, 2 * CHILDREN * CHILD_ITERS, "second tally sums exactly");
    store_stats st;
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 1 + TALLIES + CHILDREN * 40, "entries after the workers");
    check_consistent(s, "after concurrent workers");

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int round = 0; round < KILL_ROUNDS; round++) {
        char msg[96];
        int fds[2];
        if (pipe(fds) != 0)
            break;
        pid_t victim = spawn(child_busy, fds[1]);
        close(fds[1]);
        char c;
        snprintf(msg, sizeof msg, "round %d: busy child started writing", round);
        ok(read(fds[0], &c, 1) == 1, msg);
        close(fds[0]);
        struct timespec ts = {0, (long)(rand() % 20000) * 1000L};
        nanosleep(&ts, NULL);
        kill(victim, SIGKILL);
        snprintf(msg, sizeof msg, "round %d: child killed", round);
        is_int(wait_status(victim), 128 + SIGKILL, msg);

        /* Odd rounds: a process that arrives first runs recovery while the
         * parent is still attached; the parent must notice and reopen on
         * its own. */
        if (round % 2 == 1) {
            pid_t first = spawn(child_fresh_int, 51);
            snprintf(msg, sizeof msg, "round %d: a new process recovers the store first", round);
            is_int(wait_status(first), 0, msg);
        }
        /* The dead child may hold locks: without failchk the next
         * operation touching them would wait forever (alarm catches it). */
        snprintf(msg, sizeof msg, "round %d: maintain frees the dead child's locks", round);
        is_int(store_maintain(s, 6000 + (uint64_t)round), RL_OK, msg);
        uint64_t busy = 0;
        snprintf(msg, sizeof msg, "round %d: tally readable after the kill", round);
        is_int(tally_get(s, TALLY_BUSY, &busy), RL_OK, msg);
        snprintf(msg, sizeof msg, "round %d: the child's commits survived", round);
        ok(busy >= 51 * (uint64_t)(round + 1), msg);
        snprintf(msg, sizeof msg, "round %d: put after the kill", round);
        is_int(put_n(s, 0x40000000u + (uint32_t)round, 9000, 64), RL_OK, msg);
        snprintf(msg, sizeof msg, "round %d: a hit after the kill", round);
        is_int(tally_add(s, TALLY_AFTER), RL_OK, msg);

        pid_t fresh = spawn(child_fresh_int, (int)busy);
        snprintf(msg, sizeof msg, "round %d: a new process opens (recovery) and works", round);
        is_int(wait_status(fresh), 0, msg);

        snprintf(msg, sizeof msg, "round %d: parent works after another process recovered", round);
        is_int(tally_add(s, TALLY_AFTER), RL_OK, msg);
        store_meta m;
        snprintf(msg, sizeof msg, "round %d: parent reads its entry after recovery", round);
        is_int(get_n(s, 0x40000000u + (uint32_t)round, &m), RL_OK, msg);
        snprintf(msg, sizeof msg, "round %d", round);
        check_consistent(s, msg);
    }
    uint64_t after = 0, fresh_count = 0;
    is_int(tally_get(s, TALLY_AFTER, &after), RL_OK, "tally after the rounds");
    is_int(after, 2 * KILL_ROUNDS, "every post-kill hit counted once");
    is_int(tally_get(s, TALLY_FRESH, &fresh_count), RL_OK, "fresh tally");
    is_int(fresh_count, KILL_ROUNDS + KILL_ROUNDS / 2, "every fresh process counted");
    is_int(store_maintain(s, 7000), RL_OK, "final maintain");
    store_close(s);

    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "parent reopens after it all");
    store_close(s);
}

/* ---- threads of one process sharing a handle through a recovery --------- */

#define THREADS 4

struct worker {
    store *s;
    int id;
    atomic_int *stop;
    atomic_long done, failed; /* read while a stranded thread still "runs" */
};

static void *thread_main(void *arg)
{
    struct worker *w = arg;
    char val[512];
    memset(val, 'q', sizeof val);
    for (uint32_t i = 0; !atomic_load(w->stop); i++) {
        uint8_t k[STORE_KEY_LEN];
        mkkey(k, 0x50000000u + (uint32_t)w->id * 0x1000u + i % 20);
        store_meta m = {.created = 1000, .expires = 4000 + i % 100};
        rl_buf b;
        rl_buf_init(&b, 0);
        if (store_cache_put(w->s, k, &m, val, sizeof val) != RL_OK ||
            store_cache_get(w->s, k, NULL, &b) != RL_OK || b.len != sizeof val ||
            tally_add(w->s, TALLY_THREADS) != RL_OK)
            atomic_fetch_add(&w->failed, 1);
        else
            atomic_fetch_add(&w->done, 1);
        rl_buf_release(&b);
        /* A request thread does network I/O between store calls; without
         * any pause, under valgrind's slowdown, NOWAIT retries of the
         * maintenance thread can lose every race for minutes. */
        struct timespec pause = {0, 20000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/*
 * Starts a child role in a new image of this binary. A multi-threaded
 * process must exec right after fork: the child inherits locks that other
 * threads held (seen: AddressSanitizer's allocator lock), which nobody will
 * ever release in it.
 */
static pid_t spawn_exec(const char *role, int arg)
{
    char num[24];
    snprintf(num, sizeof num, "%d", arg);
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        execl(self, "t_store", role, num, home, keyfile, (char *)NULL);
        _exit(127);
    }
    return p;
}

/* What the worker process of test_threads saw. */
struct thread_report {
    long done, failed, stranded, reported_stranded;
    long long counter_delta;
    int open_rc, maint_rc[3], fresh_rc[2], killed[2], after_rc, consistent;
};

/*
 * A worker process like relay's: THREADS threads share one handle while
 * another process is killed mid-write and a new one recovers the store.
 * Runs in its own process because a thread stranded in an abandoned
 * environment (see store_reopen) keeps that environment's segments attached
 * until its process exits.
 */
static void thread_worker(int out_fd)
{
    struct thread_report r = {0};
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    r.open_rc = store_open(&o, &s);
    if (!s)
        goto out;
    uint64_t before = 0, after = 0;
    for (uint32_t t = TALLY_THREADS; t <= TALLY_THREADS_AFTER; t++)
        if (tally_get(s, t, &before) == RL_NOTFOUND)
            (void)tally_new(s, t);
    (void)tally_get(s, TALLY_THREADS, &before);
    atomic_int stop = 0;
    struct worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].s = s;
        w[i].id = i;
        w[i].stop = &stop;
        atomic_init(&w[i].done, 0);
        atomic_init(&w[i].failed, 0);
        pthread_create(&th[i], NULL, thread_main, &w[i]);
    }
    for (int round = 0; round < 2; round++) {
        int fds[2];
        if (pipe(fds) != 0)
            break;
        pid_t victim = spawn_exec("--busy", fds[1]);
        close(fds[1]);
        char c;
        if (read(fds[0], &c, 1) != 1)
            r.killed[round] = -1;
        close(fds[0]);
        struct timespec ts = {0, (long)(rand() % 20000) * 1000L};
        nanosleep(&ts, NULL);
        kill(victim, SIGKILL);
        r.killed[round] = wait_status(victim);
        /* Round 0: our failchk notices first; round 1: a new process
         * recovers the store under our threads. */
        if (round == 0)
            r.maint_rc[0] = store_maintain(s, 8000);
        pid_t fresh = spawn_exec("--fresh", 51);
        r.fresh_rc[round] = wait_status(fresh);
        r.maint_rc[round + 1] = store_maintain(s, 8001);
    }
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 4; /* past store_reopen's 2 s wait for stranded threads */
    for (int i = 0; i < THREADS; i++) {
        if (pthread_timedjoin_np(th[i], NULL, &until) != 0)
            r.stranded++;
        r.done += atomic_load(&w[i].done);
        r.failed += atomic_load(&w[i].failed);
    }
    r.reported_stranded = (long)store_stranded_threads(s);
    r.after_rc = tally_add(s, TALLY_THREADS_AFTER);
    if (r.after_rc == RL_OK)
        r.after_rc = put_n(s, 0x60000000u, 9000, 10);
    if (tally_get(s, TALLY_THREADS, &after) == RL_OK)
        r.counter_delta = (long long)(after - before);
    store_stats st;
    struct scan sc = scan_all(s);
    r.consistent =
        store_stats_get(s, &st) == RL_OK && st.entries == sc.entries && st.bytes == sc.bytes;
    if (!r.stranded) /* stranded threads still use the handle */
        store_close(s);
out:
    if (write(out_fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(2);
    _exit(0);
}

static void test_threads(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        return;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        close(fds[0]);
        thread_worker(fds[1]);
    }
    close(fds[1]);
    struct thread_report r;
    memset(&r, 0, sizeof r);
    ssize_t n = read(fds[0], &r, sizeof r);
    close(fds[0]);
    is_int(wait_status(p), 0, "threads: worker process exits cleanly");
    is_int(n, sizeof r, "threads: worker reported");
    is_int(r.open_rc, RL_OK, "threads: open");
    is_int(r.killed[0], 128 + SIGKILL, "threads: first busy child killed");
    is_int(r.killed[1], 128 + SIGKILL, "threads: second busy child killed");
    is_int(r.maint_rc[0], RL_OK, "threads: maintain after the kill");
    is_int(r.fresh_rc[0], 0, "threads: a new process works after our recovery");
    is_int(r.fresh_rc[1], 0, "threads: a new process recovers under our threads");
    is_int(r.maint_rc[1], RL_OK, "threads: maintain after round 0");
    is_int(r.maint_rc[2], RL_OK, "threads: maintain after round 1");
    ok(r.done > 0, "threads: work got done");
    /* An operation fails only when its commit met a recovery (its outcome
     * is then unknown and it is not retried), at most once per thread and
     * recovery. A killed process can also leave a region mutex locked for
     * good: threads queued on it are abandoned (store_reopen), the rest
     * carry on, and the store reports them. */
    ok(r.failed <= 2 * 2 * THREADS, "threads: failures only at recoveries");
    if (r.failed)
        printf("# %ld operation(s) failed at a recovery\n", r.failed);
    if (r.stranded)
        printf("# %ld thread(s) stranded on a mutex held by a killed process\n", r.stranded);
    is_int(r.reported_stranded, r.stranded, "threads: store_stranded_threads counts them");
    ok(r.counter_delta >= r.done && r.counter_delta <= r.done + r.failed + r.stranded,
       "threads: every successful add counted once, none twice");
    if (!(r.counter_delta >= r.done && r.counter_delta <= r.done + r.failed + r.stranded))
        printf("#   delta %lld, done %ld, failed %ld, stranded %ld\n", r.counter_delta, r.done,
               r.failed, r.stranded);
    is_int(r.after_rc, RL_OK, "threads: the handle works after the rounds");
    ok(r.consistent, "threads: stats agree with a scan");
}

/* Child roles started by spawn_exec: ROLE ARG HOME KEYFILE. */
static int child_role(int argc, char **argv)
{
    if (argc != 5)
        return 120;
    char *end;
    long arg = strtol(argv[2], &end, 10);
    if (*end)
        return 121;
    snprintf(home, sizeof home, "%s", argv[3]);
    snprintf(keyfile, sizeof keyfile, "%s", argv[4]);
    if (strcmp(argv[1], "--busy") == 0)
        return child_busy((int)arg);
    if (strcmp(argv[1], "--fresh") == 0)
        return child_fresh((uint64_t)arg);
    return 122;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return child_role(argc, argv);
    /* argv[0], not /proc/self/exe, which is valgrind under valgrind */
    if (!realpath(argv[0], self)) {
        perror("realpath");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120); /* a hang (a lock held by a dead process) fails instead of blocking CI */
    snprintf(tmp, sizeof tmp, "/tmp/t_store.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/keys/a/b/relay.key", tmp);
    snprintf(keyfile2, sizeof keyfile2, "%s/keys/other.key", tmp);
    snprintf(keyfile_open, sizeof keyfile_open, "%s/keys/open.key", tmp);

    test_keyfile();
    test_caps();
    test_basic();
    test_persist_and_secret();
    test_no_plaintext();
    test_processes();
    test_threads();
    test_no_plaintext();

    store_options o = opts(0, 0, 0);
    ok(our_segments() > 0, "the store used SysV shared memory");
    is_int(store_remove(&o), RL_OK, "store_remove");
    is_int(our_segments(), 0, "no shared memory segment left behind");

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
