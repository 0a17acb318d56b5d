/*
 * xlate_gemini.c — the Gemini dialect of the translation model (xlate.h):
 * generateContent and streamGenerateContent?alt=sse (v1beta). This file
 * holds the answers, errors and streams, the xl_gemini table, and what the
 * request side shares with them (xlate_gemini_int.h): the parts writer
 * model -> Gemini and the small JSON helpers. Requests: decoded in
 * xlate_gemini_request.c (whose header tells the mapping of requests and
 * parts), encoded in xlate_gemini_request_encode.c.
 *
 * Answers (decode_response / encode_response, and streams): candidates[0]
 *   parts as in xlate_gemini_request.c's header, finishReason through
 *   finish_reasons[] (STOP with a functionCall part is XL_STOP_TOOL),
 *   usageMetadata: input =
 *   promptTokenCount, output = candidatesTokenCount + thoughtsTokenCount
 *   (Gemini's candidates count excludes thoughts), cached =
 *   cachedContentTokenCount, reasoning = thoughtsTokenCount. A stream is
 *   one whole GenerateContentResponse per event with no terminator: the
 *   decoder ends (XL_EV_END at dec_finish) only when a finishReason came.
 *   The encoder writes text and thoughts as they come and a functionCall
 *   whole once its call ends (Gemini never streams arguments in pieces),
 *   and a last chunk with finishReason and usageMetadata.
 * Errors: {"error":{"code","message","status"}}.
 *
 * Threads: pure (xlate.h). The stream encoder's state holds heap buffers
 * for a call's pending arguments; they are freed when the call is written,
 * at XL_EV_END and XL_EV_ERROR (see enc_release).
 */
#include "engine/xlate.h"

#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "engine/prov_json.h"
#include "engine/xlate_gemini_int.h"

/* ---- small helpers -------------------------------------------------------- */

/* j's compact text, copied into pool; NULL when out of memory. */
const char *gem_pool_dump(rl_pool *pool, json_t *j)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    const char *s = NULL;
    if (prov_json_dump(j, DUMP_FLAGS, &b) == RL_OK)
        s = rl_pstrndup(pool, b.data ? b.data : "", b.len);
    rl_buf_release(&b);
    return s;
}

/* A JSON string's value copied into pool (NULL when out of memory). */
const char *gem_pool_str(rl_pool *pool, json_t *s)
{
    return rl_pstrndup(pool, json_string_value(s), json_string_length(s));
}

/* ---- parts: model -> Gemini (requests and answers) ------------------------- */

/* Image types Gemini needs for a fileData whose media type is unknown,
 * from the URL's extension. */
static const struct {
    const char *ext, *type;
} image_exts[] = {
    {".png", "image/png"}, {".jpg", "image/jpeg"},  {".jpeg", "image/jpeg"},
    {".gif", "image/gif"}, {".webp", "image/webp"}, {".heic", "image/heic"},
};

static const char *guess_image_type(const char *url)
{
    size_t n = strcspn(url, "?#");
    for (size_t i = 0; i < sizeof image_exts / sizeof image_exts[0]; i++) {
        size_t e = strlen(image_exts[i].ext);
        if (n >= e && strncasecmp(url + n - e, image_exts[i].ext, e) == 0)
            return image_exts[i].type;
    }
    return NULL;
}

/* A JSON object text -> new reference (NULL text or "": {}); *err
 * RL_BAD_REQUEST when it is not an object, RL_NOMEM. */
