/*
 * The key's normalisations, one table per wire format (engine/prov_canon.h
 * and each adapter's volatile fields): pairs of request bodies that must
 * get the same canonical body (one request in two SDK call styles) and
 * pairs that must not (something that can change the answer). A new
 * normalisation adds its rows here.
 */
#include <string.h>

#include "engine/prov.h"
#include "tests/unit/tap.h"

typedef struct canon_case {
    const char *a, *b;
    int same;
    const char *why;
} canon_case;

/* The canonical body (and info) of body for prov at endpoint and path. */
static rl_err canonical(const prov_ops *prov, const char *endpoint, const char *path,
                        const char *body, rl_buf *out, prov_info *info)
{
    rl_buf parts, why;
    rl_buf_init(&parts, 0);
    rl_buf_init(&why, 0);
    prov_request r = {.endpoint = endpoint,
                      .method = "POST",
                      .path = path,
                      .query = "",
                      .body = body,
                      .body_len = strlen(body)};
    rl_err err = prov->inspect(&r, info, out, &parts, &why);
    rl_buf_release(&parts);
    rl_buf_release(&why);
    return err;
}

static void run(const char *name, const prov_ops *prov, const char *endpoint, const char *path,
                const canon_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rl_buf a, b;
        rl_buf_init(&a, 0);
        rl_buf_init(&b, 0);
        prov_info ia, ib;
        char what[256];
        snprintf(what, sizeof what, "%s: %s %s", name,
                 cases[i].same ? "same:" : "differ:", cases[i].why);
        int parsed = canonical(prov, endpoint, path, cases[i].a, &a, &ia) == RL_OK &&
                     canonical(prov, endpoint, path, cases[i].b, &b, &ib) == RL_OK;
        int same = parsed && a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
        if (!ok(parsed && same == cases[i].same, what))
            printf("#   a: %.*s\n#   b: %.*s\n", (int)a.len, a.data ? a.data : "", (int)b.len,
                   b.data ? b.data : "");
        rl_buf_release(&a);
        rl_buf_release(&b);
    }
}

#define RUN(name, prov, endpoint, path, cases)                                                     \
    run(name, prov, endpoint, path, cases, sizeof cases / sizeof cases[0])

#define OAI(rest)                                                                                  \
    "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]" rest "}"

