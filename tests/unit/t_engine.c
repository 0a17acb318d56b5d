/*
 * t_engine.c — the request flow (engine/engine.c) in-process: route,
 * credential, key, policy, lookup, upstream call, store, stream relay and
 * errors, with no server, no front and no sleep.
 *
 * Data-driven as curl's tests are: every case of every file in
 * tests/fixtures/providers/ (the format is documented in
 * tests/e2e/fixtures.test.mjs, which runs the same cases through a real
 * front). One engine per group of harness options, on a relay.ini written
 * as tests/e2e/harness.mjs writes it and a real store in a temp dir. Each
 * step's request goes to engine_handle as the front would hand it over; a
 * fake upstream (engine_worker.perform) records the request it gets and
 * replays the step's canned reply one piece per on_data; a fake sink
 * records what the client gets. Both sides are checked byte for byte, one
 * TAP point per checked thing, named by file, case and step. What a front
 * adds or removes on its own is not seen here; no fixture expectation
 * depends on it today, so no header is left unchecked (fixtures.test.mjs
 * checks the same cases behind each front).
 *
 * The harness (the fake client and upstream, one engine) is in
 * engine_harness.h; the cases the fixtures cannot express are in
 * t_engine_failures.c, a hit's accounting in t_engine_usage.c, tokens and
 * budgets in t_engine_spend.c.
 *
 * Run from the repository root (tests/run.sh does): the fixtures are read
 * from tests/fixtures/providers.
 */
#include <dirent.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tests/unit/engine_harness.h"

#define FIXTURE_DIR "tests/fixtures/providers"

/* Every wire format has its file; a missing one is a failure, not a skip
 * (the same list as fixtures.test.mjs). */
static const char *const required_files[] = {"openai.json",    "azure.json",
                                             "anthropic.json", "gemini.json",
                                             "ollama.json",    "openai-compatible.json"};

/* Never forwarded upstream, whatever the client sent (fixtures.test.mjs's
 * ALWAYS_ABSENT): hop-by-hop headers, what a front adds, Relay's controls. */
/* clang-format off */
static const char *const always_absent[] = {
    "x-relay-cache", "x-relay-ttl", "x-relay-namespace", "cache-control", "cookie",
    "proxy-authorization", "proxy-connection", "keep-alive", "te", "trailer", "upgrade",
    "forwarded", "via", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
    "accept-encoding"};
/* clang-format on */

/* The writer against what node prints for the same values. */
static void test_js_stringify(void)
{
    static const char *const cases[][2] = {
        {"[0.7,-2.5,100.0,1e21,1.5e-7,0.000001,123456789012.5,0,-0.0]",
         "[0.7,-2.5,100,1e+21,1.5e-7,0.000001,123456789012.5,0,0]"},
        {"{\"z\":1,\"a\":{\"y\":true,\"b\":null},\"m\":[]}",
         "{\"z\":1,\"a\":{\"y\":true,\"b\":null},\"m\":[]}"},
        {"[\"q\\\"b\\\\n\\n\\t\\u0001\\u001f/\\u00fc\\u2028\"]",
         "[\"q\\\"b\\\\n\\n\\t\\u0001\\u001f/\u00fc\u2028\"]"},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        json_t *v = json_loads(cases[i][0], JSON_DECODE_ANY, NULL);
        rl_buf out;
        rl_buf_init(&out, 0);
        if (v)
            js_value(&out, v);
        is_str(out.data, cases[i][1], point("JSON.stringify", "%s", cases[i][0]));
        rl_buf_release(&out);
        json_decref(v);
    }
}

/* A fixture body: a string as its bytes; a list of strings joined; anything
 * else JSON.stringify'd when stringify, else refused (-1). */
static int fixture_text(const json_t *v, int stringify, rl_buf *out)
{
    if (json_is_string(v))
        return rl_buf_append(out, json_string_value(v), json_string_length(v)) == RL_OK ? 0 : -1;
    if (json_is_array(v) && !stringify) {
        size_t i;
        json_t *piece;
        json_array_foreach(v, i, piece)
        {
            if (!json_is_string(piece))
                return -1;
            rl_buf_append(out, json_string_value(piece), json_string_length(piece));
        }
        return rl_buf_error(out) == RL_OK ? 0 : -1;
    }
    if (!stringify || !v)
        return -1;
    js_value(out, v);
    return rl_buf_error(out) == RL_OK ? 0 : -1;
}

/* ---- part 1: the provider fixtures -------------------------------------- */

/* What a case's first answer was, for {"same": "first"}. */
typedef struct first_answer {
    json_t *headers;
    rl_buf body;
} first_answer;

