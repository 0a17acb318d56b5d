/*
 * config.h — relay.ini, parsed and validated.
 *
 * config_load reads the whole file once; every key has a default (the
 * values documented in the shipped relay.ini), unknown sections and keys are
 * errors so a typo never silently falls back to a default, and relative
 * paths are resolved against the directory of the ini file. The resulting
 * object is immutable and may be shared by all threads.
 */
#ifndef RELAY_ENGINE_CONFIG_H
#define RELAY_ENGINE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/cluster.h"
#include "store/store.h"

typedef enum { CACHE_POLICY_DETERMINISTIC, CACHE_POLICY_ALWAYS, CACHE_POLICY_NEVER } cache_policy;
typedef enum { CACHE_SCOPE_CREDENTIAL, CACHE_SCOPE_SHARED } cache_scope;
/* Wire formats of upstreams; azure and openai-compatible speak OpenAI's. */
typedef enum {
    UPSTREAM_TYPE_OPENAI,
    UPSTREAM_TYPE_ANTHROPIC,
    UPSTREAM_TYPE_AZURE,
    UPSTREAM_TYPE_GEMINI,
    UPSTREAM_TYPE_OLLAMA,
    UPSTREAM_TYPE_OPENAI_COMPATIBLE,
} upstream_type;
/* The client formats ([upstream.X] accepts): the wire formats of Relay's
 * paths, named as prov_ops.format names them ("openai" covers Chat
 * Completions and Responses, Azure and compatible servers). */
typedef enum { WIRE_OPENAI, WIRE_ANTHROPIC, WIRE_GEMINI, WIRE_OLLAMA, WIRE_FORMATS } wire_format;
typedef enum { COALESCE_CACHEABLE, COALESCE_ALL, COALESCE_OFF } coalesce_mode;
typedef enum { FUZZY_INHERIT, FUZZY_OFF, FUZZY_ON } fuzzy_mode;
/* Who may read /relay/metrics. */
typedef enum { METRICS_ADMIN, METRICS_OPEN } metrics_access;
/* Which credentials a request may present: its own provider key (passed
 * through), a Relay client token (checked; the held key goes upstream), or
 * either. */
typedef enum { AUTH_MODE_PASSTHROUGH, AUTH_MODE_TOKENS, AUTH_MODE_BOTH } auth_mode;

#define CONFIG_MAX_UPSTREAMS 32
#define CONFIG_MAX_PRICES 512
#define CONFIG_MAX_BUDGETS 256
#define CONFIG_MAX_MODEL_ROUTES 256

/* One line of [models]: requests for a model matching pattern go to the
 * upstream at index upstream (engine/models.h). */
typedef struct model_route {
    char *pattern;   /* a glob over the client's model: '*' stands for any run of characters */
    char *target;    /* as written: an [upstream.NAME], or a type (its first upstream) */
    size_t upstream; /* index into relay_config.upstreams, resolved after parsing */
    /* 0, or the length of "PREFIX/" when pattern is PREFIX, a slash and a
     * star (no other star): that prefix is removed from the model sent upstream. */
    size_t strip;
} model_route;

/* A budget of [budget]: what every request to an upstream, or for a model
 * (exactly, or its family as [pricing] finds it), may spend together, over
 * UTC days and months. 0: no limit. */
typedef enum { BUDGET_UPSTREAM, BUDGET_MODEL } budget_scope;
typedef struct budget_limit {
    budget_scope scope;
    char *name;
    uint64_t usd_day, usd_month; /* nano-USD */
    uint64_t tokens_day;
} budget_limit;

/* One row of [pricing]: USD per million tokens of a model (family). */
typedef struct model_price {
    char *model;
    double input, output, cached_input, cache_write;
} model_price;

typedef struct upstream_config {
    char *name; /* NAME of [upstream.NAME] */
    upstream_type type;
    char *base_url;          /* without a trailing slash */
    char *mount;             /* "" or a path prefix ("/anthropic") routed here, removed upstream */
    long connect_timeout;    /* seconds */
    long first_byte_timeout; /* seconds from the start of a call to its headers (0 in the
                                ini: idle_timeout's) */
    long idle_timeout;       /* seconds without a byte, once the headers arrived */
    long timeout;            /* seconds for the whole call */
    /* Seconds a client waits for its status line before Relay answers 504
     * itself; 0: as long as the call's own timeouts allow (engine/deadline.h). */
    long client_timeout;
    /* 1: a call whose client left or got client_timeout's 504 goes on in the
     * background and its answer is stored (engine/deadline.h). */
    int finish_after_timeout;
    /* Upstream calls in flight at once across the pool (engine/admission.h);
     * 0: no limit. [fcgi] max_inflight unless the section sets its own. */
    long max_inflight;
    /* The key Relay holds for this API and sends upstream for requests that
     * present a Relay client token (engine/auth.h): a file (absolute; "" for
     * none) or an environment variable's name ("" for none), never both. */
    char *api_key_file;
    char *api_key_env;
    /* Retries before the first byte (engine/retry.h): how many, and the
     * seconds all of them may add to a call (also the longest 429
     * Retry-After waited for). */
    long retries;
    long retry_max_wait;
    /* "" or the [upstream.NAME] of the same wire format that takes the
     * request when this one's retries run out (checked: it exists, speaks
     * this format, and no chain of fallbacks loops). */
    char *fallback;
    /* The circuit breaker (engine/breaker.h): breaker_failures failures
     * (0: no breaker) within breaker_window seconds open it for
     * breaker_cooldown seconds; while open, a stored answer of any age is
     * served when stale_if_error (1, the default) has one. */
    long breaker_failures, breaker_window, breaker_cooldown;
    int stale_if_error;
    /* Fuzzy matching for this upstream (engine/fuzzy_serve.h): FUZZY_INHERIT
     * follows [fuzzy] enabled. */
    fuzzy_mode fuzzy;
    /* 1 (auto): Relay adds prompt-cache hints to the body sent upstream
     * when the client set none (engine/promptcache.h); 0 (off): never. */
    int prompt_cache;
    /* The cache policy for this upstream's requests (engine/policy.h):
     * [cache] policy, default_ttl and max_ttl unless the section sets its
     * own; cache_tools 0: a request that offers the model tools is not
     * cached (its answer drives an agent's next action). */
    cache_policy policy;
    long default_ttl, max_ttl;
    int cache_tools;
    /* Client formats this upstream also serves, translated (bits 1u <<
     * wire_format); its own format is always served and not listed here
     * unless written. 0 (the default): only its own. */
    unsigned accepts;
} upstream_config;

