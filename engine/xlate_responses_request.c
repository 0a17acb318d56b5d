/*
 * xlate_responses_request.c — the request side of the OpenAI Responses API
 * (POST /v1/responses) as a dialect of the translation model (xlate.h):
 * decode_request (client body -> xl_request) and encode_request
 * (xl_request -> upstream body and path). The answers, errors and streams,
 * and the dialect's xl_dialect table, are in xlate_responses.c; what the two
 * files share is declared in xlate_responses_int.h.
 *
 * What maps to what (client request -> model):
 *   instructions                    -> system (one TEXT part)
 *   input (a string)                -> one user turn
 *   input[] message items           -> turns; role system/developer -> system
 *                                      parts (lifted to the front, in order,
 *                                      wherever they stood: the model has one
 *                                      system prompt); consecutive items of
 *                                      one role merge into one turn
 *     content input_text/output_text -> TEXT; refusal -> TEXT
 *     content input_image           -> IMAGE (data URL split, or http(s) URL)
 *   input[] function_call           -> TOOL_CALL (call_id kept) in an
 *                                      assistant turn
 *   input[] function_call_output    -> TOOL_RESULT (call_id kept) in a tool turn
 *   input[] reasoning               -> THINKING (its summary texts, else its
 *                                      reasoning_text content)
 *   tools[] type function           -> tools (strict kept)
 *   tool_choice, parallel_tool_calls, max_output_tokens, temperature, top_p,
 *   text.format (json_object, json_schema), reasoning.effort, user, stream
 *                                   -> the model's fields of the same meaning
 * Refused (400 naming the field): built-in tools (tools[i].type other than
 * function), input_image.file_id, input_file and input_audio parts, item
 * types other than the four above (item_reference and built-in tool calls
 * need OpenAI's stored state or tools), previous_response_id and
 * conversation (state kept at OpenAI, which another upstream cannot hold),
 * background, prompt, top_logprobs, include of logprobs, max_tool_calls,
 * text.verbosity other than "medium", any field not listed here.
 * Skipped because they do not change the answer: store (true or absent is
 * the API's default; it only keeps a copy at OpenAI), metadata,
 * stream_options, service_tier, safety_identifier, prompt_cache_key,
 * prompt_cache_retention, truncation, reasoning.summary, input_image.detail,
 * item ids and statuses, other include values (members of an input item
 * other than those read are not looked at). Dropped and said here:
 * reasoning items' encrypted_content (OpenAI's own opaque state, readable
 * by no other upstream; refusing it would refuse every stateless Codex-style
 * conversation).
 *
 * Upstream side (model -> Responses request): system parts joined by a blank
 * line as instructions; turns as message / function_call /
 * function_call_output items; store:false (the answer is Relay's to keep,
 * not OpenAI's); tools with strict:false unless the client said (strict
 * defaults to true in this API and would reject schemas written for other
 * formats); an effort from a thinking budget (xlate_budget_effort), without
 * asking for reasoning summaries (reasoning.summary needs a verified
 * OpenAI organisation on some models and would turn a translated request
 * into a 400: such an answer carries no THINKING). Earlier
 * turns' THINKING parts are not sent: a reasoning input item needs OpenAI's
 * own id and encrypted content. A tool result's is_error has no place and
 * is not sent. Caps: no top_k, seed, penalties, n, stop sequences.
 */

#include "engine/xlate_responses_int.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "engine/prov_json.h"
#include "engine/xlate.h"

/* ---- small helpers ----------------------------------------------------- */

/* Appends a reason to why; RL_BAD_REQUEST, or RL_NOMEM when it could not
 * be written (the client would get a 400 with no reason). */
static rl_err refuse(rl_buf *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static rl_err refuse(rl_buf *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rl_err err = rl_buf_vprintf(why, fmt, ap);
    va_end(ap);
    return err == RL_NOMEM ? RL_NOMEM : RL_BAD_REQUEST;
}

/* Grows a pool array of n elements by one (zeroed) and returns the new
 * element. The capacity is implicit: the array is reallocated when n is 0
 * or a power of two, so appends cost amortised O(1) with no capacity field
 * (xl_message has none). NULL when out of memory. */
void *resp_push(rl_pool *pool, void **arr, size_t *n, size_t size)
{
    if (*n == 0 || (*n & (*n - 1)) == 0) {
        void *bigger = rl_palloc(pool, size * (*n ? *n * 2 : 4));
        if (!bigger)
            return NULL;
        if (*n)
            memcpy(bigger, *arr, size * *n);
        *arr = bigger;
    }
    return (char *)*arr + size * (*n)++;
}

/* j's compact JSON text, in pool; NULL when out of memory. */
static const char *pool_json(rl_pool *pool, json_t *j)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    const char *s = prov_json_dump(j, JSON_COMPACT, &b) == RL_OK ? rl_pstrdup(pool, b.data) : NULL;
    rl_buf_release(&b);
    return s;
}

