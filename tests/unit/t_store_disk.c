/*
 * t_store_disk.c — the store on a file system that fills up.
 *
 * - The wake-up file (wake.map) is allocated when it is created, so a full
 *   disk makes the store refuse to open (Relay then serves uncached)
 *   instead of killing the process with SIGBUS on the first touch of a
 *   page of a sparse file.
 * - The chain of faults of issue 12's defect 7, run by worker processes
 *   like Relay's (as an unprivileged user, so that a read-only directory
 *   means something): the disk fills while they write, room comes back,
 *   the store's directory turns read-only while they are killed, writable
 *   again, the disk fills again (as it did under verify's hot copy), and
 *   Relay restarts. Every step must leave a store that opens and caches
 *   once the disk has room: never one a human has to delete.
 *
 * The store home lives on a small tmpfs mounted by this test, in a mount
 * namespace of its own (so the mount is gone when the test exits, however
 * it exits). The test runs as root; if it cannot mount, it fails: it is
 * never skipped. What may crash (a SIGBUS) runs in a child process, whose
 * exit status and log lines the parent checks. Nothing sleeps: the workers
 * do what the parent's commands say, one step at a time.
 */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/store.h"
#include "store/wake.h"
#include "tests/unit/tap.h"

static char tmp[64];        /* on the ordinary disk: key file, child logs */
static char disk[128];      /* the tmpfs */
static char home[160];      /* the store, on the tmpfs */
static char keyfile[160];   /* beside tmp, never on the tmpfs */
static char filler[160];    /* the file that fills the tmpfs */
static char child_log[160]; /* a child's stderr */
/* Room for a few small stores, a copy of one (verify) and little more. */
#define DISK_SIZE "32m"

static store_options opts(void)
{
    store_options o = {.home = home, .key_file = keyfile, .cache_mb = 1, .max_threads = 4};
    return o;
}

/* A mount namespace of our own, with nothing propagated back out, and a
 * tmpfs of DISK_SIZE on disk. 0 or -1 (printed). */
static int mount_disk(void)
{
    if (unshare(CLONE_NEWNS) != 0) {
        printf("# unshare(CLONE_NEWNS): %s\n", strerror(errno));
        return -1;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        printf("# making / private: %s\n", strerror(errno));
        return -1;
    }
    if (mount("tmpfs", disk, "tmpfs", 0, "size=" DISK_SIZE ",mode=0700") != 0) {
        printf("# mounting a tmpfs on %s: %s\n", disk, strerror(errno));
        return -1;
    }
    return 0;
}

/* Writes the filler until the file system refuses another byte, then
 * gives leave bytes of it back. Returns the bytes written, or -1 if a
 * write failed for another reason. */
static long long fill_disk_leaving(long long leave)
{
    int fd = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0)
        return -1;
    static char block[65536];
    long long total = 0;
    for (size_t n = sizeof block; n > 0; n /= 2) {
        for (;;) {
            ssize_t w = write(fd, block, n);
            if (w > 0) {
                total += w;
                continue;
            }
            if (w < 0 && errno != ENOSPC) {
                close(fd);
                return -1;
            }
            break;
        }
    }
    if (leave > 0 && ftruncate(fd, total > leave ? total - leave : 0) != 0)
        total = -1;
    close(fd);
    return total;
}

static long long fill_disk(void)
{
    return fill_disk_leaving(0);
}

static void free_disk(void)
{
    (void)unlink(filler);
}

static int wait_status(pid_t p)
{
    int st;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Runs fn in a child whose stderr goes to child_log (to the terminal with
 * T_DISK_STDERR set); its exit status (128 + the signal if one killed it). */
static int in_child(int (*fn)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        if (!getenv("T_DISK_STDERR") && !freopen(child_log, "w", stderr))
            _exit(120);
        int rc = fn();
        fflush(stderr);
        _exit(rc);
    }
    return wait_status(p);
}

/* Whether child_log has a line holding both a and b. */
static int logged(const char *a, const char *b)
{
    FILE *f = fopen(child_log, "r");
    if (!f)
        return 0;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, a) && strstr(line, b);
    fclose(f);
    return found;
}

static void show_log(void)
{
    FILE *f = fopen(child_log, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f))
        printf("#   log: %s", line);
    fclose(f);
}

