/*
 * env.c — the store's Berkeley DB environment: opening it (the secret
 * checked first, check.c), recovering it alone when an open fails and
 * nobody else has it open, setting aside a store no recovery opens, its
 * handle sets and their replacement after another process recovered the
 * environment (store_reopen), closing, and removing its shared memory.
 * Contracts in store.h; the handle sets and the struct store they hang
 * from in store_int.h.
 *
 * Files in the home (the databases' layout is in cache.c, flight.c, token.c
 * and ledger.c):
 * check.db (check.c), wake.map (wake.c: wake-up counters, marks and turns,
 * nothing secret), recency.map (usemap.c: recent hits, digests and times), __db.register
 * (DB_REGISTER's process slots), __db.001 (the ids of the SysV segments that hold the regions), the
 * databases, and the encrypted logs log.NNNNNNNNNN (1 MiB each, allocated when created). Beside the
 * home: home.damaged-DATE (a store set aside) and, for a moment, home.probe-PID (see
 * empty_store_opens).
 *
 * Threads: store_open and store_close run once per handle, on no other
 * thread's toes; everything else here is called by any thread, under
 * store.mu where it touches the handle set (store_reopen) or the process's
 * list of open homes (homes_lock).
 *
 * Failure: every Berkeley DB failure is logged once here, with its own
 * text (store_bdb_fail) and what was under way, and returned as its code.
 */
#include "store/store.h"

#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/cluster.h"
#include "store/keyfile.h"
#include "store/env_int.h"
#include "store/store_int.h"
#include "store/wake.h"

/* How long a reopen waits for threads to leave the old environment. */
#define REOPEN_WAIT_NS 2000000000LL
/* At most one failed reopen attempt per second. */
#define REOPEN_PAUSE_NS 1000000000LL
#define SHM_KEY_SPAN 32 /* SysV keys reserved per environment (it uses 3-6) */

/* ---- Berkeley DB's messages --------------------------------------------- */

