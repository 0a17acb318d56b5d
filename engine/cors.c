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

/* Longest Access-Control-Allow-Headers list answered: a bound on what a
 * client's request can make Relay write (the SDKs ask for under 600 bytes). */
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

/* ---- origins -------------------------------------------------------------- */

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

static int cors_end(void *ctx)
{
    cors_sink *c = ctx;
    return c->inner->end(c->inner->ctx);
}

void cors_sink_init(cors_sink *c, const relay_config *cfg, const engine_request *req, int open,
                    const engine_sink *inner)
{
    c->sink = (engine_sink){c,
                            cors_start,
                            cors_write,
                            cors_flush,
                            inner->ready ? cors_ready : NULL,
                            inner->end ? cors_end : NULL};
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
