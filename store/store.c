#include "store/store.h"

#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/keyfile.h"
#include "store/store_int.h"
#include "store/wake.h"

/*
 * Layout.
 *
 * cache.db     key: the 32-byte digest
 *              data: header (HDR_LEN bytes) followed by the value
 * expiry.db    key: expires (8 bytes, big-endian) + digest; data: empty.
 *              Sorted by expiry, so the first record is the entry to evict
 *              first and purging expired entries is a scan from the start.
 *              Maintained by hand in the same transaction as cache.db.
 * counters.db  key: counter name (no NUL); data: 8 bytes, big-endian.
 *              The store's own totals live here too (CTR_*), written in the
 *              same transaction as the entries they count, so stats are one
 *              read and always agree with the table.
 *
 * flights.db, chunks.db   the in-flight table (flight.c).
 *
 * Integers are big-endian so that expiry keys sort numerically under the
 * default byte-wise btree comparison (and db_dump output reads the same).
 *
 * Other files in the home: check.db (see check_secret), wake.map (wake.c,
 * counters only), __db.register (DB_REGISTER's process slots), __db.001
 * (the id of the shared memory segments, which hold the regions), the
 * encrypted logs log.NNNNNNNNNN.
 */
#define HDR_MAGIC 0x524c4331u /* "RLC1": bump for an incompatible header */
#define HDR_LEN 40            /* magic 4, flags 4, created 8, expires 8, hits 8, size 8 */
#define HDR_OFF_HITS 24
#define EXP_KEY_LEN (8 + STORE_KEY_LEN)

#define CTR_ENTRIES "store.entries"
#define CTR_BYTES "store.bytes"
#define CTR_EVICTIONS "store.evictions"
#define CTR_EXPIRED "store.expired_removed"
#define CTR_RESERVED_PREFIX "store."
#define COUNTER_NAME_MAX 200

/* Keep retrying a lock conflict this long: a dead process's locks last
 * until the next failchk (store_maintain, about a second). */
#define LOCK_RETRY_NS 5000000000LL
/* How long a reopen waits for threads to leave the old environment. */
#define REOPEN_WAIT_NS 2000000000LL
/* At most one failed reopen attempt per second. */
#define REOPEN_PAUSE_NS 1000000000LL
#define MAX_REOPENS 3      /* per operation */
#define PURGE_BATCH 256    /* entries removed per transaction when purging */
#define PURGE_INTERVAL 60  /* seconds between purges run by store_maintain */
#define PURGE_GRACE 3600   /* store_maintain keeps entries this long past expiry (max-stale) */
#define CHECKPOINT_KB 1024 /* checkpoint once this much log was written ... */
#define CHECKPOINT_MIN 1   /* ... or this many minutes passed */
#define SHM_KEY_SPAN 32    /* SysV keys reserved per environment (it uses 3-6) */

#define CHECK_FILE "check.db"
#define CHECK_KEY "relay-store-check"
#define CHECK_VALUE "relay-store-v1"

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

    char *home; /* realpath of the environment directory */
    char *secret;
    size_t secret_len;
    long shm_key;

    uint64_t max_bytes, max_entries, max_entry_bytes;
    uint32_t cache_mb;
    uint32_t threads;
    int exclusive; /* opened under store_lock_exclusive: no DB_REGISTER */
};

/* ---- small helpers ----------------------------------------------------- */

static void hdr_encode(uint8_t *h, const store_meta *m)
{
    store_put32(h, HDR_MAGIC);
    store_put32(h + 4, 0);
    store_put64(h + 8, m->created);
    store_put64(h + 16, m->expires);
    store_put64(h + 24, m->hits);
    store_put64(h + 32, m->size);
}

/* 0 on success, -1 if the bytes are not a header this code wrote. */
static int hdr_decode(const uint8_t *h, size_t n, store_meta *m)
{
    if (n < HDR_LEN || store_get32(h) != HDR_MAGIC)
        return -1;
    m->created = store_get64(h + 8);
    m->expires = store_get64(h + 16);
    m->hits = store_get64(h + 24);
    m->size = store_get64(h + 32);
    return 0;
}

static void exp_key(uint8_t *out, uint64_t expires, const uint8_t *key)
{
    store_put64(out, expires);
    memcpy(out + 8, key, STORE_KEY_LEN);
}

static int is_retryable(int ret)
{
    return ret == DB_LOCK_DEADLOCK || ret == DB_LOCK_NOTGRANTED;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Randomised, growing pause (up to ~2.5 ms) between retries of a lock
 * conflict, so that contenders don't collide again in lockstep. */
static void backoff(unsigned attempt)
{
    static _Thread_local unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)(uintptr_t)&seed ^ (unsigned)mono_ns();
    if (attempt < 3) {
        sched_yield();
        return;
    }
    unsigned shift = attempt < 8 ? attempt : 8;
    long max_us = 10L << shift;
    seed = seed * 1103515245u + 12345u;
    struct timespec ts = {0, ((long)(seed >> 8) % max_us + 1) * 1000L};
    nanosleep(&ts, NULL);
}

/* Logs one Berkeley DB failure with its own text and what was under way. */
static void bdb_fail(const char *home, const char *what, int ret)
{
    rl_error("store %s: %s: %s", home ? home : "-", what, db_strerror(ret));
}

/* Set while this thread abandons a panicked environment, whose close
 * reports every handle it had to drop: expected noise, kept for debug. */
static _Thread_local int bdb_quiet;

/* Berkeley DB's own diagnostics ("Invalid password", "lock table is out of
 * available locks", ...) complete the one line we log per failure. They
 * never contain the password. Its panic notices repeat for every call that
 * meets a panicked environment; store_reopen logs that once instead. */
static void bdb_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
    (void)env;
    (void)pfx;
    int noise = bdb_quiet || strstr(msg, "run recovery") || strstr(msg, "DB_RUNRECOVERY") ||
                strstr(msg, "panic");
    rl_log(noise ? RL_LOG_DEBUG : RL_LOG_WARN, "store: berkeley db: %s", msg);
}

static void bdb_msgcall(const DB_ENV *env, const char *msg)
{
    (void)env;
    rl_debug("store: berkeley db: %s", msg);
}

/*
 * failchk asks whether the owner of a thread-table slot still lives. Threads
 * of our own process are always alive: a thread that exits normally leaves
 * the library first. For others, kill(pid, 0) succeeds or fails with EPERM
 * while the process exists. A dead child that was not yet reaped (a zombie)
 * still counts as alive: the parent must waitpid before failchk can free it.
 */
static int store_isalive(DB_ENV *env, pid_t pid, db_threadid_t tid, u_int32_t flags)
{
    (void)env;
    (void)tid;
    (void)flags;
    if (pid == getpid())
        return 1;
    if (kill(pid, 0) == 0)
        return 1;
    return errno == EPERM;
}

/* ---- environments open in this process ---------------------------------- */

/*
 * DB_REGISTER identifies a process by fcntl locks on __db.register, so one
 * process may hold only one environment handle per home. Berkeley DB
 * detects a second one, but only after opening the register file, and its
 * error path closes that file, which drops every fcntl lock the process has
 * on it, including the first handle's registration. So a second open in the
 * same process is refused here, before Berkeley DB sees it. Entries carry the
 * pid so that a child inherits no claims from its parent across fork.
 */
typedef struct open_home {
    struct open_home *next;
    pid_t pid;
    char path[];
} open_home;

static pthread_mutex_t homes_lock = PTHREAD_MUTEX_INITIALIZER;
static open_home *homes;

/* 0 when claimed, 1 when this process already has it open, -1 on ENOMEM. */
static int homes_claim(const char *path)
{
    int rc = 0;
    pid_t me = getpid();
    pthread_mutex_lock(&homes_lock);
    for (open_home **pp = &homes; *pp;) {
        open_home *h = *pp;
        if (h->pid != me) { /* inherited from a parent across fork */
            *pp = h->next;
            free(h);
            continue;
        }
        if (strcmp(h->path, path) == 0) {
            rc = 1;
            goto out;
        }
        pp = &h->next;
    }
    size_t n = strlen(path) + 1;
    open_home *h = malloc(sizeof *h + n);
    if (!h) {
        rc = -1;
        goto out;
    }
    h->pid = me;
    memcpy(h->path, path, n);
    h->next = homes;
    homes = h;
out:
    pthread_mutex_unlock(&homes_lock);
    return rc;
}

static int homes_contains(const char *path)
{
    int found = 0;
    pthread_mutex_lock(&homes_lock);
    for (open_home *h = homes; h; h = h->next)
        if (h->pid == getpid() && strcmp(h->path, path) == 0)
            found = 1;
    pthread_mutex_unlock(&homes_lock);
    return found;
}

static void homes_release(const char *path)
{
    pthread_mutex_lock(&homes_lock);
    for (open_home **pp = &homes; *pp; pp = &(*pp)->next) {
        open_home *h = *pp;
        if (h->pid == getpid() && strcmp(h->path, path) == 0) {
            *pp = h->next;
            free(h);
            break;
        }
    }
    pthread_mutex_unlock(&homes_lock);
}

/* ---- the environment ---------------------------------------------------- */

