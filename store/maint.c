/*
 * maint.c — whole-store maintenance for relay-admin: exclusive access,
 * hot backup, verification, compaction, recovery, re-encryption and
 * restore (contracts in store.h).
 *
 * Files of a store (see the layouts in cache.c and env.c): the databases
 * (*.db, the check file check.db among them) and the logs (log.NNNNNNNNNN)
 * are its data; __db.register, the region files __db.0NN and wake.map belong to
 * the processes using it and are never copied or moved.
 *
 * Offline operations (rekey, restore) build the new files in a directory
 * beside home (home + ".rekey" / ".restore") and then swap them into home
 * file by file, the old ones moved to home + ".pre-rekey" / ".pre-restore"
 * until the swap is done. Swapping files rather than renaming directories
 * keeps home's __db.register (and the lock on it) the same file: a Relay
 * process that starts meanwhile waits on that lock and then finds the new
 * files, instead of registering in a directory that is about to vanish.
 */
#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/keyfile.h"
#include "store/store.h"
#include "store/store_int.h"

#define REGISTER_FILE "__db.register"
#define COPY_BATCH 256              /* records per transaction when re-encrypting */
#define COPY_BATCH_BYTES (4u << 20) /* ... or this many bytes */
#define PRIVATE_CACHE_MB 16         /* buffer pool of the private environments */

/* The databases a store has (cache.c, flight.c, token.c, ledger.c), and
 * its check file. The last NLATER_DBS came later (issue 13): a backup made
 * before has none of them, and restores (the store creates them when it
 * opens); one with some of them but not all has lost the others. */
static const char *const store_dbs[] = {"cache.db",   "expiry.db", "counters.db",
                                        "flights.db", "chunks.db", "check.db",
                                        "tokens.db",  "ledger.db", "reservations.db"};
#define NSTORE_DBS (sizeof store_dbs / sizeof store_dbs[0])
#define NLATER_DBS 3
/* Databases that may be missing from any store or backup: recency.db
 * (issue 14) is an index that rebuilds itself (recency.c), so a backup
 * from before it, or without it, restores whole; fuzzy.db (issue 16) only
 * lets near-variants find entries, and a store without it just finds none
 * of its older entries. Verified when present. */
static const char *const optional_dbs[] = {"recency.db", "fuzzy.db"};
#define NOPTIONAL_DBS (sizeof optional_dbs / sizeof optional_dbs[0])

/* A file that is data of the store: a database or a log. */
static int is_data_file(const char *name)
{
    size_t n = strlen(name);
    if (strncmp(name, "__db.", 5) == 0)
        return 0;
    return strncmp(name, "log.", 4) == 0 || (n > 3 && strcmp(name + n - 3, ".db") == 0);
}

/* ---- exclusive access ---------------------------------------------------- */

struct store_lock {
    int fd; /* of home/__db.register; closing it drops the lock */
    char *home;
};

const char *store_lock_home(const store_lock *lock)
{
    return lock->home;
}

/* store_lock_exclusive; a store in use is RL_BUSY, logged only if loud
 * (naming a pid). */
static rl_err lock_exclusive(const char *home, int loud, store_lock **out)
{
    *out = NULL;
    if (store_mkdirs(home, 0700) != RL_OK)
        return RL_IO;
    store_lock *l = calloc(1, sizeof *l);
    if (!l)
        return RL_NOMEM;
    l->fd = -1;
    rl_err e = RL_IO;
    char path[4096];
    l->home = realpath(home, NULL);
    if (!l->home) {
        rl_error("store: cannot resolve %s: %s", home, strerror(errno));
        goto fail;
    }
    snprintf(path, sizeof path, "%s/%s", l->home, REGISTER_FILE);
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (l->fd < 0) {
        rl_error("store %s: cannot open %s: %s", l->home, path, strerror(errno));
        goto fail;
    }
    /* Byte 1 is what a registering process waits for (REGISTRY_EXCL_LOCK). */
    struct flock gate = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
    if (fcntl(l->fd, F_SETLK, &gate) != 0) {
        if (errno != EAGAIN && errno != EACCES) {
            rl_error("store %s: locking %s: %s", l->home, path, strerror(errno));
            goto fail;
        }
        if (loud)
            rl_error("store %s: a process is opening the store right now", l->home);
        e = RL_BUSY;
        goto fail;
    }
    /* Any lock of another process on the file is a registered user (its
     * slot) or one registering; our own lock never shows here. */
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(l->fd, F_GETLK, &probe) != 0) {
        rl_error("store %s: probing %s: %s", l->home, path, strerror(errno));
        goto fail;
    }
    if (probe.l_type != F_UNLCK) {
        if (loud)
            rl_error("store %s: in use by process %ld (and perhaps others)", l->home,
                     (long)probe.l_pid);
        e = RL_BUSY;
        goto fail;
    }
    *out = l;
    return RL_OK;
