/*
 * keyfile.h — the store's secret and the directories it lives in.
 *
 * Internal to store/: store_keyfile_ensure and store_key_ensure (the public
 * half) are declared in store.h. The files themselves are read and written
 * by secret.h, whose rules apply. Nothing here logs the secret; errors are
 * logged once here, with the path and the reason, and returned as rl_err.
 */
#ifndef RELAY_STORE_KEYFILE_H
#define RELAY_STORE_KEYFILE_H

#include <stddef.h>
#include <sys/types.h>

#include "store/store.h"

/* Creates dir and any missing parents with mode (like mkdir -p); existing
 * directories are left as they are. RL_IO (logged) on failure. */
rl_err store_mkdirs(const char *dir, mode_t mode);

/* Reads the store's secret as opt says: from the environment variable
 * opt->key_env when that is set and not empty, else from opt->key_file
 * (refused when other users may read it, warned about when its group may).
 * *secret is NUL-terminated, the caller's, and released with
 * store_secret_free, which wipes it. RL_STORE (logged: missing, refused,
 * unusable) or RL_NOMEM. */
rl_err store_key_read(const store_options *opt, char **secret, size_t *len);
void store_secret_free(char *key, size_t len);

#endif
