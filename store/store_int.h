/*
 * store_int.h — store-internal: what the store's own modules (flight.c)
 * share with store.c: the open handles, the transaction helper and the
 * wake-up channel. Includes <db.h>, so it must never be included outside
 * store/ (see DESIGN.md).
 *
 * Writing an operation: put its work in a body, fill an op and call
 * store_op_run, which runs the body in a transaction, retries it on lock
 * conflicts, reopens the environment after another process's crash, and
 * logs and translates Berkeley DB errors. A body does not log Berkeley DB
 * errors itself; it returns them.
 */
#ifndef RELAY_STORE_STORE_INT_H
#define RELAY_STORE_STORE_INT_H

#include <db.h>
#include <stdint.h>
#include <string.h>

#include "store/store.h"
#include "store/wake.h"

/*
 * One generation of open handles. Operations count themselves in users
 * while they work on it. After DB_RUNRECOVERY a reopen retires the set and
 * opens a new one; a retired set is closed once its users are gone, or, if
 * some never leave (stranded on a mutex a killed process held), closed only
 * as far as Berkeley DB allows for a panicked environment and otherwise
 * left in place for them. Bodies get the set they run on: never keep a
 * handle beyond the body.
 */
typedef struct handles {
    DB_ENV *env;
    DB *cache, *expiry, *counters; /* store.c */
    DB *flights, *chunks;          /* flight.c */
    const char *home;              /* the store's, for log lines */
    int users;                     /* under store.mu */
} handles;

typedef struct op op;

/* A body does one attempt of an operation inside txn (NULL for no_txn
 * operations) on the handle set h. It returns 0 or a Berkeley DB code; to
 * fail with an rl_err of its own it sets o->err and returns 0, which aborts
 * the transaction. Bodies may run several times (lock conflicts, reopen),
 * so they must reset their outputs at the start. Transactions are
 * DB_TXN_NOWAIT: a lock conflict returns at once and is retried by
 * store_op_run. */
typedef int (*op_body)(handles *h, DB_TXN *txn, op *o);

struct op {
    const char *what; /* for the log line, e.g. "storing a cache entry" */
    op_body body;
    int no_txn;
    int read_committed; /* read-only: each read lock is let go once the read
                         * moved on (degree 2), so readers hold up writers
                         * for one record at a time */
    int idempotent;     /* applying it twice does no harm: retried even after a
                         * commit that failed in a recovery (see store_op_run) */
    rl_err err;
    void *arg;
    store *s;          /* set by store_op_run */
    int commit_failed; /* set by the helper: commit itself returned an error */
};

/* Runs o (see store.c for the retry and recovery rules). DB_NOTFOUND from a
 * body becomes RL_NOTFOUND, not logged; other failures are logged once,
 * with o->what, and become RL_STORE (RL_NOMEM for ENOMEM). */
rl_err store_op_run(store *s, op *o);

/* The wake-up channel of the store's home (never NULL on an open store). */
store_wake *store_wake_of(store *s);

/* The store's home (its realpath) and secret (NUL-terminated; never log
 * it), for the store's own modules. */
const char *store_home_of(const store *s);
const char *store_secret_of(const store *s);

/* Whether the check file at path (see check_secret in store.c) opens with
 * secret: 0, or the Berkeley DB code (EINVAL for another secret). Not
 * logged. */
int store_check_file(const char *path, const char *secret);

/* maint.c: the home a store_lock_exclusive lock is for (realpath). */
const char *store_lock_home(const store_lock *lock);

/* Removes home's region files (not __db.register) and the SysV segments of
 * its keys that nobody is attached to. Only under store_lock_exclusive. */
void store_drop_regions(const char *home);

/* flight.c: removes finished and abandoned flights; run by store_maintain. */
void flight_maintain(store *s, uint64_t now_ms);

/* Big-endian integers in keys and records: they sort numerically under
 * Berkeley DB's byte-wise comparison and read the same in db_dump. */
static inline void store_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t store_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void store_put64(uint8_t *p, uint64_t v)
{
    store_put32(p, (uint32_t)(v >> 32));
    store_put32(p + 4, (uint32_t)v);
}

static inline uint64_t store_get64(const uint8_t *p)
{
    return (uint64_t)store_get32(p) << 32 | store_get32(p + 4);
}

/* visit's verdict on one record of a walk: 0, or a Berkeley DB error;
 * *stop set ends the batch after this record. */
typedef int (*walk_visit)(void *ctx, const DBT *k, const DBT *d, int *stop);

/*
 * One batch of a walk over db in key order, through a cursor opened in txn
 * with cursor_flags: from the first record, or (from != NULL) from the
 * first key >= from, or > from when after_from. Each record is read into k
 * (a DB_DBT_USERMEM buffer of the caller's, big enough for from too) and d
 * and given to visit. *at_end is set when no record is left. Returns 0 or
 * the first error; the cursor is closed either way. The cache scans and
 * purges, the in-flight sweeps and rekey's copy all walk this way, each
 * batch in its own short transaction.
 */
int store_walk_batch(DB *db, DB_TXN *txn, u_int32_t cursor_flags, const void *from, size_t from_len,
                     int after_from, DBT *k, DBT *d, walk_visit visit, void *ctx, int *at_end);

/* A DBT describing caller memory as input. */
static inline void dbt_in(DBT *d, const void *p, size_t n)
{
    memset(d, 0, sizeof *d);
    d->data = (void *)p;
    d->size = (u_int32_t)n;
}

/* A DBT receiving at most cap bytes into caller memory. */
static inline void dbt_out(DBT *d, void *p, size_t cap)
{
    memset(d, 0, sizeof *d);
    d->data = p;
    d->ulen = (u_int32_t)cap;
    d->flags = DB_DBT_USERMEM;
}

/* A DBT receiving only bytes [off, off+len) of a record. */
static inline void dbt_part(DBT *d, void *p, size_t off, size_t len)
{
    dbt_out(d, p, len);
    d->flags |= DB_DBT_PARTIAL;
    d->doff = (u_int32_t)off;
    d->dlen = (u_int32_t)len;
}

#endif
