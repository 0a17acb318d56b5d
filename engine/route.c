#include "engine/route.h"

#include <string.h>

const prov_ops *route_type_prov(upstream_type type)
{
    switch (type) {
    case UPSTREAM_TYPE_ANTHROPIC:
        return &prov_anthropic;
    case UPSTREAM_TYPE_GEMINI:
        return &prov_gemini;
    case UPSTREAM_TYPE_OLLAMA:
        return &prov_ollama;
    case UPSTREAM_TYPE_OPENAI:
    case UPSTREAM_TYPE_AZURE:
    case UPSTREAM_TYPE_OPENAI_COMPATIBLE:
        break;
    }
    return &prov_openai;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

typedef struct endpoint_shape {
    const char *tail; /* the path after the format's prefix */
    const char *endpoint;
    const char *method;
} endpoint_shape;

/* OpenAI's cacheable endpoints, after "/v1" (OpenAI, compatible servers,
 * Azure's /openai/v1) or after "/openai/deployments/D" (Azure). */
static const endpoint_shape openai_shapes[] = {
    {"/chat/completions", "chat.completions", "POST"},
    {"/completions", "completions", "POST"},
    {"/embeddings", "embeddings", "POST"},
    {"/responses", "responses", "POST"},
    {"/models", "models", "GET"},
};

static const endpoint_shape anthropic_shapes[] = {
    {"/v1/messages", "messages", "POST"},
    {"/v1/messages/count_tokens", "messages.count_tokens", "POST"},
};

static const endpoint_shape ollama_shapes[] = {
    {"/api/chat", "chat", "POST"},
    {"/api/generate", "generate", "POST"},
    {"/api/embed", "embed", "POST"},
};

/* Gemini's methods, after "/v1beta/models/M" or "/v1/models/M". */
static const endpoint_shape gemini_shapes[] = {
    {":generateContent", "generateContent", "POST"},
    {":streamGenerateContent", "generateContent", "POST"},
    {":countTokens", "countTokens", "POST"},
    {":embedContent", "embedContent", "POST"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void take(const endpoint_shape *s, route *out)
{
    out->endpoint = s->endpoint;
    out->method = s->method;
}

/* The endpoint of a path in OpenAI's format, where prefix is what comes
 * before the endpoint's tail. */
static void openai_endpoint(const char *path, route *out)
{
    const char *tail = NULL;
    if (starts_with(path, "/v1/"))
        tail = path + 3;
    else if (starts_with(path, "/openai/v1/"))
        tail = path + 10;
    else if (starts_with(path, "/openai/deployments/")) {
        const char *d = path + 20;
        const char *slash = strchr(d, '/');
        if (slash && slash > d)
            tail = slash;
    } else if (starts_with(path, "/openai/"))
        tail = path + 7;
    if (!tail)
        return;
    for (size_t i = 0; i < COUNT(openai_shapes); i++)
        if (strcmp(tail, openai_shapes[i].tail) == 0)
            take(&openai_shapes[i], out);
}

static void gemini_endpoint(const char *path, route *out)
{
    const char *m = NULL;
    if (starts_with(path, "/v1beta/models/"))
        m = path + 15;
    else if (starts_with(path, "/v1/models/"))
        m = path + 11;
    const char *colon = m ? strchr(m, ':') : NULL;
    if (!colon || colon == m || memchr(m, '/', (size_t)(colon - m)))
        return;
    for (size_t i = 0; i < COUNT(gemini_shapes); i++)
        if (strcmp(colon, gemini_shapes[i].tail) == 0)
            take(&gemini_shapes[i], out);
}

static void exact_endpoint(const endpoint_shape *shapes, size_t n, const char *path, route *out)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(path, shapes[i].tail) == 0)
            take(&shapes[i], out);
}

/* The endpoint of path for the format of out->upstream. */
static void find_endpoint(const char *path, route *out)
{
    const prov_ops *p = out->prov;
    if (p == &prov_anthropic)
        exact_endpoint(anthropic_shapes, COUNT(anthropic_shapes), path, out);
    else if (p == &prov_ollama)
        exact_endpoint(ollama_shapes, COUNT(ollama_shapes), path, out);
    else if (p == &prov_gemini)
        gemini_endpoint(path, out);
    else
        openai_endpoint(path, out);
}

static const upstream_config *first_of(const relay_config *cfg, upstream_type a, upstream_type b)
{
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (cfg->upstreams[i].type == a || cfg->upstreams[i].type == b)
            return &cfg->upstreams[i];
    return NULL;
}

/* The first upstream that accepts client format prov (its `accepts`), for
 * a path whose own kind of upstream is not configured: it is served
 * translated (engine/translate.c). */
static const upstream_config *first_accepting(const relay_config *cfg, const prov_ops *prov)
{
    static const char *const formats[WIRE_FORMATS] = {"openai", "anthropic", "gemini", "ollama"};
    for (size_t f = 0; f < WIRE_FORMATS; f++)
        if (strcmp(formats[f], prov->format) == 0)
            for (size_t i = 0; i < cfg->nupstreams; i++)
                if (cfg->upstreams[i].accepts & (1u << f))
                    return &cfg->upstreams[i];
    return NULL;
}

/* Gemini's stable /v1/models/M:method paths, told apart from OpenAI's
 * /v1/models/ID (fine-tuned ids contain colons: ft:gpt-4o:org::id) by the
 * method. */
static int gemini_v1_method(const char *path)
{
    if (!starts_with(path, "/v1/models/"))
        return 0;
    route r = {.endpoint = NULL};
    gemini_endpoint(path, &r);
    return r.endpoint != NULL;
}

/* Routing by shape for paths under no mount: the first upstream of the
 * path's kind, else the first that accepts the path's format (served
 * translated). *prov gets the path's format, which is the client's. */
static const upstream_config *by_kind(const relay_config *cfg, const char *path,
                                      const prov_ops **prov)
{
    const upstream_config *up = NULL;
    if (strcmp(path, "/v1/messages") == 0 || starts_with(path, "/v1/messages/")) {
        *prov = &prov_anthropic;
        up = first_of(cfg, UPSTREAM_TYPE_ANTHROPIC, UPSTREAM_TYPE_ANTHROPIC);
    } else if (starts_with(path, "/v1beta/") || gemini_v1_method(path)) {
        *prov = &prov_gemini;
        up = first_of(cfg, UPSTREAM_TYPE_GEMINI, UPSTREAM_TYPE_GEMINI);
    } else if (starts_with(path, "/openai/")) {
        *prov = &prov_openai;
        up = first_of(cfg, UPSTREAM_TYPE_AZURE, UPSTREAM_TYPE_AZURE);
    } else if (starts_with(path, "/api/")) {
        *prov = &prov_ollama;
        up = first_of(cfg, UPSTREAM_TYPE_OLLAMA, UPSTREAM_TYPE_OLLAMA);
    } else if (starts_with(path, "/v1/")) {
        *prov = &prov_openai;
        up = first_of(cfg, UPSTREAM_TYPE_OPENAI, UPSTREAM_TYPE_OPENAI_COMPATIBLE);
        /* OpenAI's own endpoints go to an upstream that accepts OpenAI's
         * format before Anthropic's other /v1 paths (models, batches) go
         * to an Anthropic upstream as they are. */
        route r = {.endpoint = NULL};
        openai_endpoint(path, &r);
        if (!up && r.endpoint && (up = first_accepting(cfg, &prov_openai)))
            return up;
        if (!up && (up = first_of(cfg, UPSTREAM_TYPE_ANTHROPIC, UPSTREAM_TYPE_ANTHROPIC)))
            *prov = &prov_anthropic;
        return up;
    } else {
        return NULL;
    }
    return up ? up : first_accepting(cfg, *prov);
}

/* ---- what may be forwarded ------------------------------------------- */

/* RFC 3986 pchar, less '%' (checked apart): unreserved, sub-delims, ':', '@'. */
static int is_pchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~!$&'()*+,;=:@", c));
}

