/*
 * t_admin.c — relay-admin's commands run in-process on a store of the
 * test's own (admin/ is linked in, less main.c): whatever a stored entry's
 * metadata holds, show prints it and exits 0 (defect 10: an expiry past
 * any date made show crash with SIGSEGV in strftime), and the time
 * formatting under it.
 *
 * Each command runs in a forked child with stdout sent to a file, so a
 * crash is reported as this test's failure with the signal, not as the
 * test binary dying. The store is closed in the parent before each fork
 * (a handle does not survive fork); the child opens its own.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin/admin.h"
#include "engine/entry.h"
#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "tests/unit/tap.h"

static char tmp[64], ini[128], out_path[128];
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
    rl_err e = entry_encode(&b, ENTRY_BODY, "application/json", &lab, "{\"ok\":1}", 8);
    store_meta m = {.created = created, .expires = expires};
    if (e == RL_OK)
        e = store_cache_put(s, key, &m, b.data, b.len);
    rl_buf_release(&b);
    return e == RL_OK ? 0 : -1;
}

/* Runs relay-admin [--json] show KEY in a child; its exit status (or 128 +
 * the signal that killed it), stdout in out_path. */
static int run_show(uint8_t n, int json)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(out_path, "w", stdout))
            _exit(99);
        admin_ctx ctx = {.cfg = cfg, .json = json};
        store *s = NULL;
        if (admin_open_store(&ctx, &s) != EXIT_OK)
            _exit(98);
        uint8_t key[STORE_KEY_LEN] = {n};
        char hex[2 * STORE_KEY_LEN + 1];
        rl_hex_encode(key, STORE_KEY_LEN, hex);
        char *argv[] = {"show", hex, NULL};
        int rc = cmd_show(&ctx, s, 2, argv);
        fflush(stdout);
        store_close(s);
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

static void read_out(char *buf, size_t cap)
{
    FILE *f = fopen(out_path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
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
