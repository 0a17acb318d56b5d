/*
 * t_store_disk.c — the store on a file system that fills up: the wake-up
 * file (wake.map) is allocated when it is created, so a full disk makes the
 * store refuse to open (Relay then serves uncached) instead of killing the
 * process with SIGBUS on the first touch of a page of a sparse file.
 *
 * The store home lives on a small tmpfs mounted by this test, in a mount
 * namespace of its own (so the mount is gone when the test exits, however
 * it exits). The test runs as root; if it cannot mount, it fails: it is
 * never skipped. What may crash (a SIGBUS) runs in a child process, whose
 * exit status and log lines the parent checks. Nothing sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "store/wake.h"
#include "tests/unit/tap.h"

static char tmp[64];        /* on the ordinary disk: key file, child logs */
static char disk[128];      /* the tmpfs */
static char home[160];      /* the store, on the tmpfs */
static char keyfile[160];   /* beside tmp, never on the tmpfs */
static char filler[160];    /* the file that fills the tmpfs */
static char child_log[160]; /* a child's stderr */
/* Room for the store with its first log file (10 MiB, and recovery writes
 * zeros over what is left of it), and little more. */
#define DISK_SIZE "24m"

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

/* Writes the filler until the file system refuses another byte. Returns
 * the bytes written, or -1 if a write failed for another reason. */
static long long fill_disk(void)
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
    close(fd);
    return total;
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
    (void)store_remove(&o);
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
        (void)umount2(disk, MNT_DETACH);
    }

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
