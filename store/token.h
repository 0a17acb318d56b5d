/*
 * token.h — Relay client tokens: what a token may do, kept in the store.
 *
 * A client token is a secret text the engine or relay-admin makes (a
 * recognisable prefix and random bytes) and shows once. The store never
 * sees that text: it keys each token by the SHA-256 digest of it (32
 * bytes, made by the caller), so a copy of the store, a backup or a dump
 * holds nothing a client could present. What it keeps per token is a
 * store_token: a name, times, what the token may reach, and its budgets
 * and rate limits (which the ledger, ledger.h, enforces).
 *
 * The public id. Lists, logs, stats and ledger scopes ("token:<id>") name a
 * token by 8 hex digits, never by its hash or text. The id is chosen when
 * the token is created (store_token_id_of: the first 8 hex digits of its
 * first hash) and kept when it is rotated (store_token_rotate), so that a
 * rotated token keeps its budgets and its history: rotating a leaked token
 * must not hand it a fresh daily budget.
 *
 * Uniqueness. Among the tokens that are not revoked (revoked == 0), names
 * are unique and ids are unique: relay-admin can address a token by its
 * name or id, and a ledger scope belongs to one token. Revoked tokens keep
 * their records (so a revoked token is refused as revoked, and lists show
 * it) until they are deleted; a rotated token's old record shares the id
 * and name of its successor. Checked by store_token_put and
 * store_token_rotate inside their transaction (RL_EXISTS).
 *
 * Thread safety, processes and errors as for store.h. Lookups by hash are
 * one read; every writer first takes the table's write lock (a record of
 * its own), so concurrent writers are serialised and the uniqueness check
 * cannot race. Times are unix seconds, passed in. A record that does not
 * decode is RL_BAD_ENTRY (logged), never a token that allows anything.
 */
#ifndef RELAY_STORE_TOKEN_H
#define RELAY_STORE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/store.h"

#define TOKEN_NAME_MAX 64 /* bytes of a name: printable ASCII, spaces allowed inside */
#define TOKEN_LIST_MAX 16 /* upstream names, or model patterns, per token */
#define TOKEN_ITEM_MAX 64 /* bytes of one upstream name or model pattern (no spaces) */
#define TOKEN_ID_LEN 8    /* hex digits of the public id */

typedef struct store_token {
    uint8_t hash[STORE_KEY_LEN];   /* SHA-256 of the token text: the record's key */
    char id[TOKEN_ID_LEN + 1];     /* public id, lowercase hex */
    char name[TOKEN_NAME_MAX + 1]; /* unique among tokens not revoked */
    uint64_t created;              /* unix seconds */
    uint64_t expires;              /* refused from this time on; 0 = never */
    uint64_t revoked;              /* refused from this time on; 0 = live. A time in the
                                    * future: a rotated token's grace period */
    /* Empty list: everything. Upstreams by their [upstream.NAME] name,
     * exactly; models by fnmatch(3) patterns ("gpt-4o*", "claude-*"). */
    unsigned n_upstreams, n_models;
    char upstreams[TOKEN_LIST_MAX][TOKEN_ITEM_MAX + 1];
    char models[TOKEN_LIST_MAX][TOKEN_ITEM_MAX + 1];
    /* Budgets and limits; 0 = none. Money in nano-USD (1e-9 USD), as
     * engine/pricing.h counts it; days and months are UTC. */
    uint64_t usd_day, usd_month;
    uint64_t tokens_day;
    uint64_t rpm, tpm; /* requests and tokens per minute */
} store_token;

typedef enum { TOKEN_LIVE = 0, TOKEN_EXPIRED = 1, TOKEN_REVOKED = 2 } token_state;

/* What a token is at now: REVOKED once revoked <= now (revocation wins),
 * EXPIRED once expires <= now, else LIVE. */
token_state store_token_state(const store_token *t, uint64_t now);
const char *store_token_state_name(token_state st); /* "live", "expired", "revoked" */

/* 1 when t may reach upstream (NULL: not checked) for model (NULL: the
 * request names none, not checked), else 0. An empty list allows all. */
int store_token_allows(const store_token *t, const char *upstream, const char *model);

/* The public id a new token gets: the first 8 hex digits of its hash. */
void store_token_id_of(const uint8_t hash[STORE_KEY_LEN], char id[TOKEN_ID_LEN + 1]);

