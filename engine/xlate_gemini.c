/*
 * xlate_gemini.c — the Gemini dialect of the translation model (xlate.h):
 * generateContent and streamGenerateContent?alt=sse (v1beta).
 *
 * Requests, client -> model (decode_request) and model -> upstream
 * (encode_request):
 *   contents[].role user | model | function -> USER | ASSISTANT; the
 *       functionResponse parts of a user turn become a TOOL turn of their
 *       own (a turn mixing them with text is split in order), and back
 *       every TOOL or USER turn in a row is one "user" content, every
 *       ASSISTANT turn in a row one "model" content (Gemini alternates).
 *   text -> TEXT; text with thought:true (and thoughtSignature) ->
 *       THINKING; a thoughtSignature on any other part (Gemini puts it on a
 *       functionCall) -> an empty THINKING part with that signature before
 *       it, and back: an empty THINKING with a signature rides on the next
 *       part. Redacted thinking (Anthropic's) has no Gemini place: dropped.
 *   inlineData {mimeType image/..., data} -> IMAGE media_type + data;
 *   fileData {mimeType image/..., fileUri} -> IMAGE url (media_type kept).
 *   functionCall {id?, name, args} -> TOOL_CALL. A call without an id (the
 *       Gemini API's own history has none) gets "call_N", N counted over
 *       the request and skipping ids the request already uses (Anthropic
 *       refuses a conversation whose tool ids repeat).
 *   functionResponse {id?, name, response} -> TOOL_RESULT. Without an id it
 *       answers the first unanswered functionCall of that name in the
 *       latest model turn before it. response {"result"|"output": string}
 *       <-> that text, {"error": x} <-> is_error, any other object <-> its
 *       JSON text; back, a text that is a JSON object goes as that object,
 *       else as {"result": text} ({"error": text} for an error).
 *   systemInstruction.parts[].text -> system (a bare string too).
 *   tools[].functionDeclarations[] {name, description, parameters |
 *       parametersJsonSchema} -> tools. Gemini's own Schema (parameters) is
 *       made JSON Schema: types lower-cased, nullable -> [type, "null"],
 *       propertyOrdering dropped (an ordering hint). Upstream:
 *       parametersJsonSchema, which takes JSON Schema as it is.
 *   toolConfig.functionCallingConfig.mode AUTO / ANY / NONE -> AUTO /
 *       REQUIRED / NONE; ANY with one allowedFunctionNames -> NAMED.
 *   generationConfig: temperature, topP, topK, maxOutputTokens,
 *       stopSequences, candidateCount, seed, presencePenalty,
 *       frequencyPenalty, responseMimeType application/json (+
 *       responseSchema | responseJsonSchema) -> JSON_OBJECT / JSON_SCHEMA,
 *       thinkingConfig.thinkingBudget (> 0: a budget; -1, dynamic:
 *       "medium"; 0: off, the default elsewhere) and thinkingLevel -> the
 *       reasoning fields. Upstream thinking asks includeThoughts so
 *       reasoning can reach a client whose format carries it.
 * Refused with 400 naming the field: cachedContent; any tool but
 *   functionDeclarations (googleSearch, codeExecution, urlContext, ...);
 *   any part but the above (executableCode, videoMetadata, ...); media
 *   that is not an image; mode VALIDATED; allowedFunctionNames with AUTO
 *   or naming more than one function; responseModalities other than TEXT;
 *   responseMimeType other than text/plain and application/json; every
 *   generationConfig key not in the table (responseLogprobs, speechConfig,
 *   mediaResolution, ...) and every unknown key, so nothing that could
 *   change the answer is dropped unseen.
 * safetySettings: a threshold of BLOCK_NONE, OFF or unspecified asks for
 *   no filtering beyond the upstream's own, so it is skipped; any other
 *   threshold would make Gemini block answers another upstream gives,
 *   which changes the answer: refused ("safetySettings[i].threshold").
 * Skipped (no effect on the answer): labels, a "model" member, and
 *   thinkingConfig.includeThoughts (whether reasoning is shown, which the
 *   client format's encoder decides).
 *
 * Answers (decode_response / encode_response, and streams): candidates[0]
 *   parts as above, finishReason through finish_reasons[] (STOP with a
 *   functionCall part is XL_STOP_TOOL), usageMetadata: input =
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

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "engine/prov_json.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER)

/* ---- small helpers -------------------------------------------------------- */

