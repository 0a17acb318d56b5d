/* alias.c — other gateways' cache controls mapped onto Relay's (see alias.h). */
#include "engine/alias.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "engine/prov_json.h"

/* ---- LiteLLM's body field ---------------------------------------------- */

static size_t skip_ws(const char *p, size_t i, size_t len)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* The index just past the string whose opening quote is at p[i], or len
 * when it is not closed. A quote is escaped when an odd number of
 * backslashes precede it. */
static size_t skip_string(const char *p, size_t i, size_t len)
{
    for (;;) {
        const char *q = memchr(p + i + 1, '"', len - i - 1);
        if (!q)
            return len;
        i = (size_t)(q - p);
        size_t slashes = 0;
        while (p[i - 1 - slashes] == '\\')
            slashes++;
        if (slashes % 2 == 0)
            return i + 1;
    }
}

/* The index just past the JSON value starting at p[i] (its validity is the
 * parser's business: this only finds where it ends), or len. */
static size_t skip_value(const char *p, size_t i, size_t len)
{
    int depth = 0;
    while (i < len) {
        char c = p[i];
        if (c == '"') {
            i = skip_string(p, i, len);
            if (depth == 0)
                return i;
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* a scalar ended by its container */
            if (--depth == 0)
                return i + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'))
            return i;
        i++;
    }
    return len;
}

/* A top-level member: key (quotes included) and value spans. */
typedef struct member {
    size_t start, key_end, value, end;
} member;

/* Calls fn for each top-level member of the object in p[0..len); 0, or -1
 * when p is not an object this scan can walk (left to the parser). */
static int each_member(const char *p, size_t len, int (*fn)(void *, const member *), void *ctx)
{
    size_t i = skip_ws(p, 0, len);
    if (i >= len || p[i] != '{')
        return -1;
    i = skip_ws(p, i + 1, len);
    if (i < len && p[i] == '}')
        return 0;
    while (i < len) {
        member m = {.start = i};
        if (p[i] != '"')
            return -1;
        m.key_end = skip_string(p, i, len);
        i = skip_ws(p, m.key_end, len);
        if (i >= len || p[i] != ':')
            return -1;
        m.value = skip_ws(p, i + 1, len);
        m.end = skip_value(p, m.value, len);
        if (m.end >= len || m.end == m.value)
            return -1;
        if (fn(ctx, &m) != 0)
            return -1;
        i = skip_ws(p, m.end, len);
        if (i < len && p[i] == '}')
            return 0;
        if (i >= len || p[i] != ',')
            return -1;
        i = skip_ws(p, i + 1, len);
    }
    return -1;
}

#define MAX_MEMBERS_TAKEN 8

typedef struct scan {
    const char *p;
    member taken[MAX_MEMBERS_TAKEN]; /* the "cache" objects, in order */
    size_t ntaken;
    size_t first, last_end; /* the first member's start, the last one's end */
    size_t count;
} scan;

static int note_member(void *ctx, const member *m)
{
    scan *s = ctx;
    if (s->count++ == 0)
        s->first = m->start;
    s->last_end = m->end;
    if (m->key_end - m->start == 7 && memcmp(s->p + m->start, "\"cache\"", 7) == 0 &&
        s->p[m->value] == '{') {
        if (s->ntaken == MAX_MEMBERS_TAKEN)
            return -1; /* absurd: left to the upstream as sent */
        s->taken[s->ntaken++] = *m;
    }
    return 0;
}

/* A positive number of seconds from a JSON number (LiteLLM takes floats
 * too: 0.5 s is kept for 1 s, not refused), or -1. */
static long json_seconds(json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) > 0
                   ? (long)(json_integer_value(v) > LONG_MAX ? LONG_MAX : json_integer_value(v))
                   : -1;
    if (json_is_real(v) && json_real_value(v) > 0)
        return json_real_value(v) >= (double)LONG_MAX ? LONG_MAX : (long)ceil(json_real_value(v));
    return -1;
}

/* Reads one "cache" object into ab (a later one overrides an earlier one's
 * members, as a JSON parser keeps the last of duplicate keys). */
