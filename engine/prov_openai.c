/*
 * prov_openai.c — the OpenAI wire format: Chat Completions, legacy
 * Completions, Embeddings, the Responses API and the model list; also what
 * Azure OpenAI (api-key, deployments, api-version) and OpenAI-compatible
 * servers speak.
 *
 * Chat and Completions streams are "data: {chunk}\n\n" events ending with
 * "data: [DONE]"; Responses streams are typed events ending with
 * response.completed (no [DONE]). Errors are
 * {"error":{"message","type","param","code"}}, both as a body and, inside a
 * stream, as a data event (the official SDKs raise on it).
 */
#include "engine/prov.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/prov_canon.h"
#include "engine/prov_json.h"

/* ---- requests ---------------------------------------------------------- */

static const char *openai_credential(const prov_request *r, char *buf, size_t cap)
{
    (void)buf;
    (void)cap;
    /* The whole header is the credential (the cache key's scope has always
     * hashed it so; changing that would orphan every stored entry). */
    if (prov_auth_token(r, "Bearer"))
        return prov_header(r, "authorization");
    /* Azure OpenAI's own header, only on Azure's API (/openai/...). */
    const char *key = prov_header(r, "api-key");
    return strncmp(r->path, "/openai/", 8) == 0 && prov_credential_ok(key) ? key : NULL;
}

/* Azure's path and query parts that choose the answer: the deployment
 * (/openai/deployments/D/...) and api-version, appended to key_parts.
 * *n gets the deployment's length (0 when the path names none) and
 * *deployment its start. RL_NOMEM when they could not be appended. */
static rl_err azure_parts(const prov_request *r, rl_buf *key_parts, const char **deployment,
                          size_t *n)
{
    static const char prefix[] = "/openai/deployments/";
    *n = 0;
    *deployment = NULL;
    if (strncmp(r->path, prefix, sizeof prefix - 1) == 0) {
        *deployment = r->path + sizeof prefix - 1;
        const char *slash = strchr(*deployment, '/');
        *n = slash ? (size_t)(slash - *deployment) : strlen(*deployment);
    }
    char version[128];
    const char *v = prov_query_param(r, "api-version", version, sizeof version);
    /* A failure is sticky in key_parts; the engine checks it before keying. */
    if (strncmp(r->path, "/openai/", 8) == 0)
        return rl_buf_printf(key_parts, "deployment=%.*s\napi-version=%s\n", (int)*n,
                             *deployment ? *deployment : "", v ? v : "");
    return RL_OK;
}

