/* Unit tests for engine/alias: every other gateway's spelling, mapped onto
 * Relay's controls, and LiteLLM's body field taken out of the body. */
#include <string.h>

#include "engine/alias.h"
#include "tests/unit/tap.h"

/* Headers for one case: NULL-terminated name/value pairs. */
typedef struct hdrs {
    const char *kv[16];
} hdrs;

static const char *lookup(const void *ctx, const char *name)
{
    const hdrs *h = ctx;
    for (size_t i = 0; h->kv[i]; i += 2)
        if (strcmp(h->kv[i], name) == 0)
            return h->kv[i + 1];
    return NULL;
}

/* cc as Relay's own headers leave it, then the aliases merged in. */
static rl_err controls(const char *cache_control, const char *x_relay_cache,
                       const char *x_relay_ttl, const hdrs *h, const alias_body *ab,
                       cache_controls *cc)
{
    const char *why;
    if (policy_parse(cache_control, x_relay_cache, x_relay_ttl, cc, &why) != RL_OK)
        return RL_INTERNAL;
    return alias_controls(lookup, h, ab, cc, &why);
}

static void test_headers(void)
{
    cache_controls cc;
    hdrs none = {{NULL}};
    is_int(controls(NULL, NULL, NULL, &none, NULL, &cc), RL_OK, "no aliases");
    ok(cc.force == -1 && cc.ttl == POLICY_UNSET && !cc.no_cache && !cc.no_store,
       "no aliases change nothing");

    /* Each spelling alone, and what it maps to. */
    static const struct {
        const char *name, *value;
        int force, no_cache;
        long ttl;
        rl_err err;
    } rows[] = {
        {"cf-aig-cache-ttl", "600", -1, 0, 600, RL_OK},
        {"cf-aig-cache-ttl", "0", -1, 0, POLICY_UNSET, RL_BAD_REQUEST},
        {"cf-aig-cache-ttl", "ten", -1, 0, POLICY_UNSET, RL_BAD_REQUEST},
        {"cf-aig-skip-cache", "true", 0, 0, POLICY_UNSET, RL_OK},
        {"cf-aig-skip-cache", "TRUE", 0, 0, POLICY_UNSET, RL_OK},
        {"cf-aig-skip-cache", "false", -1, 0, POLICY_UNSET, RL_OK},
        {"cf-aig-skip-cache", "1", -1, 0, POLICY_UNSET, RL_BAD_REQUEST},
        {"helicone-cache-enabled", "true", 1, 0, POLICY_UNSET, RL_OK},
        {"helicone-cache-enabled", "false", 0, 0, POLICY_UNSET, RL_OK},
        {"helicone-cache-enabled", "yes", -1, 0, POLICY_UNSET, RL_BAD_REQUEST},
        {"x-portkey-cache-force-refresh", "true", -1, 1, POLICY_UNSET, RL_OK},
        {"x-portkey-cache-force-refresh", "false", -1, 0, POLICY_UNSET, RL_OK},
        {"x-portkey-cache-force-refresh", "", -1, 0, POLICY_UNSET, RL_BAD_REQUEST},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        hdrs h = {{rows[i].name, rows[i].value, NULL}};
        char what[160];
        snprintf(what, sizeof what, "%s: %s", rows[i].name, rows[i].value);
        rl_err err = controls(NULL, NULL, NULL, &h, NULL, &cc);
        is_int(err, rows[i].err, what);
        if (err != RL_OK)
            continue;
        is_int(cc.force, rows[i].force, what);
        is_int(cc.no_cache, rows[i].no_cache, what);
        is_int(cc.ttl, rows[i].ttl, what);
    }

    /* Conflicts: Relay's own headers win; off beats on. */
    hdrs both = {{"cf-aig-cache-ttl", "600", "helicone-cache-enabled", "true", NULL}};
    controls(NULL, "off", "60", &both, NULL, &cc);
    is_int(cc.ttl, 60, "X-Relay-TTL wins over cf-aig-cache-ttl");
    is_int(cc.force, 0, "X-Relay-Cache wins over Helicone-Cache-Enabled");
    hdrs on_off = {{"helicone-cache-enabled", "true", "cf-aig-skip-cache", "true", NULL}};
    controls(NULL, NULL, NULL, &on_off, NULL, &cc);
    is_int(cc.force, 0, "skip beats enabled: the safe side");
}