/*
 * Every process of one store must attach the same SysV segments, and two
 * stores must not share any: the base key is a hash (FNV-1a) of the home's
 * realpath, a multiple of SHM_KEY_SPAN because Berkeley DB uses base + region
 * number for each region. Never 0 (IPC_PRIVATE) and always a positive int.
 */
static long shm_key_for(const char *realhome)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)realhome; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    uint64_t slots = 0x7fffffffULL / SHM_KEY_SPAN - 1;
    return (long)((h % slots + 1) * SHM_KEY_SPAN);
}

/* Opens one encrypted btree in the environment, creating it if needed.
 * Creation races between processes can deadlock: retried. */
static int db_open_one(store *s, DB_ENV *env, const char *file, u_int32_t extra, DB **out)
{
    int ret;
    *out = NULL;
    for (unsigned attempt = 0;; attempt++) {
        DB *db = NULL;
        if ((ret = db_create(&db, env, 0)) != 0) {
            bdb_fail(s->home, "creating a database handle", ret);
            return ret;
        }
        if ((ret = db->set_flags(db, DB_ENCRYPT)) == 0)
            ret = db->open(db, NULL, file, NULL, DB_BTREE,
                           DB_CREATE | DB_THREAD | DB_AUTO_COMMIT | extra, 0600);
        if (ret == 0) {
            *out = db;
            return 0;
        }
        (void)db->close(db, 0);
        if (!is_retryable(ret) || attempt >= 50) {
            rl_error("store %s: opening %s: %s", s->home, file, db_strerror(ret));
            return ret;
        }
        backoff(attempt);
    }
}

/*
 * Closing a panicked environment, Berkeley DB 5.3 unregisters and closes
 * its files but does not detach the regions (__env_close_pp returns right
 * after its panic check). Whoever ran recovery has already removed those
 * segments, so their memory (the whole buffer pool) would stay allocated
 * until this process exits, once per recovery. Linux names each attachment
 * "/SYSV<key>" in /proc/self/maps, with the key it was created under, so the
 * ones in this store's key range are detached here. Called only when no
 * handle set of this store in this process is open or has users (one store
 * per home per process, see homes_claim), so nothing can still use them.
 * Mappings that a forked child inherited from its parent's handle match
 * too, and are as unusable in the child, so store_open drops them as well.
 */
static void detach_stale_segments(const store *s)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "/SYSV");
        if (!p)
            continue;
        char *end;
        unsigned long key = strtoul(p + 5, &end, 16);
        unsigned long start = strtoul(line, NULL, 16);
        if (end == p + 5 || (long)key < s->shm_key || (long)key >= s->shm_key + SHM_KEY_SPAN)
            continue;
        if (shmdt((void *)start) == 0)
            n++;
    }
    fclose(f);
    if (n)
        rl_debug("store %s: detached %d stale shared memory segments", s->home, n);
}

/*
 * Closes a handle set. db_flags is 0, or DB_NOSYNC when the environment is
 * abandoned (a sync would wait for mutexes a dead process may hold). Errors
 * other than "run recovery" are logged and ignored. With stranded, threads
 * are still inside and never leave: of a panicked environment Berkeley DB
 * then only unregisters this process and closes the files, and the set and
 * its mappings stay allocated for them. Otherwise h is freed, and the
 * regions of a panicked environment detached if may_detach.
 */
static void handles_close(store *s, handles *h, u_int32_t db_flags, int stranded, int may_detach)
{
    int panicked = 0;
    DB *dbs[] = {h->cache, h->expiry, h->counters, h->flights, h->chunks};
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        if (!dbs[i])
            continue;
        int ret = dbs[i]->close(dbs[i], db_flags);
        if (ret == DB_RUNRECOVERY)
            panicked = 1;
        else if (ret)
            bdb_fail(s->home, "closing a database", ret);
    }
    h->cache = h->expiry = h->counters = h->flights = h->chunks = NULL;
    if (h->env) {
        int ret = h->env->close(h->env, 0);
        if (ret == DB_RUNRECOVERY)
            panicked = 1;
        else if (ret)
            bdb_fail(s->home, "closing the environment", ret);
        h->env = NULL;
    }
    if (stranded)
        return;
    free(h);
    if (panicked && may_detach)
        detach_stale_segments(s);
}

/*
 * Opens the environment and the databases as a new handle set. Recovery
 * runs inside env->open when DB_REGISTER finds that a process died while
 * attached; processes still attached then see DB_RUNRECOVERY and reopen
 * (store_op_run). Returns 0 or the Berkeley DB code, already logged.
 */
static int handles_open(store *s, handles **out)
{
    DB_ENV *env = NULL;
    *out = NULL;
    handles *h = calloc(1, sizeof *h);
    if (!h) {
        rl_error("store %s: out of memory opening the environment", s->home);
        return ENOMEM;
    }
    h->home = s->home;
    const char *what = "creating the environment handle";
    int ret = db_env_create(&env, 0);
    if (ret)
        goto fail;
    env->set_errcall(env, bdb_errcall);
    env->set_msgcall(env, bdb_msgcall);

    what = "configuring shared memory";
    if ((ret = env->set_shm_key(env, s->shm_key)) != 0)
        goto fail;
    what = "configuring encryption";
    if ((ret = env->set_encrypt(env, s->secret, DB_ENCRYPT_AES)) != 0)
        goto fail;
    /* Without a detector two processes were seen deadlocked forever. With
     * DB_TXN_NOWAIT nothing waits for a lock, but the detector also serves
     * lock requests made outside our transactions (database opens). */
    what = "configuring deadlock detection";
    if ((ret = env->set_lk_detect(env, DB_LOCK_DEFAULT)) != 0)
        goto fail;
    what = "configuring the thread table";
    if ((ret = env->set_thread_count(env, s->threads)) != 0 ||
        (ret = env->set_isalive(env, store_isalive)) != 0)
        goto fail;
    what = "configuring the buffer pool";
    if ((ret = env->set_cachesize(env, s->cache_mb / 1024, (s->cache_mb % 1024) << 20, 1)) != 0)
        goto fail;
    /* SysV segments cannot grow, so the lock and transaction tables are
     * sized up front for every thread of every process, with room for an
     * eviction or purge batch touching many pages. */
    what = "configuring the lock table";
    if ((ret = env->set_lk_max_lockers(env, 1000 + 4 * s->threads)) != 0 ||
        (ret = env->set_lk_max_locks(env, 20000 + 100 * s->threads)) != 0 ||
        (ret = env->set_lk_max_objects(env, 20000 + 100 * s->threads)) != 0)
        goto fail;
    what = "configuring transactions";
    if ((ret = env->set_tx_max(env, 2 * s->threads + 64)) != 0)
        goto fail;
    /* The cache can be rebuilt from upstream: losing the last moments of
     * commits in a power cut is fine, an fsync per commit (10x slower) is
     * not. Commits still reach the OS, so a killed process loses nothing. */
    if ((ret = env->set_flags(env, DB_TXN_WRITE_NOSYNC, 1)) != 0)
        goto fail;
    what = "configuring log removal";
    if ((ret = env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1)) != 0)
        goto fail;

    what = "opening the environment";
    /* Exclusive (store_lock_exclusive held): no DB_REGISTER, which would
     * open and close __db.register and so drop this process's lock on it;
     * DB_RECOVER without it always recovers, which is what maintenance
     * wants, and is safe because the lock proves nobody else is attached. */
    ret = env->open(env, s->home,
                    DB_CREATE | DB_INIT_MPOOL | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_TXN |
                        DB_THREAD | (s->exclusive ? 0 : DB_REGISTER) | DB_RECOVER | DB_SYSTEM_MEM,
                    0600);
    if (ret)
        goto fail;
    h->env = env;
    /* Not DB_MULTIVERSION, though the in-flight tables are read by many
     * followers while their leader writes. With MVCC snapshots, Berkeley
     * DB 5.3 livelocked here: snapshot readers of a page loop in
     * __memp_fget while a writer's new version of it is pending, and the
     * writer waits for the page's exclusive latch, which those readers keep
     * taking (glibc's rwlocks prefer readers); every process of a mod_fcgid
     * front hung in it. Read-committed reads (store_op_run's read_committed)
     * hold a read lock for one record at a time instead, and a conflict
     * returns at once (DB_TXN_NOWAIT) to be retried after a pause. */
    if ((ret = db_open_one(s, env, "cache.db", 0, &h->cache)) != 0 ||
        (ret = db_open_one(s, env, "expiry.db", 0, &h->expiry)) != 0 ||
        (ret = db_open_one(s, env, "counters.db", 0, &h->counters)) != 0 ||
        (ret = db_open_one(s, env, "flights.db", 0, &h->flights)) != 0 ||
        (ret = db_open_one(s, env, "chunks.db", 0, &h->chunks)) != 0) {
        handles_close(s, h, 0, 0, 0);
        return ret;
    }
    *out = h;
    return 0;
fail:
    bdb_fail(s->home, what, ret);
    if (env)
        (void)env->close(env, 0); /* required even after a failed open */
    free(h);
    return ret;
}

