/*
 * t_ledger.c — budgets and rate limits in the store (store/ledger.h):
 * UTC windows and their roll-over (midnight, month ends, leap years), the
 * encodings of rows, keys and reservations (round trips, damage refused),
 * reserve / settle / release arithmetic and limits per unit, the
 * refusal's window reset (Retry-After), a reservation of a process killed
 * with SIGKILL released by maintenance, one older than hold_max_age, old
 * rows removed, and the bound under concurrency: K processes x M threads
 * reserving against one limit of L requests' worth, where exactly L
 * succeed. Then the ledger and tokens through a restart, backup and
 * restore, rekey, and verify.
 *
 * Times are passed in: nothing sleeps. Child processes are this binary run
 * again (exec right after fork: they are multi-threaded or must not inherit
 * the parent's store handle).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/ledger.h"
#include "store/store.h"
#include "store/token.h"
#include "tests/unit/tap.h"

/* Under LeakSanitizer (make asan): a child killed inside the store makes
 * the others reopen, and Berkeley DB 5.3 abandons a panicked environment's
 * memory (see store_fixture.h). Our own allocations stay checked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libdb-5.3.so\n";
}

static char tmp[64], self[4096], home[128], keyfile[160];

#define HOLD_MAX_AGE 600
#define T0 1813017600ull /* 2027-06-15 00:00:00 UTC */
#define DAY 86400ull

static store_options opts_for(const char *h, const char *k)
{
    store_options o = {
        .home = h, .key_file = k, .cache_mb = 8, .max_threads = 32, .hold_max_age = HOLD_MAX_AGE};
    return o;
}

static store_options opts(void)
{
    return opts_for(home, keyfile);
}

/* A charge with one limited unit (limit 0: none) and amounts for all. */
static ledger_charge charge(const char *scope, ledger_window w, uint64_t usd, uint64_t tokens,
                            uint64_t requests)
{
    ledger_charge c = {.scope = scope, .window = w, .amount = {usd, tokens, requests}};
    return c;
}

static ledger_row row_of(store *s, const char *scope, ledger_window w, uint64_t now)
{
    ledger_row r;
    memset(&r, 0xee, sizeof r);
    if (store_ledger_read(s, scope, w, now, &r) != RL_OK)
        memset(&r, 0xee, sizeof r);
    return r;
}

/* Reservations the parent's tests leave open, released at their end (a
 * live owner's are kept by maintenance, and later tests count them). */
static uint8_t kept[64][LEDGER_ID_LEN];
static unsigned nkept;

static rl_err reserve_kept(store *s, const ledger_charge *c, unsigned n, uint64_t now,
                           ledger_refusal *why)
{
    uint8_t id[LEDGER_ID_LEN];
    rl_err e = store_ledger_reserve(s, c, n, now, id, why);
    if (e == RL_OK && nkept < 64)
        memcpy(kept[nkept++], id, LEDGER_ID_LEN);
    return e;
}

static void release_kept(store *s, uint64_t now)
{
    unsigned released = 0;
    for (unsigned i = 0; i < nkept; i++)
        released += store_ledger_release(s, kept[i], now) == RL_OK;
    is_int(released, nkept, "release what the test left open");
    nkept = 0;
}

static uint64_t holds(store *s)
{
    uint64_t n = 999;
    if (store_ledger_holds(s, &n) != RL_OK)
        return 999;
    return n;
}

/* ---- windows ------------------------------------------------------------- */

static void test_windows(void)
{
    /* 2027-06-15 12:34:56 */
    uint64_t t = T0 + 12 * 3600 + 34 * 60 + 56;
    is_int(ledger_window_start(LEDGER_MINUTE, t), t - 56, "a minute starts at :00");
    is_int(ledger_window_end(LEDGER_MINUTE, t - 56), t + 4, "and ends 60 s later");
    is_int(ledger_window_start(LEDGER_DAY, t), T0, "a day starts at midnight UTC");
    is_int(ledger_window_end(LEDGER_DAY, T0), T0 + DAY, "and ends at the next");
    is_int(ledger_window_start(LEDGER_DAY, T0 + DAY - 1), T0, "23:59:59 is the same day");
    is_int(ledger_window_start(LEDGER_DAY, T0 + DAY), T0 + DAY, "00:00:00 is the next");
    is_int(ledger_window_start(LEDGER_MONTH, t), 1811808000ull, "June starts on the 1st");

    /* Month ends: 31, 30, 28 and 29 days, and a year's end. */
    struct {
        uint64_t first, next;
        const char *what;
    } months[] = {
        {1798761600ull, 1801440000ull, "January 2027 has 31 days"},
        {1801440000ull, 1803859200ull, "February 2027 has 28"},
        {1832976000ull, 1835481600ull, "February 2028 (leap) has 29"},
        {1830297600ull - 31 * DAY, 1830297600ull, "December 2027 ends on 1 January 2028"},
        {4105123200ull, 4107542400ull, "February 2100 (not leap) has 28"},
    };
    for (size_t i = 0; i < sizeof months / sizeof months[0]; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s: end", months[i].what);
        is_int(ledger_window_end(LEDGER_MONTH, months[i].first), months[i].next, what);
        snprintf(what, sizeof what, "%s: its last second is in it", months[i].what);
        is_int(ledger_window_start(LEDGER_MONTH, months[i].next - 1), months[i].first, what);
        snprintf(what, sizeof what, "%s: the next second is not", months[i].what);
        is_int(ledger_window_start(LEDGER_MONTH, months[i].next), months[i].next, what);
    }

    /* Every day from 1970 to 2200 against the C library's calendar. */
    int agree = 1;
    for (time_t day = 0; day < (time_t)(230 * 365.25 * 86400); day += 86400) {
        struct tm tm;
        gmtime_r(&day, &tm);
        tm.tm_mday = 1;
        time_t first = timegm(&tm);
        tm.tm_mon += 1;
        time_t next = timegm(&tm);
        uint64_t at = (uint64_t)day + 86399;
        if (ledger_window_start(LEDGER_MONTH, at) != (uint64_t)first ||
            ledger_window_end(LEDGER_MONTH, (uint64_t)first) != (uint64_t)next) {
            if (agree)
                printf("#   disagrees at %lld\n", (long long)day);
            agree = 0;
        }
    }
    ok(agree, "months agree with timegm for every day of 1970-2200");
    is_str(ledger_window_name(LEDGER_MONTH), "month", "window names");
    is_str(ledger_unit_name(LEDGER_TOKENS), "tokens", "unit names");
}

