/*
 * auth.h — engine-internal: which credential a request presents, and which
 * key goes upstream for it.
 *
 * Relay client tokens are "rly-" followed by 64 hex digits (32 random
 * bytes): recognisable at a glance, far too long to guess, and made only of
 * characters every header and query parameter accepts, so a client puts
 * one wherever it would put its provider key (Authorization: Bearer,
 * x-api-key, x-goog-api-key, api-key, Gemini's ?key=) and every SDK and
 * coding agent works with it unchanged. The store keeps only a token's
 * SHA-256 (auth_token_hash); the text is shown once, when it is made.
 *
 * Held keys: [upstream.NAME] api_key_file (mode 0600 or 0400: refused when
 * its group or other users may read it) or api_key_env. Each process reads
 * them once (auth_held_load, from engine_new); a changed key takes effect
 * at the next reload (SIGHUP restarts the workers). A request that presents
 * a Relay token goes upstream with the held key in the provider's own
 * header, and none of the client's credential headers or ?key=.
 *
 * Threads: an auth_held is read-only after loading, shared by all threads.
 */
#ifndef RELAY_ENGINE_AUTH_H
#define RELAY_ENGINE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

#define AUTH_TOKEN_PREFIX "rly-"
#define AUTH_TOKEN_LEN (4 + 64) /* without the NUL */
#define AUTH_HASH_LEN 32

/* The Relay token in a credential as an adapter found it (a bare value, or
 * an Authorization value "Bearer TOKEN"), or NULL when it is not one. */
const char *auth_token_of(const char *credential);

/* SHA-256 of a token's text: how the store knows it. */
void auth_token_hash(const char *token, uint8_t out[AUTH_HASH_LEN]);

/* A new token (AUTH_TOKEN_LEN characters and a NUL) from the system's
 * random source. RL_IO when that fails. */
rl_err auth_token_new(char out[AUTH_TOKEN_LEN + 1]);

typedef struct auth_held auth_held;

/* Reads every upstream's held key. A key that cannot be used (missing
 * file, unset variable, a file others may read) is logged once, naming the
 * upstream and the fix, and that upstream holds none. NULL only when out of
 * memory. */
auth_held *auth_held_load(const relay_config *cfg);
/* Wipes the keys and frees them; NULL is a no-op. */
void auth_held_free(auth_held *h);

/* The key held for up (borrowed), or NULL when it holds none; *why (may be
 * NULL) then says why, for a message to the client that names no secret. */
const char *auth_held_key(const auth_held *h, const upstream_config *up, const char **why);

/* The header that carries a key to an upstream of this type and what goes
 * before the key in it: Authorization "Bearer " (OpenAI, compatible
 * servers, Ollama), x-api-key (Anthropic), x-goog-api-key (Gemini),
 * api-key (Azure). */
void auth_key_header(upstream_type type, const char **name, const char **prefix);

/* Whether a client header (lower-case name) carries a credential, which is
 * never forwarded when Relay sends the key it holds. */
int auth_is_credential_header(const char *name);

/* Appends query to out without its "key" parameters (Gemini's ?key=, which
 * may hold the client's token). */
rl_err auth_query_without_key(const char *query, rl_buf *out);

#endif