fail:
    store_unlock(l);
    return e;
}

rl_err store_lock_exclusive(const char *home, store_lock **out)
{
    return lock_exclusive(home, 1, out);
}

rl_err store_lock_try(const char *home, store_lock **out)
{
    return lock_exclusive(home, 0, out);
}

void store_unlock(store_lock *l)
{
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd);
    free(l->home);
    free(l);
}

/* ---- small file helpers ---------------------------------------------------- */

int store_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    char path[4096];
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) {
            rl_error("store: removing %s: %s", path, strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    if (rc == 0 && rmdir(dir) != 0) {
        rl_error("store: removing %s: %s", dir, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* 1 if dir is missing or empty, 0 if it has entries, -1 if unreadable. */
static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 1 : -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = 0;
    closedir(d);
    return empty;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Copies one file (mode 0600), fsynced. 0 or -1 (logged). */
static int copy_file(const char *from, const char *to, uint64_t *bytes)
{
    int rc = -1, in = open(from, O_RDONLY | O_CLOEXEC), outfd = -1;
    if (in < 0) {
        rl_error("store: opening %s: %s", from, strerror(errno));
        return -1;
    }
    outfd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (outfd < 0) {
        rl_error("store: creating %s: %s", to, strerror(errno));
        goto out;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0) {
            rl_error("store: reading %s: %s", from, strerror(errno));
            goto out;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(outfd, buf + off, (size_t)(n - off));
            if (w < 0) {
                rl_error("store: writing %s: %s", to, strerror(errno));
                goto out;
            }
            off += w;
        }
        if (bytes)
            *bytes += (uint64_t)n;
    }
    if (fsync(outfd) != 0) {
        rl_error("store: syncing %s: %s", to, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (outfd >= 0)
        close(outfd);
    close(in);
    return rc;
}

/* Moves the data files (is_data_file) of from into to (which exists).
 * Returns the number moved, or -1 (logged) after the first failure. */
static int move_data_files(const char *from, const char *to)
{
    DIR *d = opendir(from);
    if (!d) {
        rl_error("store: reading %s: %s", from, strerror(errno));
        return -1;
    }
    struct dirent *e;
    char a[4096], b[4096];
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (!is_data_file(e->d_name))
            continue;
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        if (rename(a, b) != 0) {
            rl_error("store: moving %s to %s: %s", a, b, strerror(errno));
            n = -1;
            break;
        }
        n++;
    }
    closedir(d);
    return n;
}

/*
 * Replaces home's data files with staged's: home's go to aside (created;
 * it must not exist), staged's into home. On a failure it tries to put the
 * old files back and says where everything is. 0 or -1 (logged).
 */
static int swap_in(const char *home, const char *staged, const char *aside)
{
    if (mkdir(aside, 0700) != 0) {
        rl_error("store %s: creating %s: %s%s", home, aside, strerror(errno),
                 errno == EEXIST ? " (left by an earlier attempt? look inside, then remove it)"
                                 : "");
        return -1;
    }
    if (move_data_files(home, aside) < 0) {
        if (move_data_files(aside, home) >= 0)
            (void)rmdir(aside);
        return -1;
    }
    if (move_data_files(staged, home) < 0) {
        rl_error("store %s: the swap failed half-way: the old files are in %s, the new ones "
                 "in %s and %s",
                 home, aside, home, staged);
        return -1;
    }
    (void)fsync_path(home);
    return 0;
}

/* The total size of dir's data files, or of its databases alone. */
static uint64_t data_bytes(const char *dir, int dbs_only)
{
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    char path[4096];
    struct stat st;
    while ((e = readdir(d)) != NULL) {
        if (!is_data_file(e->d_name) || (dbs_only && strncmp(e->d_name, "log.", 4) == 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0)
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

/* ---- setting a damaged store aside ------------------------------------------ */

rl_err store_set_aside(const store_lock *lock, char *where, size_t cap)
{
    const char *home = store_lock_home(lock);
    char stamp[32];
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    int made = -1;
    for (int n = 0; n < 100 && made != 0; n++) {
        if (n == 0)
            snprintf(where, cap, "%s.damaged-%s", home, stamp);
        else
            snprintf(where, cap, "%s.damaged-%s-%d", home, stamp, n);
        made = mkdir(where, 0700);
        if (made != 0 && errno != EEXIST)
            break;
    }
    if (made != 0) {
        rl_error("store %s: creating a directory to set the damaged store aside (%s): %s", home,
                 where, strerror(errno));
        return RL_IO;
    }
    store_drop_regions(home); /* their pages are of the files that go */
    if (move_data_files(home, where) < 0) {
        rl_error("store %s: setting the damaged store aside failed half-way: some of its files "
                 "are in %s",
                 home, where);
        return RL_IO;
    }
    (void)fsync_path(home);
    return RL_OK;
}

/* ---- private environments (backups, staged copies) -------------------------- */

/* Berkeley DB's messages about a copy: kept for the problem report. */
static _Thread_local char bdb_last[512];

static void private_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
    (void)env;
    (void)pfx;
    snprintf(bdb_last, sizeof bdb_last, "%s", msg);
    rl_debug("store: berkeley db: %s", msg);
}

/*
 * Runs catastrophic recovery on a copy of a store in dir, in an environment
 * private to this process (regions on the heap: no shared memory, no
 * region files, nothing any other process can attach): replays the copied
 * logs over the copied databases so that they are consistent on their own.
 * 0 or the Berkeley DB code (logged with what).
 */
static int recover_copy(const char *dir, const char *secret)
{
    DB_ENV *env = NULL;
    int ret = db_env_create(&env, 0);
    if (ret == 0) {
        env->set_errcall(env, private_errcall);
        if ((ret = env->set_encrypt(env, secret, DB_ENCRYPT_AES)) == 0 &&
            (ret = env->set_cachesize(env, 0, PRIVATE_CACHE_MB << 20, 1)) == 0)
            ret = env->open(env, dir,
                            DB_CREATE | DB_INIT_MPOOL | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_TXN |
                                DB_PRIVATE | DB_RECOVER_FATAL,
                            0600);
        if (ret == 0)
            ret = env->txn_checkpoint(env, 0, 0, DB_FORCE);
        int closed = env->close(env, 0);
        if (ret == 0)
            ret = closed;
    }
    if (ret)
        rl_error("store: recovering the copy in %s: %s (%s)", dir, db_strerror(ret), bdb_last);
    return ret;
}

typedef void (*problem_fn)(void *ctx, const char *file, const char *what);

/* DB->verify of every database of a store in dir (see store_verify_dir). */
static rl_err verify_dir_secret(const char *dir, const char *secret, problem_fn problem, void *ctx,
                                unsigned *problems)
{
    char path[4096], what[768];
    struct stat st;
    *problems = 0;
    size_t later = 0; /* how many of the later databases dir has */
    for (size_t i = NSTORE_DBS - NLATER_DBS; i < NSTORE_DBS; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, store_dbs[i]);
        later += stat(path, &st) == 0;
    }
    for (size_t i = 0; i < NSTORE_DBS + NOPTIONAL_DBS; i++) {
        const char *name = i < NSTORE_DBS ? store_dbs[i] : optional_dbs[i - NSTORE_DBS];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (stat(path, &st) != 0) {
            if (i >= NSTORE_DBS)
                continue;
            if (later == 0 && i >= NSTORE_DBS - NLATER_DBS)
                continue; /* a store from before them */
            snprintf(what, sizeof what, "missing (%s)", strerror(errno));
            goto bad;
        }
        DB *db = NULL;
        int ret = db_create(&db, NULL, 0);
        if (ret) {
            rl_error("store: creating a database handle: %s", db_strerror(ret));
            return RL_STORE;
        }
        bdb_last[0] = '\0';
        db->set_errcall(db, (void (*)(const DB_ENV *, const char *, const char *))private_errcall);
        ret = db->set_encrypt(db, secret, DB_ENCRYPT_AES);
        if (ret) {
            (void)db->close(db, 0);
            rl_error("store: configuring encryption: %s", db_strerror(ret));
            return RL_STORE;
        }
        ret = db->verify(db, path, NULL, NULL, 0); /* frees db in any case */
        if (ret == 0)
            continue;
        snprintf(what, sizeof what, "%s%s%s", db_strerror(ret), bdb_last[0] ? ": " : "", bdb_last);
    bad:
        ++*problems;
        rl_debug("store: verify %s: %s", path, what);
        if (problem)
            problem(ctx, name, what);
    }
    return RL_OK;
}

rl_err store_verify_dir(const char *dir, const store_options *opt, problem_fn problem, void *ctx,
                        unsigned *problems)
{
    char *secret = NULL;
    size_t len = 0;
    rl_err e = store_key_read(opt, &secret, &len);
    if (e != RL_OK)
        return RL_STORE;
    e = verify_dir_secret(dir, secret, problem, ctx, problems);
    store_secret_free(secret, len);
    return e;
}

/* ---- hot backup, verify ------------------------------------------------------- */

/*
 * Why a copy into dir failed, when DB_ENV->backup does not say: it returns
 * 1, not the errno, when a log file cannot be copied (backup_logs in
 * Berkeley DB's db_backup.c), which db_strerror reads as "Operation not
 * permitted". Its own line before that names the cause; this tells it from
 * the target's file system: full (it copies in 1 MiB pieces), read-only,
 * or else an I/O error.
 */
static int copy_errno(const char *dir)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return EIO;
    if (v.f_flag & ST_RDONLY)
        return EROFS;
    return (uint64_t)v.f_bavail * v.f_frsize < (1u << 20) ? ENOSPC : EIO;
}

static int backup_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    const char *dir = o->arg;
    /* DB_CREATE: make the directory if needed. Databases go through the
     * buffer pool page by page, then every log file is copied. */
    int ret = h->env->backup(h->env, dir, DB_CREATE);
    return ret == 1 ? copy_errno(dir) : ret;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1 << 20);
}

/*
 * Whether a hot copy of the store at home fits in dir (which exists). On
 * the store's own file system it must leave STORE_HEADROOM_BYTES free, so that
 * the copy cannot fill the disk under the running store (issue 12, defect
 * 7: verify's copy did, and the store's writes failed); RL_IO (logged,
 * saying how much is needed and free) otherwise. On another file system a
 * copy harms nothing: it is left to fail there if it must.
 */
static rl_err copy_fits(const char *home, const char *dir, const char *what)
{
    struct stat hs, ds;
    struct statvfs v;
    if (stat(home, &hs) != 0 || stat(dir, &ds) != 0 || statvfs(dir, &v) != 0) {
        rl_error("store %s: checking the room for %s in %s: %s", home, what, dir, strerror(errno));
        return RL_IO;
    }
    if (hs.st_dev != ds.st_dev)
        return RL_OK;
    /* A copy holds every data file whole (a log file's holes too); its
     * recovery may start one more log file. */
    uint64_t need = data_bytes(home, 0) + STORE_LOG_FILE_BYTES + STORE_HEADROOM_BYTES;
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    if (avail >= need)
        return RL_OK;
    rl_error("store %s: %s needs %.1f MiB free on the store's file system (a copy of the store "
             "in %s, and %.0f MiB left for the store to go on writing); it has %.1f MiB free: "
             "not starting, so that the copy cannot fill the store's disk. Free some space, or "
             "back up to another file system and verify that (relay-admin backup DIR; "
             "relay-admin verify --backup DIR)",
             home, what, mib(need), dir, mib(STORE_HEADROOM_BYTES), mib(avail));
    return RL_IO;
}

/* The backup, recovery and verification of a copy into dir (empty). */
static rl_err backup_into(store *s, const char *dir, store_report *rep, problem_fn problem,
                          void *ctx, unsigned *problems)
{
    const char *home = store_home_of(s);
    char from[4096], to[4096];
    *problems = 0;
    op o = {.what = "backing up the store", .body = backup_body, .no_txn = 1, .arg = (void *)dir};
    rl_err e = store_op_run(s, &o);
    if (e != RL_OK)
        return e;
    /* check.db lives outside the environment (it is opened on its own), so
     * Berkeley DB may not have copied it; it never changes after creation. */
    snprintf(from, sizeof from, "%s/check.db", home);
    snprintf(to, sizeof to, "%s/check.db", dir);
    if (access(to, F_OK) != 0 && copy_file(from, to, NULL) != 0)
        return RL_IO;
    if (recover_copy(dir, store_secret_of(s)) != 0)
        return RL_STORE;
    store_drop_regions(dir); /* a private environment leaves none; to be sure */
    if ((e = verify_dir_secret(dir, store_secret_of(s), problem, ctx, problems)) != RL_OK)
        return e;
    if (rep) {
        memset(rep, 0, sizeof *rep);
        DIR *d = opendir(dir);
        struct dirent *ent;
        while (d && (ent = readdir(d)) != NULL)
            if (is_data_file(ent->d_name))
                rep->files++;
        if (d)
            closedir(d);
        rep->bytes = data_bytes(dir, 0);
    }
    return RL_OK;
}

static rl_err backup_target_ok(const char *home, const char *dir)
{
    int empty = dir_is_empty(dir);
    if (empty < 0) {
        rl_error("store %s: cannot read the backup directory %s: %s", home, dir, strerror(errno));
        return RL_IO;
    }
    if (!empty) {
        rl_error("store %s: the backup directory %s is not empty", home, dir);
        return RL_BUSY;
    }
    return store_mkdirs(dir, 0700) == RL_OK ? RL_OK : RL_IO;
}

static void log_problem(void *ctx, const char *file, const char *what)
{
    rl_error("store: the backup in %s failed verification: %s: %s", (const char *)ctx, file, what);
}

rl_err store_backup(store *s, const char *dir, store_report *rep)
{
    rl_err e = backup_target_ok(store_home_of(s), dir);
    if (e == RL_OK)
        e = copy_fits(store_home_of(s), dir, "the backup");
    if (e != RL_OK)
        return e;
    unsigned problems = 0;
    e = backup_into(s, dir, rep, log_problem, (void *)dir, &problems);
    if (e == RL_OK && problems)
        e = RL_STORE;
    return e;
}

/* Verifies a live store (store.h): the hot copy's databases, then every
 * record of the client tokens and the ledger on the store itself (read-only,
 * in short transactions), which Berkeley DB's check does not decode. */
rl_err store_verify(store *s, problem_fn problem, void *ctx, unsigned *problems)
{
    /* Beside home, on the store's file system (copy_fits checks the room). */
    char tmpl[4096];
    char *parent = strdup(store_home_of(s));
    if (!parent)
        return RL_NOMEM;
    snprintf(tmpl, sizeof tmpl, "%s/.relay-verify.XXXXXX", dirname(parent));
    free(parent);
    if (!mkdtemp(tmpl)) {
        rl_error("store %s: creating a directory for the copy to verify (%s): %s", store_home_of(s),
                 tmpl, strerror(errno));
        return RL_IO;
    }
    rl_err e = copy_fits(store_home_of(s), tmpl, "verify");
    if (e == RL_OK)
        e = backup_into(s, tmpl, NULL, problem, ctx, problems);
    (void)store_remove_dir(tmpl);
    if (e == RL_OK)
        e = token_verify(s, problem, ctx, problems);
    if (e == RL_OK)
        e = ledger_verify(s, problem, ctx, problems);
    return e;
}

/* ---- compact --------------------------------------------------------------------- */

static int checkpoint_now_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    (void)o;
    return h->env->txn_checkpoint(h->env, 0, 0, DB_FORCE);
}

static int compact_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    store_report *rep = o->arg;
    DB *dbs[] = {h->cache,  h->expiry, h->counters, h->flights, h->chunks,
                 h->tokens, h->ledger, h->holds,    h->recency};
    rep->pages_freed = 0;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        DB_COMPACT c;
        memset(&c, 0, sizeof c);
        /* No transaction: Berkeley DB compacts in short transactions of its
         * own, so Relay's writers are held up only briefly. */
        int ret = dbs[i]->compact(dbs[i], NULL, NULL, NULL, &c, DB_FREE_SPACE, NULL);
        if (ret)
            return ret;
        rep->pages_freed += c.compact_pages_truncated;
    }
    return checkpoint_now_body(h, NULL, o);
}

