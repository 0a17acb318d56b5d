/*
 * xlate_ollama.c — the Ollama /api/chat dialect of the translation model
 * (xlate.h): client requests in, upstream requests out, answers and NDJSON
 * streams both ways.
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
 *
 * Encoding upstream (model -> Ollama): POST /api/chat, "stream" always
 * written (Ollama's default is to stream). Several TEXT parts of a turn are
 * joined with "\n" (Ollama's content is one string); images go to images[]
 * as base64 (an image only known by URL is refused: Ollama fetches
 * nothing); tool calls carry their id, tool results tool_name and
 * tool_call_id (older servers ignore the fields they do not know).
 * tool_choice none sends no tools; a required or named tool is refused
 * (Ollama has no tool choice); reasoning effort or budget becomes a think
 * level. Dropped because Ollama has no place for them and they do not change
 * the answer: user, a tool result's is_error flag (its text still says
 * what failed), thinking signatures and redacted thinking (opaque blobs for
 * the provider that made them).
 *
 * Answers: done_reason stop/length (load/unload: other); "stop" with tool
 * calls is XL_STOP_TOOL. Ollama's answers have no id (the upstream's id is
 * dropped) and no cached-token figure (prompt_eval_count is every input
 * token). Content filter and stop-sequence stops are written as "stop",
 * the only natural end Ollama has.
 *
 * Streams are NDJSON: a line per piece ({"model","created_at","message":
 * {"role","content"},"done":false}), the last with "done": true, the stop
 * reason and the counts (that line is END). Ollama sends a tool call whole
 * (its arguments an object), so the encoder holds one call's argument
 * pieces until the call is complete (the next event that is not its
 * arguments); text and thinking are written as they come.
 */
#include "engine/xlate.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/prov_json.h"

/* What Ollama's tool calls' arguments may grow to while the stream encoder
 * holds them (one call's arguments are one JSON object, well under this). */
#define OLLAMA_MAX_HELD_ARGS (8u << 20)

/* How the JSON this file writes is rendered: insertion order (Ollama's own
 * field order) and reals with 15 digits, so 0.7 is written "0.7" and not
 * jansson's default 17 digits "0.69999999999999996". */
#define OLLAMA_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* ---- shared helpers ---------------------------------------------------- */

/* v's compact JSON text, copied into pool; NULL when out of memory. */
static const char *json_text(rl_pool *pool, json_t *v)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    const char *s = NULL;
    if (prov_json_dump(json_incref(v), OLLAMA_JSON_FLAGS, &b) == RL_OK)
        s = rl_pstrndup(pool, b.data ? b.data : "", b.len);
    json_decref(v);
    rl_buf_release(&b);
    return s;
}

/* Ollama's created_at: RFC 3339 in UTC, from unix seconds. */
static void rfc3339(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "1970-01-01T00:00:00Z");
}

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
    p->arguments = json_is_object(args) ? json_text(c->pool, args) : rl_pstrdup(c->pool, "{}");
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
            NOMEM_IF(t->parameters = json_text(c->pool, params));
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
    NOMEM_IF(c->req->format_schema = json_text(c->pool, v));
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
    memset(req, 0, sizeof *req);
    req->stream = 1; /* Ollama streams unless told not to */
    req->parallel_tool_calls = -1;
    req->max_tokens = -1;
    req->temperature = -1;
    req->top_p = -1;
    req->top_k = -1;
    req->n = 1;
    req->thinking_budget = -1;
}

static rl_err ollama_decode_request(const char *body, size_t len, const char *path_model,
                                    rl_pool *pool, xl_request *out, rl_buf *why)
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

/* ---- encoding the upstream request ------------------------------------- */

/* The TEXT (or THINKING) parts of a turn joined with "\n": Ollama's content
 * is one string. NULL when out of memory. */
static json_t *joined(const xl_message *m, xl_part_kind kind)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    int first = 1;
    for (size_t i = 0; i < m->nparts; i++) {
        const xl_part *p = &m->parts[i];
        if (p->kind != kind || p->redacted || !p->text)
            continue;
        if (!first)
            rl_buf_puts(&b, "\n");
        rl_buf_puts(&b, p->text);
        first = 0;
    }
    json_t *s = rl_buf_error(&b) == RL_OK ? json_stringn(b.data ? b.data : "", b.len) : NULL;
    rl_buf_release(&b);
    return s;
}

