/*
 * cluster.h — several Relay hosts sharing tokens and budgets through
 * Berkeley DB's Replication Manager.
 *
 * Without [cluster] a host keeps everything in its one store. With it, each
 * host opens a second store (its own home, "the shared store") whose
 * environment is replicated: tokens, the budgets' ledger and its
 * reservations live there, and the Replication Manager (repmgr) keeps one
 * copy per host, written by the group's master and read locally by
 * everyone. The answer cache, the in-flight table, the stats and the
 * breaker stay in the local store: they are large, written on every miss,
 * and worth nothing on another host whose clients ask other questions
 * (README "Several hosts" has the model).
 *
 * Writes. A replica cannot write its copy (Berkeley DB answers EACCES), so
 * every write to the shared store (a reservation, a settlement, a token
 * created, changed, rotated, revoked or deleted) is sent as a request on a
 * repmgr message channel addressed to the master (DB_EID_MASTER) and runs
 * there, in a transaction of the master's, whose answer comes back on the
 * channel. On the master's own host the same request is a call into this
 * process's own dispatch function: one path for every host. Reads (a token
 * lookup on every request, a budget row for the stats) are local and never
 * wait on the network: cache hits and pass-through never touch the group.
 *
 * Processes. On each host exactly one process runs repmgr's listener,
 * elections and message threads: the pool's cluster process (listener = 1,
 * relay.fcgi forks it before its workers). Every other process on the host
 * (workers, relay-admin) opens the same home as a subordinate (listener =
 * 0): it reads, and sends its writes on channels, which work as soon as the
 * listener runs (it leaves a mark beside the home: a subordinate joins only
 * while that process lives). Only the listener does the shared store's
 * maintenance: while master with another site connected, the heartbeat
 * record (once a second) and the release of abandoned reservations; on every host, the release
 * (through the master) of reservations whose owner, a process of this host, died: a reservation
 * names its owner's host, since only that host can tell.
 *
 * No master. While no master is known (an election under way, a partition
 * on the minority side), a forwarded write waits for one up to
 * [cluster] partition_grace, then fails with RL_NO_MASTER: Relay refuses
 * a reservation rather than overspend silently. A commit the master could
 * not get acknowledged (DB_EVENT_REP_PERM_FAILED under the ack policy) may
 * be rolled back at the next election, so a reservation made that way is
 * released again and refused; a master with no other site connected
 * refuses writes outright. Either is waited out like no master, then
 * RL_NO_MASTER: the budget bound holds.
 *
 * Security. repmgr neither encrypts nor authenticates its traffic: log
 * records and channel messages cross the network in clear, and any host
 * that reaches a site's port can join the group and copy it (the store's
 * password protects the disk only). The sites' addresses must be on a
 * private network or a VPN; config refuses a public address unless
 * [cluster] allow_public is set. The master removes from the group, within
 * a second, a site that joined without being a peer (logged).
 *
 * Thread safety, processes and errors as for store.h.
 */
#ifndef RELAY_STORE_CLUSTER_H
#define RELAY_STORE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_err.h"

typedef struct store store;

#define CLUSTER_MAX_SITES 16
#define CLUSTER_ADDR_MAX 300 /* "host:port" or "[v6]:port", NUL included */

/* repmgr's acknowledgement policies (DB_ENV->repmgr_set_ack_policy), in
 * the order config names them. */
typedef enum {
    CLUSTER_ACK_QUORUM,
    CLUSTER_ACK_ONE,
    CLUSTER_ACK_ONE_PEER,
    CLUSTER_ACK_ALL,
    CLUSTER_ACK_ALL_AVAILABLE,
    CLUSTER_ACK_NONE,
} cluster_ack;

/* What store_options.cluster holds (NULL: a store that is not replicated). */
typedef struct store_cluster {
    const char *site;  /* this site, "host:port" (a name, an IPv4 or [IPv6] address) */
    const char *peers; /* the other sites, "host:port" separated by spaces */
    int create_group;  /* the first start of a new group: this site creates it */
    unsigned priority; /* elections prefer higher; 0: never master */
    cluster_ack ack;
    int listener;                /* this process runs repmgr for the host (see above) */
    unsigned forward_timeout_ms; /* one channel request's wait for the master's answer */
    unsigned partition_grace_ms; /* how long a write waits for a master to exist */
    unsigned master_timeout_ms;  /* silence after which replicas elect another master */
} store_cluster;

/* Parses "host:port" ("[v6]:port" for IPv6) into host (NUL-terminated,
 * cap bytes) and *port. 0, or -1 when it is not one. For config and the
 * store alike. */
int cluster_addr_split(const char *addr, char *host, size_t cap, unsigned *port);

typedef enum {
    CLUSTER_ROLE_NONE = 0, /* not started, or no master known yet */
    CLUSTER_ROLE_MASTER = 1,
    CLUSTER_ROLE_REPLICA = 2,
} cluster_role;

const char *cluster_role_name(cluster_role r); /* "none", "master", "replica" */

typedef struct cluster_site_status {
    char addr[CLUSTER_ADDR_MAX];
    int self;      /* this site */
    int master;    /* the master, as this site knows it */
    int connected; /* this site's listener has a connection to it (self: 1) */
} cluster_site_status;

typedef struct store_cluster_status {
    cluster_role role;             /* this site's */
    char master[CLUSTER_ADDR_MAX]; /* "" when no master is known */
    /* From the master's heartbeat record, replicated like the data: when
     * the current master took over (unix s) and the last beat this site
     * has (lag: now - beat; the master writes one a second). 0: none yet. */
    uint64_t master_since;
    uint64_t beat;
    uint64_t elections;      /* elections this site's listener saw won (since it started) */
    uint64_t perm_failed;    /* commits the master could not get acknowledged */
    uint64_t forwarded;      /* writes this process sent to the master */
    uint64_t forward_failed; /* of those, refused for want of a master (RL_NO_MASTER) */
    unsigned nsites;
    cluster_site_status sites[CLUSTER_MAX_SITES];
} store_cluster_status;

/* The group as this process sees it. RL_CONFIG on a store that is not
 * replicated; RL_STORE when the environment cannot be asked. */
rl_err store_cluster_status_get(store *s, uint64_t now, store_cluster_status *out);

/* 1 when st shows no other site connected to this site's listener (as
 * a listener's status, or a subordinate's through the listener's view,
 * tells it). A master alone can get no write acknowledged: it grants no
 * reservation and writes nothing of its own. */
int store_cluster_alone(const store_cluster_status *st);

/* 1 on a replicated store, else 0. */
int store_is_replicated(const store *s);

#endif
