/*
 * xlate_anthropic_request.c — the request side of the Anthropic Messages
 * dialect of the translation model (xlate.h): POST /v1/messages request
 * bodies read into the model (anthropic_decode_request) and written from
 * it (anthropic_encode_request). The answers, errors and streams, and the
 * xl_dialect xl_anthropic pointing here, are in xlate_anthropic.c; what
 * the two files share is in xlate_anthropic_int.h (this file's content
 * block readers serve the answers too: anth_block_types).
 *
 * Requests read (client -> model):
 *   model, max_tokens (required, as Anthropic requires it: "max_tokens:
 *   Field required"), system (a string, or text blocks), messages (role
 *   user/assistant, content a string or blocks), stop_sequences,
 *   temperature, top_p, top_k, tools (name, description, input_schema),
 *   tool_choice (auto/any/tool/none, disable_parallel_tool_use),
 *   thinking (enabled + budget_tokens; disabled; adaptive: the model
 *   decides, as every other dialect's default, so no budget is set),
 *   output_config (effort -> reasoning effort, xhigh and max as "high",
 *   the top of the shared table; format json_schema -> structured
 *   output), metadata.user_id -> user, stream.
 *   Blocks: text, image (source base64 or url), tool_use (input -> the
 *   arguments' JSON text), tool_result (content a string or text blocks,
 *   joined with "\n"; is_error), thinking (thinking, signature),
 *   redacted_thinking (data). A user turn's tool_result blocks become
 *   XL_ROLE_TOOL turns, the rest of the turn a user turn after them.
 *   A role "system" message (Claude Code sends one) adds its text to the
 *   system prompt: the model has no system turns.
 *   Skipped (they change cost or bookkeeping, not the answer):
 *   cache_control anywhere, service_tier, metadata's other members,
 *   unknown members inside a tool definition, and context_management
 *   (server-side clearing of old tool results past a context size; a
 *   translated upstream is sent the whole conversation: Claude Code sets
 *   it on every request).
 *   Refused with 400 naming the field: any other top-level member, block
 *   types other than the above (document, search_result, server tool
 *   blocks...), image sources other than base64/url (file), an image
 *   inside a tool_result, server tools (tools[i].type other than
 *   "custom": web_search_20250305, bash_20250124, ...), thinking types
 *   and tool_choice types not listed, output_config.format types other
 *   than json_schema.
 *
 * Requests written (model -> upstream): role runs merged (Anthropic
 * alternates user and assistant), XL_ROLE_TOOL turns as user turns whose
 * tool_result blocks come first; a conversation that starts with an
 * assistant turn is refused (Anthropic requires a user turn first and
 * inventing one would change the answer). max_tokens defaults to
 * XLATE_DEFAULT_MAX_TOKENS, plus the thinking budget when one is set
 * (Anthropic requires max_tokens above budget_tokens); a reasoning effort
 * becomes thinking.budget_tokens (xlate_effort_budget). Thinking parts
 * without a signature are not sent: Anthropic refuses unsigned thinking
 * blocks, and earlier turns' thinking does not reach its model anyway.
 * OpenAI's tools[].strict is not sent (Anthropic's strict tools need a
 * beta). Caps: no seed, penalties, several choices or JSON mode /
 * structured output (Anthropic's output_config.format exists only for some
 * models and betas, so a request asking for it is refused, not sent to be
 * refused or ignored upstream). The glue adds anthropic-version.
 *
 * Threads: pure functions; each call uses only its arguments.
 */
#include "engine/xlate_anthropic_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/prov_json.h"

/* Anthropic's smallest thinking.budget_tokens. */
#define XLATE_ANTHROPIC_MIN_BUDGET 1024

/* ---- small helpers of the request side ---------------------------------- */

/* Appends the reason to why and returns RL_BAD_REQUEST. */
static rl_err refuse(rl_buf *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static rl_err refuse(rl_buf *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rl_buf_vprintf(why, fmt, ap);
    va_end(ap);
    return RL_BAD_REQUEST;
}

/* The compact JSON text of j, copied into the pool (NULL: out of memory). */
static const char *ptext(rl_pool *pool, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    const char *copy = s ? rl_pstrdup(pool, s) : NULL;
    free(s);
    return copy;
}

/* ---- decode_request ----------------------------------------------------- */

/* The text of a block list: every block must be text (a system prompt,
 * a tool_result's content). field names the list for the 400. Appends
 * the parts to parts/n (room for the list's size is there). */
static rl_err read_text_blocks(anth_dec *d, json_t *list, const char *field, xl_part *parts,
                               size_t *n)
{
    size_t i;
    json_t *b;
    json_array_foreach(list, i, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        json_t *text = json_object_get(b, "text");
        if (!type || strcmp(type, "text") != 0)
            return refuse(d->why,
                          "%s[%zu].type: `%s` cannot be translated (only text blocks can be).",
                          field, i, type ? type : "(none)");
        if (!json_is_string(text))
            return refuse(d->why, "%s[%zu].text: Input should be a valid string", field, i);
        xl_part *p = &parts[(*n)++];
        p->kind = XL_PART_TEXT;
        if (!(p->text = anth_pstr(d->pool, text)))
            return RL_NOMEM;
    }
    return RL_OK;
}

/* A system prompt (top-level system, or a role "system" message):
 * appended to req->system. */
static rl_err add_system(anth_dec *d, json_t *v, const char *field)
{
    xl_request *req = d->req;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return RL_OK;
    } else if (!json_is_array(v)) {
        return refuse(d->why, "%s: Input should be a valid string or list of text blocks", field);
    }
    size_t add = json_is_string(v) ? 1 : json_array_size(v);
    xl_part *parts = rl_palloc(d->pool, (req->nsystem + add + 1) * sizeof *parts);
    if (!parts)
        return RL_NOMEM;
    if (req->nsystem)
        memcpy(parts, req->system, req->nsystem * sizeof *parts);
    req->system = parts;
    if (json_is_array(v))
        return read_text_blocks(d, v, field, parts, &req->nsystem);
    parts[req->nsystem].kind = XL_PART_TEXT;
    if (!(parts[req->nsystem].text = anth_pstr(d->pool, v)))
        return RL_NOMEM;
    req->nsystem++;
    return RL_OK;
}

