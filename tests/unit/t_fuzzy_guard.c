/*
 * t_fuzzy_guard.c — the probe guard of fuzzy matching (engine/fuzzy_serve.c):
 * more than FUZZY_PROBE_LIMIT distinct near-variants answered within
 * FUZZY_PROBE_WINDOW seconds turn fuzzy matching off for that scope for
 * FUZZY_PROBE_OFF seconds; repeats of one variant, other scopes and slower
 * rates do not. Time is passed in: nothing sleeps.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "engine/fuzzy_serve.h"
#include "tests/unit/tap.h"

static void key_n(uint8_t k[STORE_KEY_LEN], uint32_t n)
{
    memset(k, 0x5a, STORE_KEY_LEN);
    k[0] = (uint8_t)(n >> 24);
    k[1] = (uint8_t)(n >> 16);
    k[2] = (uint8_t)(n >> 8);
    k[3] = (uint8_t)n;
}

/* Notes n distinct variants (numbers from first) at now; how many turned it off. */
static int burst(fuzzy_guard *g, const char *scope, uint32_t first, unsigned n, uint64_t now)
{
    int off = 0;
    uint8_t k[STORE_KEY_LEN];
    for (unsigned i = 0; i < n; i++) {
        key_n(k, first + i);
        off += fuzzy_guard_note(g, scope, k, now);
    }
    return off;
}

int main(void)
{
    fuzzy_guard *g = fuzzy_guard_new();
    ok(g != NULL, "a guard");
    if (!g)
        return tap_done();
    const uint64_t t0 = 1000000;

    is_int(burst(g, "cred:a", 0, FUZZY_PROBE_LIMIT, t0), 0, "20 distinct variants: still on");
    ok(!fuzzy_guard_blocked(g, "cred:a", t0), "not blocked at the limit");
    uint8_t k[STORE_KEY_LEN];
    key_n(k, 5);
    is_int(fuzzy_guard_note(g, "cred:a", k, t0 + 1), 0, "a repeated variant is not a new one");
    is_int(burst(g, "cred:a", 100, 1, t0 + 2), 1, "the 21st distinct variant turns it off");
    ok(fuzzy_guard_blocked(g, "cred:a", t0 + 2), "blocked");
    ok(!fuzzy_guard_blocked(g, "cred:b", t0 + 2), "another scope is not");
    ok(fuzzy_guard_blocked(g, "cred:a", t0 + 2 + FUZZY_PROBE_OFF - 1), "blocked for 10 minutes");
    ok(!fuzzy_guard_blocked(g, "cred:a", t0 + 2 + FUZZY_PROBE_OFF), "on again after");
    is_int(burst(g, "cred:a", 200, FUZZY_PROBE_LIMIT, t0 + 2 + FUZZY_PROBE_OFF), 0,
           "a fresh window after the block");

    /* The same number spread over more than a window: never off. */
    int off = 0;
    for (unsigned w = 0; w < 5; w++)
        off += burst(g, "cred:slow", w * 1000, FUZZY_PROBE_LIMIT, t0 + w * FUZZY_PROBE_WINDOW);
    is_int(off, 0, "20 per minute for 5 minutes: still on");
    ok(!fuzzy_guard_blocked(g, "cred:slow", t0 + 5 * FUZZY_PROBE_WINDOW), "not blocked");

    fuzzy_guard_free(g);
    return tap_done();
}
