/*
 * relay-test-token.c — makes a Relay client token in the store of a
 * relay.ini, for the end-to-end and browser tests (tests/e2e, tests/browser)
 * until `relay-admin token create` exists: they send requests with tokens
 * and look for their budgets and refusals in the stats API, the metrics and
 * the dashboard. Not installed, not part of Relay.
 *
 *   relay-test-token -c relay.ini NAME [usd_day=USD] [usd_month=USD]
 *                    [tokens_day=N] [rpm=N] [tpm=N] [models=PATTERN,...]
 *                    [revoked]
 *
 * Prints "TOKEN ID": the token's text (as a client presents it) and its
 * public id. The store is opened as relay-admin opens it (shared), so it
 * runs while Relay serves. Exit 0, or 1 with the reason on stderr; 2 for
 * bad arguments.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/auth.h"
#include "engine/config.h"
#include "store/base/rl_log.h"
#include "store/store.h"
#include "store/token.h"

/* An unsigned number, or a USD amount in nano-USD (usd != 0). -1 if v is not one. */
static int number(const char *v, int usd, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (usd) {
        double d = strtod(v, &end);
        if (errno || end == v || *end || !(d >= 0) || d > 1e9)
            return -1;
        *out = (uint64_t)(d * 1e9 + 0.5);
        return 0;
    }
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-')
        return -1;
    *out = n;
    return 0;
}

/* "models=a,b": the patterns, at most TOKEN_LIST_MAX. -1 if they do not fit. */
static int models(const char *v, store_token *t)
{
    while (*v) {
        size_t n = strcspn(v, ",");
        if (t->n_models == TOKEN_LIST_MAX || n == 0 || n > TOKEN_ITEM_MAX)
            return -1;
        memcpy(t->models[t->n_models], v, n);
        t->models[t->n_models++][n] = '\0';
        v += n + (v[n] == ',');
    }
    return 0;
}

/* One NAME=VALUE (or "revoked") argument into t; -1 when it is not one. */
static int option(const char *arg, store_token *t, uint64_t now)
{
    static const struct {
        const char *name;
        size_t offset;
        int usd;
    } limits[] = {
        {"usd_day", offsetof(store_token, usd_day), 1},
        {"usd_month", offsetof(store_token, usd_month), 1},
        {"tokens_day", offsetof(store_token, tokens_day), 0},
        {"rpm", offsetof(store_token, rpm), 0},
        {"tpm", offsetof(store_token, tpm), 0},
    };
    if (strcmp(arg, "revoked") == 0) {
        t->revoked = now;
        return 0;
    }
    const char *eq = strchr(arg, '=');
    if (!eq)
        return -1;
    size_t n = (size_t)(eq - arg);
    if (n == 6 && strncmp(arg, "models", 6) == 0)
        return models(eq + 1, t);
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (strlen(limits[i].name) == n && strncmp(arg, limits[i].name, n) == 0)
            return number(eq + 1, limits[i].usd, (uint64_t *)((char *)t + limits[i].offset));
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[1], "-c") != 0) {
        fprintf(stderr, "usage: relay-test-token -c relay.ini NAME [usd_day=USD] [usd_month=USD] "
                        "[tokens_day=N] [rpm=N] [tpm=N] [models=PATTERN,...] [revoked]\n");
        return 2;
    }
    rl_log_set_level(RL_LOG_WARN);
    uint64_t now = (uint64_t)time(NULL);
    char text[AUTH_TOKEN_LEN + 1];
    store_token t;
    memset(&t, 0, sizeof t);
    if (auth_token_new(text) != RL_OK) {
        fprintf(stderr, "relay-test-token: no random bytes\n");
        return 1;
    }
    auth_token_hash(text, t.hash);
    store_token_id_of(t.hash, t.id);
    snprintf(t.name, sizeof t.name, "%s", argv[3]);
    t.created = now;
    for (int i = 4; i < argc; i++)
        if (option(argv[i], &t, now) != 0) {
            fprintf(stderr, "relay-test-token: not an option: %s\n", argv[i]);
            return 2;
        }

    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    store *s = NULL;
    int rc = 1;
    if (config_load(argv[2], &cfg, &why) != RL_OK) {
        fprintf(stderr, "relay-test-token: %s\n", why.data ? why.data : argv[2]);
        goto out;
    }
    store_options so;
    config_store_options(cfg, &so);
    if (store_open(&so, &s) != RL_OK) {
        fprintf(stderr, "relay-test-token: cannot open the store at %s\n", cfg->store.home);
        goto out;
    }
    rl_err err = store_token_put(s, &t, TOKEN_CREATE);
    if (err != RL_OK) {
        fprintf(stderr, "relay-test-token: storing the token failed: %s\n", rl_err_text(err));
        goto out;
    }
    printf("%s %s\n", text, t.id);
    rc = 0;
out:
    if (s)
        store_close(s);
    config_free(cfg);
    rl_buf_release(&why);
    return rc;
}
