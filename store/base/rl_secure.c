#include "store/base/rl_secure.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int rl_ct_equal(const void *a, size_t a_len, const void *b, size_t b_len)
{
    const volatile uint8_t *x = a, *y = b;
    /* Different lengths still walk b, compared with itself, so that the
     * time does not depend on a's contents either way. */
    if (a_len != b_len)
        x = y;
    uint8_t diff = 0;
    for (size_t i = 0; i < b_len; i++)
        diff |= (uint8_t)(x[i] ^ y[i]);
    return (a_len == b_len) & (diff == 0);
}

void rl_secure_zero(void *p, size_t n)
{
    if (p)
        explicit_bzero(p, n);
}

void rl_secure_free(void *p, size_t n)
{
    if (!p)
        return;
    explicit_bzero(p, n);
    free(p);
}

rl_err rl_random(void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = getrandom(b, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return RL_IO;
        }
        b += r;
        n -= (size_t)r;
    }
    return RL_OK;
}
