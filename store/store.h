/*
 * store.h — Relay's shared, encrypted, transactional store.
 *
 * One Berkeley DB environment (a directory) is opened by every relay.fcgi
 * process and by relay-admin at the same time. It is encrypted with a secret
 * read from a key file (created mode 0600 by store_keyfile_ensure); its
 * regions live in SysV shared memory so no file on disk holds the secret or
 * plaintext pages. Opening runs crash recovery when a previous user died, so
 * a worker killed with SIGKILL never leaves the store unusable; a store no
 * recovery can open is set aside (see store_open).
 *
 * Cache values are opaque bytes to the store; it keeps beside each value
 * the metadata it needs for expiry and eviction (store_meta). Keys are the
 * 32-byte SHA-256 digests built by the engine. The same environment holds
 * the in-flight table (flight.h), Relay client tokens (token.h) and the
 * budgets' ledger (ledger.h), each with its own header.
 *
 * Thread safety: a store handle may be shared by all threads of a process.
 * Every function is safe to call concurrently, also with other processes.
 * Deadlocks are retried inside; DB_RUNRECOVERY makes the handle reopen the
 * environment transparently (other processes ran recovery).
 *
 * Processes: open one handle per environment per process (Berkeley DB's
 * DB_REGISTER tracks processes, not handles; a second store_open of the same
 * home in one process fails with RL_STORE). A handle does not survive fork:
 * a child opens its own and never uses, nor closes, one it inherited. Only
 * fork while no other thread is inside a store call.
 *
 * Never open or close files inside the home directory while a handle is
 * open in the process (e.g. to back it up or grep it): closing any
 * descriptor of __db.register drops the process's registration lock, after
 * which the next process to open the store runs recovery under it.
 *
 * Errors: RL_NOTFOUND for a missing key, RL_STORE for any store failure
 * (already logged once with Berkeley DB's text), RL_NOMEM, RL_TOO_LARGE
 * (value larger than the per-entry cap).
 */
#ifndef RELAY_STORE_STORE_H
#define RELAY_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

#define STORE_KEY_LEN 32

typedef struct store store;

typedef struct store_options {
    const char *home;         /* environment directory; created if missing (mode 0700) */
    const char *key_file;     /* secret; must exist (see store_keyfile_ensure) */
    const char *key_env;      /* NULL or "": the secret is in key_file; else the name of
                               * the environment variable that holds it (key_file unused) */
    uint64_t max_bytes;       /* cap on the sum of stored value sizes; 0 = no cap */
    uint64_t max_entries;     /* cap on the number of cache entries; 0 = no cap */
    uint64_t max_entry_bytes; /* values larger than this are refused with RL_TOO_LARGE */
    uint32_t cache_mb;        /* Berkeley DB buffer pool size in MiB */
    int max_threads;          /* processes x threads that may use the environment at once
                               * (Berkeley DB's thread table for failchk) */
    int txn_threads;          /* of those, how many the lock and transaction tables are
                               * sized for (0: max_threads); see env.c */
    uint32_t hold_max_age;    /* seconds after which store_maintain releases a budget
                               * reservation (ledger.h) whose process still lives: longer
                               * than any request may last. 0: 25 hours (the longest
                               * [upstream] timeout allowed is 24) */
    /* NULL for the normal, shared open. Set (to the lock of this home) for
     * maintenance that needs the store to itself: the environment is then
     * opened without DB_REGISTER (so this process never touches
     * __db.register, whose lock it holds) and always recovered. */
    const struct store_lock *lock;
    const struct store_cluster *cluster; /* NULL: not replicated (store/cluster.h) */
} store_options;

typedef struct store_meta {
    uint64_t created; /* unix seconds when stored */
    uint64_t expires; /* unix seconds after which the entry is stale */
    uint64_t hits;    /* times served (counted by store_cache_touch; readers see
                       * the hits not yet flushed too) */
    uint64_t size;    /* value bytes (filled in by the store) */
    uint64_t used;    /* unix seconds of the last use (the store, or a hit);
                       * filled in by the store. 0: stored by a Relay from
                       * before issue 14 and not yet indexed */
} store_meta;

typedef struct store_stats {
    uint64_t entries;
    uint64_t bytes; /* sum of value sizes */
    uint64_t evictions;
    uint64_t expired_removed;
} store_stats;

/* Creates the key file with 32 random bytes (hex, mode 0600) if it does not
 * exist; leaves an existing one untouched (warning if group/others may read
 * it). Creates parent directories (mode 0700). Safe against concurrent
 * callers: all end up with the same key. RL_IO (logged) on failure. */