static rl_err rd_system(anth_dec *d, json_t *v)
{
    return add_system(d, v, "system");
}

static rl_err rd_model(anth_dec *d, json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) == 0)
        return refuse(d->why, "model: String should have at least 1 character");
    return (d->req->model = anth_pstr(d->pool, v)) ? RL_OK : RL_NOMEM;
}

static rl_err rd_max_tokens(anth_dec *d, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return refuse(d->why, "max_tokens: Input should be a valid integer of at least 1");
    d->req->max_tokens = json_integer_value(v);
    return RL_OK;
}

static rl_err rd_stream(anth_dec *d, json_t *v)
{
    if (!json_is_boolean(v) && !json_is_null(v))
        return refuse(d->why, "stream: Input should be a valid boolean");
    d->req->stream = json_is_true(v);
    return RL_OK;
}

/* temperature and top_p: numbers from 0 (the model's "unset" is < 0). */
static rl_err rd_number(anth_dec *d, json_t *v, const char *field, double *out)
{
    if (!json_is_number(v) || json_number_value(v) < 0)
        return refuse(d->why, "%s: Input should be a number of at least 0", field);
    *out = json_number_value(v);
    return RL_OK;
}

static rl_err rd_temperature(anth_dec *d, json_t *v)
{
    return rd_number(d, v, "temperature", &d->req->temperature);
}

static rl_err rd_top_p(anth_dec *d, json_t *v)
{
    return rd_number(d, v, "top_p", &d->req->top_p);
}

static rl_err rd_top_k(anth_dec *d, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return refuse(d->why, "top_k: Input should be a valid integer of at least 0");
    d->req->top_k = json_integer_value(v);
    d->req->features[XL_F_TOP_K] = "top_k";
    return RL_OK;
}

static rl_err rd_stop_sequences(anth_dec *d, json_t *v)
{
    if (!json_is_array(v))
        return refuse(d->why, "stop_sequences: Input should be a valid list");
    size_t n = json_array_size(v);
    const char **stop = rl_palloc(d->pool, (n + 1) * sizeof *stop);
    if (!stop)
        return RL_NOMEM;
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s))
            return refuse(d->why, "stop_sequences[%zu]: Input should be a valid string", i);
        if (!(stop[i] = anth_pstr(d->pool, s)))
            return RL_NOMEM;
    }
    d->req->stop = stop;
    d->req->nstop = n;
    if (n)
        d->req->features[XL_F_STOP] = "stop_sequences";
    return RL_OK;
}

static rl_err rd_tools(anth_dec *d, json_t *v)
{
    if (!json_is_array(v))
        return refuse(d->why, "tools: Input should be a valid list");
    size_t n = json_array_size(v);
    xl_tool *tools = rl_palloc(d->pool, (n + 1) * sizeof *tools);
    if (!tools)
        return RL_NOMEM;
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t)
    {
        const char *type = json_string_value(json_object_get(t, "type"));
        json_t *name = json_object_get(t, "name");
        json_t *desc = json_object_get(t, "description");
        json_t *schema = json_object_get(t, "input_schema");
        json_t *strict = json_object_get(t, "strict");
        if (!json_is_object(t))
            return refuse(d->why, "tools[%zu]: Input should be a valid dictionary", i);
        /* Server tools run at Anthropic (web search, code execution,
         * bash/text editor schemas): no other upstream has them. */
        if (type && strcmp(type, "custom") != 0)
            return refuse(d->why,
                          "tools[%zu].type: `%s` (an Anthropic server tool) cannot be translated.",
                          i, type);
        if (!json_is_string(name) || json_string_length(name) == 0)
            return refuse(d->why, "tools[%zu].name: Field required", i);
        if (desc && !json_is_string(desc))
            return refuse(d->why, "tools[%zu].description: Input should be a valid string", i);
        if (!json_is_object(schema))
            return refuse(d->why, "tools[%zu].input_schema: Field required", i);
        tools[i].strict = json_is_boolean(strict) ? json_is_true(strict) : -1;
        if (!(tools[i].name = anth_pstr(d->pool, name)) ||
            (desc && !(tools[i].description = anth_pstr(d->pool, desc))) ||
            !(tools[i].parameters = ptext(d->pool, schema)))
            return RL_NOMEM;
    }
    d->req->tools = tools;
    d->req->ntools = n;
    if (n)
        d->req->features[XL_F_TOOLS] = "tools";
    return RL_OK;
}

