#include "engine/config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/admission.h"
#include "engine/config_cluster.h"
#include "engine/config_values.h"
#include "engine/pricing.h"
#include "engine/retry.h"
#include "engine/route.h"
#include "store/base/rl_log.h"

/*
 * Every key is a row: where it lives in relay_config, how it is parsed and
 * which values are legal. Parsing, range checks, defaults and the textual
 * lookup for scripts are all done once, from this table.
 */
typedef enum {
    KEY_STR,
    KEY_PATH,   /* a file or directory, resolved against the ini's directory */
    KEY_LISTEN, /* a unix socket path (resolved the same way) or HOST:PORT */
    KEY_LONG,
    KEY_U64,
    KEY_ENUM,
    KEY_URL,     /* an http(s) URL with a host, no query, fragment or credentials */
    KEY_MOUNT,   /* "" or a path prefix such as /anthropic */
    KEY_ORIGINS, /* web origins for [cors]: scheme://host[:port], ... */
    KEY_FILE,    /* "" for none, or a file resolved like KEY_PATH */
    KEY_ENV,     /* "" for none, or an environment variable's name */
    KEY_FORMATS, /* client formats, "openai, gemini": bits 1u << wire_format in an unsigned */
} key_kind;

typedef struct config_key {
    const char *section; /* "upstream.*" rows apply to every [upstream.NAME] */
    const char *name;
    key_kind kind;
    size_t offset; /* into relay_config, or into upstream_config for upstream rows */
    const char *dflt;
    long long min, max;         /* numeric range */
    const char *const *choices; /* KEY_ENUM: values in enum order, NULL-terminated */
} config_key;

static const char *const policy_names[] = {"deterministic", "always", "never", NULL};
static const char *const scope_names[] = {"credential", "shared", NULL};
static const char *const upstream_type_names[] = {"openai", "anthropic",         "azure", "gemini",
                                                  "ollama", "openai-compatible", NULL};
/* base_url when a section gives none (NULL: it must give one). */
static const char *const upstream_default_urls[] = {"https://api.openai.com",
                                                    "https://api.anthropic.com",
                                                    NULL,
                                                    "https://generativelanguage.googleapis.com",
                                                    "http://127.0.0.1:11434",
                                                    NULL};
static const char *const coalesce_mode_names[] = {"cacheable", "all", "off", NULL};
static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const metrics_access_names[] = {"admin", "open", NULL};
static const char *const auth_mode_names[] = {"passthrough", "tokens", "both", NULL};
static const char *const off_on_names[] = {"off", "on", NULL};
static const char *const fuzzy_mode_names[] = {"inherit", "off", "on", NULL};
static const char *const off_auto_names[] = {"off", "auto", NULL};
static const char *const no_yes_names[] = {"no", "yes", NULL};
/* In cluster_ack order: repmgr's names for its policies, lower-case. */
static const char *const ack_policy_names[] = {"quorum",        "one",  "one_peer", "all",
                                               "all_available", "none", NULL};
/* In wire_format order: the names prov_ops.format gives the formats. */
static const char *const wire_format_names[] = {"openai", "anthropic", "gemini", "ollama", NULL};

#define RC(field) offsetof(relay_config, field)
#define UC(field) offsetof(upstream_config, field)
#define MiB (1024LL * 1024)

