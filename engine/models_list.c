/*
 * models_list.c — merged model lists (see models_list.h).
 *
 * What maps to what: each upstream's list is read in its own format
 * (list_wires: where the array is and which member names a model) into
 * ids; the answer is written in the client's shape (list_shapes):
 *   OpenAI    {"object":"list","data":[{"id","object":"model","created":0,"owned_by":UPSTREAM}]}
 *   Anthropic {"data":[{"type":"model","id","display_name","created_at"}],"has_more":false,
 *              "first_id","last_id"}
 *   Gemini    {"models":[{"name":"models/ID","displayName","supportedGenerationMethods"}]}
 * Only ids cross: the other fields of a model differ between providers
 * and are not carried (created is 0, created_at the epoch).
 *
 * Refused: nothing. An upstream whose list cannot be read is left out
 * (logged), except the path's own upstream, whose failure is the
 * client's answer (a 401 there most likely means the client's key).
 */
#include "engine/models_list.h"

#include <stdio.h>
#include <string.h>

#include "engine/auth.h"
#include "engine/ckey.h"
#include "engine/entry.h"
#include "engine/exchange.h"
#include "engine/models.h"
#include "engine/prov_json.h"
#include "engine/xlate.h"
#include "store/base/rl_log.h"

/* How long a fetched list is kept: as openai_inspect keeps a forwarded
 * one (lists change now and then), within the upstream's max_ttl. */
#define LIST_TTL 300
/* The most ids one answer lists: a cap on what an upstream can make
 * Relay hold (Ollama and compatible servers list whatever is installed). */
#define LIST_MAX_IDS 4096

/* ---- the upstreams' formats --------------------------------------------- */

typedef struct list_wire {
    upstream_type type;
    const char *path;   /* with the query that asks for everything in one page */
    const char *array;  /* the member holding the models */
    const char *member; /* the member naming one */
    const char *prefix; /* removed from that name ("models/" in Gemini's) */
} list_wire;

static const list_wire list_wires[] = {
    {UPSTREAM_TYPE_OPENAI, "/v1/models", "data", "id", ""},
    {UPSTREAM_TYPE_OPENAI_COMPATIBLE, "/v1/models", "data", "id", ""},
    {UPSTREAM_TYPE_AZURE, "/openai/v1/models", "data", "id", ""},
    {UPSTREAM_TYPE_ANTHROPIC, "/v1/models?limit=1000", "data", "id", ""},
    {UPSTREAM_TYPE_GEMINI, "/v1beta/models?pageSize=1000", "models", "name", "models/"},
    {UPSTREAM_TYPE_OLLAMA, "/api/tags", "models", "name", ""},
};

static const list_wire *wire_of(upstream_type type)
{
    for (size_t i = 0; i < sizeof list_wires / sizeof list_wires[0]; i++)
        if (list_wires[i].type == type)
            return &list_wires[i];
    return &list_wires[0];
}

/* ---- the client's shapes ------------------------------------------------ */

typedef struct listed {
    const char *id;
    const char *owner; /* the upstream's name */
} listed;

typedef json_t *(*render_fn)(const listed *ids, size_t n);

static json_t *render_openai(const listed *ids, size_t n)
{
    json_t *data = json_array();
    int failed = !data;
    for (size_t i = 0; i < n && !failed; i++)
        failed |=
            json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}", "id", ids[i].id, "object",
                                                  "model", "created", 0, "owned_by", ids[i].owner));
    return prov_json_check(json_pack("{s:s,s:o*}", "object", "list", "data", data), failed);
}

static json_t *render_anthropic(const listed *ids, size_t n)
{
    json_t *data = json_array();
    int failed = !data;
    for (size_t i = 0; i < n && !failed; i++)
        failed |= json_array_append_new(data, json_pack("{s:s,s:s,s:s,s:s}", "type", "model", "id",
                                                        ids[i].id, "display_name", ids[i].id,
                                                        "created_at", "1970-01-01T00:00:00Z"));
    return prov_json_check(json_pack("{s:o*,s:b,s:s?,s:s?}", "data", data, "has_more", 0,
                                     "first_id", n ? ids[0].id : NULL, "last_id",
                                     n ? ids[n - 1].id : NULL),
                           failed);
}

static json_t *render_gemini(const listed *ids, size_t n)
{
    json_t *models = json_array();
    int failed = !models;
    for (size_t i = 0; i < n && !failed; i++) {
        char name[512];
        snprintf(name, sizeof name, "models/%s", ids[i].id);
        failed |= json_array_append_new(
            models, json_pack("{s:s,s:s,s:[s,s]}", "name", name, "displayName", ids[i].id,
                              "supportedGenerationMethods", "generateContent", "countTokens"));
    }
    return prov_json_check(json_pack("{s:o*}", "models", models), failed);
}

