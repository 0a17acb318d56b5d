/*
 * t_store_admin.c — the store's operations for relay-admin: scans with
 * values, key-prefix lookup, purge by match, the exclusive lock (and that
 * it really keeps other processes out), hot backup (encrypted, verified),
 * verification of a damaged copy, compaction, recovery, re-encryption and
 * restore. Also the entry format's labels (engine/entry.c), which these
 * operations exist to read.
 *
 * Everything lives in a mkdtemp directory; other processes are forked
 * children that open the store as Relay does.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/entry.h"
#include "engine/purge.h"
#include "store/store.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_keys.h"

#define MARKER "PLAINTEXT-MARKER-admin-5d1e"
#define N_ENTRIES 300

static char tmp[64], home[128], keyfile[128];

static store_options opts_for(const char *h, const char *k)
{
    store_options o = {.home = h, .key_file = k, .cache_mb = 8, .max_threads = 16};
    return o;
}

/* Entry n: model m-(n%3), namespace "" for even n, "ns" for odd. */
static rl_err put_entry(store *s, uint32_t n, uint64_t created)
{
    char model[16], body[128];
    snprintf(model, sizeof model, "m-%u", n % 3);
    snprintf(body, sizeof body, "{\"n\":%u,\"marker\":\"%s\"}", n, MARKER);
    entry_labels lab = {.upstream = "openai", .model = model, .ns = n % 2 ? "ns" : ""};
    rl_buf b;
    rl_buf_init(&b, 0);
    rl_err e = entry_encode(&b, ENTRY_BODY, "application/json", &lab, NULL, body, strlen(body));
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    store_meta m = {.created = created, .expires = created + 3600};
    if (e == RL_OK)
        e = store_cache_put(s, k, &m, b.data, b.len);
    rl_buf_release(&b);
    return e;
}

static uint64_t count_entries(store *s)
{
    store_stats st;
    return store_stats_get(s, &st) == RL_OK ? st.entries : (uint64_t)-1;
}

/* ---- entry labels ---------------------------------------------------------- */

