/*
 * relay-admin — maintenance of a Relay store. Most commands are safe while
 * Relay runs (they open the same Berkeley DB environment as the workers);
 * recover, rekey and restore refuse to run while any process uses it.
 *
 *   relay-admin [-c relay.ini] [--json] COMMAND [ARGS]
 *
 * Commands are rows of a table (the cmd_* functions live in cmd_cache.c,
 * cmd_store.c, cmd_token.c, cmd_doctor.c, cmd_status.c and cmd_cluster.c); what is common
 * to all — open standard descriptors, the config, --json anywhere on the
 * line, --help, opening the store — is done here once.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/admin.h"
#include "store/base/rl_log.h"

static const admin_cmd commands[] = {
    {"init", "[--show-admin-token]",
     "create the key file, the store and the admin token file; harmless if they exist",
     "Creates what Relay needs before it first starts, leaving whatever exists alone:\n"
     "  - [store] key_file: the store's secret (mode 0600);\n"
     "  - the store in [store] home;\n"
     "  - [admin] token_file: the token for the admin API (mode 0600, 64 hex digits).\n"
     "It prints where they are, never a secret, unless asked:\n"
     "  --show-admin-token   also print the admin token\n"
     "Examples:\n"
     "  relay-admin init\n"
     "  relay-admin init --show-admin-token\n",
     0, cmd_init},
    {"stats", "", "entries, bytes, requests by outcome, tokens, USD, refusals and budgets",
     "Prints the store's totals and the request counters Relay keeps (all processes),\n"
     "refusals by reason, and what each Relay token and [budget] row has spent in its\n"
     "current UTC minute, day and month against its limits (\"of\"), with what requests\n"
     "under way have reserved. store.transactions and store.log_records count what\n"
     "the store's environment did (all processes) since it was created or recovered:\n"
     "a cache hit begins read transactions only and writes no log record.\n"
     "Example:\n"
     "  relay-admin --json stats\n",
     1, cmd_stats},
    {"ls", "[--limit N] [--sort newest|oldest|hits|size]", "list cache entries",
     "One line per cache entry: key (first 16 hex digits, as X-Relay-Key), upstream, model,\n"
     "size of the stored answer, age, hits and namespace ('-' for none; '?' for entries\n"
     "stored by a Relay older than labels).\n"
     "  --limit N    show at most N entries (default 100; 0: all)\n"
     "  --sort S     newest (default), oldest, hits or size first\n"
     "  --json       {\"total\": N, \"entries\": [{key (all 64 digits), upstream, model,\n"
     "               namespace, size, created, expires, age, hits}]}\n"
     "Examples:\n"
     "  relay-admin ls --sort hits --limit 20\n"
     "  relay-admin ls --json --limit 0\n",
     1, cmd_ls},
    {"show", "KEY", "print one entry: its metadata and the stored answer",
     "KEY is a hex prefix of at least 8 digits of an entry's key (relay-admin ls, or the\n"
     "X-Relay-Key response header) that only one entry has. Prints content type, kind\n"
     "(stream: the raw stream as the upstream sent it; body), size, upstream, model,\n"
     "namespace, created/expires, hits, then the stored answer.\n"
     "Exit 4 when no entry, or more than one, has that prefix.\n"
     "Examples:\n"
     "  relay-admin show 3fa94c1e\n"
     "  relay-admin --json show 3fa94c1e0b7d22aa | jq -r .body\n",
     1, cmd_show},
    {"purge", "[--all | --expired | --older-than D | --model M | --namespace N | --upstream U]",
     "remove entries: expired ones (default), all, or those matching filters",
     "Removes cache entries, in short transactions, and prints how many.\n"
     "  (nothing)          entries past their expiry\n"
     "  --all              every entry (takes no filter)\n"
     "  --expired          entries past their expiry\n"
     "  --older-than D     entries stored more than D ago (D: 90, 30s, 15m, 12h, 7d)\n"
     "  --model M          entries for model M\n"
     "  --namespace N      entries of namespace N (X-Relay-Namespace; \"\" for none)\n"
     "  --upstream U       entries from [upstream.U]\n"
     "Filters combine: an entry goes when all of them hold. Entries stored before labels\n"
     "existed match no --model, --namespace or --upstream filter.\n"
     "Examples:\n"
     "  relay-admin purge --model gpt-4o-mini\n"
     "  relay-admin purge --namespace staging --older-than 7d\n"
     "  relay-admin purge --all\n",
     1, cmd_purge},
    {"verify", "[--backup DIR]", "check every database and that every entry decodes",
     "Checks the store while Relay runs: a hot copy of the environment is made beside the\n"
     "store (it needs room for one), recovered and checked with Berkeley DB's verification\n"
     "(which must not run on files in use), then removed; and every cache entry is read\n"
     "and decoded. Prints what is wrong and exits 1 if anything is.\n"
     "  --backup DIR   verify the databases of a backup (relay-admin backup) instead\n"
     "Examples:\n"
     "  relay-admin verify\n"
     "  relay-admin verify --backup /srv/backups/relay-2026-01-31\n",
     0, cmd_verify},
    {"backup", "DIR [--with-key]", "hot backup of the store into DIR (empty or absent)",
     "Copies the store while Relay runs (Berkeley DB's hot backup: databases, then logs),\n"
     "makes the copy consistent on its own (recovery) and verifies it. DIR must be empty\n"
     "or absent. The copy is encrypted with the store's key and does NOT include the key\n"
     "file: back the key file up separately, or the backup cannot be read.\n"
     "  --with-key   also copy the key file into DIR/relay.key (mode 0600); then DIR\n"
     "               alone reads the data, so keep it as safe as the key\n"
     "Examples:\n"
     "  relay-admin backup /srv/backups/relay-$(date +%F)\n"
     "  relay-admin restore /srv/backups/relay-2026-01-31   (with Relay stopped)\n",
     1, cmd_backup},
    {"restore", "DIR", "put a backup in place of the store (refused while Relay runs)",
     "Replaces the store in [store] home with the backup in DIR (made by relay-admin\n"
     "backup; DIR is not changed). The backup must open with the configured key file,\n"
     "unless it holds its own (backup --with-key: DIR/relay.key): then that key restores\n"
     "it and becomes [store] key_file, the key it replaces kept as KEY.old. The copy is\n"
     "recovered and verified before it replaces anything.\n"
     "Refused (exit 3) while Relay or any other process has the store open.\n"
     "Example:\n"
     "  systemctl stop relay && relay-admin restore /srv/backups/relay-2026-01-31 && "
     "systemctl start relay\n",
     0, cmd_restore},
    {"compact", "", "return free pages of the databases to the file system",
     "Compacts every database (Berkeley DB's DB->compact) and gives emptied pages back to\n"
     "the file system, e.g. after a large purge. Safe while Relay runs.\n"
     "Example:\n"
     "  relay-admin purge --older-than 30d && relay-admin compact\n",
     1, cmd_compact},
    {"recover", "", "run Berkeley DB recovery (refused while Relay runs)",
     "Runs Berkeley DB's normal recovery on the store. Relay recovers by itself when a\n"
     "process died; this is for a store that will not open. Refused (exit 3) while Relay\n"
     "or any other process has the store open.\n"
     "Example:\n"
     "  systemctl stop relay && relay-admin recover && systemctl start relay\n",
     0, cmd_recover},
    {"rekey", "", "re-encrypt the store with a new key (refused while Relay runs)",
     "Makes a new secret, re-encrypts every entry and counter with it, and installs it as\n"
     "[store] key_file. The old key file is kept as KEY.old (or KEY.old.N): backups made\n"
     "before the rekey need it. Refused (exit 3) while Relay or any other process has the\n"
     "store open.\n"
     "Example:\n"
     "  systemctl stop relay && relay-admin rekey && systemctl start relay\n",
     0, cmd_rekey},
    {"doctor", "", "check the config, key and token files, store, front and upstreams",
     "Checks what Relay needs, one line per check: OK, WARN (works, but look), FAIL\n"
     "(broken: the line says the fix), SKIP (not checked, and why):\n"
     "  config     relay.ini loads, every path resolved; the store's and the socket's\n"
     "             directories writable; the key ([store] key_file or key_env) and the\n"
     "             admin token file present, private (mode 600) and usable\n"
     "  store      opens as Relay opens it (recovering if a process died), free space\n"
     "             on its file system\n"
     "  front      [fcgi] listen: the socket exists, is one, a pool answers\n"
     "             /relay/health on it, and the web server's user (www-data, caddy,\n"
     "             where it exists) may connect; or Apache mod_fcgid runs Relay\n"
     "  upstream   each [upstream.NAME]: DNS, TCP, TLS (https), and an authenticated\n"
     "             model list once Relay holds a key for it\n"
     "Run it as the user Relay runs as. Exit 0 when nothing FAILs, 1 otherwise; --json\n"
     "prints {ok, failed, warnings, checks: [{check, status, detail, fix}]}.\n"
     "Examples:\n"
     "  relay-admin doctor\n"
     "  sudo -u relay relay-admin -c /etc/relay/relay.ini --json doctor\n",
     ADMIN_NO_CONFIG, cmd_doctor},
    {"status", "", "the running pool: pid, version, uptime, workers, requests in flight",
     "Shows Relay's pool as it describes itself once a second in [fcgi] status_file: the\n"
     "supervisor's pid, its version (and this relay-admin's, when they differ: restart\n"
     "the pool to run a new binary), how long it has run, its workers and how many\n"
     "requests each is serving (workers of an older configuration still finishing after\n"
     "a reload are shown as draining). Exit 1 when no pool runs: under mod_fcgid there\n"
     "is none (Apache starts relay.fcgi processes itself).\n"
     "  --json   {running, pid, version, admin_version, started, uptime, updated, listen,\n"
     "           workers_configured, threads, requests_in_flight, workers: [{pid,\n"
     "           requests, draining}]}, or {running: false, reason}\n"
     "Example:\n"
     "  relay-admin status\n",
     0, cmd_status},
    {"cluster", "status", "the replication group ([cluster]): role, master, lag, sites",
     "Shows the group of Relay hosts sharing tokens and budgets ([cluster]) as this host\n"
     "sees it, from the shared store that the pool's cluster process keeps:\n"
     "  role           master, replica, or none (no master known: an election is under\n"
     "                 way, or this host is cut off; reservations are refused after\n"
     "                 [cluster] partition_grace)\n"
     "  master         its address; master since: when it took over (UTC)\n"
     "  last beat      the master's last heartbeat this host has, and how long ago (the\n"
     "                 master writes one a second: the lag is how far this copy is behind)\n"
     "  elections      held since this host's shared store was opened (all its processes)\n"
     "  forwarded      writes this command sent to the master (0: it sends none; each\n"
     "                 worker's /relay/metrics counts its own), and refused for want of one\n"
     "  perm failed    commits this host, as master, could not get acknowledged under\n"
     "                 [cluster] ack_policy (all its processes)\n"
     "then one line per site: its address, self, master, connected or disconnected.\n"
     "Exit 2 when relay.ini has no [cluster] site, 1 when the shared store cannot be read.\n"
     "  --json   {role, master, master_since, beat, lag (null: no beat yet), elections,\n"
     "           forwarded, forward_failed, perm_failed, sites: [{addr, self, master,\n"
     "           connected}]}, as the stats API's \"cluster\" member\n"
     "Example:\n"
     "  relay-admin cluster status\n",
     0, cmd_cluster},
    {"token", "create|list|show|update|revoke|rotate [TOKEN] [OPTIONS]",
     "Relay client tokens: create, list, show, update, revoke, rotate",
     "Relay client tokens: what a client presents instead of a provider key (Bearer,\n"
     "x-api-key, x-goog-api-key, api-key or ?key=). Relay keeps only a hash of each.\n"
     "  create --name NAME [FIELDS]   make a token; its text (rly-...) is printed once on\n"
     "                                stdout, even to a pipe (--json: as \"token\"), and\n"
     "                                never again: store it now\n"
     "  list                          every token: id, name, state (live, expired,\n"
     "                                revoked), upstreams and models (* all), budgets,\n"
     "                                limits, created and expires (UTC); never a text\n"
     "  show TOKEN                    one token\n"
     "  update TOKEN FIELDS           change fields (a revoked token cannot be changed)\n"
     "  revoke TOKEN                  refuse the token from now on (a text still in its\n"
     "                                --grace period too)\n"
     "  rotate TOKEN [--grace D]      a new text, printed once; the id, budgets and spend\n"
     "                                stay; the old text stops now, or after D\n"
     "TOKEN is a token's id (8 hex digits) or its name (an id first).\n"
     "FIELDS (--opt V or --opt=V):\n"
     "  --name NAME                1-64 printable ASCII characters, unique among tokens\n"
     "                             not revoked\n"
     "  --upstreams a,b            [upstream.NAME]s it may reach (\"\": all, the default)\n"
     "  --models PATTERN,...       models it may ask for, as shell patterns: gpt-4o*\n"
     "                             (\"\": all, the default)\n"
     "  --budget-usd-day X         USD a UTC day, exact to 9 decimals: 5, 0.10\n"
     "  --budget-usd-month Y       USD a UTC month\n"
     "  --budget-tokens-day Z      tokens (input and output) a UTC day\n"
     "  --rpm N, --tpm N           requests, tokens a minute\n"
     "  --expires D                a duration (30s, 15m, 12h, 7d), a UTC date (2026-12-31,\n"
     "                             from its midnight), 2026-12-31T18:00:00Z, or @UNIXTIME\n"
     "A budget or limit of \"none\" (expires: \"never\") removes it; 0 is refused.\n"
     "Exit 2 for a refused value, 4 when no token has that id or name, 1 when the\n"
     "name is taken or the token is revoked (said on stderr).\n"
     "  --json   create, rotate: {token, id, name, ...}; list: {tokens: [...], damaged};\n"
     "           show, update, revoke: {id, name, state, upstreams, models,\n"
     "           budget_usd_day, budget_usd_month (decimal strings), budget_tokens_day,\n"
     "           rpm, tpm, created, expires, revoked, grace_until (null: none)}\n"
     "Examples:\n"
     "  relay-admin token create --name ci --models 'gpt-4o*' --budget-usd-day 2 --rpm 60\n"
     "  TOKEN=$(relay-admin token create --name agent --expires 30d)\n"
     "  relay-admin token update ci --budget-usd-day none --budget-usd-month 40\n"
     "  relay-admin token rotate ci --grace 1h\n"
     "  relay-admin token revoke 3fa94c1e\n",
     ADMIN_TOKENS, cmd_token},
    {"config", "SECTION.KEY", "print a configuration value as Relay resolves it",
     "Example:\n"
     "  relay-admin config store.home\n",
     0, cmd_config},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: relay-admin [-c relay.ini] [--json] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nrelay-admin COMMAND --help tells more. The config defaults to $RELAY_INI, else\n"
               "./relay.ini. --json (anywhere) prints JSON where a command prints data.\n"
               "All commands are safe while Relay runs, except recover, rekey and restore,\n"
               "which refuse to run then. Run relay-admin as the user Relay runs as.\n"
               "\nexit codes:\n"
               "  0  success\n"
               "  1  failure (said on stderr), verify found a problem, or doctor a FAIL\n"
               "  2  usage error\n"
               "  3  refused: Relay processes are using the store (recover, rekey, restore)\n"
               "  4  not found: no entry, or more than one, has that key prefix (show);\n"
               "     no token has that id or name (token)\n");
}

/* Opens /dev/null on each of stdin, stdout and stderr that is closed.
 * Otherwise the first file relay-admin opens takes the descriptor: with
 * stdout closed (`relay-admin ... >&-`) that was the store's __db.register,
 * and the output (a new token's text among it) was written into it. */
