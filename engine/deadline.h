/*
 * deadline.h — engine-internal: what happens when a time limit passes
 * during an upstream call ([upstream.X] first_byte_timeout, idle_timeout,
 * timeout, client_timeout and finish_after_timeout; README "Resilience:
 * timeouts").
 *
 * Two sides. Toward the upstream, engine/upstream.c times the call and says
 * which limit ended it; here that becomes the client's 504 (before its
 * status line) or the error event ending its stream (after), with a
 * message naming the limit. Toward the client, client_timeout is how long
 * Relay lets a client wait for its status line: then the client gets a 504
 * at once and its FastCGI request is ended (engine_sink.end), while the
 * thread, with finish_after_timeout = on, goes on with the call and stores
 * a complete successful answer, so the client's retry is a HIT (bounded by
 * the call's own timeouts); with off the call is abandoned.
 *
 * Threads: every function runs on the request's thread, on its exchange.
 * Time is passed in (monotonic seconds). Nothing here fails: an answer that
 * cannot be rendered for want of memory is sent as its status alone
 * (exchange_fail).
 */
#ifndef RELAY_ENGINE_DEADLINE_H
#define RELAY_ENGINE_DEADLINE_H

#include "engine/exchange.h"

/*
 * Whether a call whose client is gone (it left, or got client_timeout's
 * 504) goes on: when its answer would be stored and finish_after_timeout is
 * on (its tokens are paid for either way, and the client's retry becomes a
 * hit), or while followers wait for it, whatever the setting.
 */
int deadline_keeps_call(int finish_after_timeout, int capture, int followers);

/* Whether a client that has waited since start (its upstream call's start)
 * is past client_timeout at now, its status line not sent yet; 0 when
 * client_timeout is 0 (off). */
int deadline_client_over(long client_timeout, int started, double start, double now);

/*
 * Called from the upstream call's tick (upstream_handler.on_tick): when x's
 * client is past client_timeout, answers it 504 in its format (naming
 * client_timeout and whether the answer is still being fetched), ends its
 * request, and marks it gone. Returns -1 when the call should be abandoned
 * (deadline_keeps_call says no), else 0.
 */
int deadline_tick(exchange *x, double now);

/*
 * The message for a call that ended with RL_UPSTREAM_TIMEOUT, naming the
 * limit that passed (x->timed_out) and the upstream's section, composed in
 * msg; NULL when none is known or composing failed (the error's own text
 * is sent then).
 */
const char *deadline_message(const exchange *x, rl_buf *msg);

#endif
