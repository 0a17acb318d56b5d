/*
 * cluster_addr.c — "host:port" as [cluster] writes sites (cluster.h).
 */
#include <stdlib.h>
#include <string.h>

#include "store/cluster.h"

int cluster_addr_split(const char *addr, char *host, size_t cap, unsigned *port)
{
    if (!addr || !*addr)
        return -1;
    const char *colon;
    const char *h = addr;
    size_t n;
    if (*addr == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return -1;
        h = addr + 1;
        n = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return -1;
        n = (size_t)(colon - addr);
    }
    if (n == 0 || n >= cap || strpbrk(addr, " \t"))
        return -1;
    char *end;
    const char *p = colon + 1;
    if (*p < '0' || *p > '9')
        return -1;
    unsigned long v = strtoul(p, &end, 10);
    if (*end || v == 0 || v > 65535)
        return -1;
    memcpy(host, h, n);
    host[n] = 0;
    *port = (unsigned)v;
    return 0;
}
