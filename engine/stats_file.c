/*
 * stats_file.c — stats.map itself (see stats.h): its header and checks,
 * allocation, rebuilding, and the mapping each process counts into.
 *
 * A file is built whole beside its place (a temporary name in the same
 * directory: header written, every page allocated with posix_fallocate)
 * and only then linked into place (a new file) or renamed over a damaged
 * one, so no process ever maps a file that is half made, and no page of
 * a mapped file is first touched on a full file system (that touch is
 * SIGBUS: PLATFORM.md). A process checks a file before mapping it (the
 * header: magic, version, layout checksum; the rows and slots: states,
 * kinds, labels, hashes, period stamps) and rebuilds a damaged one; while
 * it runs, stats_maintain checks the header each second and everything
 * each minute, and follows a file another process rebuilt.
 *
 * Two processes that find the same damaged file both try to rebuild it:
 * the first takes an flock on the damaged file, renames a new file over
 * it and lets go; the second then sees that the name no longer leads to
 * the file it examined and uses the new one.
 */
#include "engine/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/stats_int.h"
#include "store/base/rl_log.h"

#define STATS_MAGIC 0x0053544154534c52ULL /* "RLSTATS\0" read as little-endian bytes */
#define STATS_VERSION 4u                  /* bump when what a counter means changes */
#define STATS_RETRY_SECONDS 10            /* between attempts while nothing is counted */
#define STATS_DEEP_SECONDS 60             /* between full checks of a mapped file */

/* ---- the header --------------------------------------------------------------- */

static uint64_t layout_sum(void)
{
    const uint64_t v[] = {
        sizeof(stats_file),
        sizeof(stats_header),
        sizeof(row),
        sizeof(slot),
        offsetof(stats_file, rows),
        offsetof(stats_file, minutes),
        offsetof(stats_file, days),
        offsetof(row, labels),
        offsetof(row, c),
        STATS_ROWS,
        STATS_LABELS,
        STATS_LABEL_MAX,
        STATS_COUNTERS,
        S_COUNTERS,
        STATS_MINUTES,
        STATS_DAYS,
        STATS_BUCKETS,
        STATS_CLIENT_ROWS,
    };
    return stats_fnv(STATS_FNV0, v, sizeof v);
}

static uint64_t header_sum(const stats_header *h)
{
    return stats_fnv(STATS_FNV0, h, offsetof(stats_header, check));
}

static void header_make(stats_header *h)
{
    memset(h, 0, sizeof *h);
    h->magic = STATS_MAGIC;
    h->version = STATS_VERSION;
    h->header_size = sizeof *h;
    h->size = sizeof(stats_file);
    h->layout = layout_sum();
    h->check = header_sum(h);
}

/* ---- checks -------------------------------------------------------------------- */

static const char *row_problem(const row *r)
{
    uint32_t state = atomic_load_explicit(&r->state, memory_order_acquire);
    if (state > ROW_READY)
        return "a row's state is damaged";
    if (state != ROW_READY)
        return NULL; /* free, or being claimed (perhaps by a writer that died) */
    if (r->kind < STATS_ROW_REQUESTS || r->kind > STATS_ROW_LAST)
        return "a row's kind is damaged";
    const char *labels[STATS_LABELS];
    for (int l = 0; l < STATS_LABELS; l++) {
        if (!memchr(r->labels[l], '\0', STATS_LABEL_MAX))
            return "a row's labels are damaged";
        labels[l] = r->labels[l];
    }
    if (r->hash != stats_row_hash((stats_row_kind)r->kind, labels))
        return "a row's labels do not match its hash";
    return NULL;
}

static const char *slots_problem(const slot *ring, size_t n, uint64_t period)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t stamp = atomic_load_explicit(&ring[i].stamp, memory_order_acquire);
        if ((stamp & ~SLOT_BUSY) % period != 0)
            return "its time series is damaged";
    }
    return NULL;
}

/*
 * NULL when f is a counters file of this layout whose contents make
 * sense, else what is wrong. Safe while other processes count into it:
 * a row is looked at only once it is READY (its labels and hash written
 * before), and counts of rows may run over for a moment while a full
 * table refuses a claim. deep: every row and slot too, not only the
 * header.
 */
static const char *file_problem(const stats_file *f, int deep)
{
    const stats_header *h = &f->h;
    if (h->magic != STATS_MAGIC || h->version != STATS_VERSION || h->header_size != sizeof *h ||
        h->size != sizeof(stats_file) || h->layout != layout_sum())
        return "it is not a counters file of this layout (damaged, or from another version)";
    if (h->check != header_sum(h))
        return "its header is damaged";
    if (atomic_load(&f->rows_used) > 2 * STATS_ROWS ||
        atomic_load(&f->clients_used) > 2 * STATS_CLIENT_ROWS)
        return "its row counts are damaged";
    if (!deep)
        return NULL;
    for (size_t i = 0; i < STATS_ROWS; i++) {
        const char *why = row_problem(&f->rows[i]);
        if (why)
            return why;
    }
    const char *why = slots_problem(f->minutes, STATS_MINUTES, 60);
    return why ? why : slots_problem(f->days, STATS_DAYS, 86400);
}

