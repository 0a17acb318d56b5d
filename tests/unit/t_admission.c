/*
 * t_admission.c — the pool-wide places for upstream calls (admission.h):
 * limits, release on every path, the bounded queue with a fake clock (no
 * test sleeps), a SIGKILLed process's places reclaimed, the limit shared
 * by processes, a release in one process waking a waiter in another, and
 * the configuration keys.
 */
#include "engine/admission.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/config.h"
#include "tap.h"

static char dir[] = "/tmp/t_admission.XXXXXX";

/* A clock whose waits pass no real time: each wait moves now by its
 * timeout, and may give a place back on the way (another call ending). */
typedef struct fake_clock {
    uint64_t now;
    unsigned waits;
    uint64_t longest; /* the longest single wait asked for */
    admission *a;
    admission_hold *release; /* given back at wait number release_on */
    unsigned release_on;
} fake_clock;

static uint64_t fake_now(void *ctx)
{
    return ((fake_clock *)ctx)->now;
}

static void fake_wait(void *ctx, uint32_t *word, uint32_t seen, uint64_t timeout_ms)
{
    (void)word;
    (void)seen;
    fake_clock *c = ctx;
    c->waits++;
    if (timeout_ms > c->longest)
        c->longest = timeout_ms;
    if (c->release && c->waits == c->release_on) {
        c->now += timeout_ms / 2;
        admission_leave(c->a, c->release);
        return;
    }
    c->now += timeout_ms;
}

static admission_clock clock_of(fake_clock *c)
{
    return (admission_clock){fake_now, fake_wait, c};
}

static uint64_t inflight(admission *a, const char *name)
{
    admission_counts c;
    admission_read(a, name, &c);
    return c.inflight;
}

static void test_limits(admission *a)
{
    fake_clock fc = {.now = 1000000, .a = a};
    admission_clock ck = clock_of(&fc);
    admission_hold h[4];
    uint64_t waited = 99;

    is_int(admission_enter(a, "free", 0, 0, &ck, &h[0], &waited), RL_OK, "max 0: no limit");
    ok(h[0].row >= 0, "... and the call is still counted in flight");
    is_int(inflight(a, "free"), 1, "the gauge shows it");
    admission_leave(a, &h[0]);
    is_int(inflight(a, "free"), 0, "given back");

    for (int i = 0; i < 3; i++)
        is_int(admission_enter(a, "up", 3, 0, &ck, &h[i], &waited), RL_OK, "a place under max 3");
    is_int(waited, 0, "a free place is taken without waiting");
    is_int(inflight(a, "up"), 3, "three in flight");
    is_int(admission_enter(a, "up", 3, 0, &ck, &h[3], &waited), RL_OVERLOADED,
           "the fourth is refused at once with queue_timeout 0");
    is_int(h[3].row, -1, "a refusal holds nothing");
    is_int(fc.waits, 0, "... and did not wait");
    is_int(admission_enter(a, "other", 3, 0, &ck, &h[3], NULL), RL_OK,
           "another upstream has its own places");
    admission_leave(a, &h[3]);

    admission_counts c;
    admission_read(a, "up", &c);
    is_int(c.refused, 1, "the refusal is counted");
    is_int(c.waited, 1, "... as a call that found no place");

    admission_leave(a, &h[1]);
    admission_leave(a, &h[1]);
    is_int(inflight(a, "up"), 2, "a second leave of the same hold does nothing");
    is_int(admission_enter(a, "up", 3, 0, &ck, &h[1], NULL), RL_OK, "the freed place is taken");
    is_int(admission_enter(a, "up", 4, 0, &ck, &h[3], NULL), RL_OK,
           "a higher max (a reload) has one more place");
    for (int i = 0; i < 4; i++)
        admission_leave(a, &h[i]);
    is_int(inflight(a, "up"), 0, "every place given back");

    admission_hold none = {-1, -1};
    admission_leave(a, &none);
    admission_leave(NULL, &none);
    is_int(admission_enter(NULL, "up", 3, 0, &ck, &h[0], NULL), RL_OK,
           "without the file (it could not be mapped) nothing is limited");
    is_int(h[0].row, -1, "... and nothing held");
}

