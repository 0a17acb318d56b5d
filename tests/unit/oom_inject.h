/*
 * oom_inject.h — allocation failures, the way sqlite tests them, for the
 * t_oom_* binaries (t_oom_prov.c: the provider adapters; t_oom_store.c:
 * the store): for one request's worth of work, fail the 1st allocation,
 * then the 2nd, ... until a run makes no more allocations than N, and
 * check every run.
 *
 * Every allocation of Relay's code comes here: a t_oom_* binary is linked
 * with --wrap for malloc, calloc, realloc, free, strdup, strndup, realpath
 * and json_loadb (the Makefile's t_oom_% rule), so our code's calls reach
 * the __wrap_ functions below; jansson's come through json_set_alloc_funcs
 * and Berkeley DB's through db_env_set_func_malloc / realloc / free (both
 * set by oom_init, which main calls first). Armed with N, the allocator
 * fails the Nth allocation it counts ("once": the others succeed) or that
 * one and all after it ("persistent": cleanup paths then run short of
 * memory too).
 *
 * A scenario is one request's worth of work: its calls record what they
 * returned and the bytes they produced in a run (call, done). sweep runs
 * it unarmed for the reference, then for N = 1, 2, ... in one mode, and
 * checks: nothing crashes; each call returns what it returns without the
 * failure (and the same bytes), or one of the scenario's allowed errors,
 * or, where a call cannot report a failure, its conservative answer (not
 * complete, so not stored; usage unknown; an event read as an error); the
 * scenario's after hook finds the state sound; and every allocation made
 * during the run is freed by its end (a leak shows as a count of live
 * allocations; make asan runs these binaries under LeakSanitizer as well).
 *
 * The __wrap_ functions have external linkage, as --wrap needs: include
 * this header in one file per binary only. Library hooks take function
 * pointers, so the allocator is not inlined anywhere: its counters are
 * plain globals (the tests are single-threaded).
 */
#ifndef RELAY_TESTS_UNIT_OOM_INJECT_H
#define RELAY_TESTS_UNIT_OOM_INJECT_H

#include <db.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"
#include "tests/unit/tap.h"

/* Under LeakSanitizer (make asan): Berkeley DB 5.3 abandons the memory of
 * an environment that panicked (out of memory inside a commit does that
 * here), as store_fixture.h explains. Our own allocations and jansson's stay
 * checked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libdb-5.3.so\n";
}

/* ---- the counting allocator ---------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t max);

static struct {
    int armed;            /* count allocations, fail the chosen ones */
    int persistent;       /* fail the nth and every one after it */
    unsigned long nth;    /* the allocation to fail, from 1 */
    unsigned long seen;   /* allocations counted since armed */
    unsigned long failed; /* failures injected since armed */
    long live;            /* allocations not freed yet (armed or not) */
} oom;

static void arm(unsigned long nth, int persistent)
{
    oom.nth = nth;
    oom.persistent = persistent;
    oom.seen = 0;
    oom.failed = 0;
    oom.armed = 1;
}

static void disarm(void)
{
    oom.armed = 0;
}

static int fail_now(void)
{
    if (!oom.armed)
        return 0;
    oom.seen++;
    if (oom.seen == oom.nth || (oom.persistent && oom.seen > oom.nth)) {
        oom.failed++;
        errno = ENOMEM; /* as malloc does: Berkeley DB reads it */
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    if (fail_now())
        return NULL;
    void *p = __real_malloc(n);
    oom.live += p != NULL;
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_now())
        return NULL;
    void *p = __real_calloc(n, size);
    oom.live += p != NULL;
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_now())
        return NULL; /* p stays valid, as after a real failure */
    void *q = __real_realloc(p, n);
    if (!p && q)
        oom.live++;
    else if (p && !q && n == 0)
        oom.live--; /* glibc's realloc(p, 0) frees p */
    return q;
}