/* ---- building, creating, replacing ---------------------------------------------------- */

/* Builds a whole new file beside path (its name into tmp): header written,
 * every page allocated. Its descriptor, or -1 with why set. */
static int build_file(const char *path, char *tmp, size_t tmp_cap, char *why, size_t cap)
{
    if ((size_t)snprintf(tmp, tmp_cap, "%s.XXXXXX", path) >= tmp_cap) {
        snprintf(why, cap, "has too long a path");
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600 */
    if (fd < 0) {
        snprintf(why, cap, "cannot be created (%s)", strerror(errno));
        return -1;
    }
    int ret = posix_fallocate(fd, 0, (off_t)sizeof(stats_file));
    if (ret != 0) {
        snprintf(why, cap, "cannot be allocated (%s)", strerror(ret));
        goto fail;
    }
    stats_header h;
    header_make(&h);
    if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
        snprintf(why, cap, "cannot be written (%s)", strerror(errno));
        goto fail;
    }
    return fd;
fail:
    unlink(tmp);
    close(fd);
    return -1;
}

/* Puts a new file at path unless one appeared meanwhile. 0, or -1 with
 * why set. */
static int create_file(const char *path, char *why, size_t cap)
{
    char tmp[4200];
    int fd = build_file(path, tmp, sizeof tmp, why, cap);
    if (fd < 0)
        return -1;
    int rc = 0;
    if (link(tmp, path) != 0 && errno != EEXIST) {
        snprintf(why, cap, "cannot be put in place (%s)", strerror(errno));
        rc = -1;
    }
    unlink(tmp);
    close(fd);
    return rc;
}

/* Replaces the file open as fd at path by a new one, unless another
 * process did already (see the top of the file). 0, or -1 with why set. */
static int replace_file(int fd, const char *path, char *why, size_t cap)
{
    struct stat mine, now;
    if (flock(fd, LOCK_EX) != 0 || fstat(fd, &mine) != 0) {
        snprintf(why, cap, "cannot be locked (%s)", strerror(errno));
        return -1;
    }
    if (stat(path, &now) != 0 || now.st_dev != mine.st_dev || now.st_ino != mine.st_ino)
        return 0; /* replaced meanwhile (the lock goes with fd's close) */
    char tmp[4200];
    int nfd = build_file(path, tmp, sizeof tmp, why, cap);
    if (nfd < 0)
        return -1;
    int rc = 0;
    if (rename(tmp, path) != 0) {
        snprintf(why, cap, "cannot be replaced (%s)", strerror(errno));
        unlink(tmp);
        rc = -1;
    }
    close(nfd);
    return rc;
}

/* Whether every byte of the open file has its blocks (a file from before
 * the files were allocated whole, or copied sparse, may not). */
static int fully_allocated(const struct stat *sb)
{
    return (uint64_t)sb->st_blocks * 512 >= (uint64_t)sb->st_size;
}

/*
 * Maps the file at st->path, creating it or rebuilding a damaged one.
 * The mapping, with its file's device and inode, or NULL with why set.
 */
static stats_file *map_file(stats *st, dev_t *dev, ino_t *ino, char *why, size_t cap)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        int fd = open(st->path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT) {
                snprintf(why, cap, "cannot be opened (%s)", strerror(errno));
                return NULL;
            }
            if (create_file(st->path, why, cap) != 0)
                return NULL;
            continue;
        }
        struct stat sb;
        const char *problem = NULL;
        stats_file *f = NULL;
        if (fstat(fd, &sb) != 0) {
            snprintf(why, cap, "cannot be read (%s)", strerror(errno));
            goto fail;
        }
        if (sb.st_size != (off_t)sizeof(stats_file)) {
            problem = "it is not a counters file of this layout (its size)";
        } else {
            /* Linux's own fallocate: never the library's emulation, which
             * writes into a file that others count into. */
            if (!fully_allocated(&sb) && fallocate(fd, 0, 0, (off_t)sizeof(stats_file)) != 0) {
                snprintf(why, cap, "cannot be allocated (%s)", strerror(errno));
                goto fail;
            }
            f = mmap(NULL, sizeof(stats_file), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (f == MAP_FAILED) {
                snprintf(why, cap, "cannot be mapped (%s)", strerror(errno));
                goto fail;
            }
            problem = file_problem(f, 1);
        }
        if (!problem) {
            close(fd);
            *dev = sb.st_dev;
            *ino = sb.st_ino;
            return f;
        }
        if (f)
            munmap(f, sizeof(stats_file));
        rl_error("stats: %s: %s: starting new counters", st->path, problem);
        if (replace_file(fd, st->path, why, cap) != 0)
            goto fail;
        close(fd);
        continue;
    fail:
        close(fd);
        return NULL;
    }
    snprintf(why, cap, "keeps changing under this process");
    return NULL;
}

