/*
 * prov_openai.c — the OpenAI wire format (Chat Completions for now).
 *
 * Streams are "data: {chunk}\n\n" events ending with "data: [DONE]";
 * errors are {"error":{"message","type","param","code"}}, both as a body
 * and, inside a stream, as a data event (the official SDKs raise on it).
 */
#include "engine/prov.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/sse.h"

/* Appends jansson's output to an rl_buf. */
static int dump_to_buf(const char *p, size_t n, void *data)
{
    return rl_buf_append(data, p, n) == RL_OK ? 0 : -1;
}

static rl_err dump_json(json_t *j, size_t flags, rl_buf *out)
{
    return json_dump_callback(j, dump_to_buf, out, flags) == 0 ? RL_OK : RL_NOMEM;
}

/* ---- requests ---------------------------------------------------------- */

static rl_err openai_inspect(const char *endpoint, const char *body, size_t len, prov_info *info,
                             rl_buf *canonical, rl_buf *why)
{
    rl_err err = RL_BAD_REQUEST;
    json_error_t jerr;
    memset(info, 0, sizeof *info);

    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        rl_buf_printf(why, "We could not parse the JSON body of your request: %s (at byte %d)",
                      jerr.text, jerr.position);
        return RL_BAD_JSON;
    }
    if (!json_is_object(root)) {
        rl_buf_puts(why, "The request body must be a JSON object.");
        goto out;
    }

    json_t *model = json_object_get(root, "model");
    if (!json_is_string(model) || json_string_length(model) == 0) {
        rl_buf_puts(why, "you must provide a model parameter");
        goto out;
    }
    snprintf(info->model, sizeof info->model, "%s", json_string_value(model));

    if (strcmp(endpoint, "chat.completions") == 0) {
        json_t *messages = json_object_get(root, "messages");
        if (!json_is_array(messages)) {
            rl_buf_puts(why, "Missing required parameter: 'messages'.");
            goto out;
        }
    }

    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        rl_buf_puts(why, "Invalid type for 'stream': expected a boolean.");
        goto out;
    }
    info->stream = json_is_true(stream);
    json_t *so = json_object_get(root, "stream_options");
    info->include_usage = json_is_true(json_object_get(so, "include_usage"));

    /* Repeatable answers: greedy decoding, or a fixed seed. */
    json_t *temperature = json_object_get(root, "temperature");
    json_t *seed = json_object_get(root, "seed");
    info->deterministic = (json_is_number(temperature) && json_number_value(temperature) == 0.0) ||
                          json_is_integer(seed);
    /* store:true asks OpenAI to keep the completion (evals, distillation):
     * answering from the cache would silently skip that. */
    info->stateful = json_is_true(json_object_get(root, "store"));

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
    err = dump_json(root, JSON_SORT_KEYS | JSON_COMPACT, canonical);
out:
    json_decref(root);
    return err;
}

/* ---- streams ----------------------------------------------------------- */

static prov_event_kind openai_classify_event(const char *event, const char *data, size_t len)
{
    (void)event;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return PROV_EVENT_END;
    /* Only parse the chunks that could be an error object. */
    if (!memmem(data, len, "\"error\"", 7))
        return PROV_EVENT_DATA;
    json_t *j = json_loadb(data, len, 0, NULL);
    prov_event_kind kind = json_object_get(j, "error") ? PROV_EVENT_ERROR : PROV_EVENT_DATA;
    json_decref(j);
    return kind;
}

static int openai_body_complete(const char *body, size_t len)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    int ok = json_is_object(j) && !json_object_get(j, "error") &&
             (json_is_array(json_object_get(j, "choices")) || json_object_get(j, "data"));
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

