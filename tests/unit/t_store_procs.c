/*
 * t_store_procs.c — the Berkeley DB store shared by several processes: hit
 * tallies summed exactly across processes, a process killed with SIGKILL in
 * the middle of its writes, recovery by a process arriving after it, and
 * threads of one process sharing a handle through such a recovery.
 * t_store.c tests the store in one process.
 *
 * Time is passed in (meta->created/expires, now): nothing sleeps for expiry.
 * The only pauses are the few milliseconds before a SIGKILL, to hit the
 * victim at a random moment. Everything lives in a mkdtemp directory
 * (store_fixture.h), and the SysV segments the test's processes created are
 * checked gone at the end.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/unit/store_fixture.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_keys.h"

#define CHILDREN 3
#define CHILD_ITERS 400
#ifndef KILL_ROUNDS
#define KILL_ROUNDS 4
#endif

static char self[4096]; /* this binary, for spawn_exec */

/*
 * Tallies: entries whose hit count the processes below add to, as a shared
 * counter. A hit (store_cache_touch) is not idempotent, so it is never
 * retried after a commit that met a recovery: "counted once, never twice"
 * is checked on them.
 */
enum {
    TALLY_SUM = 0x70000000u,
    TALLY_SUM2,
    TALLY_BUSY,
    TALLY_AFTER,
    TALLY_FRESH,
    TALLY_THREADS,
    TALLY_THREADS_AFTER,
};
#define TALLIES 7

static rl_err tally_new(store *s, uint32_t n)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    store_meta m = {.created = 1, .expires = UINT64_MAX - 1};
    return store_cache_put(s, k, &m, "tally", 5);
}

static rl_err tally_add(store *s, uint32_t n)
{
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    return store_cache_touch(s, k, 2000);
}

static rl_err tally_get(store *s, uint32_t n, uint64_t *v)
{
    store_meta m = {0};
    rl_err e = get_n(s, n, &m);
    *v = m.hits;
    return e;
}

/* ---- child processes: exit status 0 = all good, else the failing step -- */

static int child_worker(int id)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 10;
    int rc = 0;
    for (int i = 0; i < CHILD_ITERS && !rc; i++) {
        uint8_t k[STORE_KEY_LEN];
        char val[64];
        mkkey(k, 0x10000000u + (uint32_t)id * 0x10000u + (uint32_t)(i % 40));
        int len = snprintf(val, sizeof val, "child %d iteration %d", id, i);
        store_meta m = {.created = 1000, .expires = 5000 + (uint64_t)i};
        if (store_cache_put(s, k, &m, val, (size_t)len) != RL_OK) {
            rc = 11;
            break;
        }
        rl_buf b;
        rl_buf_init(&b, 0);
        store_meta got;
        if (store_cache_get(s, k, &got, &b) != RL_OK || b.len != (size_t)len ||
            memcmp(b.data, val, (size_t)len) != 0 || got.expires != m.expires)
            rc = 12;
        rl_buf_release(&b);
        if (!rc && tally_add(s, TALLY_SUM) != RL_OK)
            rc = 13;
        for (int t = 0; t < 2 && !rc; t++)
            if (tally_add(s, TALLY_SUM2) != RL_OK)
                rc = 14;
    }
    store_close(s);
    return rc;
}

/* Writes as fast as it can until killed; reports readiness on fd. */
static int child_busy(int fd)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 10;
    char val[2048];
    memset(val, 'z', sizeof val);
    for (uint32_t i = 0;; i++) {
        uint8_t k[STORE_KEY_LEN];
        mkkey(k, 0x20000000u + i % 300);
        store_meta m = {.created = 1000, .expires = 3000 + i % 1000};
        if (store_cache_put(s, k, &m, val, sizeof val - (i % 1000)) != RL_OK)
            return 11;
        if (tally_add(s, TALLY_BUSY) != RL_OK)
            return 12;
        if (i % 3 == 0 && store_cache_del(s, k) != RL_OK)
            return 13;
        if (i == 50 && write(fd, "r", 1) != 1)
            return 14;
    }
}

