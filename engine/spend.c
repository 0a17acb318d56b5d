/*
 * spend.c — Relay client tokens, budgets and rate limits in the request
 * flow (see spend.h).
 */
#include "engine/spend.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/auth.h"
#include "engine/pricing.h"
#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"

/* ---- who may spend -------------------------------------------------------- */

int spend_authorize(exchange *x, const char *credential)
{
    spend_state *sp = &x->spend;
    const char *token =
        x->cfg->auth.mode != AUTH_MODE_PASSTHROUGH ? auth_token_of(credential) : NULL;
    if (!token) {
        if (x->cfg->auth.mode != AUTH_MODE_TOKENS)
            return 0; /* the client's own key, passed through */
        x->rejected = "token_required";
        exchange_fail(x, RL_UNAUTHORIZED,
                      "This Relay accepts only its own client tokens (rly-...): ask its "
                      "administrator for one ([auth] mode = tokens).");
        return -1;
    }
    store *s = exchange_shared(x);
    if (!s) {
        x->rejected = "unverifiable";
        exchange_fail(x, RL_STORE,
                      "Relay cannot check client tokens while its store is unavailable.");
        return -1;
    }
    uint8_t hash[AUTH_HASH_LEN];
    auth_token_hash(token, hash);
    sp->token = rl_palloc(x->req->pool, sizeof *sp->token);
    if (!sp->token) {
        exchange_fail(x, RL_NOMEM, NULL);
        return -1;
    }
    rl_err err = store_token_get(s, hash, sp->token);
    if (err == RL_NOTFOUND) {
        x->rejected = "token_unknown";
        exchange_fail(x, RL_UNAUTHORIZED, "This Relay token is not known.");
        return -1;
    }
    if (err != RL_OK) {
        x->rejected = "unverifiable";
        exchange_fail(x, RL_STORE, "Relay could not check this token.");
        return -1;
    }
    token_state st = store_token_state(sp->token, x->now);
    if (st != TOKEN_LIVE) {
        x->rejected = st == TOKEN_REVOKED ? "token_revoked" : "token_expired";
        exchange_fail(x, RL_UNAUTHORIZED,
                      st == TOKEN_REVOKED ? "This Relay token was revoked."
                                          : "This Relay token has expired.");
        return -1;
    }
    const upstream_config *up = x->rt.upstream;
    if (!store_token_allows(sp->token, up->name, NULL)) {
        x->rejected = "forbidden_upstream";
        exchange_fail(x, RL_FORBIDDEN, "This Relay token may not use this API (upstream).");
        return -1;
    }
    const char *why = NULL;
    sp->held_key = auth_held_key(x->w->e->held, up, &why);
    if (!sp->held_key) {
        rl_warn("token %s: refused: upstream %s: %s", sp->token->id, up->name, why);
        exchange_fail(x, RL_CONFIG,
                      "Relay holds no key for this API, so it cannot serve Relay tokens here "
                      "(its administrator sets [upstream.NAME] api_key_file).");
        return -1;
    }
    sp->has_token = 1;
    char hex[33];
    rl_hex_encode(hash, 16, hex);
    snprintf(sp->scope, sizeof sp->scope, "tok:%s", hex);
    snprintf(x->client, sizeof x->client, "%s", sp->token->id);
    return 0;
}

int spend_allows(exchange *x)
{
    if (!x->spend.has_token || store_token_allows(x->spend.token, NULL, x->info.model))
        return 0;
    x->rejected = "forbidden_model";
    exchange_fail(x, RL_FORBIDDEN, "This Relay token may not use this model.");
    return -1;
}

/* ---- reserving ------------------------------------------------------------ */

/* The rows a request charges and what each means, for the refusal's words. */
typedef struct charge_set {
    ledger_charge c[8];
    char scopes[3][LEDGER_SCOPE_MAX + 1];
    const char *what[8]; /* "token NAME (ID)", "upstream openai", "model gpt-4o" */
    char names[3][TOKEN_NAME_MAX + 32];
    unsigned n;
} charge_set;

static void add(charge_set *cs, const char *scope, const char *what, ledger_window w,
                const uint64_t amount[LEDGER_UNITS], uint64_t usd, uint64_t tokens,
                uint64_t requests)
{
    ledger_charge *c = &cs->c[cs->n];
    c->scope = scope;
    c->window = w;
    memcpy(c->amount, amount, sizeof c->amount);
    c->limit[LEDGER_USD] = usd;
    c->limit[LEDGER_TOKENS] = tokens;
    c->limit[LEDGER_REQUESTS] = requests;
    /* Admitted while anything is left: a worst case reserves far more
     * than most requests use (an uncapped output), and a strict check
     * would refuse requests long before a budget is spent. The overshoot
     * stays within the one request admitted last (ledger.h). */
    c->partial = 1;
    cs->what[cs->n++] = what;
}

/* The [budget] limits of scope for name (a model matches exactly or by its
 * family), or NULL. */
