#include "engine/auth.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "store/base/rl_secure.h"
#include "store/secret.h"

const char *auth_token_of(const char *credential)
{
    if (!credential)
        return NULL;
    if (strncasecmp(credential, "Bearer ", 7) == 0)
        for (credential += 7; *credential == ' '; credential++)
            ;
    if (strncmp(credential, AUTH_TOKEN_PREFIX, 4) != 0 || strlen(credential) != AUTH_TOKEN_LEN)
        return NULL;
    for (const char *p = credential + 4; *p; p++)
        if (rl_hex_digit((unsigned char)*p) < 0)
            return NULL;
    return credential;
}

void auth_token_hash(const char *token, uint8_t out[AUTH_HASH_LEN])
{
    SHA256((const unsigned char *)token, strlen(token), out);
}

rl_err auth_token_new(char out[AUTH_TOKEN_LEN + 1])
{
    uint8_t raw[32];
    rl_err err = rl_random(raw, sizeof raw);
    if (err != RL_OK)
        return err;
    memcpy(out, AUTH_TOKEN_PREFIX, 4);
    rl_hex_encode(raw, sizeof raw, out + 4);
    rl_secure_zero(raw, sizeof raw);
    return RL_OK;
}

/* ---- held keys ------------------------------------------------------------ */

typedef struct held_key {
    secret key;      /* empty when none */
    const char *why; /* static: why there is none, when one is configured */
} held_key;

struct auth_held {
    const relay_config *cfg; /* borrowed: the keys are in the order of its upstreams */
    size_t n;
    held_key keys[]; /* in the order of cfg->upstreams */
};

/* Reads up's key into k, logging what goes wrong (never the key). */
static void held_read(const upstream_config *up, held_key *k)
{
    rl_buf why;
    rl_buf_init(&why, 1024);
    rl_err err;
    if (up->api_key_file[0]) {
        err = secret_read(up->api_key_file, &k->key, &why);
        /* Group-readable is allowed for the store's key (a web server's
         * group); a provider key others could spend is not. */
        if (err == RL_OK && secret_access_of(k->key.mode) != SECRET_PRIVATE) {
            secret_release(&k->key);
            rl_buf_printf(&why, "%s may be read by its group: chmod 600 it", up->api_key_file);
            err = RL_FORBIDDEN;
        }
    } else {
        err = secret_from_env(up->api_key_env, &k->key, &why);
    }
    if (err != RL_OK) {
        k->why = "the key it holds for this upstream cannot be read (see its log)";
        rl_error("[upstream.%s] %s: %s: requests with a Relay token to it are refused", up->name,
                 up->api_key_file[0] ? "api_key_file" : "api_key_env",
                 rl_buf_error(&why) == RL_OK && why.data ? why.data : rl_err_text(err));
    }
    rl_buf_release(&why);
}

auth_held *auth_held_load(const relay_config *cfg)
{
    auth_held *h = calloc(1, sizeof *h + cfg->nupstreams * sizeof h->keys[0]);
    if (!h)
        return NULL;
    h->cfg = cfg;
    h->n = cfg->nupstreams;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const upstream_config *up = &cfg->upstreams[i];
        if (up->api_key_file[0] || up->api_key_env[0])
            held_read(up, &h->keys[i]);
        else
            h->keys[i].why = "no key is held for this upstream ([upstream.NAME] api_key_file)";
    }
    return h;
}

void auth_held_free(auth_held *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        secret_release(&h->keys[i].key);
    free(h);
}

const char *auth_held_key(const auth_held *h, const upstream_config *up, const char **why)
{
    /* up points into the configuration the keys were loaded from. */
    if (!h || up < h->cfg->upstreams || up >= h->cfg->upstreams + h->n) {
        if (why)
            *why = "no key is held for this upstream";
        return NULL;
    }
    const held_key *k = &h->keys[up - h->cfg->upstreams];
    if (why)
        *why = k->why;
    return k->key.data;
}

/* ---- what goes upstream ------------------------------------------------------- */

void auth_key_header(upstream_type type, const char **name, const char **prefix)
{
    static const struct {
        const char *name, *prefix;
    } headers[] = {
        [UPSTREAM_TYPE_OPENAI] = {"authorization", "Bearer "},
        [UPSTREAM_TYPE_ANTHROPIC] = {"x-api-key", ""},
        [UPSTREAM_TYPE_AZURE] = {"api-key", ""},
        [UPSTREAM_TYPE_GEMINI] = {"x-goog-api-key", ""},
        [UPSTREAM_TYPE_OLLAMA] = {"authorization", "Bearer "},
        [UPSTREAM_TYPE_OPENAI_COMPATIBLE] = {"authorization", "Bearer "},
    };
    *name = headers[type].name;
    *prefix = headers[type].prefix;
}

int auth_is_credential_header(const char *name)
{
    static const char *const names[] = {"authorization", "x-api-key", "x-goog-api-key", "api-key"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

rl_err auth_query_without_key(const char *query, rl_buf *out)
{
    const char *sep = "";
    for (const char *p = query ? query : ""; *p;) {
        size_t len = strcspn(p, "&");
        size_t nlen = strcspn(p, "=&");
        if (!(nlen == 3 && strncmp(p, "key", 3) == 0)) {
            rl_buf_printf(out, "%s%.*s", sep, (int)len, p);
            sep = "&";
        }
        p += len + (p[len] ? 1 : 0);
    }
    return rl_buf_error(out);
}
