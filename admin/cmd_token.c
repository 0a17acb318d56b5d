/*
 * cmd_token.c — relay-admin token: Relay client tokens (create, list,
 * show, update, revoke, rotate). Everything a token's fields mean, how a
 * token is found and how it is written as JSON is the engine's (tokens.h),
 * which the admin API's /relay/admin/api/tokens calls too; this file reads
 * the command line and prints.
 *
 * A token's text is printed once, on stdout, by create and rotate: alone on
 * its line (or as "token" with --json), so that a script captures it with
 * $(...) or a pipe, with a line on stderr saying it is shown only this
 * once. When stdout cannot take it (a closed pipe, a full disk), a created
 * token is removed again, so that no token exists whose text nobody has;
 * SIGPIPE is ignored meanwhile so that relay-admin lives to do that. No
 * other command prints a text or a hash, and nothing here logs one.
 *
 * Exit codes as admin.h: 0; 1 the store failed, a name is taken, a
 * revoked token cannot be changed; 2 a value or an argument refused; 4 no
 * token has that id or name.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "engine/tokens.h"
#include "store/base/rl_secure.h"

#define MAX_EDITS 32 /* options of one create or update */
#define OPT_NAME_MAX 48

/* The options of one command line, read by read_args. */
typedef struct args {
    tokens_edit edits[MAX_EDITS];
    char names[MAX_EDITS][OPT_NAME_MAX]; /* each edit's option, without "=value" */
    size_t n;
    const char *ref; /* the one positional argument (the token), or NULL */
    uint64_t grace;  /* rotate --grace, seconds */
} args;

static int exit_of(rl_err e)
{
    return e == RL_OK            ? EXIT_OK
           : e == RL_BAD_REQUEST ? EXIT_USAGE
           : e == RL_NOTFOUND    ? EXIT_NOTFOUND
                                 : EXIT_FAIL;
}

/* Says why on stderr and returns the exit code of e. */
static int failed(const char *sub, rl_err e, const rl_buf *why)
{
    fprintf(stderr, "relay-admin token %s: %s\n", sub,
            rl_buf_error(why) == RL_OK && why->data ? why->data : rl_err_text(e));
    return exit_of(e);
}

/*
 * Reads argv[2..] (argv[1] is the subcommand): --FIELD V or --FIELD=V
 * into a->edits when fields (create, update), --grace (rotate), and at most
 * one positional argument when ref_wanted. EXIT_OK or EXIT_USAGE (said).
 */
static int read_args(int argc, char **argv, int fields, int ref_wanted, int grace, args *a)
{
    const char *sub = argv[1];
    memset(a, 0, sizeof *a);
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            if (!ref_wanted || a->ref) {
                fprintf(stderr, "relay-admin token %s: unexpected argument %s\n", sub, arg);
                return EXIT_USAGE;
            }
            a->ref = arg;
            continue;
        }
        size_t len = strcspn(arg, "=");
        char name[OPT_NAME_MAX];
        int is_grace = grace && len == 7 && !strncmp(arg, "--grace", 7);
        snprintf(name, sizeof name, "%.*s", (int)len, arg);
        if (len >= sizeof name || (!is_grace && !(fields && tokens_is_field(name)))) {
            fprintf(stderr,
                    "relay-admin token %s: unknown option %s (see relay-admin token --help)\n", sub,
                    name);
            return EXIT_USAGE;
        }
        const char *value = arg[len] == '=' ? arg + len + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!value) {
            fprintf(stderr, "relay-admin token %s: %s needs a value\n", sub, name);
            return EXIT_USAGE;
        }
        if (is_grace && tokens_parse_duration(value, &a->grace) != RL_OK) {
            fprintf(stderr,
                    "relay-admin token %s: --grace takes a duration such as 30s, 15m, "
                    "12h or 7d (0: the old text stops now)\n",
                    sub);
            return EXIT_USAGE;
        }
        if (is_grace)
            continue;
        if (a->n == MAX_EDITS) {
            fprintf(stderr, "relay-admin token %s: too many options\n", sub);
            return EXIT_USAGE;
        }
        memcpy(a->names[a->n], name, len + 1);
        a->edits[a->n] = (tokens_edit){a->names[a->n], value};
        a->n++;
    }
    if (ref_wanted && !a->ref) {
        fprintf(stderr, "relay-admin token %s: which token? Give its id or its name\n", sub);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* ---- text output -------------------------------------------------------------- */

static void fmt_usd(uint64_t nusd, char *out, size_t cap)
{
    char amount[TOKENS_USD_SIZE];
    tokens_format_usd(nusd, amount);
    snprintf(out, cap, "%s", nusd ? amount : "none");
}

static void fmt_count(uint64_t n, char *out, size_t cap)
{
    if (n)
        snprintf(out, cap, "%" PRIu64, n);
    else
        snprintf(out, cap, "none");
}

/* A list joined with sep, or all when empty. */
static void fmt_list(const char (*items)[TOKEN_ITEM_MAX + 1], unsigned n, const char *sep,
                     const char *all, char *out, size_t cap)
{
    size_t used = 0;
    snprintf(out, cap, "%s", n ? "" : all);
    for (unsigned i = 0; i < n && used < cap; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? sep : "", items[i]);
        used += w > 0 ? (size_t)w : 0;
    }
}

