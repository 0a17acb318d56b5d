/* Unit tests for engine/stats: rows by labels, the usage counters of a
 * request, saved versus spent, series that roll over, histograms and
 * quantiles, a full table, and counts shared between processes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/stats.h"
#include "tests/unit/tap.h"

static char dir[] = "/tmp/relay-t-stats-XXXXXX";

typedef struct found {
    stats_row_kind kind;
    const char *labels[STATS_LABELS];
    stats_row row;
    int n;
} found;

static int find_fn(void *ctx, const stats_row *row)
{
    found *f = ctx;
    if (row->kind != f->kind)
        return 0;
    for (int i = 0; i < STATS_LABELS; i++)
        if (strcmp(row->labels[i], f->labels[i] ? f->labels[i] : "") != 0)
            return 0;
    f->row = *row;
    f->n++;
    return 0;
}

static found find(stats *st, stats_row_kind kind, const char *a, const char *b, const char *c,
                  const char *d)
{
    found f = {.kind = kind, .labels = {a, b, c, d}};
    stats_each_row(st, find_fn, &f);
    return f;
}

static int count_rows(void *ctx, const stats_row *row)
{
    (void)row;
    (*(int *)ctx)++;
    return 0;
}

static stats_request req(const char *outcome, int status)
{
    stats_request r = {.upstream = "openai",
                       .model = "gpt-4o",
                       .outcome = outcome,
                       .status = status,
                       .failed = status >= 400,
                       .client = "0123abcd",
                       .tokens_in = 100,
                       .tokens_out = 20,
                       .tokens_cached_in = 10,
                       .priced = 1,
                       .nusd = 450000,
                       .provider_saved = 12500,
                       .called_upstream = strcmp(outcome, "MISS") == 0,
                       .latency_s = 0.3,
                       .ttfb_s = 0.07,
                       .model_vouched = status >= 200 && status < 300,
                       .client_vouched = status >= 200 && status < 300};
    return r;
}

static int count_kind_fn(void *ctx, const stats_row *row)
{
    int *c = ctx; /* c[0]: the kind asked for, c[1]: rows of it */
    c[1] += (int)row->kind == c[0];
    return 0;
}

static int count_kind(stats *st, stats_row_kind kind)
{
    int c[2] = {(int)kind, 0};
    stats_each_row(st, count_kind_fn, c);
    return c[1];
}

/*
 * Defect 9: 4,200 requests with junk model names and bogus credentials (the
 * upstream refused them all) filled every row for good, so that a real
 * model was then counted under "(other)". Now a model or a client gets a
 * row of its own only once an upstream answered 2xx for it; a client adds
 * at most STATS_MODELS_PER_CLIENT models; clients are bounded.
 */
