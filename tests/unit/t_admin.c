/*
 * t_admin.c — relay-admin's commands run in-process on a store of the
 * test's own (admin/ is linked in, less main.c): whatever a stored entry's
 * metadata holds, show prints it and exits 0 (defect 10: an expiry past
 * any date made show crash with SIGSEGV in strftime), and the time
 * formatting under it; and relay-admin token: create prints the text alone
 * on stdout once (stderr says so), list and show never print a text or a
 * hash, refused inputs exit 2 (4: no such token, 1: a name taken or a
 * revoked token) with the reason on stderr and nothing on stdout, update,
 * rotate --grace and revoke take effect, and no token is made whose text
 * could not be printed (stdout on /dev/null or a full device).
 *
 * Each command runs in a forked child with stdout sent to a file, so a
 * crash is reported as this test's failure with the signal, not as the
 * test binary dying. The store is closed in the parent before each fork
 * (a handle does not survive fork); the child opens its own.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin/admin.h"
#include "engine/auth.h"
#include "engine/entry.h"
#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "tests/unit/tap.h"

static char tmp[64], ini[128], out_path[128], err_path[128];
static relay_config *cfg;

static void test_format_time(void)
{
    char s[96];
    admin_format_time(1700000000, s, sizeof s);
    is_str(s, "2023-11-14T22:13:20Z (1700000000)", "a time: the date and the number");
    admin_format_time(0, s, sizeof s);
    is_str(s, "1970-01-01T00:00:00Z (0)", "the epoch");
    admin_format_time(253402300799ULL, s, sizeof s);
    is_str(s, "9999-12-31T23:59:59Z (253402300799)", "the last second of year 9999");
    admin_format_time(253402300800ULL, s, sizeof s);
    is_str(s, "253402300800 (after year 9999: not a date)", "year 10000 is a number with a note");
    admin_format_time(INT64_MAX, s, sizeof s);
    is_str(s, "9223372036854775807 (after year 9999: not a date)", "INT64_MAX");
    admin_format_time(UINT64_MAX, s, sizeof s);
    is_str(s, "18446744073709551615 (after year 9999: not a date)",
           "UINT64_MAX (a negative time_t) is not 1969");
    char tiny[8];
    admin_format_time(UINT64_MAX, tiny, sizeof tiny);
    is_int(strlen(tiny), sizeof tiny - 1, "a short buffer is cut, never overrun");
}

/* Stores an entry with this metadata under key n; 0 or -1. */
static int put(store *s, uint8_t n, uint64_t created, uint64_t expires)
{
    uint8_t key[STORE_KEY_LEN];
    memset(key, 0, sizeof key);
    key[0] = n;
    rl_buf b;
    rl_buf_init(&b, 0);
    entry_labels lab = {.upstream = "openai", .model = "gpt-4o-mini", .ns = ""};
    rl_err e = entry_encode(&b, ENTRY_BODY, "application/json", &lab, NULL, "{\"ok\":1}", 8);
    store_meta m = {.created = created, .expires = expires};
    if (e == RL_OK)
        e = store_cache_put(s, key, &m, b.data, b.len);
    rl_buf_release(&b);
    return e == RL_OK ? 0 : -1;
}

/* Runs relay-admin [--json] ARGV (a command function and its arguments)
 * in a child, stdout into stdout_path and stderr into err_path; its exit
 * status, or 128 + the signal that killed it. */
static int run(int (*cmd)(admin_ctx *, store *, int, char **), int json, const char *stdout_path,
               char **argv)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(stdout_path, "w", stdout) || !freopen(err_path, "w", stderr))
            _exit(99);
        admin_ctx ctx = {.cfg = cfg, .json = json};
        store *s = NULL;
        if (admin_open_store(&ctx, &s) != EXIT_OK)
            _exit(98);
        int argc = 0;
        while (argv[argc])
            argc++;
        int rc = cmd(&ctx, s, argc, argv);
        fflush(stdout);
        fflush(stderr); /* a file now: buffered, and _exit flushes nothing */
        store_close(s);
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Runs relay-admin [--json] show KEY in a child (see run). */
static int run_show(uint8_t n, int json)
{
    uint8_t key[STORE_KEY_LEN] = {n};
    char hex[2 * STORE_KEY_LEN + 1];
    rl_hex_encode(key, STORE_KEY_LEN, hex);
    char *argv[] = {"show", hex, NULL};
    return run(cmd_show, json, out_path, argv);
}