static rl_err openai_inspect(const prov_request *r, prov_info *info, rl_buf *canonical,
                             rl_buf *key_parts, rl_buf *why)
{
    rl_err err = RL_BAD_REQUEST;
    json_error_t jerr;
    memset(info, 0, sizeof *info);
    info->framing = FRAME_SSE;
    const char *endpoint = r->endpoint;
    const char *deployment;
    size_t deployment_len;
    /* without them the key would not tell deployments apart */
    rl_err parts = azure_parts(r, key_parts, &deployment, &deployment_len);
    if (parts != RL_OK)
        return parts;

    if (strcmp(endpoint, "models") == 0) {
        /* A model list: no body, the same for everyone with the key, and
         * it changes now and then: keep it briefly. */
        info->deterministic = 1;
        info->max_ttl = 300;
        return RL_OK;
    }

    json_t *root = prov_json_load(r->body, r->body_len, &jerr);
    if (!root) {
        if ((err = prov_json_failed(&jerr, RL_BAD_JSON)) == RL_BAD_JSON)
            rl_buf_printf(why, "We could not parse the JSON body of your request: %s (at byte %d)",
                          jerr.text, jerr.position);
        return err;
    }
    if (!json_is_object(root)) {
        rl_buf_puts(why, "The request body must be a JSON object.");
        goto out;
    }

    json_t *model = json_object_get(root, "model");
    if (json_is_string(model) && json_string_length(model) > 0)
        snprintf(info->model, sizeof info->model, "%s", json_string_value(model));
    else if (deployment_len) /* Azure: the deployment names the model */
        snprintf(info->model, sizeof info->model, "%.*s", (int)deployment_len, deployment);
    else {
        rl_buf_puts(why, "you must provide a model parameter");
        goto out;
    }

    static const struct {
        const char *endpoint, *field, *message;
    } required[] = {
        {"chat.completions", "messages", "Missing required parameter: 'messages'."},
        {"completions", "prompt", "Missing required parameter: 'prompt'."},
        {"embeddings", "input", "Missing required parameter: 'input'."},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (strcmp(endpoint, required[i].endpoint) == 0 &&
            !json_object_get(root, required[i].field)) {
            rl_buf_puts(why, required[i].message);
            goto out;
        }
    if (strcmp(endpoint, "chat.completions") == 0 &&
        !json_is_array(json_object_get(root, "messages"))) {
        rl_buf_puts(why, "Invalid type for 'messages': expected an array.");
        goto out;
    }

    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        rl_buf_puts(why, "Invalid type for 'stream': expected a boolean.");
        goto out;
    }
    info->stream = json_is_true(stream) && strcmp(endpoint, "embeddings") != 0;
    json_t *so = json_object_get(root, "stream_options");
    info->include_usage = json_is_true(json_object_get(so, "include_usage"));

    if (strcmp(endpoint, "embeddings") == 0) {
        info->deterministic = 1; /* the same input always embeds the same */
    } else {
        /* Chat's max_completion_tokens replaced max_tokens (still sent by
         * older clients); the Responses API says max_output_tokens. */
        int64_t cap = prov_json_int(root, "max_completion_tokens");
        if (cap <= 0)
            cap = prov_json_int(root, "max_tokens");
        if (cap <= 0)
            cap = prov_json_int(root, "max_output_tokens");
        info->max_output = prov_max_output(cap, prov_json_int(root, "n"));
        /* Repeatable answers: greedy decoding, or a fixed seed. */
        json_t *temperature = json_object_get(root, "temperature");
        json_t *seed = json_object_get(root, "seed");
        info->deterministic =
            (json_is_number(temperature) && json_number_value(temperature) == 0.0) ||
            json_is_integer(seed);
    }
    /* store:true asks OpenAI to keep the answer (evals, distillation, a
     * later previous_response_id): answering from the cache would silently
     * skip that; previous_response_id continues state kept upstream. */
    json_t *previous = json_object_get(root, "previous_response_id");
    info->stateful =
        json_is_true(json_object_get(root, "store")) || (previous && !json_is_null(previous));

    /* Volatile fields change nothing about the answer. */
    json_object_del(root, "stream");
    json_object_del(root, "stream_options");
    json_object_del(root, "prompt_cache_key");
    json_t *metadata = json_object_get(root, "metadata");
    if (json_is_object(metadata)) {
        json_object_del(metadata, "user_id");
        if (json_object_size(metadata) == 0)
            json_object_del(root, "metadata");
    }
    if ((err = prov_canon(root, "openai", r->endpoint, info)) == RL_OK)
        err = prov_json_dump(root, PROV_JSON_CANONICAL, canonical);
out:
    json_decref(root);
    return err;
}

/* ---- streams ----------------------------------------------------------- */

/* A Responses API event's kind, by its type (its SSE event name, or the
 * "type" of its data). */
static prov_event_kind response_event_kind(const char *type)
{
    /* A Responses stream ends with its final state: completed, or
     * incomplete (a token limit, like a chat finish_reason "length"). */
    if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0)
        return PROV_EVENT_END;
    if (strcmp(type, "response.failed") == 0 || strcmp(type, "error") == 0)
        return PROV_EVENT_ERROR;
    return PROV_EVENT_DATA;
}

/* The kind of an unnamed event whose data parsed as j: by its "type"
 * (Responses), else an error object (Chat and Completions) or data. */
static prov_event_kind data_kind(json_t *j)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && *type)
        return response_event_kind(type);
    json_t *e = json_object_get(j, "error");
    return e && !json_is_null(e) ? PROV_EVENT_ERROR : PROV_EVENT_DATA;
}

static prov_event_kind openai_classify_event(const char *event, const char *data, size_t len)
{
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return PROV_EVENT_END;
    if (event && strcmp(event, "message") != 0)
        return response_event_kind(event);
    /* Most chunks are text: only parse those with a type or an error
     * member (a quoted key inside a string is escaped, so content cannot
     * fake these). */
    if (!memmem(data, len, "\"type\"", 6) && !memmem(data, len, "\"error\"", 7))
        return PROV_EVENT_DATA;
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    if (!j && prov_json_failed(&jerr, RL_OK) == RL_NOMEM)
        return PROV_EVENT_ERROR; /* unreadable: see prov.h */
    prov_event_kind kind = data_kind(j);
    json_decref(j);
    return kind;
}

