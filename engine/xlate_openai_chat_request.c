/*
 * xlate_openai_chat_request.c — the request side of OpenAI Chat
 * Completions as a dialect of the translation model (xlate.h). This file
 * decodes: a client's body read into the model (chat_decode_request).
 * xlate_openai_chat_request_encode.c writes the model as the upstream's
 * body and path (chat_encode_request), as told under "Model -> upstream
 * request" below. The answers, errors, streams and the xl_openai_chat
 * table that points here are in xlate_openai_chat.c; what the files share
 * is in xlate_openai_chat_int.h.
 *
 * What maps to what (client request -> model):
 *   system / developer messages at the start -> system TEXT parts, in order
 *     (content as a string or as text parts). One later in the conversation
 *     is lifted only when it is empty (nothing changes); otherwise it is
 *     refused, since moving an instruction given mid-conversation ahead of
 *     the turns before it changes what it applies to.
 *   user: string or parts: text; image_url with a base64 data: URL (->
 *     media_type + data) or an http(s) URL (-> url, feature IMAGE_URL);
 *     image_url.detail is dropped (a resolution hint with no place in the
 *     other formats; the picture is the same).
 *   assistant: content (string, text and refusal parts), refusal, tool_calls
 *     (id, function.name, function.arguments parsed and kept as compact
 *     JSON), reasoning_content (DeepSeek/vLLM style) -> THINKING.
 *   tool (tool_call_id, content) -> TOOL_RESULT; consecutive tool messages
 *     make one XL_ROLE_TOOL turn (the answers to one assistant turn's
 *     parallel calls), paired with their calls by id.
 *   tools (type function: name, description, parameters, strict),
 *   tool_choice (auto, none, required, {function:{name}}),
 *   parallel_tool_calls, stop (string or list), max_tokens and
 *   max_completion_tokens (the latter wins), temperature, top_p, top_k
 *   (vLLM's extension), seed, presence/frequency_penalty (features only
 *   when non-zero), n, response_format (json_object, json_schema),
 *   reasoning_effort ("none" = unset), user (or safety_identifier),
 *   stream, stream_options.include_usage.
 * Skipped (they do not change the answer): store, metadata, service_tier,
 *   prompt_cache_key, prompt_cache_retention, logprobs:false,
 *   modalities:["text"], an empty logit_bias; any field given as null.
 * Refused with a 400 naming the field: logit_bias, logprobs:true,
 *   top_logprobs, audio, modalities other than text, functions,
 *   function_call (and role "function", assistant function_call), prediction,
 *   web_search_options, verbosity, response_format.json_schema.description,
 *   message name, input_audio and file parts, tools other than functions,
 *   tool_choice allowed_tools/custom, and any field this file does not know
 *   (a new field may change the answer; refusing it is the safe default).
 *
 * Model -> upstream request: one system message (the system parts joined by
 * a blank line: every OpenAI-compatible chat template accepts one leading
 * system message, not all accept several or text parts there); user turns
 * as a string when they are one text, else parts; an image as image_url
 * (data: URL rebuilt from media_type + data); assistant turns with content
 * (null when only tool calls) and tool_calls; each TOOL_RESULT as its own
 * tool message (is_error has no place in Chat Completions: the result's
 * text is sent as it is); THINKING parts are dropped (Chat Completions
 * takes no reasoning back; DeepSeek refuses reasoning_content in input).
 * The cap is sent as max_completion_tokens: OpenAI's reasoning models
 * refuse max_tokens, while servers that only know max_tokens (Ollama's
 * /v1) merely ignore the unknown field, which costs an uncapped answer, not
 * a failed one. A streamed request always asks for
 * stream_options.include_usage, so usage can be accounted and passed on.
 * top_k is not in caps (OpenAI refuses it; the features check says so).
 */
#include "engine/xlate_openai_chat_int.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "engine/prov_json.h"

/* ---- small helpers ------------------------------------------------------- */

rl_err chat_refuse(rl_buf *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rl_buf_vprintf(why, fmt, ap); /* sticky: the engine checks why before use */
    va_end(ap);
    return RL_BAD_REQUEST;
}

