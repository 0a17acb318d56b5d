/*
 * t_engine_spend.c — Relay client tokens, held keys, budgets
 * (engine/spend.c), in-process through engine_harness.h: tokens put in the
 * relay's store, requests in the wire formats of engine_wires.h.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/auth.h"
#include "store/token.h"
#include "tests/unit/engine_harness.h"
#include "tests/unit/engine_wires.h"

/* ---- part 3: Relay client tokens, held keys, budgets (engine/spend.c) ---- */

/* A token in the relay's store, as relay-admin token create makes one:
 * its text in text, its record set up by the caller through t. */
static void token_make(char text[AUTH_TOKEN_LEN + 1], store_token *t, const char *name)
{
    memset(t, 0, sizeof *t);
    if (auth_token_new(text) != RL_OK)
        abort();
    auth_token_hash(text, t->hash);
    store_token_id_of(t->hash, t->id);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->created = (uint64_t)time(NULL) - 10;
}

static void token_put(const relay *r, const store_token *t)
{
    is_int(store_token_put(atomic_load(&r->e->store), t, TOKEN_CREATE), RL_OK,
           point(t->name, "the token is stored"));
}

/* Sends wire wi's plain request with the token in the header that format
 * puts keys in (or in ?key= for Gemini when in_query). */
static void token_send(const relay *r, const wire *wi, const char *token, const char *marker,
                       int in_query, client *c)
{
    json_t *headers = json_loads(wi->headers, 0, NULL);
    json_object_del(headers, "authorization");
    json_object_del(headers, "x-api-key");
    json_object_del(headers, "x-goog-api-key");
    char value[AUTH_TOKEN_LEN + 16], target[512];
    snprintf(target, sizeof target, "%s", wi->plain_target);
    if (wi->prov == &prov_openai || wi->prov == &prov_ollama) {
        snprintf(value, sizeof value, "Bearer %s", token);
        json_object_set_new(headers, "authorization", json_string(value));
    } else if (wi->prov == &prov_anthropic) {
        json_object_set_new(headers, "x-api-key", json_string(token));
    } else if (in_query) {
        snprintf(target, sizeof target, "%s?alt=json&key=%s", wi->plain_target, token);
    } else {
        json_object_set_new(headers, "x-goog-api-key", json_string(token));
    }
    char body[1024];
    snprintf(body, sizeof body, wi->plain_body, marker);
    handle(r, "POST", target, headers, body, strlen(body), c);
    json_decref(headers);
}

/* No byte of the client's token in what went upstream. */
static void expect_no_token_upstream(const char *label, const char *token)
{
    ok(fake.url && !strstr(fake.url, token), point(label, "the token is not in the upstream URL"));
    const char *name;
    json_t *v;
    int leaked = 0;
    json_object_foreach(fake.headers, name, v) leaked |=
        strstr(json_string_value(v), token) != NULL;
    ok(!leaked, point(label, "nor in any upstream header"));
}

static void test_held_keys(const relay *r)
{
    store_token t;
    char text[AUTH_TOKEN_LEN + 1];
    token_make(text, &t, "held-keys");
    token_put(r, &t);
    static const struct {
        size_t wire;
        int in_query;
        const char *header, *value;
    } cases[] = {
        {0, 0, "authorization", "Bearer sk-held-openai"},
        {1, 0, "x-api-key", "sk-held-anthropic"},
        {2, 0, "x-goog-api-key", "AIza-held-gemini"},
        {2, 1, "x-goog-api-key", "AIza-held-gemini"},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        const wire *wi = &wires[cases[i].wire];
        char label[128], marker[64];
        snprintf(label, sizeof label, "token on %s%s", wi->name,
                 cases[i].in_query ? " (?key=)" : "");
        snprintf(marker, sizeof marker, "held-%zu", i);
        json_t *reply = wire_reply(wi, 0, 2);
        fake_reset(reply, FAKE_REPLY);
        client c;
        client_init(&c, 0);
        token_send(r, wi, text, marker, cases[i].in_query, &c);
        is_int(c.status, 200, point(label, "served"));
        is_int(fake.calls, 1, point(label, "one upstream call"));
        is_str(json_string_value(json_object_get(fake.headers, cases[i].header)), cases[i].value,
               point(label, "the held key goes upstream in the provider's header"));
        expect_no_token_upstream(label, text);
        client_release(&c);
        json_decref(reply);
    }
    /* The cache is the token's: the same request with the same token is a
     * HIT; with the held key's owner's own key it is another entry. */
    fake_reset(NULL, FAKE_REPLY);
    client c;
    client_init(&c, 0);
    token_send(r, &wires[0], text, "held-0", 0, &c);
    is_str(json_string_value(json_object_get(c.headers, "x-cache")), "HIT",
           point("token, again", "answered from the token's cache"));
    client_release(&c);
    client_init(&c, 0);
    wire_send(r, &wires[0], 0, "held-0", "authorization", "Bearer sk-held-openai", &c);
    is_int(fake.calls, 1, point("the held key itself", "is another scope: a call upstream"));
    client_release(&c);
}