void __wrap_free(void *p)
{
    oom.live -= p != NULL;
    __real_free(p);
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = __wrap_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *__wrap_strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *p = __wrap_malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* realpath(path, NULL) allocates inside libc: its copy comes from here. */
char *__real_realpath(const char *path, char *resolved);
char *__wrap_realpath(const char *path, char *resolved);
char *__wrap_realpath(const char *path, char *resolved)
{
    if (resolved)
        return __real_realpath(path, resolved);
    char *libc = __real_realpath(path, NULL);
    char *p = libc ? __wrap_strdup(libc) : NULL;
    __real_free(libc);
    return p;
}

/*
 * jansson's parser cannot survive a failed allocation: its lexer ignores
 * the result of strbuffer_append_byte (load.c, lex_save), so a failure
 * drops a byte of the token being read and parsing goes on with the rest:
 * a string silently loses a character (prov_json_load sees ENOMEM and
 * refuses the result), or an assert (assert(0) for an escape,
 * assert(c == d) in lex_unget_unsave) aborts the process. That is
 * jansson's to fix; here a whole json_loadb counts as one allocation,
 * and nothing fails inside it. It fails as jansson 2.14 does when its
 * lexer's first buffer cannot be allocated (lex_init): malloc's errno
 * ENOMEM, NULL, and the error as jsonp_error_init left it (no text, line
 * and column -1, source "<buffer>"; the code in the text's last byte is
 * not touched: jansson's parser never sets json_error_out_of_memory).
 * tests/unit/t_prov_json.c fails the real parser's allocations one by one.
 */
json_t *__real_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error);
json_t *__wrap_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error);
json_t *__wrap_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error)
{
    if (fail_now()) { /* errno is ENOMEM */
        if (error) {
            error->text[0] = '\0';
            error->line = error->column = -1;
            error->position = 0;
            snprintf(error->source, sizeof error->source, "<buffer>");
        }
        return NULL;
    }
    int was = oom.armed;
    oom.armed = 0;
    json_t *j = __real_json_loadb(buffer, buflen, flags, error);
    oom.armed = was;
    return j;
}

/* Log lines while a failure is injected are expected: count them instead of
 * printing thousands, and the store's reopens among them. */
static unsigned long log_lines, reopens;
static int log_shown; /* T_OOM_LOG=1: print them (on stderr) */
static void quiet_sink(void *ctx, const char *line)
{
    (void)ctx;
    if (log_shown)
        fprintf(stderr, "%s\n", line);
    log_lines++;
    reopens += strstr(line, "reopening") != NULL;
}

/* ---- one call's outcome ---------------------------------------------------- */

#define MAX_CALLS 24

/* What each call of a run returned, and the bytes it produced (or its
 * result written as text), to compare with the run without failures. */
typedef struct run {
    int n;
    const char *what[MAX_CALLS];
    rl_err err[MAX_CALLS];
    rl_buf out[MAX_CALLS];
    /* What a call may also answer (with RL_OK) when memory runs out: a
     * conservative answer, such as "not complete" (so not stored) or
     * "usage unknown"; NULL when only RL_NOMEM will do. */
    const char *degraded[MAX_CALLS];
    /* The call decides the cache key (inspect): any other answer than the
     * reference's, or RL_NOMEM, would store or serve under a wrong key. */
    int keyed[MAX_CALLS];
    /* The call's output is one letter per stream event (on_event): an
     * event that could not be read for want of memory may read "X" (an
     * error: the engine passes such a stream on and never stores it, see
     * prov.h) whatever the reference says. */
    int kinds[MAX_CALLS];
} run;

static void run_init(run *r)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < MAX_CALLS; i++)
        rl_buf_init(&r->out[i], 0);
}

/* Allocations the run's output buffers hold. */
static long held(const run *r)
{
    long n = 0;
    for (int i = 0; i < MAX_CALLS; i++)
        n += r->out[i].data != NULL;
    return n;
}

static void run_release(run *r)
{
    for (int i = 0; i < MAX_CALLS; i++)
        rl_buf_release(&r->out[i]);
}

/* The buffer for the next call's output (emptied); records its name. */
static rl_buf *call(run *r, const char *what)
{
    if (r->n >= MAX_CALLS) {
        fprintf(stderr, "t_oom: more than %d calls in a run\n", MAX_CALLS);
        exit(2);
    }
    r->what[r->n] = what;
    r->err[r->n] = RL_OK;
    r->degraded[r->n] = NULL;
    r->keyed[r->n] = 0;
    r->kinds[r->n] = 0;
    rl_buf_reset(&r->out[r->n]);
    return &r->out[r->n];
}

static void done(run *r, rl_err err)
{
    r->err[r->n++] = err;
}