static void test_queue(admission *a)
{
    fake_clock fc = {.now = 5000000, .a = a};
    admission_clock ck = clock_of(&fc);
    admission_hold h[2], q;
    uint64_t waited = 0;
    for (int i = 0; i < 2; i++)
        admission_enter(a, "queue", 2, 0, &ck, &h[i], NULL);

    is_int(admission_enter(a, "queue", 2, 5000, &ck, &q, &waited), RL_OVERLOADED,
           "no place came free within the queue timeout: refused");
    is_int(waited, 5000, "it waited the whole queue timeout (fake clock)");
    is_int(fc.now, 5005000, "... and not longer");
    ok(fc.longest <= ADMISSION_REAP_MS, "each wait is at most a reap interval");
    ok(fc.waits >= 5, "so it looked again at least every second");

    fc.waits = 0;
    fc.release = &h[0];
    fc.release_on = 3;
    uint64_t before = fc.now;
    is_int(admission_enter(a, "queue", 2, 5000, &ck, &q, &waited), RL_OK,
           "a place given back while it waits is taken");
    is_int(waited, fc.now - before, "it waited until then");
    ok(waited < 5000, "... less than the queue timeout");
    is_int(inflight(a, "queue"), 2, "the limit held");

    admission_counts c;
    admission_read(a, "queue", &c);
    is_int(c.waited, 2, "both waits counted");
    is_int(c.wait_ms, 5000 + waited, "with their time");
    is_int(c.refused, 1, "one refusal");
    admission_leave(a, &h[1]);
    admission_leave(a, &q);
    is_int(inflight(a, "queue"), 0, "all given back");
}

/* A child that takes n places of upstream name under max and stays; its
 * pid, once it holds them (-1 if it could not take them all). */
static pid_t child_holding(const char *name, unsigned n, unsigned max)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        admission *mine = NULL;
        char got = 'n';
        if (admission_open(dir, &mine) == RL_OK) {
            admission_hold h;
            unsigned took = 0;
            for (unsigned i = 0; i < n; i++)
                took +=
                    admission_enter(mine, name, max, 0, &admission_system_clock, &h, NULL) == RL_OK;
            got = took == n ? 'y' : 'n';
        }
        if (write(fds[1], &got, 1) != 1)
            _exit(2);
        pause();
        _exit(0);
    }
    close(fds[1]);
    char got = 0;
    ssize_t r = read(fds[0], &got, 1);
    close(fds[0]);
    if (r != 1 || got != 'y') {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static void test_processes(admission *a)
{
    fake_clock fc = {.now = 9000000, .a = a};
    admission_clock ck = clock_of(&fc);
    admission_hold h[3];

    pid_t child = child_holding("shared", 3, 5);
    ok(child > 0, "a child process takes 3 of 5 places");
    is_int(inflight(a, "shared"), 3, "this process sees them");
    is_int(admission_enter(a, "shared", 5, 0, &ck, &h[0], NULL), RL_OK, "a fourth here");
    is_int(admission_enter(a, "shared", 5, 0, &ck, &h[1], NULL), RL_OK, "a fifth here");
    is_int(admission_enter(a, "shared", 5, 0, &ck, &h[2], NULL), RL_OVERLOADED,
           "the sixth is refused: the limit is the pool's, not the process's");
    is_int(admission_reap(a, "shared", fc.now, 1), 0, "a live process's places are not freed");

    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    is_int(inflight(a, "shared"), 5, "a SIGKILLed process's places stay held at first");
    fc.now += ADMISSION_REAP_MS;
    is_int(admission_enter(a, "shared", 5, 0, &ck, &h[2], NULL), RL_OK,
           "the next call that finds the row full frees them and takes one");
    is_int(inflight(a, "shared"), 3, "the dead process's 3 are free again (2 + 1 held here)");
    for (int i = 0; i < 3; i++)
        admission_leave(a, &h[i]);
    is_int(inflight(a, "shared"), 0, "and ours given back");

    /* A release in this process wakes a waiter of another (the futex is
     * shared): the child waits up to 20 s with the system's clock and
     * exits 0 once admitted. Bounded, never a timed assertion. */
    for (int i = 0; i < 2; i++)
        admission_enter(a, "wake", 2, 0, &ck, &h[i], NULL);
    int status = -1;
    pid_t waiter = fork();
    if (waiter == 0) {
        admission *mine = NULL;
        admission_hold w;
        if (admission_open(dir, &mine) != RL_OK)
            _exit(3);
        _exit(admission_enter(mine, "wake", 2, 20000, &admission_system_clock, &w, NULL) == RL_OK
                  ? 0
                  : 1);
    }
    admission_counts c = {0};
    /* Once the row counts it waiting, give it a place; bounded (20 s). */
    int released = 0;
    for (int spin = 0; spin < 20000 && waiter > 0; spin++) {
        admission_read(a, "wake", &c);
        if (!released && c.waiting == 1) {
            admission_leave(a, &h[0]);
            released = 1;
        }
        if (waitpid(waiter, &status, WNOHANG) == waiter)
            waiter = -1;
        else
            usleep(1000);
    }
    if (waiter > 0) {
        kill(waiter, SIGKILL);
        waitpid(waiter, &status, 0);
    }
    ok(released, "the waiter in another process was seen waiting");
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "... and exited admitted");
    admission_read(a, "wake", &c);
    is_int(c.refused, 0, "the waiter in another process was admitted after the release");
    is_int(c.waited, 1, "... having waited");
    admission_leave(a, &h[1]);
}