rl_err store_compact(store *s, store_report *rep)
{
    memset(rep, 0, sizeof *rep);
    /* Pages written since the last checkpoint may exist only in the buffer
     * pool: flush them so that "before" is the real size of the files. */
    op cp = {.what = "checkpointing before compaction",
             .body = checkpoint_now_body,
             .no_txn = 1,
             .idempotent = 1};
    rl_err e = store_op_run(s, &cp);
    if (e != RL_OK)
        return e;
    rep->bytes_before = data_bytes(store_home_of(s), 1);
    op o = {.what = "compacting the store",
            .body = compact_body,
            .no_txn = 1,
            .idempotent = 1,
            .arg = rep};
    e = store_op_run(s, &o);
    rep->bytes = data_bytes(store_home_of(s), 1);
    return e;
}

/* ---- recover --------------------------------------------------------------------- */

/* Opens the store exclusively (which always recovers) and closes it. */
static rl_err open_exclusive(const store_options *opt, const store_lock *lock, store **out)
{
    store_options o = *opt;
    o.lock = lock;
    return store_open(&o, out);
}

rl_err store_recover(const store_options *opt, const store_lock *lock)
{
    store *s = NULL;
    rl_err e = open_exclusive(opt, lock, &s);
    store_close(s);
    return e;
}

