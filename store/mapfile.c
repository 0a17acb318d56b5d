/*
 * mapfile.c — the shared, allocated mapping of a file in the store's home
 * (contract in mapfile.h). Moved out of wake.c when usemap.c needed the
 * same: one place that knows why such a file must be allocated, not sparse.
 */
#include "store/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"

/* Writes zeros over [from, bytes): 0 or an errno. */
static int zero_fill(int fd, off_t from, off_t bytes)
{
    static const char zeros[4096];
    for (off_t at = from; at < bytes;) {
        size_t n = (size_t)(bytes - at < (off_t)sizeof zeros ? bytes - at : (off_t)sizeof zeros);
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
 * Gives every byte of [0, bytes) a block on disk, growing the file if it is
 * smaller; 0 or an errno. Why: a sparse file mapped MAP_SHARED gets its
 * blocks when a page is first touched, and on a full file system that touch
 * is SIGBUS, which would kill a process in the middle of any request.
 * Allocated here, a full disk is an error at open instead: the store stays
 * closed (Relay serves uncached, health degraded) until there is room.
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
static int allocate(int fd, off_t size, off_t bytes)
{
    int r;
    do
        r = fallocate(fd, 0, 0, bytes) == 0 ? 0 : errno;
    while (r == EINTR);
    if (r != EOPNOTSUPP && r != EINVAL)
        return r;
    return zero_fill(fd, size < bytes ? size : bytes, bytes);
}

rl_err store_map_file(const char *home, const char *name, size_t bytes, void **map)
{
    rl_buf path;
    rl_buf_init(&path, 0);
    rl_err err = RL_IO;
    int fd = -1;
    *map = NULL;
    if (rl_buf_printf(&path, "%s/%s", home, name) != RL_OK) {
        err = RL_NOMEM;
        goto out;
    }
    fd = open(path.data, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rl_error("store: cannot open %s: %s", path.data, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rl_error("store: cannot stat %s: %s", path.data, strerror(errno));
        goto out;
    }
    int r = allocate(fd, st.st_size, (off_t)bytes);
    if (r != 0) {
        /* The caller says what goes without it (the store, the admission
         * limits, ...). */
        rl_error("store: cannot allocate %s (%zu bytes): %s; its file system has no room",
                 path.data, bytes, strerror(r));
        goto out;
    }
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        rl_error("store: cannot map %s: %s", path.data, strerror(errno));
        goto out;
    }
    *map = m;
    err = RL_OK;
out:
    if (fd >= 0)
        close(fd);
    rl_buf_release(&path);
    return err;
}