/* Touches every page of the wake-up file: each slot, mark and turn. */
static void touch_all(store_wake *w)
{
    for (uint32_t i = 0; i < WAKE_SLOTS; i++) {
        wake_bump(w, i);
        wake_mark(w, i, 1);
    }
    for (unsigned t = 0; t < WAKE_TURNS; t++)
        (void)wake_take_turn(w, t, 1, 1);
}

/* 0: opened and every page touched; 2: refused (RL_IO); else a failure. */
static int child_wake_open(void)
{
    store_wake *w = NULL;
    rl_err e = wake_open(home, &w);
    if (e != RL_OK)
        return e == RL_IO && w == NULL ? 2 : 3;
    touch_all(w);
    wake_close(w);
    return 0;
}

/* 0: opened and maintained; 2: store_open refused (RL_STORE); else a failure. */
static int child_store_open(void)
{
    store_options o = opts();
    store *s = NULL;
    rl_err e = store_open(&o, &s);
    if (e != RL_OK)
        return e == RL_STORE && s == NULL ? 2 : 3;
    rl_err m = store_maintain(s, 1000); /* takes the maintenance turn in wake.map */
    store_close(s);
    return m == RL_OK ? 0 : 4;
}

static void wake_path(char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", home, WAKE_FILE);
}

static void test_wake_full_disk(void)
{
    char path[256];
    wake_path(path, sizeof path);
    is_int(mkdir(home, 0700), 0, "wake: home on the tmpfs");

    ok(fill_disk() > 0, "wake: the tmpfs is full");
    int st = in_child(child_wake_open);
    if (st == 128 + SIGBUS)
        printf("#   the child died of SIGBUS touching the sparse wake.map\n");
    is_int(st, 2, "wake: on a full disk a new wake.map is refused, not a SIGBUS");
    ok(logged(WAKE_FILE, "No space left on device"), "wake: the refusal is logged with the cause");
    if (!logged(WAKE_FILE, "No space left on device"))
        show_log();

    free_disk();
    is_int(in_child(child_wake_open), 0, "wake: with room, it opens and every page works");
    struct stat sb;
    is_int(stat(path, &sb), 0, "wake: the file exists");
    ok((long long)sb.st_blocks * 512 >= (long long)sb.st_size && sb.st_size > 0,
       "wake: every byte of it is allocated (not sparse)");

    ok(fill_disk() > 0, "wake: the tmpfs is full again");
    is_int(in_child(child_wake_open), 0, "wake: an allocated wake.map opens on a full disk");

    /* A wake.map an older Relay left sparse (ftruncate only), of the first
     * layout (the wake-up counters alone), which is grown in place. */
    free_disk();
    is_int(unlink(path), 0, "wake: remove it");
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    ok(fd >= 0 && ftruncate(fd, WAKE_SLOTS * 4) == 0, "wake: a sparse file in its place");
    if (fd >= 0)
        close(fd);
    ok(fill_disk() > 0, "wake: full");
    st = in_child(child_wake_open);
    is_int(st, 2, "wake: a sparse wake.map on a full disk is refused, not a SIGBUS");
    free_disk();
    is_int(in_child(child_wake_open), 0, "wake: with room, the sparse file is allocated and works");
    is_int(stat(path, &sb), 0, "wake: the file exists");
    ok((long long)sb.st_blocks * 512 >= (long long)sb.st_size, "wake: now allocated");
    (void)unlink(path);
}

