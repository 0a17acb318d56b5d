/*
 * t_engine.c — the request flow (engine/engine.c) in-process: route,
 * credential, key, policy, lookup, upstream call, store, stream relay and
 * errors, with no server, no front and no sleep.
 *
 * Part 1, data-driven as curl's tests are: every case of every file in
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
 * Part 2, what the fixtures cannot express (a fake upstream that fails at a
 * chosen point, a client that leaves): a stream cut mid-way or ended without
 * its terminator (the format's error event, nothing stored), a body cut
 * mid-way (a clean 502, never a truncated 200), a timeout or no connection
 * before the head (504 / 502 in the client's format, nothing stored), a
 * client that leaves mid-answer (the answer is still stored; when it would
 * not be, the upstream call is abandoned), a stream fed one byte at a time.
 *
 * Run from the repository root (tests/run.sh does): the fixtures are read
 * from tests/fixtures/providers.
 */
#include <dirent.h>
#include <jansson.h>
#include <regex.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/config.h"
#include "engine/engine.h"
#include "engine/exchange.h"
#include "engine/upstream.h"
#include "engine/auth.h"
#include "engine/pricing.h"
#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "store/token.h"
#include "tests/unit/tap.h"

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

/* Where every upstream points. Never contacted (the fake answers); should
 * the fake not be installed, libcurl finds nothing listening on loopback's
 * discard port and the checks fail. */
#define FAKE_BASE "http://127.0.0.1:9"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- TAP helpers ------------------------------------------------------- */

