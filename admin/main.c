/*
 * relay-admin — maintenance of a Relay store, safe while Relay runs (it
 * opens the same Berkeley DB environment as the workers).
 *
 *   relay-admin [-c relay.ini] [--json] COMMAND [ARGS]
 *
 * Commands are rows of a table; options common to all (config, --json,
 * --help) are handled once before the command runs. Exit codes: 0 success,
 * 1 failure, 2 usage error.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/config.h"
#include "engine/stats.h"
#include "store/base/rl_log.h"
#include "store/store.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct admin_ctx {
    relay_config *cfg;
    int json;
} admin_ctx;

typedef struct admin_cmd {
    const char *name;
    const char *args;
    const char *help;
    int needs_store;
    int (*run)(admin_ctx *ctx, store *s, int argc, char **argv);
} admin_cmd;

static int cmd_init(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    (void)argc;
    (void)argv;
    const relay_config *cfg = ctx->cfg;
    if (store_keyfile_ensure(cfg->store.key_file) != RL_OK)
        return EXIT_FAIL;
    /* The admin token is a secret of the same kind (32 random bytes, hex,
     * mode 0600, never overwritten). */
    if (store_keyfile_ensure(cfg->admin.token_file) != RL_OK)
        return EXIT_FAIL;
    store_options so;
    config_store_options(cfg, &so);
    store *opened = NULL;
    if (store_open(&so, &opened) != RL_OK)
        return EXIT_FAIL;
    store_close(opened);
    if (ctx->json)
        printf("{\"store\":\"%s\",\"key_file\":\"%s\",\"admin_token_file\":\"%s\"}\n",
               cfg->store.home, cfg->store.key_file, cfg->admin.token_file);
    else
        printf("store ready: %s (key file %s; admin token in %s)\n", cfg->store.home,
               cfg->store.key_file, cfg->admin.token_file);
    return EXIT_OK;
}

/* What relay-admin stats adds up from the shared counters (stats.h). */
typedef struct stats_sums {
    uint64_t usage[STATS_COUNTERS]; /* MODEL rows: requests, outcomes, tokens, money */
    uint64_t calls;                 /* UPSTREAM rows */
} stats_sums;

static int sum_row(void *ctx, const stats_row *row)
{
    stats_sums *t = ctx;
    if (row->kind == STATS_ROW_MODEL)
        for (int c = 0; c < STATS_COUNTERS; c++)
            t->usage[c] += row->c[c];
    else if (row->kind == STATS_ROW_UPSTREAM)
        t->calls += row->c[C_UP_CALLS];
    return 0;
}

static int cmd_stats(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    store_stats st;
    if (store_stats_get(s, &st) != RL_OK)
        return EXIT_FAIL;
    stats_sums t = {{0}, 0};
    stats *counters = NULL;
    if (stats_open(ctx->cfg->store.home, &counters) != RL_OK)
        return EXIT_FAIL;
    stats_each_row(counters, sum_row, &t);
    stats_close(counters);
    static const struct {
        const char *name;
        int counter; /* into usage; -1: upstream calls */
    } rows[] = {
        {"requests", C_REQUESTS},
        {"requests.hit", C_HIT},
        {"requests.stale", C_STALE},
        {"requests.miss", C_MISS},
        {"requests.coalesced", C_COALESCED},
        {"requests.bypass", C_BYPASS},
        {"requests.errors", C_ERRORS},
        {"requests.unpriced", C_UNPRICED},
        {"upstream.calls", -1},
        {"tokens.input", C_TOKENS_IN},
        {"tokens.output", C_TOKENS_OUT},
        {"tokens.cached_input", C_TOKENS_CACHED_IN},
        {"tokens.saved_input", C_SAVED_IN},
        {"tokens.saved_output", C_SAVED_OUT},
    };
    double spent = (double)t.usage[C_NUSD_SPENT] / 1e9, saved = (double)t.usage[C_NUSD_SAVED] / 1e9;
    if (ctx->json) {
        printf("{\"entries\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"evictions\":%" PRIu64
               ",\"expired_removed\":%" PRIu64,
               st.entries, st.bytes, st.evictions, st.expired_removed);
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            printf(",\"%s\":%" PRIu64, rows[i].name,
                   rows[i].counter < 0 ? t.calls : t.usage[rows[i].counter]);
        printf(",\"usd.spent\":%.9g,\"usd.saved\":%.9g}\n", spent, saved);
    } else {
        printf("%-20s %" PRIu64 "\n", "entries", st.entries);
        printf("%-20s %" PRIu64 "\n", "bytes", st.bytes);
        printf("%-20s %" PRIu64 "\n", "evictions", st.evictions);
        printf("%-20s %" PRIu64 "\n", "expired removed", st.expired_removed);
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            printf("%-20s %" PRIu64 "\n", rows[i].name,
                   rows[i].counter < 0 ? t.calls : t.usage[rows[i].counter]);
        printf("%-20s %.6f\n%-20s %.6f\n", "usd.spent", spent, "usd.saved", saved);
    }
    return EXIT_OK;
}

