/*
 * promptcache.h — prompt-cache hints on the body sent upstream
 * ([upstream.NAME] prompt_cache = auto).
 *
 * Providers bill a prompt prefix they already hold at a fraction of the
 * input price. Anthropic caches only up to blocks marked with
 * cache_control; OpenAI caches prefixes of 1024 tokens and more on its own,
 * and routes requests sharing a prompt_cache_key to the same cache. A
 * client that sets neither leaves that saving unused; with auto, Relay
 * sets them for it:
 *
 *   Anthropic Messages, when the body holds no "cache_control" key at all
 *   (anywhere: the client chose, or it would exceed the API's 4
 *   breakpoints): {"type":"ephemeral"} on the last tool, on the last
 *   system block (a string system becomes one text block) and on the last
 *   content block of the last-but-one user turn (a string content becomes
 *   one text block): at most 3 breakpoints. A breakpoint goes only where
 *   the prefix up to it (tools, system, messages, in the API's order) is at
 *   least PROMPTCACHE_MIN_BYTES of JSON: the API caches nothing shorter than
 *   1024 tokens (2048 and 4096 for some models), without an error, so a
 *   short request is left as it came. Never on an empty text block or a
 *   thinking block, which the API refuses to mark.
 *
 *   OpenAI chat.completions and responses (type openai only: Azure and
 *   compatible servers may refuse an unknown field), when the body has no
 *   "prompt_cache_key": "relay-" and 32 hex digits of SHA-256 over the
 *   request's cache scope (never the credential: ckey.h's hash of it, or
 *   the token's) and the stable prefix: tools, instructions (responses),
 *   and every message or input item before the last user turn; under the
 *   same size gate.
 *
 * The cache key is always the client's request's (engine.c computes it
 * before the call): the rewrite changes only the bytes sent upstream.
 * Numbers in a rewritten body are written by jansson (a real with 17
 * significant digits: 0.7 is sent as 0.69999999999999996, the same
 * double); the body is otherwise the client's, key order kept.
 *
 * Pure functions on caller memory; safe from any thread.
 */
#ifndef RELAY_ENGINE_PROMPTCACHE_H
#define RELAY_ENGINE_PROMPTCACHE_H

#include <stddef.h>

#include "engine/config.h"
#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/base/rl_pool.h"

/* About 1024 tokens of English in JSON text (~4 bytes a token). */
#define PROMPTCACHE_MIN_BYTES 4096

typedef enum {
    PROMPTCACHE_NONE,
    PROMPTCACHE_ANTHROPIC,        /* messages */
    PROMPTCACHE_OPENAI_CHAT,      /* chat.completions */
    PROMPTCACHE_OPENAI_RESPONSES, /* responses */
} promptcache_kind;

/* Which rewrite applies to endpoint (prov.h's names) of an upstream of
 * type; PROMPTCACHE_NONE for every other pair. */
promptcache_kind promptcache_kind_of(upstream_type type, const char *endpoint);

/*
 * Appends to out the body with the hints of kind added, and sets *changed
 * to 1; or leaves out as it is and sets *changed to 0 when none applies
 * (the client set its own, the prefix is too short, the body is not a JSON
 * object). scope: the request's cache scope (OpenAI only). RL_NOMEM (or
 * out's own error) when the body could not be built; *changed is then 0.
 */
rl_err promptcache_rewrite(promptcache_kind kind, const char *scope, const char *body, size_t len,
                           rl_buf *out, int *changed);

/*
 * For the call (engine/call.c): *body and *len become the body to send to
 * up — the same pointer when up's prompt_cache is off or nothing applies,
 * else a copy in pool. -1 when out of memory (the call then fails as any
 * allocation would), else 0.
 */
int promptcache_upstream_body(rl_pool *pool, const upstream_config *up, const char *endpoint,
                              const char *scope, const char **body, size_t *len);

#endif
