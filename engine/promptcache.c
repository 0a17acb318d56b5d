/*
 * promptcache.c — prompt-cache hints on the body sent upstream
 * (promptcache.h).
 */
#include "engine/promptcache.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/prov_json.h"
#include "store/base/rl_hex.h"

#define KEY_VERSION "relay-pck-v1" /* bump when what the key hashes changes */

promptcache_kind promptcache_kind_of(upstream_type type, const char *endpoint)
{
    static const struct {
        upstream_type type;
        const char *endpoint;
        promptcache_kind kind;
    } kinds[] = {
        {UPSTREAM_TYPE_ANTHROPIC, "messages", PROMPTCACHE_ANTHROPIC},
        {UPSTREAM_TYPE_OPENAI, "chat.completions", PROMPTCACHE_OPENAI_CHAT},
        {UPSTREAM_TYPE_OPENAI, "responses", PROMPTCACHE_OPENAI_RESPONSES},
    };
    for (size_t i = 0; endpoint && i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].type == type && strcmp(kinds[i].endpoint, endpoint) == 0)
            return kinds[i].kind;
    return PROMPTCACHE_NONE;
}

/* The size of j's compact JSON text (0 for NULL): what the prefix gate
 * weighs. */
static size_t json_size(const json_t *j)
{
    return j ? json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) : 0;
}

/* Whether j holds an object member named "cache_control" at any depth
 * (prov_json_load bounded the depth). */
static int has_cache_control(const json_t *j)
{
    const char *name;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach((json_t *)j, name, v) if (strcmp(name, "cache_control") == 0 ||
                                                      has_cache_control(v)) return 1;
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) if (has_cache_control(v)) return 1;
    }
    return 0;
}

/* The index of the last message of role "user" in msgs before end, or -1. */
static long last_user(const json_t *msgs, long end)
{
    for (long i = end - 1; i >= 0; i--) {
        const char *role =
            json_string_value(json_object_get(json_array_get(msgs, (size_t)i), "role"));
        if (role && strcmp(role, "user") == 0)
            return i;
    }
    return -1;
}

/* Marks block (an object of a message's or system's content) as a
 * breakpoint; 0 when it may not carry one (an empty text, a thinking
 * block), -1 out of memory, 1 when marked. */
static int mark_block(json_t *block)
{
    const char *type = json_string_value(json_object_get(block, "type"));
    if (!json_is_object(block) || !type || strcmp(type, "thinking") == 0 ||
        strcmp(type, "redacted_thinking") == 0)
        return 0;
    const char *text = json_string_value(json_object_get(block, "text"));
    if (strcmp(type, "text") == 0 && (!text || !text[0]))
        return 0;
    return json_object_set_new(block, "cache_control", json_pack("{s:s}", "type", "ephemeral")) ? -1
                                                                                                : 1;
}

/* Marks the last block of the content held at key of parent: a string
 * becomes one text block first. Same results as mark_block. */
static int mark_content(json_t *parent, const char *key)
{
    json_t *content = json_object_get(parent, key);
    if (json_is_string(content)) {
        if (!json_string_length(content))
            return 0;
        json_t *block = json_pack("[{s:s,s:O}]", "type", "text", "text", content);
        if (!block || json_object_set_new(parent, key, block))
            return -1;
        content = block;
    }
    if (!json_is_array(content) || !json_array_size(content))
        return 0;
    return mark_block(json_array_get(content, json_array_size(content) - 1));
}

/* Marks a tool definition (an object; custom tools may have no type). */
static int mark_tool(json_t *tool)
{
    if (!json_is_object(tool))
        return 0;
    return json_object_set_new(tool, "cache_control", json_pack("{s:s}", "type", "ephemeral")) ? -1
                                                                                               : 1;
}

/* Anthropic: breakpoints on the stable prefix (promptcache.h), in the
 * API's order: tools, system, messages. 1 when any was added, 0 none, -1
 * out of memory. */
static int anthropic_hints(json_t *body)
{
    if (has_cache_control(body))
        return 0;
    json_t *tools = json_object_get(body, "tools");
    json_t *msgs = json_object_get(body, "messages");
    int added = 0, r;
    size_t prefix = json_size(tools);
    if (json_is_array(tools) && json_array_size(tools) && prefix >= PROMPTCACHE_MIN_BYTES) {
        if ((r = mark_tool(json_array_get(tools, json_array_size(tools) - 1))) < 0)
            return -1;
        added |= r;
    }
    prefix += json_size(json_object_get(body, "system"));
    if (json_object_get(body, "system") && prefix >= PROMPTCACHE_MIN_BYTES) {
        if ((r = mark_content(body, "system")) < 0)
            return -1;
        added |= r;
    }
    /* The last-but-one user turn: everything up to it repeats in the next
     * request of the conversation; the last one does not. */
    long last = json_is_array(msgs) ? last_user(msgs, (long)json_array_size(msgs)) : -1;
    long before = last > 0 ? last_user(msgs, last) : -1;
    if (before >= 0) {
        for (long i = 0; i <= before; i++)
            prefix += json_size(json_array_get(msgs, (size_t)i));
        if (prefix >= PROMPTCACHE_MIN_BYTES) {
            if ((r = mark_content(json_array_get(msgs, (size_t)before), "content")) < 0)
                return -1;
            added |= r;
        }
    }
    return added;
}