static const config_key config_keys[] = {
    {"fcgi", "listen", KEY_LISTEN, RC(fcgi.listen), "var/relay.sock", 0, 0, NULL},
    {"fcgi", "workers", KEY_LONG, RC(fcgi.workers), "4", 1, 256, NULL},
    {"fcgi", "threads", KEY_LONG, RC(fcgi.threads), "32", 1, 1024, NULL},
    {"fcgi", "max_threads", KEY_LONG, RC(fcgi.max_threads), "512", 1, 4096, NULL},
    {"fcgi", "max_body", KEY_U64, RC(fcgi.max_body), "8388608", 1024, 1024 * MiB, NULL},
    {"fcgi", "drain_timeout", KEY_LONG, RC(fcgi.drain_timeout), "30", 0, 3600, NULL},
    {"fcgi", "body_timeout", KEY_LONG, RC(fcgi.body_timeout), "60", 1, 3600, NULL},
    {"fcgi", "reserve_threads", KEY_LONG, RC(fcgi.reserve_threads), "4", 0, 1024, NULL},
    {"fcgi", "status_file", KEY_PATH, RC(fcgi.status_file), "var/relay.status", 0, 0, NULL},
    {"fcgi", "max_inflight", KEY_LONG, RC(fcgi.max_inflight), "0", 0, ADMISSION_SLOTS, NULL},
    {"fcgi", "queue_timeout", KEY_LONG, RC(fcgi.queue_timeout), "10", 0, 3600, NULL},
    {"store", "home", KEY_PATH, RC(store.home), "var/store", 0, 0, NULL},
    {"store", "key_file", KEY_PATH, RC(store.key_file), "var/relay.key", 0, 0, NULL},
    {"store", "key_env", KEY_STR, RC(store.key_env), "", 0, 0, NULL},
    {"store", "max_bytes", KEY_U64, RC(store.max_bytes), "1073741824", 0, LLONG_MAX, NULL},
    {"store", "max_entries", KEY_U64, RC(store.max_entries), "200000", 0, LLONG_MAX, NULL},
    {"store", "max_entry_bytes", KEY_U64, RC(store.max_entry_bytes), "16777216", 1024, 1024 * MiB,
     NULL},
    {"store", "cache_mb", KEY_LONG, RC(store.cache_mb), "64", 1, 65536, NULL},
    {"cache", "policy", KEY_ENUM, RC(cache.policy), "deterministic", 0, 0, policy_names},
    {"cache", "default_ttl", KEY_LONG, RC(cache.default_ttl), "86400", 1, 10L * 365 * 86400, NULL},
    {"cache", "max_ttl", KEY_LONG, RC(cache.max_ttl), "31536000", 1, 10L * 365 * 86400, NULL},
    {"cache", "scope", KEY_ENUM, RC(cache.scope), "credential", 0, 0, scope_names},
    {"cache", "stale_keep", KEY_LONG, RC(cache.stale_keep), "86400", 0, 10L * 365 * 86400, NULL},
    {"cache", "max_response", KEY_U64, RC(cache.max_response), "33554432", 1024, 1024 * MiB, NULL},
    {"fuzzy", "enabled", KEY_ENUM, RC(fuzzy.enabled), "off", 0, 0, off_on_names},
    {"fuzzy", "max_words", KEY_LONG, RC(fuzzy.max_words), "3", 1, 50, NULL},
    {"fuzzy", "min_similarity", KEY_LONG, RC(fuzzy.min_similarity), "97", 50, 100, NULL},
    {"coalesce", "mode", KEY_ENUM, RC(coalesce.mode), "cacheable", 0, 0, coalesce_mode_names},
    {"coalesce", "max_buffer", KEY_U64, RC(coalesce.max_buffer), "33554432", 1024, 1024 * MiB,
     NULL},
    {"coalesce", "max_wait", KEY_LONG, RC(coalesce.max_wait), "330", 1, 86400, NULL},
    {"upstream.*", "type", KEY_ENUM, UC(type), "openai", 0, 0, upstream_type_names},
    {"upstream.*", "base_url", KEY_URL, UC(base_url), "https://api.openai.com", 0, 0, NULL},
    {"upstream.*", "mount", KEY_MOUNT, UC(mount), "", 0, 0, NULL},
    {"upstream.*", "connect_timeout", KEY_LONG, UC(connect_timeout), "10", 1, 600, NULL},
    {"upstream.*", "first_byte_timeout", KEY_LONG, UC(first_byte_timeout), "0", 0, 86400, NULL},
    {"upstream.*", "idle_timeout", KEY_LONG, UC(idle_timeout), "300", 1, 86400, NULL},
    {"upstream.*", "timeout", KEY_LONG, UC(timeout), "900", 1, 86400, NULL},
    /* "0" here stands for "not set": [fcgi] max_inflight then (config_load). */
    {"upstream.*", "max_inflight", KEY_LONG, UC(max_inflight), "0", 0, ADMISSION_SLOTS, NULL},
    {"upstream.*", "client_timeout", KEY_LONG, UC(client_timeout), "0", 0, 86400, NULL},
    {"upstream.*", "finish_after_timeout", KEY_ENUM, UC(finish_after_timeout), "on", 0, 0,
     off_on_names},
    {"upstream.*", "api_key_file", KEY_FILE, UC(api_key_file), "", 0, 0, NULL},
    {"upstream.*", "api_key_env", KEY_ENV, UC(api_key_env), "", 0, 0, NULL},
    {"upstream.*", "retries", KEY_LONG, UC(retries), "2", 0, 10, NULL},
    {"upstream.*", "retry_max_wait", KEY_LONG, UC(retry_max_wait), "10", 0, 3600, NULL},
    {"upstream.*", "fallback", KEY_STR, UC(fallback), "", 0, 0, NULL},
    {"upstream.*", "breaker_failures", KEY_LONG, UC(breaker_failures), "5", 0, 1000000, NULL},
    {"upstream.*", "breaker_window", KEY_LONG, UC(breaker_window), "30", 1, 86400, NULL},
    {"upstream.*", "breaker_cooldown", KEY_LONG, UC(breaker_cooldown), "30", 1, 86400, NULL},
    {"upstream.*", "stale_if_error", KEY_ENUM, UC(stale_if_error), "on", 0, 0, off_on_names},
    {"upstream.*", "fuzzy", KEY_ENUM, UC(fuzzy), "inherit", 0, 0, fuzzy_mode_names},
    {"upstream.*", "prompt_cache", KEY_ENUM, UC(prompt_cache), "off", 0, 0, off_auto_names},
    /* These three stand for "not set" by default: [cache]'s then (config_load). */
    {"upstream.*", "policy", KEY_ENUM, UC(policy), "deterministic", 0, 0, policy_names},
    {"upstream.*", "default_ttl", KEY_LONG, UC(default_ttl), "86400", 1, 10L * 365 * 86400, NULL},
    {"upstream.*", "max_ttl", KEY_LONG, UC(max_ttl), "31536000", 1, 10L * 365 * 86400, NULL},
    {"upstream.*", "cache_tools", KEY_ENUM, UC(cache_tools), "on", 0, 0, off_on_names},
    {"upstream.*", "accepts", KEY_FORMATS, UC(accepts), "", 0, 0, wire_format_names},
    {"admin", "token_file", KEY_PATH, RC(admin.token_file), "var/admin.token", 0, 0, NULL},
    {"metrics", "access", KEY_ENUM, RC(metrics.access), "admin", 0, 0, metrics_access_names},
    {"auth", "mode", KEY_ENUM, RC(auth.mode), "both", 0, 0, auth_mode_names},
    {"cors", "allow_origins", KEY_ORIGINS, RC(cors.allow_origins), "", 0, 0, NULL},
    {"cors", "max_age", KEY_LONG, RC(cors.max_age), "600", 0, 86400, NULL},
    {"log", "level", KEY_ENUM, RC(log.level), "info", 0, 0, log_level_names},
    /* site and peers are checked together once the file is read
     * (check_cluster); home "" stands for "[store] home-cluster" (KEY_FILE:
     * a path resolved like KEY_PATH's, but "" allowed). */
    {"cluster", "site", KEY_STR, RC(cluster.site), "", 0, 0, NULL},
    {"cluster", "peers", KEY_STR, RC(cluster.peers), "", 0, 0, NULL},
    {"cluster", "home", KEY_FILE, RC(cluster.home), "", 0, 0, NULL},
    {"cluster", "create_group", KEY_ENUM, RC(cluster.create_group), "no", 0, 0, no_yes_names},
    {"cluster", "priority", KEY_LONG, RC(cluster.priority), "100", 0, 1000, NULL},
    {"cluster", "ack_policy", KEY_ENUM, RC(cluster.ack_policy), "quorum", 0, 0, ack_policy_names},
    {"cluster", "partition_grace", KEY_LONG, RC(cluster.partition_grace), "5", 0, 3600, NULL},
    {"cluster", "forward_timeout_ms", KEY_LONG, RC(cluster.forward_timeout_ms), "500", 10, 60000,
     NULL},
    {"cluster", "master_timeout_ms", KEY_LONG, RC(cluster.master_timeout_ms), "2000", 300, 600000,
     NULL},
    {"cluster", "allow_public", KEY_ENUM, RC(cluster.allow_public), "no", 0, 0, no_yes_names},
};
#define NKEYS (sizeof config_keys / sizeof config_keys[0])