/* ---- encodings ------------------------------------------------------------- */

static void test_encodings(void)
{
    uint8_t key[LEDGER_KEY_MAX];
    char scope[LEDGER_SCOPE_MAX + 1];
    ledger_window w;
    uint64_t start;
    size_t n = ledger_key_encode(key, "token:1a2b3c4d", LEDGER_DAY, T0);
    is_int(n, 14 + 10, "a key: scope, NUL, kind, start");
    is_int(ledger_key_decode(key, n, scope, &w, &start), 0, "decodes");
    ok(strcmp(scope, "token:1a2b3c4d") == 0 && w == LEDGER_DAY && start == T0, "round trip");
    is_int(ledger_key_decode(key, n - 1, scope, &w, &start), -1, "a short key is refused");
    key[n - 1] = 1;
    is_int(ledger_key_decode(key, n, scope, &w, &start), -1,
           "a start that begins no day is refused");
    key[n - 1] = 0;
    key[15] = 9;
    is_int(ledger_key_decode(key, n, scope, &w, &start), -1, "an unknown kind is refused");
    is_int(ledger_key_decode(key, 9, scope, &w, &start), -1, "no scope");
    is_int(ledger_key_encode(key, "", LEDGER_DAY, T0), 0, "an empty scope is not a key");
    is_int(ledger_key_encode(key, "model:gpt\n4o", LEDGER_DAY, T0), 0,
           "nor one with a control character (a model name from a request, for a log line)");
    n = ledger_key_encode(key, "model:\xc3\xa9t\xc3\xa9 \"x\"", LEDGER_DAY, T0);
    ok(n > 0 && ledger_key_decode(key, n, scope, &w, &start) == 0 &&
           strcmp(scope, "model:\xc3\xa9t\xc3\xa9 \"x\"") == 0,
       "other bytes are scope text (UTF-8, spaces, quotes)");
    key[6] = 0x1b;
    is_int(ledger_key_decode(key, n, scope, &w, &start), -1,
           "a stored key with a control character is refused");
    char longest[LEDGER_SCOPE_MAX + 2];
    memset(longest, 'm', sizeof longest - 1);
    longest[LEDGER_SCOPE_MAX + 1] = '\0';
    is_int(ledger_key_encode(key, longest, LEDGER_DAY, T0), 0, "nor a scope too long");
    longest[LEDGER_SCOPE_MAX] = '\0';
    n = ledger_key_encode(key, longest, LEDGER_MONTH, 1811808000ull);
    is_int(n, LEDGER_KEY_MAX, "the longest scope fits LEDGER_KEY_MAX");
    is_int(ledger_key_decode(key, n, scope, &w, &start), 0, "and decodes");

    ledger_row r = {.spent = {1, 2, UINT64_MAX}, .reserved = {4, 5, 6}, .updated = T0}, back;
    uint8_t buf[LEDGER_ROW_LEN + 1];
    ledger_row_encode(buf, &r);
    is_int(ledger_row_decode(buf, LEDGER_ROW_LEN, &back), 0, "a row decodes");
    ok(memcmp(back.spent, r.spent, sizeof r.spent) == 0 &&
           memcmp(back.reserved, r.reserved, sizeof r.reserved) == 0 && back.updated == T0,
       "round trip");
    is_int(ledger_row_decode(buf, LEDGER_ROW_LEN - 1, &back), -1, "a short row is refused");
    is_int(ledger_row_decode(buf, LEDGER_ROW_LEN + 1, &back), -1, "a long one too");
    buf[2] = 'X';
    is_int(ledger_row_decode(buf, LEDGER_ROW_LEN, &back), -1, "another magic too");

    ledger_hold *h = calloc(2, sizeof *h);
    if (!h)
        return;
    h[0].pid = 4242;
    h[0].pid_start = 987654321;
    h[0].created = T0;
    h[0].n = 2;
    h[0].charge[0].key_len = ledger_key_encode(h[0].charge[0].key, "a", LEDGER_MINUTE, T0);
    h[0].charge[0].amount[LEDGER_REQUESTS] = 1;
    h[0].charge[1].key_len = ledger_key_encode(h[0].charge[1].key, "b", LEDGER_DAY, T0);
    h[0].charge[1].amount[LEDGER_USD] = 777;
    rl_buf b;
    rl_buf_init(&b, 0);
    is_int(ledger_hold_encode(&h[0], &b), RL_OK, "a reservation encodes");
    is_int(ledger_hold_decode((uint8_t *)b.data, b.len, &h[1]), 0, "and decodes");
    ok(h[1].pid == 4242 && h[1].pid_start == 987654321 && h[1].created == T0 && h[1].n == 2 &&
           h[1].charge[1].amount[LEDGER_USD] == 777 &&
           h[1].charge[0].amount[LEDGER_REQUESTS] == 1 &&
           memcmp(h[1].charge[1].key, h[0].charge[1].key, h[0].charge[1].key_len) == 0,
       "round trip");
    int refused = 1;
    for (size_t len = 0; len < b.len; len++)
        if (ledger_hold_decode((uint8_t *)b.data, len, &h[1]) == 0)
            refused = 0;
    ok(refused, "every truncation of a reservation is refused");
    uint8_t *p = (uint8_t *)b.data;
    p[24] = 0;
    is_int(ledger_hold_decode(p, b.len, &h[1]), -1, "no charges");
    p[24] = LEDGER_MAX_CHARGES + 1;
    is_int(ledger_hold_decode(p, b.len, &h[1]), -1, "too many charges");
    p[24] = 2;
    p[25 + 1 + 1 + 1] = 7; /* the first key's kind (after its length, "a" and a NUL) */
    is_int(ledger_hold_decode(p, b.len, &h[1]), -1, "a charge whose key does not decode");
    p[25 + 1 + 1 + 1] = LEDGER_MINUTE;
    is_int(ledger_hold_decode(p, b.len, &h[1]), 0, "repaired, it decodes");
    rl_buf_append(&b, "", 1);
    is_int(ledger_hold_decode((uint8_t *)b.data, b.len, &h[1]), -1, "a trailing byte");
    ok(memcmp(b.data, "RLR1", 4) == 0 && h[1].site[0] == 0, "no site: the first layout");

    /* A group's reservation names its owner's host (store/cluster.h). */
    snprintf(h[0].site, sizeof h[0].site, "10.0.0.2:7600");
    rl_buf_reset(&b);
    is_int(ledger_hold_encode(&h[0], &b), RL_OK, "a reservation with a site encodes");
    ok(memcmp(b.data, "RLR2", 4) == 0, "as RLR2");
    memset(&h[1], 0, sizeof h[1]);
    is_int(ledger_hold_decode((uint8_t *)b.data, b.len, &h[1]), 0, "and decodes");
    ok(strcmp(h[1].site, "10.0.0.2:7600") == 0 && h[1].n == 2 && h[1].pid == 4242 &&
           h[1].charge[1].amount[LEDGER_USD] == 777,
       "site and charges round trip");
    refused = 1;
    for (size_t len = 0; len < b.len; len++)
        if (ledger_hold_decode((uint8_t *)b.data, len, &h[1]) == 0)
            refused = 0;
    ok(refused, "every truncation of it is refused");
    p = (uint8_t *)b.data;
    p[25] = 0;
    is_int(ledger_hold_decode(p, b.len, &h[1]), -1, "an empty site is refused");
    p[25] = 13;
    p[26 + 3] = 0;
    is_int(ledger_hold_decode(p, b.len, &h[1]), -1, "a NUL inside the site is refused");
    h[0].site[0] = 0;
    h[0].n = 0;
    rl_buf_reset(&b);
    is_int(ledger_hold_encode(&h[0], &b), RL_INTERNAL, "a reservation of nothing is not encoded");
    rl_buf_release(&b);
    free(h);
}