static void test_entry(void)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    entry_labels lab = {.upstream = "anthropic", .model = "claude-x", .ns = "team-a"};
    is_int(entry_encode(&b, ENTRY_STREAM, "text/event-stream", &lab, NULL, "data: x\n\n", 9), RL_OK,
           "entry_encode with labels");
    entry_view v;
    is_int(entry_decode(b.data, b.len, &v), RL_OK, "entry_decode v3");
    is_int(v.version, 3, "version 3");
    ok(v.labelled, "labelled");
    ok(!v.has_usage, "no usage given: none recorded");
    ok(v.usage.input == -1 && v.usage.output == -1 && v.usage.cached_input == -1 &&
           v.usage.cache_write == -1,
       "no usage: every count -1");
    is_str(v.upstream, "anthropic", "upstream label");
    is_str(v.model, "claude-x", "model label");
    is_str(v.ns, "team-a", "namespace label");
    is_str(v.content_type, "text/event-stream", "content type");
    is_int(v.kind, ENTRY_STREAM, "kind");
    ok(v.body_len == 9 && memcmp(v.body, "data: x\n\n", 9) == 0, "body");
    /* A prefix that holds the whole header decodes the labels. */
    is_int(entry_decode(b.data, 50, &v), RL_OK, "a prefix decodes");
    is_str(v.model, "claude-x", "labels from a prefix");
    is_int(entry_decode(b.data, 12, &v), RL_BAD_ENTRY, "a prefix cut in a label fails");
    is_int(entry_decode(b.data, 49, &v), RL_BAD_ENTRY, "a prefix without the usage byte fails");

    /* The usage read when the answer was stored, any int64 (-1 unknown,
     * and counts past 32 bits), the same bytes whatever the machine. */
    entry_usage u = {.input = 123456789012, .output = 7, .cached_input = -1, .cache_write = 0};
    b.len = 0;
    is_int(entry_encode(&b, ENTRY_BODY, "application/json", &lab, &u, "{\"a\":1}", 7), RL_OK,
           "entry_encode with usage");
    is_int(entry_decode(b.data, b.len, &v), RL_OK, "entry with usage decodes");
    ok(v.has_usage, "usage recorded");
    ok(v.usage.input == 123456789012 && v.usage.output == 7 && v.usage.cached_input == -1 &&
           v.usage.cache_write == 0,
       "usage round trip");
    ok(v.body_len == 7 && memcmp(v.body, "{\"a\":1}", 7) == 0, "body after the usage");
    is_str(v.ns, "team-a", "labels before the usage");
    size_t head = b.len - 7;
    ok((unsigned char)b.data[head - 32] == 0x14 && (unsigned char)b.data[head - 32 + 1] == 0x1a,
       "counts are little-endian (123456789012 = 0x1cbe991a14)");
    is_int(entry_decode(b.data, head - 1, &v), RL_BAD_ENTRY, "a prefix cut in the usage fails");
    b.data[head - 33] = 2;
    is_int(entry_decode(b.data, b.len, &v), RL_BAD_ENTRY, "a usage byte other than 0 or 1 fails");

    /* An entry written before usage was stored ("RLE2"): labels, no usage. */
    const char v2[] = "RLE2\x01\x11text/event-stream\x06openai\x01m\x00"
                      "data: x\n\n";
    is_int(entry_decode(v2, sizeof v2 - 1, &v), RL_OK, "a version 2 entry decodes");
    is_int(v.version, 2, "version 2");
    ok(v.labelled && !v.has_usage, "version 2: labelled, usage not recorded");
    is_str(v.upstream, "openai", "version 2: upstream");
    is_str(v.ns, "", "version 2: namespace");
    is_int(v.kind, ENTRY_STREAM, "version 2: kind");
    ok(v.body_len == 9 && memcmp(v.body, "data: x\n\n", 9) == 0, "version 2: body");

    /* An entry written by the code before labels ("RLE1"). */
    const char v1[] = "RLE1\x00\x10"
                      "application/json{\"a\":1}";
    is_int(entry_decode(v1, sizeof v1 - 1, &v), RL_OK, "a version 1 entry decodes");
    is_int(v.version, 1, "version 1");
    ok(!v.labelled, "version 1: labels unknown");
    is_str(v.model, "", "version 1: empty model");
    is_str(v.content_type, "application/json", "version 1: content type");
    ok(!v.has_usage, "version 1: usage not recorded");
    ok(v.body_len == 7 && memcmp(v.body, "{\"a\":1}", 7) == 0, "version 1: body");

    /* Labels longer than 255 bytes are cut. */
    char longname[400];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    entry_labels lab2 = {.ns = longname};
    b.len = 0;
    entry_encode(&b, ENTRY_BODY, "application/json", &lab2, NULL, "{}", 2);
    is_int(entry_decode(b.data, b.len, &v), RL_OK, "long label decodes");
    is_int(strlen(v.ns), ENTRY_LABEL_MAX, "long label cut to ENTRY_LABEL_MAX");
    rl_buf_release(&b);
}

/* ---- scans, lookup, purge by match ------------------------------------------- */

typedef struct scan_count {
    unsigned n, damaged, labelled, whole;
} scan_count;

static int count_fn(void *ctx, const store_item *it)
{
    scan_count *c = ctx;
    entry_view v;
    c->n++;
    c->damaged += it->damaged != 0;
    if (entry_decode((const char *)it->value, it->value_len, &v) == RL_OK && v.labelled)
        c->labelled++;
    c->whole += it->value_len == it->meta.size;
    return 0;
}

