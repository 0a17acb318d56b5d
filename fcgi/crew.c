/*
 * crew.c — leader/followers request threads, started on demand (see
 * crew.h).
 */
#include "fcgi/crew.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"

/* How long accept() blocks before the leader looks at the stop flag: the
 * drain starts at most this late. */
#define ACCEPT_WAIT_MS 250
/* accept() fails at once while the process is out of descriptors (the
 * connection stays queued): wait this long before the next try rather
 * than spin, and log it at most every ACCEPT_LOG_S seconds. */
#define ACCEPT_BACKOFF_MS 100
#define ACCEPT_LOG_S 10
/* How long the keeper waits in epoll before it looks at the stop flag. */
#define KEEPER_WAIT_MS 250
/* The keeper only moves descriptors between epoll and the queue. */
#define KEEPER_STACK_BYTES (64 * 1024)

/* A thread waiting for work. Each has its own condition variable so that a
 * wake-up goes to exactly the thread that was handed the job (the waiters
 * form a stack: the most recently busy thread, whose stack and caches are
 * warm, is woken first, and extra threads at the bottom time out and end).
 * woken is set by whoever pops it, under the crew's mutex. */
typedef struct waiter {
    pthread_cond_t cv;
    int woken;
    struct waiter *next;
} waiter;

struct crew {
    pthread_mutex_t mu;
    pthread_cond_t ended; /* a thread ended (crew_wait) */
    int listen_fd;
    int tcp; /* the listening socket is TCP: TCP_NODELAY on connections */
    crew_limits lim;
    crew_hooks hooks;
    pthread_attr_t attr;
    int stopping;
    int threads;  /* started (or being started) and not ended */
    int coming;   /* woken or just started, not yet back in the loop: each
                   * will take a job (lead, or a queued connection) */
    int leading;  /* a thread is in accept() */
    int serving;  /* in hooks.serve */
    int peak;     /* the most threads at once */
    waiter *idle; /* the waiting threads, most recent first */
    time_t accept_logged;
    /* Kept connections whose next request has arrived, oldest first. */
    int *ready;
    size_t ready_head, ready_len, ready_cap;
    /* The keeper: kept connections waiting for their next request. */
    int epfd; /* -1 until the first kept connection */
    int keeper_running;
    pthread_t keeper;
    int *kept;
    size_t nkept, kept_cap;
};

/* ---- the queue of ready kept connections ------------------------------- */

static int ready_push(crew *c, int fd)
{
    if (c->ready_len == c->ready_cap) {
        size_t cap = c->ready_cap ? c->ready_cap * 2 : 16;
        int *q = malloc(cap * sizeof *q);
        if (!q)
            return -1;
        for (size_t i = 0; i < c->ready_len; i++)
            q[i] = c->ready[(c->ready_head + i) % c->ready_cap];
        free(c->ready);
        c->ready = q;
        c->ready_cap = cap;
        c->ready_head = 0;
    }
    c->ready[(c->ready_head + c->ready_len) % c->ready_cap] = fd;
    c->ready_len++;
    return 0;
}

static int ready_pop(crew *c)
{
    int fd = c->ready[c->ready_head];
    c->ready_head = (c->ready_head + 1) % c->ready_cap;
    c->ready_len--;
    return fd;
}

/* ---- waking and starting threads -------------------------------------- */

static void *crew_thread(void *arg);

/*
 * Makes sure every job has a thread: the lead (when nobody accepts) and
 * each queued kept connection. Wakes waiting threads for them, and returns
 * how many new threads the caller must start (crew_spawn, after unlocking)
 * when not enough wait; those are counted in threads already, so that no
 * two callers start more than max_threads. Called with the mutex held.
 */
static int hands_needed(crew *c)
{
    if (c->stopping)
        return 0;
    int jobs = !c->leading + (int)c->ready_len - c->coming;
    while (jobs > 0 && c->idle) {
        waiter *w = c->idle;
        c->idle = w->next;
        w->woken = 1;
        c->coming++;
        pthread_cond_signal(&w->cv);
        jobs--;
    }
    int room = c->lim.max_threads - c->threads;
    int start = jobs < room ? jobs : room;
    if (start <= 0)
        return 0;
    c->threads += start;
    c->coming += start;
    if (c->threads > c->peak)
        c->peak = c->threads;
    return start;
}

/* Starts n threads already counted by hands_needed. Not under the mutex:
 * creating a thread takes tens of microseconds. */
static void crew_spawn(crew *c, int n)
{
    for (int i = 0; i < n; i++) {
        pthread_t tid;
        int rc = pthread_create(&tid, &c->attr, crew_thread, c);
        if (rc == 0)
            continue;
        rl_error("cannot start a request thread: %s", strerror(rc));
        pthread_mutex_lock(&c->mu);
        c->threads--;
        c->coming--;
        pthread_cond_broadcast(&c->ended);
        pthread_mutex_unlock(&c->mu);
    }
}

