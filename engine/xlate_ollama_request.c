/*
 * xlate_ollama_request.c — the request side of the Ollama /api/chat dialect
 * of the translation model (xlate.h). This file decodes client requests
 * (decode_request, client -> model); xlate_ollama_request_encode.c writes
 * upstream requests (encode_request, model -> Ollama). Answers, upstream
 * errors and the NDJSON streams are in xlate_ollama.c (which holds the
 * xl_ollama table); what the files share is declared in xlate_ollama_int.h.
 *
 * What maps to what (Ollama field -> model):
 *   model                       model
 *   stream (default TRUE)       stream (written explicitly upstream)
 *   messages[] role system      system TEXT parts (leading system messages
 *                               only: the model has one system prompt, so a
 *                               system message after the conversation began
 *                               is refused rather than moved)
 *   role user content, images   TEXT, then one IMAGE per images[] entry: raw
 *                               base64 whose media type is sniffed from its
 *                               magic bytes (PNG, JPEG, GIF, WEBP; others
 *                               refused), or a base64 data: URL
 *   role assistant thinking,    THINKING, TEXT, TOOL_CALLs. Ollama's calls
 *     content, tool_calls       may lack ids: they get xlate_tool_id in
 *                               conversation order (call_0, call_1, ...), so
 *                               the same request always gets the same ids
 *   role tool content,          TOOL_RESULT; consecutive tool messages form
 *     tool_name, tool_call_id   one tool turn. Without tool_call_id a result
 *                               answers the calls of the assistant turn before
 *                               it in order (by tool_name when given)
 *   tools[] type function       tools (name, description, parameters)
 *   format "json" / schema      XL_FORMAT_JSON_OBJECT / JSON_SCHEMA
 *   options.temperature, top_p, top_k, seed, num_predict (max tokens; -1
 *     and -2 mean none), stop, presence_penalty, frequency_penalty
 *   think true / "low" ...      reasoning_effort ("medium" for true); false
 *                               is no request for reasoning
 * Skipped (they do not change the answer): keep_alive, logprobs false, and
 * the runner options that place the model in memory (num_thread, num_gpu,
 * main_gpu, num_batch, numa, low_vram, f16_kv, use_mmap, use_mlock,
 * vocab_only, logits_all, embedding_only).
 * Refused with 400 naming the field: other options (num_ctx, num_keep,
 * repeat_penalty, repeat_last_n, min_p, tfs_z, typical_p, mirostat*,
 * penalize_newline: the other formats have no place for them), logprobs
 * true / top_logprobs, tools of another type, any unknown field.
 */
#include "engine/xlate_ollama_int.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- decoding a client's request --------------------------------------- */

typedef struct dec_ctx {
    rl_pool *pool;
    xl_request *req;
    rl_buf *why;
    int ncalls;              /* tool calls so far in the conversation (their ids) */
    xl_part *calls;          /* the TOOL_CALLs of the last assistant turn */
    size_t ncalls_turn;      /* how many */
    unsigned char *answered; /* which of them a tool message answered */
    json_t *all;             /* the request's messages (borrowed) */
} dec_ctx;

static rl_err refuse(dec_ctx *c, const char *field, const char *reason)
{
    rl_buf_printf(c->why, "`%s` cannot be translated: %s", field, reason);
    return RL_BAD_REQUEST;
}

#define NOMEM_IF(x)                                                                                \
    do {                                                                                           \
        if (!(x))                                                                                  \
            return RL_NOMEM;                                                                       \
    } while (0)

/* Image magic bytes, read from the first 12 decoded bytes of the base64. */
static const struct {
    const char *magic;
    size_t offset, len;
    const char *media_type;
} image_magic[] = {
    {"\x89PNG\r\n\x1a\n", 0, 8, "image/png"},
    {"\xff\xd8\xff", 0, 3, "image/jpeg"},
    {"GIF8", 0, 4, "image/gif"},
    {"WEBP", 8, 4, "image/webp"}, /* after "RIFF" and the size */
};

static int b64_value(char ch)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = ch ? strchr(alphabet, ch) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