static const struct {
    const char *type;
    xl_tool_choice choice;
} tool_choices[] = {
    {"auto", XL_CHOICE_AUTO},
    {"any", XL_CHOICE_REQUIRED},
    {"tool", XL_CHOICE_NAMED},
    {"none", XL_CHOICE_NONE},
};

static rl_err rd_tool_choice(anth_dec *d, json_t *v)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    size_t i = 0;
    while (type && i < sizeof tool_choices / sizeof tool_choices[0] &&
           strcmp(tool_choices[i].type, type) != 0)
        i++;
    if (!type || i == sizeof tool_choices / sizeof tool_choices[0])
        return refuse(d->why, "tool_choice.type: `%s` cannot be translated.",
                      type ? type : "(none)");
    d->req->tool_choice = tool_choices[i].choice;
    if (tool_choices[i].choice == XL_CHOICE_NAMED) {
        json_t *name = json_object_get(v, "name");
        if (!json_is_string(name))
            return refuse(d->why, "tool_choice.name: Field required");
        if (!(d->req->tool_choice_name = anth_pstr(d->pool, name)))
            return RL_NOMEM;
    }
    json_t *off = json_object_get(v, "disable_parallel_tool_use");
    if (json_is_boolean(off)) {
        d->req->parallel_tool_calls = !json_is_true(off);
        if (json_is_true(off))
            d->req->features[XL_F_PARALLEL_OFF] = "tool_choice.disable_parallel_tool_use";
    }
    return RL_OK;
}

static rl_err rd_thinking(anth_dec *d, json_t *v)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    if (type && strcmp(type, "disabled") == 0)
        return RL_OK;
    /* adaptive: the model thinks as much as it sees fit, which is every
     * other dialect's default: no budget to carry. */
    if (type && strcmp(type, "adaptive") == 0)
        return RL_OK;
    if (!type || strcmp(type, "enabled") != 0)
        return refuse(d->why, "thinking.type: `%s` cannot be translated.", type ? type : "(none)");
    json_t *budget = json_object_get(v, "budget_tokens");
    if (!json_is_integer(budget) || json_integer_value(budget) < 0)
        return refuse(d->why, "thinking.budget_tokens: Field required");
    d->req->thinking_budget = json_integer_value(budget);
    d->req->features[XL_F_THINKING] = "thinking";
    return RL_OK;
}

/* output_config.effort names, to the shared table's (xlate.c). xhigh and
 * max exceed its top, "high" (24576 tokens). */
static const struct {
    const char *anthropic, *effort;
} efforts[] = {
    {"low", "low"}, {"medium", "medium"}, {"high", "high"}, {"xhigh", "high"}, {"max", "high"},
};

static rl_err rd_output_config(anth_dec *d, json_t *v)
{
    if (!json_is_object(v))
        return refuse(d->why, "output_config: Input should be a valid dictionary");
    const char *key;
    json_t *m;
    json_object_foreach(v, key, m)
    {
        if (strcmp(key, "effort") == 0) {
            const char *e = json_string_value(m);
            size_t i = 0;
            while (e && i < sizeof efforts / sizeof efforts[0] &&
                   strcmp(efforts[i].anthropic, e) != 0)
                i++;
            if (!e || i == sizeof efforts / sizeof efforts[0])
                return refuse(d->why, "output_config.effort: `%s` cannot be translated.",
                              e ? e : "(not a string)");
            d->req->reasoning_effort = efforts[i].effort;
            d->req->features[XL_F_THINKING] = "output_config.effort";
        } else if (strcmp(key, "format") == 0) {
            const char *type = json_string_value(json_object_get(m, "type"));
            json_t *schema = json_object_get(m, "schema");
            if (!type || strcmp(type, "json_schema") != 0 || !json_is_object(schema))
                return refuse(d->why, "output_config.format: only {type: json_schema, schema} "
                                      "can be translated.");
            d->req->format = XL_FORMAT_JSON_SCHEMA;
            d->req->format_strict = 1; /* Anthropic's structured output always is */
            if (!(d->req->format_schema = ptext(d->pool, schema)))
                return RL_NOMEM;
            d->req->features[XL_F_JSON_SCHEMA] = "output_config.format";
        } else {
            return refuse(d->why, "output_config.%s cannot be translated.", key);
        }
    }
    return RL_OK;
}

static rl_err rd_metadata(anth_dec *d, json_t *v)
{
    json_t *user = json_object_get(v, "user_id");
    if (json_is_string(user) && !(d->req->user = anth_pstr(d->pool, user)))
        return RL_NOMEM;
    return RL_OK;
}

