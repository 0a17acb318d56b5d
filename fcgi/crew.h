/*
 * crew.h — the request threads of one relay.fcgi process: who accepts the
 * front's connections, and how many threads serve them.
 *
 * Leader/followers: at most one thread of the process (the leader) waits
 * in a blocking accept() on the listening socket; the others wait on a
 * condition variable. The leader that gets a connection hands the lead to
 * one waiting thread (pthread_cond_signal: exactly one wakes), or starts a
 * new thread when none waits and the crew is below max_threads, then serves
 * the connection itself. So a connection wakes one thread in one process:
 * blocking accept() wakes a single waiter of the socket across every
 * process (an exclusive wait, round robin over the processes, verified on
 * Linux 6.x for unix sockets), where the threads of the old pool each
 * poll()ed the socket and every connection woke all 4 x 32 of them (64 % of
 * the workers' time in the scheduler, ~100 context switches per hit).
 * When every thread serves and the crew is at max_threads nobody accepts:
 * further connections wait in the socket's backlog, where another process
 * with a free thread takes them.
 *
 * Threads on demand: the crew keeps `threads` threads; more start when a
 * connection arrives and nobody is free, up to max_threads; a thread beyond
 * `threads` that waited idle_ms for work ends.
 *
 * Kept connections (the front asked for FCGI_KEEP_CONN: nginx
 * fastcgi_keep_conn, Apache enablereuse) are not waited on by a thread:
 * they go to a keeper thread (epoll, started with the first of them) which
 * queues each one as its next request arrives; a thread takes queued
 * connections before it leads again.
 *
 * The accept blocks for at most ACCEPT_WAIT_MS (SO_RCVTIMEO on the
 * listening socket, which Linux applies to accept()), so a stopping crew
 * notices without signals: a signal would also interrupt a thread busy
 * with a stream.
 *
 * Threads: crew_stop, crew_wait and crew_counts may be called from any
 * thread (front.c's main thread); the hooks run on the crew's threads.
 */
#ifndef RELAY_FCGI_CREW_H
#define RELAY_FCGI_CREW_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_err.h"

typedef struct crew crew;

typedef struct crew_hooks {
    void *ctx;
    /* Called by each thread as it starts: its own state for serve (NULL:
     * the thread cannot serve and ends). */
    void *(*thread_start)(void *ctx);
    /* Called by each thread as it ends, with what thread_start returned. */
    void (*thread_end)(void *ctx, void *state);
    /* Serves the connection fd (taken): reads one request and answers it.
     * kept: 1 when fd is a kept connection whose next request has begun to
     * arrive, 0 when just accepted. Returns 1 when the connection stays
     * open for the front's next request (the crew then owns fd and watches
     * it), 0 when serve closed it. */
    int (*serve)(void *ctx, void *state, int fd, int kept);
} crew_hooks;

typedef struct crew_limits {
    int threads;        /* kept ready (>= 1) */
    int max_threads;    /* at most (>= threads) */
    uint32_t idle_ms;   /* a thread beyond `threads` idle this long ends */
    size_t stack_bytes; /* of each request thread */
} crew_limits;

/* Counts at one moment, for tests and the log. */
typedef struct crew_count {
    int threads; /* alive */
    int serving; /* in serve */
    int peak;    /* the most alive at once so far */
    int kept;    /* kept connections the keeper watches */
} crew_count;

/* Starts the crew on listen_fd (borrowed: a listening socket, made
 * blocking here, with the accept timeout set on it). Returns RL_OK with
 * *out set; RL_NOMEM or RL_INTERNAL (logged) when no thread could start. */
rl_err crew_start(int listen_fd, const crew_limits *lim, const crew_hooks *hooks, crew **out);

/* Stops accepting: idle threads end, kept connections waiting for a
 * request are closed, serving threads end after their request. */
void crew_stop(crew *c);

/* Waits up to ms for every thread to end (after crew_stop). Returns 1 when
 * they all did (crew_free may then be called), 0 on timeout: threads still
 * run hooks, so nothing they use may be freed. */
int crew_wait(crew *c, uint32_t ms);

void crew_free(crew *c);

void crew_counts(crew *c, crew_count *out);

#endif
