/*
 * xlate_openai_chat_request_encode.c — the OpenAI Chat Completions
 * dialect's encode_request (xlate.h): a request of the model as a
 * /v1/chat/completions body and that path. What maps to what, both ways,
 * is told in xlate_openai_chat_request.c's header, which decodes the same
 * requests; refusals are worded through chat_refuse (there too). The
 * answers, errors, streams and the xl_openai_chat table are in
 * xlate_openai_chat.c; what the files share is in xlate_openai_chat_int.h.
 *
 * Threads: pure (xlate.h).
 */
#include "engine/xlate_openai_chat_int.h"

#include <jansson.h>
#include <string.h>

#include "engine/prov_json.h"

/* ==== requests: model -> upstream body ==================================== */

/* "data:<media_type>;base64,<data>" or the URL, as a JSON string. */
static json_t *image_url(const xl_part *p)
{
    if (p->url)
        return json_pack("{s:s}", "url", p->url);
    rl_buf b;
    rl_buf_init(&b, 0);
    rl_buf_printf(&b, "data:%s;base64,%s", p->media_type ? p->media_type : "image/png",
                  p->data ? p->data : "");
    json_t *j = rl_buf_error(&b) == RL_OK ? json_pack("{s:s}", "url", b.data) : NULL;
    rl_buf_release(&b);
    return j;
}

/* Content from the TEXT and IMAGE parts of m: a string when it is one
 * text, else parts; NULL (and *none) when it has neither. */
static json_t *enc_content(const xl_message *m, int *none)
{
    size_t texts = 0, others = 0;
    const xl_part *text = NULL;
    for (size_t i = 0; i < m->nparts; i++) {
        if (m->parts[i].kind == XL_PART_TEXT)
            texts++, text = &m->parts[i];
        else if (m->parts[i].kind == XL_PART_IMAGE)
            others++;
    }
    *none = texts + others == 0;
    if (*none)
        return NULL;
    if (texts == 1 && others == 0)
        return json_string(text->text ? text->text : "");
    json_t *arr = json_array();
    int failed = !arr;
    for (size_t i = 0; i < m->nparts; i++) {
        const xl_part *p = &m->parts[i];
        if (p->kind == XL_PART_TEXT)
            failed |= json_array_append_new(
                arr, json_pack("{s:s, s:s}", "type", "text", "text", p->text ? p->text : ""));
        else if (p->kind == XL_PART_IMAGE)
            failed |= json_array_append_new(
                arr, json_pack("{s:s, s:o}", "type", "image_url", "image_url", image_url(p)));
    }
    return prov_json_check(arr, failed);
}

/* Appends the messages a user or tool turn becomes: one tool message per
 * TOOL_RESULT first (they must follow the calls' turn directly), then a
 * user message with the rest. */
static int enc_user_turn(json_t *msgs, const xl_message *m)
{
    int failed = 0, none;
    for (size_t i = 0; i < m->nparts; i++) {
        const xl_part *p = &m->parts[i];
        if (p->kind == XL_PART_TOOL_RESULT)
            failed |= json_array_append_new(msgs, json_pack("{s:s, s:s, s:s}", "role", "tool",
                                                            "tool_call_id", p->id ? p->id : "",
                                                            "content", p->text ? p->text : ""));
    }
    json_t *content = enc_content(m, &none);
    if (!none)
        failed |= json_array_append_new(
            msgs, json_pack("{s:s, s:o}", "role", "user", "content", content));
    return failed != 0; /* jansson's -1 is not a refusal */
}

static int enc_assistant_turn(json_t *msgs, const xl_message *m, rl_buf *why)
{
    int failed = 0, none;
    json_t *calls = json_array();
    failed |= !calls;
    for (size_t i = 0; i < m->nparts; i++) {
        const xl_part *p = &m->parts[i];
        if (p->kind == XL_PART_IMAGE || p->kind == XL_PART_TOOL_RESULT) {
            chat_refuse(
                why,
                "An assistant turn holding %s cannot be sent to OpenAI Chat Completions, the "
                "upstream's format.",
                p->kind == XL_PART_IMAGE ? "an image" : "a tool result");
            json_decref(calls);
            return -1;
        }
        if (p->kind == XL_PART_TOOL_CALL)
            failed |= json_array_append_new(
                calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", p->id ? p->id : "", "type",
                                 "function", "function", "name", p->name ? p->name : "",
                                 "arguments", p->arguments ? p->arguments : "{}"));
    }
    json_t *content = enc_content(m, &none);
    json_t *msg =
        json_pack("{s:s, s:o}", "role", "assistant", "content", none ? json_null() : content);
    if (msg && json_array_size(calls))
        failed |= json_object_set(msg, "tool_calls", calls);
    json_decref(calls);
    failed |= json_array_append_new(msgs, msg);
    return failed != 0; /* jansson's -1 is not a refusal (that is -1 above) */
}

static json_t *enc_messages(const xl_request *req, rl_buf *why, int *refused)
{
    json_t *msgs = json_array();
    int failed = !msgs;
    if (req->nsystem) {
        rl_buf b;
        rl_buf_init(&b, 0);
        for (size_t i = 0; i < req->nsystem; i++)
            rl_buf_printf(&b, "%s%s", i ? "\n\n" : "",
                          req->system[i].text ? req->system[i].text : "");
        failed |= rl_buf_error(&b) != RL_OK ||
                  json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content",
                                                        b.data ? b.data : ""));
        rl_buf_release(&b);
    }
    for (size_t i = 0; i < req->nmessages && !failed; i++) {
        const xl_message *m = &req->messages[i];
        int r = m->role == XL_ROLE_ASSISTANT ? enc_assistant_turn(msgs, m, why)
                                             : enc_user_turn(msgs, m);
        if (r < 0) {
            *refused = 1;
            json_decref(msgs);
            return NULL;
        }
        failed |= r;
    }
    return prov_json_check(msgs, failed);
}