static rl_err blk_text(anth_dec *d, json_t *b, const char *field, xl_part *out)
{
    json_t *text = json_object_get(b, "text");
    if (!json_is_string(text))
        return refuse(d->why, "%s.text: Input should be a valid string", field);
    out->kind = XL_PART_TEXT;
    return (out->text = anth_pstr(d->pool, text)) ? RL_OK : RL_NOMEM;
}

static rl_err blk_image(anth_dec *d, json_t *b, const char *field, xl_part *out)
{
    json_t *src = json_object_get(b, "source");
    const char *type = json_string_value(json_object_get(src, "type"));
    out->kind = XL_PART_IMAGE;
    d->req->features[XL_F_IMAGE] = "image";
    if (type && strcmp(type, "base64") == 0) {
        json_t *mt = json_object_get(src, "media_type"), *data = json_object_get(src, "data");
        if (!json_is_string(mt) || !json_is_string(data))
            return refuse(d->why, "%s.source: media_type and data are required", field);
        /* The model carries images only (found by fuzz_xlate: Gemini's
         * decoder refused the media type this one let through). */
        if (strncasecmp(json_string_value(mt), "image/", 6) != 0)
            return refuse(d->why, "%s.source.media_type: must be an image type to be translated",
                          field);
        return (out->media_type = anth_pstr(d->pool, mt)) && (out->data = anth_pstr(d->pool, data))
                   ? RL_OK
                   : RL_NOMEM;
    }
    if (type && strcmp(type, "url") == 0) {
        json_t *url = json_object_get(src, "url");
        if (!json_is_string(url))
            return refuse(d->why, "%s.source.url: Field required", field);
        d->req->features[XL_F_IMAGE_URL] = "image source url";
        return (out->url = anth_pstr(d->pool, url)) ? RL_OK : RL_NOMEM;
    }
    return refuse(d->why, "%s.source.type: `%s` cannot be translated.", field,
                  type ? type : "(none)");
}

static rl_err blk_tool_use(anth_dec *d, json_t *b, const char *field, xl_part *out)
{
    json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name");
    json_t *input = json_object_get(b, "input");
    if (!json_is_string(id) || !json_is_string(name))
        return refuse(d->why, "%s: id and name are required", field);
    if (input && !json_is_object(input))
        return refuse(d->why, "%s.input: Input should be a valid dictionary", field);
    out->kind = XL_PART_TOOL_CALL;
    if (!(out->id = anth_pstr(d->pool, id)) || !(out->name = anth_pstr(d->pool, name)))
        return RL_NOMEM;
    out->arguments = input ? ptext(d->pool, input) : "{}";
    return out->arguments ? RL_OK : RL_NOMEM;
}

static rl_err blk_tool_result(anth_dec *d, json_t *b, const char *field, xl_part *out)
{
    json_t *id = json_object_get(b, "tool_use_id"), *content = json_object_get(b, "content");
    if (!json_is_string(id))
        return refuse(d->why, "%s.tool_use_id: Field required", field);
    out->kind = XL_PART_TOOL_RESULT;
    out->is_error = json_is_true(json_object_get(b, "is_error"));
    if (!(out->id = anth_pstr(d->pool, id)))
        return RL_NOMEM;
    if (!content || json_is_string(content)) {
        out->text = content ? anth_pstr(d->pool, content) : "";
        return out->text ? RL_OK : RL_NOMEM;
    }
    if (!json_is_array(content))
        return refuse(d->why, "%s.content: Input should be a valid string or list", field);
    /* Text blocks joined with newlines: the model holds one text. */
    size_t n = 0, len = 0;
    char sub[160];
    snprintf(sub, sizeof sub, "%s.content", field);
    xl_part *texts = rl_palloc(d->pool, (json_array_size(content) + 1) * sizeof *texts);
    if (!texts)
        return RL_NOMEM;
    rl_err err = read_text_blocks(d, content, sub, texts, &n);
    if (err != RL_OK)
        return err;
    for (size_t i = 0; i < n; i++)
        len += strlen(texts[i].text) + 1;
    char *joined = rl_palloc(d->pool, len + 1);
    if (!joined)
        return RL_NOMEM;
    for (size_t i = 0, at = 0; i < n; i++) {
        size_t l = strlen(texts[i].text);
        if (i)
            joined[at++] = '\n';
        memcpy(joined + at, texts[i].text, l);
        at += l;
    }
    out->text = joined;
    return RL_OK;
}

static rl_err blk_thinking(anth_dec *d, json_t *b, const char *field, xl_part *out)
{
    json_t *text = json_object_get(b, "thinking"), *sig = json_object_get(b, "signature");
    if (!json_is_string(text))
        return refuse(d->why, "%s.thinking: Field required", field);
    out->kind = XL_PART_THINKING;
    if (!(out->text = anth_pstr(d->pool, text)) ||
        (json_is_string(sig) && !(out->signature = anth_pstr(d->pool, sig))))
        return RL_NOMEM;
    return RL_OK;
}