static void read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

static void read_out(char *buf, size_t cap)
{
    read_file(out_path, buf, cap);
}

static void test_show(void)
{
    store_options so;
    config_store_options(cfg, &so);
    store *s = NULL;
    if (!ok(store_keyfile_ensure(so.key_file) == RL_OK && store_open(&so, &s) == RL_OK,
            "show: a store"))
        return;
    /* What X-Relay-TTL: 99999999999999999999999 could leave: an expiry
     * past any date, as a signed time_t or not, and a created as odd. */
    static const struct {
        uint64_t created, expires;
        const char *expires_text;
    } cases[] = {
        {1700000000, 1700003600, "2023-11-14T23:13:20Z (1700003600)"},
        {1700000000, INT64_MAX, "9223372036854775807 (after year 9999: not a date)"},
        {1700000000, 100000000000000000ULL, "100000000000000000 (after year 9999: not a date)"},
        {1700000000, UINT64_MAX, "18446744073709551615 (after year 9999: not a date)"},
        {UINT64_MAX, UINT64_MAX, "18446744073709551615 (after year 9999: not a date)"},
    };
    size_t ncases = sizeof cases / sizeof cases[0];
    int stored = 1;
    for (size_t i = 0; i < ncases; i++)
        stored &= put(s, (uint8_t)(i + 1), cases[i].created, cases[i].expires) == 0;
    ok(stored, "show: the entries are stored through the store API");
    store_close(s);
    for (size_t i = 0; i < ncases; i++) {
        char what[160], out[8192], want[160];
        snprintf(what, sizeof what, "show: expires %llu: exit 0, no crash",
                 (unsigned long long)cases[i].expires);
        is_int(run_show((uint8_t)(i + 1), 0), EXIT_OK, what);
        read_out(out, sizeof out);
        snprintf(want, sizeof want, "expires       %s", cases[i].expires_text);
        snprintf(what, sizeof what, "show: expires %llu is printed",
                 (unsigned long long)cases[i].expires);
        if (!ok(strstr(out, want) != NULL, what))
            printf("#   output: %s\n#   want:   %s\n", out, want);
        ok(strstr(out, "{\"ok\":1}") != NULL, "show: the stored answer follows");
        snprintf(what, sizeof what, "show --json: expires %llu: exit 0",
                 (unsigned long long)cases[i].expires);
        is_int(run_show((uint8_t)(i + 1), 1), EXIT_OK, what);
        read_out(out, sizeof out);
        snprintf(want, sizeof want, "\"expires\":%llu,", (unsigned long long)cases[i].expires);
        ok(strstr(out, want) != NULL, "show --json: the number as stored");
    }
}

/* ---- relay-admin token ------------------------------------------------------ */

#define OUT_MAX 16384
static char out[OUT_MAX], err[OUT_MAX];

/* relay-admin [--json] token ARGS... (NULL-terminated) in a child, stdout
 * to stdout_path (NULL: a file read into out), stderr read into err. */