/*
 * After a reboot (or an ipcrm) the region files in the home still name
 * SysV segments that no longer exist, and every open fails with EINVAL
 * ("unable to attach to shared system memory region"). When no process is
 * registered in the environment (nobody holds a lock on __db.register),
 * nothing can be using those regions: the region files are removed, so the
 * next open creates fresh regions and recovers from the logs. Only for the
 * first open of a process: closing a descriptor of __db.register would drop
 * the registration lock of a handle this process already has. Returns 1
 * when it removed something.
 */
static int remove_stale_regions(const char *home)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/__db.register", home);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        int busy = fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
        close(fd);
        if (busy)
            return 0;
    }
    DIR *d = opendir(home);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "__db.", 5) != 0 || strcmp(e->d_name, "__db.register") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", home, e->d_name);
        if (unlink(path) == 0)
            removed = 1;
    }
    closedir(d);
    if (removed)
        rl_warn("store %s: its shared memory regions were gone (a reboot?); recreating them and "
                "recovering from the logs",
                home);
    return removed;
}

/* The first open of a process: handles_open, once more after removing
 * regions whose segments are gone. */
static int handles_open_first(store *s, handles **out)
{
    if (s->exclusive) {
        /* remove_stale_regions would close a descriptor of __db.register;
         * alone in the store, fresh regions are right anyway. */
        store_drop_regions(s->home);
        return handles_open(s, out);
    }
    int ret = handles_open(s, out);
    /* Processes starting together race here: the one that removes the
     * stale regions recreates them, the others must simply try again. */
    for (int attempt = 0; ret == EINVAL && attempt < 20; attempt++) {
        if (!remove_stale_regions(s->home)) {
            struct timespec pause = {0, 50 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        ret = handles_open(s, out);
    }
    return ret;
}

/*
 * Replaces the handle set after DB_RUNRECOVERY. seen is the generation the
 * caller worked with: if another thread reopened meanwhile there is nothing
 * to do. Returns 0 when a usable set is in place, -1 when the reopen failed
 * (logged) or was skipped because one failed less than a second ago.
 *
 * The old environment is panicked first, so that threads still using it
 * fail fast and leave; then the reopen waits for them. Threads never wait
 * for a lock inside the library (DB_TXN_NOWAIT), so they normally leave at
 * once. But Berkeley DB 5.3's mutexes are not robust: a thread that queued
 * on a mutex held by a process killed inside the library waits forever (a
 * panic wakes nobody). After REOPEN_WAIT_NS such threads are given up on:
 * the old set is closed around them (see handles_close) and the process
 * carries on with a new one. Each stranded thread is lost to its caller,
 * which is logged; restarting the process at a convenient time gets them
 * back.
 */
static int store_reopen(store *s, unsigned seen)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (s->reopening)
        pthread_cond_wait(&s->changed, &s->mu);
    if (s->generation != seen) {
        rc = s->cur ? 0 : -1;
        goto out;
    }
    int64_t now = mono_ns();
    if (!s->cur && s->last_reopen && now - s->last_reopen < REOPEN_PAUSE_NS) {
        rc = -1;
        goto out;
    }
    s->last_reopen = now;
    s->reopening = 1;
    handles *old = s->cur;
    s->cur = NULL;
    int stranded = 0;
    if (old) {
        rl_warn("store %s: environment needs recovery (a process died or another process "
                "recovered it); reopening",
                s->home);
        /* DB_RUNRECOVERY from failchk (a process died inside the library)
         * does not mark the region panicked. Panic it: every attached
         * process must reopen anyway, because our open finds the dead
         * process in __db.register and runs recovery. */
        bdb_quiet = 1;
        (void)old->env->set_flags(old->env, DB_PANIC_ENVIRONMENT, 1);
        bdb_quiet = 0;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += REOPEN_WAIT_NS / 1000000000LL;
        while (old->users > 0)
            if (pthread_cond_timedwait(&s->changed, &s->mu, &until) == ETIMEDOUT)
                break;
        stranded = old->users;
        if (stranded) {
            s->stranded++;
            s->stranded_threads += (unsigned)stranded;
            rl_error("store %s: %d thread(s) stranded in an environment abandoned after a "
                     "crash (waiting on a mutex a killed process held); continuing without "
                     "them; restart process %ld to get them back",
                     s->home, stranded, (long)getpid());
        }
    }
    int may_detach = s->stranded == 0;
    pthread_mutex_unlock(&s->mu);

    if (old) {
        bdb_quiet = 1;
        handles_close(s, old, DB_NOSYNC, stranded, may_detach);
        bdb_quiet = 0;
    }
    handles *h = NULL;
    if (handles_open(s, &h) != 0)
        rc = -1;

    pthread_mutex_lock(&s->mu);
    s->cur = h;
    s->generation++;
    s->reopening = 0;
    pthread_cond_broadcast(&s->changed);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- operations and the transaction helper ------------------------------ */

/* Takes a reference on the current handle set (NULL if there is none),
 * waiting while a reopen is under way (*waited tells). */
static handles *op_acquire(store *s, unsigned *gen, int *waited)
{
    pthread_mutex_lock(&s->mu);
    *waited = 0;
    while (s->reopening) {
        *waited = 1;
        pthread_cond_wait(&s->changed, &s->mu);
    }
    handles *h = s->cur;
    if (h)
        h->users++;
    *gen = s->generation;
    pthread_mutex_unlock(&s->mu);
    return h;
}

static void op_release(store *s, handles *h)
{
    pthread_mutex_lock(&s->mu);
    if (--h->users == 0 && h != s->cur)
        pthread_cond_broadcast(&s->changed); /* a reopen waits for this */
    pthread_mutex_unlock(&s->mu);
}

static int op_attempt(handles *h, op *o)
{
    DB_TXN *txn = NULL;
    o->err = RL_OK;
    o->commit_failed = 0;
    if (o->no_txn)
        return o->body(h, NULL, o);
    /* NOWAIT: a conflict returns at once and store_op_run retries outside the
     * library. Blocking waits are unsafe here: a process killed while
     * waiting leaves a condition variable that failchk then destroys,
     * which glibc blocks on forever (it waits for the dead waiter); and a
     * thread waiting on a dead process's lock is woken by nothing once
     * the region is panicked. No waiting also means no deadlock cycles. */
    u_int32_t flags = DB_TXN_NOWAIT | (o->read_committed ? DB_READ_COMMITTED : 0);
    int ret = h->env->txn_begin(h->env, NULL, &txn, flags);
    if (ret)
        return ret;
    ret = o->body(h, txn, o);
    if (ret == 0 && o->err == RL_OK) {
        ret = txn->commit(txn, 0);
        o->commit_failed = ret != 0;
        return ret;
    }
    int aborted = txn->abort(txn);
    return ret ? ret : aborted;
}

/*
 * Runs o in a transaction: retries it on a lock conflict (with backoff, for
 * up to LOCK_RETRY_NS, holding no reference in between so that a reopen can
 * proceed), reopens the environment and retries on DB_RUNRECOVERY (a few
 * times: recoveries can follow each other when several processes die), and
 * translates the outcome: DB_NOTFOUND -> RL_NOTFOUND (not logged), other
 * Berkeley DB failures -> RL_STORE or RL_NOMEM, logged once here.
 *
 * A commit that fails with DB_RUNRECOVERY (another process panicked the
 * region meanwhile) may still have reached the log, and then recovery keeps
 * it. Only idempotent operations are retried after that; the others (a
 * counter increment, a hit) report RL_STORE rather than risk counting twice.
 */
rl_err store_op_run(store *s, op *o)
{
    int ret;
    unsigned attempt = 0, reopens = 0;
    int64_t started = 0;
    o->s = s;
    for (;;) {
        unsigned gen;
        int waited;
        handles *h = op_acquire(s, &gen, &waited);
        if (waited)
            started = 0; /* the conflict budget is for conflicts, not reopens */
        if (h) {
            ret = op_attempt(h, o);
            op_release(s, h);
        } else {
            ret = DB_RUNRECOVERY; /* a reopen failed: try again (rate-limited) */
            o->commit_failed = 0;
        }
        if (is_retryable(ret)) {
            if (!started)
                started = mono_ns();
            if (mono_ns() - started < LOCK_RETRY_NS) {
                backoff(++attempt);
                continue;
            }
        }
        if (ret == DB_RUNRECOVERY && o->commit_failed && !o->idempotent) {
            rl_error("store %s: %s: the environment failed during commit; the change may or "
                     "may not have been applied: %s",
                     s->home, o->what, db_strerror(ret));
            (void)store_reopen(s, gen); /* for the next operation */
            return RL_STORE;
        }
        if (ret == DB_RUNRECOVERY && reopens < MAX_REOPENS) {
            reopens++;
            attempt = 0;
            started = 0;
            if (store_reopen(s, gen) == 0)
                continue;
            return RL_STORE; /* logged by handles_open, or a recent attempt failed */
        }
        break;
    }
    switch (ret) {
    case 0:
        return o->err;
    case DB_NOTFOUND:
        return RL_NOTFOUND;
    case DB_LOCK_DEADLOCK:
    case DB_LOCK_NOTGRANTED:
        rl_error("store %s: %s: gave up after %lld s of lock conflicts (%u attempts): %s", s->home,
                 o->what, LOCK_RETRY_NS / 1000000000LL, attempt, db_strerror(ret));
        return RL_STORE;
    case ENOMEM:
        bdb_fail(s->home, o->what, ret);
        return RL_NOMEM;
    default:
        bdb_fail(s->home, o->what, ret);
        return RL_STORE;
    }
}

/* ---- counters ------------------------------------------------------------ */

/* Reads a counter; an absent one reads as 0. */
static int ctr_read(handles *h, DB_TXN *txn, const char *name, u_int32_t flags, uint64_t *v)
{
    uint8_t b[8];
    DBT k, d;
    dbt_in(&k, name, strlen(name));
    dbt_out(&d, b, sizeof b);
    int ret = h->counters->get(h->counters, txn, &k, &d, flags);
    *v = 0;
    if (ret == DB_NOTFOUND)
        return 0;
    if (ret == 0 && d.size == sizeof b)
        *v = store_get64(b);
    return ret;
}

static int ctr_write(handles *h, DB_TXN *txn, const char *name, uint64_t v)
{
    uint8_t b[8];
    DBT k, d;
    store_put64(b, v);
    dbt_in(&k, name, strlen(name));
    dbt_in(&d, b, sizeof b);
    return h->counters->put(h->counters, txn, &k, &d, 0);
}

typedef struct totals {
    uint64_t v[4];    /* entries, bytes, evictions, expired_removed */
    uint64_t orig[4]; /* as read, so only changed ones are written */
} totals;

enum { T_ENTRIES, T_BYTES, T_EVICTIONS, T_EXPIRED };
static const char *const totals_names[4] = {CTR_ENTRIES, CTR_BYTES, CTR_EVICTIONS, CTR_EXPIRED};

/*
 * Writers read the totals first, with DB_RMW: every transaction that changes
 * the cache takes the write lock on the counters page before touching
 * cache.db or expiry.db. Writers are thereby serialised at their first step,
 * where a conflict costs nothing to retry, instead of colliding half-way
 * on each other's pages (cache misses are rare next to reads; serialising
 * their stores costs nothing that matters).
 */
static int totals_read(handles *h, DB_TXN *txn, totals *t, u_int32_t flags)
{
    for (int i = 0; i < 4; i++) {
        int ret = ctr_read(h, txn, totals_names[i], flags, &t->v[i]);
        if (ret)
            return ret;
        t->orig[i] = t->v[i];
    }
    return 0;
}

static int totals_write(handles *h, DB_TXN *txn, const totals *t)
{
    for (int i = 0; i < 4; i++) {
        if (t->v[i] == t->orig[i])
            continue;
        int ret = ctr_write(h, txn, totals_names[i], t->v[i]);
        if (ret)
            return ret;
    }
    return 0;
}

/* ---- entries ------------------------------------------------------------- */

/*
 * Deletes key's cache record and its expiry record and takes them off the
 * totals. *found says whether there was a record. A record whose header is
 * not ours is deleted too (it can't be served), with a warning.
 */
static int entry_remove(handles *h, DB_TXN *txn, const uint8_t *key, totals *t, int *found)
{
    uint8_t hdr[HDR_LEN];
    store_meta m;
    DBT k, d;
    *found = 0;
    dbt_in(&k, key, STORE_KEY_LEN);
    dbt_part(&d, hdr, 0, HDR_LEN);
    int ret = h->cache->get(h->cache, txn, &k, &d, DB_RMW);
    if (ret == DB_NOTFOUND)
        return 0;
    if (ret)
        return ret;
    *found = 1;
    int good = hdr_decode(hdr, d.size, &m) == 0;
    if ((ret = h->cache->del(h->cache, txn, &k, 0)) != 0)
        return ret;
    if (good) {
        uint8_t ek[EXP_KEY_LEN];
        DBT x;
        exp_key(ek, m.expires, key);
        dbt_in(&x, ek, sizeof ek);
        ret = h->expiry->del(h->expiry, txn, &x, 0);
        if (ret && ret != DB_NOTFOUND)
            return ret;
        t->v[T_BYTES] -= m.size < t->v[T_BYTES] ? m.size : t->v[T_BYTES];
    } else {
        rl_warn("store %s: dropped a cache record with an unknown header", h->home);
    }
    if (t->v[T_ENTRIES])
        t->v[T_ENTRIES]--;
    return 0;
}

/*
 * Removes the entry closest to expiry (the first expiry record). *evicted is
 * 0 when that record was an orphan (no cache entry), which is dropped.
 * DB_NOTFOUND when the index is empty.
 */
static int evict_one(handles *h, DB_TXN *txn, totals *t, int *evicted)
{
    DBC *c = NULL;
    uint8_t ek[EXP_KEY_LEN];
    DBT k, d;
    *evicted = 0;
    int ret = h->expiry->cursor(h->expiry, txn, &c, 0);
    if (ret)
        return ret;
    dbt_out(&k, ek, sizeof ek);
    dbt_part(&d, NULL, 0, 0);
    ret = c->get(c, &k, &d, DB_FIRST | DB_RMW);
    int closed = c->close(c);
    if (ret || (ret = closed) != 0)
        return ret;
    if (k.size == EXP_KEY_LEN) {
        if ((ret = entry_remove(h, txn, ek + 8, t, evicted)) != 0)
            return ret;
        if (*evicted)
            return 0;
    }
    DBT x;
    dbt_in(&x, ek, k.size);
    ret = h->expiry->del(h->expiry, txn, &x, 0);
    return ret == DB_NOTFOUND ? 0 : ret;
}

static int over_caps(const store *s, const totals *t, uint64_t len)
{
    if (s->max_entries && t->v[T_ENTRIES] + 1 > s->max_entries)
        return 1;
    return s->max_bytes && t->v[T_BYTES] + len > s->max_bytes;
}

typedef struct put_arg {
    const uint8_t *key;
    uint64_t expires;
    const uint8_t *rec; /* header + value */
    size_t rec_len;
    uint64_t len; /* value bytes */
} put_arg;

static int put_body(handles *h, DB_TXN *txn, op *o)
{
    put_arg *a = o->arg;
    totals t;
    int found, ret;
    if ((ret = totals_read(h, txn, &t, DB_RMW)) != 0)
        return ret;
    if ((ret = entry_remove(h, txn, a->key, &t, &found)) != 0)
        return ret;
    while (over_caps(o->s, &t, a->len)) {
        int evicted;
        ret = evict_one(h, txn, &t, &evicted);
        if (ret == DB_NOTFOUND) {
            /* Nothing left to evict, yet the totals say we are over: they
             * drifted (they can't under normal operation). Start again
             * from an empty table rather than refusing every store. */
            rl_warn("store %s: totals (%llu entries, %llu bytes) disagree with an empty "
                    "expiry index; resetting them",
                    h->home, (unsigned long long)t.v[T_ENTRIES], (unsigned long long)t.v[T_BYTES]);
            t.v[T_ENTRIES] = t.v[T_BYTES] = 0;
            break;
        }
        if (ret)
            return ret;
        if (evicted)
            t.v[T_EVICTIONS]++;
    }
    DBT k, d;
    dbt_in(&k, a->key, STORE_KEY_LEN);
    dbt_in(&d, a->rec, a->rec_len);
    if ((ret = h->cache->put(h->cache, txn, &k, &d, 0)) != 0)
        return ret;
    uint8_t ek[EXP_KEY_LEN];
    DBT x, e;
    exp_key(ek, a->expires, a->key);
    dbt_in(&x, ek, sizeof ek);
    dbt_in(&e, "", 0);
    if ((ret = h->expiry->put(h->expiry, txn, &x, &e, 0)) != 0)
        return ret;
    t.v[T_ENTRIES]++;
    t.v[T_BYTES] += a->len;
    return totals_write(h, txn, &t);
}

rl_err store_cache_put(store *s, const uint8_t key[STORE_KEY_LEN], const store_meta *meta,
                       const void *value, size_t len)
{
    if ((s->max_entry_bytes && len > s->max_entry_bytes) || (s->max_bytes && len > s->max_bytes) ||
        len > UINT32_MAX - HDR_LEN)
        return RL_TOO_LARGE;
    uint8_t *rec = malloc(HDR_LEN + len);
    if (!rec)
        return RL_NOMEM;
    store_meta m = {.created = meta->created, .expires = meta->expires, .hits = 0, .size = len};
    hdr_encode(rec, &m);
    if (len)
        memcpy(rec + HDR_LEN, value, len);
    put_arg a = {
        .key = key, .expires = meta->expires, .rec = rec, .rec_len = HDR_LEN + len, .len = len};
    op o = {.what = "storing a cache entry", .body = put_body, .idempotent = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    free(rec);
    return e;
}

typedef struct get_arg {
    const uint8_t *key;
    DBT data; /* DB_DBT_REALLOC: survives retries, freed by the caller */
} get_arg;

static int get_body(handles *h, DB_TXN *txn, op *o)
{
    get_arg *a = o->arg;
    DBT k;
    dbt_in(&k, a->key, STORE_KEY_LEN);
    return h->cache->get(h->cache, txn, &k, &a->data, 0);
}

rl_err store_cache_get(store *s, const uint8_t key[STORE_KEY_LEN], store_meta *meta, rl_buf *value)
{
    get_arg a = {.key = key};
    a.data.flags = DB_DBT_REALLOC;
    op o = {.what = "reading a cache entry", .body = get_body, .idempotent = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (e != RL_OK)
        goto out;
    store_meta m;
    if (hdr_decode(a.data.data, a.data.size, &m) != 0 || a.data.size - HDR_LEN != m.size) {
        rl_error("store %s: a cache entry has a damaged header; ignoring it", s->home);
        e = RL_STORE;
        goto out;
    }
    if (value &&
        (e = rl_buf_append(value, (uint8_t *)a.data.data + HDR_LEN, (size_t)m.size)) != RL_OK)
        goto out;
    if (meta)
        *meta = m;
out:
    free(a.data.data);
    return e;
}

static int touch_body(handles *h, DB_TXN *txn, op *o)
{
    const uint8_t *key = o->arg;
    uint8_t hdr[HDR_LEN], b[8];
    store_meta m;
    DBT k, d;
    dbt_in(&k, key, STORE_KEY_LEN);
    dbt_part(&d, hdr, 0, HDR_LEN);
    int ret = h->cache->get(h->cache, txn, &k, &d, DB_RMW);
    if (ret)
        return ret;
    if (hdr_decode(hdr, d.size, &m) != 0)
        return DB_NOTFOUND; /* not an entry we can count hits on */
    store_put64(b, m.hits + 1);
    dbt_in(&d, b, sizeof b);
    d.flags = DB_DBT_PARTIAL;
    d.doff = HDR_OFF_HITS;
    d.dlen = sizeof b;
    return h->cache->put(h->cache, txn, &k, &d, 0);
}

rl_err store_cache_touch(store *s, const uint8_t key[STORE_KEY_LEN])
{
    op o = {.what = "counting a cache hit", .body = touch_body, .arg = (void *)key};
    return store_op_run(s, &o);
}

static int del_body(handles *h, DB_TXN *txn, op *o)
{
    totals t;
    int found, ret;
    if ((ret = totals_read(h, txn, &t, DB_RMW)) != 0)
        return ret;
    if ((ret = entry_remove(h, txn, o->arg, &t, &found)) != 0)
        return ret;
    if (!found)
        return DB_NOTFOUND;
    return totals_write(h, txn, &t);
}

rl_err store_cache_del(store *s, const uint8_t key[STORE_KEY_LEN])
{
    op o = {
        .what = "deleting a cache entry", .body = del_body, .idempotent = 1, .arg = (void *)key};
    return store_op_run(s, &o);
}

typedef struct purge_arg {
    uint64_t cutoff;  /* purge_expired: entries with expires < cutoff go */
    int all;          /* purge_all */
    uint64_t removed; /* this batch */
    int done;
    uint8_t keys[PURGE_BATCH][EXP_KEY_LEN];
} purge_arg;

/* Collects up to PURGE_BATCH keys from the start of db (with write locks, as
 * they are about to be deleted). When purging expired entries (the expiry
 * index, !a->all), stops at the first record not older than cutoff.
 * Returns the count in *n. */
static int collect_keys(DB_TXN *txn, DB *db, size_t key_len, uint64_t cutoff, purge_arg *a,
                        unsigned *n)
{
    DBC *c = NULL;
    DBT k, d;
    *n = 0;
    int ret = db->cursor(db, txn, &c, 0);
    if (ret)
        return ret;
    for (u_int32_t flag = DB_FIRST; *n < PURGE_BATCH; flag = DB_NEXT) {
        uint8_t *out = a->keys[*n];
        dbt_out(&k, out, EXP_KEY_LEN);
        dbt_part(&d, NULL, 0, 0);
        ret = c->get(c, &k, &d, flag | DB_RMW);
        if (ret == DB_NOTFOUND) {
            ret = 0;
            break;
        }
        if (ret)
            break;
        if (k.size != key_len)
            continue; /* not written by this code; leave it */
        if (key_len == EXP_KEY_LEN && !a->all && store_get64(out) >= cutoff)
            break;
        ++*n;
    }
    int closed = c->close(c);
    return ret ? ret : closed;
}

static int purge_body(handles *h, DB_TXN *txn, op *o)
{
    purge_arg *a = o->arg;
    totals t;
    unsigned n;
    int found, ret;
    a->removed = 0;
    a->done = 0;
    if ((ret = totals_read(h, txn, &t, DB_RMW)) != 0)
        return ret;
    if (a->all) {
        if ((ret = collect_keys(txn, h->cache, STORE_KEY_LEN, 0, a, &n)) != 0)
            return ret;
        for (unsigned i = 0; i < n; i++) {
            if ((ret = entry_remove(h, txn, a->keys[i], &t, &found)) != 0)
                return ret;
            a->removed += (uint64_t)found;
        }
        if (n == 0) {
            /* The table is empty: drop index orphans, if any, and make the
             * totals agree with the emptiness. */
            if ((ret = collect_keys(txn, h->expiry, EXP_KEY_LEN, 0, a, &n)) != 0)
                return ret;
            for (unsigned i = 0; i < n; i++) {
                DBT x;
                dbt_in(&x, a->keys[i], EXP_KEY_LEN);
                if ((ret = h->expiry->del(h->expiry, txn, &x, 0)) != 0 && ret != DB_NOTFOUND)
                    return ret;
            }
            if (n == 0) {
                t.v[T_ENTRIES] = t.v[T_BYTES] = 0;
                a->done = 1;
            }
        }
    } else {
        if ((ret = collect_keys(txn, h->expiry, EXP_KEY_LEN, a->cutoff, a, &n)) != 0)
            return ret;
        for (unsigned i = 0; i < n; i++) {
            if ((ret = entry_remove(h, txn, a->keys[i] + 8, &t, &found)) != 0)
                return ret;
            if (found) {
                a->removed++;
                t.v[T_EXPIRED]++;
            } else {
                DBT x;
                dbt_in(&x, a->keys[i], EXP_KEY_LEN);
                if ((ret = h->expiry->del(h->expiry, txn, &x, 0)) != 0 && ret != DB_NOTFOUND)
                    return ret;
            }
        }
        a->done = n < PURGE_BATCH;
    }
    return totals_write(h, txn, &t);
}

/* Purges in transactions of PURGE_BATCH entries so that no transaction
 * holds many locks or blocks writers for long. */
static rl_err purge_run(store *s, purge_arg *a, const char *what, uint64_t *removed)
{
    uint64_t total = 0;
    rl_err e = RL_OK;
    op o = {.what = what, .body = purge_body, .idempotent = 1, .arg = a};
    do {
        if ((e = store_op_run(s, &o)) != RL_OK)
            break;
        total += a->removed;
    } while (!a->done);
    if (removed)
        *removed = total;
    return e;
}

rl_err store_cache_purge_expired(store *s, uint64_t now, uint64_t grace, uint64_t *removed)
{
    purge_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    a->cutoff = now > grace ? now - grace : 0;
    rl_err e = purge_run(s, a, "purging expired cache entries", removed);
    free(a);
    return e;
}

rl_err store_cache_purge_all(store *s, uint64_t *removed)
{
    purge_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    a->all = 1;
    rl_err e = purge_run(s, a, "purging the cache", removed);
    free(a);
    return e;
}

typedef struct foreach_arg {
    int (*fn)(void *ctx, const uint8_t key[STORE_KEY_LEN], const store_meta *meta);
    void *ctx;
} foreach_arg;

static int foreach_item(void *ctx, const store_item *item)
{
    const foreach_arg *a = ctx;
    return item->damaged ? 0 : a->fn(a->ctx, item->key, &item->meta);
}

/* store_cache_scan of the headers alone, without the records this code
 * did not write. */
rl_err store_cache_foreach(store *s,
                           int (*fn)(void *ctx, const uint8_t key[STORE_KEY_LEN],
                                     const store_meta *meta),
                           void *ctx)
{
    foreach_arg a = {fn, ctx};
    return store_cache_scan(s, 0, foreach_item, &a);
}

static int stats_body(handles *h, DB_TXN *txn, op *o)
{
    totals t;
    int ret = totals_read(h, txn, &t, 0);
    if (ret == 0)
        memcpy(o->arg, t.v, sizeof t.v);
    return ret;
}

rl_err store_stats_get(store *s, store_stats *out)
{
    uint64_t v[4];
    op o = {.what = "reading store statistics", .body = stats_body, .idempotent = 1, .arg = v};
    rl_err e = store_op_run(s, &o);
    if (e != RL_OK)
        return e;
    out->entries = v[T_ENTRIES];
    out->bytes = v[T_BYTES];
    out->evictions = v[T_EVICTIONS];
    out->expired_removed = v[T_EXPIRED];
    return RL_OK;
}

/* ---- named counters ------------------------------------------------------ */

typedef struct counter_arg {
    const char *name;
    int64_t delta;
    uint64_t value;
} counter_arg;

static int counter_add_body(handles *h, DB_TXN *txn, op *o)
{
    counter_arg *a = o->arg;
    uint64_t v;
    int ret = ctr_read(h, txn, a->name, DB_RMW, &v);
    if (ret)
        return ret;
    return ctr_write(h, txn, a->name, v + (uint64_t)a->delta);
}

static int counter_get_body(handles *h, DB_TXN *txn, op *o)
{
    counter_arg *a = o->arg;
    return ctr_read(h, txn, a->name, 0, &a->value);
}

static int counter_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > COUNTER_NAME_MAX) {
        rl_error("store: invalid counter name (empty or longer than %d)", COUNTER_NAME_MAX);
        return 0;
    }
    return 1;
}

rl_err store_counter_add(store *s, const char *name, int64_t delta)
{
    if (!counter_name_ok(name))
        return RL_INTERNAL;
    if (strncmp(name, CTR_RESERVED_PREFIX, sizeof CTR_RESERVED_PREFIX - 1) == 0) {
        rl_error("store: counter %s is maintained by the store and cannot be changed", name);
        return RL_INTERNAL;
    }
    counter_arg a = {.name = name, .delta = delta};
    op o = {.what = "updating a counter", .body = counter_add_body, .arg = &a};
    return store_op_run(s, &o);
}

rl_err store_counter_get(store *s, const char *name, uint64_t *value)
{
    if (!counter_name_ok(name))
        return RL_INTERNAL;
    counter_arg a = {.name = name};
    op o = {.what = "reading a counter", .body = counter_get_body, .idempotent = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (e == RL_OK)
        *value = a.value;
    return e;
}

/* ---- maintenance ---------------------------------------------------------- */

/* The first failchk call after a death may do the cleanup and still return
 * EBUSY (seen on this platform); the second call reports the real state. */
static int failchk_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    (void)o;
    int ret = h->env->failchk(h->env, 0);
    if (ret == EBUSY)
        ret = h->env->failchk(h->env, 0);
    if (ret == EBUSY) {
        rl_warn("store %s: failchk still busy; will retry on the next maintenance run", h->home);
        ret = 0;
    }
    return ret;
}

/* Any call into the environment fails with DB_RUNRECOVERY once it was
 * panicked or recovered by another process; taking and freeing a locker
 * id is about the cheapest. */
static int probe_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    (void)o;
    u_int32_t id;
    int ret = h->env->lock_id(h->env, &id);
    return ret ? ret : h->env->lock_id_free(h->env, id);
}

static int checkpoint_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    (void)o;
    return h->env->txn_checkpoint(h->env, CHECKPOINT_KB, CHECKPOINT_MIN, 0);
}