static int openai_body_complete(const char *body, size_t len)
{
    json_t *j = prov_json_load(body, len, NULL);
    json_t *object = json_object_get(j, "object");
    json_t *e = json_object_get(j, "error");
    int ok = json_is_object(j) && (!e || json_is_null(e));
    if (ok && json_is_string(object) && strcmp(json_string_value(object), "response") == 0) {
        const char *status = json_string_value(json_object_get(j, "status"));
        ok = status && (strcmp(status, "completed") == 0 || strcmp(status, "incomplete") == 0);
    } else {
        ok = ok && (json_is_array(json_object_get(j, "choices")) ||
                    json_is_array(json_object_get(j, "data")));
    }
    json_decref(j);
    return ok;
}

/* Appends the string value of src to the string under key in obj
 * (creating it). */
static int concat_string(json_t *obj, const char *key, json_t *src)
{
    if (!json_is_string(src))
        return 0;
    json_t *cur = json_object_get(obj, key);
    if (!json_is_string(cur))
        return json_object_set(obj, key, src);
    size_t a = json_string_length(cur), b = json_string_length(src);
    rl_buf tmp;
    rl_buf_init(&tmp, 0);
    int rc = -1;
    if (rl_buf_append(&tmp, json_string_value(cur), a) == RL_OK &&
        rl_buf_append(&tmp, json_string_value(src), b) == RL_OK)
        rc = json_object_set_new(obj, key, json_stringn(tmp.data, tmp.len));
    rl_buf_release(&tmp);
    return rc;
}

/* Finds (or appends) the element of array whose "index" equals index. */
static json_t *by_index(json_t *array, json_int_t index, json_t *(*make)(json_int_t))
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v)
    {
        if (json_integer_value(json_object_get(v, "index")) == index)
            return v;
    }
    v = make(index);
    if (!v || json_array_append_new(array, v) != 0)
        return NULL;
    return v;
}

static json_t *make_choice(json_int_t index)
{
    return json_pack("{s:I, s:{s:s, s:n, s:n}, s:n, s:n}", "index", index, "message", "role",
                     "assistant", "content", "refusal", "logprobs", "finish_reason");
}

static json_t *make_tool_call(json_int_t index)
{
    return json_pack("{s:I, s:s, s:{s:s, s:s}}", "index", index, "type", "function", "function",
                     "name", "", "arguments", "");
}

/* Sets key of dst to src's member key when src has it (the chunks copy
 * what the answer says, and leave out what it does not). 0, or -1 when it
 * could not be set. */
static int copy_member(json_t *dst, json_t *src, const char *key)
{
    json_t *v = json_object_get(src, key);
    return v ? json_object_set(dst, key, v) : 0;
}

/* Merges one tool call delta into the assembled tool calls. */
static int merge_tool_call(json_t *merged, json_t *tc)
{
    json_t *m = by_index(merged, json_integer_value(json_object_get(tc, "index")), make_tool_call);
    if (!m)
        return -1;
    int failed = 0;
    if (json_is_string(json_object_get(tc, "id")))
        failed |= copy_member(m, tc, "id");
    if (json_is_string(json_object_get(tc, "type")))
        failed |= copy_member(m, tc, "type");
    json_t *fn = json_object_get(tc, "function");
    json_t *mfn = json_object_get(m, "function");
    failed |= concat_string(mfn, "name", json_object_get(fn, "name"));
    failed |= concat_string(mfn, "arguments", json_object_get(fn, "arguments"));
    return failed ? -1 : 0;
}

/* The member key of obj, created with make() when absent; NULL when it
 * could not be. */
static json_t *member(json_t *obj, const char *key, json_t *(*make)(void))
{
    json_t *v = json_object_get(obj, key);
    if (!v && json_object_set_new(obj, key, make()) == 0)
        v = json_object_get(obj, key);
    return v;
}

static json_t *make_logprobs(void)
{
    return json_pack("{s:[], s:n}", "content", "refusal");
}

/* Merges one chunk's choice delta into the assembled choice. 0, or -1 when
 * out of memory. */
