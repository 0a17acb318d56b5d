/*
 * t_secret.c — secret files (store/secret.c), the hex and secure helpers
 * under them (store/base/rl_hex.c, rl_secure.c), and the store's key taken
 * from a file or from [store] key_env (store/keyfile.c).
 *
 * Everything lives in a mkdtemp directory. The atomic-replacement check
 * forks a reader that reads the file in a loop while the parent replaces
 * it; they meet through a pipe, never through time.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "store/base/rl_secure.h"
#include "store/keyfile.h"
#include "store/secret.h"
#include "store/store.h"
#include "tests/unit/tap.h"

static char tmp[64];

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmp, name);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len)
        perror(path);
    fchmod(fd, mode);
    close(fd);
}

static void test_hex(void)
{
    uint8_t bytes[256], back[256];
    char hex[2 * sizeof bytes + 1];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)i;
    rl_hex_encode(bytes, sizeof bytes, hex);
    is_int(strlen(hex), 512, "hex: two digits a byte, NUL-terminated");
    ok(strncmp(hex, "000102", 6) == 0 && strcmp(hex + 506, "fdfeff") == 0,
       "hex: lowercase, high nibble first");
    is_int(rl_hex_decode(hex, strlen(hex), back), 0, "hex: decodes its own output");
    ok(memcmp(bytes, back, sizeof bytes) == 0, "hex: round trip of every byte value");
    is_int(rl_hex_decode("DEADbeef", 8, back), 0, "hex: either case decodes");
    ok(back[0] == 0xde && back[1] == 0xad && back[2] == 0xbe && back[3] == 0xef,
       "hex: DEADbeef is de ad be ef");
    back[1] = 0x55;
    is_int(rl_hex_decode("3fa", 3, back), 0, "hex: an odd number of digits (a key prefix)");
    ok(back[0] == 0x3f && back[1] == 0xa0, "hex: the odd last digit is a high nibble");
    is_int(rl_hex_decode("12x4", 4, back), -1, "hex: a non-digit is refused");
    is_int(rl_hex_decode("12 4", 4, back), -1, "hex: a space is refused");
    is_int(rl_hex_digit('g'), -1, "hex: g is no digit");
    is_int(rl_hex_digit('F'), 15, "hex: F is 15");
    rl_hex_encode(bytes, 0, hex);
    is_str(hex, "", "hex: nothing encodes to the empty string");
}

static void test_secure(void)
{
    is_int(rl_ct_equal("secret", 6, "secret", 6), 1, "ct: equal bytes");
    is_int(rl_ct_equal("secret", 6, "secreT", 6), 0, "ct: the last byte differs");
    is_int(rl_ct_equal("Secret", 6, "secret", 6), 0, "ct: the first byte differs");
    is_int(rl_ct_equal("secre", 5, "secret", 6), 0, "ct: a prefix is not equal");
    is_int(rl_ct_equal("secrets", 7, "secret", 6), 0, "ct: a longer guess is not equal");
    is_int(rl_ct_equal("", 0, "", 0), 1, "ct: two empty strings are equal");
    is_int(rl_ct_equal("", 0, "x", 1), 0, "ct: empty against one byte");
    char buf[16];
    memset(buf, 'k', sizeof buf);
    rl_secure_zero(buf, sizeof buf);
    int zero = 1;
    for (size_t i = 0; i < sizeof buf; i++)
        zero &= buf[i] == 0;
    ok(zero, "secure_zero wipes every byte");
    rl_secure_zero(NULL, 3);
    rl_secure_free(NULL, 3);
    uint8_t r1[32], r2[32];
    is_int(rl_random(r1, sizeof r1), RL_OK, "random: 32 bytes");
    is_int(rl_random(r2, sizeof r2), RL_OK, "random: 32 more");
    ok(memcmp(r1, r2, sizeof r1) != 0, "random: two draws differ");
}

static void test_read(void)
{
    char p[256];
    secret s;
    rl_buf why;
    rl_buf_init(&why, 0);

    path_in(p, sizeof p, "good.key");
    write_file(p, "0123456789abcdef\r\n \t", 20, 0600);
    is_int(secret_read(p, &s, &why), RL_OK, "read: a 0600 file");
    is_str(s.data, "0123456789abcdef", "read: trailing whitespace removed");
    is_int(s.len, 16, "read: its length");
    is_int(s.mode, 0600, "read: its mode");
    is_int(secret_access_of(s.mode), SECRET_PRIVATE, "read: 0600 is private");
    secret_release(&s);
    ok(s.data == NULL && s.len == 0, "release empties it");
    secret_release(&s); /* twice is harmless */

    chmod(p, 0640);
    is_int(secret_read(p, &s, &why), RL_OK, "read: a 0640 file is allowed (the group's choice)");
    is_int(secret_access_of(s.mode), SECRET_GROUP, "read: 0640 is the group's");
    secret_release(&s);

    static const unsigned open_modes[] = {0644, 0604, 0602, 0601, 0666};
    for (size_t i = 0; i < sizeof open_modes / sizeof open_modes[0]; i++) {
        chmod(p, open_modes[i]);
        rl_buf_reset(&why);
        char what[64];
        snprintf(what, sizeof what, "read: mode %03o refused", open_modes[i]);
        is_int(secret_read(p, &s, &why), RL_FORBIDDEN, what);
        ok(s.data == NULL, "read: nothing handed out when refused");
        is_int(s.mode, open_modes[i], "read: the refused file's mode is told");
    }
    ok(why.data && strstr(why.data, "chmod 600") && strstr(why.data, p),
       "read: the reason names the file and the fix");
    ok(why.data && !strstr(why.data, "0123456789abcdef"),
       "read: the reason never holds the secret");

    rl_buf_reset(&why);
    path_in(p, sizeof p, "missing.key");
    is_int(secret_read(p, &s, &why), RL_NOTFOUND, "read: a missing file");
    ok(why.data && strstr(why.data, p), "read: the reason names the missing file");

    path_in(p, sizeof p, "empty.key");
    write_file(p, "\n\n  \n", 5, 0600);
    is_int(secret_read(p, &s, &why), RL_CONFIG, "read: only whitespace is empty");
    path_in(p, sizeof p, "binary.key");
    write_file(p, "abc\0def\n", 8, 0600);
    is_int(secret_read(p, &s, &why), RL_CONFIG, "read: a NUL byte is refused");
    path_in(p, sizeof p, "huge.key");
    static char huge[SECRET_MAX + 10];
    memset(huge, 'a', sizeof huge);
    write_file(p, huge, sizeof huge, 0600);
    is_int(secret_read(p, &s, &why), RL_CONFIG, "read: longer than SECRET_MAX is refused");
    write_file(p, huge, SECRET_MAX, 0600);
    is_int(secret_read(p, &s, &why), RL_OK, "read: exactly SECRET_MAX is read");
    is_int(s.len, SECRET_MAX, "read: all of it");
    secret_release(&s);
    path_in(p, sizeof p, "fifo.key");
    mkfifo(p, 0600);
    is_int(secret_read(p, &s, &why), RL_CONFIG, "read: a FIFO is refused, without hanging");
    path_in(p, sizeof p, "dir.key");
    mkdir(p, 0700);
    is_int(secret_read(p, &s, &why), RL_CONFIG, "read: a directory is refused");

    rl_buf_reset(&why);
    setenv("T_SECRET_ENV", "from-the-environment\n", 1);
    is_int(secret_from_env("T_SECRET_ENV", &s, &why), RL_OK, "env: a set variable");
    is_str(s.data, "from-the-environment", "env: its value, trailing newline removed");
    is_int(s.mode, 0, "env: no mode");
    secret_release(&s);
    setenv("T_SECRET_ENV", "", 1);
    is_int(secret_from_env("T_SECRET_ENV", &s, &why), RL_NOTFOUND, "env: empty");
    setenv("T_SECRET_ENV", " \n", 1);
    is_int(secret_from_env("T_SECRET_ENV", &s, &why), RL_NOTFOUND, "env: only whitespace");
    unsetenv("T_SECRET_ENV");
    rl_buf_reset(&why);
    is_int(secret_from_env("T_SECRET_ENV", &s, &why), RL_NOTFOUND, "env: unset");
    ok(why.data && strstr(why.data, "T_SECRET_ENV") && strstr(why.data, "not set"),
       "env: the reason names the variable");
    rl_buf_release(&why);
}

