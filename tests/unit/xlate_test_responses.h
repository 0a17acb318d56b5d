/*
 * xlate_test_responses.h — what both halves of the Responses translator's
 * unit tests share: the dialect under test (D), one pool per binary (P,
 * created in main, freed at its end), expected JSON written with ' for "
 * (q) and the JSON comparison (is_json). Requests are tested in
 * t_xlate_responses_request.c (engine/xlate_responses_request.c), answers,
 * errors and streams in t_xlate_responses.c (engine/xlate_responses.c).
 *
 * Static, for the test binaries that include it; single-threaded.
 */
#ifndef RELAY_TESTS_UNIT_XLATE_TEST_RESPONSES_H
#define RELAY_TESTS_UNIT_XLATE_TEST_RESPONSES_H

#include <jansson.h>
#include <stdio.h>

#include "engine/xlate.h"
#include "tests/unit/tap.h"

static const xl_dialect *D = &xl_openai_responses;
static rl_pool *P;

/* s with every ' turned into ", in the pool. */
static inline const char *q(const char *s)
{
    char *c = rl_pstrdup(P, s);
    for (char *p = c; *p; p++)
        if (*p == '\'')
            *p = '"';
    return c;
}

/* Compares JSON texts by value (got as written, want with ' quotes). */
static inline void is_json(const char *got, const char *want, const char *what)
{
    want = q(want);
    json_t *g = got ? json_loads(got, JSON_ALLOW_NUL, NULL) : NULL;
    json_t *w = json_loads(want, 0, NULL);
    if (!ok(g && w && json_equal(g, w), what))
        printf("#   got:  %s\n#   want: %s\n", got ? got : "(null)", want);
    json_decref(g);
    json_decref(w);
}

#endif