static rl_err refuse(rl_buf *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static rl_err refuse(rl_buf *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rl_buf_vprintf(why, fmt, ap);
    va_end(ap);
    return RL_BAD_REQUEST;
}

/* j's compact text, copied into pool; NULL when out of memory. */
static const char *pool_dump(rl_pool *pool, json_t *j)
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
static const char *pool_str(rl_pool *pool, json_t *s)
{
    return rl_pstrndup(pool, json_string_value(s), json_string_length(s));
}

/* The proto JSON parser behind the Gemini API takes a field in camelCase
 * or in its proto snake_case name: member() looks for both, camel() maps a
 * key to the camelCase name the tables use. */
static void camel(const char *key, char *out, size_t cap)
{
    size_t n = 0;
    for (int up = 0; *key && n + 1 < cap; key++) {
        if (*key == '_') {
            up = 1;
            continue;
        }
        out[n++] = up ? (char)toupper((unsigned char)*key) : *key;
        up = 0;
    }
    out[n] = '\0';
}

static json_t *member(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    if (v)
        return v;
    char snake[64];
    size_t n = 0;
    for (; *name && n + 2 < sizeof snake; name++) {
        if (isupper((unsigned char)*name)) {
            snake[n++] = '_';
            snake[n++] = (char)tolower((unsigned char)*name);
        } else
            snake[n++] = *name;
    }
    snake[n] = '\0';
    return json_object_get(obj, snake);
}

/* A number that is a whole value (Gemini's topK and counts may come as
 * 40.0), or 0 with *ok 0. */
static int64_t whole(json_t *v, int *ok)
{
    if (json_is_integer(v)) {
        *ok = 1;
        return json_integer_value(v);
    }
    double d = json_is_real(v) ? json_real_value(v) : 0.5;
    /* In range before the cast: converting 1e300 to int64_t is undefined. */
    *ok = d >= -9.2e18 && d <= 9.2e18 && d == (double)(int64_t)d;
    return *ok ? (int64_t)d : 0;
}

static int one_of(const char *s, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(s, *names) == 0)
            return 1;
    return 0;
}

/* ---- schemas ------------------------------------------------------------------ */

/* Gemini's Schema (an OpenAPI subset: "OBJECT", "nullable") as JSON
 * Schema, so an upstream of another format reads it. New reference, NULL
 * when out of memory. Nesting is bounded by prov_json_load's depth limit. */
static json_t *schema_to_json(json_t *s)
{
    if (json_is_array(s)) {
        json_t *a = json_array();
        size_t i;
        json_t *v;
        int failed = !a;
        json_array_foreach(s, i, v) failed |= json_array_append_new(a, schema_to_json(v));
        return prov_json_check(a, failed);
    }
    if (!json_is_object(s))
        return json_incref(s);
    json_t *o = json_object();
    int failed = !o;
    int nullable = json_is_true(json_object_get(s, "nullable"));
    const char *key;
    json_t *v;
    json_object_foreach(s, key, v)
    {
        if (strcmp(key, "nullable") == 0 || strcmp(key, "propertyOrdering") == 0)
            continue;
        json_t *n;
        if (strcmp(key, "type") == 0 && json_is_string(v)) {
            char t[32];
            snprintf(t, sizeof t, "%s", json_string_value(v));
            for (char *c = t; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            n = nullable ? json_pack("[ss]", t, "null") : json_string(t);
        } else if (strcmp(key, "properties") == 0 && json_is_object(v)) {
            n = json_object();
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv) failed |= json_object_set_new(n, pk, schema_to_json(pv));
        } else if (strcmp(key, "items") == 0 || strcmp(key, "anyOf") == 0)
            n = schema_to_json(v);
        else
            n = json_incref(v);
        failed |= json_object_set_new(o, key, n);
    }
    return prov_json_check(o, failed);
}

/* ---- requests: client -> model ------------------------------------------------ */

/* What decoding a request carries along. */
typedef struct rdec {
    rl_pool *pool;
    xl_request *req;
    rl_buf *why;
    size_t cap_messages; /* room in req->messages */
} rdec;

static rl_err nomem(void)
{
    return RL_NOMEM;
}

/* The image parts: an image media type or a refusal naming field. */
static rl_err image_type(rdec *d, json_t *mime, const char *field, size_t i, size_t j)
{
    if (!json_is_string(mime) || strncmp(json_string_value(mime), "image/", 6) != 0)
        return refuse(d->why,
                      "`contents[%zu].parts[%zu].%s.mimeType` must be an image type to be "
                      "translated to another format (only images are carried).",
                      i, j, field);
    return RL_OK;
}

/* functionResponse.response -> the result's text and error flag. */
static rl_err result_text(rdec *d, json_t *response, xl_part *p)
{
    json_t *only =
        json_object_size(response) == 1 ? json_object_iter_value(json_object_iter(response)) : NULL;
    const char *key = only ? json_object_iter_key(json_object_iter(response)) : "";
    if (only && strcmp(key, "error") == 0)
        p->is_error = 1;
    if (only && json_is_string(only) &&
        one_of(key, (const char *const[]){"result", "output", "error", NULL}))
        p->text = pool_str(d->pool, only);
    else if (only && p->is_error)
        p->text = pool_dump(d->pool, only);
    else
        p->text = pool_dump(d->pool, response);
    return p->text ? RL_OK : nomem();
}

/* The media parts: inlineData carries base64 data, fileData a URL. */
static const struct {
    const char *field, *member;
    int url;
} media[] = {
    {"inlineData", "data", 0},
    {"fileData", "fileUri", 1},
};

/* contents[i].parts[j].<media[k].field> (obj) as an IMAGE part. */
static rl_err decode_media(rdec *d, json_t *obj, size_t k, size_t i, size_t j, xl_part *p)
{
    json_t *mime = member(obj, "mimeType"), *v = member(obj, media[k].member);
    rl_err err = image_type(d, mime, media[k].field, i, j);
    if (err != RL_OK)
        return err;
    if (!json_is_string(v))
        return refuse(d->why, "`contents[%zu].parts[%zu].%s.%s` is missing.", i, j, media[k].field,
                      media[k].member);
    p->kind = XL_PART_IMAGE;
    p->media_type = pool_str(d->pool, mime);
    *(media[k].url ? &p->url : &p->data) = pool_str(d->pool, v);
    d->req->features[XL_F_IMAGE] = media[k].field;
    if (media[k].url)
        d->req->features[XL_F_IMAGE_URL] = media[k].field;
    return p->media_type && (p->url || p->data) ? RL_OK : nomem();
}