/* Names in tmp starting with prefix (leftover temporary files). */
static int count_named(const char *prefix)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '^%s' > /dev/null", tmp, prefix);
    return system(cmd) == 0;
}

static void test_write(void)
{
    char p[256], q[256];
    secret s, t;
    rl_buf why;
    rl_buf_init(&why, 0);
    /* The umask must be neither relied on (0: the file would be 0666)
     * nor changed. */
    mode_t old_umask = umask(0);
    path_in(p, sizeof p, "deep/er/new.key");
    is_int(secret_write(p, "one\n", 4, 0, &why), RL_IO, "write: a missing directory fails");
    is_int(secret_write(p, "one\n", 4, SECRET_MKDIRS, &why), RL_OK, "write: with its directories");
    struct stat st;
    is_int(stat(p, &st), 0, "write: the file exists");
    is_int(st.st_mode & 0777, 0600, "write: mode 0600 whatever the umask");
    path_in(q, sizeof q, "deep/er");
    stat(q, &st);
    is_int(st.st_mode & 0777, 0700, "write: new directories are 0700");
    is_int(umask(old_umask), 0, "write: the process umask is left as it was");

    is_int(secret_write(p, "two\n", 4, 0, &why), RL_BUSY, "write: never replaces unasked");
    is_int(secret_read(p, &s, &why), RL_OK, "write: read back");
    is_str(s.data, "one", "write: the first one stands");
    secret_release(&s);

    ino_t before = (stat(p, &st), st.st_ino);
    is_int(secret_write(p, "three\n", 6, SECRET_REPLACE, &why), RL_OK, "write: replace");
    is_int(secret_read(p, &s, &why), RL_OK, "write: read the replacement");
    is_str(s.data, "three", "write: replaced");
    stat(p, &st);
    ok(st.st_ino != before, "write: replaced by rename (a new inode), not rewritten in place");
    is_int(st.st_mode & 0777, 0600, "write: the replacement is 0600 too");

    path_in(q, sizeof q, "copy.key");
    is_int(secret_save(q, &s, 0, &why), RL_OK, "save: a read secret written again");
    is_int(secret_read(q, &t, &why), RL_OK, "save: read back");
    is_int(secret_equal(&s, &t), 1, "save: the same secret");
    secret_release(&t);
    secret_release(&s);
    ok(!count_named("copy.key.tmp") && !count_named("new.key.tmp"), "write: no temporary left");

    path_in(p, sizeof p, "random.key");
    is_int(secret_create_random(p, 32, 0, &why), RL_OK, "random: created");
    is_int(secret_read(p, &s, &why), RL_OK, "random: readable");
    is_int(s.len, 64, "random: 64 hex digits");
    uint8_t raw[32];
    is_int(rl_hex_decode(s.data, s.len, raw), 0, "random: hex");
    is_int(secret_create_random(p, 32, 0, &why), RL_BUSY, "random: an existing file is kept");
    is_int(secret_read(p, &t, &why), RL_OK, "random: read again");
    is_int(secret_equal(&s, &t), 1, "random: unchanged");
    secret_release(&t);
    path_in(q, sizeof q, "random2.key");
    secret_create_random(q, 32, 0, &why);
    secret_read(q, &t, &why);
    is_int(secret_equal(&s, &t), 0, "random: two files differ");
    secret_release(&t);
    secret_release(&s);

    /* A symlink planted at the temporary name is not followed. */
    path_in(p, sizeof p, "planted.key");
    char tmpname[300], target[256];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", p, (long)getpid());
    path_in(target, sizeof target, "planted-target");
    symlink(target, tmpname);
    is_int(secret_write(p, "x\n", 2, 0, &why), RL_OK, "write: over a planted temporary link");
    ok(access(target, F_OK) != 0, "write: the link's target was never created");
    rl_buf_release(&why);
}