static void std_fds_open(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
            _exit(EXIT_FAIL); /* no /dev/null: better nothing than output into a store file */
}

int main(int argc, char **argv)
{
    std_fds_open();
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
    /* The command's own arguments, less --json (accepted after the command
     * too) and with --help answered here. */
    int cargc = 0;
    char **cargv = calloc((size_t)(argc - optind + 1), sizeof *cargv);
    if (!cargv)
        return EXIT_FAIL;
    for (int i = optind; i < argc; i++) {
        if (i > optind && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
            printf("usage: relay-admin %s %s\n  %s\n\n%s", cmd->name, cmd->args, cmd->summary,
                   cmd->help);
            free(cargv);
            return EXIT_OK;
        }
        if (i > optind && strcmp(argv[i], "--json") == 0)
            ctx.json = 1;
        else
            cargv[cargc++] = argv[i];
    }

    if (!config_path)
        config_path = "relay.ini";
    int rc = EXIT_FAIL;
    store *s = NULL;
    rl_buf why;
    rl_buf_init(&why, 4096);
    ctx.config_path = config_path;
    if (config_load(config_path, &ctx.cfg, &why) != RL_OK) {
        ctx.config_error = why.data ? why.data : config_path;
        if (!(cmd->flags & ADMIN_NO_CONFIG)) {
            fprintf(stderr, "relay-admin: %s\n", ctx.config_error);
            goto out;
        }
    }
    rl_log_set_level(RL_LOG_WARN);

    if ((cmd->flags & ADMIN_STORE) && admin_open_store(&ctx, &s) != EXIT_OK)
        goto out;
    if ((cmd->flags & ADMIN_TOKENS) && admin_open_shared(&ctx, &s) != EXIT_OK)
        goto out;
    rc = cmd->run(&ctx, s, cargc, cargv);
out:
    rl_buf_release(&why);
    store_close(s);
    config_free(ctx.cfg);
    free(cargv);
    return rc;
}
