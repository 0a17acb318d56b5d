/* Unit tests for engine/promptcache: the client's request in, the exact
 * body sent upstream out, for Anthropic breakpoints and OpenAI's
 * prompt_cache_key; bodies that already carry their own hints, or whose
 * prefix is too short to be cached, go as they came. "@LONG@" in a case
 * stands for LONG_LEN bytes of prose, past PROMPTCACHE_MIN_BYTES alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/promptcache.h"
#include "tests/unit/tap.h"

#define LONG_LEN 4200

static char long_text[LONG_LEN + 1];

/* text with every "@LONG@" replaced by long_text (malloc'd). */
static char *expand(const char *text)
{
    size_t n = strlen(text) + 1;
    for (const char *p = text; (p = strstr(p, "@LONG@")); p += 6)
        n += LONG_LEN;
    char *out = malloc(n), *o = out;
    while (*text) {
        if (strncmp(text, "@LONG@", 6) == 0) {
            memcpy(o, long_text, LONG_LEN);
            o += LONG_LEN;
            text += 6;
        } else {
            *o++ = *text++;
        }
    }
    *o = 0;
    return out;
}

/* The body sent upstream for request under kind and scope; want NULL: the
 * request goes as it came. */
static void rewrites(promptcache_kind kind, const char *scope, const char *request,
                     const char *want, const char *what)
{
    char *in = expand(request), *expect = want ? expand(want) : NULL;
    rl_buf out;
    rl_buf_init(&out, 0);
    int changed = -1;
    rl_err err = promptcache_rewrite(kind, scope, in, strlen(in), &out, &changed);
    char label[200];
    snprintf(label, sizeof label, "%s: RL_OK", what);
    is_int(err, RL_OK, label);
    snprintf(label, sizeof label, "%s: %s", what, want ? "rewritten" : "unchanged");
    is_int(changed, want != NULL, label);
    snprintf(label, sizeof label, "%s: the exact upstream body", what);
    if (want)
        is_str(out.data, expect, label);
    else
        is_int(out.len, 0, label);
    rl_buf_release(&out);
    free(in);
    free(expect);
}

/* The prompt_cache_key set for request (the rewrite must set one). */
static void key_of(const char *scope, const char *request, char out[64])
{
    char *in = expand(request);
    rl_buf b;
    rl_buf_init(&b, 0);
    int changed = 0;
    out[0] = 0;
    if (promptcache_rewrite(PROMPTCACHE_OPENAI_CHAT, scope, in, strlen(in), &b, &changed) ==
            RL_OK &&
        changed) {
        const char *k = strstr(b.data, "\"prompt_cache_key\":\"");
        if (k)
            snprintf(out, 64, "%.38s", k + 20);
    }
    rl_buf_release(&b);
    free(in);
}

