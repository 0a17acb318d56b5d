/*
 * cmd_status.c — relay-admin status: the running pool as it describes
 * itself in [fcgi] status_file (written once a second by relay.fcgi's
 * supervisor; format in fcgi/status.h): its pid, version, uptime, workers
 * and the requests each is serving.
 *
 * Under mod_fcgid (or spawn-fcgi) there is no pool: Apache starts and
 * stops relay.fcgi processes itself and nothing writes the file, which is
 * what status then says.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "store/base/rl_version.h"

#define STATUS_MAX_WORKERS 1280 /* the supervisor's table (fcgi/main.c) */
#define STATUS_MAX_BYTES 65536

typedef struct status_worker {
    long pid;
    long busy;
    int draining;
} status_worker;

typedef struct pool_status {
    long pid, workers, threads;
    uint64_t started, updated;
    char version[128], listen[512];
    status_worker w[STATUS_MAX_WORKERS];
    size_t nw;
} pool_status;

/* A whole number, or -1. */
static long long number(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return errno || end == s || v < 0 ? -1 : v;
}

/* The "NAME VALUE" lines of one value each; worker lines are apart. */
typedef enum { FIELD_LONG, FIELD_U64, FIELD_TEXT } field_kind;
static const struct {
    const char *name;
    field_kind kind;
    size_t offset;
    size_t cap; /* FIELD_TEXT: bytes */
} fields[] = {
    {"pid", FIELD_LONG, offsetof(pool_status, pid), 0},
    {"version", FIELD_TEXT, offsetof(pool_status, version), sizeof((pool_status *)0)->version},
    {"started", FIELD_U64, offsetof(pool_status, started), 0},
    {"updated", FIELD_U64, offsetof(pool_status, updated), 0},
    {"listen", FIELD_TEXT, offsetof(pool_status, listen), sizeof((pool_status *)0)->listen},
    {"workers", FIELD_LONG, offsetof(pool_status, workers), 0},
    {"threads", FIELD_LONG, offsetof(pool_status, threads), 0},
};

/* "worker PID BUSY" or "draining PID BUSY". */
static void parse_worker(pool_status *st, const char *value, int draining)
{
    char *end;
    long pid = strtol(value, &end, 10);
    long busy = strtol(end, NULL, 10);
    if (pid > 0 && st->nw < STATUS_MAX_WORKERS)
        st->w[st->nw++] = (status_worker){pid, busy < 0 ? 0 : busy, draining};
}

/* One "NAME VALUE" line; names it does not know are skipped. */
static void parse_line(pool_status *st, const char *name, const char *value)
{
    if (strcmp(name, "worker") == 0 || strcmp(name, "draining") == 0) {
        parse_worker(st, value, name[0] == 'd');
        return;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (strcmp(name, fields[i].name) != 0)
            continue;
        char *field = (char *)st + fields[i].offset;
        if (fields[i].kind == FIELD_LONG)
            *(long *)(void *)field = (long)number(value);
        else if (fields[i].kind == FIELD_U64)
            *(uint64_t *)(void *)field = (uint64_t)number(value);
        else
            snprintf(field, fields[i].cap, "%s", value);
    }
}

