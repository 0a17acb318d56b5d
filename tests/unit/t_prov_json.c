/* Unit tests for what every adapter parses (engine/prov_common.c,
 * prov_json_load): JSON nested without bound must be refused before it
 * reaches jansson's recursive parser and dumper, JSON at the limit must
 * still work on a request thread's stack, "\u0000" is legal JSON, and a
 * parse that ran out of memory says so (it is not invalid JSON). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/prov.h"
#include "engine/prov_json.h"
#include "tests/unit/tap.h"

/* The stack size of a request thread (fcgi/front.c). */
#define REQUEST_STACK (512 * 1024)

typedef struct adapter_case {
    const char *name;
    const prov_ops *ops;
    const char *endpoint, *path;
    const char *head; /* the body before the nested member */
} adapter_case;

static const adapter_case cases[] = {
    {"openai", &prov_openai, "chat.completions", "/v1/chat/completions",
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"x\":"},
    {"anthropic", &prov_anthropic, "messages", "/v1/messages",
     "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
     "\"x\":"},
    {"gemini", &prov_gemini, "generateContent", "/v1beta/models/m:generateContent",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}],\"x\":"},
    {"ollama", &prov_ollama, "chat", "/api/chat",
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"x\":"},
};

/* head + `open` repeated n times + `close` n times + "}". */
static char *nested(const char *head, int n, char open, char close)
{
    size_t hl = strlen(head), len = hl + 2 * (size_t)n + 1;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, head, hl);
    memset(s + hl, open, (size_t)n);
    memset(s + hl + n, close, (size_t)n);
    s[len - 1] = '}';
    s[len] = '\0';
    return s;
}

typedef struct run {
    const adapter_case *c;
    const char *body;
    size_t body_len;
    rl_err err;
    rl_buf canon, why;
} run;

static void *inspect_thread(void *arg)
{
    run *r = arg;
    rl_buf parts;
    rl_buf_init(&parts, 0);
    prov_request pr = {.endpoint = r->c->endpoint,
                       .method = "POST",
                       .path = r->c->path,
                       .query = "",
                       .body = r->body,
                       .body_len = r->body_len};
    prov_info info;
    r->err = r->c->ops->inspect(&pr, &info, &r->canon, &parts, &r->why);
    rl_buf_release(&parts);
    return NULL;
}

/* Inspects body on a thread with a request thread's stack, as the front
 * would. */
static void inspect_on_request_stack(run *r, const adapter_case *c, const char *body, size_t len)
{
    memset(r, 0, sizeof *r);
    r->c = c;
    r->body = body;
    r->body_len = len;
    rl_buf_init(&r->canon, 0);
    rl_buf_init(&r->why, 4096);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, REQUEST_STACK);
    if (pthread_create(&t, &attr, inspect_thread, r) != 0)
        abort();
    pthread_join(t, NULL);
    pthread_attr_destroy(&attr);
}

static void run_release(run *r)
{
    rl_buf_release(&r->canon);
    rl_buf_release(&r->why);
}

