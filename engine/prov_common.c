/* prov_common.c — what every adapter shares: request accessors, JSON dumps. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "engine/prov.h"
#include "engine/prov_json.h"
#include "store/base/rl_hex.h"

const char *prov_header(const prov_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

int prov_pct_byte(const char *s, size_t avail)
{
    if (avail < 3 || s[0] != '%')
        return -1;
    int hi = rl_hex_digit((unsigned char)s[1]);
    int lo = hi >= 0 ? rl_hex_digit((unsigned char)s[2]) : -1;
    return lo >= 0 ? hi * 16 + lo : -1;
}

/* The character at p[*i] of a query component of len bytes, with '+' and
 * "%XX" decoded; *i is left on the last byte it used. */
static int query_char(const char *p, size_t len, size_t *i)
{
    if (p[*i] == '+')
        return ' ';
    int b = prov_pct_byte(p + *i, len - *i);
    if (b < 0)
        return (unsigned char)p[*i];
    *i += 2;
    return b;
}

const char *prov_query_param(const prov_request *r, const char *name, char *buf, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *p = r->query ? r->query : ""; *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t o = 0;
            for (size_t i = nlen + 1; i < len; i++) {
                char c = (char)query_char(p, len, &i);
                if (o + 1 >= cap)
                    return NULL;
                buf[o++] = c;
            }
            buf[o] = '\0';
            return buf;
        }
        p += len + (end ? 1 : 0);
    }
    return NULL;
}

/* Whether the parameter name p[0..len), its percent-escapes and '+'
 * decoded, is name, ignoring ASCII case. */
static int param_name_is(const char *p, size_t len, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        int c = query_char(p, len, &i);
        if (!name[k] || tolower(c) != tolower((unsigned char)name[k]))
            return 0;
        k++;
    }
    return name[k] == '\0';
}

int prov_query_has(const prov_request *r, const char *name)
{
    for (const char *p = r->query ? r->query : ""; *p;) {
        size_t len = strcspn(p, "&;");
        const char *eq = memchr(p, '=', len);
        if (param_name_is(p, eq ? (size_t)(eq - p) : len, name))
            return 1;
        p += len + (p[len] ? 1 : 0);
    }
    return 0;
}

/* The byte offset at which data's nesting first exceeds max levels, or -1.
 * Brackets inside strings do not count; whether the text is otherwise valid
 * JSON is the parser's business. Every request body passes here (hits
 * too), and most of a body's bytes are string contents: those are skipped
 * with memchr to the next quote, which is escaped when an odd number of
 * backslashes precede it (callgrind, an 80 KB chat body: a byte-by-byte
 * loop added 5 % to inspect, this adds under 1 %). */
static long depth_exceeded_at(const char *data, size_t len, int max)
{
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '"') {
            for (;;) {
                const char *q = memchr(data + i + 1, '"', len - i - 1);
                if (!q)
                    return -1; /* an unterminated string: the parser says so */
                i = (size_t)(q - data);
                size_t slashes = 0;
                while (data[i - 1 - slashes] == '\\')
                    slashes++;
                if (slashes % 2 == 0)
                    break;
            }
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                return (long)i;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return -1;
}

/* Fills err as jansson would, with code (kept, as jansson keeps it, in the
 * last byte of its text). */
static void set_error(json_error_t *err, enum json_error_code code, long position, const char *text)
{
    memset(err, 0, sizeof *err);
    size_t n = strnlen(text, sizeof err->text - 2);
    memcpy(err->text, text, n);
    err->text[sizeof err->text - 1] = (char)code;
    err->position = (int)position;
    err->line = err->column = -1;
}

/*
 * jansson 2.14 has no one way of saying that a parse ran out of memory
 * (load.c): a failed object, array, number or lexer buffer returns NULL
 * with no error set at all; a failed copy of a string returns "invalid
 * token near ..." as if the text were wrong; and a lexer buffer that could
 * not grow drops a byte (lex_save ignores the failure), so a parse may even
 * "succeed" with a string missing a character. Only malloc tells every
 * time: errno is ENOMEM after any of them. So a parse after which errno says
 * ENOMEM, or that failed without an error, ran out of memory, and its
 * result, whatever it is, is not used. (A malloc that found memory after
 * one attempt failed may leave ENOMEM too: under such pressure a request
 * fails with 500, which it may.)
 */
