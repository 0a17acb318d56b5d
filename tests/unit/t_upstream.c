/* Unit tests for engine/upstream's timers: first_byte_timeout bounds the
 * wait for the headers, idle_timeout the gaps after them (seconds since the
 * last byte moved, in either direction), timeout the whole call; each is
 * told apart. The time is passed in. */
#include "engine/upstream.h"
#include "tests/unit/tap.h"

#include <string.h>

static void start(upstream_timer *t, double now, long first_byte, long idle, long total)
{
    upstream_request req = {
        .first_byte_timeout = first_byte, .idle_timeout = idle, .timeout = total};
    upstream_timer_start(t, &req, now);
}

static void idle_gaps(void)
{
    upstream_timer t;
    start(&t, 100.0, 60, 10, 900);
    is_int(upstream_timer_check(&t, 100.0, 0, 1, 1), UPSTREAM_TIMEOUT_NONE, "headers at once");
    is_int(upstream_timer_check(&t, 105.0, 0, 1, 1), UPSTREAM_TIMEOUT_NONE,
           "5 s of silence is within idle_timeout = 10");
    is_int(upstream_timer_check(&t, 110.0, 0, 1, 1), UPSTREAM_TIMEOUT_NONE,
           "10 s is not yet over it");
    is_int(upstream_timer_check(&t, 110.5, 0, 1, 1), UPSTREAM_TIMEOUT_IDLE,
           "10.5 s of silence after the headers is idle_timeout");

    start(&t, 0.0, 60, 10, 900);
    upstream_timer_check(&t, 0.0, 0, 1, 1);
    is_int(upstream_timer_check(&t, 9.0, 300, 1, 1), UPSTREAM_TIMEOUT_NONE,
           "a chunk at 9 s restarts the gap");
    is_int(upstream_timer_check(&t, 18.0, 300, 1, 1), UPSTREAM_TIMEOUT_NONE,
           "9 s after it: within");
    is_int(upstream_timer_check(&t, 19.5, 300, 1, 1), UPSTREAM_TIMEOUT_IDLE,
           "10.5 s after it: idle");

    /* A stream that sends a chunk every 8 s never goes idle with 10. */
    start(&t, 0.0, 60, 10, 900);
    upstream_timeout_kind k = UPSTREAM_TIMEOUT_NONE;
    for (int i = 1; i <= 100 && k == UPSTREAM_TIMEOUT_NONE; i++) {
        k = upstream_timer_check(&t, i * 8.0, i, 1, 1);
        if (k == UPSTREAM_TIMEOUT_NONE)
            k = upstream_timer_check(&t, i * 8.0 + 7.9, i, 1, 1);
    }
    is_int(k, UPSTREAM_TIMEOUT_NONE, "a chunk every 8 s keeps a call going 800 s with idle = 10");
}

static void first_byte(void)
{
    upstream_timer t;
    /* Before the headers, silence is the model thinking: idle does not
     * apply, first_byte does. */
    start(&t, 0.0, 30, 5, 900);
    upstream_timer_check(&t, 0.0, 0, 1, 0); /* connected at once */
    is_int(upstream_timer_check(&t, 20.0, 0, 1, 0), UPSTREAM_TIMEOUT_NONE,
           "20 s without headers: within first_byte_timeout = 30 although idle = 5");
    is_int(upstream_timer_check(&t, 30.5, 0, 1, 0), UPSTREAM_TIMEOUT_FIRST_BYTE,
           "30.5 s without headers is first_byte_timeout");

    /* An upload that keeps moving does not stop the first-byte clock (from
     * the request sent). */
    start(&t, 0.0, 30, 5, 900);
    upstream_timer_check(&t, 0.0, 0, 1, 0);
    is_int(upstream_timer_check(&t, 29.0, 1 << 20, 1, 0), UPSTREAM_TIMEOUT_NONE,
           "uploading at 29 s");
    is_int(upstream_timer_check(&t, 31.0, 2 << 20, 1, 0), UPSTREAM_TIMEOUT_FIRST_BYTE,
           "the first-byte clock runs from the request sent, not from the last byte");

    /* The headers start the idle clock even without a body byte. */
    start(&t, 0.0, 30, 5, 900);
    upstream_timer_check(&t, 1.0, 65536, 1, 0); /* the body sent, then silence */
    is_int(upstream_timer_check(&t, 20.0, 65536, 1, 1), UPSTREAM_TIMEOUT_NONE,
           "headers at 20 s after 19 s of silence are not idle");
    is_int(upstream_timer_check(&t, 24.0, 65536, 1, 1), UPSTREAM_TIMEOUT_NONE, "4 s later: within");
    is_int(upstream_timer_check(&t, 25.5, 65536, 1, 1), UPSTREAM_TIMEOUT_IDLE, "5.5 s later: idle");
}

