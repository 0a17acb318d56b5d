/*
 * cluster.c — a replicated store (contract in cluster.h): repmgr's setup
 * on the environment, its events, the group's status, and the master's
 * heartbeat record. The writes forwarded to the master are cluster_ops.c's.
 *
 * Figures behind the settings (README "Several hosts", measured on this
 * platform with three sites on loopback):
 * - Heartbeats are off in Berkeley DB by default, and then a hung master
 *   (or a partition that resets no TCP connection) is never noticed. The
 *   master sends one every master_timeout / 4 and replicas call an
 *   election after master_timeout of silence: with 200/700 ms a stopped
 *   master was replaced in 667 ms, a killed one (its sockets close) in
 *   5-9 ms whatever the setting.
 * - The election timeout and the connection retry are kept about as long
 *   as master_timeout: a site that restarts finds its peers within it.
 * - Acknowledgements wait at most master_timeout too: a commit that was
 *   not acknowledged by then is reported (DB_EVENT_REP_PERM_FAILED) and
 *   cluster_ops refuses what it granted.
 * - No checkpoint delay: by default a master's txn_checkpoint sleeps 30 s
 *   before logging its record (time for replicas to flush big caches).
 *   The shared store is small, and the sleep stalled the listener's
 *   maintenance, so its heartbeat, for 30 s (seen in t_cluster after a
 *   site rejoined): replicas then took the master for gone.
 *
 * Threads: the event callback runs on repmgr's threads (and, for
 * PERM_FAILED, in the committing thread); the state it writes is atomic.
 */
#include "store/cluster.h"

#include <db.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/store_int.h"

/* How long a replica's open waits for the master's databases to arrive. */
#define CLUSTER_OPEN_WAIT_MS 15000
#define CLUSTER_LISTENER_THREADS 3 /* repmgr's message threads: run the master's dispatch */
#define BEAT_KEY "master"
#define BEAT_LEN (4 + 8 + 8 + 2) /* magic, since, beat, address length; then the address */

typedef struct cluster_state cluster_state;

struct cluster_state {
    store_cluster opt; /* strings below are copies */
    char site[CLUSTER_ADDR_MAX];
    char *peers;
    _Atomic int role; /* cluster_role, as the listener's events said */
    _Atomic unsigned long forwarded, forward_failed; /* cluster_ops.c */
    _Atomic uint64_t master_since;                   /* listener, while master: when it took over */
    _Atomic int became_master;                       /* an event to stamp at the next maintenance */
    _Atomic(cluster_viewer *) viewer;                /* the listener's; freed with the state */
};

static const char *const role_names[] = {"none", "master", "replica"};

const char *cluster_role_name(cluster_role r)
{
    return (unsigned)r < sizeof role_names / sizeof role_names[0] ? role_names[r] : "none";
}

int store_cluster_alone(const store_cluster_status *st)
{
    for (unsigned i = 0; i < st->nsites && i < CLUSTER_MAX_SITES; i++)
        if (!st->sites[i].self && st->sites[i].connected)
            return 0;
    return 1;
}

int store_is_replicated(const store *s)
{
    return s && s->cluster != NULL;
}

/* ---- state ------------------------------------------------------------------ */

rl_err cluster_state_new(const store_cluster *opt, cluster_state **out)
{
    *out = NULL;
    if (!opt)
        return RL_OK;
    char host[CLUSTER_ADDR_MAX];
    unsigned port;
    if (!opt->site || cluster_addr_split(opt->site, host, sizeof host, &port) != 0 ||
        strlen(opt->site) >= CLUSTER_ADDR_MAX) {
        rl_error("store: [cluster] site %s is not host:port", opt->site ? opt->site : "(none)");
        return RL_CONFIG;
    }
    cluster_state *c = calloc(1, sizeof *c);
    if (!c)
        return RL_NOMEM;
    c->opt = *opt;
    snprintf(c->site, sizeof c->site, "%s", opt->site);
    c->peers = strdup(opt->peers ? opt->peers : "");
    if (!c->peers) {
        free(c);
        return RL_NOMEM;
    }
    c->opt.site = c->site;
    c->opt.peers = c->peers;
    *out = c;
    return RL_OK;
}

void cluster_state_free(cluster_state *c)
{
    if (!c)
        return;
    cluster_viewer_free(atomic_load(&c->viewer));
    free(c->peers);
    free(c);
}