/* The media type of base64 image data by its magic bytes, or NULL. */
static const char *sniff_image(const char *b64)
{
    unsigned char head[12];
    size_t n = 0;
    for (size_t i = 0; n + 3 <= sizeof head; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            if ((v[k] = b64_value(b64[i + k])) < 0)
                return NULL; /* too short, or not base64 (padding comes later) */
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        head[n++] = (unsigned char)(w >> 16);
        head[n++] = (unsigned char)(w >> 8);
        head[n++] = (unsigned char)w;
    }
    for (size_t i = 0; i < sizeof image_magic / sizeof image_magic[0]; i++)
        if (memcmp(head + image_magic[i].offset, image_magic[i].magic, image_magic[i].len) == 0)
            return image_magic[i].media_type;
    return NULL;
}

/* The keys a message may have, one bit each, and which role allows which. */
enum {
    MK_ROLE = 1,
    MK_CONTENT = 2,
    MK_IMAGES = 4,
    MK_TOOL_CALLS = 8,
    MK_THINKING = 16,
    MK_TOOL_NAME = 32,
    MK_TOOL_CALL_ID = 64,
};

static const struct {
    const char *key;
    unsigned bit;
} message_keys[] = {
    {"role", MK_ROLE},
    {"content", MK_CONTENT},
    {"images", MK_IMAGES},
    {"tool_calls", MK_TOOL_CALLS},
    {"thinking", MK_THINKING},
    {"tool_name", MK_TOOL_NAME},
    {"tool_call_id", MK_TOOL_CALL_ID},
};

typedef rl_err (*message_fn)(dec_ctx *c, size_t i, json_t *msg, const char *content);

static rl_err dec_system(dec_ctx *c, size_t i, json_t *msg, const char *content);
static rl_err dec_user(dec_ctx *c, size_t i, json_t *msg, const char *content);
static rl_err dec_assistant(dec_ctx *c, size_t i, json_t *msg, const char *content);
static rl_err dec_tool(dec_ctx *c, size_t i, json_t *msg, const char *content);

static const struct {
    const char *role;
    unsigned allowed;
    message_fn fn;
} roles[] = {
    {"system", MK_ROLE | MK_CONTENT, dec_system},
    {"user", MK_ROLE | MK_CONTENT | MK_IMAGES, dec_user},
    {"assistant", MK_ROLE | MK_CONTENT | MK_THINKING | MK_TOOL_CALLS, dec_assistant},
    {"tool", MK_ROLE | MK_CONTENT | MK_TOOL_NAME | MK_TOOL_CALL_ID, dec_tool},
};

static xl_message *new_message(dec_ctx *c, xl_role role, size_t max_parts)
{
    xl_message *m = &c->req->messages[c->req->nmessages];
    m->role = role;
    m->parts = rl_palloc(c->pool, (max_parts ? max_parts : 1) * sizeof *m->parts);
    if (!m->parts)
        return NULL;
    c->req->nmessages++;
    return m;
}

static rl_err dec_system(dec_ctx *c, size_t i, json_t *msg, const char *content)
{
    (void)msg;
    if (c->req->nmessages > 0) {
        char field[48];
        snprintf(field, sizeof field, "messages[%zu]", i);
        return refuse(c, field,
                      "a system message after the conversation began has no place in the other "
                      "formats (only leading system messages become the system prompt).");
    }
    xl_part *p = &c->req->system[c->req->nsystem++];
    p->kind = XL_PART_TEXT;
    NOMEM_IF(p->text = rl_pstrdup(c->pool, content));
    return RL_OK;
}

