#include "store/wake.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"

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

/* Writes zeros over [from, WAKE_BYTES): 0 or an errno. */
static int zero_fill(int fd, off_t from)
{
    static const char zeros[4096];
    for (off_t at = from; at < (off_t)WAKE_BYTES;) {
        size_t n = (size_t)((off_t)WAKE_BYTES - at < (off_t)sizeof zeros ? (off_t)WAKE_BYTES - at
                                                                         : (off_t)sizeof zeros);
        ssize_t w = pwrite(fd, zeros, n, at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        at += w;
    }
    return 0;
}

/*
 * Gives every byte of the layout a block on disk, growing the file to
 * WAKE_BYTES if it is smaller; 0 or an errno. Why: a sparse file mapped
 * MAP_SHARED gets its blocks when a page is first touched, and on a full
 * file system that touch is SIGBUS, which would kill a process in the
 * middle of any request. Allocated here, a full disk is an error at open
 * instead: the store stays closed (Relay serves uncached, health
 * degraded) until there is room.
 *
 * fallocate(2) mode 0 never shrinks the file nor changes a byte of it, so
 * it is safe while other processes have the file mapped, and costs nothing
 * once the file is allocated. Not posix_fallocate: where the file system
 * cannot allocate (EOPNOTSUPP, or EINVAL from some), glibc emulates it by
 * writing a zero into each block that reads as zero, which could undo a
 * counter another process sets in between. Here such a file system gets
 * zeros written past the file's end only, where no process can have
 * written (a mapped page past the end of a file is SIGBUS, not storage);
 * what lies before it was written by the open that grew the file (a file
 * left sparse by an older Relay on such a file system stays as it is).
 */
static int wake_allocate(int fd, off_t size)
{
    int r;
    do
        r = fallocate(fd, 0, 0, (off_t)WAKE_BYTES) == 0 ? 0 : errno;
    while (r == EINTR);
    if (r != EOPNOTSUPP && r != EINVAL)
        return r;
    return zero_fill(fd, size < (off_t)WAKE_BYTES ? size : (off_t)WAKE_BYTES);
}

rl_err wake_open(const char *home, store_wake **out)
{
    rl_buf path;
    rl_buf_init(&path, 0);
    rl_err err = RL_IO;
    int fd = -1;
    store_wake *w = NULL;
    if (rl_buf_printf(&path, "%s/%s", home, WAKE_FILE) != RL_OK)
        goto out;
    fd = open(path.data, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rl_error("store: cannot open %s: %s", path.data, strerror(errno));
        goto out;
    }
    /* Only ever grown (a new file, or one of the first, smaller layout):
     * other processes may have it mapped. What is added reads as zeros. */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rl_error("store: cannot stat %s: %s", path.data, strerror(errno));
        goto out;
    }
    int r = wake_allocate(fd, st.st_size);
    if (r != 0) {
        rl_error("store: cannot allocate %s (%zu bytes): %s; the store stays closed until its "
                 "file system has room",
                 path.data, (size_t)WAKE_BYTES, strerror(r));
        goto out;
    }
    void *map = mmap(NULL, WAKE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rl_error("store: cannot map %s: %s", path.data, strerror(errno));
        goto out;
    }
    w = malloc(sizeof *w);
    if (!w) {
        munmap(map, WAKE_BYTES);
        err = RL_NOMEM;
        goto out;
    }
    w->map = map;
    err = RL_OK;
out:
    if (fd >= 0)
        close(fd);
    rl_buf_release(&path);
    *out = w;
    return err;
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