/* ---- arithmetic -------------------------------------------------------------- */

static void test_arithmetic(store *s)
{
    const uint64_t now = T0 + 1000;
    uint8_t id[LEDGER_ID_LEN], id2[LEDGER_ID_LEN];
    ledger_refusal why;
    ledger_charge c[2];

    c[0] = charge("token:arith", LEDGER_DAY, 100, 50, 1);
    is_int(store_ledger_reserve(s, c, 1, now, id, &why), RL_OK, "reserve with no limits");
    ledger_row r = row_of(s, "token:arith", LEDGER_DAY, now);
    ok(r.reserved[0] == 100 && r.reserved[1] == 50 && r.reserved[2] == 1, "reserved per unit");
    ok(r.spent[0] == 0 && r.spent[1] == 0 && r.spent[2] == 0, "nothing spent yet");
    is_int(r.start, T0, "the row's window starts at midnight");
    is_int(r.end, T0 + DAY, "and ends at the next");
    is_int(r.updated, now, "written now");
    is_int(holds(s), 1, "one reservation open");

    const uint64_t used[3] = {30, 20, 1};
    is_int(store_ledger_settle(s, id, used, now + 5), RL_OK, "settle to what was used");
    r = row_of(s, "token:arith", LEDGER_DAY, now);
    ok(r.reserved[0] == 0 && r.reserved[1] == 0 && r.reserved[2] == 0, "nothing reserved after");
    ok(r.spent[0] == 30 && r.spent[1] == 20 && r.spent[2] == 1, "the actual amounts spent");
    is_int(holds(s), 0, "no reservation open");
    is_int(store_ledger_settle(s, id, used, now + 6), RL_NOTFOUND, "settling twice");
    is_int(store_ledger_release(s, id, now + 6), RL_NOTFOUND, "releasing a settled one");
    r = row_of(s, "token:arith", LEDGER_DAY, now);
    is_int(r.spent[0], 30, "counted once");

    is_int(store_ledger_reserve(s, c, 1, now, id, NULL), RL_OK, "reserve again");
    is_int(store_ledger_release(s, id, now + 7), RL_OK, "release: the call never happened");
    r = row_of(s, "token:arith", LEDGER_DAY, now);
    ok(r.reserved[0] == 0 && r.spent[0] == 30 && r.spent[2] == 1, "released: nothing spent");

    /* Limits, per unit: USD 250 (30 spent). */
    c[0] = charge("token:arith", LEDGER_DAY, 100, 0, 1);
    c[0].limit[LEDGER_USD] = 250;
    is_int(reserve_kept(s, c, 1, now, &why), RL_OK, "130 of 250");
    is_int(reserve_kept(s, c, 1, now, &why), RL_OK, "230 of 250");
    memset(&why, 0, sizeof why);
    is_int(store_ledger_reserve(s, c, 1, now, id2, &why), RL_OVER_LIMIT, "330 would pass 250");
    is_int(why.charge, 0, "the refusal names the charge");
    is_int(why.unit, LEDGER_USD, "and the unit");
    is_int(why.limit, 250, "its limit");
    is_int(why.used, 230, "what is used (spent + reserved)");
    is_int(why.amount, 100, "what was asked");
    is_int(why.start, T0, "the window");
    is_int(why.reset, T0 + DAY, "and when it resets (Retry-After = reset - now)");
    r = row_of(s, "token:arith", LEDGER_DAY, now);
    is_int(r.reserved[0], 200, "a refusal reserves nothing");
    c[0].amount[LEDGER_USD] = 20;
    is_int(reserve_kept(s, c, 1, now, &why), RL_OK, "exactly up to the limit");
    c[0].amount[LEDGER_USD] = 1;
    is_int(store_ledger_reserve(s, c, 1, now, id2, &why), RL_OVER_LIMIT, "one more is too much");
    c[0].amount[LEDGER_USD] = 0;
    is_int(store_ledger_reserve(s, c, 1, now, id2, &why), RL_OK,
           "nothing more fits in a full budget");
    store_ledger_release(s, id2, now);

    /* Two charges: the refusal names the first in the caller's order that
     * does not fit, and a refusal reserves nothing in either row. */
    c[1] = charge("model:gpt-4o", LEDGER_MINUTE, 0, 500, 1);
    c[1].limit[LEDGER_TOKENS] = 800;
    c[0].amount[LEDGER_USD] = 1;
    is_int(reserve_kept(s, &c[1], 1, now, &why), RL_OK, "500 of 800 tokens");
    is_int(store_ledger_reserve(s, c, 2, now, id2, &why), RL_OVER_LIMIT, "both over");
    is_int(why.charge, 0, "the first charge is named");
    ledger_charge swapped[2] = {c[1], c[0]};
    is_int(store_ledger_reserve(s, swapped, 2, now, id2, &why), RL_OVER_LIMIT, "swapped");
    is_int(why.charge, 0, "the first in the caller's order, whatever the key order");
    is_int(why.unit, LEDGER_TOKENS, "its unit");
    is_int(why.reset - now, ledger_window_end(LEDGER_MINUTE, now - now % 60) - now,
           "a minute window resets at the next minute");
    r = row_of(s, "model:gpt-4o", LEDGER_MINUTE, now);
    is_int(r.reserved[LEDGER_TOKENS], 500, "the other row is untouched");

    /* Requests per minute. */
    c[0] = charge("token:rpm", LEDGER_MINUTE, 0, 0, 1);
    c[0].limit[LEDGER_REQUESTS] = 3;
    unsigned admitted = 0;
    for (int i = 0; i < 5; i++)
        admitted += reserve_kept(s, c, 1, now, NULL) == RL_OK;
    is_int(admitted, 3, "an rpm of 3 admits 3 requests in a minute");
    is_int(reserve_kept(s, c, 1, now + 60 - now % 60, NULL), RL_OK, "and more in the next minute");

    /* Partial: admitted while anything is left; the last one may pass the
     * limit by its own amount, never by more. */
    c[0] = charge("token:partial", LEDGER_DAY, 3, 0, 1);
    c[0].limit[LEDGER_USD] = 10;
    c[0].partial = 1;
    admitted = 0;
    for (int i = 0; i < 6; i++)
        admitted += reserve_kept(s, c, 1, now, NULL) == RL_OK;
    is_int(admitted, 4, "partial: 0, 3, 6 and 9 of 10 are below the limit");
    r = row_of(s, "token:partial", LEDGER_DAY, now);
    is_int(r.reserved[LEDGER_USD], 12, "overshoot: 2, less than one request's 3");
    c[0].partial = 0;
    c[0].scope = "token:hard";
    admitted = 0;
    for (int i = 0; i < 6; i++)
        admitted += reserve_kept(s, c, 1, now, NULL) == RL_OK;
    is_int(admitted, 3, "hard: 3, 6, 9 of 10; 12 would pass it");

    /* Settling more than reserved (a prompt estimated too low) is counted
     * as it was. */
    c[0] = charge("token:under", LEDGER_DAY, 10, 0, 1);
    store_ledger_reserve(s, c, 1, now, id2, NULL);
    const uint64_t more[3] = {25, 0, 1};
    store_ledger_settle(s, id2, more, now);
    r = row_of(s, "token:under", LEDGER_DAY, now);
    ok(r.spent[0] == 25 && r.reserved[0] == 0, "actual usage above the reservation is spent");

    /* Mistakes of the caller. */
    is_int(store_ledger_reserve(s, c, 0, now, id2, NULL), RL_INTERNAL, "no charges");
    ledger_charge dup[2] = {c[0], c[0]};
    is_int(store_ledger_reserve(s, dup, 2, now, id2, NULL), RL_INTERNAL, "one row twice");
    ledger_row zero;
    ledger_charge bad = c[0];
    bad.scope = "";
    is_int(store_ledger_reserve(s, &bad, 1, now, id2, NULL), RL_BAD_REQUEST, "an empty scope");
    bad.scope = "model:\r\nX-Injected: 1";
    is_int(store_ledger_reserve(s, &bad, 1, now, id2, NULL), RL_BAD_REQUEST,
           "a scope with control characters");
    is_int(store_ledger_read(s, bad.scope, LEDGER_DAY, now, &zero), RL_BAD_REQUEST,
           "is not read either");
    bad.scope = "x";
    bad.window = (ledger_window)7;
    is_int(store_ledger_reserve(s, &bad, 1, now, id2, NULL), RL_INTERNAL, "an unknown window");
    is_int(store_ledger_read(s, "token:never", LEDGER_MONTH, now, &zero), RL_OK,
           "reading a row nothing was counted in");
    ok(zero.spent[0] == 0 && zero.reserved[0] == 0 && zero.updated == 0 &&
           zero.start == 1811808000ull,
       "all zero, its window set");
    release_kept(s, now);
    is_int(holds(s), 0, "nothing left open");
    r = row_of(s, "token:partial", LEDGER_DAY, now);
    ok(r.reserved[LEDGER_USD] == 0 && r.spent[LEDGER_USD] == 0, "released: nothing spent");
}