/* A process arriving after a crash: its open runs recovery. */
static int child_fresh(uint64_t min_busy)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 10;
    int rc = 0;
    uint64_t busy = 0;
    if (tally_get(s, TALLY_BUSY, &busy) != RL_OK || busy < min_busy)
        rc = 11;
    if (!rc && put_n(s, 0x30000000u, 9000, 100) != RL_OK)
        rc = 12;
    store_meta m;
    if (!rc && (get_n(s, 0x30000000u, &m) != RL_OK || m.size != 100))
        rc = 13;
    if (!rc && tally_add(s, TALLY_FRESH) != RL_OK)
        rc = 14;
    store_close(s);
    return rc;
}

static pid_t spawn(int (*fn)(int), int arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0)
        _exit(fn(arg));
    return p;
}

static int child_fresh_int(int min_busy)
{
    return child_fresh((uint64_t)min_busy);
}

static int wait_status(pid_t p)
{
    int st;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/*
 * What t_store's tests leave for these: the key file, the store holding one
 * entry, the marker (test_processes counts it among the entries,
 * test_no_plaintext looks for its value on disk), and the base of the
 * store's SysV keys (learn_keys, after this process's first open). Returns
 * 0, or -1 when any step failed.
 */
static int seed_store(void)
{
    if (store_keyfile_ensure(keyfile) != RL_OK)
        return -1;
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return -1;
    learn_keys();
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, 777);
    store_meta mm = {.created = 1, .expires = UINT64_MAX - 1};
    rl_err e = store_cache_put(s, k, &mm, MARKER, strlen(MARKER));
    if (e == RL_OK)
        e = store_maintain(s, 5000);
    store_close(s);
    return e == RL_OK && key_base >= 0 ? 0 : -1;
}

