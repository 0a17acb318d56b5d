/*
 * store_int.h — store-internal: what the store's modules share. Includes
 * <db.h>, so it must never be included outside store/ (see DESIGN.md).
 *
 *   env.c    the environment: open, close, remove, the handle sets and
 *            their replacement after a recovery (store_reopen);
 *            env_heal.c a store that does not open: recovered alone, or
 *            set aside (env_int.h between the two)
 *   op.c     the transaction helper (store_op_run) and store_maintain
 *   check.c  the secret check (check.db)
 *   cache.c  entries, expiry, eviction, totals, purges of expired entries
 *   fuzzyidx.c the fuzzy index: band hashes -> entries, entry -> its doc
 *   recency.c  recency of use: the index eviction follows, the flush of
 *            the table of uses (usemap.c) into it, and its building
 *   scan.c   batched walks (store_walk_batch) and the admin scans
 *   flight.c the in-flight table; wake.c its wake-up file
 *   token.c  Relay client tokens (token.h)
 *   ledger.c budgets and rate limits: reservations, settlement, reading a
 *            row (ledger.h); ledger_rec.c its windows and record formats,
 *            ledger_maint.c its scans, maintenance and verify
 *   maint.c  exclusive use, backup, verify, compact, recover, rekey, restore
 *   cluster.c  a replicated store (cluster.h): repmgr's setup, events,
 *            status and the master's heartbeat; cluster_ops.c the writes
 *            forwarded to the master on message channels
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
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "store/store.h"
#include "store/usemap.h"
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
struct cluster_conn;
struct cluster_state;

typedef struct handles {
    DB_ENV *env;
    DB *cache, *expiry, *counters; /* cache.c */
    DB *recency;                   /* recency.c */
    DB *fuzzy;                     /* fuzzyidx.c */
    DB *flights, *chunks;          /* flight.c */
    DB *tokens;                    /* token.c */
    DB *ledger, *holds;            /* ledger.c: counters, reservations */
    DB *group;                     /* cluster.c: the master's heartbeat (replicated store only) */
    struct cluster_conn *conn;     /* cluster_ops.c: this set's channel to the master */
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

/* Runs o (see op.c for the retry and recovery rules). DB_NOTFOUND from a
 * body becomes RL_NOTFOUND, not logged; other failures are logged once,
 * with o->what, and become RL_STORE (RL_NOMEM for ENOMEM). */
rl_err store_op_run(store *s, op *o);

/* op.c: from now on, each write transaction this thread commits leaves its
 * commit token in *token (NULL: stop), for a replica to wait until it has
 * applied that commit (DB_ENV->txn_applied; cluster_ops.c). Whether one
 * did since the capture began: store_commits_captured. */
void store_capture_commits(DB_TXN_TOKEN *token);
int store_commits_captured(void);

/* op.c: a randomised, growing pause (up to ~2.5 ms) before retry number
 * attempt of a lock conflict. */
void store_backoff(unsigned attempt);

/* A lock conflict: retried, never reported (DB_TXN_NOWAIT makes every
 * conflict one of these). */
static inline int store_retryable(int ret)
{
    return ret == DB_LOCK_DEADLOCK || ret == DB_LOCK_NOTGRANTED;
}

static inline int64_t store_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * One open store (env.c). The handle set and the reopen state are env.c's
 * and op.c's, under mu; the rest is set by store_open and read-only after.
 * cache.c reads the caps; other modules use the accessors below.
 */
struct store {
    pthread_mutex_t mu;     /* guards cur, generation, reopening, last_reopen, stranded */
    pthread_cond_t changed; /* a reopen finished, or a retired set lost a user */
    handles *cur;           /* NULL after a failed reopen: operations fail with RL_STORE */
    unsigned generation;    /* bumped by each reopen */
    int reopening;
    int64_t last_reopen;       /* monotonic ns of the last reopen attempt */
    unsigned stranded;         /* retired sets that threads never left */
    unsigned stranded_threads; /* threads lost in them, for store_stranded_threads */
    store_wake *wake;          /* flight.c's wake-ups; a file in home */
    store_uses *uses;          /* recency.c's table of recent uses; a file in home */
    _Atomic int recency_built; /* recency.c: the index is known complete */

    char *home; /* realpath of the environment directory */
    char *secret;
    size_t secret_len;
    long shm_key;

    uint64_t max_bytes, max_entries, max_entry_bytes;
    _Atomic int space_low; /* cache.c: its file system is nearly full (cache_check_space) */
    uint32_t cache_mb;
    uint32_t threads;      /* Berkeley DB's thread table */
    uint32_t txn_threads;  /* the lock and transaction tables' sizing */
    uint64_t hold_max_age; /* ledger_maint.c: a live owner's reservation is released after this */
    int exclusive;         /* opened under store_lock_exclusive: no DB_REGISTER */
    struct cluster_state *cluster; /* cluster.c; NULL: not replicated */
};