static void test_scan_find_purge(store *s)
{
    for (uint32_t n = 0; n < N_ENTRIES; n++)
        if (put_entry(s, n, 1000 + n) != RL_OK) {
            ok(0, "storing entries");
            return;
        }
    scan_count c = {0};
    is_int(store_cache_scan(s, ENTRY_HEAD_MAX, count_fn, &c), RL_OK, "scan with prefixes");
    is_int(c.n, N_ENTRIES, "scan saw every entry");
    is_int(c.labelled, N_ENTRIES, "every prefix decodes with labels");
    is_int(c.damaged, 0, "nothing damaged");
    scan_count w = {0};
    is_int(store_cache_scan(s, SIZE_MAX, count_fn, &w), RL_OK, "scan with whole values");
    is_int(w.whole, N_ENTRIES, "whole values are whole");

    uint8_t k[STORE_KEY_LEN], found[STORE_KEY_LEN];
    unsigned matches = 9;
    mkkey(k, 77);
    is_int(store_cache_find(s, k, 8, found, &matches), RL_OK, "find by 8 digits");
    is_int(matches, 1, "one match");
    ok(memcmp(found, k, STORE_KEY_LEN) == 0, "the right key");
    is_int(store_cache_find(s, k, 9, found, &matches), RL_OK, "find by 9 (odd) digits");
    is_int(matches, 1, "odd prefix: one match");
    /* The first 4 digits (two bytes) are shared by entries 0..255. */
    store_cache_find(s, k, 4, found, &matches);
    is_int(matches, 2, "a short prefix: several");
    uint8_t none[STORE_KEY_LEN];
    memset(none, 0xee, sizeof none);
    store_cache_find(s, none, 8, found, &matches);
    is_int(matches, 0, "no match");

    /* Purges as relay-admin and the admin API make them (engine/purge.c).
     * Entry n: created at 1000 + n, expires an hour later. */
    uint64_t now = 1000 + N_ENTRIES, removed = 0;
    purge_filter all_and_model = {.all = 1, .model = "m-1"};
    is_int(purge_run(s, &all_and_model, now, &removed), RL_BAD_REQUEST,
           "all with a condition is refused");
    is_int(count_entries(s), N_ENTRIES, "and removes nothing");
    purge_filter model = {.model = "m-1"};
    is_int(purge_run(s, &model, now, &removed), RL_OK, "purge by model");
    is_int(removed, N_ENTRIES / 3, "removed that model's entries");
    is_int(count_entries(s), N_ENTRIES - N_ENTRIES / 3, "totals follow");
    c = (scan_count){0};
    store_cache_scan(s, ENTRY_HEAD_MAX, count_fn, &c);
    is_int(c.n, N_ENTRIES - N_ENTRIES / 3, "the table agrees");
    purge_filter model_ns = {.model = "m-2", .ns = "ns"};
    purge_run(s, &model_ns, now, &removed);
    is_int(removed, N_ENTRIES / 6, "purge by model AND namespace");
    purge_filter forever = {.older = 1, .older_than = UINT64_MAX};
    purge_run(s, &forever, now, &removed);
    is_int(removed, 0, "older than 2^64 s: nothing (no wrap-around)");
    /* Entries 0..9 are at least N_ENTRIES - 9 seconds old. */
    purge_filter old_default_ns = {.older = 1, .older_than = N_ENTRIES - 9, .ns = ""};
    uint64_t before = count_entries(s);
    purge_run(s, &old_default_ns, now, &removed);
    is_int(removed, 4, "older than, in the default namespace: entries 0, 2, 6, 8 (4 was m-1)");
    is_int(count_entries(s), before - 4, "totals follow");
    purge_filter expired = {.expired = 1, .model = "m-0"};
    purge_run(s, &expired, now, &removed);
    is_int(removed, 0, "nothing has expired yet");
    purge_run(s, &expired, now + 7200, &removed);
    /* m-0: 100 entries, minus 0 and 6 above; m-2's 48 in "" stay for what follows. */
    is_int(removed, 98, "two hours later, expired AND model: that model's entries");
    is_int(count_entries(s), 48, "the others stay");
}

/* ---- the exclusive lock ---------------------------------------------------------- */

/* A child that opens the store as Relay does, reports "1" on the pipe once
 * open, and keeps it open until killed. */
