/* Unit tests for engine/memo: a memoised inspection is the parsed one, for
 * every provider format; any byte of difference is a miss; failures and
 * oversized requests are not kept; threads share it safely. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/memo.h"
#include "tests/unit/tap.h"

/* One request, and what inspecting it produced. */
typedef struct outcome {
    rl_err err;
    prov_info info;
    rl_buf canonical, key_parts, why;
} outcome;

static void outcome_init(outcome *o)
{
    memset(o, 0, sizeof *o);
    rl_buf_init(&o->canonical, 0);
    rl_buf_init(&o->key_parts, 0);
    rl_buf_init(&o->why, 0);
}

static void outcome_release(outcome *o)
{
    rl_buf_release(&o->canonical);
    rl_buf_release(&o->key_parts);
    rl_buf_release(&o->why);
}

static void run(memo *m, const prov_ops *p, const prov_request *r, outcome *o)
{
    outcome_init(o);
    o->err = memo_inspect(m, p, r, &o->info, &o->canonical, &o->key_parts, &o->why);
}

/* The adapter's own inspect on the whole request (every header). */
static void run_direct(const prov_ops *p, const prov_request *r, outcome *o)
{
    outcome_init(o);
    o->err = p->inspect(r, &o->info, &o->canonical, &o->key_parts, &o->why);
}

static int buf_same(const rl_buf *a, const rl_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0) &&
           a->err == b->err;
}

static int same(const outcome *a, const outcome *b)
{
    return a->err == b->err && memcmp(&a->info, &b->info, sizeof a->info) == 0 &&
           buf_same(&a->canonical, &b->canonical) && buf_same(&a->key_parts, &b->key_parts);
}

static unsigned long hits_of(memo *m)
{
    memo_stats st;
    memo_counts(m, &st);
    return st.hits;
}

static unsigned long stored_of(memo *m)
{
    memo_stats st;
    memo_counts(m, &st);
    return st.stored;
}

/* ---- one request per format ------------------------------------------- */

static const rl_header anthropic_headers[] = {
    {"content-type", "application/json"},
    {"x-api-key", "sk-ant-test"},
    {"anthropic-version", "2023-06-01"},
    {"anthropic-beta", "prompt-caching-2024-07-31,tools-2024-04-04"},
    {"user-agent", "claude-cli/2.1"},
};

typedef struct example {
    const char *what;
    const prov_ops *prov;
    prov_request r;
} example;

static const example examples[] = {
    {"openai chat",
     &prov_openai,
     {"chat.completions", "POST", "/v1/chat/completions", "",
      "{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"stream\":true,\"stream_options\":"
      "{\"include_usage\":true},\"max_tokens\":50,\"metadata\":{\"user_id\":\"u\"},"
      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
      0, NULL, 0}},
    {"openai responses",
     &prov_openai,
     {"responses", "POST", "/v1/responses", "",
      "{\"model\":\"gpt-5\",\"input\":\"hi\",\"prompt_cache_key\":\"k\",\"seed\":3,"
      "\"max_output_tokens\":9}",
      0, NULL, 0}},
    {"openai embeddings",
     &prov_openai,
     {"embeddings", "POST", "/v1/embeddings", "", "{\"model\":\"e\",\"input\":[\"a\",\"b\"]}", 0,
      NULL, 0}},
    {"openai models (GET, no body)",
     &prov_openai,
     {"models", "GET", "/v1/models", "", NULL, 0, NULL, 0}},
    {"azure",
     &prov_openai,
     {"chat.completions", "POST", "/openai/deployments/d1/chat/completions",
      "api-version=2024-10-21",
      "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2,\"max_completion_tokens\":7}",
      0, NULL, 0}},
    {"anthropic messages",
     &prov_anthropic,
     {"messages", "POST", "/v1/messages", "beta=true",
      "{\"model\":\"claude-x\",\"max_tokens\":64,\"temperature\":0,\"stream\":true,"
      "\"metadata\":{\"user_id\":\"session-1\"},\"messages\":[{\"role\":\"user\",\"content\":"
      "\"hi\"}]}",
      0, anthropic_headers, sizeof anthropic_headers / sizeof anthropic_headers[0]}},
    {"anthropic count_tokens",
     &prov_anthropic,
     {"messages.count_tokens", "POST", "/v1/messages/count_tokens", "",
      "{\"model\":\"claude-x\",\"messages\":[]}", 0, anthropic_headers, 3}},
    {"gemini generate",
     &prov_gemini,
     {"generateContent", "POST", "/v1beta/models/gemini-2.5-flash:generateContent", "",
      "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}],\"generationConfig\":{\"temperature\":0,"
      "\"maxOutputTokens\":5,\"candidateCount\":2}}",
      0, NULL, 0}},
    {"gemini stream, sse",
     &prov_gemini,
     {"generateContent", "POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "alt=sse",
      "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}", 0, NULL, 0}},
    {"gemini stream, json array",
     &prov_gemini,
     {"generateContent", "POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "",
      "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}", 0, NULL, 0}},
    {"ollama chat",
     &prov_ollama,
     {"chat", "POST", "/api/chat", "",
      "{\"model\":\"llama3\",\"keep_alive\":\"5m\",\"options\":{\"seed\":1,\"num_predict\":8},"
      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
      0, NULL, 0}},
    {"ollama generate",
     &prov_ollama,
     {"generate", "POST", "/api/generate", "", "{\"model\":\"llama3\",\"prompt\":\"hi\"}", 0, NULL,
      0}},
};
#define NEXAMPLES (sizeof examples / sizeof examples[0])