/* A time as a list shows it, UTC to the minute; "-" for none. */
static void fmt_when(uint64_t t, char *out, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!t)
        snprintf(out, cap, "-");
    else if (t <= 253402300799ULL && gmtime_r(&tt, &tm))
        strftime(out, cap, "%Y-%m-%d %H:%M", &tm);
    else
        snprintf(out, cap, "%" PRIu64, t);
}

static void print_row(const tokens_row *r, uint64_t now)
{
    const store_token *t = &r->t;
    char ups[TOKEN_LIST_MAX * (TOKEN_ITEM_MAX + 1) + 1], models[sizeof ups];
    char day[32], month[32], tokens[32], rpm[32], tpm[32], created[32], expires[32];
    fmt_list(t->upstreams, t->n_upstreams, ",", "*", ups, sizeof ups);
    fmt_list(t->models, t->n_models, ",", "*", models, sizeof models);
    fmt_usd(t->usd_day, day, sizeof day);
    fmt_usd(t->usd_month, month, sizeof month);
    fmt_count(t->tokens_day, tokens, sizeof tokens);
    fmt_count(t->rpm, rpm, sizeof rpm);
    fmt_count(t->tpm, tpm, sizeof tpm);
    fmt_when(t->created, created, sizeof created);
    fmt_when(t->expires, expires, sizeof expires);
    printf("%-8s  %-16s  %-7s  %-12s  %-16s  %9s  %9s  %10s  %6s  %8s  %-16s  %s\n", t->id, t->name,
           store_token_state_name(store_token_state(t, now)), ups, models, day, month, tokens, rpm,
           tpm, created, expires);
}

