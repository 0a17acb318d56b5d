/*
 * t_cluster.c — a replicated store (store/cluster.h): three sites of one
 * group on loopback, each a store of its own home opened as its host's
 * listener, in this one process (Berkeley DB keeps one repmgr per
 * environment). Checks: the group forms with the creator as master; a
 * token written on a replica is forwarded, committed by the master and
 * read on every site; reservations made concurrently on all three sites
 * never pass the limit; a replica's settlement lands; when the master
 * closes, the others elect one and writes resume; the old master comes
 * back as a replica and every site reads the same spend; a reservation of
 * a replica host's process that died is released by that host (the master
 * cannot tell), not by the master; a write with no
 * master anywhere fails with RL_NO_MASTER after partition_grace; the
 * status names the sites and the master.
 *
 * Waits for the group (an election, replication) poll the store with a
 * deadline; nothing asserts on time.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/cluster.h"
#include "store/ledger.h"
#include "store/store.h"
#include "store/store_int.h"
#include "store/token.h"
#include "tests/unit/cluster_fixture.h"
#include "tests/unit/tap.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libdb-5.3.so\n";
}

#define NOW 1813017600ull /* 2027-06-15 00:00:00 UTC */

static cluster_fixture fx;

static rl_err open_site(int i)
{
    return cluster_fixture_open(&fx, i);
}

static int wait_role_at(int i, cluster_role role, uint64_t now)
{
    return cluster_fixture_wait_role(&fx, i, role, now);
}

static int wait_role(int i, cluster_role role)
{
    return wait_role_at(i, role, NOW);
}

static store_token token_named(const char *name, uint8_t fill)
{
    store_token t;
    memset(&t, 0, sizeof t);
    memset(t.hash, fill, sizeof t.hash);
    store_token_id_of(t.hash, t.id);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.created = NOW;
    return t;
}

/* Polls until site i has the token with this hash (or 10 s). */
static int wait_token(int i, const uint8_t *hash, token_state want)
{
    for (int t = 0; t < 200; t++) {
        store_token got;
        if (store_token_get(fx.sites[i], hash, &got) == RL_OK &&
            store_token_state(&got, NOW + 1) == want)
            return 1;
        cluster_pause_ms(50);
    }
    return 0;
}

typedef struct reserver {
    int site;
    unsigned tries, granted, refused, other;
    uint8_t ids[16][LEDGER_ID_LEN];
} reserver;

static void *reserve_some(void *p)
{
    reserver *r = p;
    for (unsigned k = 0; k < r->tries; k++) {
        ledger_charge c = {.scope = "token:cafe0001", .window = LEDGER_DAY};
        c.amount[LEDGER_REQUESTS] = 1;
        c.limit[LEDGER_REQUESTS] = 10;
        ledger_refusal why;
        rl_err e = store_ledger_reserve(fx.sites[r->site], &c, 1, NOW, r->ids[r->granted], &why);
        if (e == RL_OK)
            r->granted++;
        else if (e == RL_OVER_LIMIT && why.limit == 10)
            r->refused++;
        else
            r->other++;
    }
    return NULL;
}

static ledger_row row_at(int i)
{
    ledger_row row;
    memset(&row, 0xee, sizeof row);
    if (store_ledger_read(fx.sites[i], "token:cafe0001", LEDGER_DAY, NOW, &row) != RL_OK)
        memset(&row, 0xee, sizeof row);
    return row;
}

/* Polls until site i has the master's heartbeat of time beat (or 10 s). */
static int wait_beat(int i, uint64_t beat)
{
    for (int t = 0; t < 200; t++) {
        store_cluster_status st;
        if (store_cluster_status_get(fx.sites[i], NOW, &st) == RL_OK && st.beat == beat)
            return 1;
        cluster_pause_ms(50);
    }
    return 0;
}

/* Polls until site i's published view (what its host's other processes
 * judge by; rewritten every 250 ms) shows no other site connected (10 s). */
