#include "engine/cors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What a preflight allows. GET and POST are every API path's methods;
 * OPTIONS is the preflight itself. */
#define ALLOWED_METHODS "GET, POST, OPTIONS"

/* Response headers a page may read besides the CORS-safelisted ones:
 * Relay's own (X-Cache, X-Relay-Key, Age on cached answers, the budget and
 * Retry-After of a 429) and the ones the official SDKs read (retries:
 * retry-after-ms, x-should-retry; request ids: OpenAI's x-request-id,
 * Anthropic's request-id). */
#define EXPOSED_HEADERS                                                                            \
    "Age, X-Cache, X-Relay-Key, X-Relay-Budget-Remaining, Retry-After, Retry-After-Ms, "           \
    "X-Should-Retry, X-Request-Id, Request-Id"

/* What a preflight's answer depends on. */
#define PREFLIGHT_VARY "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

/*
 * Request headers a page may send (lower-case; a name ending in '-' is a
 * prefix). Taken from what the official JavaScript SDKs send from a browser
 * (openai, @anthropic-ai/sdk, @google/genai, ollama) and what Relay reads:
 *  - credentials: authorization (Bearer: OpenAI, Anthropic 1.x, Ollama,
 *    Relay tokens), x-api-key (Anthropic), api-key (Azure), x-goog-api-key;
 *  - the SDKs' own: x-stainless-* (OpenAI's and Anthropic's runtime,
 *    retry count, timeout), openai-* (organization, project, beta),
 *    anthropic-* (version, beta, dangerous-direct-browser-access),
 *    x-goog-* (api-client, user-project, upload), x-server-timeout
 *    (@google/genai), user-agent (set by @google/genai and ollama; Firefox
 *    lets a page send it), idempotency-key;
 *  - Relay's controls: cache-control, x-relay-* (cache, ttl, namespace);
 *  - content-type and accept-ish ones, which a page may set to values that
 *    are not CORS-safelisted (application/json is not).
 */
/* clang-format off */
static const char *const allowed_headers[] = {
    "authorization", "x-api-key", "api-key", "x-goog-api-key",
    "x-stainless-", "openai-", "anthropic-", "x-goog-", "x-server-timeout", "user-agent",
    "idempotency-key",
    "cache-control", "x-relay-",
    "content-type", "accept", "accept-language", "content-language",
};
/* clang-format on */

/* Longest Access-Control-Request-Headers list read (Chromium's own limit on
 * a header is far above what any SDK sends). */
#define REQUEST_HEADERS_MAX 4096

/* Header slots of a wrapped start(): what the engine sends (exchange_start
 * sends at most 96) plus Relay's three. */
#define MAX_HEADERS 128

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* ---- [cors] allow_origins ---------------------------------------------- */

/* Why the origin o (n bytes, one entry of the list) is refused, or NULL;
 * when accepted, its normalised form is appended to out. */