static const canon_case openai_chat[] = {
    {OAI(""), "{\"messages\":[{\"content\":\"Hi\",\"role\":\"user\"}],\"model\":\"gpt-4o-mini\"}",
     1, "key order and whitespace (SDK call styles order keys differently)"},
    {OAI(",\"temperature\":0"), OAI(",\"temperature\":0.0"), 1, "0 and 0.0"},
    {OAI(",\"temperature\":0"), OAI(",\"temperature\":0e0"), 1, "0 and 0e0"},
    {OAI(",\"temperature\":0"), OAI(",\"temperature\":-0"), 1, "0 and -0"},
    {OAI(",\"temperature\":0"), OAI(",\"temperature\":-0.0"), 1, "0 and -0.0"},
    {OAI(",\"temperature\":1"), OAI(",\"temperature\":1.0"), 1, "1 and 1.0"},
    {OAI(",\"temperature\":0.7"), OAI(",\"temperature\":0.70"), 1, "0.7 and 0.70"},
    {OAI(",\"temperature\":0.7"), OAI(",\"temperature\":7e-1"), 1, "0.7 and 7e-1"},
    {OAI(",\"max_tokens\":100"), OAI(",\"max_tokens\":100.0"), 1, "an integer and its float"},
    {OAI(",\"max_tokens\":100"), OAI(",\"max_tokens\":1e2"), 1, "100 and 1e2"},
    {OAI(""), OAI(",\"n\":1"), 1, "n: 1 is the default"},
    {OAI(""), OAI(",\"n\":1.0"), 1, "n: 1.0 is the default too"},
    {OAI(""), OAI(",\"presence_penalty\":0"), 1, "presence_penalty: 0 is the default"},
    {OAI(""), OAI(",\"frequency_penalty\":0.0"), 1, "frequency_penalty: 0.0 is the default"},
    {OAI(""), OAI(",\"logprobs\":false"), 1, "logprobs: false is the default"},
    {OAI(""), OAI(",\"stream\":false"), 1, "stream: false"},
    {OAI(""), OAI(",\"stream\":true,\"stream_options\":{\"include_usage\":true}"), 1,
     "stream and stream_options (one entry answers both)"},
    {OAI(""), OAI(",\"prompt_cache_key\":\"s1\""), 1, "prompt_cache_key"},
    {OAI(""), OAI(",\"metadata\":{\"user_id\":\"session-1\"}"), 1, "metadata.user_id"},
    {OAI(""), OAI(",\"n\":2"), 0, "n: 2"},
    {OAI(""), OAI(",\"logprobs\":true"), 0, "logprobs: true"},
    {OAI(""), OAI(",\"presence_penalty\":0.5"), 0, "presence_penalty: 0.5"},
    {OAI(",\"temperature\":0.7"), OAI(",\"temperature\":0.71"), 0, "0.7 and 0.71"},
    {OAI(""), OAI(",\"temperature\":1"), 0,
     "temperature: 1 (OpenAI's default, not Ollama's /v1: 0.8)"},
    {OAI(""), OAI(",\"top_p\":1"), 0, "top_p: 1 (Ollama's /v1 default is 0.9)"},
    {OAI(""), OAI(",\"tools\":[]"), 0,
     "tools: [] (OpenAI refuses it: no cached answer hides that)"},
    {OAI(""), OAI(",\"parallel_tool_calls\":true"), 0,
     "parallel_tool_calls: true (refused without tools)"},
    {OAI(""), OAI(",\"seed\":1"), 0, "a seed"},
    {"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Use 1.0\"}]}",
     "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Use 1\"}]}", 0,
     "numbers in text"},
    {OAI(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{"
         "\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\",\"minimum\":1}}}}}]"),
     OAI(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{"
         "\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\",\"minimum\":1.0}}}}}]"),
     0, "numbers inside a tool schema (the model reads them as text)"},
    {OAI(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{"
         "\"properties\":{\"caf\xc3\xa9\":{}}}}}]"),
     OAI(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{"
         "\"properties\":{\"cafe\xcc\x81\":{}}}}}]"),
     0, "an NFC and an NFD key (the answer repeats the client's spelling)"},
    {OAI(""), "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi \"}]}",
     0, "a trailing space in a message"},
    {OAI(",\"user\":\"a\""), OAI(",\"user\":\"b\""), 0, "user"},
    {OAI(",\"metadata\":{\"team\":\"a\"}"), OAI(",\"metadata\":{\"team\":\"b\"}"), 0,
     "other metadata"},
};

static const canon_case openai_embeddings[] = {
    {"{\"model\":\"e\",\"input\":\"x\",\"dimensions\":256}",
     "{\"model\":\"e\",\"input\":\"x\",\"dimensions\":256.0}", 1, "dimensions 256 and 256.0"},
    {"{\"model\":\"e\",\"input\":\"x\"}", "{\"model\":\"e\",\"input\":\"x\",\"n\":1}", 0,
     "n is not an embeddings parameter: kept"},
    {"{\"model\":\"e\",\"input\":\"x\"}", "{\"model\":\"e\",\"input\":[\"x\"]}", 0,
     "a string and a list of one"},
};

#define ANT(rest)                                                                                  \
    "{\"model\":\"claude-x\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":"      \
    "\"Hi\"}]" rest "}"

static const canon_case anthropic[] = {
    {ANT(""), ANT(",\"stream\":false"), 1, "stream: false"},
    {ANT(""), ANT(",\"stream\":true"), 1, "stream: true (one entry answers both)"},
    {ANT(""), ANT(",\"tools\":[]"), 1, "tools: [] offers no tool"},
    {ANT(""), ANT(",\"stop_sequences\":[]"), 1, "stop_sequences: []"},
    {ANT(""), ANT(",\"metadata\":{\"user_id\":\"session\"}"), 1,
     "metadata.user_id (Claude Code's session)"},
    {ANT(",\"temperature\":0"), ANT(",\"temperature\":0.0"), 1, "0 and 0.0"},
    {ANT(",\"temperature\":1"), ANT(",\"temperature\":1.0"), 1, "1 and 1.0"},
    {ANT(",\"top_k\":5"), ANT(",\"top_k\":5.0"), 1, "top_k 5 and 5.0"},
    {ANT(""), ANT(",\"temperature\":1"), 0, "temperature: 1 spelled out (not normalised)"},
    {ANT(""), ANT(",\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}]"), 0,
     "a tool"},
    {ANT(""), ANT(",\"stop_sequences\":[\"x\"]"), 0, "a stop sequence"},
    {ANT(""), ANT(",\"system\":\"Be brief.\""), 0, "a system prompt"},
    {ANT(""),
     "{\"model\":\"claude-x\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":[{"
     "\"type\":\"text\",\"text\":\"Hi\"}]}]}",
     0, "a string and a text block (kept as sent)"},
};

#define GEM(rest) "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Hi\"}]}]" rest "}"

static const canon_case gemini[] = {
    {GEM(""), GEM(",\"tools\":[]"), 1, "tools: []"},
    {GEM(""), GEM(",\"safetySettings\":[]"), 1, "safetySettings: []"},
    {GEM(""), GEM(",\"generationConfig\":{}"), 1, "an empty generationConfig"},
    {GEM(""), GEM(",\"generationConfig\":{\"candidateCount\":1}"), 1, "candidateCount: 1"},
    {GEM(",\"generationConfig\":{\"temperature\":0}"),
     GEM(",\"generationConfig\":{\"temperature\":0.0}"), 1, "0 and 0.0 in generationConfig"},
    {GEM(",\"generationConfig\":{\"maxOutputTokens\":50}"),
     GEM(",\"generationConfig\":{\"maxOutputTokens\":5e1}"), 1, "50 and 5e1"},
    {GEM(""), GEM(",\"generationConfig\":{\"candidateCount\":2}"), 0, "candidateCount: 2"},
    {GEM(""), GEM(",\"generationConfig\":{\"temperature\":1}"), 0, "a temperature"},
    {GEM(""),
     GEM(",\"safetySettings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\",\"threshold\":"
         "\"BLOCK_NONE\"}]"),
     0, "a safety setting"},
    {GEM(""), GEM(",\"tools\":[{\"functionDeclarations\":[{\"name\":\"f\"}]}]"), 0, "a tool"},
};

#define OLL(rest)                                                                                  \
    "{\"model\":\"llama3\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]" rest "}"

static const canon_case ollama[] = {
    {OLL(",\"stream\":false"), OLL(",\"stream\":true"), 1, "stream"},
    {OLL(""), OLL(",\"keep_alive\":\"5m\""), 1, "keep_alive"},
    {OLL(",\"options\":{\"temperature\":0}"), OLL(",\"options\":{\"temperature\":0.0}"), 1,
     "0 and 0.0 in options"},
    {OLL(",\"options\":{\"num_predict\":64}"), OLL(",\"options\":{\"num_predict\":64.0}"), 1,
     "64 and 64.0 in options"},
    {OLL(""), OLL(",\"options\":{\"temperature\":0}"), 0, "a temperature"},
    {OLL(",\"options\":{\"seed\":1}"), OLL(",\"options\":{\"seed\":2}"), 0, "another seed"},
};

int main(void)
{
    RUN("openai chat", &prov_openai, "chat.completions", "/v1/chat/completions", openai_chat);
    RUN("openai embeddings", &prov_openai, "embeddings", "/v1/embeddings", openai_embeddings);
    RUN("anthropic", &prov_anthropic, "messages", "/v1/messages", anthropic);
    RUN("gemini", &prov_gemini, "generateContent",
        "/v1beta/models/gemini-2.0-flash:generateContent", gemini);
    RUN("ollama", &prov_ollama, "chat", "/api/chat", ollama);

    /* info->tools, for [upstream.X] cache_tools */
    rl_buf c;
    rl_buf_init(&c, 0);
    prov_info info;
    canonical(&prov_openai, "chat.completions", "/v1/chat/completions",
              OAI(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]"), &c, &info);
    ok(info.tools, "openai: a tool list offers tools");
    rl_buf_reset(&c);
    canonical(&prov_openai, "chat.completions", "/v1/chat/completions", OAI(",\"tools\":[]"), &c,
              &info);
    ok(!info.tools, "openai: an empty list offers none");
    rl_buf_reset(&c);
    canonical(&prov_anthropic, "messages", "/v1/messages",
              ANT(",\"tools\":[{\"name\":\"f\",\"input_schema\":{}}]"), &c, &info);
    ok(info.tools, "anthropic: a tool list offers tools");
    rl_buf_reset(&c);
    canonical(&prov_gemini, "generateContent", "/v1beta/models/g:generateContent",
              GEM(",\"tools\":[{\"functionDeclarations\":[]}]"), &c, &info);
    ok(info.tools, "gemini: a tool list offers tools");
    rl_buf_release(&c);
    return tap_done();
}
