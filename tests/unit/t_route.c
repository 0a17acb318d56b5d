/* Unit tests for engine/route: mounts first, then shapes, over several
 * upstreams; the endpoint, its method and the path forwarded. */
#include <stdio.h>
#include <string.h>

#include "engine/route.h"
#include "tests/unit/tap.h"

static relay_config cfg;

static void add(const char *name, upstream_type type, const char *mount)
{
    upstream_config *u = &cfg.upstreams[cfg.nupstreams++];
    u->name = (char *)name;
    u->type = type;
    u->base_url = (char *)"http://upstream";
    u->mount = (char *)mount;
}

/* Routes path; checks upstream name (NULL: no route), endpoint (NULL: a
 * pass-through path), method and forwarded path. */
static void check(const char *path, const char *upstream, const char *endpoint, const char *method,
                  const char *fwd)
{
    route r;
    route_match(&cfg, path, &r);
    char what[300];
    snprintf(what, sizeof what, "%s -> %s", path, upstream ? upstream : "404");
    if (!upstream) {
        is_int(r.kind, ROUTE_NONE, what);
        return;
    }
    is_int(r.kind, ROUTE_API, what);
    is_str(r.upstream ? r.upstream->name : NULL, upstream, what);
    snprintf(what, sizeof what, "%s: endpoint %s", path, endpoint ? endpoint : "(none)");
    is_str(r.endpoint, endpoint, what);
    if (endpoint) {
        snprintf(what, sizeof what, "%s: method %s", path, method);
        is_str(r.method, method, what);
    }
    snprintf(what, sizeof what, "%s: forwarded as %s", path, fwd);
    is_str(r.path, fwd, what);
}