/* j's compact JSON text in the pool, or NULL when out of memory. */
static const char *json_text(rl_pool *pool, json_t *j)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    const char *s = NULL;
    if (prov_json_dump(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER, &b) == RL_OK)
        s = rl_pstrndup(pool, b.data ? b.data : "", b.len);
    rl_buf_release(&b);
    return s;
}

/* ==== requests: client body -> model ===================================== */

typedef struct dec {
    rl_pool *pool;
    rl_buf *why;
    xl_request *req;
} dec;

typedef rl_err (*field_fn)(dec *d, const char *name, json_t *v);

static rl_err f_skip(dec *d, const char *name, json_t *v)
{
    (void)d, (void)name, (void)v;
    return RL_OK;
}

static rl_err f_refuse(dec *d, const char *name, json_t *v)
{
    (void)v;
    return chat_refuse(
        d->why,
        "`%s` has no equivalent in the other formats, so it cannot be translated: send "
        "it to an upstream that speaks OpenAI Chat Completions.",
        name);
}

static rl_err f_model(dec *d, const char *name, json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) == 0)
        return chat_refuse(d->why, "`%s` must be a non-empty string.", name);
    return chat_dup_str(d->pool, json_string_value(v), &d->req->model);
}

static rl_err f_stream(dec *d, const char *name, json_t *v)
{
    if (!json_is_boolean(v))
        return chat_refuse(d->why, "`%s` must be a boolean.", name);
    d->req->stream = json_is_true(v);
    return RL_OK;
}

static rl_err f_stream_options(dec *d, const char *name, json_t *v)
{
    if (!json_is_object(v))
        return chat_refuse(d->why, "`%s` must be an object.", name);
    d->req->include_usage = json_is_true(json_object_get(v, "include_usage"));
    return RL_OK;
}

static rl_err f_tools(dec *d, const char *name, json_t *v)
{
    if (!json_is_array(v))
        return chat_refuse(d->why, "`%s` must be an array.", name);
    size_t n = json_array_size(v);
    xl_tool *tools = rl_palloc(d->pool, (n ? n : 1) * sizeof *tools);
    if (!tools)
        return RL_NOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(v, i);
        const char *type = json_string_value(json_object_get(t, "type"));
        json_t *fn = json_object_get(t, "function");
        if (!type || strcmp(type, "function") != 0)
            return chat_refuse(
                d->why,
                "`tools[%zu].type` `%s` cannot be translated: only function tools map "
                "to the other formats.",
                i, type ? type : "(missing)");
        const char *fname = json_string_value(json_object_get(fn, "name"));
        if (!fname || !fname[0])
            return chat_refuse(d->why, "`tools[%zu].function.name` is required.", i);
        json_t *params = json_object_get(fn, "parameters");
        json_t *strict = json_object_get(fn, "strict");
        xl_tool *tool = &tools[i];
        tool->strict = json_is_boolean(strict) ? json_is_true(strict) : -1;
        rl_err err = chat_dup_str(d->pool, fname, &tool->name);
        if (err == RL_OK)
            err = chat_dup_str(d->pool, json_string_value(json_object_get(fn, "description")),
                               &tool->description);
        if (err != RL_OK)
            return err;
        if (json_is_object(params) && !(tool->parameters = json_text(d->pool, params)))
            return RL_NOMEM;
    }
    d->req->tools = tools;
    d->req->ntools = n;
    if (n)
        d->req->features[XL_F_TOOLS] = "tools";
    return RL_OK;
}

static rl_err f_tool_choice(dec *d, const char *name, json_t *v)
{
    static const struct {
        const char *value;
        xl_tool_choice choice;
    } choices[] = {
        {"auto", XL_CHOICE_AUTO},
        {"none", XL_CHOICE_NONE},
        {"required", XL_CHOICE_REQUIRED},
    };
    for (size_t i = 0; json_is_string(v) && i < sizeof choices / sizeof choices[0]; i++)
        if (strcmp(json_string_value(v), choices[i].value) == 0) {
            d->req->tool_choice = choices[i].choice;
            return RL_OK;
        }
    const char *type = json_string_value(json_object_get(v, "type"));
    const char *fname = json_string_value(json_object_get(json_object_get(v, "function"), "name"));
    if (type && strcmp(type, "function") == 0 && fname && fname[0]) {
        d->req->tool_choice = XL_CHOICE_NAMED;
        return chat_dup_str(d->pool, fname, &d->req->tool_choice_name);
    }
    return chat_refuse(
        d->why,
        "`%s` cannot be translated: only \"auto\", \"none\", \"required\" and "
        "{\"type\":\"function\",\"function\":{\"name\":...}} map to the other formats.",
        name);
}