static void test_config(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/t.ini", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fputs("[fcgi]\nmax_inflight = 4\nqueue_timeout = 3\n"
          "[upstream.a]\ntype = openai\n"
          "[upstream.b]\ntype = anthropic\nmax_inflight = 2\n"
          "[upstream.c]\ntype = gemini\nmax_inflight = 0\n",
          f);
    fclose(f);
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(config_load(path, &cfg, &why), RL_OK, "an ini with max_inflight loads");
    if (cfg) {
        is_int(cfg->fcgi.queue_timeout, 3, "[fcgi] queue_timeout");
        is_int(cfg->upstreams[0].max_inflight, 4, "an upstream without its own: [fcgi]'s");
        is_int(cfg->upstreams[1].max_inflight, 2, "an upstream's own wins");
        is_int(cfg->upstreams[2].max_inflight, 0, "... also 0, no limit");
        config_free(cfg);
    }
    rl_buf_reset(&why);
    f = fopen(path, "w");
    if (f) {
        fputs("[upstream.a]\ntype = openai\nmax_inflight = 5000\n", f);
        fclose(f);
    }
    cfg = NULL;
    is_int(config_load(path, &cfg, &why), RL_CONFIG, "a max_inflight over the table is refused");
    config_free(cfg);
    rl_buf_reset(&why);
    f = fopen(path, "w");
    if (f) {
        fputs("[upstream.a]\ntype = openai\n", f);
        fclose(f);
    }
    cfg = NULL;
    if (config_load(path, &cfg, &why) == RL_OK) {
        is_int(cfg->upstreams[0].max_inflight, 0, "default: no limit");
        is_int(cfg->fcgi.queue_timeout, 10, "default queue_timeout: 10 s");
        config_free(cfg);
    }
    rl_buf_release(&why);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    admission *a = NULL;
    is_int(admission_open(dir, &a), RL_OK, "the admission file opens");
    if (a) {
        test_limits(a);
        test_queue(a);
        test_processes(a);
        admission_close(a);
        admission *again = NULL;
        is_int(admission_open(dir, &again), RL_OK, "an existing file opens again");
        is_int(inflight(again, "up"), 0, "... with nothing held");
        admission_close(again);
    }
    test_config();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return tap_done();
}