/* Event kinds as the reference's, or "X" where an event was unreadable. */
static int kinds_degraded(const rl_buf *got, const rl_buf *ref)
{
    if (got->len != ref->len)
        return 0;
    for (size_t i = 0; i < got->len; i++)
        if (got->data[i] != ref->data[i] && got->data[i] != 'X')
            return 0;
    return 1;
}

static int allowed_err(rl_err got, rl_err ref, const rl_err *allowed, size_t nallowed)
{
    for (size_t k = 0; k < nallowed; k++)
        if (got == allowed[k] && got != ref)
            return 1;
    return 0;
}

/* How a run compares with the reference: the same, another answer (see
 * run_matches), or wrong in a way that can do more harm. */
enum { SAME, ANSWER, WRONG };

/*
 * Compares a run with failures injected against the reference: each call
 * gave the reference's result and bytes, one of the allowed errors, or its
 * degraded answer; a run may end early after an error (a failed step ends
 * the request). Two differences are ANSWER, the client getting another
 * answer than an error (issue 12 fixed both in the adapters): a parse that
 * ran out of memory read as invalid JSON (RL_BAD_JSON or
 * RL_UPSTREAM_PROTOCOL, a 400 or 502, instead of RL_NOMEM), and a
 * rendering that ignored a failed jansson call (RL_OK with a member, a
 * chunk or a choice missing). Anything else is WRONG, and so is any
 * difference in a call that decides the cache key. Appends what differs
 * to why.
 */
static int run_matches(const run *got, const run *ref, const rl_err *allowed, size_t nallowed,
                       rl_buf *why)
{
    int verdict = SAME;
    if (got->n > ref->n || got->n == 0) {
        rl_buf_printf(why, "%d calls, not %d", got->n, ref->n);
        return WRONG;
    }
    for (int i = 0; i < got->n; i++) {
        if (got->err[i] == ref->err[i] && got->out[i].len == ref->out[i].len &&
            (!got->out[i].len || memcmp(got->out[i].data, ref->out[i].data, got->out[i].len) == 0))
            continue;
        if (allowed_err(got->err[i], ref->err[i], allowed, nallowed))
            continue;
        const char *alt = ref->degraded[i];
        if (alt && got->err[i] == RL_OK && got->out[i].len == strlen(alt) &&
            memcmp(got->out[i].data, alt, got->out[i].len) == 0)
            continue;
        if (ref->kinds[i] && got->err[i] == RL_OK && ref->err[i] == RL_OK &&
            kinds_degraded(&got->out[i], &ref->out[i]))
            continue;
        int parse = got->err[i] == RL_BAD_JSON || got->err[i] == RL_UPSTREAM_PROTOCOL;
        int render = got->err[i] == RL_OK && ref->err[i] == RL_OK && !ref->keyed[i];
        int kind = (parse && ref->err[i] == RL_OK) || render ? ANSWER : WRONG;
        if (kind > verdict) {
            verdict = kind;
            /* from a little before the first byte that differs */
            size_t at = 0;
            while (at < got->out[i].len && at < ref->out[i].len &&
                   got->out[i].data[at] == ref->out[i].data[at])
                at++;
            at = at > 40 ? at - 40 : 0;
            rl_buf_reset(why);
            rl_buf_printf(why, "%s: %s (...%.*s), not %s (...%.*s)", got->what[i],
                          rl_err_text(got->err[i]),
                          (int)(got->out[i].len - at > 100 ? 100 : got->out[i].len - at),
                          got->out[i].data ? got->out[i].data + at : "", rl_err_text(ref->err[i]),
                          (int)(ref->out[i].len - at > 100 ? 100 : ref->out[i].len - at),
                          ref->out[i].data ? ref->out[i].data + at : "");
        }
    }
    if (got->n < ref->n && got->err[got->n - 1] == RL_OK && verdict == SAME) {
        rl_buf_printf(why, "%d calls, not %d", got->n, ref->n);
        return WRONG;
    }
    return verdict;
}

/* ---- sweeping N ------------------------------------------------------------ */

typedef struct scenario scenario;
struct scenario {
    char name[160];
    /* One request's worth of work; its outcomes go to r. */
    void (*work)(scenario *sc, run *r);
    /* After a run, unarmed: 0 when the state it left is sound (why says
     * otherwise). May be NULL. */
    int (*after)(scenario *sc, rl_buf *why);
    const rl_err *allowed; /* errors a failed allocation may give */
    size_t nallowed;
    /* Leaks are counted over the whole sweep, not per run: Berkeley DB
     * keeps buffers in its handles (a cursor's, grown on an error path)
     * until they close (see test_store). */
    int leaks_at_close;
    void *ctx;
};

