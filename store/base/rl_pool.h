/*
 * rl_pool.h — a per-request memory pool with cleanups.
 *
 * Everything a request allocates for its own lifetime (parsed header
 * strings, routing results, the key) comes from its pool and goes away in
 * one rl_pool_free() after the response is finished. Resources that are not
 * pool memory (JSON documents, buffers, handles) register a cleanup before
 * they are acquired, so no error path can leak them. Not thread-safe: a pool
 * belongs to one request on one thread.
 */
#ifndef RELAY_STORE_BASE_RL_POOL_H
#define RELAY_STORE_BASE_RL_POOL_H

#include <stddef.h>

typedef struct rl_pool rl_pool;

typedef void (*rl_cleanup_fn)(void *data);

/* NULL when out of memory. */
rl_pool *rl_pool_new(void);
/* Runs the cleanups in reverse order of registration, then frees all memory. */
void rl_pool_free(rl_pool *pool);

/* Zeroed memory aligned for any type; NULL when out of memory (or when n
 * is too large to allocate). */
void *rl_palloc(rl_pool *pool, size_t n);
/* Copies of strings; NULL when out of memory (or when s is NULL). */
char *rl_pstrdup(rl_pool *pool, const char *s);
char *rl_pstrndup(rl_pool *pool, const char *s, size_t n);

/* Registers fn(data) to run at rl_pool_free. Returns -1 when out of memory,
 * in which case fn has not been registered (the caller still owns data). */
int rl_pool_cleanup(rl_pool *pool, rl_cleanup_fn fn, void *data);

#endif