/* "label: what", for one TAP point (valid until the next call). */
static const char *point(const char *label, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *point(const char *label, const char *fmt, ...)
{
    static char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s: ", label);
    if (n < 0 || (size_t)n >= sizeof buf)
        return buf;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    return buf;
}

/* Prints up to 240 bytes of p from off on one comment line, escaped. */
static void show_bytes(const char *side, const char *p, size_t len, size_t off)
{
    printf("#   %s (%zu bytes) from byte %zu: \"", side, len, off);
    for (size_t i = off; i < len && i < off + 240; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            printf("\\n");
        else if (c == '\r')
            printf("\\r");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    printf("\"\n");
}

/* One point: got and want are the same bytes; else where they part. */
static void is_bytes(const char *got, size_t glen, const char *want, size_t wlen, const char *what)
{
    if (!got) {
        got = "";
        glen = 0;
    }
    size_t i = 0;
    while (i < glen && i < wlen && got[i] == want[i])
        i++;
    if (ok(glen == wlen && i == glen, what))
        return;
    size_t from = i > 60 ? i - 60 : 0;
    printf("#   first difference at byte %zu\n", i);
    show_bytes("got ", got, glen, from);
    show_bytes("want", want, wlen, from);
}

/* ---- JSON.stringify, as the e2e runner sends a fixture's body ---------- */

static void js_value(rl_buf *out, const json_t *v);

/* A string as JSON.stringify writes it: the two-letter escapes, \u00xx
 * for other control characters, everything else (UTF-8) as is. */
static void js_string(rl_buf *out, const char *s, size_t n)
{
    static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
    rl_buf_puts(out, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = c ? strchr(from, c) : NULL;
        if (e)
            rl_buf_printf(out, "\\%c", to[e - from]);
        else if (c < 0x20)
            rl_buf_printf(out, "\\u%04x", c);
        else
            rl_buf_append(out, &s[i], 1);
    }
    rl_buf_puts(out, "\"");
}

/* A number as JavaScript prints it (Number::toString): the shortest digits
 * that read back as the same double (0.7, not jansson's
 * 0.69999999999999996), in plain notation from 1e-6 to below 1e21. */
static void js_number(rl_buf *out, double v)
{
    if (v == 0) {
        rl_buf_puts(out, "0");
        return;
    }
    char s[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(s, sizeof s, "%.*e", p - 1, v);
        if (strtod(s, NULL) == v)
            break;
    }
    const char *m = s[0] == '-' ? s + 1 : s;
    const char *e = strchr(m, 'e');
    char d[24];
    int k = 0;
    for (const char *c = m; c < e && k < (int)sizeof d - 1; c++)
        if (*c != '.')
            d[k++] = *c;
    while (k > 1 && d[k - 1] == '0')
        k--;
    d[k] = '\0';
    int n = (int)strtol(e + 1, NULL, 10) + 1; /* where the decimal point goes */
    if (s[0] == '-')
        rl_buf_puts(out, "-");
    if (k <= n && n <= 21) {
        rl_buf_puts(out, d);
        for (int z = k; z < n; z++)
            rl_buf_puts(out, "0");
    } else if (n > 0 && n <= 21) {
        rl_buf_printf(out, "%.*s.%s", n, d, d + n);
    } else if (n > -6 && n <= 0) {
        rl_buf_puts(out, "0.");
        for (int z = n; z < 0; z++)
            rl_buf_puts(out, "0");
        rl_buf_puts(out, d);
    } else {
        rl_buf_printf(out, "%c%s%s%s%d", d[0], k > 1 ? "." : "", d + 1, n > 0 ? "e+" : "e", n - 1);
    }
}

static void js_value(rl_buf *out, const json_t *v)
{
    const char *k;
    json_t *item;
    size_t i;
    int first = 1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        rl_buf_puts(out, "{");
        json_object_foreach((json_t *)v, k, item)
        {
            rl_buf_puts(out, first ? "" : ",");
            first = 0;
            js_string(out, k, strlen(k));
            rl_buf_puts(out, ":");
            js_value(out, item);
        }
        rl_buf_puts(out, "}");
        break;
    case JSON_ARRAY:
        rl_buf_puts(out, "[");
        json_array_foreach(v, i, item)
        {
            rl_buf_puts(out, i ? "," : "");
            js_value(out, item);
        }
        rl_buf_puts(out, "]");
        break;
    case JSON_STRING:
        js_string(out, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        rl_buf_printf(out, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        js_number(out, json_real_value(v));
        break;
    case JSON_TRUE:
        rl_buf_puts(out, "true");
        break;
    case JSON_FALSE:
        rl_buf_puts(out, "false");
        break;
    case JSON_NULL:
        rl_buf_puts(out, "null");
        break;
    }
}

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

/* ---- headers as the other side sees them ------------------------------- */

/* Adds name: value to obj, the name lower-cased, a repeated name joined
 * with ", " (as Node's Headers, which the e2e runner reads, does). */
static void headers_add(json_t *obj, const char *name, const char *value)
{
    char lower[256];
    snprintf(lower, sizeof lower, "%s", name);
    for (char *c = lower; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    const char *had = json_string_value(json_object_get(obj, lower));
    if (!had) {
        json_object_set_new(obj, lower, json_string(value));
        return;
    }
    rl_buf joined;
    rl_buf_init(&joined, 0);
    rl_buf_printf(&joined, "%s, %s", had, value);
    json_object_set_new(obj, lower, json_string(joined.data));
    rl_buf_release(&joined);
}

/* ---- the fake client (engine_sink) ------------------------------------- */

typedef struct client {
    int starts;      /* start() calls: exactly one per request */
    int status;      /* of the first start() */
    json_t *headers; /* name -> value, of the first start() */
    rl_buf body;     /* what was written before the client left */
    int fail_write;  /* from this write on (1-based) the client is gone; 0: never */
    int writes;
    int gone;
} client;

static void client_init(client *c, int fail_write)
{
    memset(c, 0, sizeof *c);
    c->headers = json_object();
    rl_buf_init(&c->body, 0);
    c->fail_write = fail_write;
}

static void client_release(client *c)
{
    json_decref(c->headers);
    rl_buf_release(&c->body);
}

static int sink_start(void *ctx, int status, const rl_header *h, size_t n)
{
    client *c = ctx;
    if (c->starts++ == 0) {
        c->status = status;
        for (size_t i = 0; i < n; i++)
            headers_add(c->headers, h[i].name, h[i].value);
    }
    return c->gone ? -1 : 0;
}

static int sink_write(void *ctx, const void *p, size_t n)
{
    client *c = ctx;
    if (c->fail_write && ++c->writes >= c->fail_write)
        c->gone = 1;
    if (c->gone)
        return -1;
    return rl_buf_append(&c->body, p, n) == RL_OK ? 0 : -1;
}

static int sink_flush(void *ctx)
{
    return ((client *)ctx)->gone ? -1 : 0;
}

/* ---- the fake upstream (engine_worker.perform) ------------------------- */

typedef enum {
    FAKE_REPLY,       /* the whole canned reply, then RL_OK */
    FAKE_CUT,         /* the head and cut_after pieces, then RL_UPSTREAM_CUT */
    FAKE_TIMEOUT,     /* RL_UPSTREAM_TIMEOUT before any head */
    FAKE_UNREACHABLE, /* RL_UPSTREAM_UNREACHABLE: no connection */
} fake_mode;

typedef struct fake_upstream {
    /* Set before a request. */
    const json_t *reply; /* {"status","headers","body"}; NULL: no call expected */
    fake_mode mode;
    size_t cut_after; /* FAKE_CUT: pieces sent before the cut */
    int bytewise;     /* each piece one byte per on_data */
    /* What it got (the first call; calls counts them all). */
    int calls;
    char *method, *url;
    json_t *headers;
    rl_buf body;
    size_t pieces; /* pieces the engine took (on_data returned 0) */
    int abandoned; /* a callback returned -1: the engine gave the call up */
} fake_upstream;

static fake_upstream fake;

static void fake_reset(const json_t *reply, fake_mode mode)
{
    free(fake.method);
    free(fake.url);
    json_decref(fake.headers);
    rl_buf_release(&fake.body);
    memset(&fake, 0, sizeof fake);
    rl_buf_init(&fake.body, 0);
    fake.headers = json_object();
    fake.reply = reply;
    fake.mode = mode;
}

static void fake_record(const upstream_request *req)
{
    fake.method = strdup(req->method);
    fake.url = strdup(req->url);
    for (size_t i = 0; i < req->nheaders; i++)
        headers_add(fake.headers, req->headers[i].name, req->headers[i].value);
    if (req->body)
        rl_buf_append(&fake.body, req->body, req->body_len);
}

/* Feeds one piece as upstream_perform would: never an empty on_data. */
static int fake_feed(const upstream_handler *h, const char *p, size_t len)
{
    size_t step = fake.bytewise ? 1 : len;
    for (size_t at = 0; at < len; at += step)
        if (h->on_data(h->ctx, p + at, len - at < step ? len - at : step) != 0)
            return -1;
    return 0;
}

/* upstream_perform's contract, with the canned reply (see fake_mode). */
static rl_err fake_perform(upstream_client *c, const upstream_request *req,
                           const upstream_handler *h, int *got_head)
{
    (void)c;
    *got_head = 0;
    if (fake.calls++ == 0)
        fake_record(req);
    if (!fake.reply || fake.mode == FAKE_UNREACHABLE)
        return RL_UPSTREAM_UNREACHABLE;
    if (fake.mode == FAKE_TIMEOUT)
        return RL_UPSTREAM_TIMEOUT;
    rl_header head[64];
    size_t n = 0;
    const char *name;
    json_t *value;
    json_object_foreach(json_object_get(fake.reply, "headers"), name, value)
    {
        if (n < NELEM(head))
            head[n++] = (rl_header){name, json_string_value(value) ? json_string_value(value) : ""};
    }
    *got_head = 1;
    if (h->on_head(h->ctx, (int)json_integer_value(json_object_get(fake.reply, "status")), head,
                   n) != 0) {
        fake.abandoned = 1;
        return RL_CLIENT_GONE;
    }
    const json_t *body = json_object_get(fake.reply, "body");
    size_t count = json_is_array(body) ? json_array_size(body) : 1;
    for (size_t i = 0; i < count; i++) {
        if (fake.mode == FAKE_CUT && i == fake.cut_after)
            return RL_UPSTREAM_CUT;
        const json_t *piece = json_is_array(body) ? json_array_get(body, i) : body;
        if (fake_feed(h, json_string_value(piece), json_string_length(piece)) != 0) {
            fake.abandoned = 1;
            return RL_CLIENT_GONE;
        }
        fake.pieces++;
    }
    return fake.mode == FAKE_CUT ? RL_UPSTREAM_CUT : RL_OK;
}

/* ---- one engine -------------------------------------------------------- */

typedef struct relay {
    relay_config *cfg;
    engine *e;
    engine_worker *w;
} relay;

/* An ini value as the harness writes it (`${v}`). */
static void ini_value(rl_buf *out, const json_t *v)
{
    if (json_is_string(v))
        rl_buf_puts(out, json_string_value(v));
    else
        js_value(out, v);
}

/*
 * The sections tests/e2e/harness.mjs startRelay writes: [fcgi], [store] in
 * dir, [cache], [upstream.openai], then one [upstream.NAME] per entry of
 * upstreams (a string is a type and its name; an object has name, type,
 * mount, ...), each with base_url pointing at the fake, then ini merged
 * over them section by section. [log] is left out: this test sets its own
 * level.
 */
static json_t *harness_sections(const char *dir, const json_t *upstreams, const json_t *ini)
{
    char sock[256], home[256], key[256];
    snprintf(sock, sizeof sock, "%s/relay.sock", dir);
    snprintf(home, sizeof home, "%s/store", dir);
    snprintf(key, sizeof key, "%s/relay.key", dir);
    json_t *s = json_pack("{s:{s:s,s:i,s:i,s:i,s:i},s:{s:s,s:s},s:{}}", "fcgi", "listen", sock,
                          "workers", 2, "threads", 8, "max_body", 65536, "drain_timeout", 2,
                          "store", "home", home, "key_file", key, "cache");
    json_object_set_new(s, "upstream.openai",
                        json_pack("{s:s,s:s,s:i,s:i,s:i}", "type", "openai", "base_url", FAKE_BASE,
                                  "connect_timeout", 2, "idle_timeout", 5, "timeout", 30));
    size_t i;
    json_t *u;
    json_array_foreach(upstreams, i, u)
    {
        json_t *settings = json_is_string(u) ? json_pack("{s:O}", "type", u) : json_copy(u);
        const char *name = json_is_string(u) ? json_string_value(u)
                                             : json_string_value(json_object_get(u, "name"));
        json_t *section = json_pack("{s:s,s:i,s:i,s:i}", "base_url", FAKE_BASE, "connect_timeout",
                                    2, "idle_timeout", 5, "timeout", 30);
        json_object_del(settings, "name");
        json_object_update(section, settings);
        json_decref(settings);
        char title[256];
        snprintf(title, sizeof title, "upstream.%s", name ? name : "?");
        json_object_set_new(s, title, section);
    }
    const char *title;
    json_t *keys;
    json_object_foreach((json_t *)ini, title, keys)
    {
        if (!json_object_get(s, title))
            json_object_set_new(s, title, json_object());
        json_object_update(json_object_get(s, title), keys);
    }
    return s;
}

/* Writes dir/relay.ini from the harness options and starts an engine on
 * it, its upstream calls going to the fake. 0, or -1 (a failed point). */
static int relay_start(relay *r, const char *dir, const json_t *upstreams, const json_t *ini,
                       const char *label)
{
    memset(r, 0, sizeof *r);
    /* The store's home exists, as after the harness's `relay-admin init`
     * (the engine opens its counters there before the store creates it). */
    char home[256];
    snprintf(home, sizeof home, "%s/store", dir);
    mkdir(dir, 0700);
    mkdir(home, 0700);
    json_t *sections = harness_sections(dir, upstreams, ini);
    rl_buf text, why;
    rl_buf_init(&text, 0);
    rl_buf_init(&why, 0);
    rl_buf_puts(&text, "; written by tests/unit/t_engine.c as tests/e2e/harness.mjs does\n");
    const char *title, *k;
    json_t *keys, *v;
    json_object_foreach(sections, title, keys)
    {
        rl_buf_printf(&text, "\n[%s]\n", title);
        json_object_foreach(keys, k, v)
        {
            if (json_is_null(v))
                continue;
            rl_buf_printf(&text, "%s = ", k);
            ini_value(&text, v);
            rl_buf_puts(&text, "\n");
        }
    }
    json_decref(sections);
    char path[256];
    snprintf(path, sizeof path, "%s/relay.ini", dir);
    FILE *f = fopen(path, "w");
    int wrote = f && rl_buf_error(&text) == RL_OK && fwrite(text.data, 1, text.len, f) == text.len;
    if (f && fclose(f) != 0)
        wrote = 0;
    rl_err err = wrote ? config_load(path, &r->cfg, &why) : RL_IO;
    if (!ok(err == RL_OK, point(label, "relay.ini loads"))) {
        printf("#   %s\n#   ini:\n%s\n", why.data ? why.data : "(not written)", text.data);
        rl_buf_release(&text);
        rl_buf_release(&why);
        return -1;
    }
    rl_buf_release(&text);
    rl_buf_release(&why);
    if (!ok(engine_new(r->cfg, &r->e) == RL_OK && (r->w = engine_worker_new(r->e)) != NULL,
            point(label, "the engine starts")))
        return -1;
    r->w->perform = fake_perform;
    /* Without a store nothing is cached and every HIT step fails: say it
     * once, here. */
    ok(atomic_load(&r->e->store) != NULL, point(label, "its store opens"));
    return 0;
}

static void relay_stop(relay *r)
{
    engine_worker_free(r->w);
    engine_free(r->e);
    if (r->cfg) {
        store_options so;
        config_store_options(r->cfg, &so);
        store_remove(&so); /* its SysV segments outlive the process */
        config_free(r->cfg);
    }
}

/* ---- one request ------------------------------------------------------- */

/* Hands method + target (path and query) + headers (an object of strings)
 * + body to engine_handle as the front would: the path split at '?',
 * header names lower-case, no body for GET and HEAD (fetch sends none),
 * body_too_large past [fcgi] max_body. The answer lands in c. */
static void handle(const relay *r, const char *method, const char *target, const json_t *headers,
                   const char *body, size_t body_len, client *c)
{
    rl_pool *pool = rl_pool_new();
    size_t nh = json_object_size(headers);
    rl_header *h = rl_palloc(pool, (nh ? nh : 1) * sizeof *h);
    size_t plen = strcspn(target, "?");
    engine_request req = {
        .pool = pool,
        .id = "t_engine",
        .method = rl_pstrdup(pool, method),
        .path = rl_pstrndup(pool, target, plen),
        .query = rl_pstrdup(pool, target[plen] ? target + plen + 1 : ""),
        .headers = h,
    };
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)headers, name, value)
    {
        if (!json_is_string(value))
            continue;
        char *lower = rl_pstrdup(pool, name);
        for (char *p = lower; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        h[req.nheaders++] = (rl_header){lower, rl_pstrdup(pool, json_string_value(value))};
    }
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        body_len = 0;
    char *copy = rl_palloc(pool, body_len + 1);
    memcpy(copy, body, body_len);
    copy[body_len] = '\0';
    req.body = copy;
    req.body_len = body_len;
    req.body_too_large = body_len > r->cfg->fcgi.max_body;
    engine_sink sink = {c, sink_start, sink_write, sink_flush, NULL};
    engine_handle(r->w, &req, &sink);
    rl_pool_free(pool);
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

/* ---- part 2: what the fixtures cannot express --------------------------- */

/* What the engine tells a client whose stream was cut (engine.c). */
#define CUT_MESSAGE "The upstream stream ended before it was complete."

/*
 * One wire format for the failure cases: a stream request and a complete
 * stream (its last piece the format's terminator), a non-stream request and
 * a complete body. In the bodies, %s is the case's marker, so that every
 * case has a cache entry of its own.
 */
typedef struct wire {
    const char *name;
    const prov_ops *prov;
    frame_kind framing;
    const char *headers; /* a JSON object */
    const char *stream_target, *stream_body, *stream_type;
    const char *pieces[4];
    size_t npieces;
    const char *plain_target, *plain_body, *plain_reply;
} wire;

/* clang-format off */
static const wire wires[] = {
    {"openai", &prov_openai, FRAME_SSE,
     "{\"authorization\":\"Bearer sk-t-engine\",\"content-type\":\"application/json\"}",
     "/v1/chat/completions",
     "{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"stream\":true}",
     "text/event-stream; charset=utf-8",
     {"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
      "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
      "data: [DONE]\n\n"}, 3,
     "/v1/chat/completions",
     "{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
     "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}"},
    {"anthropic", &prov_anthropic, FRAME_SSE,
     "{\"x-api-key\":\"sk-ant-t-engine\",\"anthropic-version\":\"2023-06-01\",\"content-type\":\"application/json\"}",
     "/v1/messages",
     "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"stream\":true}",
     "text/event-stream; charset=utf-8",
     {"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
      "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
      "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n",
      "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"}, 3,
     "/v1/messages",
     "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
     "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}"},
    {"gemini (SSE)", &prov_gemini, FRAME_SSE,
     "{\"x-goog-api-key\":\"AIza-t-engine\",\"content-type\":\"application/json\"}",
     "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"%s\"}]}],\"generationConfig\":{\"temperature\":0}}",
     "text/event-stream",
     {"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n",
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n",
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 3,\"candidatesTokenCount\": 3,\"totalTokenCount\": 6},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n"}, 3,
     "/v1beta/models/gemini-2.5-flash:generateContent",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"%s\"}]}],\"generationConfig\":{\"temperature\":0}}",
     "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 3,\"candidatesTokenCount\": 3,\"totalTokenCount\": 6},\"modelVersion\": \"gemini-2.5-flash\"}\n"},
    /* A streamed JSON array is whole only with its closing bracket. */
    {"gemini (JSON array)", &prov_gemini, FRAME_JSON_ARRAY,
     "{\"x-goog-api-key\":\"AIza-t-engine\",\"content-type\":\"application/json\"}",
     "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"%s\"}]}],\"generationConfig\":{\"temperature\":0}}",
     "application/json; charset=UTF-8",
     {"[{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}]}\n",
      ",\r\n{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 3,\"candidatesTokenCount\": 2,\"totalTokenCount\": 5}}\n",
      "]"}, 3,
     "/v1beta/models/gemini-2.5-flash:generateContent",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"%s\"}]}],\"generationConfig\":{\"temperature\":0}}",
     "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}]}\n"},
    {"ollama", &prov_ollama, FRAME_NDJSON,
     "{\"content-type\":\"application/json\"}",
     "/api/chat",
     "{\"model\":\"llama3.2\",\"options\":{\"temperature\":0},\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
     "application/x-ndjson",
     {"{\"model\":\"llama3.2\",\"created_at\":\"2025-09-15T08:30:02Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
      "{\"model\":\"llama3.2\",\"created_at\":\"2025-09-15T08:30:03Z\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n",
      "{\"model\":\"llama3.2\",\"created_at\":\"2025-09-15T08:30:04Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":3,\"eval_count\":2}\n"}, 3,
     "/api/chat",
     "{\"model\":\"llama3.2\",\"options\":{\"temperature\":0},\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"stream\":false}",
     "{\"model\":\"llama3.2\",\"created_at\":\"2025-09-15T08:30:04Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":3,\"eval_count\":2}"},
};
/* clang-format on */

/* The first n pieces of a wire's stream, joined. */
static void stream_text(const wire *wi, size_t n, rl_buf *out)
{
    for (size_t i = 0; i < n && i < wi->npieces; i++)
        rl_buf_puts(out, wi->pieces[i]);
}

/* A 200 reply: the first n pieces of the stream, or the whole plain body
 * in two pieces (so that it can be cut in the middle). */
static json_t *wire_reply(const wire *wi, int stream, size_t n)
{
    json_t *body = json_array();
    if (stream) {
        for (size_t i = 0; i < n && i < wi->npieces; i++)
            json_array_append_new(body, json_string(wi->pieces[i]));
    } else {
        size_t half = strlen(wi->plain_reply) / 2;
        json_array_append_new(body, json_stringn(wi->plain_reply, half));
        json_array_append_new(body, json_string(wi->plain_reply + half));
    }
    return json_pack("{s:i,s:{s:s},s:o}", "status", 200, "headers", "content-type",
                     stream ? wi->stream_type : "application/json", "body", body);
}

/* Sends the wire's stream (or plain) request with marker, plus one more
 * header when extra_name is set. The answer lands in c. */
static void wire_send(const relay *r, const wire *wi, int stream, const char *marker,
                      const char *extra_name, const char *extra_value, client *c)
{
    json_t *headers = json_loads(wi->headers, 0, NULL);
    if (extra_name)
        json_object_set_new(headers, extra_name, json_string(extra_value));
    char body[1024];
    snprintf(body, sizeof body, stream ? wi->stream_body : wi->plain_body, marker);
    handle(r, "POST", stream ? wi->stream_target : wi->plain_target, headers, body, strlen(body),
           c);
    json_decref(headers);
}

/* Points for what the client got: status, X-Cache (unless NULL), body. */
static void expect_answer(const char *label, const client *c, int status, const char *xcache,
                          const char *body, size_t len)
{
    is_int(c->starts, 1, point(label, "the status line is committed once"));
    is_int(c->status, status, point(label, "client status"));
    if (xcache)
        is_str(json_string_value(json_object_get(c->headers, "x-cache")), xcache,
               point(label, "client header x-cache"));
    is_bytes(c->body.data, c->body.len, body, len, point(label, "client body"));
}

/* Sends the request again with the whole reply ready: it must reach the
 * upstream (nothing was stored) and be stored then (the next one is a HIT).
 * What a failed first attempt left behind must not matter. */
static void expect_not_stored(const relay *r, const wire *wi, int stream, const char *marker,
                              const char *label)
{
    char l[512];
    rl_buf whole;
    rl_buf_init(&whole, 0);
    if (stream)
        stream_text(wi, wi->npieces, &whole);
    else
        rl_buf_puts(&whole, wi->plain_reply);
    json_t *reply = wire_reply(wi, stream, wi->npieces);
    for (int i = 0; i < 2; i++) {
        snprintf(l, sizeof l, "%s, %s", label, i ? "and once more" : "then the repeat");
        fake_reset(i ? NULL : reply, FAKE_REPLY);
        client c;
        client_init(&c, 0);
        wire_send(r, wi, stream, marker, NULL, NULL, &c);
        is_int(fake.calls, i ? 0 : 1,
               point(l, i ? "answered from the cache" : "calls upstream (nothing was stored)"));
        expect_answer(l, &c, 200, i ? "HIT" : "MISS", whole.data, whole.len);
        client_release(&c);
    }
    json_decref(reply);
    rl_buf_release(&whole);
}

/* A stream cut before its terminator (the connection dropped, or the
 * upstream ended without it): the client has what came, then the format's
 * error event; nothing is stored. */
static void test_stream_cut(const relay *r, const wire *wi, int dropped)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s stream %s", wi->name,
             dropped ? "cut before its terminator (RL_UPSTREAM_CUT)"
                     : "ended without its terminator");
    snprintf(marker, sizeof marker, "t-engine-%s-%s", dropped ? "cut" : "unterminated", wi->name);
    json_t *reply = wire_reply(wi, 1, dropped ? wi->npieces : wi->npieces - 1);
    fake_reset(reply, dropped ? FAKE_CUT : FAKE_REPLY);
    fake.cut_after = wi->npieces - 1;
    client c;
    client_init(&c, 0);
    wire_send(r, wi, 1, marker, NULL, NULL, &c);

    rl_buf want, event;
    rl_buf_init(&want, 0);
    rl_buf_init(&event, 0);
    stream_text(wi, wi->npieces - 1, &want);
    ok(wi->prov->error_event(&event, wi->framing, 1, RL_UPSTREAM_CUT, CUT_MESSAGE) == RL_OK &&
           event.len > 0,
       point(label, "the format has an error event to end a stream with"));
    rl_buf_append(&want, event.data, event.len);
    is_int(fake.calls, 1, point(label, "one upstream call"));
    expect_answer(label, &c, 200, "MISS", want.data, want.len);
    expect_not_stored(r, wi, 1, marker, label);
    client_release(&c);
    rl_buf_release(&want);
    rl_buf_release(&event);
    json_decref(reply);
}

/* A body cut in the middle: nothing was sent yet, so the client gets a
 * clean 502 in its format, never a truncated 200; nothing is stored. */
static void test_body_cut(const relay *r, const wire *wi)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s body cut in the middle (RL_UPSTREAM_CUT)", wi->name);
    snprintf(marker, sizeof marker, "t-engine-body-cut-%s", wi->name);
    json_t *reply = wire_reply(wi, 0, 0);
    fake_reset(reply, FAKE_CUT);
    fake.cut_after = 1;
    client c;
    client_init(&c, 0);
    wire_send(r, wi, 0, marker, NULL, NULL, &c);
    rl_buf want;
    rl_buf_init(&want, 0);
    wi->prov->error_body(&want, RL_UPSTREAM_CUT, NULL);
    is_int(fake.calls, 1, point(label, "one upstream call"));
    expect_answer(label, &c, 502, NULL, want.data ? want.data : "", want.len);
    is_str(json_string_value(json_object_get(c.headers, "content-type")), "application/json",
           point(label, "client header content-type"));
    expect_not_stored(r, wi, 0, marker, label);
    client_release(&c);
    rl_buf_release(&want);
    json_decref(reply);
}

/* No head at all: a timeout (504) or no connection (502), as a whole error
 * document in the client's format even for a stream request (nothing was
 * sent); nothing is stored, the repeat calls upstream. */
static void test_no_head(const relay *r, const wire *wi, int stream, fake_mode mode)
{
    rl_err err = mode == FAKE_TIMEOUT ? RL_UPSTREAM_TIMEOUT : RL_UPSTREAM_UNREACHABLE;
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s %s request, upstream %s before its head", wi->name,
             stream ? "stream" : "non-stream", mode == FAKE_TIMEOUT ? "times out" : "unreachable");
    snprintf(marker, sizeof marker, "t-engine-%s-%s-%s", rl_err_text(err),
             stream ? "stream" : "plain", wi->name);
    json_t *reply = wire_reply(wi, stream, wi->npieces);
    fake_reset(reply, mode);
    client c;
    client_init(&c, 0);
    wire_send(r, wi, stream, marker, NULL, NULL, &c);
    rl_buf want;
    rl_buf_init(&want, 0);
    wi->prov->error_body(&want, err, NULL);
    is_int(fake.calls, 1, point(label, "one upstream call"));
    expect_answer(label, &c, mode == FAKE_TIMEOUT ? 504 : 502, NULL, want.data ? want.data : "",
                  want.len);
    is_str(json_string_value(json_object_get(c.headers, "content-type")), "application/json",
           point(label, "client header content-type"));
    expect_not_stored(r, wi, stream, marker, label);
    client_release(&c);
    rl_buf_release(&want);
    json_decref(reply);
}

