/*
 * tokens.h — managing Relay client tokens: the one implementation behind
 * relay-admin token ... (admin/cmd_token.c) and the admin API's
 * /relay/admin/api/tokens (engine/admin_tokens.c), so that the two cannot
 * disagree on what "--budget-usd-day 0.10" or {"expires": "7d"} means, on
 * which token "ci" names, or on how a token is shown.
 *
 * Fields. A person sets a token's fields by name, each from a text:
 *   name               1 to 64 printable ASCII characters, no space at either
 *                      end, not 8 hex digits (that reads as an id); unique
 *                      among tokens not revoked (the store checks: RL_EXISTS)
 *   upstreams          [upstream.NAME] names of relay.ini, comma-separated;
 *                      "" (empty): every upstream
 *   models             fnmatch(3) patterns ("gpt-4o*"), comma-separated;
 *                      "": every model
 *   budget_usd_day     USD a UTC day, exact decimal ("5", "0.10", at most 9
 *   budget_usd_month   decimals: kept in nano-USD, never through a double);
 *                      "none" removes the budget. 0 is refused: a budget of
 *                      nothing is what revoke is for, and 0 means "none" in
 *                      the store
 *   budget_tokens_day  a positive integer of tokens a UTC day; "none"
 *   rpm, tpm           positive integers, per minute; "none"
 *   expires            when the token stops working: a duration from now
 *                      (90, 30s, 15m, 12h, 7d), a UTC date (2026-12-31: from
 *                      its 00:00:00Z) or time (2026-12-31T18:00:00Z), or
 *                      unix seconds as @1798761600; "never". Never in the past
 * relay-admin spells them as options (--budget-usd-day); a leading "--" and
 * dashes for underscores are accepted wherever a field name is.
 *
 * Addressing. A token is named by its public id (8 hex digits, either case)
 * or its name: an id first, a name when no token has that id. Each id has
 * one current record (tokens_row): the one not revoked, or, when all of its
 * records are (revoked, or rotated out), the latest created. By name, the
 * token not revoked comes first, then the latest revoked one.
 *
 * Texts. tokens_create and tokens_rotate make a token's text (engine/auth.h:
 * "rly-" and 64 hex digits from the system's random source) and give it to
 * the caller, which shows it once and wipes it. The store keeps only its
 * SHA-256; nothing here logs it, and tokens_json shows the text only when
 * handed it, never the hash.
 *
 * Messages. Every operation that fails says why in *why, a sentence for the
 * person (stderr, or the API's error message) that names the field as the
 * caller spelt it; the rl_err says which kind: RL_BAD_REQUEST (a value
 * refused: exit 2, HTTP 400), RL_NOTFOUND (no such token: 4, 404),
 * RL_EXISTS (a name taken: 1, 409), RL_FORBIDDEN (a revoked token cannot be
 * changed: 1, 403), others (the store: 1, 5xx).
 *
 * Threads: any; nothing here keeps state. Time: now (unix seconds) is
 * passed in, so tests never sleep.
 */
#ifndef RELAY_ENGINE_TOKENS_H
#define RELAY_ENGINE_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/token.h"

/* A token's text with its NUL ("rly-" and 64 hex digits, engine/auth.h). */
#define TOKENS_TEXT_SIZE 69
/* A USD amount's text with its NUL: 11 whole digits, '.', 9 decimals. */
#define TOKENS_USD_SIZE 24

/* ---- values ------------------------------------------------------------ */

/* "0.10" into 100000000 nano-USD, exactly: digits, then optionally '.' and
 * 1 to 9 digits; at most INT64_MAX nano-USD. RL_BAD_REQUEST otherwise. */
rl_err tokens_parse_usd(const char *text, uint64_t *nusd);

/* nano-USD as the shortest text that reads back the same, with at least two
 * decimals ("0.10", "5.00", "0.000000001"); out holds TOKENS_USD_SIZE. */
void tokens_format_usd(uint64_t nusd, char out[TOKENS_USD_SIZE]);

/* A duration such as 90 (seconds), 30s, 15m, 12h or 7d into seconds.
 * RL_BAD_REQUEST when it is not one (or overflows). */
rl_err tokens_parse_duration(const char *text, uint64_t *seconds);

/* Seconds with the largest unit that fits ("3d", "90s" is "1m"), cut to
 * cap bytes. */
void tokens_format_duration(uint64_t seconds, char *out, size_t cap);

/* A time as "expires" takes it (above, less "never") into unix seconds;
 * RL_BAD_REQUEST when it is none of those forms or no date. It may be in
 * the past: the caller decides. */
