/*
 * admin_tokens.c — /relay/admin/api/tokens, once the admin token was
 * checked (observe.c): the operations of relay-admin token, through the
 * same engine code (tokens.h), in JSON.
 *
 *   GET    /tokens             {"tokens": [token, ...], "damaged": N}
 *   POST   /tokens             create from {"name": ..., field: value, ...}:
 *                              201 with the token and, once, its "token" text
 *   GET    /tokens/REF         the token
 *   PATCH  /tokens/REF         change the fields given: 200 with the token
 *   DELETE /tokens/REF         revoke it (now): 200 with the token
 *   POST   /tokens/REF/rotate  a new text ({"grace": "1h" or seconds, or no
 *                              body}): 200 with the token and its "token"
 *
 * REF is a token's id or its name, percent-encoded in the path. A token is
 * shown as tokens_json writes it. Field values as tokens.h reads them, from
 * JSON: strings as given; integers as numbers (expires: unix seconds, as
 * shown); null removes a budget, limit or expiry ([] or null: every
 * upstream or model); upstreams and models as arrays of strings (or one
 * string, comma-separated as relay-admin takes them); a USD
 * budget as a string ("0.10", exact) or a number, which is accepted only
 * when it is the double nearest to an amount of at most 9 decimals below
 * 1,000,000 USD, so that 0.1 is 100000000 nano-USD and no float's rounding
 * reaches a budget.
 *
 * Errors in OpenAI's shape (exchange_fail) with tokens.h's kinds: 400 a
 * value, 404 no such token, 409 a name taken, 403 a revoked token, 503 no
 * store. A token's text is in no log line; the answer that carries it is
 * wiped from memory once sent.
 */
#include "engine/observe_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/prov_json.h"
#include "engine/tokens.h"
#include "store/base/rl_log.h"
#include "store/base/rl_secure.h"

#define MAX_MEMBERS 16   /* of a create or update body */
#define VALUE_MAX 2048   /* one field's text (16 list items of 64, commas) */
#define USD_REAL_MAX 1e6 /* below it, distinct 9-decimal amounts are distinct doubles */

/* Whether field (a JSON key) is one of the lists. */
static int is_list(const char *field)
{
    return !strcmp(field, "upstreams") || !strcmp(field, "models");
}

/* A list's items joined with commas into buf; NULL (why said) when not
 * an array of strings without commas. */
static const char *list_text(const char *field, json_t *v, char *buf, rl_buf *why)
{
    size_t used = 0, i;
    json_t *item;
    buf[0] = '\0';
    if (json_array_size(v) > TOKEN_LIST_MAX) {
        (void)rl_buf_printf(why, "%s: at most %d items", field, TOKEN_LIST_MAX);
        return NULL;
    }
    json_array_foreach(v, i, item)
    {
        const char *s = json_string_value(item);
        if (!s || strchr(s, ',') || strlen(s) != json_string_length(item) ||
            strlen(s) > TOKEN_ITEM_MAX) {
            (void)rl_buf_printf(why,
                                "%s: give an array of names or patterns (strings of 1 to %d "
                                "characters, no commas)",
                                field, TOKEN_ITEM_MAX);
            return NULL;
        }
        used += (size_t)snprintf(buf + used, VALUE_MAX - used, "%s%s", i ? "," : "", s);
    }
    return buf;
}

/* A USD budget given as a JSON number, as exact text into buf (see the
 * top of the file); NULL when it is not such a number. */
static const char *usd_text(json_t *v, char *buf)
{
    double d = json_number_value(v);
    uint64_t nusd;
    char printed[64];
    if (!(d >= 0 && d < USD_REAL_MAX))
        return NULL;
    snprintf(printed, sizeof printed, "%.9f", d);
    if (tokens_parse_usd(printed, &nusd) != RL_OK || (double)nusd / 1e9 != d)
        return NULL;
    tokens_format_usd(nusd, buf);
    return buf;
}

/* The text of field's JSON value v as tokens_set reads it, in buf
 * (VALUE_MAX bytes) or static; NULL with why said when v cannot be one. */
static const char *value_text(const char *field, json_t *v, char *buf, rl_buf *why)
{
    int usd = !strncmp(field, "budget_usd_", 11);
    if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v))
        return json_string_value(v);
    if (json_is_null(v) && strcmp(field, "name") != 0)
        return is_list(field) ? "" : "none";
    if (json_is_array(v) && is_list(field))
        return list_text(field, v, buf, why);
    if (json_is_integer(v) && !is_list(field) && strcmp(field, "name") != 0) {
        snprintf(buf, VALUE_MAX, "%s%lld", strcmp(field, "expires") ? "" : "@",
                 (long long)json_integer_value(v));
        return buf;
    }
    if (json_is_real(v) && usd && usd_text(v, buf))
        return buf;
    (void)rl_buf_printf(why,
                        usd ? "%s: give an amount of USD as a string (\"0.10\"), or null"
                        : is_list(field) ? "%s: give an array of strings, or null"
                        : !strcmp(field, "expires")
                            ? "%s: give unix seconds, a string (\"7d\", \"2026-12-31\"), or null"
                        : !strcmp(field, "name") ? "%s: give a string"
                                                 : "%s: give a whole number, or null",
                        field);
    return NULL;
}

