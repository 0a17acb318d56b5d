/*
 * t_oom.c — allocation failures, the way sqlite tests them: for one
 * request's worth of work, fail the 1st allocation, then the 2nd, ... until
 * a run makes no more allocations than N, and check every run.
 *
 * Every allocation of Relay's code comes here: the binary is linked with
 * --wrap for malloc, calloc, realloc, free and strdup (see the Makefile), so
 * our code's calls reach the __wrap_ functions below; jansson's come through
 * json_set_alloc_funcs and Berkeley DB's through db_env_set_func_malloc /
 * realloc / free. Armed with N, the allocator fails the Nth allocation it
 * counts ("once": the others succeed) or that one and all after it
 * ("persistent": cleanup paths then run short of memory too).
 *
 * The work:
 *   - adapters: for each case of the fixtures in tests/fixtures/providers
 *     and of tests/unit/t_oom.json (the same format: answers whose
 *     renderings the fixtures do not reach), the
 *     adapter's inspect on the client request, then on the canned reply:
 *     each stream event classified and counted for usage (frame_each),
 *     stream_to_body or body_complete, usage, body_to_stream, and
 *     error_body / error_event;
 *   - store: store_cache_put, get, touch, get, del on a temporary store
 *     (opened beforehand, unarmed), then the same entry read back unarmed.
 * For every N: nothing crashes; each call returns what it returns without
 * the failure (and the same bytes), or RL_NOMEM (the store may also say
 * RL_STORE, its "unavailable": Relay then serves uncached), or, where a
 * call cannot report a failure, its conservative answer (not complete, so
 * not stored; usage unknown; an event read as an error); a stored entry
 * reads back whole or not at all; and every allocation made during the run
 * is freed by its end (a leak shows as a count of live allocations; make
 * asan runs this binary under LeakSanitizer as well).
 *
 * Library hooks take function pointers, so the allocator is not inlined
 * anywhere: its counters are plain globals (the test is single-threaded).
 */
#include <db.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/frame.h"
#include "engine/prov.h"
#include "engine/route.h"
#include "store/base/rl_log.h"
#include "store/store.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_keys.h"

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

/* A call's result that is not bytes (a flag, a count), as text. An
 * allocation that fails here makes the comparison fail, so write it
 * unarmed. */
