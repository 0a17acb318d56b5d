/*
 * params.c — a request's line and headers from FastCGI parameters (see
 * params.h).
 */
#include "fcgi/params.h"

#include <string.h>

/* The value of NAME in envp, or NULL. */
static const char *param(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* "HTTP_X_RELAY_TTL" -> "x-relay-ttl" */
static char *header_name(rl_pool *pool, const char *cgi, size_t len)
{
    char *name = rl_pstrndup(pool, cgi, len);
    if (!name)
        return NULL;
    for (char *c = name; *c; c++)
        *c = *c == '_' ? '-' : (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    return name;
}

static int parse_line(char **envp, engine_request *req)
{
    rl_pool *pool = req->pool;
    const char *method = param(envp, "REQUEST_METHOD");
    req->method = rl_pstrdup(pool, method ? method : "GET");

    const char *uri = param(envp, "REQUEST_URI");
    if (uri) {
        size_t plen = strcspn(uri, "?");
        req->path = rl_pstrndup(pool, uri, plen);
        req->query = rl_pstrdup(pool, uri[plen] ? uri + plen + 1 : "");
    } else {
        const char *script = param(envp, "SCRIPT_NAME");
        const char *info = param(envp, "PATH_INFO");
        const char *qs = param(envp, "QUERY_STRING");
        size_t a = script ? strlen(script) : 0, b = info ? strlen(info) : 0;
        char *path = rl_palloc(pool, a + b + 1);
        if (path) {
            memcpy(path, script ? script : "", a);
            memcpy(path + a, info ? info : "", b);
            path[a + b] = '\0';
        }
        req->path = path;
        req->query = rl_pstrdup(pool, qs ? qs : "");
    }
    return req->method && req->path && req->query ? 0 : -1;
}

static int parse_headers(char **envp, engine_request *req)
{
    rl_pool *pool = req->pool;
    size_t count = 0;
    for (char **e = envp; *e; e++)
        count++;
    rl_header *headers = rl_palloc(pool, (count + 1) * sizeof *headers);
    if (!headers)
        return -1;
    size_t n = 0;
    for (char **e = envp; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        const char *name = NULL;
        size_t nlen = 0;
        if (strncmp(*e, "HTTP_", 5) == 0) {
            name = *e + 5;
            nlen = (size_t)(eq - name);
        } else if (strncmp(*e, "CONTENT_TYPE=", 13) == 0) {
            name = *e;
            nlen = 12;
        }
        if (!name)
            continue;
        headers[n].name = header_name(pool, name, nlen);
        headers[n].value = rl_pstrdup(pool, eq + 1);
        if (!headers[n].name || !headers[n].value)
            return -1;
        n++;
    }
    req->headers = headers;
    req->nheaders = n;
    return 0;
}

int params_parse(char **envp, engine_request *req)
{
    return parse_line(envp, req) == 0 && parse_headers(envp, req) == 0 ? 0 : -1;
}
