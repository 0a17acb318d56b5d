/*
 * cluster_view.c — the replication group's status as Relay shows it (see
 * cluster_view.h): the one place that names its members.
 */
#include "engine/cluster_view.h"

#include "engine/cluster_view_int.h"
#include "engine/prov_json.h"

int cluster_view_lag(const store_cluster_status *st, uint64_t now, uint64_t *lag)
{
    *lag = st->beat && now > st->beat ? now - st->beat : 0;
    return st->beat != 0;
}

unsigned cluster_view_connected(const store_cluster_status *st)
{
    unsigned n = 0;
    for (unsigned i = 0; i < st->nsites && i < CLUSTER_MAX_SITES; i++)
        n += st->sites[i].connected != 0;
    return n;
}

const char *cluster_view_problem(const store_cluster_status *st)
{
    if (st->role == CLUSTER_ROLE_NONE)
        return "no master";
    /* A master cut off from every other site keeps its role, but none of
     * its writes is acknowledged: it refuses them (store/cluster.h). */
    if (st->role == CLUSTER_ROLE_MASTER && store_cluster_alone(st))
        return "master alone: no other site connected";
    return NULL;
}

static json_t *site_object(const cluster_site_status *site)
{
    return json_pack("{s:s,s:b,s:b,s:b}", "addr", site->addr, "self", site->self != 0, "master",
                     site->master != 0, "connected", site->connected != 0);
}

/* Counters as members, from one table. */
static int counters_into(json_t *o, const store_cluster_status *st)
{
    const struct {
        const char *name;
        uint64_t value;
    } rows[] = {
        {"master_since", st->master_since},     {"beat", st->beat},
        {"elections", st->elections},           {"forwarded", st->forwarded},
        {"forward_failed", st->forward_failed}, {"perm_failed", st->perm_failed},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        failed |= json_object_set_new(o, rows[i].name, json_integer((json_int_t)rows[i].value));
    return failed;
}

json_t *cluster_view_object(const store_cluster_status *st, uint64_t now)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int failed = json_object_set_new(o, "role", json_string(cluster_role_name(st->role)));
    /* Addresses come from relay.ini through repmgr (config checks them);
     * one that is not UTF-8 fails the whole object, never a member. */
    failed |= json_object_set_new(o, "master", json_string(st->master));
    failed |= counters_into(o, st);
    uint64_t lag;
    failed |= json_object_set_new(
        o, "lag", cluster_view_lag(st, now, &lag) ? json_integer((json_int_t)lag) : json_null());
    json_t *sites = json_array();
    for (unsigned i = 0; sites && i < st->nsites && i < CLUSTER_MAX_SITES; i++)
        failed |= json_array_append_new(sites, site_object(&st->sites[i]));
    failed |= json_object_set_new(o, "sites", sites);
    return prov_json_check(o, failed);
}

rl_err cluster_view_json(const store_cluster_status *st, uint64_t now, rl_buf *out)
{
    json_t *o = cluster_view_object(st, now);
    if (!o)
        return RL_NOMEM;
    rl_err err = prov_json_dump(o, JSON_COMPACT, out);
    json_decref(o);
    return err;
}