static int merge_delta(json_t *choice, json_t *c)
{
    json_t *message = json_object_get(choice, "message");
    json_t *delta = json_object_get(c, "delta");
    int failed = 0;
    if (json_is_string(json_object_get(delta, "role")))
        failed |= copy_member(message, delta, "role");
    failed |= concat_string(message, "content", json_object_get(delta, "content"));
    failed |= concat_string(message, "refusal", json_object_get(delta, "refusal"));

    json_t *calls = json_object_get(delta, "tool_calls");
    if (json_is_array(calls)) {
        json_t *merged = member(message, "tool_calls", json_array);
        size_t i;
        json_t *tc;
        json_array_foreach(calls, i, tc) failed |= !merged || merge_tool_call(merged, tc) != 0;
    }

    json_t *lp = json_object_get(c, "logprobs");
    if (json_is_object(lp)) {
        if (!json_is_object(json_object_get(choice, "logprobs")))
            json_object_del(choice, "logprobs"); /* null until the first */
        json_t *mlp = member(choice, "logprobs", make_logprobs);
        json_t *content = json_object_get(lp, "content");
        if (json_is_array(content))
            failed |= json_array_extend(json_object_get(mlp, "content"), content);
        else
            failed |= !mlp;
    }
    if (json_is_string(json_object_get(c, "finish_reason")))
        failed |= copy_member(choice, c, "finish_reason");
    return failed ? -1 : 0;
}

typedef struct assembly {
    json_t *result; /* the chat.completion or text_completion being built */
    json_t *choices;
    json_t *response; /* a Responses stream: the final response object */
    int legacy;       /* chunks of the legacy Completions API */
    rl_err err;       /* RL_UPSTREAM_PROTOCOL for an event that is not JSON, RL_NOMEM */
} assembly;

static json_t *make_text_choice(json_int_t index)
{
    return json_pack("{s:I, s:s, s:n, s:n}", "index", index, "text", "", "logprobs",
                     "finish_reason");
}

/* A value that says something: not null, "" or 0. */
static int is_set(json_t *v)
{
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v))
        return json_string_length(v) > 0;
    if (json_is_integer(v))
        return json_integer_value(v) != 0;
    return 1;
}

/* Merges one chunk's choice into the assembled choices. 0, or -1 when out
 * of memory. */
static int merge_choice(assembly *a, json_t *c)
{
    json_int_t index = json_integer_value(json_object_get(c, "index"));
    json_t *choice = by_index(a->choices, index, a->legacy ? make_text_choice : make_choice);
    if (!choice)
        return -1;
    if (a->legacy) {
        int failed = concat_string(choice, "text", json_object_get(c, "text"));
        if (json_is_string(json_object_get(c, "finish_reason")))
            failed |= copy_member(choice, c, "finish_reason");
        return failed ? -1 : 0;
    }
    if (merge_delta(choice, c) != 0)
        return -1;
    /* Azure rates each piece of the answer; the last verdict with content
     * stands for the whole, as in its non-stream answer. */
    json_t *filter = json_object_get(c, "content_filter_results");
    if (json_is_object(filter) && json_object_size(filter) > 0)
        return copy_member(choice, c, "content_filter_results");
    return 0;
}

/* Merges a Chat or Completions chunk into the assembly. 0, or -1 when out
 * of memory. */
static int merge_chunk(assembly *a, json_t *chunk)
{
    const char *object = json_string_value(json_object_get(chunk, "object"));
    if (object && strcmp(object, "text_completion") == 0)
        a->legacy = 1;
    /* Identity fields come from the first chunk that has them: Azure's
     * first chunk, which carries only prompt_filter_results, has them
     * empty ("" and 0). */
    static const char *const ident[] = {"id", "created", "model", "system_fingerprint",
                                        "service_tier"};
    int failed = 0;
    for (size_t i = 0; i < sizeof ident / sizeof ident[0]; i++)
        if (is_set(json_object_get(chunk, ident[i])) && !json_object_get(a->result, ident[i]))
            failed |= copy_member(a->result, chunk, ident[i]);
    /* Azure's content filtering: the prompt's verdict once, at the top. */
    if (json_is_array(json_object_get(chunk, "prompt_filter_results")))
        failed |= copy_member(a->result, chunk, "prompt_filter_results");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(chunk, "choices"), i, c) failed |= merge_choice(a, c);
    if (json_is_object(json_object_get(chunk, "usage")))
        failed |= copy_member(a->result, chunk, "usage");
    return failed ? -1 : 0;
}

