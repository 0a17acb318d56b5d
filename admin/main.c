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

/* Counters the engine keeps, in the order stats shows them. */
static const char *const counter_names[] = {
    "requests.hit",
    "requests.stale",
    "requests.miss",
    "requests.bypass",
    "requests.only_if_cached_miss",
    "upstream.calls",
};

static int cmd_init(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    (void)argc;
    (void)argv;
    const relay_config *cfg = ctx->cfg;
    if (store_keyfile_ensure(cfg->store.key_file) != RL_OK)
        return EXIT_FAIL;
    store_options so;
    config_store_options(cfg, &so);
    store *opened = NULL;
    if (store_open(&so, &opened) != RL_OK)
        return EXIT_FAIL;
    store_close(opened);
    if (ctx->json)
        printf("{\"store\":\"%s\",\"key_file\":\"%s\"}\n", cfg->store.home, cfg->store.key_file);
    else
        printf("store ready: %s (key file %s)\n", cfg->store.home, cfg->store.key_file);
    return EXIT_OK;
}

static int cmd_stats(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    store_stats st;
    if (store_stats_get(s, &st) != RL_OK)
        return EXIT_FAIL;
    uint64_t values[sizeof counter_names / sizeof counter_names[0]];
    for (size_t i = 0; i < sizeof counter_names / sizeof counter_names[0]; i++)
        if (store_counter_get(s, counter_names[i], &values[i]) != RL_OK)
            values[i] = 0;
    if (ctx->json) {
        printf("{\"entries\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"evictions\":%" PRIu64
               ",\"expired_removed\":%" PRIu64,
               st.entries, st.bytes, st.evictions, st.expired_removed);
        for (size_t i = 0; i < sizeof counter_names / sizeof counter_names[0]; i++)
            printf(",\"%s\":%" PRIu64, counter_names[i], values[i]);
        printf("}\n");
    } else {
        printf("entries          %" PRIu64 "\n", st.entries);
        printf("bytes            %" PRIu64 "\n", st.bytes);
        printf("evictions        %" PRIu64 "\n", st.evictions);
        printf("expired removed  %" PRIu64 "\n", st.expired_removed);
        for (size_t i = 0; i < sizeof counter_names / sizeof counter_names[0]; i++)
            printf("%-16s %" PRIu64 "\n", counter_names[i], values[i]);
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
    {"stats", "", "entries, bytes, evictions and request counters", 1, cmd_stats},
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
