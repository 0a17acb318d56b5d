/*
 * cmd_store.c — relay-admin's commands about the store as a whole: init,
 * stats, backup, restore, compact, recover, rekey, and config.
 *
 * recover, rekey and restore need the store to themselves: they take
 * store_lock_exclusive (see store.h for how it tells that Relay processes
 * use the store) and exit EXIT_REFUSED when it is in use. The others open
 * the store as Relay does and are safe while it runs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "engine/budgets.h"
#include "engine/cluster_host.h"
#include "engine/stats.h"
#include "store/secret.h"

int admin_open_store(const admin_ctx *ctx, store **out)
{
    store_options so;
    config_store_options(ctx->cfg, &so);
    if (store_open(&so, out) != RL_OK) {
        fprintf(stderr,
                "relay-admin: cannot open the store at %s (run `relay-admin init` first?)\n",
                ctx->cfg->store.home);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

int admin_open_shared(const admin_ctx *ctx, store **out)
{
    if (!ctx->cfg->cluster.site[0])
        return admin_open_store(ctx, out);
    if (cluster_host_store_open(ctx->cfg, 0, out) != RL_OK) {
        fprintf(stderr, "relay-admin: cannot open the shared store at %s ([cluster] home)\n",
                ctx->cfg->cluster.home);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

/* Fails with a usage error on any argument (for commands that take none). */
static int no_args(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "relay-admin %s: unexpected argument %s\n", argv[0], argv[1]);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* The admin token: 32 random bytes from getrandom(2) as 64 hex digits. */
#define ADMIN_TOKEN_BYTES 32