rl_err store_keyfile_ensure(const char *key_file);
/* store_keyfile_ensure(opt->key_file), unless the secret comes from the
 * environment (opt->key_env): then there is nothing to create, and RL_OK. */
rl_err store_key_ensure(const store_options *opt);

/* Opens (creating if needed) the environment and its databases. Fails with
 * RL_STORE if the key file is missing, empty or accessible to other users
 * (mode o+rwx), if key_env's variable is unset or empty, or if the secret
 * differs from the one the environment was created with (checked against
 * home/check.db before recovery runs), and RL_CONFIG if home, or both
 * key_file and key_env, are not set. opt is copied.
 *
 * When the open fails and no other process has the store open, it is
 * recovered from its logs by this process alone. When that fails too,
 * because of the store's files (not for lack of space or permission, which
 * heal: the open fails and is tried again later), the store's files are
 * moved to home.damaged-YYYYmmdd-HHMMSS beside it and an empty store is
 * started, logged as an error saying where they went: Relay never stays
 * uncached for good, nor needs a human to delete the store. The key file is
 * never touched. */
rl_err store_open(const store_options *opt, store **out);
/* Closes every handle; NULL is a no-op. Leaves the environment registered
 * for other processes; the last process out does not remove it. */
void store_close(store *s);

/* Removes the environment's shared memory regions (SysV segments outlive
 * processes) for tests and admin. Only while no process has the store open;
 * the files in home are left in place (remove the directory to drop the
 * data). Needs only opt->home; a missing home is not an error. */
rl_err store_remove(const store_options *opt);

/* Copies the value for key into value (appended to it) and its metadata into
 * meta. Returns stale entries too: freshness is the caller's decision.
 * RL_NOTFOUND when absent. */
rl_err store_cache_get(store *s, const uint8_t key[STORE_KEY_LEN], store_meta *meta, rl_buf *value);

/* Inserts or replaces the entry; meta->created and meta->expires are taken
 * from the caller, hits starts at 0, and meta->created is its first use
 * and the time ("now") eviction judges by. Evicts while the caps would be
 * exceeded, and, while the store's file system has less than 8 MiB free
 * (as store_maintain last saw), until the store is no larger than before:
 * a cache never fills its own disk (RL_STORE, not logged, when there is
 * nothing left to evict). Eviction takes first an entry that expired
 * before now, else the least recently used (stored or hit; hits not yet
 * flushed count), else, in a store whose entries predate the recency index
 * and were not yet indexed, the one closest to expiry. RL_TOO_LARGE if len
 * is over max_entry_bytes (0 = no per-entry cap) or over max_bytes. */
rl_err store_cache_put(store *s, const uint8_t key[STORE_KEY_LEN], const store_meta *meta,
                       const void *value, size_t len);

/* 1 while the store's file system is nearly full (under 8 MiB free, as
 * store_maintain last saw): new entries then replace old ones instead of
 * growing the store. For health reports; any thread. */
int store_space_low(store *s);

/*
 * Counts one more hit on an entry, used at now (unix seconds), without a
 * write transaction: the hit goes into a table shared by every process (a
 * file in home, see store/usemap.h), which store_maintain moves into the
 * entries and the recency index about once a second. Readers of hits
 * (store_cache_get, the scans) add what is still pending, so counts read
 * the same as if each hit were written at once. The table is a shared
 * file: a process killed after counting a hit loses nothing; a process
 * killed in the middle of a flush loses the hits of that flush's batch
 * (at most a second's, of up to 256 entries).
 * When the table has no room near the key, the hit is written directly
 * (a transaction, as before): then RL_NOTFOUND if the entry vanished.
 * Otherwise RL_OK, also for an entry deleted meanwhile, whose pending hits
 * the flush drops.
 */
rl_err store_cache_touch(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now);

/* Moves the pending hits and uses of the table into the entries and the
 * recency index, in transactions of a bounded number of entries; *moved
 * (may be NULL) gets how many entries were updated. store_maintain calls
 * it; tests and admin may. */
rl_err store_recency_flush(store *s, uint64_t now, uint64_t *moved);

/* The table of uses at a glance, for tests and diagnostics. */
typedef struct store_recency_info {
    uint64_t pending_slots; /* slots holding a key */
    uint64_t direct;        /* hits written directly for lack of a slot (since created) */
} store_recency_info;
rl_err store_recency_info_get(store *s, store_recency_info *out);