/* ---- rekey ------------------------------------------------------------------------ */

#define COPY_KEY_MAX 512 /* longer than any key of the databases copied */

typedef struct copy_arg {
    int which;                  /* index into copy_db's databases */
    uint8_t from[COPY_KEY_MAX]; /* the batch starts after this key ... */
    size_t from_len;
    int started;                /* ... unless this is the first batch */
    uint8_t last[COPY_KEY_MAX]; /* the batch's last key */
    size_t last_len;
    int done;
    unsigned n;
    rl_buf recs; /* n records: key length (4), data length (4), key, data */
    DBT d;       /* DB_DBT_REALLOC, reused */
} copy_arg;

/* The databases rekey copies: every one but the in-flight tables, which
 * are transient (the new store starts with none). Reservations are copied
 * with the rest: their owners are gone (rekey runs with Relay stopped), so
 * the first maintenance after it releases them into the rows they hold. */
static DB *copy_db(handles *h, int which)
{
    DB *dbs[] = {h->cache,  h->expiry, h->counters, h->tokens,
                 h->ledger, h->holds,  h->recency,  h->fuzzy};
    return dbs[which];
}
#define NCOPY_DBS 8

/* Appends one raw record to the batch (o's copy_arg). */
static int copy_visit(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    op *o = ctx;
    copy_arg *a = o->arg;
    uint8_t lens[8];
    store_put32(lens, k->size);
    store_put32(lens + 4, d->size);
    if (rl_buf_append(&a->recs, lens, sizeof lens) != RL_OK ||
        rl_buf_append(&a->recs, k->data, k->size) != RL_OK ||
        rl_buf_append(&a->recs, d->data, d->size) != RL_OK) {
        o->err = RL_NOMEM;
        *stop = 1;
        return 0;
    }
    a->n++;
    memcpy(a->last, k->data, k->size);
    a->last_len = k->size;
    *stop = a->n == COPY_BATCH || a->recs.len >= COPY_BATCH_BYTES;
    return 0;
}