static const char *origin_refusal(const char *o, size_t n, rl_buf *out)
{
    if (n == 1 && o[0] == '*')
        return "a wildcard would let every web page use this Relay: every request to it "
               "spends a credential (a Relay token, a provider key) or a model that needs "
               "none (an Ollama or OpenAI-compatible upstream); list the origins of your apps "
               "(scheme://host[:port]) instead";
    if (n == 4 && strncasecmp(o, "null", 4) == 0)
        return "the origin of sandboxed frames and local files, which any page can produce, "
               "is never allowed; list real origins (scheme://host[:port])";
    if (memchr(o, '*', n))
        return "wildcards are not supported; list each origin (scheme://host[:port])";
    size_t s = 0;
    while (s < n && (is_alpha(o[s]) || (s > 0 && (is_digit(o[s]) || strchr("+-.", o[s])))))
        s++;
    if (s == 0 || n - s < 3 || memcmp(o + s, "://", 3) != 0)
        return "expected an origin, scheme://host[:port] (e.g. https://app.example.com)";
    const char *host = o + s + 3;
    size_t rest = n - s - 3;
    size_t hlen = 0;
    if (rest && host[0] == '[') { /* [v6] */
        while (hlen < rest && host[hlen] != ']')
            hlen++;
        if (hlen == rest || hlen == 1)
            return "expected a host in brackets, [v6 address]";
        hlen++;
        for (size_t i = 1; i + 1 < hlen; i++)
            if (!is_digit(host[i]) && !strchr("abcdefABCDEF:.", host[i]))
                return "expected a host in brackets, [v6 address]";
    } else {
        while (hlen < rest && (is_alpha(host[hlen]) || is_digit(host[hlen]) || host[hlen] == '-' ||
                               host[hlen] == '.'))
            hlen++;
        if (hlen == 0)
            return "expected a host after scheme://";
    }
    long port = -1;
    size_t at = hlen;
    if (at < rest && host[at] == ':') {
        port = 0;
        size_t digits = 0;
        for (at++; at < rest && is_digit(host[at]) && port <= 65535; at++, digits++)
            port = port * 10 + (host[at] - '0');
        if (digits == 0 || port < 1 || port > 65535)
            return "expected a port from 1 to 65535";
    }
    if (at < rest)
        return "an origin is scheme://host[:port] alone: no path (not even a trailing /), "
               "query or user name, as browsers send it in Origin";
    /* As a browser serialises it: lower-case, without the default port. */
    int http = s == 4 && strncasecmp(o, "http", 4) == 0;
    int https = s == 5 && strncasecmp(o, "https", 5) == 0;
    if ((http && port == 80) || (https && port == 443))
        port = -1;
    if (out->len)
        rl_buf_puts(out, " ");
    for (size_t i = 0; i < s + 3 + hlen; i++) {
        char c = (char)lower(o[i]);
        rl_buf_append(out, &c, 1);
    }
    if (port >= 0)
        rl_buf_printf(out, ":%ld", port);
    return NULL;
}

rl_err cors_origins_parse(const char *value, rl_buf *out, rl_buf *why)
{
    static const char sep[] = ", \t";
    for (const char *p = value + strspn(value, sep); *p; p += strspn(p, sep)) {
        size_t n = strcspn(p, sep);
        const char *bad = origin_refusal(p, n, out);
        if (bad) {
            rl_buf_printf(why, "\"%.*s\": %s", (int)(n > 200 ? 200 : n), p, bad);
            return RL_CONFIG;
        }
        p += n;
    }
    return rl_buf_error(out) == RL_OK ? RL_OK : RL_NOMEM;
}

int cors_origin_allowed(const relay_config *cfg, const char *origin)
{
    size_t olen = strlen(origin);
    const char *p = cfg->cors.allow_origins;
    while (*p) {
        size_t n = strcspn(p, " ");
        if (n == olen && strncasecmp(p, origin, n) == 0)
            return 1;
        p += n;
        p += strspn(p, " ");
    }
    return 0;
}

/* ---- the sink ------------------------------------------------------------ */

static int cors_start(void *ctx, int status, const rl_header *headers, size_t n)
{
    cors_sink *c = ctx;
    rl_header h[MAX_HEADERS];
    size_t m = 0;
    for (size_t i = 0; i < n && m < MAX_HEADERS - 3; i++)
        if (strncasecmp(headers[i].name, "access-control-", 15) != 0)
            h[m++] = headers[i];
    if (c->allowed) {
        h[m++] = (rl_header){"access-control-allow-origin", c->origin};
        h[m++] = (rl_header){"access-control-expose-headers", EXPOSED_HEADERS};
    }
    /* Whether this answer carries Access-Control-Allow-Origin depends on
     * Origin: say so to every cache, also on answers to requests without
     * one. */
    if (c->open && c->cfg->cors.allow_origins[0])
        h[m++] = (rl_header){"vary", "Origin"};
    return c->inner->start(c->inner->ctx, status, h, m);
}

static int cors_write(void *ctx, const void *data, size_t len)
{
    cors_sink *c = ctx;
    return c->inner->write(c->inner->ctx, data, len);
}

static int cors_flush(void *ctx)
{
    cors_sink *c = ctx;
    return c->inner->flush(c->inner->ctx);
}

