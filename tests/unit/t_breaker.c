/*
 * t_breaker.c — the shared circuit breaker (engine/breaker.c) with a fake
 * clock: only the right failures count, the window expires, open →
 * half-open → one probe → closed or re-opened, a dead prober's claim
 * expires (by its deadline, and at once when its process is gone), and a
 * second process mapping the same file sees the state the first set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/breaker.h"
#include "tests/unit/tap.h"

static const uint64_t T0 = 1800000000;
static const breaker_policy P = {.failures = 3, .window = 30, .cooldown = 20, .probe_bound = 60};

static uint32_t me(void)
{
    return (uint32_t)getpid();
}

/* Records n failed calls of upstream at now. */
static void fail_n(breaker *b, const char *up, int n, uint64_t now)
{
    for (int i = 0; i < n; i++)
        breaker_record(b, up, &P, BREAKER_CALL, BREAKER_FAILURE, now, me());
}

static breaker_verdict admit(breaker *b, const char *up, uint64_t now, uint64_t *retry_in)
{
    uint64_t r;
    breaker_verdict v = breaker_admit(b, up, &P, now, me(), retry_in ? retry_in : &r);
    return v;
}

static void test_classify(void)
{
    is_int(breaker_classify(RL_OK, 200), BREAKER_SUCCESS, "200 is a success");
    is_int(breaker_classify(RL_OK, 500), BREAKER_FAILURE, "500 counts");
    is_int(breaker_classify(RL_OK, 503), BREAKER_FAILURE, "503 counts");
    is_int(breaker_classify(RL_OK, 400), BREAKER_NEUTRAL, "a client's 400 does not count");
    is_int(breaker_classify(RL_OK, 404), BREAKER_NEUTRAL, "a 404 does not count");
    is_int(breaker_classify(RL_OK, 429), BREAKER_NEUTRAL, "a 429 does not count");
    is_int(breaker_classify(RL_UPSTREAM_UNREACHABLE, 0), BREAKER_FAILURE, "unreachable counts");
    is_int(breaker_classify(RL_UPSTREAM_TIMEOUT, 0), BREAKER_FAILURE, "a timeout counts");
    is_int(breaker_classify(RL_UPSTREAM_CUT, 200), BREAKER_FAILURE, "a cut stream counts");
    is_int(breaker_classify(RL_CLIENT_GONE, 200), BREAKER_NEUTRAL, "a client leaving does not");
    is_int(breaker_classify(RL_NOMEM, 0), BREAKER_NEUTRAL, "our own shortage does not");
}

static void test_window(breaker *b)
{
    const char *up = "win";
    is_int(admit(b, up, T0, NULL), BREAKER_CALL, "unknown upstream: call");
    fail_n(b, up, 2, T0);
    is_int(admit(b, up, T0, NULL), BREAKER_CALL, "two failures of three: still closed");
    breaker_view v;
    breaker_view_of(b, up, &P, T0 + 1, &v);
    is_int(v.failures, 2, "the view counts them");
    /* The window passes: the count starts again. */
    fail_n(b, up, 1, T0 + 30);
    is_int(admit(b, up, T0 + 30, NULL), BREAKER_CALL, "a failure after the window starts anew");
    breaker_view_of(b, up, &P, T0 + 30, &v);
    is_int(v.failures, 1, "one failure in the new window");
    /* Neutral and successful calls never count. */
    for (int i = 0; i < 10; i++) {
        breaker_record(b, up, &P, BREAKER_CALL, BREAKER_NEUTRAL, T0 + 31, me());
        breaker_record(b, up, &P, BREAKER_CALL, BREAKER_SUCCESS, T0 + 31, me());
    }
    is_int(admit(b, up, T0 + 31, NULL), BREAKER_CALL, "4xx and 2xx never open it");
    breaker_view_of(b, up, &P, T0 + 100, &v);
    is_int(v.failures, 0, "the view forgets a window that passed");
}