/* The client leaves mid-answer (its sink write fails). A cacheable answer
 * is still fetched whole and stored (its tokens are paid for either way).
 * A stream that would not be stored (Cache-Control: no-store) is given up
 * at once, so the upstream stops generating; a body is only written once
 * it is whole, so its client's leaving is seen too late to save anything. */
static void test_client_leaves(const relay *r, const wire *wi, int stream, int cacheable)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s %s, the client leaves at its %s write%s", wi->name,
             stream ? "stream" : "body", stream ? "second" : "first",
             cacheable ? "" : " (no-store)");
    snprintf(marker, sizeof marker, "t-engine-leaves-%s-%s-%s", stream ? "stream" : "plain",
             cacheable ? "cached" : "no-store", wi->name);
    json_t *reply = wire_reply(wi, stream, wi->npieces);
    fake_reset(reply, FAKE_REPLY);
    client c;
    client_init(&c, stream ? 2 : 1);
    wire_send(r, wi, stream, marker, cacheable ? NULL : "cache-control",
              cacheable ? NULL : "no-store", &c);
    size_t count = json_array_size(json_object_get(reply, "body"));
    is_int(fake.calls, 1, point(label, "one upstream call"));
    rl_buf want;
    rl_buf_init(&want, 0);
    if (stream)
        stream_text(wi, 1, &want);
    is_bytes(c.body.data, c.body.len, want.data ? want.data : "", want.len,
             point(label, "the client got what was written before it left"));
    int given_up = stream && !cacheable;
    if (!ok(fake.abandoned == given_up && (given_up ? fake.pieces < count : fake.pieces == count),
            point(label, given_up ? "the upstream call is given up when the client leaves"
                                  : "the upstream answer is read to its end")))
        printf("#   the engine took %zu of %zu pieces%s\n", fake.pieces, count,
               fake.abandoned ? " and gave the call up" : "");
    if (!cacheable) {
        expect_not_stored(r, wi, stream, marker, label);
    } else {
        char l[300];
        snprintf(l, sizeof l, "%s, then the repeat", label);
        rl_buf_reset(&want);
        if (stream)
            stream_text(wi, wi->npieces, &want);
        else
            rl_buf_puts(&want, wi->plain_reply);
        fake_reset(NULL, FAKE_REPLY);
        client_release(&c);
        client_init(&c, 0);
        wire_send(r, wi, stream, marker, NULL, NULL, &c);
        is_int(fake.calls, 0, point(l, "answered from the cache (it was stored)"));
        expect_answer(l, &c, 200, "HIT", want.data, want.len);
    }
    client_release(&c);
    rl_buf_release(&want);
    json_decref(reply);
}

