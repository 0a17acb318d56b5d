#include "store/base/rl_pool.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Requests allocate a few kilobytes of small strings; 8 KiB blocks keep most
 * requests to one or two mallocs. Larger allocations get a block of their own. */
#define POOL_BLOCK_SIZE 8192

struct pool_block {
    struct pool_block *next;
    size_t used, size;
    alignas(max_align_t) unsigned char mem[];
};

struct pool_cleanup {
    struct pool_cleanup *next;
    rl_cleanup_fn fn;
    void *data;
};

struct rl_pool {
    struct pool_block *blocks;
    struct pool_cleanup *cleanups;
};

rl_pool *rl_pool_new(void)
{
    return calloc(1, sizeof(rl_pool));
}

void rl_pool_free(rl_pool *pool)
{
    if (!pool)
        return;
    for (struct pool_cleanup *c = pool->cleanups; c; c = c->next)
        c->fn(c->data);
    struct pool_block *b = pool->blocks;
    while (b) {
        struct pool_block *next = b->next;
        free(b);
        b = next;
    }
    free(pool);
}

void *rl_palloc(rl_pool *pool, size_t n)
{
    const size_t align = alignof(max_align_t);
    /* Checked before rounding: rounding a size near SIZE_MAX up wraps to a
     * small allocation that the caller would then overrun. */
    if (n > SIZE_MAX - (align - 1))
        return NULL;
    n = (n + align - 1) & ~(align - 1);
    if (n == 0)
        n = align;
    struct pool_block *b = pool->blocks;
    if (!b || b->size - b->used < n) {
        size_t size = n > POOL_BLOCK_SIZE ? n : POOL_BLOCK_SIZE;
        if (size > SIZE_MAX - sizeof *b)
            return NULL;
        struct pool_block *nb = malloc(sizeof *nb + size);
        if (!nb)
            return NULL;
        nb->used = 0;
        nb->size = size;
        /* A one-off large block goes second, so the current block keeps
         * serving small allocations. */
        if (b && size > POOL_BLOCK_SIZE) {
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            pool->blocks = nb;
        }
        b = nb;
    }
    void *p = b->mem + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *rl_pstrndup(rl_pool *pool, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *p = rl_palloc(pool, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *rl_pstrdup(rl_pool *pool, const char *s)
{
    return s ? rl_pstrndup(pool, s, strlen(s)) : NULL;
}

int rl_pool_cleanup(rl_pool *pool, rl_cleanup_fn fn, void *data)
{
    struct pool_cleanup *c = rl_palloc(pool, sizeof *c);
    if (!c)
        return -1;
    c->fn = fn;
    c->data = data;
    c->next = pool->cleanups;
    pool->cleanups = c;
    return 0;
}