/* ---- events --------------------------------------------------------------- */

static _Thread_local int perm_failed_here;

void cluster_note_perm_failed(void)
{
    perm_failed_here = 1;
}

int cluster_take_perm_failed(void)
{
    int was = perm_failed_here;
    perm_failed_here = 0;
    return was;
}

/* What each event changes: the role it says this site now has (-1: none
 * said), and what it is logged as (NULL: not logged). */
static const struct {
    u_int32_t event;
    int role;
    rl_log_level level;
    const char *text;
} events[] = {
    {DB_EVENT_REP_MASTER, CLUSTER_ROLE_MASTER, RL_LOG_INFO, "this site is now the master"},
    {DB_EVENT_REP_CLIENT, CLUSTER_ROLE_REPLICA, RL_LOG_INFO, "this site is now a replica"},
    {DB_EVENT_REP_NEWMASTER, -1, RL_LOG_INFO, "a new master was elected"},
    {DB_EVENT_REP_ELECTED, -1, RL_LOG_INFO, "this site won an election"},
    {DB_EVENT_REP_DUPMASTER, CLUSTER_ROLE_REPLICA, RL_LOG_WARN,
     "two masters met after a partition: this one steps down and rolls back what the group "
     "did not acknowledge"},
    {DB_EVENT_REP_MASTER_FAILURE, CLUSTER_ROLE_NONE, RL_LOG_WARN,
     "the master failed; electing another"},
    {DB_EVENT_REP_INIT_DONE, -1, RL_LOG_INFO, "copied the whole shared store from the master"},
    {DB_EVENT_REP_STARTUPDONE, -1, RL_LOG_INFO, "caught up with the master"},
    {DB_EVENT_REP_SITE_ADDED, -1, RL_LOG_INFO, "a site joined the group"},
    {DB_EVENT_REP_SITE_REMOVED, -1, RL_LOG_WARN, "a site left the group"},
    {DB_EVENT_PANIC, -1, RL_LOG_ERROR, "the replicated environment panicked"},
};

static void cluster_event(DB_ENV *env, u_int32_t event, void *info)
{
    (void)info;
    store *s = env->app_private;
    if (!s || !s->cluster)
        return;
    cluster_state *c = s->cluster;
    if (event == DB_EVENT_REP_PERM_FAILED) {
        /* Delivered in the thread whose commit was not acknowledged, also
         * in subordinate processes (the one event that reaches them). */
        cluster_note_perm_failed();
        return;
    }
    cluster_viewer_poke(atomic_load(&c->viewer)); /* a connection or a role changed: a view now */
    if (event == DB_EVENT_REP_CONNECT_ESTD) {
        cluster_nodelay_sweep(); /* a new connection: Nagle off (cluster_link.c) */
        return;
    }
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
        if (events[i].event != event)
            continue;
        if (events[i].role == CLUSTER_ROLE_MASTER)
            atomic_store(&c->became_master, 1); /* stamped by the next heartbeat */
        rl_log(events[i].level, "cluster %s: %s", c->site, events[i].text);
        return;
    }
}

/* ---- the environment -------------------------------------------------------- */

static const u_int32_t ack_policies[] = {
    [CLUSTER_ACK_QUORUM] = DB_REPMGR_ACKS_QUORUM,
    [CLUSTER_ACK_ONE] = DB_REPMGR_ACKS_ONE,
    [CLUSTER_ACK_ONE_PEER] = DB_REPMGR_ACKS_ONE_PEER,
    [CLUSTER_ACK_ALL] = DB_REPMGR_ACKS_ALL,
    [CLUSTER_ACK_ALL_AVAILABLE] = DB_REPMGR_ACKS_ALL_AVAILABLE,
    [CLUSTER_ACK_NONE] = DB_REPMGR_ACKS_NONE,
};

static int add_site(DB_ENV *env, const char *addr, u_int32_t which, int creator)
{
    char host[CLUSTER_ADDR_MAX];
    unsigned port;
    if (cluster_addr_split(addr, host, sizeof host, &port) != 0)
        return EINVAL;
    DB_SITE *site = NULL;
    int ret = env->repmgr_site(env, host, port, &site, 0);
    if (ret)
        return ret;
    ret = site->set_config(site, which, 1);
    if (ret == 0 && creator)
        ret = site->set_config(site, DB_GROUP_CREATOR, 1);
    int closed = site->close(site);
    return ret ? ret : closed;
}

