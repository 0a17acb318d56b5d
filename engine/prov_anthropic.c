/*
 * prov_anthropic.c — the Anthropic Messages wire format.
 *
 * Endpoints: "messages" (POST /v1/messages, also ?beta=true) and
 * "messages.count_tokens" (POST /v1/messages/count_tokens).
 *
 * Streams are named SSE events ("event: NAME\ndata: {...}\n\n"):
 * message_start, then per content block content_block_start, deltas and
 * content_block_stop, then message_delta (stop reason, final usage) and
 * message_stop, the terminator; ping may come anywhere. Errors are
 * {"type":"error","error":{"type","message"}}, as a body and, inside a
 * stream, as an "error" event.
 */
#include "engine/prov.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/prov_canon.h"
#include "engine/prov_json.h"

/* Output for clients keeps the members in the order they came in. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER)

/* ---- requests ---------------------------------------------------------- */

/* The API key: x-api-key (SDK 0.x, Claude Code), else the bearer token of
 * the authorization header (SDK 1.x). The "Bearer " prefix is dropped, so
 * one key scopes the same cache entries whichever header carries it.
 * Borrowed from the request; buf is not needed. */
static const char *anthropic_credential(const prov_request *r, char *buf, size_t cap)
{
    (void)buf;
    (void)cap;
    const char *key = prov_header(r, "x-api-key");
    if (prov_credential_ok(key))
        return key;
    return prov_auth_token(r, "Bearer");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the anthropic-beta flags sorted, trimmed and without duplicates
 * or empty items: the same set of betas is the same request however the
 * client lists them (several headers may also arrive joined by ", "). */
static rl_err append_betas(rl_buf *out, const char *value)
{
    if (!value || !*value)
        return RL_OK;
    size_t n = 1;
    for (const char *p = value; *p; p++)
        n += *p == ',';
    char *copy = strdup(value);
    char **items = calloc(n, sizeof *items);
    rl_err err = RL_NOMEM;
    if (!copy || !items)
        goto out;
    size_t count = 0;
    for (char *p = copy;;) {
        char *end = strchr(p, ',');
        if (end)
            *end = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            p[--len] = '\0';
        if (len)
            items[count++] = p;
        if (!end)
            break;
        p = end + 1;
    }
    qsort(items, count, sizeof *items, cmp_str);
    err = RL_OK;
    for (size_t i = 0; i < count && err == RL_OK; i++) {
        if (i > 0 && strcmp(items[i], items[i - 1]) == 0)
            continue;
        if (i > 0)
            err = rl_buf_puts(out, ",");
        if (err == RL_OK)
            err = rl_buf_puts(out, items[i]);
    }
out:
    free(items);
    free(copy);
    return err;
}

/* Checks one required member the way Anthropic words it ("model: Field
 * required"). Returns 0 and explains in why when it is missing or of the
 * wrong type. */
static int require(json_t *root, const char *name, int (*is)(const json_t *), const char *kind,
                   rl_buf *why)
{
    json_t *v = json_object_get(root, name);
    if (!v) {
        rl_buf_printf(why, "%s: Field required", name);
        return 0;
    }
    if (!is(v)) {
        rl_buf_printf(why, "%s: Input should be a valid %s", name, kind);
        return 0;
    }
    return 1;
}

static int is_string(const json_t *v)
{
    return json_is_string(v);
}
static int is_array(const json_t *v)
{
    return json_is_array(v);
}
static int is_integer(const json_t *v)
{
    return json_is_integer(v);
}

static rl_err anthropic_inspect(const prov_request *r, prov_info *info, rl_buf *canonical,
                                rl_buf *key_parts, rl_buf *why)
{
    memset(info, 0, sizeof *info);
    info->framing = FRAME_SSE;
    int count_tokens = strcmp(r->endpoint, "messages.count_tokens") == 0;
    if (!count_tokens && strcmp(r->endpoint, "messages") != 0) {
        rl_buf_printf(why, "Not found: %s is not an Anthropic Messages endpoint", r->endpoint);
        return RL_NO_ROUTE;
    }

    json_error_t jerr;
    json_t *root = prov_json_load(r->body ? r->body : "", r->body_len, &jerr);
    rl_err err = root ? RL_BAD_REQUEST : prov_json_failed(&jerr, RL_BAD_JSON);
    if (err == RL_BAD_JSON)
        rl_buf_printf(why, "There was an error parsing the body of your request: %s (at byte %d)",
                      jerr.text, jerr.position);
    if (!root)
        return err;
    if (!json_is_object(root)) {
        rl_buf_puts(why, "Input should be a valid dictionary or object to extract fields from");
        goto out;
    }
    if (!require(root, "model", is_string, "string", why))
        goto out;
    json_t *model = json_object_get(root, "model");
    if (json_string_length(model) == 0) {
        rl_buf_puts(why, "model: String should have at least 1 character");
        goto out;
    }
    if (!require(root, "messages", is_array, "list", why))
        goto out;
    if (!count_tokens && !require(root, "max_tokens", is_integer, "integer", why))
        goto out;
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        rl_buf_puts(why, "stream: Input should be a valid boolean");
        goto out;
    }
    snprintf(info->model, sizeof info->model, "%s", json_string_value(model));
    info->stream = !count_tokens && json_is_true(stream);
    info->max_output = count_tokens ? 0 : prov_max_output(prov_json_int(root, "max_tokens"), 1);
    /* Anthropic samples at temperature 1.0 unless told otherwise; a token
     * count is a pure function of the request. */
    json_t *temperature = json_object_get(root, "temperature");
    info->deterministic =
        count_tokens || (json_is_number(temperature) && json_number_value(temperature) == 0.0);

    /* Volatile fields: the stream flag (either form answers from one
     * entry) and Claude Code's per-session metadata.user_id. */
    json_object_del(root, "stream");
    json_t *metadata = json_object_get(root, "metadata");
    if (json_is_object(metadata)) {
        json_object_del(metadata, "user_id");
        if (json_object_size(metadata) == 0)
            json_object_del(root, "metadata");
    }
    if ((err = prov_canon(root, "anthropic", r->endpoint, info)) != RL_OK ||
        (err = prov_json_dump(root, PROV_JSON_CANONICAL, canonical)) != RL_OK)
        goto out;

    /* The API version and betas change the answer; ?beta=true does not
     * (it only selects the SDK's beta namespace). */
    const char *version = prov_header(r, "anthropic-version");
    if ((err = rl_buf_printf(key_parts, "anthropic-version=%s\nanthropic-beta=",
                             version ? version : "")) == RL_OK &&
        (err = append_betas(key_parts, prov_header(r, "anthropic-beta"))) == RL_OK)
        err = rl_buf_puts(key_parts, "\n");
out:
    json_decref(root);
    return err;
}

