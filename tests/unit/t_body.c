/* Unit tests for fcgi/body: a request body against a whole-body deadline
 * and the reserve of threads, driven by a scripted connection on a fake
 * clock (nothing sleeps). */
#include <stdio.h>
#include <string.h>

#include "fcgi/body.h"
#include "tests/unit/tap.h"

/* A connection: bytes arriving at given times, then the end of the body
 * (end_at), a broken connection (error_at), or silence. */
typedef struct arrival {
    uint64_t at;
    const char *bytes;
} arrival;

typedef struct script {
    const arrival *arrivals;
    size_t n, next;   /* arrivals[next] is the first not yet received */
    size_t offset;    /* into arrivals[next - 1] not yet read */
    uint64_t end_at;  /* 0: never */
    uint64_t err_at;  /* 0: never */
    uint64_t now;     /* the fake clock, ms */
    int reads;        /* calls to read */
    int max_held;     /* the most slots held while reading */
    body_gate *gate;  /* to watch */
    int free_slot_at; /* at this read, give a slot back (0: never) */
} script;

static uint64_t fake_now(void *ctx)
{
    return ((script *)ctx)->now;
}

/* Bytes received but not read yet, from the arrival before next. */
static long take_buffered(script *s, char *buf, size_t cap)
{
    const char *b = s->arrivals[s->next - 1].bytes + s->offset;
    size_t n = strlen(b) < cap ? strlen(b) : cap;
    memcpy(buf, b, n);
    s->offset += n;
    return (long)n;
}

static long fake_read(void *ctx, char *buf, size_t cap, uint64_t wait_ms)
{
    script *s = ctx;
    s->reads++;
    int held = atomic_load(&s->gate->held);
    if (held > s->max_held)
        s->max_held = held;
    if (s->free_slot_at == s->reads)
        atomic_fetch_sub(&s->gate->held, 1);
    if (wait_ms == 0)
        return BODY_SRC_ERROR; /* the contract says wait_ms > 0 */
    if (s->next > 0 && s->arrivals[s->next - 1].bytes[s->offset])
        return take_buffered(s, buf, cap);
    uint64_t until = s->now + wait_ms;
    if (s->next < s->n && s->arrivals[s->next].at <= until) {
        s->now = s->arrivals[s->next].at > s->now ? s->arrivals[s->next].at : s->now;
        s->next++;
        s->offset = 0;
        return take_buffered(s, buf, cap);
    }
    if (s->next == s->n && s->end_at && s->end_at <= until) {
        s->now = s->end_at > s->now ? s->end_at : s->now;
        return 0;
    }
    if (s->err_at && s->err_at <= until) {
        s->now = s->err_at;
        return BODY_SRC_ERROR;
    }
    s->now = until;
    return BODY_SRC_TIMEOUT;
}

/* Runs body_read on s with a 10 s deadline, 64-byte bodies and a 250 ms
 * grace; returns the result and fills out/at_end. */
static body_result run(script *s, body_gate *gate, rl_buf *out, int *at_end)
{
    body_source src = {s, fake_read, fake_now};
    body_limits lim = {.max_body = 64, .timeout_ms = 10000, .grace_ms = 250};
    s->gate = gate;
    rl_buf_init(out, lim.max_body);
    return body_read(&src, gate, &lim, out, at_end);
}

static void test_gate_init(void)
{
    body_gate g;
    body_gate_init(&g, 32, 4);
    is_int(g.slots, 28, "32 threads, reserve 4: 28 may wait on bodies");
    body_gate_init(&g, 8, 0);
    is_int(g.slots, 8, "reserve 0: every thread may");
    body_gate_init(&g, 1, 4);
    is_int(g.slots, 1, "a single thread (mod_fcgid) may always read its body");
    body_gate_init(&g, 4, 4);
    is_int(g.slots, 1, "reserve = threads: still one");
}

static void test_complete(void)
{
    body_gate g;
    body_gate_init(&g, 8, 4);
    const arrival a[] = {{0, "{\"model\":"}, {3, "\"m\"}"}};
    script s = {.arrivals = a, .n = 2, .end_at = 5};
    rl_buf out;
    int at_end = -1;
    is_int(run(&s, &g, &out, &at_end), BODY_COMPLETE, "a body in two parts: complete");
    is_str(out.data, "{\"model\":\"m\"}", "every byte, in order");
    is_int(at_end, 1, "read to its end");
    is_int(s.max_held, 1, "a slot held while reading");
    is_int(atomic_load(&g.held), 0, "and given back");
    rl_buf_release(&out);

    script empty = {.arrivals = a, .n = 0, .end_at = 1};
    is_int(run(&empty, &g, &out, &at_end), BODY_COMPLETE, "no body: complete");
    is_int(out.len, 0, "empty");
    is_int(at_end, 1, "at its end");
    rl_buf_release(&out);
}