static void check_depth(const adapter_case *c)
{
    char what[160];
    /* The outer object is level 1: head + 127 arrays is 128 levels. */
    char *at_limit = nested(c->head, 128 - 1, '[', ']');
    run r;
    inspect_on_request_stack(&r, c, at_limit, strlen(at_limit));
    snprintf(what, sizeof what, "%s: %d levels are accepted and keyed", c->name, 128);
    is_int(r.err, RL_OK, what);
    ok(r.canon.len > 0 && strstr(r.canon.data, "[[[[") != NULL, "... with a canonical body");
    run_release(&r);
    free(at_limit);

    static const int too_deep[] = {128, 1700, 200000};
    for (size_t i = 0; i < sizeof too_deep / sizeof too_deep[0]; i++) {
        for (int objects = 0; objects < 2; objects++) {
            /* Objects nest through a member each: {"a":{"a":...}} */
            char *body;
            if (objects) {
                size_t hl = strlen(c->head), n = (size_t)too_deep[i];
                body = malloc(hl + n * 6 + n + 8);
                if (!body)
                    abort();
                memcpy(body, c->head, hl);
                char *p = body + hl;
                for (size_t k = 0; k < n; k++, p += 5)
                    memcpy(p, "{\"a\":", 5);
                memcpy(p, "1", 1);
                p++;
                memset(p, '}', n);
                p += n;
                memcpy(p, "}", 2);
            } else {
                body = nested(c->head, too_deep[i], '[', ']');
            }
            inspect_on_request_stack(&r, c, body, strlen(body));
            snprintf(what, sizeof what, "%s: %d nested %s beyond the outer object are refused",
                     c->name, too_deep[i], objects ? "objects" : "arrays");
            is_int(r.err, RL_BAD_JSON, what);
            ok(r.why.data && strstr(r.why.data, "128 levels"), "... naming the limit");
            if (r.why.data && !strstr(r.why.data, "128 levels"))
                printf("#   why: %s\n", r.why.data);
            run_release(&r);
            free(body);
        }
    }
    /* Brackets inside strings are text, not nesting. */
    size_t hl = strlen(c->head);
    char *body = malloc(hl + 3000 + 4);
    memcpy(body, c->head, hl);
    body[hl] = '"';
    memset(body + hl + 1, '[', 3000);
    memcpy(body + hl + 3001, "\"}", 3);
    inspect_on_request_stack(&r, c, body, strlen(body));
    snprintf(what, sizeof what, "%s: brackets inside a string do not count as nesting", c->name);
    is_int(r.err, RL_OK, what);
    run_release(&r);
    free(body);
}

/* "\u0000" is legal JSON: forwarded, and keyed with what follows it. */
static void check_nul(const adapter_case *c)
{
    char what[160];
    char a[512], b[512];
    snprintf(a, sizeof a, "%s\"before\\u0000after one\"}", c->head);
    snprintf(b, sizeof b, "%s\"before\\u0000after two\"}", c->head);
    run ra, rb;
    inspect_on_request_stack(&ra, c, a, strlen(a));
    inspect_on_request_stack(&rb, c, b, strlen(b));
    snprintf(what, sizeof what, "%s: a string holding \\u0000 is accepted", c->name);
    is_int(ra.err, RL_OK, what);
    if (ra.err != RL_OK && ra.why.data)
        printf("#   why: %s\n", ra.why.data);
    ok(ra.canon.data && strstr(ra.canon.data, "before\\u0000after one"),
       "... and keyed with the NUL escaped and what follows it");
    ok(ra.canon.data && rb.canon.data && strcmp(ra.canon.data, rb.canon.data) != 0,
       "... so bodies that differ after the NUL have different keys");
    run_release(&ra);
    run_release(&rb);
}

/* Upstream answers go through the same loader: a deep stream event is
 * not an answer, and must not crash the thread that assembles it. */
static void check_upstream(void)
{
    char *deep = nested("{\"choices\":[{\"delta\":{\"content\":", 5000, '[', ']');
    rl_buf stream, out;
    rl_buf_init(&stream, 0);
    rl_buf_init(&out, 0);
    rl_buf_printf(&stream, "data: %s\n\ndata: [DONE]\n\n", deep);
    rl_err err = prov_openai.stream_to_body(FRAME_SSE, stream.data, stream.len, &out);
    ok(err != RL_OK || out.len > 0, "openai: a stream with a deeply nested event is assembled "
                                    "or refused, without a crash");
    ok(!prov_openai.body_complete(deep, strlen(deep)),
       "openai: a deeply nested answer is not a complete answer");
    rl_buf_release(&stream);
    rl_buf_release(&out);
    free(deep);
}

/* jansson's allocations, failing the Nth (from 1) as malloc fails:
 * NULL with errno ENOMEM. 0: none fails. */