/* A stream that arrives one byte per on_data (events split anywhere): the
 * client gets the same bytes, and the same is stored. */
static void test_bytewise(const relay *r, const wire *wi)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s stream fed one byte at a time", wi->name);
    snprintf(marker, sizeof marker, "t-engine-bytewise-%s", wi->name);
    json_t *reply = wire_reply(wi, 1, wi->npieces);
    fake_reset(reply, FAKE_REPLY);
    fake.bytewise = 1;
    client c;
    client_init(&c, 0);
    wire_send(r, wi, 1, marker, NULL, NULL, &c);
    rl_buf want;
    rl_buf_init(&want, 0);
    stream_text(wi, wi->npieces, &want);
    is_int(fake.calls, 1, point(label, "one upstream call"));
    expect_answer(label, &c, 200, "MISS", want.data, want.len);
    client_release(&c);

    char l[300];
    snprintf(l, sizeof l, "%s, then the repeat", label);
    fake_reset(NULL, FAKE_REPLY);
    client_init(&c, 0);
    wire_send(r, wi, 1, marker, NULL, NULL, &c);
    is_int(fake.calls, 0, point(l, "answered from the cache"));
    expect_answer(l, &c, 200, "HIT", want.data, want.len);
    client_release(&c);
    rl_buf_release(&want);
    json_decref(reply);
}