static void done_text(run *r, rl_buf *out, const char *fmt, long long v)
{
    int was = oom.armed;
    oom.armed = 0;
    char text[64];
    snprintf(text, sizeof text, fmt, v);
    rl_buf_puts(out, text);
    oom.armed = was;
    done(r, RL_OK);
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

/* ---- adapters, from the provider fixtures ----------------------------------- */

#define MAX_HEADERS 48

typedef struct acase {
    const prov_ops *P;
    prov_request req;
    rl_header headers[MAX_HEADERS];
    char path[512];
    char query[512];
    char *body;
    size_t body_len;
    int status;
    char ctype[128];
    char *reply;
    size_t reply_len;
} acase;

static relay_config routes;

static void route_add(const char *name, upstream_type type, const char *mount)
{
    upstream_config *u = &routes.upstreams[routes.nupstreams++];
    u->name = (char *)name;
    u->type = type;
    u->base_url = (char *)"http://upstream";
    u->mount = (char *)mount;
}

/* A JSON string, an object serialised, or a list of strings joined. */
static char *text_of(const json_t *v, size_t *len)
{
    char *s = NULL;
    if (json_is_string(v)) {
        *len = json_string_length(v);
        s = malloc(*len + 1);
        if (s)
            memcpy(s, json_string_value(v), *len + 1);
    } else if (json_is_array(v)) {
        size_t i, total = 0;
        json_t *e;
        json_array_foreach(v, i, e) total += json_string_length(e);
        s = malloc(total + 1);
        *len = 0;
        json_array_foreach(v, i, e)
        {
            memcpy(s + *len, json_string_value(e), json_string_length(e));
            *len += json_string_length(e);
        }
        s[*len] = '\0';
    } else if (v && !json_is_null(v)) {
        s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
        *len = s ? strlen(s) : 0;
    } else {
        s = calloc(1, 1);
        *len = 0;
    }
    return s;
}

/* Reads one fixture case into c; 0 when usable. */
static int acase_load(acase *c, const json_t *fx)
{
    memset(c, 0, sizeof *c);
    const json_t *rq = json_object_get(fx, "request");
    const json_t *rp = json_object_get(fx, "reply");
    const char *full = json_string_value(json_object_get(rq, "path"));
    if (!rq || !rp || !full)
        return -1;
    const char *q = strchr(full, '?');
    snprintf(c->path, sizeof c->path, "%.*s", (int)(q ? q - full : (long)strlen(full)), full);
    snprintf(c->query, sizeof c->query, "%s", q ? q + 1 : "");
    route rt;
    route_match(&routes, c->path, &rt);
    if (rt.kind != ROUTE_API || !rt.endpoint)
        return -1;
    c->P = rt.prov;
    const char *key;
    json_t *v;
    size_t nh = 0;
    json_object_foreach(json_object_get(rq, "headers"), key, v)
    {
        if (nh < MAX_HEADERS && json_is_string(v))
            c->headers[nh++] = (rl_header){key, json_string_value(v)};
    }
    c->body = text_of(json_object_get(rq, "body"), &c->body_len);
    c->req = (prov_request){.endpoint = rt.endpoint,
                            .method = json_string_value(json_object_get(rq, "method")),
                            .path = rt.path,
                            .query = c->query,
                            .body = c->body,
                            .body_len = c->body_len,
                            .headers = c->headers,
                            .nheaders = nh};
    c->status = (int)json_integer_value(json_object_get(rp, "status"));
    const char *ct =
        json_string_value(json_object_get(json_object_get(rp, "headers"), "content-type"));
    snprintf(c->ctype, sizeof c->ctype, "%s", ct ? ct : "application/json");
    c->reply = text_of(json_object_get(rp, "body"), &c->reply_len);
    return c->body && c->reply ? 0 : -1;
}

static void acase_release(acase *c)
{
    free(c->body);
    free(c->reply);
}

/* frame_each's callback: each event's kind and the usage as it passes. */
typedef struct events {
    const prov_ops *P;
    rl_buf *kinds;
    prov_usage usage;
    rl_err err;
} events;

static int on_event(void *ctx, const char *event, const char *data, size_t len)
{
    events *e = ctx;
    prov_event_kind k = e->P->classify_event(event, data, len);
    if (e->err == RL_OK)
        e->err = rl_buf_puts(e->kinds, k == PROV_EVENT_END     ? "E"
                                       : k == PROV_EVENT_ERROR ? "X"
                                                               : "D");
    e->P->usage_event(&e->usage, event, data, len);
    return 0;
}

static void usage_text(run *r, rl_buf *out, rl_err err, const prov_usage *u)
{
    int was = oom.armed;
    oom.armed = 0;
    if (err == RL_OK)
        rl_buf_printf(out, "%lld %lld %lld %lld", (long long)u->input, (long long)u->output,
                      (long long)u->cached_input, (long long)u->cache_write);
    oom.armed = was;
    done(r, err);
}

static void adapter_work(scenario *sc, run *r)
{
    acase *c = sc->ctx;
    const prov_ops *P = c->P;
    char cred[512];
    r->n = 0;

    rl_buf *out = call(r, "credential");
    const char *who = P->credential(&c->req, cred, sizeof cred);
    done_text(r, out, "%lld", who ? (long long)strlen(who) : -1LL);

    prov_info info;
    memset(&info, 0, sizeof info);
    rl_buf parts, why;
    rl_buf_init(&parts, 0);
    rl_buf_init(&why, 0);
    out = call(r, "inspect");
    rl_err err = P->inspect(&c->req, &info, out, &parts, &why);
    done(r, err);
    out = call(r, "inspect: key parts and info");
    if (err == RL_OK) {
        int was = oom.armed;
        oom.armed = 0;
        rl_buf_printf(out, "%s|%s|%d %d %d %d %d %ld", parts.data ? parts.data : "", info.model,
                      info.stream, (int)info.framing, info.include_usage, info.deterministic,
                      info.stateful, info.max_ttl);
        oom.armed = was;
    }
    done(r, err);
    rl_buf_release(&parts);
    rl_buf_release(&why);
    if (err != RL_OK)
        return; /* inspect failed: the request goes no further */

    if (c->status / 100 == 2 && info.stream) {
        frame_kind fk = frame_kind_of(c->ctype);
        out = call(r, "frame_each: classify_event");
        r->kinds[r->n] = 1;
        events ev = {.P = P, .kinds = out, .usage = PROV_USAGE_UNKNOWN};
        err = frame_each(fk, c->reply, c->reply_len, on_event, &ev);
        done(r, err == RL_OK ? ev.err : err);
        out = call(r, "frame_each: usage_event");
        r->degraded[r->n] = "-1 -1 -1 -1"; /* it cannot report a failure */
        usage_text(r, out, err, &ev.usage);
        out = call(r, "usage (stream)");
        r->degraded[r->n] = "-1 -1 -1 -1";
        prov_usage u = PROV_USAGE_UNKNOWN;
        usage_text(r, out, P->usage(ENTRY_STREAM, fk, c->reply, c->reply_len, &u), &u);
        rl_buf *body = call(r, "stream_to_body");
        err = P->stream_to_body(fk, c->reply, c->reply_len, body);
        done(r, err);
        if (err != RL_OK)
            return;
        /* the body rendered back into a stream, as a stored stream's
         * assembled body would be */
        rl_buf *stream = call(r, "body_to_stream");
        done(r, P->body_to_stream(body->data, body->len, &info, stream));
    } else if (c->status / 100 == 2) {
        out = call(r, "body_complete");
        r->degraded[r->n] = "0"; /* not complete: not stored */
        done_text(r, out, "%lld", P->body_complete(c->reply, c->reply_len));
        out = call(r, "usage (body)");
        r->degraded[r->n] = "-1 -1 -1 -1";
        prov_usage u = PROV_USAGE_UNKNOWN;
        usage_text(r, out, P->usage(ENTRY_BODY, FRAME_SSE, c->reply, c->reply_len, &u), &u);
        prov_info as_stream = info;
        as_stream.stream = 1;
        out = call(r, "body_to_stream");
        done(r, P->body_to_stream(c->reply, c->reply_len, &as_stream, out));
    }
    out = call(r, "error_body");
    done(r,
         P->error_body(out, RL_UPSTREAM_UNREACHABLE, "upstream unreachable: connection refused"));
    out = call(r, "error_event (before the stream)");
    done(r, P->error_event(out, info.framing, 0, RL_UPSTREAM_CUT, "the upstream stream was cut"));
    out = call(r, "error_event (mid-stream)");
    done(r, P->error_event(out, info.framing, 1, RL_NOMEM, "out of memory"));
}

static const rl_err adapter_allowed[] = {RL_NOMEM};

/* Every call of c's work succeeds without a failure injected: a case
 * written to reach renderings does reach them. */
static int renders_whole(scenario *sc)
{
    run r;
    run_init(&r);
    sc->work(sc, &r);
    int whole = r.n > 0;
    for (int i = 0; i < r.n; i++)
        if (r.err[i] != RL_OK) {
            printf("#   %s: %s\n", r.what[i], rl_err_text(r.err[i]));
            whole = 0;
        }
    run_release(&r);
    return whole;
}

/* Sweeps each case of a file in the fixtures' format (label #1, #2, ...);
 * whole: each case must also render without a failure. */
static void test_case_file(const char *path, const char *label, int whole, int *cases)
{
    json_error_t jerr;
    json_t *all = json_load_file(path, 0, &jerr);
    if (!ok(json_is_array(all), "a fixture file loads")) {
        printf("#   %s: %s\n", path, jerr.text);
        return;
    }
    size_t i;
    json_t *fx;
    json_array_foreach(all, i, fx)
    {
        acase c;
        scenario sc = {.work = adapter_work, .allowed = adapter_allowed, .nallowed = 1, .ctx = &c};
        snprintf(sc.name, sizeof sc.name, "%s #%zu", label, i + 1);
        if (acase_load(&c, fx) != 0) {
            ok(0, sc.name);
            printf("#   the fixture case does not route to a cacheable endpoint\n");
            acase_release(&c);
            continue;
        }
        if (whole) {
            char what[200];
            snprintf(what, sizeof what, "%s (%s) renders without a failure", sc.name,
                     json_string_value(json_object_get(fx, "name")));
            ok(renders_whole(&sc), what);
        }
        sweep(&sc, 0);
        sweep(&sc, 1);
        acase_release(&c);
        ++*cases;
    }
    json_decref(all);
}

static void test_adapters(const char *dir, int *cases)
{
    static const char *const files[] = {"openai",    "azure",  "openai-compatible",
                                        "anthropic", "gemini", "ollama"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.json", dir, files[f]);
        test_case_file(path, files[f], 0, cases);
    }
}

/* ---- the store --------------------------------------------------------------- */

typedef struct scase {
    store *s;
    store_options o;
    unsigned long unavailable; /* runs after which the store was unavailable */
    unsigned long retried;     /* ... and a new handle opened only at the second attempt */
    uint8_t key[STORE_KEY_LEN];
    char value[3000];
} scase;

static void store_work(scenario *sc, run *r)
{
    scase *c = sc->ctx;
    r->n = 0;
    store_meta m = {.created = 1800000000, .expires = 1800003600};
    rl_buf *out = call(r, "store_cache_put");
    done(r, store_cache_put(c->s, c->key, &m, c->value, sizeof c->value));
    int stored = r->err[0] == RL_OK;

    store_meta got;
    out = call(r, "store_cache_get");
    rl_err err = store_cache_get(c->s, c->key, &got, out);
    /* whole or absent: after a failed put the entry is not there */
    if (!stored && err == RL_NOTFOUND) {
        err = RL_NOMEM; /* the put's failure, seen again */
        rl_buf_reset(out);
    }
    done(r, err);

    out = call(r, "store_cache_touch");
    err = store_cache_touch(c->s, c->key, 1800000001);
    done(r, !stored && err == RL_NOTFOUND ? RL_NOMEM : err);

    out = call(r, "store_recency_flush");
    done(r, store_recency_flush(c->s, 1800000001, NULL));

    out = call(r, "store_cache_get (a hit counted)");
    err = store_cache_get(c->s, c->key, &got, out);
    if (!stored && err == RL_NOTFOUND) {
        err = RL_NOMEM;
        rl_buf_reset(out);
    }
    done(r, err);

    out = call(r, "store_cache_del");
    err = store_cache_del(c->s, c->key);
    done(r, !stored && err == RL_NOTFOUND ? RL_NOMEM : err);
}

/* Unarmed after each run: the entry is whole or gone (a del that failed
 * leaves it), and the store still stores, reads and deletes. */
static int store_after(scenario *sc, rl_buf *why)
{
    scase *c = sc->ctx;
    rl_buf v;
    rl_buf_init(&v, 0);
    store_meta m;
    rl_err err = store_cache_get(c->s, c->key, &m, &v);
    int sound = 1;
    if (err == RL_STORE) {
        /* Out of memory inside a commit panicked the environment and its
         * reopen ran out of memory too: the handle tries again at most
         * once a second (seen back within seconds) and Relay serves
         * uncached meanwhile. Rather than wait, a new handle takes over
         * (as in a restarted worker): it must open at the first attempt
         * (test_store counts the second ones) and find the entry whole or
         * gone. */
        c->unavailable++;
        store_close(c->s);
        c->s = NULL;
        int attempts = 0;
        while (attempts < 2 && !c->s)
            if (attempts++, store_open(&c->o, &c->s) != RL_OK)
                c->s = NULL;
        c->retried += attempts > 1;
        if (!c->s) {
            printf("Bail out! the store does not open again\n");
            exit(1);
        }
        err = store_cache_get(c->s, c->key, &m, &v);
    }
    if (err == RL_OK && (v.len != sizeof c->value || memcmp(v.data, c->value, v.len) != 0)) {
        rl_buf_printf(why, "the entry reads back with %zu other bytes", v.len);
        sound = 0;
    } else if (err != RL_OK && err != RL_NOTFOUND) {
        rl_buf_printf(why, "reading the entry: %s", rl_err_text(err));
        sound = 0;
    }
    if (err == RL_OK && store_cache_del(c->s, c->key) != RL_OK) {
        rl_buf_puts(why, "the entry left by a failed del cannot be deleted");
        sound = 0;
    }
    store_meta meta = {.created = 1800000000, .expires = 1800003600};
    uint8_t other[STORE_KEY_LEN];
    mkkey(other, 2);
    rl_buf_reset(&v);
    if (sound && (store_cache_put(c->s, other, &meta, "fresh", 5) != RL_OK ||
                  store_cache_get(c->s, other, &m, &v) != RL_OK || v.len != 5 ||
                  store_cache_del(c->s, other) != RL_OK)) {
        rl_buf_puts(why, "the store no longer stores, reads and deletes");
        sound = 0;
    }
    rl_buf_release(&v);
    return sound;
}

static const rl_err store_allowed[] = {RL_NOMEM, RL_STORE};

/* In a new process (a restarted worker): the store opens (recovering if
 * need be), the entry is whole or absent, and a put, get and del work.
 * 0 when so. */
static int store_reopens_elsewhere(const scase *c)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        store *t = NULL;
        rl_buf v;
        rl_buf_init(&v, 0);
        store_meta m, meta = {.created = 1800000000, .expires = 1800003600};
        uint8_t other[STORE_KEY_LEN];
        mkkey(other, 3);
        rl_log_set_thread_sink(NULL, NULL); /* this one says why */
        rl_err err = store_open(&c->o, &t);
        if (err == RL_OK) {
            err = store_cache_get(t, c->key, &m, &v);
            if (err == RL_OK && (v.len != sizeof c->value || memcmp(v.data, c->value, v.len)))
                printf("#   the entry reads back with %zu other bytes\n", v.len);
            else if (err == RL_NOTFOUND || err == RL_OK)
                err = store_cache_put(t, other, &meta, "again", 5);
            if (err == RL_OK)
                err = store_cache_del(t, other);
        }
        if (err != RL_OK)
            printf("#   %s\n", rl_err_text(err));
        fflush(stdout);
        store_close(t);
        _exit(err != RL_OK);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char tmp[64], home[128], keyfile[160];

/* For each mode, on a store opened for it: the sweep, then everything
 * allocated since the open is freed by store_close. Berkeley DB abandons
 * the handles of an environment that panicked (out of memory inside a
 * commit can do that) and was reopened, as store_fixture.h explains: a sweep
 * with a reopen is not counted (make asan's LeakSanitizer run, which
 * suppresses only libdb's own allocations, still sees ours). */
static void test_store(int persistent)
{
    store_options o = {.home = home, .key_file = keyfile, .cache_mb = 8, .max_threads = 16};
    scase c = {.o = o};
    for (size_t i = 0; i < sizeof c.value; i++)
        c.value[i] = (char)('a' + i % 26);
    mkkey(c.key, 1);
    long live0 = oom.live;
    unsigned long reopens0 = reopens;
    if (!ok(store_keyfile_ensure(keyfile) == RL_OK && store_open(&o, &c.s) == RL_OK,
            "a temporary store opens"))
        return;
    scenario sc = {.name = "store: put, get, touch, get, del",
                   .work = store_work,
                   .after = store_after,
                   .allowed = store_allowed,
                   .nallowed = 2,
                   .leaks_at_close = 1,
                   .ctx = &c};
    sweep(&sc, persistent);
    if (c.unavailable)
        printf("# store, %s: unavailable after %lu runs (the environment panicked)\n",
               persistent ? "persistent" : "once", c.unavailable);
    ok(store_reopens_elsewhere(&c) == 0, "another process opens the store and finds it sound");
    char what[200];
    snprintf(what, sizeof what, "store, %s: a new handle opens at the first attempt",
             persistent ? "persistent" : "once");
    /* It once failed at the first attempt after out of memory panicked
     * the environment and its reopen ran out too (BDB1520 ... failed on
     * backward pass, then ENOENT), until the store recovered alone. */
    ok(!c.retried, what);
    if (c.retried)
        printf("#   %lu reopens needed a second attempt\n", c.retried);
    store_close(c.s);
    snprintf(what, sizeof what, "store, %s: everything allocated is freed when it closes",
             persistent ? "persistent" : "once");
    if (reopens != reopens0 || c.unavailable) {
        printf("ok %d - %s # SKIP the environment was reopened\n", ++tap_count, what);
    } else {
        ok(oom.live == live0, what);
        if (oom.live != live0)
            printf("#   %ld allocations left\n", oom.live - live0);
    }
    store_remove(&o);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(600);
    json_set_alloc_funcs(__wrap_malloc, __wrap_free);
    db_env_set_func_malloc(__wrap_malloc);
    db_env_set_func_realloc(__wrap_realloc);
    db_env_set_func_free(__wrap_free);
    rl_log_set_thread_sink(quiet_sink, NULL);
    log_shown = getenv("T_OOM_LOG") != NULL;

    route_add("openai", UPSTREAM_TYPE_OPENAI, "");
    route_add("anthropic", UPSTREAM_TYPE_ANTHROPIC, "");
    route_add("gemini", UPSTREAM_TYPE_GEMINI, "");
    route_add("azure", UPSTREAM_TYPE_AZURE, "");
    route_add("ollama", UPSTREAM_TYPE_OLLAMA, "");
    route_add("vllm", UPSTREAM_TYPE_OPENAI_COMPATIBLE, "/vllm");
    route_add("llamacpp", UPSTREAM_TYPE_OPENAI_COMPATIBLE, "/llamacpp");

    int cases = 0;
    test_adapters("tests/fixtures/providers", &cases);
    ok(cases >= 30, "every fixture case ran");
    printf("# %d fixture cases\n", cases);
    /* Renderings the fixtures do not reach: logprobs and refusals, a
     * Responses function call, Anthropic's thinking, redacted thinking,
     * citations and tool input, Gemini's candidates, Ollama's thinking. */
    int extra = 0;
    test_case_file("tests/unit/t_oom.json", "extra", 1, &extra);
    ok(extra >= 5, "every extra case ran");

    snprintf(tmp, sizeof tmp, "/tmp/t_oom.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);
    test_store(0);
    test_store(1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    printf("# %lu log lines while failures were injected\n", log_lines);
    return tap_done();
}