/* KEY_ENUM rows store an int into enum-typed fields. */
_Static_assert(sizeof(cache_policy) == sizeof(int) && sizeof(upstream_type) == sizeof(int) &&
                   sizeof(coalesce_mode) == sizeof(int) && sizeof(metrics_access) == sizeof(int) &&
                   sizeof(auth_mode) == sizeof(int) && sizeof(fuzzy_mode) == sizeof(int) &&
                   sizeof(cluster_ack) == sizeof(int),
               "enum fields must be int-sized");

static int key_is_upstream(const config_key *k)
{
    return strcmp(k->section, "upstream.*") == 0;
}

typedef struct parse_state {
    relay_config *cfg;
    char *dir; /* directory of the ini file, for relative paths */
    rl_buf *why;
    int failed;
    unsigned char set[NKEYS][CONFIG_MAX_UPSTREAMS + 1]; /* seen, to reject duplicates */
} parse_state;

static void *field_ptr(relay_config *cfg, upstream_config *up, const config_key *k)
{
    return (char *)(key_is_upstream(k) ? (void *)up : (void *)cfg) + k->offset;
}

/* Makes path absolute against dir. Returns a malloc'ed string or NULL. */
static char *resolve_path(const char *dir, const char *value)
{
    if (value[0] == '/')
        return strdup(value);
    rl_buf b;
    rl_buf_init(&b, 0);
    if (rl_buf_printf(&b, "%s/%s", dir, value) != RL_OK) {
        rl_buf_release(&b);
        return NULL;
    }
    return rl_buf_steal(&b, NULL);
}

/* A KEY_FORMATS value: names from choices separated by commas and/or
 * spaces ("openai, gemini"; "" for none), into bits 1u << index. 0, or -1
 * for a name that is none of them. */
static int parse_formats(const char *value, const char *const *choices, unsigned *out)
{
    unsigned bits = 0;
    for (const char *p = value;;) {
        p += strspn(p, ", \t");
        size_t n = strcspn(p, ", \t");
        if (n == 0)
            break;
        int found = -1;
        for (int i = 0; choices[i] && found < 0; i++)
            if (strlen(choices[i]) == n && strncasecmp(p, choices[i], n) == 0)
                found = i;
        if (found < 0)
            return -1;
        bits |= 1u << found;
        p += n;
    }
    *out = bits;
    return 0;
}

/* The longest unix socket path (sockaddr_un.sun_path, 108 bytes with NUL). */
#define LISTEN_PATH_MAX 107