typedef struct list_shape {
    const prov_ops *prov; /* the client's format */
    render_fn render;
} list_shape;

static const list_shape shape_openai = {&prov_openai, render_openai};
static const list_shape shape_anthropic = {&prov_anthropic, render_anthropic};
static const list_shape shape_gemini = {&prov_gemini, render_gemini};

/* The shape x asks for a list in, or NULL when x is no list request.
 * /v1/models is OpenAI's and Anthropic's: the SDKs tell them apart by
 * Anthropic's headers. */
static const list_shape *wanted_shape(const exchange *x)
{
    if (x->rt.kind != ROUTE_API || strcmp(x->req->method, "GET") != 0)
        return NULL;
    const char *p = x->rt.path;
    if (strcmp(p, "/v1beta/models") == 0)
        return &shape_gemini;
    if (strcmp(p, "/v1/models") != 0)
        return NULL;
    if (engine_header(x->req, "anthropic-version") || engine_header(x->req, "x-api-key"))
        return &shape_anthropic;
    return &shape_openai;
}

/* The upstream a list in format answers for first: the first speaking
 * it, else the first accepting it (as route.c routes a path), or NULL. */
static const upstream_config *base_upstream(const relay_config *cfg, const char *format)
{
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (strcmp(route_type_prov(cfg->upstreams[i].type)->format, format) == 0)
            return &cfg->upstreams[i];
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (models_serves(&cfg->upstreams[i], format))
            return &cfg->upstreams[i];
    return NULL;
}

int models_list_claim(exchange *x)
{
    const list_shape *shape = wanted_shape(x);
    /* The path's own upstream (its mount, or the first of its kind) when
     * it serves the shape; else, for /v1/models asked in Anthropic's shape
     * where an OpenAI upstream comes first, the shape's own first. */
    const upstream_config *base = !shape ? NULL
                                  : models_serves(x->rt.upstream, shape->prov->format)
                                      ? x->rt.upstream
                                      : base_upstream(x->cfg, shape->prov->format);
    /* Merged: some [models] line, or a list that is not the path
     * upstream's own as it is (another upstream's, or translated). */
    if (!base || (x->cfg->models.n == 0 && base == x->rt.upstream &&
                  route_type_prov(base->type) == shape->prov && x->prov == shape->prov))
        return 0;
    x->prov = shape->prov; /* its credential, and errors in the shape the client reads */
    x->rt.upstream = base;
    x->served_by = base->name;
    return 1;
}

/* ---- one upstream's list -------------------------------------------------- */

typedef struct fetch {
    int status;
    rl_buf body;
} fetch;

static int fetch_head(void *ctx, int status, const rl_header *h, size_t n)
{
    (void)h;
    (void)n;
    ((fetch *)ctx)->status = status;
    return 0;
}

static int fetch_data(void *ctx, const char *data, size_t len)
{
    return rl_buf_append(&((fetch *)ctx)->body, data, len) == RL_OK ? 0 : -1;
}

/* The key of up's list for x's scope: a Relay client token's, "shared",
 * or the client's key's (hashed from the key alone, so that one key
 * shares its lists whichever format's header brought it). */
static int list_key(const exchange *x, const upstream_config *up, const char *key,
                    uint8_t out[STORE_KEY_LEN])
{
    char scope[5 + 32 + 1];
    const char *s = x->key_scope ? x->key_scope : "";
    if (strncmp(s, "cred:", 5) == 0 && key) {
        ckey_credential_scope(key, scope);
        s = scope;
    }
    ckey_input in = {
        .format = route_type_prov(up->type)->format,
        .endpoint = "models.list",
        .upstream = up->name,
        .path_parts = "",
        .scope = s,
        .ns = "",
        .body = "",
    };
    return ckey_compute(&in, out) == RL_OK ? 0 : -1;
}

/* up's list into f->body (status in f->status): from the cache while
 * fresh, else from up (stored when 200). key: the key Relay holds for up,
 * or NULL to pass the client's credential on in up's header. *cached: 1
 * when it came from the cache. RL_OK, or the call's error. */
