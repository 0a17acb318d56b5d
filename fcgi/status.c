/*
 * status.c — the pool's status table and file (see status.h).
 */
#include "fcgi/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"

/* A row: pid 0 free, -1 reserved for a fork under way. */
typedef struct pool_row {
    pid_t pid;
    int draining;
    atomic_int busy;
} pool_row;

struct pool_table {
    int n;
    pool_row *rows; /* shared mapping */
};

pool_table *pool_table_new(int rows)
{
    pool_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    size_t size = (size_t)rows * sizeof *t->rows;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        rl_warn("cannot map the pool's status table: %s", strerror(errno));
        free(t);
        return NULL;
    }
    t->n = rows;
    t->rows = p; /* zeroed by the kernel: every row free */
    return t;
}

void pool_table_free(pool_table *t)
{
    if (!t)
        return;
    munmap(t->rows, (size_t)t->n * sizeof *t->rows);
    free(t);
}

int pool_table_reserve(pool_table *t)
{
    for (int i = 0; t && i < t->n; i++)
        if (t->rows[i].pid == 0) {
            t->rows[i].pid = -1;
            t->rows[i].draining = 0;
            atomic_store(&t->rows[i].busy, 0);
            return i;
        }
    return -1;
}

atomic_int *pool_table_busy(pool_table *t, int row)
{
    return t && row >= 0 ? &t->rows[row].busy : NULL;
}

void pool_table_bind(pool_table *t, int row, pid_t pid)
{
    if (t && row >= 0)
        t->rows[row].pid = pid;
}

void pool_table_unbind(pool_table *t, int row)
{
    if (t && row >= 0)
        t->rows[row].pid = 0;
}

void pool_table_forget(pool_table *t, pid_t pid)
{
    for (int i = 0; t && i < t->n; i++)
        if (t->rows[i].pid == pid)
            t->rows[i].pid = 0;
}

void pool_table_draining(pool_table *t, pid_t pid)
{
    for (int i = 0; t && i < t->n; i++)
        if (t->rows[i].pid == pid)
            t->rows[i].draining = 1;
}

/* The file's text; RL_OK or the buffer's error. */
static rl_err status_text(rl_buf *b, const pool_info *info, pool_table *t, uint64_t now)
{
    rl_err e = rl_buf_printf(b,
                             "pid %ld\nversion %s\nstarted %llu\nupdated %llu\nlisten %s\n"
                             "workers %ld\nthreads %ld\nmax_threads %ld\n",
                             (long)info->pid, info->version, (unsigned long long)info->started,
                             (unsigned long long)now, info->listen, info->workers, info->threads,
                             info->max_threads);
    for (int i = 0; e == RL_OK && t && i < t->n; i++) {
        const pool_row *r = &t->rows[i];
        if (r->pid > 0)
            e = rl_buf_printf(b, "%s %ld %d\n", r->draining ? "draining" : "worker", (long)r->pid,
                              atomic_load(&r->busy));
    }
    return e;
}

int pool_status_write(const char *path, const pool_info *info, pool_table *t, uint64_t now)
{
    rl_buf text, tmp;
    rl_buf_init(&text, 0);
    rl_buf_init(&tmp, 0);
    int rc = -1, fd = -1;
    if (status_text(&text, info, t, now) != RL_OK || rl_buf_printf(&tmp, "%s.tmp", path) != RL_OK) {
        errno = ENOMEM;
        goto out;
    }
    fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto out;
    if (write(fd, text.data, text.len) != (ssize_t)text.len) {
        unlink(tmp.data);
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        unlink(tmp.data);
        goto out;
    }
    fd = -1;
    if (rename(tmp.data, path) != 0) {
        int saved = errno;
        unlink(tmp.data);
        errno = saved;
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    rl_buf_release(&text);
    rl_buf_release(&tmp);
    return rc;
}