json_t *gem_object_of(const char *text, rl_err *err)
{
    if (!text || !text[0])
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

/* functionResponse.response for a result's text (see
 * xlate_gemini_request.c's header). */
static json_t *result_response(const xl_part *p, rl_err *err)
{
    const char *text = p->text ? p->text : "";
    rl_err e = RL_OK;
    json_t *obj = text[0] ? gem_object_of(text, &e) : NULL; /* "" would be {} */
    if (!obj && e == RL_NOMEM) {
        *err = RL_NOMEM;
        return NULL;
    }
    json_t *r;
    if (p->is_error)
        r = json_pack("{s:o}", "error", obj ? obj : json_string(text));
    else
        r = obj ? obj : json_pack("{s:s}", "result", text);
    if (!r)
        *err = RL_NOMEM;
    return r;
}

/* One part as Gemini's, or NULL: *err says why (RL_OK: a part Gemini has
 * no place for, left out). sig: a thoughtSignature to carry. */
static json_t *gemini_part(const xl_part *p, const char *sig, rl_err *err)
{
    json_t *j = NULL;
    rl_err e = RL_OK;
    int failed = 0;
    switch (p->kind) {
    case XL_PART_TEXT:
        j = json_pack("{s:s}", "text", p->text ? p->text : "");
        break;
    case XL_PART_THINKING:
        if (p->redacted) /* opaque to everyone but Anthropic */
            return NULL;
        j = json_pack("{s:s,s:b}", "text", p->text ? p->text : "", "thought", 1);
        break;
    case XL_PART_IMAGE:
        if (p->data)
            j = json_pack("{s:{s:s,s:s}}", "inlineData", "mimeType",
                          p->media_type ? p->media_type : "image/png", "data", p->data);
        else {
            const char *type = p->media_type ? p->media_type : guess_image_type(p->url);
            j = type ? json_pack("{s:{s:s,s:s}}", "fileData", "mimeType", type, "fileUri", p->url)
                     : json_pack("{s:{s:s}}", "fileData", "fileUri", p->url);
        }
        break;
    case XL_PART_TOOL_CALL: {
        json_t *args = gem_object_of(p->arguments, &e);
        if (!args) {
            *err = e;
            return NULL;
        }
        j = json_pack("{s:{s:s,s:s,s:o}}", "functionCall", "id", p->id ? p->id : "", "name",
                      p->name ? p->name : "", "args", args);
        if (j && !p->id)
            json_object_del(json_object_get(j, "functionCall"), "id");
        break;
    }
    case XL_PART_TOOL_RESULT: {
        json_t *r = result_response(p, &e);
        if (!r) {
            *err = e;
            return NULL;
        }
        j = json_pack("{s:{s:s,s:s,s:o}}", "functionResponse", "id", p->id ? p->id : "", "name",
                      p->name ? p->name : "", "response", r);
        if (j && !p->id)
            json_object_del(json_object_get(j, "functionResponse"), "id");
        break;
    }
    }
    const char *signature = p->kind == XL_PART_THINKING ? p->signature : sig;
    if (j && signature)
        failed |= json_object_set_new(j, "thoughtSignature", json_string(signature));
    if (!(j = prov_json_check(j, failed)))
        *err = RL_NOMEM;
    return j;
}

/* An empty THINKING part that only carries a signature: Gemini puts the
 * signature on the part that follows. */
static int bare_signature(const xl_part *p)
{
    return p->kind == XL_PART_THINKING && !p->redacted && p->signature && (!p->text || !p->text[0]);
}

/* Appends parts to the array `to`; RL_BAD_REQUEST (a call's arguments
 * that are not an object), RL_NOMEM. */
rl_err gem_put_parts(json_t *to, const xl_part *parts, size_t n)
{
    const char *sig = NULL;
    for (size_t i = 0; i < n; i++) {
        if (bare_signature(&parts[i]) && i + 1 < n) {
            sig = parts[i].signature;
            continue;
        }
        rl_err err = RL_OK;
        json_t *j = gemini_part(&parts[i], sig, &err);
        sig = NULL;
        if (!j && err != RL_OK)
            return err;
        if (j && json_array_append_new(to, j) != 0)
            return RL_NOMEM;
    }
    return RL_OK;
}

/* ---- answers: Gemini -> model ---------------------------------------------------- */

/* finishReason -> stop; STOP with a functionCall is XL_STOP_TOOL (Gemini
 * has no reason of its own for it). Unknown reasons are OTHER. */
static const struct {
    const char *reason;
    xl_stop stop;
} finish_reasons[] = {
    {"STOP", XL_STOP_END},
    {"MAX_TOKENS", XL_STOP_LENGTH},
    {"SAFETY", XL_STOP_FILTER},
    {"RECITATION", XL_STOP_FILTER},
    {"BLOCKLIST", XL_STOP_FILTER},
    {"PROHIBITED_CONTENT", XL_STOP_FILTER},
    {"SPII", XL_STOP_FILTER},
    {"IMAGE_SAFETY", XL_STOP_FILTER},
    {"LANGUAGE", XL_STOP_OTHER},
    {"MALFORMED_FUNCTION_CALL", XL_STOP_OTHER},
    {"UNEXPECTED_TOOL_CALL", XL_STOP_OTHER},
    {"OTHER", XL_STOP_OTHER},
    {"FINISH_REASON_UNSPECIFIED", XL_STOP_OTHER},
};

static xl_stop stop_of(const char *reason, int called)
{
    for (size_t i = 0; i < sizeof finish_reasons / sizeof finish_reasons[0]; i++)
        if (strcmp(finish_reasons[i].reason, reason) == 0)
            return finish_reasons[i].stop == XL_STOP_END && called ? XL_STOP_TOOL
                                                                   : finish_reasons[i].stop;
    return XL_STOP_OTHER;
}

/* And back: Gemini says STOP for every natural end. */
static const char *const finish_names[] = {
    [XL_STOP_UNSET] = "STOP",  [XL_STOP_END] = "STOP",      [XL_STOP_LENGTH] = "MAX_TOKENS",
    [XL_STOP_TOOL] = "STOP",   [XL_STOP_SEQUENCE] = "STOP", [XL_STOP_FILTER] = "SAFETY",
    [XL_STOP_OTHER] = "OTHER",
};

/* usageMetadata -> counts. Absent counts in a present usageMetadata are
 * zero (proto3 JSON leaves zeros out). */
static void read_usage(json_t *m, prov_usage *u, int64_t *reasoning)
{
    *u = PROV_USAGE_UNKNOWN;
    *reasoning = -1;
    if (!json_is_object(m))
        return;
    int64_t prompt = prov_json_int(m, "promptTokenCount");
    int64_t answer = prov_json_int(m, "candidatesTokenCount");
    int64_t thoughts = prov_json_int(m, "thoughtsTokenCount");
    int64_t cached = prov_json_int(m, "cachedContentTokenCount");
    u->input = prompt < 0 ? 0 : prompt;
    *reasoning = thoughts < 0 ? 0 : thoughts;
    u->output = (answer < 0 ? 0 : answer) + *reasoning;
    u->cached_input = cached < 0 ? 0 : cached;
    u->cache_write = 0;
}

/* The parts of a candidate's content in the model, in pool; *calls counts
 * the function calls of the answer so far (their ids when Gemini gave
 * none). Parts the model has no place for in an answer (executableCode,
 * inlineData: Relay never asks for them) are left out. */
static rl_err read_parts(rl_pool *pool, json_t *parts, int *calls, xl_part **out, size_t *n)
{
    size_t max = 2 * json_array_size(parts), k = 0, i;
    json_t *p;
    *out = rl_palloc(pool, (max ? max : 1) * sizeof **out);
    if (!*out)
        return RL_NOMEM;
    json_array_foreach(parts, i, p)
    {
        json_t *text = json_object_get(p, "text"), *sig = json_object_get(p, "thoughtSignature");
        json_t *call = json_object_get(p, "functionCall");
        const char *signature = json_is_string(sig) ? gem_pool_str(pool, sig) : NULL;
        if (json_is_string(sig) && !signature)
            return RL_NOMEM;
        xl_part *x = &(*out)[k];
        if (json_is_string(text) && json_is_true(json_object_get(p, "thought"))) {
            *x = (xl_part){
                .kind = XL_PART_THINKING, .text = gem_pool_str(pool, text), .signature = signature};
            if (!x->text)
                return RL_NOMEM;
            k++;
            continue;
        }
        if (!json_is_string(text) && !json_is_object(call))
            continue;
        if (signature)
            (*out)[k++] = (xl_part){.kind = XL_PART_THINKING, .text = "", .signature = signature};
        x = &(*out)[k++];
        if (json_is_string(text)) {
            *x = (xl_part){.kind = XL_PART_TEXT, .text = gem_pool_str(pool, text)};
            if (!x->text)
                return RL_NOMEM;
            continue;
        }
        json_t *id = json_object_get(call, "id"), *name = json_object_get(call, "name");
        json_t *args = json_object_get(call, "args");
        *x = (xl_part){.kind = XL_PART_TOOL_CALL,
                       .id = json_is_string(id) ? gem_pool_str(pool, id)
                                                : xlate_tool_id(pool, *calls),
                       .name = json_is_string(name) ? gem_pool_str(pool, name) : "",
                       .arguments = json_is_object(args) ? gem_pool_dump(pool, args) : "{}"};
        (*calls)++;
        if (!x->id || !x->name || !x->arguments)
            return RL_NOMEM;
    }
    *n = k;
    return RL_OK;
}

static int has_call(const xl_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (parts[i].kind == XL_PART_TOOL_CALL)
            return 1;
    return 0;
}

/* A blocked prompt: no candidates, promptFeedback.blockReason. */
static int blocked(json_t *j)
{
    json_t *r = json_object_get(json_object_get(j, "promptFeedback"), "blockReason");
    return json_is_string(r) && json_string_length(r) > 0;
}

static rl_err gemini_decode_response(const char *body, size_t len, rl_pool *pool, xl_response *out)
{
    json_error_t jerr;
    memset(out, 0, sizeof *out);
    json_t *j = prov_json_load(body, len, &jerr);
    if (!j)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    json_t *cands = json_object_get(j, "candidates");
    if (!json_is_object(j) || (!json_is_array(cands) && !blocked(j)))
        goto out;
    json_t *c = json_array_get(cands, 0);
    json_t *id = json_object_get(j, "responseId"), *model = json_object_get(j, "modelVersion");
    json_t *finish = json_object_get(c, "finishReason");
    int calls = 0;
    err = RL_NOMEM;
    if ((json_is_string(id) && !(out->id = gem_pool_str(pool, id))) ||
        (json_is_string(model) && !(out->model = gem_pool_str(pool, model))))
        goto out;
    if ((err = read_parts(pool, json_object_get(json_object_get(c, "content"), "parts"), &calls,
                          &out->parts, &out->nparts)) != RL_OK)
        goto out;
    out->stop = json_is_string(finish) ? stop_of(json_string_value(finish), calls > 0)
                : blocked(j)           ? XL_STOP_FILTER
                                       : XL_STOP_UNSET;
    read_usage(json_object_get(j, "usageMetadata"), &out->usage, &out->reasoning_tokens);
out:
    json_decref(j);
    return err;
}

/* ---- answers: model -> Gemini ----------------------------------------------------- */

/* usageMetadata for counts: an empty object when none is known (the
 * caller leaves it out), NULL only when out of memory. */
static json_t *usage_json(const prov_usage *u, int64_t reasoning)
{
    json_t *m = json_object();
    int failed = !m;
    if (!m)
        return NULL;
    int64_t thoughts = reasoning > 0 ? reasoning : 0;
    if (u->input >= 0)
        failed |= json_object_set_new(m, "promptTokenCount", json_integer(u->input));
    if (u->output >= 0)
        failed |=
            json_object_set_new(m, "candidatesTokenCount",
                                json_integer(u->output > thoughts ? u->output - thoughts : 0));
    if (u->input >= 0 && u->output >= 0)
        failed |= json_object_set_new(m, "totalTokenCount", json_integer(u->input + u->output));
    if (u->cached_input > 0)
        failed |= json_object_set_new(m, "cachedContentTokenCount", json_integer(u->cached_input));
    if (thoughts > 0)
        failed |= json_object_set_new(m, "thoughtsTokenCount", json_integer(thoughts));
    return prov_json_check(m, failed);
}

/* A GenerateContentResponse: one candidate with parts (taken), the
 * finishReason when finish, usage when given, and the stamps. */
static json_t *response_json(json_t *parts, const char *finish, json_t *usage, const char *model,
                             const char *id)
{
    int failed = !parts;
    if (parts && json_array_size(parts) == 0) /* an SDK counts a content without parts invalid */
        failed |= json_array_append_new(parts, json_pack("{s:s}", "text", ""));
    json_t *c = json_pack("{s:{s:o,s:s}}", "content", "parts", parts ? parts : json_null(), "role",
                          "model");
    failed |= !c;
    if (c && finish)
        failed |= json_object_set_new(c, "finishReason", json_string(finish));
    if (c)
        failed |= json_object_set_new(c, "index", json_integer(0));
    json_t *r = json_pack("{s:[o]}", "candidates", c ? c : json_null());
    failed |= !r;
    if (r && usage && json_object_size(usage))
        failed |= json_object_set(r, "usageMetadata", usage);
    if (r) {
        failed |= json_object_set_new(r, "modelVersion", json_string(model ? model : ""));
        failed |= json_object_set_new(r, "responseId", json_string(id ? id : ""));
    }
    return prov_json_check(r, failed);
}

static rl_err gemini_encode_response(const xl_response *resp, const xl_reply *reply, rl_buf *out)
{
    json_t *parts = json_array();
    if (!parts)
        return RL_NOMEM;
    rl_err err = gem_put_parts(parts, resp->parts, resp->nparts);
    if (err != RL_OK) {
        json_decref(parts);
        return err == RL_NOMEM ? RL_NOMEM : RL_UPSTREAM_PROTOCOL;
    }
    json_t *usage = usage_json(&resp->usage, resp->reasoning_tokens);
    if (!usage) {
        json_decref(parts);
        return RL_NOMEM;
    }
    xl_stop stop = resp->stop == XL_STOP_UNSET && has_call(resp->parts, resp->nparts) ? XL_STOP_TOOL
                                                                                      : resp->stop;
    json_t *r = response_json(parts, finish_names[stop], usage, reply->model,
                              resp->id ? resp->id : reply->id);
    json_decref(usage);
    return prov_json_put(out, "", r, DUMP_FLAGS, "");
}

static rl_err gemini_decode_error(const char *body, size_t len, rl_pool *pool, xl_error *out)
{
    json_error_t jerr;
    memset(out, 0, sizeof *out);
    json_t *j = prov_json_load(body, len, &jerr);
    if (!j)
        return prov_json_failed(&jerr, RL_OK);
    /* A stream without alt=sse fails as an array holding the error. */
    json_t *e = json_object_get(json_is_array(j) ? json_array_get(j, 0) : j, "error");
    json_t *msg = json_object_get(e, "message"), *status = json_object_get(e, "status");
    rl_err err = RL_OK;
    if ((json_is_string(msg) && !(out->message = gem_pool_str(pool, msg))) ||
        (json_is_string(status) && !(out->type = gem_pool_str(pool, status))))
        err = RL_NOMEM;
    json_decref(j);
    return err;
}

/* ---- streams: Gemini -> model events ------------------------------------------------ */

typedef struct gem_dec {
    int started;  /* XL_EV_START emitted */
    int finished; /* a finishReason (or a blocked prompt) came: the stream is whole */
    int calls;    /* function calls so far (their index, and ids when Gemini gave none) */
    prov_usage usage;
    int64_t reasoning;
    int have_usage;
} gem_dec;

static rl_err emit_ev(xl_emit_fn emit, void *ctx, xl_event ev)
{
    return emit(ctx, &ev) ? RL_STOPPED : RL_OK;
}

/* One chunk's parts as events: text and thoughts as they come, a call
 * whole (TOOL_CALL then its arguments in one TOOL_ARGS). Empty text
 * (Gemini's last chunk often holds {"text": ""}) says nothing. */
static rl_err emit_parts(gem_dec *s, rl_pool *pool, json_t *parts, xl_emit_fn emit, void *ctx)
{
    xl_part *p;
    size_t n;
    int first = s->calls;
    rl_err err = read_parts(pool, parts, &s->calls, &p, &n);
    for (size_t i = 0; err == RL_OK && i < n; i++) {
        if (p[i].kind == XL_PART_TEXT && p[i].text[0])
            err = emit_ev(emit, ctx, (xl_event){.kind = XL_EV_TEXT, .text = p[i].text});
        else if (p[i].kind == XL_PART_THINKING)
            err = emit_ev(
                emit, ctx,
                (xl_event){.kind = XL_EV_THINKING, .text = p[i].text, .signature = p[i].signature});
        else if (p[i].kind == XL_PART_TOOL_CALL) {
            int index = first++;
            err = emit_ev(
                emit, ctx,
                (xl_event){
                    .kind = XL_EV_TOOL_CALL, .index = index, .id = p[i].id, .name = p[i].name});
            if (err == RL_OK)
                err = emit_ev(
                    emit, ctx,
                    (xl_event){.kind = XL_EV_TOOL_ARGS, .index = index, .text = p[i].arguments});
        }
    }
    return err;
}

static rl_err gemini_dec_event(void *state, rl_pool *pool, const char *event, const char *data,
                               size_t len, xl_emit_fn emit, void *ctx)
{
    gem_dec *s = state;
    (void)event;
    json_error_t jerr;
    json_t *j = prov_json_load(data, len, &jerr);
    if (!j)
        return prov_json_failed(&jerr, RL_UPSTREAM_PROTOCOL);
    rl_err err = RL_UPSTREAM_PROTOCOL;
    if (!json_is_object(j))
        goto out;
    json_t *e = json_object_get(j, "error");
    if (e) {
        json_t *msg = json_object_get(e, "message"), *status = json_object_get(e, "status");
        err = emit_ev(emit, ctx,
                      (xl_event){.kind = XL_EV_ERROR,
                                 .text = json_is_string(msg) ? json_string_value(msg)
                                                             : "The upstream reported an error.",
                                 .type = json_string_value(status)});
        goto out;
    }
    err = RL_OK;
    if (!s->started) {
        s->started = 1;
        err = emit_ev(emit, ctx,
                      (xl_event){.kind = XL_EV_START,
                                 .id = json_string_value(json_object_get(j, "responseId")),
                                 .model = json_string_value(json_object_get(j, "modelVersion"))});
    }
    json_t *c = json_array_get(json_object_get(j, "candidates"), 0);
    if (err == RL_OK)
        err =
            emit_parts(s, pool, json_object_get(json_object_get(c, "content"), "parts"), emit, ctx);
    json_t *usage = json_object_get(j, "usageMetadata");
    if (json_is_object(usage)) {
        read_usage(usage, &s->usage, &s->reasoning);
        s->have_usage = 1;
    }
    json_t *finish = json_object_get(c, "finishReason");
    int ends = (json_is_string(finish) && json_string_length(finish) > 0) || (!c && blocked(j));
    if (err == RL_OK && ends && !s->finished) {
        s->finished = 1;
        xl_stop stop = c ? stop_of(json_string_value(finish), s->calls > 0) : XL_STOP_FILTER;
        err = emit_ev(emit, ctx, (xl_event){.kind = XL_EV_STOP, .stop = stop});
    }
    /* The usage is told with the end (and again if a later chunk corrects it). */
    if (err == RL_OK && s->finished && s->have_usage && (ends || json_is_object(usage)))
        err = emit_ev(
            emit, ctx,
            (xl_event){.kind = XL_EV_USAGE, .usage = s->usage, .reasoning_tokens = s->reasoning});
out:
    json_decref(j);
    return err;
}

static rl_err gemini_dec_finish(void *state, rl_pool *pool, xl_emit_fn emit, void *ctx)
{
    gem_dec *s = state;
    (void)pool;
    return s->finished ? emit_ev(emit, ctx, (xl_event){.kind = XL_EV_END}) : RL_OK;
}

/* ---- streams: model events -> Gemini ---------------------------------------------------- */

typedef struct gem_enc {
    int opened; /* a chunk was written (JSON array: its '[') */
    int ended;  /* END or ERROR written: nothing may follow */
    int calls;  /* calls written or pending */
    xl_stop stop;
    prov_usage usage;
    int64_t reasoning;
    int have_usage;
    int pending; /* a call being gathered: Gemini writes a functionCall whole */
    int pending_index;
    rl_buf call_id, call_name, args;
    rl_buf id; /* the upstream's answer id (START) */
} gem_enc;

/* Frees what the state holds (after END or ERROR, or a failure). */
static void enc_release(gem_enc *s)
{
    rl_buf_release(&s->call_id);
    rl_buf_release(&s->call_name);
    rl_buf_release(&s->args);
    rl_buf_release(&s->id);
}

/* Writes one chunk (taken) in the client's framing: SSE "data: {...}\r\n\r\n"
 * as Google writes it, a JSON array's next element, or an NDJSON line. */
static rl_err put_chunk(gem_enc *s, const xl_reply *reply, json_t *chunk, rl_buf *out)
{
    const char *before = "data: ", *after = "\r\n\r\n";
    if (reply->framing == FRAME_JSON_ARRAY) {
        before = s->opened ? "\n,\r\n" : "[";
        after = "";
    } else if (reply->framing == FRAME_NDJSON) {
        before = "";
        after = "\n";
    }
    s->opened = 1;
    return prov_json_put(out, before, chunk, DUMP_FLAGS, after);
}

/* A chunk holding parts (taken), finish and usage when given. */
static rl_err put_parts_chunk(gem_enc *s, const xl_reply *reply, json_t *parts, const char *finish,
                              json_t *usage, rl_buf *out)
{
    const char *id = s->id.len ? s->id.data : reply->id;
    return put_chunk(s, reply, response_json(parts, finish, usage, reply->model, id), out);
}

/* The pending call's functionCall part (new reference), or NULL: *err. */
static json_t *pending_call(gem_enc *s, rl_err *err)
{
    s->pending = 0;
    if (rl_buf_error(&s->args) != RL_OK || rl_buf_error(&s->call_id) != RL_OK ||
        rl_buf_error(&s->call_name) != RL_OK) {
        *err = RL_NOMEM;
        return NULL;
    }
    json_t *args = gem_object_of(s->args.len ? s->args.data : "", err);
    if (!args) {
        if (*err == RL_BAD_REQUEST) /* the upstream's arguments were not an object */
            *err = RL_UPSTREAM_PROTOCOL;
        return NULL;
    }
    json_t *p =
        json_pack("{s:{s:s,s:s,s:o}}", "functionCall", "id", s->call_id.data ? s->call_id.data : "",
                  "name", s->call_name.data ? s->call_name.data : "", "args", args);
    rl_buf_reset(&s->call_id);
    rl_buf_reset(&s->call_name);
    rl_buf_reset(&s->args);
    if (!p)
        *err = RL_NOMEM;
    return p;
}

/* A call is over once anything else comes: written as its own chunk. */
static rl_err flush_call(gem_enc *s, const xl_reply *reply, rl_buf *out)
{
    if (!s->pending)
        return RL_OK;
    rl_err err = RL_OK;
    json_t *p = pending_call(s, &err);
    if (!p)
        return err;
    return put_parts_chunk(s, reply, json_pack("[o]", p), NULL, NULL, out);
}

typedef rl_err (*enc_fn)(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out);

static rl_err enc_start(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply, (void)out;
    return ev->id && !s->id.len ? rl_buf_puts(&s->id, ev->id) : RL_OK;
}

static rl_err enc_text(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    rl_err err = flush_call(s, reply, out);
    if (err != RL_OK || !ev->text || !ev->text[0])
        return err;
    return put_parts_chunk(s, reply, json_pack("[{s:s}]", "text", ev->text), NULL, NULL, out);
}

static rl_err enc_thinking(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    rl_err err = flush_call(s, reply, out);
    if (err != RL_OK || ((!ev->text || !ev->text[0]) && !ev->signature))
        return err;
    xl_part p = {.kind = XL_PART_THINKING, .text = ev->text, .signature = ev->signature};
    json_t *part = gemini_part(&p, NULL, &err);
    if (!part)
        return RL_NOMEM;
    return put_parts_chunk(s, reply, json_pack("[o]", part), NULL, NULL, out);
}

static rl_err enc_tool_call(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    rl_err err = flush_call(s, reply, out);
    if (err != RL_OK)
        return err;
    s->pending = 1;
    s->pending_index = ev->index;
    s->calls++;
    if (ev->id)
        rl_buf_puts(&s->call_id, ev->id);
    else /* as xlate_tool_id names it */
        rl_buf_printf(&s->call_id, "call_%d", ev->index);
    rl_buf_puts(&s->call_name, ev->name ? ev->name : "");
    return rl_buf_error(&s->call_name);
}

static rl_err enc_tool_args(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply, (void)out;
    if (!s->pending || ev->index != s->pending_index)
        return RL_UPSTREAM_PROTOCOL; /* arguments of a call not told of, or already written */
    return rl_buf_puts(&s->args, ev->text ? ev->text : "");
}

static rl_err enc_stop(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply, (void)out;
    s->stop = ev->stop;
    return RL_OK;
}

static rl_err enc_usage(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)reply, (void)out;
    s->usage = ev->usage;
    s->reasoning = ev->reasoning_tokens;
    s->have_usage = 1;
    return RL_OK;
}