/* JSON text the model holds (compact, from a decoder) as a value; NULL
 * when out of memory. Through prov_json_load, whose json_loadb is the
 * parse Relay's allocation-failure tests can fail safely (oom_inject.h). */
static json_t *load_text(const char *text)
{
    return prov_json_load(text, strlen(text), NULL);
}

static json_t *enc_tools(const xl_request *req, int *failed)
{
    json_t *tools = json_array();
    int f = !tools;
    for (size_t i = 0; i < req->ntools; i++) {
        const xl_tool *t = &req->tools[i];
        json_t *fn = json_pack("{s:s}", "name", t->name ? t->name : "");
        f |= !fn;
        if (fn && t->description)
            f |= json_object_set_new(fn, "description", json_string(t->description));
        if (fn && t->parameters)
            f |= json_object_set_new(fn, "parameters", load_text(t->parameters));
        if (fn && t->strict >= 0)
            f |= json_object_set_new(fn, "strict", json_boolean(t->strict));
        f |= json_array_append_new(tools,
                                   json_pack("{s:s, s:o}", "type", "function", "function", fn));
    }
    *failed |= f;
    return prov_json_check(tools, f);
}

static json_t *enc_tool_choice(const xl_request *req)
{
    static const char *const names[] = {
        [XL_CHOICE_AUTO] = "auto",
        [XL_CHOICE_NONE] = "none",
        [XL_CHOICE_REQUIRED] = "required",
    };
    if (req->tool_choice == XL_CHOICE_NAMED)
        return json_pack("{s:s, s:{s:s}}", "type", "function", "function", "name",
                         req->tool_choice_name ? req->tool_choice_name : "");
    return json_string(names[req->tool_choice]);
}

static json_t *enc_response_format(const xl_request *req)
{
    if (req->format == XL_FORMAT_JSON_OBJECT)
        return json_pack("{s:s}", "type", "json_object");
    json_t *js = json_pack("{s:s}", "name", req->format_name ? req->format_name : "response");
    int failed = !js;
    if (js && req->format_schema)
        failed |= json_object_set_new(js, "schema", load_text(req->format_schema));
    if (js && req->format_strict > 0)
        failed |= json_object_set_new(js, "strict", json_true());
    return json_pack("{s:s, s:o}", "type", "json_schema", "json_schema",
                     prov_json_check(js, failed));
}

/* Sets key to v (taken) when cond; v NULL is a failure. */
static int set_if(json_t *o, int cond, const char *key, json_t *v)
{
    if (!cond) {
        json_decref(v);
        return 0;
    }
    return json_object_set_new(o, key, v);
}

rl_err chat_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why)
{
    int refused = 0, failed = 0;
    json_t *msgs = enc_messages(req, why, &refused);
    if (refused)
        return RL_BAD_REQUEST;
    json_t *body = json_pack("{s:s, s:o}", "model", req->model ? req->model : "", "messages", msgs);
    failed |= !body;
    if (body) {
        const char *effort = req->reasoning_effort ? req->reasoning_effort
                                                   : xlate_budget_effort(req->thinking_budget);
        int tools = req->ntools > 0;
        json_t *tool_list = tools ? enc_tools(req, &failed) : NULL;
        failed |= set_if(body, tools, "tools", tool_list);
        failed |= set_if(body, tools && req->tool_choice != XL_CHOICE_UNSET, "tool_choice",
                         enc_tool_choice(req));
        /* OpenAI refuses parallel_tool_calls without tools */
        failed |= set_if(body, tools && req->parallel_tool_calls >= 0, "parallel_tool_calls",
                         json_boolean(req->parallel_tool_calls > 0));
        json_t *stop = req->nstop ? json_array() : NULL;
        for (size_t i = 0; stop && i < req->nstop; i++)
            failed |= json_array_append_new(stop, json_string(req->stop[i]));
        failed |= set_if(body, req->nstop > 0, "stop", stop);
        failed |= set_if(body, req->max_tokens > 0, "max_completion_tokens",
                         json_integer(req->max_tokens));
        failed |= set_if(body, req->temperature >= 0, "temperature", json_real(req->temperature));
        failed |= set_if(body, req->top_p >= 0, "top_p", json_real(req->top_p));
        failed |= set_if(body, req->features[XL_F_SEED] != NULL, "seed", json_integer(req->seed));
        failed |= set_if(body, req->features[XL_F_PENALTIES] && req->presence_penalty != 0,
                         "presence_penalty", json_real(req->presence_penalty));
        failed |= set_if(body, req->features[XL_F_PENALTIES] && req->frequency_penalty != 0,
                         "frequency_penalty", json_real(req->frequency_penalty));
        failed |= set_if(body, req->n > 1, "n", json_integer(req->n));
        failed |= set_if(body, req->format != XL_FORMAT_TEXT, "response_format",
                         enc_response_format(req));
        failed |=
            set_if(body, effort != NULL, "reasoning_effort", effort ? json_string(effort) : NULL);
        failed |=
            set_if(body, req->user != NULL, "user", req->user ? json_string(req->user) : NULL);
        failed |= set_if(body, req->stream, "stream", json_true());
        failed |=
            set_if(body, req->stream, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    rl_err err = prov_json_put(out, "", prov_json_check(body, failed), CHAT_JSON_FLAGS, "");
    if (err == RL_OK)
        err = rl_buf_puts(path, "/v1/chat/completions");
    return err;
}
