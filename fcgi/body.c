/*
 * body.c — a request body against a deadline and a reserve of threads (see
 * body.h).
 */
#include "fcgi/body.h"

void body_gate_init(body_gate *g, int threads, int reserve)
{
    atomic_init(&g->held, 0);
    g->slots = threads > reserve ? threads - reserve : 1;
}

/* 1 when a slot was free and is now the caller's. */
static int gate_take(body_gate *g)
{
    int held = atomic_load(&g->held);
    while (held < g->slots)
        if (atomic_compare_exchange_weak(&g->held, &held, held + 1))
            return 1;
    return 0;
}

static void gate_give(body_gate *g)
{
    atomic_fetch_sub(&g->held, 1);
}

typedef struct body_state {
    uint64_t deadline;      /* of the whole body */
    uint64_t unslotted_end; /* of the grace without a slot; 0 until it starts */
    int slot;               /* holds one of the gate's slots */
    int too_large;          /* past max_body: draining */
} body_state;

/* How long the next read may wait, or 0 when the body is out of time
 * (*why says which limit ran out). Takes a slot when one is free. */
static uint64_t next_wait(body_state *st, body_gate *gate, uint64_t grace, uint64_t now,
                          body_result *why)
{
    *why = st->too_large ? BODY_TOO_LARGE : BODY_TIMED_OUT;
    if (now >= st->deadline)
        return 0;
    uint64_t until = st->deadline;
    if (!st->slot && !(st->slot = gate_take(gate))) {
        if (!st->unslotted_end)
            st->unslotted_end = now + grace;
        if (st->unslotted_end < until) {
            until = st->unslotted_end;
            if (!st->too_large)
                *why = BODY_OVERLOADED;
        }
    }
    return now < until ? until - now : 0;
}

body_result body_read(const body_source *src, body_gate *gate, const body_limits *lim, rl_buf *out,
                      int *at_end)
{
    body_state st = {.deadline = src->now_ms(src->ctx) + lim->timeout_ms};
    body_result res;
    char chunk[16384];
    *at_end = 0;
    for (;;) {
        uint64_t wait = next_wait(&st, gate, lim->grace_ms, src->now_ms(src->ctx), &res);
        if (wait == 0)
            goto out; /* res says which limit */
        long n = src->read(src->ctx, chunk, sizeof chunk, wait);
        if (n == BODY_SRC_TIMEOUT)
            goto out;
        if (n < 0) {
            res = BODY_BROKEN;
            goto out;
        }
        if (n == 0) {
            *at_end = 1;
            res = st.too_large ? BODY_TOO_LARGE : BODY_COMPLETE;
            goto out;
        }
        if (st.too_large)
            continue; /* drained, so that the front sees its request consumed */
        rl_err err = rl_buf_append(out, chunk, (size_t)n);
        if (err == RL_TOO_LARGE) {
            st.too_large = 1;
            rl_buf_release(out);
        } else if (err != RL_OK) {
            res = BODY_NOMEM;
            goto out;
        }
    }
out:
    if (st.slot)
        gate_give(gate);
    return res;
}
