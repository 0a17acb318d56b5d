/*
 * fuzzy_split.c — fuzzy_split (fuzzy.h): which strings of a request are
 * prose, per wire format and endpoint, and the hash of everything else.
 *
 * The canonical body is parsed with jansson; every prose string is moved
 * into the doc and replaced in the tree by one placeholder, and the tree
 * that is left (the "shape") is dumped with sorted keys and hashed with the
 * key salt. A rule decides from non-prose fields only (a message's role, a
 * part's type), and those stay in the shape, so two requests with equal
 * shapes have their prose in the same places.
 */
#include "engine/fuzzy.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* Never a prose text itself: it only marks where one was. */
#define PLACEHOLDER                                                                                \
    "\x1f"                                                                                         \
    "prose"

typedef struct collector {
    fuzzy_doc *doc;
    size_t cap;
    rl_err err;
} collector;

/* Moves the string value (borrowed from its container) into the doc. The
 * caller then replaces it in the tree. */
static void collect(collector *c, json_t *str)
{
    if (c->err != RL_OK)
        return;
    fuzzy_doc *d = c->doc;
    if (d->ntexts == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        char **texts = realloc(d->texts, cap * sizeof *texts);
        if (texts)
            d->texts = texts;
        size_t *lens = texts ? realloc(d->lens, cap * sizeof *lens) : NULL;
        if (!texts || !lens) {
            c->err = RL_NOMEM;
            return;
        }
        d->lens = lens;
        c->cap = cap;
    }
    size_t len = json_string_length(str);
    char *copy = malloc(len + 1);
    if (!copy) {
        c->err = RL_NOMEM;
        return;
    }
    memcpy(copy, json_string_value(str), len);
    copy[len] = '\0';
    d->texts[d->ntexts] = copy;
    d->lens[d->ntexts++] = len;
}

/* obj[key] when it is a string: taken as prose. */
static void take_key(collector *c, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return;
    collect(c, v);
    if (c->err == RL_OK && json_object_set_new(obj, key, json_string(PLACEHOLDER)) != 0)
        c->err = RL_NOMEM;
}

static void take_index(collector *c, json_t *arr, size_t i)
{
    collect(c, json_array_get(arr, i));
    if (c->err == RL_OK && json_array_set_new(arr, i, json_string(PLACEHOLDER)) != 0)
        c->err = RL_NOMEM;
}

