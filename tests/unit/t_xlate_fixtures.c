/*
 * t_xlate_fixtures.c — runs the direction fixtures of tests/fixtures/xlate/
 * (the format is documented in tests/fixtures/xlate/README.md) through the
 * dialect translators of engine/xlate_*.c, the way engine/translate.c
 * chains them:
 *
 *   request:  decode_request(client) -> xlate_check_features(upstream)
 *             -> xlate_pair_tool_results -> encode_request(upstream),
 *             the body compared as JSON and the path exactly;
 *   answer:   decode_response(upstream) -> encode_response(client),
 *             compared as JSON;
 *   stream:   the upstream's bytes through frame.h in the upstream's
 *             stream_framing -> dec_event (dec_finish at the end)
 *             -> enc_event(client), the bytes produced compared with the
 *             fixture's event by event (both parsed in the client's
 *             framing; names exactly, data as JSON when both are JSON);
 *   error:    decode_error(upstream) -> the client's prov_ops error_body
 *             with xlate_status_err(status), compared as JSON;
 *   refused:  the request chain fails with RL_BAD_REQUEST and a reason
 *             holding the fixture's words.
 *
 * A file is named CLIENT--UPSTREAM.json after two dialect names of the
 * table below. Every mismatch prints both sides (sorted keys), so a
 * failing case reads without a debugger.
 *
 * Run from the repository root (tests/run.sh does): the fixtures are read
 * from tests/fixtures/xlate, or from $T_XLATE_FIXTURES when set (to run
 * one file while working on it).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/frame.h"
#include "engine/prov.h"
#include "engine/xlate.h"
#include "tests/unit/tap.h"

#define FIXTURE_DIR "tests/fixtures/xlate"

/* The dialects by the names the fixture files use, with the prov_ops whose
 * error_body writes a client's error (engine/translate.c does the same). */
static const struct {
    const char *name;
    const xl_dialect *dialect;
    const prov_ops *ops;
} dialects[] = {
    {"openai-chat", &xl_openai_chat, &prov_openai},
    {"openai-responses", &xl_openai_responses, &prov_openai},
    {"anthropic", &xl_anthropic, &prov_anthropic},
    {"gemini", &xl_gemini, &prov_gemini},
    {"ollama", &xl_ollama, &prov_ollama},
};
#define NDIALECTS (sizeof dialects / sizeof dialects[0])

/* Framing names a fixture's "reply": {"framing": ...} may give. */
static const struct {
    const char *name;
    frame_kind kind;
} framings[] = {
    {"sse", FRAME_SSE},
    {"ndjson", FRAME_NDJSON},
    {"json_array", FRAME_JSON_ARRAY},
};

/* Cap on one stream event when parsing (frame.h): the fixtures are small. */
#define MAX_EVENT (1u << 20)