static int has_kind(const xl_message *m, xl_part_kind kind)
{
    for (size_t i = 0; i < m->nparts; i++)
        if (m->parts[i].kind == kind && !m->parts[i].redacted && m->parts[i].text)
            return 1;
    return 0;
}

/* A compact JSON object text as an object ({} for NULL). */
static json_t *object_of(const char *text, rl_err *err)
{
    if (!text)
        return json_object();
    json_error_t jerr;
    json_t *j = prov_json_load(text, strlen(text), &jerr);
    if (!j)
        *err = prov_json_failed(&jerr, RL_BAD_REQUEST);
    else if (!json_is_object(j)) {
        json_decref(j);
        j = NULL;
        *err = RL_BAD_REQUEST;
    }
    return j;
}

static json_t *enc_tool_call(const xl_part *p, int index, rl_err *err)
{
    json_t *args = object_of(p->arguments, err);
    if (!args)
        return NULL;
    json_t *fn = json_pack("{s:i,s:s,s:o}", "index", index, "name", p->name ? p->name : "",
                           "arguments", args);
    json_t *call = json_object();
    int failed = !fn || !call;
    if (p->id)
        failed |= json_object_set_new(call, "id", json_string(p->id));
    failed |= json_object_set_new(call, "function", fn);
    if (!(call = prov_json_check(call, failed)))
        *err = RL_NOMEM;
    return call;
}

/* A user or assistant turn as one Ollama message. */
static rl_err enc_turn(json_t *messages, const xl_message *m, rl_buf *why)
{
    json_t *msg = json_object();
    json_t *images = json_array();
    json_t *calls = json_array();
    int failed = !msg || !images || !calls;
    rl_err err = RL_NOMEM;
    failed |= json_object_set_new(msg, "role",
                                  json_string(m->role == XL_ROLE_ASSISTANT ? "assistant" : "user"));
    failed |= json_object_set_new(msg, "content", joined(m, XL_PART_TEXT));
    if (m->role == XL_ROLE_ASSISTANT && has_kind(m, XL_PART_THINKING))
        failed |= json_object_set_new(msg, "thinking", joined(m, XL_PART_THINKING));
    for (size_t i = 0; i < m->nparts && !failed; i++) {
        const xl_part *p = &m->parts[i];
        if (p->kind == XL_PART_IMAGE && !p->data) {
            rl_buf_puts(why, "An image given by URL cannot be sent to Ollama, which takes "
                             "images only as base64 data.");
            err = RL_BAD_REQUEST;
            failed = 1;
        } else if (p->kind == XL_PART_IMAGE) {
            failed |= json_array_append_new(images, json_string(p->data));
        } else if (p->kind == XL_PART_TOOL_CALL) {
            json_t *call = enc_tool_call(p, (int)json_array_size(calls), &err);
            if (!call && err == RL_BAD_REQUEST)
                rl_buf_printf(why, "The arguments of tool call `%s` are not a JSON object.",
                              p->id ? p->id : "");
            failed |= !call || json_array_append_new(calls, call);
        } else if (p->kind == XL_PART_TOOL_RESULT) {
            rl_buf_puts(why, "A tool result inside a user or assistant turn cannot be sent.");
            err = RL_BAD_REQUEST;
            failed = 1;
        }
    }
    if (!failed && json_array_size(images))
        failed |= json_object_set(msg, "images", images);
    if (!failed && json_array_size(calls))
        failed |= json_object_set(msg, "tool_calls", calls);
    json_decref(images);
    json_decref(calls);
    if (!(msg = prov_json_check(msg, failed)))
        return err;
    return json_array_append_new(messages, msg) ? RL_NOMEM : RL_OK;
}

/* A tool turn: one role tool message per result. */
static rl_err enc_results(json_t *messages, const xl_message *m)
{
    for (size_t i = 0; i < m->nparts; i++) {
        const xl_part *p = &m->parts[i];
        if (p->kind != XL_PART_TOOL_RESULT)
            continue;
        json_t *msg = json_pack("{s:s,s:s}", "role", "tool", "content", p->text ? p->text : "");
        int failed = !msg;
        if (p->name)
            failed |= json_object_set_new(msg, "tool_name", json_string(p->name));
        if (p->id)
            failed |= json_object_set_new(msg, "tool_call_id", json_string(p->id));
        if (!(msg = prov_json_check(msg, failed)) || json_array_append_new(messages, msg))
            return RL_NOMEM;
    }
    return RL_OK;
}