static pid_t child_holding_store(int *fd_out)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        store_options o = opts_for(home, keyfile);
        store *s = NULL;
        char c = store_open(&o, &s) == RL_OK ? '1' : '0';
        if (write(p[1], &c, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    *fd_out = p[0];
    return pid;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_lock(void)
{
    int fd;
    pid_t pid = child_holding_store(&fd);
    char c = 0;
    ok(read(fd, &c, 1) == 1 && c == '1', "a child opened the store");
    store_lock *lock = NULL;
    is_int(store_lock_exclusive(home, &lock), RL_BUSY, "lock refused while a process has it open");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fd);
    is_int(store_lock_exclusive(home, &lock), RL_OK, "lock taken once it is gone");

    /* While locked, a process that starts waits in its open. */
    pid = child_holding_store(&fd);
    struct timespec pause_ts = {0, 300 * 1000 * 1000};
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    nanosleep(&pause_ts, NULL);
    ok(read(fd, &c, 1) < 0 && errno == EAGAIN, "a starting process waits while the lock is held");

    /* The exclusive open and close (with recovery) keep the lock. */
    store_options o = opts_for(home, keyfile);
    is_int(store_recover(&o, lock), RL_OK, "recover under the lock");
    nanosleep(&pause_ts, NULL);
    ok(read(fd, &c, 1) < 0 && errno == EAGAIN, "still waiting after recovery");
    fcntl(fd, F_SETFL, flags);
    int64_t t0 = now_ms();
    store_unlock(lock);
    ok(read(fd, &c, 1) == 1 && c == '1', "it opens once the lock is released");
    ok(now_ms() - t0 < 5000, "promptly");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fd);
}

/* ---- backup, verify, restore, compact, rekey ---------------------------------- */

static int dir_contains(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int found = 0;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        static char buf[1 << 20];
        size_t n, keep = 0, nl = strlen(needle);
        while ((n = fread(buf + keep, 1, sizeof buf - keep, f)) > 0) {
            n += keep;
            if (memmem(buf, n, needle, nl))
                found = 1;
            keep = n >= nl ? nl - 1 : n;
            memmove(buf, buf + n - keep, keep);
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

static void flip_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return;
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x55, f);
    fclose(f);
}

static void count_problem(void *ctx, const char *file, const char *what)
{
    (void)what;
    printf("#   problem: %s: %s\n", file, what);
    if (strcmp(file, "cache.db") == 0)
        ++*(int *)ctx;
}

static void test_backup_restore(store *s)
{
    char bk[160], bk2[160], home2[160], cmd[512];
    snprintf(bk, sizeof bk, "%s/backup", tmp);
    snprintf(bk2, sizeof bk2, "%s/backup-bad", tmp);
    snprintf(home2, sizeof home2, "%s/home2", tmp);
    uint64_t entries = count_entries(s);
    store_report rep;
    is_int(store_backup(s, bk, &rep), RL_OK, "hot backup");
    ok(rep.files >= 6, "backup wrote the databases and logs");
    is_int(dir_contains(bk, MARKER), 0, "no plaintext in the backup");
    is_int(store_backup(s, bk, &rep), RL_BUSY, "backup refuses a non-empty directory");

    unsigned problems = 9;
    store_options ko = opts_for(home, keyfile);
    is_int(store_verify_dir(bk, &ko, NULL, NULL, &problems), RL_OK, "verify the backup");
    is_int(problems, 0, "the backup verifies");
    is_int(store_verify(s, NULL, NULL, &problems), RL_OK, "verify the live store");
    is_int(problems, 0, "the live store verifies");

    /* A damaged copy: one byte of a page of cache.db. */
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", bk, bk2);
    ok(system(cmd) == 0, "copy the backup");
    char path[256];
    snprintf(path, sizeof path, "%s/cache.db", bk2);
    flip_byte(path, 4096 + 600);
    int cache_problems = 0;
    store_verify_dir(bk2, &ko, count_problem, &cache_problems, &problems);
    ok(problems > 0 && cache_problems > 0, "a flipped byte in cache.db is found");

    /* Restore into a fresh home, with the same key. */
    store_options o2 = opts_for(home2, keyfile);
    store_lock *lock = NULL;
    is_int(store_lock_exclusive(home2, &lock), RL_OK, "lock a fresh home");
    is_int(store_restore(&o2, lock, bk, &rep), RL_OK, "restore into it");
    store_unlock(lock);
    store *s2 = NULL;
    is_int(store_open(&o2, &s2), RL_OK, "the restored store opens");
    if (s2) {
        is_int(count_entries(s2), entries, "with every entry");
        uint8_t k[STORE_KEY_LEN];
        mkkey(k, 0);
        rl_buf v;
        rl_buf_init(&v, 0);
        is_int(store_cache_get(s2, k, NULL, &v), RL_OK, "an entry reads back");
        rl_buf_release(&v);
        store_close(s2);
    }
    /* A backup of another key is refused. */
    char otherkey[160];
    snprintf(otherkey, sizeof otherkey, "%s/other.key", tmp);
    store_keyfile_ensure(otherkey);
    store_options o3 = opts_for(home2, otherkey);
    store_lock_exclusive(home2, &lock);
    is_int(store_restore(&o3, lock, bk, &rep), RL_FORBIDDEN, "restore with another key refused");
    store_unlock(lock);
    store_remove(&o2);
}