/* Parses one value into its field. Returns 0, or -1 with the reason in why. */
static int set_value(parse_state *st, upstream_config *up, const config_key *k, const char *value,
                     const char *where)
{
    void *p = field_ptr(st->cfg, up, k);
    const char *bad = NULL;
    char *s = NULL;
    switch (k->kind) {
    case KEY_STR:
        s = strdup(value);
        break;
    case KEY_URL:
        if ((bad = config_url_refusal(value)) != NULL)
            break;
        s = strdup(value);
        if (s) /* paths are appended to base_url: keep exactly one slash between */
            for (size_t n = strlen(s); n > 0 && s[n - 1] == '/'; n--)
                s[n - 1] = '\0';
        break;
    case KEY_MOUNT:
        if (value[0] && (value[0] != '/' || value[strlen(value) - 1] == '/' ||
                         route_target_refusal(value, ""))) {
            bad = "expected a path prefix such as /anthropic (no trailing slash, no '.' or '..' "
                  "segments)";
            break;
        }
        s = strdup(value);
        break;
    case KEY_FILE:
        s = value[0] ? resolve_path(st->dir, value) : strdup("");
        break;
    case KEY_ENV: {
        /* A name as a shell writes it, so that a typo is said, not read as
         * an unset variable at the first request. */
        size_t n = strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
        if (value[n] || (value[0] >= '0' && value[0] <= '9')) {
            bad = "expected an environment variable's name (letters, digits, _)";
            break;
        }
        s = strdup(value);
        break;
    }
    case KEY_ORIGINS:
        if (config_origins_parse(value, where, st->why, &s) != 0)
            return -1;
        break;
    case KEY_PATH:
    case KEY_LISTEN:
        if (!value[0]) {
            bad = "must not be empty";
            break;
        }
        if (k->kind == KEY_LISTEN && (bad = config_listen_refusal(value)) != NULL)
            break;
        if (k->kind == KEY_LISTEN && value[0] != '/' && strchr(value, ':'))
            s = strdup(value); /* HOST:PORT */
        else if ((s = resolve_path(st->dir, value)) && k->kind == KEY_LISTEN &&
                 strlen(s) > LISTEN_PATH_MAX) {
            bad = "the socket path is longer than a unix socket allows (107 bytes, resolved)";
            free(s);
            s = NULL;
        }
        break;
    case KEY_LONG:
    case KEY_U64: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < k->min || v > k->max) {
            rl_buf_printf(st->why, "%s: expected a whole number from %lld to %lld, got \"%s\"",
                          where, k->min, k->max, value);
            return -1;
        }
        if (k->kind == KEY_LONG)
            *(long *)p = (long)v;
        else
            *(uint64_t *)p = (uint64_t)v;
        return 0;
    }
    case KEY_FORMATS:
        if (parse_formats(value, k->choices, (unsigned *)p) == 0)
            return 0;
        rl_buf_printf(st->why,
                      "%s: expected a list of client formats, got \"%s\" (each one of:", where,
                      value);
        for (int i = 0; k->choices[i]; i++)
            rl_buf_printf(st->why, " %s", k->choices[i]);
        rl_buf_puts(st->why, ")");
        return -1;
    case KEY_ENUM:
        for (int i = 0; k->choices[i]; i++)
            if (strcasecmp(value, k->choices[i]) == 0) {
                *(int *)p = i; /* enum fields: see the static assert after the table */
                return 0;
            }
        rl_buf_printf(st->why, "%s: unknown value \"%s\" (expected one of:", where, value);
        for (int i = 0; k->choices[i]; i++)
            rl_buf_printf(st->why, " %s", k->choices[i]);
        rl_buf_puts(st->why, ")");
        return -1;
    }
    if (bad) {
        rl_buf_printf(st->why, "%s: %s, got \"%s\"", where, bad, value);
        return -1;
    }
    if (!s) {
        rl_buf_printf(st->why, "%s: out of memory", where);
        return -1;
    }
    free(*(char **)p);
    *(char **)p = s;
    return 0;
}

/* Finds or creates the upstream called name. */
static upstream_config *upstream_slot(parse_state *st, const char *name, size_t *index)
{
    relay_config *cfg = st->cfg;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0) {
            *index = i;
            return &cfg->upstreams[i];
        }
    if (cfg->nupstreams == CONFIG_MAX_UPSTREAMS)
        return NULL;
    upstream_config *up = &cfg->upstreams[cfg->nupstreams];
    up->name = strdup(name);
    if (!up->name)
        return NULL;
    for (size_t i = 0; i < NKEYS; i++)
        if (key_is_upstream(&config_keys[i]) &&
            set_value(st, up, &config_keys[i], config_keys[i].dflt, "default") != 0)
            return NULL;
    *index = cfg->nupstreams++;
    return up;
}

/* A [pricing] row: MODEL = INPUT OUTPUT [CACHED_INPUT [CACHE_WRITE]], USD
 * per million tokens (cached input and cache writes cost as input when not
 * given). Returns 0, or -1 with the reason in why. */
static int add_price(parse_state *st, const char *model, const char *value, const char *where)
{
    relay_config *cfg = st->cfg;
    for (size_t i = 0; i < cfg->nprices; i++)
        if (strcmp(cfg->prices[i].model, model) == 0) {
            rl_buf_printf(st->why, "%s: set twice", where);
            return -1;
        }
    if (cfg->nprices == CONFIG_MAX_PRICES) {
        rl_buf_printf(st->why, "%s: too many prices (at most %d)", where, CONFIG_MAX_PRICES);
        return -1;
    }
    double v[4] = {0, 0, -1, -1};
    int n = 0;
    const char *p = value;
    while (*p && n < 5) {
        char *end;
        errno = 0;
        double d = strtod(p, &end);
        if (end == p || errno || !isfinite(d) || d < 0 || d > 1e6 ||
            (*end && *end != ' ' && *end != '\t'))
            break;
        if (n < 4)
            v[n] = d;
        n++;
        for (p = end; *p == ' ' || *p == '\t'; p++)
            ;
    }
    if (*p || n < 2 || n > 4) {
        rl_buf_printf(st->why,
                      "%s: expected INPUT OUTPUT [CACHED_INPUT [CACHE_WRITE]], USD per million "
                      "tokens (e.g. 2.50 10.00 1.25, or 3 15 0.30 3.75), got \"%s\"",
                      where, value);
        return -1;
    }
    model_price *mp = &cfg->prices[cfg->nprices];
    if (!(mp->model = strdup(model))) {
        rl_buf_puts(st->why, "out of memory");
        return -1;
    }
    mp->input = v[0];
    mp->output = v[1];
    mp->cached_input = v[2] < 0 ? v[0] : v[2];
    mp->cache_write = v[3] < 0 ? v[0] : v[3];
    cfg->nprices++;
    return 0;
}

/* A [budget] line: default_max_output = N, or SCOPE.NAME.LIMIT = AMOUNT
 * with SCOPE upstream or model and LIMIT usd_day, usd_month (USD, in
 * decimal) or tokens_day. Returns 0, or -1 with the reason in why. */