/* A pool copy of a formatted string (feature names quoting a field's
 * place); NULL when out of memory. */
static const char *pool_printf(rl_pool *pool, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *pool_printf(rl_pool *pool, const char *fmt, ...)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    va_list ap;
    va_start(ap, fmt);
    rl_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    const char *s = rl_buf_error(&b) == RL_OK ? rl_pstrdup(pool, b.data) : NULL;
    rl_buf_release(&b);
    return s;
}

/* Parses a JSON fragment the model holds (written by a decoder, so valid).
 * NULL when out of memory. */
static json_t *frag(const char *text)
{
    return prov_json_load(text, strlen(text), NULL);
}

/* ---- the request: client side ------------------------------------------ */

typedef struct dec_ctx {
    rl_pool *pool;
    xl_request *req;
    rl_buf *why;
} dec_ctx;

/* The turn to add a part of role to: the last one when it has that role
 * (the Responses API splits one turn into items), else a new one. */
static xl_message *turn(dec_ctx *c, xl_role role)
{
    xl_request *r = c->req;
    if (r->nmessages && r->messages[r->nmessages - 1].role == role)
        return &r->messages[r->nmessages - 1];
    xl_message *m = resp_push(c->pool, (void **)&r->messages, &r->nmessages, sizeof *m);
    if (m)
        m->role = role;
    return m;
}

static xl_part *add_part(dec_ctx *c, xl_part **parts, size_t *n, xl_part_kind kind)
{
    xl_part *p = resp_push(c->pool, (void **)parts, n, sizeof *p);
    if (p)
        p->kind = kind;
    return p;
}

/* Where a content part goes: a turn's parts, or the system prompt's. */
typedef struct target {
    xl_part **parts;
    size_t *n;
    int system;
} target;

typedef rl_err (*part_fn)(dec_ctx *c, const target *t, json_t *part, size_t i, size_t j);

static rl_err text_part(dec_ctx *c, const target *t, const char *text, size_t i, size_t j)
{
    if (!text)
        return refuse(c->why, "`input[%zu].content[%zu].text` must be a string.", i, j);
    xl_part *p = add_part(c, t->parts, t->n, XL_PART_TEXT);
    if (!p || !(p->text = rl_pstrdup(c->pool, text)))
        return RL_NOMEM;
    return RL_OK;
}

static rl_err part_text(dec_ctx *c, const target *t, json_t *part, size_t i, size_t j)
{
    return text_part(c, t, json_string_value(json_object_get(part, "text")), i, j);
}

/* A refusal replayed from an earlier answer is what the model said. */
static rl_err part_refusal(dec_ctx *c, const target *t, json_t *part, size_t i, size_t j)
{
    return text_part(c, t, json_string_value(json_object_get(part, "refusal")), i, j);
}

static rl_err part_image(dec_ctx *c, const target *t, json_t *part, size_t i, size_t j)
{
    json_t *file = json_object_get(part, "file_id");
    if (file && !json_is_null(file))
        return refuse(c->why,
                      "`input[%zu].content[%zu].file_id` cannot be translated: files uploaded to "
                      "OpenAI exist only there; send the image as image_url.",
                      i, j);
    const char *url = json_string_value(json_object_get(part, "image_url"));
    if (!url)
        return refuse(c->why, "`input[%zu].content[%zu].image_url` must be a string.", i, j);
    if (t->system)
        return refuse(c->why,
                      "`input[%zu].content[%zu]`: an image in a system or developer message "
                      "cannot be translated.",
                      i, j);
    xl_part *p = add_part(c, t->parts, t->n, XL_PART_IMAGE);
    if (!p)
        return RL_NOMEM;
    xl_request *r = c->req;
    if (!(r->features[XL_F_IMAGE] = pool_printf(c->pool, "input[%zu].content[%zu]", i, j)))
        return RL_NOMEM;
    if (strncmp(url, "data:", 5) == 0) {
        if (xlate_data_url(c->pool, url, &p->media_type, &p->data) != 0)
            return refuse(c->why,
                          "`input[%zu].content[%zu].image_url` is a data URL that is not "
                          "base64.",
                          i, j);
        /* The model carries images only: another media type would reach
         * an upstream as an image it is not (found by fuzz_xlate). */
        if (strncasecmp(p->media_type, "image/", 6) != 0)
            return refuse(c->why,
                          "`input[%zu].content[%zu].image_url` must be an image's data: URL to be "
                          "translated.",
                          i, j);
        return RL_OK;
    }
    if (!(p->url = rl_pstrdup(c->pool, url)))
        return RL_NOMEM;
    r->features[XL_F_IMAGE_URL] = pool_printf(c->pool, "input[%zu].content[%zu].image_url", i, j);
    return r->features[XL_F_IMAGE_URL] ? RL_OK : RL_NOMEM;
}

