#include "store/keyfile.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"
#include "store/base/rl_secure.h"
#include "store/secret.h"

#define KEY_BYTES 32
#define KEY_SHORT 16 /* a secret shorter than this is worth a warning */

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

/* A new key file holds KEY_BYTES random bytes as hex; an existing one is
 * never replaced (secret_create_random links it into place), so processes
 * racing here all end up with whichever key landed first. */
rl_err store_keyfile_ensure(const char *key_file)
{
    rl_buf why;
    rl_buf_init(&why, 1024);
    if (!key_file || !*key_file) {
        rl_error("store: no key file configured");
        return RL_CONFIG;
    }
    rl_err e = secret_create_random(key_file, KEY_BYTES, SECRET_MKDIRS, &why);
    if (e == RL_OK) {
        rl_info("store: created key file %s", key_file);
    } else if (e == RL_BUSY) {
        struct stat st;
        e = RL_OK;
        if (stat(key_file, &st) != 0 || !S_ISREG(st.st_mode)) {
            rl_error("store: key file %s is not a regular file", key_file);
            e = RL_IO;
        } else if (secret_access_of((unsigned)st.st_mode) != SECRET_PRIVATE) {
            rl_warn("store: key file %s has mode %03o; it should be 600", key_file,
                    (unsigned)(st.st_mode & 0777));
        }
    } else {
        rl_error("store: %s", why.data ? why.data : "cannot create the key file");
        e = RL_IO;
    }
    rl_buf_release(&why);
    return e;
}

static int key_from_env(const store_options *opt)
{
    return opt->key_env && *opt->key_env;
}

rl_err store_key_ensure(const store_options *opt)
{
    /* A key from the environment is the deployment's to provide; whether it
     * is there is store_open's (or doctor's) to say. */
    return key_from_env(opt) ? RL_OK : store_keyfile_ensure(opt->key_file);
}

void store_secret_free(char *key, size_t len)
{
    rl_secure_free(key, len + 1);
}

rl_err store_key_read(const store_options *opt, char **out, size_t *len)
{
    secret k;
    rl_buf why;
    rl_buf_init(&why, 1024);
    *out = NULL;
    *len = 0;
    int env = key_from_env(opt);
    rl_err e = env ? secret_from_env(opt->key_env, &k, &why)
                   : secret_read(opt->key_file ? opt->key_file : "", &k, &why);
    if (e != RL_OK) {
        rl_error("store: the key ([store] %s): %s", env ? "key_env" : "key_file",
                 why.data ? why.data : rl_err_text(e));
        rl_buf_release(&why);
        return e == RL_NOMEM ? RL_NOMEM : RL_STORE;
    }
    rl_buf_release(&why);
    if (secret_access_of(k.mode) == SECRET_GROUP)
        rl_warn("store: key file %s is accessible to its group (mode %03o); 600 is safer",
                opt->key_file, k.mode & 0777);
    if (k.len < KEY_SHORT)
        rl_warn("store: the secret in %s is short (%zu characters)",
                env ? opt->key_env : opt->key_file, k.len);
    /* The secret's buffer is SECRET_MAX + 1 bytes; store_secret_free wipes
     * len + 1 of them, all it ever held. */
    *out = k.data;
    *len = k.len;
    return RL_OK;
}