/* Adds a length-prefixed field to the digest (as ckey.h does, so that no
 * two field lists hash alike). */
static int digest_field(EVP_MD_CTX *md, const void *p, size_t n)
{
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    return EVP_DigestUpdate(md, len, 4) == 1 && EVP_DigestUpdate(md, p, n) == 1 ? 0 : -1;
}

/* Adds j in canonical form ("" for NULL). */
static int digest_json(EVP_MD_CTX *md, const json_t *j)
{
    if (!j)
        return digest_field(md, "", 0);
    char *text = json_dumps(j, PROV_JSON_CANONICAL | JSON_ENCODE_ANY);
    int r = text ? digest_field(md, text, strlen(text)) : -1;
    free(text);
    return r;
}

/* OpenAI: prompt_cache_key from the scope and the stable prefix
 * (promptcache.h). items: the messages (chat) or input items (responses);
 * instructions: responses' own system text, or NULL. Same results as
 * anthropic_hints. */
static int openai_hints(json_t *body, const char *scope, json_t *items, const json_t *instructions)
{
    if (json_object_get(body, "prompt_cache_key"))
        return 0;
    json_t *tools = json_object_get(body, "tools");
    long last = json_is_array(items) ? last_user(items, (long)json_array_size(items)) : -1;
    size_t prefix = json_size(tools) + json_size(instructions);
    for (long i = 0; i < last; i++)
        prefix += json_size(json_array_get(items, (size_t)i));
    if (prefix < PROMPTCACHE_MIN_BYTES)
        return 0;
    json_t *stable = json_array();
    for (long i = 0; stable && i < last; i++)
        if (json_array_append(stable, json_array_get(items, (size_t)i)))
            json_decref(stable), stable = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int failed = !stable || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
                 digest_field(md, KEY_VERSION, strlen(KEY_VERSION)) ||
                 digest_field(md, scope, strlen(scope)) || digest_json(md, tools) ||
                 digest_json(md, instructions) || digest_json(md, stable) ||
                 EVP_DigestFinal_ex(md, digest, &dlen) != 1;
    EVP_MD_CTX_free(md);
    json_decref(stable);
    if (failed)
        return -1;
    /* 32 hex digits (128 bits): unique enough for a routing hint, and
     * short of the API's limit on the field. */
    char key[6 + 32 + 1] = "relay-";
    rl_hex_encode(digest, 16, key + 6);
    return json_object_set_new(body, "prompt_cache_key", json_string(key)) ? -1 : 1;
}

rl_err promptcache_rewrite(promptcache_kind kind, const char *scope, const char *body, size_t len,
                           rl_buf *out, int *changed)
{
    *changed = 0;
    if (kind == PROMPTCACHE_NONE)
        return RL_OK;
    json_error_t jerr;
    json_t *j = prov_json_load(body, len, &jerr);
    if (!j)
        return prov_json_failed(&jerr, RL_OK);
    int r = 0;
    if (!json_is_object(j))
        r = 0;
    else if (kind == PROMPTCACHE_ANTHROPIC)
        r = anthropic_hints(j);
    else if (kind == PROMPTCACHE_OPENAI_CHAT)
        r = openai_hints(j, scope, json_object_get(j, "messages"), NULL);
    else
        r = openai_hints(j, scope, json_object_get(j, "input"), json_object_get(j, "instructions"));
    rl_err err = r < 0 ? RL_NOMEM : RL_OK;
    if (r > 0) {
        size_t was = out->len;
        err = prov_json_dump(j, JSON_COMPACT, out);
        *changed = err == RL_OK && out->len > was;
    }
    json_decref(j);
    return err;
}

int promptcache_upstream_body(rl_pool *pool, const upstream_config *up, const char *endpoint,
                              const char *scope, const char **body, size_t *len)
{
    promptcache_kind kind = promptcache_kind_of(up->type, endpoint);
    if (!up->prompt_cache || kind == PROMPTCACHE_NONE || !*body)
        return 0;
    rl_buf out;
    rl_buf_init(&out, 0);
    int changed = 0;
    rl_err err = promptcache_rewrite(kind, scope ? scope : "", *body, *len, &out, &changed);
    if (err == RL_OK && changed) {
        char *copy = rl_pstrndup(pool, out.data, out.len);
        if (copy) {
            *body = copy;
            *len = out.len;
        } else {
            err = RL_NOMEM;
        }
    }
    rl_buf_release(&out);
    return err == RL_OK ? 0 : -1;
}
