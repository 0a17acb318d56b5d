/*
 * cluster_fixture.h — a group of SITES replicated stores (store/cluster.h)
 * on loopback in one process, for t_cluster and bench-cluster: each site
 * a store of its own home opened as its host's listener (Berkeley DB keeps
 * one repmgr per environment, so three live in one process). Site 0
 * creates the group; priorities 100, 90, 80; ack policy quorum.
 *
 * Waits poll the store with a deadline; nothing asserts on time.
 */
#ifndef RELAY_TESTS_UNIT_CLUSTER_FIXTURE_H
#define RELAY_TESTS_UNIT_CLUSTER_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "store/cluster.h"
#include "store/store.h"

#define SITES 3

typedef struct cluster_fixture {
    char tmp[64], keyfile[160];
    char homes[SITES][128], addrs[SITES][64], peers[SITES][160];
    store_cluster copts[SITES];
    store *sites[SITES];
} cluster_fixture;

static inline unsigned cluster_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    unsigned port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static inline void cluster_pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A temporary directory, a key file, and every site's options (nothing is
 * opened). 0, or -1 (said on stderr). */
static inline int cluster_fixture_init(cluster_fixture *f, const char *name)
{
    memset(f, 0, sizeof *f);
    snprintf(f->tmp, sizeof f->tmp, "/tmp/%s.XXXXXX", name);
    if (!mkdtemp(f->tmp)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(f->keyfile, sizeof f->keyfile, "%s/relay.key", f->tmp);
    if (store_keyfile_ensure(f->keyfile) != RL_OK)
        return -1;
    for (int i = 0; i < SITES; i++) {
        /* Through a local buffer: GCC's -Wrestrict (make asan's -O1) takes
         * two members of one object for an overlap. */
        char buf[sizeof f->homes[0]];
        snprintf(buf, sizeof buf, "%s/site%d", f->tmp, i);
        snprintf(f->homes[i], sizeof f->homes[i], "%s", buf);
        unsigned port = cluster_free_port();
        if (!port) {
            fprintf(stderr, "no free port\n");
            return -1;
        }
        snprintf(f->addrs[i], sizeof f->addrs[i], "127.0.0.1:%u", port);
    }
    for (int i = 0; i < SITES; i++) {
        char buf[sizeof f->peers[0]] = "";
        for (int j = 0; j < SITES; j++)
            if (j != i)
                snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", buf[0] ? " " : "",
                         f->addrs[j]);
        snprintf(f->peers[i], sizeof f->peers[i], "%s", buf);
        f->copts[i] = (store_cluster){.site = f->addrs[i],
                                      .peers = f->peers[i],
                                      .create_group = i == 0,
                                      .priority = 100 - 10 * (unsigned)i,
                                      .ack = CLUSTER_ACK_QUORUM,
                                      .listener = 1,
                                      .forward_timeout_ms = 2000,
                                      .partition_grace_ms = 5000,
                                      .master_timeout_ms = 1000};
    }
    return 0;
}

static inline rl_err cluster_fixture_open(cluster_fixture *f, int i)
{
    store_options o = {.home = f->homes[i],
                       .key_file = f->keyfile,
                       .cache_mb = 8,
                       .max_threads = 64,
                       .hold_max_age = 600,
                       .cluster = &f->copts[i]};
    return store_open(&o, &f->sites[i]);
}

/* Polls until site i sees role (and, for a replica, a master) or 20 s;
 * now: the time status is asked at (the heartbeat's age). */
static inline int cluster_fixture_wait_role(cluster_fixture *f, int i, cluster_role role,
                                            uint64_t now)
{
    for (int t = 0; t < 400; t++) {
        store_cluster_status st;
        if (store_cluster_status_get(f->sites[i], now, &st) == RL_OK && st.role == role &&
            (role != CLUSTER_ROLE_REPLICA || st.master[0]))
            return 1;
        cluster_pause_ms(50);
    }
    return 0;
}

/* Opens site i and polls (20 s) until it is a replica that knows the
 * master, running site master's maintenance meanwhile as its listener
 * would: a replica counts a master only with a recent heartbeat, and a
 * master alone writes none. 1 when joined. */
static inline int cluster_fixture_join(cluster_fixture *f, int i, int master, uint64_t now)
{
    if (cluster_fixture_open(f, i) != RL_OK)
        return 0;
    for (int t = 0; t < 400; t++) {
        (void)store_maintain(f->sites[master], now);
        store_cluster_status st;
        if (store_cluster_status_get(f->sites[i], now, &st) == RL_OK &&
            st.role == CLUSTER_ROLE_REPLICA && st.master[0])
            return 1;
        cluster_pause_ms(50);
    }
    return 0;
}

/* Closes what is open and removes the directory. */
static inline void cluster_fixture_done(cluster_fixture *f)
{
    for (int i = 0; i < SITES; i++) {
        store_close(f->sites[i]);
        f->sites[i] = NULL;
        store_options o = {.home = f->homes[i]};
        store_remove(&o);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->tmp);
}

#endif
