/*
 * t_budgets.c — what tokens and [budget] rows have spent and have left
 * (engine/budgets.h), read from a real store: each token's limits by window
 * and unit, what its ledger rows hold (spent and reserved), the remaining
 * amount (never below zero), a rotated token reported once (its live
 * record), revoked and expired tokens with their state, [budget] rows of
 * upstreams and models, the bound on tokens reported (live ones kept
 * first), and nothing that could present a token (its text or hash).
 *
 * Times are passed in: nothing sleeps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/auth.h"
#include "engine/budgets.h"
#include "store/base/rl_hex.h"
#include "store/ledger.h"
#include "store/store.h"
#include "store/token.h"
#include "tests/unit/tap.h"
#include "tests/unit/test_tokens.h"

#define T0 1813017600ull /* 2027-06-15 00:00:00 UTC, a Tuesday */
#define NUSD 1000000000ull

static char tmp[64], home[128], keyfile[160];

/* A token made an hour before T0. */
static store_token make(const char *name, char text[AUTH_TOKEN_LEN + 1])
{
    return test_token(name, T0 - 3600, text);
}

/* Spends amounts (usd in nano-USD, tokens, requests) in scope's minute,
 * day and month rows at now, as a settled request does. */
static void spend(store *s, const char *scope, uint64_t nusd, uint64_t tokens, uint64_t now)
{
    ledger_charge c[3];
    for (int w = 0; w < 3; w++)
        c[w] = (ledger_charge){.scope = scope,
                               .window = (ledger_window)(LEDGER_MINUTE + w),
                               .amount = {nusd, tokens, 1}};
    uint8_t id[LEDGER_ID_LEN];
    is_int(store_ledger_reserve(s, c, 3, now, id, NULL), RL_OK, "reserve");
    uint64_t actual[LEDGER_UNITS] = {nusd, tokens, 1};
    is_int(store_ledger_settle(s, id, actual, now), RL_OK, "settle");
}

static const budget_status *find_global(const budgets *b, budgets_kind k, const char *name)
{
    for (size_t i = b->ntokens; i < b->n; i++)
        if (b->v[i].kind == k && !strcmp(b->v[i].name, name))
            return &b->v[i];
    return NULL;
}

/* No token and no [budget] row yet: an empty report, not a qsort of NULL
 * (undefined behaviour even for no elements: make asan's UBSan stops on it,
 * and a worker built so died on every stats request of a fresh store). */
static void test_empty(store *s)
{
    budgets b;
    is_int(budgets_read(s, &(relay_config){0}, T0, &b), RL_OK, "an empty store reads");
    is_int((long long)b.n, 0, "nothing in it");
    ok(budgets_token(&b, "00000000") == NULL, "no token found");
    budgets_release(&b);
}