static int add_budget(parse_state *st, const char *name, const char *value, const char *where)
{
    relay_config *cfg = st->cfg;
    if (strcmp(name, "default_max_output") == 0) {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < 1 || v > 10000000) {
            rl_buf_printf(st->why, "%s: expected a whole number from 1 to 10000000, got \"%s\"",
                          where, value);
            return -1;
        }
        cfg->budget.default_max_output = v;
        return 0;
    }
    static const struct {
        const char *suffix;
        size_t offset;
        int usd;
    } limits[] = {
        {".usd_day", offsetof(budget_limit, usd_day), 1},
        {".usd_month", offsetof(budget_limit, usd_month), 1},
        {".tokens_day", offsetof(budget_limit, tokens_day), 0},
    };
    budget_scope scope = strncmp(name, "upstream.", 9) == 0 ? BUDGET_UPSTREAM : BUDGET_MODEL;
    size_t skip = scope == BUDGET_UPSTREAM ? 9 : 6;
    size_t n = strlen(name);
    size_t li = sizeof limits / sizeof limits[0];
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        size_t sl = strlen(limits[i].suffix);
        if (n > skip + sl && strcmp(name + n - sl, limits[i].suffix) == 0)
            li = i;
    }
    if ((scope == BUDGET_MODEL && strncmp(name, "model.", 6) != 0) ||
        li == sizeof limits / sizeof limits[0]) {
        rl_buf_printf(st->why,
                      "%s: expected default_max_output, upstream.NAME.LIMIT or model.NAME.LIMIT "
                      "with LIMIT usd_day, usd_month or tokens_day",
                      where);
        return -1;
    }
    size_t nlen = n - skip - strlen(limits[li].suffix);
    uint64_t amount;
    char *end;
    errno = 0;
    if (limits[li].usd ? pricing_parse_usd(value, &amount) != 0
                       : ((amount = strtoull(value, &end, 10)),
                          errno || end == value || *end || value[0] == '-')) {
        rl_buf_printf(st->why, "%s: expected %s, got \"%s\"", where,
                      limits[li].usd ? "an amount of USD (e.g. 50 or 12.50)" : "a whole number",
                      value);
        return -1;
    }
    budget_limit *b = NULL;
    for (size_t i = 0; i < cfg->budget.nlimits && !b; i++)
        if (cfg->budget.limits[i].scope == scope && strlen(cfg->budget.limits[i].name) == nlen &&
            strncmp(cfg->budget.limits[i].name, name + skip, nlen) == 0)
            b = &cfg->budget.limits[i];
    if (!b) {
        if (cfg->budget.nlimits == CONFIG_MAX_BUDGETS) {
            rl_buf_printf(st->why, "%s: too many budgets (at most %d)", where, CONFIG_MAX_BUDGETS);
            return -1;
        }
        b = &cfg->budget.limits[cfg->budget.nlimits];
        if (!(b->name = strndup(name + skip, nlen))) {
            rl_buf_puts(st->why, "out of memory");
            return -1;
        }
        b->scope = scope;
        cfg->budget.nlimits++;
    }
    uint64_t *field = (uint64_t *)((char *)b + limits[li].offset);
    if (*field) {
        rl_buf_printf(st->why, "%s: set twice", where);
        return -1;
    }
    *field = amount;
    return 0;
}

/* A [models] line: PATTERN = UPSTREAM-OR-TYPE, kept in file order (the
 * first match wins, so order is the writer's); the target is resolved once
 * every section is read (check_models). 0, or -1 with the reason. */
static int add_model_route(parse_state *st, const char *pattern, const char *target,
                           const char *where)
{
    relay_config *cfg = st->cfg;
    for (size_t i = 0; i < cfg->models.n; i++)
        if (strcmp(cfg->models.routes[i].pattern, pattern) == 0) {
            rl_buf_printf(st->why, "%s: set twice", where);
            return -1;
        }
    if (cfg->models.n == CONFIG_MAX_MODEL_ROUTES) {
        rl_buf_printf(st->why, "%s: too many [models] lines (at most %d)", where,
                      CONFIG_MAX_MODEL_ROUTES);
        return -1;
    }
    if (!target[0]) {
        rl_buf_printf(st->why, "%s: expected an [upstream.NAME]'s name or an upstream type", where);
        return -1;
    }
    model_route *r = &cfg->models.routes[cfg->models.n];
    r->pattern = strdup(pattern);
    r->target = strdup(target);
    if (!r->pattern || !r->target) {
        free(r->pattern);
        free(r->target);
        r->pattern = r->target = NULL;
        rl_buf_puts(st->why, "out of memory");
        return -1;
    }
    /* "PREFIX/" and a star names a family by a prefix of Relay's own (local/llama3):
     * the upstream knows the model without it. */
    size_t n = strlen(pattern);
    if (n > 2 && strcmp(pattern + n - 2, "/*") == 0 && !memchr(pattern, '*', n - 2))
        r->strip = n - 1;
    cfg->models.n++;
    return 0;
}