static int assemble_event(void *ctx, const char *event, const char *data, size_t len)
{
    assembly *a = ctx;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return 0;
    int named = event && strcmp(event, "message") != 0;
    if (named && response_event_kind(event) == PROV_EVENT_ERROR)
        return 0; /* such a stream is never stored: nothing to assemble */
    json_error_t jerr;
    json_t *chunk = prov_json_load(data, len, &jerr);
    if (!json_is_object(chunk)) {
        a->err = chunk ? RL_UPSTREAM_PROTOCOL : prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
        json_decref(chunk);
        return 1;
    }
    prov_event_kind kind = named ? response_event_kind(event) : data_kind(chunk);
    if (kind == PROV_EVENT_END) { /* response.completed carries the whole answer */
        json_t *response = json_object_get(chunk, "response");
        if (json_is_object(response)) {
            json_decref(a->response);
            a->response = json_incref(response);
        }
    } else if (kind == PROV_EVENT_DATA && !json_is_string(json_object_get(chunk, "type"))) {
        /* not an error, nor another Responses event: a Chat or Completions chunk */
        if (merge_chunk(a, chunk) != 0)
            a->err = RL_NOMEM;
    }
    json_decref(chunk);
    return a->err != RL_OK;
}

static rl_err openai_stream_to_body(frame_kind framing, const char *stream, size_t len, rl_buf *out)
{
    assembly a = {json_object(), json_array(), NULL, 0, RL_OK};
    rl_err err = RL_NOMEM;
    if (!a.result || !a.choices)
        goto out;
    err = frame_each(framing, stream, len, assemble_event, &a);
    if (a.err != RL_OK)
        err = a.err;
    if (err != RL_OK)
        goto out;
    if (a.response) {
        err = prov_json_dump(a.response, JSON_COMPACT | JSON_PRESERVE_ORDER, out);
        goto out;
    }

    int failed = json_object_set_new(a.result, "object",
                                     json_string(a.legacy ? "text_completion" : "chat.completion"));
    /* Tool calls in a message carry no "index" in the non-stream shape. */
    size_t i;
    json_t *choice;
    json_array_foreach(a.choices, i, choice)
    {
        json_t *message = json_object_get(choice, "message");
        json_t *calls = json_object_get(message, "tool_calls");
        size_t k;
        json_t *tc;
        json_array_foreach(calls, k, tc) json_object_del(tc, "index");
    }
    failed |= json_object_set(a.result, "choices", a.choices);
    if (!json_object_get(a.result, "usage"))
        failed |= json_object_set_new(a.result, "usage", json_null());
    err = failed ? RL_NOMEM : prov_json_dump(a.result, JSON_COMPACT | JSON_PRESERVE_ORDER, out);
out:
    json_decref(a.result);
    json_decref(a.choices);
    json_decref(a.response);
    return err;
}

/* Appends "data: <chunk>\n\n". */
static rl_err put_chunk(rl_buf *out, json_t *chunk)
{
    return prov_json_put(out, "data: ", chunk, JSON_COMPACT | JSON_PRESERVE_ORDER, "\n\n");
}

/* A chunk with the identity fields the completion has and the choices
 * given (taken; NULL, a json_pack that failed, gives NULL). NULL when out
 * of memory. */
static json_t *new_chunk(json_t *completion, json_t *choices, int with_usage_null)
{
    json_t *chunk = json_object();
    int failed = copy_member(chunk, completion, "id");
    failed |= json_object_set_new(chunk, "object", json_string("chat.completion.chunk"));
    failed |= copy_member(chunk, completion, "created");
    failed |= copy_member(chunk, completion, "model");
    failed |= copy_member(chunk, completion, "system_fingerprint");
    failed |= copy_member(chunk, completion, "service_tier");
    failed |= json_object_set_new(chunk, "choices", choices);
    if (with_usage_null)
        failed |= json_object_set_new(chunk, "usage", json_null());
    return prov_json_check(chunk, failed);
}

/* A chunk with one choice (taken; NULL gives NULL). */
static json_t *choice_chunk(json_t *completion, json_t *choice, int with_usage_null)
{
    return new_chunk(completion, json_pack("[o]", choice), with_usage_null);
}

/* Appends "event: TYPE\ndata: <event>\n\n" with the event's type and
 * sequence number set (a Responses stream), taking ev. */
static rl_err put_typed(rl_buf *out, const char *type, json_t *ev, int *seq)
{
    int failed = json_object_set_new(ev, "type", json_string(type));
    failed |= json_object_set_new(ev, "sequence_number", json_integer((*seq)++));
    rl_err err = RL_NOMEM;
    if (!failed && (err = rl_buf_printf(out, "event: %s\ndata: ", type)) == RL_OK &&
        (err = prov_json_dump(ev, JSON_COMPACT, out)) == RL_OK)
        err = rl_buf_puts(out, "\n\n");
    json_decref(ev);
    return err;
}