static void test_token_refusals(const relay *r)
{
    uint64_t now = (uint64_t)time(NULL);
    static const struct {
        const char *name;
        int stored, revoked, expired, upstream_list, model_list;
        int status;
    } cases[] = {
        {"unknown token", 0, 0, 0, 0, 0, 401},
        {"revoked token", 1, 1, 0, 0, 0, 401},
        {"expired token", 1, 0, 1, 0, 0, 401},
        {"token for another upstream", 1, 0, 0, 1, 0, 403},
        {"token for other models", 1, 0, 0, 0, 1, 403},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        store_token t;
        char text[AUTH_TOKEN_LEN + 1];
        token_make(text, &t, cases[i].name);
        if (cases[i].revoked)
            t.revoked = now - 1;
        if (cases[i].expired)
            t.expires = now - 1;
        if (cases[i].upstream_list) {
            t.n_upstreams = 1;
            snprintf(t.upstreams[0], sizeof t.upstreams[0], "anthropic");
        }
        if (cases[i].model_list) {
            t.n_models = 1;
            snprintf(t.models[0], sizeof t.models[0], "gpt-4.1*");
        }
        if (cases[i].stored)
            token_put(r, &t);
        fake_reset(NULL, FAKE_REPLY);
        client c;
        client_init(&c, 0);
        token_send(r, &wires[0], text, cases[i].name, 0, &c);
        is_int(c.status, cases[i].status, point(cases[i].name, "refused"));
        is_int(fake.calls, 0, point(cases[i].name, "nothing upstream"));
        json_t *doc = json_loadb(c.body.data ? c.body.data : "", c.body.len, 0, NULL);
        ok(json_is_object(json_object_get(doc, "error")),
           point(cases[i].name, "in OpenAI's shape"));
        json_decref(doc);
        client_release(&c);
    }
}

/* A rate limit of 2 requests a minute: a third upstream call is 429 with
 * Retry-After; answers from the cache count nothing. */
static void test_rate_limit(const relay *r)
{
    store_token t;
    char text[AUTH_TOKEN_LEN + 1];
    token_make(text, &t, "rpm-2");
    t.rpm = 2;
    t.tokens_day = 1000000;
    token_put(r, &t);
    json_t *reply = wire_reply(&wires[0], 0, 2);
    const char *markers[] = {"rpm-a", "rpm-a", "rpm-a", "rpm-b", "rpm-c"};
    const int want[] = {200, 200, 200, 200, 429};
    const int calls[] = {1, 0, 0, 1, 0};
    for (size_t i = 0; i < NELEM(markers); i++) {
        char label[64];
        snprintf(label, sizeof label, "rpm 2, request %zu (%s)", i + 1, markers[i]);
        fake_reset(reply, FAKE_REPLY);
        client c;
        client_init(&c, 0);
        token_send(r, &wires[0], text, markers[i], 0, &c);
        is_int(c.status, want[i], point(label, "status"));
        is_int(fake.calls, calls[i], point(label, "upstream calls"));
        const char *ra = json_string_value(json_object_get(c.headers, "retry-after"));
        const char *left =
            json_string_value(json_object_get(c.headers, "x-relay-budget-remaining"));
        if (want[i] == 429) {
            long wait = ra ? strtol(ra, NULL, 10) : 0;
            ok(wait >= 1 && wait <= 60, point(label, "Retry-After within the minute"));
            ok(c.body.data && strstr(c.body.data, "rpm-2") && strstr(c.body.data, "requests"),
               point(label, "the message names the token and the limit"));
        } else if (calls[i]) {
            ok(left && strncmp(left, "tokens=", 7) == 0,
               point(label, "X-Relay-Budget-Remaining on an answer a budget applies to"));
        }
        client_release(&c);
    }
    json_decref(reply);
}