static int on_ini_value(void *user, const char *section, const char *name, const char *value)
{
    parse_state *st = user;
    if (st->failed)
        return 1; /* report only the first error */
    char where[256];
    /* Debian's libinih does not pass line numbers to the handler. */
    snprintf(where, sizeof where, "%s: [%s] %s", st->cfg->path, section, name);

    if (strcmp(section, "pricing") == 0) {
        if (add_price(st, name, value, where) != 0)
            goto fail;
        return 1;
    }
    if (strcmp(section, "budget") == 0) {
        if (add_budget(st, name, value, where) != 0)
            goto fail;
        return 1;
    }
    if (strcmp(section, "models") == 0) {
        if (add_model_route(st, name, value, where) != 0)
            goto fail;
        return 1;
    }
    upstream_config *up = NULL;
    size_t up_index = CONFIG_MAX_UPSTREAMS;
    int is_upstream = strncmp(section, "upstream.", 9) == 0;
    if (is_upstream) {
        const char *uname = section + 9;
        if (!uname[0] || strlen(uname) > 64) {
            rl_buf_printf(st->why, "%s: an upstream section is named [upstream.NAME]", where);
            goto fail;
        }
        up = upstream_slot(st, uname, &up_index);
        if (!up) {
            rl_buf_printf(st->why, "%s: too many upstreams (at most %d)", where,
                          CONFIG_MAX_UPSTREAMS);
            goto fail;
        }
    }
    for (size_t i = 0; i < NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (strcmp(k->name, name) != 0 ||
            (is_upstream ? !key_is_upstream(k) : strcmp(k->section, section) != 0))
            continue;
        if (st->set[i][is_upstream ? up_index : CONFIG_MAX_UPSTREAMS]++) {
            rl_buf_printf(st->why, "%s: set twice", where);
            goto fail;
        }
        if (set_value(st, up, k, value, where) != 0)
            goto fail;
        return 1;
    }
    rl_buf_printf(st->why, "%s: unknown key", where);
fail:
    st->failed = 1;
    return 0;
}

/* The index of the key row called name in section. */
static size_t key_index(const char *section, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].name, name) == 0)
            return i;
    return NKEYS;
}

/* [upstream.X] policy, default_ttl and max_ttl: [cache]'s where the
 * section leaves them out (a section's own TTLs may go past [cache]'s: the
 * upstream's is the more specific word); default_ttl never above max_ttl.
 * 0, or -1 with the reason in st->why. */
static int inherit_cache_policy(parse_state *st)
{
    relay_config *cfg = st->cfg;
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        upstream_config *up = &cfg->upstreams[u];
        if (!st->set[key_index("upstream.*", "policy")][u])
            up->policy = cfg->cache.policy;
        if (!st->set[key_index("upstream.*", "default_ttl")][u])
            up->default_ttl = cfg->cache.default_ttl;
        if (!st->set[key_index("upstream.*", "max_ttl")][u])
            up->max_ttl = cfg->cache.max_ttl;
        if (up->default_ttl > up->max_ttl) {
            rl_buf_printf(st->why, "%s: [upstream.%s] default_ttl: %ld is above max_ttl (%ld)",
                          cfg->path, up->name, up->default_ttl, up->max_ttl);
            return -1;
        }
    }
    return 0;
}

/* After parsing: base_url defaults by type, mounts distinct, timeouts
 * within the whole call's. 0, or -1 with the reason in st->why. */
static int check_upstreams(parse_state *st)
{
    relay_config *cfg = st->cfg;
    size_t url_key = key_index("upstream.*", "base_url");
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        upstream_config *up = &cfg->upstreams[u];
        if (!st->set[url_key][u]) {
            const char *url = upstream_default_urls[up->type];
            if (!url) {
                rl_buf_printf(st->why, "%s: [upstream.%s] base_url: required for type = %s",
                              cfg->path, up->name, upstream_type_names[up->type]);
                return -1;
            }
            if (set_value(st, up, &config_keys[url_key], url, "default") != 0)
                return -1;
        }
        if (up->api_key_file[0] && up->api_key_env[0]) {
            rl_buf_printf(st->why,
                          "%s: [upstream.%s] api_key_file and api_key_env: set one of them, not "
                          "both",
                          cfg->path, up->name);
            return -1;
        }
        size_t n = strlen(up->mount);
        /* 0: idle_timeout's, which bounded the wait for the headers before
         * first_byte_timeout existed, so older configs keep their meaning. */
        if (up->first_byte_timeout == 0)
            up->first_byte_timeout = up->idle_timeout;
        static const struct {
            size_t offset;
            const char *name;
        } within_timeout[] = {{UC(connect_timeout), "connect_timeout"},
                              {UC(idle_timeout), "idle_timeout"},
                              {UC(first_byte_timeout), "first_byte_timeout"}};
        /* client_timeout is not checked: the whole call's bound applies
         * to it anyway (the client gets the call's own 504 then). */
        for (size_t t = 0; t < sizeof within_timeout / sizeof within_timeout[0]; t++) {
            long v = *(const long *)((const char *)up + within_timeout[t].offset);
            if (v > up->timeout) {
                rl_buf_printf(st->why,
                              "%s: [upstream.%s] %s: %ld is longer than timeout (%ld), the bound "
                              "on the whole call",
                              cfg->path, up->name, within_timeout[t].name, v, up->timeout);
                return -1;
            }
        }
        for (size_t v = 0; v < u; v++)
            if (n && strcmp(cfg->upstreams[v].mount, up->mount) == 0) {
                rl_buf_printf(st->why, "%s: [upstream.%s] mount: %s is already [upstream.%s]'s",
                              cfg->path, up->name, up->mount, cfg->upstreams[v].name);
                return -1;
            }
    }
    return 0;
}

/* [upstream.X] fallback: names another upstream of X's wire format, and
 * following fallbacks from X never comes back to an upstream already seen
 * (the engine takes one hop per request; a loop would still say the
 * configuration is not what its writer meant). 0, or -1 with the reason. */
