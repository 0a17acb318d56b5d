/*
 * ledger_rec.c — the ledger's arithmetic and record formats (contracts in
 * ledger.h): window kinds and units by name, the start and end of a
 * window, and the encodings of a row's key, a row and a reservation.
 *
 * Pure: no store, no clock, no locks; what a caller passes in is all that
 * is read. The transactions that use these are in ledger.c (reserve,
 * settle, read) and ledger_maint.c (scans, maintenance, verify).
 */
#include "store/ledger.h"

#include <string.h>

#include "store/ledger_int.h"
#include "store/store_int.h"

#define ROW_MAGIC "RLL1"
#define HOLD_MAGIC "RLR1"
#define HOLD_MAGIC_SITE "RLR2" /* with the owner's site (a group of hosts) */
#define HOLD_FIXED (4 + 4 + 8 + 8 + 1)

/* The window kinds, by their value: name, and how long a row is kept
 * after its window ended. */
static const struct {
    const char *name;
    uint64_t keep;
} windows[] = {
    {"?", 0},
    [LEDGER_MINUTE] = {"minute", LEDGER_KEEP_MINUTE},
    [LEDGER_DAY] = {"day", LEDGER_KEEP_DAY},
    [LEDGER_MONTH] = {"month", LEDGER_KEEP_MONTH},
};
static const char *const unit_names[] = {"usd", "tokens", "requests"};

int ledger_window_known(ledger_window w)
{
    return w >= LEDGER_MINUTE && w <= LEDGER_MONTH;
}

const char *ledger_window_name(ledger_window w)
{
    return windows[ledger_window_known(w) ? w : 0].name;
}

const char *ledger_unit_name(ledger_unit u)
{
    return (unsigned)u < LEDGER_UNITS ? unit_names[u] : "?";
}

/* ---- windows --------------------------------------------------------------- */

/* Days since 1970-01-01 of a date in the proleptic Gregorian calendar, and
 * back (Howard Hinnant's algorithms, for years from 1970 on). Pure
 * arithmetic: no time zone, no library state, exact for every month end. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = y / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m)
{
    z += 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

uint64_t ledger_window_start(ledger_window w, uint64_t now)
{
    switch (w) {
    case LEDGER_MINUTE:
        return now - now % 60;
    case LEDGER_DAY:
        return now - now % 86400;
    case LEDGER_MONTH: {
        int64_t y, m;
        civil_from_days((int64_t)(now / 86400), &y, &m);
        return (uint64_t)days_from_civil(y, m, 1) * 86400;
    }
    }
    return 0;
}

uint64_t ledger_window_end(ledger_window w, uint64_t start)
{
    switch (w) {
    case LEDGER_MINUTE:
        return start + 60;
    case LEDGER_DAY:
        return start + 86400;
    case LEDGER_MONTH: {
        int64_t y, m;
        civil_from_days((int64_t)(start / 86400), &y, &m);
        return (uint64_t)days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * 86400;
    }
    }
    return 0;
}

/* ---- encodings ------------------------------------------------------------- */

/* Whether the n bytes at p may be a scope: 1 to LEDGER_SCOPE_MAX bytes, no
 * control characters (scopes hold names from requests, and go into log
 * lines). */