static rl_err blk_redacted(anth_dec *d, json_t *b, const char *field, xl_part *out)
{
    json_t *data = json_object_get(b, "data");
    if (!json_is_string(data))
        return refuse(d->why, "%s.data: Field required", field);
    out->kind = XL_PART_THINKING;
    out->redacted = 1;
    out->text = "";
    return (out->data = anth_pstr(d->pool, data)) ? RL_OK : RL_NOMEM;
}

/* The blocks a turn may hold, and the role each belongs in (-1: any).
 * Anything else (document, search_result, server_tool_use,
 * web_search_tool_result, container_upload...) is refused. */
const anth_block_type anth_block_types[] = {
    {"text", blk_text, -1},
    {"image", blk_image, XL_ROLE_USER},
    {"tool_use", blk_tool_use, XL_ROLE_ASSISTANT},
    {"tool_result", blk_tool_result, XL_ROLE_USER},
    {"thinking", blk_thinking, XL_ROLE_ASSISTANT},
    {"redacted_thinking", blk_redacted, XL_ROLE_ASSISTANT},
};

/* One message into turns appended to req->messages (room is there): an
 * assistant turn; or a user turn split in runs, tool results becoming
 * XL_ROLE_TOOL turns. */
static rl_err read_message(anth_dec *d, size_t i, json_t *msg)
{
    xl_request *req = d->req;
    char field[64];
    const char *role = json_string_value(json_object_get(msg, "role"));
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg))
        return refuse(d->why, "messages[%zu]: Input should be a valid dictionary", i);
    if (role && strcmp(role, "system") == 0) {
        snprintf(field, sizeof field, "messages[%zu].content", i);
        return add_system(d, content, field);
    }
    xl_role r;
    if (role && strcmp(role, "user") == 0)
        r = XL_ROLE_USER;
    else if (role && strcmp(role, "assistant") == 0)
        r = XL_ROLE_ASSISTANT;
    else
        return refuse(d->why, "messages[%zu].role: Input should be 'user' or 'assistant'", i);

    size_t n = json_is_array(content) ? json_array_size(content) : 1;
    xl_part *parts = rl_palloc(d->pool, (n + 1) * sizeof *parts);
    if (!parts)
        return RL_NOMEM;
    if (json_is_string(content)) {
        parts[0].kind = XL_PART_TEXT;
        if (!(parts[0].text = anth_pstr(d->pool, content)))
            return RL_NOMEM;
    } else if (json_is_array(content)) {
        size_t j;
        json_t *b;
        json_array_foreach(content, j, b)
        {
            char bfield[96];
            snprintf(bfield, sizeof bfield, "messages[%zu].content[%zu]", i, j);
            const char *type = json_string_value(json_object_get(b, "type"));
            size_t k = 0;
            while (type && k < sizeof anth_block_types / sizeof anth_block_types[0] &&
                   strcmp(anth_block_types[k].type, type) != 0)
                k++;
            if (!type || k == sizeof anth_block_types / sizeof anth_block_types[0])
                return refuse(d->why, "%s.type: `%s` cannot be translated.", bfield,
                              type ? type : "(none)");
            if (anth_block_types[k].role >= 0 && anth_block_types[k].role != (int)r)
                return refuse(d->why, "%s: a %s block cannot be in a %s turn.", bfield, type, role);
            rl_err err = anth_block_types[k].read(d, b, bfield, &parts[j]);
            if (err != RL_OK)
                return err;
        }
    } else {
        return refuse(d->why, "messages[%zu].content: Input should be a valid string or list", i);
    }

    /* Runs of the same kind: tool results, or anything else. */
    for (size_t start = 0; start < n;) {
        int results = parts[start].kind == XL_PART_TOOL_RESULT;
        size_t end = start + 1;
        while (end < n && (parts[end].kind == XL_PART_TOOL_RESULT) == results)
            end++;
        xl_message *m = &req->messages[req->nmessages++];
        m->role = results ? XL_ROLE_TOOL : r;
        m->parts = parts + start;
        m->nparts = end - start;
        start = end;
    }
    if (n == 0) { /* an empty list: kept as an empty turn */
        xl_message *m = &req->messages[req->nmessages++];
        m->role = r;
        m->parts = parts;
    }
    return RL_OK;
}