static prov_request request_of(const example *ex)
{
    prov_request r = ex->r;
    r.body_len = r.body ? strlen(r.body) : 0;
    return r;
}

/* Parsed, stored, then answered from the memo: the same every time, and
 * the same as the adapter's inspect on the whole request. */
static void test_memoised_equals_parsed(void)
{
    memo *m = memo_new();
    for (size_t i = 0; i < NEXAMPLES; i++) {
        char what[160];
        prov_request r = request_of(&examples[i]);
        outcome direct, first, second;
        run_direct(examples[i].prov, &r, &direct);
        unsigned long hits = hits_of(m);
        run(m, examples[i].prov, &r, &first);
        run(m, examples[i].prov, &r, &second);
        snprintf(what, sizeof what, "%s: inspected without error", examples[i].what);
        is_int(direct.err, RL_OK, what);
        snprintf(what, sizeof what, "%s: the first pass is the adapter's inspect",
                 examples[i].what);
        ok(same(&first, &direct), what);
        snprintf(what, sizeof what, "%s: the repeat comes from the memo", examples[i].what);
        is_int(hits_of(m), hits + 1, what);
        snprintf(what, sizeof what, "%s: ... with the same info, canonical body and key parts",
                 examples[i].what);
        ok(same(&second, &direct), what);
        outcome_release(&direct);
        outcome_release(&first);
        outcome_release(&second);
    }
    /* Everything is still there: a second round is all hits, all equal. */
    unsigned long hits = hits_of(m);
    int all_same = 1;
    for (size_t i = 0; i < NEXAMPLES; i++) {
        prov_request r = request_of(&examples[i]);
        outcome direct, again;
        run_direct(examples[i].prov, &r, &direct);
        run(m, examples[i].prov, &r, &again);
        all_same &= same(&direct, &again);
        outcome_release(&direct);
        outcome_release(&again);
    }
    ok(all_same, "a second round gives every format's parsed result");
    is_int(hits_of(m), hits + NEXAMPLES, "... all from the memo");
    memo_free(m);
}

/* Checks that r, after the memo has seen base, misses and gives what the
 * adapter gives for r itself. Returns 1 when it does. */
static int misses_and_parses(memo *m, const prov_ops *p, const prov_request *r)
{
    unsigned long hits = hits_of(m);
    outcome direct, got;
    run_direct(p, r, &direct);
    run(m, p, r, &got);
    int good = hits_of(m) == hits && same(&direct, &got);
    outcome_release(&direct);
    outcome_release(&got);
    return good;
}