static rl_err dec_user(dec_ctx *c, size_t i, json_t *msg, const char *content)
{
    json_t *images = json_object_get(msg, "images");
    char field[64];
    if (images && !json_is_array(images) && !json_is_null(images)) {
        snprintf(field, sizeof field, "messages[%zu].images", i);
        return refuse(c, field, "it must be an array of base64 strings.");
    }
    size_t nimages = json_array_size(images);
    xl_message *m = new_message(c, XL_ROLE_USER, 1 + nimages);
    NOMEM_IF(m);
    if (content[0] || nimages == 0) {
        xl_part *p = &m->parts[m->nparts++];
        p->kind = XL_PART_TEXT;
        NOMEM_IF(p->text = rl_pstrdup(c->pool, content));
    }
    for (size_t k = 0; k < nimages; k++) {
        json_t *img = json_array_get(images, k);
        const char *s = json_string_value(img);
        xl_part *p = &m->parts[m->nparts];
        p->kind = XL_PART_IMAGE;
        snprintf(field, sizeof field, "messages[%zu].images[%zu]", i, k);
        if (!s)
            return refuse(c, field, "it must be a base64 string.");
        if (xlate_data_url(c->pool, s, &p->media_type, &p->data) == 0) {
            /* Images only, as sniff_image below (found by fuzz_xlate: a
             * data:impng URL reached Gemini as an image). */
            if (strncasecmp(p->media_type, "image/", 6) != 0)
                return refuse(c, field, "a data: URL must hold an image to be translated.");
            m->nparts++;
            continue;
        }
        if (!(p->media_type = sniff_image(s)))
            return refuse(c, field,
                          "not a PNG, JPEG, GIF or WEBP image in base64, the types the other "
                          "formats take.");
        NOMEM_IF(p->data = rl_pstrdup(c->pool, s));
        m->nparts++;
    }
    if (nimages)
        c->req->features[XL_F_IMAGE] = "images";
    return RL_OK;
}

/* One of an assistant message's tool_calls as a TOOL_CALL part. */
static rl_err dec_tool_call(dec_ctx *c, size_t i, size_t k, json_t *call, xl_part *p)
{
    char field[80];
    snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu]", i, k);
    json_t *fn = json_object_get(call, "function");
    json_t *name = json_object_get(fn, "name");
    if (!json_is_object(call) || !json_is_string(name))
        return refuse(c, field, "a tool call is {\"function\": {\"name\", \"arguments\"}}.");
    const char *key;
    json_t *v;
    json_object_foreach(call, key, v)
    {
        if (strcmp(key, "function") != 0 && strcmp(key, "id") != 0 && strcmp(key, "type") != 0) {
            snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu].%s", i, k, key);
            return refuse(c, field, "the other formats have no place for it.");
        }
    }
    json_t *args = json_object_get(fn, "arguments");
    json_t *parsed = NULL;
    if (json_is_string(args)) /* some clients send OpenAI's string form */
        args = parsed = prov_json_load(json_string_value(args), json_string_length(args), NULL);
    if (args && !json_is_null(args) && !json_is_object(args)) {
        json_decref(parsed);
        return refuse(c, field, "its function.arguments must be a JSON object.");
    }
    p->kind = XL_PART_TOOL_CALL;
    p->name = rl_pstrdup(c->pool, json_string_value(name));
    p->arguments =
        json_is_object(args) ? ollama_json_text(c->pool, args) : rl_pstrdup(c->pool, "{}");
    json_decref(parsed);
    json_t *id = json_object_get(call, "id");
    p->id = json_is_string(id) && json_string_length(id)
                ? rl_pstrdup(c->pool, json_string_value(id))
                : xlate_tool_id(c->pool, c->ncalls);
    c->ncalls++;
    return p->name && p->arguments && p->id ? RL_OK : RL_NOMEM;
}

static rl_err dec_assistant(dec_ctx *c, size_t i, json_t *msg, const char *content)
{
    json_t *calls = json_object_get(msg, "tool_calls");
    json_t *thinking = json_object_get(msg, "thinking");
    char field[64];
    if (calls && !json_is_array(calls) && !json_is_null(calls)) {
        snprintf(field, sizeof field, "messages[%zu].tool_calls", i);
        return refuse(c, field, "it must be an array.");
    }
    if (thinking && !json_is_string(thinking) && !json_is_null(thinking)) {
        snprintf(field, sizeof field, "messages[%zu].thinking", i);
        return refuse(c, field, "it must be a string.");
    }
    size_t ncalls = json_array_size(calls);
    xl_message *m = new_message(c, XL_ROLE_ASSISTANT, 2 + ncalls);
    NOMEM_IF(m);
    if (json_string_length(thinking)) {
        xl_part *p = &m->parts[m->nparts++];
        p->kind = XL_PART_THINKING;
        NOMEM_IF(p->text = rl_pstrdup(c->pool, json_string_value(thinking)));
    }
    if (content[0] || (ncalls == 0 && m->nparts == 0)) {
        xl_part *p = &m->parts[m->nparts++];
        p->kind = XL_PART_TEXT;
        NOMEM_IF(p->text = rl_pstrdup(c->pool, content));
    }
    c->calls = &m->parts[m->nparts];
    c->ncalls_turn = ncalls;
    NOMEM_IF(c->answered = rl_palloc(c->pool, ncalls + 1));
    for (size_t k = 0; k < ncalls; k++) {
        rl_err err = dec_tool_call(c, i, k, json_array_get(calls, k), &m->parts[m->nparts]);
        if (err != RL_OK)
            return err;
        m->nparts++;
    }
    return RL_OK;
}