/* Content part types a message may hold; any other is refused by name. */
static const struct {
    const char *type;
    part_fn read;
} part_types[] = {
    {"input_text", part_text},
    {"output_text", part_text},
    {"refusal", part_refusal},
    {"input_image", part_image},
};

static rl_err read_content(dec_ctx *c, const target *t, json_t *content, size_t i)
{
    if (json_is_string(content))
        return text_part(c, t, json_string_value(content), i, 0);
    if (!json_is_array(content))
        return refuse(c->why, "`input[%zu].content` must be a string or an array.", i);
    size_t j;
    json_t *part;
    json_array_foreach(content, j, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        size_t k = 0;
        while (type && k < sizeof part_types / sizeof part_types[0] &&
               strcmp(part_types[k].type, type) != 0)
            k++;
        if (!type || k == sizeof part_types / sizeof part_types[0])
            return refuse(c->why, "`input[%zu].content[%zu].type` `%s` cannot be translated.", i, j,
                          type ? type : "(none)");
        rl_err err = part_types[k].read(c, t, part, i, j);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

/* Message roles: system and developer instructions both become the
 * system prompt (the other formats have one kind). */
static const struct {
    const char *role;
    xl_role to;
    int system;
} roles[] = {
    {"user", XL_ROLE_USER, 0},
    {"assistant", XL_ROLE_ASSISTANT, 0},
    {"system", XL_ROLE_USER, 1},
    {"developer", XL_ROLE_USER, 1},
};

static rl_err item_message(dec_ctx *c, json_t *item, size_t i)
{
    const char *role = json_string_value(json_object_get(item, "role"));
    size_t k = 0;
    while (role && k < sizeof roles / sizeof roles[0] && strcmp(roles[k].role, role) != 0)
        k++;
    if (!role || k == sizeof roles / sizeof roles[0])
        return refuse(c->why, "`input[%zu].role` `%s` cannot be translated.", i,
                      role ? role : "(none)");
    target t = {&c->req->system, &c->req->nsystem, 1};
    if (!roles[k].system) {
        xl_message *m = turn(c, roles[k].to);
        if (!m)
            return RL_NOMEM;
        t = (target){&m->parts, &m->nparts, 0};
    }
    return read_content(c, &t, json_object_get(item, "content"), i);
}

static rl_err item_call(dec_ctx *c, json_t *item, size_t i)
{
    const char *id = json_string_value(json_object_get(item, "call_id"));
    const char *name = json_string_value(json_object_get(item, "name"));
    const char *args = json_string_value(json_object_get(item, "arguments"));
    if (!id || !name || !args)
        return refuse(c->why,
                      "`input[%zu]`: a function_call needs call_id, name and arguments "
                      "(strings).",
                      i);
    /* The model holds a JSON object's compact text, which the other
     * formats send as an object: arguments that are not one were passed
     * through and written as such (found by fuzz_xlate). */
    json_t *obj = NULL;
    if (*args) {
        json_error_t jerr;
        obj = prov_json_load(args, json_string_length(json_object_get(item, "arguments")), &jerr);
        rl_err err = obj ? RL_OK : prov_json_failed(&jerr, RL_BAD_REQUEST);
        if (err == RL_OK && !json_is_object(obj))
            err = RL_BAD_REQUEST;
        if (err != RL_OK) {
            json_decref(obj);
            return err == RL_NOMEM ? RL_NOMEM
                                   : refuse(c->why,
                                            "`input[%zu].arguments` must be a JSON object's text "
                                            "to be translated.",
                                            i);
        }
    }
    xl_message *m = turn(c, XL_ROLE_ASSISTANT);
    xl_part *p = m ? add_part(c, &m->parts, &m->nparts, XL_PART_TOOL_CALL) : NULL;
    int ok = p && (p->id = rl_pstrdup(c->pool, id)) && (p->name = rl_pstrdup(c->pool, name)) &&
             (p->arguments = obj ? pool_json(c->pool, obj) : "{}");
    json_decref(obj);
    return ok ? RL_OK : RL_NOMEM;
}

/* A function's output: a string, or input_text parts (joined; the model's
 * tool result is text). */
static rl_err item_output(dec_ctx *c, json_t *item, size_t i)
{
    const char *id = json_string_value(json_object_get(item, "call_id"));
    json_t *output = json_object_get(item, "output");
    if (!id)
        return refuse(c->why, "`input[%zu].call_id` must be a string.", i);
    rl_buf text;
    rl_buf_init(&text, 0);
    rl_err err = RL_OK;
    if (json_is_string(output)) {
        rl_buf_puts(&text, json_string_value(output));
    } else if (json_is_array(output)) {
        size_t j;
        json_t *part;
        json_array_foreach(output, j, part)
        {
            const char *type = json_string_value(json_object_get(part, "type"));
            const char *s = json_string_value(json_object_get(part, "text"));
            if (!type || strcmp(type, "input_text") != 0 || !s) {
                err = refuse(c->why,
                             "`input[%zu].output[%zu]`: only input_text parts of a function's "
                             "output can be translated.",
                             i, j);
                goto out;
            }
            rl_buf_puts(&text, s);
        }
    } else {
        err = refuse(c->why, "`input[%zu].output` must be a string or an array.", i);
        goto out;
    }
    xl_message *m = turn(c, XL_ROLE_TOOL);
    xl_part *p = m ? add_part(c, &m->parts, &m->nparts, XL_PART_TOOL_RESULT) : NULL;
    if (rl_buf_error(&text) != RL_OK || !p || !(p->id = rl_pstrdup(c->pool, id)) ||
        !(p->text = rl_pstrdup(c->pool, text.data ? text.data : "")))
        err = RL_NOMEM;
out:
    rl_buf_release(&text);
    return err;
}

/* Appends the "text" of each element of arr (summary_text or
 * reasoning_text parts) to b, a blank line between them. */
void resp_join_texts(rl_buf *b, json_t *arr)
{
    size_t j;
    json_t *part;
    json_array_foreach(arr, j, part)
    {
        const char *s = json_string_value(json_object_get(part, "text"));
        if (!s)
            continue;
        if (b->len)
            rl_buf_puts(b, "\n\n");
        rl_buf_puts(b, s);
    }
}

/* A reasoning item: its readable text becomes THINKING; encrypted_content
 * is dropped (see the header); an item with no readable text adds
 * nothing. */
static rl_err item_reasoning(dec_ctx *c, json_t *item, size_t i)
{
    (void)i;
    rl_buf text;
    rl_buf_init(&text, 0);
    resp_join_texts(&text, json_object_get(item, "summary"));
    if (!text.len)
        resp_join_texts(&text, json_object_get(item, "content"));
    rl_err err = rl_buf_error(&text);
    if (err == RL_OK && text.len) {
        xl_message *m = turn(c, XL_ROLE_ASSISTANT);
        xl_part *p = m ? add_part(c, &m->parts, &m->nparts, XL_PART_THINKING) : NULL;
        if (!p || !(p->text = rl_pstrdup(c->pool, text.data)))
            err = RL_NOMEM;
    }
    rl_buf_release(&text);
    return err;
}

static const struct {
    const char *type;
    rl_err (*read)(dec_ctx *c, json_t *item, size_t i);
} item_types[] = {
    {"message", item_message},
    {"function_call", item_call},
    {"function_call_output", item_output},
    {"reasoning", item_reasoning},
};

static rl_err read_input(dec_ctx *c, json_t *v)
{
    if (json_is_string(v)) {
        xl_message *m = turn(c, XL_ROLE_USER);
        xl_part *p = m ? add_part(c, &m->parts, &m->nparts, XL_PART_TEXT) : NULL;
        if (!p || !(p->text = rl_pstrdup(c->pool, json_string_value(v))))
            return RL_NOMEM;
        return RL_OK;
    }
    if (!json_is_array(v))
        return refuse(c->why, "`input` must be a string or an array of items.");
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        if (!json_is_object(item))
            return refuse(c->why, "`input[%zu]` must be an object.", i);
        /* An easy input message may leave out its type. */
        const char *type = json_string_value(json_object_get(item, "type"));
        if (!type && json_object_get(item, "role"))
            type = "message";
        size_t k = 0;
        while (type && k < sizeof item_types / sizeof item_types[0] &&
               strcmp(item_types[k].type, type) != 0)
            k++;
        if (!type || k == sizeof item_types / sizeof item_types[0])
            return refuse(c->why, "`input[%zu].type` `%s` cannot be translated.", i,
                          type ? type : "(none)");
        rl_err err = item_types[k].read(c, item, i);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

static rl_err read_model(dec_ctx *c, json_t *v)
{
    if (!json_is_string(v))
        return refuse(c->why, "`model` must be a string.");
    return (c->req->model = rl_pstrdup(c->pool, json_string_value(v))) ? RL_OK : RL_NOMEM;
}

static rl_err read_instructions(dec_ctx *c, json_t *v)
{
    if (!json_is_string(v))
        return refuse(c->why, "`instructions` must be a string.");
    /* Instructions come before any system message of the input. */
    xl_request *r = c->req;
    xl_part *p = add_part(c, &r->system, &r->nsystem, XL_PART_TEXT);
    if (!p)
        return RL_NOMEM;
    memmove(r->system + 1, r->system, (r->nsystem - 1) * sizeof *p);
    r->system[0] = (xl_part){.kind = XL_PART_TEXT};
    return (r->system[0].text = rl_pstrdup(c->pool, json_string_value(v))) ? RL_OK : RL_NOMEM;
}

static rl_err read_tools(dec_ctx *c, json_t *v)
{
    if (!json_is_array(v))
        return refuse(c->why, "`tools` must be an array.");
    xl_request *r = c->req;
    r->tools = rl_palloc(c->pool, (json_array_size(v) + 1) * sizeof *r->tools);
    if (!r->tools)
        return RL_NOMEM;
    size_t i;
    json_t *tool;
    json_array_foreach(v, i, tool)
    {
        const char *type = json_string_value(json_object_get(tool, "type"));
        if (!type || strcmp(type, "function") != 0)
            return refuse(c->why,
                          "`tools[%zu].type` `%s` cannot be translated: only function tools "
                          "exist in the other formats (built-in tools run at OpenAI).",
                          i, type ? type : "(none)");
        const char *name = json_string_value(json_object_get(tool, "name"));
        if (!name)
            return refuse(c->why, "`tools[%zu].name` must be a string.", i);
        xl_tool *t = &r->tools[r->ntools++];
        const char *desc = json_string_value(json_object_get(tool, "description"));
        json_t *params = json_object_get(tool, "parameters");
        json_t *strict = json_object_get(tool, "strict");
        t->strict = json_is_boolean(strict) ? json_is_true(strict) : -1;
        if (!(t->name = rl_pstrdup(c->pool, name)) ||
            (desc && !(t->description = rl_pstrdup(c->pool, desc))) ||
            (json_is_object(params) && !(t->parameters = pool_json(c->pool, params))))
            return RL_NOMEM;
    }
    if (r->ntools)
        r->features[XL_F_TOOLS] = "tools";
    return RL_OK;
}

static const struct {
    const char *name;
    xl_tool_choice choice;
} choices[] = {
    {"auto", XL_CHOICE_AUTO},
    {"none", XL_CHOICE_NONE},
    {"required", XL_CHOICE_REQUIRED},
};

static rl_err read_tool_choice(dec_ctx *c, json_t *v)
{
    xl_request *r = c->req;
    if (json_is_string(v)) {
        for (size_t k = 0; k < sizeof choices / sizeof choices[0]; k++)
            if (strcmp(choices[k].name, json_string_value(v)) == 0) {
                r->tool_choice = choices[k].choice;
                return RL_OK;
            }
        return refuse(c->why, "`tool_choice` `%s` cannot be translated.", json_string_value(v));
    }
    const char *type = json_string_value(json_object_get(v, "type"));
    const char *name = json_string_value(json_object_get(v, "name"));
    if (!type || strcmp(type, "function") != 0 || !name)
        return refuse(c->why,
                      "`tool_choice.type` `%s` cannot be translated: only a function "
                      "(with its name) can be chosen in the other formats.",
                      type ? type : "(none)");
    r->tool_choice = XL_CHOICE_NAMED;
    return (r->tool_choice_name = rl_pstrdup(c->pool, name)) ? RL_OK : RL_NOMEM;
}

static rl_err read_parallel(dec_ctx *c, json_t *v)
{
    if (!json_is_boolean(v))
        return refuse(c->why, "`parallel_tool_calls` must be a boolean.");
    c->req->parallel_tool_calls = json_is_true(v);
    if (!c->req->parallel_tool_calls)
        c->req->features[XL_F_PARALLEL_OFF] = "parallel_tool_calls";
    return RL_OK;
}

static rl_err read_max(dec_ctx *c, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return refuse(c->why, "`max_output_tokens` must be a positive integer.");
    c->req->max_tokens = json_integer_value(v);
    return RL_OK;
}

static rl_err read_number(dec_ctx *c, json_t *v, const char *field, double *out)
{
    if (!json_is_number(v) || json_number_value(v) < 0)
        return refuse(c->why, "`%s` must be a number, 0 or more.", field);
    *out = json_number_value(v);
    return RL_OK;
}

static rl_err read_temperature(dec_ctx *c, json_t *v)
{
    return read_number(c, v, "temperature", &c->req->temperature);
}

static rl_err read_top_p(dec_ctx *c, json_t *v)
{
    return read_number(c, v, "top_p", &c->req->top_p);
}

static rl_err read_format(dec_ctx *c, json_t *format)
{
    xl_request *r = c->req;
    const char *type = json_string_value(json_object_get(format, "type"));
    if (type && strcmp(type, "text") == 0)
        return RL_OK;
    if (type && strcmp(type, "json_object") == 0) {
        r->format = XL_FORMAT_JSON_OBJECT;
        r->features[XL_F_JSON_OBJECT] = "text.format";
        return RL_OK;
    }
    if (!type || strcmp(type, "json_schema") != 0)
        return refuse(c->why, "`text.format.type` `%s` cannot be translated.",
                      type ? type : "(none)");
    json_t *schema = json_object_get(format, "schema");
    const char *name = json_string_value(json_object_get(format, "name"));
    if (!json_is_object(schema))
        return refuse(c->why, "`text.format.schema` must be an object.");
    r->format = XL_FORMAT_JSON_SCHEMA;
    r->features[XL_F_JSON_SCHEMA] = "text.format";
    r->format_strict = json_is_true(json_object_get(format, "strict"));
    if (!(r->format_schema = pool_json(c->pool, schema)) ||
        (name && !(r->format_name = rl_pstrdup(c->pool, name))))
        return RL_NOMEM;
    return RL_OK;
}

static rl_err read_text(dec_ctx *c, json_t *v)
{
    const char *key;
    json_t *member;
    json_object_foreach(v, key, member)
    {
        if (strcmp(key, "format") == 0) {
            rl_err err = read_format(c, member);
            if (err != RL_OK)
                return err;
        } else if (strcmp(key, "verbosity") == 0) {
            /* "medium" is the default, and what every other format gives. */
            if (!json_is_null(member) &&
                (!json_is_string(member) || strcmp(json_string_value(member), "medium") != 0))
                return refuse(c->why, "`text.verbosity` cannot be translated.");
        } else {
            return refuse(c->why, "`text.%s` cannot be translated.", key);
        }
    }
    return RL_OK;
}

static rl_err read_reasoning(dec_ctx *c, json_t *v)
{
    json_t *effort = json_object_get(v, "effort");
    if (!effort || json_is_null(effort))
        return RL_OK;
    const char *e = json_string_value(effort);
    /* "none" asks for no reasoning: what the other formats do unasked. */
    if (e && strcmp(e, "none") == 0)
        return RL_OK;
    if (!e || xlate_effort_budget(e) < 0)
        return refuse(c->why, "`reasoning.effort` `%s` cannot be translated.", e ? e : "?");
    c->req->features[XL_F_THINKING] = "reasoning.effort";
    return (c->req->reasoning_effort = rl_pstrdup(c->pool, e)) ? RL_OK : RL_NOMEM;
}

static rl_err read_stream(dec_ctx *c, json_t *v)
{
    if (!json_is_boolean(v))
        return refuse(c->why, "`stream` must be a boolean.");
    c->req->stream = json_is_true(v);
    return RL_OK;
}

static rl_err read_user(dec_ctx *c, json_t *v)
{
    if (!json_is_string(v))
        return refuse(c->why, "`user` must be a string.");
    return (c->req->user = rl_pstrdup(c->pool, json_string_value(v))) ? RL_OK : RL_NOMEM;
}

/* Conversation state kept at OpenAI: the other upstream has none of it. */
static rl_err refuse_state(dec_ctx *c, json_t *v)
{
    (void)v;
    return refuse(c->why,
                  "`previous_response_id` / `conversation` cannot be translated: the "
                  "conversation is stored at OpenAI, which the chosen upstream cannot read. "
                  "Send the whole conversation in `input`.");
}

static rl_err read_include(dec_ctx *c, json_t *v)
{
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        const char *name = json_string_value(s);
        if (name && strstr(name, "logprobs"))
            return refuse(c->why, "`include[%zu]` `%s` cannot be translated.", i, name);
    }
    return RL_OK;
}

/* A field that may stand only with its "off" value (false, 0). */
static rl_err only_off(dec_ctx *c, json_t *v, const char *field)
{
    if (json_is_false(v) || (json_is_integer(v) && json_integer_value(v) == 0))
        return RL_OK;
    return refuse(c->why, "`%s` cannot be translated.", field);
}

static rl_err read_background(dec_ctx *c, json_t *v)
{
    return only_off(c, v, "background");
}

static rl_err read_top_logprobs(dec_ctx *c, json_t *v)
{
    return only_off(c, v, "top_logprobs");
}

/* Every top-level field this dialect knows; read NULL: skipped, it does
 * not change the answer (see the header). Any other field is refused, and
 * a null value counts as absent. */
static const struct {
    const char *key;
    rl_err (*read)(dec_ctx *c, json_t *v);
} req_fields[] = {
    {"model", read_model},
    {"input", read_input},
    {"instructions", read_instructions},
    {"tools", read_tools},
    {"tool_choice", read_tool_choice},
    {"parallel_tool_calls", read_parallel},
    {"max_output_tokens", read_max},
    {"temperature", read_temperature},
    {"top_p", read_top_p},
    {"text", read_text},
    {"reasoning", read_reasoning},
    {"stream", read_stream},
    {"user", read_user},
    {"previous_response_id", refuse_state},
    {"conversation", refuse_state},
    {"include", read_include},
    {"background", read_background},
    {"top_logprobs", read_top_logprobs},
    {"store", NULL},
    {"metadata", NULL},
    {"stream_options", NULL},
    {"service_tier", NULL},
    {"safety_identifier", NULL},
    {"prompt_cache_key", NULL},
    {"prompt_cache_retention", NULL},
    {"truncation", NULL},
};

rl_err resp_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                           xl_request *out, rl_buf *why)
{
    (void)path_model;
    xlate_request_init(out);
    json_error_t jerr;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root) {
        rl_buf_printf(why, "%s", jerr.text);
        return prov_json_failed(&jerr, RL_BAD_JSON);
    }
    dec_ctx c = {pool, out, why};
    rl_err err = RL_OK;
    if (!json_is_object(root)) {
        err = refuse(why, "The request body must be a JSON object.");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        size_t k = 0;
        while (k < sizeof req_fields / sizeof req_fields[0] && strcmp(req_fields[k].key, key) != 0)
            k++;
        if (k == sizeof req_fields / sizeof req_fields[0]) {
            err = refuse(why,
                         "`%s` cannot be translated: it has no equivalent in the upstream's "
                         "format.",
                         key);
            goto out;
        }
        if (json_is_null(v) || !req_fields[k].read)
            continue;
        if ((err = req_fields[k].read(&c, v)) != RL_OK)
            goto out;
    }
    if (!out->model)
        err = refuse(why, "`model` is required.");
    else if (!out->nmessages)
        err = refuse(why, "`input` is required.");
out:
    json_decref(root);
    return err;
}

