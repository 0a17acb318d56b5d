/*
 * t_stats_file.c — stats.map itself (engine/stats_file.c): a file of the
 * right size with damaged contents is rebuilt, not trusted; a process
 * follows a file another rebuilt or removed; on a full file system (a
 * tmpfs of 4 MiB mounted here: the tests run as root, and a mount that
 * fails is a failure) the counters are unavailable with the reason,
 * never a SIGBUS, and come back once there is room.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/stats.h"
#include "tests/unit/tap.h"

static const uint64_t now = 1800000000;

static stats_request req(const char *model)
{
    stats_request r = {.upstream = "openai",
                       .model = model,
                       .outcome = "MISS",
                       .status = 200,
                       .client = "",
                       .tokens_in = 5,
                       .tokens_out = 1,
                       .tokens_cached_in = 0,
                       .model_vouched = 1,
                       .client_vouched = 1};
    return r;
}

typedef struct found {
    const char *model;
    uint64_t requests;
    int rows;
} found;

static int find_fn(void *ctx, const stats_row *row)
{
    found *f = ctx;
    f->rows++;
    if (row->kind == STATS_ROW_MODEL && !strcmp(row->labels[1], f->model))
        f->requests = row->c[C_REQUESTS];
    return 0;
}

/* Requests counted for model, and rows in all. */
static found look(stats *st, const char *model)
{
    found f = {.model = model};
    stats_each_row(st, find_fn, &f);
    return f;
}