/* The last chunk: a pending call (else an empty text part), finishReason
 * and usageMetadata; a JSON array's closing bracket. */
static rl_err enc_end(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    (void)ev;
    rl_err err = RL_OK;
    json_t *parts = json_array();
    if (!parts)
        return RL_NOMEM;
    if (s->pending) {
        json_t *p = pending_call(s, &err);
        if (!p || json_array_append_new(parts, p) != 0) {
            json_decref(parts);
            return err != RL_OK ? err : RL_NOMEM;
        }
    }
    xl_stop stop = s->stop == XL_STOP_UNSET && s->calls ? XL_STOP_TOOL : s->stop;
    json_t *usage = s->have_usage ? usage_json(&s->usage, s->reasoning) : NULL;
    if (s->have_usage && !usage) { /* never a last chunk without the usage it was told */
        json_decref(parts);
        return RL_NOMEM;
    }
    err = put_parts_chunk(s, reply, parts, finish_names[stop], usage, out);
    json_decref(usage);
    if (err == RL_OK && reply->framing == FRAME_JSON_ARRAY)
        err = rl_buf_puts(out, "\n]");
    return err;
}

/* An error's type (any dialect's, or Gemini's status) -> Gemini's code
 * and status, so @google/genai raises an ApiError with that code. */