/* One output item of a response as the events that stream it. */
static rl_err put_response_item(rl_buf *out, json_t *item, size_t index, int *seq)
{
    json_t *id = json_object_get(item, "id");
    const char *type = json_string_value(json_object_get(item, "type"));
    json_t *start = json_deep_copy(item);
    int failed = json_object_set_new(start, "status", json_string("in_progress"));
    int message = type && strcmp(type, "message") == 0;
    int call = type && strcmp(type, "function_call") == 0;
    if (message)
        failed |= json_object_set_new(start, "content", json_array());
    if (call)
        failed |= json_object_set_new(start, "arguments", json_string(""));
    start = prov_json_check(start, failed);
    rl_err err =
        put_typed(out, "response.output_item.added",
                  json_pack("{s:I, s:o}", "output_index", (json_int_t)index, "item", start), seq);
    size_t k;
    json_t *part;
    json_array_foreach(message ? json_object_get(item, "content") : NULL, k, part)
    {
        if (err != RL_OK)
            break;
        json_t *text = json_object_get(part, "text");
        json_t *empty = json_deep_copy(part);
        if (json_is_string(text))
            empty = prov_json_check(empty, json_object_set_new(empty, "text", json_string("")));
        err = put_typed(out, "response.content_part.added",
                        json_pack("{s:O, s:I, s:I, s:o}", "item_id", id, "output_index",
                                  (json_int_t)index, "content_index", (json_int_t)k, "part", empty),
                        seq);
        if (err == RL_OK && json_is_string(text))
            err = put_typed(out, "response.output_text.delta",
                            json_pack("{s:O, s:I, s:I, s:O, s:[]}", "item_id", id, "output_index",
                                      (json_int_t)index, "content_index", (json_int_t)k, "delta",
                                      text, "logprobs"),
                            seq);
        if (err == RL_OK && json_is_string(text))
            err = put_typed(out, "response.output_text.done",
                            json_pack("{s:O, s:I, s:I, s:O, s:[]}", "item_id", id, "output_index",
                                      (json_int_t)index, "content_index", (json_int_t)k, "text",
                                      text, "logprobs"),
                            seq);
        if (err == RL_OK)
            err = put_typed(out, "response.content_part.done",
                            json_pack("{s:O, s:I, s:I, s:O}", "item_id", id, "output_index",
                                      (json_int_t)index, "content_index", (json_int_t)k, "part",
                                      part),
                            seq);
    }
    json_t *args = json_object_get(item, "arguments");
    if (err == RL_OK && call && json_is_string(args)) {
        err = put_typed(out, "response.function_call_arguments.delta",
                        json_pack("{s:O, s:I, s:O}", "item_id", id, "output_index",
                                  (json_int_t)index, "delta", args),
                        seq);
        if (err == RL_OK)
            err = put_typed(out, "response.function_call_arguments.done",
                            json_pack("{s:O, s:I, s:O}", "item_id", id, "output_index",
                                      (json_int_t)index, "arguments", args),
                            seq);
    }
    if (err == RL_OK)
        err = put_typed(out, "response.output_item.done",
                        json_pack("{s:I, s:O}", "output_index", (json_int_t)index, "item", item),
                        seq);
    return err;
}

/* A Responses API answer as the event stream that would have carried it,
 * ending with response.completed (or .incomplete) and no [DONE]. */
static rl_err response_to_stream(json_t *response, rl_buf *out)
{
    int seq = 0;
    json_t *start = json_deep_copy(response);
    int failed = json_object_set_new(start, "status", json_string("in_progress"));
    failed |= json_object_set_new(start, "output", json_array());
    failed |= json_object_set_new(start, "usage", json_null());
    start = prov_json_check(start, failed);
    rl_err err = put_typed(out, "response.created", json_pack("{s:O}", "response", start), &seq);
    if (err == RL_OK)
        err = put_typed(out, "response.in_progress", json_pack("{s:O}", "response", start), &seq);
    json_decref(start);
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(response, "output"), i, item)
    {
        if (err != RL_OK)
            break;
        err = put_response_item(out, item, i, &seq);
    }
    const char *status = json_string_value(json_object_get(response, "status"));
    if (err == RL_OK)
        err = put_typed(out,
                        status && strcmp(status, "incomplete") == 0 ? "response.incomplete"
                                                                    : "response.completed",
                        json_pack("{s:O}", "response", response), &seq);
    return err;
}