static void connecting(void)
{
    upstream_timer t;
    /* While connecting, first_byte does not run: connect_timeout (libcurl's)
     * is the one that says so. */
    start(&t, 0.0, 1, 1, 60);
    is_int(upstream_timer_check(&t, 5.0, 0, 0, 0), UPSTREAM_TIMEOUT_NONE,
           "5 s connecting is not first_byte_timeout = 1");
    /* Connected at 5 s: the first-byte clock starts there. */
    is_int(upstream_timer_check(&t, 5.0, 100, 1, 0), UPSTREAM_TIMEOUT_NONE, "connected at 5 s");
    is_int(upstream_timer_check(&t, 5.9, 100, 1, 0), UPSTREAM_TIMEOUT_NONE, "0.9 s after: within");
    is_int(upstream_timer_check(&t, 6.5, 100, 1, 0), UPSTREAM_TIMEOUT_FIRST_BYTE,
           "1.5 s after the request was sent: first_byte_timeout");
    start(&t, 0.0, 1, 1, 60);
    is_int(upstream_timer_check(&t, 61.0, 0, 0, 0), UPSTREAM_TIMEOUT_TOTAL,
           "the total bounds connecting too");
}

static void total(void)
{
    upstream_timer t;
    /* A slow but steady stream: never idle, but bounded as a whole. */
    start(&t, 0.0, 30, 5, 60);
    upstream_timeout_kind k = UPSTREAM_TIMEOUT_NONE;
    double at = 0;
    for (int i = 1; i <= 100 && k == UPSTREAM_TIMEOUT_NONE; i++) {
        at = i * 1.0;
        k = upstream_timer_check(&t, at + 0.5, i, 1, 1);
    }
    is_int(k, UPSTREAM_TIMEOUT_TOTAL, "a chunk a second ends at timeout = 60");
    is_int((long)(at * 10), 600, "... at the check of 60.5 s");
    /* The total wins over first_byte when both are over. */
    start(&t, 0.0, 60, 5, 60);
    is_int(upstream_timer_check(&t, 61.0, 0, 1, 0), UPSTREAM_TIMEOUT_TOTAL,
           "total before first_byte");
}

static void names(void)
{
    is_str(upstream_timeout_key(UPSTREAM_TIMEOUT_FIRST_BYTE), "first_byte_timeout",
           "first_byte's key");
    is_str(upstream_timeout_key(UPSTREAM_TIMEOUT_TOTAL), "timeout", "total's key");
    is_str(upstream_timeout_label(UPSTREAM_TIMEOUT_CONNECT), "connect", "connect label");
    is_str(upstream_timeout_label(UPSTREAM_TIMEOUT_IDLE), "idle", "idle label");
    is_str(upstream_timeout_key(UPSTREAM_TIMEOUT_NONE), "", "none has no key");
}

int main(void)
{
    idle_gaps();
    first_byte();
    connecting();
    total();
    names();
    return tap_done();
}
