/*
 * store_fixture.h — what t_store.c (one process) and t_store_procs.c
 * (several processes, kills, recovery) share: the mkdtemp directory and the
 * store's paths in it, store options, numbered entries, full scans checked
 * against the stats, the SysV segments of this test's store, and
 * test_no_plaintext, which both run once with no handle open: no file of
 * the store holds the secret or a stored value in plain text.
 *
 * Each test binary includes it once (one translation unit): the globals and
 * the LeakSanitizer hook below are that binary's own.
 */
#ifndef RELAY_TESTS_UNIT_STORE_FIXTURE_H
#define RELAY_TESTS_UNIT_STORE_FIXTURE_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_keys.h"

#define MARKER "PLAINTEXT-MARKER-7f3a9c-relay-test"

/*
 * Under LeakSanitizer (make asan): Berkeley DB 5.3 abandons the memory of an
 * environment handle closed after a panic (__env_close_pp returns before
 * destroying it; about 25 KB per recovery), and the kill rounds of
 * t_store_procs.c cause such panics on purpose. Allocations of our own code
 * stay checked; a run built with -DKILL_ROUNDS=0 is leak-free without this.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libdb-5.3.so\n";
}

static char tmp[64];
static char home[128], keyfile[160];

static inline store_options opts(uint64_t max_bytes, uint64_t max_entries, uint64_t max_entry_bytes)
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

static inline rl_err put_n(store *s, uint32_t n, uint64_t expires, size_t len)
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

static inline rl_err get_n(store *s, uint32_t n, store_meta *m)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    rl_buf b;
    rl_buf_init(&b, 0);
    rl_err e = store_cache_get(s, k, m, &b);
    rl_buf_release(&b);
    return e;
}

struct scan {
    uint64_t entries, bytes;
    int ordered;
    uint8_t last[STORE_KEY_LEN];
    int stop_after;  /* stop when this many seen; 0 = never */
    store *del_from; /* delete every second entry from the callback */
};

static inline int scan_fn(void *ctx, const store_item *item)
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

static inline struct scan scan_all(store *s)
{
    struct scan sc = {.ordered = 1};
    rl_err e = store_cache_scan(s, 0, scan_fn, &sc);
    if (e != RL_OK)
        sc.entries = UINT64_MAX;
    return sc;
}

/* Stats must agree with what a full scan sees. */
static inline void check_consistent(store *s, const char *what)
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
static inline int tree_contains(const char *dir, const void *needle, size_t n, char *which,
                                size_t wlen)
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

static inline int segments_scan(int learn)
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

static inline void learn_keys(void)
{
    if (key_base < 0)
        (void)segments_scan(1);
}

static inline int our_segments(void)
{
    return segments_scan(0);
}

static inline int write_file(const char *path, const char *text, mode_t mode)
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

/* Run with no handle open in this process (see store.h on __db.register). */
static inline void test_no_plaintext(void)
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

/*
 * Line-buffered output, the alarm that turns a hang (a lock held by a dead
 * process) into a failure, and the mkdtemp directory /tmp/NAME.XXXXXX with
 * home and keyfile in it; the key file's parents do not exist yet. Returns
 * 0, or -1 after perror.
 */
static inline int fixture_setup(const char *name)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120); /* a hang (a lock held by a dead process) fails instead of blocking CI */
    snprintf(tmp, sizeof tmp, "/tmp/%s.XXXXXX", name);
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/keys/a/b/relay.key", tmp);
    return 0;
}

/* Removes the mkdtemp directory; returns tap_done()'s exit status. */
static inline int fixture_finish(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}

#endif