json_t *prov_json_load(const char *data, size_t len, json_error_t *err)
{
    json_error_t unused;
    if (!err)
        err = &unused;
    if (!data)
        data = "";
    long at = depth_exceeded_at(data, len, PROV_JSON_MAX_DEPTH);
    if (at >= 0) {
        char text[JSON_ERROR_TEXT_LENGTH];
        snprintf(text, sizeof text,
                 "arrays and objects nested deeper than %d levels (Relay's limit)",
                 PROV_JSON_MAX_DEPTH);
        set_error(err, json_error_stack_overflow, at, text);
        return NULL;
    }
    int saved = errno;
    errno = 0;
    err->text[0] = '\0';
    json_t *j = json_loadb(data, len, JSON_ALLOW_NUL, err);
    if (errno == ENOMEM || (!j && err->text[0] == '\0')) {
        json_decref(j);
        j = NULL;
        set_error(err, json_error_out_of_memory, 0, "out of memory while parsing JSON");
    }
    errno = saved;
    return j;
}

rl_err prov_json_failed(const json_error_t *err, rl_err invalid)
{
    return json_error_code(err) == json_error_out_of_memory ? RL_NOMEM : invalid;
}

rl_err prov_usage_failed(prov_usage *u, const json_error_t *err)
{
    if (prov_json_failed(err, RL_OK) == RL_OK)
        return RL_OK;
    *u = PROV_USAGE_UNKNOWN;
    u->lost = 1;
    return RL_NOMEM;
}

int prov_credential_ok(const char *value)
{
    if (!value || !*value)
        return 0;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return 0;
    return 1;
}

const char *prov_credential_key(const prov_request *r, const char *credential)
{
    const char *token = credential ? prov_auth_token(r, "Bearer") : NULL;
    return token ? token : credential;
}

const char *prov_auth_token(const prov_request *r, const char *scheme)
{
    const char *auth = prov_header(r, "authorization");
    if (!auth)
        return NULL;
    size_t n = strcspn(auth, " ");
    if (n == 0 || auth[n] != ' ' ||
        (scheme && (strlen(scheme) != n || strncasecmp(auth, scheme, n))))
        return NULL;
    const char *token = auth + n;
    while (*token == ' ')
        token++;
    return prov_credential_ok(token) ? token : NULL;
}

/* jansson (2.14, dump.c) ignores a failed write of an object's key and
 * goes on with its value: a buffer that could not grow once would give
 * JSON with a key missing, reported as a success (a wrong canonical body,
 * so a wrong cache key). So the first failure sticks: every later write
 * fails too, and the dump is judged by that, not only by jansson. */
typedef struct dump_sink {
    rl_buf *out;
    int failed;
} dump_sink;

static int dump_to_buf(const char *p, size_t n, void *data)
{
    dump_sink *d = data;
    d->failed = d->failed || rl_buf_append(d->out, p, n) != RL_OK;
    return d->failed ? -1 : 0;
}

rl_err prov_json_dump(json_t *j, size_t flags, rl_buf *out)
{
    dump_sink d = {out, 0};
    int rc = json_dump_callback(j, dump_to_buf, &d, flags);
    return rc == 0 && !d.failed ? RL_OK : RL_NOMEM;
}

json_t *prov_json_check(json_t *j, int failed)
{
    if (!failed)
        return j;
    json_decref(j);
    return NULL;
}

json_t *prov_json_copy(json_t *j)
{
    json_t *copy = json_is_object(j) ? json_object() : NULL;
    int failed = !copy;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) failed |= json_object_set(copy, key, v);
    return prov_json_check(copy, failed);
}

rl_err prov_json_put(rl_buf *out, const char *before, json_t *j, size_t flags, const char *after)
{
    rl_err err = RL_NOMEM;
    if (j && (err = rl_buf_puts(out, before)) == RL_OK &&
        (err = prov_json_dump(j, flags, out)) == RL_OK)
        err = rl_buf_puts(out, after);
    json_decref(j);
    return err;
}

int64_t prov_max_output(int64_t cap, int64_t choices)
{
    if (cap <= 0)
        return -1;
    if (choices < 1)
        choices = 1;
    return cap > INT64_MAX / choices ? INT64_MAX : cap * choices;
}

int64_t prov_json_int(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}