static rl_err read_controls(rl_pool *pool, const char *p, size_t len, alias_body *ab,
                            const char **why)
{
    json_error_t jerr;
    json_t *o = prov_json_load(p, len, &jerr);
    if (!o)
        return prov_json_failed(&jerr, RL_OK); /* invalid: inspect says so */
    rl_err err = RL_BAD_REQUEST;
    static const struct {
        const char *name;
        size_t flag;
    } flags[] = {{"no-cache", offsetof(alias_body, no_cache)},
                 {"no-store", offsetof(alias_body, no_store)}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        json_t *v = json_object_get(o, flags[i].name);
        if (v && !json_is_boolean(v)) {
            *why = "The body's \"cache\" controls (LiteLLM's): no-cache and no-store must be "
                   "true or false.";
            goto out;
        }
        if (v)
            *(int *)((char *)ab + flags[i].flag) = json_is_true(v);
    }
    static const struct {
        const char *name;
        size_t field;
    } secs[] = {{"ttl", offsetof(alias_body, ttl)}, {"s-maxage", offsetof(alias_body, s_maxage)}};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        json_t *v = json_object_get(o, secs[i].name);
        if (!v)
            continue;
        long s = json_seconds(v);
        if (s < 0) {
            *why = "The body's \"cache\" controls (LiteLLM's): ttl and s-maxage must be positive "
                   "numbers of seconds.";
            goto out;
        }
        *(long *)((char *)ab + secs[i].field) = s;
    }
    json_t *ns = json_object_get(o, "namespace");
    if (ns) {
        if (!json_is_string(ns) || json_string_length(ns) == 0 ||
            strlen(json_string_value(ns)) != json_string_length(ns)) {
            *why = "The body's \"cache\" controls (LiteLLM's): namespace must be a non-empty "
                   "string.";
            goto out;
        }
        ab->ns = rl_pstrdup(pool, json_string_value(ns));
        if (!ab->ns) {
            err = RL_NOMEM;
            goto out;
        }
    }
    err = RL_OK;
out:
    json_decref(o);
    return err;
}

rl_err alias_body_take(rl_pool *pool, const char *body, size_t len, const char **out,
                       size_t *out_len, alias_body *ab, const char **why)
{
    *ab = (alias_body){0, 0, 0, POLICY_UNSET, POLICY_UNSET, NULL};
    *out = body;
    *out_len = len;
    *why = NULL;
    /* Most bodies have no such member: one memmem and done. */
    if (!body || !memmem(body, len, "\"cache\"", 7))
        return RL_OK;
    scan s = {.p = body};
    if (each_member(body, len, note_member, &s) != 0 || s.ntaken == 0)
        return RL_OK;
    for (size_t i = 0; i < s.ntaken; i++) {
        const member *m = &s.taken[i];
        rl_err err = read_controls(pool, body + m->value, m->end - m->value, ab, why);
        if (err != RL_OK)
            return err;
    }
    /* The body again, with the kept members joined by commas. */
    char *b = rl_palloc(pool, len + 1);
    if (!b)
        return RL_NOMEM;
    size_t n = s.first;
    memcpy(b, body, n);
    size_t t = 0, kept = 0;
    /* Walk the members a second time, copying the ones not taken. */
    size_t i = s.first;
    while (i < s.last_end) {
        member m = {.start = i};
        m.key_end = skip_string(body, i, len);
        m.value = skip_ws(body, skip_ws(body, m.key_end, len) + 1, len);
        m.end = skip_value(body, m.value, len);
        if (t < s.ntaken && s.taken[t].start == m.start)
            t++;
        else {
            if (kept++)
                b[n++] = ',';
            memcpy(b + n, body + m.start, m.end - m.start);
            n += m.end - m.start;
        }
        i = skip_ws(body, m.end, len);
        if (i < s.last_end)
            i = skip_ws(body, i + 1, len); /* the comma */
    }
    memcpy(b + n, body + s.last_end, len - s.last_end);
    n += len - s.last_end;
    b[n] = '\0';
    ab->present = 1;
    *out = b;
    *out_len = n;
    return RL_OK;
}

/* ---- headers ----------------------------------------------------------- */

/* 1 for "true", 0 for "false" (any case), -1 otherwise. */
static int boolean_value(const char *v)
{
    if (strcasecmp(v, "true") == 0)
        return 1;
    if (strcasecmp(v, "false") == 0)
        return 0;
    return -1;
}

/* The boolean alias headers: name, and what "true" and "false" ask for. */
typedef enum { ASK_NOTHING, ASK_ON, ASK_OFF, ASK_REFRESH } ask;
static const struct {
    const char *name;
    ask if_true, if_false;
    const char *why;
} boolean_headers[] = {
    {"cf-aig-skip-cache", ASK_OFF, ASK_NOTHING, "cf-aig-skip-cache must be true or false"},
    {"helicone-cache-enabled", ASK_ON, ASK_OFF, "Helicone-Cache-Enabled must be true or false"},
    {"x-portkey-cache-force-refresh", ASK_REFRESH, ASK_NOTHING,
     "x-portkey-cache-force-refresh must be true or false"},
};