/* One header of a side against its spec: "exact", {"re": ERE}, or
 * {"same": "first"} (the case's first answer's value). */
static void check_header(const char *label, const char *side, const json_t *got, const char *name,
                         const json_t *spec, const first_answer *first)
{
    char lower[256];
    snprintf(lower, sizeof lower, "%s", name);
    for (char *c = lower; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    const char *value = json_string_value(json_object_get(got, lower));
    const char *what = point(label, "%s header %s", side, lower);
    const char *re = json_string_value(json_object_get(spec, "re"));
    const char *same = json_string_value(json_object_get(spec, "same"));
    if (json_is_string(spec)) {
        is_str(value, json_string_value(spec), what);
    } else if (re) {
        regex_t rx;
        int compiled = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) == 0;
        if (!ok(compiled && value && regexec(&rx, value, 0, NULL, 0) == 0, what))
            printf("#   got:  %s\n#   want: matching /%s/%s\n", value ? value : "(none)", re,
                   compiled ? "" : " (not a POSIX ERE)");
        if (compiled)
            regfree(&rx);
    } else if (same && strcmp(same, "first") == 0 && first) {
        const char *want = json_string_value(json_object_get(first->headers, lower));
        is_str(value, want ? want : "(the first response had none)", what);
    } else {
        ok(0, what);
        printf("#   bad header spec in the fixture\n");
    }
}

static void check_absent(const char *label, const char *side, const json_t *got, const char *name)
{
    const char *value = json_string_value(json_object_get(got, name));
    if (!ok(value == NULL, point(label, "%s header %s absent", side, name)))
        printf("#   got: %s\n", value);
}

static int listed(const json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcasecmp(json_string_value(v), name) == 0)
            return 1;
    }
    return 0;
}

/* The request the fake got against the step's "upstream". */
static void check_upstream(const char *label, const json_t *u, const char *client_body,
                           size_t client_len)
{
    is_str(fake.method, json_string_value(json_object_get(u, "method")),
           point(label, "upstream method"));
    size_t base = strlen(FAKE_BASE);
    const char *url = fake.url ? fake.url : "";
    int ours = strncmp(url, FAKE_BASE, base) == 0;
    const char *target = ours ? url + base : url;
    size_t plen = strcspn(target, "?");
    char path[2048];
    snprintf(path, sizeof path, "%.*s", (int)plen, target);
    is_str(path, json_string_value(json_object_get(u, "path")), point(label, "upstream path"));
    is_str(target[plen] ? target + plen + 1 : "", json_string_value(json_object_get(u, "query")),
           point(label, "upstream query"));
    const char *name;
    json_t *spec;
    json_object_foreach(json_object_get(u, "headers"), name, spec)
    {
        check_header(label, "upstream", fake.headers, name, spec, NULL);
    }
    const json_t *absent = json_object_get(u, "absent");
    size_t i;
    json_t *a;
    json_array_foreach(absent, i, a)
    {
        check_absent(label, "upstream", fake.headers, json_string_value(a));
    }
    for (i = 0; i < NELEM(always_absent); i++)
        if (!listed(absent, always_absent[i]))
            check_absent(label, "upstream", fake.headers, always_absent[i]);
    json_object_foreach(fake.headers, name, spec)
    {
        if (strncmp(name, "x-relay-", 8) == 0)
            check_absent(label, "upstream", fake.headers, name);
    }
    const json_t *want = json_object_get(u, "body");
    rl_buf wb;
    rl_buf_init(&wb, 0);
    const char *same = json_string_value(json_object_get(want, "same"));
    if (same && strcmp(same, "request") == 0)
        rl_buf_append(&wb, client_body, client_len);
    else if (fixture_text(want, 0, &wb) != 0)
        printf("# %s: bad upstream.body in the fixture\n", label);
    is_bytes(fake.body.data, fake.body.len, wb.data ? wb.data : "", wb.len,
             point(label, "upstream body (the client's bytes)"));
    rl_buf_release(&wb);
}

/* What the client got against the step's "client". */
static void check_client(const char *label, const client *c, const json_t *want,
                         const json_t *reply, const first_answer *first)
{
    is_int(c->starts, 1, point(label, "the status line is committed once"));
    is_int(c->status, json_integer_value(json_object_get(want, "status")),
           point(label, "client status"));
    const char *name;
    json_t *spec;
    json_object_foreach(json_object_get(want, "headers"), name, spec)
    {
        check_header(label, "client", c->headers, name, spec, first);
    }
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(want, "absent"), i, a)
    {
        check_absent(label, "client", c->headers, json_string_value(a));
    }
    const json_t *body = json_object_get(want, "body");
    const char *same = json_string_value(json_object_get(body, "same"));
    rl_buf wb;
    rl_buf_init(&wb, 0);
    int bad = 0;
    if (same && strcmp(same, "reply") == 0)
        bad = !reply || fixture_text(json_object_get(reply, "body"), 0, &wb) != 0;
    else if (same && strcmp(same, "first") == 0)
        rl_buf_append(&wb, first->body.data ? first->body.data : "", first->body.len);
    else
        bad = fixture_text(body, 0, &wb) != 0;
    if (bad)
        printf("# %s: bad client.body in the fixture\n", label);
    is_bytes(c->body.data, c->body.len, wb.data ? wb.data : "", wb.len,
             point(label, "client body"));
    rl_buf_release(&wb);
}