static void test_tokens(store *s)
{
    char text[AUTH_TOKEN_LEN + 1], text2[AUTH_TOKEN_LEN + 1], dead[AUTH_TOKEN_LEN + 1],
        gone[AUTH_TOKEN_LEN + 1];
    store_token t = make("ci agent", text);
    t.usd_day = 5 * NUSD;
    t.usd_month = 50 * NUSD;
    t.tokens_day = 100000;
    t.rpm = 60;
    t.tpm = 20000;
    is_int(store_token_put(s, &t, TOKEN_CREATE), RL_OK, "a token with every limit");
    /* Rotated: the old record is revoked, the new one keeps id and name. */
    store_token rotated;
    uint8_t new_hash[STORE_KEY_LEN];
    auth_token_new(text2);
    auth_token_hash(text2, new_hash);
    is_int(store_token_rotate(s, t.hash, new_hash, T0 - 60, T0 - 60, &rotated), RL_OK,
           "rotated (its old text revoked)");
    store_token r = make("revoked one", dead);
    r.revoked = T0 - 10;
    r.usd_day = NUSD;
    is_int(store_token_put(s, &r, TOKEN_CREATE), RL_OK, "a revoked token");
    store_token e = make("expired one", gone);
    e.expires = T0 - 1;
    is_int(store_token_put(s, &e, TOKEN_CREATE), RL_OK, "an expired token");

    char scope[64];
    snprintf(scope, sizeof scope, "token:%s", t.id);
    spend(s, scope, 1200000000, 3000, T0 + 100); /* $1.20 */
    spend(s, scope, 300000000, 1000, T0 + 110);  /* $0.30 */
    spend(s, scope, 9 * NUSD, 500, T0 - 86400);  /* yesterday: not today's, but this month's */
    /* A request under way: reserved, not spent. */
    ledger_charge c = {.scope = scope, .window = LEDGER_DAY, .amount = {NUSD / 2, 200, 1}};
    uint8_t hold[LEDGER_ID_LEN];
    is_int(store_ledger_reserve(s, &c, 1, T0 + 115, hold, NULL), RL_OK, "a reservation");

    budgets b;
    is_int(budgets_read(s, &(relay_config){0}, T0 + 118, &b), RL_OK, "read");
    is_int((long long)b.ntokens, 3, "three tokens: the rotated one once");
    is_int((long long)b.left_out, 0, "none left out");
    const budget_status *st = budgets_token(&b, t.id);
    ok(st != NULL, "found by its id");
    if (st) {
        is_str(st->name, "ci agent", "its name");
        is_str(store_token_state_name(st->state), "live", "the live record stands for it");
        const budget_period *day = &st->period[LEDGER_DAY];
        ok(day->charged && day->start == T0 && day->end == T0 + 86400, "today, UTC");
        is_int((long long)day->amount[LEDGER_USD].limit, (long long)(5 * NUSD), "$5 a day");
        is_int((long long)day->amount[LEDGER_USD].spent, 1500000000, "$1.50 spent today");
        is_int((long long)day->amount[LEDGER_USD].reserved, (long long)(NUSD / 2),
               "$0.50 reserved by the request under way");
        is_int((long long)budget_remaining(&day->amount[LEDGER_USD]), 3 * NUSD, "$3 left today");
        is_int((long long)day->amount[LEDGER_TOKENS].limit, 100000, "tokens a day");
        is_int((long long)day->amount[LEDGER_TOKENS].spent, 4000, "tokens today");
        is_int((long long)day->amount[LEDGER_REQUESTS].spent, 2, "requests today (no limit)");
        is_int((long long)day->amount[LEDGER_REQUESTS].limit, 0, "no limit on requests a day");
        const budget_period *month = &st->period[LEDGER_MONTH];
        is_int((long long)month->amount[LEDGER_USD].limit, (long long)(50 * NUSD), "$50 a month");
        is_int((long long)month->amount[LEDGER_USD].spent, 10500000000ll, "$10.50 this month");
        ok(month->start == 1811808000ull && month->end == 1814400000ull,
           "June 2027, the 1st to the 1st");
        const budget_period *minute = &st->period[LEDGER_MINUTE];
        is_int((long long)minute->amount[LEDGER_REQUESTS].limit, 60, "rpm");
        is_int((long long)minute->amount[LEDGER_TOKENS].limit, 20000, "tpm");
        is_int((long long)minute->amount[LEDGER_REQUESTS].spent, 2, "two requests this minute");
        is_int((long long)minute->amount[LEDGER_TOKENS].spent, 4000, "their tokens");
        is_int(st->unreadable, 0, "every row read");
    }
    const budget_status *rv = budgets_token(&b, r.id);
    ok(rv && rv->state == TOKEN_REVOKED, "a revoked token is reported as revoked");
    const budget_status *ex = budgets_token(&b, e.id);
    ok(ex && ex->state == TOKEN_EXPIRED, "an expired one as expired");
    ok(budgets_token(&b, "00000000") == NULL, "an unknown id is not found");

    /* Nothing in the report could be presented as a token. */
    char hex[2 * STORE_KEY_LEN + 1];
    int leak = 0;
    const char *texts[] = {text, text2, dead, gone};
    for (size_t i = 0; i < b.n; i++) {
        const unsigned char *p = (const unsigned char *)&b.v[i];
        for (size_t k = 0; k < 4; k++)
            leak |= memmem(p, sizeof b.v[i], texts[k] + 4, 16) != NULL;
        leak |= memmem(p, sizeof b.v[i], t.hash + 4, 8) != NULL;
        rl_hex_encode(t.hash, STORE_KEY_LEN, hex);
        leak |= memmem(p, sizeof b.v[i], hex + 8, 16) != NULL;
    }
    ok(!leak, "no token text, no hash, beyond the public id");
    budgets_release(&b);
    store_ledger_release(s, hold, T0 + 130);
}