static json_t *enc_tools(const xl_request *req, rl_err *err)
{
    json_t *tools = json_array();
    int failed = !tools;
    for (size_t i = 0; i < req->ntools && !failed; i++) {
        const xl_tool *t = &req->tools[i];
        json_t *fn = json_pack("{s:s}", "name", t->name ? t->name : "");
        failed |= !fn;
        if (t->description)
            failed |= json_object_set_new(fn, "description", json_string(t->description));
        if (t->parameters) {
            json_t *params = object_of(t->parameters, err);
            failed |= !params || json_object_set_new(fn, "parameters", params);
        }
        failed |= json_array_append_new(tools,
                                        json_pack("{s:s,s:o}", "type", "function", "function", fn));
    }
    return prov_json_check(tools, failed);
}

static json_t *enc_options(const xl_request *req)
{
    json_t *o = json_object();
    int failed = !o;
    if (req->temperature >= 0)
        failed |= json_object_set_new(o, "temperature", json_real(req->temperature));
    if (req->top_p >= 0)
        failed |= json_object_set_new(o, "top_p", json_real(req->top_p));
    if (req->top_k >= 0)
        failed |= json_object_set_new(o, "top_k", json_integer(req->top_k));
    if (req->features[XL_F_SEED])
        failed |= json_object_set_new(o, "seed", json_integer(req->seed));
    if (req->max_tokens >= 0)
        failed |= json_object_set_new(o, "num_predict", json_integer(req->max_tokens));
    if (req->nstop) {
        json_t *stop = json_array();
        failed |= !stop;
        for (size_t i = 0; i < req->nstop && !failed; i++)
            failed |= json_array_append_new(stop, json_string(req->stop[i]));
        failed |= json_object_set_new(o, "stop", stop);
    }
    if (req->features[XL_F_PENALTIES]) {
        failed |= json_object_set_new(o, "presence_penalty", json_real(req->presence_penalty));
        failed |= json_object_set_new(o, "frequency_penalty", json_real(req->frequency_penalty));
    }
    return prov_json_check(o, failed);
}

/* Reasoning effort as Ollama's think: its levels are gpt-oss's low, medium
 * and high (other thinking models take any level as true). */
static const struct {
    const char *effort;
    const char *level; /* NULL: think false */
} think_levels[] = {
    {"none", NULL}, {"minimal", "low"}, {"low", "low"}, {"medium", "medium"}, {"high", "high"},
};

static json_t *enc_think(const xl_request *req)
{
    const char *effort =
        req->reasoning_effort ? req->reasoning_effort : xlate_budget_effort(req->thinking_budget);
    if (!effort)
        return NULL;
    for (size_t i = 0; i < sizeof think_levels / sizeof think_levels[0]; i++)
        if (strcmp(think_levels[i].effort, effort) == 0)
            return think_levels[i].level ? json_string(think_levels[i].level) : json_false();
    return json_true();
}

static rl_err ollama_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why)
{
    if (req->tool_choice == XL_CHOICE_REQUIRED || req->tool_choice == XL_CHOICE_NAMED) {
        rl_buf_puts(why, "`tool_choice` (a required or named tool) cannot be translated to "
                         "Ollama, which has no tool choice.");
        return RL_BAD_REQUEST;
    }
    /* n, parallel_tool_calls off, images by URL: what Ollama lacks */
    rl_err err = xlate_check_features(req, &xl_ollama, why);
    if (err != RL_OK)
        return err;
    err = RL_NOMEM;
    json_t *root = json_pack("{s:s}", "model", req->model ? req->model : "");
    json_t *messages = json_array();
    int failed = !root || !messages;
    for (size_t i = 0; i < req->nsystem && !failed; i++)
        failed |= json_array_append_new(messages,
                                        json_pack("{s:s,s:s}", "role", "system", "content",
                                                  req->system[i].text ? req->system[i].text : ""));
    for (size_t i = 0; i < req->nmessages && !failed; i++) {
        const xl_message *m = &req->messages[i];
        err = m->role == XL_ROLE_TOOL ? enc_results(messages, m) : enc_turn(messages, m, why);
        failed = err != RL_OK;
    }
    if (failed) {
        json_decref(root);
        json_decref(messages);
        return err == RL_OK ? RL_NOMEM : err;
    }
    err = RL_NOMEM;
    failed |= json_object_set_new(root, "messages", messages);
    /* tool_choice none: the model may not call tools, so none are offered */
    if (req->ntools && req->tool_choice != XL_CHOICE_NONE) {
        json_t *tools = enc_tools(req, &err);
        failed |= !tools || json_object_set_new(root, "tools", tools);
    }
    if (req->format == XL_FORMAT_JSON_OBJECT)
        failed |= json_object_set_new(root, "format", json_string("json"));
    else if (req->format == XL_FORMAT_JSON_SCHEMA) {
        json_t *schema = object_of(req->format_schema, &err);
        failed |= !schema || json_object_set_new(root, "format", schema);
    }
    json_t *opts = enc_options(req);
    failed |= !opts;
    if (opts && json_object_size(opts))
        failed |= json_object_set(root, "options", opts);
    json_decref(opts);
    failed |= json_object_set_new(root, "stream", json_boolean(req->stream));
    if (req->reasoning_effort || req->thinking_budget >= 0)
        failed |= json_object_set_new(root, "think", enc_think(req));
    if (!(root = prov_json_check(root, failed))) {
        if (err == RL_BAD_REQUEST)
            rl_buf_puts(why, "A tool's parameters or the format's schema is not a JSON object.");
        return err;
    }
    if ((err = prov_json_put(out, "", root, OLLAMA_JSON_FLAGS, "")) != RL_OK)
        return err;
    return rl_buf_puts(path, "/api/chat");
}