static void test_trickle(void)
{
    body_gate g;
    body_gate_init(&g, 8, 4);
    /* One byte every 2 s: each read is well inside any per-read timeout,
     * but the whole body is not there after 10 s. */
    static const arrival a[] = {{0, "{"},    {2000, "\""}, {4000, "m"},  {6000, "\""},
                                {8000, ":"}, {10000, "1"}, {12000, "2"}, {14000, "}"}};
    script s = {.arrivals = a, .n = 8, .end_at = 14001};
    rl_buf out;
    int at_end = -1;
    is_int(run(&s, &g, &out, &at_end), BODY_TIMED_OUT, "one byte every 2 s: timed out");
    is_int(s.now, 10000, "at the whole-body deadline, not later");
    is_int(at_end, 0, "not read to its end");
    is_int(atomic_load(&g.held), 0, "its slot given back");
    rl_buf_release(&out);

    /* Ten bytes, then silence. */
    static const arrival b[] = {{0, "{\"model\":\""}};
    script quiet = {.arrivals = b, .n = 1};
    is_int(run(&quiet, &g, &out, &at_end), BODY_TIMED_OUT, "ten bytes and silence: timed out");
    is_int(quiet.now, 10000, "at the deadline");
    is_int(quiet.reads, 2, "one read for the bytes, one wait for the rest");
    rl_buf_release(&out);
}

static void test_too_large(void)
{
    body_gate g;
    body_gate_init(&g, 8, 4);
    static const arrival a[] = {
        {0, "0123456789012345678901234567890123456789"},
        {1, "0123456789012345678901234567890123456789"},
        {2, "tail"},
    };
    script s = {.arrivals = a, .n = 3, .end_at = 3};
    rl_buf out;
    int at_end = -1;
    is_int(run(&s, &g, &out, &at_end), BODY_TOO_LARGE, "84 bytes over a 64-byte cap: too large");
    is_int(out.len, 0, "nothing kept");
    is_int(at_end, 1, "drained to its end, so the front sees it consumed");
    rl_buf_release(&out);

    script stalled = {.arrivals = a, .n = 2};
    is_int(run(&stalled, &g, &out, &at_end), BODY_TOO_LARGE,
           "too large, then silence: still too large");
    is_int(at_end, 0, "not drained to its end");
    is_int(stalled.now, 10000, "drained until the deadline only");
    rl_buf_release(&out);
}

static void test_reserve(void)
{
    body_gate g;
    body_gate_init(&g, 8, 4);
    atomic_store(&g.held, 4); /* every slot taken by slow bodies */
    static const arrival there[] = {{0, "{\"a\":1}"}};
    script s = {.arrivals = there, .n = 1, .end_at = 1};
    rl_buf out;
    int at_end = -1;
    is_int(run(&s, &g, &out, &at_end), BODY_COMPLETE,
           "no slot free, but the body is there: read on a reserve thread");
    is_str(out.data, "{\"a\":1}", "whole");
    is_int(atomic_load(&g.held), 4, "no slot taken or given");
    rl_buf_release(&out);

    static const arrival slow[] = {{0, "{"}, {200, "\""}, {400, "a"}};
    script t = {.arrivals = slow, .n = 3, .end_at = 600};
    is_int(run(&t, &g, &out, &at_end), BODY_OVERLOADED,
           "no slot free and the body slow: overloaded");
    is_int(t.now, 250, "at the end of the grace, however often bytes come");
    is_int(at_end, 0, "not read to its end");
    is_int(atomic_load(&g.held), 4, "the slots are still the slow bodies'");
    rl_buf_release(&out);

    /* A slot frees during the grace: taken, and then the body has the
     * whole deadline. */
    script u = {.arrivals = slow, .n = 3, .end_at = 600, .free_slot_at = 2};
    is_int(run(&u, &g, &out, &at_end), BODY_COMPLETE, "a slot freed meanwhile: complete");
    is_str(out.data, "{\"a", "whole");
    is_int(u.now, 600, "read past the grace, holding the freed slot");
    is_int(atomic_load(&g.held), 3, "and gave it back");
    rl_buf_release(&out);
}

static void test_broken(void)
{
    body_gate g;
    body_gate_init(&g, 8, 4);
    static const arrival a[] = {{0, "{\"mo"}};
    script s = {.arrivals = a, .n = 1, .err_at = 50};
    rl_buf out;
    int at_end = -1;
    is_int(run(&s, &g, &out, &at_end), BODY_BROKEN, "the connection breaks: broken");
    is_int(at_end, 0, "not at its end");
    is_int(atomic_load(&g.held), 0, "its slot given back");
    rl_buf_release(&out);
}

int main(void)
{
    test_gate_init();
    test_complete();
    test_trickle();
    test_too_large();
    test_reserve();
    test_broken();
    return tap_done();
}