static void wake_all(crew *c)
{
    while (c->idle) {
        waiter *w = c->idle;
        c->idle = w->next;
        w->woken = 1;
        c->coming++;
        pthread_cond_signal(&w->cv);
    }
}

/* Takes w off the idle stack (it timed out, nobody popped it). */
static void idle_remove(crew *c, waiter *w)
{
    for (waiter **p = &c->idle; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return;
        }
}

/* ---- accepting ----------------------------------------------------------- */

static void pause_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* A connection from the listening socket, or -1 (the wait ran out, or an
 * error: then after a pause). Only the leader calls it. */
static int accept_one(crew *c)
{
    int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        /* As libfcgi does: answers go out in small records, never wait
         * for an acknowledgement (Nagle). */
        int one = 1;
        if (c->tcp)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
    }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED || e == EPROTO)
        return -1; /* the timeout, or a connection gone before we took it */
    time_t now = time(NULL);
    if (now - c->accept_logged >= ACCEPT_LOG_S) {
        rl_error("accept on the listening socket: %s%s", strerror(e),
                 e == EMFILE ? " (raise the open files limit, ulimit -n)" : "");
        c->accept_logged = now;
    }
    pause_ms(ACCEPT_BACKOFF_MS);
    return -1;
}

/* ---- the request threads ------------------------------------------------ */

static void serve_fd(crew *c, void *state, int fd, int kept);

static void *crew_thread(void *arg)
{
    crew *c = arg;
    void *state = c->hooks.thread_start(c->hooks.ctx);
    waiter w;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cv, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&c->mu);
    c->coming--;
    while (state) {
        if (c->ready_len > 0) {
            int fd = ready_pop(c);
            if (c->stopping) {
                close(fd);
                continue;
            }
            int start = hands_needed(c);
            c->serving++;
            pthread_mutex_unlock(&c->mu);
            crew_spawn(c, start);
            serve_fd(c, state, fd, 1);
            pthread_mutex_lock(&c->mu);
            c->serving--;
            continue;
        }
        if (c->stopping)
            break;
        if (!c->leading) {
            c->leading = 1;
            pthread_mutex_unlock(&c->mu);
            int fd = accept_one(c);
            pthread_mutex_lock(&c->mu);
            c->leading = 0;
            if (fd < 0)
                continue;
            /* Accepted while stopping: the front sent a request, which the
             * drain waits for like any other. */
            int start = hands_needed(c);
            c->serving++;
            pthread_mutex_unlock(&c->mu);
            crew_spawn(c, start);
            serve_fd(c, state, fd, 0);
            pthread_mutex_lock(&c->mu);
            c->serving--;
            continue;
        }
        /* Someone leads and nothing is queued: wait to be handed a job. */
        int extra = c->threads > c->lim.threads;
        struct timespec until;
        if (extra) {
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += c->lim.idle_ms / 1000;
            until.tv_nsec += (long)(c->lim.idle_ms % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
        }
        w.woken = 0;
        w.next = c->idle;
        c->idle = &w;
        int rc = 0;
        while (!w.woken && rc != ETIMEDOUT)
            rc = extra ? pthread_cond_timedwait(&w.cv, &c->mu, &until)
                       : pthread_cond_wait(&w.cv, &c->mu);
        if (w.woken) {
            c->coming--;
            continue;
        }
        idle_remove(c, &w);
        /* Idle for idle_ms: an extra thread ends, unless it is needed. */
        if (c->threads > c->lim.threads && c->leading && c->ready_len == 0 && !c->stopping)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    pthread_cond_destroy(&w.cv);
    if (state)
        c->hooks.thread_end(c->hooks.ctx, state);
    pthread_mutex_lock(&c->mu);
    c->threads--;
    pthread_cond_broadcast(&c->ended);
    pthread_mutex_unlock(&c->mu);
    /* Detached: nothing of c is touched after the unlock, so crew_wait may
     * free it as soon as threads reaches 0. */
    return NULL;
}

/* ---- kept connections ---------------------------------------------------- */

static void *keeper_main(void *arg)
{
    crew *c = arg;
    struct epoll_event ev[64];
    for (;;) {
        int n = epoll_wait(c->epfd, ev, 64, KEEPER_WAIT_MS);
        pthread_mutex_lock(&c->mu);
        if (c->stopping)
            break;
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
            for (size_t k = 0; k < c->nkept; k++)
                if (c->kept[k] == fd) {
                    c->kept[k] = c->kept[--c->nkept];
                    break;
                }
            if (ready_push(c, fd) != 0) {
                rl_error("out of memory queueing a kept connection: closing it");
                close(fd);
            }
        }
        int start = n > 0 ? hands_needed(c) : 0;
        pthread_mutex_unlock(&c->mu);
        crew_spawn(c, start);
    }
    /* Stopping: a kept connection gets no more requests here; closing it
     * now tells the front before it sends one. */
    for (size_t k = 0; k < c->nkept; k++)
        close(c->kept[k]);
    c->nkept = 0;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Hands a kept connection to the keeper (or closes it). Mutex held. */
static void keep_locked(crew *c, int fd)
{
    if (c->stopping)
        goto drop;
    if (c->epfd < 0) {
        c->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (c->epfd < 0) {
            rl_error("epoll_create1 for kept connections: %s", strerror(errno));
            goto drop;
        }
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, KEEPER_STACK_BYTES);
        int rc = pthread_create(&c->keeper, &a, keeper_main, c);
        pthread_attr_destroy(&a);
        if (rc != 0) {
            rl_error("cannot start the thread for kept connections: %s", strerror(rc));
            close(c->epfd);
            c->epfd = -1;
            goto drop;
        }
        c->keeper_running = 1;
    }
    if (c->nkept == c->kept_cap) {
        size_t cap = c->kept_cap ? c->kept_cap * 2 : 16;
        int *k = realloc(c->kept, cap * sizeof *k);
        if (!k)
            goto drop;
        c->kept = k;
        c->kept_cap = cap;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        rl_error("epoll_ctl for a kept connection: %s", strerror(errno));
        goto drop;
    }
    c->kept[c->nkept++] = fd;
    return;
drop:
    close(fd);
}