/* Every single-byte change of the body is another request. */
static void test_any_body_byte_misses(void)
{
    for (size_t i = 0; i < NEXAMPLES; i++) {
        prov_request base = request_of(&examples[i]);
        if (!base.body)
            continue;
        int good = 1;
        char *copy = malloc(base.body_len + 1);
        for (size_t at = 0; at < base.body_len && good; at++) {
            memo *m = memo_new();
            outcome seen;
            run(m, examples[i].prov, &base, &seen);
            outcome_release(&seen);
            memcpy(copy, base.body, base.body_len + 1);
            /* A change that keeps JSON valid where it can (a letter in a
             * string) and breaks it elsewhere: both must miss. */
            copy[at] = copy[at] == 'i' ? 'j' : copy[at] == '0' ? '1' : (char)(copy[at] ^ 0x20);
            prov_request r = base;
            r.body = copy;
            good = misses_and_parses(m, examples[i].prov, &r);
            if (!good)
                printf("#   byte %zu of %s\n", at, examples[i].what);
            memo_free(m);
        }
        free(copy);
        char what[160];
        snprintf(what, sizeof what, "%s: every changed body byte misses", examples[i].what);
        ok(good, what);
    }
    /* A body one byte longer or shorter (a prefix) misses too. */
    memo *m = memo_new();
    prov_request base = request_of(&examples[0]);
    outcome seen;
    run(m, &prov_openai, &base, &seen);
    outcome_release(&seen);
    prov_request shorter = base;
    shorter.body_len--;
    ok(misses_and_parses(m, &prov_openai, &shorter), "a prefix of the body misses");
    memo_free(m);
}

/* The other fields inspect sees: endpoint, method, path, query, the
 * declared headers (absent and empty apart), the adapter. */
static void test_other_fields_miss(void)
{
    memo *m = memo_new();
    const example *anth = &examples[5];
    prov_request base = request_of(anth);
    outcome seen;
    run(m, anth->prov, &base, &seen);
    outcome_release(&seen);

    rl_header h[5];
    memcpy(h, anthropic_headers, sizeof h);
    prov_request r = base;
    r.headers = h;
    h[2].value = "2023-06-02";
    ok(misses_and_parses(m, anth->prov, &r), "another anthropic-version misses");
    h[2].value = anthropic_headers[2].value;
    h[3].value = "";
    ok(misses_and_parses(m, anth->prov, &r), "an empty anthropic-beta misses");
    r.nheaders = 3;
    ok(misses_and_parses(m, anth->prov, &r), "no anthropic-beta at all misses");
    r = base;
    r.query = "";
    ok(misses_and_parses(m, anth->prov, &r), "another query misses");
    r = base;
    r.path = "/anthropic/v1/messages";
    ok(misses_and_parses(m, anth->prov, &r), "another path misses");
    r = base;
    r.method = "PUT";
    ok(misses_and_parses(m, anth->prov, &r), "another method misses");
    r = base;
    r.endpoint = "messages.count_tokens";
    ok(misses_and_parses(m, anth->prov, &r), "another endpoint misses");

    /* The same bytes under another adapter. */
    prov_request o = request_of(&examples[10]);
    run(m, &prov_ollama, &o, &seen);
    outcome_release(&seen);
    ok(misses_and_parses(m, &prov_openai, &o), "the same request under another adapter misses");

    /* Azure: api-version is in the query. */
    const example *az = &examples[4];
    prov_request a = request_of(az);
    run(m, az->prov, &a, &seen);
    outcome_release(&seen);
    a.query = "api-version=2025-01-01";
    ok(misses_and_parses(m, az->prov, &a), "another azure api-version misses");
    a = request_of(az);
    a.path = "/openai/deployments/d2/chat/completions";
    ok(misses_and_parses(m, az->prov, &a), "another azure deployment misses");
    memo_free(m);
}

/* Headers inspect does not declare are not shown to it, so they cannot
 * matter: a changed user-agent (or credential) still hits. */
static void test_undeclared_headers_hit(void)
{
    memo *m = memo_new();
    prov_request base = request_of(&examples[5]);
    outcome first, second;
    run(m, &prov_anthropic, &base, &first);
    rl_header h[5];
    memcpy(h, anthropic_headers, sizeof h);
    h[1].value = "sk-ant-other";
    h[4].value = "claude-cli/2.2";
    prov_request r = base;
    r.headers = h;
    unsigned long hits = hits_of(m);
    run(m, &prov_anthropic, &r, &second);
    is_int(hits_of(m), hits + 1, "another user-agent and x-api-key hit");
    ok(same(&first, &second), "... with the same result");
    outcome_release(&first);
    outcome_release(&second);
    memo_free(m);
}