/* NULL when every field of t is within its limits (as above: sizes,
 * characters, an id of 8 lowercase hex digits, lists within
 * TOKEN_LIST_MAX), else a static sentence naming the first field that is
 * not, for the caller's error message. */
const char *store_token_invalid(const store_token *t);

/* ---- the record's encoding (for the store, verify, and tests) ------------ */

/* Appends t's record (without the hash, which is the key) to out: magic
 * "RLT1", the id, the times, the budgets, then the name and the lists as
 * length-prefixed strings. RL_BAD_REQUEST when store_token_invalid(t). */
rl_err store_token_encode(const store_token *t, rl_buf *out);

/* Decodes a record into t (t->hash is left as it is). RL_BAD_ENTRY unless
 * the bytes are exactly one record this code writes: a known magic, every
 * length within its bounds and within n, nothing left over, and fields
 * that store_token_invalid accepts. */
rl_err store_token_decode(const void *p, size_t n, store_token *t);

/* ---- the table -------------------------------------------------------- */

typedef enum {
    TOKEN_CREATE,  /* RL_EXISTS if a record with this hash exists */
    TOKEN_REPLACE, /* RL_NOTFOUND if none exists (an update of a deleted token) */
    /* As TOKEN_REPLACE, and RL_FORBIDDEN when the stored record is revoked
     * (at any time: a rotated token's old record in its grace period too).
     * For changes made to a copy read earlier (relay-admin token update):
     * a revoke or a rotation that came in between is never undone. */
    TOKEN_UPDATE,
} token_put_mode;

/* Stores t under t->hash. RL_BAD_REQUEST if store_token_invalid(t);
 * RL_EXISTS when t is not revoked and another token not revoked has its
 * name or its id (or, with TOKEN_CREATE, its hash exists). */
rl_err store_token_put(store *s, const store_token *t, token_put_mode mode);

/* The token with this hash into *out. RL_NOTFOUND; RL_BAD_ENTRY (logged)
 * for a record that does not decode. */
rl_err store_token_get(store *s, const uint8_t hash[STORE_KEY_LEN], store_token *out);

/* Removes the record. RL_NOTFOUND when there is none. The token's ledger
 * rows stay until they expire (ledger.h). */
rl_err store_token_del(store *s, const uint8_t hash[STORE_KEY_LEN]);

/* Revokes the token as of now (a token revoked earlier keeps its earlier
 * time); *out (may be NULL) gets the record as stored. RL_NOTFOUND. */
rl_err store_token_revoke(store *s, const uint8_t hash[STORE_KEY_LEN], uint64_t now,
                          store_token *out);

/*
 * Replaces the token old_hash with a new text's hash new_hash, in one
 * transaction: the new record is the old one (id, name, lists, budgets)
 * created now and not revoked; the old record is revoked as of old_until
 * (now, or later to let clients switch; at the latest it keeps its own
 * earlier revocation). *out (may be NULL) gets the new record. RL_NOTFOUND
 * if old_hash has no record; RL_FORBIDDEN if it is revoked by now (a
 * revoked token is not brought back by rotating it); RL_EXISTS if new_hash
 * has a record.
 */
rl_err store_token_rotate(store *s, const uint8_t old_hash[STORE_KEY_LEN],
                          const uint8_t new_hash[STORE_KEY_LEN], uint64_t now, uint64_t old_until,
                          store_token *out);

/* Calls fn for every token record in hash order until it returns non-zero:
 * t is the decoded token, or NULL for a record that does not decode (hash
 * names it). Reads in batches, each a short read-committed transaction, as
 * store_cache_scan; fn runs outside any transaction. */
rl_err store_token_scan(store *s,
                        int (*fn)(void *ctx, const uint8_t hash[STORE_KEY_LEN],
                                  const store_token *t),
                        void *ctx);

/* Finds tokens whose id starts with prefix (1 to 8 hex digits, either
 * case): among the tokens not revoked, or all of them with
 * include_revoked. *matches gets 0, 1 or 2 ("two or more": a rotated
 * token's old records share its id); *out the first match in hash order.
 * RL_BAD_REQUEST for a prefix that is not 1 to 8 hex digits. */
rl_err store_token_find(store *s, const char *prefix, int include_revoked, store_token *out,
                        unsigned *matches);

/* The token not revoked whose name is name, into *out. RL_NOTFOUND. */
rl_err store_token_find_name(store *s, const char *name, store_token *out);

#endif