/* ---- answers ----------------------------------------------------------- */

static const struct {
    const char *name;
    xl_stop stop;
} done_reasons[] = {
    {"stop", XL_STOP_END},
    {"length", XL_STOP_LENGTH},
    {"load", XL_STOP_OTHER},
    {"unload", XL_STOP_OTHER},
};

/* Ollama's done_reason for each stop: it knows only stop and length. */
static const char *const done_reason_of[] = {
    [XL_STOP_UNSET] = "stop", [XL_STOP_END] = "stop",      [XL_STOP_LENGTH] = "length",
    [XL_STOP_TOOL] = "stop",  [XL_STOP_SEQUENCE] = "stop", [XL_STOP_FILTER] = "stop",
    [XL_STOP_OTHER] = "stop",
};

/* The stop an answer's done_reason says; "stop" after tool calls is a stop
 * for tools (Ollama has no reason of its own for it). */
static xl_stop stop_of(json_t *reason, int called)
{
    xl_stop stop = reason ? XL_STOP_OTHER : XL_STOP_END;
    for (size_t i = 0; json_is_string(reason) && i < sizeof done_reasons / sizeof done_reasons[0];
         i++)
        if (strcmp(done_reasons[i].name, json_string_value(reason)) == 0)
            stop = done_reasons[i].stop;
    return stop == XL_STOP_END && called ? XL_STOP_TOOL : stop;
}

/* prompt_eval_count and eval_count; Ollama omits a zero count and reports
 * no cached tokens. */
static prov_usage usage_of(json_t *j)
{
    prov_usage u = PROV_USAGE_UNKNOWN;
    u.input = prov_json_int(j, "prompt_eval_count");
    u.output = prov_json_int(j, "eval_count");
    return u;
}

/* A tool call of an answer as a TOOL_CALL part (index: its place among the
 * answer's calls, for the id when it has none). */
static rl_err read_call(rl_pool *pool, json_t *call, int index, xl_part *p)
{
    json_t *fn = json_object_get(call, "function");
    json_t *args = json_object_get(fn, "arguments");
    json_t *id = json_object_get(call, "id");
    if (!json_is_string(json_object_get(fn, "name")))
        return RL_UPSTREAM_PROTOCOL;
    p->kind = XL_PART_TOOL_CALL;
    p->name = rl_pstrdup(pool, json_string_value(json_object_get(fn, "name")));
    p->id = json_string_length(id) ? rl_pstrdup(pool, json_string_value(id))
                                   : xlate_tool_id(pool, index);
    if (json_is_string(args)) /* a server that sends OpenAI's string form */
        p->arguments = rl_pstrdup(pool, json_string_value(args));
    else if (json_is_object(args))
        p->arguments = json_text(pool, args);
    else if (!args || json_is_null(args))
        p->arguments = rl_pstrdup(pool, "{}");
    else
        return RL_UPSTREAM_PROTOCOL;
    return p->name && p->id && p->arguments ? RL_OK : RL_NOMEM;
}