static int cmd_purge(admin_ctx *ctx, store *s, int argc, char **argv)
{
    int all = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else if (strcmp(argv[i], "--expired") == 0)
            all = 0;
        else {
            fprintf(stderr, "relay-admin purge: unknown option %s (use --all or --expired)\n",
                    argv[i]);
            return EXIT_USAGE;
        }
    }
    uint64_t removed = 0;
    rl_err err = all ? store_cache_purge_all(s, &removed)
                     : store_cache_purge_expired(s, (uint64_t)time(NULL), 0, &removed);
    if (err != RL_OK)
        return EXIT_FAIL;
    if (ctx->json)
        printf("{\"removed\":%" PRIu64 "}\n", removed);
    else
        printf("removed %" PRIu64 " %s\n", removed, all ? "entries" : "expired entries");
    return EXIT_OK;
}

static int cmd_config(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    if (argc != 2) {
        fprintf(stderr, "relay-admin config: expected one SECTION.KEY, e.g. fcgi.listen\n");
        return EXIT_USAGE;
    }
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err err = config_get_text(ctx->cfg, argv[1], &out);
    if (err == RL_OK)
        printf("%s\n", out.data ? out.data : "");
    else
        fprintf(stderr, "relay-admin config: no key %s\n", argv[1]);
    rl_buf_release(&out);
    return err == RL_OK ? EXIT_OK : EXIT_FAIL;
}

static const admin_cmd commands[] = {
    {"init", "", "create the key file (mode 0600) and the store; harmless if they exist", 0,
     cmd_init},
    {"stats", "", "entries, bytes, requests by outcome, tokens and USD (all processes)", 1,
     cmd_stats},
    {"purge", "[--expired | --all]", "remove expired entries (default) or every entry", 1,
     cmd_purge},
    {"config", "SECTION.KEY", "print a configuration value as Relay resolves it", 0, cmd_config},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: relay-admin [-c relay.ini] [--json] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %-22s %s\n", commands[i].name, commands[i].args, commands[i].help);
    fprintf(f, "\nThe config defaults to $RELAY_INI, else ./relay.ini. Exit codes: 0 ok, 1 "
               "failure, 2 usage.\n");
}

int main(int argc, char **argv)
{
    const char *config_path = getenv("RELAY_INI");
    admin_ctx ctx = {0};
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    /* "+": options after the command name belong to the command. */
    while ((opt = getopt_long(argc, argv, "+c:jh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'j':
            ctx.json = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const admin_cmd *cmd = NULL;
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[optind], commands[i].name) == 0)
            cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "relay-admin: unknown command %s\n\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    for (int i = optind + 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: relay-admin %s %s\n  %s\n", cmd->name, cmd->args, cmd->help);
            return EXIT_OK;
        }

    if (!config_path)
        config_path = "relay.ini";
    rl_buf why;
    rl_buf_init(&why, 4096);
    if (config_load(config_path, &ctx.cfg, &why) != RL_OK) {
        fprintf(stderr, "relay-admin: %s\n", why.data ? why.data : config_path);
        rl_buf_release(&why);
        return EXIT_FAIL;
    }
    rl_buf_release(&why);
    rl_log_set_level(RL_LOG_WARN);

    store *s = NULL;
    int rc = EXIT_FAIL;
    if (cmd->needs_store) {
        store_options so;
        config_store_options(ctx.cfg, &so);
        if (store_open(&so, &s) != RL_OK) {
            fprintf(stderr,
                    "relay-admin: cannot open the store at %s (run `relay-admin init` "
                    "first?)\n",
                    ctx.cfg->store.home);
            goto out;
        }
    }
    rc = cmd->run(&ctx, s, argc - optind, argv + optind);
out:
    store_close(s);
    config_free(ctx.cfg);
    return rc;
}