/* ---- the request: upstream side ---------------------------------------- */

/* Appends item (taken; NULL: a json_pack that failed) to arr and returns
 * its "content" array, borrowed from arr (so never used after a failed
 * append freed the item); NULL when out of memory. */
json_t *resp_append_with_content(json_t *arr, json_t *item)
{
    json_t *content = json_object_get(item, "content");
    return json_array_append_new(arr, item) == 0 ? content : NULL;
}

/* One model part as a Responses content part (TEXT, IMAGE); NULL when out
 * of memory. */
static json_t *content_part(const xl_part *p, int assistant)
{
    if (p->kind == XL_PART_TEXT)
        return json_pack("{s:s, s:s}", "type", assistant ? "output_text" : "input_text", "text",
                         p->text ? p->text : "");
    if (p->url)
        return json_pack("{s:s, s:s}", "type", "input_image", "image_url", p->url);
    rl_buf url;
    rl_buf_init(&url, 0);
    rl_buf_printf(&url, "data:%s;base64,%s", p->media_type ? p->media_type : "image/png",
                  p->data ? p->data : "");
    json_t *j = rl_buf_error(&url) == RL_OK
                    ? json_pack("{s:s, s:s}", "type", "input_image", "image_url", url.data)
                    : NULL;
    rl_buf_release(&url);
    return j;
}