static void path_of(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Overwrites len bytes at off of dir's stats.map with a repeatable mess. */
static int damage(const char *dir, off_t off, size_t len)
{
    char path[512];
    path_of(path, sizeof path, dir, STATS_FILE);
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    unsigned char *junk = malloc(len);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk[i] = (unsigned char)x;
    }
    ssize_t n = pwrite(fd, junk, len, off);
    free(junk);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

static off_t file_size(const char *dir)
{
    char path[512];
    path_of(path, sizeof path, dir, STATS_FILE);
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static void test_damaged(const char *dir)
{
    stats *st = NULL;
    is_int(stats_open(dir, &st), RL_OK, "a new counters file");
    if (!st)
        return;
    stats_request r = req("gpt-4o");
    stats_record(st, &r, now);
    stats_close(st);
    off_t size = file_size(dir);

    /* The whole file, same size, damaged. */
    is_int(damage(dir, 0, (size_t)size), 0, "damage every byte of it");
    is_int(stats_open(dir, &st), RL_OK, "a damaged file opens (rebuilt)");
    if (!st)
        return;
    is_int(look(st, "gpt-4o").rows, 0, "its damaged rows are gone");
    stats_record(st, &r, now);
    is_int(look(st, "gpt-4o").requests, 1, "and counting works again");
    stats_close(st);

    /* Rows damaged, the first page intact. */
    is_int(damage(dir, 4096, 65536), 0, "damage the rows only");
    is_int(stats_open(dir, &st), RL_OK, "opens (rebuilt)");
    if (!st)
        return;
    is_int(look(st, "gpt-4o").rows, 0, "damaged rows are not trusted");
    stats_record(st, &r, now);
    is_int(look(st, "gpt-4o").requests, 1, "counting works");
    stats_close(st);
    is_int(file_size(dir), size, "the file keeps its size");

    /* A file of another layout (an older Relay's) is replaced. */
    char path[512];
    path_of(path, sizeof path, dir, STATS_FILE);
    is_int(truncate(path, 4096), 0, "a file of another size");
    is_int(stats_open(dir, &st), RL_OK, "opens (replaced)");
    is_int(file_size(dir), size, "with this layout's size");
    stats_close(st);
}

/* A process follows a file that another process rebuilt, or that was
 * removed; it rebuilds one damaged under it. */
static void test_maintain(const char *dir)
{
    stats *a = stats_new(dir), *b = NULL;
    ok(a != NULL, "a handle");
    char why[512];
    is_int(stats_problem(a, why, sizeof why), 0, "it counts");
    stats_request r = req("follow-me");
    stats_record(a, &r, now);

    /* Damaged while mapped: a's next maintenance rebuilds it. */
    is_int(damage(dir, 0, 64), 0, "damage the header under a running process");
    stats_maintain(a, now);
    is_int(look(a, "follow-me").rows, 0, "maintenance rebuilt it");
    is_int(stats_open(dir, &b), RL_OK, "another process opens the rebuilt file");
    stats_record(b, &r, now);
    is_int(look(a, "follow-me").requests, 1, "and both count into it");

    /* Removed: a recreates it, b follows at its next maintenance. */
    char path[512];
    path_of(path, sizeof path, dir, STATS_FILE);
    is_int(unlink(path), 0, "remove the file");
    stats_maintain(a, now + 1);
    stats_maintain(b, now + 1);
    stats_record(a, &r, now);
    stats_record(b, &r, now);
    is_int(look(a, "follow-me").requests, 2, "a new file, both counting into it");
    stats_close(a);
    stats_close(b);

    /* A handle whose file cannot be made says why and counts nothing. */
    stats *none = stats_new("/nonexistent/relay-t-stats-file");
    ok(none != NULL, "a handle even so");
    is_int(stats_problem(none, why, sizeof why), 1, "it does not count");
    ok(strstr(why, "No such file or directory") != NULL, "and says why");
    stats_record(none, &r, now);
    is_int(look(none, "follow-me").rows, 0, "recording is a no-op");
    stats_maintain(none, now);
    stats_close(none);
}

/* Fills the file system of dir, leaving `left` bytes, with dir/filler. */
static int fill(const char *dir, uint64_t left)
{
    char path[512];
    path_of(path, sizeof path, dir, "filler");
    struct statvfs vf;
    if (statvfs(dir, &vf) != 0)
        return -1;
    uint64_t avail = (uint64_t)vf.f_bavail * vf.f_frsize;
    if (avail <= left)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0)
        return -1;
    int ret = posix_fallocate(fd, 0, (off_t)(avail - left));
    close(fd);
    return ret == 0 ? 0 : -1;
}

/* In a child: opens the counters and gives many models a row each, which
 * touches every page of the rows. Exit 0: counted everything; 3: the
 * counters were refused cleanly. A signal: the crash this guards against. */
static int child_counts(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        stats *st = NULL;
        if (stats_open(dir, &st) != RL_OK)
            _exit(3);
        char model[32];
        for (int i = 0; i < STATS_ROWS; i++) {
            snprintf(model, sizeof model, "model-%d", i);
            stats_request r = req(model);
            stats_record(st, &r, now);
        }
        stats_close(st);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        printf("# the child died of signal %d\n", WTERMSIG(status));
        return -WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

static int only_filler(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = filler", dir);
    return system(cmd) == 0;
}

static void test_full_disk(const char *base)
{
    char mnt[512];
    path_of(mnt, sizeof mnt, base, "tmpfs");
    if (mkdir(mnt, 0700) != 0) {
        ok(0, "make a mount point");
        return;
    }
    int mounted = mount("tmpfs", mnt, "tmpfs", 0, "size=4m,mode=0700") == 0;
    if (!ok(mounted, "mount a 4 MiB tmpfs (the tests run as root)")) {
        printf("#   mount: %s\n", strerror(errno));
        return;
    }
    /* Room for a page or two, not for the 2.3 MB counters file. */
    is_int(fill(mnt, 256 * 1024), 0, "fill it but 256 KiB");
    is_int(child_counts(mnt), 3, "a full file system: the counters are refused, no SIGBUS");
    ok(only_filler(mnt), "and no half-made file is left behind");

    stats *st = stats_new(mnt);
    char why[512];
    ok(st && stats_problem(st, why, sizeof why), "a server's handle counts nothing");
    ok(st && strstr(why, "No space left on device") != NULL, "and says why (for health)");
    stats_request r = req("later");
    stats_record(st, &r, now);
    stats_maintain(st, now);
    ok(stats_problem(st, why, sizeof why), "still full: still nothing");

    char filler[600];
    path_of(filler, sizeof filler, mnt, "filler");
    unlink(filler);
    stats_maintain(st, now + 5);
    ok(stats_problem(st, why, sizeof why), "room again, but retried only every 10 s");
    stats_maintain(st, now + 30);
    is_int(stats_problem(st, why, sizeof why), 0, "then it counts again");
    stats_record(st, &r, now);
    is_int(look(st, "later").requests, 1, "counted");
    stats_close(st);

    /* An existing file with holes (copied sparse, or made by an older
     * Relay with ftruncate) on a full file system. */
    char path[600];
    path_of(path, sizeof path, mnt, STATS_FILE);
    int fd = open(path, O_RDWR);
    ok(fd >= 0 && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 1 << 20) == 0,
       "punch holes in the counters file");
    if (fd >= 0)
        close(fd);
    is_int(fill(mnt, 64 * 1024), 0, "fill the file system again");
    is_int(child_counts(mnt), 3, "a file with holes on a full disk is refused, no SIGBUS");
    unlink(filler);
    is_int(child_counts(mnt), 0, "with room, its holes are filled and it counts");

    is_int(umount(mnt), 0, "unmount");
    rmdir(mnt);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    char dir[] = "/tmp/t_stats_file.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_damaged(dir);
    test_maintain(dir);
    test_full_disk(dir);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return tap_done();
}