/* A reader sees either the whole old secret or the whole new one while the
 * file is replaced again and again. */
static void test_atomic_replace(void)
{
    char p[256];
    path_in(p, sizeof p, "swap.key");
    static const char *const values[] = {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                         "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"};
    secret_write(p, values[0], strlen(values[0]), 0, NULL);
    int stop[2];
    if (pipe(stop) != 0)
        return;
    pid_t child = fork();
    if (child == 0) {
        close(stop[1]);
        fcntl(stop[0], F_SETFL, O_NONBLOCK);
        int bad = 0, reads = 0;
        char c;
        while (read(stop[0], &c, 1) < 0 && errno == EAGAIN) {
            secret s;
            rl_err e = secret_read(p, &s, NULL);
            if (e != RL_OK || (strcmp(s.data, values[0]) != 0 && strcmp(s.data, values[1]) != 0))
                bad++;
            secret_release(&s);
            reads++;
        }
        _exit(bad ? 1 : reads > 0 ? 0 : 2);
    }
    close(stop[0]);
    int failed = 0;
    for (int i = 0; i < 2000; i++)
        failed |= secret_write(p, values[i % 2], strlen(values[i % 2]), SECRET_REPLACE, NULL);
    close(stop[1]);
    int status = 0;
    waitpid(child, &status, 0);
    is_int(failed, RL_OK, "atomic: 2000 replacements");
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
       "atomic: a concurrent reader only ever saw a whole secret");
}