static void run_failures(const char *tmp)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/failures", tmp);
    json_t *upstreams = json_pack("[s,s,s]", "anthropic", "gemini", "ollama");
    relay r;
    if (relay_start(&r, dir, upstreams, NULL, "in-process failure cases") == 0) {
        for (size_t i = 0; i < NELEM(wires); i++) {
            const wire *wi = &wires[i];
            test_stream_cut(&r, wi, 1);
            test_stream_cut(&r, wi, 0);
            test_body_cut(&r, wi);
            for (int stream = 0; stream <= 1; stream++) {
                test_no_head(&r, wi, stream, FAKE_TIMEOUT);
                test_no_head(&r, wi, stream, FAKE_UNREACHABLE);
                test_client_leaves(&r, wi, stream, 1);
                test_client_leaves(&r, wi, stream, 0);
            }
            test_bytewise(&r, wi);
        }
    }
    relay_stop(&r);
    json_decref(upstreams);
}

/* ---- part 4: what a hit accounts (engine/entry.h's stored usage) -------- */

/* The sum of a /relay/metrics family's samples whose line holds match
 * (e.g. kind="input"; NULL: every sample). */
static double metric_sum(const relay *r, const char *family, const char *match)
{
    client c;
    client_init(&c, 0);
    json_t *headers = json_object();
    handle(r, "GET", "/relay/metrics", headers, "", 0, &c);
    json_decref(headers);
    double sum = 0;
    size_t flen = strlen(family);
    const char *line = c.body.data ? c.body.data : "";
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n > flen && strncmp(line, family, flen) == 0 && line[flen] == '{' &&
            (!match || memmem(line, n, match, strlen(match)))) {
            const char *sp = memrchr(line, ' ', n);
            if (sp)
                sum += strtod(sp + 1, NULL);
        }
        line += n + (end != NULL);
    }
    client_release(&c);
    return sum;
}