static const budget_limit *global_budget(const relay_config *cfg, budget_scope scope,
                                         const char *name)
{
    char family[256];
    if (scope == BUDGET_MODEL)
        pricing_family(name, family, sizeof family);
    for (size_t i = 0; i < cfg->budget.nlimits; i++) {
        const budget_limit *b = &cfg->budget.limits[i];
        if (b->scope == scope &&
            (strcmp(b->name, name) == 0 || (scope == BUDGET_MODEL && strcmp(b->name, family) == 0)))
            return b;
    }
    return NULL;
}

/* The worst case of x: its prompt estimated at a token per 4 bytes of body
 * (English text averages about that; the answer settles the real count),
 * its output cap (or [budget] default_max_output), one request. */
static void estimate(exchange *x, uint64_t out[LEDGER_UNITS])
{
    int64_t input = (int64_t)(x->req->body_len / 4) + 1;
    int64_t output =
        x->info.max_output >= 0 ? x->info.max_output : x->cfg->budget.default_max_output;
    const model_price *price = pricing_find(x->cfg, x->info.model);
    prov_usage u = {.input = input, .output = output, .cached_input = 0, .cache_write = 0};
    out[LEDGER_USD] = price ? pricing_cost(price, &u) : 0;
    out[LEDGER_TOKENS] = (uint64_t)(input + output);
    out[LEDGER_REQUESTS] = 1;
}

static void charges_of(exchange *x, const uint64_t est[LEDGER_UNITS], charge_set *cs)
{
    cs->n = 0;
    const store_token *t = x->spend.token;
    if (x->spend.has_token) {
        snprintf(cs->scopes[0], sizeof cs->scopes[0], "token:%s", t->id);
        snprintf(cs->names[0], sizeof cs->names[0], "token \"%s\" (%s)", t->name, t->id);
        uint64_t minute[LEDGER_UNITS] = {0, est[LEDGER_TOKENS], 1};
        add(cs, cs->scopes[0], cs->names[0], LEDGER_DAY, est, t->usd_day, t->tokens_day, 0);
        add(cs, cs->scopes[0], cs->names[0], LEDGER_MONTH, est, t->usd_month, 0, 0);
        add(cs, cs->scopes[0], cs->names[0], LEDGER_MINUTE, minute, 0, t->tpm, t->rpm);
    }
    const budget_limit *b = global_budget(x->cfg, BUDGET_UPSTREAM, x->rt.upstream->name);
    if (b) {
        snprintf(cs->scopes[1], sizeof cs->scopes[1], "upstream:%s", b->name);
        snprintf(cs->names[1], sizeof cs->names[1], "upstream %s", b->name);
        add(cs, cs->scopes[1], cs->names[1], LEDGER_DAY, est, b->usd_day, b->tokens_day, 0);
        add(cs, cs->scopes[1], cs->names[1], LEDGER_MONTH, est, b->usd_month, 0, 0);
    }
    b = x->info.model[0] ? global_budget(x->cfg, BUDGET_MODEL, x->info.model) : NULL;
    if (b) {
        snprintf(cs->scopes[2], sizeof cs->scopes[2], "model:%s", b->name);
        snprintf(cs->names[2], sizeof cs->names[2], "model %s", b->name);
        add(cs, cs->scopes[2], cs->names[2], LEDGER_DAY, est, b->usd_day, b->tokens_day, 0);
        add(cs, cs->scopes[2], cs->names[2], LEDGER_MONTH, est, b->usd_month, 0, 0);
    }
}

/* "$1.25" from nano-USD (to the cent, or finer for amounts under a cent). */
static void usd_text(uint64_t nusd, char *out, size_t cap)
{
    if (nusd >= 10000000 || nusd == 0)
        snprintf(out, cap, "$%" PRIu64 ".%02" PRIu64, nusd / 1000000000,
                 (nusd % 1000000000) / 10000000);
    else
        snprintf(out, cap, "$%.6f", (double)nusd / 1e9);
}

/* The refusal's words: which budget, how much of it is used, when it resets. */
static const char *refusal_text(exchange *x, const charge_set *cs, const ledger_refusal *r)
{
    static const char *const per[] = {
        [LEDGER_MINUTE] = "minute", [LEDGER_DAY] = "day (UTC)", [LEDGER_MONTH] = "month (UTC)"};
    char used[32], limit[32];
    if (r->unit == LEDGER_USD) {
        usd_text(r->used, used, sizeof used);
        usd_text(r->limit, limit, sizeof limit);
    } else {
        snprintf(used, sizeof used, "%" PRIu64, r->used);
        snprintf(limit, sizeof limit, "%" PRIu64, r->limit);
    }
    uint64_t wait = r->reset > x->now ? r->reset - x->now : 1;
    rl_buf b;
    rl_buf_init(&b, 1024);
    rl_buf_printf(
        &b, "Relay %s of %s exhausted: %s of %s %s per %s used; it resets in %" PRIu64 " s.",
        cs->c[r->charge].window == LEDGER_MINUTE ? "rate limit" : "budget", cs->what[r->charge],
        used, limit, ledger_unit_name(r->unit), per[cs->c[r->charge].window], wait);
    char *s = rl_buf_error(&b) == RL_OK && b.data ? rl_pstrdup(x->req->pool, b.data) : NULL;
    rl_buf_release(&b);
    return s;
}

