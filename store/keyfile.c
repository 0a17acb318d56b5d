#include "store/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"

#define KEY_BYTES 32
#define KEY_FILE_MAX 4096 /* a secret longer than this is not a key file */

rl_err store_mkdirs(const char *dir, mode_t mode)
{
    rl_err e = RL_OK;
    rl_buf path;
    rl_buf_init(&path, 0);
    if (!dir || !*dir) {
        rl_error("store: empty directory name");
        return RL_CONFIG;
    }
    if (rl_buf_puts(&path, dir) != RL_OK) {
        e = RL_NOMEM;
        goto out;
    }
    /* Walk the components left to right, creating each one; "/" and a
     * trailing slash need no mkdir of their own. */
    for (char *p = path.data + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path.data, mode) != 0 && errno != EEXIST) {
            rl_error("store: cannot create directory %s: %s", path.data, strerror(errno));
            e = RL_IO;
            goto out;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rl_error("store: %s is not a directory", dir);
        e = RL_IO;
    }
out:
    rl_buf_release(&path);
    return e;
}

/* Returns dirname(path) in a new buffer, or NULL when out of memory. */
static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fill_random(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/*
 * The file is written under a temporary name (O_CREAT|O_EXCL, 0600),
 * synced, then link()ed to its final name: link fails with EEXIST instead of
 * replacing, so two processes racing here both end up using whichever key
 * landed first, and no reader ever sees a half-written key.
 */
rl_err store_keyfile_ensure(const char *key_file)
{
    rl_err e = RL_OK;
    char *dir = NULL;
    int fd = -1;
    unsigned char raw[KEY_BYTES];
    char hex[2 * KEY_BYTES + 2];
    rl_buf tmp;
    rl_buf_init(&tmp, 0);

    if (!key_file || !*key_file) {
        rl_error("store: no key file configured");
        return RL_CONFIG;
    }
    struct stat st;
    if (stat(key_file, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            rl_error("store: key file %s is not a regular file", key_file);
            return RL_IO;
        }
        if (st.st_mode & 077)
            rl_warn("store: key file %s has mode %03o; it should be 600", key_file,
                    (unsigned)(st.st_mode & 0777));
        return RL_OK;
    }
    if (errno != ENOENT) {
        rl_error("store: cannot stat key file %s: %s", key_file, strerror(errno));
        return RL_IO;
    }

    dir = parent_dir(key_file);
    if (!dir) {
        e = RL_NOMEM;
        goto out;
    }
    if ((e = store_mkdirs(dir, 0700)) != RL_OK)
        goto out;

    if (fill_random(raw, sizeof raw) != 0) {
        rl_error("store: getrandom failed while creating key file %s: %s", key_file,
                 strerror(errno));
        e = RL_IO;
        goto out;
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < KEY_BYTES; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[2 * KEY_BYTES] = '\n';
    hex[2 * KEY_BYTES + 1] = '\0';

    if (rl_buf_printf(&tmp, "%s.tmp.%ld", key_file, (long)getpid()) != RL_OK) {
        e = RL_NOMEM;
        goto out;
    }
    (void)unlink(tmp.data); /* a leftover of a crashed process with our pid */
    fd = open(tmp.data, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rl_error("store: cannot create %s: %s", tmp.data, strerror(errno));
        e = RL_IO;
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, hex, 2 * KEY_BYTES + 1) != 0 || fsync(fd) != 0) {
        rl_error("store: cannot write key file %s: %s", tmp.data, strerror(errno));
        e = RL_IO;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rl_error("store: cannot write key file %s: %s", tmp.data, strerror(errno));
        e = RL_IO;
        goto out;
    }
    fd = -1;
    if (link(tmp.data, key_file) != 0 && errno != EEXIST) {
        rl_error("store: cannot create key file %s: %s", key_file, strerror(errno));
        e = RL_IO;
        goto out;
    }
    /* Make the new name durable; failure here only risks a re-creation
     * after a power cut, before any data was encrypted with the key. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    rl_info("store: created key file %s", key_file);
out:
    if (fd >= 0)
        close(fd);
    if (tmp.data)
        (void)unlink(tmp.data);
    explicit_bzero(raw, sizeof raw);
    explicit_bzero(hex, sizeof hex);
    rl_buf_release(&tmp);
    free(dir);
    return e;
}

void store_secret_free(char *secret, size_t len)
{
    if (!secret)
        return;
    explicit_bzero(secret, len);
    free(secret);
}

rl_err store_keyfile_read(const char *key_file, char **secret, size_t *len)
{
    rl_err e = RL_STORE;
    char *buf = NULL;
    size_t n = 0;
    *secret = NULL;
    *len = 0;

    int fd = open(key_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rl_error("store: cannot open key file %s: %s", key_file, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rl_error("store: cannot stat key file %s: %s", key_file, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rl_error("store: key file %s is not a regular file", key_file);
        goto out;
    }
    /* Anyone who can read the key can decrypt every cached answer; like ssh
     * with private keys, refuse a file open to all users. The group may be
     * a deliberate choice (a web server group), so that only warns. */
    if (st.st_mode & 007) {
        rl_error("store: key file %s is accessible to other users (mode %03o); chmod 600 it",
                 key_file, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if (st.st_mode & 070)
        rl_warn("store: key file %s is accessible to its group (mode %03o); 600 is safer", key_file,
                (unsigned)(st.st_mode & 0777));

    buf = malloc(KEY_FILE_MAX + 1);
    if (!buf) {
        e = RL_NOMEM;
        goto out;
    }
    for (;;) {
        if (n == KEY_FILE_MAX) {
            rl_error("store: key file %s is larger than %d bytes", key_file, KEY_FILE_MAX);
            goto out;
        }
        ssize_t r = read(fd, buf + n, KEY_FILE_MAX - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rl_error("store: cannot read key file %s: %s", key_file, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0) {
        rl_error("store: key file %s is empty", key_file);
        goto out;
    }
    if (memchr(buf, '\0', n)) {
        rl_error("store: key file %s holds binary data; expected a text secret", key_file);
        goto out;
    }
    if (n < 16)
        rl_warn("store: the secret in %s is short (%zu characters)", key_file, n);
    *secret = buf;
    *len = n;
    buf = NULL;
    e = RL_OK;
out:
    if (fd >= 0)
        close(fd);
    if (buf)
        store_secret_free(buf, KEY_FILE_MAX + 1);
    return e;
}