/* A functionCall (call) or functionResponse part (fn) of a model or user
 * turn, as TOOL_CALL or TOOL_RESULT. */
static rl_err decode_function(rdec *d, json_t *fn, int call, int model, size_t i, size_t j,
                              xl_part *p)
{
    const char *what = call ? "functionCall" : "functionResponse";
    if (call ? !model : model)
        return refuse(d->why, "`contents[%zu].parts[%zu].%s` cannot be in a %s turn.", i, j, what,
                      model ? "model" : "user");
    json_t *name = member(fn, "name"), *id = member(fn, "id");
    if (!json_is_string(name))
        return refuse(d->why, "`contents[%zu].parts[%zu].%s.name` is missing.", i, j, what);
    p->name = pool_str(d->pool, name);
    p->id = json_is_string(id) ? pool_str(d->pool, id) : NULL;
    if (!p->name || (json_is_string(id) && !p->id))
        return nomem();
    if (call) {
        json_t *args = member(fn, "args");
        if (args && !json_is_object(args))
            return refuse(d->why, "`contents[%zu].parts[%zu].functionCall.args` must be an object.",
                          i, j);
        p->kind = XL_PART_TOOL_CALL;
        p->arguments = args ? pool_dump(d->pool, args) : "{}";
        return p->arguments ? RL_OK : nomem();
    }
    json_t *response = member(fn, "response");
    if (!json_is_object(response))
        return refuse(d->why,
                      "`contents[%zu].parts[%zu].functionResponse.response` must be an object.", i,
                      j);
    p->kind = XL_PART_TOOL_RESULT;
    return result_text(d, response, p);
}

/* One part of contents[i] (parts[j]) into p; *sig gets a thoughtSignature
 * that a non-thought part carried (NULL when none). */
static rl_err decode_part(rdec *d, json_t *part, size_t i, size_t j, int model, xl_part *p,
                          const char **sig)
{
    static const char *const known[] = {
        "text",     "thought",      "thoughtSignature", "inlineData",
        "fileData", "functionCall", "functionResponse", NULL};
    if (!json_is_object(part))
        return refuse(d->why, "`contents[%zu].parts[%zu]` must be an object.", i, j);
    const char *key;
    json_t *v;
    json_object_foreach(part, key, v)
    {
        char name[64];
        camel(key, name, sizeof name);
        if (!one_of(name, known))
            return refuse(d->why,
                          "`contents[%zu].parts[%zu].%s` cannot be translated to another "
                          "format.",
                          i, j, key);
    }
    json_t *signature = member(part, "thoughtSignature"), *text = member(part, "text");
    *sig = NULL;
    if (json_is_string(text) && json_is_true(member(part, "thought"))) {
        p->kind = XL_PART_THINKING;
        p->text = pool_str(d->pool, text);
        p->signature = signature ? pool_str(d->pool, signature) : NULL;
        return p->text && (!signature || p->signature) ? RL_OK : nomem();
    }
    if (json_is_string(signature) && !(*sig = pool_str(d->pool, signature)))
        return nomem();
    if (json_is_string(text)) {
        p->kind = XL_PART_TEXT;
        p->text = pool_str(d->pool, text);
        return p->text ? RL_OK : nomem();
    }
    for (size_t k = 0; k < sizeof media / sizeof media[0]; k++)
        if (json_is_object(v = member(part, media[k].field)))
            return decode_media(d, v, k, i, j, p);
    json_t *call = member(part, "functionCall"), *resp = member(part, "functionResponse");
    if (!json_is_object(call ? call : resp))
        return refuse(d->why, "`contents[%zu].parts[%zu]` holds no content Relay can translate.", i,
                      j);
    return decode_function(d, call ? call : resp, call != NULL, model, i, j, p);
}

/* A new turn of role with room for n parts, or NULL (out of memory). */
static xl_message *new_turn(rdec *d, xl_role role, size_t n)
{
    if (d->req->nmessages >= d->cap_messages)
        return NULL;
    xl_message *m = &d->req->messages[d->req->nmessages];
    m->parts = rl_palloc(d->pool, (n ? n : 1) * sizeof *m->parts);
    if (!m->parts)
        return NULL;
    m->role = role;
    d->req->nmessages++;
    return m;
}

/* Joins p to the last part of an assistant turn when both are pieces of
 * one text or one thought (no signature between them); a thought with
 * only a signature ends the thought before it (Anthropic's signature comes
 * after the thinking, so Relay's stream writes it as a chunk of its own).
 * 1 when joined, 0 when not, -1 out of memory. */
static int join_piece(rdec *d, xl_message *turn, const xl_part *p)
{
    xl_part *last = turn->nparts ? &turn->parts[turn->nparts - 1] : NULL;
    int sig_only = p->kind == XL_PART_THINKING && !p->text[0] && p->signature;
    if (turn->role != XL_ROLE_ASSISTANT || !last || last->kind != p->kind ||
        (p->kind != XL_PART_TEXT && p->kind != XL_PART_THINKING) || last->signature ||
        !last->text[0] || (!p->text[0] && !sig_only))
        return 0;
    size_t a = strlen(last->text), b = strlen(p->text);
    char *t = rl_palloc(d->pool, a + b + 1);
    if (!t)
        return -1;
    memcpy(t, last->text, a);
    memcpy(t + a, p->text, b + 1);
    last->text = t;
    last->signature = p->signature;
    return 1;
}

