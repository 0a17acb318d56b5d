/*
 * mapfile.h — store-internal: a fixed-size file in the store's home mapped
 * MAP_SHARED by every process, for the tables the processes share without
 * the database (wake.c's wake-ups, usemap.c's recency of use, and
 * engine/admission.c's places for upstream calls, which lives in the
 * store's home beside them).
 *
 * Threads: any; the mapping is the caller's to synchronise (atomics).
 * Files hold counters, times and digests only: nothing secret.
 */
#ifndef RELAY_STORE_MAPFILE_H
#define RELAY_STORE_MAPFILE_H

#include <stddef.h>

#include "store/base/rl_err.h"

/*
 * Maps home/name (created mode 0600 if missing) with at least bytes bytes
 * allocated on disk, growing a smaller file (what is added reads as zeros)
 * and never shrinking one: other processes may have it mapped. *map gets
 * the mapping of the first bytes bytes (munmap it with that size). RL_IO
 * (logged, naming the file) when it cannot be opened, allocated (a full
 * file system: the caller's store stays closed until there is room) or
 * mapped; RL_NOMEM.
 */
rl_err store_map_file(const char *home, const char *name, size_t bytes, void **map);

#endif
