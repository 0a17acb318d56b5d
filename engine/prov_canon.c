/* prov_canon.c — key normalisations of request bodies (see prov_canon.h). */
#include "engine/prov_canon.h"

#include <math.h>
#include <string.h>

/* Where a format keeps its parameters: the body itself (NULL), or one of
 * its objects. */
static const struct {
    const char *format, *object;
} parameter_objects[] = {
    {"openai", NULL}, {"anthropic", NULL},   {"gemini", NULL}, {"gemini", "generationConfig"},
    {"ollama", NULL}, {"ollama", "options"},
};

typedef enum { D_INT, D_FALSE, D_EMPTY_ARRAY, D_EMPTY_OBJECT } default_kind;

/*
 * Parameters whose documented default a client may spell out or leave
 * out: (format, endpoint or NULL for any, object or NULL for the body,
 * field, the default). Only defaults the API documents, and only where an
 * OpenAI-compatible server (vLLM, Ollama's /v1, which the openai format
 * also serves) has the same one — so not temperature or top_p, which
 * Ollama's /v1 defaults differently (0.8, 0.9).
 *
 * OpenAI (API reference, Create chat completion / Create completion):
 * "n ... Defaults to 1", "presence_penalty ... Defaults to 0",
 * "frequency_penalty ... Defaults to 0", "logprobs ... Defaults to false".
 * Not tools: [] — OpenAI refuses an empty list (400), and an answer from
 * the cache must not hide that.
 * Anthropic (Messages API): tools is optional and an empty list offers no
 * tool; stop_sequences likewise.
 * Gemini (GenerateContentRequest): tools and safetySettings are optional
 * lists, empty = none; generationConfig.candidateCount "Defaults to 1";
 * an empty generationConfig is none.
 */
static const struct {
    const char *format, *endpoint, *object, *field;
    default_kind kind;
    json_int_t value;
} defaults[] = {
    {"openai", "chat.completions", NULL, "n", D_INT, 1},
    {"openai", "completions", NULL, "n", D_INT, 1},
    {"openai", "chat.completions", NULL, "presence_penalty", D_INT, 0},
    {"openai", "completions", NULL, "presence_penalty", D_INT, 0},
    {"openai", "chat.completions", NULL, "frequency_penalty", D_INT, 0},
    {"openai", "completions", NULL, "frequency_penalty", D_INT, 0},
    {"openai", "chat.completions", NULL, "logprobs", D_FALSE, 0},
    {"anthropic", NULL, NULL, "tools", D_EMPTY_ARRAY, 0},
    {"anthropic", NULL, NULL, "stop_sequences", D_EMPTY_ARRAY, 0},
    {"gemini", NULL, NULL, "tools", D_EMPTY_ARRAY, 0},
    {"gemini", NULL, NULL, "safetySettings", D_EMPTY_ARRAY, 0},
    {"gemini", NULL, "generationConfig", "candidateCount", D_INT, 1},
    {"gemini", NULL, NULL, "generationConfig", D_EMPTY_OBJECT, 0},
};

/* The largest integer a double holds exactly: beyond it "1e300" is not
 * an integer anyone spelled. */
#define EXACT_LIMIT 9007199254740992.0

/* Replaces every float member of o that has no fraction (and -0.0) with
 * the integer of the same value. -1 when out of memory. */
static int integral_numbers(json_t *o)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(o, tmp, k, v)
    {
        if (!json_is_real(v))
            continue;
        double d = json_real_value(v);
        if (d != floor(d) || fabs(d) > EXACT_LIMIT)
            continue;
        if (json_object_set_new(o, k, json_integer((json_int_t)d)) != 0)
            return -1;
    }
    return 0;
}

static int is_default(json_t *v, default_kind kind, json_int_t value)
{
    switch (kind) {
    case D_INT:
        return json_is_integer(v) && json_integer_value(v) == value;
    case D_FALSE:
        return json_is_false(v);
    case D_EMPTY_ARRAY:
        return json_is_array(v) && json_array_size(v) == 0;
    case D_EMPTY_OBJECT:
        return json_is_object(v) && json_object_size(v) == 0;
    }
    return 0;
}

static int matches(const char *want, const char *have)
{
    return !want || (have && strcmp(want, have) == 0);
}

static json_t *parameters(json_t *root, const char *object)
{
    return object ? json_object_get(root, object) : root;
}

/* Whether the request offers the model tools: a non-empty list of them
 * (OpenAI's legacy "functions" too). */
static int offers_tools(json_t *root)
{
    json_t *t = json_object_get(root, "tools");
    json_t *f = json_object_get(root, "functions");
    return (json_is_array(t) && json_array_size(t) > 0) ||
           (json_is_array(f) && json_array_size(f) > 0);
}

rl_err prov_canon(json_t *root, const char *format, const char *endpoint, prov_info *info)
{
    if (!json_is_object(root))
        return RL_OK;
    info->tools = offers_tools(root);
    for (size_t i = 0; i < sizeof parameter_objects / sizeof parameter_objects[0]; i++) {
        json_t *o = parameters(root, parameter_objects[i].object);
        if (strcmp(parameter_objects[i].format, format) == 0 && json_is_object(o) &&
            integral_numbers(o) != 0)
            return RL_NOMEM;
    }
    /* In table order: candidateCount goes before the then empty
     * generationConfig is looked at. */
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (strcmp(defaults[i].format, format) != 0 || !matches(defaults[i].endpoint, endpoint))
            continue;
        json_t *o = parameters(root, defaults[i].object);
        if (json_is_object(o) &&
            is_default(json_object_get(o, defaults[i].field), defaults[i].kind, defaults[i].value))
            json_object_del(o, defaults[i].field);
    }
    return RL_OK;
}
