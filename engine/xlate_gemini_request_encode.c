/*
 * xlate_gemini_request_encode.c — the Gemini dialect's encode_request
 * (xlate.h): a request of the model as a generateContent body and the path
 * and query to send it to. The mapping, both ways, is told in
 * xlate_gemini_request.c's header, which decodes the same requests; the
 * parts are written by gem_put_parts (xlate_gemini.c), which the answers
 * share.
 *
 * Threads: pure (xlate.h).
 */
#include "engine/xlate_gemini_int.h"

#include <jansson.h>
#include <string.h>

#include "engine/prov_json.h"

/* ---- requests: model -> upstream ------------------------------------------------ */

/* contents: consecutive USER and TOOL turns are one "user" content,
 * consecutive ASSISTANT turns one "model" content. */
static rl_err put_contents(const xl_request *req, json_t *contents, rl_buf *why)
{
    json_t *parts = NULL;
    const char *last = NULL;
    for (size_t m = 0; m < req->nmessages; m++) {
        const xl_message *msg = &req->messages[m];
        const char *role = msg->role == XL_ROLE_ASSISTANT ? "model" : "user";
        for (size_t p = 0; p < msg->nparts; p++)
            if (msg->parts[p].kind == XL_PART_TOOL_RESULT && !msg->parts[p].name) {
                rl_buf_printf(why,
                              "A tool result (id `%s`) answers no tool call earlier in the "
                              "conversation, so it cannot be translated.",
                              msg->parts[p].id ? msg->parts[p].id : "(none)");
                return RL_BAD_REQUEST;
            }
        if (!last || strcmp(last, role) != 0) {
            json_t *c = json_pack("{s:s,s:[]}", "role", role, "parts");
            if (!c || json_array_append_new(contents, c) != 0)
                return RL_NOMEM;
            parts = json_object_get(c, "parts");
            last = role;
        }
        rl_err err = gem_put_parts(parts, msg->parts, msg->nparts);
        if (err == RL_BAD_REQUEST)
            rl_buf_printf(why,
                          "The arguments of a tool call in message %zu are not a JSON "
                          "object, so they cannot be translated.",
                          m);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

static json_t *function_declaration(const xl_tool *t, rl_err *err)
{
    json_t *f = json_pack("{s:s}", "name", t->name ? t->name : "");
    int failed = !f;
    if (f && t->description)
        failed |= json_object_set_new(f, "description", json_string(t->description));
    if (f && t->parameters) {
        json_t *s = gem_object_of(t->parameters, err);
        failed |= !s || json_object_set_new(f, "parametersJsonSchema", s);
    }
    f = prov_json_check(f, failed);
    if (!f && *err == RL_OK)
        *err = RL_NOMEM;
    return f;
}

static const char *const choice_modes[] = {
    [XL_CHOICE_UNSET] = NULL,     [XL_CHOICE_AUTO] = "AUTO", [XL_CHOICE_NONE] = "NONE",
    [XL_CHOICE_REQUIRED] = "ANY", [XL_CHOICE_NAMED] = "ANY",
};

static rl_err put_tools(const xl_request *req, json_t *root, rl_buf *why)
{
    int failed = 0;
    if (req->ntools) {
        json_t *decls = json_array();
        failed |= json_object_set_new(
            root, "tools",
            json_pack("[{s:o}]", "functionDeclarations", decls ? decls : json_null()));
        for (size_t i = 0; decls && i < req->ntools; i++) {
            rl_err err = RL_OK;
            json_t *f = function_declaration(&req->tools[i], &err);
            if (!f && err == RL_BAD_REQUEST) {
                rl_buf_printf(why, "The parameters of tool `%s` are not a JSON object.",
                              req->tools[i].name);
                return err;
            }
            failed |= json_array_append_new(decls, f);
        }
        failed |= !decls;
    }
    const char *mode = choice_modes[req->tool_choice];
    if (mode) {
        json_t *fcc = json_pack("{s:s}", "mode", mode);
        if (fcc && req->tool_choice == XL_CHOICE_NAMED)
            failed |= json_object_set_new(
                fcc, "allowedFunctionNames",
                json_pack("[s]", req->tool_choice_name ? req->tool_choice_name : ""));
        failed |= json_object_set_new(
            root, "toolConfig",
            json_pack("{s:o}", "functionCallingConfig", fcc ? fcc : json_null()));
        failed |= !fcc;
    }
    return failed ? RL_NOMEM : RL_OK;
}

static json_t *generation_config(const xl_request *req, rl_buf *why, rl_err *err)
{
    json_t *g = json_object();
    int failed = 0;
    if (!g) {
        *err = RL_NOMEM;
        return NULL;
    }
    if (req->temperature >= 0)
        failed |= json_object_set_new(g, "temperature", json_real(req->temperature));
    if (req->top_p >= 0)
        failed |= json_object_set_new(g, "topP", json_real(req->top_p));
    if (req->top_k >= 0)
        failed |= json_object_set_new(g, "topK", json_integer(req->top_k));
    if (req->max_tokens >= 0)
        failed |= json_object_set_new(g, "maxOutputTokens", json_integer(req->max_tokens));
    if (req->nstop) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < req->nstop; i++)
            failed |= json_array_append_new(a, json_string(req->stop[i]));
        failed |= json_object_set_new(g, "stopSequences", a);
    }
    if (req->features[XL_F_CHOICES] && req->n > 1)
        failed |= json_object_set_new(g, "candidateCount", json_integer(req->n));
    if (req->features[XL_F_SEED])
        failed |= json_object_set_new(g, "seed", json_integer(req->seed));
    if (req->features[XL_F_PENALTIES]) {
        failed |= json_object_set_new(g, "presencePenalty", json_real(req->presence_penalty));
        failed |= json_object_set_new(g, "frequencyPenalty", json_real(req->frequency_penalty));
    }
    if (req->format != XL_FORMAT_TEXT)
        failed |= json_object_set_new(g, "responseMimeType", json_string("application/json"));
    if (req->format == XL_FORMAT_JSON_SCHEMA && req->format_schema) {
        json_t *s = gem_object_of(req->format_schema, err);
        if (!s && *err == RL_BAD_REQUEST) {
            rl_buf_puts(why, "The response format's schema is not a JSON object.");
            json_decref(g);
            return NULL;
        }
        failed |= !s || json_object_set_new(g, "responseJsonSchema", s);
    }
    int64_t budget = req->thinking_budget >= 0 ? req->thinking_budget
                                               : xlate_effort_budget(req->reasoning_effort);
    if (budget > 0)
        failed |= json_object_set_new(
            g, "thinkingConfig",
            json_pack("{s:I,s:b}", "thinkingBudget", (json_int_t)budget, "includeThoughts", 1));
    if (!(g = prov_json_check(g, failed)))
        *err = RL_NOMEM;
    return g;
}

