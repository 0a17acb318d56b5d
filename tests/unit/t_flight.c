/*
 * t_flight.c — the in-flight table (store/flight.h): leading and following,
 * publishing and reading chunks, generations, a leader process that dies
 * (taken over, or abandoned), followers' marks, and what maintenance removes
 * and keeps. Also that store_maintain does its work once per second for the
 * whole store.
 *
 * Times are passed in (milliseconds to the flight calls, seconds to
 * store_maintain): nothing sleeps. A leader that dies is a child process
 * (this binary run with --lead) that leads a flight, publishes a chunk and
 * exits without ending it.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/flight.h"
#include "store/store.h"
#include "tests/unit/tap.h"

/* Under LeakSanitizer (make asan): the dead leaders make the store reopen
 * its environment, and Berkeley DB 5.3 abandons the memory of a panicked
 * environment's handle (see store_fixture.h). Our own allocations stay checked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libdb-5.3.so\n";
}

static char tmp[64];
static char self[4096];
static char home[128], keyfile[160];

/* Flight times start here (ms), so that store_maintain's seconds line up. */
#define T0 1800000000000ULL

static void set_paths(const char *dir)
{
    if (dir != tmp)
        snprintf(tmp, sizeof tmp, "%s", dir);
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", dir);
}

static store_options opts(void)
{
    store_options o = {.home = home, .key_file = keyfile, .cache_mb = 8, .max_threads = 16};
    return o;
}

/* Not test_keys.h's: n goes in the first two bytes, which pick a key's
 * wake slot (wake_slot), so that nearby keys have slots of their own. */
static void mkkey(uint8_t k[STORE_KEY_LEN], uint32_t n)
{
    for (int i = 0; i < STORE_KEY_LEN; i++)
        k[i] = (uint8_t)(0xa5 ^ (i * 13));
    k[0] = (uint8_t)(n >> 8);
    k[1] = (uint8_t)n;
}

/* What a read saw: the chunks' bytes joined with '|', and their count. */
typedef struct seen {
    char text[256];
    unsigned n;
    uint32_t first_seq;
} seen;

static int collect(void *ctx, uint32_t seq, const void *data, size_t len)
{
    seen *s = ctx;
    if (s->n++ == 0)
        s->first_seq = seq;
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof s->text - used, "%s%.*s", used ? "|" : "", (int)len,
             (const char *)data);
    return 0;
}

static rl_err read_all(store *s, const uint8_t *key, uint32_t gen, uint32_t from, seen *out,
                       store_flight *rec, flight_state *state)
{
    memset(out, 0, sizeof *out);
    return store_flight_read(s, key, gen, from, collect, out, rec, state);
}