int cluster_env_configure(store *s, DB_ENV *env)
{
    cluster_state *c = s->cluster;
    const store_cluster *o = &c->opt;
    env->app_private = s;
    int ret = env->set_event_notify(env, cluster_event);
    if (ret)
        return ret;
    if ((ret = add_site(env, c->site, DB_LOCAL_SITE, o->create_group)) != 0)
        return ret;
    /* Every peer helps a new site join; repmgr learns the rest of the
     * group's membership from whichever answers. */
    char addr[CLUSTER_ADDR_MAX];
    for (const char *p = c->peers; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        if (n >= sizeof addr)
            return EINVAL;
        memcpy(addr, p, n);
        addr[n] = 0;
        if ((ret = add_site(env, addr, DB_BOOTSTRAP_HELPER, 0)) != 0)
            return ret;
        p += n;
    }
    if ((ret = env->rep_set_priority(env, o->priority)) != 0)
        return ret;
    if ((unsigned)o->ack >= sizeof ack_policies / sizeof ack_policies[0])
        return EINVAL;
    if ((ret = env->repmgr_set_ack_policy(env, ack_policies[o->ack])) != 0)
        return ret;
    db_timeout_t master_us =
        (db_timeout_t)(o->master_timeout_ms ? o->master_timeout_ms : 2000) * 1000;
    const struct {
        int which;
        db_timeout_t us;
    } timeouts[] = {
        {DB_REP_HEARTBEAT_SEND, master_us / 4},
        {DB_REP_HEARTBEAT_MONITOR, master_us},
        {DB_REP_ELECTION_TIMEOUT, master_us},
        {DB_REP_ELECTION_RETRY, master_us},
        {DB_REP_CONNECTION_RETRY, master_us / 2},
        {DB_REP_ACK_TIMEOUT, master_us},
        {DB_REP_CHECKPOINT_DELAY, 0},
    };
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++)
        if ((ret = env->rep_set_timeout(env, timeouts[i].which, timeouts[i].us)) != 0)
            return ret;
    /* Every process sets it: a subordinate's request to DB_EID_MASTER on
     * the master's own host is answered by its own dispatch (DB_NOSERVER
     * without one). */
    return env->repmgr_msg_dispatch(env, cluster_dispatch, 0);
}

/*
 * The listener's mark: a file HOME.listener holding its pid,
 * written once its repmgr_start succeeded. A subordinate calls
 * repmgr_start only while that process lives. Why: in Berkeley DB 5.3 a
 * subordinate's repmgr_start(0) made while no listener runs fails
 * ("nthreads parameter must be >= 1") but leaves that process recorded
 * as the listener, so the real one's repmgr_start then returns
 * DB_REP_IGNORE and nobody listens (seen: a worker starting before the
 * cluster process).
 */
static void listener_path(const store *s, char *path, size_t cap)
{
    /* Beside the home, not in it: a replica's internal init takes every
     * file in the home for a database ("fop_read_meta: unexpected file
     * type" on a file of ours there). */
    snprintf(path, cap, "%s.listener", store_home_of(s));
}

/* A small file's text into buf (NUL-terminated, cut at cap - 1); 0 when
 * it cannot be opened. */
static int read_text(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    return 1;
}