static void serve_fd(crew *c, void *state, int fd, int kept)
{
    if (c->hooks.serve(c->hooks.ctx, state, fd, kept)) {
        pthread_mutex_lock(&c->mu);
        keep_locked(c, fd);
        pthread_mutex_unlock(&c->mu);
    }
}

/* ---- the crew ------------------------------------------------------------ */

rl_err crew_start(int listen_fd, const crew_limits *lim, const crew_hooks *hooks, crew **out)
{
    *out = NULL;
    /* A blocking accept is what makes the kernel wake one waiter per
     * connection; the timeout bounds it (crew.h). The flags belong to the
     * socket all worker processes share: every one sets the same. */
    int flags = fcntl(listen_fd, F_GETFL);
    struct timeval tv = {0, ACCEPT_WAIT_MS * 1000};
    if (flags < 0 || fcntl(listen_fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
        setsockopt(listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
        rl_error("cannot set up the listening socket for accept: %s", strerror(errno));
        return RL_INTERNAL;
    }
    crew *c = calloc(1, sizeof *c);
    if (!c)
        return RL_NOMEM;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->ended, &ca);
    pthread_condattr_destroy(&ca);
    c->listen_fd = listen_fd;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    c->tcp = getsockname(listen_fd, (struct sockaddr *)&sa, &len) == 0 &&
             (sa.ss_family == AF_INET || sa.ss_family == AF_INET6);
    c->lim = *lim;
    if (c->lim.threads < 1)
        c->lim.threads = 1;
    if (c->lim.max_threads < c->lim.threads)
        c->lim.max_threads = c->lim.threads;
    c->hooks = *hooks;
    c->epfd = -1;
    pthread_attr_init(&c->attr);
    pthread_attr_setdetachstate(&c->attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&c->attr, c->lim.stack_bytes);

    pthread_mutex_lock(&c->mu);
    c->threads = c->lim.threads;
    c->coming = c->lim.threads;
    c->peak = c->threads;
    pthread_mutex_unlock(&c->mu);
    crew_spawn(c, c->lim.threads);
    pthread_mutex_lock(&c->mu);
    int alive = c->threads;
    pthread_mutex_unlock(&c->mu);
    if (alive == 0) {
        crew_free(c);
        return RL_INTERNAL;
    }
    *out = c;
    return RL_OK;
}

void crew_stop(crew *c)
{
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    wake_all(c);
    while (c->ready_len > 0)
        close(ready_pop(c));
    pthread_mutex_unlock(&c->mu);
}

int crew_wait(crew *c, uint32_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (c->threads > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->ended, &c->mu, &until);
    int done = c->threads == 0;
    int keeper = done && c->keeper_running;
    if (done)
        c->keeper_running = 0;
    pthread_mutex_unlock(&c->mu);
    if (!done)
        return 0;
    if (keeper)
        pthread_join(c->keeper, NULL); /* it sees stopping within KEEPER_WAIT_MS */
    return 1;
}

void crew_free(crew *c)
{
    if (!c)
        return;
    if (c->epfd >= 0)
        close(c->epfd);
    while (c->ready_len > 0)
        close(ready_pop(c));
    free(c->ready);
    free(c->kept);
    pthread_attr_destroy(&c->attr);
    pthread_cond_destroy(&c->ended);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void crew_counts(crew *c, crew_count *out)
{
    pthread_mutex_lock(&c->mu);
    out->threads = c->threads;
    out->serving = c->serving;
    out->peak = c->peak;
    out->kept = (int)c->nkept;
    pthread_mutex_unlock(&c->mu);
}