/* Counts rows (store_ledger_scan). */
static int count_rows(void *ctx, const char *scope, ledger_window w, const ledger_row *row)
{
    (void)scope;
    (void)w;
    (void)row;
    (*(unsigned *)ctx)++;
    return 0;
}

/* ---- roll-over ------------------------------------------------------------- */

static void test_rollover(store *s)
{
    uint8_t id[LEDGER_ID_LEN], late[LEDGER_ID_LEN];
    ledger_refusal why;
    const uint64_t last = T0 + 10 * DAY - 1; /* 2027-06-24 23:59:59 */
    ledger_charge c = charge("token:roll", LEDGER_DAY, 60, 0, 1);
    c.limit[LEDGER_USD] = 100;
    is_int(store_ledger_reserve(s, &c, 1, last - 100, late, NULL), RL_OK, "60 of 100 on day D");
    is_int(store_ledger_reserve(s, &c, 1, last, id, &why), RL_OVER_LIMIT,
           "120 would pass 100 at 23:59:59");
    is_int(why.reset - last, 1, "Retry-After: 1 s");
    is_int(store_ledger_reserve(s, &c, 1, last + 1, id, &why), RL_OK,
           "at 00:00:00 the next day's budget is whole");
    const uint64_t used[3] = {55, 0, 1};
    is_int(store_ledger_settle(s, late, used, last + 30), RL_OK,
           "day D's request settles after midnight");
    ledger_row d = row_of(s, "token:roll", LEDGER_DAY, last);
    ledger_row next = row_of(s, "token:roll", LEDGER_DAY, last + 1);
    ok(d.spent[0] == 55 && d.reserved[0] == 0, "into day D, where it was reserved");
    ok(next.spent[0] == 0 && next.reserved[0] == 60, "day D+1 has only its own");
    store_ledger_release(s, id, last + 31);

    /* Month ends: the 31st, 28 February, 29 February of a leap year. */
    struct {
        uint64_t next_first;
        const char *what;
    } ends[] = {
        {1801440000ull, "31 January -> 1 February"},
        {1803859200ull, "28 February 2027 -> 1 March"},
        {1835481600ull, "29 February 2028 -> 1 March"},
        {1830297600ull, "31 December 2027 -> 1 January 2028"},
    };
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        char scope[32], what[128];
        snprintf(scope, sizeof scope, "upstream:month-%zu", i);
        ledger_charge m = charge(scope, LEDGER_MONTH, 1000, 0, 1);
        m.limit[LEDGER_USD] = 1000;
        uint64_t before = ends[i].next_first - 1;
        store_ledger_reserve(s, &m, 1, before - 20 * DAY, id, NULL);
        snprintf(what, sizeof what, "%s: full in the month's last second", ends[i].what);
        is_int(store_ledger_reserve(s, &m, 1, before, late, &why), RL_OVER_LIMIT, what);
        snprintf(what, sizeof what, "%s: resets at the next month's first second", ends[i].what);
        is_int(why.reset, ends[i].next_first, what);
        snprintf(what, sizeof what, "%s: a new budget then", ends[i].what);
        is_int(store_ledger_reserve(s, &m, 1, before + 1, late, NULL), RL_OK, what);
        store_ledger_release(s, id, before + 1);
        store_ledger_release(s, late, before + 1);
    }
}