/*
 * contents[i]: its parts in turns, a new turn where the role changes (a
 * user turn's functionResponse parts are a TOOL turn). A content of the
 * role of the turn before continues that turn: @google/genai's chat
 * history keeps a streamed answer as one model content per chunk, and
 * sends it back so; one answer is one assistant turn, its text pieces
 * joined.
 */
static rl_err decode_content(rdec *d, json_t *c, size_t i)
{
    if (!json_is_object(c))
        return refuse(d->why, "`contents[%zu]` must be an object.", i);
    json_t *role = member(c, "role"), *parts = member(c, "parts");
    const char *r = json_is_string(role) ? json_string_value(role) : "user";
    int model = strcmp(r, "model") == 0;
    if (!model && strcmp(r, "user") != 0 && strcmp(r, "function") != 0)
        return refuse(d->why, "`contents[%zu].role` must be \"user\" or \"model\".", i);
    if (!json_is_array(parts) || json_array_size(parts) == 0)
        return refuse(d->why, "`contents[%zu].parts` must be a non-empty array.", i);
    size_t n = json_array_size(parts);
    xl_message *turn = NULL;
    if (d->req->nmessages) { /* room to continue the last turn: a signature part before each */
        turn = &d->req->messages[d->req->nmessages - 1];
        xl_part *grown = rl_palloc(d->pool, (turn->nparts + 2 * n) * sizeof *grown);
        if (!grown)
            return nomem();
        memcpy(grown, turn->parts, turn->nparts * sizeof *grown);
        turn->parts = grown;
    }
    for (size_t j = 0; j < n; j++) {
        xl_part p = {0};
        const char *sig = NULL;
        rl_err err = decode_part(d, json_array_get(parts, j), i, j, model, &p, &sig);
        if (err != RL_OK)
            return err;
        xl_role want = model                           ? XL_ROLE_ASSISTANT
                       : p.kind == XL_PART_TOOL_RESULT ? XL_ROLE_TOOL
                                                       : XL_ROLE_USER;
        if (!turn || turn->role != want)
            if (!(turn = new_turn(d, want, 2 * n)))
                return nomem();
        if (sig)
            turn->parts[turn->nparts++] =
                (xl_part){.kind = XL_PART_THINKING, .text = "", .signature = sig};
        int joined = sig ? 0 : join_piece(d, turn, &p);
        if (joined < 0)
            return nomem();
        if (!joined)
            turn->parts[turn->nparts++] = p;
    }
    return RL_OK;
}

/* How many parts of kind in turns [from, to) have id. */
static size_t id_count(const xl_request *req, xl_part_kind kind, size_t from, size_t to,
                       const char *id)
{
    size_t n = 0;
    for (size_t m = from; m < to && m < req->nmessages; m++)
        for (size_t p = 0; p < req->messages[m].nparts; p++)
            n += req->messages[m].parts[p].kind == kind && req->messages[m].parts[p].id &&
                 strcmp(req->messages[m].parts[p].id, id) == 0;
    return n;
}

/* The call an id-less result (in turn m) answers: the first unanswered
 * call of its name in the latest model turn before m, or NULL. */
static const xl_part *call_for(const xl_request *req, size_t m, const char *name)
{
    size_t a = m;
    while (a > 0 && req->messages[a - 1].role != XL_ROLE_ASSISTANT)
        a--;
    if (a == 0)
        return NULL;
    const xl_message *turn = &req->messages[a - 1];
    for (size_t p = 0; p < turn->nparts; p++) {
        const xl_part *call = &turn->parts[p];
        if (call->kind == XL_PART_TOOL_CALL && strcmp(call->name, name) == 0 &&
            id_count(req, XL_PART_TOOL_RESULT, a, m + 1, call->id) == 0)
            return call;
    }
    return NULL;
}

/* Gives id-less calls ids ("call_N", skipping ids the request uses), then
 * pairs id-less results with their calls (call_for). */
static rl_err pair_ids(rdec *d)
{
    xl_request *req = d->req;
    int next = 0;
    for (size_t m = 0; m < req->nmessages; m++)
        for (size_t p = 0; p < req->messages[m].nparts; p++) {
            xl_part *call = &req->messages[m].parts[p];
            if (call->kind != XL_PART_TOOL_CALL || call->id)
                continue;
            do {
                if (!(call->id = xlate_tool_id(d->pool, next++)))
                    return nomem();
            } while (id_count(req, XL_PART_TOOL_CALL, 0, req->nmessages, call->id) > 1);
        }
    for (size_t m = 0; m < req->nmessages; m++)
        for (size_t p = 0; p < req->messages[m].nparts; p++) {
            xl_part *res = &req->messages[m].parts[p];
            if (res->kind != XL_PART_TOOL_RESULT || res->id)
                continue;
            const xl_part *call = call_for(req, m, res->name);
            if (!call)
                return refuse(d->why,
                              "A `functionResponse` named `%s` answers no functionCall of that "
                              "name in the model turn before it.",
                              res->name);
            res->id = call->id;
        }
    return RL_OK;
}

