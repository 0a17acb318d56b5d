/*
 * t_tokens.c — managing client tokens (engine/tokens.h), what relay-admin
 * token and the admin API's /tokens both call: USD amounts read exactly
 * into nano-USD (the amounts a double gets wrong included), durations,
 * dates and @unix times, each field's checks and messages, and the
 * operations on a real store: create (the text shown once, the store
 * holding its hash), names unique, addressing by id or name, update (a
 * revoked token refused), revoke (immediate, a grace text included),
 * rotate (id and budgets kept, a grace period for the old text), and a
 * token as JSON (never its hash; its text only when handed it).
 *
 * Times are passed in; nothing sleeps. The store lives in a mkdtemp
 * directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/auth.h"
#include "engine/tokens.h"
#include "store/base/rl_hex.h"
#include "tests/unit/tap.h"

#define NOW 1800000000ull

static relay_config cfg;

static void test_usd(void)
{
    static const struct {
        const char *text;
        uint64_t nusd; /* 0: refused */
    } cases[] = {
        {"0.10", 100000000},
        {"5", 5000000000},
        {"12.5", 12500000000},
        {"0.07", 70000000},    /* 0.07 * 1e9 is 69999999.99999999 in a double */
        {"0.29", 290000000},   /* 289999999.99999994 */
        {"1.005", 1005000000}, /* 1004999999.9999999 */
        {"4.35", 4350000000},  /* 4349999999.999999 */
        {"0.000000001", 1},
        {"007.50", 7500000000},
        {"9223372036.854775807", INT64_MAX},
        {"9223372036.854775808", 0},
        {"99999999999", 0},
        {"0.0000000001", 0}, /* a tenth of a nano-USD */
        {"5.", 0},
        {".5", 0},
        {"-1", 0},
        {"+1", 0},
        {"1e3", 0},
        {"1,5", 0},
        {" 5", 0},
        {"5 ", 0},
        {"$5", 0},
        {"", 0},
        {"0x10", 0},
        {"123456789012345678901234567890", 0},
        {"1.123456789123456789123", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = 0;
        rl_err e = tokens_parse_usd(cases[i].text, &got);
        char what[96];
        snprintf(what, sizeof what, "USD \"%s\" is %s", cases[i].text,
                 cases[i].nusd ? "read" : "refused");
        is_int(e, cases[i].nusd ? RL_OK : RL_BAD_REQUEST, what);
        if (cases[i].nusd) {
            snprintf(what, sizeof what, "USD \"%s\" is exact", cases[i].text);
            is_int(got, cases[i].nusd, what);
        }
    }
    uint64_t zero = 9;
    is_int(tokens_parse_usd("0", &zero), RL_OK, "0 is an amount (tokens_set refuses it)");
    is_int(zero, 0, "of nothing");
    is_int(tokens_parse_usd(NULL, &zero), RL_BAD_REQUEST, "NULL is no amount");

    static const struct {
        uint64_t nusd;
        const char *text;
    } shown[] = {
        {100000000, "0.10"},
        {5000000000, "5.00"},
        {12500000000, "12.50"},
        {1, "0.000000001"},
        {1234567, "0.001234567"},
        {0, "0.00"},
        {UINT64_MAX, "18446744073.709551615"},
    };
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        char text[TOKENS_USD_SIZE], what[96];
        uint64_t back = 0;
        tokens_format_usd(shown[i].nusd, text);
        snprintf(what, sizeof what, "%llu nano-USD is shown as %s",
                 (unsigned long long)shown[i].nusd, shown[i].text);
        is_str(text, shown[i].text, what);
        if (shown[i].nusd <= INT64_MAX) {
            tokens_parse_usd(text, &back);
            is_int(back, shown[i].nusd, "and reads back the same");
        }
    }
}