static unsigned long allocs_seen, alloc_to_fail;

static void *failing_malloc(size_t n)
{
    if (++allocs_seen == alloc_to_fail) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc(n);
}

/*
 * The real jansson (not oom_inject.h's stand-in), its Nth allocation failing for
 * every N of a parse: prov_json_load gives the document unchanged, or
 * NULL with json_error_out_of_memory, never a syntax error (jansson 2.14
 * reports a failed copy of a string as "invalid token near ...", and a
 * failed object, array or number as nothing at all) nor another document.
 * The 20-byte string outgrows the lexer's first buffer (16 bytes), whose
 * failure jansson ignores (load.c, lex_save: a byte is dropped).
 */
static void check_out_of_memory(void)
{
    static const char doc[] = "{\"model\":\"m\",\"n\":[1,-2.5e3,true,false,null,{}],"
                              "\"s\":\"twenty characters...\",\"o\":{\"k\":[]}}";
    json_error_t err;
    json_t *j = prov_json_load(doc, sizeof doc - 1, &err);
    char *want = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    unsigned long n, wrong = 0, failed = 0;
    json_set_alloc_funcs(failing_malloc, free);
    for (n = 1; n < 1000; n++) {
        allocs_seen = 0;
        alloc_to_fail = n;
        memset(&err, 0, sizeof err);
        j = prov_json_load(doc, sizeof doc - 1, &err);
        alloc_to_fail = 0;
        if (allocs_seen < n) { /* nothing failed: every allocation was counted */
            json_decref(j);
            break;
        }
        failed++;
        char *got = j ? json_dumps(j, JSON_COMPACT) : NULL;
        int right = j ? got && want && strcmp(got, want) == 0
                      : json_error_code(&err) == json_error_out_of_memory;
        if (!right && ++wrong <= 3)
            printf("#   allocation %lu failed: %s\n", n, j ? got : err.text);
        free(got);
        json_decref(j);
    }
    json_set_alloc_funcs(malloc, free);
    free(want);
    ok(want && failed > 5 && n < 1000,
       "a parse fails each of its allocations in turn (the real jansson)");
    is_int(wrong, 0, "... and each parse gives the document or says out of memory");

    /* Without a failure, the codes say what is wrong, whatever err held. */
    memset(&err, json_error_out_of_memory, sizeof err);
    errno = ENOMEM;
    j = prov_json_load("{\"a\":}", 6, &err);
    ok(!j && json_error_code(&err) == json_error_invalid_syntax,
       "invalid JSON is a syntax error, not out of memory (whatever err and errno held)");
    is_int(prov_json_failed(&err, RL_UPSTREAM_PROTOCOL), RL_UPSTREAM_PROTOCOL,
           "... which prov_json_failed maps to the caller's code");
    memset(&err, json_error_out_of_memory, sizeof err);
    char *deep = nested("{\"x\":", 200, '[', ']');
    j = prov_json_load(deep, strlen(deep), &err);
    ok(!j && json_error_code(&err) == json_error_stack_overflow,
       "nesting past the limit is its own code, not out of memory");
    is_int(prov_json_failed(&err, RL_BAD_JSON), RL_BAD_JSON, "... and maps to the caller's code");
    free(deep);
    allocs_seen = 0;
    alloc_to_fail = 1;
    json_set_alloc_funcs(failing_malloc, free);
    j = prov_json_load("{}", 2, &err);
    json_set_alloc_funcs(malloc, free);
    alloc_to_fail = 0;
    ok(!j, "a parse whose first allocation fails fails");
    is_int(prov_json_failed(&err, RL_BAD_JSON), RL_NOMEM, "... and prov_json_failed says RL_NOMEM");
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_depth(&cases[i]);
        check_nul(&cases[i]);
    }
    check_upstream();
    check_out_of_memory();
    return tap_done();
}