/* systemInstruction: a Content of text parts (or, leniently, a string). */
static rl_err decode_system(rdec *d, json_t *v, const char *field)
{
    xl_request *req = d->req;
    if (json_is_string(v)) {
        if (!(req->system = rl_palloc(d->pool, sizeof *req->system)))
            return nomem();
        req->system[0] = (xl_part){.kind = XL_PART_TEXT, .text = pool_str(d->pool, v)};
        req->nsystem = 1;
        return req->system[0].text ? RL_OK : nomem();
    }
    json_t *parts = member(v, "parts");
    if (!json_is_array(parts))
        return refuse(d->why, "`%s.parts` must be an array.", field);
    size_t n = json_array_size(parts);
    if (!(req->system = rl_palloc(d->pool, (n ? n : 1) * sizeof *req->system)))
        return nomem();
    for (size_t j = 0; j < n; j++) {
        json_t *part = json_array_get(parts, j), *text = member(part, "text");
        if (!json_is_string(text) || json_object_size(part) != 1)
            return refuse(d->why, "`%s.parts[%zu]` must be a text part to be translated.", field,
                          j);
        req->system[j] = (xl_part){.kind = XL_PART_TEXT, .text = pool_str(d->pool, text)};
        if (!req->system[j].text)
            return nomem();
    }
    req->nsystem = n;
    return RL_OK;
}

