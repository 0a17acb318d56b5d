/*
 * fill.c — bench-fill: grows a Relay store to a given number of cache
 * entries, fast, for make bench's "hit cost at 10^4, 10^5, 10^6 entries"
 * (tests/bench/throughput.mjs).
 *
 *   bench-fill -c relay.ini -k KEYPREFIX COUNT
 *
 * Adds entries until the store holds COUNT (or adds none when it holds that
 * many already). Each added entry is a copy of the value and lifetime of
 * the entry whose key starts with KEYPREFIX (hex, as X-Relay-Key shows it:
 * the real one the bench stored through Relay and then measures hits on),
 * under a key no request will ever ask for: the store is as large as a
 * real one of COUNT such answers, and only the measured key is ever read.
 *
 * The keys of one run are a random 32-byte string (xorshift, seeded with
 * the time) with a counter in its last 8 bytes: consecutive, so each run's
 * inserts go to one place in the B-tree, whose pages stay in Berkeley DB's
 * cache. Fully random keys (as SHA-256 digests are) filled at 25k puts/s up
 * to 10^4 entries but 10k/s by 10^5, falling further towards 10^6 (each put
 * a random page of a tree larger than the 64 MiB cache), which is minutes
 * of make bench; the tree a hit descends is as deep either way (the depth
 * grows with the log of the count), which is what the bench measures.
 *
 * It may run while relay.fcgi has the store open (the store is shared by
 * processes; the bench fills while the pool is idle). One store_cache_put per
 * entry (one transaction each, as Relay stores), and store_maintain every
 * 20,000 puts so that checkpoints remove the log files a million
 * transactions write (~10 MB per 13k). Set the store's caps
 * (max_entries, max_bytes) above COUNT or the puts evict each other.
 * Prints the count reached and the rate on stdout. Exit status 1 when no
 * single entry matches KEYPREFIX or a put fails, 2 on bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/config.h"
#include "store/base/rl_buf.h"
#include "store/store.h"

/* KEYPREFIX as bytes (high nibble first, as store_cache_find reads it);
 * the number of hex digits, or 0 when it is not 1-64 hex digits. */
static unsigned parse_prefix(const char *hex, uint8_t out[STORE_KEY_LEN])
{
    size_t n = strlen(hex);
    if (n == 0 || n > 2 * STORE_KEY_LEN)
        return 0;
    memset(out, 0, STORE_KEY_LEN);
    for (size_t i = 0; i < n; i++) {
        int c = hex[i], v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            return 0;
        out[i / 2] |= (uint8_t)(i % 2 ? v : v << 4);
    }
    return (unsigned)n;
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    uint8_t prefix[STORE_KEY_LEN];
    unsigned nibbles = argc == 6 ? parse_prefix(argv[4], prefix) : 0;
    if (argc != 6 || strcmp(argv[1], "-c") != 0 || strcmp(argv[3], "-k") != 0 || nibbles == 0) {
        fprintf(stderr, "usage: bench-fill -c relay.ini -k KEYPREFIX COUNT\n");
        return 2;
    }
    char *end = NULL;
    unsigned long long want = strtoull(argv[5], &end, 10);
    if (*end || want == 0) {
        fprintf(stderr, "bench-fill: COUNT must be a positive number, not %s\n", argv[5]);
        return 2;
    }

    int status = 1;
    relay_config *cfg = NULL;
    store *s = NULL;
    rl_buf why, value;
    rl_buf_init(&why, 4096);
    rl_buf_init(&value, SIZE_MAX);
    if (config_load(argv[2], &cfg, &why) != RL_OK) {
        fprintf(stderr, "bench-fill: %s: %.*s\n", argv[2], (int)why.len, (const char *)why.data);
        status = 2;
        goto out;
    }
    store_options so;
    config_store_options(cfg, &so);
    if (store_open(&so, &s) != RL_OK)
        goto out;

    store_stats st;
    store_meta meta;
    uint8_t model[STORE_KEY_LEN];
    unsigned matches = 0;
    if (store_stats_get(s, &st) != RL_OK ||
        store_cache_find(s, prefix, nibbles, model, &matches) != RL_OK)
        goto out;
    if (matches != 1 || store_cache_get(s, model, &meta, &value) != RL_OK) {
        fprintf(stderr, "bench-fill: %u entries match the key prefix %s (want one)\n", matches,
                argv[4]);
        goto out;
    }

    uint64_t seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull | 1;
    uint8_t run_key[STORE_KEY_LEN];
    for (size_t i = 0; i < STORE_KEY_LEN; i += 8) {
        uint64_t r = next_random(&seed);
        memcpy(run_key + i, &r, 8);
    }
    uint64_t now = (uint64_t)time(NULL);
    double t0 = seconds_now();
    unsigned long long added = 0;
    for (uint64_t have = st.entries; have < want; have++, added++) {
        uint8_t key[STORE_KEY_LEN];
        memcpy(key, run_key, STORE_KEY_LEN);
        for (size_t i = 0; i < 8; i++)
            key[STORE_KEY_LEN - 1 - i] = (uint8_t)(added >> (8 * i));
        rl_err e = store_cache_put(s, key, &meta, value.data, value.len);
        if (e != RL_OK) {
            fprintf(stderr, "bench-fill: put %llu: %s\n", added, rl_err_text(e));
            goto out;
        }
        /* A new "second" each time, so this process does the checkpoint. */
        if (added % 20000 == 19999)
            store_maintain(s, ++now);
    }
    store_maintain(s, ++now);
    double dt = seconds_now() - t0;
    if (store_stats_get(s, &st) != RL_OK)
        goto out;
    printf("bench-fill: %llu entries (%llu added, %zu bytes each) in %.1f s, %.0f puts/s\n",
           (unsigned long long)st.entries, added, value.len, dt, dt > 0 ? (double)added / dt : 0.0);
    status = 0;
out:
    store_close(s);
    config_free(cfg);
    rl_buf_release(&why);
    rl_buf_release(&value);
    return status;
}