static void test_store_full_disk(void)
{
    char path[256];
    wake_path(path, sizeof path);
    store_options o = opts();
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "store: created on the tmpfs");
    store_close(s);
    /* Its regions stay, as after Relay stopped: the next open joins them
     * and writes nothing there. The wake-up file goes, as on the first
     * start of a version that adds it, or after it was lost. */
    is_int(unlink(path), 0, "store: its wake.map removed");

    ok(fill_disk() > 0, "store: the tmpfs is full");
    int st = in_child(child_store_open);
    if (st == 128 + SIGBUS)
        printf("#   the child died of SIGBUS in store_maintain\n");
    is_int(st, 2, "store: on a full disk store_open fails (Relay serves uncached), no SIGBUS");
    ok(logged(WAKE_FILE, "No space left on device"), "store: the cause is logged");
    if (!logged(WAKE_FILE, "No space left on device"))
        show_log();

    free_disk();
    st = in_child(child_store_open);
    is_int(st, 0, "store: with room again it opens and maintains");
    if (st != 0)
        show_log();

    /* Regions created on a full disk: their creation fails half-way. */
    is_int(store_remove(&o), RL_OK, "store: its regions removed (as after a reboot)");
    ok(fill_disk() > 0, "store: the tmpfs is full");
    is_int(in_child(child_store_open), 2, "store: creating the regions on a full disk fails");
    char region[256];
    snprintf(region, sizeof region, "%s/__db.001", home);
    ok(access(region, F_OK) != 0, "store: and leaves no half-written region file behind");
    free_disk();
    is_int(in_child(child_store_open), 0, "store: with room again it opens");
    (void)store_remove(&o);
}

/* ---- verify and backup on a disk without room for the copy -------------- */

static char vhome[160], disk2[128];

/* This thread's log lines, kept for the checks (rl_log_set_thread_sink). */
static char captured[8192];

static void capture(void *ctx, const char *line)
{
    (void)ctx;
    size_t n = strlen(captured);
    snprintf(captured + n, sizeof captured - n, "%s\n", line);
}

static long long free_bytes(const char *path)
{
    struct statvfs v;
    return statvfs(path, &v) == 0 ? (long long)v.f_bavail * (long long)v.f_frsize : -1;
}

/* The bytes of dir's files whose name matches the shell pattern "*" suffix
 * (".db", "log.*"). */
static long long files_bytes(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char pattern[64];
    snprintf(pattern, sizeof pattern, "*%s", suffix);
    long long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[600];
        struct stat st;
        if (fnmatch(pattern, e->d_name, 0) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            n += (long long)st.st_size;
    }
    closedir(d);
    return n;
}

static void put_bytes(store *s, uint32_t first, size_t total)
{
    static char val[4000];
    memset(val, 'v', sizeof val);
    for (uint32_t i = 0; i * sizeof val < total; i++) {
        uint8_t k[STORE_KEY_LEN] = {0xee};
        k[1] = (uint8_t)((first + i) >> 8);
        k[2] = (uint8_t)(first + i);
        store_meta m = {.created = 1, .expires = 1000000};
        (void)store_cache_put(s, k, &m, val, sizeof val);
    }
}

static void test_verify_space(void)
{
    snprintf(vhome, sizeof vhome, "%s/vstore", disk);
    store_options o = opts();
    o.home = vhome;
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "verify: a store on the tmpfs");
    if (!s)
        return;
    put_bytes(s, 0, 3u << 20);
    is_int(store_maintain(s, 100), RL_OK, "verify: checkpointed");

    /* Less room than a copy of the store takes. */
    long long size = files_bytes(vhome, ".db") + files_bytes(vhome, "log.*");
    ok(fill_disk_leaving(size / 2) > 0, "verify: the disk has room for half a copy");
    long long before = free_bytes(disk);
    unsigned problems = 0;
    captured[0] = '\0';
    rl_log_set_thread_sink(capture, NULL);
    rl_err e = store_verify(s, NULL, NULL, &problems);
    rl_log_set_thread_sink(NULL, NULL);
    is_int(e, RL_IO, "verify: refused");
    ok(strstr(captured, "free") && strstr(captured, "MiB"),
       "verify: saying how much room it needs and has");
    ok(!strstr(captured, "Operation not permitted"), "verify: no 'Operation not permitted'");
    if (!strstr(captured, "MiB"))
        printf("#   log: %s", captured);
    is_int(free_bytes(disk), before, "verify: the disk is as it was (nothing copied)");
    uint8_t k[STORE_KEY_LEN] = {0xef};
    store_meta m = {.created = 1, .expires = 2};
    is_int(store_cache_put(s, k, &m, "x", 1), RL_OK, "verify: the store still caches");

    free_disk();
    problems = 1;
    is_int(store_verify(s, NULL, NULL, &problems), RL_OK, "verify: with room it runs");
    is_int(problems, 0, "verify: and the store verifies");
    store_close(s);
    (void)store_remove(&o);
}

