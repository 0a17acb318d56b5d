/*
 * rl_err.h — the one error vocabulary of Relay.
 *
 * Every fallible function returns an rl_err. The table below is the single
 * source of the enum, its text, the HTTP status a client sees for it and the
 * OpenAI-style error type and code (other wire formats map from these).
 * Library codes are translated to these where the library is called.
 */
#ifndef RELAY_STORE_BASE_RL_ERR_H
#define RELAY_STORE_BASE_RL_ERR_H

/* The table reads better aligned. */
/* STOPPED: a callback asked a parser to stop (not a failure of its own).
 * BAD_ENTRY: bytes Relay stored or shared itself (a cache entry, a flight's
 * head) that do not decode — not the upstream's fault, unlike
 * UPSTREAM_PROTOCOL.
 * EXISTS: a name or id that must be unique is taken (store/token.h).
 * OVER_LIMIT: a budget or rate limit refused the request (store/ledger.h);
 * its message names the limit, and Retry-After says when it resets.
 * NO_MASTER: a replicated store (store/cluster.h) could not reach a master
 * for a write within [cluster] partition_grace. */
/* clang-format off */
/*    name                  status type                     code                    text */
#define RL_ERRORS(X)                                                                                 \
    X(OK,                   200, "none",                  "ok",                   "success")          \
    X(NOTFOUND,             404, "invalid_request_error", "not_found",            "not found")        \
    X(NOMEM,                500, "server_error",          "out_of_memory",        "out of memory")    \
    X(INTERNAL,             500, "server_error",          "internal_error",       "internal error")   \
    X(IO,                   500, "server_error",          "io_error",             "input/output error") \
    X(CONFIG,               500, "server_error",          "config_error",         "invalid configuration") \
    X(STORE,                503, "server_error",          "store_unavailable",    "cache store unavailable") \
    X(BAD_JSON,             400, "invalid_request_error", "invalid_json",         "request body is not valid JSON") \
    X(BAD_REQUEST,          400, "invalid_request_error", "invalid_request",      "invalid request")  \
    X(UNAUTHORIZED,         401, "authentication_error",  "missing_api_key",      "no credentials were provided") \
    X(FORBIDDEN,            403, "permission_error",      "forbidden",            "forbidden")        \
    X(NO_ROUTE,             404, "invalid_request_error", "unknown_url",          "unknown path")     \
    X(METHOD,               405, "invalid_request_error", "method_not_allowed",   "method not allowed") \
    X(TOO_LARGE,            413, "invalid_request_error", "request_too_large",    "request body too large") \
    X(BODY_TIMEOUT,         408, "invalid_request_error", "request_timeout",      "request body not received in time") \
    X(UPSTREAM_UNREACHABLE, 502, "api_connection_error",  "upstream_unreachable", "upstream unreachable") \
    X(UPSTREAM_PROTOCOL,    502, "api_error",             "upstream_bad_response", "upstream sent an invalid response") \
    X(UPSTREAM_CUT,         502, "api_error",             "upstream_stream_cut",  "upstream stream ended before its terminator") \
    X(OVERLOADED,           503, "server_error",          "overloaded",           "relay is overloaded") \
    X(CIRCUIT_OPEN,         503, "server_error",          "upstream_circuit_open", "the upstream is failing: its circuit breaker is open") \
    X(UPSTREAM_TIMEOUT,     504, "timeout_error",         "upstream_timeout",     "upstream timed out") \
    X(ONLY_IF_CACHED,       504, "invalid_request_error", "only_if_cached",       "not in cache and only-if-cached was requested") \
    X(CLIENT_GONE,          499, "none",                  "client_gone",          "client disconnected") \
    X(BUSY,                 503, "server_error",          "busy",                 "in use by other processes") \
    X(STOPPED,              500, "server_error",          "stopped",              "stopped by its caller") \
    X(BAD_ENTRY,            502, "api_error",             "stored_answer_unreadable", "a stored or shared answer could not be read") \
    X(EXISTS,               409, "invalid_request_error", "already_exists",       "already exists")   \
    X(OVER_LIMIT,           429, "rate_limit_error",      "rate_limit_exceeded",  "budget or rate limit exceeded") \
    X(NO_MASTER,            503, "server_error",          "cluster_no_master",    "no cluster master is reachable: budgets and tokens cannot change now")
/* clang-format on */

typedef enum {
#define RL_ERR_ENUM(name, status, type, code, text) RL_##name,
    RL_ERRORS(RL_ERR_ENUM)
#undef RL_ERR_ENUM
        RL_ERR_COUNT
} rl_err;

/* Static strings; an out-of-range value yields the INTERNAL row. */
const char *rl_err_text(rl_err e);
const char *rl_err_type(rl_err e);
const char *rl_err_code(rl_err e);
int rl_err_status(rl_err e);

#endif