/* ---- streams ----------------------------------------------------------- */

/* The "type" string of a JSON object's text, copied into buf ("" when
 * there is none). RL_NOMEM when it could not be read for want of memory. */
static rl_err data_type(const char *data, size_t len, char *buf, size_t cap)
{
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    const char *t = json_string_value(json_object_get(j, "type"));
    snprintf(buf, cap, "%s", t ? t : "");
    json_decref(j);
    return j ? RL_OK : prov_json_failed(&jerr, RL_OK);
}

static prov_event_kind anthropic_classify_event(const char *event, const char *data, size_t len)
{
    char type[64];
    /* Anthropic names every event; an unnamed one ("message" per the SSE
     * rules) is judged by the type inside its data. */
    if (!event || !*event || strcmp(event, "message") == 0) {
        if (data_type(data, len, type, sizeof type) != RL_OK)
            return PROV_EVENT_ERROR; /* unreadable: see prov.h */
        event = type;
    }
    if (strcmp(event, "message_stop") == 0)
        return PROV_EVENT_END;
    if (strcmp(event, "error") == 0)
        return PROV_EVENT_ERROR;
    return PROV_EVENT_DATA;
}

/* A message (type "message" with a content array) or a token count
 * ({"input_tokens": N}); never an error document. */
static int anthropic_body_complete(const char *body, size_t len)
{
    json_t *j = prov_json_load(body, len, NULL);
    int ok = 0;
    if (json_is_object(j) && !json_object_get(j, "error")) {
        const char *type = json_string_value(json_object_get(j, "type"));
        if (type)
            ok = strcmp(type, "message") == 0 && json_is_array(json_object_get(j, "content"));
        else
            ok = json_is_integer(json_object_get(j, "input_tokens"));
    }
    json_decref(j);
    return ok;
}