/* A backup to another file system that fills up copying the logs: Berkeley
 * DB then returns 1 instead of the errno, which reads "Operation not
 * permitted" (defect 13). */
static void test_backup_enospc(void)
{
    store_options o = opts();
    o.home = vhome;
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "backup: the store");
    if (!s)
        return;
    put_bytes(s, 1000, 3u << 20); /* no checkpoint: the logs stay */
    long long dbs = files_bytes(vhome, ".db"), logs = files_bytes(vhome, "log.*");
    ok(dbs > 0 && logs > (1 << 20), "backup: databases and a few MiB of logs");
    /* Room for the databases, not for the logs. */
    char size[64];
    snprintf(size, sizeof size, "size=%lldk,mode=0700", (dbs + 4095) / 4096 * 4 + 256);
    snprintf(disk2, sizeof disk2, "%s/small", tmp);
    mkdir(disk2, 0700);
    is_int(mount("tmpfs", disk2, "tmpfs", 0, size), 0, "backup: a small tmpfs for the copy");
    char dir[160];
    snprintf(dir, sizeof dir, "%s/backup", disk2);
    captured[0] = '\0';
    rl_log_set_thread_sink(capture, NULL);
    rl_err e = store_backup(s, dir, NULL);
    rl_log_set_thread_sink(NULL, NULL);
    ok(e != RL_OK, "backup: fails");
    ok(strstr(captured, "No space left on device") != NULL, "backup: reports no space left");
    ok(!strstr(captured, "Operation not permitted"), "backup: not 'Operation not permitted'");
    if (!strstr(captured, "No space left on device") || strstr(captured, "Operation not permitted"))
        printf("#   log: %s", captured);
    (void)umount2(disk2, MNT_DETACH);
    store_close(s);
    (void)store_remove(&o);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", vhome); /* room for the chain below */
    if (system(cmd) != 0)
        printf("# could not remove %s\n", vhome);
}

/* ---- a nearly full disk: the cache stops growing ------------------------ */

static void test_low_space(void)
{
    char lhome[160];
    snprintf(lhome, sizeof lhome, "%s/lstore", disk);
    store_options o = opts(); /* no caps: only the disk bounds it */
    o.home = lhome;
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "low: a store without caps");
    if (!s)
        return;
    put_bytes(s, 0, 2u << 20);
    is_int(store_maintain(s, 100), RL_OK, "low: maintained");
    store_stats before, after;

    /* Less free than the room the store keeps for itself. */
    ok(fill_disk_leaving(4 << 20) > 0, "low: 4 MiB left on the disk");
    captured[0] = '\0';
    rl_log_set_thread_sink(capture, NULL);
    is_int(store_maintain(s, 101), RL_OK, "low: maintenance notices");
    rl_log_set_thread_sink(NULL, NULL);
    ok(strstr(captured, "MiB free") != NULL, "low: and says so");
    is_int(store_stats_get(s, &before), RL_OK, "low: stats");
    static char val[4000];
    memset(val, 'n', sizeof val);
    unsigned stored = 0;
    for (uint32_t i = 0; i < 200; i++) {
        uint8_t k[STORE_KEY_LEN] = {0xdd, (uint8_t)(i >> 8), (uint8_t)i};
        store_meta m = {.created = 1, .expires = 2000000};
        stored += store_cache_put(s, k, &m, val, sizeof val) == RL_OK;
    }
    is_int(stored, 200, "low: new entries are still stored");
    is_int(store_stats_get(s, &after), RL_OK, "low: stats");
    ok(after.bytes <= before.bytes, "low: by replacing old ones: the store does not grow");
    if (after.bytes > before.bytes)
        printf("#   %llu bytes before, %llu after\n", (unsigned long long)before.bytes,
               (unsigned long long)after.bytes);
    ok(after.evictions > before.evictions, "low: (evictions counted)");

    free_disk();
    is_int(store_maintain(s, 102), RL_OK, "low: room again");
    uint8_t k[STORE_KEY_LEN] = {0xde};
    store_meta m = {.created = 1, .expires = 2000000};
    is_int(store_cache_put(s, k, &m, val, sizeof val), RL_OK, "low: a put");
    is_int(store_stats_get(s, &before), RL_OK, "low: stats");
    ok(before.bytes > after.bytes, "low: and the store grows again");
    store_close(s);
    (void)store_remove(&o);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", lhome);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", lhome);
}