static rl_err f_parallel(dec *d, const char *name, json_t *v)
{
    if (!json_is_boolean(v))
        return chat_refuse(d->why, "`%s` must be a boolean.", name);
    d->req->parallel_tool_calls = json_is_true(v);
    if (!d->req->parallel_tool_calls)
        d->req->features[XL_F_PARALLEL_OFF] = "parallel_tool_calls";
    return RL_OK;
}

static rl_err f_stop(dec *d, const char *name, json_t *v)
{
    size_t n = json_is_string(v) ? 1 : json_array_size(v);
    if (!json_is_string(v) && !json_is_array(v))
        return chat_refuse(d->why, "`%s` must be a string or an array of strings.", name);
    const char **stop = rl_palloc(d->pool, (n ? n : 1) * sizeof *stop);
    if (!stop)
        return RL_NOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(s))
            return chat_refuse(d->why, "`%s[%zu]` must be a string.", name, i);
        rl_err err = chat_dup_str(d->pool, json_string_value(s), &stop[i]);
        if (err != RL_OK)
            return err;
    }
    d->req->stop = stop;
    d->req->nstop = n;
    if (n)
        d->req->features[XL_F_STOP] = "stop";
    return RL_OK;
}

static rl_err f_max_tokens(dec *d, const char *name, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return chat_refuse(d->why, "`%s` must be a positive integer.", name);
    /* max_completion_tokens replaced max_tokens: it wins when both come */
    if (d->req->max_tokens < 0 || strcmp(name, "max_completion_tokens") == 0)
        d->req->max_tokens = json_integer_value(v);
    return RL_OK;
}

/* A number >= 0 (every dialect's range for these starts at 0). */
static rl_err number(dec *d, const char *name, json_t *v, double *out)
{
    if (!json_is_number(v) || json_number_value(v) < 0)
        return chat_refuse(d->why, "`%s` must be a number, 0 or more.", name);
    *out = json_number_value(v);
    return RL_OK;
}

static rl_err f_temperature(dec *d, const char *name, json_t *v)
{
    return number(d, name, v, &d->req->temperature);
}

static rl_err f_top_p(dec *d, const char *name, json_t *v)
{
    return number(d, name, v, &d->req->top_p);
}

static rl_err f_top_k(dec *d, const char *name, json_t *v)
{
    if (!json_is_integer(v))
        return chat_refuse(d->why, "`%s` must be an integer.", name);
    if (json_integer_value(v) < 1) /* vLLM's -1 (and 0): no top-k, the default */
        return RL_OK;
    d->req->top_k = json_integer_value(v);
    d->req->features[XL_F_TOP_K] = "top_k";
    return RL_OK;
}

static rl_err f_seed(dec *d, const char *name, json_t *v)
{
    if (!json_is_integer(v))
        return chat_refuse(d->why, "`%s` must be an integer.", name);
    d->req->seed = json_integer_value(v);
    d->req->features[XL_F_SEED] = "seed";
    return RL_OK;
}

static rl_err f_penalty(dec *d, const char *name, json_t *v)
{
    if (!json_is_number(v))
        return chat_refuse(d->why, "`%s` must be a number.", name);
    double p = json_number_value(v);
    if (strcmp(name, "presence_penalty") == 0)
        d->req->presence_penalty = p;
    else
        d->req->frequency_penalty = p;
    if (p != 0) /* 0 is the default: nothing to carry */
        d->req->features[XL_F_PENALTIES] =
            strcmp(name, "presence_penalty") == 0 ? "presence_penalty" : "frequency_penalty";
    return RL_OK;
}

static rl_err f_n(dec *d, const char *name, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return chat_refuse(d->why, "`%s` must be a positive integer.", name);
    d->req->n = json_integer_value(v);
    if (d->req->n > 1)
        d->req->features[XL_F_CHOICES] = "n";
    return RL_OK;
}