static void test_body(void)
{
    rl_pool *pool = rl_pool_new();
    alias_body ab;
    const char *out, *why;
    size_t n;

    static const struct {
        const char *in, *out;
        const char *what;
    } strip[] = {
        {"{\"model\":\"m\",\"cache\":{\"no-cache\":true},\"messages\":[]}",
         "{\"model\":\"m\",\"messages\":[]}", "a middle member"},
        {"{\"cache\":{\"ttl\":5},\"model\":\"m\"}", "{\"model\":\"m\"}", "the first member"},
        {"{\"model\":\"m\", \"cache\": {\"ttl\":5} }\n", "{\"model\":\"m\" }\n", "the last member"},
        {"{\"cache\":{}}", "{}", "the only member"},
        {"{\"model\":\"m\",\"x\":\"\\\"cache\\\"\",\"cache\":{\"ttl\":1},\"y\":[1,{\"cache\":{}}]}",
         "{\"model\":\"m\",\"x\":\"\\\"cache\\\"\",\"y\":[1,{\"cache\":{}}]}",
         "quotes in strings and a nested \"cache\" are left alone"},
    };
    for (size_t i = 0; i < sizeof strip / sizeof strip[0]; i++) {
        is_int(alias_body_take(pool, strip[i].in, strlen(strip[i].in), &out, &n, &ab, &why), RL_OK,
               strip[i].what);
        ok(ab.present, strip[i].what);
        is_str(out, strip[i].out, strip[i].what);
        is_int(n, strlen(strip[i].out), strip[i].what);
    }

    static const char *untouched[] = {
        "{\"model\":\"m\",\"messages\":[]}",
        "{\"model\":\"m\",\"cache\":true}",       /* not LiteLLM's shape */
        "{\"model\":\"m\",\"cache_control\":{}}", /* Anthropic's */
        "{\"model\":\"m\",\"cache\":{\"ttl\":1}", /* not closed: the parser says so */
        "[{\"cache\":{}}]",
    };
    for (size_t i = 0; i < sizeof untouched / sizeof untouched[0]; i++) {
        const char *in = untouched[i];
        is_int(alias_body_take(pool, in, strlen(in), &out, &n, &ab, &why), RL_OK, in);
        ok(!ab.present && out == in && n == strlen(in), in);
    }

    const char *all = "{\"cache\":{\"no-cache\":true,\"no-store\":true,\"ttl\":90,\"s-maxage\":"
                      "30.5,\"namespace\":\"team-a\"},\"model\":\"m\"}";
    is_int(alias_body_take(pool, all, strlen(all), &out, &n, &ab, &why), RL_OK, "every control");
    ok(ab.no_cache && ab.no_store, "no-cache and no-store read");
    is_int(ab.ttl, 90, "ttl read");
    is_int(ab.s_maxage, 31, "s-maxage read (a fraction rounds up)");
    is_str(ab.ns, "team-a", "namespace read");

    cache_controls cc;
    hdrs none = {{NULL}};
    controls(NULL, NULL, NULL, &none, &ab, &cc);
    ok(cc.no_cache && cc.no_store, "body flags applied");
    is_int(cc.ttl, 90, "body ttl applied");
    is_int(cc.max_age, 31, "body s-maxage is max-age");
    hdrs cf = {{"cf-aig-cache-ttl", "120", NULL}};
    controls("max-age=5", NULL, NULL, &cf, &ab, &cc);
    is_int(cc.ttl, 120, "a header's TTL wins over the body's");
    is_int(cc.max_age, 5, "Cache-Control max-age wins over s-maxage");

    static const char *bad[] = {
        "{\"cache\":{\"ttl\":0}}",
        "{\"cache\":{\"ttl\":\"60\"}}",
        "{\"cache\":{\"no-cache\":1}}",
        "{\"cache\":{\"namespace\":\"\"}}",
        "{\"cache\":{\"namespace\":7}}",
        "{\"cache\":{\"s-maxage\":-3}}",
        "{\"cache\":{\"namespace\":\"a\\u0000b\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        is_int(alias_body_take(pool, bad[i], strlen(bad[i]), &out, &n, &ab, &why), RL_BAD_REQUEST,
               bad[i]);
        ok(why && strstr(why, "LiteLLM"), "the reason names the field");
    }
    rl_pool_free(pool);
}

static void test_namespace(void)
{
    rl_pool *pool = rl_pool_new();
    int nomem;
    alias_body ab = {0, 0, 0, POLICY_UNSET, POLICY_UNSET, NULL};
    hdrs relay = {{"x-relay-namespace", "team", NULL}};
    is_str(alias_namespace(pool, lookup, &relay, &ab, &nomem), "team",
           "X-Relay-Namespace alone is kept as it was (old keys match)");
    hdrs none = {{NULL}};
    ok(alias_namespace(pool, lookup, &none, &ab, &nomem) == NULL, "no namespace");
    hdrs seed = {{"helicone-cache-seed", "team", NULL}};
    const char *s1 = alias_namespace(pool, lookup, &seed, &ab, &nomem);
    is_str(s1, "\n0:4:team0:", "a seed alone");
    hdrs both = {{"x-relay-namespace", "a", "helicone-cache-seed", "b", NULL}};
    is_str(alias_namespace(pool, lookup, &both, &ab, &nomem), "\n1:a1:b0:", "both combined");
    ab.ns = "team";
    is_str(alias_namespace(pool, lookup, &none, &ab, &nomem), "\n0:0:4:team",
           "the body's namespace differs from a seed of the same name");
    rl_pool_free(pool);
}

int main(void)
{
    test_headers();
    test_body();
    test_namespace();
    return tap_done();
}
