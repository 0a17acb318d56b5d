/*
 * fuzzy.c — bench-fuzzy: the cost of a fuzzy lookup (store/fuzzyidx.h) as
 * the store grows, for make bench (tests/bench/fuzzy_lookup.mjs).
 *
 *   bench-fuzzy DIR COUNT...      e.g. bench-fuzzy /tmp/x 10000 100000
 *
 * Creates a store in DIR (which must not exist; removed at the end) and
 * grows it to each COUNT in turn, every entry with its fuzzy rows (16 band
 * hashes, random as MinHash bands are, and a 200-byte doc), as Relay stores
 * them: one store_cache_put and one store_fuzzy_put per entry. At each
 * COUNT it runs LOOKUPS lookups of near-variants of random stored entries
 * (12 of their 16 bands kept, one band shared by 1 entry in 20, like a
 * common system prompt) exactly as engine/fuzzy_serve.c does: candidates
 * with at most 32 index records read, then the doc of each candidate. It
 * prints one JSON line per COUNT: index records read (mean, max), docs
 * read, whether the variant's entry came first, and microseconds per
 * lookup (p50, p99).
 *
 * The fill writes two transactions and 17 index records per entry, and
 * Berkeley DB encrypts each log record (SHA1 + AES, nearly all of the fill's
 * CPU in perf): about 2,700 entries/s here, so 10^5 takes ~40 s and 10^6
 * (run by hand: make bench BENCH=fuzzy_lookup BENCH_ARGS=--max=1000000)
 * several minutes. Exit status 1 when a store call fails, 2 on bad
 * arguments.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/fuzzyidx.h"
#include "store/store.h"

#define NB 16
#define MAX_READS 32u
#define LOOKUPS 2000
#define DOC_BYTES 200

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Entry n's key and bands: a function of n, so lookups can rebuild them. */
static void key_of(uint64_t n, uint8_t k[STORE_KEY_LEN])
{
    uint64_t x = n * 0xd1342543de82ef95ull + 1;
    for (int i = 0; i < STORE_KEY_LEN; i++) {
        x ^= x >> 31;
        x *= 0xbf58476d1ce4e5b9ull;
        k[i] = (uint8_t)(x >> 56);
    }
}

static const uint64_t popular = 0x1234567887654321ull;

static void bands_of(uint64_t n, uint64_t b[NB])
{
    for (unsigned i = 0; i < NB; i++) {
        uint64_t x = (n << 8 | i) * 0x9e3779b97f4a7c15ull;
        b[i] = x ^ (x >> 29);
    }
    if (n % 20 == 0)
        b[0] = popular;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

typedef struct lookup_ctx {
    store *s;
    unsigned docs;
    uint8_t first[STORE_KEY_LEN];
    int have_first;
} lookup_ctx;

/* As engine/fuzzy_serve.c: every candidate's doc is read (and would be
 * matched). */
static int visit(void *ctx, const uint8_t key[STORE_KEY_LEN], unsigned shared)
{
    (void)shared;
    lookup_ctx *c = ctx;
    if (!c->have_first) {
        memcpy(c->first, key, STORE_KEY_LEN);
        c->have_first = 1;
    }
    rl_buf doc;
    rl_buf_init(&doc, 0);
    if (store_fuzzy_doc(c->s, key, &doc) == RL_OK)
        c->docs++;
    rl_buf_release(&doc);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int measure(store *s, uint64_t count)
{
    static double us[LOOKUPS];
    uint64_t reads_sum = 0;
    unsigned reads_max = 0, docs = 0, firsts = 0;
    for (unsigned i = 0; i < LOOKUPS; i++) {
        uint64_t n = next_rand() % count;
        uint64_t b[NB];
        bands_of(n, b);
        for (unsigned j = 1; j < NB; j += 4)
            b[j] ^= 1; /* 4 bands changed: a near-variant */
        lookup_ctx c = {.s = s};
        unsigned reads = 0;
        double t = now_us();
        if (store_fuzzy_candidates(s, b, NB, MAX_READS, visit, &c, &reads) != RL_OK)
            return 1;
        us[i] = now_us() - t;
        uint8_t k[STORE_KEY_LEN];
        key_of(n, k);
        firsts += c.have_first && memcmp(c.first, k, STORE_KEY_LEN) == 0;
        reads_sum += reads;
        reads_max = reads > reads_max ? reads : reads_max;
        docs += c.docs;
    }
    qsort(us, LOOKUPS, sizeof us[0], cmp_double);
    printf("{\"entries\": %llu, \"lookups\": %d, \"records_read_mean\": %.2f, "
           "\"records_read_max\": %u, \"docs_read_mean\": %.2f, \"found_first\": %.4f, "
           "\"us_p50\": %.1f, \"us_p99\": %.1f}\n",
           (unsigned long long)count, LOOKUPS, (double)reads_sum / LOOKUPS, reads_max,
           (double)docs / LOOKUPS, (double)firsts / LOOKUPS, us[LOOKUPS / 2],
           us[LOOKUPS * 99 / 100]);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench-fuzzy DIR COUNT...\n");
        return 2;
    }
    const char *dir = argv[1];
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        return 2;
    }
    char home[4096], key_file[4096];
    snprintf(home, sizeof home, "%s/store", dir);
    snprintf(key_file, sizeof key_file, "%s/relay.key", dir);
    /* A buffer pool that holds the index of 10^6 entries (~1.1 GiB), as a
     * deployment with that many fuzzy entries would size [store] cache_mb:
     * with 256 MB the fill itself slowed to a crawl past ~1 GiB (every
     * evicted dirty page encrypted and written), and the lookups measured
     * the disk, not the index. */
    store_options o = {.home = home, .key_file = key_file, .cache_mb = 1536, .max_threads = 8};
    store *s = NULL;
    if (store_keyfile_ensure(key_file) != RL_OK || store_open(&o, &s) != RL_OK)
        return 1;
    char doc[DOC_BYTES];
    memset(doc, 'd', sizeof doc);
    uint64_t have = 0;
    int rc = 0;
    for (int a = 2; a < argc && rc == 0; a++) {
        char *end;
        unsigned long long want = strtoull(argv[a], &end, 10);
        if (*end || want == 0) {
            fprintf(stderr, "bad COUNT: %s\n", argv[a]);
            rc = 2;
            break;
        }
        double t = now_us();
        uint64_t from = have;
        for (; have < want && rc == 0; have++) {
            uint8_t k[STORE_KEY_LEN];
            uint64_t b[NB];
            key_of(have, k);
            bands_of(have, b);
            store_meta m = {.created = 1000, .expires = 1u << 31};
            if (store_cache_put(s, k, &m, "v", 1) != RL_OK ||
                store_fuzzy_put(s, k, b, NB, doc, sizeof doc) != RL_OK)
                rc = 1;
            if (have % 20000 == 19999)
                store_maintain(s, (uint64_t)time(NULL));
        }
        double secs = (now_us() - t) / 1e6;
        fprintf(stderr, "# filled %llu -> %llu entries in %.1f s (%.0f/s)\n",
                (unsigned long long)from, (unsigned long long)have, secs,
                secs > 0 ? (double)(have - from) / secs : 0);
        if (rc == 0)
            rc = measure(s, have);
    }
    store_close(s);
    store_remove(&o);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
