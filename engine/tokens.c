/*
 * tokens.c — managing Relay client tokens (contracts in tokens.h).
 *
 * Every operation reads the whole token table (tokens_list_load): it is
 * small, read only by people managing tokens, and one read gives both
 * lookups (by id and by name) and the grouping of a rotated token's
 * records under its id. Writes go through store/token.h, whose
 * transactions keep names and ids unique and make a revoke stick.
 */
#include "engine/tokens.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/auth.h"
#include "engine/prov_json.h"
#include "store/base/rl_hex.h"
#include "store/base/rl_secure.h"

_Static_assert(TOKENS_TEXT_SIZE == AUTH_TOKEN_LEN + 1, "a token's text and its NUL");
_Static_assert(AUTH_HASH_LEN == STORE_KEY_LEN, "the store keys a token by its SHA-256");

#define NANO UINT64_C(1000000000)
#define LAST_DATE 253402300799ULL /* 9999-12-31T23:59:59Z */
#define CREATE_TRIES 3            /* texts tried when a new id is taken (1 in 2^32 each) */

/* ---- values -------------------------------------------------------------- */

/* Reads the decimal digits at *p (at least one) into *out, moving *p past
 * them; -1 when there is none or the number exceeds max. */
static int take_number(const char **p, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (s == *p)
        return -1;
    *p = s;
    *out = v;
    return 0;
}

rl_err tokens_parse_usd(const char *text, uint64_t *nusd)
{
    const char *p = text ? text : "";
    uint64_t whole, frac = 0;
    if (take_number(&p, INT64_MAX / NANO, &whole) != 0)
        return RL_BAD_REQUEST;
    if (*p == '.') {
        const char *start = ++p;
        if (take_number(&p, UINT64_MAX, &frac) != 0 || p - start > 9)
            return RL_BAD_REQUEST;
        for (ptrdiff_t i = p - start; i < 9; i++)
            frac *= 10;
    }
    if (*p || whole * NANO > INT64_MAX - frac)
        return RL_BAD_REQUEST;
    *nusd = whole * NANO + frac;
    return RL_OK;
}

void tokens_format_usd(uint64_t nusd, char out[TOKENS_USD_SIZE])
{
    char frac[16];
    snprintf(frac, sizeof frac, "%09" PRIu64, nusd % NANO);
    int n = 9;
    while (n > 2 && frac[n - 1] == '0')
        n--;
    snprintf(out, TOKENS_USD_SIZE, "%" PRIu64 ".%.*s", nusd / NANO, n, frac);
}

static const struct {
    char unit;
    uint64_t seconds;
} units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
#define NUNITS (sizeof units / sizeof units[0])

rl_err tokens_parse_duration(const char *text, uint64_t *seconds)
{
    const char *p = text ? text : "";
    uint64_t n, mult = 1;
    if (take_number(&p, UINT64_MAX, &n) != 0)
        return RL_BAD_REQUEST;
    if (*p) {
        size_t i = 0;
        while (i < NUNITS && *p != units[i].unit)
            i++;
        if (i == NUNITS || p[1] != '\0')
            return RL_BAD_REQUEST;
        mult = units[i].seconds;
    }
    if (n > UINT64_MAX / mult)
        return RL_BAD_REQUEST;
    *seconds = n * mult;
    return RL_OK;
}

void tokens_format_duration(uint64_t seconds, char *out, size_t cap)
{
    size_t i = 0;
    while (i + 1 < NUNITS && seconds < units[i].seconds)
        i++;
    snprintf(out, cap, "%" PRIu64 "%c", seconds / units[i].seconds, units[i].unit);
}

/* The n digits at p as a number, or -1. */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC; a date that does not exist
 * (February 30th) is refused, not moved on to the next month. */