static void kinds(void)
{
    static const struct {
        upstream_type type;
        const char *endpoint;
        promptcache_kind want;
    } cases[] = {
        {UPSTREAM_TYPE_ANTHROPIC, "messages", PROMPTCACHE_ANTHROPIC},
        {UPSTREAM_TYPE_ANTHROPIC, "messages.count_tokens", PROMPTCACHE_NONE},
        {UPSTREAM_TYPE_OPENAI, "chat.completions", PROMPTCACHE_OPENAI_CHAT},
        {UPSTREAM_TYPE_OPENAI, "responses", PROMPTCACHE_OPENAI_RESPONSES},
        {UPSTREAM_TYPE_OPENAI, "embeddings", PROMPTCACHE_NONE},
        /* Servers that may refuse a field they do not know. */
        {UPSTREAM_TYPE_AZURE, "chat.completions", PROMPTCACHE_NONE},
        {UPSTREAM_TYPE_OPENAI_COMPATIBLE, "chat.completions", PROMPTCACHE_NONE},
        {UPSTREAM_TYPE_GEMINI, "generateContent", PROMPTCACHE_NONE},
        {UPSTREAM_TYPE_OLLAMA, "chat", PROMPTCACHE_NONE},
        {UPSTREAM_TYPE_OPENAI, NULL, PROMPTCACHE_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[120];
        snprintf(what, sizeof what, "kind of type %d, %s", (int)cases[i].type,
                 cases[i].endpoint ? cases[i].endpoint : "(none)");
        is_int(promptcache_kind_of(cases[i].type, cases[i].endpoint), cases[i].want, what);
    }
}

static void anthropic(void)
{
    const promptcache_kind A = PROMPTCACHE_ANTHROPIC;
    rewrites(A, "",
             "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,"
             "\"tools\":[{\"name\":\"a\",\"input_schema\":{}},"
             "{\"name\":\"b\",\"description\":\"@LONG@\",\"input_schema\":{}}],"
             "\"system\":\"You are terse.\","
             "\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},"
             "{\"role\":\"assistant\",\"content\":\"a1\"},"
             "{\"role\":\"user\",\"content\":\"q2\"}]}",
             "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,"
             "\"tools\":[{\"name\":\"a\",\"input_schema\":{}},"
             "{\"name\":\"b\",\"description\":\"@LONG@\",\"input_schema\":{},"
             "\"cache_control\":{\"type\":\"ephemeral\"}}],"
             "\"system\":[{\"type\":\"text\",\"text\":\"You are terse.\","
             "\"cache_control\":{\"type\":\"ephemeral\"}}],"
             "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q1\","
             "\"cache_control\":{\"type\":\"ephemeral\"}}]},"
             "{\"role\":\"assistant\",\"content\":\"a1\"},"
             "{\"role\":\"user\",\"content\":\"q2\"}]}",
             "tools, system and the last-but-one user turn");
    /* Tools short of the minimum: the first breakpoint is the system's. */
    rewrites(
        A, "",
        "{\"model\":\"m\",\"tools\":[{\"name\":\"a\",\"input_schema\":{}}],"
        "\"system\":[{\"type\":\"text\",\"text\":\"@LONG@\"},{\"type\":\"text\",\"text\":\"b\"}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"only\"}]}",
        "{\"model\":\"m\",\"tools\":[{\"name\":\"a\",\"input_schema\":{}}],"
        "\"system\":[{\"type\":\"text\",\"text\":\"@LONG@\"},{\"type\":\"text\",\"text\":\"b\","
        "\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"only\"}]}",
        "a short tool list gets none; the last system block does; one user turn gets none");
    /* The history alone is long: its last block (a tool result) is marked. */
    rewrites(A, "",
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"@LONG@\"},"
             "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
             "\"f\",\"input\":{}}]},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\","
             "\"content\":\"42\"}]},"
             "{\"role\":\"assistant\",\"content\":\"ok\"},"
             "{\"role\":\"user\",\"content\":\"next\"}]}",
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"@LONG@\"},"
             "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
             "\"f\",\"input\":{}}]},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\","
             "\"content\":\"42\",\"cache_control\":{\"type\":\"ephemeral\"}}]},"
             "{\"role\":\"assistant\",\"content\":\"ok\"},"
             "{\"role\":\"user\",\"content\":\"next\"}]}",
             "the last-but-one user turn's last block");
    rewrites(A, "",
             "{\"model\":\"m\",\"system\":[{\"type\":\"text\",\"text\":\"@LONG@\","
             "\"cache_control\":{\"type\":\"ephemeral\"}}],"
             "\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},"
             "{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":\"q2\"}]}",
             NULL, "the client's own cache_control: unchanged");
    rewrites(
        A, "",
        "{\"model\":\"m\",\"tools\":[{\"name\":\"b\",\"description\":\"@LONG@\","
        "\"input_schema\":{}}],\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"hi\",\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":\"1h\"}}]}]}",
        NULL, "a cache_control deep in a message: unchanged");
    rewrites(A, "",
             "{\"model\":\"m\",\"system\":\"short\",\"messages\":[{\"role\":\"user\",\"content\":"
             "\"q1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":"
             "\"q2\"}]}",
             NULL, "a prefix short of the minimum: unchanged");
    rewrites(A, "",
             "{\"model\":\"m\",\"system\":\"\",\"messages\":[{\"role\":\"user\",\"content\":"
             "[{\"type\":\"text\",\"text\":\"@LONG@\"},{\"type\":\"text\",\"text\":\"\"}]},"
             "{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":\"q2\"}]}",
             NULL, "an empty system and an empty last text block are never marked");
    rewrites(A, "", "[1,2]", NULL, "not an object: unchanged");
}

/* The keys below were computed apart (Python: SHA-256 over the
 * length-prefixed fields "relay-pck-v1", scope, canonical tools,
 * instructions and stable items), so a change in what the key hashes
 * shows here. */
static void openai(void)
{
    const promptcache_kind C = PROMPTCACHE_OPENAI_CHAT, R = PROMPTCACHE_OPENAI_RESPONSES;
    const char *chat = "{\"model\":\"gpt-4o\",\"temperature\":0.5,"
                       "\"messages\":[{\"role\":\"system\",\"content\":\"@LONG@\"},"
                       "{\"role\":\"user\",\"content\":\"q1\"},"
                       "{\"role\":\"assistant\",\"content\":\"a1\"},"
                       "{\"role\":\"user\",\"content\":\"q2\"}]}";
    rewrites(C, "cred:0123456789abcdef0123456789abcdef", chat,
             "{\"model\":\"gpt-4o\",\"temperature\":0.5,"
             "\"messages\":[{\"role\":\"system\",\"content\":\"@LONG@\"},"
             "{\"role\":\"user\",\"content\":\"q1\"},"
             "{\"role\":\"assistant\",\"content\":\"a1\"},"
             "{\"role\":\"user\",\"content\":\"q2\"}],"
             "\"prompt_cache_key\":\"relay-02356d6abc5882bc4666042f4a4933ae\"}",
             "chat: prompt_cache_key from the scope and the prefix");
    rewrites(C, "cred:0123456789abcdef0123456789abcdef",
             "{\"model\":\"gpt-4o\",\"prompt_cache_key\":\"mine\",\"messages\":[{\"role\":"
             "\"system\",\"content\":\"@LONG@\"},{\"role\":\"user\",\"content\":\"q\"}]}",
             NULL, "chat: the client's own prompt_cache_key: unchanged");
    rewrites(C, "shared",
             "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"@LONG@\"}]}",
             NULL, "chat: nothing before the last user turn: unchanged");
    rewrites(R, "tok:00000000000000000000000000000000",
             "{\"model\":\"gpt-4.1\",\"instructions\":\"@LONG@\",\"input\":\"hello\"}",
             "{\"model\":\"gpt-4.1\",\"instructions\":\"@LONG@\",\"input\":\"hello\","
             "\"prompt_cache_key\":\"relay-84055fee754ce4a635c2cbd739441e78\"}",
             "responses: instructions are the prefix");

    /* What the key depends on, and what it does not. */
    char a[64], b[64], c[64], d[64];
    key_of("cred:aa", chat, a);
    key_of("cred:bb", chat, b);
    key_of("cred:aa",
           "{\"model\":\"gpt-4o\",\"temperature\":0.5,"
           "\"messages\":[{\"role\":\"system\",\"content\":\"@LONG@\"},"
           "{\"role\":\"user\",\"content\":\"q1\"},"
           "{\"role\":\"assistant\",\"content\":\"a1\"},"
           "{\"role\":\"user\",\"content\":\"another question\"}]}",
           c);
    key_of("cred:aa",
           "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"@LONG@!\"},"
           "{\"role\":\"user\",\"content\":\"q1\"},"
           "{\"role\":\"assistant\",\"content\":\"a1\"},"
           "{\"role\":\"user\",\"content\":\"q2\"}]}",
           d);
    ok(a[0] && strcmp(a, b) != 0, "another scope: another key");
    is_str(c, a, "another last user turn: the same key");
    ok(d[0] && strcmp(d, a) != 0, "another system prompt: another key");
}

int main(void)
{
    for (int i = 0; i < LONG_LEN; i++)
        long_text[i] = "the quick brown fox jumps over a lazy dog "[i % 42];
    kinds();
    anthropic();
    openai();
    return tap_done();
}