static void run_spend(const char *tmp)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/spend", tmp);
    setenv("T_ENGINE_OPENAI_KEY", "sk-held-openai", 1);
    setenv("T_ENGINE_ANTHROPIC_KEY", "sk-held-anthropic", 1);
    setenv("T_ENGINE_GEMINI_KEY", "AIza-held-gemini", 1);
    json_t *upstreams = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "name", "anthropic", "type",
                                  "anthropic", "api_key_env", "T_ENGINE_ANTHROPIC_KEY", "name",
                                  "gemini", "type", "gemini", "api_key_env", "T_ENGINE_GEMINI_KEY");
    json_t *ini = json_pack("{s:{s:s}}", "upstream.openai", "api_key_env", "T_ENGINE_OPENAI_KEY");
    relay r;
    if (relay_start(&r, dir, upstreams, ini, "tokens and budgets") == 0) {
        test_held_keys(&r);
        test_token_refusals(&r);
        test_rate_limit(&r);
    }
    relay_stop(&r);
    json_decref(upstreams);
    json_decref(ini);
}

/* [cache] scope = shared with tokens in use ([auth] mode = both): two
 * valid tokens share an entry; a passed-through key, which Relay cannot
 * check, keeps its own scope. */
static void test_shared_between_tokens(const relay *r)
{
    store_token t1, t2;
    char a[AUTH_TOKEN_LEN + 1], b[AUTH_TOKEN_LEN + 1];
    token_make(a, &t1, "shared-a");
    token_make(b, &t2, "shared-b");
    token_put(r, &t1);
    token_put(r, &t2);
    const wire *wi = &wires[0];
    json_t *reply = wire_reply(wi, 0, 2);
    fake_reset(reply, FAKE_REPLY);
    client c;
    client_init(&c, 0);
    token_send(r, wi, a, "shared-1", 0, &c);
    is_str(json_string_value(json_object_get(c.headers, "x-cache")), "MISS",
           point("shared, token a", "a call upstream"));
    client_release(&c);
    client_init(&c, 0);
    token_send(r, wi, b, "shared-1", 0, &c);
    is_str(json_string_value(json_object_get(c.headers, "x-cache")), "HIT",
           point("shared, token b", "answered from token a's entry"));
    client_release(&c);
    client_init(&c, 0);
    wire_send(r, wi, 0, "shared-1", "authorization", "Bearer sk-anything", &c);
    is_str(json_string_value(json_object_get(c.headers, "x-cache")), "MISS",
           point("shared, a passed-through key", "its own scope: a call upstream"));
    client_release(&c);
    is_int(fake.calls, 2, point("shared", "two upstream calls in all"));
    json_decref(reply);
}

static void run_shared(const char *tmp)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/shared", tmp);
    setenv("T_ENGINE_OPENAI_KEY", "sk-held-openai", 1);
    json_t *ini = json_pack("{s:{s:s},s:{s:s,s:s}}", "upstream.openai", "api_key_env",
                            "T_ENGINE_OPENAI_KEY", "cache", "scope", "shared", "policy", "always");
    relay r;
    if (relay_start(&r, dir, NULL, ini, "scope = shared with tokens") == 0)
        test_shared_between_tokens(&r);
    relay_stop(&r);
    json_decref(ini);
}

int main(void)
{
    char tmp[] = "/tmp/t_engine_spend.XXXXXX";
    if (harness_begin(tmp) != 0)
        return 1;
    run_spend(tmp);
    run_shared(tmp);
    return harness_end(tmp);
}