static rl_err parse_date(const char *s, uint64_t *at)
{
    size_t n = strlen(s);
    int full = n == 20 && s[10] == 'T' && s[13] == ':' && s[16] == ':' && s[19] == 'Z';
    if ((n != 10 && !full) || s[4] != '-' || s[7] != '-')
        return RL_BAD_REQUEST;
    const int want[6] = {
        digits(s, 4) - 1900,          digits(s + 5, 2) - 1,         digits(s + 8, 2),
        full ? digits(s + 11, 2) : 0, full ? digits(s + 14, 2) : 0, full ? digits(s + 17, 2) : 0};
    struct tm tm = {.tm_year = want[0],
                    .tm_mon = want[1],
                    .tm_mday = want[2],
                    .tm_hour = want[3],
                    .tm_min = want[4],
                    .tm_sec = want[5]};
    static const int least[6] = {70, 0, 1, 0, 0, 0}; /* from 1970 on; -1 digits: not a number */
    for (int i = 0; i < 6; i++)
        if (want[i] < least[i])
            return RL_BAD_REQUEST;
    time_t t = timegm(&tm); /* normalises tm: compared with what was asked below */
    struct tm back;
    if (t < 0 || !gmtime_r(&t, &back))
        return RL_BAD_REQUEST;
    const int got[6] = {back.tm_year, back.tm_mon, back.tm_mday,
                        back.tm_hour, back.tm_min, back.tm_sec};
    if (memcmp(want, got, sizeof want) != 0)
        return RL_BAD_REQUEST;
    *at = (uint64_t)t;
    return RL_OK;
}

rl_err tokens_parse_time(const char *text, uint64_t now, uint64_t *at)
{
    uint64_t seconds;
    if (!text)
        return RL_BAD_REQUEST;
    if (text[0] == '@') {
        const char *p = text + 1;
        return take_number(&p, INT64_MAX, at) == 0 && !*p ? RL_OK : RL_BAD_REQUEST;
    }
    if (tokens_parse_duration(text, &seconds) == RL_OK) {
        if (seconds > UINT64_MAX - now)
            return RL_BAD_REQUEST;
        *at = now + seconds;
        return RL_OK;
    }
    return parse_date(text, at);
}

/* ---- fields ---------------------------------------------------------------- */

typedef struct field field;

/* Sets one field of t from text, or says in msg (cap bytes) what is wrong
 * and returns -1. */
typedef int set_fn(store_token *t, const field *f, const char *text, const relay_config *cfg,
                   uint64_t now, char *msg, size_t cap);

struct field {
    const char *name;
    set_fn *set;
    size_t offset;                                /* of the uint64_t a number sets */
    rl_err (*parse)(const char *, uint64_t *out); /* a number's form ... */
    const char *form;                             /* ... as a message names it */
};

static int is_id(const char *s)
{
    size_t n = 0;
    while (s[n] && rl_hex_digit((unsigned char)s[n]) >= 0)
        n++;
    return n == TOKEN_ID_LEN && s[n] == '\0';
}

static int set_name(store_token *t, const field *f, const char *v, const relay_config *cfg,
                    uint64_t now, char *msg, size_t cap)
{
    (void)f, (void)cfg, (void)now;
    size_t n = strlen(v);
    int printable = 1;
    for (size_t i = 0; i < n; i++)
        printable &= v[i] >= 0x20 && v[i] <= 0x7e;
    if (n == 0 || n > TOKEN_NAME_MAX || !printable || v[0] == ' ' || v[n - 1] == ' ') {
        snprintf(msg, cap,
                 "a name is 1 to %d printable ASCII characters, without spaces at either end",
                 TOKEN_NAME_MAX);
        return -1;
    }
    if (is_id(v)) {
        snprintf(msg, cap,
                 "\"%s\" is 8 hex digits, which reads as a token's id: choose another "
                 "name",
                 v);
        return -1;
    }
    memcpy(t->name, v, n + 1);
    return 0;
}

/* Whether [upstream.name] is configured; cfg NULL: not checked. */
static int upstream_known(const relay_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && i < cfg->nupstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return 1;
    return !cfg;
}

/* The configured upstreams' names, for a message. */
static void upstream_names(const relay_config *cfg, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < cfg->nupstreams && used < cap; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", cfg->upstreams[i].name);
        used += w > 0 ? (size_t)w : 0;
    }
}

/* A comma-separated list into list (*n items): items trimmed of spaces,
 * each 1 to TOKEN_ITEM_MAX visible characters; "" is no item. */