/* Request targets that must never be forwarded (route_target_refusal). */
static void check_targets(void)
{
    static const struct {
        const char *path, *query;
        int refused;
    } cases[] = {
        {"/v1/chat/completions", "", 0},
        {"/v1/models/", "", 0}, /* a trailing slash is not an empty segment */
        {"/", "", 0},
        {"/v1beta/models/gemini-2.5-flash:streamGenerateContent", "alt=sse&key=a%2Bb", 0},
        {"/v1/models/ft:gpt-4o-mini:org::abc", "", 0},
        {"/v1/files/file-abc...txt", "", 0}, /* three dots: a name, not a dot segment */
        {"/v1/a%20b", "include[]=x&a=1;b=2|c", 0},
        {"/v1/../x", "", 1},
        {"/compat/v1/../../x", "", 1},
        {"/v1/./chat/completions", "", 1},
        {"/v1/..", "", 1},
        {"/v1/.", "", 1},
        {"/v1/%2e%2e/x", "", 1},
        {"/v1/%2E%2e/x", "", 1},
        {"/v1/.%2E/x", "", 1},
        {"/v1/%2e/x", "", 1},
        {"/v1//chat/completions", "", 1},
        {"//v1/chat/completions", "", 1},
        {"/v1\\..\\x", "", 1},
        {"/v1/chat%2fcompletions", "", 1},
        {"/v1/chat%2Fcompletions", "", 1},
        {"/v1/chat%5ccompletions", "", 1},
        {"/v1/chat%00", "", 1},
        {"/v1/chat%zz", "", 1},
        {"/v1/chat%2", "", 1},
        {"/v1/chat completions", "", 1},
        {"/v1/chat#x", "", 1},
        {"/v1/ch\xc3\xa9", "", 1},
        {"v1/chat", "", 1},
        {"/v1/chat/completions", "a=b c", 1},
        {"/v1/chat/completions", "a=%zz", 1},
        {"/v1/chat/completions", "a=b#c", 1},
        {"/v1/chat/completions", "a=\x01", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = route_target_refusal(cases[i].path, cases[i].query);
        char what[300];
        snprintf(what, sizeof what, "%s?%s is %s%s%s", cases[i].path, cases[i].query,
                 cases[i].refused ? "refused" : "allowed", why ? ": " : "", why ? why : "");
        ok((why != NULL) == cases[i].refused, what);
    }
}

int main(void)
{
    check_targets();
    add("oai", UPSTREAM_TYPE_OPENAI, "");
    add("claude", UPSTREAM_TYPE_ANTHROPIC, "");
    add("gem", UPSTREAM_TYPE_GEMINI, "");
    add("az", UPSTREAM_TYPE_AZURE, "");
    add("llama", UPSTREAM_TYPE_OLLAMA, "");
    add("vllm", UPSTREAM_TYPE_OPENAI_COMPATIBLE, "/vllm");
    add("claude2", UPSTREAM_TYPE_ANTHROPIC, "/anthropic");

    route r;
    route_match(&cfg, "/relay/health", &r);
    is_int(r.kind, ROUTE_HEALTH, "/relay/health");

    /* By shape. */
    check("/v1/chat/completions", "oai", "chat.completions", "POST", "/v1/chat/completions");
    check("/v1/completions", "oai", "completions", "POST", "/v1/completions");
    check("/v1/embeddings", "oai", "embeddings", "POST", "/v1/embeddings");
    check("/v1/responses", "oai", "responses", "POST", "/v1/responses");
    check("/v1/models", "oai", "models", "GET", "/v1/models");
    check("/v1/models/gpt-4o", "oai", NULL, NULL, "/v1/models/gpt-4o");
    check("/v1/batches", "oai", NULL, NULL, "/v1/batches");
    check("/v1/messages", "claude", "messages", "POST", "/v1/messages");
    check("/v1/messages/count_tokens", "claude", "messages.count_tokens", "POST",
          "/v1/messages/count_tokens");
    check("/v1/messages/batches", "claude", NULL, NULL, "/v1/messages/batches");
    check("/v1beta/models/gemini-2.5-flash:generateContent", "gem", "generateContent", "POST",
          "/v1beta/models/gemini-2.5-flash:generateContent");
    check("/v1beta/models/gemini-2.5-flash:streamGenerateContent", "gem", "generateContent", "POST",
          "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    check("/v1beta/models/text-embedding-004:embedContent", "gem", "embedContent", "POST",
          "/v1beta/models/text-embedding-004:embedContent");
    check("/v1beta/models/g:countTokens", "gem", "countTokens", "POST",
          "/v1beta/models/g:countTokens");
    check("/v1/models/gemini-2.5-flash:generateContent", "gem", "generateContent", "POST",
          "/v1/models/gemini-2.5-flash:generateContent");
    check("/v1beta/models", "gem", NULL, NULL, "/v1beta/models");
    check("/v1/models/ft:gpt-4o-mini-2024-07-18:my-org::abc123", "oai", NULL, NULL,
          "/v1/models/ft:gpt-4o-mini-2024-07-18:my-org::abc123");
    check("/openai/deployments/prod/chat/completions", "az", "chat.completions", "POST",
          "/openai/deployments/prod/chat/completions");
    check("/openai/deployments/prod/embeddings", "az", "embeddings", "POST",
          "/openai/deployments/prod/embeddings");
    check("/openai/v1/responses", "az", "responses", "POST", "/openai/v1/responses");
    check("/openai/deployments//chat/completions", "az", NULL, NULL,
          "/openai/deployments//chat/completions");
    check("/api/chat", "llama", "chat", "POST", "/api/chat");
    check("/api/generate", "llama", "generate", "POST", "/api/generate");
    check("/api/embed", "llama", "embed", "POST", "/api/embed");
    check("/api/tags", "llama", NULL, NULL, "/api/tags");

    /* Mounts win, and their prefix is not forwarded. */
    check("/vllm/v1/chat/completions", "vllm", "chat.completions", "POST", "/v1/chat/completions");
    check("/anthropic/v1/messages", "claude2", "messages", "POST", "/v1/messages");
    check("/anthropic", "claude2", NULL, NULL, "/");
    check("/anthropicx/v1/messages", NULL, NULL, NULL, NULL);

    /* Unknown shapes. */
    check("/", NULL, NULL, NULL, NULL);
    check("/v2/chat/completions", NULL, NULL, NULL, NULL);
    check("/relay/nope", NULL, NULL, NULL, NULL);

    /* Without an openai upstream, other /v1 paths go to Anthropic; without
     * an upstream of a shape's kind there is no route. */
    cfg.nupstreams = 0;
    add("claude", UPSTREAM_TYPE_ANTHROPIC, "");
    check("/v1/models", "claude", NULL, NULL, "/v1/models");
    check("/v1/messages", "claude", "messages", "POST", "/v1/messages");
    check("/api/chat", NULL, NULL, NULL, NULL);
    check("/v1beta/models/g:generateContent", NULL, NULL, NULL, NULL);
    route_match(&cfg, "/api/chat", &r);
    ok(r.prov == &prov_ollama, "an unrouted Ollama path still answers in Ollama's shape");

    /* accepts: a path with no upstream of its kind goes to the first
     * upstream accepting its format, and keeps the client's format. */
    cfg.upstreams[0].accepts = 1u << WIRE_OPENAI | 1u << WIRE_GEMINI;
    add("ol", UPSTREAM_TYPE_OLLAMA, "");
    cfg.upstreams[1].accepts = 1u << WIRE_ANTHROPIC;
    check("/v1/chat/completions", "claude", "chat.completions", "POST", "/v1/chat/completions");
    route_match(&cfg, "/v1/chat/completions", &r);
    ok(r.prov == &prov_openai,
       "an OpenAI path served by an accepting Anthropic upstream: OpenAI's");
    check("/v1/responses", "claude", "responses", "POST", "/v1/responses");
    check("/v1beta/models/g:streamGenerateContent", "claude", "generateContent", "POST",
          "/v1beta/models/g:streamGenerateContent");
    route_match(&cfg, "/v1beta/models/g:generateContent", &r);
    ok(r.prov == &prov_gemini, "a Gemini path served by an accepting upstream: Gemini's format");
    /* Its own kind first: /v1/messages stays on the Anthropic upstream
     * though ol accepts Anthropic's format. */
    check("/v1/messages", "claude", "messages", "POST", "/v1/messages");
    route_match(&cfg, "/v1/messages", &r);
    ok(r.prov == &prov_anthropic, "an Anthropic path on an Anthropic upstream: Anthropic's");
    /* Anthropic's other /v1 paths still reach it as they are. */
    check("/v1/messages/batches", "claude", NULL, NULL, "/v1/messages/batches");
    check("/v1/files", "claude", NULL, NULL, "/v1/files");
    route_match(&cfg, "/v1/files", &r);
    ok(r.prov == &prov_anthropic, "a non-OpenAI /v1 path on Anthropic: Anthropic's format");
    check("/api/chat", "ol", "chat", "POST", "/api/chat");
    cfg.nupstreams = 0;
    add("ol", UPSTREAM_TYPE_OLLAMA, "");
    cfg.upstreams[0].accepts = 1u << WIRE_ANTHROPIC;
    check("/v1/messages", "ol", "messages", "POST", "/v1/messages");
    check("/v1/chat/completions", NULL, NULL, NULL, NULL); /* not accepted: 404 as before */
    return tap_done();
}