typedef struct saved {
    double in, out, usd;
} saved;

static saved saved_now(const relay *r)
{
    saved s = {metric_sum(r, "relay_tokens_saved_total", "kind=\"input\""),
               metric_sum(r, "relay_tokens_saved_total", "kind=\"output\""),
               metric_sum(r, "relay_saved_usd_total", NULL)};
    return s;
}

/* Sends the request once more (the fake must not be called) and checks
 * that the HIT answers want and saves what usage u says, at the model's
 * price. */
static void expect_hit_saves(const relay *r, const wire *wi, int stream, const char *marker,
                             const rl_buf *want, const prov_usage *u, const char *label)
{
    saved before = saved_now(r);
    fake_reset(NULL, FAKE_REPLY);
    client c;
    client_init(&c, 0);
    wire_send(r, wi, stream, marker, NULL, NULL, &c);
    is_int(fake.calls, 0, point(label, "answered from the cache"));
    expect_answer(label, &c, 200, "HIT", want->data, want->len);
    client_release(&c);
    saved after = saved_now(r);
    double in = u->input > 0 ? (double)u->input : 0, out = u->output > 0 ? (double)u->output : 0;
    is_int((long long)(after.in - before.in), (long long)in, point(label, "input tokens saved"));
    is_int((long long)(after.out - before.out), (long long)out,
           point(label, "output tokens saved"));
    char model[128];
    const char *m = strstr(wi->plain_body, "\"model\":\"");
    snprintf(model, sizeof model, "%.*s", m ? (int)strcspn(m + 9, "\"") : 0, m ? m + 9 : "");
    if (!m) /* Gemini: the model is in the path */
        snprintf(model, sizeof model, "gemini-2.5-flash");
    const model_price *price = pricing_find(r->cfg, model);
    double usd = price ? (double)pricing_cost(price, u) / 1e9 : 0;
    double d = after.usd - before.usd - usd;
    if (!ok(d < 1e-9 && d > -1e-9, point(label, "USD saved (%s)", model)))
        printf("#   got:  %.12g\n#   want: %.12g\n", after.usd - before.usd, usd);
}

/* The entry in the version 2 layout (entry.h): as a Relay before stored
 * usage wrote it. */
static void encode_v2(const entry_view *v, rl_buf *out)
{
    const char *strings[] = {v->content_type, v->upstream, v->model, v->ns};
    unsigned char kind = (unsigned char)v->kind;
    rl_buf_append(out, "RLE2", 4);
    rl_buf_append(out, &kind, 1);
    for (size_t i = 0; i < NELEM(strings); i++) {
        unsigned char n = (unsigned char)strlen(strings[i]);
        rl_buf_append(out, &n, 1);
        rl_buf_append(out, strings[i], n);
    }
    rl_buf_append(out, v->body, v->body_len);
}

/*
 * A stored answer carries the usage read when it was stored, and a hit
 * accounts exactly what parsing the stored answer gives (what every hit did
 * before): tokens and USD saved. An entry in the layout before that
 * (version 2, no usage) is still served, byte for byte, and its usage is
 * read from the answer as before.
 */
