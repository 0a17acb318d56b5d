/*
 * call.h — engine-internal: one request's upstream call, from the guards in
 * front of it to the answer stored.
 *
 * In order: the upstream's circuit breaker (engine/breaker.h: while open,
 * the fallback, a stale answer or 503), the budgets and rate limits
 * (engine/spend.h), a place among [fcgi] max_inflight (engine/admission.h),
 * then the call with its retries and fallback (engine/retry.h) and the
 * timeouts (engine/deadline.h); the answer is relayed to the client (and
 * published to the flight's followers, engine/coalesce.h) and stored when
 * the cache decision says so and it is complete and successful.
 *
 * Threads: the request's own. Failures end as answers in the client's
 * format (exchange_fail), never as a return value: when this returns, the
 * client has its answer or is gone.
 */
#ifndef RELAY_ENGINE_CALL_H
#define RELAY_ENGINE_CALL_H

#include "engine/exchange.h"

void call_upstream_guarded(exchange *x);

#endif
