/*
 * xlate_gemini_request.c — the Gemini dialect's requests (xlate.h):
 * generateContent and streamGenerateContent?alt=sse (v1beta) bodies.
 * This file decodes them (decode_request, client -> model);
 * xlate_gemini_request_encode.c writes them (encode_request, model ->
 * upstream); answers, errors and streams are in xlate_gemini.c, with the
 * xl_gemini table and the helpers the files share (xlate_gemini_int.h).
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
 * Threads: pure (xlate.h).
 */
#include "engine/xlate_gemini_int.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/prov_json.h"

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
        p->text = gem_pool_str(d->pool, only);
    else if (only && p->is_error)
        p->text = gem_pool_dump(d->pool, only);
    else
        p->text = gem_pool_dump(d->pool, response);
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
    p->media_type = gem_pool_str(d->pool, mime);
    *(media[k].url ? &p->url : &p->data) = gem_pool_str(d->pool, v);
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
    p->name = gem_pool_str(d->pool, name);
    p->id = json_is_string(id) ? gem_pool_str(d->pool, id) : NULL;
    if (!p->name || (json_is_string(id) && !p->id))
        return nomem();
    if (call) {
        json_t *args = member(fn, "args");
        if (args && !json_is_object(args))
            return refuse(d->why, "`contents[%zu].parts[%zu].functionCall.args` must be an object.",
                          i, j);
        p->kind = XL_PART_TOOL_CALL;
        p->arguments = args ? gem_pool_dump(d->pool, args) : "{}";
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
        p->text = gem_pool_str(d->pool, text);
        p->signature = signature ? gem_pool_str(d->pool, signature) : NULL;
        return p->text && (!signature || p->signature) ? RL_OK : nomem();
    }
    if (json_is_string(signature) && !(*sig = gem_pool_str(d->pool, signature)))
        return nomem();
    if (json_is_string(text)) {
        p->kind = XL_PART_TEXT;
        p->text = gem_pool_str(d->pool, text);
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
        req->system[0] = (xl_part){.kind = XL_PART_TEXT, .text = gem_pool_str(d->pool, v)};
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
        req->system[j] = (xl_part){.kind = XL_PART_TEXT, .text = gem_pool_str(d->pool, text)};
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
    t->name = gem_pool_str(d->pool, name);
    t->description = json_is_string(desc) ? gem_pool_str(d->pool, desc) : NULL;
    t->strict = -1;
    if (jparams)
        t->parameters = gem_pool_dump(d->pool, jparams);
    else if (params) {
        json_t *s = schema_to_json(params);
        t->parameters = s ? gem_pool_dump(d->pool, s) : NULL;
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
    d->req->tool_choice_name = gem_pool_str(d->pool, json_array_get(allowed, 0));
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
        if (!(d->req->stop[i] = gem_pool_str(d->pool, s)))
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
    d->req->format_schema = s ? gem_pool_dump(d->pool, s) : NULL;
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

rl_err gemini_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                             xl_request *out, rl_buf *why)
{
    json_error_t jerr;
    xlate_request_init(out);
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