/* ---- a store recovery cannot repair: set aside, not kept forever -------- */

static char dhome[160];

/* The names in dir starting with prefix: how many (first one into first). */
static int names_starting(const char *dir, const char *prefix, char *first, size_t cap)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls -1 %s | grep '^%s'", dir, prefix);
    FILE *p = popen(cmd, "r");
    int n = 0;
    char line[256];
    while (p && fgets(line, sizeof line, p)) {
        if (n++ == 0 && first) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(first, cap, "%s", line);
        }
    }
    if (p)
        pclose(p);
    return n;
}

static void test_set_aside(void)
{
    snprintf(dhome, sizeof dhome, "%s/dstore", disk);
    store_options o = opts();
    o.home = dhome;
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "aside: a store");
    if (!s)
        return;
    put_bytes(s, 0, 256u << 10);
    store_close(s);
    (void)store_remove(&o);

    /* Its logs lost (what "past end of log" says happened): no recovery
     * brings this store back. */
    char cmd[300], key_before[128] = "", key_after[128] = "";
    snprintf(cmd, sizeof cmd, "rm -f %s/log.*", dhome);
    is_int(system(cmd), 0, "aside: the store's log files are gone");
    FILE *f = fopen(keyfile, "r");
    if (f) {
        if (!fgets(key_before, sizeof key_before, f))
            key_before[0] = '\0';
        fclose(f);
    }

    /* A wrong key file never sets a store aside. */
    store_options wrong = o;
    char other[200];
    snprintf(other, sizeof other, "%s/other.key", tmp);
    (void)store_keyfile_ensure(other);
    wrong.key_file = other;
    is_int(store_open(&wrong, &s), RL_STORE, "aside: a wrong key file is refused");
    is_int(names_starting(disk, "dstore.damaged-", NULL, 0), 0, "aside: and sets nothing aside");

    captured[0] = '\0';
    rl_log_set_thread_sink(capture, NULL);
    rl_err e = store_open(&o, &s);
    rl_log_set_thread_sink(NULL, NULL);
    is_int(e, RL_OK, "aside: the store opens: a new, empty one");
    char aside[256] = "";
    is_int(names_starting(disk, "dstore.damaged-", aside, sizeof aside), 1,
           "aside: the damaged one was moved beside it (dstore.damaged-DATE)");
    ok(strstr(captured, "dstore.damaged-") != NULL, "aside: the log says where it went");
    if (getenv("T_DISK_SHOW"))
        printf("%s", captured);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", disk, aside);
    ok(names_starting(path, "cache.db", NULL, 0) == 1, "aside: with its databases");
    if (s) {
        store_stats st = {.entries = 1};
        is_int(store_stats_get(s, &st), RL_OK, "aside: the new store works");
        is_int(st.entries, 0, "aside: and is empty");
        uint8_t k[STORE_KEY_LEN] = {1};
        store_meta m = {.created = 1, .expires = 2};
        is_int(store_cache_put(s, k, &m, "x", 1), RL_OK, "aside: and caches");
        store_close(s);
    }
    f = fopen(keyfile, "r");
    if (f) {
        if (!fgets(key_after, sizeof key_after, f))
            key_after[0] = '\0';
        fclose(f);
    }
    ok(key_before[0] && strcmp(key_before, key_after) == 0, "aside: the key file is untouched");
    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "aside: and it opens again");
    store_close(s);
    (void)store_remove(&o);
}

/* ---- the chain of faults (defect 7) --------------------------------------- */

#define NOBODY 65534 /* the workers' user, as Relay runs as www-data */
#define WORKERS 3
#define CHAIN_MAX_BYTES (3u << 20) /* [store] max_bytes: eviction bounds the cache */

static char chain_home[160], chain_key[256];

static store_options chain_opts(void)
{
    store_options o = {.home = chain_home,
                       .key_file = chain_key,
                       .cache_mb = 2,
                       .max_threads = 4,
                       .max_bytes = CHAIN_MAX_BYTES};
    return o;
}

typedef struct worker {
    pid_t pid;
    FILE *cmd, *reply;
    int id;
} worker;