static void listener_mark(const store *s)
{
    char path[4096], tmp[4200], line[64];
    char state;
    uint64_t start = 0;
    if (!store_proc_stat((long)getpid(), &state, &start))
        start = 0;
    listener_path(s, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    int n = snprintf(line, sizeof line, "%ld %llu\n", (long)getpid(), (unsigned long long)start);
    FILE *f = fopen(tmp, "w");
    if (!f || fwrite(line, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0 ||
        rename(tmp, path) != 0) {
        rl_error("cluster: cannot write %s: %s (this host's workers will not join replication)",
                 path, strerror(errno));
        if (f)
            (void)unlink(tmp);
    }
}

/* Alive: its process exists, is no zombie (a SIGKILLed listener whose
 * parent died too lingers as one until reaped, and kill(pid, 0) succeeds
 * on it: seen in cluster.test.mjs), and started when the mark says (the
 * pid was not reused). */
int cluster_listener_alive(const store *s)
{
    char path[4096], buf[64];
    listener_path(s, path, sizeof path);
    if (!read_text(path, buf, sizeof buf))
        return 0;
    char *end;
    long pid = strtol(buf, &end, 10);
    if (pid <= 0 || end == buf)
        return 0;
    unsigned long long marked = strtoull(end, NULL, 10);
    uint64_t start = 0;
    char state = 0;
    if (!store_proc_stat(pid, &state, &start) || state == 'Z' || state == 'X')
        return 0;
    return !marked || start == marked;
}

void cluster_listener_unmark(const store *s)
{
    if (!s->cluster || !s->cluster->opt.listener)
        return;
    char path[4096];
    listener_path(s, path, sizeof path);
    (void)unlink(path);
}

/* Whether replication runs on this environment: the listener started it
 * (a role, client or master, is set). Right after another process
 * recovered the environment, the listener may still be alive and marked
 * but not yet restarted on the new regions: joining then would make this
 * process the listener in 5.3's eyes (see listener_mark). */
static int rep_running(DB_ENV *env)
{
    DB_REP_STAT *st = NULL;
    if (env->rep_stat(env, &st, 0) != 0)
        return 0;
    int running = st->st_status == DB_REP_MASTER || st->st_status == DB_REP_CLIENT;
    free(st);
    return running;
}

int cluster_may_join(store *s, DB_ENV *env)
{
    return cluster_listener_alive(s) && rep_running(env);
}

int cluster_env_start(store *s, handles *h)
{
    cluster_state *c = s->cluster;
    int listener = c->opt.listener;
    if (!listener && !cluster_may_join(s, h->env))
        return 0; /* cluster_ops joins once the listener runs */
    int ret =
        h->env->repmgr_start(h->env, listener ? CLUSTER_LISTENER_THREADS : 0, DB_REP_ELECTION);
    if (ret == DB_REP_IGNORE) {
        if (listener)
            rl_warn("cluster %s: another process already runs replication for this host (%s)",
                    c->site, s->home);
        return 0;
    }
    if (ret == 0) {
        if (listener)
            listener_mark(s);
        else
            rl_warn("cluster %s: this process started replication for the host itself", c->site);
        return 0;
    }
    if (!listener && ret == EINVAL)
        return 0; /* no listener yet: cluster_ops joins it later */
    return ret;
}

rl_err cluster_opened(store *s)
{
    cluster_state *c = s->cluster;
    if (!c || !c->opt.listener)
        return RL_OK;
    cluster_viewer *v = cluster_viewer_start(s);
    atomic_store(&c->viewer, v); /* repmgr's events may read it from now on */
    return v ? RL_OK : RL_STORE;
}

void cluster_closing(store *s)
{
    if (s->cluster) /* the thread only: an event may still poke it until the env closes */
        cluster_viewer_stop(atomic_load(&s->cluster->viewer));
}

int cluster_db_open_wait(store *s, int ret, unsigned *waited_ms)
{
    if (!s->cluster || ret != ENOENT || *waited_ms >= CLUSTER_OPEN_WAIT_MS)
        return 0;
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    *waited_ms += 50;
    return 1;
}

/* ---- strangers ------------------------------------------------------------------- */

/*
 * The peers are the group's allow-list: a site that joined without being
 * one of them (anyone who reaches a site's port can join: repmgr
 * authenticates nothing) is removed by the master within a second of
 * joining, and logged. This does not make the network safe (the stranger
 * may have copied the store while it was in), but it keeps a stray or
 * hostile site from taking part in elections and acknowledgements.
 */
typedef struct stranger_list {
    unsigned n;
    char host[CLUSTER_MAX_SITES][CLUSTER_ADDR_MAX];
    unsigned port[CLUSTER_MAX_SITES];
} stranger_list;

static int sites_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    stranger_list *l = o->arg;
    DB_REPMGR_SITE *list = NULL;
    u_int count = 0;
    l->n = 0;
    int ret = h->env->repmgr_site_list(h->env, &count, &list);
    if (ret)
        return ret;
    for (u_int i = 0; i < count && l->n < CLUSTER_MAX_SITES; i++) {
        snprintf(l->host[l->n], sizeof l->host[0], "%s", list[i].host);
        l->port[l->n++] = list[i].port;
    }
    free(list);
    return 0;
}

/* Whether two hosts are the same: as written (any case), or, with
 * resolve, by an address both resolve to. */
static int same_host(const char *a, const char *b, int resolve)
{
    if (strcasecmp(a, b) == 0)
        return 1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ra = NULL, *rb = NULL;
    if (!resolve || getaddrinfo(a, NULL, &hints, &ra) != 0)
        return 0;
    int same = 0;
    if (getaddrinfo(b, NULL, &hints, &rb) == 0) {
        for (struct addrinfo *x = ra; x && !same; x = x->ai_next)
            for (struct addrinfo *y = rb; y && !same; y = y->ai_next)
                same = x->ai_family == y->ai_family &&
                       (x->ai_family == AF_INET
                            ? memcmp(&((struct sockaddr_in *)x->ai_addr)->sin_addr,
                                     &((struct sockaddr_in *)y->ai_addr)->sin_addr,
                                     sizeof(struct in_addr)) == 0
                            : x->ai_family == AF_INET6 &&
                                  memcmp(&((struct sockaddr_in6 *)x->ai_addr)->sin6_addr,
                                         &((struct sockaddr_in6 *)y->ai_addr)->sin6_addr,
                                         sizeof(struct in6_addr)) == 0);
        freeaddrinfo(rb);
    }
    freeaddrinfo(ra);
    return same;
}

/* Whether host:port is this site or one of its peers, compared with
 * resolve as same_host does. */
static int site_listed(const cluster_state *c, const char *host, unsigned port, int resolve)
{
    char h[CLUSTER_ADDR_MAX], addr[CLUSTER_ADDR_MAX];
    unsigned p;
    if (cluster_addr_split(c->site, h, sizeof h, &p) == 0 && p == port &&
        same_host(h, host, resolve))
        return 1;
    for (const char *at = c->peers; *at;) {
        at += strspn(at, " ");
        size_t n = strcspn(at, " ");
        if (n == 0 || n >= sizeof addr)
            break;
        memcpy(addr, at, n);
        addr[n] = 0;
        at += n;
        if (cluster_addr_split(addr, h, sizeof h, &p) == 0 && p == port &&
            same_host(h, host, resolve))
            return 1;
    }
    return 0;
}

/* As written first; only a site no entry names as written costs name
 * lookups (once a second on the master, while it stays). */
static int site_allowed(const cluster_state *c, const char *host, unsigned port)
{
    return site_listed(c, host, port, 0) || site_listed(c, host, port, 1);
}

typedef struct remove_arg {
    const char *host;
    unsigned port;
} remove_arg;

static int remove_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    const remove_arg *a = o->arg;
    DB_SITE *site = NULL;
    int ret = h->env->repmgr_site(h->env, a->host, a->port, &site, 0);
    return ret ? ret : site->remove(site); /* remove discards the handle */
}