static int set_list(char (*list)[TOKEN_ITEM_MAX + 1], unsigned *n, const char *v,
                    const relay_config *cfg, int upstreams, char *msg, size_t cap)
{
    char items[TOKEN_LIST_MAX][TOKEN_ITEM_MAX + 1];
    unsigned count = 0;
    const char *p = v + strspn(v, " ");
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *next = p[len] ? p + len + 1 : p + len;
        while (len && p[len - 1] == ' ')
            len--;
        int visible = len > 0 && len <= TOKEN_ITEM_MAX;
        for (size_t i = 0; visible && i < len; i++)
            visible = p[i] > 0x20 && p[i] < 0x7f;
        if (!visible) {
            snprintf(msg, cap,
                     "each item is 1 to %d visible ASCII characters (no spaces), separated by "
                     "commas; \"\" means every %s",
                     TOKEN_ITEM_MAX, upstreams ? "upstream" : "model");
            return -1;
        }
        if (count == TOKEN_LIST_MAX) {
            snprintf(msg, cap, "at most %d items", TOKEN_LIST_MAX);
            return -1;
        }
        memcpy(items[count], p, len);
        items[count][len] = '\0';
        if (upstreams && !upstream_known(cfg, items[count])) {
            char names[256];
            upstream_names(cfg, names, sizeof names);
            snprintf(msg, cap, "relay.ini has no [upstream.%s] (it has: %s)", items[count], names);
            return -1;
        }
        count++;
        p = next + strspn(next, " ");
    }
    memcpy(list, items, sizeof items);
    *n = count;
    return 0;
}

static int set_upstreams(store_token *t, const field *f, const char *v, const relay_config *cfg,
                         uint64_t now, char *msg, size_t cap)
{
    (void)f, (void)now;
    return set_list(t->upstreams, &t->n_upstreams, v, cfg, 1, msg, cap);
}

static int set_models(store_token *t, const field *f, const char *v, const relay_config *cfg,
                      uint64_t now, char *msg, size_t cap)
{
    (void)f, (void)now;
    return set_list(t->models, &t->n_models, v, cfg, 0, msg, cap);
}

static uint64_t *number_of(store_token *t, const field *f)
{
    return (uint64_t *)((char *)t + f->offset);
}

/* A whole number of 1 or more, at most what JSON's integers hold. */
static rl_err parse_count(const char *text, uint64_t *n)
{
    const char *p = text;
    return take_number(&p, INT64_MAX, n) == 0 && !*p ? RL_OK : RL_BAD_REQUEST;
}

/* A budget or a limit (f->parse reads it); "none" removes it. */
static int set_amount(store_token *t, const field *f, const char *v, const relay_config *cfg,
                      uint64_t now, char *msg, size_t cap)
{
    (void)cfg, (void)now;
    uint64_t n = 0;
    if (strcmp(v, "none") != 0 && f->parse(v, &n) != RL_OK) {
        snprintf(msg, cap, "\"%s\" is not %s, or \"none\"", v, f->form);
        return -1;
    }
    if (strcmp(v, "none") != 0 && n == 0) {
        snprintf(msg, cap,
                 "0 would allow nothing: \"none\" removes it (revoke a token to stop "
                 "it)");
        return -1;
    }
    *number_of(t, f) = n;
    return 0;
}

static int set_expires(store_token *t, const field *f, const char *v, const relay_config *cfg,
                       uint64_t now, char *msg, size_t cap)
{
    (void)cfg;
    uint64_t at = 0;
    if (strcmp(v, "never") == 0 || strcmp(v, "none") == 0) {
        *number_of(t, f) = 0;
        return 0;
    }
    if (tokens_parse_time(v, now, &at) != RL_OK || at > LAST_DATE) {
        snprintf(msg, cap,
                 "\"%s\" is not a duration (30s, 15m, 12h, 7d), a UTC date (2026-12-31) or "
                 "time (2026-12-31T18:00:00Z), @UNIXSECONDS, or \"never\"",
                 v);
        return -1;
    }
    if (at <= now) {
        snprintf(msg, cap, "\"%s\" is not in the future (to stop a token now, revoke it)", v);
        return -1;
    }
    *number_of(t, f) = at;
    return 0;
}