/* Reads the next batch of raw records of one database after a->from. */
static int copy_read_body(handles *h, DB_TXN *txn, op *o)
{
    copy_arg *a = o->arg;
    uint8_t kb[COPY_KEY_MAX];
    DBT k;
    a->n = 0;
    a->recs.len = 0;
    dbt_out(&k, kb, sizeof kb);
    a->d.flags = DB_DBT_REALLOC;
    return store_walk_batch(copy_db(h, a->which), txn, 0, a->started ? a->from : NULL, a->from_len,
                            1, &k, &a->d, copy_visit, o, &a->done);
}

static int copy_write_body(handles *h, DB_TXN *txn, op *o)
{
    copy_arg *a = o->arg;
    DB *db = copy_db(h, a->which);
    const uint8_t *p = (const uint8_t *)a->recs.data;
    for (unsigned i = 0; i < a->n; i++) {
        uint32_t kl = store_get32(p), dl = store_get32(p + 4);
        DBT k, d;
        dbt_in(&k, p + 8, kl);
        dbt_in(&d, p + 8 + kl, dl);
        int ret = db->put(db, txn, &k, &d, 0);
        if (ret)
            return ret;
        p += 8 + kl + dl;
    }
    return 0;
}

/* Copies the databases of copy_db record by record. */
static rl_err copy_records(store *from, store *to, uint64_t *records)
{
    rl_err e = RL_OK;
    copy_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    rl_buf_init(&a->recs, 0);
    for (int which = 0; which < NCOPY_DBS && e == RL_OK; which++) {
        a->which = which;
        a->started = 0;
        for (;;) {
            op r = {.what = "reading records to re-encrypt",
                    .body = copy_read_body,
                    .idempotent = 1,
                    .arg = a};
            if ((e = store_op_run(from, &r)) != RL_OK)
                break;
            op w = {.what = "writing re-encrypted records",
                    .body = copy_write_body,
                    .idempotent = 1,
                    .arg = a};
            if (a->n && (e = store_op_run(to, &w)) != RL_OK)
                break;
            *records += a->n;
            if (a->done || a->n == 0)
                break;
            memcpy(a->from, a->last, a->last_len);
            a->from_len = a->last_len;
            a->started = 1;
        }
    }
    free(a->d.data);
    rl_buf_release(&a->recs);
    free(a);
    return e;
}