/* Reads path into st. 0, or -1 with errno (ENOENT: no pool). */
static int read_status(const char *path, pool_status *st)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static char text[STATUS_MAX_BYTES];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    for (char *line = text; *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *space = strchr(line, ' ');
        if (space) {
            *space = '\0';
            parse_line(st, line, space + 1);
        }
        line = next ? next : line + strlen(line);
    }
    if (st->pid <= 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static long requests_in_flight(const pool_status *st)
{
    long n = 0;
    for (size_t i = 0; i < st->nw; i++)
        n += st->w[i].busy;
    return n;
}

static void print_json(const pool_status *st, uint64_t now)
{
    printf("{\"running\":true,\"pid\":%ld,\"version\":", st->pid);
    admin_json_cstr(stdout, st->version);
    printf(",\"admin_version\":");
    admin_json_cstr(stdout, rl_version());
    printf(",\"started\":%" PRIu64 ",\"uptime\":%" PRIu64 ",\"updated\":%" PRIu64 ",\"listen\":",
           st->started, now > st->started ? now - st->started : 0, st->updated);
    admin_json_cstr(stdout, st->listen);
    printf(",\"workers_configured\":%ld,\"threads\":%ld,\"requests_in_flight\":%ld,\"workers\":[",
           st->workers, st->threads, requests_in_flight(st));
    for (size_t i = 0; i < st->nw; i++)
        printf("%s{\"pid\":%ld,\"requests\":%ld,\"draining\":%s}", i ? "," : "", st->w[i].pid,
               st->w[i].busy, st->w[i].draining ? "true" : "false");
    printf("]}\n");
}

static void print_text(const pool_status *st, uint64_t now)
{
    char up[32], since[32];
    admin_format_age(now > st->started ? now - st->started : 0, up, sizeof up);
    time_t t = (time_t)st->started;
    struct tm tm;
    strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
    size_t running = 0;
    for (size_t i = 0; i < st->nw; i++)
        running += !st->w[i].draining;
    printf("pool       running, pid %ld, up %s (since %s)\n", st->pid, up, since);
    printf("version    %s\n", st->version);
    if (strcmp(st->version, rl_version()) != 0)
        printf("           (this relay-admin is %s: restart the pool to run it)\n", rl_version());
    printf("listen     %s\n", st->listen);
    printf("workers    %zu of %ld running, %ld threads each\n", running, st->workers, st->threads);
    printf("in flight  %ld request%s\n", requests_in_flight(st),
           requests_in_flight(st) == 1 ? "" : "s");
    for (size_t i = 0; i < st->nw; i++)
        printf("  worker %ld%s: %ld in flight\n", st->w[i].pid,
               st->w[i].draining ? " (draining, old configuration)" : "", st->w[i].busy);
    if (now > st->updated + 5)
        printf("note       the status was last written %" PRIu64
               " s ago: the supervisor may be stuck\n",
               now - st->updated);
}

/* The pool is not running: why, on stderr (or as JSON on stdout). */
static int not_running(const admin_ctx *ctx, const char *why)
{
    if (ctx->json) {
        printf("{\"running\":false,\"reason\":");
        admin_json_cstr(stdout, why);
        printf(",\"admin_version\":");
        admin_json_cstr(stdout, rl_version());
        printf("}\n");
    } else {
        fprintf(stderr, "relay-admin status: %s\n", why);
    }
    return EXIT_FAIL;
}

int cmd_status(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "relay-admin status: takes no arguments\n");
        return EXIT_USAGE;
    }
    const char *path = ctx->cfg->fcgi.status_file;
    static pool_status st;
    memset(&st, 0, sizeof st);
    char why[1024];
    if (read_status(path, &st) != 0) {
        if (errno == ENOENT)
            snprintf(why, sizeof why,
                     "Relay's pool is not running: no %s ([fcgi] status_file). Under "
                     "mod_fcgid there is no pool to show: Apache starts and stops relay.fcgi "
                     "processes itself.",
                     path);
        else
            snprintf(why, sizeof why, "cannot read %s: %s", path, strerror(errno));
        return not_running(ctx, why);
    }
    /* EPERM: alive, but another user's (run relay-admin as Relay's user). */
    if (kill((pid_t)st.pid, 0) != 0 && errno == ESRCH) {
        snprintf(why, sizeof why,
                 "Relay's pool is not running: %s names pid %ld, which is gone (it was "
                 "killed, or the machine restarted)",
                 path, st.pid);
        return not_running(ctx, why);
    }
    uint64_t now = (uint64_t)time(NULL);
    if (ctx->json)
        print_json(&st, now);
    else
        print_text(&st, now);
    return EXIT_OK;
}