/* The turns of the wake file (wake_take_turn) that store_maintain's jobs
 * take: each job is done by one process per interval for the whole store.
 * Why: every job here works on the whole environment, and with a hundred
 * processes (mod_fcgid starts one per concurrent request) a hundred
 * failchks, checkpoints and sweeps a second contended with the requests
 * for nothing. */
enum { TURN_MAINTAIN = 0, TURN_PURGE = 1 };

rl_err store_maintain(store *s, uint64_t now)
{
    if (!wake_take_turn(s->wake, TURN_MAINTAIN, now, 1)) {
        /* Another process does this second's work for the store. This one
         * must still notice, within the second, an environment that was
         * recovered under it: its own request threads may all be stranded
         * (see store_reopen), leaving nothing else to trip over it. */
        op probe = {.what = "checking the environment", .body = probe_body, .no_txn = 1};
        return store_op_run(s, &probe);
    }
    op fc = {
        .what = "freeing what dead processes held (failchk)", .body = failchk_body, .no_txn = 1};
    rl_err e = store_op_run(s, &fc);
    op cp = {.what = "checkpointing", .body = checkpoint_body, .no_txn = 1};
    rl_err e2 = store_op_run(s, &cp);
    if (e == RL_OK)
        e = e2;

    flight_maintain(s, now * 1000); /* logs its own failures */

    if (wake_take_turn(s->wake, TURN_PURGE, now, PURGE_INTERVAL)) {
        uint64_t removed = 0;
        e2 = store_cache_purge_expired(s, now, PURGE_GRACE, &removed);
        if (e == RL_OK)
            e = e2;
        if (removed)
            rl_info("store %s: purged %llu expired entries", s->home, (unsigned long long)removed);
    }
    return e;
}

