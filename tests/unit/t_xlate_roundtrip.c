/* The property every dialect's request translator should have: a rich
 * xl_request built in C, encoded by the dialect and decoded by the same
 * dialect, comes back field by field (JSON texts compared parsed).
 *
 * Each dialect adds a row to `cases` with a builder of the richest request
 * its format can say (what it cannot say, e.g. Ollama's tool_choice, stays
 * at its unset value); the comparison is shared. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/xlate.h"
#include "tests/unit/tap.h"

/* ---- the comparison ---- */

static int same_str(const char *a, const char *b)
{
    return (a && b) ? strcmp(a, b) == 0 : a == b;
}

/* Two JSON texts equal as documents (both NULL counts as equal). */
static int same_json(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    int same = ja && jb && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

#define SAME_STR(f, what)                                                                          \
    do {                                                                                           \
        if (!ok(same_str(a->f, b->f), what))                                                       \
            printf("#   built:   %s\n#   decoded: %s\n", a->f ? a->f : "(null)",                   \
                   b->f ? b->f : "(null)");                                                        \
    } while (0)
#define SAME_JSON(f, what)                                                                         \
    do {                                                                                           \
        if (!ok(same_json(a->f, b->f), what))                                                      \
            printf("#   built:   %s\n#   decoded: %s\n", a->f ? a->f : "(null)",                   \
                   b->f ? b->f : "(null)");                                                        \
    } while (0)

static void same_part(const xl_part *a, const xl_part *b, const char *where)
{
    char what[128];
    snprintf(what, sizeof what, "%s: kind", where);
    is_int(b->kind, a->kind, what);
    snprintf(what, sizeof what, "%s: text", where);
    SAME_STR(text, what);
    snprintf(what, sizeof what, "%s: media_type", where);
    SAME_STR(media_type, what);
    snprintf(what, sizeof what, "%s: data", where);
    SAME_STR(data, what);
    snprintf(what, sizeof what, "%s: url", where);
    SAME_STR(url, what);
    snprintf(what, sizeof what, "%s: id", where);
    SAME_STR(id, what);
    snprintf(what, sizeof what, "%s: name", where);
    SAME_STR(name, what);
    snprintf(what, sizeof what, "%s: arguments", where);
    SAME_JSON(arguments, what);
    snprintf(what, sizeof what, "%s: signature", where);
    SAME_STR(signature, what);
    snprintf(what, sizeof what, "%s: is_error", where);
    is_int(b->is_error, a->is_error, what);
    snprintf(what, sizeof what, "%s: redacted", where);
    is_int(b->redacted, a->redacted, what);
}

static void same_request(const xl_request *a, const xl_request *b, const char *name)
{
    char what[160];
#define W(s) (snprintf(what, sizeof what, "%s: %s", name, s), what)
    SAME_STR(model, W("model"));
    is_int(b->stream, a->stream, W("stream"));
    is_int(b->nsystem, a->nsystem, W("system parts"));
    for (size_t i = 0; i < a->nsystem && i < b->nsystem; i++) {
        char where[64];
        snprintf(where, sizeof where, "%s: system[%zu]", name, i);
        same_part(&a->system[i], &b->system[i], where);
    }
    is_int(b->nmessages, a->nmessages, W("turns"));
    for (size_t m = 0; m < a->nmessages && m < b->nmessages; m++) {
        const xl_message *ma = &a->messages[m], *mb = &b->messages[m];
        char where[64];
        snprintf(where, sizeof where, "%s: turn %zu role", name, m);
        is_int(mb->role, ma->role, where);
        snprintf(where, sizeof where, "%s: turn %zu parts", name, m);
        is_int(mb->nparts, ma->nparts, where);
        for (size_t p = 0; p < ma->nparts && p < mb->nparts; p++) {
            snprintf(where, sizeof where, "%s: turn %zu part %zu", name, m, p);
            same_part(&ma->parts[p], &mb->parts[p], where);
        }
    }
    is_int(b->ntools, a->ntools, W("tools"));
    for (size_t i = 0; i < a->ntools && i < b->ntools; i++) {
        const xl_tool *ta = &a->tools[i], *tb = &b->tools[i];
        ok(same_str(ta->name, tb->name), W("tool name"));
        ok(same_str(ta->description, tb->description), W("tool description"));
        ok(same_json(ta->parameters, tb->parameters), W("tool parameters"));
        is_int(tb->strict, ta->strict, W("tool strict"));
    }
    is_int(b->tool_choice, a->tool_choice, W("tool_choice"));
    SAME_STR(tool_choice_name, W("tool_choice_name"));
    is_int(b->parallel_tool_calls, a->parallel_tool_calls, W("parallel_tool_calls"));
    is_int(b->nstop, a->nstop, W("stop sequences"));
    for (size_t i = 0; i < a->nstop && i < b->nstop; i++)
        ok(same_str(a->stop[i], b->stop[i]), W("stop sequence"));
    is_int(b->max_tokens, a->max_tokens, W("max_tokens"));
    ok(b->temperature == a->temperature, W("temperature"));
    ok(b->top_p == a->top_p, W("top_p"));
    is_int(b->top_k, a->top_k, W("top_k"));
    if (a->features[XL_F_SEED])
        is_int(b->seed, a->seed, W("seed"));
    if (a->features[XL_F_PENALTIES]) {
        ok(b->presence_penalty == a->presence_penalty, W("presence_penalty"));
        ok(b->frequency_penalty == a->frequency_penalty, W("frequency_penalty"));
    }
    is_int(b->n, a->n, W("n"));
    is_int(b->format, a->format, W("format"));
    SAME_JSON(format_schema, W("format_schema"));
    SAME_STR(format_name, W("format_name"));
    SAME_STR(reasoning_effort, W("reasoning_effort"));
    is_int(b->thinking_budget, a->thinking_budget, W("thinking_budget"));
    SAME_STR(user, W("user"));
    /* Each dialect names features its own way: only which are used must
     * survive. */
    for (int f = 0; f < XL_FEATURES; f++) {
        char fw[64];
        snprintf(fw, sizeof fw, "feature %d", f);
        ok(!a->features[f] == !b->features[f], W(fw));
    }
#undef W
}

/* ---- the rich requests ---- */

#define PNG_B64 "iVBORw0KGgoAAAANSUhEUg=="

static xl_part ollama_system[] = {
    {.kind = XL_PART_TEXT, .text = "You are terse."},
    {.kind = XL_PART_TEXT, .text = "Answer in French."},
};
static xl_part ollama_user[] = {
    {.kind = XL_PART_TEXT, .text = "What is in this picture, and the weather in Oslo?"},
    {.kind = XL_PART_IMAGE, .media_type = "image/png", .data = PNG_B64},
};
static xl_part ollama_assistant[] = {
    {.kind = XL_PART_THINKING, .text = "Two tools at once."},
    {.kind = XL_PART_TEXT, .text = "Checking."},
    {.kind = XL_PART_TOOL_CALL,
     .id = "call_0",
     .name = "get_weather",
     .arguments = "{\"city\":\"Oslo\",\"units\":[\"C\"]}"},
    {.kind = XL_PART_TOOL_CALL, .id = "call_1", .name = "describe", .arguments = "{}"},
};
static xl_part ollama_results[] = {
    {.kind = XL_PART_TOOL_RESULT, .id = "call_0", .name = "get_weather", .text = "12C, rain"},
    {.kind = XL_PART_TOOL_RESULT, .id = "call_1", .name = "describe", .text = "a cat"},
};
static xl_part ollama_last[] = {{.kind = XL_PART_TEXT, .text = "Thanks \"quoted\" \u00e9"}};
static xl_message ollama_turns[] = {
    {XL_ROLE_USER, ollama_user, 2},
    {XL_ROLE_ASSISTANT, ollama_assistant, 4},
    {XL_ROLE_TOOL, ollama_results, 2},
    {XL_ROLE_USER, ollama_last, 1},
};
static xl_tool ollama_tools[] = {
    {.name = "get_weather",
     .description = "Weather of a city",
     .parameters = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
                   "\"units\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
                   "\"required\":[\"city\"]}",
     .strict = -1},
    {.name = "describe", .strict = -1},
};
static const char *ollama_stop[] = {"END", "###"};

static xl_request ollama_request(void)
{
    xl_request r = {
        .model = "qwen3:8b",
        .stream = 1,
        .system = ollama_system,
        .nsystem = 2,
        .messages = ollama_turns,
        .nmessages = 4,
        .tools = ollama_tools,
        .ntools = 2,
        .tool_choice = XL_CHOICE_UNSET,
        .parallel_tool_calls = -1,
        .stop = ollama_stop,
        .nstop = 2,
        .max_tokens = 512,
        .temperature = 0.25,
        .top_p = 0.5,
        .top_k = 40,
        .seed = 7,
        .presence_penalty = 0.5,
        .frequency_penalty = -0.25,
        .n = 1,
        .format = XL_FORMAT_JSON_SCHEMA,
        .format_schema = "{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"}}}",
        .reasoning_effort = "high",
        .thinking_budget = -1,
    };
    r.features[XL_F_TOP_K] = "top_k";
    r.features[XL_F_SEED] = "seed";
    r.features[XL_F_PENALTIES] = "presence_penalty";
    r.features[XL_F_JSON_SCHEMA] = "format";
    r.features[XL_F_IMAGE] = "images";
    r.features[XL_F_TOOLS] = "tools";
    r.features[XL_F_THINKING] = "think";
    r.features[XL_F_STOP] = "stop";
    return r;
}

