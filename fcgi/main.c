/*
 * main.c — relay.fcgi: the process model.
 *
 *   relay.fcgi -c relay.ini     standalone pool: binds [fcgi] listen (or
 *                               --listen), forks
 *                               `workers` processes of `threads` threads
 *                               (more on demand, up to max_threads),
 *                               restarts a worker that dies, drains on
 *                               SIGTERM/SIGINT, reloads on SIGHUP.
 *
 * Started by a FastCGI process manager (mod_fcgid, spawn-fcgi) the listen
 * socket is fd 0: the process then serves on it itself, one request at a
 * time (the manager scales the number of processes), until SIGTERM. The
 * config file comes from -c or the RELAY_INI environment variable.
 */
#include <errno.h>
#include <fcgiapp.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/engine.h"
#include "fcgi/cluster.h"
#include "fcgi/front.h"
#include "fcgi/status.h"
#include "store/base/rl_log.h"
#include "store/base/rl_version.h"

#ifdef RELAY_LEAK_CHECK
#include <sanitizer/lsan_interface.h>
/* LeakSanitizer checks at exit, which a worker's _exit skips: make asan
 * builds with RELAY_LEAK_CHECK, so a worker that drained and freed its
 * engine is checked for leaks (a report makes it exit non-zero). */
#define leak_check() __lsan_do_leak_check()
#else
#define leak_check() ((void)0)
#endif

#define MAX_WORKERS 256

static void usage(FILE *f)
{
    fprintf(f, "usage: relay.fcgi [-c relay.ini] [--listen SOCKET]\n"
               "  -c FILE          configuration (default: $RELAY_INI, else ./relay.ini)\n"
               "  --listen SOCKET  the pool's socket (a path or HOST:PORT) instead of\n"
               "                   [fcgi] listen\n"
               "  -V, --version    print the version and exit\n");
}

/* --listen: where the pool listens instead of [fcgi] listen, for this run
 * only. `make run` (deploy/run.sh) needs it when the front's workers run as
 * www-data and the ini's socket lies under a private directory (Debian 12
 * homes are 0700): it puts the socket in the run's own directory rather
 * than open the user's directories to www-data. Applied to every load, so
 * a reload (SIGHUP) keeps it. */
static const char *listen_override;

static relay_config *load_config(const char *path)
{
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 4096);
    if (config_load(path, &cfg, &why) != RL_OK) {
        rl_error("configuration not loaded: %s", why.data ? why.data : path);
    } else {
        rl_log_set_level((rl_log_level)cfg->log.level);
        char *listen = listen_override ? strdup(listen_override) : NULL;
        if (listen_override && !listen) {
            rl_error("configuration not loaded: out of memory");
            config_free(cfg);
            cfg = NULL;
        } else if (listen) {
            free(cfg->fcgi.listen);
            cfg->fcgi.listen = listen;
        }
    }
    rl_buf_release(&why);
    return cfg;
}

/*
 * Each stream a worker serves holds two descriptors (the front's
 * connection and the upstream's) plus what libcurl and the store keep
 * open, so max_threads streams need more than the usual soft limit of
 * 1,024. The soft limit is raised towards what the pool may use, within
 * the hard limit (which only root raises); a worker that still runs out
 * logs it at accept (crew.c) and leaves connections to the others.
 */
static void raise_open_files(const relay_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)cfg->fcgi.max_threads * 3 + 256;
    if (rl.rlim_cur >= want)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        rl_warn("open files limit %llu (was %llu): [fcgi] max_threads = %ld streams per worker "
                "need about %llu; raise the hard limit (LimitNOFILE= in the systemd unit)",
                (unsigned long long)rl.rlim_cur, (unsigned long long)was, cfg->fcgi.max_threads,
                (unsigned long long)want);
}

/*
 * glibc gives each thread that meets a locked arena an arena of its own, up
 * to 8 per core, and each keeps the memory freed into it: after the bench's
 * 1 MiB hits (one 1 MiB buffer per hit in flight, on any of up to 32+
 * threads) a worker kept 28 MB private. Only as many threads run at once as
 * there are cores, so as many arenas serve them without waiting much, and
 * the freed buffers are reused by whichever thread comes next. Measured
 * behind Caddy (throughput --only 1mib, two runs each, private MB per
 * worker after the runs, CPU us per 1 MiB hit): default 28.1, 670 us; one
 * arena per core (2) 16.7 and 11.5 MB, 732 and 736 us; one arena 19.6 MB,
 * 674 us (the run-to-run noise of both figures is about as large as the
 * CPU difference). A fixed M_MMAP_THRESHOLD of 256 KiB (every large buffer
 * mmapped and given back when freed) kept 5.8 MB but doubled the CPU per
 * 1 MiB hit (1633 us: a page fault per 4 KiB on every hit). What is left
 * after a burst engine_maintain gives back (malloc_trim): with both, 11.7
 * MB after the 1 MiB hits (a third run of 2 arenas alone had 21.3), 735 us.
 */
