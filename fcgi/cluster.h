/*
 * cluster.h — the pool's cluster process ([cluster], store/cluster.h).
 *
 * With [cluster] set, the pool forks one more child before its workers:
 * the process that runs Berkeley DB's Replication Manager for this host
 * (the listener: connections to the other sites, elections, and the
 * master's side of forwarded writes). It serves no requests. Workers open
 * the same shared store as subordinates and join it. The supervisor
 * restarts it when it dies, like a worker. A process started by mod_fcgid
 * or spawn-fcgi has no supervisor and runs no cluster process (README).
 *
 * Why a process of its own: only one process per environment may run
 * repmgr's threads, they must outlive any worker (workers are replaced
 * after max_requests or a crash), and a process running repmgr must not
 * fork (Berkeley DB's rule), which rules out the supervisor itself.
 */
#ifndef RELAY_FCGI_CLUSTER_H
#define RELAY_FCGI_CLUSTER_H

#include <sys/types.h>

#include "engine/config.h"

/* Forks the cluster process; its pid, or -1 (logged). The child never
 * returns: it opens the shared store as the listener (retrying every
 * 2 s while it cannot), maintains it once a second, and exits 0 on
 * SIGTERM or SIGINT after closing it. */
pid_t cluster_spawn(const relay_config *cfg);

#endif
