/*
 * admin.h — what relay-admin's command files share: the context, the
 * command table's row, exit codes and small output helpers.
 *
 * A command is a function cmd_NAME(ctx, store, argc, argv) listed in the
 * table in main.c; argv[0] is the command's name and argv holds only its
 * own arguments (main.c has taken out the global options, --json included).
 * It prints its results on stdout and its errors, once, on stderr, and
 * returns one of the exit codes below.
 */
#ifndef RELAY_ADMIN_ADMIN_H
#define RELAY_ADMIN_ADMIN_H

#include <stdint.h>
#include <stdio.h>

#include "engine/config.h"
#include "store/store.h"

/* Documented in relay-admin --help (main.c); scripts rely on them. */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,     /* the command failed, verify found damage, doctor a FAIL */
    EXIT_USAGE = 2,    /* bad arguments */
    EXIT_REFUSED = 3,  /* refused: Relay processes are using the store */
    EXIT_NOTFOUND = 4, /* show: no entry (or several) has that key prefix; token: no such token */
};

typedef struct admin_ctx {
    relay_config *cfg; /* NULL only for a command that runs without a config */
    int json;
    const char *config_path;  /* the relay.ini asked for */
    const char *config_error; /* why it did not load, when cfg is NULL */
} admin_ctx;

typedef struct admin_cmd {
    const char *name;
    const char *args;    /* synopsis of its arguments */
    const char *summary; /* one line for relay-admin --help */
    const char *help;    /* relay-admin CMD --help: what it does, options, examples */
    int flags;           /* ADMIN_* below, or 0 */
    int (*run)(admin_ctx *ctx, store *s, int argc, char **argv);
} admin_cmd;

enum {
    ADMIN_STORE = 1,     /* main opens the store (shared, as Relay does) first */
    ADMIN_NO_CONFIG = 2, /* runs even when the config does not load (ctx->cfg NULL) */
    ADMIN_TOKENS = 4,    /* main opens where tokens and budgets live: with [cluster]
                          * the shared store (store/cluster.h), else the store */
};

/* cmd_cache.c */
int cmd_ls(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_show(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_purge(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_verify(admin_ctx *ctx, store *s, int argc, char **argv);

/* cmd_store.c */
int cmd_init(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_stats(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_backup(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_restore(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_compact(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_recover(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_rekey(admin_ctx *ctx, store *s, int argc, char **argv);
int cmd_config(admin_ctx *ctx, store *s, int argc, char **argv);

/* cmd_doctor.c */
int cmd_doctor(admin_ctx *ctx, store *s, int argc, char **argv);

/* cmd_token.c */
int cmd_token(admin_ctx *ctx, store *s, int argc, char **argv);

/* cmd_status.c */
int cmd_status(admin_ctx *ctx, store *s, int argc, char **argv);

/* cmd_cluster.c */
int cmd_cluster(admin_ctx *ctx, store *s, int argc, char **argv);

/* Opens the configured store as Relay does (shared); EXIT_OK or EXIT_FAIL
 * (said on stderr). */
int admin_open_store(const admin_ctx *ctx, store **out);
/* Opens where tokens and budgets live: with [cluster] the shared store, as
 * a subordinate of the running pool's cluster process (its writes go to
 * the group's master), else admin_open_store. EXIT_OK or EXIT_FAIL. */
int admin_open_shared(const admin_ctx *ctx, store **out);

/* Writes s (n bytes) as a JSON string, quotes included. Invalid UTF-8
 * bytes become U+FFFD, so the output always parses. */
void admin_json_str(FILE *f, const char *s, size_t n);
/* The same for a NUL-terminated string. */
void admin_json_cstr(FILE *f, const char *s);

/* Parses a duration such as 90, 30s, 15m, 12h or 7d into seconds; -1 if
 * it is not one. */
int admin_parse_duration(const char *text, uint64_t *seconds);
/* Formats seconds the same way, with the largest unit that fits ("3d"). */
void admin_format_age(uint64_t seconds, char *out, size_t cap);

/* fcgi_get.c: sends a FastCGI GET of uri (path and query) on the connected
 * socket fd, as a web server would, and appends what the application wrote
 * (CGI headers, a blank line, the body) to out until its END_REQUEST.
 * 0; -1 when the connection failed or closed early (or out is full); -2
 * when no answer came within timeout_ms. */
int admin_fcgi_get(int fd, const char *uri, int timeout_ms, rl_buf *out);

/* Formats unix seconds t as "2026-01-31T12:00:00Z (1769860800)", or, for a
 * time after year 9999 (whatever a stored value holds), as the number with
 * a note; never fails, cut to cap bytes. */
void admin_format_time(uint64_t t, char *out, size_t cap);

/* Matches argv[*i] against an option with a value, given as "--name V" or
 * "--name=V": 1 when it matched (*value set, *i moved past it), 0 when it
 * is another argument, -1 (said on stderr) when the value is missing. */
int admin_opt(int argc, char **argv, int *i, const char *name, const char **value);

#endif