static void test_compact(store *s)
{
    uint64_t removed;
    store_cache_purge_all(s, &removed);
    for (uint32_t n = 0; n < 2000; n++)
        put_entry(s, 100000 + n, 5000);
    store_cache_purge_all(s, &removed);
    store_report rep;
    is_int(store_compact(s, &rep), RL_OK, "compact");
    ok(rep.pages_freed > 0, "compact gave pages back");
    if (!ok(rep.bytes < rep.bytes_before, "the files shrank"))
        printf("#   %llu -> %llu bytes, %llu pages\n", (unsigned long long)rep.bytes_before,
               (unsigned long long)rep.bytes, (unsigned long long)rep.pages_freed);
    for (uint32_t n = 0; n < 50; n++)
        put_entry(s, n, 1000 + n);
}

static void test_rekey(void)
{
    char newkey[160], oldkey[160];
    snprintf(newkey, sizeof newkey, "%s.new", keyfile);
    snprintf(oldkey, sizeof oldkey, "%s.old", keyfile);
    store_options o = opts_for(home, keyfile);
    store_lock *lock = NULL;
    is_int(store_lock_exclusive(home, &lock), RL_OK, "lock for rekey");
    store_report rep;
    is_int(store_rekey(&o, lock, newkey, oldkey, &rep), RL_OK, "rekey");
    ok(rep.records > 50, "records copied");
    store_unlock(lock);
    ok(access(oldkey, F_OK) == 0, "old key kept");
    ok(access(newkey, F_OK) != 0, "new key installed");
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "the store opens with the new key");
    if (s) {
        is_int(count_entries(s), 50, "entries kept");
        uint8_t k[STORE_KEY_LEN];
        mkkey(k, 7);
        rl_buf v;
        rl_buf_init(&v, 0);
        is_int(store_cache_get(s, k, NULL, &v), RL_OK, "an entry reads back");
        entry_view ev;
        ok(entry_decode(v.data, v.len, &ev) == RL_OK && strcmp(ev.model, "m-1") == 0,
           "and decodes");
        rl_buf_release(&v);
        store_close(s);
    }
    ok(dir_contains(home, MARKER) == 0, "no plaintext after rekey");
    store_options old = opts_for(home, oldkey);
    s = NULL;
    ok(store_open(&old, &s) != RL_OK, "the old key no longer opens it");
    store_close(s);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120);
    snprintf(tmp, sizeof tmp, "/tmp/t_store_admin.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);

    test_entry();
    store_keyfile_ensure(keyfile);
    store_options o = opts_for(home, keyfile);
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK) {
        ok(0, "store_open");
        return tap_done();
    }
    test_scan_find_purge(s);
    test_compact(s);
    test_backup_restore(s);
    store_close(s);
    test_lock();
    test_rekey();

    store_remove(&o);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