/* The master's part: removes the sites that are not peers. */
static void remove_strangers(store *s)
{
    cluster_state *c = s->cluster;
    stranger_list *l = malloc(sizeof *l);
    if (!l)
        return;
    op q = {.what = "listing the group's sites", .body = sites_body, .no_txn = 1, .arg = l};
    if (store_op_run(s, &q) == RL_OK) {
        for (unsigned i = 0; i < l->n; i++) {
            if (site_allowed(c, l->host[i], l->port[i]))
                continue;
            rl_error("cluster %s: site %s:%u joined the group but is not in [cluster] peers: "
                     "removing it (repmgr authenticates nothing: keep the sites' network "
                     "private)",
                     c->site, l->host[i], l->port[i]);
            remove_arg a = {l->host[i], l->port[i]};
            op r = {.what = "removing a site that is not a peer",
                    .body = remove_body,
                    .no_txn = 1,
                    .arg = &a};
            (void)store_op_run(s, &r);
        }
    }
    free(l);
}

/* ---- the master's heartbeat --------------------------------------------------- */

typedef struct beat {
    uint64_t since, at;
    char addr[CLUSTER_ADDR_MAX];
} beat;

static int beat_put_body(handles *h, DB_TXN *txn, op *o)
{
    const beat *b = o->arg;
    uint8_t rec[BEAT_LEN + CLUSTER_ADDR_MAX];
    size_t n = strlen(b->addr);
    memcpy(rec, "RLB1", 4);
    store_put64(rec + 4, b->since);
    store_put64(rec + 12, b->at);
    rec[20] = (uint8_t)(n >> 8);
    rec[21] = (uint8_t)n;
    memcpy(rec + BEAT_LEN, b->addr, n);
    DBT k, d;
    dbt_in(&k, BEAT_KEY, strlen(BEAT_KEY));
    dbt_in(&d, rec, BEAT_LEN + n);
    return h->group->put(h->group, txn, &k, &d, 0);
}