static void test_hit_usage(const relay *r, const wire *wi, int stream)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s %s hit usage", wi->name, stream ? "stream" : "body");
    snprintf(marker, sizeof marker, "t-engine-hit-usage-%s-%d", wi->name, stream);
    rl_buf want;
    rl_buf_init(&want, 0);
    if (stream)
        stream_text(wi, wi->npieces, &want);
    else
        rl_buf_puts(&want, wi->plain_reply);
    /* What the hit accounted before usage was stored (try_cache). */
    prov_usage u;
    wi->prov->usage(stream ? ENTRY_STREAM : ENTRY_BODY, stream ? wi->framing : FRAME_SSE, want.data,
                    want.len, &u);

    json_t *reply = wire_reply(wi, stream, wi->npieces);
    fake_reset(reply, FAKE_REPLY);
    client c;
    client_init(&c, 0);
    wire_send(r, wi, stream, marker, NULL, NULL, &c);
    expect_answer(label, &c, 200, "MISS", want.data, want.len);
    const char *key_hex = json_string_value(json_object_get(c.headers, "x-relay-key"));
    uint8_t prefix[8], key[STORE_KEY_LEN];
    unsigned matches = 0;
    store *s = atomic_load(&r->e->store);
    ok(key_hex && rl_hex_decode(key_hex, 16, prefix) == 0 &&
           store_cache_find(s, prefix, 16, key, &matches) == RL_OK && matches == 1,
       point(label, "the entry is found by its X-Relay-Key"));
    client_release(&c);
    json_decref(reply);

    rl_buf value, old;
    rl_buf_init(&value, 0);
    rl_buf_init(&old, 0);
    store_meta meta;
    entry_view v;
    int found = store_cache_get(s, key, &meta, &value) == RL_OK &&
                entry_decode(value.data, value.len, &v) == RL_OK;
    ok(found, point(label, "the stored entry decodes"));
    if (found) {
        is_int(v.version, 3, point(label, "stored as version 3"));
        ok(v.has_usage, point(label, "with its usage"));
        if (!ok(v.usage.input == u.input && v.usage.output == u.output &&
                    v.usage.cached_input == u.cached_input && v.usage.cache_write == u.cache_write,
                point(label, "the stored usage is what the answer says")))
            printf("#   stored %lld/%lld/%lld/%lld, from the answer %lld/%lld/%lld/%lld\n",
                   (long long)v.usage.input, (long long)v.usage.output,
                   (long long)v.usage.cached_input, (long long)v.usage.cache_write,
                   (long long)u.input, (long long)u.output, (long long)u.cached_input,
                   (long long)u.cache_write);
        encode_v2(&v, &old);
    }
    expect_hit_saves(r, wi, stream, marker, &want, &u, label);

    /* The same answer as a Relay before this one stored it. */
    snprintf(label, sizeof label, "%s %s hit on a version 2 entry", wi->name,
             stream ? "stream" : "body");
    if (found)
        ok(rl_buf_error(&old) == RL_OK &&
               store_cache_put(s, key, &meta, old.data, old.len) == RL_OK,
           point(label, "rewritten"));
    expect_hit_saves(r, wi, stream, marker, &want, &u, label);
    rl_buf_release(&value);
    rl_buf_release(&old);
    rl_buf_release(&want);
}

static void run_hit_usage(const char *tmp)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/hit-usage", tmp);
    json_t *upstreams = json_pack("[s,s,s]", "anthropic", "gemini", "ollama");
    json_t *ini = json_pack("{s:{s:s}}", "metrics", "access", "open");
    relay r;
    if (relay_start(&r, dir, upstreams, ini, "hit usage") == 0)
        for (size_t i = 0; i < NELEM(wires); i++)
            for (int stream = 0; stream <= 1; stream++)
                test_hit_usage(&r, &wires[i], stream);
    relay_stop(&r);
    json_decref(upstreams);
    json_decref(ini);
}

/* ---- part 3: Relay client tokens, held keys, budgets (engine/spend.c) ---- */

/* A token in the relay's store, as relay-admin token create makes one:
 * its text in text, its record set up by the caller through t. */
static void token_make(char text[AUTH_TOKEN_LEN + 1], store_token *t, const char *name)
{
    memset(t, 0, sizeof *t);
    if (auth_token_new(text) != RL_OK)
        abort();
    auth_token_hash(text, t->hash);
    store_token_id_of(t->hash, t->id);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->created = (uint64_t)time(NULL) - 10;
}

static void token_put(const relay *r, const store_token *t)
{
    is_int(store_token_put(atomic_load(&r->e->store), t, TOKEN_CREATE), RL_OK,
           point(t->name, "the token is stored"));
}

/* Sends wire wi's plain request with the token in the header that format
 * puts keys in (or in ?key= for Gemini when in_query). */
static void token_send(const relay *r, const wire *wi, const char *token, const char *marker,
                       int in_query, client *c)
{
    json_t *headers = json_loads(wi->headers, 0, NULL);
    json_object_del(headers, "authorization");
    json_object_del(headers, "x-api-key");
    json_object_del(headers, "x-goog-api-key");
    char value[AUTH_TOKEN_LEN + 16], target[512];
    snprintf(target, sizeof target, "%s", wi->plain_target);
    if (wi->prov == &prov_openai || wi->prov == &prov_ollama) {
        snprintf(value, sizeof value, "Bearer %s", token);
        json_object_set_new(headers, "authorization", json_string(value));
    } else if (wi->prov == &prov_anthropic) {
        json_object_set_new(headers, "x-api-key", json_string(token));
    } else if (in_query) {
        snprintf(target, sizeof target, "%s?alt=json&key=%s", wi->plain_target, token);
    } else {
        json_object_set_new(headers, "x-goog-api-key", json_string(token));
    }
    char body[1024];
    snprintf(body, sizeof body, wi->plain_body, marker);
    handle(r, "POST", target, headers, body, strlen(body), c);
    json_decref(headers);
}

/* No byte of the client's token in what went upstream. */
static void expect_no_token_upstream(const char *label, const char *token)
{
    ok(fake.url && !strstr(fake.url, token), point(label, "the token is not in the upstream URL"));
    const char *name;
    json_t *v;
    int leaked = 0;
    json_object_foreach(fake.headers, name, v) leaked |=
        strstr(json_string_value(v), token) != NULL;
    ok(!leaked, point(label, "nor in any upstream header"));
}

