#include "store/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/base/rl_hex.h"
#include "store/base/rl_secure.h"
#include "store/keyfile.h"

#define RANDOM_MAX 512 /* bytes secret_create_random makes at most */

secret_access secret_access_of(unsigned mode)
{
    return mode & 007 ? SECRET_OPEN : mode & 070 ? SECRET_GROUP : SECRET_PRIVATE;
}

void secret_release(secret *s)
{
    if (!s)
        return;
    rl_secure_free(s->data, s->len + 1);
    s->data = NULL;
    s->len = 0;
}

int secret_equal(const secret *a, const secret *b)
{
    return rl_ct_equal(a->data, a->len, b->data, b->len);
}

static void say(rl_buf *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(rl_buf *why, const char *fmt, ...)
{
    if (!why)
        return;
    va_list ap;
    va_start(ap, fmt);
    (void)rl_buf_vprintf(why, fmt, ap);
    va_end(ap);
}

/* Trims trailing whitespace of the n bytes read into buf (SECRET_MAX + 1
 * bytes) and checks that text is left; the new length, or -1 (said). */
static long text_check(const char *where, char *buf, size_t n, rl_buf *why)
{
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0) {
        say(why, "%s is empty", where);
        return -1;
    }
    if (memchr(buf, '\0', n)) {
        say(why, "%s holds binary data; a secret is text (e.g. hex digits)", where);
        return -1;
    }
    return (long)n;
}

/* Reads all of fd (at most SECRET_MAX bytes) into buf; its length, or -1
 * with errno set (EFBIG: too long). */
static long read_all(int fd, char *buf)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, SECRET_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return (long)n;
        n += (size_t)r;
        if (n > SECRET_MAX) {
            errno = EFBIG;
            return -1;
        }
    }
}

rl_err secret_read(const char *path, secret *out, rl_buf *why)
{
    rl_err e = RL_CONFIG;
    char *buf = NULL;
    memset(out, 0, sizeof *out);
    /* O_NONBLOCK: a FIFO put in place of the file must not hang the reader
     * (it is refused below as not a regular file). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        e = errno == ENOENT ? RL_NOTFOUND : RL_IO;
        say(why, "cannot open %s: %s", path, strerror(errno));
        return e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        say(why, "cannot stat %s: %s", path, strerror(errno));
        e = RL_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        say(why, "%s is not a regular file", path);
        goto out;
    }
    out->mode = (unsigned)(st.st_mode & 07777);
    if (secret_access_of(out->mode) == SECRET_OPEN) {
        say(why,
            "%s is accessible to other users (mode %03o): anyone on this machine could use "
            "the secret; chmod 600 %s",
            path, out->mode & 0777, path);
        e = RL_FORBIDDEN;
        goto out;
    }
    if (!(buf = malloc(SECRET_MAX + 1))) {
        e = RL_NOMEM;
        goto out;
    }
    long n = read_all(fd, buf);
    if (n < 0) {
        if (errno == EFBIG)
            say(why, "%s is larger than %d bytes: not a secret file", path, SECRET_MAX);
        else
            say(why, "cannot read %s: %s", path, strerror(errno));
        e = errno == EFBIG ? RL_CONFIG : RL_IO;
        goto out;
    }
    if ((n = text_check(path, buf, (size_t)n, why)) < 0)
        goto out;
    out->data = buf;
    out->len = (size_t)n;
    buf = NULL;
    e = RL_OK;
out:
    close(fd);
    rl_secure_free(buf, SECRET_MAX + 1);
    return e;
}

rl_err secret_from_env(const char *var, secret *out, rl_buf *why)
{
    memset(out, 0, sizeof *out);
    const char *v = var && *var ? getenv(var) : NULL;
    if (!v || !*v) {
        say(why, "the environment variable %s is %s", var ? var : "(none)",
            v ? "empty" : "not set");
        return RL_NOTFOUND;
    }
    size_t n = strlen(v);
    if (n > SECRET_MAX) {
        say(why, "the environment variable %s is longer than %d bytes", var, SECRET_MAX);
        return RL_CONFIG;
    }
    char *buf = malloc(SECRET_MAX + 1);
    if (!buf)
        return RL_NOMEM;
    memcpy(buf, v, n);
    char where[300];
    snprintf(where, sizeof where, "the environment variable %s", var);
    long len = text_check(where, buf, n, why);
    if (len < 0) {
        rl_secure_free(buf, SECRET_MAX + 1);
        return RL_NOTFOUND; /* only whitespace: as good as empty */
    }
    out->data = buf;
    out->len = (size_t)len;
    return RL_OK;
}