/* The call of the last assistant turn a tool message answers: by its id,
 * else the first unanswered one (with that name when named); -1 none. */
static long pair_call(dec_ctx *c, const char *id, const char *name)
{
    for (size_t k = 0; k < c->ncalls_turn; k++) {
        const xl_part *call = &c->calls[k];
        int match = id ? strcmp(call->id, id) == 0
                       : !c->answered[k] && (!name || strcmp(call->name, name) == 0);
        if (match)
            return (long)k;
    }
    return -1;
}

static rl_err dec_tool(dec_ctx *c, size_t i, json_t *msg, const char *content)
{
    const char *id = json_string_value(json_object_get(msg, "tool_call_id"));
    const char *name = json_string_value(json_object_get(msg, "tool_name"));
    long k = pair_call(c, id, name);
    if (k < 0 && !id) {
        char field[48];
        snprintf(field, sizeof field, "messages[%zu]", i);
        return refuse(c, field,
                      "this tool message answers no tool call of the assistant message before "
                      "it, and the other formats pair every tool result with its call.");
    }
    if (k >= 0)
        c->answered[k] = 1;
    /* Consecutive tool messages are one tool turn (Anthropic's one user
     * turn of tool_result blocks; encoders split it where needed). */
    xl_request *req = c->req;
    xl_message *m = req->nmessages ? &req->messages[req->nmessages - 1] : NULL;
    if (!m || m->role != XL_ROLE_TOOL) {
        /* room for this message and the tool messages right after it */
        size_t run = 1;
        while (i + run < json_array_size(c->all)) {
            const char *role =
                json_string_value(json_object_get(json_array_get(c->all, i + run), "role"));
            if (!role || strcmp(role, "tool") != 0)
                break;
            run++;
        }
        NOMEM_IF(m = new_message(c, XL_ROLE_TOOL, run));
    }
    xl_part *p = &m->parts[m->nparts++];
    p->kind = XL_PART_TOOL_RESULT;
    NOMEM_IF(p->text = rl_pstrdup(c->pool, content));
    NOMEM_IF(p->id = id ? rl_pstrdup(c->pool, id) : c->calls[k].id);
    /* A result named neither by tool_name nor by a call of the last turn
     * is named by xlate_pair_tool_results at the end (or refused there). */
    p->name = name ? rl_pstrdup(c->pool, name) : k >= 0 ? c->calls[k].name : NULL;
    return name && !p->name ? RL_NOMEM : RL_OK;
}

static rl_err dec_message(dec_ctx *c, size_t i, json_t *msg)
{
    char field[64];
    snprintf(field, sizeof field, "messages[%zu]", i);
    if (!json_is_object(msg))
        return refuse(c, field, "a message must be an object.");
    const char *role = json_string_value(json_object_get(msg, "role"));
    size_t r = 0;
    while (r < sizeof roles / sizeof roles[0] && (!role || strcmp(roles[r].role, role) != 0))
        r++;
    if (r == sizeof roles / sizeof roles[0]) {
        snprintf(field, sizeof field, "messages[%zu].role", i);
        return refuse(c, field, "the role must be system, user, assistant or tool.");
    }
    const char *key;
    json_t *v;
    json_object_foreach(msg, key, v)
    {
        size_t k = 0;
        while (k < sizeof message_keys / sizeof message_keys[0] &&
               strcmp(message_keys[k].key, key) != 0)
            k++;
        int known = k < sizeof message_keys / sizeof message_keys[0];
        if (json_is_null(v) && known)
            continue; /* Go's zero value: as if absent */
        if (!known || !(roles[r].allowed & message_keys[k].bit)) {
            snprintf(field, sizeof field, "messages[%zu].%s", i, key);
            return refuse(c, field, "the other formats have no place for it in this role.");
        }
    }
    json_t *content = json_object_get(msg, "content");
    if (content && !json_is_string(content) && !json_is_null(content)) {
        snprintf(field, sizeof field, "messages[%zu].content", i);
        return refuse(c, field, "Ollama's content is a string.");
    }
    return roles[r].fn(c, i, msg, json_is_string(content) ? json_string_value(content) : "");
}