static rl_err decode_contents(rdec *d, json_t *v, const char *field)
{
    if (!json_is_array(v))
        return refuse(d->why, "`%s` must be an array of Content.", field);
    /* At most one turn per part (a content split at each role change). */
    size_t cap = 0, i;
    json_t *c;
    json_array_foreach(v, i, c) cap += json_array_size(member(c, "parts")) + 1;
    d->cap_messages = cap;
    if (!(d->req->messages = rl_palloc(d->pool, (cap ? cap : 1) * sizeof *d->req->messages)))
        return nomem();
    json_array_foreach(v, i, c)
    {
        rl_err err = decode_content(d, c, i);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

/* One FunctionDeclaration (tools[i].functionDeclarations[j]). */
static rl_err decode_declaration(rdec *d, json_t *f, size_t i, size_t j, xl_tool *t)
{
    static const char *const known[] = {"name", "description", "parameters", "parametersJsonSchema",
                                        NULL};
    const char *key;
    json_t *v;
    json_object_foreach(f, key, v)
    {
        char name[64];
        camel(key, name, sizeof name);
        if (!one_of(name, known))
            return refuse(d->why,
                          "`tools[%zu].functionDeclarations[%zu].%s` cannot be translated to "
                          "another format.",
                          i, j, key);
    }
    json_t *name = member(f, "name"), *desc = member(f, "description");
    json_t *params = member(f, "parameters"), *jparams = member(f, "parametersJsonSchema");
    if (!json_is_string(name))
        return refuse(d->why, "`tools[%zu].functionDeclarations[%zu].name` is missing.", i, j);
    t->name = pool_str(d->pool, name);
    t->description = json_is_string(desc) ? pool_str(d->pool, desc) : NULL;
    t->strict = -1;
    if (jparams)
        t->parameters = pool_dump(d->pool, jparams);
    else if (params) {
        json_t *s = schema_to_json(params);
        t->parameters = s ? pool_dump(d->pool, s) : NULL;
        json_decref(s);
    }
    if (!t->name || (json_is_string(desc) && !t->description) ||
        ((params || jparams) && !t->parameters))
        return nomem();
    return RL_OK;
}

/* tools: functionDeclarations only; Google's own tools run on Google's
 * side and have no counterpart elsewhere. */
static rl_err decode_tools(rdec *d, json_t *v, const char *field)
{
    if (!json_is_array(v))
        return refuse(d->why, "`%s` must be an array.", field);
    size_t n = 0, i;
    json_t *tool;
    json_array_foreach(v, i, tool) n += json_array_size(member(tool, "functionDeclarations"));
    if (!(d->req->tools = rl_palloc(d->pool, (n ? n : 1) * sizeof *d->req->tools)))
        return nomem();
    json_array_foreach(v, i, tool)
    {
        const char *key;
        json_t *decls;
        json_object_foreach(tool, key, decls)
        {
            char name[64];
            camel(key, name, sizeof name);
            if (strcmp(name, "functionDeclarations") != 0)
                return refuse(d->why,
                              "`tools[%zu].%s` (a tool Google runs) cannot be translated to "
                              "another format; only functionDeclarations can.",
                              i, key);
            if (!json_is_array(decls))
                return refuse(d->why, "`tools[%zu].%s` must be an array.", i, key);
            size_t j;
            json_t *f;
            json_array_foreach(decls, j, f)
            {
                if (!json_is_object(f))
                    return refuse(d->why, "`tools[%zu].%s[%zu]` must be an object.", i, key, j);
                rl_err err = decode_declaration(d, f, i, j, &d->req->tools[d->req->ntools]);
                if (err != RL_OK)
                    return err;
                d->req->ntools++;
            }
        }
    }
    if (d->req->ntools)
        d->req->features[XL_F_TOOLS] = "tools";
    return RL_OK;
}

/* functionCallingConfig.mode -> tool choice. VALIDATED (call or answer,
 * calls checked against the schema) has no counterpart: refused. */
static const struct {
    const char *mode;
    xl_tool_choice choice;
} fc_modes[] = {
    {"MODE_UNSPECIFIED", XL_CHOICE_UNSET},
    {"AUTO", XL_CHOICE_AUTO},
    {"ANY", XL_CHOICE_REQUIRED},
    {"NONE", XL_CHOICE_NONE},
};

static rl_err decode_tool_config(rdec *d, json_t *v, const char *field)
{
    const char *key;
    json_t *fcc;
    json_object_foreach(v, key, fcc)
    {
        char name[64];
        camel(key, name, sizeof name);
        if (strcmp(name, "functionCallingConfig") != 0)
            return refuse(d->why, "`%s.%s` cannot be translated to another format.", field, key);
    }
    fcc = member(v, "functionCallingConfig");
    if (!fcc)
        return RL_OK;
    json_t *mode = member(fcc, "mode"), *allowed = member(fcc, "allowedFunctionNames");
    const char *m = json_is_string(mode) ? json_string_value(mode) : "MODE_UNSPECIFIED";
    size_t i = 0;
    while (i < sizeof fc_modes / sizeof fc_modes[0] && strcmp(fc_modes[i].mode, m) != 0)
        i++;
    if (i == sizeof fc_modes / sizeof fc_modes[0])
        return refuse(d->why,
                      "`%s.functionCallingConfig.mode` %s cannot be translated to another format "
                      "(AUTO, ANY and NONE can).",
                      field, m);
    d->req->tool_choice = fc_modes[i].choice;
    size_t n = json_array_size(allowed);
    if (n == 0)
        return RL_OK;
    if (fc_modes[i].choice != XL_CHOICE_REQUIRED || n != 1 ||
        !json_is_string(json_array_get(allowed, 0)))
        return refuse(d->why,
                      "`%s.functionCallingConfig.allowedFunctionNames` can be translated only "
                      "with mode ANY and one name (other formats force one tool or any).",
                      field);
    d->req->tool_choice = XL_CHOICE_NAMED;
    d->req->tool_choice_name = pool_str(d->pool, json_array_get(allowed, 0));
    return d->req->tool_choice_name ? RL_OK : nomem();
}

/* Thresholds that ask for no blocking beyond the upstream's own. */
static const char *const lax_thresholds[] = {"BLOCK_NONE", "OFF",
                                             "HARM_BLOCK_THRESHOLD_UNSPECIFIED", NULL};

static rl_err decode_safety(rdec *d, json_t *v, const char *field)
{
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        json_t *t = member(s, "threshold");
        if (!json_is_string(t) || !one_of(json_string_value(t), lax_thresholds))
            return refuse(d->why,
                          "`%s[%zu].threshold` asks Gemini to block answers, which other formats "
                          "cannot be told to do (BLOCK_NONE and OFF are accepted).",
                          field, i);
    }
    return RL_OK;
}

static rl_err skip(rdec *d, json_t *v, const char *field)
{
    (void)d, (void)v, (void)field;
    return RL_OK;
}

/* ---- generationConfig, one handler per field -------------------------------- */

static rl_err number(rdec *d, json_t *v, const char *field, double *out)
{
    if (!json_is_number(v) || json_number_value(v) < 0)
        return refuse(d->why, "`generationConfig.%s` must be a number, 0 or more.", field);
    *out = json_number_value(v);
    return RL_OK;
}

static rl_err count(rdec *d, json_t *v, const char *field, int64_t *out)
{
    int ok;
    *out = whole(v, &ok);
    if (!ok || *out < 0)
        return refuse(d->why, "`generationConfig.%s` must be a whole number, 0 or more.", field);
    return RL_OK;
}

static rl_err gc_temperature(rdec *d, json_t *v, const char *f)
{
    return number(d, v, f, &d->req->temperature);
}

static rl_err gc_top_p(rdec *d, json_t *v, const char *f)
{
    return number(d, v, f, &d->req->top_p);
}

static rl_err gc_top_k(rdec *d, json_t *v, const char *f)
{
    d->req->features[XL_F_TOP_K] = "generationConfig.topK";
    return count(d, v, f, &d->req->top_k);
}

static rl_err gc_max(rdec *d, json_t *v, const char *f)
{
    return count(d, v, f, &d->req->max_tokens);
}

static rl_err gc_seed(rdec *d, json_t *v, const char *f)
{
    int ok;
    d->req->seed = whole(v, &ok);
    d->req->features[XL_F_SEED] = "generationConfig.seed";
    return ok ? RL_OK : refuse(d->why, "`generationConfig.%s` must be a whole number.", f);
}

static rl_err gc_candidates(rdec *d, json_t *v, const char *f)
{
    rl_err err = count(d, v, f, &d->req->n);
    if (err == RL_OK && d->req->n > 1)
        d->req->features[XL_F_CHOICES] = "generationConfig.candidateCount";
    if (d->req->n < 1)
        d->req->n = 1;
    return err;
}

static rl_err gc_penalty(rdec *d, json_t *v, const char *f)
{
    if (!json_is_number(v))
        return refuse(d->why, "`generationConfig.%s` must be a number.", f);
    int presence = strcmp(f, "presencePenalty") == 0;
    *(presence ? &d->req->presence_penalty : &d->req->frequency_penalty) = json_number_value(v);
    d->req->features[XL_F_PENALTIES] =
        presence ? "generationConfig.presencePenalty" : "generationConfig.frequencyPenalty";
    return RL_OK;
}

static rl_err gc_stop(rdec *d, json_t *v, const char *f)
{
    size_t n = json_array_size(v), i;
    json_t *s;
    if (!json_is_array(v))
        return refuse(d->why, "`generationConfig.%s` must be an array of strings.", f);
    if (!(d->req->stop = rl_palloc(d->pool, (n ? n : 1) * sizeof *d->req->stop)))
        return nomem();
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s))
            return refuse(d->why, "`generationConfig.%s[%zu]` must be a string.", f, i);
        if (!(d->req->stop[i] = pool_str(d->pool, s)))
            return nomem();
    }
    d->req->nstop = n;
    if (n)
        d->req->features[XL_F_STOP] = "generationConfig.stopSequences";
    return RL_OK;
}