static const struct {
    const char *type;
    int code;
    const char *status;
} error_types[] = {
    {"INVALID_ARGUMENT", 400, "INVALID_ARGUMENT"},
    {"invalid_request_error", 400, "INVALID_ARGUMENT"},
    {"UNAUTHENTICATED", 401, "UNAUTHENTICATED"},
    {"authentication_error", 401, "UNAUTHENTICATED"},
    {"PERMISSION_DENIED", 403, "PERMISSION_DENIED"},
    {"permission_error", 403, "PERMISSION_DENIED"},
    {"NOT_FOUND", 404, "NOT_FOUND"},
    {"not_found_error", 404, "NOT_FOUND"},
    {"RESOURCE_EXHAUSTED", 429, "RESOURCE_EXHAUSTED"},
    {"rate_limit_error", 429, "RESOURCE_EXHAUSTED"},
    {"UNAVAILABLE", 503, "UNAVAILABLE"},
    {"overloaded_error", 503, "UNAVAILABLE"},
    {"DEADLINE_EXCEEDED", 504, "DEADLINE_EXCEEDED"},
    {"timeout_error", 504, "DEADLINE_EXCEEDED"},
};

static rl_err enc_error(gem_enc *s, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    int code = 500;
    const char *status = "INTERNAL";
    for (size_t i = 0; ev->type && i < sizeof error_types / sizeof error_types[0]; i++)
        if (strcmp(error_types[i].type, ev->type) == 0) {
            code = error_types[i].code;
            status = error_types[i].status;
        }
    json_t *e =
        json_pack("{s:{s:i,s:s,s:s}}", "error", "code", code, "message",
                  ev->text ? ev->text : "The upstream reported an error.", "status", status);
    rl_err err = put_chunk(s, reply, e, out);
    if (err == RL_OK && reply->framing == FRAME_JSON_ARRAY)
        err = rl_buf_puts(out, "\n]");
    return err;
}