/*
 * env.c: replaces the handle set after DB_RUNRECOVERY, unless another
 * thread already did since generation seen. 0 when a usable set is in
 * place, -1 when the reopen failed (logged) or was skipped because one
 * failed less than a second ago.
 */
int store_reopen(store *s, unsigned seen);
/* store_reopen without panicking the environment first (panic 0): for a
 * replicated store's DB_REP_HANDLE_DEAD, after the master's rollback or
 * a whole copy replaced the databases under this process's handles; the
 * other processes of the host find out on their own. */
int store_reopen_as(store *s, unsigned seen, int panic);

/* env.c: the size of a log file, zero-filled when created (see
 * handles_open). */
#define STORE_LOG_FILE_BYTES (1u << 20)

/* Room the store keeps free on its file system for what it must be able
 * to write whatever happens (new log files, a checkpoint's pages, a
 * recovery): a hot copy beside it must leave it (maint.c), and a store is
 * set aside as damaged only when it is there (env.c). */
#define STORE_HEADROOM_BYTES (8ull << 20)

/* env.c: logs one Berkeley DB failure with its own text and what was under
 * way; the error callback that completes it with Berkeley DB's own
 * diagnostics (installed on every environment and database handle). */
void store_bdb_fail(const char *home, const char *what, int ret);
void store_bdb_errcall(const DB_ENV *env, const char *pfx, const char *msg);

/* The wake-up channel of the store's home (never NULL on an open store). */
store_wake *store_wake_of(store *s);

/* The store's home (its realpath) and secret (NUL-terminated; never log
 * it), for the store's own modules. */
const char *store_home_of(const store *s);
const char *store_secret_of(const store *s);

/* check.c: whether home's check file opens with secret: RL_OK, or
 * RL_STORE (logged) for another secret or a store with data but no check
 * file. Creates the check file in a home without data. */
rl_err store_check_secret(const char *home, const char *secret);

/* check.c: whether the check file at path opens with secret: 0, or the
 * Berkeley DB code (EINVAL for another secret). Not logged. */
int store_check_file(const char *path, const char *secret);

/* maint.c: the home a store_lock_exclusive lock is for (realpath). */
const char *store_lock_home(const store_lock *lock);

/* maint.c: store_lock_exclusive without a log line when the store is in
 * use (RL_BUSY): for store_open, whose callers start together. */
rl_err store_lock_try(const char *home, store_lock **out);

/* maint.c: removes the files of a flat directory, then the directory; a
 * missing directory is fine. 0 or -1 (logged). */
int store_remove_dir(const char *dir);

/* maint.c: moves the store's data files (databases, check.db, logs) out of
 * the locked home into a new directory beside it, home.damaged-DATE-TIME
 * (UTC; -N when taken), whose path where gets, and drops the regions: home
 * is left an empty store's, with its __db.register (and the lock) kept, so
 * a process that waits to open it finds the new store. Nothing outside
 * home changes (the key file stays as it is). RL_IO (logged) if not every
 * file could be moved. */
rl_err store_set_aside(const store_lock *lock, char *where, size_t cap);

/* env.c: removes home's region files (not __db.register) and the SysV
 * segments of its keys that nobody is attached to. Only under
 * store_lock_exclusive. */
void store_drop_regions(const char *home);

/* ---- cluster.c and cluster_ops.c, for env.c, op.c and the writers ------ */

struct ledger_charge;
struct ledger_refusal;
struct store_token;
struct store_cluster;

/* A copy of store_options.cluster with repmgr's live state; NULL opt: *out
 * NULL. RL_NOMEM, RL_CONFIG (an address that does not parse). */
rl_err cluster_state_new(const struct store_cluster *opt, struct cluster_state **out);
void cluster_state_free(struct cluster_state *c);
/* Before env->open: sites, priority, ack policy, timeouts, the event and
 * dispatch callbacks. A Berkeley DB code. */
int cluster_env_configure(store *s, DB_ENV *env);
/* After env->open: starts repmgr (the listener) or joins it (a
 * subordinate; without a listener yet, cluster_ops retries). A Berkeley DB
 * code. */
int cluster_env_start(store *s, handles *h);
/* Whether db_open_one should wait and try again after ret: a replica opens
 * a database only once the master's creation of it arrived (ENOENT until
 * then); waits up to CLUSTER_OPEN_WAIT_MS in all. */
int cluster_db_open_wait(store *s, int ret, unsigned *waited_ms);
/* Whether the host's listener (the process whose repmgr_start made it the
 * replication process) is alive, by the mark it leaves in the home; and
 * its removal when the listener closes the store. */