/* ---- processes ------------------------------------------------------------- */

static pid_t spawn(const char *role, const char *a1, const char *a2, int *to_child, int *from_child)
{
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0)
        return -1;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        dup2(down[0], 0);
        dup2(up[1], 1);
        close(down[1]);
        close(up[0]);
        execl(self, "t_ledger", role, home, keyfile, a1, a2, (char *)NULL);
        _exit(127);
    }
    close(down[0]);
    close(up[1]);
    *to_child = down[1];
    *from_child = up[0];
    return p;
}

static int wait_status(pid_t p)
{
    int st;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Child: reserves USD 500 and a request on scope a1 (DAY, at T0), says
 * 'R', then, with a2 "stay", waits until killed; otherwise closes and
 * exits, leaving the reservation open. */
static int holder_role(const char *scope, const char *how)
{
    store_options o = opts();
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 2;
    ledger_charge c = charge(scope, LEDGER_DAY, 500, 0, 1);
    c.limit[LEDGER_USD] = 1000;
    uint8_t id[LEDGER_ID_LEN];
    if (store_ledger_reserve(s, &c, 1, T0 + 50, id, NULL) != RL_OK)
        return 3;
    if (write(1, "R", 1) != 1)
        return 4;
    if (strcmp(how, "stay") == 0) {
        char x;
        (void)!read(0, &x, 1); /* until killed */
    }
    store_close(s);
    return 0;
}

static void test_killed(store *s)
{
    int tell, hear;
    char c = 0;
    pid_t p = spawn("--hold", "token:killed", "stay", &tell, &hear);
    ok(p > 0 && read(hear, &c, 1) == 1 && c == 'R', "a worker reserved and is streaming");
    ledger_row r = row_of(s, "token:killed", LEDGER_DAY, T0);
    is_int(r.reserved[LEDGER_USD], 500, "its reservation is in the row");
    is_int(store_maintain(s, T0 + 60), RL_OK, "maintenance while it lives");
    r = row_of(s, "token:killed", LEDGER_DAY, T0);
    is_int(r.reserved[LEDGER_USD], 500, "keeps a live worker's reservation");
    kill(p, SIGKILL);
    is_int(wait_status(p), 128 + SIGKILL, "the worker is killed mid-stream");
    close(tell);
    close(hear);
    is_int(store_maintain(s, T0 + 61), RL_OK, "maintenance after the kill");
    r = row_of(s, "token:killed", LEDGER_DAY, T0);
    is_int(r.reserved[LEDGER_USD], 0, "the dead worker's reservation is released");
    is_int(r.spent[LEDGER_USD], 500, "counted as spent");
    is_int(r.spent[LEDGER_REQUESTS], 1, "with its request");
    is_int(holds(s), 0, "no reservation left open");

    ledger_charge more = charge("token:killed", LEDGER_DAY, 501, 0, 1);
    more.limit[LEDGER_USD] = 1000;
    uint8_t id[LEDGER_ID_LEN];
    is_int(store_ledger_reserve(s, &more, 1, T0 + 62, id, NULL), RL_OVER_LIMIT,
           "the budget is not blocked, and the spend counts");
    more.amount[LEDGER_USD] = 500;
    is_int(store_ledger_reserve(s, &more, 1, T0 + 62, id, NULL), RL_OK, "the rest is usable");
    store_ledger_release(s, id, T0 + 62);

    /* A live process's reservation goes once older than hold_max_age. */
    more.amount[LEDGER_USD] = 100;
    is_int(store_ledger_reserve(s, &more, 1, T0 + 100, id, NULL), RL_OK, "a reservation leaks");
    is_int(store_maintain(s, T0 + 100 + HOLD_MAX_AGE), RL_OK, "maintenance at hold_max_age");
    is_int(holds(s), 1, "kept until then");
    is_int(store_maintain(s, T0 + 101 + HOLD_MAX_AGE), RL_OK, "maintenance a second later");
    is_int(holds(s), 0, "released");
    r = row_of(s, "token:killed", LEDGER_DAY, T0);
    ok(r.reserved[LEDGER_USD] == 0 && r.spent[LEDGER_USD] == 600, "counted as spent");
    is_int(store_ledger_settle(s, id, (uint64_t[3]){1, 1, 1}, T0 + 700), RL_NOTFOUND,
           "its owner's late settle finds nothing");
}

/* ---- concurrency ------------------------------------------------------------- */

typedef struct race {
    store *s;
    const char *scope;
    uint64_t limit, amount;
    int partial, settle, attempts;
    unsigned won, refused, failed;
} race;

static void *race_thread(void *arg)
{
    race *r = arg;
    ledger_charge c[2];
    c[0] = charge(r->scope, LEDGER_DAY, r->amount, 0, 1);
    c[0].limit[LEDGER_USD] = r->limit;
    c[0].partial = r->partial;
    c[1] = charge("upstream:race", LEDGER_MINUTE, r->amount, 0, 1); /* a second row */
    for (int i = 0; i < r->attempts; i++) {
        uint8_t id[LEDGER_ID_LEN];
        rl_err e = store_ledger_reserve(r->s, c, 2, T0 + 5 * DAY, id, NULL);
        if (e == RL_OK) {
            r->won++;
            const uint64_t used[3] = {r->amount, 0, 1};
            if (r->settle && store_ledger_settle(r->s, id, used, T0 + 5 * DAY) != RL_OK)
                r->failed++;
        } else if (e == RL_OVER_LIMIT) {
            r->refused++;
        } else {
            r->failed++;
        }
    }
    return NULL;
}

#define RACE_THREADS 4
#define RACE_PROCS 4
#define RACE_ATTEMPTS 20

/* Child: RACE_THREADS threads race on scope a1 with "LIMIT AMOUNT PARTIAL
 * SETTLE" in a2; prints "won refused failed". */
static int racer_role(const char *scope, const char *spec)
{
    unsigned long v[4];
    char *p = (char *)spec;
    for (int i = 0; i < 4; i++) {
        v[i] = strtoul(p, &p, 10);
        if (*p == ' ')
            p++;
    }
    store_options o = opts();
    store *s = NULL;
    if (store_open(&o, &s) != RL_OK)
        return 2;
    race r[RACE_THREADS];
    pthread_t th[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        r[i] = (race){s, scope, v[0], v[1], (int)v[2], (int)v[3], RACE_ATTEMPTS, 0, 0, 0};
        pthread_create(&th[i], NULL, race_thread, &r[i]);
    }
    unsigned won = 0, refused = 0, failed = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(th[i], NULL);
        won += r[i].won;
        refused += r[i].refused;
        failed += r[i].failed;
    }
    store_close(s);
    printf("%u %u %u\n", won, refused, failed);
    return 0;
}