/* Merges one chunk's choice delta into the assembled choice. */
static void merge_delta(json_t *choice, json_t *c)
{
    json_t *message = json_object_get(choice, "message");
    json_t *delta = json_object_get(c, "delta");
    if (json_is_string(json_object_get(delta, "role")))
        json_object_set(message, "role", json_object_get(delta, "role"));
    concat_string(message, "content", json_object_get(delta, "content"));
    concat_string(message, "refusal", json_object_get(delta, "refusal"));

    json_t *calls = json_object_get(delta, "tool_calls");
    if (json_is_array(calls)) {
        json_t *merged = json_object_get(message, "tool_calls");
        if (!merged) {
            json_object_set_new(message, "tool_calls", json_array());
            merged = json_object_get(message, "tool_calls");
        }
        size_t i;
        json_t *tc;
        json_array_foreach(calls, i, tc)
        {
            json_t *m =
                by_index(merged, json_integer_value(json_object_get(tc, "index")), make_tool_call);
            if (!m)
                continue;
            if (json_is_string(json_object_get(tc, "id")))
                json_object_set(m, "id", json_object_get(tc, "id"));
            if (json_is_string(json_object_get(tc, "type")))
                json_object_set(m, "type", json_object_get(tc, "type"));
            json_t *fn = json_object_get(tc, "function");
            json_t *mfn = json_object_get(m, "function");
            concat_string(mfn, "name", json_object_get(fn, "name"));
            concat_string(mfn, "arguments", json_object_get(fn, "arguments"));
        }
    }

    json_t *lp = json_object_get(c, "logprobs");
    if (json_is_object(lp)) {
        json_t *mlp = json_object_get(choice, "logprobs");
        if (!json_is_object(mlp)) {
            json_object_set_new(choice, "logprobs", json_pack("{s:[], s:n}", "content", "refusal"));
            mlp = json_object_get(choice, "logprobs");
        }
        json_t *content = json_object_get(lp, "content");
        if (json_is_array(content))
            json_array_extend(json_object_get(mlp, "content"), content);
    }
    json_t *finish = json_object_get(c, "finish_reason");
    if (json_is_string(finish))
        json_object_set(choice, "finish_reason", finish);
}

typedef struct assembly {
    json_t *result; /* the chat.completion being built */
    json_t *choices;
    int failed;
} assembly;

static int assemble_event(void *ctx, const char *event, const char *data, size_t len)
{
    assembly *a = ctx;
    if (openai_classify_event(event, data, len) != PROV_EVENT_DATA)
        return 0;
    json_t *chunk = json_loadb(data, len, 0, NULL);
    if (!json_is_object(chunk)) {
        json_decref(chunk);
        a->failed = 1;
        return 1;
    }
    /* Identity fields come from the first chunk that has them. */
    static const char *const ident[] = {"id", "created", "model", "system_fingerprint",
                                        "service_tier"};
    for (size_t i = 0; i < sizeof ident / sizeof ident[0]; i++) {
        json_t *v = json_object_get(chunk, ident[i]);
        if (v && !json_is_null(v) && !json_object_get(a->result, ident[i]))
            json_object_set(a->result, ident[i], v);
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(chunk, "choices"), i, c)
    {
        json_t *choice =
            by_index(a->choices, json_integer_value(json_object_get(c, "index")), make_choice);
        if (choice)
            merge_delta(choice, c);
    }
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage))
        json_object_set(a->result, "usage", usage);
    json_decref(chunk);
    return 0;
}

static rl_err openai_stream_to_body(const char *sse, size_t len, rl_buf *out)
{
    assembly a = {json_object(), json_array(), 0};
    rl_err err = RL_NOMEM;
    if (!a.result || !a.choices)
        goto out;
    sse_parser p;
    sse_init(&p, 0, assemble_event, &a);
    err = sse_feed(&p, sse, len);
    if (err == RL_OK)
        err = sse_feed(&p, "\n\n", 2); /* flush a last event without its blank line */
    sse_release(&p);
    if (a.failed)
        err = RL_UPSTREAM_PROTOCOL;
    if (err != RL_OK)
        goto out;

    json_object_set_new(a.result, "object", json_string("chat.completion"));
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
    json_object_set(a.result, "choices", a.choices);
    if (!json_object_get(a.result, "usage"))
        json_object_set_new(a.result, "usage", json_null());
    err = dump_json(a.result, JSON_COMPACT | JSON_PRESERVE_ORDER, out);
out:
    json_decref(a.result);
    json_decref(a.choices);
    return err;
}

/* Appends "data: <chunk>\n\n". */
static rl_err put_chunk(rl_buf *out, json_t *chunk)
{
    rl_err err = RL_NOMEM;
    if (!chunk)
        return err;
    if ((err = rl_buf_puts(out, "data: ")) == RL_OK &&
        (err = dump_json(chunk, JSON_COMPACT | JSON_PRESERVE_ORDER, out)) == RL_OK)
        err = rl_buf_puts(out, "\n\n");
    json_decref(chunk);
    return err;
}