static rl_err rd_messages(anth_dec *d, json_t *v)
{
    if (!json_is_array(v))
        return refuse(d->why, "messages: Input should be a valid list");
    /* Every block may start a turn: room for the most turns there can be. */
    size_t room = 1, i;
    json_t *msg;
    json_array_foreach(v, i, msg)
    {
        json_t *c = json_object_get(msg, "content");
        room += json_is_array(c) && json_array_size(c) ? json_array_size(c) : 1;
    }
    if (!(d->req->messages = rl_palloc(d->pool, room * sizeof *d->req->messages)))
        return RL_NOMEM;
    json_array_foreach(v, i, msg)
    {
        rl_err err = read_message(d, i, msg);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

/* The members of a request, read in this order (system before messages:
 * a role "system" message adds to it). read NULL: skipped, it does not
 * change the answer (see the header). Members not listed are refused. */
static const struct {
    const char *name;
    rl_err (*read)(anth_dec *d, json_t *v);
    int required;
} request_fields[] = {
    {"model", rd_model, 1},
    {"max_tokens", rd_max_tokens, 1},
    {"system", rd_system, 0},
    {"messages", rd_messages, 1},
    {"stream", rd_stream, 0},
    {"temperature", rd_temperature, 0},
    {"top_p", rd_top_p, 0},
    {"top_k", rd_top_k, 0},
    {"stop_sequences", rd_stop_sequences, 0},
    {"tools", rd_tools, 0},
    {"tool_choice", rd_tool_choice, 0},
    {"thinking", rd_thinking, 0},
    {"output_config", rd_output_config, 0},
    {"metadata", rd_metadata, 0},
    {"service_tier", NULL, 0},
    {"context_management", NULL, 0},
};
#define NFIELDS (sizeof request_fields / sizeof request_fields[0])

rl_err anthropic_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                                xl_request *out, rl_buf *why)
{
    (void)path_model; /* Anthropic names the model in the body */
    xlate_request_init(out);

    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root) {
        rl_err err = prov_json_failed(&jerr, RL_BAD_JSON);
        if (err == RL_BAD_JSON)
            rl_buf_printf(why, "There was an error parsing the body of your request: %s",
                          jerr.text);
        return err;
    }
    anth_dec d = {pool, why, out, root};
    rl_err err = RL_OK;
    if (!json_is_object(root)) {
        err = refuse(why, "Input should be a valid dictionary or object to extract fields from");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        size_t f = 0;
        while (f < NFIELDS && strcmp(request_fields[f].name, key) != 0)
            f++;
        if (f == NFIELDS) {
            err = refuse(why, "`%s` cannot be translated: it has no equivalent in other formats.",
                         key);
            goto out;
        }
    }
    for (size_t f = 0; f < NFIELDS && err == RL_OK; f++) {
        v = json_object_get(root, request_fields[f].name);
        if (json_is_null(v)) /* null is how some clients say "unset" */
            v = NULL;
        if (!v && request_fields[f].required)
            err = refuse(why, "%s: Field required", request_fields[f].name);
        else if (v && request_fields[f].read)
            err = request_fields[f].read(&d, v);
    }
    if (err == RL_OK)
        err = xlate_pair_tool_results(out, why);
out:
    json_decref(root);
    return err;
}

/* ---- encode_request ----------------------------------------------------- */

/* One part as a content block of an upstream request, one writer per
 * part kind; *skip set for a part Anthropic is not sent (unsigned
 * thinking). NULL with *err (RL_NOMEM unless said otherwise). */
typedef json_t *(*block_writer)(const xl_part *p, int *skip, rl_err *err, rl_buf *why);

static json_t *req_text(const xl_part *p, int *skip, rl_err *err, rl_buf *why)
{
    (void)skip, (void)err, (void)why;
    return json_pack("{s:s, s:s}", "type", "text", "text", p->text ? p->text : "");
}

static json_t *req_image(const xl_part *p, int *skip, rl_err *err, rl_buf *why)
{
    (void)skip;
    if (p->data && p->media_type)
        return json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "image", "source", "type", "base64",
                         "media_type", p->media_type, "data", p->data);
    if (p->url)
        return json_pack("{s:s, s:{s:s, s:s}}", "type", "image", "source", "type", "url", "url",
                         p->url);
    *err = refuse(why, "An image without data or URL cannot be translated.");
    return NULL;
}

static json_t *req_tool_call(const xl_part *p, int *skip, rl_err *err, rl_buf *why)
{
    (void)skip;
    json_t *input = anth_load_object(p->arguments ? p->arguments : "{}", RL_BAD_REQUEST, err);
    if (!input) {
        if (*err == RL_BAD_REQUEST)
            refuse(why,
                   "The arguments of tool call `%s` are not a JSON object, which Anthropic's "
                   "tool_use input must be.",
                   p->id ? p->id : "(none)");
        return NULL;
    }
    *err = RL_NOMEM;
    return json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", p->id ? p->id : "", "name",
                     p->name ? p->name : "", "input", input);
}

static json_t *req_tool_result(const xl_part *p, int *skip, rl_err *err, rl_buf *why)
{
    (void)skip, (void)err, (void)why;
    json_t *b = json_pack("{s:s, s:s, s:s}", "type", "tool_result", "tool_use_id",
                          p->id ? p->id : "", "content", p->text ? p->text : "");
    if (b && p->is_error && json_object_set_new(b, "is_error", json_true()) != 0) {
        json_decref(b);
        return NULL;
    }
    return b;
}

static json_t *req_thinking(const xl_part *p, int *skip, rl_err *err, rl_buf *why)
{
    (void)err, (void)why;
    if (p->redacted && p->data)
        return json_pack("{s:s, s:s}", "type", "redacted_thinking", "data", p->data);
    if (!p->signature || !p->signature[0]) {
        *skip = 1; /* see the header: Anthropic refuses unsigned thinking */
        return NULL;
    }
    return json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", p->text ? p->text : "",
                     "signature", p->signature);
}

