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
 * sees to HOME.sites once a second, and other processes' status reads it.
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/cluster.h"
#include "store/store_int.h"

#define VIEW_MAX_AGE 5 /* seconds after which the listener's view is not believed */

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

int cluster_view_isolated(const store *s, uint64_t now)
{
    char path[4096], line[CLUSTER_ADDR_MAX + 16];
    view_path(s, path, sizeof path);
    struct stat sb;
    if (stat(path, &sb) != 0 || (uint64_t)sb.st_mtime + VIEW_MAX_AGE < now)
        return 0; /* no view: the listener's own judgement (PERM_FAILED) stands */
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned others = 0, connected = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        char *sp = strrchr(line, ' ');
        if (!sp || n++ == 0) /* the first line is the listener's own site */
            continue;
        others++;
        connected += sp[1] == '1';
    }
    fclose(f);
    return others > 0 && connected == 0;
}

void cluster_view_apply(const store *s, uint64_t now, store_cluster_status *st)
{
    char path[4096], line[CLUSTER_ADDR_MAX + 16];
    view_path(s, path, sizeof path);
    for (unsigned i = 1; i < st->nsites; i++)
        st->sites[i].connected = 0;
    struct stat sb;
    if (stat(path, &sb) != 0 || (uint64_t)sb.st_mtime + VIEW_MAX_AGE < now)
        return; /* no listener, or a stopped one: nothing is connected */
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *sp = strrchr(line, ' ');
        if (!sp)
            continue;
        *sp = 0;
        for (unsigned i = 1; i < st->nsites; i++)
            if (strcmp(st->sites[i].addr, line) == 0)
                st->sites[i].connected = sp[1] == '1';
    }
    fclose(f);
}
