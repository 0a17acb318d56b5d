#include "engine/policy.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

/* Parses a delta-seconds value; -1 if it is not one. Values beyond LONG_MAX
 * saturate, as RFC 9111 asks for overly large delta-seconds. */
static long parse_seconds(const char *s, size_t len)
{
    if (len == 0)
        return -1;
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
        s++;
        len -= 2;
    }
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        if (v > (LONG_MAX - 9) / 10)
            return LONG_MAX;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int token_is(const char *tok, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(tok, name, len) == 0;
}

static void parse_cache_control(const char *v, cache_controls *cc)
{
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *name = v;
        while (*v && *v != '=' && *v != ',' && *v != ' ' && *v != '\t')
            v++;
        size_t nlen = (size_t)(v - name);
        while (*v == ' ' || *v == '\t')
            v++;
        const char *arg = NULL;
        size_t alen = 0;
        if (*v == '=') {
            v++;
            arg = v;
            while (*v && *v != ',')
                v++;
            alen = (size_t)(v - arg);
            while (alen && (arg[alen - 1] == ' ' || arg[alen - 1] == '\t'))
                alen--;
        }
        if (nlen == 0)
            continue;
        if (token_is(name, nlen, "no-cache"))
            cc->no_cache = 1;
        else if (token_is(name, nlen, "no-store"))
            cc->no_store = 1;
        else if (token_is(name, nlen, "only-if-cached"))
            cc->only_if_cached = 1;
        else if (token_is(name, nlen, "max-age")) {
            long s = arg ? parse_seconds(arg, alen) : -1;
            if (s >= 0)
                cc->max_age = s;
        } else if (token_is(name, nlen, "max-stale")) {
            long s = arg ? parse_seconds(arg, alen) : LONG_MAX;
            if (s >= 0)
                cc->max_stale = s;
        }
        /* other directives (no-transform, min-fresh, ...) do not apply */
    }
}

rl_err policy_parse(const char *cache_control, const char *x_relay_cache, const char *x_relay_ttl,
                    cache_controls *out, const char **why)
{
    memset(out, 0, sizeof *out);
    out->max_age = POLICY_UNSET;
    out->max_stale = POLICY_UNSET;
    out->force = -1;
    out->ttl = POLICY_UNSET;
    *why = NULL;

    if (cache_control)
        parse_cache_control(cache_control, out);
    if (x_relay_cache) {
        if (strcasecmp(x_relay_cache, "on") == 0)
            out->force = 1;
        else if (strcasecmp(x_relay_cache, "off") == 0)
            out->force = 0;
        else {
            *why = "X-Relay-Cache must be \"on\" or \"off\"";
            return RL_BAD_REQUEST;
        }
    }
    if (x_relay_ttl) {
        long s = parse_seconds(x_relay_ttl, strlen(x_relay_ttl));
        if (s <= 0) {
            *why = "X-Relay-TTL must be a positive number of seconds";
            return RL_BAD_REQUEST;
        }
        out->ttl = s;
    }
    return RL_OK;
}

policy_decision policy_decide(const upstream_config *up, const cache_controls *cc,
                              int deterministic, int stateful, int tools)
{
    policy_decision d = {0, 0, up->default_ttl};
    if (cc->ttl != POLICY_UNSET)
        d.ttl = cc->ttl;
    /* X-Relay-TTL: 99999999999999999999999 once stored an expiry nothing
     * could format: no answer is kept longer than max_ttl. */
    if (d.ttl > up->max_ttl)
        d.ttl = up->max_ttl;
    if (stateful)
        return d;

    int cacheable;
    if (cc->force >= 0)
        cacheable = cc->force;
    else if (tools && !up->cache_tools)
        cacheable = 0;
    else if (up->policy == CACHE_POLICY_ALWAYS)
        cacheable = 1;
    else if (up->policy == CACHE_POLICY_NEVER)
        cacheable = 0;
    else
        cacheable = deterministic;

    /* only-if-cached is a question to the cache: answer it even when the
     * request would not be cached by default, as long as it is not
     * explicitly switched off. */
    d.lookup = (cacheable || (cc->only_if_cached && cc->force != 0)) && !cc->no_cache;
    d.store = cacheable && !cc->no_store;
    return d;
}

entry_use policy_entry_use(const cache_controls *cc, const store_meta *meta, uint64_t now)
{
    uint64_t age = now > meta->created ? now - meta->created : 0;
    if (cc->max_age != POLICY_UNSET && age > (uint64_t)cc->max_age)
        return ENTRY_UNUSABLE;
    if (now < meta->expires)
        return ENTRY_FRESH;
    uint64_t stale_for = now - meta->expires;
    if (cc->max_stale != POLICY_UNSET && stale_for <= (uint64_t)cc->max_stale)
        return ENTRY_STALE_OK;
    return ENTRY_UNUSABLE;
}