/* ---- the secret check ------------------------------------------------------- */

/*
 * Why a check file. Opening with DB_RECOVER and the wrong password crashed
 * libdb when no regions existed (recovery decrypts the logs with the key it
 * was given), so the secret must be verified before env->open. check.db is
 * a tiny database outside the environment, encrypted by Berkeley DB itself
 * (AES + HMAC over each page) with the store's secret, holding one known
 * record. It is written once, before the environment is first created, and
 * never again, so any process can open it read-only on its own, at any
 * time: a wrong secret fails its page checksum cleanly (EINVAL). Being
 * Berkeley DB's own encryption, it reveals no more about the secret than
 * the store's databases already do, and it needs no other crypto library.
 */
static int check_open(const char *secret, const char *path, u_int32_t flags, DB **out)
{
    DB *db = NULL;
    *out = NULL;
    int ret = db_create(&db, NULL, 0);
    if (ret)
        return ret;
    db->set_errcall(db, bdb_errcall);
    if ((ret = db->set_encrypt(db, secret, DB_ENCRYPT_AES)) == 0)
        ret = db->open(db, NULL, path, NULL, DB_BTREE, flags, 0600);
    if (ret) {
        (void)db->close(db, 0);
        return ret;
    }
    *out = db;
    return 0;
}

