/*
 * ckey.h — canonical cache keys.
 *
 * A key is SHA-256 over an unambiguous serialisation of everything that
 * changes the answer: each field is written as a 4-byte big-endian length
 * followed by its bytes, in a fixed order that starts with the key version.
 * Two requests share a key exactly when every field is byte-equal, so no
 * concatenation of different fields can collide ("ab"+"c" vs "a"+"bc").
 *
 * The body must already be canonical (see prov.h: sorted keys, no
 * insignificant whitespace, volatile fields removed).
 */
#ifndef RELAY_ENGINE_CKEY_H
#define RELAY_ENGINE_CKEY_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Bump when the serialisation or canonical form changes: old entries then
 * simply stop matching. */
/* v2: request parameters' number spelling and documented defaults
 * normalised (prov_canon.h). */
#define CKEY_VERSION "relay-key-v2"

typedef struct ckey_input {
    const char *format;     /* wire format, e.g. "openai" */
    const char *endpoint;   /* e.g. "chat.completions" */
    const char *upstream;   /* [upstream.NAME] */
    const char *path_parts; /* answer-changing path/header parts, "" if none */
    const char *scope;      /* "shared" or "cred:" + hash of the credential */
    const char *ns;         /* X-Relay-Namespace, "" if none */
    const char *body;       /* canonical body */
    size_t body_len;
} ckey_input;

/* RL_NOMEM if OpenSSL cannot allocate its context: the caller then skips
 * the cache for this request. */
rl_err ckey_compute(const ckey_input *in, uint8_t key[STORE_KEY_LEN]);

/* Writes the first 16 hex digits of key and a NUL into out[17]. */
void ckey_hex16(const uint8_t key[STORE_KEY_LEN], char out[17]);

/* The scope of a credential: "cred:" + the first 32 hex digits of its
 * SHA-256, so the credential itself never enters the key or a log. */
void ckey_credential_scope(const char *credential, char out[5 + 32 + 1]);

#endif
