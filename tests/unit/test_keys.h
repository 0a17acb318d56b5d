/*
 * test_keys.h — cache keys for the store's unit tests.
 */
#ifndef RELAY_TESTS_UNIT_TEST_KEYS_H
#define RELAY_TESTS_UNIT_TEST_KEYS_H

#include <stdint.h>

#include "store/store.h"

/* Key number n: n big-endian in the first four bytes, so key order follows
 * n, and a fixed pattern after them. */
static inline void mkkey(uint8_t k[STORE_KEY_LEN], uint32_t n)
{
    for (int i = 0; i < STORE_KEY_LEN; i++)
        k[i] = (uint8_t)(0x5a ^ (i * 7));
    k[0] = (uint8_t)(n >> 24);
    k[1] = (uint8_t)(n >> 16);
    k[2] = (uint8_t)(n >> 8);
    k[3] = (uint8_t)n;
}

#endif