static int drop_privileges(void)
{
    return setresgid(NOBODY, NOBODY, NOBODY) == 0 && setresuid(NOBODY, NOBODY, NOBODY) == 0 ? 0
                                                                                            : -1;
}

/* Puts n entries of 1-6 KB under this worker's keys; counts the good ones. */
static unsigned worker_put(store *s, int id, uint32_t *seq, unsigned n)
{
    static char val[6000];
    unsigned good = 0;
    memset(val, 'a' + id, sizeof val);
    for (unsigned i = 0; i < n; i++, ++*seq) {
        uint8_t k[STORE_KEY_LEN] = {0};
        k[0] = (uint8_t)id;
        k[1] = (uint8_t)(*seq >> 16);
        k[2] = (uint8_t)(*seq >> 8);
        k[3] = (uint8_t)*seq;
        store_meta m = {.created = 1000, .expires = 100000 + *seq};
        if (store_cache_put(s, k, &m, val, 1000 + (*seq * 37) % 5000) == RL_OK)
            good++;
    }
    return good;
}

/*
 * A worker process: does what each command line says and answers with one
 * line. "open" and "close"; "put N" (answers how many were stored);
 * "spin" (puts until killed, saying "spinning" once it runs); "maintain
 * NOW"; "verify" (answers the rl_err and the problems found); "exit".
 * Its log goes to its own file, so that the disk-full noise stays there.
 */
/* Whether line is "<name><number>": the number in *n (strtoul, whole line). */
static int command_arg(const char *line, const char *name, unsigned long *n)
{
    size_t len = strlen(name);
    if (strncmp(line, name, len) != 0)
        return 0;
    char *end;
    errno = 0;
    *n = strtoul(line + len, &end, 10);
    return errno == 0 && end != line + len && (*end == '\n' || *end == '\0');
}

static void worker_main(int id, int in, int out)
{
    char log[200];
    snprintf(log, sizeof log, "%s/worker-%d.log", tmp, id);
    if (!freopen(log, "a", stderr) || drop_privileges() != 0)
        _exit(120);
    setvbuf(stderr, NULL, _IOLBF, 0);
    FILE *r = fdopen(in, "r"), *w = fdopen(out, "w");
    if (!r || !w)
        _exit(121);
    setvbuf(w, NULL, _IOLBF, 0);
    store_options o = chain_opts();
    store *s = NULL;
    uint32_t seq = 0;
    char line[128];
    while (fgets(line, sizeof line, r)) {
        unsigned long n = 0;
        if (strncmp(line, "open", 4) == 0) {
            rl_err e = s ? RL_OK : store_open(&o, &s);
            fprintf(w, "%d\n", (int)e);
        } else if (strncmp(line, "close", 5) == 0) {
            store_close(s);
            s = NULL;
            fprintf(w, "0\n");
        } else if (command_arg(line, "put ", &n)) {
            fprintf(w, "%u\n", s ? worker_put(s, id, &seq, (unsigned)n) : 0);
        } else if (strncmp(line, "spin", 4) == 0) {
            for (unsigned i = 0;; i++) {
                if (s)
                    (void)worker_put(s, id, &seq, 1);
                if (i == 20)
                    fprintf(w, "spinning\n");
            }
        } else if (command_arg(line, "maintain ", &n)) {
            fprintf(w, "%d\n", s ? (int)store_maintain(s, n) : (int)RL_STORE);
        } else if (strncmp(line, "verify", 6) == 0) {
            unsigned problems = 0;
            rl_err e = s ? store_verify(s, NULL, NULL, &problems) : RL_STORE;
            fprintf(w, "%d %u\n", (int)e, problems);
        } else {
            break;
        }
    }
    store_close(s);
    _exit(0);
}

static int worker_start(worker *wk, int id)
{
    int to[2], from[2];
    if (pipe(to) != 0 || pipe(from) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        close(to[1]);
        close(from[0]);
        worker_main(id, to[0], from[1]);
    }
    close(to[0]);
    close(from[1]);
    wk->pid = p;
    wk->id = id;
    wk->cmd = fdopen(to[1], "w");
    wk->reply = fdopen(from[0], "r");
    if (p < 0 || !wk->cmd || !wk->reply)
        return -1;
    setvbuf(wk->cmd, NULL, _IOLBF, 0);
    return 0;
}

