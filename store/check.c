/*
 * check.c — the secret check: whether the key file's secret is the one the
 * store was created with, answered before the environment is opened.
 *
 * Threads and processes: any, at once; check.db is written once, by
 * whichever process creates it first (link() decides), and only read after.
 *
 * Failure: logged here once (a wrong secret names the file and Berkeley
 * DB's text), returned as RL_STORE (RL_NOMEM).
 */
#include "store/store.h"

#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"
#include "store/store_int.h"

#define CHECK_FILE "check.db"
#define CHECK_KEY "relay-store-check"
#define CHECK_VALUE "relay-store-v1"

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
    db->set_errcall(db, store_bdb_errcall);
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

static rl_err check_verify(const char *home, const char *secret, const char *path)
{
    int ret = store_check_file(path, secret);
    if (ret) {
        rl_error("store %s: the secret in the key file does not open this store (%s: %s); "
                 "is it the key file the store was created with?",
                 home, path, db_strerror(ret));
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
static rl_err check_create(const char *home, const char *secret, const char *path)
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
    int ret = check_open(secret, tmp.data, DB_CREATE | DB_EXCL, &db);
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
        store_bdb_fail(home, "creating the check file", ret);
        goto out;
    }
    int fd = open(tmp.data, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        rl_error("store %s: syncing %s: %s", home, tmp.data, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    close(fd);
    if (link(tmp.data, path) != 0) {
        if (errno != EEXIST) {
            rl_error("store %s: creating %s: %s", home, path, strerror(errno));
            goto out;
        }
        e = check_verify(home, secret, path);
        goto out;
    }
    e = RL_OK;
out:
    if (tmp.data)
        (void)unlink(tmp.data);
    rl_buf_release(&tmp);
    return e;
}

rl_err store_check_secret(const char *home, const char *secret)
{
    rl_err e;
    rl_buf path;
    rl_buf_init(&path, 0);
    if (rl_buf_printf(&path, "%s/%s", home, CHECK_FILE) != RL_OK) {
        e = RL_NOMEM;
        goto out;
    }
    struct stat st;
    if (stat(path.data, &st) == 0) {
        e = check_verify(home, secret, path.data);
        goto out;
    }
    if (errno != ENOENT) {
        rl_error("store %s: cannot stat %s: %s", home, path.data, strerror(errno));
        e = RL_STORE;
        goto out;
    }
    if (home_has_data(home)) {
        rl_error("store %s: the store has data but no %s, so the secret cannot be checked "
                 "before recovery; restore the file, or remove the store to start empty",
                 home, CHECK_FILE);
        e = RL_STORE;
        goto out;
    }
    e = check_create(home, secret, path.data);
out:
    rl_buf_release(&path);
    return e;
}