/* Runs RACE_PROCS racer processes at once; sums what they report. */
static void race_all(const char *scope, const char *spec, unsigned *won, unsigned *failed)
{
    pid_t p[RACE_PROCS];
    int tell[RACE_PROCS], hear[RACE_PROCS];
    *won = *failed = 0;
    unsigned refused = 0;
    for (int i = 0; i < RACE_PROCS; i++)
        p[i] = spawn("--race", scope, spec, &tell[i], &hear[i]);
    for (int i = 0; i < RACE_PROCS; i++) {
        char buf[64] = {0};
        ssize_t n = read(hear[i], buf, sizeof buf - 1);
        char *q = buf;
        unsigned long w = strtoul(q, &q, 10), r = strtoul(q, &q, 10), f = strtoul(q, &q, 10);
        if (n <= 0 || wait_status(p[i]) != 0)
            f++;
        *won += (unsigned)w;
        refused += (unsigned)r;
        *failed += (unsigned)f;
        close(tell[i]);
        close(hear[i]);
    }
    printf("# %s %s: %u won, %u refused, %u failed\n", scope, spec, *won, refused, *failed);
}

static void test_concurrency(store *s)
{
    const uint64_t now = T0 + 5 * DAY;
    unsigned won, failed;
    char what[160];
    const unsigned attempts = RACE_PROCS * RACE_THREADS * RACE_ATTEMPTS;

    /* L = 40 requests' worth, held (never settled): exactly 40 win. */
    race_all("token:race-hold", "40 1 0 0", &won, &failed);
    snprintf(what, sizeof what, "%u attempts by %d processes x %d threads: exactly 40 of 40 win",
             attempts, RACE_PROCS, RACE_THREADS);
    is_int(won, 40, what);
    is_int(failed, 0, "no store failure under contention");
    ledger_row r = row_of(s, "token:race-hold", LEDGER_DAY, now);
    is_int(r.reserved[LEDGER_USD], 40, "the row holds exactly the limit");
    is_int(holds(s), 40, "40 reservations open (their processes have exited)");
    is_int(store_maintain(s, now), RL_OK, "maintenance");
    is_int(holds(s), 0, "releases every reservation of the exited racers");
    r = row_of(s, "token:race-hold", LEDGER_DAY, now);
    ok(r.reserved[LEDGER_USD] == 0 && r.spent[LEDGER_USD] == 40, "counted as spent");

    /* L = 40, each settled as soon as it wins: still exactly 40. */
    race_all("token:race-settle", "40 1 0 1", &won, &failed);
    is_int(won, 40, "reserve-and-settle racers: exactly 40 of 40 win");
    is_int(failed, 0, "no store failure");
    r = row_of(s, "token:race-settle", LEDGER_DAY, now);
    ok(r.spent[LEDGER_USD] == 40 && r.reserved[LEDGER_USD] == 0, "spent 40, nothing reserved");
    ledger_row up = row_of(s, "upstream:race", LEDGER_MINUTE, now);
    ok(up.spent[LEDGER_REQUESTS] == 80 && up.reserved[LEDGER_REQUESTS] == 0,
       "the second row of every reservation counted each winner once");

    /* Reservations of 3 against 10: hard admits 3 (9), partial 4 (12:
     * over by less than one reservation). */
    race_all("token:race-hard3", "10 3 0 0", &won, &failed);
    is_int(won, 3, "amount 3, limit 10, hard: exactly 3 win");
    race_all("token:race-part3", "10 3 1 0", &won, &failed);
    is_int(won, 4, "amount 3, limit 10, partial: exactly 4 win (overshoot 2 < 3)");
    is_int(failed, 0, "no store failure");
    is_int(store_maintain(s, now + 1), RL_OK, "maintenance");
    is_int(holds(s), 0, "nothing left open");
}