/* The request of a step: the case's request with the step's overrides
 * (method, path, body; headers merged, a null value removes one). */
static json_t *step_request(const json_t *base, const json_t *over)
{
    json_t *r = json_deep_copy(base);
    if (!over)
        return r;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)over, k, v)
    {
        if (strcmp(k, "headers") != 0)
            json_object_set(r, k, v);
    }
    json_t *headers = json_object_get(r, "headers");
    if (!headers) {
        headers = json_object();
        json_object_set_new(r, "headers", headers);
    }
    json_object_foreach(json_object_get(over, "headers"), k, v)
    {
        if (json_is_null(v))
            json_object_del(headers, k);
        else
            json_object_set(headers, k, v);
    }
    return r;
}

/* Runs one step (the case itself, or one of its "then") and checks both
 * sides; the first step's answer is kept in first. */
static void run_step(const relay *r, const char *label, const json_t *req, const json_t *step,
                     first_answer *first, int is_first)
{
    rl_buf body;
    rl_buf_init(&body, 0);
    if (fixture_text(json_object_get(req, "body"), 1, &body) != 0)
        printf("# %s: the request body cannot be written\n", label);
    const json_t *u = json_object_get(step, "upstream");
    const json_t *reply = json_is_object(u) ? json_object_get(step, "reply") : NULL;
    fake_reset(reply, FAKE_REPLY);
    client c;
    client_init(&c, 0);
    handle(r, json_string_value(json_object_get(req, "method")),
           json_string_value(json_object_get(req, "path")), json_object_get(req, "headers"),
           body.data ? body.data : "", body.len, &c);

    if (!json_is_object(u)) {
        if (!ok(fake.calls == 0, point(label, "no upstream call (answered from the cache)")))
            printf("#   it went to %s %s; the client got %d, x-cache %s\n", fake.method, fake.url,
                   c.status, json_string_value(json_object_get(c.headers, "x-cache")));
    } else if (ok(fake.calls == 1, point(label, "one upstream call"))) {
        check_upstream(label, u, body.data ? body.data : "", body.len);
    } else {
        printf("#   %d calls; the client got %d, x-cache %s\n", fake.calls, c.status,
               json_string_value(json_object_get(c.headers, "x-cache")));
    }
    check_client(label, &c, json_object_get(step, "client"), reply, first);
    if (is_first) {
        first->headers = json_incref(c.headers);
        rl_buf_append(&first->body, c.body.data ? c.body.data : "", c.body.len);
    }
    client_release(&c);
    rl_buf_release(&body);
}

static void run_case(const relay *r, const json_t *cs)
{
    char label[512];
    const char *file = json_string_value(json_object_get(cs, "file"));
    const char *name = json_string_value(json_object_get(cs, "name"));
    snprintf(label, sizeof label, "%s \"%s\"", file, name);
    first_answer first = {NULL, {0}};
    rl_buf_init(&first.body, 0);
    const json_t *base = json_object_get(cs, "request");
    run_step(r, label, base, cs, &first, 1);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(cs, "then"), i, t)
    {
        char tl[768];
        snprintf(tl, sizeof tl, "%s then \"%s\"", label,
                 json_string_value(json_object_get(t, "name")));
        json_t *req = step_request(base, json_object_get(t, "request"));
        run_step(r, tl, req, t, &first, 0);
        json_decref(req);
    }
    json_decref(first.headers);
    rl_buf_release(&first.body);
}

/* Why a step cannot run, or NULL (fixtures.test.mjs's validateStep). */
static const char *step_problem(const json_t *s, int first)
{
    if (!json_is_object(s))
        return "not an object";
    if (!json_is_string(json_object_get(s, "name")))
        return "no name";
    const json_t *r = json_object_get(s, "request");
    if (first && (!json_is_string(json_object_get(r, "method")) ||
                  !json_is_string(json_object_get(r, "path")) || !json_object_get(r, "body")))
        return "request needs method, path and body";
    const json_t *u = json_object_get(s, "upstream");
    if (!u)
        return "no upstream (null when none is expected)";
    const json_t *reply = json_object_get(s, "reply");
    if (json_is_object(u) &&
        (!json_is_integer(json_object_get(reply, "status")) || !json_object_get(reply, "body")))
        return "an expected upstream call needs a reply with status and body";
    if (!json_is_object(u) && reply)
        return "a reply without an upstream call";
    const json_t *c = json_object_get(s, "client");
    if (!json_is_integer(json_object_get(c, "status")) || !json_object_get(c, "body"))
        return "client needs status and body";
    return NULL;
}