static void test_junk_first(uint64_t now)
{
    char d[] = "/tmp/relay-t-stats-junk-XXXXXX";
    if (!mkdtemp(d))
        return;
    stats *st = NULL;
    is_int(stats_open(d, &st), RL_OK, "junk: a new file");
    if (!st)
        return;
    char model[64], client[16];
    for (int i = 0; i < 4200; i++) {
        stats_request j = req(i % 2 ? "BYPASS" : "MISS", i % 3 ? 404 : 401);
        snprintf(model, sizeof model, "junk-model-%d", i);
        snprintf(client, sizeof client, "%08x", 0x10000000u + (unsigned)i);
        j.model = model;
        j.client = client;
        j.tokens_in = j.tokens_out = j.tokens_cached_in = -1;
        stats_record(st, &j, now);
    }
    ok(count_kind(st, STATS_ROW_MODEL) <= 2, "junk models share one (other) row per upstream");
    ok(count_kind(st, STATS_ROW_CLIENT) <= 1, "bogus credentials share one (other) client");
    found other = find(st, STATS_ROW_MODEL, "openai", "(other)", "", "");
    is_int((long long)other.row.c[C_REQUESTS], 4200, "every junk request is counted there");
    found oc = find(st, STATS_ROW_CLIENT, "(other)", "", "", "");
    is_int((long long)oc.row.c[C_REQUESTS], 4200, "and under the (other) client");

    stats_request real = req("MISS", 200);
    real.model = "gpt-4o-real";
    stats_record(st, &real, now);
    found m = find(st, STATS_ROW_MODEL, "openai", "gpt-4o-real", "", "");
    is_int(m.n, 1, "a real model still gets its own row");
    is_int((long long)m.row.c[C_REQUESTS], 1, "with its request");
    found c = find(st, STATS_ROW_CLIENT, "0123abcd", "", "", "");
    is_int(c.n, 1, "a real client too");
    found rq = find(st, STATS_ROW_REQUESTS, "openai", "gpt-4o-real", "MISS", "200");
    is_int(rq.n, 1, "and its requests row");

    /* Once vouched for, a model keeps its row for later failures too. */
    stats_request later = req("MISS", 429);
    later.model = "gpt-4o-real";
    stats_record(st, &later, now);
    m = find(st, STATS_ROW_MODEL, "openai", "gpt-4o-real", "", "");
    is_int((long long)m.row.c[C_REQUESTS], 2, "a later refusal counts in the model's row");

    /* A vouched client adds at most STATS_MODELS_PER_CLIENT models. */
    for (int i = 0; i < STATS_MODELS_PER_CLIENT + 20; i++) {
        stats_request v = req("MISS", 200);
        snprintf(model, sizeof model, "accepted-model-%d", i);
        v.model = model;
        v.client = "0badc0de";
        stats_record(st, &v, now);
    }
    found last = find(st, STATS_ROW_MODEL, "openai", model, "", "");
    is_int(last.n, 0, "a client's models beyond its share count as (other)");
    snprintf(model, sizeof model, "accepted-model-%d", STATS_MODELS_PER_CLIENT - 1);
    is_int(find(st, STATS_ROW_MODEL, "openai", model, "", "").n, 1, "those within it have rows");

    /* Clients are bounded too. */
    for (int i = 0; i < STATS_CLIENT_ROWS + 50; i++) {
        stats_request v = req("HIT", 200);
        snprintf(client, sizeof client, "%08x", 0x20000000u + (unsigned)i);
        v.client = client;
        stats_record(st, &v, now);
    }
    ok(count_kind(st, STATS_ROW_CLIENT) <= STATS_CLIENT_ROWS + 1,
       "at most STATS_CLIENT_ROWS clients");
    int rows = 0;
    stats_each_row(st, count_rows, &rows);
    ok(rows < STATS_ROWS / 2, "the table keeps room for what comes");

    stats_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", d);
}

/* Refusals are counted by reason, in the model's row (every refusal has an
 * upstream) and the client's; an unknown reason counts the request only. */