/* dirname(path) into out (cap bytes); -1 when it does not fit. */
static int parent_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    int n = !slash          ? snprintf(out, cap, ".")
            : slash == path ? snprintf(out, cap, "/")
                            : snprintf(out, cap, "%.*s", (int)(slash - path), path);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory, so that a new or renamed name survives a power
 * cut. Best effort: some file systems refuse to sync a directory. */
static void sync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

rl_err secret_write(const char *path, const void *data, size_t len, int flags, rl_buf *why)
{
    rl_err e = RL_IO;
    char dir[4096], tmp[4096 + 32];
    int fd = -1, made = 0;
    if (!path || !*path || parent_of(path, dir, sizeof dir) != 0 ||
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        say(why, "%s: not a usable file name", path ? path : "(none)");
        return RL_CONFIG;
    }
    if (!(flags & SECRET_REPLACE) && access(path, F_OK) == 0)
        return RL_BUSY;
    if ((flags & SECRET_MKDIRS) && store_mkdirs(dir, 0700) != RL_OK) {
        say(why, "cannot create the directory %s", dir);
        return RL_IO;
    }
    (void)unlink(tmp); /* a leftover of a crashed process that had our pid */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        say(why, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    made = 1;
    /* The umask may have taken bits away, never added any: fchmod makes
     * it exactly 0600 without touching the process-wide umask. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        say(why, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    int closed = close(fd);
    fd = -1;
    if (closed != 0) {
        say(why, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (flags & SECRET_REPLACE) {
        if (rename(tmp, path) != 0) {
            say(why, "cannot put %s in place of %s: %s", tmp, path, strerror(errno));
            goto out;
        }
        made = 0;
    } else if (link(tmp, path) != 0) {
        if (errno == EEXIST) {
            e = RL_BUSY; /* another process was first: its secret stands */
            goto out;
        }
        say(why, "cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    sync_dir(dir);
    e = RL_OK;
out:
    if (fd >= 0)
        close(fd);
    if (made)
        (void)unlink(tmp);
    return e;
}

rl_err secret_save(const char *path, const secret *s, int flags, rl_buf *why)
{
    char *text = malloc(s->len + 1);
    if (!text)
        return RL_NOMEM;
    memcpy(text, s->data, s->len);
    text[s->len] = '\n';
    rl_err e = secret_write(path, text, s->len + 1, flags, why);
    rl_secure_free(text, s->len + 1);
    return e;
}

rl_err secret_create_random(const char *path, size_t bytes, int flags, rl_buf *why)
{
    uint8_t raw[RANDOM_MAX];
    char hex[2 * RANDOM_MAX + 2];
    if (bytes == 0 || bytes > RANDOM_MAX)
        return RL_INTERNAL;
    if (rl_random(raw, bytes) != RL_OK) {
        say(why, "cannot draw random bytes for %s: %s", path, strerror(errno));
        return RL_IO;
    }
    rl_hex_encode(raw, bytes, hex);
    hex[2 * bytes] = '\n';
    rl_err e = secret_write(path, hex, 2 * bytes + 1, flags & ~SECRET_REPLACE, why);
    rl_secure_zero(raw, sizeof raw);
    rl_secure_zero(hex, sizeof hex);
    return e;
}
