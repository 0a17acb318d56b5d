#include "engine/deadline.h"

#include "engine/coalesce.h"
#include "store/base/rl_log.h"

int deadline_keeps_call(int finish_after_timeout, int capture, int followers)
{
    return (finish_after_timeout && capture) || followers;
}

int deadline_client_over(long client_timeout, int started, double start, double now)
{
    return client_timeout > 0 && !started && now - start > (double)client_timeout;
}

int deadline_tick(exchange *x, double now)
{
    const upstream_config *up = x->rt.upstream;
    if (x->detached ||
        !deadline_client_over(up->client_timeout, x->started, x->upstream_start, now))
        return 0;
    int keep = deadline_keeps_call(up->finish_after_timeout, x->capture, coalesce_has_followers(x));
    rl_buf msg;
    rl_buf_init(&msg, 1024);
    rl_buf_printf(&msg, "The upstream did not answer within %ld s ([upstream.%s] client_timeout)%s",
                  up->client_timeout, up->name,
                  keep && x->capture ? "; Relay keeps the call going and caches its answer: "
                                       "retry the same request shortly."
                                     : ".");
    rl_info("%s: client_timeout (%ld s) passed before the upstream's answer: %s", up->name,
            up->client_timeout, keep ? "answered 504, the call goes on" : "call abandoned");
    exchange_fail(x, RL_UPSTREAM_TIMEOUT, exchange_message(&msg));
    rl_buf_release(&msg);
    /* The client has its whole answer: the front ends its request now, so
     * it does not wait for the call that goes on. */
    if (x->sink->end)
        x->sink->end(x->sink->ctx);
    x->detached = 1;
    x->client_gone = 1;
    return keep ? 0 : -1;
}

const char *deadline_message(const exchange *x, rl_buf *msg)
{
    upstream_timeout_kind k = x->timed_out.kind;
    if (k == UPSTREAM_TIMEOUT_NONE)
        return NULL;
    /* Indexed by upstream_timeout_kind. */
    static const char *const what[UPSTREAM_TIMEOUT_KINDS] = {
        [UPSTREAM_TIMEOUT_CONNECT] = "could not be connected to",
        [UPSTREAM_TIMEOUT_FIRST_BYTE] = "sent no response headers",
        [UPSTREAM_TIMEOUT_IDLE] = "sent nothing more",
        [UPSTREAM_TIMEOUT_TOTAL] = "did not finish its answer",
    };
    rl_buf_printf(msg, "The upstream %s within %ld s ([upstream.%s] %s).", what[k],
                  x->timed_out.seconds, x->rt.upstream->name, upstream_timeout_key(k));
    return exchange_message(msg);
}