static void test_rejections(uint64_t now)
{
    char d[] = "/tmp/relay-t-stats-rej-XXXXXX";
    if (!mkdtemp(d))
        return;
    stats *st = NULL;
    is_int(stats_open(d, &st), RL_OK, "rejections: a new file");
    if (!st)
        return;
    is_int(stats_rejection_index("budget"), 6, "budget is the 7th reason");
    is_int(stats_rejection_index("rate_limit"), 7, "rate_limit the 8th");
    is_int(stats_rejection_index("no such reason"), -1, "an unknown reason has no counter");
    is_int(stats_rejection_index(NULL), -1, "nor has none");
    const char *reasons[] = {"budget", "budget", "rate_limit", "token_unknown", "bogus", NULL};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        stats_request r = req("", reasons[i] ? (i == 3 ? 401 : 429) : 200);
        r.rejected = reasons[i];
        r.tokens_in = r.tokens_out = r.tokens_cached_in = -1;
        r.client_vouched = 1; /* a token Relay checked itself */
        r.model_vouched = 1;  /* a model an upstream answered for before */
        stats_record(st, &r, now);
    }
    found m = find(st, STATS_ROW_MODEL, "openai", "gpt-4o", "", "");
    is_int((long long)m.row.c[C_REQUESTS], 6, "every request counts");
    is_int((long long)m.row.c[C_REJECTED + 6], 2, "two refused over a budget");
    is_int((long long)m.row.c[C_REJECTED + 7], 1, "one over a rate limit");
    is_int((long long)m.row.c[C_REJECTED + 0], 1, "one with an unknown token");
    long long all = 0;
    for (int i = 0; i < STATS_REJECTIONS; i++)
        all += (long long)m.row.c[C_REJECTED + i];
    is_int(all, 4, "and nothing else: an unknown reason is not a refusal's counter");
    found c = find(st, STATS_ROW_CLIENT, "0123abcd", "", "", "");
    is_int((long long)c.row.c[C_REJECTED + 6], 2, "the client's row says whose");
    is_int((long long)c.row.c[C_MODELS_ADDED], 1, "and its model count is untouched");
    stats_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", d);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    stats *st = NULL;
    is_int(stats_open(dir, &st), RL_OK, "open creates stats.map");
    if (!st)
        return tap_done();
    const uint64_t now = 1800000000; /* a minute boundary: 1800000000 % 60 == 0 */

    stats_request miss = req("MISS", 200), hit = req("HIT", 200);
    stats_record(st, &miss, now);
    stats_record(st, &hit, now + 1);
    stats_request fail = req("BYPASS", 502);
    fail.tokens_in = fail.tokens_out = fail.tokens_cached_in = -1;
    fail.nusd = fail.provider_saved = 0;
    stats_record(st, &fail, now + 2);
    stats_request unpriced = req("MISS", 200);
    unpriced.model = "local-llm";
    unpriced.priced = 0;
    unpriced.nusd = 0;
    stats_record(st, &unpriced, now + 3);

    found m = find(st, STATS_ROW_MODEL, "openai", "gpt-4o", "", "");
    is_int(m.n, 1, "one model row for (openai, gpt-4o)");
    is_int((long long)m.row.c[C_REQUESTS], 3, "three requests");
    is_int((long long)m.row.c[C_MISS], 1, "a miss");
    is_int((long long)m.row.c[C_HIT], 1, "a hit");
    is_int((long long)m.row.c[C_BYPASS], 1, "a bypass");
    is_int((long long)m.row.c[C_ERRORS], 1, "the 502 is an error");
    is_int((long long)m.row.c[C_TOKENS_IN], 100, "input paid for by the miss only");
    is_int((long long)m.row.c[C_TOKENS_CACHED_IN], 10, "cached input");
    is_int((long long)m.row.c[C_SAVED_IN], 100, "input saved by the hit");
    is_int((long long)m.row.c[C_SAVED_OUT], 20, "output saved by the hit");
    is_int((long long)m.row.c[C_NUSD_SPENT], 450000, "spent");
    is_int((long long)m.row.c[C_NUSD_SAVED], 450000, "saved");
    is_int((long long)m.row.c[C_NUSD_PROVIDER_SAVED], 12500,
           "the provider's cache saving, of the paid answer only (the hit saved it all)");
    is_int((long long)m.row.c[C_UNPRICED], 0, "priced");
    found u = find(st, STATS_ROW_MODEL, "openai", "local-llm", "", "");
    is_int((long long)u.row.c[C_UNPRICED], 1, "an unpriced model is flagged");
    is_int((long long)u.row.c[C_NUSD_SPENT], 0, "and has no money");
    found r = find(st, STATS_ROW_REQUESTS, "openai", "gpt-4o", "BYPASS", "502");
    is_int((long long)r.row.c[C_COUNT], 1, "requests by upstream, model, outcome and status");
    found c = find(st, STATS_ROW_CLIENT, "0123abcd", "", "", "");
    is_int((long long)c.row.c[C_REQUESTS], 4, "per client");

    found up = find(st, STATS_ROW_UPSTREAM, "openai", "", "", "");
    is_int((long long)up.row.c[C_UP_CALLS], 2, "two upstream calls (the misses)");
    is_int((long long)up.row.c[C_UP_LATENCY_BUCKET + 3], 2, "0.3 s falls in the le=0.5 bucket");
    is_int((long long)up.row.c[C_UP_TTFB_BUCKET + 1], 2, "0.07 s in le=0.1");
    is_int((long long)up.row.c[C_UP_LATENCY_SUM_US], 600000, "latency sum in microseconds");
    double q = stats_quantile(up.row.c + C_UP_LATENCY_BUCKET, 0.5);
    ok(q > 0.25 && q <= 0.5, "the median is within its bucket");
    uint64_t empty[STATS_BUCKETS] = {0};
    ok(stats_quantile(empty, 0.5) < 0, "no samples, no quantile");
    uint64_t inf[STATS_BUCKETS] = {0};
    inf[STATS_BUCKETS - 1] = 3;
    ok(stats_quantile(inf, 0.99) == 300, "+Inf reports its lower bound");

    stats_point *mins = calloc(STATS_MINUTES, sizeof *mins);
    stats_point *days = calloc(STATS_DAYS, sizeof *days);
    stats_series(st, 0, now + 59, mins);
    is_int((long long)mins[STATS_MINUTES - 1].t, (long long)now, "the last point is this minute");
    is_int((long long)mins[STATS_MINUTES - 1].c[S_REQUESTS], 4, "four requests in it");
    is_int((long long)mins[STATS_MINUTES - 1].c[S_HITS], 1, "one hit");
    is_int((long long)mins[STATS_MINUTES - 1].c[S_NUSD_SAVED], 450000, "money saved in it");
    is_int((long long)mins[0].t, (long long)(now - 60 * (STATS_MINUTES - 1)), "24 h back");
    /* A day later the same slot counts a new minute, from zero. */
    stats_record(st, &miss, now + 86400);
    stats_series(st, 0, now + 86400, mins);
    is_int((long long)mins[STATS_MINUTES - 1].c[S_REQUESTS], 1,
           "a slot reused a day later restarts");
    is_int((long long)mins[STATS_MINUTES - 2].c[S_REQUESTS], 0, "the minute before is empty");
    stats_series(st, 1, now + 86400, days);
    is_int((long long)days[STATS_DAYS - 1].c[S_REQUESTS], 1, "today");
    is_int((long long)days[STATS_DAYS - 2].c[S_REQUESTS], 4, "yesterday");
    stats_record(st, &miss, now); /* late: its minute slot now counts a newer minute */
    stats_series(st, 0, now + 86400, mins);
    is_int((long long)mins[STATS_MINUTES - 1].c[S_REQUESTS], 1,
           "a late write does not land in a newer minute");

    /* Another process counts into the same file. */
    pid_t pid = fork();
    if (pid == 0) {
        stats *other = NULL;
        if (stats_open(dir, &other) != RL_OK)
            _exit(1);
        for (int i = 0; i < 1000; i++)
            stats_record(other, &hit, now + 86400);
        stats_close(other);
        _exit(0);
    }
    for (int i = 0; i < 1000; i++)
        stats_record(st, &hit, now + 86400);
    int status = 0;
    waitpid(pid, &status, 0);
    is_int(WEXITSTATUS(status), 0, "the other process counted");
    m = find(st, STATS_ROW_MODEL, "openai", "gpt-4o", "", "");
    is_int((long long)m.row.c[C_HIT], 2001, "both processes' counts, none lost");

    test_junk_first(now);
    test_rejections(now);

    /* A full table (vouched models of requests without a client, which no
     * client's share bounds): new label sets go to the kind's (other) row. */
    char model[32];
    for (int i = 0; i < STATS_ROWS + 100; i++) {
        stats_request x = req("MISS", 200);
        snprintf(model, sizeof model, "model-%d", i);
        x.model = model;
        x.client = "";
        stats_record(st, &x, now + 86400);
    }
    int rows = 0;
    stats_each_row(st, count_rows, &rows);
    ok(rows > STATS_ROWS - 16 && rows <= STATS_ROWS, "the table fills up");
    found other = find(st, STATS_ROW_MODEL, "(other)", "", "", "");
    ok(other.n == 1 && other.row.c[C_REQUESTS] > 0, "later label sets count in (other)");

    stats_close(st);
    free(mins);
    free(days);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return tap_done();
}