/* Logs one Berkeley DB failure with its own text and what was under way. */
void store_bdb_fail(const char *home, const char *what, int ret)
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
void store_bdb_errcall(const DB_ENV *env, const char *pfx, const char *msg)
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
long shm_key_for(const char *realhome)
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
    unsigned waited_ms = 0;
    *out = NULL;
    for (unsigned attempt = 0;; attempt++) {
        DB *db = NULL;
        if ((ret = db_create(&db, env, 0)) != 0) {
            store_bdb_fail(s->home, "creating a database handle", ret);
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
        if (cluster_db_open_wait(s, ret, &waited_ms)) {
            attempt = 0; /* a replica waits for the master's creation of file */
            continue;
        }
        if (!store_retryable(ret) || attempt >= 50) {
            rl_error("store %s: opening %s: %s", s->home, file, db_strerror(ret));
            return ret;
        }
        store_backoff(attempt);
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
void handles_close(store *s, handles *h, u_int32_t db_flags, int stranded, int may_detach)
{
    int panicked = 0;
    cluster_conn_close(h); /* its channel belongs to the environment */
    DB *dbs[] = {h->cache,  h->expiry, h->counters, h->flights, h->chunks, h->tokens,
                 h->ledger, h->holds,  h->recency,  h->fuzzy,   h->group};
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        if (!dbs[i])
            continue;
        int ret = dbs[i]->close(dbs[i], db_flags);
        if (ret == DB_RUNRECOVERY)
            panicked = 1;
        else if (ret)
            store_bdb_fail(s->home, "closing a database", ret);
    }
    h->cache = h->expiry = h->counters = h->flights = h->chunks = NULL;
    h->tokens = h->ledger = h->holds = h->recency = h->fuzzy = h->group = NULL;
    if (h->env) {
        int ret = h->env->close(h->env, 0);
        if (ret == DB_RUNRECOVERY)
            panicked = 1;
        else if (ret)
            store_bdb_fail(s->home, "closing the environment", ret);
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
 * (store_op_run). alone: this process holds store_lock_exclusive (see
 * below). Returns 0 or the Berkeley DB code, already logged.
 */
int handles_open(store *s, int alone, handles **out)
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
    env->set_errcall(env, store_bdb_errcall);
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
     * sized up front for every thread that may be in a transaction at once,
     * with room for an eviction or purge batch touching many pages. That is
     * txn_threads, not every thread: a pool of 4 x 512 threads sized as
     * 2,080 made these tables 86 MiB larger than 4 x 32 (about 45 KiB per
     * thread, nearly all locks and lock objects), and 50 x 512 would need
     * over a gigabyte, while the threads beyond [fcgi] threads mostly
     * stream outside any transaction. */
    what = "configuring the lock table";
    if ((ret = env->set_lk_max_lockers(env, 1000 + 4 * s->txn_threads)) != 0 ||
        (ret = env->set_lk_max_locks(env, 20000 + 100 * s->txn_threads)) != 0 ||
        (ret = env->set_lk_max_objects(env, 20000 + 100 * s->txn_threads)) != 0)
        goto fail;
    what = "configuring transactions";
    if ((ret = env->set_tx_max(env, 2 * s->txn_threads + 64)) != 0)
        goto fail;
    /* The cache can be rebuilt from upstream: losing the last moments of
     * commits in a power cut is fine, an fsync per commit (10x slower) is
     * not. Commits still reach the OS, so a killed process loses nothing. */
    if ((ret = env->set_flags(env, DB_TXN_WRITE_NOSYNC, 1)) != 0)
        goto fail;
    what = "configuring log removal";
    if ((ret = env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1)) != 0)
        goto fail;
    /* Log files of STORE_LOG_FILE_BYTES, each filled with zeros when created.
     * Berkeley DB's own log files (10 MiB) are sparse: it sets a new file's
     * size with one byte at its end, so the space they need arrives later,
     * unseen: recovery writes zeros over what is left of the current file
     * (__log_zero), up to 10 MiB at once. On a nearly full disk that
     * recovery failed with ENOSPC and panicked, so every open failed with
     * DB_RUNRECOVERY; the zeros it did write filled the disk, so that no
     * checkpoint could flush, no log file could go, and the store kept its
     * disk full for good (t_store_disk's chain of faults). Allocated when
     * created, a log file never needs more space later, and small, the
     * space a new one takes is small. */
    what = "configuring log files";
    if ((ret = env->set_lg_max(env, STORE_LOG_FILE_BYTES)) != 0 ||
        (ret = env->log_set_config(env, DB_LOG_ZERO, 1)) != 0)
        goto fail;

    /* A replicated store (cluster.h): repmgr is configured before the open
     * and started after it, before the databases, which a replica can
     * only open once the master created them. */
    what = "configuring replication";
    if (s->cluster && (ret = cluster_env_configure(s, env)) != 0)
        goto fail;
    what = "opening the environment";
    /* Exclusive (store_lock_exclusive held): no DB_REGISTER, which would
     * open and close __db.register and so drop this process's lock on it;
     * DB_RECOVER without it always recovers, which is what maintenance
     * wants, and is safe because the lock proves nobody else is attached. */
    ret = env->open(env, s->home,
                    DB_CREATE | DB_INIT_MPOOL | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_TXN |
                        DB_THREAD | (alone ? 0 : DB_REGISTER) | DB_RECOVER | DB_SYSTEM_MEM |
                        (s->cluster ? DB_INIT_REP : 0),
                    0600);
    if (ret)
        goto fail;
    h->env = env;
    if (s->cluster && (ret = cluster_env_start(s, h)) != 0) {
        store_bdb_fail(s->home, "starting replication", ret);
        handles_close(s, h, 0, 0, 0);
        return ret;
    }
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
        (ret = db_open_one(s, env, "chunks.db", 0, &h->chunks)) != 0 ||
        (ret = db_open_one(s, env, "tokens.db", 0, &h->tokens)) != 0 ||
        (ret = db_open_one(s, env, "ledger.db", 0, &h->ledger)) != 0 ||
        (ret = db_open_one(s, env, "reservations.db", 0, &h->holds)) != 0 ||
        (ret = db_open_one(s, env, "recency.db", 0, &h->recency)) != 0 ||
        (ret = db_open_one(s, env, "fuzzy.db", 0, &h->fuzzy)) != 0 ||
        (s->cluster && (ret = db_open_one(s, env, "group.db", 0, &h->group)) != 0)) {
        handles_close(s, h, 0, 0, 0);
        return ret;
    }
    *out = h;
    return 0;
fail:
    store_bdb_fail(s->home, what, ret);
    if (env)
        (void)env->close(env, 0); /* required even after a failed open */
    free(h);
    return ret;
}

/* Tries of an open that another process's open or recovery holds up. */
#define OPEN_TRIES 20

/*
 * The first open of a process: handles_open; after a failure, recovered
 * alone if nobody else has the store open, and opened again. Processes
 * starting together race here: the one that takes the store recovers it,
 * the others wait for it in their env->open (DB_REGISTER waits for the
 * lock the recovering process holds) or try again after a pause.
 */