/* X-Relay-Budget-Remaining: the least USD left in the day and month rows
 * just reserved in (or tokens, when no budget is in USD). */
static void remaining_header(exchange *x, store *s, const charge_set *cs)
{
    int have = 0, usd = 0;
    uint64_t least = 0;
    const char *window = "";
    for (unsigned i = 0; i < cs->n; i++) {
        const ledger_charge *c = &cs->c[i];
        ledger_unit unit = c->limit[LEDGER_USD] ? LEDGER_USD : LEDGER_TOKENS;
        if (!c->limit[unit] || (usd && unit != LEDGER_USD))
            continue;
        ledger_row row;
        if (store_ledger_read(s, c->scope, c->window, x->now, &row) != RL_OK)
            continue;
        uint64_t used = row.spent[unit] + row.reserved[unit];
        uint64_t left = used < c->limit[unit] ? c->limit[unit] - used : 0;
        if (!have || (unit == LEDGER_USD && !usd) || left < least) {
            least = left;
            window = ledger_window_name(c->window);
        }
        have = 1;
        usd = usd || unit == LEDGER_USD;
    }
    if (!have)
        return;
    if (usd)
        snprintf(x->budget_remaining, sizeof x->budget_remaining, "usd=%.6f; window=%s",
                 (double)least / 1e9, window);
    else
        snprintf(x->budget_remaining, sizeof x->budget_remaining, "tokens=%" PRIu64 "; window=%s",
                 least, window);
    x->extra[x->nextra++] = (rl_header){"x-relay-budget-remaining", x->budget_remaining};
}

int spend_reserve(exchange *x, rl_err *err, const char **message)
{
    uint64_t est[LEDGER_UNITS];
    estimate(x, est);
    charge_set cs;
    charges_of(x, est, &cs);
    if (cs.n == 0)
        return 0; /* no token and no [budget] for it: nothing to count */
    store *s = exchange_shared(x);
    if (!s) {
        x->rejected = "unverifiable";
        *err = RL_STORE;
        *message = "Relay cannot check its budgets while its store is unavailable.";
        return -1;
    }
    ledger_refusal r;
    rl_err e = store_ledger_reserve(s, cs.c, cs.n, x->now, x->spend.hold_id, &r);
    if (e == RL_OVER_LIMIT) {
        uint64_t wait = r.reset > x->now ? r.reset - x->now : 1;
        snprintf(x->retry_after, sizeof x->retry_after, "%" PRIu64, wait);
        x->extra[x->nextra++] = (rl_header){"retry-after", x->retry_after};
        *err = RL_OVER_LIMIT;
        x->rejected = cs.c[r.charge].window == LEDGER_MINUTE ? "rate_limit" : "budget";
        *message = refusal_text(x, &cs, &r);
        return -1;
    }
    if (e == RL_NO_MASTER) {
        /* [cluster]: no master took the reservation within partition_grace.
         * Refused rather than spent unchecked (store/cluster.h). */
        snprintf(x->retry_after, sizeof x->retry_after, "%d", 1);
        x->extra[x->nextra++] = (rl_header){"retry-after", x->retry_after};
        x->rejected = "unverifiable";
        *err = RL_NO_MASTER;
        *message = "Relay's hosts cannot reach their cluster master to reserve against "
                   "budgets; try again shortly.";
        return -1;
    }
    if (e != RL_OK) {
        x->rejected = "unverifiable";
        *err = RL_STORE;
        *message = "Relay could not check its budgets.";
        return -1;
    }
    x->spend.held = 1;
    memcpy(x->spend.estimate, est, sizeof est);
    remaining_header(x, s, &cs);
    return 0;
}

/* ---- settling ------------------------------------------------------------- */

void spend_settle(exchange *x)
{
    spend_state *sp = &x->spend;
    if (!sp->held)
        return;
    sp->held = 0;
    store *s = exchange_shared(x);
    if (!s)
        return; /* maintenance releases it, counted as spent */
    uint64_t now = (uint64_t)time(NULL);
    if (x->up_status == 0) {
        /* The upstream never answered: nothing was billed. */
        store_ledger_release(s, sp->hold_id, now);
        return;
    }
    int ok = x->up_status >= 200 && x->up_status < 300;
    const prov_usage *u = &x->usage;
    int known = u->input >= 0 && u->output >= 0 && !u->lost;
    uint64_t actual[LEDGER_UNITS] = {0, 0, 1};
    if (known) {
        const model_price *price = pricing_find(x->cfg, x->info.model);
        actual[LEDGER_USD] = price ? pricing_cost(price, u) : 0;
        actual[LEDGER_TOKENS] = (uint64_t)(u->input + u->output);
    } else if (ok) {
        /* An answer that does not say what it used (an OpenAI stream
         * without include_usage) counts at its worst case. */
        actual[LEDGER_USD] = sp->estimate[LEDGER_USD];
        actual[LEDGER_TOKENS] = sp->estimate[LEDGER_TOKENS];
    }
    if (store_ledger_settle(s, sp->hold_id, actual, now) != RL_OK)
        rl_warn("a budget reservation could not be settled (maintenance releases it)");
}