static void test_lead_follow_publish(store *s)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, 1);
    store_flight f, g, rec;
    int leader = -1;
    flight_state state;
    seen got;

    is_int(store_flight_read(s, k, 1, 0, NULL, NULL, &rec, &state), RL_NOTFOUND,
           "no flight yet: read is NOTFOUND");
    is_int(store_flight_join(s, k, T0, 0, &f, &leader), RL_OK, "first join");
    is_int(leader, 1, "the first request leads");
    is_int(f.state, FLIGHT_RUNNING, "its flight runs");
    is_int(f.leader_pid, getpid(), "led by this process");
    ok(f.gen != 0, "a generation number");

    is_int(store_flight_join(s, k, T0 + 5, 0, &g, &leader), RL_OK, "second join");
    is_int(leader, 0, "the second request follows");
    is_int(g.gen, f.gen, "the same generation");
    ok(store_flight_attended(s, k, T0 + 5), "a follower is there");
    ok(store_flight_attended(s, k, T0 + 5 + FLIGHT_ATTEND_MS), "... for FLIGHT_ATTEND_MS");
    ok(!store_flight_attended(s, k, T0 + 6 + FLIGHT_ATTEND_MS), "... and no longer");
    store_flight_attend(s, k, T0 + 9000);
    ok(store_flight_attended(s, k, T0 + 9000 + 100), "a follower that says so again is there");
    uint8_t other[STORE_KEY_LEN];
    mkkey(other, 2);
    ok(!store_flight_attended(s, other, T0 + 9000), "another key's flight has no follower");

    is_int(store_flight_append(s, k, f.gen, 0, "head", 4, T0 + 10), RL_OK, "chunk 0");
    is_int(store_flight_append(s, k, f.gen, 1, "alpha", 5, T0 + 20), RL_OK, "chunk 1");
    is_int(read_all(s, k, f.gen, 0, &got, &rec, &state), RL_OK, "read from 0");
    is_str(got.text, "head|alpha", "both chunks, in order");
    is_int(state, FLIGHT_RUNNING, "still running");
    is_int(store_flight_append(s, k, f.gen, 2, "beta", 4, T0 + 30), RL_OK, "chunk 2");
    is_int(read_all(s, k, f.gen, 2, &got, &rec, &state), RL_OK, "read from 2");
    is_str(got.text, "beta", "only what is new");
    is_int(got.first_seq, 2, "numbered 2");
    is_int(store_flight_append(s, k, f.gen + 7, 3, "x", 1, T0 + 31), RL_NOTFOUND,
           "another generation's leader cannot publish");

    is_int(store_flight_finish(s, k, f.gen, FLIGHT_DONE, 1, T0 + 40), RL_OK, "finish DONE");
    is_int(store_flight_append(s, k, f.gen, 3, "late", 4, T0 + 41), RL_NOTFOUND,
           "nothing is published after the end");
    is_int(read_all(s, k, f.gen, 0, &got, &rec, &state), RL_OK, "read the finished flight");
    is_str(got.text, "head|alpha|beta", "every chunk");
    is_int(state, FLIGHT_DONE, "DONE");
    is_int(store_flight_finish(s, k, f.gen + 1, FLIGHT_DONE, 1, T0 + 42), RL_NOTFOUND,
           "finishing a generation that is not current is NOTFOUND");

    /* A reusable finished flight is joined while it lingers, not after. */
    is_int(store_flight_join(s, k, T0 + 50, 1000, &g, &leader), RL_OK, "join within linger");
    is_int(leader, 0, "follows the finished answer");
    is_int(g.gen, f.gen, "of the same generation");
    is_int(store_flight_join(s, k, T0 + 60, 0, &g, &leader), RL_OK, "join without linger");
    is_int(leader, 1, "leads a new generation");
    is_int(g.gen, f.gen + 1, "numbered next");
    is_int(read_all(s, k, f.gen, 0, &got, &rec, &state), RL_OK,
           "the old generation stays readable");
    is_str(got.text, "head|alpha|beta", "with its chunks");
    is_int(state, FLIGHT_DONE, "and how it ended");
    is_int(rec.gen, g.gen, "while the record names the new one");
    is_int(store_flight_finish(s, k, g.gen, FLIGHT_FAILED, 0, T0 + 70), RL_OK, "the new one fails");
    is_int(store_flight_join(s, k, T0 + 80, 100000, &f, &leader), RL_OK, "join after a failure");
    is_int(leader, 1, "a failed flight is never followed, whatever the linger");
    is_int(store_flight_finish(s, k, f.gen, FLIGHT_DONE, 0, T0 + 90), RL_OK, "done, not reusable");
    is_int(store_flight_join(s, k, T0 + 95, 100000, &g, &leader), RL_OK, "join");
    is_int(leader, 1, "a flight that is not reusable is never followed once done");
    is_int(store_flight_finish(s, k, g.gen, FLIGHT_DONE, 1, T0 + 99), RL_OK, "end it");
}

/* Runs this binary as a leader of key n that publishes one chunk and exits
 * without ending its flight once told to (a byte on its stdin). Returns its
 * pid; *tell is the pipe to tell it. Waits until it leads. */
static pid_t spawn_leader(uint32_t n, int *tell)
{
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(down[0], 0);
        dup2(up[1], 1);
        close(up[0]);
        close(down[1]);
        char num[16];
        snprintf(num, sizeof num, "%u", n);
        execl(self, self, "--lead", num, tmp, (char *)NULL);
        _exit(127);
    }
    close(up[1]);
    close(down[0]);
    char c = 0;
    if (read(up[0], &c, 1) != 1 || c != 'L')
        pid = -1;
    close(up[0]);
    *tell = down[1];
    return pid;
}