static rl_err ollama_decode_response(const char *body, size_t len, rl_pool *pool, xl_response *out)
{
    memset(out, 0, sizeof *out);
    out->usage = PROV_USAGE_UNKNOWN;
    out->reasoning_tokens = -1;
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    json_t *msg = json_object_get(root, "message");
    json_t *calls = json_object_get(msg, "tool_calls");
    json_t *thinking = json_object_get(msg, "thinking");
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || json_object_get(root, "error"))
        goto out;
    err = RL_NOMEM;
    size_t ncalls = json_array_size(calls);
    if (!(out->parts = rl_palloc(pool, (2 + ncalls) * sizeof *out->parts)))
        goto out;
    const char *model = json_string_value(json_object_get(root, "model"));
    if (model && !(out->model = rl_pstrdup(pool, model)))
        goto out;
    if (json_string_length(thinking)) {
        xl_part *p = &out->parts[out->nparts++];
        p->kind = XL_PART_THINKING;
        if (!(p->text = rl_pstrdup(pool, json_string_value(thinking))))
            goto out;
    }
    if (json_string_length(content) || ncalls == 0) {
        xl_part *p = &out->parts[out->nparts++];
        p->kind = XL_PART_TEXT;
        if (!(p->text =
                  rl_pstrdup(pool, json_is_string(content) ? json_string_value(content) : "")))
            goto out;
    }
    for (size_t i = 0; i < ncalls; i++)
        if ((err = read_call(pool, json_array_get(calls, i), (int)i, &out->parts[out->nparts++])) !=
            RL_OK)
            goto out;
    out->stop = stop_of(json_object_get(root, "done_reason"), ncalls > 0);
    out->usage = usage_of(root);
    err = RL_OK;
out:
    json_decref(root);
    return err;
}

/* The message of an answer: role, content, thinking, tool calls. */
static json_t *answer_message(const xl_response *resp, rl_err *err)
{
    xl_message m = {.role = XL_ROLE_ASSISTANT, .parts = resp->parts, .nparts = resp->nparts};
    json_t *msg = json_pack("{s:s,s:o}", "role", "assistant", "content", joined(&m, XL_PART_TEXT));
    int failed = !msg;
    if (has_kind(&m, XL_PART_THINKING))
        failed |= json_object_set_new(msg, "thinking", joined(&m, XL_PART_THINKING));
    json_t *calls = json_array();
    failed |= !calls;
    for (size_t i = 0; i < resp->nparts && !failed; i++)
        if (resp->parts[i].kind == XL_PART_TOOL_CALL)
            failed |= json_array_append_new(
                calls, enc_tool_call(&resp->parts[i], (int)json_array_size(calls), err));
    if (!failed && json_array_size(calls))
        failed |= json_object_set(msg, "tool_calls", calls);
    json_decref(calls);
    return prov_json_check(msg, failed);
}

static rl_err ollama_encode_response(const xl_response *resp, const xl_reply *reply, rl_buf *out)
{
    char created[32];
    rfc3339(reply->created, created, sizeof created);
    rl_err err = RL_NOMEM; /* RL_BAD_REQUEST: a call's arguments are not an object */
    json_t *msg = answer_message(resp, &err);
    if (!msg)
        return err == RL_BAD_REQUEST ? RL_UPSTREAM_PROTOCOL : RL_NOMEM;
    json_t *root =
        json_pack("{s:s,s:s,s:o,s:s,s:b}", "model", reply->model ? reply->model : "", "created_at",
                  created, "message", msg, "done_reason", done_reason_of[resp->stop], "done", 1);
    int failed = !root;
    if (resp->usage.input >= 0)
        failed |= json_object_set_new(root, "prompt_eval_count", json_integer(resp->usage.input));
    if (resp->usage.output >= 0)
        failed |= json_object_set_new(root, "eval_count", json_integer(resp->usage.output));
    return prov_json_put(out, "", prov_json_check(root, failed), OLLAMA_JSON_FLAGS, "");
}

/* {"error": "text"}; also {"error": {"message", "type"}} from the
 * OpenAI-style servers some put behind an Ollama URL. */
static rl_err ollama_decode_error(const char *body, size_t len, rl_pool *pool, xl_error *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL) == RL_NOMEM ? RL_NOMEM : RL_OK;
    json_t *e = json_object_get(root, "error");
    const char *message =
        json_is_object(e) ? json_string_value(json_object_get(e, "message")) : json_string_value(e);
    const char *type = json_string_value(json_object_get(e, "type"));
    rl_err err = RL_OK;
    if ((message && !(out->message = rl_pstrdup(pool, message))) ||
        (type && !(out->type = rl_pstrdup(pool, type))))
        err = RL_NOMEM;
    json_decref(root);
    return err;
}

