/*
 * budgets.h — what Relay client tokens and the [budget] rows of relay.ini
 * have spent and have left, read from the token table (store/token.h) and
 * the ledger (store/ledger.h): for the stats API, /relay/metrics and
 * relay-admin stats. It only reads; engine/spend.c is what reserves and
 * settles.
 *
 * The ledger's scopes are spend.c's: "token:ID" (a token's minute, day and
 * month rows), "upstream:NAME" and "model:NAME" (a [budget] row's day and
 * month rows, NAME as relay.ini writes it). A token is named by its public
 * id and its name, never by its text or its hash: nothing here holds
 * either.
 *
 * Bounded: at most BUDGETS_TOKENS tokens are reported (live ones first,
 * then by id; budgets.left_out counts the others), each once: a rotated
 * token's records share an id, and the live one (else the newest) stands
 * for it. Reading costs a walk over the token table and three ledger reads
 * per token reported, each a short transaction of its own: a report is
 * not one snapshot of the store.
 *
 * Threads: any; nothing is shared between calls. Times are unix seconds,
 * passed in.
 */
#ifndef RELAY_ENGINE_BUDGETS_H
#define RELAY_ENGINE_BUDGETS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "store/base/rl_err.h"
#include "store/ledger.h"
#include "store/store.h"
#include "store/token.h"

#define BUDGETS_TOKENS 1024 /* tokens reported at most: as many clients as stats.h gives rows */

/* One unit of one window: its limit (0: none) and what the window holds. */
typedef struct budget_amount {
    uint64_t limit;
    uint64_t spent, reserved; /* reserved: requests under way, counted at their worst case */
} budget_amount;

/* limit - spent - reserved, 0 once that is used up (a budget admits its
 * last request while anything is left, so used may pass the limit). Only
 * meaningful when a->limit is set. */
uint64_t budget_remaining(const budget_amount *a);

/* One window of a scope, as it stands now. */
typedef struct budget_period {
    int charged;         /* the request flow counts this window for the scope */
    uint64_t start, end; /* the window: [start, end); end is when it resets */
    budget_amount amount[LEDGER_UNITS];
} budget_period;

typedef enum { BUDGETS_TOKEN, BUDGETS_UPSTREAM, BUDGETS_MODEL } budgets_kind;
const char *budgets_kind_name(budgets_kind k); /* "token", "upstream", "model" */

typedef struct budget_status {
    budgets_kind kind;
    char id[TOKEN_ID_LEN + 1];       /* a token's public id; "" for [budget] rows */
    char name[LEDGER_SCOPE_MAX + 1]; /* a token's name; the upstream or model of a [budget] row */
    token_state state;               /* a token's, at now; TOKEN_LIVE for [budget] rows */
    uint64_t expires;                /* a token's (0: never) */
    budget_period period[LEDGER_MONTH + 1]; /* by ledger_window; [0] unused */
    int unreadable; /* a row did not decode (logged): its zeros mean nothing */
} budget_status;

typedef struct budgets {
    budget_status *v; /* tokens (by id), then [budget] rows (file order) */
    size_t n, ntokens;
    size_t left_out; /* tokens past BUDGETS_TOKENS, not reported */
} budgets;

/* Reads every token's and every [budget] row's status at now into *out,
 * which the caller releases (also after a failure). RL_NOMEM, or the
 * store's error (a row that does not decode is not one: it is marked
 * unreadable). */
rl_err budgets_read(store *s, const relay_config *cfg, uint64_t now, budgets *out);
void budgets_release(budgets *b);

/* The reported token with public id id, or NULL. */
const budget_status *budgets_token(const budgets *b, const char *id);

#endif