int cluster_listener_alive(const store *s);
/* Whether a subordinate may call repmgr_start on env now: the listener
 * lives and replication runs on this environment (not one just recovered
 * by another process, which the listener has not restarted on yet). */
int cluster_may_join(store *s, DB_ENV *env);
void cluster_listener_unmark(const store *s);
/* cluster_link.c: TCP_NODELAY on every TCP socket of this process (why
 * there); the listener's view of its connections written for, and read
 * into the status of, the host's other processes. */
void cluster_nodelay_sweep(void);
struct store_cluster_status;
void cluster_view_publish(const store *s, const struct store_cluster_status *st);
void cluster_view_apply(const store *s, uint64_t now, struct store_cluster_status *st);
/* 1 unless the listener's recent view (at most VIEW_MAX_AGE old) shows
 * another site connected: a master there can get no write acknowledged.
 * No view, or a stale one (no listener, or one stalled), counts as
 * isolated: a worker of the master's host grants nothing it cannot tell
 * would be kept (the sender retries it until partition_grace). */
int cluster_view_isolated(const store *s, uint64_t now);
/* The listener's view thread (cluster_link.c): publishes the view every
 * 250 ms and at once when poked (from repmgr's event threads: safe there).
 * start: NULL when the thread cannot start (logged). stop joins it (a
 * poke afterwards is harmless); free stops it too. All take NULL. */
typedef struct cluster_viewer cluster_viewer;
cluster_viewer *cluster_viewer_start(store *s);
void cluster_viewer_poke(cluster_viewer *v);
void cluster_viewer_stop(cluster_viewer *v);
void cluster_viewer_free(cluster_viewer *v);
/* Around a store's life (env.c): the listener's view thread starts once
 * the store is open (RL_STORE if it cannot) and stops before the
 * environment closes. No-ops on other stores. */
rl_err cluster_opened(store *s);
void cluster_closing(store *s);
/* Frees the handle set's channel (before its environment closes). */
void cluster_conn_close(handles *h);
/* store_maintain's part on a replicated store: every process sets
 * TCP_NODELAY on its new connections; the listener, while master and
 * not alone by its view, writes the heartbeat and releases abandoned
 * reservations (its view is its viewer thread's). */
rl_err cluster_maintain(store *s, uint64_t now);
/* 1 when a write on s must be forwarded to the master (a replicated store,
 * and this thread is not the master's dispatch running it). */
int cluster_forwards(const store *s);
/* The message-channel dispatch function (cluster_ops.c). */
void cluster_dispatch(DB_ENV *env, DB_CHANNEL *ch, DBT *req, u_int32_t nreq, u_int32_t flags);
/* Counts a commit in this thread whose acknowledgements failed (the event
 * arrives in the committing thread); cluster_ops reads and clears it. */
void cluster_note_perm_failed(void);
int cluster_take_perm_failed(void);

/* cluster.c: counts a forwarded write (failed: for want of a master). */
void cluster_count_forward(store *s, int failed);
/* cluster.c: the options the store was opened with (a replicated store). */
const struct store_cluster *cluster_options(const store *s);

/* The forwarded writes (cluster_ops.c): the same contracts as the
 * functions in ledger.h and token.h they stand for, plus RL_NO_MASTER. */
rl_err cluster_ledger_reserve(store *s, const struct ledger_charge *charges, unsigned n,
                              uint64_t now, uint8_t *id, struct ledger_refusal *why);
rl_err cluster_ledger_settle(store *s, const uint8_t *id, const uint64_t *actual, uint64_t now);
/* Settles a reservation as spent (what it reserved): its owner died. */
rl_err cluster_ledger_release_held(store *s, const uint8_t *id, uint64_t now);
rl_err cluster_token_put(store *s, const struct store_token *t, int mode);
rl_err cluster_token_del(store *s, const uint8_t *hash);
rl_err cluster_token_revoke(store *s, const uint8_t *hash, uint64_t now, struct store_token *out);
rl_err cluster_token_rotate(store *s, const uint8_t *old_hash, const uint8_t *new_hash,
                            uint64_t now, uint64_t old_until, struct store_token *out);

/* ---- cache.c, for the admin scans (scan.c) ---------------------------- */

/* A cache record: a header of CACHE_HDR_LEN bytes (magic, last use,
 * created, expires, hits, size), then the value. */
#define CACHE_HDR_LEN 40
/* Keys of the time indexes (expiry.db, recency.db): a time (8 bytes,
 * big-endian) then the digest, so they sort by time. */
#define CACHE_TIME_KEY_LEN (8 + STORE_KEY_LEN)
#define CACHE_PURGE_BATCH 256 /* entries removed per transaction when purging */

