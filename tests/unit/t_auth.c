/* Unit tests for engine/auth: Relay client tokens (recognised wherever a
 * client puts a key, hashed, made fresh) and the keys Relay holds for
 * upstreams (read with the secret rules, refused when others may read
 * them, sent in each provider's own header). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/auth.h"
#include "store/base/rl_hex.h"
#include "tests/unit/tap.h"

#define ZERO_TOKEN "rly-0000000000000000000000000000000000000000000000000000000000000000"

static void test_tokens(void)
{
    ok(auth_token_of(ZERO_TOKEN) != NULL, "a token is recognised bare (x-api-key, ?key=)");
    is_str(auth_token_of("Bearer " ZERO_TOKEN), ZERO_TOKEN, "and after Bearer");
    is_str(auth_token_of("bearer   " ZERO_TOKEN), ZERO_TOKEN, "any case, any spaces");
    ok(!auth_token_of("sk-proj-abc"), "a provider key is not one");
    ok(!auth_token_of("rly-00"), "a short one is not one");
    ok(!auth_token_of(ZERO_TOKEN "0"), "a long one is not one");
    ok(!auth_token_of("rly-000000000000000000000000000000000000000000000000000000000000000g"),
       "a non-hex digit is not one");
    ok(!auth_token_of(NULL), "no credential is not one");

    uint8_t h[AUTH_HASH_LEN];
    char hex[2 * AUTH_HASH_LEN + 1];
    auth_token_hash(ZERO_TOKEN, h);
    rl_hex_encode(h, sizeof h, hex);
    /* python3 -c "import hashlib; print(hashlib.sha256(b'rly-' + b'0' * 64).hexdigest())" */
    is_str(hex, "15a640d78cf6419cff1d603313d848e4d871f9608e59bb270a9a1040423feb9d",
           "the hash is SHA-256 of the token's text");

    char a[AUTH_TOKEN_LEN + 1], b[AUTH_TOKEN_LEN + 1];
    is_int(auth_token_new(a), RL_OK, "a new token");
    is_int(auth_token_new(b), RL_OK, "another");
    ok(auth_token_of(a) && auth_token_of(b), "both have the token's form");
    ok(strcmp(a, b) != 0, "and differ");
}

static char dir[] = "/tmp/relay-t-auth-XXXXXX";

static const char *key_file(const char *name, const char *text, mode_t mode)
{
    static char path[8][128];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(p, mode) != 0)
        abort();
    return p;
}

static void test_held(void)
{
    if (!mkdtemp(dir))
        abort();
    relay_config cfg;
    memset(&cfg, 0, sizeof cfg);
    static const struct {
        const char *name;
        mode_t mode;
        const char *env;
        const char *want; /* NULL: none held */
    } ups[] = {
        {"private", 0600, NULL, "sk-held-private"},
        {"readonly", 0400, NULL, "sk-held-readonly"},
        {"group", 0640, NULL, NULL},
        {"world", 0644, NULL, NULL},
        {"env", 0, "T_AUTH_KEY", "sk-held-env"},
        {"unset", 0, "T_AUTH_UNSET", NULL},
        {"none", 0, NULL, NULL},
    };
    setenv("T_AUTH_KEY", "sk-held-env\n", 1);
    unsetenv("T_AUTH_UNSET");
    for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
        upstream_config *u = &cfg.upstreams[cfg.nupstreams++];
        u->name = (char *)ups[i].name;
        u->api_key_env = (char *)(ups[i].env ? ups[i].env : "");
        u->api_key_file = (char *)"";
        if (ups[i].mode) {
            char text[64];
            snprintf(text, sizeof text, "sk-held-%s\n", ups[i].name);
            u->api_key_file = (char *)key_file(ups[i].name, text, ups[i].mode);
        }
    }
    auth_held *h = auth_held_load(&cfg);
    ok(h != NULL, "held keys load");
    for (size_t i = 0; i < cfg.nupstreams; i++) {
        const char *why = NULL;
        const char *k = auth_held_key(h, &cfg.upstreams[i], &why);
        char what[128];
        snprintf(what, sizeof what, "%s: %s", ups[i].name, ups[i].want ? ups[i].want : "no key");
        is_str(k, ups[i].want, what);
        if (!ups[i].want)
            ok(why && !strstr(why, "sk-"), "... and why, naming no key");
    }
    upstream_config stranger = {.name = (char *)"private"};
    ok(!auth_held_key(h, &stranger, NULL), "an upstream of another configuration holds none");
    auth_held_free(h);
    for (size_t i = 0; i < cfg.nupstreams; i++)
        if (cfg.upstreams[i].api_key_file[0])
            unlink(cfg.upstreams[i].api_key_file);
    rmdir(dir);
}

static void test_forwarding(void)
{
    static const struct {
        upstream_type type;
        const char *name, *prefix;
    } want[] = {
        {UPSTREAM_TYPE_OPENAI, "authorization", "Bearer "},
        {UPSTREAM_TYPE_ANTHROPIC, "x-api-key", ""},
        {UPSTREAM_TYPE_AZURE, "api-key", ""},
        {UPSTREAM_TYPE_GEMINI, "x-goog-api-key", ""},
        {UPSTREAM_TYPE_OLLAMA, "authorization", "Bearer "},
        {UPSTREAM_TYPE_OPENAI_COMPATIBLE, "authorization", "Bearer "},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *name, *prefix;
        auth_key_header(want[i].type, &name, &prefix);
        is_str(name, want[i].name, "the provider's own key header");
        is_str(prefix, want[i].prefix, "... and its prefix");
    }
    ok(auth_is_credential_header("authorization") && auth_is_credential_header("x-api-key") &&
           auth_is_credential_header("x-goog-api-key") && auth_is_credential_header("api-key"),
       "every place a client puts a key is a credential header");
    ok(!auth_is_credential_header("anthropic-version") &&
           !auth_is_credential_header("content-type"),
       "others are not");
    static const struct {
        const char *in, *out;
    } queries[] = {
        {"", ""},
        {"key=rly-x", ""},
        {"alt=sse&key=rly-x", "alt=sse"},
        {"key=a&alt=sse&key=b&x", "alt=sse&x"},
        {"keys=1&akey=2", "keys=1&akey=2"},
        {"key", ""},
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        rl_buf b;
        rl_buf_init(&b, 0);
        auth_query_without_key(queries[i].in, &b);
        char what[128];
        snprintf(what, sizeof what, "?%s without key: ?%s", queries[i].in, queries[i].out);
        is_str(b.data ? b.data : "", queries[i].out, what);
        rl_buf_release(&b);
    }
}

int main(void)
{
    test_tokens();
    test_held();
    test_forwarding();
    return tap_done();
}