#define USD "an amount of USD such as 5, 0.10 or 12.5 (at most 9 decimals)"
#define COUNT "a whole number"
static const field fields[] = {
    {"name", set_name, 0, NULL, NULL},
    {"upstreams", set_upstreams, 0, NULL, NULL},
    {"models", set_models, 0, NULL, NULL},
    {"budget_usd_day", set_amount, offsetof(store_token, usd_day), tokens_parse_usd, USD},
    {"budget_usd_month", set_amount, offsetof(store_token, usd_month), tokens_parse_usd, USD},
    {"budget_tokens_day", set_amount, offsetof(store_token, tokens_day), parse_count, COUNT},
    {"rpm", set_amount, offsetof(store_token, rpm), parse_count, COUNT},
    {"tpm", set_amount, offsetof(store_token, tpm), parse_count, COUNT},
    {"expires", set_expires, offsetof(store_token, expires), NULL, NULL},
};
#undef USD
#undef COUNT

/* The field name names, spelt "budget_usd_day", "budget-usd-day" or
 * "--budget-usd-day"; NULL when none. */
static const field *field_of(const char *name)
{
    if (strncmp(name, "--", 2) == 0)
        name += 2;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *a = fields[i].name, *b = name;
        while (*a && (*a == *b || (*a == '_' && *b == '-')))
            a++, b++;
        if (!*a && !*b)
            return &fields[i];
    }
    return NULL;
}

int tokens_is_field(const char *name)
{
    return field_of(name) != NULL;
}

rl_err tokens_set(store_token *t, const char *name, const char *value, const relay_config *cfg,
                  uint64_t now, rl_buf *why)
{
    const field *f = field_of(name);
    char msg[512];
    if (!f) {
        (void)rl_buf_printf(why,
                            "%s is not a field of a token (name, upstreams, models, "
                            "budget_usd_day, budget_usd_month, budget_tokens_day, rpm, tpm, "
                            "expires)",
                            name);
        return RL_BAD_REQUEST;
    }
    if (f->set(t, f, value ? value : "", cfg, now, msg, sizeof msg) != 0) {
        (void)rl_buf_printf(why, "%s: %s", name, msg);
        return RL_BAD_REQUEST;
    }
    return RL_OK;
}

/* ---- the table, one row per id ----------------------------------------------- */

/* Every record as read. */
typedef struct records {
    store_token *v;
    size_t n, cap;
    unsigned damaged;
    int nomem;
} records;

static int record_add(void *ctx, const uint8_t hash[STORE_KEY_LEN], const store_token *t)
{
    (void)hash;
    records *r = ctx;
    if (!t) {
        r->damaged++;
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        store_token *v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            r->nomem = 1;
            return 1;
        }
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = *t;
    return 0;
}

static rl_err records_load(store *s, records *r)
{
    memset(r, 0, sizeof *r);
    rl_err e = store_token_scan(s, record_add, r);
    return e == RL_OK && r->nomem ? RL_NOMEM : e;
}

/* Whether a is rather the current record of its id than b: the one not
 * revoked, else the latest created (then revoked). */
static int rather(const store_token *a, const store_token *b)
{
    if (!a->revoked != !b->revoked)
        return !a->revoked;
    if (a->created != b->created)
        return a->created > b->created;
    return a->revoked > b->revoked;
}

static int by_id(const void *pa, const void *pb)
{
    return strcmp(((const store_token *)pa)->id, ((const store_token *)pb)->id);
}

static int by_name(const void *pa, const void *pb)
{
    const tokens_row *a = pa, *b = pb;
    int c = strcmp(a->t.name, b->t.name);
    if (c)
        return c;
    return a->t.created < b->t.created ? -1 : a->t.created > b->t.created;
}

/* The rows of r's records (which it sorts by id) into l. */
static rl_err rows_of(records *r, uint64_t now, tokens_list *l)
{
    l->damaged = r->damaged;
    if (r->n)
        qsort(r->v, r->n, sizeof *r->v, by_id);
    l->v = calloc(r->n ? r->n : 1, sizeof *l->v);
    if (!l->v)
        return RL_NOMEM;
    for (size_t i = 0, end; i < r->n; i = end) {
        const store_token *cur = &r->v[i];
        for (end = i + 1; end < r->n && !strcmp(r->v[end].id, cur->id); end++)
            if (rather(&r->v[end], cur))
                cur = &r->v[end];
        tokens_row *row = &l->v[l->n++];
        row->t = *cur;
        for (size_t j = i; j < end; j++)
            if (&r->v[j] != cur && r->v[j].revoked > now && r->v[j].revoked > row->grace_until)
                row->grace_until = r->v[j].revoked;
    }
    if (l->n)
        qsort(l->v, l->n, sizeof *l->v, by_name);
    return RL_OK;
}