static const enc_fn enc_handlers[] = {
    [XL_EV_START] = enc_start,         [XL_EV_TEXT] = enc_text,
    [XL_EV_THINKING] = enc_thinking,   [XL_EV_TOOL_CALL] = enc_tool_call,
    [XL_EV_TOOL_ARGS] = enc_tool_args, [XL_EV_STOP] = enc_stop,
    [XL_EV_USAGE] = enc_usage,         [XL_EV_END] = enc_end,
    [XL_EV_ERROR] = enc_error,
};

/* xl_dialect.enc_release: a stream given up before its END (the client
 * left, the upstream was cut) still frees a call being gathered. */
static void gemini_enc_release(void *state)
{
    enc_release(state);
}

static rl_err gemini_enc_event(void *state, const xl_reply *reply, const xl_event *ev, rl_buf *out)
{
    gem_enc *s = state;
    if (s->ended || (unsigned)ev->kind >= sizeof enc_handlers / sizeof enc_handlers[0])
        return RL_UPSTREAM_PROTOCOL;
    rl_err err = enc_handlers[ev->kind](s, reply, ev, out);
    if (err != RL_OK || ev->kind == XL_EV_END || ev->kind == XL_EV_ERROR) {
        s->ended = 1;
        enc_release(s);
    }
    return err;
}

const xl_dialect xl_gemini = {
    .id = XL_GEMINI,
    .name = "Gemini generateContent",
    /* Not XL_F_CHOICES: the model holds one answer, so a second candidate
     * could not come back; not XL_F_PARALLEL_OFF: Gemini cannot be told. */
    .caps = 1u << XL_F_TOP_K | 1u << XL_F_SEED | 1u << XL_F_PENALTIES | 1u << XL_F_JSON_OBJECT |
            1u << XL_F_JSON_SCHEMA | 1u << XL_F_IMAGE_URL | 1u << XL_F_IMAGE | 1u << XL_F_TOOLS |
            1u << XL_F_THINKING | 1u << XL_F_STOP,
    .carries_thinking = 1,
    .decode_request = gemini_decode_request,
    .encode_request = gemini_encode_request,
    .decode_response = gemini_decode_response,
    .encode_response = gemini_encode_response,
    .decode_error = gemini_decode_error,
    .stream_framing = FRAME_SSE,
    .dec_size = sizeof(gem_dec),
    .dec_event = gemini_dec_event,
    .dec_finish = gemini_dec_finish,
    .enc_size = sizeof(gem_enc),
    .enc_event = gemini_enc_event,
    .enc_release = gemini_enc_release,
};