static rl_err fetch_list(exchange *x, const upstream_config *up, const char *key,
                         const char *credential, fetch *f, int *cached)
{
    *cached = 0;
    store *s = exchange_store(x);
    uint8_t k[STORE_KEY_LEN];
    credential = prov_credential_key(&x->preq, credential);
    int keyed = s && list_key(x, up, credential, k) == 0;
    if (keyed) {
        store_meta meta;
        rl_buf value;
        rl_buf_init(&value, 0);
        entry_view ev;
        if (store_cache_get(s, k, &meta, &value) == RL_OK && meta.expires > x->now &&
            entry_decode(value.data, value.len, &ev) == RL_OK &&
            rl_buf_append(&f->body, ev.body, ev.body_len) == RL_OK) {
            f->status = 200;
            *cached = 1;
            rl_buf_release(&value);
            return RL_OK;
        }
        rl_buf_release(&value);
    }
    const list_wire *w = wire_of(up->type);
    rl_buf url;
    rl_buf_init(&url, 0);
    rl_buf_printf(&url, "%s%s", up->base_url, w->path);
    rl_header h[2];
    size_t nh = 0;
    const char *name, *prefix;
    auth_key_header(up->type, &name, &prefix);
    char value[1024];
    const char *secret = key ? key : credential;
    if (secret) {
        snprintf(value, sizeof value, "%s%s", prefix, secret);
        h[nh++] = (rl_header){name, value};
    }
    if (up->type == UPSTREAM_TYPE_ANTHROPIC) {
        const char *v = engine_header(x->req, "anthropic-version");
        h[nh++] = (rl_header){"anthropic-version", v ? v : "2023-06-01"};
    }
    upstream_request ur = {
        .method = "GET",
        .url = url.data,
        .headers = h,
        .nheaders = nh,
        .connect_timeout = up->connect_timeout,
        .first_byte_timeout = up->first_byte_timeout,
        .idle_timeout = up->idle_timeout,
        .timeout = up->timeout,
    };
    upstream_handler handler = {f, fetch_head, fetch_data, NULL};
    int got_head = 0;
    rl_err err = rl_buf_error(&url);
    if (err == RL_OK)
        err = x->w->perform(x->w->upstream, &ur, &handler, &got_head);
    rl_buf_release(&url);
    x->called_upstream = 1;
    if (err == RL_OK && f->status == 200 && keyed && rl_buf_error(&f->body) == RL_OK) {
        long ttl = up->max_ttl < LIST_TTL ? up->max_ttl : LIST_TTL;
        store_meta meta = {.created = x->now, .expires = x->now + (uint64_t)ttl};
        entry_labels labels = {up->name, "", ""};
        rl_buf entry;
        rl_buf_init(&entry, 0);
        if (entry_encode(&entry, ENTRY_BODY, "application/json", &labels, NULL, f->body.data,
                         f->body.len) == RL_OK)
            store_cache_put(s, k, &meta, entry.data, entry.len); /* a miss next time at worst */
        rl_buf_release(&entry);
    }
    return err;
}

/* ---- the merge ------------------------------------------------------------ */

typedef struct merge {
    listed ids[LIST_MAX_IDS];
    size_t n;
} merge;

static int has_id(const merge *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->ids[i].id, id) == 0)
            return 1;
    return 0;
}

/* Adds id (copied into the pool) once; -1 when out of memory. */
static int add_id(exchange *x, merge *m, const char *id, const char *owner)
{
    if (!id[0] || has_id(m, id) || m->n == LIST_MAX_IDS)
        return 0;
    const char *copy = rl_pstrdup(x->req->pool, id);
    if (!copy)
        return -1;
    m->ids[m->n++] = (listed){copy, owner};
    return 0;
}

/* The ids of up's list body that route back to up: as they are, or, when
 * they route elsewhere as they are, with the prefix of the first "PREFIX/"
 * + star line that routes them to up (each of up's models listed once, by
 * a name that reaches it). */
static int add_upstream_ids(exchange *x, merge *m, const upstream_config *up, const fetch *f)
{
    const list_wire *w = wire_of(up->type);
    json_t *root = prov_json_load(f->body.data ? f->body.data : "", f->body.len, NULL);
    json_t *arr = json_object_get(root, w->array);
    size_t i;
    json_t *item;
    int rc = 0;
    json_array_foreach(arr, i, item)
    {
        const char *id = json_string_value(json_object_get(item, w->member));
        if (!id || rc != 0)
            continue;
        size_t pl = strlen(w->prefix);
        if (strncmp(id, w->prefix, pl) == 0)
            id += pl;
        models_choice c;
        models_route(x->cfg, id, x->rt.upstream, &c);
        if (c.upstream == up && (!c.rule || !c.rule->strip)) {
            rc = add_id(x, m, id, up->name);
            continue;
        }
        /* Reachable only by a prefix: listed once, by the first. */
        int found = 0;
        for (size_t r = 0; r < x->cfg->models.n && rc == 0 && !found; r++) {
            const model_route *mr = &x->cfg->models.routes[r];
            if (!mr->strip || &x->cfg->upstreams[mr->upstream] != up)
                continue;
            char full[512];
            snprintf(full, sizeof full, "%.*s%s", (int)mr->strip, mr->pattern, id);
            models_route(x->cfg, full, x->rt.upstream, &c);
            if (c.upstream == up) {
                rc = add_id(x, m, full, up->name);
                found = 1;
            }
        }
    }
    json_decref(root);
    return rc;
}

