/*
 * config_cluster.h — [cluster] of relay.ini: several hosts sharing tokens
 * and budgets (store/cluster.h). config_load parses the section's keys with
 * the others (config.c's key table) and then calls config_cluster_check;
 * the engine, the pool's cluster process and relay-admin open the shared
 * store with config_cluster_options. Pure functions but for name lookups
 * (getaddrinfo) in the check; any thread.
 */
#ifndef RELAY_ENGINE_CONFIG_CLUSTER_H
#define RELAY_ENGINE_CONFIG_CLUSTER_H

#include "engine/config.h"
#include "store/base/rl_buf.h"
#include "store/cluster.h"
#include "store/store.h"

/* The section's checks across keys (see config_cluster.c): 0, or -1 with
 * the reason, naming the file and key, appended to why. Fills
 * cfg->cluster.home's default ([store] home + "-cluster"). */
int config_cluster_check(relay_config *cfg, rl_buf *why);

/* The options of the shared, replicated store of [cluster], for a process
 * that runs repmgr for the host (listener 1: the pool's cluster process)
 * or one that only reads and forwards its writes (listener 0): sc from
 * [cluster], so for the store at [cluster] home with [store]'s secret,
 * thread counts as config_store_options gives them, no cache caps (it
 * holds no answers), 1 MiB entries and a 16 MiB buffer pool, and
 * so->cluster = sc. Meaningful only when cfg->cluster.site is set. The
 * strings are borrowed from cfg; sc must outlive the store opened with so. */
void config_cluster_options(const relay_config *cfg, int listener, store_options *so,
                            store_cluster *sc);

#endif