/* One content block being assembled from its start event and deltas. */
typedef struct ablock {
    json_int_t index;
    json_t *block;             /* from content_block_start (owned) */
    rl_buf text, thinking;     /* text_delta, thinking_delta (start value first) */
    rl_buf signature, partial; /* signature_delta, input_json_delta */
    int has_text, has_thinking, has_signature, has_partial;
} ablock;

typedef struct assembly {
    json_t *message; /* message_start's message (owned) */
    json_t *usage;   /* message_delta's usage, merged (owned) */
    json_t *delta;   /* message_delta's delta, merged (owned) */
    json_t *late;    /* message_delta's other members (owned) */
    ablock *blocks;
    size_t n, cap;
    int stopped;
    rl_err err; /* RL_OK while the stream makes sense */
} assembly;

static void assembly_release(assembly *a)
{
    for (size_t i = 0; i < a->n; i++) {
        json_decref(a->blocks[i].block);
        rl_buf_release(&a->blocks[i].text);
        rl_buf_release(&a->blocks[i].thinking);
        rl_buf_release(&a->blocks[i].signature);
        rl_buf_release(&a->blocks[i].partial);
    }
    free(a->blocks);
    json_decref(a->message);
    json_decref(a->usage);
    json_decref(a->delta);
    json_decref(a->late);
}

static ablock *find_block(assembly *a, json_t *index)
{
    if (!json_is_integer(index))
        return NULL;
    for (size_t i = 0; i < a->n; i++)
        if (a->blocks[i].index == json_integer_value(index))
            return &a->blocks[i];
    return NULL;
}

/* Starts buf with the string member key of block (the start value, "" as
 * a rule) and appends the delta member dkey of delta. */
static rl_err accumulate(rl_buf *buf, int *seen, json_t *block, const char *key, json_t *delta,
                         const char *dkey)
{
    json_t *piece = json_object_get(delta, dkey);
    if (!json_is_string(piece))
        return RL_UPSTREAM_PROTOCOL;
    rl_err err = RL_OK;
    if (!*seen) {
        json_t *start = json_object_get(block, key);
        if (json_is_string(start))
            err = rl_buf_append(buf, json_string_value(start), json_string_length(start));
        *seen = 1;
    }
    if (err == RL_OK)
        err = rl_buf_append(buf, json_string_value(piece), json_string_length(piece));
    return err;
}