/* Failures are parsed (and explained) every time; oversized requests are
 * not kept. */
static void test_not_kept(void)
{
    memo *m = memo_new();
    prov_request r = request_of(&examples[0]);
    r.body = "{\"model\":";
    r.body_len = strlen(r.body);
    outcome a, b;
    run(m, &prov_openai, &r, &a);
    run(m, &prov_openai, &r, &b);
    is_int(b.err, RL_BAD_JSON, "bad JSON is refused the second time too");
    ok(b.why.len > 0 && a.why.len == b.why.len, "... with its message");
    is_int(stored_of(m), 0, "... and never kept");
    outcome_release(&a);
    outcome_release(&b);

    size_t n = MEMO_ENTRY_MAX;
    char *big = malloc(n + 64);
    int len = snprintf(big, n + 64, "{\"model\":\"m\",\"input\":\"");
    memset(big + len, 'x', n);
    memcpy(big + len + n, "\"}", 3);
    r = (prov_request){"embeddings", "POST", "/v1/embeddings", "", big, strlen(big), NULL, 0};
    run(m, &prov_openai, &r, &a);
    run(m, &prov_openai, &r, &b);
    is_int(b.err, RL_OK, "a body over MEMO_ENTRY_MAX is inspected");
    is_int(stored_of(m), 0, "... but not kept");
    is_int(hits_of(m), 0, "... so never answered from the memo");
    outcome_release(&a);
    outcome_release(&b);
    free(big);

    /* Without a memo, inspect runs every time. */
    outcome c;
    prov_request ok_req = request_of(&examples[0]);
    run(NULL, &prov_openai, &ok_req, &c);
    is_int(c.err, RL_OK, "a NULL memo parses");
    outcome_release(&c);
    memo_free(m);
}

/* The memo's total stays under MEMO_MAX_BYTES however many requests pass. */
static void test_bounded(void)
{
    memo *m = memo_new();
    char body[20000];
    int good = 1;
    for (int i = 0; i < 4 * MEMO_SETS * MEMO_WAYS; i++) {
        int len = snprintf(body, sizeof body, "{\"model\":\"m%d\",\"input\":\"", i);
        memset(body + len, 'y', 12000);
        memcpy(body + len + 12000, "\"}", 3);
        prov_request r = {"embeddings", "POST", "/v1/embeddings", "", body, strlen(body), NULL, 0};
        outcome o;
        run(m, &prov_openai, &r, &o);
        good &= o.err == RL_OK;
        outcome_release(&o);
    }
    ok(good, "1,024 requests of 12 KB inspected");
    memo_stats st;
    memo_counts(m, &st);
    ok(st.stored > MEMO_MAX_BYTES / MEMO_ENTRY_MAX, "a budget's worth were kept");
    if (!ok(st.bytes <= MEMO_MAX_BYTES && st.bytes > MEMO_MAX_BYTES / 2,
            "the memo holds at most MEMO_MAX_BYTES"))
        printf("#   holds %zu bytes\n", st.bytes);
    memo_free(m);
}

/* Threads looking up and replacing the same sets get whole results. */
typedef struct worker_arg {
    memo *m;
    int id;
    int wrong;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        const example *ex = &examples[(size_t)(i + a->id) % NEXAMPLES];
        prov_request r = request_of(ex);
        outcome direct, got;
        run_direct(ex->prov, &r, &direct);
        run(a->m, ex->prov, &r, &got);
        a->wrong += !same(&direct, &got);
        outcome_release(&direct);
        outcome_release(&got);
    }
    return NULL;
}

static void test_threads(void)
{
    memo *m = memo_new();
    pthread_t t[8];
    worker_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (worker_arg){m, i, 0};
        pthread_create(&t[i], NULL, worker, &args[i]);
    }
    int wrong = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        wrong += args[i].wrong;
    }
    is_int(wrong, 0, "8 threads x 2,000 requests: every result is the parsed one");
    ok(hits_of(m) > 0, "... most from the memo");
    memo_free(m);
}

int main(void)
{
    test_memoised_equals_parsed();
    test_any_body_byte_misses();
    test_other_fields_miss();
    test_undeclared_headers_hit();
    test_not_kept();
    test_bounded();
    test_threads();
    return tap_done();
}