int cmd_init(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    int show_token = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--show-admin-token") == 0)
            show_token = 1;
        else {
            fprintf(stderr, "relay-admin init: unexpected argument %s\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    const relay_config *cfg = ctx->cfg;
    store_options so;
    config_store_options(cfg, &so);
    if (store_key_ensure(&so) != RL_OK)
        return EXIT_FAIL;
    store *opened = NULL;
    if (admin_open_store(ctx, &opened) != EXIT_OK)
        return EXIT_FAIL;
    store_close(opened);
    /* Never overwrites an existing token file (RL_BUSY). */
    const char *token_file = cfg->admin.token_file;
    int rc = EXIT_FAIL;
    secret token = {0};
    rl_buf why;
    rl_buf_init(&why, 1024);
    rl_err e = secret_create_random(token_file, ADMIN_TOKEN_BYTES, SECRET_MKDIRS, &why);
    int created = e == RL_OK;
    if (e != RL_OK && e != RL_BUSY) {
        fprintf(stderr, "relay-admin init: the admin token file: %s\n", why.data ? why.data : "");
        goto out;
    }
    if (show_token && secret_read(token_file, &token, &why) != RL_OK) {
        fprintf(stderr, "relay-admin init: the admin token file: %s\n", why.data ? why.data : "");
        goto out;
    }
    if (ctx->json) {
        printf("{\"store\":");
        admin_json_cstr(stdout, cfg->store.home);
        printf(",\"key_file\":");
        if (*cfg->store.key_env)
            printf("null,\"key_env\":");
        admin_json_cstr(stdout, *cfg->store.key_env ? cfg->store.key_env : cfg->store.key_file);
        printf(",\"admin_token_file\":");
        admin_json_cstr(stdout, token_file);
        printf(",\"admin_token_created\":%s", created ? "true" : "false");
        if (show_token) {
            printf(",\"admin_token\":");
            admin_json_str(stdout, token.data, token.len);
        }
        printf("}\n");
    } else {
        if (*cfg->store.key_env)
            printf("store ready: %s (key from $%s)\n", cfg->store.home, cfg->store.key_env);
        else
            printf("store ready: %s (key file %s)\n", cfg->store.home, cfg->store.key_file);
        printf("admin token: %s (%s)\n", token_file, created ? "created" : "kept");
        if (show_token)
            printf("%s\n", token.data);
    }
    rc = EXIT_OK;
out:
    secret_release(&token);
    rl_buf_release(&why);
    return rc;
}

/* What relay-admin stats adds up from the shared counters (engine/stats.h). */
typedef struct stats_sums {
    uint64_t usage[STATS_COUNTERS]; /* MODEL rows: requests, outcomes, tokens, money, refusals */
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

/* One counter: a "name value" line, or a member of the JSON object being
 * printed (after its first). */
static void put_count(const admin_ctx *ctx, const char *name, uint64_t v)
{
    if (ctx->json)
        printf(",\"%s\":%" PRIu64, name, v);
    else
        printf("%-28s %" PRIu64 "\n", name, v);
}

/* The store's totals and the counters, as "name value" lines or the members
 * of one JSON object (left open for what follows). */
static void print_counters(const admin_ctx *ctx, const store_stats *st, const store_activity *act,
                           const stats_sums *t)
{
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
    double spent = (double)t->usage[C_NUSD_SPENT] / 1e9;
    double saved = (double)t->usage[C_NUSD_SAVED] / 1e9;
    uint64_t rejected = 0;
    for (int i = 0; i < STATS_REJECTIONS; i++)
        rejected += t->usage[C_REJECTED + i];
    if (ctx->json)
        printf("{\"entries\":%" PRIu64, st->entries);
    else
        put_count(ctx, "entries", st->entries);
    put_count(ctx, "bytes", st->bytes);
    put_count(ctx, "evictions", st->evictions);
    put_count(ctx, ctx->json ? "expired_removed" : "expired removed", st->expired_removed);
    /* Whole-environment counts, so that a benchmark can show a hit writes
     * nothing (tests/bench/hit_instructions.mjs). */
    put_count(ctx, "store.transactions", act->transactions);
    put_count(ctx, "store.log_records", act->log_records);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        put_count(ctx, rows[i].name, rows[i].counter < 0 ? t->calls : t->usage[rows[i].counter]);
    if (ctx->json)
        printf(",\"usd.spent\":%.9g,\"usd.saved\":%.9g", spent, saved);
    else
        printf("%-28s %.6f\n%-28s %.6f\n", "usd.spent", spent, "usd.saved", saved);
    put_count(ctx, "rejected", rejected);
    char name[64];
    for (int i = 0; i < STATS_REJECTIONS; i++) {
        snprintf(name, sizeof name, "rejected.%s", stats_rejection_reasons[i]);
        put_count(ctx, name, t->usage[C_REJECTED + i]);
    }
}

/* ---- budgets ------------------------------------------------------------ */

/* {"limit": L|null, "spent": S, "reserved": R, "remaining": L-S-R|null},
 * USD as dollars. */
static void json_amount(const budget_amount *a, ledger_unit u)
{
    double scale = u == LEDGER_USD ? 1e9 : 1;
    printf("{\"limit\":");
    if (a->limit)
        printf("%.9g", (double)a->limit / scale);
    else
        printf("null");
    printf(",\"spent\":%.9g,\"reserved\":%.9g,\"remaining\":", (double)a->spent / scale,
           (double)a->reserved / scale);
    if (a->limit)
        printf("%.9g}", (double)budget_remaining(a) / scale);
    else
        printf("null}");
}

static void json_status(const budget_status *st)
{
    printf("{");
    if (st->kind == BUDGETS_TOKEN) {
        printf("\"id\":\"%s\",\"name\":", st->id);
        admin_json_cstr(stdout, st->name);
        printf(",\"state\":\"%s\",\"expires\":", store_token_state_name(st->state));
        if (st->expires)
            printf("%" PRIu64, st->expires);
        else
            printf("null");
    } else {
        printf("\"scope\":\"%s\",\"name\":", budgets_kind_name(st->kind));
        admin_json_cstr(stdout, st->name);
    }
    for (int w = LEDGER_MINUTE; w <= LEDGER_MONTH; w++) {
        const budget_period *p = &st->period[w];
        if (!p->charged)
            continue;
        printf(",\"%s\":{\"start\":%" PRIu64 ",\"resets\":%" PRIu64,
               ledger_window_name((ledger_window)w), p->start, p->end);
        for (int u = 0; u < LEDGER_UNITS; u++) {
            printf(",\"%s\":", ledger_unit_name((ledger_unit)u));
            json_amount(&p->amount[u], (ledger_unit)u);
        }
        printf("}");
    }
    printf("%s}", st->unreadable ? ",\"unreadable\":true" : "");
}

/* "$1.20 of $5.00", "1,200 tokens", "3 of 60 requests"; "(+R reserved)"
 * for requests under way. */
static void text_amount(const budget_amount *a, ledger_unit u)
{
    if (u == LEDGER_USD) {
        printf("$%.6f", (double)a->spent / 1e9);
        if (a->limit)
            printf(" of $%.2f", (double)a->limit / 1e9);
        if (a->reserved)
            printf(" (+$%.6f reserved)", (double)a->reserved / 1e9);
        return;
    }
    printf("%" PRIu64, a->spent);
    if (a->limit)
        printf(" of %" PRIu64, a->limit);
    printf(" %s", ledger_unit_name(u));
    if (a->reserved)
        printf(" (+%" PRIu64 " reserved)", a->reserved);
}

static void text_status(const budget_status *st)
{
    char key[64];
    if (st->kind == BUDGETS_TOKEN) {
        snprintf(key, sizeof key, "token %s", st->id);
        printf("%-28s %s (%s)\n", key, st->name, store_token_state_name(st->state));
    } else {
        printf("budget %s %s\n", budgets_kind_name(st->kind), st->name);
    }
    for (int w = LEDGER_MINUTE; w <= LEDGER_MONTH; w++) {
        const budget_period *p = &st->period[w];
        if (!p->charged)
            continue;
        printf("  %-26s ", ledger_window_name((ledger_window)w));
        for (int u = 0; u < LEDGER_UNITS; u++) {
            printf("%s", u ? ", " : "");
            text_amount(&p->amount[u], (ledger_unit)u);
        }
        printf("\n");
    }
    if (st->unreadable)
        printf("  (a ledger row could not be read: see the log)\n");
}

/* Each token's and [budget] row's spending in the current windows. */
static void print_budgets(const admin_ctx *ctx, const budgets *b)
{
    if (ctx->json) {
        printf(",\"tokens\":[");
        for (size_t i = 0; i < b->ntokens; i++) {
            printf("%s", i ? "," : "");
            json_status(&b->v[i]);
        }
        printf("],\"tokens_left_out\":%zu,\"budgets\":[", b->left_out);
        for (size_t i = b->ntokens; i < b->n; i++) {
            printf("%s", i > b->ntokens ? "," : "");
            json_status(&b->v[i]);
        }
        printf("]");
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        text_status(&b->v[i]);
    if (b->left_out)
        printf("(%zu more tokens not shown)\n", b->left_out);
}

int cmd_stats(admin_ctx *ctx, store *s, int argc, char **argv)
{
    int rc = no_args(argc, argv);
    if (rc != EXIT_OK)
        return rc;
    store_stats st;
    if (store_stats_get(s, &st) != RL_OK) {
        fprintf(stderr, "relay-admin stats: reading the store failed\n");
        return EXIT_FAIL;
    }
    store_activity act;
    if (store_activity_get(s, &act) != RL_OK) {
        fprintf(stderr, "relay-admin stats: reading the store's statistics failed\n");
        return EXIT_FAIL;
    }
    stats_sums t = {{0}, 0};
    stats *counters = NULL;
    if (stats_open(ctx->cfg->store.home, &counters) != RL_OK) {
        fprintf(stderr, "relay-admin stats: the shared counters cannot be opened\n");
        return EXIT_FAIL;
    }
    stats_each_row(counters, sum_row, &t);
    stats_close(counters);
    budgets b;
    if (budgets_read(s, ctx->cfg, (uint64_t)time(NULL), &b) != RL_OK) {
        budgets_release(&b);
        fprintf(stderr, "relay-admin stats: reading the tokens' and budgets' spending failed\n");
        return EXIT_FAIL;
    }
    print_counters(ctx, &st, &act, &t);
    print_budgets(ctx, &b);
    if (ctx->json)
        printf("}\n");
    budgets_release(&b);
    return EXIT_OK;
}

/* The key file's name inside a backup made with --with-key. */
#define BACKUP_KEY_NAME "relay.key"

/* Reads the store's key as the config gives it ([store] key_env, else
 * key_file) into *k; RL_OK, or the error with the reason in why. */
static rl_err store_key(const admin_ctx *ctx, secret *k, rl_buf *why)
{
    const char *env = ctx->cfg->store.key_env;
    return *env ? secret_from_env(env, k, why) : secret_read(ctx->cfg->store.key_file, k, why);
}

/* Writes the store's key into to (which must not exist), mode 0600. 0 or
 * -1 (said on stderr). */
static int copy_key(const admin_ctx *ctx, const char *to)
{
    secret k = {0};
    rl_buf why;
    rl_buf_init(&why, 1024);
    rl_err e = store_key(ctx, &k, &why);
    if (e == RL_OK && (e = secret_save(to, &k, 0, &why)) == RL_BUSY)
        rl_buf_printf(&why, "%s exists already", to);
    if (e != RL_OK)
        fprintf(stderr, "relay-admin backup: copying the key: %s\n", why.data ? why.data : "");
    secret_release(&k);
    rl_buf_release(&why);
    return e == RL_OK ? 0 : -1;
}

int cmd_backup(admin_ctx *ctx, store *s, int argc, char **argv)
{
    const char *dir = NULL;
    int with_key = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--with-key") == 0)
            with_key = 1;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "relay-admin backup: unexpected argument %s\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!dir) {
        fprintf(stderr, "relay-admin backup: which directory? (relay-admin backup DIR)\n");
        return EXIT_USAGE;
    }
    store_report rep;
    rl_err e = store_backup(s, dir, &rep);
    if (e == RL_BUSY) {
        fprintf(stderr, "relay-admin backup: %s must be empty or absent\n", dir);
        return EXIT_USAGE;
    }
    if (e != RL_OK) {
        fprintf(stderr, "relay-admin backup: failed (%s); %s may hold a partial copy\n",
                rl_err_text(e), dir);
        return EXIT_FAIL;
    }
    char key_copy[4096];
    snprintf(key_copy, sizeof key_copy, "%s/%s", dir, BACKUP_KEY_NAME);
    if (with_key && copy_key(ctx, key_copy) != 0)
        return EXIT_FAIL;
    if (ctx->json) {
        printf("{\"dir\":");
        admin_json_cstr(stdout, dir);
        printf(",\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"key_included\":%s}\n", rep.files,
               rep.bytes, with_key ? "true" : "false");
    } else {
        printf("backed up %" PRIu64 " files (%" PRIu64 " bytes) to %s; verified\n", rep.files,
               rep.bytes, dir);
    }
    if (!with_key)
        fprintf(stderr,
                "note: the backup is encrypted and does not hold the key file %s: back it up "
                "separately (or use --with-key), or the backup cannot be read\n",
                ctx->cfg->store.key_file);
    return EXIT_OK;
}

/* Takes the store for this process alone; EXIT_REFUSED when Relay (or any
 * process, another relay-admin included) has it open. */
static int lock_store(const admin_ctx *ctx, const char *cmd, store_lock **lock)
{
    rl_err e = store_lock_exclusive(ctx->cfg->store.home, lock);
    if (e == RL_OK)
        return EXIT_OK;
    if (e == RL_BUSY) {
        fprintf(stderr,
                "relay-admin %s: refused: Relay processes are using the store %s; stop them "
                "first (e.g. systemctl stop relay)\n",
                cmd, ctx->cfg->store.home);
        return EXIT_REFUSED;
    }
    fprintf(stderr, "relay-admin %s: cannot lock the store %s (%s)\n", cmd, ctx->cfg->store.home,
            rl_err_text(e));
    return EXIT_FAIL;
}

/* KEY.old, else KEY.old.2, .3, ...: the first that does not exist. */
static int old_key_path(const char *key_file, char *out, size_t cap)
{
    for (int n = 1; n < 1000; n++) {
        if (n == 1)
            snprintf(out, cap, "%s.old", key_file);
        else
            snprintf(out, cap, "%s.old.%d", key_file, n);
        if (access(out, F_OK) != 0)
            return 0;
    }
    return -1;
}

/* Makes the backup's key k the store's key_file, keeping the one it
 * replaces as old (a hard link) when there is one: k is written beside
 * key_file and renamed over it, so key_file is always one whole key. 0 or
 * -1 (said on stderr). */
static int install_key(const secret *k, const char *key_file, const char *old)
{
    rl_buf why;
    rl_buf_init(&why, 1024);
    int rc = -1;
    if (access(key_file, F_OK) == 0 && link(key_file, old) != 0) {
        fprintf(stderr, "relay-admin restore: keeping the previous key as %s: %s\n", old,
                strerror(errno));
        goto out;
    }
    if (secret_save(key_file, k, SECRET_REPLACE, &why) != RL_OK) {
        fprintf(stderr, "relay-admin restore: installing the backup's key: %s\n",
                why.data ? why.data : "");
        goto out;
    }
    rc = 0;
out:
    rl_buf_release(&why);
    return rc;
}

/* Whether the backup in dir brings a key (backup --with-key) the store must
 * be restored with: *use_it 1 when it holds one that differs from the
 * store's own (or the store has none yet), else 0, with the key in *bk.
 * EXIT_OK, or EXIT_FAIL (said on stderr). */
static int backup_key_needed(const admin_ctx *ctx, const char *backup_key, secret *bk, int *use_it,
                             int *had_key)
{
    secret cur = {0};
    rl_buf why;
    rl_buf_init(&why, 1024);
    int rc = EXIT_FAIL;
    const char *env = ctx->cfg->store.key_env;
    *use_it = 0;
    *had_key = 1;
    rl_err e = secret_read(backup_key, bk, &why);
    if (e == RL_NOTFOUND) {
        rc = EXIT_OK; /* a backup without its key: the store's key must open it */
        goto out;
    }
    if (e != RL_OK)
        goto said;
    rl_buf_reset(&why);
    e = store_key(ctx, &cur, &why);
    if (e == RL_NOTFOUND && !*env) {
        *had_key = 0;
    } else if (e != RL_OK) {
        goto said;
    }
    *use_it = !*had_key || !secret_equal(bk, &cur);
    if (*use_it && *env) {
        fprintf(stderr,
                "relay-admin restore: the backup holds its own key (%s), not the one in $%s "
                "([store] key_env): set %s to the backup's key and restore again\n",
                backup_key, env, env);
        goto out;
    }
    rc = EXIT_OK;
    goto out;
said:
    fprintf(stderr, "relay-admin restore: %s\n", why.data ? why.data : rl_err_text(e));
out:
    secret_release(&cur);
    rl_buf_release(&why);
    return rc;
}

int cmd_restore(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "relay-admin restore: expected one backup directory\n");
        return EXIT_USAGE;
    }
    const char *dir = argv[1], *key_file = ctx->cfg->store.key_file;
    /* A backup made with --with-key brings its key: the store is restored
     * with it and it becomes [store] key_file (the key it replaces is kept
     * as KEY.old), so that the restored store opens. */
    char backup_key[4096], old_key[4096];
    snprintf(backup_key, sizeof backup_key, "%s/%s", dir, BACKUP_KEY_NAME);
    secret bk = {0};
    int key_from_backup = 0, had_key = 1;
    store_lock *lock = NULL;
    int rc = backup_key_needed(ctx, backup_key, &bk, &key_from_backup, &had_key);
    if (rc != EXIT_OK)
        goto out;
    if (key_from_backup && old_key_path(key_file, old_key, sizeof old_key) != 0) {
        fprintf(stderr, "relay-admin restore: too many %s.old.N files\n", key_file);
        rc = EXIT_FAIL;
        goto out;
    }
    if ((rc = lock_store(ctx, "restore", &lock)) != EXIT_OK)
        goto out;
    store_options so;
    config_store_options(ctx->cfg, &so);
    if (key_from_backup)
        so.key_file = backup_key;
    store_report rep;
    rl_err e = store_restore(&so, lock, dir, &rep);
    /* The key is installed before the store is unlocked: a Relay starting
     * meanwhile must not find the restored store with the old key. */
    int key_failed = e == RL_OK && key_from_backup && install_key(&bk, key_file, old_key);
    store_unlock(lock);
    rc = EXIT_FAIL;
    if (e != RL_OK) {
        fprintf(stderr, "relay-admin restore: failed (%s)%s\n", rl_err_text(e),
                e == RL_FORBIDDEN ? "; the backup needs the key file it was made with "
                                    "(a backup made with --with-key holds it as relay.key)"
                                  : "");
        rc = e == RL_NOTFOUND ? EXIT_USAGE : EXIT_FAIL;
        goto out;
    }
    if (key_failed) {
        fprintf(stderr,
                "relay-admin restore: the store is restored but reads only with the key in %s: "
                "copy it to %s (mode 0600) before starting Relay\n",
                backup_key, key_file);
        goto out;
    }
    if (ctx->json) {
        printf("{\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"key_installed\":%s", rep.files,
               rep.bytes, key_from_backup ? "true" : "false");
        if (key_from_backup && had_key) {
            printf(",\"old_key_file\":");
            admin_json_cstr(stdout, old_key);
        }
        printf("}\n");
    } else {
        printf("restored %" PRIu64 " files (%" PRIu64 " bytes) from %s into %s\n", rep.files,
               rep.bytes, dir, ctx->cfg->store.home);
        if (key_from_backup && had_key)
            printf("the backup's key is now %s; the key it replaced is kept in %s\n", key_file,
                   old_key);
        else if (key_from_backup)
            printf("the backup's key is now %s\n", key_file);
    }
    rc = EXIT_OK;
out:
    secret_release(&bk);
    return rc;
}

int cmd_compact(admin_ctx *ctx, store *s, int argc, char **argv)
{
    int rc = no_args(argc, argv);
    if (rc != EXIT_OK)
        return rc;
    store_report rep;
    if (store_compact(s, &rep) != RL_OK) {
        fprintf(stderr, "relay-admin compact: failed\n");
        return EXIT_FAIL;
    }
    if (ctx->json)
        printf("{\"pages_freed\":%" PRIu64 ",\"bytes_before\":%" PRIu64 ",\"bytes_after\":%" PRIu64
               "}\n",
               rep.pages_freed, rep.bytes_before, rep.bytes);
    else
        printf("compacted: %" PRIu64 " pages returned to the file system; data files %" PRIu64
               " -> %" PRIu64 " bytes\n",
               rep.pages_freed, rep.bytes_before, rep.bytes);
    return EXIT_OK;
}

int cmd_recover(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    int rc = no_args(argc, argv);
    if (rc != EXIT_OK)
        return rc;
    store_lock *lock = NULL;
    if ((rc = lock_store(ctx, "recover", &lock)) != EXIT_OK)
        return rc;
    store_options so;
    config_store_options(ctx->cfg, &so);
    rl_err e = store_recover(&so, lock);
    store_unlock(lock);
    if (e != RL_OK) {
        fprintf(stderr, "relay-admin recover: failed (%s)\n", rl_err_text(e));
        return EXIT_FAIL;
    }
    if (ctx->json)
        printf("{\"recovered\":true}\n");
    else
        printf("recovered %s\n", ctx->cfg->store.home);
    return EXIT_OK;
}

int cmd_rekey(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    int rc = no_args(argc, argv);
    if (rc != EXIT_OK)
        return rc;
    const char *key_file = ctx->cfg->store.key_file;
    if (*ctx->cfg->store.key_env) {
        fprintf(stderr,
                "relay-admin rekey: the key comes from $%s ([store] key_env); rekey makes a new "
                "key file: set [store] key_file instead, rekey, then move the new key into %s\n",
                ctx->cfg->store.key_env, ctx->cfg->store.key_env);
        return EXIT_FAIL;
    }
    char new_key[4096], old_key[4096];
    snprintf(new_key, sizeof new_key, "%s.new", key_file);
    if (old_key_path(key_file, old_key, sizeof old_key) != 0) {
        fprintf(stderr, "relay-admin rekey: too many %s.old.N files\n", key_file);
        return EXIT_FAIL;
    }
    store_lock *lock = NULL;
    if ((rc = lock_store(ctx, "rekey", &lock)) != EXIT_OK)
        return rc;
    if (access(new_key, F_OK) == 0) {
        /* Left by a rekey that failed before it swapped anything in: that
         * one cleaned up its store but could not get here again. */
        fprintf(stderr, "relay-admin rekey: removing %s, left by an earlier attempt\n", new_key);
        (void)unlink(new_key);
    }
    store_options so;
    config_store_options(ctx->cfg, &so);
    store_report rep;
    rl_err e = store_rekey(&so, lock, new_key, old_key, &rep);
    store_unlock(lock);
    if (e != RL_OK) {
        fprintf(stderr, "relay-admin rekey: failed (%s)\n", rl_err_text(e));
        return EXIT_FAIL;
    }
    if (ctx->json) {
        printf("{\"records\":%" PRIu64 ",\"key_file\":", rep.records);
        admin_json_cstr(stdout, key_file);
        printf(",\"old_key_file\":");
        admin_json_cstr(stdout, old_key);
        printf("}\n");
    } else {
        printf("re-encrypted %" PRIu64 " records with a new key in %s\n", rep.records, key_file);
        printf("the old key is kept in %s: backups made before now need it; delete it when "
               "they are gone\n",
               old_key);
    }
    return EXIT_OK;
}

int cmd_config(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    if (argc != 2) {
        fprintf(stderr, "relay-admin config: expected one SECTION.KEY, e.g. fcgi.listen\n");
        return EXIT_USAGE;
    }
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err err = config_get_text(ctx->cfg, argv[1], &out);
    if (err == RL_OK) {
        if (ctx->json) {
            admin_json_cstr(stdout, out.data ? out.data : "");
            putchar('\n');
        } else {
            printf("%s\n", out.data ? out.data : "");
        }
    } else {
        fprintf(stderr, "relay-admin config: no key %s\n", argv[1]);
    }
    rl_buf_release(&out);
    return err == RL_OK ? EXIT_OK : EXIT_FAIL;
}
