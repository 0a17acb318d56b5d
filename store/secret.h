/*
 * secret.h — the files (and environment variables) that hold Relay's
 * secrets: the store's key file ([store] key_file, or [store] key_env), the
 * admin token ([admin] token_file), and the upstream keys Relay will hold.
 * Every reader and writer of such a file goes through here, so the rules
 * are one set:
 *
 *   - reading: a regular file, at most SECRET_MAX bytes of text, trailing
 *     whitespace (the newline) removed, never empty, no NUL byte; refused
 *     when other users may read, write or run it (o+rwx: anyone on the
 *     machine could use the secret). The group may be deliberate (a web
 *     server's group), so the caller decides what to say about it
 *     (secret.mode, secret_access_of).
 *   - writing: under a temporary name created with O_EXCL|O_NOFOLLOW and
 *     mode 0600 (set with fchmod, so the process-wide umask is neither
 *     relied on nor changed), written, fsync'ed, then link(2)ed to its name
 *     (never replacing: two racing creators end up with whichever landed
 *     first) or rename(2)d over it (atomic replacement), and the directory
 *     fsync'ed. A reader never sees a half-written secret.
 *
 * Nothing here logs: a failure is returned as rl_err with a sentence for
 * the user (naming the path, the reason and the fix) appended to why (may
 * be NULL), so the caller says it once, in its own voice (a log line, a
 * relay-admin message, a doctor check, an HTTP error). Secrets are never
 * put in why. Safe from any thread (no shared state).
 */
#ifndef RELAY_STORE_SECRET_H
#define RELAY_STORE_SECRET_H

#include <stddef.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

#define SECRET_MAX 4096 /* a file longer than this does not hold a secret */

/* A secret read into memory. Release with secret_release, which wipes it. */
typedef struct secret {
    char *data;    /* NUL-terminated text; NULL when empty */
    size_t len;    /* excluding the NUL */
    unsigned mode; /* the file's permission bits, set whenever the file was found, even
                    * when refused (0 for an environment variable) */
} secret;

/* Who besides the owner may use a file of this mode. */
typedef enum {
    SECRET_PRIVATE, /* nobody: 0600, 0400, 0700 */
    SECRET_GROUP,   /* the file's group, not others: allowed, worth a warning */
    SECRET_OPEN,    /* other users too: refused by secret_read */
} secret_access;
secret_access secret_access_of(unsigned mode);

/* Reads the secret in path into *out (zeroed first). RL_NOTFOUND when the
 * file does not exist, RL_FORBIDDEN when other users may use it (see
 * above), RL_CONFIG when it is not a regular file or holds no usable text
 * (empty, binary, longer than SECRET_MAX), RL_IO when it cannot be read
 * (permission denied included), RL_NOMEM. */
rl_err secret_read(const char *path, secret *out, rl_buf *why);

/* Copies the value of the environment variable var into *out, as
 * secret_read would read it from a file (trailing whitespace removed).
 * RL_NOTFOUND when it is unset or empty, RL_CONFIG when it is too long. */
rl_err secret_from_env(const char *var, secret *out, rl_buf *why);

/* Wipes and frees the secret; out is empty afterwards. NULL is a no-op. */
void secret_release(secret *s);

/* 1 when a and b hold the same bytes, compared in constant time. */
int secret_equal(const secret *a, const secret *b);

/* secret_write flags */
enum {
    SECRET_REPLACE = 1, /* rename over an existing file (else: RL_BUSY if one exists) */
    SECRET_MKDIRS = 2,  /* create missing parent directories, mode 0700 */
};

/* Writes len bytes of data as the file path, mode 0600, as described
 * above. Without SECRET_REPLACE an existing path is left untouched and
 * RL_BUSY returned (why says nothing then: it is the caller's call whether
 * that is a failure). RL_IO on any failure (no temporary file is left). */
rl_err secret_write(const char *path, const void *data, size_t len, int flags, rl_buf *why);

/* secret_write of s's text and a newline: the file secret_read read s from,
 * as far as a reader can tell. */
rl_err secret_save(const char *path, const secret *s, int flags, rl_buf *why);

/* Creates path (flags as secret_write, SECRET_REPLACE excepted) holding a
 * new secret: bytes random bytes from the kernel as lowercase hex digits
 * and a newline. RL_BUSY (path untouched) when it exists already. */
rl_err secret_create_random(const char *path, size_t bytes, int flags, rl_buf *why);

#endif
