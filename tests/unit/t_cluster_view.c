/*
 * t_cluster_view.c — the replication group's status as Relay shows it
 * (engine/cluster_view.c), from a filled store_cluster_status: the JSON
 * object relay-admin cluster status --json and the stats API print, member
 * for member (an e2e test and the dashboard read these names); lag null
 * before the first beat and never a wrap-around when the beat is ahead of
 * this host's clock; the health problem only without a master; and the
 * relay_cluster_* families of the metrics page (engine/metrics.c), present
 * with a status and absent without one.
 */
#include <stdio.h>
#include <string.h>

#include "engine/cluster_view.h"
#include "engine/observe_int.h"
#include "tests/unit/tap.h"

#define NOW 1769860800u

static store_cluster_status replica(void)
{
    store_cluster_status st;
    memset(&st, 0, sizeof st);
    st.role = CLUSTER_ROLE_REPLICA;
    snprintf(st.master, sizeof st.master, "10.0.0.1:7100");
    st.master_since = NOW - 600;
    st.beat = NOW - 2;
    st.elections = 3;
    st.forwarded = 40;
    st.forward_failed = 1;
    st.perm_failed = 2;
    st.nsites = 3;
    st.sites[0] = (cluster_site_status){"10.0.0.1:7100", 0, 1, 1};
    st.sites[1] = (cluster_site_status){"10.0.0.2:7100", 1, 0, 1};
    st.sites[2] = (cluster_site_status){"[fd00::3]:7100", 0, 0, 0};
    return st;
}

static void json_is(const store_cluster_status *st, uint64_t now, const char *want,
                    const char *what)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    is_int(cluster_view_json(st, now, &out), RL_OK, what);
    is_str(out.data, want, what);
    rl_buf_release(&out);
}

static void test_json(void)
{
    store_cluster_status st = replica();
    json_is(&st, NOW,
            "{\"role\":\"replica\",\"master\":\"10.0.0.1:7100\",\"master_since\":1769860200,"
            "\"beat\":1769860798,\"elections\":3,\"forwarded\":40,\"forward_failed\":1,"
            "\"perm_failed\":2,\"lag\":2,\"sites\":["
            "{\"addr\":\"10.0.0.1:7100\",\"self\":false,\"master\":true,\"connected\":true},"
            "{\"addr\":\"10.0.0.2:7100\",\"self\":true,\"master\":false,\"connected\":true},"
            "{\"addr\":\"[fd00::3]:7100\",\"self\":false,\"master\":false,\"connected\":false}]}",
            "a replica: every member, every site");

    store_cluster_status none;
    memset(&none, 0, sizeof none);
    none.nsites = 1;
    none.sites[0] = (cluster_site_status){"10.0.0.2:7100", 1, 0, 1};
    json_is(&none, NOW,
            "{\"role\":\"none\",\"master\":\"\",\"master_since\":0,\"beat\":0,\"elections\":0,"
            "\"forwarded\":0,\"forward_failed\":0,\"perm_failed\":0,\"lag\":null,\"sites\":["
            "{\"addr\":\"10.0.0.2:7100\",\"self\":true,\"master\":false,\"connected\":true}]}",
            "no master, no beat yet: master \"\", lag null");

    rl_buf tiny;
    rl_buf_init(&tiny, 16);
    ok(cluster_view_json(&st, NOW, &tiny) != RL_OK, "a buffer too small is an error, not a cut");
    rl_buf_release(&tiny);
}

static void test_lag_and_problem(void)
{
    store_cluster_status st = replica();
    uint64_t lag = 99;
    is_int(cluster_view_lag(&st, NOW, &lag), 1, "a beat: lag known");
    is_int(lag, 2, "lag = now - beat");
    st.beat = NOW + 5;
    cluster_view_lag(&st, NOW, &lag);
    is_int(lag, 0, "a beat ahead of this clock: lag 0, not a wrap-around");
    st.beat = 0;
    is_int(cluster_view_lag(&st, NOW, &lag), 0, "no beat: lag unknown");

    st = replica();
    is_int(cluster_view_connected(&st), 2, "connected sites, self included");
    ok(cluster_view_problem(&st) == NULL, "a replica with a master: no problem");
    st.role = CLUSTER_ROLE_MASTER;
    ok(cluster_view_problem(&st) == NULL, "the master: no problem");
    st.role = CLUSTER_ROLE_NONE;
    is_str(cluster_view_problem(&st), "no master", "no master known: degraded");
}

static void test_metrics(void)
{
    static relay_config cfg;
    observe_rows rs = {0};
    store_cluster_status st = replica();
    rl_buf page;
    is_int(metrics_page(&cfg, &rs, NULL, NULL, &st, NULL, NOW, METRICS_MAX_BYTES, &page), RL_OK,
           "a page with the cluster's families");
    const char *p = page.data ? page.data : "";
    static const char *const want[] = {
        "# TYPE relay_cluster_role gauge\n",
        "relay_cluster_role{role=\"master\"} 0\n",
        "relay_cluster_role{role=\"replica\"} 1\n",
        "relay_cluster_role{role=\"none\"} 0\n",
        "# HELP relay_cluster_master_lag_seconds ",
        "relay_cluster_master_lag_seconds 2\n",
        "relay_cluster_sites_connected 2\n",
        "# TYPE relay_cluster_forwarded_total counter\n",
        "relay_cluster_forwarded_total 40\n",
        "relay_cluster_forward_failed_total 1\n",
        "relay_cluster_perm_failed_total 2\n",
        "relay_cluster_elections_total 3\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char what[128];
        snprintf(what, sizeof what, "%.*s", (int)strcspn(want[i], "\n"), want[i]);
        if (!ok(strstr(p, want[i]) != NULL, what))
            printf("#   page:\n%s\n", p);
    }
    rl_buf_release(&page);

    st.beat = 0;
    is_int(metrics_page(&cfg, &rs, NULL, NULL, &st, NULL, NOW, METRICS_MAX_BYTES, &page), RL_OK,
           "a page before the first beat");
    ok(page.data && strstr(page.data, "# TYPE relay_cluster_master_lag_seconds gauge\n") &&
           !strstr(page.data, "relay_cluster_master_lag_seconds 0"),
       "no lag sample before the first beat (0 would read as in step)");
    rl_buf_release(&page);

    is_int(metrics_page(&cfg, &rs, NULL, NULL, NULL, NULL, NOW, METRICS_MAX_BYTES, &page), RL_OK,
           "a page without [cluster]");
    ok(page.data && !strstr(page.data, "relay_cluster_"), "no cluster family without [cluster]");
    rl_buf_release(&page);
}

int main(void)
{
    test_json();
    test_lag_and_problem();
    test_metrics();
    return tap_done();
}
