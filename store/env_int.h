/*
 * env_int.h — what env.c (the environment's handle sets) and env_heal.c
 * (a store that does not open) share. Store-internal, like store_int.h
 * (Berkeley DB types); contracts of the public side in store.h.
 */
#ifndef RELAY_STORE_ENV_INT_H
#define RELAY_STORE_ENV_INT_H

#include <db.h>

#include "store/store_int.h"

/* env.c: opens the environment and the databases as a new handle set
 * (alone: this process holds store_lock_exclusive, so no DB_REGISTER).
 * 0 or the Berkeley DB code, already logged. */
int handles_open(store *s, int alone, handles **out);
/* env.c: closes a handle set (see env.c for stranded and may_detach). */
void handles_close(store *s, handles *h, u_int32_t db_flags, int stranded, int may_detach);
/* env.c: the SysV key of a home's regions. */
long shm_key_for(const char *realhome);

/* env_heal.c: after an open failed with failed: recovers the store alone
 * if no other process has it open (setting its files aside for an empty
 * store when even that fails because of the files). 1 when it recovered
 * or started anew (open again), 0 when others have it open or it cannot
 * tell now (wait and try again), -1 when it must not be retried. */
int recover_alone(store *s, int failed);

#endif