static rl_err dec_messages(dec_ctx *c, json_t *v)
{
    if (!json_is_array(v))
        return refuse(c, "messages", "it must be an array.");
    size_t n = json_array_size(v);
    c->all = v;
    NOMEM_IF(c->req->messages = rl_palloc(c->pool, (n + 1) * sizeof *c->req->messages));
    NOMEM_IF(c->req->system = rl_palloc(c->pool, (n + 1) * sizeof *c->req->system));
    for (size_t i = 0; i < n; i++) {
        rl_err err = dec_message(c, i, json_array_get(v, i));
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

static rl_err dec_tools(dec_ctx *c, json_t *v)
{
    if (!json_is_array(v))
        return refuse(c, "tools", "it must be an array.");
    size_t n = json_array_size(v);
    NOMEM_IF(c->req->tools = rl_palloc(c->pool, (n + 1) * sizeof *c->req->tools));
    for (size_t i = 0; i < n; i++) {
        json_t *tool = json_array_get(v, i);
        json_t *fn = json_object_get(tool, "function");
        const char *type = json_string_value(json_object_get(tool, "type"));
        char field[48];
        snprintf(field, sizeof field, "tools[%zu]", i);
        if (!json_is_object(tool) || (type && strcmp(type, "function") != 0) ||
            !json_is_string(json_object_get(fn, "name")))
            return refuse(c, field, "only function tools with a name translate.");
        xl_tool *t = &c->req->tools[c->req->ntools++];
        const char *desc = json_string_value(json_object_get(fn, "description"));
        json_t *params = json_object_get(fn, "parameters");
        t->strict = -1;
        NOMEM_IF(t->name = rl_pstrdup(c->pool, json_string_value(json_object_get(fn, "name"))));
        NOMEM_IF(!desc || (t->description = rl_pstrdup(c->pool, desc)));
        if (params && !json_is_null(params)) {
            if (!json_is_object(params)) {
                snprintf(field, sizeof field, "tools[%zu].function.parameters", i);
                return refuse(c, field, "a tool's parameters are a JSON schema object.");
            }
            NOMEM_IF(t->parameters = ollama_json_text(c->pool, params));
        }
    }
    if (n)
        c->req->features[XL_F_TOOLS] = "tools";
    return RL_OK;
}

static rl_err dec_format(dec_ctx *c, json_t *v)
{
    if (json_is_string(v) && strcmp(json_string_value(v), "json") == 0) {
        c->req->format = XL_FORMAT_JSON_OBJECT;
        c->req->features[XL_F_JSON_OBJECT] = "format";
        return RL_OK;
    }
    if (json_is_string(v) && json_string_length(v) == 0)
        return RL_OK;
    if (!json_is_object(v))
        return refuse(c, "format", "it must be \"json\" or a JSON schema object.");
    c->req->format = XL_FORMAT_JSON_SCHEMA;
    c->req->features[XL_F_JSON_SCHEMA] = "format";
    NOMEM_IF(c->req->format_schema = ollama_json_text(c->pool, v));
    return RL_OK;
}

static rl_err dec_stream(dec_ctx *c, json_t *v)
{
    if (!json_is_boolean(v))
        return refuse(c, "stream", "it must be a boolean.");
    c->req->stream = json_is_true(v);
    return RL_OK;
}

/* think: a boolean, or gpt-oss's levels. true asks for reasoning at no
 * particular level: "medium", the middle of the shared effort table. */
static rl_err dec_think(dec_ctx *c, json_t *v)
{
    static const char *const levels[] = {"low", "medium", "high"};
    const char *effort = json_is_true(v) ? "medium" : NULL;
    for (size_t i = 0; json_is_string(v) && i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(json_string_value(v), levels[i]) == 0)
            effort = levels[i];
    if (!effort && !json_is_false(v))
        return refuse(c, "think", "it must be a boolean or \"low\", \"medium\", \"high\".");
    if (effort) {
        c->req->reasoning_effort = effort;
        c->req->features[XL_F_THINKING] = "think";
    }
    return RL_OK;
}

static rl_err dec_logprobs(dec_ctx *c, json_t *v)
{
    return json_is_false(v) ? RL_OK
                            : refuse(c, "logprobs", "the other formats' answers carry none.");
}

static rl_err dec_top_logprobs(dec_ctx *c, json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) == 0
               ? RL_OK
               : refuse(c, "top_logprobs", "the other formats' answers carry none.");
}

static rl_err dec_skip(dec_ctx *c, json_t *v)
{
    (void)c;
    (void)v;
    return RL_OK;
}

/* ---- options ---- */

typedef rl_err (*option_fn)(dec_ctx *c, const char *field, json_t *v);

static rl_err opt_nonneg(dec_ctx *c, const char *field, json_t *v, double *out)
{
    if (!json_is_number(v) || json_number_value(v) < 0)
        return refuse(c, field, "it must be a number of at least 0.");
    *out = json_number_value(v);
    return RL_OK;
}

static rl_err opt_temperature(dec_ctx *c, const char *field, json_t *v)
{
    return opt_nonneg(c, field, v, &c->req->temperature);
}

static rl_err opt_top_p(dec_ctx *c, const char *field, json_t *v)
{
    return opt_nonneg(c, field, v, &c->req->top_p);
}

static rl_err opt_top_k(dec_ctx *c, const char *field, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return refuse(c, field, "it must be an integer of at least 0.");
    c->req->top_k = json_integer_value(v);
    c->req->features[XL_F_TOP_K] = "options.top_k";
    return RL_OK;
}

/* A negative seed is Ollama's default, a random one: no seed asked for. */
static rl_err opt_seed(dec_ctx *c, const char *field, json_t *v)
{
    if (!json_is_integer(v))
        return refuse(c, field, "it must be an integer.");
    if (json_integer_value(v) >= 0) {
        c->req->seed = json_integer_value(v);
        c->req->features[XL_F_SEED] = "options.seed";
    }
    return RL_OK;
}

/* num_predict caps the answer; -1 (Ollama's default) and -2 (fill the
 * context) set no cap. */
static rl_err opt_num_predict(dec_ctx *c, const char *field, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < -2)
        return refuse(c, field, "it must be an integer of at least -2.");
    c->req->max_tokens = json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
    return RL_OK;
}