rl_err tokens_list_load(store *s, uint64_t now, tokens_list *l)
{
    records r;
    memset(l, 0, sizeof *l);
    rl_err e = records_load(s, &r);
    if (e == RL_OK)
        e = rows_of(&r, now, l);
    free(r.v);
    return e;
}

void tokens_list_release(tokens_list *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

const tokens_row *tokens_list_find(const tokens_list *l, const char *ref)
{
    if (is_id(ref)) {
        char id[TOKEN_ID_LEN + 1];
        for (int i = 0; i <= TOKEN_ID_LEN; i++)
            id[i] = (char)(ref[i] >= 'A' && ref[i] <= 'F' ? ref[i] - 'A' + 'a' : ref[i]);
        for (size_t i = 0; i < l->n; i++)
            if (strcmp(l->v[i].t.id, id) == 0)
                return &l->v[i];
    }
    const tokens_row *best = NULL;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].t.name, ref) == 0 && (!best || rather(&l->v[i].t, &best->t)))
            best = &l->v[i];
    return best;
}

/* ---- operations ---------------------------------------------------------------- */

/* Says in why that the store failed while doing what; returns e. */
static rl_err store_failed(rl_err e, const char *what, rl_buf *why)
{
    (void)rl_buf_printf(why, "%s failed: %s (Relay's store; relay-admin doctor tells more)", what,
                        rl_err_text(e));
    return e;
}

/* Reads every record into r (sorted by id) and the rows into l, and finds
 * ref: *row, or RL_NOTFOUND said in why. The caller releases r and l, also
 * after a failure. */
static rl_err find(store *s, const char *ref, uint64_t now, records *r, tokens_list *l,
                   const tokens_row **row, rl_buf *why)
{
    memset(l, 0, sizeof *l);
    rl_err e = records_load(s, r);
    if (e == RL_OK)
        e = rows_of(r, now, l);
    if (e != RL_OK)
        return store_failed(e, "reading the tokens", why);
    *row = tokens_list_find(l, ref);
    if (!*row) {
        (void)rl_buf_printf(why, "no token has the id or the name \"%s\"", ref);
        return RL_NOTFOUND;
    }
    return RL_OK;
}

rl_err tokens_create(store *s, const relay_config *cfg, const tokens_edit *edits, size_t n,
                     uint64_t now, tokens_row *out, char text[TOKENS_TEXT_SIZE], rl_buf *why)
{
    memset(out, 0, sizeof *out);
    text[0] = '\0';
    store_token *t = &out->t;
    int named = 0;
    for (size_t i = 0; i < n; i++) {
        rl_err e = tokens_set(t, edits[i].field, edits[i].value, cfg, now, why);
        if (e != RL_OK)
            return e;
        named |= field_of(edits[i].field) == &fields[0];
    }
    if (!named) {
        (void)rl_buf_puts(why, "a new token needs a name");
        return RL_BAD_REQUEST;
    }
    t->created = now;
    rl_err e = RL_EXISTS;
    for (int tries = 0; tries < CREATE_TRIES && e == RL_EXISTS; tries++) {
        if ((e = auth_token_new(text)) != RL_OK) {
            (void)rl_buf_puts(why, "the system's random source failed: no token was made");
            break;
        }
        auth_token_hash(text, t->hash);
        store_token_id_of(t->hash, t->id);
        e = store_token_put(s, t, TOKEN_CREATE);
        store_token other;
        if (e == RL_EXISTS && store_token_find_name(s, t->name, &other) == RL_OK) {
            (void)rl_buf_printf(why,
                                "the name \"%s\" is taken by token %s (names are unique among "
                                "tokens not revoked)",
                                t->name, other.id);
            break;
        }
    }
    if (e != RL_OK) {
        rl_secure_zero(text, TOKENS_TEXT_SIZE);
        if (!why->len)
            store_failed(e, "storing the new token", why);
    }
    return e;
}

