/*
 * store.h — Relay's shared, encrypted, transactional store.
 *
 * One Berkeley DB environment (a directory) is opened by every relay.fcgi
 * process and by relay-admin at the same time. It is encrypted with a secret
 * read from a key file (created mode 0600 by store_keyfile_ensure); its
 * regions live in SysV shared memory so no file on disk holds the secret or
 * plaintext pages. Opening runs crash recovery when a previous user died, so
 * a worker killed with SIGKILL never leaves the store unusable.
 *
 * Cache values are opaque bytes to the store; it keeps beside each value
 * the metadata it needs for expiry and eviction (store_meta). Keys are the
 * 32-byte SHA-256 digests built by the engine.
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
    uint64_t max_bytes;       /* cap on the sum of stored value sizes; 0 = no cap */
    uint64_t max_entries;     /* cap on the number of cache entries; 0 = no cap */
    uint64_t max_entry_bytes; /* values larger than this are refused with RL_TOO_LARGE */
    uint32_t cache_mb;        /* Berkeley DB buffer pool size in MiB */
    int max_threads;          /* processes x threads that may use the environment at once
                               * (Berkeley DB's thread table for failchk) */
} store_options;

typedef struct store_meta {
    uint64_t created; /* unix seconds when stored */
    uint64_t expires; /* unix seconds after which the entry is stale */
    uint64_t hits;    /* times served (maintained by store_cache_touch) */
    uint64_t size;    /* value bytes (filled in by the store) */
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

/* Opens (creating if needed) the environment and its databases. Fails with
 * RL_STORE if the key file is missing, accessible to other users (mode
 * o+rwx), or holds a different secret than the one the environment was
 * created with (checked against home/check.db before recovery runs), and
 * RL_CONFIG if home or key_file is not set. opt is copied. */
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
 * from the caller, hits starts at 0. Evicts the entries closest to expiry
 * while the caps would be exceeded. RL_TOO_LARGE if len is over
 * max_entry_bytes (0 = no per-entry cap) or over max_bytes. */
rl_err store_cache_put(store *s, const uint8_t key[STORE_KEY_LEN], const store_meta *meta,
                       const void *value, size_t len);

/* Counts one more hit on an entry; RL_NOTFOUND if it vanished meanwhile. */
rl_err store_cache_touch(store *s, const uint8_t key[STORE_KEY_LEN]);

rl_err store_cache_del(store *s, const uint8_t key[STORE_KEY_LEN]);

/* Removes entries that expired before now - grace. *removed gets the count
 * (may be NULL). Bounded work per call is not promised: admin use and the
 * periodic maintenance of store_maintain. */
rl_err store_cache_purge_expired(store *s, uint64_t now, uint64_t grace, uint64_t *removed);
/* Removes every cache entry. */
rl_err store_cache_purge_all(store *s, uint64_t *removed);

/* Calls fn for every entry (key, meta) in key order until fn returns
 * non-zero. Reads a consistent snapshot per entry, not of the whole table. */
rl_err store_cache_foreach(store *s,
                           int (*fn)(void *ctx, const uint8_t key[STORE_KEY_LEN],
                                     const store_meta *meta),
                           void *ctx);

rl_err store_stats_get(store *s, store_stats *out);

/* Named 64-bit counters shared by all processes (hits, misses, ...). Names
 * are 1-200 bytes; a counter never added to reads as 0 (RL_OK). Arithmetic
 * is modulo 2^64. Names starting with "store." are the store's own totals
 * (store.entries, store.bytes, store.evictions, store.expired_removed):
 * readable here, but store_counter_add refuses them (RL_INTERNAL). */
rl_err store_counter_add(store *s, const char *name, int64_t delta);
rl_err store_counter_get(store *s, const char *name, uint64_t *value);

/* Periodic housekeeping, called about once a second by one thread per
 * process; for each second (of now) one process on the store does the
 * work and the others return RL_OK at once: frees locks of dead processes
 * (failchk; a dead child must have been reaped with waitpid first),
 * checkpoints and removes old log files, removes finished in-flight
 * requests (flight.h), and every 60 s purges entries expired more than an
 * hour ago (so that max-stale can still use them). */
rl_err store_maintain(store *s, uint64_t now);

/* Threads of this process lost for good in an environment that had to be
 * abandoned after another process was killed while holding one of Berkeley
 * DB's internal mutexes (5.3's mutexes are not robust; see store_reopen in
 * store.c). The store carries on without them, but their callers never get
 * an answer: a front that sees this above zero should drain and restart the
 * process at a convenient moment. */
unsigned store_stranded_threads(store *s);

#endif