static void test_processes(void)
{
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "parent opens");
    if (!s)
        return;

    int made = 1;
    for (uint32_t t = TALLY_SUM; t < TALLY_SUM + TALLIES; t++)
        if (tally_new(s, t) != RL_OK)
            made = 0;
    ok(made, "tallies stored");
    pid_t kids[CHILDREN];
    for (int i = 0; i < CHILDREN; i++)
        kids[i] = spawn(child_worker, i);
    int parent_ok = 1;
    for (int i = 0; i < CHILD_ITERS; i++)
        if (tally_add(s, TALLY_SUM) != RL_OK)
            parent_ok = 0;
    ok(parent_ok, "parent's hits during the children's");
    for (int i = 0; i < CHILDREN; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "worker %d exits cleanly", i);
        is_int(wait_status(kids[i]), 0, msg);
    }
    uint64_t sum = 0, sum2 = 0;
    is_int(tally_get(s, TALLY_SUM, &sum), RL_OK, "read the shared tally");
    is_int(sum, (CHILDREN + 1) * CHILD_ITERS, "hits sum exactly across processes");
    is_int(tally_get(s, TALLY_SUM2, &sum2), RL_OK, "read the second tally");
    is_int(sum2, 2 * CHILDREN * CHILD_ITERS, "second tally sums exactly");
    store_stats st;
    is_int(store_stats_get(s, &st), RL_OK, "stats");
    is_int(st.entries, 1 + TALLIES + CHILDREN * 40, "entries after the workers");
    check_consistent(s, "after concurrent workers");

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int round = 0; round < KILL_ROUNDS; round++) {
        char msg[96];
        int fds[2];
        if (pipe(fds) != 0)
            break;
        pid_t victim = spawn(child_busy, fds[1]);
        close(fds[1]);
        char c;
        snprintf(msg, sizeof msg, "round %d: busy child started writing", round);
        ok(read(fds[0], &c, 1) == 1, msg);
        close(fds[0]);
        struct timespec ts = {0, (long)(rand() % 20000) * 1000L};
        nanosleep(&ts, NULL);
        kill(victim, SIGKILL);
        snprintf(msg, sizeof msg, "round %d: child killed", round);
        is_int(wait_status(victim), 128 + SIGKILL, msg);

        /* Odd rounds: a process that arrives first runs recovery while the
         * parent is still attached; the parent must notice and reopen on
         * its own. */
        if (round % 2 == 1) {
            pid_t first = spawn(child_fresh_int, 51);
            snprintf(msg, sizeof msg, "round %d: a new process recovers the store first", round);
            is_int(wait_status(first), 0, msg);
        }
        /* The dead child may hold locks: without failchk the next
         * operation touching them would wait forever (alarm catches it). */
        snprintf(msg, sizeof msg, "round %d: maintain frees the dead child's locks", round);
        is_int(store_maintain(s, 6000 + (uint64_t)round), RL_OK, msg);
        uint64_t busy = 0;
        snprintf(msg, sizeof msg, "round %d: tally readable after the kill", round);
        is_int(tally_get(s, TALLY_BUSY, &busy), RL_OK, msg);
        snprintf(msg, sizeof msg, "round %d: the child's commits survived", round);
        ok(busy >= 51 * (uint64_t)(round + 1), msg);
        snprintf(msg, sizeof msg, "round %d: put after the kill", round);
        is_int(put_n(s, 0x40000000u + (uint32_t)round, 9000, 64), RL_OK, msg);
        snprintf(msg, sizeof msg, "round %d: a hit after the kill", round);
        is_int(tally_add(s, TALLY_AFTER), RL_OK, msg);

        pid_t fresh = spawn(child_fresh_int, (int)busy);
        snprintf(msg, sizeof msg, "round %d: a new process opens (recovery) and works", round);
        is_int(wait_status(fresh), 0, msg);

        snprintf(msg, sizeof msg, "round %d: parent works after another process recovered", round);
        is_int(tally_add(s, TALLY_AFTER), RL_OK, msg);
        store_meta m;
        snprintf(msg, sizeof msg, "round %d: parent reads its entry after recovery", round);
        is_int(get_n(s, 0x40000000u + (uint32_t)round, &m), RL_OK, msg);
        snprintf(msg, sizeof msg, "round %d", round);
        check_consistent(s, msg);
    }
    uint64_t after = 0, fresh_count = 0;
    is_int(tally_get(s, TALLY_AFTER, &after), RL_OK, "tally after the rounds");
    is_int(after, 2 * KILL_ROUNDS, "every post-kill hit counted once");
    is_int(tally_get(s, TALLY_FRESH, &fresh_count), RL_OK, "fresh tally");
    is_int(fresh_count, KILL_ROUNDS + KILL_ROUNDS / 2, "every fresh process counted");
    is_int(store_maintain(s, 7000), RL_OK, "final maintain");
    store_close(s);

    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "parent reopens after it all");
    store_close(s);
}

/* ---- threads of one process sharing a handle through a recovery --------- */

#define THREADS 4

struct worker {
    store *s;
    int id;
    atomic_int *stop;
    atomic_long done, failed; /* read while a stranded thread still "runs" */
};

