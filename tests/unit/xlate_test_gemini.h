/*
 * xlate_test_gemini.h — what both halves of the Gemini translator's unit
 * tests share: the dialect under test (G), one pool per binary (pool,
 * created in main, freed at its end), JSON written as C tokens (J) and the
 * comparisons (is_json, has, str). Requests are tested in
 * t_xlate_gemini_request.c (engine/xlate_gemini_request.c and
 * xlate_gemini_request_encode.c), answers, errors and streams in
 * t_xlate_gemini.c (engine/xlate_gemini.c).
 *
 * Static, for the test binaries that include it; single-threaded.
 */
#ifndef RELAY_TESTS_UNIT_XLATE_TEST_GEMINI_H
#define RELAY_TESTS_UNIT_XLATE_TEST_GEMINI_H

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "engine/xlate.h"
#include "tests/unit/tap.h"

static const xl_dialect *G = &xl_gemini;

/* JSON written as C tokens: J({"a": [1]}) is the string "{\"a\": [1]}". */
#define J(...) #__VA_ARGS__

/* got and want parse to the same JSON value. */
static inline void is_json(const char *got, const char *want, const char *what)
{
    json_t *g = got ? json_loads(got, JSON_ALLOW_NUL, NULL) : NULL;
    json_t *w = json_loads(want, JSON_ALLOW_NUL, NULL);
    if (!ok(g && w && json_equal(g, w), what))
        printf("#   got:  %s\n#   want: %s%s\n", got ? got : "(null)", want,
               w ? "" : " (does not parse)");
    json_decref(g);
    json_decref(w);
}

static inline void has(const char *text, const char *needle, const char *what)
{
    if (!ok(text && strstr(text, needle), what))
        printf("#   got:  %s\n#   want: ...%s...\n", text ? text : "(null)", needle);
}

static inline const char *str(const rl_buf *b)
{
    return b->data ? b->data : "";
}

static rl_pool *pool;

#endif
