/* Unit tests for engine/policy and engine/ckey. Time is passed in. */
#include <limits.h>
#include <string.h>

#include "engine/ckey.h"
#include "engine/policy.h"
#include "tests/unit/tap.h"

static upstream_config cfg_with(cache_policy p)
{
    upstream_config c;
    memset(&c, 0, sizeof c);
    c.policy = p;
    c.default_ttl = 600;
    c.max_ttl = 86400;
    c.cache_tools = 1;
    return c;
}

int main(void)
{
    cache_controls cc;
    const char *why;

    is_int(policy_parse(NULL, NULL, NULL, &cc, &why), RL_OK, "no controls parse");
    ok(!cc.no_cache && !cc.no_store && !cc.only_if_cached && cc.force == -1, "nothing set");
    is_int(cc.max_age, POLICY_UNSET, "max-age unset");

    policy_parse("No-Cache, max-age=30 ,max-stale , only-if-cached, no-store", NULL, NULL, &cc,
                 &why);
    ok(cc.no_cache && cc.no_store && cc.only_if_cached, "directives are case-insensitive, spaced");
    is_int(cc.max_age, 30, "max-age value");
    is_int(cc.max_stale, LONG_MAX, "bare max-stale accepts any staleness");
    policy_parse("max-stale=\"120\", max-age=abc", NULL, NULL, &cc, &why);
    is_int(cc.max_stale, 120, "quoted max-stale");
    is_int(cc.max_age, POLICY_UNSET, "a malformed max-age is ignored");

    is_int(policy_parse(NULL, "maybe", NULL, &cc, &why), RL_BAD_REQUEST,
           "bad X-Relay-Cache is refused");
    ok(why && strstr(why, "X-Relay-Cache"), "the reason names the header");
    is_int(policy_parse(NULL, NULL, "-5", &cc, &why), RL_BAD_REQUEST, "bad X-Relay-TTL is refused");
    is_int(policy_parse(NULL, "OFF", "90", &cc, &why), RL_OK, "valid X-Relay headers");
    is_int(cc.force, 0, "X-Relay-Cache: off");
    is_int(cc.ttl, 90, "X-Relay-TTL");

    upstream_config det = cfg_with(CACHE_POLICY_DETERMINISTIC);
    policy_parse(NULL, NULL, NULL, &cc, &why);
    policy_decision d = policy_decide(&det, &cc, 1, 0, 0);
    ok(d.lookup && d.store, "deterministic requests are cached");
    is_int(d.ttl, 600, "default ttl");
    d = policy_decide(&det, &cc, 0, 0, 0);
    ok(!d.lookup && !d.store, "non-deterministic requests are not");
    d = policy_decide(&det, &cc, 1, 1, 0);
    ok(!d.lookup && !d.store, "stateful requests never are");

    policy_parse(NULL, "on", "5", &cc, &why);
    d = policy_decide(&det, &cc, 0, 0, 0);
    ok(d.lookup && d.store, "X-Relay-Cache: on forces caching");
    is_int(d.ttl, 5, "X-Relay-TTL sets the ttl");
    d = policy_decide(&det, &cc, 0, 1, 0);
    ok(!d.lookup && !d.store, "but not for stateful requests");

    /* Once stored with an expiry no clock could show (relay-admin show
     * crashed on it): a TTL is cut to [cache] max_ttl. */
    is_int(policy_parse(NULL, NULL, "99999999999999999999999", &cc, &why), RL_OK,
           "a huge X-Relay-TTL parses (it saturates)");
    d = policy_decide(&det, &cc, 1, 0, 0);
    is_int(d.ttl, 86400, "... and is cut to max_ttl");
    policy_parse(NULL, NULL, "86401", &cc, &why);
    is_int(policy_decide(&det, &cc, 1, 0, 0).ttl, 86400, "one second over max_ttl is cut too");
    policy_parse(NULL, NULL, "86400", &cc, &why);
    is_int(policy_decide(&det, &cc, 1, 0, 0).ttl, 86400, "max_ttl itself is kept");

    policy_parse(NULL, "off", NULL, &cc, &why);
    d = policy_decide(&det, &cc, 1, 0, 0);
    ok(!d.lookup && !d.store, "X-Relay-Cache: off disables caching");

    upstream_config never = cfg_with(CACHE_POLICY_NEVER), always = cfg_with(CACHE_POLICY_ALWAYS);
    policy_parse(NULL, NULL, NULL, &cc, &why);
    ok(!policy_decide(&never, &cc, 1, 0, 0).store, "policy never");
    ok(policy_decide(&always, &cc, 0, 0, 0).store, "policy always");

    /* [upstream.X] cache_tools = off: a request that offers tools passes. */
    upstream_config notools = cfg_with(CACHE_POLICY_ALWAYS);
    notools.cache_tools = 0;
    d = policy_decide(&notools, &cc, 1, 0, 1);
    ok(!d.lookup && !d.store, "cache_tools = off: a request with tools is not cached");
    ok(policy_decide(&notools, &cc, 1, 0, 0).store, "cache_tools = off: one without tools is");
    ok(policy_decide(&always, &cc, 1, 0, 1).store, "cache_tools = on: tools are cached");
    policy_parse(NULL, "on", NULL, &cc, &why);
    ok(policy_decide(&notools, &cc, 0, 0, 1).store, "X-Relay-Cache: on still forces it");
    policy_parse(NULL, NULL, NULL, &cc, &why);
    /* The upstream's own TTLs. */
    upstream_config own = cfg_with(CACHE_POLICY_DETERMINISTIC);
    own.default_ttl = 30;
    own.max_ttl = 60;
    is_int(policy_decide(&own, &cc, 1, 0, 0).ttl, 30, "the upstream's default_ttl");
    policy_parse(NULL, NULL, "3600", &cc, &why);
    is_int(policy_decide(&own, &cc, 1, 0, 0).ttl, 60, "the upstream's max_ttl cuts X-Relay-TTL");

    policy_parse("no-cache", NULL, NULL, &cc, &why);
    d = policy_decide(&det, &cc, 1, 0, 0);
    ok(!d.lookup && d.store, "no-cache skips the lookup but stores");
    policy_parse("no-store", NULL, NULL, &cc, &why);
    d = policy_decide(&det, &cc, 1, 0, 0);
    ok(d.lookup && !d.store, "no-store looks up but does not store");
    policy_parse("only-if-cached", NULL, NULL, &cc, &why);
    ok(policy_decide(&det, &cc, 0, 0, 0).lookup,
       "only-if-cached looks up even uncacheable requests");

    store_meta m = {.created = 1000, .expires = 1600};
    policy_parse(NULL, NULL, NULL, &cc, &why);
    is_int(policy_entry_use(&cc, &m, 1500), ENTRY_FRESH, "fresh before expiry");
    is_int(policy_entry_use(&cc, &m, 1600), ENTRY_UNUSABLE, "unusable at expiry");
    policy_parse("max-age=100", NULL, NULL, &cc, &why);
    is_int(policy_entry_use(&cc, &m, 1100), ENTRY_FRESH, "max-age: young enough");
    is_int(policy_entry_use(&cc, &m, 1101), ENTRY_UNUSABLE, "max-age: too old");
    policy_parse("max-stale=50", NULL, NULL, &cc, &why);
    is_int(policy_entry_use(&cc, &m, 1650), ENTRY_STALE_OK, "max-stale: stale within bound");
    is_int(policy_entry_use(&cc, &m, 1651), ENTRY_UNUSABLE, "max-stale: beyond bound");

    /* keys */
    uint8_t k1[32], k2[32];
    ckey_input in = {"openai", "chat.completions", "openai", "", "shared", "", "{\"a\":1}", 7};
    ckey_compute(&in, k1);
    ckey_compute(&in, k2);
    ok(memcmp(k1, k2, 32) == 0, "same input, same key");
    ckey_input moved = in;
    moved.upstream = "openaic";
    moved.path_parts = "";
    moved.endpoint = "chat.completion";
    ckey_compute(&moved, k2);
    ok(memcmp(k1, k2, 32) != 0, "moving a byte between fields changes the key (length prefixes)");
    ckey_input ns = in;
    ns.ns = "team-a";
    ckey_compute(&ns, k2);
    ok(memcmp(k1, k2, 32) != 0, "the namespace is in the key");
    char s1[38], s2[38];
    ckey_credential_scope("Bearer sk-one", s1);
    ckey_credential_scope("Bearer sk-two", s2);
    ok(strcmp(s1, s2) != 0 && strncmp(s1, "cred:", 5) == 0, "credentials give distinct scopes");
    ok(strstr(s1, "sk-one") == NULL, "the scope does not contain the credential");
    char hex[17];
    ckey_hex16(k1, hex);
    is_int(strlen(hex), 16, "hex16 is 16 digits");
    return tap_done();
}