/* A legacy Completions answer as its stream: a chunk per choice with its
 * text and finish reason, then [DONE]. */
static rl_err text_completion_to_stream(json_t *completion, rl_buf *out)
{
    rl_err err = RL_OK;
    size_t i;
    json_t *choice;
    json_array_foreach(json_object_get(completion, "choices"), i, choice)
    {
        /* O*: a member the answer lacks is left out, as new_chunk does */
        json_t *chunk = json_pack("{s:O*, s:s, s:O*, s:O*, s:[O]}", "id",
                                  json_object_get(completion, "id"), "object", "text_completion",
                                  "created", json_object_get(completion, "created"), "model",
                                  json_object_get(completion, "model"), "choices", choice);
        if ((err = put_chunk(out, chunk)) != RL_OK)
            return err;
    }
    return rl_buf_puts(out, "data: [DONE]\n\n");
}

static rl_err openai_body_to_stream(const char *body, size_t len, const prov_info *info,
                                    rl_buf *out)
{
    json_error_t jerr;
    json_t *completion = prov_json_load(body, len, &jerr);
    rl_err err = completion ? RL_UPSTREAM_PROTOCOL : prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    const char *object = json_string_value(json_object_get(completion, "object"));
    if (object && strcmp(object, "response") == 0) {
        err = response_to_stream(completion, out);
        goto out;
    }
    if (!json_is_object(completion) || !json_is_array(json_object_get(completion, "choices")))
        goto out;
    if (object && strcmp(object, "text_completion") == 0) {
        err = text_completion_to_stream(completion, out);
        goto out;
    }
    int with_usage = info->include_usage;
    /* Azure opens its streams with the prompt's content-filter verdict in
     * a chunk of its own, with empty identity fields. */
    json_t *prompt_filter = json_object_get(completion, "prompt_filter_results");
    if (json_is_array(prompt_filter) &&
        (err = put_chunk(out, json_pack("{s:[], s:i, s:s, s:s, s:s, s:O}", "choices", "created", 0,
                                        "id", "", "model", "", "object", "",
                                        "prompt_filter_results", prompt_filter))) != RL_OK)
        goto out;
    size_t i;
    json_t *choice;
    json_array_foreach(json_object_get(completion, "choices"), i, choice)
    {
        json_int_t index = json_is_integer(json_object_get(choice, "index"))
                               ? json_integer_value(json_object_get(choice, "index"))
                               : (json_int_t)i;
        json_t *message = json_object_get(choice, "message");
        json_t *role = json_object_get(message, "role");
        json_t *content = json_object_get(message, "content");
        json_t *refusal = json_object_get(message, "refusal");

        /* As OpenAI streams: the role first (content "" before text, null
         * before tool calls), then the text, then tool calls, then an
         * empty delta with the finish reason. */
        const char *role_name = json_is_string(role) ? json_string_value(role) : "assistant";
        json_t *first =
            json_pack("{s:I, s:{s:s, s:o, s:n}, s:n, s:n}", "index", index, "delta", "role",
                      role_name, "content", json_is_string(content) ? json_string("") : json_null(),
                      "refusal", "logprobs", "finish_reason");
        if ((err = put_chunk(out, choice_chunk(completion, first, with_usage))) != RL_OK)
            goto out;
        if (json_is_string(content) && json_string_length(content) > 0) {
            json_t *c = json_pack(
                "{s:I, s:{s:O}, s:O, s:n}", "index", index, "delta", "content", content, "logprobs",
                json_object_get(choice, "logprobs") ? json_object_get(choice, "logprobs")
                                                    : json_null(),
                "finish_reason");
            if (json_object_get(choice, "content_filter_results"))
                c = prov_json_check(c, copy_member(c, choice, "content_filter_results"));
            if ((err = put_chunk(out, choice_chunk(completion, c, with_usage))) != RL_OK)
                goto out;
        }
        if (json_is_string(refusal) && json_string_length(refusal) > 0) {
            json_t *c = json_pack("{s:I, s:{s:O}, s:n, s:n}", "index", index, "delta", "refusal",
                                  refusal, "logprobs", "finish_reason");
            if ((err = put_chunk(out, choice_chunk(completion, c, with_usage))) != RL_OK)
                goto out;
        }
        json_t *calls = json_object_get(message, "tool_calls");
        size_t k;
        json_t *tc;
        json_array_foreach(calls, k, tc)
        {
            json_t *call = json_deep_copy(tc);
            call = prov_json_check(call,
                                   json_object_set_new(call, "index", json_integer((json_int_t)k)));
            json_t *c = json_pack("{s:I, s:{s:[o]}, s:n, s:n}", "index", index, "delta",
                                  "tool_calls", call, "logprobs", "finish_reason");
            if ((err = put_chunk(out, choice_chunk(completion, c, with_usage))) != RL_OK)
                goto out;
        }
        json_t *last = json_pack(
            "{s:I, s:{}, s:n, s:O}", "index", index, "delta", "logprobs", "finish_reason",
            json_object_get(choice, "finish_reason") ? json_object_get(choice, "finish_reason")
                                                     : json_null());
        if ((err = put_chunk(out, choice_chunk(completion, last, with_usage))) != RL_OK)
            goto out;
    }
    json_t *usage = json_object_get(completion, "usage");
    if (with_usage && json_is_object(usage)) {
        json_t *chunk = new_chunk(completion, json_array(), 0);
        chunk = prov_json_check(chunk, json_object_set(chunk, "usage", usage));
        if ((err = put_chunk(out, chunk)) != RL_OK)
            goto out;
    }
    err = rl_buf_puts(out, "data: [DONE]\n\n");
out:
    json_decref(completion);
    return err;
}