static rl_err apply_delta(ablock *b, json_t *delta)
{
    const char *type = json_string_value(json_object_get(delta, "type"));
    if (!type)
        return RL_UPSTREAM_PROTOCOL;
    if (strcmp(type, "text_delta") == 0)
        return accumulate(&b->text, &b->has_text, b->block, "text", delta, "text");
    if (strcmp(type, "thinking_delta") == 0)
        return accumulate(&b->thinking, &b->has_thinking, b->block, "thinking", delta, "thinking");
    if (strcmp(type, "signature_delta") == 0)
        return accumulate(&b->signature, &b->has_signature, b->block, "signature", delta,
                          "signature");
    if (strcmp(type, "input_json_delta") == 0) {
        json_t *piece = json_object_get(delta, "partial_json");
        if (!json_is_string(piece))
            return RL_UPSTREAM_PROTOCOL;
        b->has_partial = 1;
        return rl_buf_append(&b->partial, json_string_value(piece), json_string_length(piece));
    }
    if (strcmp(type, "citations_delta") == 0) {
        json_t *citation = json_object_get(delta, "citation");
        json_t *list = json_object_get(b->block, "citations");
        if (!json_is_array(list)) {
            list = json_array();
            if (json_object_set_new(b->block, "citations", list) != 0)
                return RL_NOMEM;
        }
        if (!citation)
            return RL_UPSTREAM_PROTOCOL;
        return json_array_append(list, citation) == 0 ? RL_OK : RL_NOMEM;
    }
    return RL_OK; /* a delta type this version does not know: nothing to keep */
}

/* Merges the members of src into dst; null values do not erase (as the
 * SDKs merge message_delta's usage). */
static rl_err merge_into(json_t **dst, json_t *src)
{
    if (!json_is_object(src))
        return RL_OK;
    if (!*dst && !(*dst = json_object()))
        return RL_NOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v)
    {
        if (!json_is_null(v) && json_object_set(*dst, k, v) != 0)
            return RL_NOMEM;
    }
    return RL_OK;
}

/* The members of a message_delta event that frame it rather than report
 * on the message. */
static int is_delta_frame(const char *member)
{
    return !strcmp(member, "type") || !strcmp(member, "delta") || !strcmp(member, "usage");
}

static rl_err on_event(assembly *a, json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type)
        return RL_UPSTREAM_PROTOCOL;
    if (strcmp(type, "message_start") == 0) {
        json_t *m = json_object_get(ev, "message");
        if (a->message || !json_is_object(m))
            return RL_UPSTREAM_PROTOCOL;
        a->message = json_deep_copy(m);
        return a->message ? RL_OK : RL_NOMEM;
    }
    if (strcmp(type, "content_block_start") == 0) {
        json_t *index = json_object_get(ev, "index");
        json_t *block = json_object_get(ev, "content_block");
        if (!json_is_integer(index) || !json_is_object(block) || find_block(a, index))
            return RL_UPSTREAM_PROTOCOL;
        if (a->n == a->cap) {
            size_t cap = a->cap ? a->cap * 2 : 4;
            ablock *p = realloc(a->blocks, cap * sizeof *p);
            if (!p)
                return RL_NOMEM;
            a->blocks = p;
            a->cap = cap;
        }
        ablock *b = &a->blocks[a->n];
        memset(b, 0, sizeof *b);
        b->index = json_integer_value(index);
        if (!(b->block = json_deep_copy(block)))
            return RL_NOMEM;
        rl_buf_init(&b->text, 0);
        rl_buf_init(&b->thinking, 0);
        rl_buf_init(&b->signature, 0);
        rl_buf_init(&b->partial, 0);
        a->n++;
        return RL_OK;
    }
    if (strcmp(type, "content_block_delta") == 0) {
        ablock *b = find_block(a, json_object_get(ev, "index"));
        json_t *delta = json_object_get(ev, "delta");
        return b && json_is_object(delta) ? apply_delta(b, delta) : RL_UPSTREAM_PROTOCOL;
    }
    if (strcmp(type, "content_block_stop") == 0)
        return find_block(a, json_object_get(ev, "index")) ? RL_OK : RL_UPSTREAM_PROTOCOL;
    if (strcmp(type, "message_delta") == 0) {
        rl_err err = merge_into(&a->delta, json_object_get(ev, "delta"));
        if (err == RL_OK)
            err = merge_into(&a->usage, json_object_get(ev, "usage"));
        /* Members reported only at the end (context_management) belong
         * to the message itself. */
        const char *k;
        json_t *v;
        json_object_foreach(ev, k, v)
        {
            if (err != RL_OK || is_delta_frame(k) || json_is_null(v))
                continue;
            if (!a->late && !(a->late = json_object()))
                err = RL_NOMEM;
            else if (json_object_set(a->late, k, v) != 0)
                err = RL_NOMEM;
        }
        return err;
    }
    if (strcmp(type, "message_stop") == 0) {
        a->stopped = 1;
        return RL_OK;
    }
    if (strcmp(type, "error") == 0)
        return RL_UPSTREAM_PROTOCOL;
    return RL_OK; /* ping, or an event type this version does not know */
}