static int wait_view_alone(int i)
{
    for (int t = 0; t < 200; t++) {
        if (cluster_view_isolated(fx.sites[i], (uint64_t)time(NULL)))
            return 1;
        cluster_pause_ms(50);
    }
    return 0;
}

/* Polls until site i's listener sees no other site connected (or 10 s). */
static int wait_alone(int i)
{
    for (int t = 0; t < 200; t++) {
        store_cluster_status st;
        if (store_cluster_status_get(fx.sites[i], NOW, &st) == RL_OK && store_cluster_alone(&st))
            return 1;
        cluster_pause_ms(50);
    }
    return 0;
}

/* Polls until every open site reads spent requests == want (or 10 s). */
static int wait_spent(uint64_t want)
{
    for (int t = 0; t < 200; t++) {
        int all = 1;
        for (int i = 0; i < SITES; i++)
            if (fx.sites[i] && row_at(i).spent[LEDGER_REQUESTS] != want)
                all = 0;
        if (all)
            return 1;
        cluster_pause_ms(50);
    }
    return 0;
}

/* The child: opens a site's home as one of its host's other processes
 * (not the listener), reserves on token:cafe0003 and leaves without
 * settling (closing the store cleanly: a killed process would make the
 * next opener recover the environment, which restarts the host's
 * replication). Exits 0 when granted, 5 when refused for want of a
 * master, 4 otherwise. */
static int child(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    if (getenv("T_DEBUG"))
        rl_log_set_level(RL_LOG_DEBUG);
    snprintf(fx.keyfile, sizeof fx.keyfile, "%s", argv[2]);
    store_cluster c = {.site = argv[3],
                       .peers = argv[4],
                       .priority = 10,
                       .ack = CLUSTER_ACK_QUORUM,
                       .listener = 0,
                       .forward_timeout_ms = 2000,
                       .partition_grace_ms = (unsigned)strtoul(argv[6], NULL, 10),
                       .master_timeout_ms = 1000};
    store_options o = {
        .home = argv[5], .key_file = fx.keyfile, .cache_mb = 8, .max_threads = 32, .cluster = &c};
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 3;
    ledger_charge ch = {.scope = "token:cafe0003", .window = LEDGER_DAY};
    ch.amount[LEDGER_REQUESTS] = 1;
    uint8_t id[LEDGER_ID_LEN];
    rl_err e = store_ledger_reserve(s, &ch, 1, NOW, id, NULL);
    store_close(s);
    return e == RL_OK ? 0 : e == RL_NO_MASTER ? 5 : 4;
}

/* Runs the child on site i's host; its exit status. */
static int run_child(const char *self, int i, unsigned grace_ms)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s child %s %s '%s' %s %u", self, fx.keyfile, fx.addrs[i],
             fx.peers[i], fx.homes[i], grace_ms);
    int st = system(cmd);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The listener's view (store/cluster_link.c) as the host's other
 * processes read it, on a store of its own: what counts as isolated. */