/* ---- old rows ------------------------------------------------------------- */

static unsigned rows_with(store *s, const char *prefix)
{
    unsigned n = 0;
    if (store_ledger_scan(s, prefix, count_rows, &n) != RL_OK)
        return 999;
    return n;
}

static void test_expiry(store *s)
{
    const uint64_t t = T0 + 40 * DAY + 3600; /* 2027-07-25 01:00 */
    uint8_t id[LEDGER_ID_LEN];
    ledger_charge c[3] = {charge("old:a", LEDGER_MINUTE, 1, 1, 1),
                          charge("old:a", LEDGER_DAY, 1, 1, 1),
                          charge("old:a", LEDGER_MONTH, 1, 1, 1)};
    is_int(store_ledger_reserve(s, c, 3, t, id, NULL), RL_OK, "rows in every window");
    is_int(store_ledger_settle(s, id, (uint64_t[3]){1, 1, 1}, t), RL_OK, "settled");
    is_int(rows_with(s, "old:"), 3, "three rows");
    is_int(rows_with(s, "old:b"), 0, "a prefix matches only its own");
    uint64_t minute_end = t + 60;
    is_int(store_maintain(s, minute_end + LEDGER_KEEP_MINUTE), RL_OK, "maintain");
    is_int(rows_with(s, "old:"), 3, "a minute row is kept LEDGER_KEEP_MINUTE");
    is_int(store_maintain(s, minute_end + LEDGER_KEEP_MINUTE + 61), RL_OK, "maintain later");
    is_int(rows_with(s, "old:"), 2, "then goes");
    uint64_t day_end = t - 3600 + DAY;
    is_int(store_maintain(s, day_end + LEDGER_KEEP_DAY + 1), RL_OK, "maintain 62 days on");
    is_int(rows_with(s, "old:"), 1, "the day row went, the month row stays");
    is_int(store_maintain(s, 1817078400ull + LEDGER_KEEP_MONTH), RL_OK,
           "maintain 400 days after July ended");
    is_int(rows_with(s, "old:"), 1, "the month row is kept LEDGER_KEEP_MONTH");
    is_int(store_maintain(s, 1817078400ull + LEDGER_KEEP_MONTH + 61), RL_OK, "maintain later");
    is_int(rows_with(s, "old:"), 0, "every row of ended windows is gone in time");
}

/* ---- survival ---------------------------------------------------------------- */

static void put_token(store *s)
{
    store_token t;
    memset(&t, 0, sizeof t);
    memset(t.hash, 0x5a, STORE_KEY_LEN);
    store_token_id_of(t.hash, t.id);
    snprintf(t.name, sizeof t.name, "survivor");
    t.usd_day = 123;
    is_int(store_token_put(s, &t, TOKEN_CREATE), RL_OK, "a token");
}

static void check_survivor(store *s, const char *where)
{
    char what[128];
    store_token t;
    snprintf(what, sizeof what, "%s: the token", where);
    is_int(store_token_find_name(s, "survivor", &t), RL_OK, what);
    ledger_row r = row_of(s, "token:exited", LEDGER_DAY, T0);
    snprintf(what, sizeof what, "%s: the exited worker's reservation", where);
    is_int(r.reserved[LEDGER_USD], 500, what);
    snprintf(what, sizeof what, "%s: released by the first maintenance", where);
    store_maintain(s, T0 + DAY + 100);
    r = row_of(s, "token:exited", LEDGER_DAY, T0);
    ok(r.reserved[LEDGER_USD] == 0 && r.spent[LEDGER_USD] == 500 && holds(s) == 0, what);
}