static int handles_open_first(store *s, handles **out)
{
    if (s->exclusive) { /* store_lock_exclusive held: alone, always recovered */
        store_drop_regions(s->home);
        return handles_open(s, 1, out);
    }
    int ret = handles_open(s, 0, out);
    for (int tries = 1; ret != 0 && tries < OPEN_TRIES; tries++) {
        int r = recover_alone(s, ret);
        if (r < 0)
            break;
        if (r == 0) {
            struct timespec pause = {0, 50 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        ret = handles_open(s, 0, out);
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
int store_reopen(store *s, unsigned seen)
{
    return store_reopen_as(s, seen, 1);
}

int store_reopen_as(store *s, unsigned seen, int panic)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (s->reopening)
        pthread_cond_wait(&s->changed, &s->mu);
    if (s->generation != seen) {
        rc = s->cur ? 0 : -1;
        goto out;
    }
    int64_t now = store_mono_ns();
    if (!s->cur && s->last_reopen && now - s->last_reopen < REOPEN_PAUSE_NS) {
        rc = -1;
        goto out;
    }
    s->last_reopen = now;
    s->reopening = 1;
    /* A listener is not one while it reopens: the host's other processes,
     * reopening too, must not call repmgr_start before it has (see
     * listener_mark in cluster.c); its new open marks it again. */
    cluster_listener_unmark(s);
    handles *old = s->cur;
    s->cur = NULL;
    int stranded = 0;
    if (old) {
        if (panic)
            rl_warn("store %s: environment needs recovery (a process died or another process "
                    "recovered it); reopening",
                    s->home);
        else
            rl_info("store %s: replication rolled back or replaced what the handles had open; "
                    "reopening them",
                    s->home);
        /* DB_RUNRECOVERY from failchk (a process died inside the library)
         * does not mark the region panicked. Panic it: every attached
         * process must reopen anyway, because our open finds the dead
         * process in __db.register and runs recovery. */
        if (panic) {
            bdb_quiet = 1;
            (void)old->env->set_flags(old->env, DB_PANIC_ENVIRONMENT, 1);
            bdb_quiet = 0;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += REOPEN_WAIT_NS / 1000000000LL;
        /* Without a panic nothing makes a thread leave early: a write
         * forwarded to the master holds its handles for up to
         * forward_timeout_ms (cluster_ops.c). Wait that out. */
        if (!panic && s->cluster)
            until.tv_sec += cluster_options(s)->forward_timeout_ms / 1000 + 1;
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

    /* Threads still on an environment nobody panicked would go on using
     * it: it is left open for them (its memory is lost to the process). */
    if (old && !(stranded && !panic)) {
        bdb_quiet = 1;
        handles_close(s, old, DB_NOSYNC, stranded, may_detach);
        bdb_quiet = 0;
    }
    /* The old set is closed, so this process is registered no more: if
     * the open fails, it may recover the store alone (see recover_alone),
     * as when a recovery by another process failed and left the regions
     * panicked, which every reopen would otherwise meet forever. */
    handles *h = NULL;
    int ret = handles_open(s, s->exclusive, &h);
    if (ret != 0 && !s->exclusive && recover_alone(s, ret) > 0)
        ret = handles_open(s, 0, &h);
    if (ret != 0)
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
    s->txn_threads = opt->txn_threads > 0 && opt->txn_threads < opt->max_threads
                         ? (uint32_t)(opt->txn_threads > 16 ? opt->txn_threads : 16) + 8
                         : s->threads;
    s->exclusive = opt->lock != NULL;
    s->hold_max_age = opt->hold_max_age;
    if ((e = cluster_state_new(opt->cluster, &s->cluster)) != RL_OK)
        goto fail;

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
    if ((e = store_check_secret(s->home, s->secret)) != RL_OK)
        goto fail;
    s->shm_key = shm_key_for(s->home);
    detach_stale_segments(s); /* a forked child's copies of its parent's */
    if (wake_open(s->home, &s->wake) != RL_OK || uses_open(s->home, &s->uses) != RL_OK) {
        e = RL_STORE;
        goto fail;
    }
    if (handles_open_first(s, &s->cur) != 0) {
        e = RL_STORE;
        goto fail;
    }
    if ((e = cluster_opened(s)) != RL_OK) {
        cluster_listener_unmark(s);
        handles_close(s, s->cur, 0, 0, 1);
        s->cur = NULL;
        goto fail;
    }
    *out = s;
    return RL_OK;
fail:
    wake_close(s->wake);
    uses_close(s->uses);
    if (claimed)
        homes_release(s->home);
    store_secret_free(s->secret, s->secret_len);
    free(s->home);
    cluster_state_free(s->cluster);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return e;
}

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

/* Handle sets that threads were stranded in (see store_reopen) are not
 * freed, nor the store, its lock and its wake-up file: those threads still
 * point into them. */
void store_close(store *s)
{
    if (!s)
        return;
    cluster_closing(s); /* its thread reads the environment */
    cluster_listener_unmark(s);
    if (s->cur)
        handles_close(s, s->cur, 0, 0, s->stranded == 0);
    homes_release(s->home);
    if (s->stranded == 0) { /* stranded threads may still point into them */
        wake_close(s->wake);
        uses_close(s->uses);
    }
    store_secret_free(s->secret, s->secret_len);
    free(s->home);
    if (s->stranded == 0) {
        cluster_state_free(s->cluster);
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
        env->set_errcall(env, store_bdb_errcall);
        ret = env->set_shm_key(env, key);
        int removed = env->remove(env, home, DB_FORCE); /* frees env in any case */
        if (ret == 0)
            ret = removed;
    }
    if (ret && ret != ENOENT) {
        store_bdb_fail(home, "removing the environment's regions", ret);
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
