/*
 * status.h — what the pool publishes for `relay-admin status`: its pid,
 * version, start time, workers and the requests each is serving.
 *
 * The supervisor keeps a table in an anonymous shared mapping made before
 * the first fork: one row per worker process, whose count of requests in
 * flight the worker's threads update with atomic instructions (front.c),
 * and which the supervisor reads once a second to rewrite the status file
 * ([fcgi] status_file): written to a temporary file and renamed over, so a
 * reader sees a whole file or the previous one. The file is removed when
 * the pool stops. A process started by mod_fcgid or spawn-fcgi is no pool
 * and writes none.
 *
 * The file is text, one "NAME VALUE" line each (admin/cmd_status.c reads
 * it; lines it does not know are skipped, so fields can be added):
 *   pid PID               the supervisor
 *   version TEXT          rl_version() of the running binary
 *   started UNIX          when the pool started (seconds)
 *   updated UNIX          when this file was written
 *   listen SPEC           [fcgi] listen
 *   workers N             [fcgi] workers
 *   threads N             [fcgi] threads, per worker
 *   max_threads N         [fcgi] max_threads, per worker
 *   worker PID BUSY       a worker of the running configuration and its
 *                         requests in flight (one line each)
 *   draining PID BUSY     a worker of an older configuration, finishing
 *
 * Threads: the table is written by the supervisor (rows) and the workers'
 * threads (their row's counter); everything else is the supervisor's.
 */
#ifndef RELAY_FCGI_STATUS_H
#define RELAY_FCGI_STATUS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct pool_table pool_table;

/* Maps a table of rows shared with the processes forked after; NULL (said
 * in the log) when the mapping fails. */
pool_table *pool_table_new(int rows);
void pool_table_free(pool_table *t);

/* A free row for a worker about to be forked, its counter zeroed; -1 when
 * none is free. The child counts in pool_table_busy(t, row); the parent
 * names the row with pool_table_bind (or gives it back with
 * pool_table_unbind if the fork failed). */
int pool_table_reserve(pool_table *t);
atomic_int *pool_table_busy(pool_table *t, int row);
void pool_table_bind(pool_table *t, int row, pid_t pid);
void pool_table_unbind(pool_table *t, int row);
/* The row of pid is free again (the worker was reaped). */
void pool_table_forget(pool_table *t, pid_t pid);
/* pid's row is a draining worker of an older configuration. */
void pool_table_draining(pool_table *t, pid_t pid);

/* What the status file says besides the table. */
typedef struct pool_info {
    pid_t pid;
    const char *version;
    uint64_t started;
    const char *listen;
    long workers, threads, max_threads;
} pool_info;

/* Writes path atomically (path.tmp, then rename) at unix time now.
 * Returns 0, or -1 with errno set. */
int pool_status_write(const char *path, const pool_info *info, pool_table *t, uint64_t now);

#endif