/* Decodes a record's header into m: 0, or -1 if the n bytes at h are not a
 * header this code wrote. */
int cache_hdr_decode(const uint8_t *h, size_t n, store_meta *m);
/* Encodes m as a header (m->used is kept to 32 bits, see recency.c). */
void cache_hdr_encode(uint8_t *h, const store_meta *m);

/* The store's totals (entries, bytes, evictions, expired_removed), as read
 * at the start of a transaction and changed by it. */
typedef struct cache_totals {
    uint64_t v[4];
    uint64_t orig[4]; /* as read, so only changed ones are written */
} cache_totals;

/* Every transaction that changes the cache reads the totals first, with
 * DB_RMW (see cache.c), changes them with cache_entry_remove and writes
 * them back last. Berkeley DB codes, not logged. */
int cache_totals_read(handles *h, DB_TXN *txn, cache_totals *t, u_int32_t flags);
int cache_totals_write(handles *h, DB_TXN *txn, const cache_totals *t);

/* Deletes key's cache record and expiry record and takes them off t;
 * *found says whether there was a record. */
int cache_entry_remove(handles *h, DB_TXN *txn, const uint8_t *key, cache_totals *t, int *found);

/* ---- fuzzyidx.c, for cache.c ------------------------------------------- */

/* Deletes key's fuzzy doc and band rows (none is not an error), inside the
 * transaction removing its entry. Berkeley DB codes. */
int fuzzy_entry_remove(handles *h, DB_TXN *txn, const uint8_t *key);
/* Deletes up to a batch of fuzzy.db's records, from its start, *n of them:
 * purging every entry empties the index with the table. */
int fuzzy_clear_batch(handles *h, DB_TXN *txn, unsigned *n);

/* ---- recency.c, for cache.c and op.c ------------------------------------ */

/* Adds recency record (used, key) (used != 0), or deletes it (a missing one
 * is not an error). Berkeley DB codes. */
int recency_index_put(handles *h, DB_TXN *txn, uint64_t used, const uint8_t *key);
int recency_index_del(handles *h, DB_TXN *txn, uint64_t used, const uint8_t *key);

/* The least recently used entry, for eviction: 0 with its key in key, or
 * DB_NOTFOUND when the index is empty (a store whose entries predate it:
 * the caller falls back to expiry order). Uses still pending in the table
 * of uses count: an entry used since its stamp is moved to its new place
 * and the next one looked at, so eviction is exact before a flush. Index
 * records that disagree with their entry are dropped on the way. */
int recency_victim(handles *h, DB_TXN *txn, store *s, uint8_t key[STORE_KEY_LEN]);

/* op.c's store_maintain: indexes, in bounded batches (about 20 ms a
 * run), entries stored before the index existed (a store from before issue
 * 14) and entries whose record is missing (a recency.db lost), until a
 * marker in recency.db says it is done. Logs its own failures. */
void recency_build(store *s);

/* Looks at the free space of the store's file system (statvfs) and sets
 * store.space_low, logging when it changes; store_maintain calls it in
 * every process, about once a second. */
void cache_check_space(store *s);

/* flight.c: removes finished and abandoned flights; run by store_maintain. */
void flight_maintain(store *s, uint64_t now_ms);

/* ledger_maint.c: a process's state letter and start time (clock ticks
 * after boot) from /proc/PID/stat: 1, or 0 when it cannot be read. */
int store_proc_stat(long pid, char *state, uint64_t *start);

/* ledger_maint.c: releases the reservations of dead processes and those older
 * than store.hold_max_age (counted as spent, see ledger.h), and, when
 * sweep_rows (once a minute for the whole store), removes ledger rows of
 * windows that ended longer ago than their kind is kept. Logs its own
 * failures. */
void ledger_maintain(store *s, uint64_t now, int sweep_rows);
/* ledger_maint.c, for a replica of a group (store/cluster.h): releases,
 * by forwarding to the master, the reservations of this host's dead
 * processes, which only this host can tell are gone. */
void ledger_maintain_owners(store *s, uint64_t now);

/* The problem callback of store_verify and store_verify_dir. */
typedef void (*store_problem_fn)(void *ctx, const char *file, const char *what);

/* token.c, ledger_maint.c: read every record of their tables on a live store and
 * report each that does not decode (file: the database's name) through
 * problem, counting them in *problems. RL_OK when the check ran. */
rl_err token_verify(store *s, store_problem_fn problem, void *ctx, unsigned *problems);
rl_err ledger_verify(store *s, store_problem_fn problem, void *ctx, unsigned *problems);

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

/* ---- scan.c -------------------------------------------------------------- */

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