static rl_err f_response_format(dec *d, const char *name, json_t *v)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    xl_request *req = d->req;
    if (type && strcmp(type, "text") == 0)
        return RL_OK;
    if (type && strcmp(type, "json_object") == 0) {
        req->format = XL_FORMAT_JSON_OBJECT;
        req->features[XL_F_JSON_OBJECT] = "response_format";
        return RL_OK;
    }
    json_t *js = json_object_get(v, "json_schema");
    if (!type || strcmp(type, "json_schema") != 0 || !json_is_object(js))
        return chat_refuse(d->why,
                           "`%s` cannot be translated: only the types text, json_object and "
                           "json_schema map to the other formats.",
                           name);
    if (json_object_get(js, "description"))
        return chat_refuse(d->why,
                           "`%s.json_schema.description` has no equivalent in the other "
                           "formats, so it cannot be translated.",
                           name);
    json_t *schema = json_object_get(js, "schema");
    req->format = XL_FORMAT_JSON_SCHEMA;
    req->features[XL_F_JSON_SCHEMA] = "response_format";
    req->format_strict = json_is_true(json_object_get(js, "strict"));
    rl_err err =
        chat_dup_str(d->pool, json_string_value(json_object_get(js, "name")), &req->format_name);
    if (err == RL_OK && json_is_object(schema) &&
        !(req->format_schema = json_text(d->pool, schema)))
        err = RL_NOMEM;
    return err;
}

static rl_err f_effort(dec *d, const char *name, json_t *v)
{
    const char *effort = json_string_value(v);
    if (effort && strcmp(effort, "none") == 0) /* no reasoning: the default elsewhere */
        return RL_OK;
    if (!effort || xlate_effort_budget(effort) < 0)
        return chat_refuse(d->why,
                           "`%s` cannot be translated: only \"none\", \"minimal\", \"low\", "
                           "\"medium\" and \"high\" map to the other formats.",
                           name);
    d->req->features[XL_F_THINKING] = "reasoning_effort";
    return chat_dup_str(d->pool, effort, &d->req->reasoning_effort);
}

static rl_err f_user(dec *d, const char *name, json_t *v)
{
    if (!json_is_string(v))
        return chat_refuse(d->why, "`%s` must be a string.", name);
    /* user is the older name of safety_identifier: it wins when both come */
    if (d->req->user && strcmp(name, "user") != 0)
        return RL_OK;
    return chat_dup_str(d->pool, json_string_value(v), &d->req->user);
}

static rl_err f_logprobs(dec *d, const char *name, json_t *v)
{
    return json_is_false(v) ? RL_OK : f_refuse(d, name, v);
}

static rl_err f_modalities(dec *d, const char *name, json_t *v)
{
    const char *only = json_string_value(json_array_get(v, 0));
    if (json_array_size(v) == 1 && only && strcmp(only, "text") == 0)
        return RL_OK;
    return f_refuse(d, name, v);
}

static rl_err f_logit_bias(dec *d, const char *name, json_t *v)
{
    return json_is_object(v) && json_object_size(v) == 0 ? RL_OK : f_refuse(d, name, v);
}

static rl_err f_messages(dec *d, const char *name, json_t *v);

/* Every top-level field this dialect knows; any other is refused. */
static const struct {
    const char *name;
    field_fn read;
} fields[] = {
    {"model", f_model},
    {"messages", f_messages},
    {"stream", f_stream},
    {"stream_options", f_stream_options},
    {"tools", f_tools},
    {"tool_choice", f_tool_choice},
    {"parallel_tool_calls", f_parallel},
    {"stop", f_stop},
    {"max_tokens", f_max_tokens},
    {"max_completion_tokens", f_max_tokens},
    {"temperature", f_temperature},
    {"top_p", f_top_p},
    {"top_k", f_top_k},
    {"seed", f_seed},
    {"presence_penalty", f_penalty},
    {"frequency_penalty", f_penalty},
    {"n", f_n},
    {"response_format", f_response_format},
    {"reasoning_effort", f_effort},
    {"user", f_user},
    {"safety_identifier", f_user},
    {"logprobs", f_logprobs},
    {"modalities", f_modalities},
    {"logit_bias", f_logit_bias},
    /* no change to the answer */
    {"store", f_skip},
    {"metadata", f_skip},
    {"service_tier", f_skip},
    {"prompt_cache_key", f_skip},
    {"prompt_cache_retention", f_skip},
    /* no place in the model */
    {"top_logprobs", f_refuse},
    {"audio", f_refuse},
    {"functions", f_refuse},
    {"function_call", f_refuse},
    {"prediction", f_refuse},
    {"web_search_options", f_refuse},
    {"verbosity", f_refuse},
};