static void *thread_main(void *arg)
{
    struct worker *w = arg;
    char val[512];
    memset(val, 'q', sizeof val);
    for (uint32_t i = 0; !atomic_load(w->stop); i++) {
        uint8_t k[STORE_KEY_LEN];
        mkkey(k, 0x50000000u + (uint32_t)w->id * 0x1000u + i % 20);
        store_meta m = {.created = 1000, .expires = 4000 + i % 100};
        rl_buf b;
        rl_buf_init(&b, 0);
        if (store_cache_put(w->s, k, &m, val, sizeof val) != RL_OK ||
            store_cache_get(w->s, k, NULL, &b) != RL_OK || b.len != sizeof val ||
            tally_add(w->s, TALLY_THREADS) != RL_OK)
            atomic_fetch_add(&w->failed, 1);
        else
            atomic_fetch_add(&w->done, 1);
        rl_buf_release(&b);
        /* A request thread does network I/O between store calls; without
         * any pause, under valgrind's slowdown, NOWAIT retries of the
         * maintenance thread can lose every race for minutes. */
        struct timespec pause = {0, 20000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/*
 * Starts a child role in a new image of this binary. A multi-threaded
 * process must exec right after fork: the child inherits locks that other
 * threads held (seen: AddressSanitizer's allocator lock), which nobody will
 * ever release in it.
 */
static pid_t spawn_exec(const char *role, int arg)
{
    char num[24];
    snprintf(num, sizeof num, "%d", arg);
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        execl(self, "t_store_procs", role, num, home, keyfile, (char *)NULL);
        _exit(127);
    }
    return p;
}

/* What the worker process of test_threads saw. */
struct thread_report {
    long done, failed, stranded, reported_stranded;
    long long counter_delta;
    int open_rc, maint_rc[3], fresh_rc[2], killed[2], after_rc, consistent;
};

/*
 * A worker process like relay's: THREADS threads share one handle while
 * another process is killed mid-write and a new one recovers the store.
 * Runs in its own process because a thread stranded in an abandoned
 * environment (see store_reopen) keeps that environment's segments attached
 * until its process exits.
 */
static void thread_worker(int out_fd)
{
    struct thread_report r = {0};
    store_options o = opts(0, 0, 0);
    store *s = NULL;
    r.open_rc = store_open(&o, &s);
    if (!s)
        goto out;
    uint64_t before = 0, after = 0;
    for (uint32_t t = TALLY_THREADS; t <= TALLY_THREADS_AFTER; t++)
        if (tally_get(s, t, &before) == RL_NOTFOUND)
            (void)tally_new(s, t);
    (void)tally_get(s, TALLY_THREADS, &before);
    atomic_int stop = 0;
    struct worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].s = s;
        w[i].id = i;
        w[i].stop = &stop;
        atomic_init(&w[i].done, 0);
        atomic_init(&w[i].failed, 0);
        pthread_create(&th[i], NULL, thread_main, &w[i]);
    }
    for (int round = 0; round < 2; round++) {
        int fds[2];
        if (pipe(fds) != 0)
            break;
        pid_t victim = spawn_exec("--busy", fds[1]);
        close(fds[1]);
        char c;
        if (read(fds[0], &c, 1) != 1)
            r.killed[round] = -1;
        close(fds[0]);
        struct timespec ts = {0, (long)(rand() % 20000) * 1000L};
        nanosleep(&ts, NULL);
        kill(victim, SIGKILL);
        r.killed[round] = wait_status(victim);
        /* Round 0: our failchk notices first; round 1: a new process
         * recovers the store under our threads. */
        if (round == 0)
            r.maint_rc[0] = store_maintain(s, 8000);
        pid_t fresh = spawn_exec("--fresh", 51);
        r.fresh_rc[round] = wait_status(fresh);
        r.maint_rc[round + 1] = store_maintain(s, 8001);
    }
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 4; /* past store_reopen's 2 s wait for stranded threads */
    for (int i = 0; i < THREADS; i++) {
        if (pthread_timedjoin_np(th[i], NULL, &until) != 0)
            r.stranded++;
        r.done += atomic_load(&w[i].done);
        r.failed += atomic_load(&w[i].failed);
    }
    r.reported_stranded = (long)store_stranded_threads(s);
    r.after_rc = tally_add(s, TALLY_THREADS_AFTER);
    if (r.after_rc == RL_OK)
        r.after_rc = put_n(s, 0x60000000u, 9000, 10);
    if (tally_get(s, TALLY_THREADS, &after) == RL_OK)
        r.counter_delta = (long long)(after - before);
    store_stats st;
    struct scan sc = scan_all(s);
    r.consistent =
        store_stats_get(s, &st) == RL_OK && st.entries == sc.entries && st.bytes == sc.bytes;
    if (!r.stranded) /* stranded threads still use the handle */
        store_close(s);
out:
    if (write(out_fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(2);
    _exit(0);
}

static void test_threads(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        return;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        close(fds[0]);
        thread_worker(fds[1]);
    }
    close(fds[1]);
    struct thread_report r;
    memset(&r, 0, sizeof r);
    ssize_t n = read(fds[0], &r, sizeof r);
    close(fds[0]);
    is_int(wait_status(p), 0, "threads: worker process exits cleanly");
    is_int(n, sizeof r, "threads: worker reported");
    is_int(r.open_rc, RL_OK, "threads: open");
    is_int(r.killed[0], 128 + SIGKILL, "threads: first busy child killed");
    is_int(r.killed[1], 128 + SIGKILL, "threads: second busy child killed");
    is_int(r.maint_rc[0], RL_OK, "threads: maintain after the kill");
    is_int(r.fresh_rc[0], 0, "threads: a new process works after our recovery");
    is_int(r.fresh_rc[1], 0, "threads: a new process recovers under our threads");
    is_int(r.maint_rc[1], RL_OK, "threads: maintain after round 0");
    is_int(r.maint_rc[2], RL_OK, "threads: maintain after round 1");
    ok(r.done > 0, "threads: work got done");
    /* An operation fails only when its commit met a recovery (its outcome
     * is then unknown and it is not retried), at most once per thread and
     * recovery. A killed process can also leave a region mutex locked for
     * good: threads queued on it are abandoned (store_reopen), the rest
     * carry on, and the store reports them. */
    ok(r.failed <= 2 * 2 * THREADS, "threads: failures only at recoveries");
    if (r.failed)
        printf("# %ld operation(s) failed at a recovery\n", r.failed);
    if (r.stranded)
        printf("# %ld thread(s) stranded on a mutex held by a killed process\n", r.stranded);
    is_int(r.reported_stranded, r.stranded, "threads: store_stranded_threads counts them");
    ok(r.counter_delta >= r.done && r.counter_delta <= r.done + r.failed + r.stranded,
       "threads: every successful add counted once, none twice");
    if (!(r.counter_delta >= r.done && r.counter_delta <= r.done + r.failed + r.stranded))
        printf("#   delta %lld, done %ld, failed %ld, stranded %ld\n", r.counter_delta, r.done,
               r.failed, r.stranded);
    is_int(r.after_rc, RL_OK, "threads: the handle works after the rounds");
    ok(r.consistent, "threads: stats agree with a scan");
}

/* Child roles started by spawn_exec: ROLE ARG HOME KEYFILE. */
static int child_role(int argc, char **argv)
{
    if (argc != 5)
        return 120;
    char *end;
    long arg = strtol(argv[2], &end, 10);
    if (*end)
        return 121;
    snprintf(home, sizeof home, "%s", argv[3]);
    snprintf(keyfile, sizeof keyfile, "%s", argv[4]);
    if (strcmp(argv[1], "--busy") == 0)
        return child_busy((int)arg);
    if (strcmp(argv[1], "--fresh") == 0)
        return child_fresh((uint64_t)arg);
    return 122;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return child_role(argc, argv);
    /* argv[0], not /proc/self/exe, which is valgrind under valgrind */
    if (!realpath(argv[0], self)) {
        perror("realpath");
        return 1;
    }
    if (fixture_setup("t_store_procs") != 0)
        return 1;
    if (seed_store() != 0) {
        printf("Bail out! could not create the store in %s\n", home);
        return 1;
    }

    test_processes();
    test_threads();
    test_no_plaintext();

    store_options o = opts(0, 0, 0);
    ok(our_segments() > 0, "the store used SysV shared memory");
    is_int(store_remove(&o), RL_OK, "store_remove");
    is_int(our_segments(), 0, "no shared memory segment left behind");
    return fixture_finish();
}