/* Sends one command and reads the answer's first number; -1 if the worker
 * is gone (it crashed: its exit status is printed). */
static long ask(worker *wk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static long ask(worker *wk, const char *fmt, ...)
{
    char line[128];
    va_list ap;
    va_start(ap, fmt);
    vfprintf(wk->cmd, fmt, ap);
    va_end(ap);
    fputc('\n', wk->cmd);
    fflush(wk->cmd);
    if (!fgets(line, sizeof line, wk->reply)) {
        printf("#   worker %d is gone (status %d)\n", wk->id, wait_status(wk->pid));
        wk->pid = -1;
        return -1;
    }
    return strtol(line, NULL, 10);
}

/* Asks every worker the same; the number of workers whose answer is want. */
static int ask_all(worker *w, long want, const char *cmd)
{
    int n = 0;
    for (int i = 0; i < WORKERS; i++)
        n += ask(&w[i], "%s", cmd) == want;
    return n;
}

/* Sums every worker's answer to cmd (puts stored); -1 if one is gone. */
static long sum_all(worker *w, const char *cmd)
{
    long total = 0;
    for (int i = 0; i < WORKERS; i++) {
        long v = ask(&w[i], "%s", cmd);
        if (v < 0)
            return -1;
        total += v;
    }
    return total;
}

static void worker_stop(worker *wk)
{
    if (wk->pid > 0) {
        fprintf(wk->cmd, "exit\n");
        fflush(wk->cmd);
        (void)wait_status(wk->pid);
    }
    fclose(wk->cmd);
    fclose(wk->reply);
    wk->pid = -1;
}

static void worker_kill(worker *wk)
{
    if (wk->pid > 0) {
        kill(wk->pid, SIGKILL);
        (void)wait_status(wk->pid);
    }
    fclose(wk->cmd);
    fclose(wk->reply);
    wk->pid = -1;
}

/* Shows the last lines of each worker log (after a failed check). */
static void show_worker_logs(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd,
             "for f in %s/worker-*.log; do echo \"# -- $f\"; grep -v 'BDB3015\\|BDB3027\\|BDB0137' "
             "\"$f\" | tail -5 | sed 's/^/#   /'; done",
             tmp);
    fflush(stdout);
    if (system(cmd) != 0)
        printf("#   (could not show the worker logs)\n");
}

static int chain_setup(void)
{
    char dir[192];
    snprintf(chain_home, sizeof chain_home, "%s/chain", disk);
    snprintf(dir, sizeof dir, "%s/nobody", tmp);
    snprintf(chain_key, sizeof chain_key, "%s/relay.key", dir);
    if (chmod(tmp, 0711) != 0 || chmod(disk, 0777) != 0 || mkdir(dir, 0700) != 0 ||
        chown(dir, NOBODY, NOBODY) != 0 || mkdir(chain_home, 0700) != 0 ||
        chown(chain_home, NOBODY, NOBODY) != 0)
        return -1;
    return 0;
}

static int child_chain_key(void)
{
    return drop_privileges() == 0 && store_keyfile_ensure(chain_key) == RL_OK ? 0 : 1;
}

static int child_chain_remove(void)
{
    store_options o = chain_opts();
    return drop_privileges() == 0 && store_remove(&o) == RL_OK ? 0 : 1;
}

