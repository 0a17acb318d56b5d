/*
 * cmd_cluster.c — relay-admin cluster status: the replication group
 * ([cluster], store/cluster.h) as this host sees it: its role, the master,
 * the master's last beat and the lag behind it, elections, writes forwarded
 * to the master, and every site with whether this host's listener reaches
 * it.
 *
 * It opens the shared store as a subordinate (listener 0), as the workers
 * do: it reads the replicated copy and repmgr's view from the environment
 * that the pool's cluster process runs, and joins no group itself. The
 * --json object is cluster_view.h's, the same as the stats API's
 * "cluster" member.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "engine/cluster_host.h"
#include "engine/cluster_view.h"

static void print_json(const store_cluster_status *st, uint64_t now)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    if (cluster_view_json(st, now, &out) == RL_OK)
        printf("%.*s\n", (int)out.len, out.data);
    else
        fprintf(stderr, "relay-admin cluster status: out of memory\n");
    rl_buf_release(&out);
}

/* A time as "2026-01-31T12:00:00Z (1769860800)", or "none yet" for 0. */
static void when(uint64_t t, char *out, size_t cap)
{
    if (t)
        admin_format_time(t, out, cap);
    else
        snprintf(out, cap, "none yet");
}

static void print_text(const store_cluster_status *st, uint64_t now)
{
    char since[96], beat[96];
    when(st->master_since, since, sizeof since);
    when(st->beat, beat, sizeof beat);
    uint64_t lag;
    int beaten = cluster_view_lag(st, now, &lag);
    printf("role            %s\n", cluster_role_name(st->role));
    printf("master          %s\n", st->master[0] ? st->master : "none known");
    printf("master since    %s\n", since);
    if (beaten)
        printf("last beat       %s, %" PRIu64 " s ago\n", beat, lag);
    else
        printf("last beat       %s\n", beat);
    printf("elections       %" PRIu64 " held since this host's shared store was opened\n",
           st->elections);
    printf("forwarded       %" PRIu64 " writes to the master by this command, %" PRIu64
           " refused for want of one\n",
           st->forwarded, st->forward_failed);
    printf("perm failed     %" PRIu64 " commits the master could not get acknowledged\n",
           st->perm_failed);
    printf("sites           %u, %u connected\n", st->nsites, cluster_view_connected(st));
    for (unsigned i = 0; i < st->nsites && i < CLUSTER_MAX_SITES; i++) {
        const cluster_site_status *site = &st->sites[i];
        printf("  %-28s %-6s %-6s %s\n", site->addr, site->self ? "self" : "",
               site->master ? "master" : "", site->connected ? "connected" : "disconnected");
    }
    const char *problem = cluster_view_problem(st);
    if (problem)
        printf("note            %s: reservations and token writes are refused once [cluster] "
               "partition_grace has passed\n",
               problem);
}

int cmd_cluster(admin_ctx *ctx, store *unused, int argc, char **argv)
{
    (void)unused;
    if (argc != 2 || strcmp(argv[1], "status") != 0) {
        fprintf(stderr, "relay-admin cluster: usage: relay-admin cluster status [--json]\n");
        return EXIT_USAGE;
    }
    const relay_config *cfg = ctx->cfg;
    if (!cfg->cluster.site[0]) {
        fprintf(stderr,
                "relay-admin cluster status: %s has no [cluster] site: this host is not "
                "part of a replication group\n",
                ctx->config_path);
        return EXIT_USAGE;
    }
    store *s = NULL;
    rl_err err = cluster_host_store_open(cfg, 0, &s);
    if (err != RL_OK) {
        fprintf(stderr,
                "relay-admin cluster status: cannot open the shared store at %s: %s (has the "
                "pool run on this host yet?)\n",
                cfg->cluster.home, rl_err_text(err));
        return EXIT_FAIL;
    }
    uint64_t now = (uint64_t)time(NULL);
    store_cluster_status st;
    err = store_cluster_status_get(s, now, &st);
    store_close(s);
    if (err != RL_OK) {
        fprintf(stderr, "relay-admin cluster status: cannot read the group's status: %s\n",
                rl_err_text(err));
        return EXIT_FAIL;
    }
    if (ctx->json)
        print_json(&st, now);
    else
        print_text(&st, now);
    return EXIT_OK;
}
