/*
 * engine_harness.h — the in-process harness of the t_engine* tests: one
 * engine (engine/engine.c) on a relay.ini written as tests/e2e/harness.mjs
 * writes it and a real store in a temp dir, with no server, no front and
 * no sleep. A fake upstream (engine_worker.perform) records the request it
 * gets and replays a canned reply one piece per on_data, or fails at a
 * chosen point (fake_mode); a fake client (engine_sink) records what the
 * client gets, or leaves at a chosen write. handle() hands a request to
 * engine_handle as a front would.
 *
 * One TAP point per checked thing (tap.h), named "label: what" (point()).
 * Static functions for the test binaries that include it; one global fake
 * upstream per binary (fake), so one request at a time.
 */
#ifndef RELAY_TESTS_UNIT_ENGINE_HARNESS_H
#define RELAY_TESTS_UNIT_ENGINE_HARNESS_H

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/config.h"
#include "engine/engine.h"
#include "engine/exchange.h"
#include "engine/upstream.h"
#include "store/base/rl_log.h"
#include "tests/unit/tap.h"

/* Where every upstream points. Never contacted (the fake answers); should
 * the fake not be installed, libcurl finds nothing listening on loopback's
 * discard port and the checks fail. */
#define FAKE_BASE "http://127.0.0.1:9"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- TAP helpers ------------------------------------------------------- */

/* "label: what", for one TAP point (valid until the next call). */
static inline const char *point(const char *label, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline const char *point(const char *label, const char *fmt, ...)
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
static inline void show_bytes(const char *side, const char *p, size_t len, size_t off)
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
static inline void is_bytes(const char *got, size_t glen, const char *want, size_t wlen,
                            const char *what)
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

static inline void js_value(rl_buf *out, const json_t *v);

/* A string as JSON.stringify writes it: the two-letter escapes, \u00xx
 * for other control characters, everything else (UTF-8) as is. */
static inline void js_string(rl_buf *out, const char *s, size_t n)
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
static inline void js_number(rl_buf *out, double v)
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

static inline void js_value(rl_buf *out, const json_t *v)
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

/* ---- headers as the other side sees them ------------------------------- */

/* Adds name: value to obj, the name lower-cased, a repeated name joined
 * with ", " (as Node's Headers, which the e2e runner reads, does). */
static inline void headers_add(json_t *obj, const char *name, const char *value)
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

static inline void client_init(client *c, int fail_write)
{
    memset(c, 0, sizeof *c);
    c->headers = json_object();
    rl_buf_init(&c->body, 0);
    c->fail_write = fail_write;
}

static inline void client_release(client *c)
{
    json_decref(c->headers);
    rl_buf_release(&c->body);
}

static inline int sink_start(void *ctx, int status, const rl_header *h, size_t n)
{
    client *c = ctx;
    if (c->starts++ == 0) {
        c->status = status;
        for (size_t i = 0; i < n; i++)
            headers_add(c->headers, h[i].name, h[i].value);
    }
    return c->gone ? -1 : 0;
}

static inline int sink_write(void *ctx, const void *p, size_t n)
{
    client *c = ctx;
    if (c->fail_write && ++c->writes >= c->fail_write)
        c->gone = 1;
    if (c->gone)
        return -1;
    return rl_buf_append(&c->body, p, n) == RL_OK ? 0 : -1;
}

static inline int sink_flush(void *ctx)
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

static inline void fake_reset(const json_t *reply, fake_mode mode)
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

static inline void fake_record(const upstream_request *req)
{
    fake.method = strdup(req->method);
    fake.url = strdup(req->url);
    for (size_t i = 0; i < req->nheaders; i++)
        headers_add(fake.headers, req->headers[i].name, req->headers[i].value);
    if (req->body)
        rl_buf_append(&fake.body, req->body, req->body_len);
}

/* Feeds one piece as upstream_perform would: never an empty on_data. */
static inline int fake_feed(const upstream_handler *h, const char *p, size_t len)
{
    size_t step = fake.bytewise ? 1 : len;
    for (size_t at = 0; at < len; at += step)
        if (h->on_data(h->ctx, p + at, len - at < step ? len - at : step) != 0)
            return -1;
    return 0;
}

/* upstream_perform's contract, with the canned reply (see fake_mode). */
static inline rl_err fake_perform(upstream_client *c, const upstream_request *req,
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
static inline void ini_value(rl_buf *out, const json_t *v)
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
 * level. The breaker is off (breaker_failures = 0), as there: the cases
 * fail one after another on one engine.
 */
static inline json_t *harness_sections(const char *dir, const json_t *upstreams, const json_t *ini)
{
    char sock[256], home[256], key[256];
    snprintf(sock, sizeof sock, "%s/relay.sock", dir);
    snprintf(home, sizeof home, "%s/store", dir);
    snprintf(key, sizeof key, "%s/relay.key", dir);
    json_t *s = json_pack("{s:{s:s,s:i,s:i,s:i,s:i},s:{s:s,s:s},s:{}}", "fcgi", "listen", sock,
                          "workers", 2, "threads", 8, "max_body", 65536, "drain_timeout", 2,
                          "store", "home", home, "key_file", key, "cache");
    /* retries = 0 as harness.mjs writes it: the fixtures count one call per
     * failed answer; t_retry.c turns retries on. */
    json_object_set_new(s, "upstream.openai",
                        json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i}", "type", "openai", "base_url",
                                  FAKE_BASE, "connect_timeout", 2, "idle_timeout", 5, "timeout", 30,
                                  "retries", 0, "breaker_failures", 0));
    size_t i;
    json_t *u;
    json_array_foreach(upstreams, i, u)
    {
        json_t *settings = json_is_string(u) ? json_pack("{s:O}", "type", u) : json_copy(u);
        const char *name = json_is_string(u) ? json_string_value(u)
                                             : json_string_value(json_object_get(u, "name"));
        json_t *section =
            json_pack("{s:s,s:i,s:i,s:i,s:i,s:i}", "base_url", FAKE_BASE, "connect_timeout", 2,
                      "idle_timeout", 5, "timeout", 30, "retries", 0, "breaker_failures", 0);
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
static inline int relay_start(relay *r, const char *dir, const json_t *upstreams, const json_t *ini,
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

static inline void relay_stop(relay *r)
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
static inline void handle(const relay *r, const char *method, const char *target,
                          const json_t *headers, const char *body, size_t body_len, client *c)
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
    engine_sink sink = {c, sink_start, sink_write, sink_flush, NULL, NULL};
    engine_handle(r->w, &req, &sink);
    rl_pool_free(pool);
}

/* ---- a test binary's start and end ------------------------------------- */

/* Line-buffered TAP, only errors logged, and a temp dir made from tmp (a
 * mkdtemp template, rewritten in place). 0, or -1 (said on stderr). */
static inline int harness_begin(char *tmp)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    rl_log_set_level(RL_LOG_ERROR);
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* Frees what the fake upstream holds and removes tmp. tap_done()'s exit status. */
static inline int harness_end(const char *tmp)
{
    fake_reset(NULL, FAKE_REPLY);
    json_decref(fake.headers);
    rl_buf_release(&fake.body);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}

#endif