static void tune_malloc(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    mallopt(M_ARENA_MAX, cores > 0 ? (int)cores : 2);
}

/* One worker process: its own engine (store handles and libcurl must not
 * cross a fork), then the thread pool until told to stop. */
static int run_worker(const relay_config *cfg, int listen_fd, int threads, int max_threads)
{
    tune_malloc(); /* before any thread starts */
    engine *e = NULL;
    if (engine_new(cfg, &e) != RL_OK) {
        rl_error("cannot start the engine");
        return 1;
    }
    if (front_serve(cfg, e, listen_fd, threads, max_threads) != 0) {
        /* Threads may still hold the engine: leave without freeing it. */
        _exit(0);
    }
    engine_free(e);
    return 0;
}

typedef struct worker_slot {
    pid_t pid;
    time_t started;
} worker_slot;

/* Forks a worker, with a row of the status table for its requests in
 * flight (none when the table is full or missing: it is not counted). */
static pid_t spawn_worker(const relay_config *cfg, int listen_fd, pool_table *table)
{
    int row = pool_table_reserve(table);
    pid_t pid = fork();
    if (pid < 0) {
        rl_error("fork: %s", strerror(errno));
        pool_table_unbind(table, row);
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        front_count_requests(pool_table_busy(table, row));
        int rc = run_worker(cfg, listen_fd, (int)cfg->fcgi.threads, (int)cfg->fcgi.max_threads);
        leak_check();
        _exit(rc);
    }
    pool_table_bind(table, row, pid);
    return pid;
}

/* The pool's status file, rewritten once a second (status.h). A failure
 * is logged once, not every second; *failing remembers it. */
static void publish_status(const relay_config *cfg, pool_table *table, time_t started, int *failing)
{
    pool_info info = {getpid(),          rl_version(),      (uint64_t)started,    cfg->fcgi.listen,
                      cfg->fcgi.workers, cfg->fcgi.threads, cfg->fcgi.max_threads};
    if (pool_status_write(cfg->fcgi.status_file, &info, table, (uint64_t)time(NULL)) == 0) {
        *failing = 0;
    } else if (!*failing) {
        rl_warn("cannot write [fcgi] status_file %s: %s (relay-admin status will not see the pool)",
                cfg->fcgi.status_file, strerror(errno));
        *failing = 1;
    }
}

/*
 * The supervisor: keeps `workers` processes alive. Waits for signals with
 * sigtimedwait, so nothing runs in a signal handler. Takes ownership of cfg
 * (a reload replaces it).
 */