/* ---- streams: Ollama's NDJSON -> model events -------------------------- */

typedef struct ollama_dec {
    int started; /* START emitted */
    int ncalls;  /* tool calls seen: the next one's index */
    int done;    /* the done:true line came: nothing after it counts */
} ollama_dec;

static rl_err emit_ev(xl_emit_fn emit, void *ctx, const xl_event *ev)
{
    return emit(ctx, ev) ? RL_STOPPED : RL_OK;
}

static rl_err dec_line_calls(ollama_dec *d, rl_pool *pool, json_t *calls, xl_emit_fn emit,
                             void *ctx)
{
    rl_err err = RL_OK;
    for (size_t i = 0; i < json_array_size(calls) && err == RL_OK; i++) {
        xl_part p = {0};
        if ((err = read_call(pool, json_array_get(calls, i), d->ncalls, &p)) != RL_OK)
            break;
        xl_event ev = {.kind = XL_EV_TOOL_CALL, .index = d->ncalls, .id = p.id, .name = p.name};
        if ((err = emit_ev(emit, ctx, &ev)) != RL_OK)
            break;
        xl_event args = {.kind = XL_EV_TOOL_ARGS, .index = d->ncalls++, .text = p.arguments};
        err = emit_ev(emit, ctx, &args);
    }
    return err;
}

static rl_err ollama_dec_event(void *state, rl_pool *pool, const char *event, const char *data,
                               size_t len, xl_emit_fn emit, void *ctx)
{
    (void)event;
    ollama_dec *d = state;
    if (d->done)
        return RL_OK;
    json_error_t jerr;
    json_t *line = prov_json_load(data, len, &jerr);
    if (!line)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    json_t *error = json_object_get(line, "error");
    json_t *msg = json_object_get(line, "message");
    if (!json_is_object(line))
        goto out;
    if (error) {
        xl_event ev = {.kind = XL_EV_ERROR,
                       .text = json_is_string(error) ? json_string_value(error) : NULL};
        d->done = 1;
        err = emit_ev(emit, ctx, &ev);
        goto out;
    }
    err = RL_OK;
    if (!d->started) {
        xl_event ev = {.kind = XL_EV_START,
                       .model = json_string_value(json_object_get(line, "model"))};
        d->started = 1;
        if ((err = emit_ev(emit, ctx, &ev)) != RL_OK)
            goto out;
    }
    json_t *thinking = json_object_get(msg, "thinking");
    json_t *content = json_object_get(msg, "content");
    if (json_string_length(thinking)) {
        xl_event ev = {.kind = XL_EV_THINKING, .text = json_string_value(thinking)};
        if ((err = emit_ev(emit, ctx, &ev)) != RL_OK)
            goto out;
    }
    if (json_string_length(content)) {
        xl_event ev = {.kind = XL_EV_TEXT, .text = json_string_value(content)};
        if ((err = emit_ev(emit, ctx, &ev)) != RL_OK)
            goto out;
    }
    if ((err = dec_line_calls(d, pool, json_object_get(msg, "tool_calls"), emit, ctx)) != RL_OK)
        goto out;
    if (json_is_true(json_object_get(line, "done"))) {
        d->done = 1;
        xl_event stop = {.kind = XL_EV_STOP,
                         .stop = stop_of(json_object_get(line, "done_reason"), d->ncalls > 0)};
        xl_event usage = {.kind = XL_EV_USAGE, .usage = usage_of(line), .reasoning_tokens = -1};
        xl_event end = {.kind = XL_EV_END};
        if ((err = emit_ev(emit, ctx, &stop)) == RL_OK &&
            (err = emit_ev(emit, ctx, &usage)) == RL_OK)
            err = emit_ev(emit, ctx, &end);
    }
out:
    json_decref(line);
    return err;
}

/* Ollama's stream ends with its done:true line, which dec_event handled:
 * nothing is pending at the end of the bytes. */
static rl_err ollama_dec_finish(void *state, rl_pool *pool, xl_emit_fn emit, void *ctx)
{
    (void)state;
    (void)pool;
    (void)emit;
    (void)ctx;
    return RL_OK;
}

/* ---- streams: model events -> Ollama's NDJSON -------------------------- */

typedef struct ollama_enc {
    int over;         /* END or ERROR written: the stream is finished */
    int held;         /* a tool call is being gathered */
    int index;        /* its index */
    rl_buf id, name;  /* its id and name (copied: events are borrowed) */
    rl_buf args;      /* its arguments' pieces so far */
    xl_stop stop;     /* from STOP */
    prov_usage usage; /* from USAGE events, merged */
    int have_usage;
} ollama_enc;