int store_check_file(const char *path, const char *secret)
{
    DB *db = NULL;
    char val[sizeof CHECK_VALUE];
    DBT k, d;
    int ret = check_open(secret, path, DB_RDONLY, &db);
    if (ret == 0) {
        dbt_in(&k, CHECK_KEY, sizeof CHECK_KEY - 1);
        dbt_out(&d, val, sizeof val);
        ret = db->get(db, NULL, &k, &d, 0);
        if (ret == 0 && (d.size != sizeof CHECK_VALUE - 1 || memcmp(val, CHECK_VALUE, d.size) != 0))
            ret = EINVAL;
        (void)db->close(db, 0);
    }
    return ret;
}

static rl_err check_verify(store *s, const char *path)
{
    int ret = store_check_file(path, s->secret);
    if (ret) {
        rl_error("store %s: the secret in the key file does not open this store (%s: %s); "
                 "is it the key file the store was created with?",
                 s->home, path, db_strerror(ret));
        return RL_STORE;
    }
    return RL_OK;
}

/* Whether the home holds databases or logs of an existing environment. */
static int home_has_data(const char *home)
{
    int found = 0;
    DIR *d = opendir(home);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, "cache.db") == 0 || strcmp(e->d_name, "expiry.db") == 0 ||
            strcmp(e->d_name, "counters.db") == 0 || strncmp(e->d_name, "log.", 4) == 0)
            found = 1;
    }
    closedir(d);
    return found;
}

/* Creates check.db under a temporary name and link()s it into place, which
 * fails with EEXIST if another process was first: then theirs is verified. */
