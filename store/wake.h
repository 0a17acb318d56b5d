/*
 * wake.h — store-internal: a cross-process wake-up channel.
 *
 * A small file in the store's home, mapped shared by every process, holds
 * WAKE_SLOTS 32-bit counters. A publisher bumps the counter of a slot and
 * wakes the futex on it; a waiter that read the counter before looking for
 * news sleeps on the futex until the counter moves or a timeout passes.
 * Keys hash to slots, so unrelated keys may share one and wake each other
 * now and then: waiters re-check, so that costs a read, never correctness.
 *
 * The file holds only counters: nothing secret, nothing from requests.
 * Linux-only (futex on a MAP_SHARED mapping), like the rest of Relay.
 */
#ifndef RELAY_STORE_WAKE_H
#define RELAY_STORE_WAKE_H

#include <stdint.h>

#include "store/base/rl_err.h"

#define WAKE_SLOTS 4096
#define WAKE_FILE "wake.map"

typedef struct store_wake store_wake;

/* Maps (creating, mode 0600) home/WAKE_FILE. RL_IO on failure (logged). */
rl_err wake_open(const char *home, store_wake **out);
void wake_close(store_wake *w);

/* The slot of a key (its first bytes are already uniformly random). */
uint32_t wake_slot(const uint8_t *key);

uint32_t wake_ticket(store_wake *w, uint32_t slot);
/* Bumps the slot and wakes everyone waiting on it. */
void wake_bump(store_wake *w, uint32_t slot);
/* Returns when the slot moved past ticket, or after timeout_ms. */
void wake_wait(store_wake *w, uint32_t slot, uint32_t ticket, int timeout_ms);

#endif