rl_err store_cache_del(store *s, const uint8_t key[STORE_KEY_LEN]);

/* Removes entries that expired before now - grace. *removed gets the count
 * (may be NULL). Bounded work per call is not promised: admin use and the
 * periodic maintenance of store_maintain. */
rl_err store_cache_purge_expired(store *s, uint64_t now, uint64_t grace, uint64_t *removed);
/* Removes every cache entry. */
rl_err store_cache_purge_all(store *s, uint64_t *removed);

rl_err store_stats_get(store *s, store_stats *out);

/* What the environment did since it was created or last recovered, every
 * process together (Berkeley DB's own counts): transactions begun, and log
 * records written (a transaction that changes nothing writes none). For
 * diagnostics and benchmarks, e.g. to show that a hit writes nothing. */
typedef struct store_activity {
    uint64_t transactions;
    uint64_t log_records;
} store_activity;
rl_err store_activity_get(store *s, store_activity *out);

/* ---- administration (relay-admin) ---------------------------------------- */

/* One cache entry as the scans below show it. value holds the first
 * value_len bytes of the value (at most the prefix asked for); damaged is
 * set, and meta zeroed, for a record whose store header does not decode or
 * whose length disagrees with it (a record this code could never serve). */
typedef struct store_item {
    uint8_t key[STORE_KEY_LEN];
    store_meta meta;
    const uint8_t *value;
    size_t value_len;
    int damaged;
} store_item;

/* Calls fn for every cache record in key order, damaged ones included,
 * with the first prefix bytes of each value (SIZE_MAX: all of it), until
 * fn returns non-zero. Reads in bounded batches, each in a short
 * transaction of its own with read-committed reads: each record is read
 * whole as one version of it, but neither a batch nor the scan is a
 * snapshot (entries written or removed meanwhile may or may not be seen;
 * none is seen twice), and a writer waits at most for the one record being
 * read. fn runs outside any transaction (it may call the store) and
 * item->value is valid only during the call. */
rl_err store_cache_scan(store *s, size_t prefix, int (*fn)(void *ctx, const store_item *item),
                        void *ctx);

/* Finds the entries whose key starts with the first nibbles hex digits of
 * prefix (bytes, high nibble first; nibbles 1..64). *matches gets 0, 1 or
 * 2 (meaning "two or more"); key gets the first match. */
rl_err store_cache_find(store *s, const uint8_t *prefix, unsigned nibbles,
                        uint8_t key[STORE_KEY_LEN], unsigned *matches);

/* Removes every entry for which match returns non-zero, in transactions of
 * a bounded number of entries (so Relay's writers wait at most one batch).
 * match sees the first prefix bytes of each value (as store_cache_scan);
 * it runs inside a transaction, so it must not call the store, and it may
 * be called more than once for an entry (retried batches). Damaged records
 * are shown too. *removed gets the count (may be NULL). */
rl_err store_cache_purge_match(store *s, size_t prefix,
                               int (*match)(void *ctx, const store_item *item), void *ctx,
                               uint64_t *removed);

/*
 * Exclusive use of a store, for what must not run while Relay does
 * (recover, rekey, restore). Berkeley DB's DB_REGISTER, which every
 * store_open uses, keeps an fcntl write lock on one slot of home's
 * __db.register for as long as a process has the environment open, and
 * takes a lock on byte 1 of that file, waiting for it, while it registers
 * (src/env/env_register.c). store_lock_exclusive takes byte 1 without
 * waiting and then asks the kernel (F_GETLK) whether any other process
 * holds a lock on the file: if one does, the store is in use and it fails
 * with RL_BUSY (logged, naming a pid). Otherwise the store
 * is free, and stays free while the lock is held: a process that starts
 * meanwhile waits in its env->open until store_unlock. Creates home if
 * missing. fcntl locks belong to the process: the holder must not open the
 * store with the shared store_open (or otherwise open and close
 * __db.register) while holding it — use store_options.lock. If the process
 * dies, the kernel drops the lock.
 */
typedef struct store_lock store_lock;
rl_err store_lock_exclusive(const char *home, store_lock **out);
void store_unlock(store_lock *lock); /* NULL is a no-op */

/* What a whole-store operation did. */
typedef struct store_report {
    uint64_t files;        /* backup, restore: files written */
    uint64_t bytes;        /* backup, restore: their bytes; compact: bytes of the
                            * databases after */
    uint64_t bytes_before; /* compact */
    uint64_t pages_freed;  /* compact: pages given back to the file system */
    uint64_t records;      /* rekey: records copied */
} store_report;

