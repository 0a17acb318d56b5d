/*
 * spend.h — engine-internal: what a request may spend, and what it spent.
 *
 * Two steps of the request flow (engine.c), around the upstream call:
 *
 *   spend_authorize   a request that presents a Relay client token
 *                     (auth.h): the token must be live and allow the
 *                     upstream (and, once known, the model: spend_allows);
 *                     the held key of the upstream goes upstream instead of
 *                     the client's credential; the cache scope is the token.
 *   spend_reserve     before calling upstream: the request's worst case
 *                     (an estimate of its prompt, its output cap, one
 *                     request) is reserved in every ledger row that applies
 *                     (store/ledger.h) — the token's day, month and minute,
 *                     and the [budget] of its upstream and of its model — in
 *                     one transaction, so concurrent requests cannot
 *                     overshoot a budget by more than one reservation.
 *   spend_settle      after the call: the reservation becomes what the
 *                     answer really used (its usage, priced with [pricing]),
 *                     or is released when the upstream was never reached.
 *
 * Answers from the cache and followers of a shared call reserve nothing:
 * they call no upstream (rate limits too count upstream calls only). A
 * budget that cannot be checked (the store unavailable) refuses the request
 * (503): a budget is a promise not to spend more.
 *
 * Each step renders its own refusal in the client's format (401, 403, 429
 * with Retry-After, 503) and returns non-zero; the caller then stops.
 */
#ifndef RELAY_ENGINE_SPEND_H
#define RELAY_ENGINE_SPEND_H

#include "engine/exchange.h"

/* When credential is a Relay token and [auth] mode allows tokens: checks
 * it and sets x's token fields; else refuses a credential that is not one
 * under [auth] mode = tokens. 0 to go on, -1 when x was answered. */
int spend_authorize(exchange *x, const char *credential);

/* After inspect: whether x's token allows its model (a refusal is
 * answered: 403). 0 to go on, -1 when x was answered. */
int spend_allows(exchange *x);

/* Reserves before the upstream call. 0 to go on (x->hold set when
 * something was reserved), -1 when refused: err and the message (static
 * or in x's pool) are set for the caller to answer with, so that a leader
 * of a shared call can publish the same refusal to its followers. */
int spend_reserve(exchange *x, rl_err *err, const char **message);

/* Settles x's reservation, if any, from what the call used. */
void spend_settle(exchange *x);

#endif