/* A chunk with the identity fields of the completion and one choice. */
static json_t *new_chunk(json_t *completion, json_t *choice, int with_usage_null)
{
    json_t *chunk = json_object();
    json_object_set(chunk, "id", json_object_get(completion, "id"));
    json_object_set_new(chunk, "object", json_string("chat.completion.chunk"));
    json_object_set(chunk, "created", json_object_get(completion, "created"));
    json_object_set(chunk, "model", json_object_get(completion, "model"));
    json_t *fp = json_object_get(completion, "system_fingerprint");
    if (fp)
        json_object_set(chunk, "system_fingerprint", fp);
    json_t *tier = json_object_get(completion, "service_tier");
    if (tier)
        json_object_set(chunk, "service_tier", tier);
    json_object_set_new(chunk, "choices", choice ? json_pack("[o]", choice) : json_array());
    if (with_usage_null)
        json_object_set_new(chunk, "usage", json_null());
    return chunk;
}

static rl_err openai_body_to_stream(const char *body, size_t len, const prov_info *info,
                                    rl_buf *out)
{
    json_t *completion = json_loadb(body, len, 0, NULL);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    if (!json_is_object(completion) || !json_is_array(json_object_get(completion, "choices")))
        goto out;
    int with_usage = info->include_usage;
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

        /* As OpenAI streams: the role first, then the text, then tool
         * calls, then an empty delta with the finish reason. */
        const char *role_name = json_is_string(role) ? json_string_value(role) : "assistant";
        json_t *first =
            json_pack("{s:I, s:{s:s, s:s, s:n}, s:n, s:n}", "index", index, "delta", "role",
                      role_name, "content", "", "refusal", "logprobs", "finish_reason");
        if ((err = put_chunk(out, new_chunk(completion, first, with_usage))) != RL_OK)
            goto out;
        if (json_is_string(content) && json_string_length(content) > 0) {
            json_t *c = json_pack(
                "{s:I, s:{s:O}, s:O, s:n}", "index", index, "delta", "content", content, "logprobs",
                json_object_get(choice, "logprobs") ? json_object_get(choice, "logprobs")
                                                    : json_null(),
                "finish_reason");
            if ((err = put_chunk(out, new_chunk(completion, c, with_usage))) != RL_OK)
                goto out;
        }
        if (json_is_string(refusal) && json_string_length(refusal) > 0) {
            json_t *c = json_pack("{s:I, s:{s:O}, s:n, s:n}", "index", index, "delta", "refusal",
                                  refusal, "logprobs", "finish_reason");
            if ((err = put_chunk(out, new_chunk(completion, c, with_usage))) != RL_OK)
                goto out;
        }
        json_t *calls = json_object_get(message, "tool_calls");
        size_t k;
        json_t *tc;
        json_array_foreach(calls, k, tc)
        {
            json_t *call = json_deep_copy(tc);
            json_object_set_new(call, "index", json_integer((json_int_t)k));
            json_t *c = json_pack("{s:I, s:{s:[o]}, s:n, s:n}", "index", index, "delta",
                                  "tool_calls", call, "logprobs", "finish_reason");
            if ((err = put_chunk(out, new_chunk(completion, c, with_usage))) != RL_OK)
                goto out;
        }
        json_t *last = json_pack(
            "{s:I, s:{}, s:n, s:O}", "index", index, "delta", "logprobs", "finish_reason",
            json_object_get(choice, "finish_reason") ? json_object_get(choice, "finish_reason")
                                                     : json_null());
        if ((err = put_chunk(out, new_chunk(completion, last, with_usage))) != RL_OK)
            goto out;
    }
    json_t *usage = json_object_get(completion, "usage");
    if (with_usage && json_is_object(usage)) {
        json_t *chunk = new_chunk(completion, NULL, 0);
        json_object_set(chunk, "usage", usage);
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
    json_t *j = error_object(err, message);
    rl_err e = j ? dump_json(j, JSON_COMPACT | JSON_PRESERVE_ORDER, out) : RL_NOMEM;
    json_decref(j);
    return e;
}

static rl_err openai_error_event(rl_buf *out, rl_err err, const char *message)
{
    return put_chunk(out, error_object(err, message));
}

const prov_ops prov_openai = {
    .format = "openai",
    .inspect = openai_inspect,
    .classify_event = openai_classify_event,
    .body_complete = openai_body_complete,
    .stream_to_body = openai_stream_to_body,
    .body_to_stream = openai_body_to_stream,
    .error_body = openai_error_body,
    .error_event = openai_error_event,
};