rl_err tokens_show(store *s, const char *ref, uint64_t now, tokens_row *out, rl_buf *why)
{
    records r;
    tokens_list l;
    const tokens_row *row;
    rl_err e = find(s, ref, now, &r, &l, &row, why);
    if (e == RL_OK)
        *out = *row;
    tokens_list_release(&l);
    free(r.v);
    return e;
}

rl_err tokens_update(store *s, const relay_config *cfg, const char *ref, const tokens_edit *edits,
                     size_t n, uint64_t now, tokens_row *out, rl_buf *why)
{
    records r;
    tokens_list l;
    const tokens_row *row;
    rl_err e = find(s, ref, now, &r, &l, &row, why);
    if (e != RL_OK)
        goto out;
    *out = *row;
    if (row->t.revoked) {
        (void)rl_buf_printf(why, "token %s is revoked: it cannot be changed (create a new one)",
                            row->t.id);
        e = RL_FORBIDDEN;
        goto out;
    }
    if (n == 0) {
        (void)rl_buf_puts(why, "nothing to change: give at least one field");
        e = RL_BAD_REQUEST;
        goto out;
    }
    for (size_t i = 0; i < n && e == RL_OK; i++)
        e = tokens_set(&out->t, edits[i].field, edits[i].value, cfg, now, why);
    const char *invalid = e == RL_OK ? store_token_invalid(&out->t) : NULL;
    if (invalid) {
        (void)rl_buf_puts(why, invalid); /* the fields' checks should have said it */
        e = RL_BAD_REQUEST;
    }
    if (e == RL_OK)
        e = store_token_put(s, &out->t, TOKEN_UPDATE);
    if (e == RL_EXISTS)
        (void)rl_buf_printf(why,
                            "the name \"%s\" is taken by another token (names are unique among "
                            "tokens not revoked)",
                            out->t.name);
    else if (e == RL_FORBIDDEN || e == RL_NOTFOUND)
        (void)rl_buf_printf(why,
                            "token %s was revoked, rotated or removed meanwhile: nothing was "
                            "changed",
                            row->t.id);
    else if (e != RL_OK && e != RL_BAD_REQUEST)
        store_failed(e, "storing the token", why);
out:
    tokens_list_release(&l);
    free(r.v);
    return e;
}

/* Ends now every text of id still working: not revoked, or in a grace
 * period. */
static rl_err end_texts(store *s, const records *r, const char *id, uint64_t now)
{
    rl_err e = RL_OK;
    for (size_t i = 0; i < r->n && e == RL_OK; i++)
        if (!strcmp(r->v[i].id, id) && (!r->v[i].revoked || r->v[i].revoked > now))
            e = store_token_revoke(s, r->v[i].hash, now, NULL);
    return e;
}

rl_err tokens_revoke(store *s, const char *ref, uint64_t now, tokens_row *out, int *was_revoked,
                     rl_buf *why)
{
    records r;
    tokens_list l;
    const tokens_row *row;
    rl_err e = find(s, ref, now, &r, &l, &row, why);
    if (e != RL_OK)
        goto out;
    *out = *row;
    *was_revoked = store_token_state(&row->t, now) == TOKEN_REVOKED && !row->grace_until;
    if ((e = end_texts(s, &r, row->t.id, now)) != RL_OK) {
        store_failed(e, "revoking the token", why);
        goto out;
    }
    if (!out->t.revoked || out->t.revoked > now)
        out->t.revoked = now;
    out->grace_until = 0;
out:
    tokens_list_release(&l);
    free(r.v);
    return e;
}