/* OpenAI Chat: one system part (the encoder joins several into one
 * message), no THINKING (Chat takes no reasoning back), top_k unset (not
 * in its caps); everything else it can say, n and an image URL included. */
static xl_part chat_system[] = {{.kind = XL_PART_TEXT, .text = "You are terse."}};
static xl_part chat_user[] = {
    {.kind = XL_PART_TEXT, .text = "What is in these pictures, and the weather in Oslo?"},
    {.kind = XL_PART_IMAGE, .media_type = "image/png", .data = PNG_B64},
    {.kind = XL_PART_IMAGE, .url = "https://example.com/cat.jpg"},
};
static xl_part chat_assistant[] = {
    {.kind = XL_PART_TEXT, .text = "Checking."},
    {.kind = XL_PART_TOOL_CALL,
     .id = "call_abc",
     .name = "get_weather",
     .arguments = "{\"city\":\"Oslo\",\"units\":[\"C\"]}"},
    {.kind = XL_PART_TOOL_CALL, .id = "call_def", .name = "describe", .arguments = "{}"},
};
static xl_part chat_results[] = {
    {.kind = XL_PART_TOOL_RESULT, .id = "call_abc", .name = "get_weather", .text = "12C, rain"},
    {.kind = XL_PART_TOOL_RESULT, .id = "call_def", .name = "describe", .text = "a cat"},
};
static xl_message chat_turns[] = {
    {XL_ROLE_USER, chat_user, 3},
    {XL_ROLE_ASSISTANT, chat_assistant, 3},
    {XL_ROLE_TOOL, chat_results, 2},
    {XL_ROLE_USER, ollama_last, 1},
};
static xl_tool chat_tools[] = {
    {.name = "get_weather",
     .description = "Weather of a city",
     .parameters = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
                   "\"required\":[\"city\"]}",
     .strict = 1},
    {.name = "describe", .strict = -1},
};