/* Appends the items one turn becomes to input: its text and images as one
 * message item per run, each call and result as its own item. */
static rl_err put_turn(const xl_message *m, json_t *input, rl_buf *why)
{
    int assistant = m->role == XL_ROLE_ASSISTANT;
    json_t *content = NULL; /* the message item being filled */
    int failed = 0;
    for (size_t p = 0; p < m->nparts && !failed; p++) {
        const xl_part *part = &m->parts[p];
        if (part->kind == XL_PART_TEXT || part->kind == XL_PART_IMAGE) {
            if (assistant && part->kind == XL_PART_IMAGE)
                return refuse(why, "An image in an assistant turn cannot be sent to the OpenAI "
                                   "Responses API.");
            if (!content && !(content = resp_append_with_content(
                                  input, json_pack("{s:s, s:s, s:[]}", "type", "message", "role",
                                                   assistant ? "assistant" : "user", "content")))) {
                failed = 1;
                break;
            }
            failed |= json_array_append_new(content, content_part(part, assistant));
            continue;
        }
        content = NULL;
        if (part->kind == XL_PART_TOOL_CALL)
            failed |= json_array_append_new(
                input, json_pack("{s:s, s:s, s:s, s:s}", "type", "function_call", "call_id",
                                 part->id ? part->id : "", "name", part->name ? part->name : "",
                                 "arguments", part->arguments ? part->arguments : "{}"));
        else if (part->kind == XL_PART_TOOL_RESULT)
            failed |= json_array_append_new(
                input, json_pack("{s:s, s:s, s:s}", "type", "function_call_output", "call_id",
                                 part->id ? part->id : "", "output", part->text ? part->text : ""));
        /* THINKING of earlier turns is not sent (see the header). */
    }
    return failed ? RL_NOMEM : RL_OK;
}