static void test_fault_chain(void)
{
    worker w[WORKERS], fresh[WORKERS];
    char msg[160];
    ok(chain_setup() == 0, "chain: a store directory owned by the workers' user");
    is_int(in_child(child_chain_key), 0, "chain: the key file");
    for (int i = 0; i < WORKERS; i++)
        if (worker_start(&w[i], i) != 0)
            return;

    is_int(ask_all(w, RL_OK, "open"), WORKERS, "chain: the workers open the store");
    is_int(sum_all(w, "put 300"), WORKERS * 300, "chain: and cache");
    is_int(ask(&w[0], "maintain 100"), RL_OK, "chain: maintenance");

    /* 1. The disk fills while they write. */
    ok(fill_disk() > 0, "chain 1: the disk is full");
    ok(sum_all(w, "put 200") >= 0, "chain 1: the workers live through writes on a full disk");
    (void)ask(&w[0], "maintain 101");

    /* 2. Room again: they cache again. */
    free_disk();
    (void)sum_all(w, "put 50");
    (void)ask(&w[1], "maintain 102");
    is_int(sum_all(w, "put 100"), WORKERS * 100, "chain 2: with room again, every put is stored");

    /* 3. The directory turns read-only while the workers are killed
     * mid-write; the pool starts new ones, which cannot open it yet. */
    is_int(chmod(chain_home, 0500), 0, "chain 3: the store directory is read-only");
    int spinning = 0;
    for (int i = 0; i < WORKERS; i++) {
        fprintf(w[i].cmd, "spin\n");
        fflush(w[i].cmd);
        char line[64];
        spinning += fgets(line, sizeof line, w[i].reply) != NULL;
    }
    is_int(spinning, WORKERS, "chain 3: the workers are writing");
    for (int i = 0; i < WORKERS; i++)
        worker_kill(&w[i]);
    for (int i = 0; i < WORKERS; i++)
        if (worker_start(&fresh[i], 10 + i) != 0)
            return;
    (void)ask_all(fresh, RL_OK, "open"); /* fails while read-only; must not crash */

    /* 4. Writable again: the new workers open and cache. */
    is_int(chmod(chain_home, 0700), 0, "chain 4: writable again");
    int opened = ask_all(fresh, RL_OK, "open");
    is_int(opened, WORKERS, "chain 4: the new workers open the store");
    is_int(sum_all(fresh, "put 100"), WORKERS * 100, "chain 4: and cache");
    (void)ask(&fresh[0], "maintain 103");

    /* 5. The disk fills again while they write (as it did under verify's
     * hot copy), and verify runs meanwhile. */
    ok(fill_disk_leaving(1 << 20) > 0, "chain 5: the disk is nearly full");
    ok(sum_all(fresh, "put 300") >= 0, "chain 5: the workers live through it");
    worker v;
    if (worker_start(&v, 20) != 0)
        return;
    (void)ask(&v, "open");
    long vr = ask(&v, "verify");
    ok(vr >= 0, "chain 5: verify on a nearly full disk does not crash");
    worker_stop(&v);
    (void)ask(&fresh[1], "maintain 104");
    free_disk();

    /* 6. Relay restarts: the store opens, caches and verifies. */
    for (int i = 0; i < WORKERS; i++)
        worker_stop(&fresh[i]);
    worker r;
    if (worker_start(&r, 30) != 0)
        return;
    long rc = ask(&r, "open");
    is_int(rc, RL_OK, "chain 6: after a restart the store opens");
    snprintf(msg, sizeof msg, "chain 6: and caches");
    is_int(ask(&r, "put 100"), 100, msg);
    is_int(ask(&r, "maintain 105"), RL_OK, "chain 6: maintenance works");
    is_int(ask(&r, "verify"), RL_OK, "chain 6: verify passes");
    worker_stop(&r);
    if (rc != RL_OK)
        show_worker_logs();
    (void)in_child(child_chain_remove);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120);
    snprintf(tmp, sizeof tmp, "/tmp/t_store_disk.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(disk, sizeof disk, "%s/disk", tmp);
    snprintf(home, sizeof home, "%s/home", disk);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);
    snprintf(filler, sizeof filler, "%s/filler", disk);
    snprintf(child_log, sizeof child_log, "%s/child.log", tmp);
    mkdir(disk, 0700);

    int mounted = mount_disk() == 0;
    ok(mounted, "a tmpfs of " DISK_SIZE " mounted for the store (needs root; never skipped)");
    if (mounted) {
        is_int(store_keyfile_ensure(keyfile), RL_OK, "key file (on the ordinary disk)");
        test_wake_full_disk();
        test_store_full_disk();
        test_verify_space();
        test_backup_enospc();
        test_set_aside();
        test_low_space();
        test_fault_chain();
        (void)umount2(disk, MNT_DETACH);
    }

    /* T_DISK_KEEP=1 keeps tmp (the workers' logs) for a look. */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (getenv("T_DISK_KEEP"))
        printf("# kept %s\n", tmp);
    else if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