static const char *case_problem(const json_t *c)
{
    const char *why = step_problem(c, 1);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(c, "then"), i, t)
    {
        if (!why)
            why = step_problem(t, 0);
    }
    return why;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads every fixture file (sorted, as the e2e runner does) into cases,
 * each case with its "file"; one point per file and per unusable case. */
static void load_fixtures(json_t *cases)
{
    DIR *d = opendir(FIXTURE_DIR);
    if (!ok(d != NULL,
            "the fixture directory " FIXTURE_DIR " opens (run from the repository root)"))
        return;
    char *names[64];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < NELEM(names)) {
        size_t len = strlen(de->d_name);
        if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < NELEM(required_files); i++) {
        int found = 0;
        for (size_t j = 0; j < n; j++)
            found |= strcmp(names[j], required_files[i]) == 0;
        ok(found, point(required_files[i], "present"));
    }
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, names[i]);
        json_error_t jerr;
        /* "\u0000" is legal JSON and may be in a fixture's body. */
        json_t *list = json_load_file(path, JSON_ALLOW_NUL, &jerr);
        if (!ok(json_is_array(list) && json_array_size(list) > 0,
                point(names[i], "a non-empty list of cases")))
            printf("#   %s (line %d)\n", list ? "not a list" : jerr.text, jerr.line);
        size_t k;
        json_t *c;
        json_array_foreach(list, k, c)
        {
            const char *why = case_problem(c);
            if (why) {
                ok(0, point(names[i], "case %zu is well-formed", k));
                printf("#   %s\n", why);
                continue;
            }
            json_object_set_new(c, "file", json_string(names[i]));
            json_array_append(cases, c);
        }
        json_decref(list);
        free(names[i]);
    }
}

/* The group of a case: its harness options, as fixtures.test.mjs's
 * optionsKey (caller frees). */
static char *options_key(const json_t *c)
{
    json_t *up = json_object_get(c, "upstreams"), *ini = json_object_get(c, "ini");
    json_t *k = json_object();
    json_object_set_new(k, "upstreams", up ? json_incref(up) : json_array());
    json_object_set_new(k, "ini", ini ? json_incref(ini) : json_object());
    rl_buf b;
    rl_buf_init(&b, 0);
    js_value(&b, k);
    json_decref(k);
    return rl_buf_steal(&b, NULL);
}

/* One engine per group of harness options, its cases in file order. */
static void run_fixtures(const char *tmp, const json_t *cases)
{
    size_t n = json_array_size(cases);
    char **keys = calloc(n ? n : 1, sizeof *keys);
    int *done = calloc(n ? n : 1, sizeof *done);
    for (size_t i = 0; i < n; i++)
        keys[i] = options_key(json_array_get(cases, i));
    int group = 0;
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        const json_t *c = json_array_get(cases, i);
        char dir[128], label[600];
        snprintf(dir, sizeof dir, "%s/group%d", tmp, ++group);
        snprintf(label, sizeof label, "fixtures group %d (%s)", group, keys[i]);
        relay r;
        int started = relay_start(&r, dir, json_object_get(c, "upstreams"),
                                  json_object_get(c, "ini"), label) == 0;
        for (size_t j = i; j < n; j++) {
            if (done[j] || strcmp(keys[j], keys[i]) != 0)
                continue;
            const json_t *cj = json_array_get(cases, j);
            if (started)
                run_case(&r, cj);
            else /* never a silent skip */
                ok(0, point(json_string_value(json_object_get(cj, "file")),
                            "\"%s\" not run: its group's engine did not start",
                            json_string_value(json_object_get(cj, "name"))));
        }
        for (size_t j = i; j < n; j++)
            done[j] |= strcmp(keys[j], keys[i]) == 0;
        relay_stop(&r);
    }
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(done);
}

int main(void)
{
    char tmp[] = "/tmp/t_engine.XXXXXX";
    if (harness_begin(tmp) != 0)
        return 1;
    test_js_stringify();
    json_t *cases = json_array();
    load_fixtures(cases);
    run_fixtures(tmp, cases);
    json_decref(cases);
    return harness_end(tmp);
}