static int check_fallbacks(parse_state *st)
{
    relay_config *cfg = st->cfg;
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const upstream_config *up = &cfg->upstreams[u];
        if (!up->fallback[0])
            continue;
        const upstream_config *to = retry_pick_upstream(cfg, up, 1, 0);
        if (!to) {
            rl_buf_printf(st->why, "%s: [upstream.%s] fallback: there is no [upstream.%s]",
                          cfg->path, up->name, up->fallback);
            return -1;
        }
        if (!retry_same_wire(up->type, to->type)) {
            rl_buf_printf(st->why,
                          "%s: [upstream.%s] fallback: [upstream.%s] is of type %s, not %s: a "
                          "fallback must take the same requests",
                          cfg->path, up->name, to->name, upstream_type_names[to->type],
                          upstream_type_names[up->type]);
            return -1;
        }
        /* A chain longer than the number of upstreams has looped. */
        const upstream_config *at = up;
        for (size_t hop = 0; at && at->fallback[0]; hop++) {
            at = retry_pick_upstream(cfg, at, 1, 0);
            if (at == up || hop > cfg->nupstreams) {
                rl_buf_printf(st->why, "%s: [upstream.%s] fallback: the chain of fallbacks loops",
                              cfg->path, up->name);
                return -1;
            }
        }
    }
    return 0;
}

/* [models] targets: an [upstream.NAME] first, else a type, meaning the
 * first upstream of that type in the file (a name wins: a section called
 * "openai" of type openai-compatible is what its writer means by it). 0,
 * or -1 with the reason naming the line. */
static int check_models(parse_state *st)
{
    relay_config *cfg = st->cfg;
    for (size_t i = 0; i < cfg->models.n; i++) {
        model_route *r = &cfg->models.routes[i];
        size_t found = cfg->nupstreams;
        for (size_t u = 0; u < cfg->nupstreams && found == cfg->nupstreams; u++)
            if (strcmp(cfg->upstreams[u].name, r->target) == 0)
                found = u;
        for (int t = 0; upstream_type_names[t] && found == cfg->nupstreams; t++)
            if (strcasecmp(upstream_type_names[t], r->target) == 0)
                for (size_t u = 0; u < cfg->nupstreams && found == cfg->nupstreams; u++)
                    if ((int)cfg->upstreams[u].type == t)
                        found = u;
        if (found == cfg->nupstreams) {
            rl_buf_printf(st->why,
                          "%s: [models] %s = %s: there is no [upstream.%s] and no upstream of "
                          "type %s",
                          cfg->path, r->pattern, r->target, r->target, r->target);
            return -1;
        }
        r->upstream = found;
    }
    return 0;
}

rl_err config_load(const char *path, relay_config **out, rl_buf *why)
{
    rl_err err = RL_NOMEM;
    parse_state st;
    memset(&st, 0, sizeof st);
    st.why = why;
    relay_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return RL_NOMEM;
    st.cfg = cfg;

    cfg->path = realpath(path, NULL);
    if (!cfg->path) {
        rl_buf_printf(why, "%s: %s", path, strerror(errno));
        err = RL_IO;
        goto out;
    }
    st.dir = strdup(cfg->path);
    if (!st.dir)
        goto out;
    char *slash = strrchr(st.dir, '/');
    if (slash == st.dir)
        slash[1] = '\0';
    else
        *slash = '\0';

    for (size_t i = 0; i < NKEYS; i++)
        if (!key_is_upstream(&config_keys[i]) &&
            set_value(&st, NULL, &config_keys[i], config_keys[i].dflt, "default") != 0)
            goto out;
    /* Outside the key table: [budget] also holds budgets of any name. */
    cfg->budget.default_max_output = 4096;

    /* Debian's libinih makes its compile-time limits runtime globals; the
     * default 200-byte line would silently truncate long values. */
    ini_max_line = 4096;
    int rc = ini_parse(path, on_ini_value, &st);
    if (rc < 0) {
        rl_buf_printf(why, "%s: cannot read the file", path);
        err = RL_IO;
        goto out;
    }
    if (st.failed) {
        err = RL_CONFIG;
        goto out;
    }
    if (rc > 0) {
        rl_buf_printf(why, "%s:%d: syntax error", path, rc);
        err = RL_CONFIG;
        goto out;
    }
    if (cfg->nupstreams == 0) {
        rl_buf_printf(why, "%s: no [upstream.NAME] section: Relay has nowhere to send requests",
                      path);
        err = RL_CONFIG;
        goto out;
    }
    if (check_upstreams(&st) != 0 || check_fallbacks(&st) != 0 || check_models(&st) != 0) {
        err = RL_CONFIG;
        goto out;
    }
    for (size_t i = 0; i < cfg->budget.nlimits; i++) {
        const budget_limit *b = &cfg->budget.limits[i];
        int known = b->scope == BUDGET_MODEL;
        for (size_t u = 0; u < cfg->nupstreams && !known; u++)
            known = strcmp(cfg->upstreams[u].name, b->name) == 0;
        if (!known) {
            rl_buf_printf(why, "%s: [budget] upstream.%s: there is no [upstream.%s]", cfg->path,
                          b->name, b->name);
            err = RL_CONFIG;
            goto out;
        }
    }
    /* Left out, max_threads follows a threads above its default (a file
     * written before max_threads existed keeps working); given, it must
     * hold threads. */
    if (cfg->fcgi.max_threads < cfg->fcgi.threads) {
        if (st.set[key_index("fcgi", "max_threads")][CONFIG_MAX_UPSTREAMS]) {
            rl_buf_printf(why, "%s: [fcgi] max_threads: %ld is below threads (%ld)", cfg->path,
                          cfg->fcgi.max_threads, cfg->fcgi.threads);
            err = RL_CONFIG;
            goto out;
        }
        cfg->fcgi.max_threads = cfg->fcgi.threads;
    }
    /* An upstream's own max_inflight wins; left out, [fcgi]'s applies. */
    for (size_t u = 0; u < cfg->nupstreams; u++)
        if (!st.set[key_index("upstream.*", "max_inflight")][u])
            cfg->upstreams[u].max_inflight = cfg->fcgi.max_inflight;
    if (cfg->cache.default_ttl > cfg->cache.max_ttl) {
        rl_buf_printf(why, "%s: [cache] default_ttl: %ld is above max_ttl (%ld)", cfg->path,
                      cfg->cache.default_ttl, cfg->cache.max_ttl);
        err = RL_CONFIG;
        goto out;
    }
    if (inherit_cache_policy(&st) != 0 || config_cluster_check(st.cfg, st.why) != 0) {
        err = RL_CONFIG;
        goto out;
    }
    err = RL_OK;
out:
    free(st.dir);
    if (err != RL_OK) {
        /* The reasons above are appended without checking each (rl_buf's
         * errors are sticky): one that did not fit is replaced whole by
         * one that does, never shown cut. */
        if (rl_buf_error(why) != RL_OK) {
            rl_buf_reset(why);
            rl_buf_printf(why, "%s: %s (the reason is too long to show)", path, rl_err_text(err));
        }
        if (err == RL_NOMEM && why->len == 0)
            rl_buf_puts(why, "out of memory while reading the configuration");
        config_free(cfg);
        cfg = NULL;
    }
    *out = cfg;
    return err;
}