/* ---- messages ------------------------------------------------------------ */

/* Which content parts a role may hold. */
enum { ALLOW_TEXT = 1, ALLOW_IMAGE = 2, ALLOW_REFUSAL = 4 };

static rl_err part_image(dec *d, const char *path, json_t *p, xl_part *out)
{
    json_t *iu = json_object_get(p, "image_url");
    const char *url = json_string_value(json_is_object(iu) ? json_object_get(iu, "url") : iu);
    out->kind = XL_PART_IMAGE;
    d->req->features[XL_F_IMAGE] = "image_url";
    if (!url)
        return chat_refuse(d->why, "`%s.image_url.url` is required.", path);
    /* The model carries images only (xl_part): another media type would
     * reach an upstream as an image it is not (fuzz_xlate: Gemini's own
     * decoder refused the "impng" this one let through). */
    if (xlate_data_url(d->pool, url, &out->media_type, &out->data) == 0)
        return strncasecmp(out->media_type, "image/", 6) == 0
                   ? RL_OK
                   : chat_refuse(
                         d->why,
                         "`%s.image_url.url` must be an image's data: URL to be translated.", path);
    /* xlate_data_url says -1 for a URL that is not a base64 data: URL and
     * for a failed copy: one that looks whole failed for want of memory. */
    const char *b64 = strncasecmp(url, "data:", 5) == 0 ? strstr(url, ";base64") : NULL;
    if (b64 && strchr(url, ',') == b64 + 7)
        return RL_NOMEM;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return chat_refuse(d->why,
                           "`%s.image_url.url` must be an http(s) URL or a base64 data: URL to be "
                           "translated.",
                           path);
    d->req->features[XL_F_IMAGE_URL] = "image_url.url";
    return chat_dup_str(d->pool, url, &out->url);
}

/* Reads content (a string or an array of parts) into parts[*n...] (room
 * for json_array_size or 1 more), allowing the kinds in allow. */