static xl_request chat_request(void)
{
    xl_request r = {
        .model = "gpt-4o-mini",
        .stream = 1,
        .system = chat_system,
        .nsystem = 1,
        .messages = chat_turns,
        .nmessages = 4,
        .tools = chat_tools,
        .ntools = 2,
        .tool_choice = XL_CHOICE_NAMED,
        .tool_choice_name = "get_weather",
        .parallel_tool_calls = 0,
        .stop = ollama_stop,
        .nstop = 2,
        .max_tokens = 512,
        .temperature = 0.25,
        .top_p = 0.5,
        .top_k = -1,
        .seed = 7,
        .presence_penalty = 0.5,
        .frequency_penalty = -0.25,
        .n = 2,
        .format = XL_FORMAT_JSON_SCHEMA,
        .format_schema = "{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"}}}",
        .format_name = "answer",
        .format_strict = 1,
        .reasoning_effort = "high",
        .thinking_budget = -1,
        .user = "user-1",
    };
    r.features[XL_F_SEED] = "seed";
    r.features[XL_F_PENALTIES] = "presence_penalty";
    r.features[XL_F_CHOICES] = "n";
    r.features[XL_F_JSON_SCHEMA] = "response_format";
    r.features[XL_F_IMAGE] = "image_url";
    r.features[XL_F_IMAGE_URL] = "image_url.url";
    r.features[XL_F_TOOLS] = "tools";
    r.features[XL_F_PARALLEL_OFF] = "parallel_tool_calls";
    r.features[XL_F_THINKING] = "reasoning_effort";
    r.features[XL_F_STOP] = "stop";
    return r;
}

static const struct {
    const char *name;
    const xl_dialect *dialect;
    xl_request (*build)(void);
} cases[] = {
    {"ollama", &xl_ollama, ollama_request},
    {"openai chat", &xl_openai_chat, chat_request},
};

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const xl_dialect *d = cases[i].dialect;
        xl_request built = cases[i].build(), decoded;
        rl_buf body, path, why;
        rl_buf_init(&body, 0);
        rl_buf_init(&path, 0);
        rl_buf_init(&why, 0);
        rl_pool *pool = rl_pool_new();
        rl_err err = d->encode_request(&built, &body, &path, &why);
        is_int(err, RL_OK, cases[i].name);
        if (err == RL_OK)
            err = d->decode_request(body.data, body.len, NULL, pool, &decoded, &why);
        is_int(err, RL_OK, cases[i].name);
        if (err != RL_OK)
            printf("# %s\n# body: %s\n", why.data ? why.data : rl_err_text(err),
                   body.data ? body.data : "");
        else
            same_request(&built, &decoded, cases[i].name);
        /* Once more: decode∘encode is a fixed point of the bytes too. */
        rl_buf again;
        rl_buf_init(&again, 0);
        rl_buf_reset(&path);
        if (err == RL_OK)
            err = d->encode_request(&decoded, &again, &path, &why);
        is_int(err, RL_OK, cases[i].name);
        is_str(again.data, body.data, "the second encoding is byte for byte the first");
        rl_buf_release(&again);
        rl_buf_release(&body);
        rl_buf_release(&path);
        rl_buf_release(&why);
        rl_pool_free(pool);
    }
    return tap_done();
}