static int dialect_index(const char *name, size_t len)
{
    for (size_t i = 0; i < NDIALECTS; i++)
        if (strlen(dialects[i].name) == len && strncmp(dialects[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* The test's label for a check: "FILE: CASE: what". */
static char label[512];
static const char *say(const char *file, const char *name, const char *what)
{
    snprintf(label, sizeof label, "%s: %s: %s", file, name, what);
    return label;
}

static void show_json(const char *side, const json_t *j)
{
    char *text = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    printf("#   %s %s\n", side, text ? text : "(none)");
    free(text);
}

/* Compares produced JSON text with the fixture's value, printing both. */
static void is_json(const char *got, size_t len, const json_t *want, const char *what)
{
    json_error_t e;
    json_t *g = got ? json_loadb(got, len, JSON_DECODE_ANY, &e) : NULL;
    if (!ok(g && json_equal(g, want), what)) {
        if (g)
            show_json("got: ", g);
        else
            printf("#   got:  (not JSON) %.*s\n", (int)len, got ? got : "");
        show_json("want:", want);
    }
    json_decref(g);
}

/* ---- streams as lists of events ----------------------------------------- */

typedef struct event_list {
    char **names; /* NULL entries: no event name (NDJSON, JSON array, SSE unnamed) */
    char **datas;
    size_t n, cap;
} event_list;

static int collect(void *ctx, const char *event, const char *data, size_t len)
{
    event_list *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->names = realloc(l->names, l->cap * sizeof *l->names);
        l->datas = realloc(l->datas, l->cap * sizeof *l->datas);
        if (!l->names || !l->datas)
            abort(); /* a test's own allocation: nothing to test past it */
    }
    l->names[l->n] = event && event[0] ? strdup(event) : NULL;
    l->datas[l->n] = strndup(data, len);
    l->n++;
    return 0;
}

static void list_free(event_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->names[i]);
        free(l->datas[i]);
    }
    free(l->names);
    free(l->datas);
}

/* The data of two events are the same: equal JSON, or equal text when
 * either is not JSON (OpenAI's "[DONE]"). */
static int same_data(const char *a, const char *b)
{
    json_t *ja = json_loads(a, JSON_DECODE_ANY, NULL);
    json_t *jb = json_loads(b, JSON_DECODE_ANY, NULL);
    int same = ja && jb ? json_equal(ja, jb) : strcmp(a, b) == 0;
    json_decref(ja);
    json_decref(jb);
    return same;
}

static void show_events(const char *side, const event_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        printf("#   %s [%zu] %s %s\n", side, i, l->names[i] ? l->names[i] : "-", l->datas[i]);
}

/* Compares two streams of the client's framing event by event. */
static void is_stream(const char *got, size_t glen, const char *want, frame_kind framing,
                      const char *what)
{
    event_list g = {0}, w = {0};
    rl_err ge = frame_each(framing, got, glen, collect, &g);
    rl_err we = frame_each(framing, want, strlen(want), collect, &w);
    int same = ge == RL_OK && we == RL_OK && g.n == w.n;
    size_t first = 0;
    for (; same && first < g.n; first++) {
        const char *gn = g.names[first], *wn = w.names[first];
        if ((gn || wn) && (!gn || !wn || strcmp(gn, wn) != 0))
            same = 0;
        else if (!same_data(g.datas[first], w.datas[first]))
            same = 0;
        if (!same)
            break;
    }
    if (!ok(same, what)) {
        if (ge != RL_OK || we != RL_OK)
            printf("#   framing: got %s, want %s\n", rl_err_text(ge), rl_err_text(we));
        printf("#   %zu events got, %zu wanted; first difference at event %zu\n", g.n, w.n, first);
        show_events("got: ", &g);
        show_events("want:", &w);
    }
    list_free(&g);
    list_free(&w);
}

/* ---- one case ------------------------------------------------------------ */

static const char *str_of(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* What a stream decoder hands on: to the client's encoder. */
typedef struct pipe_ctx {
    const xl_dialect *client;
    void *enc;
    const xl_reply *reply;
    rl_buf *out;
    const xl_dialect *upstream;
    void *dec;
    rl_pool *pool;
    rl_err err;
} pipe_ctx;

static int to_client(void *ctx, const xl_event *ev)
{
    pipe_ctx *p = ctx;
    p->err = p->client->enc_event(p->enc, p->reply, ev, p->out);
    return p->err != RL_OK;
}

static int from_upstream(void *ctx, const char *event, const char *data, size_t len)
{
    pipe_ctx *p = ctx;
    rl_err err = p->upstream->dec_event(p->dec, p->pool, event, data, len, to_client, p);
    if (err != RL_OK && p->err == RL_OK)
        p->err = err;
    return p->err != RL_OK;
}

typedef struct side {
    const char *name;
    const xl_dialect *d;
    const prov_ops *ops;
} side;

/* The stamps the client's answer is written with: the fixture's "reply",
 * the model defaulting to the one the client asked for. */
static xl_reply reply_of(const json_t *c, const xl_request *req, const side *client)
{
    const json_t *r = json_object_get(c, "reply");
    xl_reply reply = {
        .model = str_of(r, "model") ? str_of(r, "model") : req->model,
        .id = str_of(r, "id"),
        .created = json_integer_value(json_object_get(r, "created")),
        .include_usage = json_is_true(json_object_get(r, "include_usage")) || req->include_usage,
        .framing = client->d->stream_framing,
    };
    const char *framing = str_of(r, "framing");
    for (size_t i = 0; framing && i < sizeof framings / sizeof framings[0]; i++)
        if (strcmp(framings[i].name, framing) == 0)
            reply.framing = framings[i].kind;
    return reply;
}

static void run_stream(const json_t *c, const char *file, const char *name, const side *client,
                       const side *upstream, const xl_reply *reply, rl_pool *pool)
{
    const char *bytes = str_of(c, "upstream_stream");
    const char *want = str_of(c, "client_stream");
    rl_buf out;
    rl_buf_init(&out, 0);
    void *dec = rl_palloc(pool, upstream->d->dec_size ? upstream->d->dec_size : 1);
    void *enc = rl_palloc(pool, client->d->enc_size ? client->d->enc_size : 1);
    if (!dec || !enc) {
        ok(0, say(file, name, "stream states allocated"));
        return;
    }
    memset(dec, 0, upstream->d->dec_size ? upstream->d->dec_size : 1);
    memset(enc, 0, client->d->enc_size ? client->d->enc_size : 1);
    pipe_ctx p = {client->d, enc, reply, &out, upstream->d, dec, pool, RL_OK};
    rl_err err = frame_each(upstream->d->stream_framing, bytes, strlen(bytes), from_upstream, &p);
    if (err == RL_STOPPED || err == RL_OK)
        err = p.err;
    if (err == RL_OK)
        err = upstream->d->dec_finish(dec, pool, to_client, &p);
    if (err == RL_OK)
        err = p.err;
    if (client->d->enc_release)
        client->d->enc_release(enc);
    if (!ok(err == RL_OK, say(file, name, "stream translated")))
        printf("#   error: %s\n#   produced so far: %s\n", rl_err_text(err),
               out.data ? out.data : "");
    is_stream(out.data ? out.data : "", out.len, want ? want : "", reply->framing,
              say(file, name, "client stream, event by event"));
    rl_buf_release(&out);
}

static void run_answer(const json_t *c, const char *file, const char *name, const side *client,
                       const side *upstream, const xl_reply *reply, rl_pool *pool)
{
    char *body = json_dumps(json_object_get(c, "upstream_reply"), JSON_COMPACT);
    xl_response resp;
    memset(&resp, 0, sizeof resp);
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err err = upstream->d->decode_response(body, strlen(body), pool, &resp);
    if (ok(err == RL_OK, say(file, name, "upstream reply decoded"))) {
        err = client->d->encode_response(&resp, reply, &out);
        if (!ok(err == RL_OK, say(file, name, "client answer encoded")))
            printf("#   error: %s\n", rl_err_text(err));
        else
            is_json(out.data, out.len, json_object_get(c, "client_answer"),
                    say(file, name, "client answer"));
    } else {
        printf("#   error: %s\n", rl_err_text(err));
    }
    rl_buf_release(&out);
    free(body);
}

static void run_error(const json_t *c, const char *file, const char *name, const side *client,
                      const side *upstream, rl_pool *pool)
{
    char *body = json_dumps(json_object_get(c, "upstream_error"), JSON_COMPACT);
    int status = (int)json_integer_value(json_object_get(c, "upstream_status"));
    xl_error e = {0};
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err err = upstream->d->decode_error(body, strlen(body), pool, &e);
    if (ok(err == RL_OK, say(file, name, "upstream error decoded"))) {
        err = client->ops->error_body(&out, xlate_status_err(status), e.message);
        if (ok(err == RL_OK, say(file, name, "client error written")))
            is_json(out.data, out.len, json_object_get(c, "client_error"),
                    say(file, name, "client error"));
    }
    rl_buf_release(&out);
    free(body);
}

static void run_case(const json_t *c, const char *file, const side *client, const side *upstream)
{
    const char *name = str_of(c, "name") ? str_of(c, "name") : "(unnamed case)";
    rl_pool *pool = rl_pool_new();
    char *body = json_dumps(json_object_get(c, "client_request"), JSON_COMPACT);
    if (!pool || !body)
        abort();
    xl_request req;
    memset(&req, 0, sizeof req);
    rl_buf out, path, why;
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    rl_buf_init(&why, 0);

    /* The request, the way engine/translate.c chains it. */
    rl_err err =
        client->d->decode_request(body, strlen(body), str_of(c, "path_model"), pool, &req, &why);
    /* A Gemini client asks for a stream in its path (:streamGenerateContent),
     * which its body does not say: the caller of decode_request sets it. */
    if (err == RL_OK && json_is_true(json_object_get(c, "path_stream")))
        req.stream = 1;
    if (err == RL_OK)
        err = xlate_check_features(&req, upstream->d, &why);
    if (err == RL_OK)
        err = xlate_pair_tool_results(&req, &why);
    if (err == RL_OK)
        err = upstream->d->encode_request(&req, &out, &path, &why);

    const char *refused = str_of(c, "refused");
    if (refused) {
        const char *reason = why.data ? why.data : "";
        if (!ok(err == RL_BAD_REQUEST && strstr(reason, refused), say(file, name, "refused")))
            printf("#   got:  %s: %s\n#   want: %s naming \"%s\"\n", rl_err_text(err), reason,
                   rl_err_text(RL_BAD_REQUEST), refused);
        goto out;
    }
    if (!ok(err == RL_OK, say(file, name, "request translated"))) {
        printf("#   error: %s: %s\n", rl_err_text(err), why.data ? why.data : "");
        goto out;
    }
    is_str(path.data, str_of(c, "upstream_path"), say(file, name, "upstream path"));
    is_json(out.data, out.len, json_object_get(c, "upstream_request"),
            say(file, name, "upstream request"));

    xl_reply reply = reply_of(c, &req, client);
    if (json_object_get(c, "upstream_reply"))
        run_answer(c, file, name, client, upstream, &reply, pool);
    if (json_object_get(c, "upstream_stream"))
        run_stream(c, file, name, client, upstream, &reply, pool);
    if (json_object_get(c, "upstream_error"))
        run_error(c, file, name, client, upstream, pool);
out:
    rl_buf_release(&out);
    rl_buf_release(&path);
    rl_buf_release(&why);
    free(body);
    rl_pool_free(pool);
}

/* ---- files ------------------------------------------------------------- */

static void run_file(const char *dir, const char *file)
{
    const char *dash = strstr(file, "--");
    const char *dot = strrchr(file, '.');
    int ci = dash ? dialect_index(file, (size_t)(dash - file)) : -1;
    int ui = dash && dot > dash ? dialect_index(dash + 2, (size_t)(dot - dash - 2)) : -1;
    if (!ok(ci >= 0 && ui >= 0 && ci != ui, say(file, "name", "CLIENT--UPSTREAM of two dialects")))
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    json_error_t e;
    json_t *cases = json_load_file(path, 0, &e);
    if (!ok(json_is_array(cases), say(file, "file", "an array of cases"))) {
        printf("#   %s:%d: %s\n", path, e.line, e.text);
        json_decref(cases);
        return;
    }
    side client = {dialects[ci].name, dialects[ci].dialect, dialects[ci].ops};
    side upstream = {dialects[ui].name, dialects[ui].dialect, dialects[ui].ops};
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) run_case(c, file, &client, &upstream);
    json_decref(cases);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    const char *dir = getenv("T_XLATE_FIXTURES") ? getenv("T_XLATE_FIXTURES") : FIXTURE_DIR;
    DIR *d = opendir(dir);
    if (!ok(d != NULL, "the fixture directory opens"))
        return tap_done();
    char *files[256];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < sizeof files / sizeof files[0]) {
        size_t len = strlen(de->d_name);
        if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0)
            files[n++] = strdup(de->d_name);
    }
    closedir(d);
    /* In name order, so the TAP output reads the same on every file system. */
    qsort(files, n, sizeof files[0], by_name);
    ok(n > 0, "fixture files found");
    for (size_t i = 0; i < n; i++) {
        run_file(dir, files[i]);
        free(files[i]);
    }
    return tap_done();
}