static rl_err read_content(dec *d, const char *path, json_t *content, unsigned allow,
                           xl_part *parts, size_t *n)
{
    if (json_is_string(content)) {
        parts[*n].kind = XL_PART_TEXT;
        return chat_dup_str(d->pool, json_string_value(content), &parts[(*n)++].text);
    }
    if (!json_is_array(content))
        return chat_refuse(d->why, "`%s` must be a string or an array of content parts.", path);
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p)
    {
        char at[128];
        snprintf(at, sizeof at, "%s[%zu]", path, i);
        const char *type = json_string_value(json_object_get(p, "type"));
        const char *text = NULL;
        if (type && strcmp(type, "text") == 0 && (allow & ALLOW_TEXT))
            text = json_string_value(json_object_get(p, "text"));
        else if (type && strcmp(type, "refusal") == 0 && (allow & ALLOW_REFUSAL))
            text = json_string_value(json_object_get(p, "refusal"));
        else if (type && strcmp(type, "image_url") == 0 && (allow & ALLOW_IMAGE)) {
            rl_err err = part_image(d, at, p, &parts[(*n)++]);
            if (err != RL_OK)
                return err;
            continue;
        } else
            return chat_refuse(d->why, "`%s` of type `%s` cannot be translated to another format.",
                               at, type ? type : "(missing)");
        if (!text)
            return chat_refuse(d->why, "`%s` has no text.", at);
        parts[*n].kind = XL_PART_TEXT;
        rl_err err = chat_dup_str(d->pool, text, &parts[(*n)++].text);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

static size_t content_room(json_t *content)
{
    return json_is_array(content) ? json_array_size(content) : 1;
}

/* Keys a message may have (per role); "name" and anything unknown are
 * refused, since they would change the answer (a participant's name) or
 * cannot be told apart from something that would. */
static rl_err check_keys(dec *d, size_t m, json_t *msg, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(msg, key, v)
    {
        int ok = json_is_null(v);
        for (size_t i = 0; !ok && allowed[i]; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok)
            return chat_refuse(d->why, "`messages[%zu].%s` cannot be translated to another format.",
                               m, key);
    }
    return RL_OK;
}

static rl_err read_user(dec *d, size_t m, json_t *msg, xl_message *out)
{
    static const char *const keys[] = {"role", "content", NULL};
    json_t *content = json_object_get(msg, "content");
    char path[64];
    snprintf(path, sizeof path, "messages[%zu].content", m);
    rl_err err = check_keys(d, m, msg, keys);
    if (err != RL_OK)
        return err;
    out->role = XL_ROLE_USER;
    if (!(out->parts = rl_palloc(d->pool, content_room(content) * sizeof *out->parts)))
        return RL_NOMEM;
    return read_content(d, path, content, ALLOW_TEXT | ALLOW_IMAGE, out->parts, &out->nparts);
}

/* Arguments as the client sent them (a JSON object's text, "" for none)
 * as compact JSON text; the other formats carry them as objects. */
static rl_err read_arguments(dec *d, const char *path, json_t *args, const char **out)
{
    const char *s = json_string_value(args);
    if (!s || !s[0]) {
        *out = "{}";
        return RL_OK;
    }
    json_error_t jerr;
    json_t *obj = prov_json_load(s, strlen(s), &jerr);
    rl_err err = RL_OK;
    if (!obj)
        err = prov_json_failed(&jerr, RL_BAD_REQUEST);
    else if (!json_is_object(obj))
        err = RL_BAD_REQUEST;
    else if (!(*out = json_text(d->pool, obj)))
        err = RL_NOMEM;
    json_decref(obj);
    if (err == RL_BAD_REQUEST)
        chat_refuse(d->why, "`%s` must be a JSON object's text to be translated.", path);
    return err;
}

static rl_err read_tool_call(dec *d, size_t m, size_t k, json_t *tc, xl_part *out)
{
    const char *type = json_string_value(json_object_get(tc, "type"));
    json_t *fn = json_object_get(tc, "function");
    const char *id = json_string_value(json_object_get(tc, "id"));
    const char *fname = json_string_value(json_object_get(fn, "name"));
    if (type && strcmp(type, "function") != 0)
        return chat_refuse(
            d->why, "`messages[%zu].tool_calls[%zu].type` `%s` cannot be translated.", m, k, type);
    if (!id || !fname)
        return chat_refuse(
            d->why, "`messages[%zu].tool_calls[%zu]` needs an id and a function.name.", m, k);
    char path[96];
    snprintf(path, sizeof path, "messages[%zu].tool_calls[%zu].function.arguments", m, k);
    out->kind = XL_PART_TOOL_CALL;
    rl_err err = chat_dup_str(d->pool, id, &out->id);
    if (err == RL_OK)
        err = chat_dup_str(d->pool, fname, &out->name);
    if (err == RL_OK)
        err = read_arguments(d, path, json_object_get(fn, "arguments"), &out->arguments);
    return err;
}

static rl_err read_assistant(dec *d, size_t m, json_t *msg, xl_message *out)
{
    static const char *const keys[] = {"role",    "content",           "tool_calls",
                                       "refusal", "reasoning_content", NULL};
    rl_err err = check_keys(d, m, msg, keys);
    json_t *content = json_object_get(msg, "content");
    json_t *calls = json_object_get(msg, "tool_calls");
    json_t *reasoning = json_object_get(msg, "reasoning_content");
    json_t *refusal = json_object_get(msg, "refusal");
    size_t room = 2 + content_room(content) + json_array_size(calls);
    out->role = XL_ROLE_ASSISTANT;
    if (err == RL_OK && !(out->parts = rl_palloc(d->pool, room * sizeof *out->parts)))
        err = RL_NOMEM;
    if (err != RL_OK)
        return err;
    /* Reasoning came before the answer it led to. */
    if (json_is_string(reasoning) && json_string_length(reasoning) > 0) {
        out->parts[out->nparts].kind = XL_PART_THINKING;
        if ((err = chat_dup_str(d->pool, json_string_value(reasoning),
                                &out->parts[out->nparts++].text)) != RL_OK)
            return err;
    }
    char path[64];
    snprintf(path, sizeof path, "messages[%zu].content", m);
    if (!json_is_null(content) && content &&
        (err = read_content(d, path, content, ALLOW_TEXT | ALLOW_REFUSAL, out->parts,
                            &out->nparts)) != RL_OK)
        return err;
    if (json_is_string(refusal) && json_string_length(refusal) > 0) {
        out->parts[out->nparts].kind = XL_PART_TEXT;
        if ((err = chat_dup_str(d->pool, json_string_value(refusal),
                                &out->parts[out->nparts++].text)) != RL_OK)
            return err;
    }
    if (calls && !json_is_null(calls) && !json_is_array(calls))
        return chat_refuse(d->why, "`messages[%zu].tool_calls` must be an array.", m);
    size_t k;
    json_t *tc;
    json_array_foreach(calls, k, tc)
    {
        if ((err = read_tool_call(d, m, k, tc, &out->parts[out->nparts++])) != RL_OK)
            return err;
    }
    return RL_OK;
}

/* The text of a tool message's content: a string, or its text parts
 * joined. */
static rl_err tool_text(dec *d, size_t m, json_t *content, const char **out)
{
    if (json_is_string(content) || !content || json_is_null(content))
        return chat_dup_str(d->pool, content ? json_string_value(content) : "", out);
    if (!json_is_array(content))
        return chat_refuse(d->why, "`messages[%zu].content` must be a string or text parts.", m);
    rl_buf b;
    rl_buf_init(&b, 0);
    size_t i;
    json_t *p;
    rl_err err = RL_OK;
    json_array_foreach(content, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        const char *text = json_string_value(json_object_get(p, "text"));
        if (!type || strcmp(type, "text") != 0 || !text) {
            err = chat_refuse(d->why,
                              "`messages[%zu].content[%zu]` cannot be translated: a tool result "
                              "holds text parts only.",
                              m, i);
            break;
        }
        rl_buf_puts(&b, text);
    }
    if (err == RL_OK)
        err =
            rl_buf_error(&b) != RL_OK ? RL_NOMEM : chat_dup_str(d->pool, b.data ? b.data : "", out);
    rl_buf_release(&b);
    return err;
}

/* A tool message joins the XL_ROLE_TOOL turn before it, if any (the
 * answers to one turn's parallel calls are one turn in the model). */
static rl_err read_tool(dec *d, size_t m, json_t *msg, xl_message *out, xl_message *prev)
{
    static const char *const keys[] = {"role", "content", "tool_call_id", NULL};
    rl_err err = check_keys(d, m, msg, keys);
    const char *id = json_string_value(json_object_get(msg, "tool_call_id"));
    if (err != RL_OK)
        return err;
    if (!id)
        return chat_refuse(d->why, "`messages[%zu].tool_call_id` is required.", m);
    xl_message *turn = prev && prev->role == XL_ROLE_TOOL ? prev : out;
    xl_part *parts = rl_palloc(d->pool, (turn->nparts + 1) * sizeof *parts);
    if (!parts)
        return RL_NOMEM;
    if (turn->nparts)
        memcpy(parts, turn->parts, turn->nparts * sizeof *parts);
    xl_part *part = &parts[turn->nparts];
    part->kind = XL_PART_TOOL_RESULT;
    if ((err = chat_dup_str(d->pool, id, &part->id)) != RL_OK ||
        (err = tool_text(d, m, json_object_get(msg, "content"), &part->text)) != RL_OK)
        return err;
    turn->role = XL_ROLE_TOOL;
    turn->parts = parts;
    turn->nparts++;
    return turn == out ? RL_OK : RL_STOPPED; /* RL_STOPPED: merged, no new turn */
}

/* System text parts of a system/developer message into req->system. */
static rl_err read_system(dec *d, size_t m, json_t *msg)
{
    static const char *const keys[] = {"role", "content", NULL};
    char path[64];
    snprintf(path, sizeof path, "messages[%zu].content", m);
    rl_err err = check_keys(d, m, msg, keys);
    if (err != RL_OK)
        return err;
    return read_content(d, path, json_object_get(msg, "content"), ALLOW_TEXT, d->req->system,
                        &d->req->nsystem);
}

static int is_system(json_t *msg)
{
    const char *role = json_string_value(json_object_get(msg, "role"));
    return role && (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0);
}

/* A system message after the conversation began: see the header. */
static int empty_content(json_t *content)
{
    if (json_is_string(content))
        return json_string_length(content) == 0;
    return json_is_array(content) && json_array_size(content) == 0;
}

static rl_err f_messages(dec *d, const char *name, json_t *v)
{
    size_t n = json_array_size(v), m = 0, room = 0;
    if (!json_is_array(v) || n == 0)
        return chat_refuse(d->why, "`%s` must be a non-empty array.", name);
    xl_request *req = d->req;
    for (size_t k = 0; k < n && is_system(json_array_get(v, k)); k++)
        room += content_room(json_object_get(json_array_get(v, k), "content"));
    if (!(req->system = rl_palloc(d->pool, (room ? room : 1) * sizeof *req->system)) ||
        !(req->messages = rl_palloc(d->pool, n * sizeof *req->messages)))
        return RL_NOMEM;
    rl_err err = RL_OK;
    for (; m < n && is_system(json_array_get(v, m)) && err == RL_OK; m++)
        err = read_system(d, m, json_array_get(v, m));
    for (; m < n && err == RL_OK; m++) {
        json_t *msg = json_array_get(v, m);
        const char *role = json_string_value(json_object_get(msg, "role"));
        xl_message *out = &req->messages[req->nmessages];
        xl_message *prev = req->nmessages ? out - 1 : NULL;
        if (!json_is_object(msg) || !role)
            return chat_refuse(d->why, "`messages[%zu].role` is required.", m);
        if (strcmp(role, "user") == 0)
            err = read_user(d, m, msg, out);
        else if (strcmp(role, "assistant") == 0)
            err = read_assistant(d, m, msg, out);
        else if (strcmp(role, "tool") == 0)
            err = read_tool(d, m, msg, out, prev);
        else if (is_system(msg) && empty_content(json_object_get(msg, "content")))
            continue;
        else if (is_system(msg))
            return chat_refuse(d->why,
                               "`messages[%zu]` is a %s message after the conversation began; the "
                               "other formats have one system prompt before every turn, and moving "
                               "it there would change what it applies to.",
                               m, role);
        else
            return chat_refuse(d->why, "`messages[%zu].role` `%s` cannot be translated.", m, role);
        if (err == RL_OK)
            req->nmessages++;
        else if (err == RL_STOPPED)
            err = RL_OK;
    }
    return err;
}

rl_err chat_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                           xl_request *out, rl_buf *why)
{
    (void)path_model; /* the model is in the body */
    xlate_request_init(out);
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root) {
        rl_err err = prov_json_failed(&jerr, RL_BAD_JSON);
        if (err == RL_BAD_JSON)
            rl_buf_printf(why, "We could not parse the JSON body of your request: %s (at byte %d)",
                          jerr.text, jerr.position);
        return err;
    }
    dec d = {pool, why, out};
    rl_err err =
        json_is_object(root) ? RL_OK : chat_refuse(why, "The request body must be a JSON object.");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (err != RL_OK)
            break;
        if (json_is_null(v)) /* the SDKs' way of leaving a field unset */
            continue;
        size_t i = 0;
        while (i < sizeof fields / sizeof fields[0] && strcmp(fields[i].name, key) != 0)
            i++;
        err =
            i < sizeof fields / sizeof fields[0]
                ? fields[i].read(&d, key, v)
                : chat_refuse(why,
                              "`%s` is not a Chat Completions field Relay can translate to another "
                              "format.",
                              key);
    }
    if (err == RL_OK && !out->model)
        err = chat_refuse(why, "you must provide a model parameter");
    if (err == RL_OK && !out->nmessages && !out->nsystem)
        err = chat_refuse(why, "Missing required parameter: 'messages'.");
    if (err == RL_OK)
        err = xlate_pair_tool_results(out, why);
    json_decref(root);
    return err;
}