/* Paths beside home: home + suffix. */
static void beside(char *out, size_t cap, const char *home, const char *suffix)
{
    snprintf(out, cap, "%s%s", home, suffix);
}

/* Removes a staged store left by an earlier, failed attempt. */
static rl_err clear_staged(const char *staged)
{
    store_options so = {.home = staged};
    if (access(staged, F_OK) != 0)
        return RL_OK;
    rl_warn("store: removing %s, left by an earlier attempt", staged);
    (void)store_remove(&so);
    return store_remove_dir(staged) == 0 ? RL_OK : RL_IO;
}

rl_err store_rekey(const store_options *opt, const store_lock *lock, const char *new_key_file,
                   const char *old_key_out, store_report *rep)
{
    const char *home = store_lock_home(lock);
    char staged[4096], aside[4096];
    beside(staged, sizeof staged, home, ".rekey");
    beside(aside, sizeof aside, home, ".pre-rekey");
    memset(rep, 0, sizeof *rep);
    store *old = NULL, *fresh = NULL;
    rl_err e;
    if (opt->key_env && *opt->key_env) {
        rl_error("store %s: the key comes from $%s ([store] key_env): rekey writes a key file",
                 home, opt->key_env);
        return RL_CONFIG;
    }
    if (access(new_key_file, F_OK) == 0 || access(old_key_out, F_OK) == 0) {
        rl_error("store %s: %s or %s already exists", home, new_key_file, old_key_out);
        return RL_BUSY;
    }
    if ((e = clear_staged(staged)) != RL_OK)
        return e;
    if ((e = store_keyfile_ensure(new_key_file)) != RL_OK)
        return e;
    if ((e = open_exclusive(opt, lock, &old)) != RL_OK)
        goto fail;
    store_options no = *opt;
    no.home = staged;
    no.key_file = new_key_file;
    no.lock = NULL;
    no.max_bytes = no.max_entries = no.max_entry_bytes = 0; /* copy everything as it is */
    if ((e = store_open(&no, &fresh)) != RL_OK)
        goto fail;
    if ((e = copy_records(old, fresh, &rep->records)) != RL_OK)
        goto fail;
    store_close(fresh);
    fresh = NULL;
    store_close(old);
    old = NULL;
    (void)store_remove(&no);  /* the staged store's segments and region files */
    store_drop_regions(home); /* the old regions hold the old secret's pages */
    if (swap_in(home, staged, aside) != 0) {
        rl_error("store %s: re-encryption not finished; the new key is in %s", home, new_key_file);
        return RL_IO;
    }
    if (link(opt->key_file, old_key_out) != 0) {
        rl_error("store %s: keeping the old key as %s: %s; the store is re-encrypted with the "
                 "key in %s, the old files are in %s",
                 home, old_key_out, strerror(errno), new_key_file, aside);
        return RL_IO;
    }
    if (rename(new_key_file, opt->key_file) != 0) {
        rl_error("store %s: installing the new key %s as %s: %s; the store is re-encrypted "
                 "with the key in %s",
                 home, new_key_file, opt->key_file, strerror(errno), new_key_file);
        return RL_IO;
    }
    (void)store_remove_dir(aside);
    (void)store_remove_dir(staged);
    /* Open it once with the new key: recovery sets up fresh regions, and a
     * mistake shows now rather than in Relay. */
    if ((e = open_exclusive(opt, lock, &old)) != RL_OK)
        return e;
    store_close(old);
    return RL_OK;
fail:
    store_close(fresh);
    store_close(old);
    (void)clear_staged(staged);
    (void)unlink(new_key_file);
    return e;
}