rl_err tokens_parse_time(const char *text, uint64_t now, uint64_t *at);

/* ---- fields -------------------------------------------------------------- */

/* 1 when name is a field (in either spelling), else 0. */
int tokens_is_field(const char *name);

/*
 * Sets t's field from value (as described above), checking it: RL_OK, or
 * RL_BAD_REQUEST with *why saying what is wrong, the field named as given.
 * cfg (may be NULL: not checked) holds the upstreams a token may name.
 */
rl_err tokens_set(store_token *t, const char *field, const char *value, const relay_config *cfg,
                  uint64_t now, rl_buf *why);

/* ---- tokens -------------------------------------------------------------- */

/* One token as it is listed: its current record, and when an earlier text
 * of it, rotated out with a grace period, stops working (0: none works). */
typedef struct tokens_row {
    store_token t;
    uint64_t grace_until;
} tokens_row;

/* Every token, one row per id, sorted by name, then by creation. */
typedef struct tokens_list {
    tokens_row *v;
    size_t n;
    unsigned damaged; /* records that do not decode (relay-admin verify names them) */
} tokens_list;

/* Reads every token's records into l (released with tokens_list_release,
 * also after a failure). RL_NOMEM, or the store's error. */
rl_err tokens_list_load(store *s, uint64_t now, tokens_list *l);
void tokens_list_release(tokens_list *l);

/* The row ref names in l (see Addressing), or NULL. */
const tokens_row *tokens_list_find(const tokens_list *l, const char *ref);

/* A field to set and its text, as given (for messages). */
typedef struct tokens_edit {
    const char *field;
    const char *value;
} tokens_edit;

/*
 * Creates a token from n edits (a name among them), created now: *out gets
 * it and text its text, to be shown once. RL_BAD_REQUEST (a value, or no
 * name), RL_EXISTS (the name is taken), the store's error.
 */
rl_err tokens_create(store *s, const relay_config *cfg, const tokens_edit *edits, size_t n,
                     uint64_t now, tokens_row *out, char text[TOKENS_TEXT_SIZE], rl_buf *why);

/* The token ref names into *out. RL_NOTFOUND, the store's error. */
rl_err tokens_show(store *s, const char *ref, uint64_t now, tokens_row *out, rl_buf *why);

/*
 * Applies n edits (at least one) to the token ref names and stores it, in
 * one step that a revoke or rotation in between makes fail (TOKEN_UPDATE)
 * rather than undoes. RL_NOTFOUND, RL_BAD_REQUEST, RL_EXISTS (renamed onto
 * a name taken), RL_FORBIDDEN (revoked, or rotated meanwhile).
 */
rl_err tokens_update(store *s, const relay_config *cfg, const char *ref, const tokens_edit *edits,
                     size_t n, uint64_t now, tokens_row *out, rl_buf *why);

/*
 * Revokes the token ref names as of now: its current text and any earlier
 * one still in its grace period. *was_revoked gets 1 when it already was
 * (nothing changes: its earlier time stays). RL_NOTFOUND.
 */
rl_err tokens_revoke(store *s, const char *ref, uint64_t now, tokens_row *out, int *was_revoked,
                     rl_buf *why);

/*
 * Gives the token ref names a new text (into text, to be shown once),
 * keeping its id, name, lists, budgets and history (store_token_rotate);
 * the old text works for grace seconds more (0: stops now). RL_NOTFOUND,
 * RL_FORBIDDEN (revoked), RL_EXISTS (rotated by someone else meanwhile).
 */
rl_err tokens_rotate(store *s, const char *ref, uint64_t grace, uint64_t now, tokens_row *out,
                     char text[TOKENS_TEXT_SIZE], rl_buf *why);

/*
 * Appends the token as a JSON object: id, name, state (live, expired,
 * revoked at now), upstreams and models (arrays; empty: all), the budgets
 * and limits (budget_usd_day and budget_usd_month as exact decimal strings,
 * budget_tokens_day, rpm, tpm as numbers; null: none), created, expires,
 * revoked, grace_until (unix seconds; null: none), and "token": text when
 * text is not NULL. Never the hash. RL_NOMEM.
 */
rl_err tokens_json(const tokens_row *r, uint64_t now, const char *text, rl_buf *out);

/* Appends {"tokens": [each row as tokens_json], "damaged": N}. RL_NOMEM. */
rl_err tokens_list_json(const tokens_list *l, uint64_t now, rl_buf *out);

#endif