/* The store's key from [store] key_env, and the same secret from a file. */
static void test_store_key_env(void)
{
    char home[256], keyfile[256];
    path_in(home, sizeof home, "store");
    path_in(keyfile, sizeof keyfile, "store.key");
    static const char key[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    store_options o = {.home = home,
                       .key_file = "/nonexistent/never/read",
                       .key_env = "T_SECRET_STORE_KEY",
                       .cache_mb = 8,
                       .max_threads = 16};
    store *s = NULL;
    unsetenv("T_SECRET_STORE_KEY");
    is_int(store_key_ensure(&o), RL_OK, "key_env: nothing to create");
    ok(access("/nonexistent/never/read", F_OK) != 0, "key_env: no key file made");
    is_int(store_open(&o, &s), RL_STORE, "key_env: an unset variable is refused");
    setenv("T_SECRET_STORE_KEY", key, 1);
    is_int(store_open(&o, &s), RL_OK, "key_env: the store opens with the variable's secret");
    store_close(s);
    s = NULL;
    write_file(keyfile, key, strlen(key), 0600);
    store_options f = o;
    f.key_env = "";
    f.key_file = keyfile;
    is_int(store_open(&f, &s), RL_OK, "key_env: the same secret in key_file opens it too");
    store_close(s);
    s = NULL;
    setenv("T_SECRET_STORE_KEY", "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
           1);
    is_int(store_open(&o, &s), RL_STORE, "key_env: another secret is refused");
    store_key_ensure(&o);
    char *k = NULL;
    size_t n = 0;
    setenv("T_SECRET_STORE_KEY", key, 1);
    is_int(store_key_read(&o, &k, &n), RL_OK, "key_env: store_key_read takes the variable");
    is_int(n, 64, "key_env: all of it");
    store_secret_free(k, n);
    store_remove(&o);
    unsetenv("T_SECRET_STORE_KEY");
}

int main(void)
{
    rl_log_set_level(RL_LOG_ERROR);
    snprintf(tmp, sizeof tmp, "/tmp/t_secret.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_hex();
    test_secure();
    test_read();
    test_write();
    test_atomic_replace();
    test_store_key_env();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        perror(cmd);
    return tap_done();
}