static int beat_get_body(handles *h, DB_TXN *txn, op *o)
{
    beat *b = o->arg;
    uint8_t rec[BEAT_LEN + CLUSTER_ADDR_MAX];
    DBT k, d;
    dbt_in(&k, BEAT_KEY, strlen(BEAT_KEY));
    dbt_out(&d, rec, sizeof rec);
    memset(b, 0, sizeof *b);
    int ret = h->group->get(h->group, txn, &k, &d, 0);
    if (ret)
        return ret;
    size_t n = d.size >= BEAT_LEN ? (size_t)rec[20] << 8 | rec[21] : 0;
    if (d.size < BEAT_LEN || memcmp(rec, "RLB1", 4) != 0 || BEAT_LEN + n != d.size ||
        n >= sizeof b->addr) {
        o->err = RL_BAD_ENTRY;
        return 0;
    }
    b->since = store_get64(rec + 4);
    b->at = store_get64(rec + 12);
    memcpy(b->addr, rec + BEAT_LEN, n);
    b->addr[n] = 0;
    return 0;
}

static int is_master_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    DB_REP_STAT *st = NULL;
    int ret = h->env->rep_stat(h->env, &st, 0);
    if (ret)
        return ret;
    *(int *)o->arg = st->st_status == DB_REP_MASTER;
    free(st);
    return 0;
}

rl_err cluster_maintain(store *s, uint64_t now)
{
    cluster_state *c = s->cluster;
    cluster_nodelay_sweep(); /* connections made since the last second */
    if (!c->opt.listener)
        return RL_OK;
    /* The view its own thread keeps (cluster_link.c), which the host's
     * workers judge by too: one judgement of "alone", and no second
     * reading of the replication status here. */
    int alone = cluster_view_isolated(s, (uint64_t)time(NULL));
    int master = 0;
    op q = {.what = "asking for the replication role",
            .body = is_master_body,
            .no_txn = 1,
            .arg = &master};
    rl_err e = store_op_run(s, &q);
    if (e != RL_OK)
        return e;
    if (!master) {
        ledger_maintain_owners(s, now); /* this host's dead workers' reservations */
        return RL_OK;
    }
    if (atomic_exchange(&c->became_master, 0) || !atomic_load(&c->master_since))
        atomic_store(&c->master_since, now);
    /* A master alone writes nothing of its own: no replica would read the
     * heartbeat, and each commit would wait out the ack timeout for
     * acknowledgements that cannot come, stalling this loop and so the
     * view the host's other processes judge isolation by (a CI run under
     * ASan saw it go stale and a worker grant a reservation). Done again
     * once a site connects. */
    if (alone)
        return RL_OK;
    beat b = {.since = atomic_load(&c->master_since), .at = now};
    snprintf(b.addr, sizeof b.addr, "%s", c->site);
    op o = {.what = "writing the master's heartbeat",
            .body = beat_put_body,
            .arg = &b,
            .idempotent = 1};
    e = store_op_run(s, &o);
    (void)cluster_take_perm_failed(); /* a beat that was not acknowledged is only late */
    remove_strangers(s);
    ledger_maintain(s, now, 1);
    return e;
}

/* ---- status --------------------------------------------------------------------- */

typedef struct status_arg {
    store_cluster_status *st;
    const char *self;
    int listener;
} status_arg;