rl_err gemini_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why)
{
    if (!req->model || !req->model[0]) {
        rl_buf_puts(why, "The request names no model, which Gemini's path needs.");
        return RL_BAD_REQUEST;
    }
    const char *model = req->model;
    if (strncmp(model, "models/", 7) == 0)
        model += 7;
    rl_err err = RL_NOMEM;
    json_t *root = json_object(), *contents = json_array();
    if (!root || !contents || json_object_set(root, "contents", contents) != 0)
        goto out;
    if ((err = put_contents(req, contents, why)) != RL_OK)
        goto out;
    err = RL_NOMEM;
    if (req->nsystem) {
        json_t *sys = json_pack("{s:[]}", "parts");
        if (!sys || json_object_set_new(root, "systemInstruction", sys) != 0 ||
            gem_put_parts(json_object_get(sys, "parts"), req->system, req->nsystem) != RL_OK)
            goto out;
    }
    if ((err = put_tools(req, root, why)) != RL_OK)
        goto out;
    err = RL_OK;
    json_t *g = generation_config(req, why, &err);
    if (!g)
        goto out;
    if (json_object_size(g) == 0)
        json_decref(g);
    else if (json_object_set_new(root, "generationConfig", g) != 0) {
        err = RL_NOMEM;
        goto out;
    }
    if ((err = prov_json_dump(root, DUMP_FLAGS, out)) == RL_OK)
        err = rl_buf_printf(path, "/v1beta/models/%s:%s", model,
                            req->stream ? "streamGenerateContent?alt=sse" : "generateContent");
out:
    json_decref(contents);
    json_decref(root);
    return err;
}