/* Checks one path segment of n bytes (no '/' inside). */
static const char *segment_refusal(const char *seg, size_t n, int last)
{
    if (n == 0 && !last)
        return "an empty segment (//)";
    size_t dots = 0, decoded = 0;
    for (size_t i = 0; i < n; i++, decoded++) {
        unsigned char c = (unsigned char)seg[i];
        if (c == '\\')
            return "a backslash";
        if (c == '%') {
            int b = prov_pct_byte(seg + i, n - i);
            if (b < 0)
                return "a malformed percent escape";
            if (b == '/' || b == '\\')
                return "an encoded slash or backslash";
            if (b < 0x20 || b == 0x7f)
                return "an encoded control character";
            c = (unsigned char)b;
            i += 2;
        } else if (!is_pchar(c)) {
            return "a character that is not allowed in a URL path";
        }
        dots += c == '.';
    }
    if (decoded > 0 && decoded <= 2 && dots == decoded)
        return "a '.' or '..' segment";
    return NULL;
}

const char *route_target_refusal(const char *path, const char *query)
{
    if (path[0] != '/')
        return "a path that does not start with /";
    for (const char *p = path + 1;;) {
        size_t n = strcspn(p, "/");
        const char *why = segment_refusal(p, n, p[n] == '\0');
        if (why)
            return why;
        if (!p[n])
            break;
        p += n + 1;
    }
    /* The query goes upstream as it came and Relay reads only a few of its
     * parameters: refused are only what would change the URL libcurl sends
     * (a space, a '#', controls) and bytes outside ASCII, which clients
     * percent-encode. Brackets and the like stay: SDKs send them raw. */
    for (const unsigned char *q = (const unsigned char *)(query ? query : ""); *q; q++) {
        if (*q == '%' && prov_pct_byte((const char *)q, 3) < 0) /* stops at a NUL */
            return "a malformed percent escape in the query";
        if (*q <= ' ' || *q >= 0x7f || *q == '#')
            return "a character that is not allowed in a URL query";
        if (*q == '%')
            q += 2;
    }
    return NULL;
}

/* ---- routing ------------------------------------------------------------ */

void route_match(const relay_config *cfg, const char *path, route *out)
{
    memset(out, 0, sizeof *out);
    out->prov = &prov_openai;
    out->path = path;
    if (strcmp(path, "/relay/health") == 0) {
        out->kind = ROUTE_HEALTH;
        return;
    }
    if (strcmp(path, "/relay/metrics") == 0) {
        out->kind = ROUTE_METRICS;
        return;
    }
    if (starts_with(path, "/relay/admin/api/")) {
        out->kind = ROUTE_ADMIN_API;
        out->path = path + strlen("/relay/admin/api");
        return;
    }
    const upstream_config *up = NULL;
    for (size_t i = 0; i < cfg->nupstreams && !up; i++) {
        const char *mount = cfg->upstreams[i].mount;
        size_t n = strlen(mount);
        if (n && strncmp(path, mount, n) == 0 && (path[n] == '/' || path[n] == '\0')) {
            up = &cfg->upstreams[i];
            out->prov = route_type_prov(up->type);
            out->path = path[n] ? path + n : "/";
        }
    }
    if (!up) {
        const prov_ops *shape_prov = &prov_openai;
        up = by_kind(cfg, path, &shape_prov);
        out->prov = shape_prov;
    }
    if (!up)
        return;
    out->kind = ROUTE_API;
    out->upstream = up;
    find_endpoint(out->path, out);
}