static int status_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    status_arg *a = o->arg;
    store_cluster_status *st = a->st;
    DB_REP_STAT *rs = NULL;
    DB_REPMGR_SITE *list = NULL;
    u_int count = 0;
    int ret = h->env->rep_stat(h->env, &rs, 0);
    if (ret)
        return ret;
    st->role = rs->st_status == DB_REP_MASTER ? CLUSTER_ROLE_MASTER
               : rs->st_status == DB_REP_CLIENT && rs->st_master != DB_EID_INVALID
                   ? CLUSTER_ROLE_REPLICA
                   : CLUSTER_ROLE_NONE;
    int master_eid = (int)rs->st_master;
    /* The environment's own counts (its shared region): the same in every
     * process of the host, since the environment was opened. */
    st->elections = rs->st_elections;
    free(rs);
    DB_REPMGR_STAT *ms = NULL;
    if (h->env->repmgr_stat(h->env, &ms, 0) == 0) {
        st->perm_failed = ms->st_perm_failed;
        free(ms);
    }
    if ((ret = h->env->repmgr_site_list(h->env, &count, &list)) != 0)
        return ret;
    st->nsites = 0;
    if (st->nsites < CLUSTER_MAX_SITES) {
        cluster_site_status *me = &st->sites[st->nsites++];
        snprintf(me->addr, sizeof me->addr, "%s", a->self);
        me->self = 1;
        me->connected = 1;
        me->master = st->role == CLUSTER_ROLE_MASTER;
    }
    if (st->role == CLUSTER_ROLE_MASTER)
        snprintf(st->master, sizeof st->master, "%s", a->self);
    for (u_int i = 0; i < count && st->nsites < CLUSTER_MAX_SITES; i++) {
        cluster_site_status *x = &st->sites[st->nsites++];
        int v6 = strchr(list[i].host, ':') != NULL;
        snprintf(x->addr, sizeof x->addr, v6 ? "[%s]:%u" : "%s:%u", list[i].host, list[i].port);
        x->connected = list[i].status == DB_REPMGR_CONNECTED;
        x->master = list[i].eid == master_eid && st->role != CLUSTER_ROLE_MASTER;
        if (x->master)
            snprintf(st->master, sizeof st->master, "%s", x->addr);
    }
    free(list);
    /* A replica keeps the last master's id until an election replaces it:
     * a master the listener has no connection to is no master it can
     * reach. (Only the listener's connections are in the list: a
     * subordinate judges by the heartbeat, store_cluster_status_get.) */
    if (st->role == CLUSTER_ROLE_REPLICA && a->listener) {
        int reachable = 0;
        for (unsigned i = 1; i < st->nsites; i++)
            reachable |= st->sites[i].master && st->sites[i].connected;
        if (!reachable) {
            st->role = CLUSTER_ROLE_NONE;
            st->master[0] = 0;
            for (unsigned i = 1; i < st->nsites; i++)
                st->sites[i].master = 0;
        }
    }
    return 0;
}

rl_err store_cluster_status_get(store *s, uint64_t now, store_cluster_status *out)
{
    memset(out, 0, sizeof *out);
    if (!s || !s->cluster)
        return RL_CONFIG;
    cluster_state *c = s->cluster;
    status_arg a = {out, c->site, c->opt.listener};
    op o = {.what = "reading the replication status", .body = status_body, .no_txn = 1, .arg = &a};
    rl_err e = store_op_run(s, &o);
    if (e != RL_OK)
        return e;
    if (!c->opt.listener)
        cluster_view_apply(s, now, out);
    beat b;
    op g = {.what = "reading the master's heartbeat",
            .body = beat_get_body,
            .arg = &b,
            .read_committed = 1,
            .idempotent = 1};
    rl_err ge = store_op_run(s, &g);
    if (ge == RL_OK) {
        out->master_since = b.since;
        out->beat = b.at;
    }
    /* The master writes its heartbeat record once a second: a replica
     * whose copy has none newer than this knows no master it can reach. */
    uint64_t stale = 5 + c->opt.master_timeout_ms / 1000;
    if (out->role == CLUSTER_ROLE_REPLICA && (!out->beat || now > out->beat + stale)) {
        out->role = CLUSTER_ROLE_NONE;
        out->master[0] = 0;
        for (unsigned i = 0; i < out->nsites; i++)
            out->sites[i].master = 0;
    }
    out->forwarded = atomic_load(&c->forwarded);
    out->forward_failed = atomic_load(&c->forward_failed);
    return RL_OK;
}

void cluster_count_forward(store *s, int failed)
{
    atomic_fetch_add(&s->cluster->forwarded, 1);
    if (failed)
        atomic_fetch_add(&s->cluster->forward_failed, 1);
}

const store_cluster *cluster_options(const store *s)
{
    return &s->cluster->opt;
}