/* The edits of a create or update body: e->edits point into body and
 * into e->texts. RL_OK, or RL_BAD_JSON / RL_BAD_REQUEST with why said. */
typedef struct body_edits {
    json_t *body;
    tokens_edit edits[MAX_MEMBERS];
    char (*texts)[VALUE_MAX];
    size_t n;
} body_edits;

static rl_err read_edits(exchange *x, body_edits *e, rl_buf *why)
{
    memset(e, 0, sizeof *e);
    e->body = prov_json_load(x->req->body, x->req->body_len, NULL);
    if (!json_is_object(e->body) || json_object_size(e->body) > MAX_MEMBERS) {
        (void)rl_buf_puts(why, "Send a JSON object of a token's fields: name, upstreams, models, "
                               "budget_usd_day, budget_usd_month, budget_tokens_day, rpm, tpm, "
                               "expires.");
        return e->body ? RL_BAD_REQUEST : RL_BAD_JSON;
    }
    e->texts = calloc(MAX_MEMBERS, sizeof *e->texts);
    if (!e->texts)
        return RL_NOMEM;
    const char *field;
    json_t *v;
    json_object_foreach(e->body, field, v)
    {
        const char *text = value_text(field, v, e->texts[e->n], why);
        if (!text)
            return RL_BAD_REQUEST;
        e->edits[e->n++] = (tokens_edit){field, text};
    }
    return RL_OK;
}

static void edits_release(body_edits *e)
{
    json_decref(e->body);
    free(e->texts);
}

/* ---- answers ---------------------------------------------------------------- */

/* Sends a token (with its text when not NULL), then wipes the copy. */
static void send_token(exchange *x, int status, const tokens_row *r, const char *text)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    if (tokens_json(r, x->now, text, &out) == RL_OK)
        observe_send(x, status, "application/json", out.data, out.len);
    else
        exchange_fail(x, RL_NOMEM, NULL);
    rl_secure_zero(out.data, out.len);
    rl_buf_release(&out);
}

/* ---- the operations, by path and method --------------------------------------- */

static void serve_list(exchange *x, store *s)
{
    tokens_list l;
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err e = tokens_list_load(s, x->now, &l);
    if (e == RL_OK)
        e = tokens_list_json(&l, x->now, &out);
    if (e == RL_OK)
        observe_send(x, 200, "application/json", out.data, out.len);
    else
        exchange_fail(x, e, "Reading the tokens failed; see Relay's log.");
    tokens_list_release(&l);
    rl_buf_release(&out);
}

/* An operation on one token, as relay-admin token's: *row gets the token,
 * text a new text (create, rotate), *changed 0 when nothing changed (a
 * revoke of a revoked token); why says what went wrong. */
typedef rl_err op_fn(exchange *x, store *s, const char *ref, tokens_row *row,
                     char text[TOKENS_TEXT_SIZE], int *changed, rl_buf *why);

/* Create (ref "": POST /tokens) or update (PATCH /tokens/REF) from the
 * fields of the body. */
static rl_err op_edit(exchange *x, store *s, const char *ref, tokens_row *row,
                      char text[TOKENS_TEXT_SIZE], int *changed, rl_buf *why)
{
    (void)changed;
    body_edits be;
    rl_err e = read_edits(x, &be, why);
    if (e == RL_OK && !*ref)
        e = tokens_create(s, x->cfg, be.edits, be.n, x->now, row, text, why);
    else if (e == RL_OK)
        e = tokens_update(s, x->cfg, ref, be.edits, be.n, x->now, row, why);
    edits_release(&be);
    return e;
}

static rl_err op_show(exchange *x, store *s, const char *ref, tokens_row *row,
                      char text[TOKENS_TEXT_SIZE], int *changed, rl_buf *why)
{
    (void)text, (void)changed;
    return tokens_show(s, ref, x->now, row, why);
}

static rl_err op_revoke(exchange *x, store *s, const char *ref, tokens_row *row,
                        char text[TOKENS_TEXT_SIZE], int *changed, rl_buf *why)
{
    (void)text;
    int was = 0;
    rl_err e = tokens_revoke(s, ref, x->now, row, &was, why);
    *changed = !was;
    return e;
}

/* The grace period of a rotate body: none, {}, or {"grace": seconds or a
 * duration}. RL_OK, or RL_BAD_JSON / RL_BAD_REQUEST with why said. */