void config_free(relay_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (k->kind == KEY_LONG || k->kind == KEY_U64 || k->kind == KEY_ENUM ||
            k->kind == KEY_FORMATS)
            continue;
        if (key_is_upstream(k)) {
            for (size_t u = 0; u < cfg->nupstreams; u++)
                free(*(char **)field_ptr(cfg, &cfg->upstreams[u], k));
        } else {
            free(*(char **)field_ptr(cfg, NULL, k));
        }
    }
    for (size_t u = 0; u < cfg->nupstreams; u++)
        free(cfg->upstreams[u].name);
    for (size_t i = 0; i < cfg->nprices; i++)
        free(cfg->prices[i].model);
    for (size_t i = 0; i < cfg->models.n; i++) {
        free(cfg->models.routes[i].pattern);
        free(cfg->models.routes[i].target);
    }
    for (size_t i = 0; i < cfg->budget.nlimits; i++)
        free(cfg->budget.limits[i].name);
    free(cfg->path);
    free(cfg);
}

void config_store_options(const relay_config *cfg, store_options *out)
{
    memset(out, 0, sizeof *out);
    out->home = cfg->store.home;
    out->key_file = cfg->store.key_file;
    out->key_env = cfg->store.key_env;
    out->max_bytes = cfg->store.max_bytes;
    out->max_entries = cfg->store.max_entries;
    out->max_entry_bytes = cfg->store.max_entry_bytes;
    out->cache_mb = (uint32_t)cfg->store.cache_mb;
    /* Every thread of every worker (up to max_threads each, started on
     * demand), plus the maintenance threads and relay-admin, may be in the
     * environment at once. */
    out->max_threads = (int)(cfg->fcgi.workers * (cfg->fcgi.max_threads + 2) + 16);
    /* The lock tables stay sized for the threads each worker keeps ready
     * (store/env.c says why); a burst beyond that which runs them out makes
     * some store operations fail, which Relay survives as uncached
     * pass-through. */
    out->txn_threads = (int)(cfg->fcgi.workers * (cfg->fcgi.threads + 2) + 16);
}

rl_err config_get_text(const relay_config *cfg, const char *dotted, rl_buf *out)
{
    const char *dot = strrchr(dotted, '.');
    if (!dot)
        return RL_NOTFOUND;
    size_t slen = (size_t)(dot - dotted);
    const char *name = dot + 1;
    const upstream_config *up = NULL;
    int is_upstream = slen > 9 && strncmp(dotted, "upstream.", 9) == 0;
    if (is_upstream) {
        for (size_t i = 0; i < cfg->nupstreams; i++)
            if (strlen(cfg->upstreams[i].name) == slen - 9 &&
                strncmp(cfg->upstreams[i].name, dotted + 9, slen - 9) == 0)
                up = &cfg->upstreams[i];
        if (!up)
            return RL_NOTFOUND;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (strcmp(k->name, name) != 0)
            continue;
        if (is_upstream ? !key_is_upstream(k)
                        : (strlen(k->section) != slen || strncmp(k->section, dotted, slen) != 0))
            continue;
        const void *p = field_ptr((relay_config *)cfg, (upstream_config *)up, k);
        switch (k->kind) {
        case KEY_STR:
        case KEY_PATH:
        case KEY_LISTEN:
        case KEY_URL:
        case KEY_MOUNT:
        case KEY_FILE:
        case KEY_ENV:
        case KEY_ORIGINS:
            return rl_buf_puts(out, *(char *const *)p);
        case KEY_LONG:
            return rl_buf_printf(out, "%ld", *(const long *)p);
        case KEY_U64:
            return rl_buf_printf(out, "%llu", (unsigned long long)*(const uint64_t *)p);
        case KEY_ENUM:
            return rl_buf_puts(out, k->choices[*(const int *)p]);
        case KEY_FORMATS: {
            unsigned bits = *(const unsigned *)p;
            const char *sep = "";
            for (int f = 0; k->choices[f]; f++)
                if (bits & (1u << f)) {
                    rl_buf_printf(out, "%s%s", sep, k->choices[f]);
                    sep = ", ";
                }
            return rl_buf_error(out);
        }
        }
    }
    return RL_NOTFOUND;
}