/* ---- the handle ------------------------------------------------------------------------ */

static stats *handle_new(const char *home)
{
    stats *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    pthread_mutex_init(&st->mu, NULL);
    if ((size_t)snprintf(st->path, sizeof st->path, "%s/%s", home, STATS_FILE) >= sizeof st->path) {
        pthread_mutex_destroy(&st->mu);
        free(st);
        return NULL;
    }
    return st;
}

/* Stops counting into the current mapping (st->mu held): it stays mapped
 * until stats_close. 0, or -1 when too many are kept already (then the
 * caller keeps it). */
static int retire(stats *st)
{
    stats_file *old = atomic_load(&st->f);
    if (!old)
        return 0;
    if (st->nretired == STATS_RETIRED)
        return -1;
    st->retired[st->nretired++] = old;
    atomic_store(&st->f, NULL);
    return 0;
}

/* (Re)maps the file (st->mu held). 0, or -1 with st->why set (and logged
 * when it changed): nothing is counted then. */
static int attach(stats *st)
{
    char why[sizeof st->why];
    dev_t dev;
    ino_t ino;
    stats_file *f = map_file(st, &dev, &ino, why, sizeof why);
    if (f && atomic_load(&st->f) && dev == st->dev && ino == st->ino) {
        munmap(f, sizeof(stats_file)); /* the file it maps already, and sound */
        return 0;
    }
    if (f && retire(st) != 0) {
        rl_error("stats: %s was rebuilt too often; this process keeps counting into its mapping",
                 st->path);
        munmap(f, sizeof(stats_file));
        return 0;
    }
    if (!f) {
        if (strcmp(why, st->why) != 0)
            rl_error("stats: %s %s: nothing is counted until it can be", st->path, why);
        snprintf(st->why, sizeof st->why, "%s", why);
        if (atomic_load(&st->f) && retire(st) != 0)
            return 0; /* keep counting where it did */
        return -1;
    }
    if (st->why[0])
        rl_info("stats: %s is usable again: counting", st->path);
    st->why[0] = '\0';
    st->dev = dev;
    st->ino = ino;
    atomic_store_explicit(&st->f, f, memory_order_release);
    return 0;
}

rl_err stats_open(const char *home, stats **out)
{
    *out = NULL;
    stats *st = handle_new(home);
    if (!st)
        return RL_NOMEM;
    pthread_mutex_lock(&st->mu);
    int rc = attach(st);
    pthread_mutex_unlock(&st->mu);
    if (rc != 0) {
        stats_close(st);
        return RL_IO;
    }
    *out = st;
    return RL_OK;
}

stats *stats_new(const char *home)
{
    stats *st = handle_new(home);
    if (!st)
        return NULL;
    pthread_mutex_lock(&st->mu);
    attach(st);
    pthread_mutex_unlock(&st->mu);
    return st;
}

void stats_close(stats *st)
{
    if (!st)
        return;
    stats_file *f = atomic_load(&st->f);
    if (f)
        munmap(f, sizeof(stats_file));
    for (size_t i = 0; i < st->nretired; i++)
        munmap(st->retired[i], sizeof(stats_file));
    pthread_mutex_destroy(&st->mu);
    free(st);
}

int stats_problem(stats *st, char *why, size_t cap)
{
    pthread_mutex_lock(&st->mu);
    int down = atomic_load(&st->f) == NULL;
    if (down)
        snprintf(why, cap, "%s %s", st->path, st->why[0] ? st->why : "is not open");
    pthread_mutex_unlock(&st->mu);
    return down;
}

void stats_maintain(stats *st, uint64_t now)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    stats_file *f = atomic_load(&st->f);
    if (!f) {
        if (now >= st->retry_at && attach(st) != 0)
            st->retry_at = now + STATS_RETRY_SECONDS;
        goto out;
    }
    int deep = now >= st->deep_at;
    if (deep)
        st->deep_at = now + STATS_DEEP_SECONDS;
    struct stat sb;
    int moved = stat(st->path, &sb) != 0 || sb.st_dev != st->dev || sb.st_ino != st->ino;
    if (moved)
        rl_info("stats: %s was replaced or removed: following it", st->path);
    /* A damaged mapping is the file at path (or it moved): map_file finds
     * the damage again there, logs it and rebuilds. */
    if ((moved || file_problem(f, deep)) && attach(st) != 0)
        st->retry_at = now + STATS_RETRY_SECONDS;
out:
    pthread_mutex_unlock(&st->mu);
}
