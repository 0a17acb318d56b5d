/*
 * models.c — routing by model and `accepts` (see models.h).
 *
 * What maps to what: the client's model is matched against the [models]
 * patterns in file order (a glob, '*' any run); the first match names the
 * upstream (resolved at load time, engine/config.c), and a line "PREFIX/"
 * followed by '*'
 * sends the model without its "PREFIX/". No match keeps the path's route.
 *
 * What is refused: a request whose client format the final upstream
 * neither speaks nor lists in `accepts` (400 naming both), and a Relay
 * client token not allowed on the final upstream (403, as spend.c says for
 * the path's upstream).
 */
#include "engine/models.h"

#include <stdio.h>
#include <string.h>

#include "engine/auth.h"
#include "engine/exchange.h"
#include "engine/prov_json.h"
#include "engine/route.h"
#include "store/base/rl_log.h"

int models_glob(const char *pattern, const char *s)
{
    /* The classic greedy match with one backtrack point: a later '*'
     * supersedes an earlier one, so this is linear in practice and never
     * exponential, whatever the pattern. */
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pattern == '*') {
            star = pattern++;
            resume = s;
        } else if (*pattern == *s) {
            pattern++;
            s++;
        } else if (star) {
            pattern = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pattern == '*')
        pattern++;
    return *pattern == '\0';
}

void models_route(const relay_config *cfg, const char *model, const upstream_config *by_path,
                  models_choice *out)
{
    out->upstream = by_path;
    out->model = model;
    out->rule = NULL;
    if (!model || !model[0])
        return;
    for (size_t i = 0; i < cfg->models.n; i++) {
        const model_route *r = &cfg->models.routes[i];
        if (!models_glob(r->pattern, model))
            continue;
        out->upstream = &cfg->upstreams[r->upstream];
        out->model = model + r->strip;
        out->rule = r;
        return;
    }
}

/* prov_ops.format names, in wire_format order (config.c's accepts names). */
static const char *const format_names[WIRE_FORMATS] = {"openai", "anthropic", "gemini", "ollama"};

unsigned models_format_bit(const char *format)
{
    for (size_t f = 0; f < WIRE_FORMATS; f++)
        if (strcmp(format_names[f], format) == 0)
            return 1u << f;
    return 0;
}

int models_serves(const upstream_config *up, const char *format)
{
    return strcmp(route_type_prov(up->type)->format, format) == 0 ||
           (up->accepts & models_format_bit(format)) != 0;
}

/* ---- the request flow's hook ------------------------------------------ */

/* The model in a Gemini path ".../models/M:method" replaced by model, in
 * the pool; NULL when out of memory or when the path names no model. */
static const char *gemini_path_with(rl_pool *pool, const char *path, const char *model)
{
    const char *m = strstr(path, "/models/");
    const char *colon = m ? strchr(m + 8, ':') : NULL;
    if (!colon)
        return NULL;
    size_t head = (size_t)(m + 8 - path), n = head + strlen(model) + strlen(colon) + 1;
    char *s = rl_palloc(pool, n);
    if (s)
        snprintf(s, n, "%.*s%s%s", (int)head, path, model, colon);
    return s;
}

/* Sends x upstream with its body's top-level "model" set to model: x->req
 * becomes a pool copy holding the new body (what call.c sends), while
 * x->preq keeps the client's body, which the cache key and fuzzy matching
 * were and are made from. RL_OK when the body has no "model" to change. */
static rl_err body_with_model(exchange *x, const char *model)
{
    json_t *root = prov_json_load(x->req->body, x->req->body_len, NULL);
    if (!root)
        return RL_NOMEM; /* inspect parsed this body a moment ago */
    rl_err err = RL_OK;
    if (json_is_string(json_object_get(root, "model"))) {
        rl_buf out;
        rl_buf_init(&out, 0);
        int failed = json_object_set_new(root, "model", json_string(model));
        err = failed ? RL_NOMEM : prov_json_dump(root, JSON_COMPACT, &out);
        char *copy = err == RL_OK ? rl_palloc(x->req->pool, out.len + 1) : NULL;
        engine_request *req = copy ? rl_palloc(x->req->pool, sizeof *req) : NULL;
        if (err == RL_OK && !req)
            err = RL_NOMEM;
        if (req) {
            memcpy(copy, out.data, out.len);
            copy[out.len] = '\0';
            *req = *x->req;
            req->body = copy;
            req->body_len = out.len;
            x->req = req;
        }
        rl_buf_release(&out);
    }
    json_decref(root);
    return err;
}

/* A Relay client token was checked against the path's upstream
 * (spend_authorize); the model's upstream may differ in what the token
 * may use and in the key Relay holds. 0, or -1 when it answered. */
static int token_reroute(exchange *x, const upstream_config *up)
{
    if (!x->spend.has_token)
        return 0;
    if (!store_token_allows(x->spend.token, up->name, NULL)) {
        x->rejected = "forbidden_upstream";
        exchange_fail(x, RL_FORBIDDEN, "This Relay token may not use this API (upstream).");
        return -1;
    }
    const char *why = NULL;
    const char *held = auth_held_key(x->w->e->held, up, &why);
    if (!held) {
        rl_warn("token %s: refused: upstream %s: %s", x->spend.token->id, up->name, why);
        exchange_fail(x, RL_CONFIG,
                      "Relay holds no key for the upstream this model routes to, so it cannot "
                      "serve Relay tokens there (its administrator sets [upstream.NAME] "
                      "api_key_file).");
        return -1;
    }
    x->spend.held_key = held;
    return 0;
}

int models_reroute(exchange *x)
{
    models_choice c;
    models_route(x->cfg, x->info.model, x->rt.upstream, &c);
    const char *format = x->prov->format;
    if (!models_serves(c.upstream, format)) {
        rl_buf msg;
        rl_buf_init(&msg, 1024);
        rl_buf_printf(&msg,
                      "The model \"%s\" is served by [upstream.%s] (type %s), which does not "
                      "accept %s requests: add %s to its accepts in relay.ini to translate them.",
                      x->info.model, c.upstream->name, route_type_prov(c.upstream->type)->format,
                      format, format);
        exchange_fail(x, RL_BAD_REQUEST, exchange_message(&msg));
        rl_buf_release(&msg);
        return -1;
    }
    if (c.upstream != x->rt.upstream) {
        if (token_reroute(x, c.upstream) != 0)
            return -1;
        x->rt.upstream = c.upstream;
        x->served_by = c.upstream->name;
    }
    if (strcmp(c.model, x->info.model) == 0)
        return 0;
    x->upstream_model = rl_pstrdup(x->req->pool, c.model);
    if (!x->upstream_model) {
        exchange_fail(x, RL_NOMEM, NULL);
        return -1;
    }
    /* A translated request is written anew by the translator, which takes
     * the name from x->upstream_model; one sent as it came is edited. */
    if (strcmp(route_type_prov(c.upstream->type)->format, format) != 0)
        return 0;
    rl_err err = RL_OK;
    if (x->prov == &prov_gemini) {
        const char *path = gemini_path_with(x->req->pool, x->rt.path, c.model);
        if (path)
            x->rt.path = path; /* the path sent; preq.path keyed the client's */
        else
            err = RL_NOMEM;
    } else {
        err = body_with_model(x, c.model);
    }
    if (err != RL_OK) {
        exchange_fail(x, err, NULL);
        return -1;
    }
    return 0;
}
