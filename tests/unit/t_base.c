/* Unit tests for the shared base: buffers with caps, pools, error table. */
#include <stdlib.h>
#include <string.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/base/rl_pool.h"
#include "tests/unit/tap.h"

static int cleanup_calls[4];
static int cleanup_order;
static void note_cleanup(void *p)
{
    *(int *)p = ++cleanup_order;
}

int main(void)
{
    rl_buf b;
    rl_buf_init(&b, 10);
    is_int(rl_buf_append(&b, "hello", 5), RL_OK, "append within the cap");
    is_str(b.data, "hello", "buffer is NUL-terminated text");
    is_int(rl_buf_append(&b, "world", 5), RL_OK, "append up to exactly the cap");
    is_int(rl_buf_append(&b, "!", 1), RL_TOO_LARGE, "one byte past the cap is refused");
    is_int(b.len, 10, "a refused append leaves the buffer unchanged");
    /* Sticky: once an append failed, later ones fail the same way, even
     * ones that would fit, so a sequence is checked once at its end. */
    is_int(rl_buf_error(&b), RL_TOO_LARGE, "the error is remembered");
    rl_buf_reset(&b);
    is_int(rl_buf_error(&b), RL_OK, "reset forgets it");
    is_int(rl_buf_append(&b, "0123456789x", 11), RL_TOO_LARGE, "an append past the cap fails");
    is_int(rl_buf_append(&b, "ok", 2), RL_TOO_LARGE, "a later one that would fit fails too");
    is_int(rl_buf_printf(&b, "%d", 1), RL_TOO_LARGE, "and a later printf");
    is_int(b.len, 0, "nothing was appended after the first failure");
    is_int(rl_buf_error(&b), RL_TOO_LARGE, "rl_buf_error says so once at the end");
    rl_buf_release(&b);
    is_int(rl_buf_error(&b), RL_OK, "release forgets it");
    rl_buf_init(&b, 10);
    is_int(rl_buf_printf(&b, "%d-%s", 42, "x"), RL_OK, "printf appends");
    is_str(b.data, "42-x", "printf result");
    is_int(rl_buf_printf(&b, "%s", "0123456789"), RL_TOO_LARGE, "printf past the cap is refused");
    size_t n;
    char *s = rl_buf_steal(&b, &n);
    is_str(s, "42-x", "steal hands over the bytes");
    is_int(n, 4, "steal reports the length");
    ok(b.data == NULL && b.len == 0, "steal leaves the buffer empty");
    free(s);

    /* adopt: the memory becomes the buffer's, no copy; refused (memory
     * still the caller's) past the cap, on a buffer with contents, or with
     * no room for the NUL. */
    rl_buf ad;
    rl_buf_init(&ad, 8);
    char *mem = malloc(16);
    memcpy(mem, "adopted!", 8);
    is_int(rl_buf_adopt(&ad, mem, 8, 16), RL_OK, "adopt takes malloc'd memory");
    ok(ad.data == mem && ad.len == 8 && ad.cap == 16, "adopt keeps the very memory");
    is_str(ad.data, "adopted!", "adopt NUL-terminates");
    char *other = malloc(4);
    is_int(rl_buf_adopt(&ad, other, 1, 4), RL_INTERNAL, "adopt refuses a buffer with contents");
    rl_buf_release(&ad);
    rl_buf_init(&ad, 8);
    is_int(rl_buf_adopt(&ad, other, 4, 4), RL_INTERNAL, "adopt needs room for the NUL");
    rl_buf_reset(&ad);
    char *wide = malloc(32);
    is_int(rl_buf_adopt(&ad, wide, 9, 32), RL_TOO_LARGE, "adopt past the cap is refused");
    ok(ad.data == NULL, "a refused adopt leaves the buffer as it was");
    free(wide);
    free(other);
    rl_buf_release(&ad);

    rl_buf big;
    rl_buf_init(&big, 0);
    for (int i = 0; i < 10000; i++)
        rl_buf_append(&big, "abcdefgh", 8);
    is_int(big.len, 80000, "an uncapped buffer grows");
    rl_buf_release(&big);

    rl_pool *pool = rl_pool_new();
    char *a = rl_pstrdup(pool, "alpha");
    char *c = rl_pstrndup(pool, "betagamma", 4);
    is_str(a, "alpha", "pstrdup copies");
    is_str(c, "beta", "pstrndup copies n bytes and terminates");
    ok(rl_palloc(pool, SIZE_MAX) == NULL, "SIZE_MAX is refused (rounding it up would wrap)");
    ok(rl_palloc(pool, SIZE_MAX - 3) == NULL, "SIZE_MAX - 3 too");
    ok(rl_palloc(pool, SIZE_MAX / 2 + 1) == NULL,
       "half the address space is out of memory, not a wrap");
    void *large = rl_palloc(pool, 100000);
    ok(large != NULL, "allocations larger than a block work");
    char *after = rl_pstrdup(pool, "after");
    is_str(after, "after", "small allocations still work after a large one");
    ok(((uintptr_t)rl_palloc(pool, 3) % _Alignof(max_align_t)) == 0, "allocations are aligned");
    rl_pool_cleanup(pool, note_cleanup, &cleanup_calls[0]);
    rl_pool_cleanup(pool, note_cleanup, &cleanup_calls[1]);
    rl_pool_free(pool);
    ok(cleanup_calls[0] == 2 && cleanup_calls[1] == 1, "cleanups run in reverse order");

    is_int(rl_err_status(RL_TOO_LARGE), 413, "TOO_LARGE maps to 413");
    is_int(rl_err_status(RL_UPSTREAM_UNREACHABLE), 502, "UNREACHABLE maps to 502");
    is_int(rl_err_status(RL_ONLY_IF_CACHED), 504, "ONLY_IF_CACHED maps to 504");
    is_str(rl_err_code((rl_err)9999), "internal_error", "an unknown code maps to INTERNAL");
    return tap_done();
}
