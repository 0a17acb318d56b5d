/*
 * cluster_link.c — the sockets of a replicated store (cluster.h): Nagle
 * off on repmgr's TCP connections, and the listener's view of its
 * connections published for the host's other processes.
 *
 * TCP_NODELAY. Berkeley DB 5.3's repmgr sets only SO_REUSEADDR and
 * SO_KEEPALIVE on its sockets. A commit that waits for acknowledgements
 * (every ack policy but none) then pays Nagle's algorithm against delayed
 * ACKs: 43 ms per commit on loopback (24 commits/s), against 0.16 ms with
 * TCP_NODELAY set (measured; README "Several hosts"). repmgr offers no
 * hook for its sockets, so each process sets the option on every TCP
 * socket it has: on the listener's events that open a connection, after a
 * channel is made, and once a second from maintenance. A connection made
 * in between runs with Nagle for at most that second. The other TCP
 * sockets of a process (libcurl's, which set it already; a FastCGI
 * listener) lose nothing by it.
 *
 * The view. Only the listener holds the connections to the other sites,
 * so only its repmgr_site_list says which are connected; it writes what it
 * sees to HOME.sites, and other processes' status reads it. A worker of
 * the master's host judges by it whether a reservation can be
 * acknowledged (cluster_ops.c), so the view is written by a thread of its
 * own: every VIEW_PERIOD_MS, and at once when repmgr reports an event (a
 * connection made or broken). Written from the maintenance loop it went
 * stale whenever a commit there waited out its ack timeout or a
 * checkpoint slept (seen under ASan in CI: 5 s without a view).
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/cluster.h"
#include "store/store_int.h"

#define VIEW_MAX_AGE 5     /* seconds after which the listener's view is not believed */
#define VIEW_PERIOD_MS 250 /* between two views when no event comes */

struct cluster_viewer {
    store *s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* on CLOCK_MONOTONIC */
    int poked, stop;
};

void cluster_nodelay_sweep(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || fd == self)
            continue;
        int type = 0;
        socklen_t n = sizeof type;
        if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &n) != 0 || type != SOCK_STREAM)
            continue;
        struct sockaddr_storage a;
        n = sizeof a;
        if (getsockname((int)fd, (struct sockaddr *)&a, &n) != 0 ||
            (a.ss_family != AF_INET && a.ss_family != AF_INET6))
            continue;
        int one = 1;
        (void)setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    closedir(d);
}

static void view_path(const store *s, char *path, size_t cap)
{
    snprintf(path, cap, "%s.sites", store_home_of(s)); /* beside the home: see listener_path */
}

void cluster_view_publish(const store *s, const store_cluster_status *st)
{
    char path[4096], tmp[4200];
    view_path(s, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    for (unsigned i = 0; i < st->nsites; i++)
        fprintf(f, "%s %d\n", st->sites[i].addr, st->sites[i].connected);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        (void)unlink(tmp);
}

/* The listener's recent view into view (its own site first, self set);
 * none (0 sites) when there is no view or it is older than VIEW_MAX_AGE:
 * no listener, or a stalled one, knows of no connection. */
static void view_read(const store *s, uint64_t now, store_cluster_status *view)
{
    char path[4096], line[CLUSTER_ADDR_MAX + 16];
    memset(view, 0, sizeof *view);
    view_path(s, path, sizeof path);
    struct stat sb;
    if (stat(path, &sb) != 0 || (uint64_t)sb.st_mtime + VIEW_MAX_AGE < now)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (view->nsites < CLUSTER_MAX_SITES && fgets(line, sizeof line, f)) {
        char *sp = strrchr(line, ' ');
        if (!sp || (size_t)(sp - line) >= CLUSTER_ADDR_MAX)
            continue;
        cluster_site_status *x = &view->sites[view->nsites];
        memcpy(x->addr, line, (size_t)(sp - line));
        x->addr[sp - line] = 0;
        x->self = view->nsites == 0;
        x->connected = sp[1] == '1';
        view->nsites++;
    }
    fclose(f);
}

int cluster_view_isolated(const store *s, uint64_t now)
{
    store_cluster_status view;
    view_read(s, now, &view);
    return store_cluster_alone(&view);
}

void cluster_view_apply(const store *s, uint64_t now, store_cluster_status *st)
{
    store_cluster_status view;
    view_read(s, now, &view);
    for (unsigned i = 1; i < st->nsites; i++) {
        st->sites[i].connected = 0;
        for (unsigned j = 1; j < view.nsites; j++)
            if (strcmp(st->sites[i].addr, view.sites[j].addr) == 0)
                st->sites[i].connected = view.sites[j].connected;
    }
}

/* ---- the listener's view thread ------------------------------------------------ */

static void *viewer_main(void *arg)
{
    cluster_viewer *v = arg;
    pthread_mutex_lock(&v->mu);
    while (!v->stop) {
        v->poked = 0;
        pthread_mutex_unlock(&v->mu);
        store_cluster_status st;
        if (store_cluster_status_get(v->s, (uint64_t)time(NULL), &st) == RL_OK)
            cluster_view_publish(v->s, &st);
        pthread_mutex_lock(&v->mu);
        if (v->stop || v->poked)
            continue;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += VIEW_PERIOD_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (!v->stop && !v->poked && pthread_cond_timedwait(&v->wake, &v->mu, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

cluster_viewer *cluster_viewer_start(store *s)
{
    cluster_viewer *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->s = s;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&v->mu, NULL);
    /* Signals stay with the process's own threads (the cluster process
     * waits for SIGTERM with sigtimedwait). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int ret = pthread_create(&v->thread, NULL, viewer_main, v);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret != 0) {
        rl_error("cluster: cannot start the thread that publishes the listener's view: %s",
                 strerror(ret));
        pthread_cond_destroy(&v->wake);
        pthread_mutex_destroy(&v->mu);
        free(v);
        return NULL;
    }
    return v;
}

void cluster_viewer_poke(cluster_viewer *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->mu);
    v->poked = 1;
    pthread_cond_signal(&v->wake);
    pthread_mutex_unlock(&v->mu);
}

void cluster_viewer_stop(cluster_viewer *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->mu);
    int running = !v->stop;
    v->stop = 1;
    pthread_cond_signal(&v->wake);
    pthread_mutex_unlock(&v->mu);
    if (running)
        pthread_join(v->thread, NULL);
}

void cluster_viewer_free(cluster_viewer *v)
{
    if (!v)
        return;
    cluster_viewer_stop(v);
    pthread_cond_destroy(&v->wake);
    pthread_mutex_destroy(&v->mu);
    free(v);
}