static void view_cases(void)
{
    char home[200], path[220];
    snprintf(home, sizeof home, "%s/view", fx.tmp);
    snprintf(path, sizeof path, "%s.sites", home);
    store_options o = {.home = home, .key_file = fx.keyfile, .cache_mb = 8, .max_threads = 8};
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK) {
        ok(0, "a store for the view's cases opens");
        return;
    }
    uint64_t now = (uint64_t)time(NULL);
    ok(cluster_view_isolated(s, now), "no view (no listener yet, or none): isolated");
    store_cluster_status st;
    memset(&st, 0, sizeof st);
    st.nsites = 3;
    snprintf(st.sites[0].addr, sizeof st.sites[0].addr, "127.0.0.1:7000");
    snprintf(st.sites[1].addr, sizeof st.sites[1].addr, "127.0.0.1:7001");
    snprintf(st.sites[2].addr, sizeof st.sites[2].addr, "127.0.0.1:7002");
    st.sites[0].self = st.sites[0].connected = 1;
    st.sites[2].connected = 1;
    cluster_view_publish(s, &st);
    ok(!cluster_view_isolated(s, now), "a recent view with a site connected: not isolated");
    ok(cluster_view_isolated(s, now + 60), "the same view a minute old (a listener stalled or "
                                           "dead): isolated");
    store_cluster_status seen;
    memcpy(&seen, &st, sizeof seen);
    seen.sites[2].connected = 0;
    cluster_view_apply(s, now, &seen);
    ok(seen.sites[2].connected && !seen.sites[1].connected, "the view applied to a status");
    cluster_view_apply(s, now + 60, &seen);
    ok(!seen.sites[2].connected, "a stale view applied: nothing connected");
    st.sites[2].connected = 0;
    cluster_view_publish(s, &st);
    ok(cluster_view_isolated(s, now), "a recent view with no site connected: isolated");
    st.nsites = 1;
    cluster_view_publish(s, &st);
    ok(cluster_view_isolated(s, now), "a view of the listener alone: isolated");
    ok(store_cluster_alone(&st), "and alone by its status");
    is_int(unlink(path), 0, "the view removed");
    ok(cluster_view_isolated(s, now), "isolated again");
    store_close(s);
    store_remove(&o);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child(argc, argv);
    if (cluster_fixture_init(&fx, "t_cluster") != 0)
        return 1;
    if (getenv("T_DEBUG"))
        rl_log_set_level(RL_LOG_DEBUG);
    view_cases();

    /* The group forms around its creator. */
    is_int(open_site(0), RL_OK, "the creator opens");
    ok(wait_role(0, CLUSTER_ROLE_MASTER), "the creator is master");
    store_cluster_status st;
    is_int(store_maintain(fx.sites[0], NOW), RL_OK, "the master's maintenance, alone");
    is_int(store_cluster_status_get(fx.sites[0], NOW, &st), RL_OK, "status on the master");
    ok(store_cluster_alone(&st), "alone: no other site connected");
    is_int(st.beat, 0, "a master alone writes no heartbeat (its commit could not be acknowledged)");
    for (int i = 1; i < SITES; i++) {
        ok(cluster_fixture_join(&fx, i, 0, NOW),
           "a site joins: a replica with a master (once the master's heartbeat came)");
    }
    is_int(store_cluster_status_get(fx.sites[0], NOW, &st), RL_OK, "status on the master");
    ok(!store_cluster_alone(&st), "no longer alone");
    ok(wait_beat(2, NOW), "the master's heartbeat replicated");
    is_int(store_cluster_status_get(fx.sites[2], NOW, &st), RL_OK, "status on a replica");
    is_str(st.master, fx.addrs[0], "it names the master");
    ok(st.nsites == SITES, "it lists every site");
    ok(st.sites[0].self && strcmp(st.sites[0].addr, fx.addrs[2]) == 0, "itself first");
    ok(st.master_since == NOW, "the master's start replicated");
    ok(store_is_replicated(fx.sites[1]), "replicated");

    /* A site that is no one's peer joins (repmgr lets it): the master's
     * maintenance removes it from the group. */
    char stranger_home[160], stranger_addr[64];
    snprintf(stranger_home, sizeof stranger_home, "%s/stranger", fx.tmp);
    snprintf(stranger_addr, sizeof stranger_addr, "127.0.0.1:%u", cluster_free_port());
    store_cluster sc = fx.copts[2];
    sc.site = stranger_addr;
    sc.peers = fx.addrs[0];
    sc.priority = 0;
    store_options so = {.home = stranger_home,
                        .key_file = fx.keyfile,
                        .cache_mb = 8,
                        .max_threads = 32,
                        .cluster = &sc};
    store *stranger = NULL;
    is_int(store_open(&so, &stranger), RL_OK, "a stranger joins the group");
    int listed = 0, gone = 0;
    for (int tries = 0; tries < 200 && !gone; tries++) {
        store_cluster_status_get(fx.sites[0], NOW, &st);
        int here = 0;
        for (unsigned i = 0; i < st.nsites; i++)
            here |= strcmp(st.sites[i].addr, stranger_addr) == 0;
        listed |= here;
        if (listed)
            (void)store_maintain(fx.sites[0], NOW);
        gone = listed && !here;
        if (!gone)
            cluster_pause_ms(50);
    }
    ok(listed, "the master saw it join");
    ok(gone, "and removed it: not in [cluster] peers");
    store_close(stranger);
    store_options ro = {.home = stranger_home};
    store_remove(&ro);

    /* A token written on a replica is read everywhere. */
    store_token t = token_named("alice", 0x11);
    is_int(store_token_put(fx.sites[2], &t, TOKEN_CREATE), RL_OK, "token created on a replica");
    store_token mine;
    is_int(store_token_get(fx.sites[2], t.hash, &mine), RL_OK,
           "read there at once: the write waited for its commit to be applied there");
    for (int i = 0; i < SITES; i++)
        ok(wait_token(i, t.hash, TOKEN_LIVE), "the token reads on every site");
    is_int(store_token_put(fx.sites[1], &t, TOKEN_CREATE), RL_OK,
           "the same record again: done already (a retried forward)");
    store_token twin = token_named("alice", 0x33);
    is_int(store_token_put(fx.sites[1], &twin, TOKEN_CREATE), RL_EXISTS,
           "the master's refusal comes back (the name is taken)");
    store_token revoked;
    is_int(store_token_revoke(fx.sites[1], t.hash, NOW, &revoked), RL_OK, "revoked on a replica");
    ok(revoked.revoked == NOW && strcmp(revoked.name, "alice") == 0, "the record comes back");
    for (int i = 0; i < SITES; i++)
        ok(wait_token(i, t.hash, TOKEN_REVOKED), "revoked on every site");

    /* Reservations from all three sites at once never pass the limit. */
    reserver rs[SITES * 2];
    pthread_t th[SITES * 2];
    for (int i = 0; i < SITES * 2; i++) {
        memset(&rs[i], 0, sizeof rs[i]);
        rs[i].site = i % SITES;
        rs[i].tries = 5;
        pthread_create(&th[i], NULL, reserve_some, &rs[i]);
    }
    unsigned granted = 0, refused = 0, other = 0;
    for (int i = 0; i < SITES * 2; i++) {
        pthread_join(th[i], NULL);
        granted += rs[i].granted;
        refused += rs[i].refused;
        other += rs[i].other;
    }
    is_int(granted, 10, "exactly the limit's worth granted across the group");
    is_int(refused, 20, "the rest refused, with the limit");
    is_int(other, 0, "no other outcome");
    ledger_row row = row_at(0);
    is_int(row.reserved[LEDGER_REQUESTS], 10, "the master holds 10 reservations");

    /* Settlements from replicas land once. */
    uint64_t one[LEDGER_UNITS] = {0, 0, 1};
    for (int i = 0; i < SITES * 2; i++)
        for (unsigned k = 0; k < rs[i].granted; k++)
            is_int(store_ledger_settle(fx.sites[rs[i].site], rs[i].ids[k], one, NOW), RL_OK,
                   "settled where it was reserved");
    is_int(store_ledger_settle(fx.sites[1], rs[1].ids[0], one, NOW), RL_NOTFOUND,
           "a second settlement finds nothing");
    ok(wait_spent(10), "every site reads 10 spent");

    /* A process of a replica's host reserves and dies: only that host can
     * tell, and its listener's maintenance releases the reservation
     * through the master, counting it as spent. */
    is_int(run_child(argv[0], 2, 5000), 0, "a child of site 2's host reserved and left");
    ledger_row held;
    for (int tries = 0; tries < 200; tries++) {
        if (store_ledger_read(fx.sites[0], "token:cafe0003", LEDGER_DAY, NOW, &held) == RL_OK &&
            held.reserved[LEDGER_REQUESTS] == 1)
            break;
        cluster_pause_ms(50);
    }
    is_int(held.reserved[LEDGER_REQUESTS], 1, "the master holds the child's reservation");
    is_int(store_maintain(fx.sites[0], NOW), RL_OK, "the master's maintenance");
    is_int(store_ledger_read(fx.sites[0], "token:cafe0003", LEDGER_DAY, NOW, &held), RL_OK, "read");
    is_int(held.reserved[LEDGER_REQUESTS], 1,
           "the master leaves it: its owner lived on another host");
    is_int(store_maintain(fx.sites[2], NOW), RL_OK, "the owner's host's maintenance");
    is_int(store_ledger_read(fx.sites[0], "token:cafe0003", LEDGER_DAY, NOW, &held), RL_OK, "read");
    is_int(held.reserved[LEDGER_REQUESTS], 0, "released by the owner's host");
    is_int(held.spent[LEDGER_REQUESTS], 1, "counted as spent");

    /* The master goes: the others elect one, and writes resume. */
    store_close(fx.sites[0]);
    fx.sites[0] = NULL;
    ok(wait_role(1, CLUSTER_ROLE_MASTER), "the next priority is elected");
    uint8_t id[LEDGER_ID_LEN];
    ledger_charge c = {.scope = "token:cafe0002", .window = LEDGER_DAY};
    c.amount[LEDGER_REQUESTS] = 1;
    is_int(store_ledger_reserve(fx.sites[2], &c, 1, NOW, id, NULL), RL_OK,
           "a replica reserves with the new master");
    c.scope = "token:cafe0001";
    is_int(store_ledger_reserve(fx.sites[2], &c, 1, NOW, id, NULL), RL_OK, "one more");
    is_int(store_ledger_settle(fx.sites[2], id, one, NOW), RL_OK, "and settles");

    /* The old master returns as a replica and catches up. */
    is_int(open_site(0), RL_OK, "the old master reopens");
    ok(wait_role(0, CLUSTER_ROLE_REPLICA), "as a replica");
    ok(wait_spent(11), "every site reads 11 spent");

    /* A master cut off from the others keeps its role (5.3 has no
     * leases here) but grants nothing: not from another site (nothing is
     * connected to send it) and not from a process of its own host,
     * which judges by its listener's view, and takes no view, or a stale
     * one, as no connection. */
    is_int(run_child(argv[0], 1, 5000), 0,
           "a process of the master's host reserves while a site is connected");
    store_close(fx.sites[0]);
    fx.sites[0] = NULL;
    store_close(fx.sites[2]);
    fx.sites[2] = NULL;
    ok(wait_alone(1), "the master's listener sees no site connected");
    ok(wait_view_alone(1), "and so does its view, which the host's processes read (every 250 ms)");
    ok(wait_role(1, CLUSTER_ROLE_MASTER), "and is still master");
    is_int(store_maintain(fx.sites[1], NOW), RL_OK, "its maintenance, alone");
    is_int(run_child(argv[0], 1, 300), 5, "its host's process is refused: the view says alone");
    is_int(open_site(2), RL_OK, "a site comes back");
    ok(wait_role(2, CLUSTER_ROLE_REPLICA), "as a replica of the lone master");

    /* No master anywhere: a write waits partition_grace, then fails. */
    store_close(fx.sites[1]);
    fx.sites[1] = NULL;
    ok(wait_role_at(2, CLUSTER_ROLE_NONE, NOW + 60),
       "the last site knows no master (no majority, no recent heartbeat)");
    is_int(store_ledger_reserve(fx.sites[2], &c, 1, NOW, id, NULL), RL_NO_MASTER,
           "no master: refused after partition_grace, not granted blindly");
    store_token u = token_named("bob", 0x22);
    ok(store_token_get(fx.sites[2], t.hash, &u) == RL_OK, "reads still work");

    cluster_fixture_done(&fx);
    return tap_done();
}