static rl_err check_create(store *s, const char *path)
{
    rl_err e = RL_STORE;
    DB *db = NULL;
    rl_buf tmp;
    rl_buf_init(&tmp, 0);
    if (rl_buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid()) != RL_OK) {
        e = RL_NOMEM;
        goto out;
    }
    (void)unlink(tmp.data);
    int ret = check_open(s->secret, tmp.data, DB_CREATE | DB_EXCL, &db);
    if (ret == 0) {
        DBT k, d;
        dbt_in(&k, CHECK_KEY, sizeof CHECK_KEY - 1);
        dbt_in(&d, CHECK_VALUE, sizeof CHECK_VALUE - 1);
        ret = db->put(db, NULL, &k, &d, 0);
        int closed = db->close(db, 0); /* writes the pages out */
        if (ret == 0)
            ret = closed;
    }
    if (ret) {
        bdb_fail(s->home, "creating the check file", ret);
        goto out;
    }
    int fd = open(tmp.data, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        rl_error("store %s: syncing %s: %s", s->home, tmp.data, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    close(fd);
    if (link(tmp.data, path) != 0) {
        if (errno != EEXIST) {
            rl_error("store %s: creating %s: %s", s->home, path, strerror(errno));
            goto out;
        }
        e = check_verify(s, path);
        goto out;
    }
    e = RL_OK;
out:
    if (tmp.data)
        (void)unlink(tmp.data);
    rl_buf_release(&tmp);
    return e;
}

static rl_err check_secret(store *s)
{
    rl_err e;
    rl_buf path;
    rl_buf_init(&path, 0);
    if (rl_buf_printf(&path, "%s/%s", s->home, CHECK_FILE) != RL_OK) {
        e = RL_NOMEM;
        goto out;
    }
    struct stat st;
    if (stat(path.data, &st) == 0) {
        e = check_verify(s, path.data);
        goto out;
    }
    if (errno != ENOENT) {
        rl_error("store %s: cannot stat %s: %s", s->home, path.data, strerror(errno));
        e = RL_STORE;
        goto out;
    }
    if (home_has_data(s->home)) {
        rl_error("store %s: the store has data but no %s, so the secret cannot be checked "
                 "before recovery; restore the file, or remove the store to start empty",
                 s->home, CHECK_FILE);
        e = RL_STORE;
        goto out;
    }
    e = check_create(s, path.data);
out:
    rl_buf_release(&path);
    return e;
}

/* ---- open, close, remove ----------------------------------------------------- */

rl_err store_open(const store_options *opt, store **out)
{
    rl_err e;
    int claimed = 0;
    *out = NULL;
    if (!opt || !opt->home || !*opt->home ||
        ((!opt->key_file || !*opt->key_file) && (!opt->key_env || !*opt->key_env))) {
        rl_error("store: home and key_file (or key_env) must be configured");
        return RL_CONFIG;
    }
    store *s = calloc(1, sizeof *s);
    if (!s)
        return RL_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca; /* store_reopen's timed wait runs on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &ca);
    pthread_condattr_destroy(&ca);
    s->max_bytes = opt->max_bytes;
    s->max_entries = opt->max_entries;
    s->max_entry_bytes = opt->max_entry_bytes;
    s->cache_mb = opt->cache_mb ? opt->cache_mb : 16;
    s->threads = (uint32_t)(opt->max_threads > 16 ? opt->max_threads : 16) + 8;
    s->exclusive = opt->lock != NULL;

    if ((e = store_mkdirs(opt->home, 0700)) != RL_OK) {
        e = RL_STORE;
        goto fail;
    }
    s->home = realpath(opt->home, NULL);
    if (!s->home) {
        rl_error("store: cannot resolve %s: %s", opt->home, strerror(errno));
        e = RL_STORE;
        goto fail;
    }
    int rc = homes_claim(s->home);
    if (rc != 0) {
        if (rc > 0)
            rl_error("store %s: already open in this process; share that handle", s->home);
        e = rc > 0 ? RL_STORE : RL_NOMEM;
        goto fail;
    }
    claimed = 1;
    if (s->exclusive && strcmp(store_lock_home(opt->lock), s->home) != 0) {
        rl_error("store %s: the exclusive lock is for another store (%s)", s->home,
                 store_lock_home(opt->lock));
        e = RL_INTERNAL;
        goto fail;
    }
    if ((e = store_key_read(opt, &s->secret, &s->secret_len)) != RL_OK) {
        if (e != RL_NOMEM)
            e = RL_STORE;
        goto fail;
    }
    if ((e = check_secret(s)) != RL_OK)
        goto fail;
    s->shm_key = shm_key_for(s->home);
    detach_stale_segments(s); /* a forked child's copies of its parent's */
    if (wake_open(s->home, &s->wake) != RL_OK) {
        e = RL_STORE;
        goto fail;
    }
    if (handles_open_first(s, &s->cur) != 0) {
        e = RL_STORE;
        goto fail;
    }
    *out = s;
    return RL_OK;
fail:
    wake_close(s->wake);
    if (claimed)
        homes_release(s->home);
    store_secret_free(s->secret, s->secret_len);
    free(s->home);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return e;
}

/* Handle sets that threads were stranded in (see store_reopen) are not
 * freed: those threads still point into them. */
store_wake *store_wake_of(store *s)
{
    return s->wake;
}

unsigned store_stranded_threads(store *s)
{
    pthread_mutex_lock(&s->mu);
    unsigned n = s->stranded_threads;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void store_close(store *s)
{
    if (!s)
        return;
    if (s->cur)
        handles_close(s, s->cur, 0, 0, s->stranded == 0);
    homes_release(s->home);
    if (s->stranded == 0) /* stranded threads may still point into it */
        wake_close(s->wake);
    store_secret_free(s->secret, s->secret_len);
    free(s->home);
    if (s->stranded == 0) {
        pthread_cond_destroy(&s->changed);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
}

/*
 * DB_ENV->remove finds the segments through __db.001. If that file is gone
 * the segments would leak, so the keys this home hashes to are swept too:
 * a segment there is removed only if we own it and nobody is attached.
 */
rl_err store_remove(const store_options *opt)
{
    rl_err e = RL_OK;
    DB_ENV *env = NULL;
    if (!opt || !opt->home || !*opt->home) {
        rl_error("store: home must be configured");
        return RL_CONFIG;
    }
    char *home = realpath(opt->home, NULL);
    if (!home) {
        if (errno == ENOENT)
            return RL_OK;
        rl_error("store: cannot resolve %s: %s", opt->home, strerror(errno));
        return RL_STORE;
    }
    if (homes_contains(home)) {
        rl_error("store %s: cannot remove an environment this process has open", home);
        e = RL_STORE;
        goto out;
    }
    long key = shm_key_for(home);
    int ret = db_env_create(&env, 0);
    if (ret == 0) {
        env->set_errcall(env, bdb_errcall);
        ret = env->set_shm_key(env, key);
        int removed = env->remove(env, home, DB_FORCE); /* frees env in any case */
        if (ret == 0)
            ret = removed;
    }
    if (ret && ret != ENOENT) {
        bdb_fail(home, "removing the environment's regions", ret);
        e = RL_STORE;
    }
    for (long k = key; k < key + SHM_KEY_SPAN; k++) {
        int id = shmget((key_t)k, 0, 0);
        struct shmid_ds ds;
        if (id < 0 || shmctl(id, IPC_STAT, &ds) != 0)
            continue;
        if (ds.shm_nattch == 0 && ds.shm_perm.uid == geteuid() && shmctl(id, IPC_RMID, NULL) == 0)
            rl_info("store %s: removed leftover shared memory segment %d", home, id);
    }
out:
    free(home);
    return e;
}

/*
 * For a process holding store_lock_exclusive: nobody else is attached, so
 * the regions can go, without Berkeley DB's env->remove (which must not be
 * trusted to leave __db.register alone: closing a descriptor of it would
 * drop the lock). Region files first, then the SysV segments this home's
 * keys name, if we own them and nobody is attached.
 */
void store_drop_regions(const char *home)
{
    char *real = realpath(home, NULL);
    if (!real)
        return;
    DIR *d = opendir(real);
    if (d) {
        struct dirent *e;
        char path[4096];
        while ((e = readdir(d)) != NULL) {
            if (strncmp(e->d_name, "__db.", 5) != 0 || strcmp(e->d_name, "__db.register") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", real, e->d_name);
            (void)unlink(path);
        }
        closedir(d);
    }
    long key = shm_key_for(real);
    for (long k = key; k < key + SHM_KEY_SPAN; k++) {
        int id = shmget((key_t)k, 0, 0);
        struct shmid_ds ds;
        if (id < 0 || shmctl(id, IPC_STAT, &ds) != 0)
            continue;
        if (ds.shm_nattch == 0 && ds.shm_perm.uid == geteuid())
            (void)shmctl(id, IPC_RMID, NULL);
    }
    free(real);
}

const char *store_home_of(const store *s)
{
    return s->home;
}

const char *store_secret_of(const store *s)
{
    return s->secret;
}

/* ---- administration: scans with values, prefix lookup, purge by match --- */

#define SCAN_BATCH 64               /* records per transaction of a scan */
#define SCAN_BATCH_BYTES (4u << 20) /* ... or this many value bytes */

typedef struct scan_item {
    uint8_t key[STORE_KEY_LEN];
    store_meta meta;
    size_t off, len; /* of the value prefix in scan_arg.values */
    int damaged;
} scan_item;

typedef struct scan_arg {
    size_t prefix; /* value bytes wanted; SIZE_MAX: all */
    uint8_t last[STORE_KEY_LEN];
    int started;
    int done;
    unsigned n;
    scan_item items[SCAN_BATCH];
    rl_buf values; /* the batch's value prefixes, back to back */
    DBT data;      /* DB_DBT_REALLOC, reused across records */
} scan_arg;

/* Decodes a record read into d (header + the first bytes of the value; the
 * whole value when whole) as an item; sets damaged when it is not ours. */
static void item_from_record(const DBT *d, int whole, store_meta *m, int *damaged)
{
    memset(m, 0, sizeof *m);
    *damaged = hdr_decode(d->data, d->size, m) != 0 ||
               (whole ? d->size - HDR_LEN != m->size : d->size - HDR_LEN > m->size);
    if (*damaged)
        memset(m, 0, sizeof *m);
}

/* Sets up a cursor read of key + the first a->prefix value bytes. */
static void scan_dbts(scan_arg *a, DBT *k, uint8_t *kb)
{
    dbt_out(k, kb, STORE_KEY_LEN);
    a->data.flags = DB_DBT_REALLOC;
    if (a->prefix != SIZE_MAX) {
        a->data.flags |= DB_DBT_PARTIAL;
        a->data.doff = 0;
        a->data.dlen =
            (u_int32_t)(HDR_LEN +
                        (a->prefix < UINT32_MAX - HDR_LEN ? a->prefix : UINT32_MAX - HDR_LEN));
    }
}

int store_walk_batch(DB *db, DB_TXN *txn, u_int32_t cursor_flags, const void *from, size_t from_len,
                     int after_from, DBT *k, DBT *d, walk_visit visit, void *ctx, int *at_end)
{
    DBC *c = NULL;
    *at_end = 0;
    int ret = db->cursor(db, txn, &c, cursor_flags);
    if (ret)
        return ret;
    if (from) {
        memcpy(k->data, from, from_len);
        k->size = (u_int32_t)from_len;
        ret = c->get(c, k, d, DB_SET_RANGE);
        if (ret == 0 && after_from && k->size == from_len && memcmp(k->data, from, from_len) == 0)
            ret = c->get(c, k, d, DB_NEXT);
    } else {
        ret = c->get(c, k, d, DB_FIRST);
    }
    for (int stop = 0; ret == 0; ret = c->get(c, k, d, DB_NEXT))
        if ((ret = visit(ctx, k, d, &stop)) != 0 || stop)
            break;
    if (ret == DB_NOTFOUND) {
        *at_end = 1;
        ret = 0;
    }
    int closed = c->close(c);
    return ret ? ret : closed;
}

/* Adds one cache record to the batch (o's scan_arg). */
static int scan_visit(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    op *o = ctx;
    scan_arg *a = o->arg;
    if (k->size == STORE_KEY_LEN) {
        scan_item *it = &a->items[a->n];
        memcpy(it->key, k->data, STORE_KEY_LEN);
        item_from_record(d, a->prefix == SIZE_MAX, &it->meta, &it->damaged);
        it->off = a->values.len;
        it->len = d->size > HDR_LEN ? d->size - HDR_LEN : 0;
        if (it->len && rl_buf_append(&a->values, (uint8_t *)d->data + HDR_LEN, it->len) != RL_OK) {
            o->err = RL_NOMEM;
            *stop = 1;
            return 0;
        }
        a->n++;
    }
    *stop = a->n == SCAN_BATCH || a->values.len >= SCAN_BATCH_BYTES;
    return 0;
}

static int scan_body(handles *h, DB_TXN *txn, op *o)
{
    scan_arg *a = o->arg;
    uint8_t kb[STORE_KEY_LEN];
    DBT k;
    a->n = 0;
    a->values.len = 0;
    scan_dbts(a, &k, kb);
    return store_walk_batch(h->cache, txn, DB_READ_COMMITTED, a->started ? a->last : NULL,
                            STORE_KEY_LEN, 1, &k, &a->data, scan_visit, o, &a->done);
}

rl_err store_cache_scan(store *s, size_t prefix, int (*fn)(void *ctx, const store_item *item),
                        void *ctx)
{
    rl_err e = RL_OK;
    scan_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    a->prefix = prefix;
    rl_buf_init(&a->values, 0);
    op o = {.what = "scanning cache entries", .body = scan_body, .idempotent = 1, .arg = a};
    for (;;) {
        if ((e = store_op_run(s, &o)) != RL_OK)
            break;
        for (unsigned i = 0; i < a->n; i++) {
            const scan_item *it = &a->items[i];
            store_item item = {.meta = it->meta,
                               .value = (const uint8_t *)a->values.data + it->off,
                               .value_len = it->len,
                               .damaged = it->damaged};
            memcpy(item.key, it->key, STORE_KEY_LEN);
            if (fn(ctx, &item) != 0)
                goto out;
        }
        if (a->done || a->n == 0)
            break;
        memcpy(a->last, a->items[a->n - 1].key, STORE_KEY_LEN);
        a->started = 1;
    }
out:
    free(a->data.data);
    rl_buf_release(&a->values);
    free(a);
    return e;
}

typedef struct find_arg {
    const uint8_t *prefix;
    unsigned nibbles;
    uint8_t key[STORE_KEY_LEN];
    unsigned matches;
} find_arg;

static int key_has_prefix(const uint8_t *key, const uint8_t *prefix, unsigned nibbles)
{
    unsigned whole = nibbles / 2;
    if (memcmp(key, prefix, whole) != 0)
        return 0;
    return nibbles % 2 == 0 || (key[whole] & 0xf0) == (prefix[whole] & 0xf0);
}

static int find_body(handles *h, DB_TXN *txn, op *o)
{
    find_arg *a = o->arg;
    DBC *c = NULL;
    uint8_t kb[STORE_KEY_LEN];
    DBT k, d;
    a->matches = 0;
    int ret = h->cache->cursor(h->cache, txn, &c, DB_READ_COMMITTED);
    if (ret)
        return ret;
    /* The smallest key with the prefix: the prefix, then zero bits. */
    memset(kb, 0, sizeof kb);
    memcpy(kb, a->prefix, (a->nibbles + 1) / 2);
    if (a->nibbles % 2)
        kb[a->nibbles / 2] &= 0xf0;
    dbt_out(&k, kb, sizeof kb);
    k.size = sizeof kb;
    dbt_part(&d, NULL, 0, 0);
    ret = c->get(c, &k, &d, DB_SET_RANGE);
    while (ret == 0 && a->matches < 2) {
        if (k.size != STORE_KEY_LEN || !key_has_prefix(kb, a->prefix, a->nibbles))
            break;
        if (a->matches++ == 0)
            memcpy(a->key, kb, STORE_KEY_LEN);
        ret = c->get(c, &k, &d, DB_NEXT);
    }
    if (ret == DB_NOTFOUND)
        ret = 0;
    int closed = c->close(c);
    return ret ? ret : closed;
}

rl_err store_cache_find(store *s, const uint8_t *prefix, unsigned nibbles,
                        uint8_t key[STORE_KEY_LEN], unsigned *matches)
{
    if (nibbles == 0 || nibbles > 2 * STORE_KEY_LEN)
        return RL_INTERNAL;
    find_arg a = {.prefix = prefix, .nibbles = nibbles};
    op o = {.what = "looking up a key prefix", .body = find_body, .idempotent = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (e != RL_OK)
        return e;
    *matches = a.matches;
    if (a.matches)
        memcpy(key, a.key, STORE_KEY_LEN);
    return RL_OK;
}

typedef struct match_arg {
    scan_arg scan; /* cursor position and read buffers */
    int (*match)(void *ctx, const store_item *item);
    void *ctx;
    uint8_t from[STORE_KEY_LEN]; /* where the batch starts: after the last */
    int from_started;            /* record of the last committed batch */
    uint64_t removed;            /* this batch */
    unsigned seen;               /* records this batch looked at */
    unsigned nkeys;
    uint8_t keys[PURGE_BATCH][STORE_KEY_LEN];
} match_arg;

/* Asks match about one cache record; keeps its key when chosen. */
static int purge_visit(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    match_arg *m = ctx;
    if (k->size == STORE_KEY_LEN) {
        store_item item = {.value = (const uint8_t *)d->data + HDR_LEN};
        memcpy(item.key, k->data, STORE_KEY_LEN);
        item_from_record(d, m->scan.prefix == SIZE_MAX, &item.meta, &item.damaged);
        item.value_len = d->size > HDR_LEN ? d->size - HDR_LEN : 0;
        if (m->match(m->ctx, &item))
            memcpy(m->keys[m->nkeys++], k->data, STORE_KEY_LEN);
        memcpy(m->scan.last, k->data, STORE_KEY_LEN); /* the batch's last, for the next */
    }
    *stop = ++m->seen == PURGE_BATCH;
    return 0;
}

/*
 * One batch: reads up to PURGE_BATCH records after the last one seen, asks
 * match about each, and deletes the chosen ones in the same transaction.
 * Like every cache writer it takes the totals first (see totals_read).
 */
static int purge_match_body(handles *h, DB_TXN *txn, op *o)
{
    match_arg *m = o->arg;
    scan_arg *a = &m->scan;
    totals t;
    uint8_t kb[STORE_KEY_LEN];
    DBT k;
    m->removed = 0;
    m->seen = 0;
    m->nkeys = 0;
    memcpy(a->last, m->from, STORE_KEY_LEN); /* an attempt may be a retry */
    int ret = totals_read(h, txn, &t, DB_RMW);
    if (ret)
        return ret;
    scan_dbts(a, &k, kb);
    if ((ret = store_walk_batch(h->cache, txn, 0, m->from_started ? m->from : NULL, STORE_KEY_LEN,
                                1, &k, &a->data, purge_visit, m, &a->done)) != 0)
        return ret;
    for (unsigned i = 0; i < m->nkeys; i++) {
        int found;
        if ((ret = entry_remove(h, txn, m->keys[i], &t, &found)) != 0)
            return ret;
        m->removed += (uint64_t)found;
    }
    return totals_write(h, txn, &t);
}

rl_err store_cache_purge_match(store *s, size_t prefix,
                               int (*match)(void *ctx, const store_item *item), void *ctx,
                               uint64_t *removed)
{
    match_arg *m = calloc(1, sizeof *m);
    if (!m)
        return RL_NOMEM;
    m->scan.prefix = prefix;
    m->match = match;
    m->ctx = ctx;
    uint64_t total = 0;
    rl_err e = RL_OK;
    op o = {.what = "purging matching cache entries",
            .body = purge_match_body,
            .idempotent = 1,
            .arg = m};
    for (;;) {
        if ((e = store_op_run(s, &o)) != RL_OK)
            break;
        total += m->removed;
        if (m->scan.done)
            break;
        memcpy(m->from, m->scan.last, STORE_KEY_LEN);
        m->from_started = 1;
    }
    if (removed)
        *removed = total;
    free(m->scan.data.data);
    free(m);
    return e;
}