static int lead_role(uint32_t n)
{
    store *s = NULL;
    store_options o = opts();
    if (store_open(&o, &s) != RL_OK)
        return 2;
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    store_flight f;
    int leader = 0;
    if (store_flight_join(s, k, T0, 0, &f, &leader) != RL_OK || !leader)
        return 3;
    if (store_flight_append(s, k, f.gen, 0, "doomed", 6, T0 + 1) != RL_OK)
        return 4;
    if (write(1, "L", 1) != 1)
        return 5;
    char c;
    (void)!read(0, &c, 1);
    _exit(0); /* dies leading: no finish, no close */
}

static void test_dead_leader(store *s)
{
    uint8_t k[STORE_KEY_LEN];
    store_flight f, next, rec;
    int leader = -1, won = -1, tell = -1;
    flight_state state;
    seen got;

    /* A follower takes over from a leader that died. */
    mkkey(k, 10);
    pid_t child = spawn_leader(10, &tell);
    ok(child > 0, "a child process leads");
    is_int(store_flight_join(s, k, T0 + 2, 0, &f, &leader), RL_OK, "join its flight");
    is_int(leader, 0, "follows the live leader");
    ok(store_flight_leader_alive(&f), "the leader is alive");
    is_int(store_flight_takeover(s, k, f.gen, T0 + 3, &next, &won), RL_OK, "takeover attempt");
    is_int(won, 0, "no takeover while the leader lives");
    (void)!write(tell, "x", 1);
    close(tell);
    int status = 0;
    waitpid(child, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the leader exited");
    ok(!store_flight_leader_alive(&f), "the leader is dead");
    is_int(store_flight_takeover(s, k, f.gen, T0 + 4, &next, &won), RL_OK, "takeover");
    is_int(won, 1, "the follower leads now");
    is_int(next.gen, f.gen + 1, "a new generation");
    is_int(next.leader_pid, getpid(), "led by this process");
    is_int(store_flight_takeover(s, k, f.gen, T0 + 5, &rec, &won), RL_OK, "a second takeover");
    is_int(won, 0, "loses: someone took over already");
    is_int(read_all(s, k, f.gen, 0, &got, &rec, &state), RL_OK, "read the dead generation");
    is_int(got.n, 0, "its chunks are gone");
    is_int(state, FLIGHT_FAILED, "it counts as failed");
    is_int(store_flight_finish(s, k, next.gen, FLIGHT_DONE, 1, T0 + 6), RL_OK, "finish");

    /* A request that finds the leader dead leads a new generation. */
    mkkey(k, 11);
    child = spawn_leader(11, &tell);
    ok(child > 0, "another child leads");
    (void)!write(tell, "x", 1);
    close(tell);
    waitpid(child, &status, 0);
    is_int(store_flight_join(s, k, T0 + 10, 0, &f, &leader), RL_OK, "join after the death");
    is_int(leader, 1, "leads instead of following a dead leader");
    is_int(store_flight_finish(s, k, f.gen, FLIGHT_DONE, 1, T0 + 11), RL_OK, "finish");

    /* Nobody comes: maintenance removes the abandoned flight. */
    mkkey(k, 12);
    child = spawn_leader(12, &tell);
    (void)!write(tell, "x", 1);
    close(tell);
    waitpid(child, &status, 0);
    is_int(store_maintain(s, T0 / 1000 + 2), RL_OK, "maintain 2 s later");
    is_int(store_flight_read(s, k, 0, 0, NULL, NULL, &rec, &state), RL_OK, "the flight is kept");
    is_int(store_maintain(s, T0 / 1000 + 7), RL_OK, "maintain 7 s later");
    is_int(store_flight_read(s, k, 0, 0, NULL, NULL, &rec, &state), RL_NOTFOUND,
           "an abandoned flight goes after its leader was silent 5 s");
}

static int flight_exists(store *s, uint32_t n)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    store_flight rec;
    flight_state state;
    return store_flight_read(s, k, 0, 0, NULL, NULL, &rec, &state) == RL_OK;
}

static int flights_left(store *s, uint32_t from, uint32_t to)
{
    int n = 0;
    for (uint32_t i = from; i < to; i++)
        n += flight_exists(s, i);
    return n;
}

