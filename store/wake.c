#include "store/wake.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store/mapfile.h"

/* The file's layout. The wake-up counters come first, where files of the
 * first layout had them alone, so a process of either layout finds them. */
typedef struct wake_file {
    _Atomic uint32_t slots[WAKE_SLOTS];
    _Atomic uint64_t marks[WAKE_SLOTS];
    _Atomic uint64_t turns[WAKE_TURNS];
} wake_file;

struct store_wake {
    wake_file *map; /* shared by every process */
};

#define WAKE_BYTES sizeof(wake_file)

rl_err wake_open(const char *home, store_wake **out)
{
    void *map = NULL;
    *out = NULL;
    /* Only ever grown (a new file, or one of the first, smaller layout):
     * other processes may have it mapped. What is added reads as zeros. */
    rl_err err = store_map_file(home, WAKE_FILE, WAKE_BYTES, &map);
    if (err != RL_OK)
        return err;
    store_wake *w = malloc(sizeof *w);
    if (!w) {
        munmap(map, WAKE_BYTES);
        return RL_NOMEM;
    }
    w->map = map;
    *out = w;
    return RL_OK;
}

void wake_close(store_wake *w)
{
    if (!w)
        return;
    munmap(w->map, WAKE_BYTES);
    free(w);
}

uint32_t wake_slot(const uint8_t *key)
{
    return (((uint32_t)key[0] << 8) | key[1]) % WAKE_SLOTS;
}

uint32_t wake_ticket(store_wake *w, uint32_t slot)
{
    return atomic_load_explicit(&w->map->slots[slot], memory_order_acquire);
}

void wake_bump(store_wake *w, uint32_t slot)
{
    atomic_fetch_add_explicit(&w->map->slots[slot], 1, memory_order_release);
    /* Shared (not FUTEX_PRIVATE): waiters live in other processes. */
    syscall(SYS_futex, (uint32_t *)&w->map->slots[slot], FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void wake_wait(store_wake *w, uint32_t slot, uint32_t ticket, int timeout_ms)
{
    if (atomic_load_explicit(&w->map->slots[slot], memory_order_acquire) != ticket)
        return;
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    /* Returns at once with EAGAIN if the counter already moved; EINTR and
     * ETIMEDOUT simply end the wait: the caller re-checks either way. */
    syscall(SYS_futex, (uint32_t *)&w->map->slots[slot], FUTEX_WAIT, ticket, &ts, NULL, 0);
}

void wake_mark(store_wake *w, uint32_t slot, uint64_t now)
{
    atomic_store_explicit(&w->map->marks[slot], now, memory_order_relaxed);
}

uint64_t wake_marked(store_wake *w, uint32_t slot)
{
    return atomic_load_explicit(&w->map->marks[slot], memory_order_relaxed);
}

int wake_take_turn(store_wake *w, unsigned turn, uint64_t now, uint64_t interval)
{
    _Atomic uint64_t *last = &w->map->turns[turn];
    uint64_t seen = atomic_load_explicit(last, memory_order_relaxed);
    if (seen != 0 && seen <= now && now - seen < interval)
        return 0;
    /* Of the processes that saw the same due turn, the one whose exchange
     * lands takes it. */
    return atomic_compare_exchange_strong(last, &seen, now);
}
