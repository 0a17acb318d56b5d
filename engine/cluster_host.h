/*
 * cluster_host.h — the work of a host's cluster process ([cluster],
 * store/cluster.h): holding the shared store open as the host's listener
 * (the process that runs Berkeley DB's Replication Manager) and
 * maintaining it. fcgi/cluster.c forks the process and drives these.
 *
 * Threads: one thread of the cluster process.
 */
#ifndef RELAY_ENGINE_CLUSTER_HOST_H
#define RELAY_ENGINE_CLUSTER_HOST_H

#include <stdint.h>

#include "engine/config.h"
#include "store/base/rl_err.h"
#include "store/store.h"

typedef struct cluster_host cluster_host;

/* Opens the shared store of [cluster] (creating the key file on a first
 * run, as the store's open does): as the host's listener (listener 1, the
 * cluster process) or beside it (0: workers, relay-admin). RL_OK, or the
 * store's error (logged by the store). */
rl_err cluster_host_store_open(const relay_config *cfg, int listener, store **out);

/* Opens the shared store as the listener. NULL when it cannot be opened
 * (logged; call again later) or out of memory. */
cluster_host *cluster_host_open(const relay_config *cfg);
/* Once a second: failchk, the listener's view of the sites, and, while
 * master, the heartbeat and abandoned reservations. */
void cluster_host_maintain(cluster_host *h, uint64_t now);
/* Closes the shared store (the site leaves the group); NULL is a no-op. */
void cluster_host_close(cluster_host *h);

#endif