static int assemble_event(void *ctx, const char *event, const char *data, size_t len)
{
    assembly *a = ctx;
    (void)event;
    json_error_t jerr;
    json_t *ev = prov_json_load(data, len, &jerr);
    if (!ev)
        a->err = prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    else
        a->err = json_is_object(ev) ? on_event(a, ev) : RL_UPSTREAM_PROTOCOL;
    json_decref(ev);
    return a->err != RL_OK;
}

static int by_index(const void *x, const void *y)
{
    const ablock *a = x, *b = y;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Sets key of obj to the accumulated text. */
static rl_err set_text(json_t *obj, const char *key, const rl_buf *buf)
{
    /* The pieces were JSON strings, so their join is valid UTF-8: a NULL
     * string is out of memory. */
    json_t *s = json_stringn(buf->data ? buf->data : "", buf->len);
    return json_object_set_new(obj, key, s) == 0 ? RL_OK : RL_NOMEM;
}

/* The finished block: accumulated strings in place, tool input parsed
 * from its concatenated pieces (none at all: {}). */
static rl_err finish_block(ablock *b)
{
    rl_err err = RL_OK;
    if (b->has_text)
        err = set_text(b->block, "text", &b->text);
    if (err == RL_OK && b->has_thinking)
        err = set_text(b->block, "thinking", &b->thinking);
    if (err == RL_OK && b->has_signature)
        err = set_text(b->block, "signature", &b->signature);
    if (err == RL_OK && b->has_partial) {
        json_error_t jerr;
        json_t *input = NULL;
        if (!b->partial.len)
            err = (input = json_object()) ? RL_OK : RL_NOMEM;
        else if (!(input = prov_json_load(b->partial.data, b->partial.len, &jerr)))
            err = prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
        if (err == RL_OK && json_object_set_new(b->block, "input", input) != 0)
            err = RL_NOMEM;
    }
    return err;
}

static rl_err anthropic_stream_to_body(frame_kind framing, const char *stream, size_t len,
                                       rl_buf *out)
{
    assembly a;
    memset(&a, 0, sizeof a);
    rl_err err = frame_each(framing, stream, len, assemble_event, &a);
    if (a.err != RL_OK)
        err = a.err;
    if (err != RL_OK)
        goto out;
    if (!a.message || !a.stopped) {
        err = a.message ? RL_UPSTREAM_CUT : RL_UPSTREAM_PROTOCOL;
        goto out;
    }

    if (a.n)
        qsort(a.blocks, a.n, sizeof *a.blocks, by_index);
    json_t *content = json_array();
    if (!content || json_object_set_new(a.message, "content", content) != 0) {
        err = RL_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < a.n && err == RL_OK; i++)
        if ((err = finish_block(&a.blocks[i])) == RL_OK &&
            json_array_append(content, a.blocks[i].block) != 0)
            err = RL_NOMEM;
    if (err != RL_OK)
        goto out;
    /* stop_reason, stop_sequence (and anything newer) from message_delta,
     * with its other members; its usage updates message_start's
     * (output_tokens above all). */
    if ((a.delta && json_object_update(a.message, a.delta) != 0) ||
        (a.late && json_object_update(a.message, a.late) != 0)) {
        err = RL_NOMEM;
        goto out;
    }
    if (a.usage) {
        json_t *usage = json_object_get(a.message, "usage");
        if (json_is_object(usage))
            json_incref(usage);
        else
            usage = NULL;
        if ((err = merge_into(&usage, a.usage)) == RL_OK &&
            json_object_set(a.message, "usage", usage) != 0)
            err = RL_NOMEM;
        json_decref(usage);
        if (err != RL_OK)
            goto out;
    }
    err = prov_json_dump(a.message, DUMP_FLAGS, out);
out:
    assembly_release(&a);
    return err;
}

/* Appends "event: NAME\ndata: JSON\n\n" and drops the reference to ev. */
static rl_err put_event(rl_buf *out, const char *name, json_t *ev)
{
    rl_err err = RL_NOMEM;
    if (ev && (err = rl_buf_printf(out, "event: %s\ndata: ", name)) == RL_OK &&
        (err = prov_json_dump(ev, DUMP_FLAGS, out)) == RL_OK)
        err = rl_buf_puts(out, "\n\n");
    json_decref(ev);
    return err;
}

static rl_err put_delta(rl_buf *out, size_t index, const char *type, const char *key, json_t *value)
{
    return put_event(out, "content_block_delta",
                     json_pack("{s:s, s:I, s:{s:s, s:O}}", "type", "content_block_delta", "index",
                               (json_int_t)index, "delta", "type", type, key, value));
}

/* One content block as the API streams it: a start with the block
 * emptied, the deltas that fill it, a stop. Blocks without deltas
 * (redacted_thinking, server tool results) start complete. */
static rl_err put_block(rl_buf *out, size_t index, json_t *block)
{
    json_t *start = json_deep_copy(block);
    json_t *text = json_object_get(block, "text");
    json_t *thinking = json_object_get(block, "thinking");
    json_t *signature = json_object_get(block, "signature");
    json_t *citations = json_object_get(block, "citations");
    json_t *input = json_object_get(block, "input");
    int is_thinking = json_is_string(thinking);
    int failed = !start;
    if (json_is_string(text))
        failed |= json_object_set_new(start, "text", json_string(""));
    if (json_is_array(citations))
        failed |= json_object_set_new(start, "citations", json_array());
    if (is_thinking) {
        failed |= json_object_set_new(start, "thinking", json_string(""));
        json_object_del(start, "signature");
    }
    if (input)
        failed |= json_object_set_new(start, "input", json_object());
    if (!(start = prov_json_check(start, failed)))
        return RL_NOMEM;
    rl_err err = put_event(out, "content_block_start",
                           json_pack("{s:s, s:I, s:o}", "type", "content_block_start", "index",
                                     (json_int_t)index, "content_block", start));
    size_t i;
    json_t *c;
    json_array_foreach(json_is_array(citations) ? citations : NULL, i, c)
    {
        if (err == RL_OK)
            err = put_event(out, "content_block_delta",
                            json_pack("{s:s, s:I, s:{s:s, s:O}}", "type", "content_block_delta",
                                      "index", (json_int_t)index, "delta", "type",
                                      "citations_delta", "citation", c));
    }
    if (err == RL_OK && json_is_string(text))
        err = put_delta(out, index, "text_delta", "text", text);
    if (err == RL_OK && is_thinking) {
        err = put_delta(out, index, "thinking_delta", "thinking", thinking);
        if (err == RL_OK && json_is_string(signature))
            err = put_delta(out, index, "signature_delta", "signature", signature);
    }
    if (err == RL_OK && input) {
        rl_buf json;
        rl_buf_init(&json, 0);
        err = prov_json_dump(input, DUMP_FLAGS, &json);
        json_t *s = err == RL_OK ? json_stringn(json.data ? json.data : "", json.len) : NULL;
        rl_buf_release(&json);
        if (err == RL_OK)
            err = s ? put_delta(out, index, "input_json_delta", "partial_json", s) : RL_NOMEM;
        json_decref(s);
    }
    if (err == RL_OK)
        err = put_event(
            out, "content_block_stop",
            json_pack("{s:s, s:I}", "type", "content_block_stop", "index", (json_int_t)index));
    return err;
}

/* Members of a message that the API reports on message_delta, at the end
 * of a stream, instead of in message_start. */
static const char *const LATE_MEMBERS[] = {"context_management"};

static rl_err anthropic_body_to_stream(const char *body, size_t len, const prov_info *info,
                                       rl_buf *out)
{
    (void)info; /* Anthropic streams only as SSE */
    json_error_t jerr;
    json_t *msg = prov_json_load(body, len, &jerr);
    json_t *content = json_object_get(msg, "content");
    rl_err err = msg ? RL_UPSTREAM_PROTOCOL : prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!json_is_array(content) || !type || strcmp(type, "message") != 0)
        goto out;

    /* message_start: the message before its content, as the API sends it. */
    err = RL_NOMEM;
    json_t *usage = json_object_get(msg, "usage");
    json_t *start_usage = json_is_object(usage) ? json_deep_copy(usage) : json_object();
    int failed = !start_usage;
    if (!json_is_integer(json_object_get(start_usage, "output_tokens")))
        failed |= json_object_set_new(start_usage, "output_tokens", json_integer(1));
    json_t *start = prov_json_copy(msg);
    failed |= json_object_set_new(start, "content", json_array());
    failed |= json_object_set_new(start, "stop_reason", json_null());
    failed |= json_object_set_new(start, "stop_sequence", json_null());
    failed |= json_object_set_new(start, "usage", start_usage); /* taken, even by a NULL start */
    for (size_t m = 0; m < sizeof LATE_MEMBERS / sizeof *LATE_MEMBERS; m++)
        json_object_del(start, LATE_MEMBERS[m]);
    if (!(start = prov_json_check(start, failed)))
        goto out;
    if ((err = put_event(out, "message_start",
                         json_pack("{s:s, s:o}", "type", "message_start", "message", start))) !=
        RL_OK)
        goto out;

    size_t i;
    json_t *block;
    json_array_foreach(content, i, block)
    {
        if (!json_is_object(block)) {
            err = RL_UPSTREAM_PROTOCOL;
            goto out;
        }
        if ((err = put_block(out, i, block)) != RL_OK)
            goto out;
    }

    json_t *stop_reason = json_object_get(msg, "stop_reason");
    json_t *stop_sequence = json_object_get(msg, "stop_sequence");
    json_t *output = json_object_get(usage, "output_tokens");
    json_t *delta =
        json_pack("{s:s, s:{s:O, s:O}, s:{s:I}}", "type", "message_delta", "delta", "stop_reason",
                  stop_reason ? stop_reason : json_null(), "stop_sequence",
                  stop_sequence ? stop_sequence : json_null(), "usage", "output_tokens",
                  json_is_integer(output) ? json_integer_value(output) : (json_int_t)1);
    for (size_t m = 0; delta && m < sizeof LATE_MEMBERS / sizeof *LATE_MEMBERS; m++) {
        json_t *late = json_object_get(msg, LATE_MEMBERS[m]);
        if (late && json_object_set(delta, LATE_MEMBERS[m], late) != 0) {
            json_decref(delta);
            delta = NULL;
        }
    }
    if ((err = put_event(out, "message_delta", delta)) == RL_OK)
        err = put_event(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
out:
    json_decref(msg);
    return err;
}

/* ---- usage ------------------------------------------------------------- */

/* Anthropic counts cache reads and cache writes apart from input_tokens;
 * prov_usage's input counts every input token (as OpenAI's and Gemini's
 * do), so they are added in. */
static void usage_from(json_t *usage, prov_usage *out)
{
    int64_t v, reads = prov_json_int(usage, "cache_read_input_tokens"),
               writes = prov_json_int(usage, "cache_creation_input_tokens");
    if ((v = prov_json_int(usage, "input_tokens")) >= 0)
        out->input = v + (reads > 0 ? reads : 0) + (writes > 0 ? writes : 0);
    if ((v = prov_json_int(usage, "output_tokens")) >= 0)
        out->output = v;
    if (reads >= 0)
        out->cached_input = reads;
    if (writes >= 0)
        out->cache_write = writes;
}

/* message_start carries the input side, message_delta the final output
 * (and, in newer streams, the input side again). */
static int usage_event(void *ctx, const char *event, const char *data, size_t len)
{
    (void)event;
    /* Runs on every event of every stream and cache hit: only
     * message_start and message_delta carry usage, so skip the parse of the
     * content deltas. */
    prov_usage *u = ctx;
    if (u->lost || !memmem(data, len, "\"usage\"", 7))
        return 0;
    json_error_t jerr;
    json_t *ev = prov_json_load(data, len, &jerr);
    if (!ev)
        return prov_usage_failed(u, &jerr) != RL_OK;
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type && strcmp(type, "message_start") == 0)
        usage_from(json_object_get(json_object_get(ev, "message"), "usage"), u);
    else if (type && strcmp(type, "message_delta") == 0)
        usage_from(json_object_get(ev, "usage"), u);
    json_decref(ev);
    return 0;
}

