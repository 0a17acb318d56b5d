/* Unit tests for prov_info.max_output: the most output tokens each format's
 * request allows, which a budget reserves before the call (issue 13). */
#include <stdio.h>
#include <string.h>

#include "engine/prov.h"
#include "tests/unit/tap.h"

typedef struct cap_case {
    const prov_ops *ops;
    const char *endpoint, *path, *body;
    long long want;
} cap_case;

#define CHAT "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define CLAUDE "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define GEMINI "\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}]"

static const cap_case cases[] = {
    {&prov_openai, "chat.completions", "/v1/chat/completions", "{" CHAT "}", -1},
    {&prov_openai, "chat.completions", "/v1/chat/completions", "{" CHAT ",\"max_tokens\":100}",
     100},
    {&prov_openai, "chat.completions", "/v1/chat/completions",
     "{" CHAT ",\"max_completion_tokens\":300,\"max_tokens\":100}", 300},
    {&prov_openai, "chat.completions", "/v1/chat/completions",
     "{" CHAT ",\"max_tokens\":100,\"n\":3}", 300},
    {&prov_openai, "chat.completions", "/v1/chat/completions", "{" CHAT ",\"max_tokens\":0}", -1},
    {&prov_openai, "chat.completions", "/v1/chat/completions", "{" CHAT ",\"max_tokens\":\"9\"}",
     -1},
    {&prov_openai, "responses", "/v1/responses",
     "{\"model\":\"m\",\"input\":\"hi\",\"max_output_tokens\":64}", 64},
    {&prov_openai, "completions", "/v1/completions",
     "{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":7}", 7},
    {&prov_openai, "embeddings", "/v1/embeddings", "{\"model\":\"m\",\"input\":\"hi\"}", 0},
    {&prov_openai, "models", "/v1/models", "", 0},
    {&prov_anthropic, "messages", "/v1/messages", "{" CLAUDE ",\"max_tokens\":1024}", 1024},
    {&prov_anthropic, "messages.count_tokens", "/v1/messages/count_tokens", "{" CLAUDE "}", 0},
    {&prov_gemini, "generateContent", "/v1beta/models/g:generateContent", "{" GEMINI "}", -1},
    {&prov_gemini, "generateContent", "/v1beta/models/g:generateContent",
     "{" GEMINI ",\"generationConfig\":{\"maxOutputTokens\":50,\"candidateCount\":2}}", 100},
    {&prov_gemini, "countTokens", "/v1beta/models/g:countTokens", "{" GEMINI "}", 0},
    {&prov_gemini, "embedContent", "/v1beta/models/g:embedContent",
     "{\"content\":{\"parts\":[{\"text\":\"hi\"}]}}", 0},
    {&prov_ollama, "chat", "/api/chat", "{" CHAT "}", -1},
    {&prov_ollama, "chat", "/api/chat", "{" CHAT ",\"options\":{\"num_predict\":42}}", 42},
    {&prov_ollama, "chat", "/api/chat", "{" CHAT ",\"options\":{\"num_predict\":-1}}", -1},
    {&prov_ollama, "generate", "/api/generate",
     "{\"model\":\"m\",\"prompt\":\"hi\",\"options\":{\"num_predict\":-2}}", -1},
    {&prov_ollama, "embed", "/api/embed", "{\"model\":\"m\",\"input\":\"hi\"}", 0},
};

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cap_case *c = &cases[i];
        rl_buf canon, parts, why;
        rl_buf_init(&canon, 0);
        rl_buf_init(&parts, 0);
        rl_buf_init(&why, 4096);
        prov_request r = {.endpoint = c->endpoint,
                          .method = strcmp(c->endpoint, "models") == 0 ? "GET" : "POST",
                          .path = c->path,
                          .query = "",
                          .body = c->body,
                          .body_len = strlen(c->body)};
        prov_info info;
        rl_err err = c->ops->inspect(&r, &info, &canon, &parts, &why);
        char what[300];
        snprintf(what, sizeof what, "%s %s %s: max_output %lld", c->ops->format, c->endpoint,
                 c->body, c->want);
        if (err != RL_OK) {
            ok(0, what);
            printf("#   inspect: %s %s\n", rl_err_text(err), why.data ? why.data : "");
        } else {
            is_int(info.max_output, c->want, what);
        }
        rl_buf_release(&canon);
        rl_buf_release(&parts);
        rl_buf_release(&why);
    }
    return tap_done();
}