static rl_err read_grace(exchange *x, uint64_t *grace, rl_buf *why)
{
    *grace = 0;
    if (x->req->body_len == 0)
        return RL_OK;
    json_t *body = prov_json_load(x->req->body, x->req->body_len, NULL);
    json_t *g = json_object_get(body, "grace");
    rl_err e = RL_OK;
    if (!json_is_object(body) || json_object_size(body) > (g ? 1u : 0u))
        e = body ? RL_BAD_REQUEST : RL_BAD_JSON;
    else if (json_is_integer(g) && json_integer_value(g) >= 0)
        *grace = (uint64_t)json_integer_value(g);
    else if (g && (!json_is_string(g) || tokens_parse_duration(json_string_value(g), grace)))
        e = RL_BAD_REQUEST;
    if (e != RL_OK)
        (void)rl_buf_puts(why, "Send no body, or {\"grace\": SECONDS or a duration such as "
                               "\"15m\", \"12h\", \"7d\"}: how long the old text keeps working.");
    json_decref(body);
    return e;
}

static rl_err op_rotate(exchange *x, store *s, const char *ref, tokens_row *row,
                        char text[TOKENS_TEXT_SIZE], int *changed, rl_buf *why)
{
    (void)changed;
    uint64_t grace;
    rl_err e = read_grace(x, &grace, why);
    return e == RL_OK ? tokens_rotate(s, ref, grace, x->now, row, text, why) : e;
}

typedef enum { AT_TOKENS, AT_TOKEN, AT_ROTATE } place;

static const struct tokens_route {
    place at;
    const char *method;
    op_fn *op; /* NULL: the list */
    int status;
    const char *did; /* logged: "admin API: <did> client token ID" */
} routes[] = {
    {AT_TOKENS, "GET", NULL, 200, NULL},
    {AT_TOKENS, "POST", op_edit, 201, "created"},
    {AT_TOKEN, "GET", op_show, 200, NULL},
    {AT_TOKEN, "PATCH", op_edit, 200, "updated"},
    {AT_TOKEN, "DELETE", op_revoke, 200, "revoked"},
    {AT_ROTATE, "POST", op_rotate, 200, "rotated"},
};

static const char *const allowed[] = {
    [AT_TOKENS] = "GET (list) or POST (create)",
    [AT_TOKEN] = "GET, PATCH (update) or DELETE (revoke)",
    [AT_ROTATE] = "POST",
};

static void run(exchange *x, store *s, const struct tokens_route *rt, const char *ref)
{
    tokens_row row;
    char text[TOKENS_TEXT_SIZE] = "";
    int changed = 1;
    rl_buf why;
    rl_buf_init(&why, 4096);
    rl_err e = rt->op(x, s, ref, &row, text, &changed, &why);
    if (e != RL_OK) {
        exchange_fail(x, e, rl_buf_error(&why) == RL_OK && why.len ? why.data : NULL);
    } else {
        if (rt->did && changed)
            rl_info("admin API: %s client token %s (\"%s\")", rt->did, row.t.id, row.t.name);
        send_token(x, rt->status, &row, text[0] ? text : NULL);
    }
    rl_secure_zero(text, sizeof text);
    rl_buf_release(&why);
}

/* Where path ("/tokens...") points, with the token's reference decoded
 * into ref (cap bytes); -1 when it is no place of this API. */
static int place_of(const char *path, char *ref, size_t cap)
{
    const char *p = path + strlen("/tokens");
    ref[0] = '\0';
    if (*p == '\0')
        return AT_TOKENS;
    size_t len = strcspn(++p, "/"), n = 0;
    int at = !strcmp(p + len, "/rotate") ? AT_ROTATE : p[len] == '\0' ? AT_TOKEN : -1;
    for (size_t i = 0; at >= 0 && i < len; i++) {
        int c = (unsigned char)p[i];
        if (c == '%' && (c = prov_pct_byte(p + i, len - i)) >= 0)
            i += 2;
        if (c <= 0 || n + 1 >= cap)
            return -1; /* a malformed escape, a NUL, or longer than any name */
        ref[n++] = (char)c;
    }
    ref[n] = '\0';
    return n || at == AT_TOKENS ? at : -1;
}

void admin_tokens_serve(exchange *x)
{
    char ref[TOKEN_NAME_MAX + 1];
    int at = place_of(x->rt.path, ref, sizeof ref);
    if (at < 0) {
        exchange_fail(x, RL_NO_ROUTE,
                      "Unknown admin API path: /relay/admin/api/tokens, /tokens/ID-OR-NAME and "
                      "/tokens/ID-OR-NAME/rotate are the tokens' paths.");
        return;
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if ((int)routes[i].at != at || strcmp(routes[i].method, x->req->method) != 0)
            continue;
        store *s = exchange_shared(x);
        if (s && routes[i].op)
            run(x, s, &routes[i], ref);
        else if (s)
            serve_list(x, s);
        else
            exchange_fail(x, RL_STORE,
                          "The store is unavailable, and the tokens are kept there: see "
                          "/relay/health.");
        return;
    }
    rl_buf msg;
    rl_buf_init(&msg, 1024);
    (void)rl_buf_printf(&msg, "Use %s here.", allowed[at]);
    exchange_fail(x, RL_METHOD, exchange_message(&msg));
    rl_buf_release(&msg);
}
