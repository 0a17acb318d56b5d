/* prov_common.c — what every adapter shares: request accessors, JSON dumps. */
#include <ctype.h>
#include <string.h>

#include "engine/prov.h"
#include "engine/prov_json.h"

const char *prov_header(const prov_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
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
                char c = p[i];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && i + 2 < len && hex_value(p[i + 1]) >= 0 &&
                           hex_value(p[i + 2]) >= 0) {
                    c = (char)(hex_value(p[i + 1]) * 16 + hex_value(p[i + 2]));
                    i += 2;
                }
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

int prov_query_has(const prov_request *r, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *p = r->query ? r->query : ""; *p;) {
        size_t len = strcspn(p, "&");
        if (len >= nlen && strncmp(p, name, nlen) == 0 && (len == nlen || p[nlen] == '='))
            return 1;
        p += len + (p[len] ? 1 : 0);
    }
    return 0;
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

rl_err prov_json_put(rl_buf *out, const char *before, json_t *j, size_t flags, const char *after)
{
    rl_err err = RL_NOMEM;
    if (j && (err = rl_buf_puts(out, before)) == RL_OK &&
        (err = prov_json_dump(j, flags, out)) == RL_OK)
        err = rl_buf_puts(out, after);
    json_decref(j);
    return err;
}

int64_t prov_json_int(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}