static void test_globals(store *s)
{
    relay_config cfg = {0};
    cfg.budget.nlimits = 3;
    cfg.budget.limits[0] = (budget_limit){BUDGET_UPSTREAM, "openai", 20 * NUSD, 0, 0};
    cfg.budget.limits[1] = (budget_limit){BUDGET_MODEL, "gpt-4o", 0, 100 * NUSD, 500000};
    char longname[300];
    memset(longname, 'm', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cfg.budget.limits[2] = (budget_limit){BUDGET_MODEL, longname, NUSD, 0, 0};
    spend(s, "upstream:openai", 2 * NUSD, 10, T0 + 200);
    ledger_charge over = {.scope = "model:gpt-4o", .window = LEDGER_DAY, .amount = {0, 600000, 1}};
    uint8_t id[LEDGER_ID_LEN];
    is_int(store_ledger_reserve(s, &over, 1, T0 + 200, id, NULL), RL_OK, "a big reservation");
    uint64_t used[LEDGER_UNITS] = {0, 600000, 1};
    store_ledger_settle(s, id, used, T0 + 200);

    budgets b;
    is_int(budgets_read(s, &cfg, T0 + 300, &b), RL_OK, "read with [budget] rows");
    is_int((long long)(b.n - b.ntokens), 3, "every [budget] row, after the tokens");
    const budget_status *up = find_global(&b, BUDGETS_UPSTREAM, "openai");
    ok(up != NULL, "upstream openai");
    if (up) {
        is_str(budgets_kind_name(up->kind), "upstream", "its kind");
        is_str(up->id, "", "no id");
        ok(!up->period[LEDGER_MINUTE].charged, "no minute window for a [budget] row");
        is_int((long long)up->period[LEDGER_DAY].amount[LEDGER_USD].limit, (long long)(20 * NUSD),
               "its day budget");
        is_int((long long)up->period[LEDGER_DAY].amount[LEDGER_USD].spent, (long long)(2 * NUSD),
               "spent");
        is_int((long long)up->period[LEDGER_MONTH].amount[LEDGER_USD].limit, 0, "no month limit");
    }
    const budget_status *m = find_global(&b, BUDGETS_MODEL, "gpt-4o");
    ok(m != NULL, "model gpt-4o");
    if (m) {
        const budget_amount *tok = &m->period[LEDGER_DAY].amount[LEDGER_TOKENS];
        is_int((long long)tok->limit, 500000, "tokens a day");
        is_int((long long)tok->spent, 600000, "spent past it (the last request admitted)");
        is_int((long long)budget_remaining(tok), 0, "nothing left, never below zero");
    }
    const budget_status *lm = &b.v[b.n - 1]; /* file order; its name is cut */
    ok(lm->kind == BUDGETS_MODEL && lm->unreadable,
       "a name too long for a scope: unreadable, not an error");
    budgets_release(&b);
}

/* More tokens than are reported: the live ones are kept. */
static void test_bound(store *s)
{
    char text[AUTH_TOKEN_LEN + 1], name[32];
    for (int i = 0; i < BUDGETS_TOKENS + 40; i++) {
        snprintf(name, sizeof name, "bulk %d", i);
        store_token t = make(name, text);
        if (i < 30)
            t.revoked = T0 - 5; /* 30 revoked: they go first */
        if (store_token_put(s, &t, TOKEN_CREATE) != RL_OK) {
            ok(0, "put a bulk token");
            return;
        }
    }
    budgets b;
    is_int(budgets_read(s, &(relay_config){0}, T0 + 400, &b), RL_OK, "read many");
    is_int((long long)b.ntokens, BUDGETS_TOKENS, "at most BUDGETS_TOKENS reported");
    /* Earlier tests left one live token, and two that are not (and a
     * rotated token's old record, which shares its id). */
    is_int((long long)b.left_out, BUDGETS_TOKENS + 40 + 3 - BUDGETS_TOKENS,
           "the others counted as left out");
    size_t live = 0;
    int sorted = 1;
    for (size_t i = 0; i < b.ntokens; i++) {
        live += b.v[i].state == TOKEN_LIVE;
        if (i && strcmp(b.v[i - 1].id, b.v[i].id) >= 0)
            sorted = 0;
    }
    is_int((long long)live, BUDGETS_TOKENS, "every one reported is live");
    ok(sorted, "by id, so budgets_token finds them");
    ok(budgets_token(&b, b.v[BUDGETS_TOKENS / 2].id) == &b.v[BUDGETS_TOKENS / 2], "and it does");
    budgets_release(&b);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(tmp, sizeof tmp, "/tmp/t_budgets.XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(home, sizeof home, "%s/store", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);
    store_options o = {.home = home, .key_file = keyfile, .cache_mb = 8, .max_threads = 8};
    store *s = NULL;
    is_int(store_key_ensure(&o), RL_OK, "key file");
    is_int(store_open(&o, &s), RL_OK, "open a store");
    if (s) {
        test_empty(s);
        test_tokens(s);
        test_globals(s);
        test_bound(s);
        store_close(s);
    }
    store_remove(&o);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