#define MAX_N 200000UL
#define MAX_REPORTS 3

/* Runs sc unarmed for the reference, then with the Nth allocation failing
 * for N = 1, 2, ... until a run has no failure left to inject; one mode.
 * A leak is counted with the run's own output buffers freed. */
static void sweep(scenario *sc, int persistent)
{
    const char *mode = persistent ? "persistent" : "once";
    run ref, got;
    run_init(&ref);
    run_init(&got);
    rl_buf why;
    rl_buf_init(&why, 0);

    long before = oom.live;
    sc->work(sc, &got);
    long left = oom.live - before - held(&got);
    run_release(&got);
    unsigned long leaks = left != 0 && !sc->leaks_at_close;
    if (leaks)
        printf("# %s: %ld allocations left unfreed without any failure\n", sc->name, left);
    sc->work(sc, &ref);

    unsigned long n, wrong = 0, answers = 0, unsound = 0, nomem = 0;
    for (n = 1; n < MAX_N; n++) {
        run_init(&got);
        before = oom.live;
        unsigned long reopened = reopens;
        arm(n, persistent);
        sc->work(sc, &got);
        disarm();
        left = oom.live - before - held(&got);
        if (oom.failed == 0) {
            run_release(&got);
            break;
        }
        for (int i = 0; i < got.n; i++)
            nomem += got.err[i] == RL_NOMEM;
        rl_buf_reset(&why);
        int verdict = run_matches(&got, &ref, sc->allowed, sc->nallowed, &why);
        if (verdict == WRONG && ++wrong <= MAX_REPORTS)
            printf("# %s, %s, allocation %lu failed: %s\n", sc->name, mode, n, why.data);
        if (verdict == ANSWER && ++answers <= MAX_REPORTS)
            printf("# %s, %s, allocation %lu failed: %s\n", sc->name, mode, n, why.data);
        run_release(&got);
        /* Berkeley DB abandons the handles of an environment it reopened
         * after a panic (see store_fixture.h): such a run's count means nothing */
        if (left && !sc->leaks_at_close && reopens == reopened && ++leaks <= MAX_REPORTS)
            printf("# %s, %s, allocation %lu failed: %ld allocations left unfreed\n", sc->name,
                   mode, n, left);
        rl_buf_reset(&why);
        if (sc->after && !sc->after(sc, &why) && ++unsound <= MAX_REPORTS)
            printf("# %s, %s, allocation %lu failed: afterwards %s\n", sc->name, mode, n, why.data);
    }
    char what[300];
    snprintf(what, sizeof what,
             "%s, %s: %lu allocations, each failing ends cleanly (the same key or RL_NOMEM)",
             sc->name, mode, n - 1);
    ok(n < MAX_N && n > 1 && !wrong && !unsound, what);
    if (wrong || unsound)
        printf("#   %lu runs gave another outcome, %lu left an unsound state\n", wrong, unsound);
    if (!sc->leaks_at_close) {
        snprintf(what, sizeof what, "%s, %s: no allocation left unfreed", sc->name, mode);
        ok(!leaks, what);
        if (leaks)
            printf("#   %lu of %lu runs leaked\n", leaks, n);
    }
    snprintf(what, sizeof what, "%s, %s: each answer the same, degraded or RL_NOMEM", sc->name,
             mode);
    ok(!answers, what);
    if (answers)
        printf("#   %lu runs gave another answer\n", answers);
    if (n > 1 && !nomem)
        printf("# %s, %s: no call ever said RL_NOMEM\n", sc->name, mode);
    rl_buf_release(&why);
    run_release(&ref);
}

/* Sends our code's, jansson's and Berkeley DB's allocations to the counting
 * allocator, and the log to quiet_sink; first thing in main. */
static void oom_init(void)
{
    json_set_alloc_funcs(__wrap_malloc, __wrap_free);
    db_env_set_func_malloc(__wrap_malloc);
    db_env_set_func_realloc(__wrap_realloc);
    db_env_set_func_free(__wrap_free);
    rl_log_set_thread_sink(quiet_sink, NULL);
    log_shown = getenv("T_OOM_LOG") != NULL;
}

#endif
