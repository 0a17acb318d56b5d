/*
 * cluster_host.c — the work of a host's cluster process (cluster_host.h).
 */
#include "engine/cluster_host.h"

#include <stdlib.h>

#include "engine/config_cluster.h"
#include "store/base/rl_log.h"
#include "store/cluster.h"
#include "store/store.h"

struct cluster_host {
    store *shared;
};

rl_err cluster_host_store_open(const relay_config *cfg, int listener, store **out)
{
    store_options so;
    store_cluster sc;
    config_cluster_options(cfg, listener, &so, &sc);
    *out = NULL;
    rl_err e = store_key_ensure(&so);
    return e == RL_OK ? store_open(&so, out) : e;
}

cluster_host *cluster_host_open(const relay_config *cfg)
{
    store *s = NULL;
    rl_err e = cluster_host_store_open(cfg, 1, &s);
    if (e != RL_OK) {
        rl_error("cluster %s: the shared store at %s cannot be opened (%s)", cfg->cluster.site,
                 cfg->cluster.home, rl_err_text(e));
        return NULL;
    }
    cluster_host *h = malloc(sizeof *h);
    if (!h) {
        store_close(s);
        return NULL;
    }
    h->shared = s;
    rl_info("cluster %s: replicating %s with %s", cfg->cluster.site, cfg->cluster.home,
            cfg->cluster.peers);
    return h;
}

void cluster_host_maintain(cluster_host *h, uint64_t now)
{
    store_maintain(h->shared, now); /* logs its own failures */
}

void cluster_host_close(cluster_host *h)
{
    if (!h)
        return;
    store_close(h->shared);
    free(h);
}