static rl_err opt_stop(dec_ctx *c, const char *field, json_t *v)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    NOMEM_IF(c->req->stop = rl_palloc(c->pool, (n + 1) * sizeof *c->req->stop));
    c->req->nstop = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s))
            return refuse(c, field, "it must be an array of strings.");
        NOMEM_IF(c->req->stop[c->req->nstop++] = rl_pstrdup(c->pool, json_string_value(s)));
    }
    if (n)
        c->req->features[XL_F_STOP] = "options.stop";
    return RL_OK;
}

/* A penalty of 0 is every provider's default: only a non-zero one is a
 * feature the upstream must have. */
static rl_err opt_penalty(dec_ctx *c, const char *field, json_t *v, double *out)
{
    if (!json_is_number(v))
        return refuse(c, field, "it must be a number.");
    *out = json_number_value(v);
    if (*out != 0)
        c->req->features[XL_F_PENALTIES] = field;
    return RL_OK;
}

static rl_err opt_presence(dec_ctx *c, const char *field, json_t *v)
{
    return opt_penalty(c, field, v, &c->req->presence_penalty);
}

static rl_err opt_frequency(dec_ctx *c, const char *field, json_t *v)
{
    return opt_penalty(c, field, v, &c->req->frequency_penalty);
}

/* How the model is placed in memory and run: the answer is the same. */
static rl_err opt_skip(dec_ctx *c, const char *field, json_t *v)
{
    (void)c;
    (void)field;
    (void)v;
    return RL_OK;
}