static int run_pool(const char *config_path, relay_config *cfg)
{
    int listen_fd = front_listen(cfg->fcgi.listen);
    if (listen_fd < 0) {
        config_free(cfg);
        return 1;
    }
    rl_info("listening on %s with %ld workers x %ld threads (up to %ld)", cfg->fcgi.listen,
            cfg->fcgi.workers, cfg->fcgi.threads, cfg->fcgi.max_threads);
    raise_open_files(cfg);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGCHLD);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);

    /* Rows for the workers of this configuration and of older ones that
     * are draining after reloads. */
    pool_table *table = pool_table_new(MAX_WORKERS * 5);
    time_t started = time(NULL);
    int status_failing = 0;

    worker_slot slots[MAX_WORKERS];
    memset(slots, 0, sizeof slots);
    /* Workers of an older configuration, draining after a reload. */
    pid_t old[MAX_WORKERS * 4];
    size_t nold = 0;
    int stopping = 0;
    struct timespec stop_started = {0, 0};
    /* [cluster]: the host's replication process (fcgi/cluster.h). */
    worker_slot cluster = {0, 0};

    for (;;) {
        time_t now = time(NULL);
        if (!stopping && cfg->cluster.site[0] && cluster.pid <= 0 &&
            !(cluster.started && now - cluster.started < 1)) {
            cluster.pid = cluster_spawn(cfg);
            cluster.started = now;
        }
        if (!stopping) {
            for (long i = 0; i < cfg->fcgi.workers; i++) {
                if (slots[i].pid > 0)
                    continue;
                /* A worker that dies at once (bad store, no memory) would
                 * otherwise be restarted in a tight loop. */
                if (slots[i].started && now - slots[i].started < 1)
                    continue;
                slots[i].pid = spawn_worker(cfg, listen_fd, table);
                slots[i].started = now;
            }
            publish_status(cfg, table, started, &status_failing);
        }
        size_t alive = nold + (cluster.pid > 0);
        for (long i = 0; i < MAX_WORKERS; i++)
            alive += slots[i].pid > 0;
        if (stopping && alive == 0)
            break;
        if (stopping) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (t.tv_sec - stop_started.tv_sec > cfg->fcgi.drain_timeout + 5) {
                rl_warn("workers still running after the drain bound: killing them");
                for (long i = 0; i < MAX_WORKERS; i++)
                    if (slots[i].pid > 0)
                        kill(slots[i].pid, SIGKILL);
                for (size_t i = 0; i < nold; i++)
                    kill(old[i], SIGKILL);
                if (cluster.pid > 0)
                    kill(cluster.pid, SIGKILL);
            }
        }

        struct timespec tick = {1, 0};
        int sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping) {
                rl_info("stopping: draining the workers");
                stopping = 1;
                clock_gettime(CLOCK_MONOTONIC, &stop_started);
                for (long i = 0; i < MAX_WORKERS; i++)
                    if (slots[i].pid > 0)
                        kill(slots[i].pid, SIGTERM);
                for (size_t i = 0; i < nold; i++)
                    kill(old[i], SIGTERM);
                if (cluster.pid > 0)
                    kill(cluster.pid, SIGTERM);
            }
        } else if (sig == SIGHUP && !stopping) {
            relay_config *next = load_config(config_path);
            if (!next) {
                rl_error("reload refused: keeping the running configuration");
            } else {
                if (strcmp(next->fcgi.listen, cfg->fcgi.listen) != 0)
                    rl_warn("[fcgi] listen changed: takes effect at the next restart");
                rl_info("reloading: new workers start, old ones drain");
                for (long i = 0; i < MAX_WORKERS; i++) {
                    if (slots[i].pid > 0) {
                        kill(slots[i].pid, SIGTERM);
                        pool_table_draining(table, slots[i].pid);
                        if (nold < sizeof old / sizeof old[0])
                            old[nold++] = slots[i].pid;
                    }
                    slots[i].pid = 0;
                    slots[i].started = 0;
                }
                /* Workers hold their own copy (fork), so the old one can go. */
                if (strcmp(next->fcgi.status_file, cfg->fcgi.status_file) != 0)
                    unlink(cfg->fcgi.status_file);
                config_free(cfg);
                cfg = next;
                if (cfg->fcgi.workers > MAX_WORKERS)
                    cfg->fcgi.workers = MAX_WORKERS;
            }
        }
        /* Reap whatever ended, whichever signal woke us. */
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            pool_table_forget(table, pid);
            if (pid == cluster.pid) {
                cluster.pid = 0;
                if (!stopping)
                    rl_warn("the cluster process %ld ended (status %d): restarting it", (long)pid,
                            status);
            }
            for (long i = 0; i < MAX_WORKERS; i++)
                if (slots[i].pid == pid) {
                    slots[i].pid = 0;
                    if (!stopping) {
                        if (WIFSIGNALED(status))
                            rl_warn("worker %ld died of signal %d: restarting it", (long)pid,
                                    WTERMSIG(status));
                        else
                            rl_warn("worker %ld exited with %d: restarting it", (long)pid,
                                    WEXITSTATUS(status));
                    }
                }
            for (size_t i = 0; i < nold; i++)
                if (old[i] == pid) {
                    old[i] = old[--nold];
                    break;
                }
        }
    }
    close(listen_fd);
    if (cfg->fcgi.listen[0] == '/')
        unlink(cfg->fcgi.listen);
    unlink(cfg->fcgi.status_file);
    pool_table_free(table);
    rl_info("stopped");
    config_free(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = getenv("RELAY_INI");
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'l':
            listen_override = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("relay.fcgi %s\n", rl_version());
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config_path)
        config_path = "relay.ini";
    relay_config *cfg = load_config(config_path);
    if (!cfg)
        return 1;
    if (cfg->fcgi.workers > MAX_WORKERS)
        cfg->fcgi.workers = MAX_WORKERS;

    /* Under a process manager fd 0 is the listening socket (FCGX_IsCGI is
     * false); the manager runs one request per process at a time. */
    if (!FCGX_IsCGI()) {
        if (cfg->cluster.site[0]) {
            /* Nobody would run the host's replication process (cluster.h). */
            rl_error("[cluster] needs relay.fcgi's own pool (relay.fcgi -c relay.ini behind "
                     "Caddy, nginx or mod_proxy_fcgi): a process started by a FastCGI process "
                     "manager (mod_fcgid, spawn-fcgi) cannot replicate the shared store");
            config_free(cfg);
            return 1;
        }
        int rc = run_worker(cfg, 0, 1, 1);
        config_free(cfg);
        return rc;
    }
    return run_pool(config_path, cfg);
}
