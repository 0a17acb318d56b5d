/*
 * budgets.c — what tokens and [budget] rows have spent and have left (see
 * budgets.h).
 */
#include "engine/budgets.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/base/rl_log.h"

/* Token records read from the table at most; a rotated token has several. */
#define SCAN_MAX (8 * BUDGETS_TOKENS)

/* Which limit of a token, and of a [budget] row, applies to a window and a
 * unit (offsets of uint64_t fields; NONE: that scope has no such limit),
 * as engine/spend.c charges them. */
#define NONE ((size_t)-1)
static const struct {
    ledger_window window;
    ledger_unit unit;
    size_t token, global;
} limits[] = {
    {LEDGER_MINUTE, LEDGER_REQUESTS, offsetof(store_token, rpm), NONE},
    {LEDGER_MINUTE, LEDGER_TOKENS, offsetof(store_token, tpm), NONE},
    {LEDGER_DAY, LEDGER_USD, offsetof(store_token, usd_day), offsetof(budget_limit, usd_day)},
    {LEDGER_DAY, LEDGER_TOKENS, offsetof(store_token, tokens_day),
     offsetof(budget_limit, tokens_day)},
    {LEDGER_MONTH, LEDGER_USD, offsetof(store_token, usd_month), offsetof(budget_limit, usd_month)},
};

/* The windows each kind of scope is charged in (spend.c charges_of). */
static const int charged[][LEDGER_MONTH + 1] = {
    [BUDGETS_TOKEN] = {[LEDGER_MINUTE] = 1, [LEDGER_DAY] = 1, [LEDGER_MONTH] = 1},
    [BUDGETS_UPSTREAM] = {[LEDGER_DAY] = 1, [LEDGER_MONTH] = 1},
    [BUDGETS_MODEL] = {[LEDGER_DAY] = 1, [LEDGER_MONTH] = 1},
};

static const char *const kind_prefix[] = {
    [BUDGETS_TOKEN] = "token", [BUDGETS_UPSTREAM] = "upstream", [BUDGETS_MODEL] = "model"};

const char *budgets_kind_name(budgets_kind k)
{
    return kind_prefix[k];
}

uint64_t budget_remaining(const budget_amount *a)
{
    uint64_t used = a->spent + a->reserved;
    return used < a->limit ? a->limit - used : 0;
}

/* ---- the token table -------------------------------------------------- */

/* What a report needs of a token record: no hash, no lists. */
typedef struct token_seen {
    char id[TOKEN_ID_LEN + 1];
    char name[TOKEN_NAME_MAX + 1];
    token_state state;
    uint64_t created, expires;
    uint64_t limit[sizeof limits / sizeof limits[0]];
} token_seen;

typedef struct scan_ctx {
    token_seen *v;
    size_t n, cap;
    uint64_t now;
    int nomem;
} scan_ctx;

static int seen_token(void *ctx, const uint8_t hash[STORE_KEY_LEN], const store_token *t)
{
    (void)hash;
    scan_ctx *c = ctx;
    if (!t)
        return 0; /* logged by the store; it allows nothing */
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        token_seen *v = realloc(c->v, cap * sizeof *v);
        if (!v) {
            c->nomem = 1;
            return 1;
        }
        c->v = v;
        c->cap = cap;
    }
    token_seen *s = &c->v[c->n++];
    memcpy(s->id, t->id, sizeof s->id);
    memcpy(s->name, t->name, sizeof s->name);
    s->state = store_token_state(t, c->now);
    s->created = t->created;
    s->expires = t->expires;
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        memcpy(&s->limit[i], (const char *)t + limits[i].token, sizeof s->limit[i]);
    return c->n == SCAN_MAX;
}

/* By id; for one id, the live record first, then the newest. */
static int by_id_best_first(const void *a, const void *b)
{
    const token_seen *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c)
        return c;
    if ((x->state == TOKEN_LIVE) != (y->state == TOKEN_LIVE))
        return x->state == TOKEN_LIVE ? -1 : 1;
    return x->created > y->created ? -1 : x->created < y->created;
}

/* Live tokens first, then by id: who is kept when there are too many. */
static int live_first(const void *a, const void *b)
{
    const token_seen *x = a, *y = b;
    if ((x->state == TOKEN_LIVE) != (y->state == TOKEN_LIVE))
        return x->state == TOKEN_LIVE ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const token_seen *)a)->id, ((const token_seen *)b)->id);
}

/* The tokens to report, one per id, into c->v[0..n): *left_out gets how
 * many ids were left out. */