static const struct {
    const char *name;
    option_fn fn;
} options[] = {
    {"temperature", opt_temperature},
    {"top_p", opt_top_p},
    {"top_k", opt_top_k},
    {"seed", opt_seed},
    {"num_predict", opt_num_predict},
    {"stop", opt_stop},
    {"presence_penalty", opt_presence},
    {"frequency_penalty", opt_frequency},
    {"num_thread", opt_skip},
    {"num_gpu", opt_skip},
    {"main_gpu", opt_skip},
    {"num_batch", opt_skip},
    {"numa", opt_skip},
    {"low_vram", opt_skip},
    {"f16_kv", opt_skip},
    {"use_mmap", opt_skip},
    {"use_mlock", opt_skip},
    {"vocab_only", opt_skip},
    {"logits_all", opt_skip},
    {"embedding_only", opt_skip},
};

static rl_err dec_options(dec_ctx *c, json_t *v)
{
    if (!json_is_object(v))
        return refuse(c, "options", "it must be an object.");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        char field[96];
        snprintf(field, sizeof field, "options.%s", key);
        if (json_is_null(val))
            continue;
        size_t i = 0;
        while (i < sizeof options / sizeof options[0] && strcmp(options[i].name, key) != 0)
            i++;
        if (i == sizeof options / sizeof options[0])
            return refuse(c, field,
                          "it changes the answer and the other formats have no "
                          "place for it.");
        /* the feature names point at the table's static strings, not at field */
        char *stable = rl_pstrdup(c->pool, field);
        NOMEM_IF(stable);
        rl_err err = options[i].fn(c, stable, val);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

/* The request's top-level fields. */
typedef rl_err (*field_fn)(dec_ctx *c, json_t *v);

static const struct {
    const char *name;
    field_fn fn;
} request_fields[] = {
    {"model", dec_skip}, /* read first */
    {"messages", dec_messages}, {"tools", dec_tools},
    {"format", dec_format},     {"options", dec_options},
    {"stream", dec_stream},     {"think", dec_think},
    {"keep_alive", dec_skip}, /* how long the server keeps the model loaded */
    {"logprobs", dec_logprobs}, {"top_logprobs", dec_top_logprobs},
};

static void request_defaults(xl_request *req)
{
    xlate_request_init(req);
    req->stream = 1; /* Ollama streams unless told not to */
}

rl_err ollama_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                             xl_request *out, rl_buf *why)
{
    (void)path_model;
    request_defaults(out);
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root) {
        rl_err err = prov_json_failed(&jerr, RL_BAD_JSON);
        if (err == RL_BAD_JSON)
            rl_buf_printf(why, "invalid JSON in request body: %s", jerr.text);
        return err;
    }
    dec_ctx c = {.pool = pool, .req = out, .why = why};
    rl_err err = RL_BAD_REQUEST;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(root)) {
        rl_buf_puts(why, "the request body must be a JSON object");
        goto out;
    }
    if (!json_is_string(model) || json_string_length(model) == 0) {
        rl_buf_puts(why, "model is required");
        goto out;
    }
    err = RL_NOMEM;
    if (!(out->model = rl_pstrdup(pool, json_string_value(model))))
        goto out;
    const char *key;
    json_t *v;
    err = RL_OK;
    json_object_foreach(root, key, v)
    {
        size_t i = 0;
        while (i < sizeof request_fields / sizeof request_fields[0] &&
               strcmp(request_fields[i].name, key) != 0)
            i++;
        if (i == sizeof request_fields / sizeof request_fields[0])
            err = refuse(&c, key, "the other formats have no place for it.");
        else if (!json_is_null(v))
            err = request_fields[i].fn(&c, v);
        if (err != RL_OK)
            goto out;
    }
    err = xlate_pair_tool_results(out, why);
out:
    json_decref(root);
    return err;
}