static int in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* content[] parts: the "text" of those whose "type" is in types (types NULL:
 * any part with a "text" string and no "type", as Gemini's parts). */
static void take_parts(collector *c, json_t *parts, const char *const *types)
{
    size_t i;
    json_t *part;
    json_array_foreach(parts, i, part)
    {
        json_t *type = json_object_get(part, "type");
        if (types ? in_list(json_string_value(type), types) : type == NULL)
            take_key(c, part, "text");
    }
}

/* A message-like object's content: a string, or parts of the given types. */
static void take_content(collector *c, json_t *msg, const char *key, const char *const *types)
{
    json_t *content = json_object_get(msg, key);
    if (json_is_string(content))
        take_key(c, msg, key);
    else if (json_is_array(content))
        take_parts(c, content, types);
}

/* Roles whose text is written by a person or a model; a tool's output is
 * data (never prose). */
static const char *const chat_roles[] = {"system", "developer", "user", "assistant", NULL};
static const char *const text_parts[] = {"text", NULL};
static const char *const response_parts[] = {"input_text", "output_text", "text", NULL};

static void take_messages(collector *c, json_t *root, const char *const *types)
{
    size_t i;
    json_t *msg;
    json_array_foreach(json_object_get(root, "messages"), i,
                       msg) if (in_list(json_string_value(json_object_get(msg, "role")),
                                        chat_roles)) take_content(c, msg, "content", types);
}

static void openai_chat(collector *c, json_t *root)
{
    take_messages(c, root, text_parts);
}

static void openai_responses(collector *c, json_t *root)
{
    take_key(c, root, "instructions");
    json_t *input = json_object_get(root, "input");
    if (json_is_string(input)) {
        take_key(c, root, "input");
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach(input, i, item)
    {
        json_t *type = json_object_get(item, "type");
        if ((type == NULL ||
             in_list(json_string_value(type), (const char *const[]){"message", NULL})) &&
            in_list(json_string_value(json_object_get(item, "role")), chat_roles))
            take_content(c, item, "content", response_parts);
    }
}

static void openai_completions(collector *c, json_t *root)
{
    json_t *prompt = json_object_get(root, "prompt");
    if (json_is_string(prompt)) {
        take_key(c, root, "prompt");
        return;
    }
    size_t i;
    json_t *p;
    json_array_foreach(prompt, i, p) if (json_is_string(p)) take_index(c, prompt, i);
}

static void anthropic_messages(collector *c, json_t *root)
{
    take_content(c, root, "system", text_parts);
    take_messages(c, root, text_parts);
}

static void gemini_instruction(collector *c, json_t *root, const char *key)
{
    json_t *si = json_object_get(root, key);
    if (json_is_string(json_object_get(si, "text")))
        take_key(c, si, "text");
    take_parts(c, json_object_get(si, "parts"), NULL);
}

static void gemini_generate(collector *c, json_t *root)
{
    gemini_instruction(c, root, "systemInstruction");
    gemini_instruction(c, root, "system_instruction");
    size_t i;
    json_t *content;
    json_array_foreach(json_object_get(root, "contents"), i, content)
    {
        const char *role = json_string_value(json_object_get(content, "role"));
        if (!role || strcmp(role, "user") == 0 || strcmp(role, "model") == 0)
            take_parts(c, json_object_get(content, "parts"), NULL);
    }
}

static void ollama_chat(collector *c, json_t *root)
{
    take_messages(c, root, NULL);
}

static void ollama_generate(collector *c, json_t *root)
{
    take_key(c, root, "system");
    take_key(c, root, "prompt");
}

/* Where the prose is, per wire format and endpoint; any other endpoint has
 * none (embeddings and token counts must match exactly). */
static const struct prose_rule {
    const char *format;
    const char *endpoint;
    void (*take)(collector *c, json_t *root);
} prose_rules[] = {
    {"openai", "chat.completions", openai_chat},    {"openai", "responses", openai_responses},
    {"openai", "completions", openai_completions},  {"anthropic", "messages", anthropic_messages},
    {"gemini", "generateContent", gemini_generate}, {"ollama", "chat", ollama_chat},
    {"ollama", "generate", ollama_generate},
};

static const struct prose_rule *prose_rule(const char *format, const char *endpoint)
{
    for (size_t i = 0; i < sizeof prose_rules / sizeof prose_rules[0]; i++)
        if (strcmp(prose_rules[i].format, format) == 0 &&
            strcmp(prose_rules[i].endpoint, endpoint) == 0)
            return &prose_rules[i];
    return NULL;
}

static int has_visible_text(const fuzzy_doc *d)
{
    for (size_t i = 0; i < d->ntexts; i++)
        for (size_t j = 0; j < d->lens[i]; j++)
            if (!strchr(" \t\r\n\f\v", d->texts[i][j]))
                return 1;
    return 0;
}

static void put_field(EVP_MD_CTX *md, int *ok, const void *p, size_t len)
{
    unsigned char n[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8), (unsigned char)len};
    *ok = *ok && EVP_DigestUpdate(md, n, 4) && EVP_DigestUpdate(md, p, len);
}

/* SHA-256 over the length-prefixed format, endpoint, salt and shape: the
 * format and endpoint are in the salt already, hashed again so the shape
 * never depends on the caller building the salt right. */
static rl_err shape_hash(const char *format, const char *endpoint, const void *salt,
                         size_t salt_len, const char *shape, size_t shape_len,
                         uint8_t out[FUZZY_SHAPE_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    put_field(md, &ok, "relay-fuzzy-shape-v1", 20);
    put_field(md, &ok, format, strlen(format));
    put_field(md, &ok, endpoint, strlen(endpoint));
    put_field(md, &ok, salt, salt_len);
    put_field(md, &ok, shape, shape_len);
    ok = ok && EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
    return ok ? RL_OK : RL_NOMEM;
}

rl_err fuzzy_split(const char *format, const char *endpoint, const char *canonical, size_t len,
                   const void *key_salt, size_t salt_len, fuzzy_doc *out)
{
    memset(out, 0, sizeof *out);
    const struct prose_rule *rule = prose_rule(format, endpoint);
    if (!rule)
        return RL_NOTFOUND;
    json_error_t jerr;
    json_t *root = json_loadb(canonical, len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return json_error_code(&jerr) == json_error_out_of_memory ? RL_NOMEM : RL_BAD_JSON;
    collector c = {out, 0, RL_OK};
    char *shape = NULL;
    if (json_is_object(root))
        rule->take(&c, root);
    rl_err err = c.err;
    if (err == RL_OK && !has_visible_text(out))
        err = RL_NOTFOUND;
    if (err == RL_OK) {
        shape = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        err = shape ? shape_hash(format, endpoint, key_salt, salt_len, shape, strlen(shape),
                                 out->shape)
                    : RL_NOMEM;
    }
    free(shape);
    json_decref(root);
    if (err != RL_OK)
        fuzzy_doc_release(out);
    return err;
}