static rl_err read_tokens(store *s, scan_ctx *c, size_t *left_out)
{
    rl_err err = store_token_scan(s, seen_token, c);
    if (err != RL_OK)
        return err;
    if (c->nomem)
        return RL_NOMEM;
    *left_out = 0;
    if (c->n == 0)
        return RL_OK; /* c->v is NULL, which qsort may not be given even for nothing */
    qsort(c->v, c->n, sizeof *c->v, by_id_best_first);
    size_t kept = 0;
    for (size_t i = 0; i < c->n; i++)
        if (kept == 0 || strcmp(c->v[kept - 1].id, c->v[i].id) != 0)
            c->v[kept++] = c->v[i];
    qsort(c->v, kept, sizeof *c->v, live_first);
    *left_out = kept > BUDGETS_TOKENS ? kept - BUDGETS_TOKENS : 0;
    c->n = kept - *left_out;
    qsort(c->v, c->n, sizeof *c->v, by_id);
    return RL_OK;
}

/* ---- the ledger --------------------------------------------------------- */

/* Reads st's charged windows from the ledger rows of scope at now. */
static rl_err read_periods(store *s, const char *scope, uint64_t now, budget_status *st)
{
    for (int w = LEDGER_MINUTE; w <= LEDGER_MONTH; w++) {
        budget_period *p = &st->period[w];
        p->charged = charged[st->kind][w];
        if (!p->charged)
            continue;
        ledger_row row;
        rl_err err = store_ledger_read(s, scope, (ledger_window)w, now, &row);
        if (err == RL_BAD_ENTRY || err == RL_BAD_REQUEST) {
            st->unreadable = 1; /* a row that does not decode, or a name no scope can hold */
            continue;
        }
        if (err != RL_OK)
            return err;
        p->start = row.start;
        p->end = row.end;
        for (int u = 0; u < LEDGER_UNITS; u++) {
            p->amount[u].spent = row.spent[u];
            p->amount[u].reserved = row.reserved[u];
        }
    }
    return RL_OK;
}

static rl_err token_status(store *s, const token_seen *t, uint64_t now, budget_status *st)
{
    st->kind = BUDGETS_TOKEN;
    memcpy(st->id, t->id, sizeof st->id);
    snprintf(st->name, sizeof st->name, "%s", t->name);
    st->state = t->state;
    st->expires = t->expires;
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        st->period[limits[i].window].amount[limits[i].unit].limit = t->limit[i];
    char scope[LEDGER_SCOPE_MAX + 1];
    snprintf(scope, sizeof scope, "token:%s", t->id);
    return read_periods(s, scope, now, st);
}

static rl_err global_status(store *s, const budget_limit *b, uint64_t now, budget_status *st)
{
    st->kind = b->scope == BUDGET_UPSTREAM ? BUDGETS_UPSTREAM : BUDGETS_MODEL;
    snprintf(st->name, sizeof st->name, "%s", b->name);
    st->state = TOKEN_LIVE;
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (limits[i].global != NONE)
            memcpy(&st->period[limits[i].window].amount[limits[i].unit].limit,
                   (const char *)b + limits[i].global, sizeof(uint64_t));
    char scope[LEDGER_SCOPE_MAX + 1];
    int n = snprintf(scope, sizeof scope, "%s:%s", kind_prefix[st->kind], b->name);
    if (n < 0 || (size_t)n >= sizeof scope) {
        st->unreadable = 1; /* longer than any scope: spend.c cannot count it either */
        return RL_OK;
    }
    return read_periods(s, scope, now, st);
}

rl_err budgets_read(store *s, const relay_config *cfg, uint64_t now, budgets *out)
{
    memset(out, 0, sizeof *out);
    scan_ctx c = {.now = now};
    rl_err err = read_tokens(s, &c, &out->left_out);
    if (err != RL_OK)
        goto out;
    out->v = calloc(c.n + cfg->budget.nlimits + 1, sizeof *out->v);
    if (!out->v) {
        err = RL_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < c.n && err == RL_OK; i++)
        err = token_status(s, &c.v[i], now, &out->v[out->n++]);
    out->ntokens = out->n;
    for (size_t i = 0; i < cfg->budget.nlimits && err == RL_OK; i++)
        err = global_status(s, &cfg->budget.limits[i], now, &out->v[out->n++]);
out:
    free(c.v);
    if (err != RL_OK)
        rl_warn("budgets: reading the tokens' and [budget] rows' spending failed: %s",
                rl_err_text(err));
    return err;
}

void budgets_release(budgets *b)
{
    free(b->v);
    memset(b, 0, sizeof *b);
}

static int status_id_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const budget_status *)elem)->id);
}

const budget_status *budgets_token(const budgets *b, const char *id)
{
    if (!b->v || !id)
        return NULL;
    return bsearch(id, b->v, b->ntokens, sizeof *b->v, status_id_cmp);
}