static void test_durations_and_times(void)
{
    static const struct {
        const char *text;
        int ok;
        uint64_t seconds;
    } durations[] = {
        {"90", 1, 90},     {"30s", 1, 30},
        {"15m", 1, 900},   {"12h", 1, 43200},
        {"7d", 1, 604800}, {"0", 1, 0},
        {"7x", 0, 0},      {"d", 0, 0},
        {"", 0, 0},        {"7dd", 0, 0},
        {"-7d", 0, 0},     {"7 d", 0, 0},
        {"1.5h", 0, 0},    {"213503982334602d", 0, 0}, /* overflows in seconds */
    };
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        uint64_t got = 0;
        char what[96];
        snprintf(what, sizeof what, "duration \"%s\" is %s", durations[i].text,
                 durations[i].ok ? "read" : "refused");
        is_int(tokens_parse_duration(durations[i].text, &got),
               durations[i].ok ? RL_OK : RL_BAD_REQUEST, what);
        if (durations[i].ok)
            is_int(got, durations[i].seconds, "in seconds");
    }
    char text[32];
    tokens_format_duration(259200, text, sizeof text);
    is_str(text, "3d", "3 days are shown as 3d");
    tokens_format_duration(90, text, sizeof text);
    is_str(text, "1m", "90 s with the largest unit that fits");
    tokens_format_duration(0, text, sizeof text);
    is_str(text, "0s", "nothing is 0s");

    static const struct {
        const char *text;
        int ok;
        uint64_t at;
    } times[] = {
        {"7d", 1, NOW + 604800},
        {"90", 1, NOW + 90},
        {"2026-12-31", 1, 1798675200},
        {"2026-12-31T18:00:00Z", 1, 1798740000},
        {"2028-02-29", 1, 1835395200},
        {"@1798761600", 1, 1798761600},
        {"2027-02-29", 0, 0}, /* not a leap year: not moved on to March 1st */
        {"2026-02-30", 0, 0},
        {"2026-13-01", 0, 0},
        {"2026-12-32", 0, 0},
        {"2026-12-31T24:00:00Z", 0, 0},
        {"2026-12-31T18:00:60Z", 0, 0},
        {"2026-12-31T18:00:00", 0, 0}, /* UTC only, said with Z */
        {"2026-12-31 18:00:00Z", 0, 0},
        {"2026-12-31T18:00Z", 0, 0},
        {"1969-12-31", 0, 0},
        {"26-12-31", 0, 0},
        {"2026/12/31", 0, 0},
        {"2026-1-31", 0, 0},
        {"@", 0, 0},
        {"@-5", 0, 0},
        {"@12x", 0, 0},
        {"tomorrow", 0, 0},
    };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        uint64_t got = 0;
        char what[96];
        snprintf(what, sizeof what, "time \"%s\" is %s", times[i].text,
                 times[i].ok ? "read" : "refused");
        is_int(tokens_parse_time(times[i].text, NOW, &got), times[i].ok ? RL_OK : RL_BAD_REQUEST,
               what);
        if (times[i].ok)
            is_int(got, times[i].at, "as unix seconds");
    }
}

/* tokens_set on t, field given as given; the message (or "") into msg. */
static rl_err set(store_token *t, const char *field, const char *value, char *msg, size_t cap)
{
    rl_buf why;
    rl_buf_init(&why, 0);
    rl_err e = tokens_set(t, field, value, &cfg, NOW, &why);
    snprintf(msg, cap, "%s", why.data ? why.data : "");
    rl_buf_release(&why);
    return e;
}