static void test_cycle(breaker *b)
{
    const char *up = "cycle";
    fail_n(b, up, 3, T0);
    uint64_t retry_in = 0;
    is_int(admit(b, up, T0 + 5, &retry_in), BREAKER_REFUSE, "three failures open it");
    is_int(retry_in, 15, "Retry-After is the cool-down left");
    ok(breaker_is_open(b, up, T0 + 5), "breaker_is_open says so");
    breaker_view v;
    breaker_view_of(b, up, &P, T0 + 5, &v);
    is_str(breaker_state_name(v.state), "open", "the view: open");
    is_int(v.opened_at, T0, "opened_at");
    is_int(v.retry_in, 15, "retry_in");
    is_int(v.opens, 1, "opened once");
    /* Late failures of calls admitted earlier do not extend it. */
    fail_n(b, up, 5, T0 + 6);
    breaker_view_of(b, up, &P, T0 + 6, &v);
    is_int(v.retry_in, 14, "late failures do not extend the cool-down");

    /* Half-open: exactly one probe. */
    ok(!breaker_is_open(b, up, T0 + 20), "half-open with no probe: not open (a request may probe)");
    is_int(admit(b, up, T0 + 20, NULL), BREAKER_PROBE,
           "the first request after the cool-down probes");
    ok(breaker_is_open(b, up, T0 + 20), "with a live probe it is open to others");
    int refused = 0;
    for (int i = 0; i < 50; i++)
        refused += admit(b, up, T0 + 21, &retry_in) == BREAKER_REFUSE;
    is_int(refused, 50, "every other request is refused while the probe runs");
    breaker_view_of(b, up, &P, T0 + 21, &v);
    is_str(breaker_state_name(v.state), "half_open", "the view: half_open");
    is_int(v.prober, me(), "with the prober's pid");

    /* The probe fails: open for another cool-down. */
    breaker_record(b, up, &P, BREAKER_PROBE, BREAKER_FAILURE, T0 + 22, me());
    is_int(admit(b, up, T0 + 23, &retry_in), BREAKER_REFUSE, "a failed probe re-opens it");
    is_int(retry_in, 19, "for a whole cool-down from the failure");
    breaker_view_of(b, up, &P, T0 + 23, &v);
    is_int(v.opens, 2, "opened twice");

    /* A neutral probe (a 4xx) only gives the claim back. */
    is_int(admit(b, up, T0 + 42, NULL), BREAKER_PROBE, "next cool-down over: a probe");
    breaker_record(b, up, &P, BREAKER_PROBE, BREAKER_NEUTRAL, T0 + 42, me());
    is_int(admit(b, up, T0 + 42, NULL), BREAKER_PROBE,
           "after a neutral probe the next request probes");

    /* The probe succeeds: closed, the window cleared. */
    breaker_record(b, up, &P, BREAKER_PROBE, BREAKER_SUCCESS, T0 + 43, me());
    is_int(admit(b, up, T0 + 43, NULL), BREAKER_CALL, "a successful probe closes it");
    ok(!breaker_is_open(b, up, T0 + 43), "closed");
    fail_n(b, up, 2, T0 + 44);
    is_int(admit(b, up, T0 + 44, NULL), BREAKER_CALL, "the count started again from zero");
}

static void test_dead_prober(breaker *b)
{
    const char *up = "deadprobe";
    fail_n(b, up, 3, T0);
    /* A prober that is alive but never reports: its claim ends at its
     * deadline (probe_bound). */
    is_int(admit(b, up, T0 + 20, NULL), BREAKER_PROBE, "probe claimed");
    is_int(admit(b, up, T0 + 79, NULL), BREAKER_REFUSE, "held until its deadline");
    is_int(admit(b, up, T0 + 80, NULL), BREAKER_PROBE, "a claim past its deadline is taken over");
    breaker_record(b, up, &P, BREAKER_PROBE, BREAKER_FAILURE, T0 + 81, me());

    /* A prober whose process died: taken over at once. */
    pid_t pid = fork();
    if (pid == 0) {
        breaker *c = breaker_new(getenv("T_BREAKER_HOME"));
        uint64_t r;
        int v = breaker_admit(c, up, &P, T0 + 101, (uint32_t)getpid(), &r);
        _exit(v == BREAKER_PROBE ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "another process took the probe, then died");
    is_int(admit(b, up, T0 + 102, NULL), BREAKER_PROBE,
           "a dead process's claim is taken over before its deadline");
    breaker_record(b, up, &P, BREAKER_PROBE, BREAKER_SUCCESS, T0 + 103, me());
}

static void test_shared(breaker *b)
{
    const char *up = "shared";
    pid_t pid = fork();
    if (pid == 0) {
        breaker *c = breaker_new(getenv("T_BREAKER_HOME"));
        for (int i = 0; i < 3; i++)
            breaker_record(c, up, &P, BREAKER_CALL, BREAKER_FAILURE, T0, (uint32_t)getpid());
        breaker_free(c);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    is_int(admit(b, up, T0 + 1, NULL), BREAKER_REFUSE, "failures in one process open it for all");
    /* A second handle on the same file (another process's view). */
    breaker *again = breaker_new(getenv("T_BREAKER_HOME"));
    ok(breaker_is_open(again, up, T0 + 1), "a new mapping sees it open");
    breaker_free(again);
}

static void test_off_and_null(breaker *b)
{
    breaker_policy off = P;
    off.failures = 0;
    uint64_t r;
    for (int i = 0; i < 10; i++)
        breaker_record(b, "off", &off, BREAKER_CALL, BREAKER_FAILURE, T0, me());
    is_int(breaker_admit(b, "off", &off, T0, me(), &r), BREAKER_CALL, "breaker_failures = 0: off");
    ok(!breaker_is_open(b, "off", T0), "never opens");
    is_int(breaker_admit(NULL, "x", &P, T0, me(), &r), BREAKER_CALL,
           "no breaker: every call admitted");
    breaker_record(NULL, "x", &P, BREAKER_CALL, BREAKER_FAILURE, T0, me());
    ok(!breaker_is_open(NULL, "x", T0), "and nothing is open");
    /* Many names: each keeps its own slot. */
    char name[32];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "many-%d", i);
        fail_n(b, name, i % 2 ? 3 : 1, T0);
    }
    int open = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "many-%d", i);
        open += breaker_is_open(b, name, T0);
    }
    is_int(open, 20, "40 upstreams, 20 opened: each has its own state");
}

int main(void)
{
    char dir[] = "/tmp/t_breaker.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("T_BREAKER_HOME", dir, 1);
    breaker *b = breaker_new(dir);
    ok(b != NULL, "the breaker file maps");
    if (!b)
        return tap_done();
    test_classify();
    test_window(b);
    test_cycle(b);
    test_dead_prober(b);
    test_shared(b);
    test_off_and_null(b);
    breaker_free(b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return tap_done();
}