static json_t *tool_json(const xl_tool *t)
{
    json_t *params = t->parameters ? frag(t->parameters)
                                   : json_pack("{s:s, s:{}}", "type", "object", "properties");
    json_t *j = json_pack("{s:s, s:s, s:o, s:b}", "type", "function", "name", t->name, "parameters",
                          params, "strict", t->strict == 1);
    if (j && t->description &&
        json_object_set_new(j, "description", json_string(t->description)) != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *tool_choice_json(const xl_request *req)
{
    if (req->tool_choice == XL_CHOICE_NAMED)
        return json_pack("{s:s, s:s}", "type", "function", "name",
                         req->tool_choice_name ? req->tool_choice_name : "");
    for (size_t k = 0; k < sizeof choices / sizeof choices[0]; k++)
        if (choices[k].choice == req->tool_choice)
            return json_string(choices[k].name);
    return NULL;
}

static json_t *format_json(const xl_request *req)
{
    if (req->format == XL_FORMAT_JSON_OBJECT)
        return json_pack("{s:{s:s}}", "format", "type", "json_object");
    /* name is required by this API; the other formats may have none. */
    return json_pack("{s:{s:s, s:s, s:o, s:b}}", "format", "type", "json_schema", "name",
                     req->format_name ? req->format_name : "response", "schema",
                     frag(req->format_schema ? req->format_schema : "{}"), "strict",
                     req->format_strict > 0); /* unset (-1): not strict, see xlate.h */
}

rl_err resp_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why)
{
    json_t *body = json_object();
    json_t *input = json_array();
    int failed = json_object_set_new(body, "model", json_string(req->model ? req->model : ""));
    if (req->nsystem) {
        rl_buf sys;
        rl_buf_init(&sys, 0);
        for (size_t i = 0; i < req->nsystem; i++)
            rl_buf_printf(&sys, "%s%s", i ? "\n\n" : "",
                          req->system[i].text ? req->system[i].text : "");
        failed |= rl_buf_error(&sys) != RL_OK ||
                  json_object_set_new(body, "instructions", json_string(sys.data)) != 0;
        rl_buf_release(&sys);
    }
    failed |= json_object_set(body, "input", input);
    rl_err err = RL_OK;
    for (size_t m = 0; m < req->nmessages && !failed && err == RL_OK; m++)
        err = put_turn(&req->messages[m], input, why);
    if (req->ntools) {
        /* Borrowed from body once set: a failed set has freed it. */
        json_t *tools = json_array();
        if (json_object_set_new(body, "tools", tools) != 0)
            failed = 1;
        for (size_t i = 0; i < req->ntools && !failed; i++)
            failed |= json_array_append_new(tools, tool_json(&req->tools[i]));
    }
    if (req->tool_choice != XL_CHOICE_UNSET)
        failed |= json_object_set_new(body, "tool_choice", tool_choice_json(req));
    if (req->parallel_tool_calls >= 0)
        failed |= json_object_set_new(body, "parallel_tool_calls",
                                      json_boolean(req->parallel_tool_calls));
    if (req->max_tokens > 0)
        failed |= json_object_set_new(body, "max_output_tokens", json_integer(req->max_tokens));
    if (req->temperature >= 0)
        failed |= json_object_set_new(body, "temperature", json_real(req->temperature));
    if (req->top_p >= 0)
        failed |= json_object_set_new(body, "top_p", json_real(req->top_p));
    if (req->format != XL_FORMAT_TEXT)
        failed |= json_object_set_new(body, "text", format_json(req));
    const char *effort =
        req->reasoning_effort ? req->reasoning_effort : xlate_budget_effort(req->thinking_budget);
    if (effort)
        failed |= json_object_set_new(body, "reasoning", json_pack("{s:s}", "effort", effort));
    if (req->user)
        failed |= json_object_set_new(body, "user", json_string(req->user));
    /* The answer is Relay's to keep; OpenAI keeps a stored copy by default. */
    failed |= json_object_set_new(body, "store", json_false());
    if (req->stream)
        failed |= json_object_set_new(body, "stream", json_true());
    json_decref(input);
    body = prov_json_check(body, failed);
    if (err != RL_OK) {
        json_decref(body);
        return err;
    }
    if (!body)
        return RL_NOMEM;
    err = prov_json_put(out, "", body, JSON_COMPACT, "");
    if (err == RL_OK)
        err = rl_buf_puts(path, "/v1/responses");
    return err;
}