static rl_err anthropic_usage(entry_kind kind, frame_kind framing, const char *data, size_t len,
                              prov_usage *out)
{
    *out = PROV_USAGE_UNKNOWN;
    if (kind == ENTRY_STREAM) {
        rl_err err = frame_each(framing, data, len, usage_event, out);
        return out->lost ? RL_NOMEM : err;
    }
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    if (!json_is_object(j)) {
        json_decref(j);
        return j ? RL_UPSTREAM_PROTOCOL : prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    }
    usage_from(json_object_get(j, "usage"), out); /* a token count has none */
    json_decref(j);
    return RL_OK;
}

/* ---- errors ------------------------------------------------------------ */

/* Anthropic's error type for the status a client will see. */
static const char *error_type(rl_err err)
{
    int status = rl_err_status(err);
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
    case 529:
        return "overloaded_error";
    default:
        /* Anthropic uses invalid_request_error for other 4xx codes. */
        return status >= 400 && status < 500 && status != 499 ? "invalid_request_error"
                                                              : "api_error";
    }
}

static json_t *error_document(rl_err err, const char *message)
{
    return json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", error_type(err),
                     "message", message && message[0] ? message : rl_err_text(err));
}

static rl_err anthropic_error_body(rl_buf *out, rl_err err, const char *message)
{
    return prov_json_put(out, "", error_document(err, message), DUMP_FLAGS, "");
}

static rl_err anthropic_error_event(rl_buf *out, frame_kind framing, int opened, rl_err err,
                                    const char *message)
{
    (void)opened;  /* its streams need no opening */
    (void)framing; /* Anthropic streams only as SSE */
    return put_event(out, "error", error_document(err, message));
}

/* What anthropic_inspect reads for key_parts. */
static const char *const inspect_headers[] = {"anthropic-version", "anthropic-beta", NULL};

const prov_ops prov_anthropic = {
    .format = "anthropic",
    .credential = anthropic_credential,
    .missing_credential = "x-api-key header is required",
    .inspect = anthropic_inspect,
    .inspect_headers = inspect_headers,
    .classify_event = anthropic_classify_event,
    .body_complete = anthropic_body_complete,
    .stream_to_body = anthropic_stream_to_body,
    .body_to_stream = anthropic_body_to_stream,
    .usage = anthropic_usage,
    .usage_event = usage_event,
    .error_body = anthropic_error_body,
    .error_event = anthropic_error_event,
};