static int token(int json, const char *stdout_path, ...)
{
    char *argv[32] = {"token"};
    int argc = 1;
    va_list ap;
    va_start(ap, stdout_path);
    for (char *a; argc < 31 && (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    int rc = run(cmd_token, json, stdout_path ? stdout_path : out_path, argv);
    out[0] = '\0';
    if (!stdout_path)
        read_out(out, sizeof out);
    read_file(err_path, err, sizeof err);
    return rc;
}

/* Whether s holds no token text and none of these texts' hashes. */
static int no_secret(const char *s, const char *const *texts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t h[AUTH_HASH_LEN];
        char hex[2 * AUTH_HASH_LEN + 1];
        auth_token_hash(texts[i], h);
        rl_hex_encode(h, sizeof h, hex);
        if (strstr(s, texts[i]) || strstr(s, hex) || strstr(s, hex + 8))
            return 0;
    }
    return !strstr(s, "rly-");
}

static void test_token(void)
{
    char ci[80], agent[80], rotated[80];
    is_int(token(0, NULL, "create", "--name", "ci", "--models", "gpt-4o*", "--budget-usd-day",
                 "0.10", "--rpm=60", NULL),
           EXIT_OK, "token create: exit 0");
    ok(strlen(out) == 69 && !strncmp(out, "rly-", 4) && out[68] == '\n',
       "stdout is the token's text alone, on one line");
    snprintf(ci, sizeof ci, "%.68s", out);
    ok(strstr(err, "shown only this once") && !strstr(err, "rly-"),
       "stderr says it is shown only this once, without showing it");
    printf("# %s", err);

    is_int(token(1, NULL, "create", "--name", "agent", "--upstreams", "openai", NULL), EXIT_OK,
           "--json token create");
    ok(!strncmp(out, "{\"token\":\"rly-", 14) && strstr(out, "\"name\":\"agent\""),
       "{\"token\": the text, then the token}");
    snprintf(agent, sizeof agent, "%.68s", out + 10);
    const char *texts[] = {ci, agent};

    is_int(token(0, NULL, "list", NULL), EXIT_OK, "token list");
    ok(strstr(out, "ID ") == out && strstr(out, "\n") && strstr(out, " ci ") &&
           strstr(out, " agent "),
       "a header and both tokens");
    ok(no_secret(out, texts, 2) && no_secret(err, texts, 2), "never a text or a hash");
    is_int(token(1, NULL, "list", NULL), EXIT_OK, "--json token list");
    ok(!strncmp(out, "{\"tokens\":[", 11) && no_secret(out, texts, 2), "JSON, without secrets");
    is_int(token(0, NULL, "show", "ci", NULL), EXIT_OK, "token show ci");
    ok(strstr(out, "usd a day      0.10\n") && strstr(out, "models         gpt-4o*\n") &&
           strstr(out, "rpm            60\n"),
       "its budget, models and limit");
    ok(no_secret(out, texts, 2), "never its text or hash");

    /* Refused inputs: exit 2 (4 for no such token, 1 for a name taken). */
    static const struct {
        const char *args[8];
        int rc;
        const char *says;
    } refused[] = {
        {{"create", "--name", "x", "--budget-usd-day", "0.1234567891"},
         EXIT_USAGE,
         "--budget-usd-day: \"0.1234567891\" is not an amount of USD"},
        {{"create", "--name", "x", "--rpm", "0"}, EXIT_USAGE, "--rpm: 0 would allow nothing"},
        {{"create", "--name", "x", "--upstreams", "nope"},
         EXIT_USAGE,
         "--upstreams: relay.ini has no [upstream.nope] (it has: openai)"},
        {{"create", "--name", "x", "--expires", "2020-01-01"}, EXIT_USAGE, "not in the future"},
        {{"create", "--rpm", "5"}, EXIT_USAGE, "a new token needs a name"},
        {{"create", "--name", "ci"}, EXIT_FAIL, "the name \"ci\" is taken by token"},
        {{"create", "--frob", "1"}, EXIT_USAGE, "unknown option --frob"},
        {{"create", "--name"}, EXIT_USAGE, "--name needs a value"},
        {{"create", "stray"}, EXIT_USAGE, "unexpected argument stray"},
        {{"show", "nobody"}, EXIT_NOTFOUND, "no token has the id or the name \"nobody\""},
        {{"show"}, EXIT_USAGE, "which token?"},
        {{"show", "ci", "agent"}, EXIT_USAGE, "unexpected argument agent"},
        {{"update", "ci"}, EXIT_USAGE, "nothing to change"},
        {{"update", "nobody", "--rpm", "1"}, EXIT_NOTFOUND, "no token has"},
        {{"rotate", "ci", "--grace", "soon"}, EXIT_USAGE, "--grace takes a duration"},
        {{"frob"}, EXIT_USAGE, "unknown subcommand frob"},
        {{NULL}, EXIT_USAGE, "which subcommand?"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *const *a = refused[i].args;
        char what[200];
        int rc = token(0, NULL, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
        snprintf(what, sizeof what, "token %s %s %s %s %s: exit %d", a[0] ? a[0] : "",
                 a[0] && a[1] ? a[1] : "", a[0] && a[1] && a[2] ? a[2] : "",
                 a[0] && a[1] && a[2] && a[3] ? a[3] : "",
                 a[0] && a[1] && a[2] && a[3] && a[4] ? a[4] : "", refused[i].rc);
        is_int(rc, refused[i].rc, what);
        if (!ok(strstr(err, refused[i].says) && !*out, "said on stderr, nothing on stdout"))
            printf("#   stderr: %s#   stdout: %s\n", err, out);
    }
    token(0, NULL, "list", NULL);
    ok(!strstr(out, " x "), "no refused create made a token");

    is_int(token(0, NULL, "update", "ci", "--budget-usd-day", "none", "--budget-usd-month=5", NULL),
           EXIT_OK, "token update");
    ok(strstr(out, "usd a day      none\n") && strstr(out, "usd a month    5.00\n"),
       "prints the token as changed");

    is_int(token(0, NULL, "rotate", "ci", "--grace", "1h", NULL), EXIT_OK, "token rotate --grace");
    ok(strlen(out) == 69 && !strncmp(out, "rly-", 4) && strncmp(out, ci, 68) != 0,
       "a new text, alone on stdout");
    snprintf(rotated, sizeof rotated, "%.68s", out);
    ok(strstr(err, "the old one works until"), "stderr: the old text's grace period");
    token(0, NULL, "show", "ci", NULL);
    ok(strstr(out, "old text until ") != NULL, "show says until when the old text works");
    const char *all[] = {ci, agent, rotated};
    ok(no_secret(out, all, 3), "and shows no text");

    is_int(token(0, NULL, "revoke", "ci", NULL), EXIT_OK, "token revoke");
    ok(strstr(out, "revoked token ") == out, "says so");
    is_int(token(0, NULL, "revoke", "ci", NULL), EXIT_OK, "revoke again: exit 0");
    ok(strstr(out, "was already revoked") != NULL, "says it already was");
    is_int(token(0, NULL, "update", "ci", "--rpm", "5", NULL), EXIT_FAIL,
           "update a revoked token: exit 1");
    ok(strstr(err, "is revoked: it cannot be changed"), "says why");
    is_int(token(0, NULL, "rotate", "ci", NULL), EXIT_FAIL, "rotate a revoked token: exit 1");
    ok(!*out, "no text");
    is_int(token(1, NULL, "show", "ci", NULL), EXIT_OK, "--json show of the revoked token");
    ok(strstr(out, "\"state\":\"revoked\"") && strstr(out, "\"grace_until\":null"),
       "revoked, and the old text's grace ended with it");

    /* A text nobody would get is not made. */
    is_int(token(0, "/dev/null", "create", "--name", "lost", NULL), EXIT_USAGE,
           "create with stdout on /dev/null: exit 2");
    ok(strstr(err, "stdout is /dev/null") != NULL, "says why");
    is_int(token(0, "/dev/full", "create", "--name", "full", NULL), EXIT_FAIL,
           "create with stdout on a full device: exit 1");
    ok(strstr(err, "it was removed again: nothing was created") != NULL, "says so");
    token(0, NULL, "list", NULL);
    ok(!strstr(out, "lost") && !strstr(out, "full"), "neither token exists");
    is_int(token(0, "/dev/null", "rotate", "agent", NULL), EXIT_USAGE,
           "rotate with stdout on /dev/null: exit 2");
    is_int(token(0, NULL, "show", "agent", NULL), EXIT_OK, "agent");
    ok(!strstr(out, "old text"), "was not rotated");
}

int main(void)
{
    rl_log_set_level(RL_LOG_ERROR);
    snprintf(tmp, sizeof tmp, "/tmp/t_admin.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ini, sizeof ini, "%s/relay.ini", tmp);
    snprintf(out_path, sizeof out_path, "%s/out.txt", tmp);
    snprintf(err_path, sizeof err_path, "%s/err.txt", tmp);
    FILE *f = fopen(ini, "w");
    if (!f)
        return 1;
    fprintf(f, "[store]\nhome = store\nkey_file = relay.key\ncache_mb = 8\n[fcgi]\nworkers = 1\n"
               "threads = 4\n[upstream.openai]\ntype = openai\n");
    fclose(f);
    rl_buf why;
    rl_buf_init(&why, 0);
    if (config_load(ini, &cfg, &why) != RL_OK) {
        printf("# %s\n", why.data);
        return 1;
    }
    rl_buf_release(&why);

    test_format_time();
    test_show();
    test_token();

    store_options so;
    config_store_options(cfg, &so);
    store_remove(&so);
    config_free(cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        perror(cmd);
    return tap_done();
}
