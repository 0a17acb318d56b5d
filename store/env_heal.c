/*
 * env_heal.c — a store that does not open (contract in env_int.h): whether
 * the failure is one no waiting mends, recovering it alone when nobody
 * else has it open, and, when that fails too, setting its files aside for
 * an empty store (store.h, store_open). env.c calls recover_alone from its
 * first open and its reopen.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/env_int.h"
#include "store/store_int.h"

/*
 * Whether a recovery that failed with ret failed because of the store's
 * own files, which no waiting mends, rather than where they live: not for
 * errors of the system (no space, no permission, read-only, I/O, out of
 * memory or descriptors), and only when the home takes a new file, every
 * data file in it is ours to read and write, and its file system has
 * STORE_HEADROOM_BYTES free. A full disk or a read-only directory heals;
 * moving the files aside would only lose the cache (and a recovery that
 * ran out of space says DB_RUNRECOVERY, not ENOSPC: the room check is what
 * tells).
 */
static int cannot_heal(const char *home, int ret)
{
    switch (ret) {
    case ENOSPC:
    case EDQUOT:
    case EROFS:
    case EACCES:
    case EPERM:
    case EIO:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case EAGAIN:
    case EBUSY:
    case EFBIG:
    case EINTR:
    case ENOLCK:
    case ETIMEDOUT:
        return 0;
    default:
        break;
    }
    struct statvfs v;
    if (statvfs(home, &v) != 0 || (v.f_flag & ST_RDONLY) ||
        (uint64_t)v.f_bavail * v.f_frsize < STORE_HEADROOM_BYTES)
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/.relay-probe.%ld", home, (long)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    int wrote = write(fd, "x", 1) == 1;
    close(fd);
    (void)unlink(path);
    if (!wrote)
        return 0;
    DIR *d = opendir(home);
    if (!d)
        return 0;
    int ours = 1;
    struct dirent *e;
    while (ours && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "log.", 4) != 0 && (n < 3 || strcmp(e->d_name + n - 3, ".db") != 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", home, e->d_name);
        ours = access(path, R_OK | W_OK) == 0;
    }
    closedir(d);
    return ours;
}

/* Whether home holds databases or logs (not only an empty store's check
 * file): a store set aside leaves none, so none is set aside twice. */
static int home_has_data(const char *home)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/cache.db", home);
    if (access(path, F_OK) == 0)
        return 1;
    DIR *d = opendir(home);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL)
        found = strncmp(e->d_name, "log.", 4) == 0;
    closedir(d);
    return found;
}

/*
 * The control before a store is set aside: whether an empty store, with
 * this store's settings, opens in a directory beside it (made, opened with
 * recovery, closed and removed again). If not, what fails is where the
 * store lives or how it is configured (shared memory limits, say), and
 * setting its files aside would only lose them, every time.
 */
static int empty_store_opens(const store *s)
{
    char probe[4096];
    snprintf(probe, sizeof probe, "%s.probe-%ld", s->home, (long)getpid());
    if (mkdir(probe, 0700) != 0)
        return 0;
    store p = {.home = probe,
               .secret = s->secret,
               .shm_key = shm_key_for(probe),
               .cache_mb = s->cache_mb,
               .threads = s->threads,
               .txn_threads = s->txn_threads,
               .exclusive = 1};
    handles *h = NULL;
    int ret = handles_open(&p, 1, &h);
    if (ret == 0)
        handles_close(&p, h, 0, 0, 1);
    store_drop_regions(probe);
    (void)store_remove_dir(probe);
    return ret == 0;
}

/*
 * The last resort, for a store no recovery opens (seen: "file cache.db has
 * LSN ..., past end of log" after its logs were lost): rather than leave
 * Relay uncached for good, or need a human to delete the store, its files
 * go aside (store_set_aside, under the lock that proves no other process
 * uses it) and an empty store takes its place, loudly; but only when the
 * home holds a store's data and an empty store opens beside it. failed is
 * the recovery's error. Returns 0, or the error (logged) if even that
 * failed.
 */
static int start_anew(store *s, const store_lock *lock, int failed)
{
    char where[4096];
    if (!home_has_data(s->home) || !empty_store_opens(s)) {
        rl_error("store %s: recovery cannot open this store (%s), and an empty store would "
                 "not open here either: not the store's files, which are left as they are",
                 s->home, db_strerror(failed));
        return failed;
    }
    if (store_set_aside(lock, where, sizeof where) != RL_OK)
        return failed;
    rl_error("store %s: recovery cannot open this store (%s); it was moved to %s (keep it to "
             "investigate, or delete it) and Relay starts with an empty store; the key file was "
             "left as it is",
             s->home, db_strerror(failed), where);
    if (store_check_secret(s->home, s->secret) != RL_OK)
        return failed;
    handles *h = NULL;
    int ret = handles_open(s, 1, &h);
    if (ret == 0)
        handles_close(s, h, 0, 0, 1);
    return ret;
}

/*
 * When an open fails and no other process has the store open, this
 * process takes it alone (store_lock_try), drops its regions and recovers
 * it from its logs: an open without DB_REGISTER, with DB_RECOVER, which
 * always recovers. Returns 1 when it recovered, 0 when another process has
 * the store open or is opening it (whose open does what is needed: the
 * caller tries again), -1 when the recovery failed (logged).
 *
 * What it mends: regions whose SysV segments are gone (after a reboot or
 * an ipcrm, every open fails with EINVAL: "unable to attach to shared
 * system memory region"); a region file left half-written by a creation
 * that failed on a full disk (EAGAIN: "unable to join the environment");
 * regions a failed recovery left panicked (DB_RUNRECOVERY). Why recover
 * rather than only recreate the regions: an open with DB_REGISTER
 * recovers only when __db.register names a dead process, and a recovery
 * that failed (in a read-only directory, say) has already cleared those
 * names, so recreated regions would open databases that killed processes
 * left half-written (seen: "cache.db page 830 is on free list with type
 * 7", then a panic). Recovery without anyone attached is always safe.
 * When even that fails, and because of the store's own files (cannot_heal),
 * the store is set aside and a new one started (start_anew).
 *
 * Only while this process has no handle of the store open: the lock is
 * taken and dropped through a descriptor of __db.register, and closing any
 * such descriptor drops the registration lock of a handle this process
 * has (handles_open_first and store_reopen call it after their open
 * failed, when there is none).
 */
int recover_alone(store *s, int failed)
{
    store_lock *lock = NULL;
    rl_err e = store_lock_try(s->home, &lock);
    if (e == RL_BUSY)
        return 0;
    if (e != RL_OK)
        return -1;
    rl_warn("store %s: opening it failed (%s) and no other process has it open: recovering it "
            "from its logs",
            s->home, db_strerror(failed));
    store_drop_regions(s->home);
    handles *h = NULL;
    int ret = handles_open(s, 1, &h);
    if (ret != 0 && cannot_heal(s->home, ret))
        ret = start_anew(s, lock, ret);
    if (ret == 0 && h) {
        handles_close(s, h, 0, 0, 1);
        rl_info("store %s: recovered", s->home);
    } else if (ret != 0) {
        /* What a failed creation left (on a full disk, a region file
         * without its environment's id) would make the next open wait
         * 18 s in Berkeley DB before it fails with EAGAIN. */
        store_drop_regions(s->home);
    }
    store_unlock(lock);
    return ret == 0 ? 1 : -1;
}