static const block_writer block_writers[] = {
    [XL_PART_TEXT] = req_text,           [XL_PART_IMAGE] = req_image,
    [XL_PART_TOOL_CALL] = req_tool_call, [XL_PART_TOOL_RESULT] = req_tool_result,
    [XL_PART_THINKING] = req_thinking,
};

static json_t *part_block(const xl_part *p, int *skip, rl_err *err, rl_buf *why)
{
    *skip = 0;
    *err = RL_NOMEM;
    if ((unsigned)p->kind >= sizeof block_writers / sizeof block_writers[0]) {
        *err = RL_INTERNAL;
        return NULL;
    }
    return block_writers[p->kind](p, skip, err, why);
}

/* The turn being assembled: a role run. In a user turn the tool_result
 * blocks come first (Anthropic wants them right after the tool_use turn),
 * then the rest in order. */
typedef struct turn {
    const char *role; /* "user" / "assistant", NULL before the first */
    json_t *results, *others;
} turn;

/* Appends the turn to messages (if it holds anything) and empties it. */
static rl_err flush_turn(turn *t, json_t *messages, rl_buf *why)
{
    if (!t->role)
        return RL_OK;
    rl_err err = RL_OK;
    size_t n = json_array_size(t->results) + json_array_size(t->others);
    if (n && json_array_size(messages) == 0 && strcmp(t->role, "assistant") == 0)
        err = refuse(why, "The conversation starts with an assistant turn, which Anthropic's "
                          "Messages API refuses (its first turn must be the user's).");
    else if (n) {
        json_t *content = json_array();
        if (!content || json_array_extend(content, t->results) != 0 ||
            json_array_extend(content, t->others) != 0 ||
            json_array_append_new(
                messages, json_pack("{s:s, s:o}", "role", t->role, "content", content)) != 0)
            err = RL_NOMEM;
        else
            content = NULL;
        json_decref(content);
    }
    json_array_clear(t->results);
    json_array_clear(t->others);
    t->role = NULL;
    return err;
}

static rl_err encode_messages(const xl_request *req, json_t *messages, rl_buf *why)
{
    turn t = {NULL, json_array(), json_array()};
    rl_err err = t.results && t.others ? RL_OK : RL_NOMEM;
    for (size_t m = 0; m < req->nmessages && err == RL_OK; m++) {
        const xl_message *msg = &req->messages[m];
        const char *role = msg->role == XL_ROLE_ASSISTANT ? "assistant" : "user";
        if (t.role && strcmp(t.role, role) != 0)
            err = flush_turn(&t, messages, why);
        t.role = role;
        for (size_t p = 0; p < msg->nparts && err == RL_OK; p++) {
            int skip;
            json_t *b = part_block(&msg->parts[p], &skip, &err, why);
            if (skip) {
                err = RL_OK;
                continue;
            }
            json_t *list = msg->parts[p].kind == XL_PART_TOOL_RESULT ? t.results : t.others;
            if (b && json_array_append_new(list, b) == 0)
                err = RL_OK;
            else if (b)
                err = RL_NOMEM;
        }
    }
    if (err == RL_OK)
        err = flush_turn(&t, messages, why);
    json_decref(t.results);
    json_decref(t.others);
    return err;
}

static json_t *encode_tools(const xl_request *req, rl_err *err, rl_buf *why)
{
    json_t *tools = json_array();
    *err = tools ? RL_OK : RL_NOMEM;
    for (size_t i = 0; i < req->ntools && *err == RL_OK; i++) {
        const xl_tool *t = &req->tools[i];
        /* Anthropic requires an input_schema: a tool without parameters
         * takes an empty object. */
        json_t *schema = t->parameters ? anth_load_object(t->parameters, RL_BAD_REQUEST, err)
                                       : json_pack("{s:s, s:{}}", "type", "object", "properties");
        if (!schema) {
            if (*err == RL_OK)
                *err = RL_NOMEM;
            else if (*err == RL_BAD_REQUEST)
                refuse(why, "The parameters of tool `%s` are not a JSON schema object.",
                       t->name ? t->name : "");
            break;
        }
        json_t *tool =
            json_pack("{s:s, s:o}", "name", t->name ? t->name : "", "input_schema", schema);
        if (tool && t->description &&
            json_object_set_new(tool, "description", json_string(t->description)) != 0) {
            json_decref(tool);
            tool = NULL;
        }
        if (!tool || json_array_append_new(tools, tool) != 0) /* taken either way */
            *err = RL_NOMEM;
    }
    if (*err != RL_OK) {
        json_decref(tools);
        return NULL;
    }
    return tools;
}