rl_err tokens_rotate(store *s, const char *ref, uint64_t grace, uint64_t now, tokens_row *out,
                     char text[TOKENS_TEXT_SIZE], rl_buf *why)
{
    records r;
    tokens_list l;
    const tokens_row *row;
    uint8_t hash[STORE_KEY_LEN];
    uint64_t until = grace > LAST_DATE - now ? LAST_DATE : now + grace;
    text[0] = '\0';
    rl_err e = find(s, ref, now, &r, &l, &row, why);
    if (e != RL_OK)
        goto out;
    if (row->t.revoked) {
        (void)rl_buf_printf(why,
                            "token %s is revoked: rotating does not bring it back (create a new "
                            "token)",
                            row->t.id);
        e = RL_FORBIDDEN;
        goto out;
    }
    if ((e = auth_token_new(text)) != RL_OK) {
        (void)rl_buf_puts(why, "the system's random source failed: nothing was changed");
        goto out;
    }
    auth_token_hash(text, hash);
    /* Texts from earlier rotations stop with this one's at the latest
     * (first, so that a rotation that then fails has only shortened what
     * was going away). */
    for (size_t i = 0; i < r.n && e == RL_OK; i++)
        if (!strcmp(r.v[i].id, row->t.id) && memcmp(r.v[i].hash, row->t.hash, STORE_KEY_LEN) &&
            r.v[i].revoked > until)
            e = store_token_revoke(s, r.v[i].hash, until, NULL);
    if (e == RL_OK)
        e = store_token_rotate(s, row->t.hash, hash, now, until, &out->t);
    out->grace_until = until > now ? until : 0;
    if (e == RL_FORBIDDEN || e == RL_EXISTS || e == RL_NOTFOUND)
        (void)rl_buf_printf(why,
                            "token %s was revoked or rotated meanwhile: nothing was changed (see "
                            "its state now)",
                            row->t.id);
    else if (e != RL_OK)
        store_failed(e, "rotating the token", why);
out:
    if (e != RL_OK)
        rl_secure_zero(text, TOKENS_TEXT_SIZE);
    tokens_list_release(&l);
    free(r.v);
    return e;
}

/* ---- JSON ------------------------------------------------------------------------ */

static json_t *usd_json(uint64_t nusd)
{
    char text[TOKENS_USD_SIZE];
    tokens_format_usd(nusd, text);
    return nusd ? json_string(text) : json_null();
}

static json_t *number_json(uint64_t v)
{
    return v ? json_integer((json_int_t)v) : json_null();
}

static json_t *list_json(const char (*items)[TOKEN_ITEM_MAX + 1], unsigned n, int *failed)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++)
        *failed |= json_array_append_new(a, json_string(items[i]));
    return a;
}

static json_t *token_json(const tokens_row *r, uint64_t now, const char *text)
{
    const store_token *t = &r->t;
    json_t *o = json_object();
    int failed = 0;
    if (text)
        failed |= json_object_set_new(o, "token", json_string(text));
    const struct {
        const char *name;
        json_t *value;
    } members[] = {
        {"id", json_string(t->id)},
        {"name", json_string(t->name)},
        {"state", json_string(store_token_state_name(store_token_state(t, now)))},
        {"upstreams", list_json(t->upstreams, t->n_upstreams, &failed)},
        {"models", list_json(t->models, t->n_models, &failed)},
        {"budget_usd_day", usd_json(t->usd_day)},
        {"budget_usd_month", usd_json(t->usd_month)},
        {"budget_tokens_day", number_json(t->tokens_day)},
        {"rpm", number_json(t->rpm)},
        {"tpm", number_json(t->tpm)},
        {"created", json_integer((json_int_t)t->created)},
        {"expires", number_json(t->expires)},
        {"revoked", number_json(t->revoked)},
        {"grace_until", number_json(r->grace_until)},
    };
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
        failed |= json_object_set_new(o, members[i].name, members[i].value);
    return prov_json_check(o, failed);
}

rl_err tokens_json(const tokens_row *r, uint64_t now, const char *text, rl_buf *out)
{
    return prov_json_put(out, "", token_json(r, now, text), JSON_COMPACT, "");
}

rl_err tokens_list_json(const tokens_list *l, uint64_t now, rl_buf *out)
{
    json_t *a = json_array();
    int failed = 0;
    for (size_t i = 0; i < l->n; i++)
        failed |= json_array_append_new(a, token_json(&l->v[i], now, NULL));
    json_t *o = json_object();
    failed |= json_object_set_new(o, "tokens", a);
    failed |= json_object_set_new(o, "damaged", json_integer(l->damaged));
    return prov_json_put(out, "", prov_json_check(o, failed), JSON_COMPACT, "");
}
