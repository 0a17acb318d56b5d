/*
 * keyfile.h — the store's secret and the directories it lives in.
 *
 * Internal to store/: store_keyfile_ensure (the public half) is declared in
 * store.h. Nothing here logs the secret; errors are logged once here, with
 * the path and strerror, and returned as rl_err.
 */
#ifndef RELAY_STORE_KEYFILE_H
#define RELAY_STORE_KEYFILE_H

#include <stddef.h>
#include <sys/types.h>

#include "store/store.h"

/* Creates dir and any missing parents with mode (like mkdir -p); existing
 * directories are left as they are. RL_IO (logged) on failure. */
rl_err store_mkdirs(const char *dir, mode_t mode);

/* Reads the secret from key_file into a new NUL-terminated string (*secret,
 * *len excluding the NUL), with trailing whitespace removed. The caller owns
 * it and must release it with store_secret_free, which wipes it first.
 * Refuses (RL_STORE) a missing, empty, binary or world-accessible file and
 * warns about one the group can read. */
rl_err store_keyfile_read(const char *key_file, char **secret, size_t *len);
void store_secret_free(char *secret, size_t len);

#endif