/* Appends one line of the client's stream: NDJSON, or an SSE data event
 * should the client's framing be SSE. j is released. */
static rl_err put_line(rl_buf *out, const xl_reply *reply, json_t *j)
{
    int sse = reply->framing == FRAME_SSE;
    return prov_json_put(out, sse ? "data: " : "", j, OLLAMA_JSON_FLAGS, sse ? "\n\n" : "\n");
}

/* A content line: {"model","created_at","message":{...},"done":false}. */
static rl_err put_message(rl_buf *out, const xl_reply *reply, json_t *msg)
{
    char created[32];
    rfc3339(reply->created, created, sizeof created);
    return put_line(out, reply,
                    json_pack("{s:s,s:s,s:o,s:b}", "model", reply->model ? reply->model : "",
                              "created_at", created, "message", msg, "done", 0));
}

static void release_held(ollama_enc *e)
{
    rl_buf_release(&e->id);
    rl_buf_release(&e->name);
    rl_buf_release(&e->args);
    e->held = 0;
}

/* xl_dialect.enc_release: a stream given up before its END (the client
 * left, the upstream was cut) still frees a held call. */
static void ollama_enc_release(void *state)
{
    release_held(state);
}

/* Writes the held tool call as one line (its arguments complete now). */
static rl_err flush_call(ollama_enc *e, const xl_reply *reply, rl_buf *out)
{
    if (!e->held)
        return RL_OK;
    rl_err err = rl_buf_error(&e->args);
    if (err == RL_OK)
        err = rl_buf_error(&e->id) != RL_OK ? rl_buf_error(&e->id) : rl_buf_error(&e->name);
    json_t *args = NULL;
    if (err == RL_OK && e->args.len) {
        json_error_t jerr;
        args = prov_json_load(e->args.data, e->args.len, &jerr);
        if (!args)
            err = prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
        else if (!json_is_object(args))
            err = RL_UPSTREAM_PROTOCOL;
    } else if (err == RL_OK && !(args = json_object()))
        err = RL_NOMEM;
    json_t *call = NULL;
    if (err == RL_OK) {
        json_t *fn = json_pack("{s:i,s:s,s:O}", "index", e->index, "name",
                               e->name.data ? e->name.data : "", "arguments", args);
        call = e->id.len ? json_pack("{s:s,s:o}", "id", e->id.data, "function", fn)
                         : json_pack("{s:o}", "function", fn);
        err = call ? RL_OK : RL_NOMEM;
    }
    json_decref(args);
    release_held(e);
    if (err != RL_OK) {
        json_decref(call);
        return err;
    }
    return put_message(
        out, reply,
        json_pack("{s:s,s:s,s:[o]}", "role", "assistant", "content", "", "tool_calls", call));
}

static rl_err enc_final(ollama_enc *e, const xl_reply *reply, rl_buf *out)
{
    char created[32];
    rfc3339(reply->created, created, sizeof created);
    json_t *j =
        json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:b}", "model", reply->model ? reply->model : "",
                  "created_at", created, "message", "role", "assistant", "content", "",
                  "done_reason", done_reason_of[e->stop], "done", 1);
    int failed = !j;
    if (e->have_usage && e->usage.input >= 0)
        failed |= json_object_set_new(j, "prompt_eval_count", json_integer(e->usage.input));
    if (e->have_usage && e->usage.output >= 0)
        failed |= json_object_set_new(j, "eval_count", json_integer(e->usage.output));
    return put_line(out, reply, prov_json_check(j, failed));
}

typedef rl_err (*enc_fn)(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out);

/* Ollama's stream has no opening line. */
static rl_err enc_start(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)e;
    (void)reply;
    (void)ev;
    (void)out;
    return RL_OK;
}

static rl_err enc_text(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)e;
    if (!ev->text || !ev->text[0])
        return RL_OK;
    return put_message(out, reply,
                       json_pack("{s:s,s:s}", "role", "assistant", "content", ev->text));
}

/* A signature alone has nothing to show: Ollama carries no signatures. */
static rl_err enc_thinking(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)e;
    if (!ev->text || !ev->text[0])
        return RL_OK;
    return put_message(
        out, reply,
        json_pack("{s:s,s:s,s:s}", "role", "assistant", "content", "", "thinking", ev->text));
}