/* ---- errors ------------------------------------------------------------ */

static json_t *error_object(rl_err err, const char *message)
{
    return json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message",
                     message && message[0] ? message : rl_err_text(err), "type", rl_err_type(err),
                     "param", "code", rl_err_code(err));
}

static rl_err openai_error_body(rl_buf *out, rl_err err, const char *message)
{
    return prov_json_put(out, "", error_object(err, message), JSON_COMPACT | JSON_PRESERVE_ORDER,
                         "");
}

static rl_err openai_error_event(rl_buf *out, frame_kind framing, int opened, rl_err err,
                                 const char *message)
{
    (void)opened;  /* its streams need no opening */
    (void)framing; /* OpenAI streams are always SSE */
    return put_chunk(out, error_object(err, message));
}

/* ---- usage ------------------------------------------------------------- */

/* Chat/Completions usage (prompt_tokens...) or Responses usage
 * (input_tokens...), whichever the object has. */
static void read_usage(json_t *usage, prov_usage *u)
{
    if (!json_is_object(usage))
        return;
    if (json_object_get(usage, "input_tokens")) {
        u->input = prov_json_int(usage, "input_tokens");
        u->output = prov_json_int(usage, "output_tokens");
        u->cached_input =
            prov_json_int(json_object_get(usage, "input_tokens_details"), "cached_tokens");
    } else {
        u->input = prov_json_int(usage, "prompt_tokens");
        u->output = prov_json_int(usage, "completion_tokens");
        u->cached_input =
            prov_json_int(json_object_get(usage, "prompt_tokens_details"), "cached_tokens");
    }
}

static int usage_event(void *ctx, const char *event, const char *data, size_t len)
{
    (void)event;
    prov_usage *u = ctx;
    if (u->lost || !memmem(data, len, "\"usage\"", 7))
        return 0;
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    if (!j)
        return prov_usage_failed(u, &jerr) != RL_OK;
    json_t *response = json_object_get(j, "response");
    read_usage(json_object_get(response ? response : j, "usage"), u);
    json_decref(j);
    return 0;
}

static rl_err openai_usage(entry_kind kind, frame_kind framing, const char *data, size_t len,
                           prov_usage *out)
{
    *out = PROV_USAGE_UNKNOWN;
    if (kind == ENTRY_STREAM) {
        rl_err err = frame_each(framing, data, len, usage_event, out);
        return out->lost ? RL_NOMEM : err;
    }
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    if (!j)
        return prov_usage_failed(out, &jerr);
    read_usage(json_object_get(j, "usage"), out);
    json_decref(j);
    return RL_OK;
}

const prov_ops prov_openai = {
    .format = "openai",
    .credential = openai_credential,
    .missing_credential =
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    .inspect = openai_inspect,
    .classify_event = openai_classify_event,
    .body_complete = openai_body_complete,
    .stream_to_body = openai_stream_to_body,
    .body_to_stream = openai_body_to_stream,
    .usage = openai_usage,
    .usage_event = usage_event,
    .error_body = openai_error_body,
    .error_event = openai_error_event,
};