static void note_problem(void *ctx, const char *file, const char *what)
{
    (void)what;
    snprintf(ctx, 64, "%s", file);
}

/* A backup from before tokens.db, ledger.db and reservations.db still
 * verifies (and so restores: the store creates them when it opens); one
 * that has some of them but lost another does not. */
static void test_older_backup(const char *bk)
{
    char old[160], cmd[512], path[256], file[64] = "";
    snprintf(old, sizeof old, "%s/older", tmp);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", bk, old);
    ok(system(cmd) == 0, "copy the backup");
    store_options o = opts();
    unsigned problems = 9;
    snprintf(path, sizeof path, "%s/reservations.db", old);
    unlink(path);
    is_int(store_verify_dir(old, &o, note_problem, file, &problems), RL_OK, "verify it");
    is_int(problems, 1, "without reservations.db alone, it lost something");
    is_str(file, "reservations.db", "named");
    const char *later[] = {"tokens.db", "ledger.db"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", old, later[i]);
        unlink(path);
    }
    is_int(store_verify_dir(old, &o, NULL, NULL, &problems), RL_OK, "verify it");
    is_int(problems, 0, "without all three, it is a backup from before them");
    snprintf(path, sizeof path, "%s/cache.db", old);
    unlink(path);
    is_int(store_verify_dir(old, &o, NULL, NULL, &problems), RL_OK, "verify it");
    is_int(problems, 1, "cache.db is never optional");
}

static void test_survival(void)
{
    char bk[160], home2[160], newkey[200], oldkey[200];
    snprintf(bk, sizeof bk, "%s/backup", tmp);
    snprintf(home2, sizeof home2, "%s/home2", tmp);
    store_options o = opts();
    store *s = NULL;
    is_int(store_open(&o, &s), RL_OK, "open");
    if (!s)
        return;
    put_token(s);
    int tell, hear;
    char c = 0;
    pid_t p = spawn("--hold", "token:exited", "exit", &tell, &hear);
    ok(read(hear, &c, 1) == 1 && c == 'R' && wait_status(p) == 0,
       "a worker reserved and exited without settling");
    close(tell);
    close(hear);
    store_report rep;
    is_int(store_backup(s, bk, &rep), RL_OK, "hot backup");
    unsigned problems = 9;
    is_int(store_verify(s, NULL, NULL, &problems), RL_OK, "verify the live store");
    is_int(problems, 0, "tokens, rows and reservations verify");
    store_close(s);
    test_older_backup(bk);

    /* A restart. */
    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "reopen");
    if (s) {
        ledger_row r = row_of(s, "token:exited", LEDGER_DAY, T0);
        is_int(r.reserved[LEDGER_USD], 500, "the open reservation survives a restart");
        ledger_row k = row_of(s, "token:killed", LEDGER_DAY, T0);
        is_int(k.spent[LEDGER_USD], 600, "and what was spent (the killed worker's too)");
        store_close(s);
    }

    /* Restore into another home. */
    store_options o2 = opts_for(home2, keyfile);
    store_lock *lock = NULL;
    is_int(store_lock_exclusive(home2, &lock), RL_OK, "lock a fresh home");
    is_int(store_restore(&o2, lock, bk, &rep), RL_OK, "restore the backup");
    store_unlock(lock);
    s = NULL;
    is_int(store_open(&o2, &s), RL_OK, "the restored store opens");
    if (s) {
        check_survivor(s, "restored");
        store_close(s);
    }
    store_remove(&o2);

    /* Rekey the original (still holding the open reservation). */
    snprintf(newkey, sizeof newkey, "%s.new", keyfile);
    snprintf(oldkey, sizeof oldkey, "%s.old", keyfile);
    lock = NULL;
    is_int(store_lock_exclusive(home, &lock), RL_OK, "lock for rekey");
    is_int(store_rekey(&o, lock, newkey, oldkey, &rep), RL_OK, "rekey");
    store_unlock(lock);
    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "the re-keyed store opens");
    if (s) {
        check_survivor(s, "re-keyed");
        problems = 9;
        is_int(store_verify(s, NULL, NULL, &problems), RL_OK, "verify after rekey");
        is_int(problems, 0, "clean");
        store_close(s);
    }
}

static int child_role(int argc, char **argv)
{
    if (argc != 6)
        return 120;
    snprintf(home, sizeof home, "%s", argv[2]);
    snprintf(keyfile, sizeof keyfile, "%s", argv[3]);
    if (strcmp(argv[1], "--hold") == 0)
        return holder_role(argv[4], argv[5]);
    if (strcmp(argv[1], "--race") == 0)
        return racer_role(argv[4], argv[5]);
    return 121;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return child_role(argc, argv);
    if (!realpath(argv[0], self)) {
        perror("realpath");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(300);
    snprintf(tmp, sizeof tmp, "/tmp/t_ledger.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);

    test_windows();
    test_encodings();

    store_options o = opts();
    store *s = NULL;
    is_int(store_keyfile_ensure(keyfile), RL_OK, "key file");
    is_int(store_open(&o, &s), RL_OK, "open");
    if (s) {
        test_arithmetic(s);
        test_rollover(s);
        test_killed(s);
        test_concurrency(s);
        store_close(s);
    }
    test_survival();
    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "open again");
    if (s) {
        test_expiry(s);
        store_close(s);
    }

    is_int(store_remove(&o), RL_OK, "store_remove");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