/* ---- restore ---------------------------------------------------------------------- */

rl_err store_restore(const store_options *opt, const store_lock *lock, const char *dir,
                     store_report *rep)
{
    const char *home = store_lock_home(lock);
    char staged[4096], aside[4096], from[4096 + 258], to[4096 + 258];
    beside(staged, sizeof staged, home, ".restore");
    beside(aside, sizeof aside, home, ".pre-restore");
    memset(rep, 0, sizeof *rep);
    char *secret = NULL;
    size_t secret_len = 0;
    rl_err e;
    snprintf(from, sizeof from, "%s/check.db", dir);
    snprintf(to, sizeof to, "%s/cache.db", dir);
    if (access(from, F_OK) != 0 || access(to, F_OK) != 0) {
        rl_error("store: %s is not a backup of a store (no check.db or cache.db)", dir);
        return RL_NOTFOUND;
    }
    if ((e = store_key_read(opt, &secret, &secret_len)) != RL_OK)
        return RL_STORE;
    if (store_check_file(from, secret) != 0) {
        rl_error("store: the backup in %s was not made with the key in %s", dir,
                 opt->key_env && *opt->key_env ? opt->key_env : opt->key_file);
        e = RL_FORBIDDEN;
        goto out;
    }
    if ((e = clear_staged(staged)) != RL_OK)
        goto out;
    if (mkdir(staged, 0700) != 0) {
        rl_error("store: creating %s: %s", staged, strerror(errno));
        e = RL_IO;
        goto out;
    }
    DIR *d = opendir(dir);
    if (!d) {
        rl_error("store: reading %s: %s", dir, strerror(errno));
        e = RL_IO;
        goto out;
    }
    struct dirent *ent;
    e = RL_OK;
    while ((ent = readdir(d)) != NULL && e == RL_OK) {
        if (!is_data_file(ent->d_name))
            continue;
        snprintf(from, sizeof from, "%s/%s", dir, ent->d_name);
        snprintf(to, sizeof to, "%s/%s", staged, ent->d_name);
        if (copy_file(from, to, &rep->bytes) != 0)
            e = RL_IO;
        rep->files++;
    }
    closedir(d);
    if (e != RL_OK)
        goto out;
    unsigned problems = 0;
    if (recover_copy(staged, secret) != 0) {
        e = RL_STORE;
        goto out;
    }
    if ((e = verify_dir_secret(staged, secret, log_problem, staged, &problems)) != RL_OK)
        goto out;
    if (problems) {
        e = RL_STORE;
        goto out;
    }
    store_drop_regions(home); /* their pages are of the files being replaced */
    if (swap_in(home, staged, aside) != 0) {
        e = RL_IO;
        goto out;
    }
    (void)store_remove_dir(aside);
    (void)store_remove_dir(staged);
    store *s = NULL;
    if ((e = open_exclusive(opt, lock, &s)) == RL_OK)
        store_close(s);
out:
    if (e != RL_OK && access(staged, F_OK) == 0 && access(aside, F_OK) != 0)
        (void)clear_staged(staged);
    store_secret_free(secret, secret_len);
    return e;
}