static void test_held_keys(const relay *r)
{
    store_token t;
    char text[AUTH_TOKEN_LEN + 1];
    token_make(text, &t, "held-keys");
    token_put(r, &t);
    static const struct {
        size_t wire;
        int in_query;
        const char *header, *value;
    } cases[] = {
        {0, 0, "authorization", "Bearer sk-held-openai"},
        {1, 0, "x-api-key", "sk-held-anthropic"},
        {2, 0, "x-goog-api-key", "AIza-held-gemini"},
        {2, 1, "x-goog-api-key", "AIza-held-gemini"},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        const wire *wi = &wires[cases[i].wire];
        char label[128], marker[64];
        snprintf(label, sizeof label, "token on %s%s", wi->name,
                 cases[i].in_query ? " (?key=)" : "");
        snprintf(marker, sizeof marker, "held-%zu", i);
        json_t *reply = wire_reply(wi, 0, 2);
        fake_reset(reply, FAKE_REPLY);
        client c;
        client_init(&c, 0);
        token_send(r, wi, text, marker, cases[i].in_query, &c);
        is_int(c.status, 200, point(label, "served"));
        is_int(fake.calls, 1, point(label, "one upstream call"));
        is_str(json_string_value(json_object_get(fake.headers, cases[i].header)), cases[i].value,
               point(label, "the held key goes upstream in the provider's header"));
        expect_no_token_upstream(label, text);
        client_release(&c);
        json_decref(reply);
    }
    /* The cache is the token's: the same request with the same token is a
     * HIT; with the held key's owner's own key it is another entry. */
    fake_reset(NULL, FAKE_REPLY);
    client c;
    client_init(&c, 0);
    token_send(r, &wires[0], text, "held-0", 0, &c);
    is_str(json_string_value(json_object_get(c.headers, "x-cache")), "HIT",
           point("token, again", "answered from the token's cache"));
    client_release(&c);
    client_init(&c, 0);
    wire_send(r, &wires[0], 0, "held-0", "authorization", "Bearer sk-held-openai", &c);
    is_int(fake.calls, 1, point("the held key itself", "is another scope: a call upstream"));
    client_release(&c);
}

static void test_token_refusals(const relay *r)
{
    uint64_t now = (uint64_t)time(NULL);
    static const struct {
        const char *name;
        int stored, revoked, expired, upstream_list, model_list;
        int status;
    } cases[] = {
        {"unknown token", 0, 0, 0, 0, 0, 401},
        {"revoked token", 1, 1, 0, 0, 0, 401},
        {"expired token", 1, 0, 1, 0, 0, 401},
        {"token for another upstream", 1, 0, 0, 1, 0, 403},
        {"token for other models", 1, 0, 0, 0, 1, 403},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        store_token t;
        char text[AUTH_TOKEN_LEN + 1];
        token_make(text, &t, cases[i].name);
        if (cases[i].revoked)
            t.revoked = now - 1;
        if (cases[i].expired)
            t.expires = now - 1;
        if (cases[i].upstream_list) {
            t.n_upstreams = 1;
            snprintf(t.upstreams[0], sizeof t.upstreams[0], "anthropic");
        }
        if (cases[i].model_list) {
            t.n_models = 1;
            snprintf(t.models[0], sizeof t.models[0], "gpt-4.1*");
        }
        if (cases[i].stored)
            token_put(r, &t);
        fake_reset(NULL, FAKE_REPLY);
        client c;
        client_init(&c, 0);
        token_send(r, &wires[0], text, cases[i].name, 0, &c);
        is_int(c.status, cases[i].status, point(cases[i].name, "refused"));
        is_int(fake.calls, 0, point(cases[i].name, "nothing upstream"));
        json_t *doc = json_loadb(c.body.data ? c.body.data : "", c.body.len, 0, NULL);
        ok(json_is_object(json_object_get(doc, "error")),
           point(cases[i].name, "in OpenAI's shape"));
        json_decref(doc);
        client_release(&c);
    }
}

/* A rate limit of 2 requests a minute: a third upstream call is 429 with
 * Retry-After; answers from the cache count nothing. */
static void test_rate_limit(const relay *r)
{
    store_token t;
    char text[AUTH_TOKEN_LEN + 1];
    token_make(text, &t, "rpm-2");
    t.rpm = 2;
    t.tokens_day = 1000000;
    token_put(r, &t);
    json_t *reply = wire_reply(&wires[0], 0, 2);
    const char *markers[] = {"rpm-a", "rpm-a", "rpm-a", "rpm-b", "rpm-c"};
    const int want[] = {200, 200, 200, 200, 429};
    const int calls[] = {1, 0, 0, 1, 0};
    for (size_t i = 0; i < NELEM(markers); i++) {
        char label[64];
        snprintf(label, sizeof label, "rpm 2, request %zu (%s)", i + 1, markers[i]);
        fake_reset(reply, FAKE_REPLY);
        client c;
        client_init(&c, 0);
        token_send(r, &wires[0], text, markers[i], 0, &c);
        is_int(c.status, want[i], point(label, "status"));
        is_int(fake.calls, calls[i], point(label, "upstream calls"));
        const char *ra = json_string_value(json_object_get(c.headers, "retry-after"));
        const char *left =
            json_string_value(json_object_get(c.headers, "x-relay-budget-remaining"));
        if (want[i] == 429) {
            long wait = ra ? strtol(ra, NULL, 10) : 0;
            ok(wait >= 1 && wait <= 60, point(label, "Retry-After within the minute"));
            ok(c.body.data && strstr(c.body.data, "rpm-2") && strstr(c.body.data, "requests"),
               point(label, "the message names the token and the limit"));
        } else if (calls[i]) {
            ok(left && strncmp(left, "tokens=", 7) == 0,
               point(label, "X-Relay-Budget-Remaining on an answer a budget applies to"));
        }
        client_release(&c);
    }
    json_decref(reply);
}

static void run_spend(const char *tmp)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/spend", tmp);
    setenv("T_ENGINE_OPENAI_KEY", "sk-held-openai", 1);
    setenv("T_ENGINE_ANTHROPIC_KEY", "sk-held-anthropic", 1);
    setenv("T_ENGINE_GEMINI_KEY", "AIza-held-gemini", 1);
    json_t *upstreams = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "name", "anthropic", "type",
                                  "anthropic", "api_key_env", "T_ENGINE_ANTHROPIC_KEY", "name",
                                  "gemini", "type", "gemini", "api_key_env", "T_ENGINE_GEMINI_KEY");
    json_t *ini = json_pack("{s:{s:s}}", "upstream.openai", "api_key_env", "T_ENGINE_OPENAI_KEY");
    relay r;
    if (relay_start(&r, dir, upstreams, ini, "tokens and budgets") == 0) {
        test_held_keys(&r);
        test_token_refusals(&r);
        test_rate_limit(&r);
    }
    relay_stop(&r);
    json_decref(upstreams);
    json_decref(ini);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    rl_log_set_level(RL_LOG_ERROR);
    char tmp[] = "/tmp/t_engine.XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_js_stringify();
    json_t *cases = json_array();
    load_fixtures(cases);
    run_fixtures(tmp, cases);
    json_decref(cases);
    run_failures(tmp);
    run_hit_usage(tmp);
    run_spend(tmp);
    fake_reset(NULL, FAKE_REPLY);
    json_decref(fake.headers);
    rl_buf_release(&fake.body);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