static rl_err gc_mime(rdec *d, json_t *v, const char *f)
{
    const char *m = json_is_string(v) ? json_string_value(v) : "";
    if (strcmp(m, "text/plain") == 0)
        return RL_OK;
    if (strcmp(m, "application/json") != 0)
        return refuse(d->why,
                      "`generationConfig.%s` %s cannot be translated to another format "
                      "(text/plain and application/json can).",
                      f, m);
    if (d->req->format == XL_FORMAT_TEXT)
        d->req->format = XL_FORMAT_JSON_OBJECT;
    return RL_OK;
}

/* responseSchema is Gemini's Schema, responseJsonSchema JSON Schema. */
static rl_err gc_schema(rdec *d, json_t *v, const char *f)
{
    if (!json_is_object(v))
        return refuse(d->why, "`generationConfig.%s` must be an object.", f);
    json_t *s = strcmp(f, "responseSchema") == 0 ? schema_to_json(v) : json_incref(v);
    d->req->format_schema = s ? pool_dump(d->pool, s) : NULL;
    json_decref(s);
    d->req->format = XL_FORMAT_JSON_SCHEMA;
    d->req->format_strict = -1;
    d->req->features[XL_F_JSON_SCHEMA] = strcmp(f, "responseSchema") == 0
                                             ? "generationConfig.responseSchema"
                                             : "generationConfig.responseJsonSchema";
    return d->req->format_schema ? RL_OK : nomem();
}

static rl_err gc_modalities(rdec *d, json_t *v, const char *f)
{
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m)
    {
        if (!json_is_string(m) || strcasecmp(json_string_value(m), "TEXT") != 0)
            return refuse(d->why,
                          "`generationConfig.%s` other than TEXT cannot be translated to another "
                          "format.",
                          f);
    }
    return RL_OK;
}

static rl_err gc_thinking(rdec *d, json_t *v, const char *f)
{
    static const char *const known[] = {"thinkingBudget", "includeThoughts", "thinkingLevel", NULL};
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x)
    {
        char name[64];
        camel(key, name, sizeof name);
        if (!one_of(name, known))
            return refuse(d->why,
                          "`generationConfig.%s.%s` cannot be translated to another "
                          "format.",
                          f, key);
    }
    json_t *budget = member(v, "thinkingBudget"), *level = member(v, "thinkingLevel");
    xl_request *req = d->req;
    if (budget) {
        int ok;
        int64_t b = whole(budget, &ok);
        if (!ok || b < -1)
            return refuse(d->why, "`generationConfig.%s.thinkingBudget` must be -1, 0 or more.", f);
        if (b > 0)
            req->thinking_budget = b;
        else if (b == -1) /* dynamic: the model decides; "medium" is the middle of the table */
            req->reasoning_effort = "medium";
        if (b != 0)
            req->features[XL_F_THINKING] = "generationConfig.thinkingConfig.thinkingBudget";
    }
    if (level) {
        char l[16];
        snprintf(l, sizeof l, "%s", json_is_string(level) ? json_string_value(level) : "");
        for (char *c = l; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (xlate_effort_budget(l) < 0)
            return refuse(d->why, "`generationConfig.%s.thinkingLevel` must be low or high.", f);
        if (!(req->reasoning_effort = rl_pstrdup(d->pool, l)))
            return nomem();
        req->features[XL_F_THINKING] = "generationConfig.thinkingConfig.thinkingLevel";
    }
    return RL_OK;
}

typedef rl_err (*field_fn)(rdec *d, json_t *v, const char *field);

typedef struct field_row {
    const char *name; /* camelCase */
    field_fn fn;      /* NULL: refused */
} field_row;

static const field_row gen_fields[] = {
    {"temperature", gc_temperature},
    {"topP", gc_top_p},
    {"topK", gc_top_k},
    {"maxOutputTokens", gc_max},
    {"stopSequences", gc_stop},
    {"candidateCount", gc_candidates},
    {"seed", gc_seed},
    {"presencePenalty", gc_penalty},
    {"frequencyPenalty", gc_penalty},
    {"responseMimeType", gc_mime},
    {"responseSchema", gc_schema},
    {"responseJsonSchema", gc_schema},
    {"responseModalities", gc_modalities},
    {"thinkingConfig", gc_thinking},
};

/* Runs each member of obj through its row of table (n rows); a member
 * without a row, or whose row refuses it, is refused by name. */
