/*
 * tap.h — a minimal TAP producer for the unit tests.
 *
 * Each check prints "ok N - what" or "not ok N - what" followed by both
 * sides of a failed comparison, and tap_done() prints the plan and returns
 * the exit status (non-zero if anything failed).
 */
#ifndef RELAY_TESTS_UNIT_TAP_H
#define RELAY_TESTS_UNIT_TAP_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

static inline int tap_ok(int cond, const char *what, const char *file, int line)
{
    tap_count++;
    printf("%sok %d - %s\n", cond ? "" : "not ", tap_count, what);
    if (!cond) {
        tap_failed++;
        printf("#   at %s:%d\n", file, line);
    }
    return cond;
}

#define ok(cond, what) tap_ok(!!(cond), what, __FILE__, __LINE__)

#define is_int(got, want, what)                                                                    \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (!ok(g_ == w_, what))                                                                   \
            printf("#   got:  %lld\n#   want: %lld\n", g_, w_);                                    \
    } while (0)

#define is_str(got, want, what)                                                                    \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        int same_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_;                                   \
        if (!ok(same_, what))                                                                      \
            printf("#   got:  %s\n#   want: %s\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)");        \
    } while (0)

static inline int tap_done(void)
{
    printf("1..%d\n", tap_count);
    if (tap_failed)
        printf("# failed %d of %d\n", tap_failed, tap_count);
    return tap_failed ? 1 : 0;
}

#endif
