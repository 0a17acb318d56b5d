/* Unit tests for what each adapter takes for a credential: a single token
 * in the header (or query parameter) its API uses; an empty Bearer, a
 * header of another API or a value with spaces is none. Under [cache]
 * scope = shared any credential reads the cache, so none of these may
 * count. */
#include <stdio.h>
#include <string.h>

#include "engine/prov.h"
#include "tests/unit/tap.h"

typedef struct cred_case {
    const prov_ops *ops;
    const char *path, *query;
    const char *header, *value; /* one header, or NULL */
    const char *want;           /* the credential, or NULL for none */
} cred_case;

static const cred_case cases[] = {
    {&prov_openai, "/v1/chat/completions", "", "authorization", "Bearer sk-abc", "Bearer sk-abc"},
    {&prov_openai, "/v1/chat/completions", "", "authorization", "bearer sk-abc", "bearer sk-abc"},
    {&prov_openai, "/v1/chat/completions", "", "authorization", "Bearer ", NULL},
    {&prov_openai, "/v1/chat/completions", "", "authorization", "Bearer", NULL},
    {&prov_openai, "/v1/chat/completions", "", "authorization", "Bearer    ", NULL},
    {&prov_openai, "/v1/chat/completions", "", "authorization", "x", NULL},
    {&prov_openai, "/v1/chat/completions", "", "authorization", "Basic dXNlcjpwYXNz", NULL},
    {&prov_openai, "/v1/chat/completions", "", "authorization", "Bearer a b", NULL},
    {&prov_openai, "/v1/chat/completions", "", "api-key", "x", NULL},
    {&prov_openai, "/openai/deployments/d/chat/completions", "", "api-key", "0123abcd", "0123abcd"},
    {&prov_openai, "/openai/deployments/d/chat/completions", "", "api-key", "", NULL},
    {&prov_openai, "/openai/deployments/d/chat/completions", "", "api-key", "a b", NULL},
    {&prov_anthropic, "/v1/messages", "", "x-api-key", "sk-ant-1", "sk-ant-1"},
    {&prov_anthropic, "/v1/messages", "", "x-api-key", "", NULL},
    {&prov_anthropic, "/v1/messages", "", "x-api-key", " ", NULL},
    {&prov_anthropic, "/v1/messages", "", "authorization", "Bearer sk-ant-2", "sk-ant-2"},
    {&prov_anthropic, "/v1/messages", "", "authorization", "Bearer ", NULL},
    {&prov_anthropic, "/v1/messages", "", "authorization", "sk-ant-3", NULL},
    {&prov_gemini, "/v1beta/models/g:generateContent", "", "x-goog-api-key", "AIza1", "AIza1"},
    {&prov_gemini, "/v1beta/models/g:generateContent", "", "x-goog-api-key", "", NULL},
    {&prov_gemini, "/v1beta/models/g:generateContent", "key=AIza2", NULL, NULL, "AIza2"},
    {&prov_gemini, "/v1beta/models/g:generateContent", "key=", NULL, NULL, NULL},
    {&prov_gemini, "/v1beta/models/g:generateContent", "key=a+b", NULL, NULL, NULL},
    {&prov_ollama, "/api/chat", "", "authorization", "Bearer t", "Bearer t"},
    {&prov_ollama, "/api/chat", "", "authorization", "Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"},
    {&prov_ollama, "/api/chat", "", "authorization", "Bearer ", NULL},
    {&prov_ollama, "/api/chat", "", NULL, NULL, NULL},
};

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cred_case *c = &cases[i];
        rl_header h = {c->header, c->value};
        prov_request r = {.endpoint = "",
                          .method = "POST",
                          .path = c->path,
                          .query = c->query,
                          .headers = c->header ? &h : NULL,
                          .nheaders = c->header ? 1 : 0};
        char buf[256];
        const char *got = c->ops->credential(&r, buf, sizeof buf);
        char what[300];
        snprintf(what, sizeof what, "%s %s%s%s %s: \"%s\" -> %s", c->ops->format, c->path,
                 c->query[0] ? "?" : "", c->query, c->header ? c->header : "(no header)",
                 c->value ? c->value : "", c->want ? c->want : "none");
        is_str(got, c->want, what);
    }
    return tap_done();
}