/* tool_choice, or NULL when there is nothing to say (*err RL_OK). */
static json_t *encode_tool_choice(const xl_request *req, rl_err *err)
{
    static const char *const types[] = {
        [XL_CHOICE_UNSET] = "auto",   [XL_CHOICE_AUTO] = "auto",  [XL_CHOICE_NONE] = "none",
        [XL_CHOICE_REQUIRED] = "any", [XL_CHOICE_NAMED] = "tool",
    };
    *err = RL_OK;
    if (req->tool_choice == XL_CHOICE_UNSET && req->parallel_tool_calls != 0)
        return NULL;
    json_t *c = json_pack("{s:s}", "type", types[req->tool_choice]);
    int failed = !c;
    if (req->tool_choice == XL_CHOICE_NAMED)
        failed |= json_object_set_new(
            c, "name", json_string(req->tool_choice_name ? req->tool_choice_name : ""));
    /* "none" takes no disable_parallel_tool_use: no tool runs at all. */
    if (req->parallel_tool_calls == 0 && req->tool_choice != XL_CHOICE_NONE)
        failed |= json_object_set_new(c, "disable_parallel_tool_use", json_true());
    if (!(c = prov_json_check(c, failed)))
        *err = RL_NOMEM;
    return c;
}

rl_err anthropic_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why)
{
    rl_err err = RL_NOMEM;
    json_t *root = json_object(), *messages = json_array();
    int failed =
        !root || json_object_set_new(root, "model", json_string(req->model ? req->model : ""));
    /* A reasoning effort (OpenAI's) becomes a budget; 0 means off. */
    int64_t budget = req->thinking_budget >= 0 ? req->thinking_budget
                                               : xlate_effort_budget(req->reasoning_effort);
    int64_t max_tokens = req->max_tokens;
    if (max_tokens < 0)
        max_tokens = XLATE_DEFAULT_MAX_TOKENS + (budget > 0 ? budget : 0);
    else if (budget > 0 && budget >= max_tokens && max_tokens > XLATE_ANTHROPIC_MIN_BUDGET)
        budget = max_tokens - 1; /* Anthropic: budget_tokens < max_tokens */
    else if (budget > 0 && budget >= max_tokens) {
        /* No budget Anthropic takes (at least 1024, below max_tokens) fits
         * the client's cap, and raising the cap would spend more than the
         * client allowed: refused, not sent to fail. */
        rl_buf_printf(why,
                      "A token cap of %lld leaves no room for thinking at Anthropic, whose "
                      "thinking budget must be at least %d tokens and below the cap: raise the "
                      "cap or turn thinking off.",
                      (long long)max_tokens, XLATE_ANTHROPIC_MIN_BUDGET);
        err = RL_BAD_REQUEST;
        goto out;
    }
    failed |= json_object_set_new(root, "max_tokens", json_integer(max_tokens));
    if (failed)
        goto out;

    if (req->nsystem == 1) {
        failed |= json_object_set_new(root, "system",
                                      json_string(req->system[0].text ? req->system[0].text : ""));
    } else if (req->nsystem > 1) {
        json_t *sys = json_array();
        failed |= json_object_set_new(root, "system", sys);
        for (size_t i = 0; i < req->nsystem && !failed; i++)
            failed |= json_array_append_new(
                sys, json_pack("{s:s, s:s}", "type", "text", "text",
                               req->system[i].text ? req->system[i].text : ""));
    }
    if (failed || json_object_set(root, "messages", messages) != 0)
        goto out;
    if ((err = encode_messages(req, messages, why)) != RL_OK)
        goto out;

    if (req->ntools) {
        json_t *tools = encode_tools(req, &err, why);
        if (!tools || json_object_set_new(root, "tools", tools) != 0)
            goto out_nomem;
        json_t *choice = encode_tool_choice(req, &err);
        if (err != RL_OK || (choice && json_object_set_new(root, "tool_choice", choice) != 0))
            goto out_nomem;
    }
    if (req->nstop) {
        json_t *stop = json_array();
        failed |= json_object_set_new(root, "stop_sequences", stop);
        for (size_t i = 0; i < req->nstop && !failed; i++)
            failed |= json_array_append_new(stop, json_string(req->stop[i]));
    }
    if (req->temperature >= 0)
        failed |= json_object_set_new(root, "temperature", json_real(req->temperature));
    if (req->top_p >= 0)
        failed |= json_object_set_new(root, "top_p", json_real(req->top_p));
    if (req->top_k >= 0)
        failed |= json_object_set_new(root, "top_k", json_integer(req->top_k));
    if (budget > 0)
        failed |= json_object_set_new(
            root, "thinking",
            json_pack("{s:s, s:I}", "type", "enabled", "budget_tokens", (json_int_t)budget));
    if (req->user)
        failed |= json_object_set_new(root, "metadata", json_pack("{s:s}", "user_id", req->user));
    if (req->stream) /* Anthropic's streams carry usage unasked */
        failed |= json_object_set_new(root, "stream", json_true());
    if (failed)
        goto out_nomem;
    if ((err = prov_json_dump(root, JSON_COMPACT, out)) == RL_OK)
        err = rl_buf_puts(path, "/v1/messages");
    goto out;
out_nomem:
    if (err == RL_OK)
        err = RL_NOMEM;
out:
    json_decref(messages);
    json_decref(root);
    return err;
}
