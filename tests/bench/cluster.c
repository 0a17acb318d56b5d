/*
 * cluster.c — bench-cluster: what a budget reservation costs in a group of
 * hosts (store/cluster.h), for make bench (tests/bench/cluster_reserve.mjs).
 *
 *   bench-cluster COUNT THREADS
 *
 * Forms a group of three sites on loopback in this process
 * (tests/unit/cluster_fixture.h: three listeners, ack policy quorum), then
 * times store_ledger_reserve + store_ledger_settle pairs, COUNT of each:
 *   master     on the master's own store (one thread, then THREADS): the
 *              channel request to DB_EID_MASTER is a call into its own
 *              dispatch; the commit waits for a quorum's acknowledgement
 *   replica    from a replica: the request crosses a connection to the
 *              master and its answer comes back
 *   replica xT THREADS threads of the replica at once
 *   read       a token lookup on the replica (local: no network)
 *   one host   the same pairs on a store that is not replicated (what a
 *              reservation costs without [cluster], for the ratio)
 * and prints one JSON line per case: microseconds per reservation (p50,
 * p90, p99) and per settlement (p50), per read (p50, p99). On loopback
 * the network's own delay is near zero: this is the software's cost
 * (repmgr, the channel, the master's transaction), the floor a real
 * network adds its round trip to. Exit status 1 when a call fails.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/base/rl_log.h"
#include "store/ledger.h"
#include "store/token.h"
#include "tests/unit/cluster_fixture.h"

#define NOW 1813017600ull
#define MAX_COUNT 100000

static cluster_fixture fx;

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t pct(int64_t *v, unsigned n, unsigned p)
{
    return n ? v[(size_t)n * p / 100 < n ? (size_t)n * p / 100 : n - 1] : 0;
}

typedef struct run {
    store *s;
    unsigned count;
    int64_t *reserve_us, *settle_us;
    int failed;
} run;

static void *pairs(void *p)
{
    run *r = p;
    static _Atomic unsigned scope_seq;
    char scope[64];
    snprintf(scope, sizeof scope, "bench:%u", scope_seq++);
    for (unsigned i = 0; i < r->count && !r->failed; i++) {
        ledger_charge c = {.scope = scope, .window = LEDGER_DAY};
        c.amount[LEDGER_REQUESTS] = 1;
        uint8_t id[LEDGER_ID_LEN];
        uint64_t used[LEDGER_UNITS] = {0, 0, 1};
        int64_t t0 = mono_us();
        if (store_ledger_reserve(r->s, &c, 1, NOW, id, NULL) != RL_OK)
            r->failed = 1;
        int64_t t1 = mono_us();
        if (!r->failed && store_ledger_settle(r->s, id, used, NOW) != RL_OK)
            r->failed = 1;
        r->reserve_us[i] = t1 - t0;
        r->settle_us[i] = mono_us() - t1;
    }
    return NULL;
}

static int report(const char *name, store *s, unsigned count, unsigned threads)
{
    run *runs = calloc(threads, sizeof *runs);
    int64_t *all_r = calloc((size_t)count * threads, sizeof *all_r);
    int64_t *all_s = calloc((size_t)count * threads, sizeof *all_s);
    pthread_t *th = calloc(threads, sizeof *th);
    if (!runs || !all_r || !all_s || !th)
        return 1;
    int64_t t0 = mono_us();
    for (unsigned t = 0; t < threads; t++) {
        runs[t] = (run){s, count, all_r + (size_t)t * count, all_s + (size_t)t * count, 0};
        pthread_create(&th[t], NULL, pairs, &runs[t]);
    }
    int failed = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        failed |= runs[t].failed;
    }
    int64_t wall = mono_us() - t0;
    unsigned n = count * threads;
    qsort(all_r, n, sizeof *all_r, cmp64);
    qsort(all_s, n, sizeof *all_s, cmp64);
    printf("{\"case\":\"%s\",\"threads\":%u,\"pairs\":%u,\"reserve_p50\":%lld,\"reserve_p90\":%lld,"
           "\"reserve_p99\":%lld,\"settle_p50\":%lld,\"pairs_per_s\":%.0f,\"failed\":%d}\n",
           name, threads, n, (long long)pct(all_r, n, 50), (long long)pct(all_r, n, 90),
           (long long)pct(all_r, n, 99), (long long)pct(all_s, n, 50),
           wall > 0 ? n * 1e6 / (double)wall : 0.0, failed);
    free(runs);
    free(all_r);
    free(all_s);
    free(th);
    return failed;
}

static int reads(store *s, unsigned count)
{
    store_token t;
    memset(&t, 0, sizeof t);
    memset(t.hash, 0x5a, sizeof t.hash);
    store_token_id_of(t.hash, t.id);
    snprintf(t.name, sizeof t.name, "bench");
    t.created = NOW;
    if (store_token_put(s, &t, TOKEN_CREATE) != RL_OK)
        return 1;
    int64_t *us = calloc(count, sizeof *us);
    if (!us)
        return 1;
    int failed = 0;
    for (unsigned i = 0; i < count; i++) {
        store_token got;
        int64_t t0 = mono_us();
        failed |= store_token_get(s, t.hash, &got) != RL_OK;
        us[i] = mono_us() - t0;
    }
    qsort(us, count, sizeof *us, cmp64);
    printf("{\"case\":\"read\",\"reads\":%u,\"read_p50\":%lld,\"read_p99\":%lld,\"failed\":%d}\n",
           count, (long long)pct(us, count, 50), (long long)pct(us, count, 99), failed);
    free(us);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    unsigned count = (unsigned)strtoul(argv[1], NULL, 10);
    unsigned threads = (unsigned)strtoul(argv[2], NULL, 10);
    if (!count || count > MAX_COUNT || !threads || threads > 64)
        return 2;
    rl_log_set_level(RL_LOG_WARN);
    if (cluster_fixture_init(&fx, "bench-cluster") != 0)
        return 1;
    int failed = cluster_fixture_open(&fx, 0) != RL_OK ||
                 !cluster_fixture_wait_role(&fx, 0, CLUSTER_ROLE_MASTER, NOW);
    for (int i = 1; i < SITES && !failed; i++)
        failed = !cluster_fixture_join(&fx, i, 0, NOW);
    if (failed) {
        fprintf(stderr, "bench-cluster: the group did not form\n");
        cluster_fixture_done(&fx);
        return 1;
    }
    /* Let every site's maintenance set TCP_NODELAY on the connections the
     * group opened (store/cluster_link.c), as a running Relay's would. */
    for (int i = 0; i < SITES; i++)
        store_maintain(fx.sites[i], NOW);
    failed |= report("master", fx.sites[0], count, 1);
    failed |= report("master", fx.sites[0], count / threads + 1, threads);
    failed |= report("replica", fx.sites[1], count, 1);
    failed |= report("replica", fx.sites[1], count / threads + 1, threads);
    failed |= reads(fx.sites[1], count);
    char plain_home[200];
    snprintf(plain_home, sizeof plain_home, "%s/plain", fx.tmp);
    store_options po = {
        .home = plain_home, .key_file = fx.keyfile, .cache_mb = 8, .max_threads = 64};
    store *plain = NULL;
    if (store_open(&po, &plain) != RL_OK)
        failed = 1;
    else
        failed |= report("one host", plain, count, 1);
    store_close(plain);
    store_remove(&po);
    cluster_fixture_done(&fx);
    return failed;
}