static rl_err enc_tool_call_ev(ollama_enc *e, const xl_reply *reply, const xl_event *ev,
                               rl_buf *out)
{
    (void)reply;
    (void)out;
    rl_buf_init(&e->id, OLLAMA_MAX_HELD_ARGS);
    rl_buf_init(&e->name, OLLAMA_MAX_HELD_ARGS);
    rl_buf_init(&e->args, OLLAMA_MAX_HELD_ARGS);
    e->held = 1;
    e->index = ev->index;
    rl_buf_puts(&e->id, ev->id ? ev->id : "");
    rl_buf_puts(&e->name, ev->name ? ev->name : "");
    return RL_OK; /* buffer errors are sticky: flush_call reports them */
}

static rl_err enc_tool_args(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    (void)out;
    if (!e->held || ev->index != e->index)
        return RL_UPSTREAM_PROTOCOL; /* arguments of a call it was not told of */
    if (ev->text)
        rl_buf_puts(&e->args, ev->text); /* sticky: flush_call reports a failure */
    return RL_OK;
}

static rl_err enc_stop(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    (void)out;
    e->stop = ev->stop;
    return RL_OK;
}

static rl_err enc_usage(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply;
    (void)out;
    if (!e->have_usage)
        e->usage = PROV_USAGE_UNKNOWN;
    e->have_usage = 1;
    if (ev->usage.input >= 0)
        e->usage.input = ev->usage.input;
    if (ev->usage.output >= 0)
        e->usage.output = ev->usage.output;
    return RL_OK;
}

static rl_err enc_end(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)ev;
    e->over = 1;
    return enc_final(e, reply, out);
}

/* Ollama's clients raise on an {"error"} line; a call still held is
 * dropped, its arguments incomplete. */
static rl_err enc_error(ollama_enc *e, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    release_held(e);
    e->over = 1;
    return put_line(
        out, reply,
        json_pack("{s:s}", "error", ev->text && ev->text[0] ? ev->text : "upstream error"));
}

static const struct {
    enc_fn fn;
    int completes_call; /* the held tool call's arguments are whole once this comes */
} enc_events[] = {
    [XL_EV_START] = {enc_start, 1},         [XL_EV_TEXT] = {enc_text, 1},
    [XL_EV_THINKING] = {enc_thinking, 1},   [XL_EV_TOOL_CALL] = {enc_tool_call_ev, 1},
    [XL_EV_TOOL_ARGS] = {enc_tool_args, 0}, [XL_EV_STOP] = {enc_stop, 1},
    [XL_EV_USAGE] = {enc_usage, 0},         [XL_EV_END] = {enc_end, 1},
    [XL_EV_ERROR] = {enc_error, 0},
};

static rl_err ollama_enc_event(void *state, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    ollama_enc *e = state;
    if (e->over)
        return RL_OK; /* nothing follows the end of a stream */
    if ((unsigned)ev->kind >= sizeof enc_events / sizeof enc_events[0])
        return RL_UPSTREAM_PROTOCOL;
    int completes = enc_events[ev->kind].completes_call ||
                    (ev->kind == XL_EV_TOOL_ARGS && ev->index != e->index);
    if (e->held && completes) {
        rl_err err = flush_call(e, reply, out);
        if (err != RL_OK)
            return err;
    }
    return enc_events[ev->kind].fn(e, reply, ev, out);
}

const xl_dialect xl_ollama = {
    .id = XL_OLLAMA,
    .name = "Ollama",
    .caps = (1u << XL_F_TOP_K) | (1u << XL_F_SEED) | (1u << XL_F_PENALTIES) |
            (1u << XL_F_JSON_OBJECT) | (1u << XL_F_JSON_SCHEMA) | (1u << XL_F_IMAGE) |
            (1u << XL_F_TOOLS) | (1u << XL_F_THINKING) | (1u << XL_F_STOP),
    .carries_thinking = 1,
    .decode_request = ollama_decode_request,
    .encode_request = ollama_encode_request,
    .decode_response = ollama_decode_response,
    .encode_response = ollama_encode_response,
    .decode_error = ollama_decode_error,
    .stream_framing = FRAME_NDJSON,
    .dec_size = sizeof(ollama_dec),
    .dec_event = ollama_dec_event,
    .dec_finish = ollama_dec_finish,
    .enc_size = sizeof(ollama_enc),
    .enc_event = ollama_enc_event,
    .enc_release = ollama_enc_release,
};
