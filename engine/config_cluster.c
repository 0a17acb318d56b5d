/*
 * config_cluster.c — [cluster] of relay.ini (contract in config_cluster.h):
 * the checks that need the whole section (site, peers, home) and the
 * options of the shared store built from it.
 */
#include "engine/config_cluster.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "engine/config_values.h"

/* The length of directory path d without its trailing slashes (but "/"). */
static size_t dir_len(const char *d)
{
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/')
        n--;
    return n;
}

/* Why [cluster] key's address addr (n bytes) is refused, appended to why;
 * or, accepted, 0 with its host and port in host/port. Unless
 * allow_public, every address its host resolves to must be private: one
 * public address of a name is enough for repmgr to talk in clear over the
 * Internet (it connects to whichever it gets). -1 when refused. */
static int check_cluster_addr(const relay_config *cfg, const char *key, const char *addr, size_t n,
                              char host[CLUSTER_ADDR_MAX], unsigned *port, rl_buf *why)
{
    char a[CLUSTER_ADDR_MAX] = "";
    if (n < sizeof a) {
        memcpy(a, addr, n);
        a[n] = '\0';
    }
    if (n >= sizeof a || cluster_addr_split(a, host, CLUSTER_ADDR_MAX, port) != 0) {
        rl_buf_printf(why,
                      "%s: [cluster] %s: \"%.*s\" is not host:port (a name, an IPv4 address or "
                      "[an IPv6 address] in brackets, and a port from 1 to 65535)",
                      cfg->path, key, (int)(n > 200 ? 200 : n), addr);
        return -1;
    }
    if (cfg->cluster.allow_public)
        return 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, NULL, &hints, &res);
    if (gai != 0) {
        rl_buf_printf(why,
                      "%s: [cluster] %s: %s does not resolve (%s): the addresses must be known "
                      "to be checked private",
                      cfg->path, key, host,
                      gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        return -1;
    }
    int rc = 0;
    for (const struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next) {
        if (config_addr_is_private(ai->ai_addr))
            continue;
        char num[NI_MAXHOST];
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, num, sizeof num, NULL, 0, NI_NUMERICHOST))
            snprintf(num, sizeof num, "an address");
        rl_buf_printf(why, "%s: [cluster] %s: ", cfg->path, key);
        if (strcmp(num, host) != 0)
            rl_buf_printf(why, "%s (%s)", host, num);
        else
            rl_buf_puts(why, num);
        rl_buf_printf(why,
                      " is %s; repmgr neither encrypts nor authenticates: use a private network "
                      "or VPN, or set allow_public = yes",
                      strcmp(num, "0.0.0.0") == 0 || strcmp(num, "::") == 0
                          ? "every interface, public ones included"
                          : "a public address");
        rc = -1;
    }
    freeaddrinfo(res);
    return rc;
}

/* [cluster]: site and peers go together, each a host:port (private unless
 * allow_public), at most CLUSTER_MAX_SITES sites in all, none twice (as
 * written: "localhost:1" and "127.0.0.1:1" are not compared), site not
 * among peers; home defaults to [store] home + "-cluster" and is never
 * [store] home (two environments in one directory would share their
 * logs). 0, or -1 with the reason in why. */
int config_cluster_check(relay_config *cfg, rl_buf *why)
{
    static const char blanks[] = " \t";
    const char *peers = cfg->cluster.peers;
    if (!cfg->cluster.home[0]) {
        rl_buf b;
        rl_buf_init(&b, 0);
        rl_buf_printf(&b, "%.*s-cluster", (int)dir_len(cfg->store.home), cfg->store.home);
        if (rl_buf_error(&b) != RL_OK) {
            rl_buf_release(&b);
            rl_buf_puts(why, "out of memory");
            return -1;
        }
        free(cfg->cluster.home);
        cfg->cluster.home = rl_buf_steal(&b, NULL);
        rl_buf_release(&b);
    }
    size_t hl = dir_len(cfg->cluster.home);
    if (hl == dir_len(cfg->store.home) && strncmp(cfg->cluster.home, cfg->store.home, hl) == 0) {
        rl_buf_printf(why,
                      "%s: [cluster] home: %s is [store] home: the shared store needs a "
                      "directory of its own",
                      cfg->path, cfg->cluster.home);
        return -1;
    }
    if (!cfg->cluster.site[0]) {
        if (peers[strspn(peers, blanks)]) {
            rl_buf_printf(why,
                          "%s: [cluster] peers: set without site: set this host's site too, or "
                          "remove peers",
                          cfg->path);
            return -1;
        }
        return 0;
    }
    char hosts[CLUSTER_MAX_SITES][CLUSTER_ADDR_MAX]; /* [0]: site */
    unsigned ports[CLUSTER_MAX_SITES];
    if (check_cluster_addr(cfg, "site", cfg->cluster.site, strlen(cfg->cluster.site), hosts[0],
                           &ports[0], why) != 0)
        return -1;
    if (strchr(peers, ',')) {
        rl_buf_printf(why, "%s: [cluster] peers: separate the sites with spaces, not commas",
                      cfg->path);
        return -1;
    }
    size_t nsites = 1;
    for (const char *p = peers + strspn(peers, blanks); *p; p += strspn(p, blanks)) {
        size_t n = strcspn(p, blanks);
        if (nsites == CLUSTER_MAX_SITES) {
            rl_buf_printf(why, "%s: [cluster] peers: more than %d sites (at most %d in a group)",
                          cfg->path, CLUSTER_MAX_SITES - 1, CLUSTER_MAX_SITES);
            return -1;
        }
        if (check_cluster_addr(cfg, "peers", p, n, hosts[nsites], &ports[nsites], why) != 0)
            return -1;
        for (size_t i = 0; i < nsites; i++)
            if (ports[i] == ports[nsites] && strcasecmp(hosts[i], hosts[nsites]) == 0) {
                rl_buf_printf(why, "%s: [cluster] peers: %.*s %s", cfg->path, (int)n, p,
                              i == 0 ? "is this site (site): list only the others"
                                     : "is listed twice");
                return -1;
            }
        nsites++;
        p += n;
    }
    if (nsites == 1) {
        rl_buf_printf(why,
                      "%s: [cluster] peers: empty: a group of one is not a group: set peers, or "
                      "remove [cluster] site",
                      cfg->path);
        return -1;
    }
    return 0;
}

void config_cluster_options(const relay_config *cfg, int listener, store_options *so,
                            store_cluster *sc)
{
    memset(sc, 0, sizeof *sc);
    sc->site = cfg->cluster.site;
    sc->peers = cfg->cluster.peers;
    sc->create_group = cfg->cluster.create_group;
    sc->priority = (unsigned)cfg->cluster.priority;
    sc->ack = cfg->cluster.ack_policy;
    sc->listener = listener;
    sc->forward_timeout_ms = (unsigned)cfg->cluster.forward_timeout_ms;
    sc->partition_grace_ms = (unsigned)cfg->cluster.partition_grace * 1000u;
    sc->master_timeout_ms = (unsigned)cfg->cluster.master_timeout_ms;
    /* The same processes and threads open it as the local store, with the
     * same secret. It holds tokens and the budgets' ledger, a few KiB
     * each and never an answer: no cache caps, a small buffer pool, and
     * 1 MiB is far above any of its records. */
    config_store_options(cfg, so);
    so->home = cfg->cluster.home;
    so->max_bytes = 0;
    so->max_entries = 0;
    so->max_entry_bytes = 1024 * 1024;
    so->cache_mb = 16;
    so->cluster = sc;
}
