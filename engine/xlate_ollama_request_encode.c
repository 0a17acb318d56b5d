/*
 * xlate_ollama_request_encode.c — the Ollama dialect's encode_request
 * (xlate.h): a request of the model as an /api/chat body and its path.
 * What each field maps to is told in xlate_ollama_request.c's header, which
 * decodes the same requests; ollama_joined, ollama_has_kind and
 * ollama_enc_tool_call, defined here, also write an answer's message in
 * xlate_ollama.c (xlate_ollama_int.h).
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
 */
#include "engine/xlate_ollama_int.h"

#include <jansson.h>
#include <string.h>

/* ---- encoding the upstream request ------------------------------------- */

/* The TEXT (or THINKING) parts of a turn joined with "\n": Ollama's content
 * is one string. NULL when out of memory. */
json_t *ollama_joined(const xl_message *m, xl_part_kind kind)
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

int ollama_has_kind(const xl_message *m, xl_part_kind kind)
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

json_t *ollama_enc_tool_call(const xl_part *p, int index, rl_err *err)
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
    failed |= json_object_set_new(msg, "content", ollama_joined(m, XL_PART_TEXT));
    if (m->role == XL_ROLE_ASSISTANT && ollama_has_kind(m, XL_PART_THINKING))
        failed |= json_object_set_new(msg, "thinking", ollama_joined(m, XL_PART_THINKING));
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
            json_t *call = ollama_enc_tool_call(p, (int)json_array_size(calls), &err);
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

rl_err ollama_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why)
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