static int cors_ready(void *ctx, size_t len)
{
    cors_sink *c = ctx;
    return c->inner->ready(c->inner->ctx, len);
}

void cors_sink_init(cors_sink *c, const relay_config *cfg, const engine_request *req, int open,
                    const engine_sink *inner)
{
    c->sink =
        (engine_sink){c, cors_start, cors_write, cors_flush, inner->ready ? cors_ready : NULL};
    c->inner = inner;
    c->cfg = cfg;
    c->open = open;
    c->origin = engine_header(req, "origin");
    c->allowed = open && c->origin && cors_origin_allowed(cfg, c->origin);
}

/* ---- preflight ----------------------------------------------------------- */

int cors_is_preflight(const engine_request *req)
{
    return strcmp(req->method, "OPTIONS") == 0 && engine_header(req, "origin") &&
           engine_header(req, "access-control-request-method");
}

/* Whether name (lower-case) may be sent from another origin. */
static int header_allowed(const char *name, size_t n)
{
    for (size_t i = 0; i < NELEM(allowed_headers); i++) {
        size_t a = strlen(allowed_headers[i]);
        int prefix = allowed_headers[i][a - 1] == '-';
        if (prefix ? n > a && memcmp(name, allowed_headers[i], a) == 0
                   : n == a && memcmp(name, allowed_headers[i], a) == 0)
            return 1;
    }
    return 0;
}

/* A header name's characters (RFC 9110 tchar). */
static int token_char(int c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Appends to out, separated by ", ", the names of the comma-separated list
 * asked (Access-Control-Request-Headers) that Relay allows, lower-case. */
static void allowed_request_headers(const char *asked, rl_buf *out)
{
    for (const char *p = asked; *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t end = n;
        while (end && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        char name[128];
        int valid = end > 0 && end < sizeof name;
        for (size_t i = 0; valid && i < end; i++) {
            valid = token_char(p[i]);
            name[i] = (char)lower(p[i]);
        }
        /* Whole names only: past the cap the rest is left out (the browser
         * then names the header it misses), never a name cut short. */
        if (valid && header_allowed(name, end) && out->len + 2 + end <= REQUEST_HEADERS_MAX) {
            if (out->len)
                rl_buf_puts(out, ", ");
            rl_buf_append(out, name, end);
        }
        p += n;
    }
}

rl_err cors_preflight(cors_sink *c, const engine_request *req, rl_buf *why)
{
    if (!c->open) {
        rl_buf_puts(why, "Relay's own endpoints (under /relay/) do not answer web pages on other "
                         "origins; only the provider API paths do.");
        return RL_FORBIDDEN;
    }
    if (!c->allowed) {
        if (c->cfg->cors.allow_origins[0])
            rl_buf_printf(why, "The origin %.200s is not in this Relay's [cors] allow_origins.",
                          c->origin);
        else
            rl_buf_printf(why,
                          "This Relay does not answer web pages on other origins: [cors] "
                          "allow_origins is empty. Add %.200s to it to allow this one.",
                          c->origin);
        return RL_FORBIDDEN;
    }
    rl_buf asked;
    rl_buf_init(&asked, REQUEST_HEADERS_MAX);
    const char *list = engine_header(req, "access-control-request-headers");
    if (list)
        allowed_request_headers(list, &asked);
    char max_age[24];
    snprintf(max_age, sizeof max_age, "%ld", c->cfg->cors.max_age);
    rl_header h[5];
    size_t n = 0;
    h[n++] = (rl_header){"access-control-allow-origin", c->origin};
    h[n++] = (rl_header){"access-control-allow-methods", ALLOWED_METHODS};
    if (asked.len && rl_buf_error(&asked) == RL_OK)
        h[n++] = (rl_header){"access-control-allow-headers", asked.data};
    h[n++] = (rl_header){"access-control-max-age", max_age};
    h[n++] = (rl_header){"vary", PREFLIGHT_VARY};
    if (c->inner->start(c->inner->ctx, 204, h, n) == 0)
        c->inner->flush(c->inner->ctx);
    rl_buf_release(&asked);
    return RL_OK;
}