static void test_maintenance(store *s)
{
    uint8_t k[STORE_KEY_LEN];
    store_flight a, b, f, rec;
    int leader;
    flight_state state;
    seen got;
    const uint64_t t = T0 + 100000; /* after the flights of the tests above */

    /* Generation A ends, generation B runs on (led by us, alive). */
    mkkey(k, 20);
    store_flight_join(s, k, t, 0, &a, &leader);
    store_flight_append(s, k, a.gen, 0, "a0", 2, t);
    store_flight_append(s, k, a.gen, 1, "a1", 2, t + 1);
    store_flight_finish(s, k, a.gen, FLIGHT_DONE, 1, t + 2);
    store_flight_join(s, k, t + 3, 0, &b, &leader);
    is_int(leader, 1, "a second generation");
    store_flight_append(s, k, b.gen, 0, "b0", 2, t + 4);

    /* Finished flights, more than one scan looks at (512). */
    for (uint32_t n = 100; n < 1300; n++) {
        uint8_t kn[STORE_KEY_LEN];
        mkkey(kn, n);
        store_flight_join(s, kn, t, 0, &f, &leader);
        store_flight_append(s, kn, f.gen, 0, "x", 1, t);
        store_flight_finish(s, kn, f.gen, FLIGHT_DONE, 1, t + 1);
    }
    is_int(flights_left(s, 100, 1300), 1200, "1200 finished flights");

    is_int(store_maintain(s, t / 1000 + 30), RL_OK, "maintain 30 s later");
    is_int(flights_left(s, 100, 1300), 1200, "finished flights are kept 60 s");
    is_int(read_all(s, k, a.gen, 0, &got, &rec, &state), RL_OK, "the ended generation");
    is_str(got.text, "a0|a1", "keeps its chunks 60 s");

    /* Each run sweeps for about 50 ms at most: a few may be needed. */
    int left = 1200;
    for (unsigned i = 0; i < 20 && left; i++) {
        is_int(store_maintain(s, t / 1000 + 62 + i), RL_OK, "maintain after 60 s");
        left = flights_left(s, 100, 1300);
    }
    is_int(left, 0, "every finished flight went after 60 s");
    is_int(read_all(s, k, b.gen, 0, &got, &rec, &state), RL_OK, "the running generation");
    is_str(got.text, "b0", "keeps its chunks, however old");
    is_int(read_all(s, k, a.gen, 0, &got, &rec, &state), RL_OK, "the ended generation");
    is_int(got.n, 0, "lost its chunks after 60 s");
    is_int(store_flight_finish(s, k, b.gen, FLIGHT_DONE, 1, t + 5), RL_OK, "end B");

    /* One process per second: after a run for second X, another call for X
     * returns at once, however much there is to do; one for X + 1 works. */
    mkkey(k, 30);
    uint64_t x = t / 1000 + 1000;
    is_int(store_maintain(s, x), RL_OK, "maintain at X");
    store_flight_join(s, k, (x - 61) * 1000, 0, &f, &leader);
    store_flight_finish(s, k, f.gen, FLIGHT_DONE, 1, (x - 61) * 1000);
    is_int(store_maintain(s, x), RL_OK, "maintain at X again");
    ok(flight_exists(s, 30), "the second call for the same second did nothing");
    is_int(store_maintain(s, x + 1), RL_OK, "maintain at X + 1");
    ok(!flight_exists(s, 30), "the next second's call removed the finished flight");
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--lead") == 0) {
        set_paths(argv[3]);
        return lead_role((uint32_t)strtoul(argv[2], NULL, 10));
    }
    if (!realpath(argv[0], self)) {
        perror("realpath");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120);
    snprintf(tmp, sizeof tmp, "/tmp/t_flight.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    set_paths(tmp);

    store *s = NULL;
    store_options o = opts();
    is_int(store_keyfile_ensure(keyfile), RL_OK, "key file");
    is_int(store_open(&o, &s), RL_OK, "open");
    if (s) {
        test_lead_follow_publish(s);
        test_dead_leader(s);
        test_maintenance(s);
        store_close(s);
    }
    is_int(store_remove(&o), RL_OK, "store_remove");

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