rl_err alias_controls(alias_header_fn *header, const void *ctx, const alias_body *ab,
                      cache_controls *cc, const char **why)
{
    *why = NULL;
    int on = 0, off = 0;
    for (size_t i = 0; i < sizeof boolean_headers / sizeof boolean_headers[0]; i++) {
        const char *v = header(ctx, boolean_headers[i].name);
        if (!v)
            continue;
        int b = boolean_value(v);
        if (b < 0) {
            *why = boolean_headers[i].why;
            return RL_BAD_REQUEST;
        }
        ask a = b ? boolean_headers[i].if_true : boolean_headers[i].if_false;
        on |= a == ASK_ON;
        off |= a == ASK_OFF;
        cc->no_cache |= a == ASK_REFRESH;
    }
    long ttl = POLICY_UNSET;
    const char *cf_ttl = header(ctx, "cf-aig-cache-ttl");
    if (cf_ttl) {
        cache_controls probe;
        const char *ignored;
        if (policy_parse(NULL, NULL, cf_ttl, &probe, &ignored) != RL_OK) {
            *why = "cf-aig-cache-ttl must be a positive number of seconds";
            return RL_BAD_REQUEST;
        }
        ttl = probe.ttl;
    }
    if (ab) {
        cc->no_cache |= ab->no_cache;
        cc->no_store |= ab->no_store;
        if (ttl == POLICY_UNSET)
            ttl = ab->ttl;
        if (cc->max_age == POLICY_UNSET)
            cc->max_age = ab->s_maxage;
    }
    /* Relay's own X-Relay-Cache and X-Relay-TTL win. */
    if (cc->force < 0 && (on || off))
        cc->force = off ? 0 : 1;
    if (cc->ttl == POLICY_UNSET)
        cc->ttl = ttl;
    return RL_OK;
}

const char *alias_namespace(rl_pool *pool, alias_header_fn *header, const void *ctx,
                            const alias_body *ab, int *nomem)
{
    *nomem = 0;
    const char *relay = header(ctx, "x-relay-namespace");
    const char *seed = header(ctx, "helicone-cache-seed");
    const char *litellm = ab ? ab->ns : NULL;
    if (!seed && !litellm)
        return relay;
    /* Each part length-prefixed after a line feed, which no header value
     * holds: never equal to a namespace X-Relay-Namespace alone spells. */
    const char *parts[] = {relay ? relay : "", seed ? seed : "", litellm ? litellm : ""};
    size_t cap = 2;
    for (size_t i = 0; i < 3; i++)
        cap += strlen(parts[i]) + 24;
    char *ns = rl_palloc(pool, cap);
    if (!ns) {
        *nomem = 1;
        return NULL;
    }
    size_t n = (size_t)snprintf(ns, cap, "\n");
    for (size_t i = 0; i < 3; i++)
        n += (size_t)snprintf(ns + n, cap - n, "%zu:%s", strlen(parts[i]), parts[i]);
    return ns;
}

/* ---- the request flow's steps ------------------------------------------ */

static const char *request_header(const void *ctx, const char *name)
{
    return engine_header(ctx, name);
}

int alias_take(exchange *x, alias_body *ab)
{
    const char *why = NULL, *body;
    size_t len;
    rl_err err =
        alias_body_take(x->req->pool, x->req->body, x->req->body_len, &body, &len, ab, &why);
    if (err != RL_OK) {
        exchange_fail(x, err, why);
        return -1;
    }
    if (!ab->present)
        return 0;
    engine_request *copy = rl_palloc(x->req->pool, sizeof *copy);
    if (!copy) {
        exchange_fail(x, RL_NOMEM, NULL);
        return -1;
    }
    *copy = *x->req;
    copy->body = body;
    copy->body_len = len;
    x->req = copy;
    x->preq.body = body;
    x->preq.body_len = len;
    return 0;
}

int alias_apply(exchange *x, const alias_body *ab)
{
    const char *why = NULL;
    rl_err err = alias_controls(request_header, x->req, ab, &x->cc, &why);
    int nomem = 0;
    if (err == RL_OK) {
        x->ns = alias_namespace(x->req->pool, request_header, x->req, ab, &nomem);
        err = nomem ? RL_NOMEM : RL_OK;
    }
    if (err != RL_OK) {
        exchange_fail(x, err, why);
        return -1;
    }
    return 0;
}