/* The upstreams listed, in order: the path's, then [models] targets, each
 * once, those that serve format. */
static size_t listed_upstreams(const exchange *x, const char *format, const upstream_config **out)
{
    size_t n = 0;
    out[n++] = x->rt.upstream;
    for (size_t r = 0; r < x->cfg->models.n; r++) {
        const upstream_config *up = &x->cfg->upstreams[x->cfg->models.routes[r].upstream];
        int seen = 0;
        for (size_t i = 0; i < n; i++)
            seen |= out[i] == up;
        if (!seen && models_serves(up, format) && n < CONFIG_MAX_UPSTREAMS)
            out[n++] = up;
    }
    return n;
}

/* The key Relay holds for up when x presented a Relay client token (NULL:
 * pass the client's own credential); *skip when the token may not use up. */
static const char *held_for(const exchange *x, const upstream_config *up, int *skip)
{
    *skip = 0;
    if (!x->spend.has_token)
        return NULL;
    const char *why = NULL;
    const char *key = store_token_allows(x->spend.token, up->name, NULL)
                          ? auth_held_key(x->w->e->held, up, &why)
                          : NULL;
    *skip = key == NULL;
    return key;
}

void models_list_serve(exchange *x, const char *credential)
{
    const list_shape *shape = wanted_shape(x);
    const upstream_config *ups[CONFIG_MAX_UPSTREAMS];
    size_t nups = listed_upstreams(x, shape->prov->format, ups);
    merge *m = rl_palloc(x->req->pool, sizeof *m);
    if (!m) {
        exchange_fail(x, RL_NOMEM, NULL);
        return;
    }
    m->n = 0;
    int all_cached = 1;
    for (size_t i = 0; i < nups; i++) {
        int skip;
        const char *key = held_for(x, ups[i], &skip);
        if (skip)
            continue;
        fetch f = {0};
        rl_buf_init(&f.body, x->cfg->cache.max_response);
        int cached = 0;
        rl_err err = fetch_list(x, ups[i], key, credential, &f, &cached);
        all_cached &= cached;
        int failed = err != RL_OK || f.status != 200;
        if (failed && i == 0) {
            /* The path's own upstream: its refusal is the client's answer. */
            rl_buf msg;
            rl_buf_init(&msg, 1024);
            rl_buf_printf(&msg, "[upstream.%s] did not give its model list (%s).", ups[i]->name,
                          err != RL_OK ? rl_err_text(err) : "an error status");
            exchange_fail(x, err != RL_OK ? err : xlate_status_err(f.status),
                          exchange_message(&msg));
            rl_buf_release(&msg);
            rl_buf_release(&f.body);
            return;
        }
        if (failed)
            rl_warn("model list: [upstream.%s] gave none (%s, status %d): left out", ups[i]->name,
                    rl_err_text(err), f.status);
        else if (add_upstream_ids(x, m, ups[i], &f) != 0) {
            rl_buf_release(&f.body);
            exchange_fail(x, RL_NOMEM, NULL);
            return;
        }
        rl_buf_release(&f.body);
    }
    for (size_t r = 0; r < x->cfg->models.n; r++) {
        const model_route *mr = &x->cfg->models.routes[r];
        const upstream_config *up = &x->cfg->upstreams[mr->upstream];
        if (!strchr(mr->pattern, '*') && models_serves(up, shape->prov->format) &&
            add_id(x, m, mr->pattern, up->name) != 0) {
            exchange_fail(x, RL_NOMEM, NULL);
            return;
        }
    }
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err err = prov_json_put(&out, "", shape->render(m->ids, m->n), JSON_COMPACT, "");
    if (err != RL_OK) {
        exchange_fail(x, err, NULL);
    } else {
        x->outcome = all_cached ? "HIT" : "MISS";
        if (exchange_start(x, 200, "application/json", x->outcome, -1, 0) == 0)
            exchange_write(x, out.data, out.len);
    }
    rl_buf_release(&out);
}