static void test_fields(void)
{
    store_token t;
    memset(&t, 0, sizeof t);
    char msg[1024];
    is_int(set(&t, "--budget-usd-day", "0.10", msg, sizeof msg), RL_OK, "--budget-usd-day 0.10");
    is_int(t.usd_day, 100000000, "in nano-USD");
    is_int(set(&t, "budget_usd_month", "12.5", msg, sizeof msg), RL_OK, "budget_usd_month");
    is_int(t.usd_month, 12500000000, "in nano-USD");
    is_int(set(&t, "budget-tokens-day", "100000", msg, sizeof msg), RL_OK, "budget-tokens-day");
    is_int(t.tokens_day, 100000, "tokens a day");
    is_int(set(&t, "--rpm", "60", msg, sizeof msg), RL_OK, "--rpm");
    is_int(set(&t, "tpm", "9223372036854775807", msg, sizeof msg), RL_OK, "tpm at its largest");
    is_int(t.tpm, INT64_MAX, "kept");
    is_int(set(&t, "tpm", "9223372036854775808", msg, sizeof msg), RL_BAD_REQUEST,
           "tpm past what JSON's integers hold");

    is_int(set(&t, "--budget-usd-day", "0", msg, sizeof msg), RL_BAD_REQUEST, "a budget of 0");
    ok(strstr(msg, "--budget-usd-day: 0 would allow nothing") != NULL,
       "is refused, named as given, saying why");
    printf("# %s\n", msg);
    is_int(set(&t, "budget_usd_day", "0.00", msg, sizeof msg), RL_BAD_REQUEST, "0.00 too");
    is_int(set(&t, "--budget-usd-day", "0.1234567891", msg, sizeof msg), RL_BAD_REQUEST,
           "a tenth of a nano-USD");
    ok(strstr(msg, "--budget-usd-day: \"0.1234567891\" is not an amount of USD") != NULL,
       "is refused, with the value");
    is_int(t.usd_day, 100000000, "a refused value changes nothing");
    is_int(set(&t, "--budget-usd-day", "none", msg, sizeof msg), RL_OK, "none");
    is_int(t.usd_day, 0, "removes the budget");
    is_int(set(&t, "rpm", "0", msg, sizeof msg), RL_BAD_REQUEST, "rpm 0");
    ok(strstr(msg, "rpm: 0 would allow nothing") != NULL, "says why");
    is_int(set(&t, "rpm", "-1", msg, sizeof msg), RL_BAD_REQUEST, "rpm -1");
    is_int(set(&t, "rpm", "1.5", msg, sizeof msg), RL_BAD_REQUEST, "rpm 1.5");
    is_int(set(&t, "rpm", "none", msg, sizeof msg), RL_OK, "rpm none");
    is_int(t.rpm, 0, "removes the limit");

    is_int(set(&t, "--frobnicate", "1", msg, sizeof msg), RL_BAD_REQUEST, "an unknown field");
    ok(strstr(msg, "--frobnicate is not a field") != NULL, "is named");
    is_int(set(&t, "budget-usd_day", "1", msg, sizeof msg), RL_OK, "dashes and underscores mix");
    is_int(set(&t, "---rpm", "1", msg, sizeof msg), RL_BAD_REQUEST, "three dashes do not");

    is_int(set(&t, "name", "ci agent", msg, sizeof msg), RL_OK, "a name with a space inside");
    is_str(t.name, "ci agent", "kept");
    is_int(set(&t, "name", " ci", msg, sizeof msg), RL_BAD_REQUEST, "a space at the start");
    is_int(set(&t, "name", "", msg, sizeof msg), RL_BAD_REQUEST, "an empty name");
    is_int(set(&t, "name", "caf\xc3\xa9", msg, sizeof msg), RL_BAD_REQUEST, "not ASCII");
    is_int(set(&t, "name", "a\tb", msg, sizeof msg), RL_BAD_REQUEST, "a control character");
    char longname[TOKEN_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    is_int(set(&t, "name", longname, msg, sizeof msg), RL_BAD_REQUEST, "65 characters");
    longname[TOKEN_NAME_MAX] = '\0';
    is_int(set(&t, "name", longname, msg, sizeof msg), RL_OK, "64 characters");
    is_int(set(&t, "--name", "DeadBeef", msg, sizeof msg), RL_BAD_REQUEST, "8 hex digits");
    ok(strstr(msg, "reads as a token's id") != NULL, "read as an id");
    is_int(set(&t, "--name", "deadbeef1", msg, sizeof msg), RL_OK, "9 hex digits are a name");

    is_int(set(&t, "--upstreams", " openai , claude ", msg, sizeof msg), RL_OK,
           "upstreams, spaces around the items");
    is_int(t.n_upstreams, 2, "two");
    is_str(t.upstreams[1], "claude", "trimmed");
    is_int(set(&t, "--upstreams", "openai,gemini", msg, sizeof msg), RL_BAD_REQUEST,
           "an upstream relay.ini does not have");
    ok(strstr(msg, "--upstreams: relay.ini has no [upstream.gemini] (it has: openai, claude)"),
       "names the ones it has");
    printf("# %s\n", msg);
    is_int(t.n_upstreams, 2, "and changes nothing");
    is_int(set(&t, "--upstreams", "openai,,claude", msg, sizeof msg), RL_BAD_REQUEST,
           "an empty item");
    is_int(set(&t, "--upstreams", "", msg, sizeof msg), RL_OK, "\"\": every upstream");
    is_int(t.n_upstreams, 0, "no list");
    is_int(set(&t, "--models", "gpt-4o*,claude-*", msg, sizeof msg), RL_OK, "model patterns");
    is_int(t.n_models, 2, "two");
    is_str(t.models[0], "gpt-4o*", "as given");
    is_int(set(&t, "--models", "gpt 4o", msg, sizeof msg), RL_BAD_REQUEST, "a space inside one");
    char many[17 * 3 + 1] = "";
    for (int i = 0; i < 17; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s m", i ? "," : "");
    is_int(set(&t, "--models", many, msg, sizeof msg), RL_BAD_REQUEST, "17 patterns");
    ok(strstr(msg, "at most 16") != NULL, "at most 16");

    is_int(set(&t, "--expires", "7d", msg, sizeof msg), RL_OK, "expires in 7 days");
    is_int(t.expires, NOW + 604800, "from now");
    is_int(set(&t, "--expires", "2020-01-01", msg, sizeof msg), RL_BAD_REQUEST, "a past date");
    ok(strstr(msg, "is not in the future (to stop a token now, revoke it)") != NULL, "says so");
    is_int(set(&t, "--expires", "0s", msg, sizeof msg), RL_BAD_REQUEST, "now is not the future");
    is_int(set(&t, "--expires", "10000-01-01", msg, sizeof msg), RL_BAD_REQUEST, "year 10000");
    is_int(set(&t, "--expires", "@253402300800", msg, sizeof msg), RL_BAD_REQUEST,
           "after year 9999");
    is_int(set(&t, "--expires", "soon", msg, sizeof msg), RL_BAD_REQUEST, "not a time");
    ok(strstr(msg, "--expires: \"soon\" is not a duration") != NULL, "says what is");
    is_int(set(&t, "expires", "never", msg, sizeof msg), RL_OK, "never");
    is_int(t.expires, 0, "no expiry");
}

/* ---- operations on a store ------------------------------------------------ */

static char tmp[64], home[128], keyfile[160];

static int is_text(const char *text)
{
    if (strncmp(text, "rly-", 4) != 0 || strlen(text) != 68)
        return 0;
    for (const char *p = text + 4; *p; p++)
        if (rl_hex_digit((unsigned char)*p) < 0)
            return 0;
    return 1;
}

/* Whether the store keys the token by the SHA-256 of text, its id its
 * first 8 digits. */
static int keyed_by(const store_token *t, const char *text)
{
    uint8_t h[AUTH_HASH_LEN];
    char id[TOKEN_ID_LEN + 1];
    auth_token_hash(text, h);
    store_token_id_of(h, id);
    return memcmp(h, t->hash, sizeof h) == 0 && strcmp(id, t->id) == 0;
}

static void test_operations(store *s)
{
    tokens_row row, other;
    char text[TOKENS_TEXT_SIZE], text2[TOKENS_TEXT_SIZE], hex[2 * STORE_KEY_LEN + 1];
    rl_buf why;
    rl_buf_init(&why, 0);
    const tokens_edit ci[] = {{"--name", "ci"},        {"--upstreams", "openai"},
                              {"--models", "gpt-4o*"}, {"--budget-usd-day", "0.10"},
                              {"--rpm", "60"},         {"--expires", "30d"}};
    is_int(tokens_create(s, &cfg, ci, 6, NOW, &row, text, &why), RL_OK, "create ci");
    ok(is_text(text), "its text: rly- and 64 hex digits");
    ok(keyed_by(&row.t, text), "the store keys it by the text's SHA-256; its id from it");
    is_int(row.t.usd_day, 100000000, "with its budget");
    is_int(row.t.created, NOW, "created now");
    is_int(row.t.expires, NOW + 30 * 86400, "expiring in 30 days");
    char ci_id[TOKEN_ID_LEN + 1];
    snprintf(ci_id, sizeof ci_id, "%s", row.t.id);

    rl_buf_reset(&why);
    const tokens_edit again[] = {{"name", "ci"}};
    is_int(tokens_create(s, &cfg, again, 1, NOW, &other, text2, &why), RL_EXISTS,
           "a second token named ci");
    char want[512];
    snprintf(want, sizeof want, "the name \"ci\" is taken by token %s", ci_id);
    ok(why.data && strstr(why.data, want), "says which token has it");
    is_int(text2[0], 0, "and gives no text");
    rl_buf_reset(&why);
    const tokens_edit nameless[] = {{"rpm", "5"}};
    is_int(tokens_create(s, &cfg, nameless, 1, NOW, &other, text2, &why), RL_BAD_REQUEST,
           "a token without a name");
    ok(why.data && strstr(why.data, "needs a name"), "says so");
    rl_buf_reset(&why);
    const tokens_edit bad[] = {{"name", "x"}, {"budget_usd_day", "ten"}};
    is_int(tokens_create(s, &cfg, bad, 2, NOW, &other, text2, &why), RL_BAD_REQUEST, "a bad value");
    ok(why.data && strstr(why.data, "budget_usd_day: \"ten\""), "named as given");
    rl_buf_reset(&why);
    const tokens_edit agent[] = {{"name", "agent"}};
    is_int(tokens_create(s, &cfg, agent, 1, NOW + 1, &other, text2, &why), RL_OK, "create agent");

    tokens_list l;
    is_int(tokens_list_load(s, NOW, &l), RL_OK, "list");
    is_int(l.n, 2, "two tokens");
    is_str(l.n == 2 ? l.v[0].t.name : "", "agent", "by name: agent first");
    char upper[TOKEN_ID_LEN + 1];
    for (int i = 0; i <= TOKEN_ID_LEN; i++)
        upper[i] = (char)(ci_id[i] >= 'a' && ci_id[i] <= 'f' ? ci_id[i] - 32 : ci_id[i]);
    const tokens_row *f = tokens_list_find(&l, upper);
    is_str(f ? f->t.name : "", "ci", "found by its id in capitals");
    f = tokens_list_find(&l, "agent");
    is_str(f ? f->t.name : "", "agent", "found by its name");
    ok(tokens_list_find(&l, "nobody") == NULL, "no token named nobody");
    tokens_list_release(&l);

    /* JSON: never the hash; the text only when handed it. */
    rl_buf j;
    rl_buf_init(&j, 0);
    is_int(tokens_show(s, "ci", NOW, &row, &why), RL_OK, "show ci");
    is_int(tokens_json(&row, NOW, NULL, &j), RL_OK, "as JSON");
    snprintf(want, sizeof want,
             "{\"id\":\"%s\",\"name\":\"ci\",\"state\":\"live\",\"upstreams\":[\"openai\"],"
             "\"models\":[\"gpt-4o*\"],\"budget_usd_day\":\"0.10\",\"budget_usd_month\":null,"
             "\"budget_tokens_day\":null,\"rpm\":60,\"tpm\":null,\"created\":%llu,\"expires\":%llu,"
             "\"revoked\":null,\"grace_until\":null}",
             ci_id, NOW, NOW + 30 * 86400);
    is_str(j.data, want, "every field, the budget as an exact decimal");
    rl_hex_encode(row.t.hash, STORE_KEY_LEN, hex);
    ok(!strstr(j.data, hex) && !strstr(j.data, text), "neither its hash nor its text");
    rl_buf_reset(&j);
    is_int(tokens_json(&row, NOW, text, &j), RL_OK, "with the text");
    snprintf(want, sizeof want, "{\"token\":\"%s\",\"id\":\"%s\"", text, ci_id);
    ok(j.data && !strncmp(j.data, want, strlen(want)), "the text comes first, when handed it");
    rl_buf_reset(&j);
    is_int(tokens_list_load(s, NOW, &l), RL_OK, "list again");
    is_int(tokens_list_json(&l, NOW, &j), RL_OK, "the list as JSON");
    ok(j.data && !strncmp(j.data, "{\"tokens\":[{\"id\":", 17) &&
           strstr(j.data, "],\"damaged\":0}"),
       "{tokens: [...], damaged: 0}");
    ok(j.data && !strstr(j.data, hex) && !strstr(j.data, text), "without hashes or texts");
    tokens_list_release(&l);
    rl_buf_release(&j);

    /* Update. */
    rl_buf_reset(&why);
    const tokens_edit change[] = {
        {"--budget-usd-day", "none"}, {"--budget-usd-month", "5"}, {"--name", "ci-main"}};
    is_int(tokens_update(s, &cfg, ci_id, change, 3, NOW + 5, &row, &why), RL_OK, "update ci");
    is_int(row.t.usd_day, 0, "the daily budget removed");
    is_int(row.t.usd_month, 5000000000, "a monthly one");
    is_str(row.t.name, "ci-main", "renamed");
    is_int(row.t.rpm, 60, "the rest kept");
    is_int(tokens_show(s, "ci-main", NOW + 5, &row, &why), RL_OK, "found by its new name");
    ok(keyed_by(&row.t, text), "the same text");
    rl_buf_reset(&why);
    const tokens_edit onto[] = {{"name", "agent"}};
    is_int(tokens_update(s, &cfg, "ci-main", onto, 1, NOW + 5, &row, &why), RL_EXISTS,
           "renaming onto agent");
    ok(why.data && strstr(why.data, "\"agent\" is taken"), "says so");
    rl_buf_reset(&why);
    is_int(tokens_update(s, &cfg, "ci-main", NULL, 0, NOW + 5, &row, &why), RL_BAD_REQUEST,
           "an update without a change");
    rl_buf_reset(&why);
    is_int(tokens_update(s, &cfg, "ghost", change, 1, NOW + 5, &row, &why), RL_NOTFOUND,
           "an update of nobody");
    ok(why.data && strstr(why.data, "no token has the id or the name \"ghost\""), "says so");

    /* Rotate with a grace period, then again without one. */
    rl_buf_reset(&why);
    is_int(tokens_rotate(s, "ci-main", 3600, NOW + 10, &row, text2, &why), RL_OK, "rotate, 1h");
    ok(is_text(text2) && strcmp(text, text2) != 0, "a new text");
    ok(keyed_by(&row.t, text2) == 0, "keyed by the new text, under the old id");
    is_str(row.t.id, ci_id, "the id stays");
    is_int(row.t.usd_month, 5000000000, "and the budget");
    is_int(row.grace_until, NOW + 10 + 3600, "the old text works one more hour");
    store_token old;
    uint8_t h[AUTH_HASH_LEN];
    auth_token_hash(text, h);
    is_int(store_token_get(s, h, &old), RL_OK, "the old record");
    is_int(store_token_state(&old, NOW + 10 + 3599), TOKEN_LIVE, "works until then");
    is_int(store_token_state(&old, NOW + 10 + 3600), TOKEN_REVOKED, "not after");
    is_int(tokens_show(s, ci_id, NOW + 20, &row, &why), RL_OK, "show");
    is_int(row.grace_until, NOW + 3610, "shows the grace period");
    is_int(row.t.created, NOW + 10, "of the rotated record");

    char text3[TOKENS_TEXT_SIZE];
    is_int(tokens_rotate(s, ci_id, 0, NOW + 30, &row, text3, &why), RL_OK, "rotate again, now");
    is_int(row.grace_until, 0, "no grace");
    is_int(store_token_get(s, h, &old), RL_OK, "the first text's record");
    is_int(store_token_state(&old, NOW + 30), TOKEN_REVOKED, "stops now too");
    auth_token_hash(text2, h);
    is_int(store_token_get(s, h, &old), RL_OK, "the second text's record");
    is_int(old.revoked, NOW + 30, "revoked now");

    /* Revoke, with a grace text running. */
    char text4[TOKENS_TEXT_SIZE];
    is_int(tokens_rotate(s, ci_id, 86400, NOW + 40, &row, text4, &why), RL_OK, "rotate, 1 day");
    int was = 9;
    is_int(tokens_revoke(s, "ci-main", NOW + 50, &row, &was, &why), RL_OK, "revoke");
    is_int(was, 0, "it was live");
    is_int(row.t.revoked, NOW + 50, "revoked now");
    is_int(row.grace_until, 0, "no text works any more");
    auth_token_hash(text3, h);
    is_int(store_token_get(s, h, &old), RL_OK, "the text in its grace period");
    is_int(old.revoked, NOW + 50, "stops now, not in a day");
    auth_token_hash(text4, h);
    is_int(store_token_get(s, h, &old), RL_OK, "the current text");
    is_int(store_token_state(&old, NOW + 50), TOKEN_REVOKED, "revoked");
    is_int(tokens_revoke(s, ci_id, NOW + 60, &row, &was, &why), RL_OK, "revoke again");
    is_int(was, 1, "it already was");
    is_int(row.t.revoked, NOW + 50, "keeps its time");
    is_int(tokens_show(s, ci_id, NOW + 60, &row, &why), RL_OK, "a revoked token is shown");
    is_int(store_token_state(&row.t, NOW + 60), TOKEN_REVOKED, "as revoked");
    rl_buf_reset(&why);
    is_int(tokens_update(s, &cfg, ci_id, change, 1, NOW + 60, &row, &why), RL_FORBIDDEN,
           "updating a revoked token");
    ok(why.data && strstr(why.data, "is revoked: it cannot be changed"), "says so");
    rl_buf_reset(&why);
    is_int(tokens_rotate(s, ci_id, 0, NOW + 60, &row, text3, &why), RL_FORBIDDEN,
           "rotating a revoked token");
    is_int(text3[0], 0, "gives no text");
    rl_buf_reset(&why);
    is_int(tokens_revoke(s, "ghost", NOW, &row, &was, &why), RL_NOTFOUND, "revoking nobody");

    /* The name is free again; the old id still finds the revoked token. */
    const tokens_edit reuse[] = {{"name", "ci-main"}};
    is_int(tokens_create(s, &cfg, reuse, 1, NOW + 70, &other, text2, &why), RL_OK,
           "a new token takes the revoked one's name");
    is_int(tokens_show(s, "ci-main", NOW + 70, &row, &why), RL_OK, "by that name");
    is_str(row.t.id, other.t.id, "the new one");
    is_int(tokens_show(s, ci_id, NOW + 70, &row, &why), RL_OK, "by the old id");
    is_str(row.t.name, "ci-main", "the revoked one");
    ok(store_token_state(&row.t, NOW + 70) == TOKEN_REVOKED, "still revoked");
    is_int(tokens_list_load(s, NOW + 70, &l), RL_OK, "list");
    is_int(l.n, 3, "one row per id: agent, ci-main (revoked), ci-main");
    tokens_list_release(&l);
    rl_buf_release(&why);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120);
    static char openai[] = "openai", claude[] = "claude";
    cfg.upstreams[0].name = openai;
    cfg.upstreams[1].name = claude;
    cfg.nupstreams = 2;

    test_usd();
    test_durations_and_times();
    test_fields();

    snprintf(tmp, sizeof tmp, "/tmp/t_tokens.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);
    store_options o = {.home = home, .key_file = keyfile, .cache_mb = 8, .max_threads = 16};
    store *s = NULL;
    is_int(store_keyfile_ensure(keyfile), RL_OK, "key file");
    is_int(store_open(&o, &s), RL_OK, "open a store");
    if (s) {
        test_operations(s);
        store_close(s);
    }
    store_remove(&o);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