static rl_err run_fields(rdec *d, json_t *obj, const field_row *table, size_t n, const char *prefix)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        char name[64];
        camel(key, name, sizeof name);
        size_t i = 0;
        while (i < n && strcmp(table[i].name, name) != 0)
            i++;
        if (i == n || !table[i].fn)
            return refuse(d->why, "`%s%s` cannot be translated to another format.", prefix, key);
        if (json_is_null(v))
            continue;
        rl_err err = table[i].fn(d, v, table[i].name);
        if (err != RL_OK)
            return err;
    }
    return RL_OK;
}

static rl_err decode_generation(rdec *d, json_t *v, const char *field)
{
    (void)field;
    if (!json_is_object(v))
        return refuse(d->why, "`generationConfig` must be an object.");
    return run_fields(d, v, gen_fields, sizeof gen_fields / sizeof gen_fields[0],
                      "generationConfig.");
}

/* The members of a GenerateContentRequest. */
static const field_row request_fields[] = {
    {"contents", decode_contents},
    {"systemInstruction", decode_system},
    {"tools", decode_tools},
    {"toolConfig", decode_tool_config},
    {"generationConfig", decode_generation},
    {"safetySettings", decode_safety},
    {"cachedContent", NULL}, /* state on Google's side */
    {"labels", skip},        /* billing labels */
    {"model", skip},         /* the path names the model */
};

static rl_err gemini_decode_request(const char *body, size_t len, const char *path_model,
                                    rl_pool *pool, xl_request *out, rl_buf *why)
{
    json_error_t jerr;
    memset(out, 0, sizeof *out);
    out->max_tokens = out->top_k = out->thinking_budget = -1;
    out->temperature = out->top_p = -1;
    out->parallel_tool_calls = -1;
    out->n = 1;
    out->format_strict = -1;
    json_t *root = prov_json_load(body, len, &jerr);
    if (!root) {
        rl_err err = prov_json_failed(&jerr, RL_BAD_JSON);
        if (err == RL_BAD_JSON)
            rl_buf_printf(why, "Invalid JSON payload received. %s (at byte %d).", jerr.text,
                          jerr.position);
        return err;
    }
    rdec d = {pool, out, why, 0};
    rl_err err = RL_BAD_JSON;
    if (!json_is_object(root)) {
        rl_buf_puts(why, "Invalid JSON payload received. The request body must be a JSON object.");
        goto out;
    }
    if (path_model && !(out->model = rl_pstrdup(pool, path_model))) {
        err = RL_NOMEM;
        goto out;
    }
    err =
        run_fields(&d, root, request_fields, sizeof request_fields / sizeof request_fields[0], "");
    if (err == RL_OK && !out->nmessages)
        err = refuse(why, "* GenerateContentRequest.contents: contents is not specified");
    if (err == RL_OK)
        err = pair_ids(&d);
    if (err == RL_OK && out->format == XL_FORMAT_JSON_OBJECT)
        out->features[XL_F_JSON_OBJECT] = "generationConfig.responseMimeType";
out:
    json_decref(root);
    return err;
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
static json_t *object_of(const char *text, rl_err *err)
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

/* functionResponse.response for a result's text (see the header). */
static json_t *result_response(const xl_part *p, rl_err *err)
{
    const char *text = p->text ? p->text : "";
    rl_err e = RL_OK;
    json_t *obj = text[0] ? object_of(text, &e) : NULL; /* "" would be {} */
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
        json_t *args = object_of(p->arguments, &e);
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
static rl_err put_parts(json_t *to, const xl_part *parts, size_t n)
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
        rl_err err = put_parts(parts, msg->parts, msg->nparts);
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
        json_t *s = object_of(t->parameters, err);
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
        json_t *s = object_of(req->format_schema, err);
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

static rl_err gemini_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why)
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
            put_parts(json_object_get(sys, "parts"), req->system, req->nsystem) != RL_OK)
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
        const char *signature = json_is_string(sig) ? pool_str(pool, sig) : NULL;
        if (json_is_string(sig) && !signature)
            return RL_NOMEM;
        xl_part *x = &(*out)[k];
        if (json_is_string(text) && json_is_true(json_object_get(p, "thought"))) {
            *x = (xl_part){
                .kind = XL_PART_THINKING, .text = pool_str(pool, text), .signature = signature};
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
            *x = (xl_part){.kind = XL_PART_TEXT, .text = pool_str(pool, text)};
            if (!x->text)
                return RL_NOMEM;
            continue;
        }
        json_t *id = json_object_get(call, "id"), *name = json_object_get(call, "name");
        json_t *args = json_object_get(call, "args");
        *x = (xl_part){.kind = XL_PART_TOOL_CALL,
                       .id = json_is_string(id) ? pool_str(pool, id) : xlate_tool_id(pool, *calls),
                       .name = json_is_string(name) ? pool_str(pool, name) : "",
                       .arguments = json_is_object(args) ? pool_dump(pool, args) : "{}"};
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
    if ((json_is_string(id) && !(out->id = pool_str(pool, id))) ||
        (json_is_string(model) && !(out->model = pool_str(pool, model))))
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
    rl_err err = put_parts(parts, resp->parts, resp->nparts);
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
    if ((json_is_string(msg) && !(out->message = pool_str(pool, msg))) ||
        (json_is_string(status) && !(out->type = pool_str(pool, status))))
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
    json_t *args = object_of(s->args.len ? s->args.data : "", err);
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