/* Hot backup, safe while Relay runs: Berkeley DB's DB_ENV->backup copies
 * every database (through the buffer pool, so pages are consistent) and
 * then the logs into dir, plus check.db; the copy is then recovered
 * (catastrophic recovery, in a private environment) so that it is
 * consistent on its own, and verified (store_verify_dir). dir must be
 * absent or empty; it is created mode 0700. The copy is encrypted with the
 * same secret; the key file is NOT copied. RL_BUSY if dir is not empty,
 * RL_STORE/RL_IO (logged) on failure, with dir left for inspection. */
rl_err store_backup(store *s, const char *dir, store_report *rep);

/* Berkeley DB's DB->verify on every database file in dir (a backup, or a
 * store no process uses), with the secret opt names (key_env or key_file;
 * the rest of opt is not used). DB->verify takes no
 * locks, so it must never run on the files of a live environment: for a
 * live store use store_verify. Each problem is passed to problem (file and
 * Berkeley DB's text; fn may be NULL) and counted in *problems. RL_OK means
 * the check ran (look at *problems); RL_STORE that it could not. */
rl_err store_verify_dir(const char *dir, const store_options *opt,
                        void (*problem)(void *ctx, const char *file, const char *what), void *ctx,
                        unsigned *problems);

/* Verifies a live store: a hot backup into a temporary directory beside
 * home (store_backup, which recovers and verifies the copy), then removes
 * it. Problems are reported as by store_verify_dir. */
rl_err store_verify(store *s, void (*problem)(void *ctx, const char *file, const char *what),
                    void *ctx, unsigned *problems);

/* DB->compact with DB_FREE_SPACE on every database: moves records together
 * and returns emptied pages at the end of each file to the file system.
 * Safe while Relay runs (compaction uses short transactions of its own). */
rl_err store_compact(store *s, store_report *rep);

/* Runs Berkeley DB's normal recovery on the store. Needs lock (see
 * store_lock_exclusive) on opt->home; opt->lock is ignored. */
rl_err store_recover(const store_options *opt, const store_lock *lock);

/*
 * Re-encrypts the store with a new secret. Needs lock on opt->home. The new
 * secret is made in new_key_file (which must not exist), the records are
 * copied into a new environment encrypted with it (in home + ".rekey"),
 * and the files are then swapped into home (the old ones moved to home +
 * ".pre-rekey" until the swap is done). Only then is old_key_out (a path
 * that must not exist) given the old key file (a hard link) and new_key_file
 * renamed over opt->key_file. On failure the store and key file are as
 * before (logged; a failure during the swap says what is where). A secret
 * from the environment (opt->key_env) cannot be replaced by a file:
 * RL_CONFIG (logged).
 */
rl_err store_rekey(const store_options *opt, const store_lock *lock, const char *new_key_file,
                   const char *old_key_out, store_report *rep);

/* Puts the backup in dir in place of the store in opt->home (created if
 * missing). Needs lock on opt->home. The backup must open with opt's key
 * file (RL_FORBIDDEN otherwise: a backup of another store or key). It is
 * copied beside home, recovered and verified there, and swapped in; dir is
 * left as it was. */
rl_err store_restore(const store_options *opt, const store_lock *lock, const char *dir,
                     store_report *rep);

/* Periodic housekeeping, called about once a second by one thread per
 * process. Each process looks at the free space of the store's file system
 * (see store_cache_put). For each second (of now) one process on the store
 * does the work: frees locks of dead processes (failchk; a dead child must have
 * been reaped with waitpid first), checkpoints and removes old log files,
 * removes finished in-flight requests (flight.h), releases the budget
 * reservations of dead processes and those older than hold_max_age
 * (ledger.h), flushes the table of recent uses (store_recency_flush),
 * indexes entries from before the recency index a batch at a time
 * (recency.c), every 60 s purges entries expired more than an hour ago (so
 * that max-stale can still use them) and removes ledger rows of windows
 * long ended. The others only check that their environment is still
 * usable, reopening it when another process recovered it. */
rl_err store_maintain(store *s, uint64_t now);

/* Threads of this process lost for good in an environment that had to be
 * abandoned after another process was killed while holding one of Berkeley
 * DB's internal mutexes (5.3's mutexes are not robust; see store_reopen in
 * env.c). The store carries on without them, but their callers never get
 * an answer: a front that sees this above zero should drain and restart the
 * process at a convenient moment. */
unsigned store_stranded_threads(store *s);

#endif