static void print_token(const tokens_row *r, uint64_t now)
{
    const store_token *t = &r->t;
    char ups[TOKEN_LIST_MAX * (TOKEN_ITEM_MAX + 2) + 1], models[sizeof ups], v[9][96];
    fmt_list(t->upstreams, t->n_upstreams, ", ", "all", ups, sizeof ups);
    fmt_list(t->models, t->n_models, ", ", "all", models, sizeof models);
    fmt_usd(t->usd_day, v[0], sizeof v[0]);
    fmt_usd(t->usd_month, v[1], sizeof v[1]);
    fmt_count(t->tokens_day, v[2], sizeof v[2]);
    fmt_count(t->rpm, v[3], sizeof v[3]);
    fmt_count(t->tpm, v[4], sizeof v[4]);
    admin_format_time(t->created, v[5], sizeof v[5]);
    admin_format_time(t->expires, v[6], sizeof v[6]);
    admin_format_time(t->revoked, v[7], sizeof v[7]);
    admin_format_time(r->grace_until, v[8], sizeof v[8]);
    const struct {
        const char *label, *value;
    } lines[] = {
        {"id", t->id},
        {"name", t->name},
        {"state", store_token_state_name(store_token_state(t, now))},
        {"upstreams", ups},
        {"models", models},
        {"usd a day", v[0]},
        {"usd a month", v[1]},
        {"tokens a day", v[2]},
        {"rpm", v[3]},
        {"tpm", v[4]},
        {"created", v[5]},
        {"expires", t->expires ? v[6] : "never"},
        {"revoked", t->revoked ? v[7] : "-"},
        {"old text until", r->grace_until ? v[8] : NULL}, /* rotated with --grace */
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        if (lines[i].value)
            printf("%-14s %s\n", lines[i].label, lines[i].value);
}

/* One token, as JSON (with its text, when given) or as text. */
static int print_one(const admin_ctx *ctx, const tokens_row *r, uint64_t now, const char *text)
{
    if (!ctx->json) {
        if (text)
            printf("%s\n", text);
        else
            print_token(r, now);
        return 0;
    }
    rl_buf b;
    rl_buf_init(&b, 0);
    int rc = tokens_json(r, now, text, &b) == RL_OK ? 0 : -1;
    if (rc == 0)
        printf("%s\n", b.data);
    rl_secure_zero(b.data, b.len); /* it may hold the text */
    rl_buf_release(&b);
    return rc;
}

/* EXIT_OK when a new text printed on stdout reaches someone; EXIT_USAGE
 * (said) when stdout is /dev/null, as it is when it was closed (main.c):
 * nothing is made then, rather than a token whose text nobody has. */
static int stdout_kept(const char *sub)
{
    struct stat out, null;
    if (fstat(STDOUT_FILENO, &out) == 0 && stat("/dev/null", &null) == 0 && S_ISCHR(out.st_mode) &&
        out.st_rdev == null.st_rdev) {
        fprintf(stderr,
                "relay-admin token %s: stdout is /dev/null (or closed), where the new token's "
                "text would be lost: nothing was done\n",
                sub);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* Prints a new text (create, rotate); -1 when stdout did not take it. */
static int print_text(const admin_ctx *ctx, const tokens_row *r, uint64_t now, const char *text)
{
    int rc = print_one(ctx, r, now, text);
    return fflush(stdout) != 0 || ferror(stdout) ? -1 : rc;
}

/* ---- list ------------------------------------------------------------------- */

static int tok_list(admin_ctx *ctx, store *s, int argc, char **argv)
{
    args a;
    int rc = read_args(argc, argv, 0, 0, 0, &a);
    if (rc != EXIT_OK)
        return rc;
    uint64_t now = (uint64_t)time(NULL);
    tokens_list l;
    rl_err e = tokens_list_load(s, now, &l);
    if (e != RL_OK) {
        fprintf(stderr, "relay-admin token list: reading the tokens failed (%s)\n", rl_err_text(e));
        tokens_list_release(&l);
        return EXIT_FAIL;
    }
    if (ctx->json) {
        rl_buf b;
        rl_buf_init(&b, 0);
        if (tokens_list_json(&l, now, &b) == RL_OK)
            printf("%s\n", b.data);
        else
            rc = EXIT_FAIL;
        rl_buf_release(&b);
    } else {
        printf("%-8s  %-16s  %-7s  %-12s  %-16s  %9s  %9s  %10s  %6s  %8s  %-16s  %s\n", "ID",
               "NAME", "STATE", "UPSTREAMS", "MODELS", "USD/DAY", "USD/MONTH", "TOKENS/DAY", "RPM",
               "TPM", "CREATED (UTC)", "EXPIRES (UTC)");
        for (size_t i = 0; i < l.n; i++)
            print_row(&l.v[i], now);
    }
    if (l.damaged)
        fprintf(stderr,
                "relay-admin token list: %u token record(s) do not decode and are not listed "
                "(relay-admin verify names them)\n",
                l.damaged);
    tokens_list_release(&l);
    return rc;
}

/* ---- the subcommands ---------------------------------------------------------- */

/* What a subcommand does, once its arguments are read: *row gets the
 * token, text a new text (create, rotate), *was whether it was already
 * revoked (revoke). */
typedef rl_err op_fn(const admin_ctx *ctx, store *s, const args *a, uint64_t now, tokens_row *row,
                     char text[TOKENS_TEXT_SIZE], int *was, rl_buf *why);

static rl_err op_create(const admin_ctx *ctx, store *s, const args *a, uint64_t now,
                        tokens_row *row, char text[TOKENS_TEXT_SIZE], int *was, rl_buf *why)
{
    (void)was;
    return tokens_create(s, ctx->cfg, a->edits, a->n, now, row, text, why);
}

static rl_err op_show(const admin_ctx *ctx, store *s, const args *a, uint64_t now, tokens_row *row,
                      char text[TOKENS_TEXT_SIZE], int *was, rl_buf *why)
{
    (void)ctx, (void)text, (void)was;
    return tokens_show(s, a->ref, now, row, why);
}

static rl_err op_update(const admin_ctx *ctx, store *s, const args *a, uint64_t now,
                        tokens_row *row, char text[TOKENS_TEXT_SIZE], int *was, rl_buf *why)
{
    (void)text, (void)was;
    return tokens_update(s, ctx->cfg, a->ref, a->edits, a->n, now, row, why);
}

static rl_err op_revoke(const admin_ctx *ctx, store *s, const args *a, uint64_t now,
                        tokens_row *row, char text[TOKENS_TEXT_SIZE], int *was, rl_buf *why)
{
    (void)ctx, (void)text;
    return tokens_revoke(s, a->ref, now, row, was, why);
}

static rl_err op_rotate(const admin_ctx *ctx, store *s, const args *a, uint64_t now,
                        tokens_row *row, char text[TOKENS_TEXT_SIZE], int *was, rl_buf *why)
{
    (void)ctx, (void)was;
    return tokens_rotate(s, a->ref, a->grace, now, row, text, why);
}

/* After a new text was printed (or could not be), on stderr. */
static int text_shown(const char *sub, store *s, const tokens_row *r, int printed)
{
    char until[96];
    admin_format_time(r->grace_until, until, sizeof until);
    if (printed && !strcmp(sub, "create"))
        fprintf(stderr,
                "relay-admin token create: made token %s (\"%s\"). Its text is shown only this "
                "once: Relay keeps only a hash of it.\n",
                r->t.id, r->t.name);
    else if (printed)
        fprintf(stderr,
                "relay-admin token rotate: token %s (\"%s\") has a new text, shown only this "
                "once; the old one %s%s.\n",
                r->t.id, r->t.name, r->grace_until ? "works until " : "stopped working now",
                r->grace_until ? until : "");
    else if (!strcmp(sub, "create") && store_token_del(s, r->t.hash) == RL_OK)
        fprintf(stderr, "relay-admin token create: the token could not be written to stdout, so "
                        "it was removed again: nothing was created\n");
    else
        fprintf(stderr,
                "relay-admin token %s: token %s was made, but its text could not be written to "
                "stdout: rotate it again (or revoke it)\n",
                sub, r->t.id);
    return printed ? EXIT_OK : EXIT_FAIL;
}

/* A revoke's outcome, as text. */
static void print_revoked(const tokens_row *r, int was)
{
    char when[96];
    admin_format_time(r->t.revoked, when, sizeof when);
    printf(was ? "token %s (\"%s\") was already revoked, at %s\n"
               : "revoked token %s (\"%s\"): refused from now on (%s)\n",
           r->t.id, r->t.name, when);
}

static const struct sub {
    const char *name;
    int fields, ref, grace; /* the arguments it takes (read_args) */
    int makes_text;         /* prints a new text once */
    op_fn *op;
} subs[] = {
    {"create", 1, 0, 0, 1, op_create}, {"show", 0, 1, 0, 0, op_show},
    {"update", 1, 1, 0, 0, op_update}, {"revoke", 0, 1, 0, 0, op_revoke},
    {"rotate", 0, 1, 1, 1, op_rotate},
};

static int run_sub(const struct sub *sub, admin_ctx *ctx, store *s, int argc, char **argv)
{
    args a;
    int rc = read_args(argc, argv, sub->fields, sub->ref, sub->grace, &a);
    if (rc != EXIT_OK || (sub->makes_text && (rc = stdout_kept(sub->name)) != EXIT_OK))
        return rc;
    uint64_t now = (uint64_t)time(NULL);
    tokens_row row;
    char text[TOKENS_TEXT_SIZE] = "";
    int was = 0;
    rl_buf why;
    rl_buf_init(&why, 0);
    if (sub->makes_text)
        signal(SIGPIPE, SIG_IGN); /* a closed pipe must not stop text_shown's cleanup */
    rl_err e = sub->op(ctx, s, &a, now, &row, text, &was, &why);
    if (e != RL_OK)
        rc = failed(sub->name, e, &why);
    else if (sub->makes_text)
        rc = text_shown(sub->name, s, &row, print_text(ctx, &row, now, text) == 0);
    else if (!ctx->json && sub->op == op_revoke)
        print_revoked(&row, was);
    else
        rc = print_one(ctx, &row, now, NULL) == 0 ? EXIT_OK : EXIT_FAIL;
    rl_secure_zero(text, sizeof text);
    rl_buf_release(&why);
    return rc;
}

int cmd_token(admin_ctx *ctx, store *s, int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "list") == 0)
        return tok_list(ctx, s, argc, argv);
    for (size_t i = 0; argc > 1 && i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return run_sub(&subs[i], ctx, s, argc, argv);
    fprintf(stderr,
            "relay-admin token: %s%s (create, list, show, update, revoke or rotate; see "
            "relay-admin token --help)\n",
            argc > 1 ? "unknown subcommand " : "which subcommand?", argc > 1 ? argv[1] : "");
    return EXIT_USAGE;
}