static int scope_ok(const uint8_t *p, size_t n)
{
    if (n == 0 || n > LEDGER_SCOPE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

size_t ledger_key_encode(uint8_t *out, const char *scope, ledger_window w, uint64_t start)
{
    size_t n = scope ? strnlen(scope, LEDGER_SCOPE_MAX + 1) : 0;
    if (!scope_ok((const uint8_t *)scope, n) || !ledger_window_known(w))
        return 0;
    memcpy(out, scope, n);
    out[n] = '\0';
    out[n + 1] = (uint8_t)w;
    store_put64(out + n + 2, start);
    return n + 10;
}

int ledger_key_decode(const uint8_t *key, size_t n, char *scope, ledger_window *w, uint64_t *start)
{
    const uint8_t *nul = memchr(key, '\0', n < LEDGER_SCOPE_MAX + 1 ? n : LEDGER_SCOPE_MAX + 1);
    if (!nul || (size_t)(nul - key) + 10 != n || !scope_ok(key, (size_t)(nul - key)))
        return -1;
    size_t len = (size_t)(nul - key);
    ledger_window kind = (ledger_window)key[len + 1];
    uint64_t at = store_get64(key + len + 2);
    if (!ledger_window_known(kind) || ledger_window_start(kind, at) != at)
        return -1;
    memcpy(scope, key, len);
    scope[len] = '\0';
    *w = kind;
    *start = at;
    return 0;
}

void ledger_row_encode(uint8_t out[LEDGER_ROW_LEN], const ledger_row *row)
{
    memcpy(out, ROW_MAGIC, 4);
    store_put64(out + 4, row->updated);
    for (int u = 0; u < LEDGER_UNITS; u++) {
        store_put64(out + 12 + 8 * u, row->spent[u]);
        store_put64(out + 12 + 8 * (LEDGER_UNITS + u), row->reserved[u]);
    }
}

int ledger_row_decode(const uint8_t *p, size_t n, ledger_row *row)
{
    if (n != LEDGER_ROW_LEN || memcmp(p, ROW_MAGIC, 4) != 0)
        return -1;
    row->updated = store_get64(p + 4);
    for (int u = 0; u < LEDGER_UNITS; u++) {
        row->spent[u] = store_get64(p + 12 + 8 * u);
        row->reserved[u] = store_get64(p + 12 + 8 * (LEDGER_UNITS + u));
    }
    return 0;
}

rl_err ledger_hold_encode(const ledger_hold *hold, rl_buf *out)
{
    uint8_t fixed[HOLD_FIXED];
    size_t site_len = strnlen(hold->site, sizeof hold->site);
    if (hold->n == 0 || hold->n > LEDGER_MAX_CHARGES || site_len > LEDGER_SITE_MAX)
        return RL_INTERNAL;
    memcpy(fixed, site_len ? HOLD_MAGIC_SITE : HOLD_MAGIC, 4);
    store_put32(fixed + 4, (uint32_t)hold->pid);
    store_put64(fixed + 8, hold->pid_start);
    store_put64(fixed + 16, hold->created);
    fixed[24] = (uint8_t)hold->n;
    rl_buf_append(out, fixed, sizeof fixed); /* sticky errors: checked at the end */
    if (site_len) {
        uint8_t len = (uint8_t)site_len;
        rl_buf_append(out, &len, 1);
        rl_buf_append(out, hold->site, site_len);
    }
    for (unsigned i = 0; i < hold->n; i++) {
        uint8_t len = (uint8_t)hold->charge[i].key_len, amounts[8 * LEDGER_UNITS];
        for (int u = 0; u < LEDGER_UNITS; u++)
            store_put64(amounts + 8 * u, hold->charge[i].amount[u]);
        rl_buf_append(out, &len, 1);
        rl_buf_append(out, hold->charge[i].key, len);
        rl_buf_append(out, amounts, sizeof amounts);
    }
    return rl_buf_error(out);
}

int ledger_hold_decode(const uint8_t *p, size_t n, ledger_hold *hold)
{
    int with_site = n >= 4 && memcmp(p, HOLD_MAGIC_SITE, 4) == 0;
    if (n < HOLD_FIXED || (!with_site && memcmp(p, HOLD_MAGIC, 4) != 0))
        return -1;
    hold->pid = (int32_t)store_get32(p + 4);
    hold->pid_start = store_get64(p + 8);
    hold->created = store_get64(p + 16);
    hold->n = p[24];
    if (hold->n == 0 || hold->n > LEDGER_MAX_CHARGES)
        return -1;
    size_t at = HOLD_FIXED;
    hold->site[0] = 0;
    if (with_site) {
        size_t len = at < n ? p[at++] : 0;
        if (len == 0 || n - at < len)
            return -1;
        memcpy(hold->site, p + at, len);
        hold->site[len] = 0;
        if (strlen(hold->site) != len)
            return -1; /* a NUL inside */
        at += len;
    }
    for (unsigned i = 0; i < hold->n; i++) {
        char scope[LEDGER_SCOPE_MAX + 1];
        ledger_window w;
        uint64_t start;
        if (at >= n)
            return -1;
        size_t len = p[at++];
        if (len > LEDGER_KEY_MAX || n - at < len + 8 * LEDGER_UNITS ||
            ledger_key_decode(p + at, len, scope, &w, &start) != 0)
            return -1;
        memcpy(hold->charge[i].key, p + at, len);
        hold->charge[i].key_len = len;
        at += len;
        for (int u = 0; u < LEDGER_UNITS; u++, at += 8)
            hold->charge[i].amount[u] = store_get64(p + at);
    }
    return at == n ? 0 : -1;
}

/* Whether a row's window ended longer ago than its kind is kept. */
int ledger_row_expired(ledger_window w, uint64_t start, uint64_t now)
{
    uint64_t keep = windows[w].keep; /* w decoded from a key: known */
    uint64_t end = ledger_window_end(w, start);
    return now > end && now - end > keep;
}