typedef struct relay_config {
    char *path; /* the ini file, absolute */
    struct {
        char *listen; /* absolute socket path, or HOST:PORT */
        long workers, threads;
        long max_threads; /* per worker, started on demand above threads */
        uint64_t max_body;
        long drain_timeout;
        long body_timeout;    /* seconds for a whole request body */
        long reserve_threads; /* threads of a worker never held by a slow body */
        char *status_file;    /* absolute: the pool's status, for relay-admin status */
        long max_inflight;    /* each upstream's default (upstream_config) */
        long queue_timeout;   /* seconds a call waits for a place before a 503 */
    } fcgi;
    struct {
        char *home, *key_file;
        char *key_env; /* "" or the environment variable holding the secret */
        uint64_t max_bytes, max_entries, max_entry_bytes;
        long cache_mb;
    } store;
    struct {
        cache_policy policy;
        long default_ttl;
        long max_ttl; /* X-Relay-TTL (and default_ttl) never keep an answer longer */
        cache_scope scope;
        long stale_keep;
        uint64_t max_response;
    } cache;
    struct {
        /* Near-variants answered from a cached request (engine/fuzzy_serve.h):
         * off by default; every prose text may differ by at most max_words
         * words, and the whole by at most 100 - min_similarity percent. */
        int enabled;
        long max_words;
        long min_similarity; /* percent */
    } fuzzy;
    struct {
        coalesce_mode mode;
        uint64_t max_buffer; /* bytes of one shared answer kept for followers */
        long max_wait;       /* seconds a follower waits without progress */
    } coalesce;
    upstream_config upstreams[CONFIG_MAX_UPSTREAMS];
    size_t nupstreams;
    struct {
        char *token_file; /* the admin token (created by relay-admin init) */
    } admin;
    struct {
        metrics_access access;
    } metrics;
    struct {
        auth_mode mode;
    } auth;
    struct {
        /* "" (no page on another origin may read Relay's answers), or the
         * allowed origins as browsers send Origin (scheme and host
         * lower-case, no default port), separated by single spaces. */
        char *allow_origins;
        long max_age; /* seconds a browser may keep a preflight's answer */
    } cors;
    struct {
        model_route routes[CONFIG_MAX_MODEL_ROUTES]; /* [models], in file order */
        size_t n;
    } models;
    model_price prices[CONFIG_MAX_PRICES]; /* [pricing], in file order */
    size_t nprices;
    struct {
        /* The output a request that sets no cap (max_tokens, ...) is
         * reserved at, in tokens. */
        long default_max_output;
        budget_limit limits[CONFIG_MAX_BUDGETS]; /* in file order */
        size_t nlimits;
    } budget;
    struct {
        int level; /* rl_log_level */
    } log;
    /* Several hosts sharing tokens and budgets (store/cluster.h). Checked
     * at load: site and every peer split by cluster_addr_split, peers set
     * exactly when site is, none twice nor site itself, and without
     * allow_public every address they resolve to private
     * (config_addr_is_private). */
    struct {
        char *site;       /* "" (the default): no cluster; else this site's repmgr "host:port" */
        char *peers;      /* the other sites' "host:port", separated by blanks (no commas) */
        char *home;       /* the shared store's directory, absolute; left out, [store] home
                           * with "-cluster" appended; never [store] home itself */
        int create_group; /* 1: this site creates the group on its first start */
        long priority;    /* elections prefer higher; 0: never master */
        cluster_ack ack_policy;  /* repmgr's acknowledgements a commit waits for */
        long partition_grace;    /* seconds a shared write waits for a master */
        long forward_timeout_ms; /* a forwarded write's wait for the master's answer */
        long master_timeout_ms;  /* silence after which replicas elect another master */
        int allow_public;        /* 1: public site addresses accepted (not checked) */
    } cluster;
} relay_config;

/* Parses path. On failure returns RL_CONFIG (or RL_IO/RL_NOMEM) with a
 * human-readable reason naming the file and the key ("/etc/relay/relay.ini:
 * [cache] policy: unknown value ..."; Debian's libinih gives no line numbers)
 * appended to why. The caller frees *out with config_free. */
rl_err config_load(const char *path, relay_config **out, rl_buf *why);
void config_free(relay_config *cfg);

/* The store options of cfg ([store], and the thread count of the pool). The
 * strings are borrowed from cfg. */
void config_store_options(const relay_config *cfg, store_options *out);

/* Looks a value up by "section.key" (e.g. "fcgi.listen") and appends it as
 * the resolved text (paths absolute) to out. RL_NOTFOUND for unknown keys.
 * Lets scripts read the same configuration as relay.fcgi. */
rl_err config_get_text(const relay_config *cfg, const char *dotted, rl_buf *out);

#endif
