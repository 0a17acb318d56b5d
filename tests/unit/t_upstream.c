/* Unit tests for engine/upstream's idle timer: idle_timeout counts seconds
 * since the last byte moved, in either direction, and nothing else (the
 * time is passed in). */
#include "engine/upstream.h"
#include "tests/unit/tap.h"

int main(void)
{
    upstream_idle t;
    upstream_idle_start(&t, 100.0);
    ok(!upstream_idle_expired(&t, 105.0, 0, 10), "5 s of silence is within idle_timeout = 10");
    ok(!upstream_idle_expired(&t, 110.0, 0, 10), "10 s is not yet over it");
    ok(upstream_idle_expired(&t, 110.5, 0, 10), "10.5 s of silence is over idle_timeout = 10");

    upstream_idle_start(&t, 0.0);
    ok(!upstream_idle_expired(&t, 9.0, 300, 10), "a byte at 9 s restarts the timer");
    ok(!upstream_idle_expired(&t, 18.0, 300, 10), "9 s after it: within");
    ok(upstream_idle_expired(&t, 19.5, 300, 10), "10.5 s after it: expired");

    /* A stream that trickles one byte every 8 s never expires with 10. */
    upstream_idle_start(&t, 0.0);
    int expired = 0;
    for (int i = 1; i <= 100; i++) {
        expired |= upstream_idle_expired(&t, i * 8.0, i, 10);
        expired |= upstream_idle_expired(&t, i * 8.0 + 7.9, i, 10);
    }
    ok(!expired, "a byte every 8 s keeps a call alive for 800 s with idle_timeout = 10");

    /* Sent bytes count as well: a large request body still uploading. */
    upstream_idle_start(&t, 0.0);
    ok(!upstream_idle_expired(&t, 8.0, 65536, 10), "upload progress counts as activity");
    ok(!upstream_idle_expired(&t, 17.0, 65536, 10), "... and restarts the timer");
    return tap_done();
}
