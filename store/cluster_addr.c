/*
 * cluster_addr.c — a site's "host:port" taken apart (store/cluster.h).
 *
 * Pure: no allocation, no locale (the characters are tested by value), no
 * name resolution. config checks the addresses with it when relay.ini is
 * read, and the store takes them apart again to hand them to repmgr, so
 * both agree on what an address is.
 */
#include "store/cluster.h"

#include <string.h>

/* A character that may not appear in a host: blanks, control characters,
 * and what would make the host ambiguous in "host:port". */
static int host_char_bad(char c)
{
    return (unsigned char)c <= ' ' || c == 0x7f || c == '[' || c == ']' || c == '/' || c == ',';
}

/* "1".."65535", digits only (no sign, no blanks: strtoul accepts both). */
static int port_parse(const char *p, unsigned *port)
{
    unsigned long v = 0;
    size_t n = 0;
    for (; p[n] >= '0' && p[n] <= '9' && n < 6; n++)
        v = v * 10 + (unsigned long)(p[n] - '0');
    if (n == 0 || p[n] != '\0' || v < 1 || v > 65535)
        return -1;
    *port = (unsigned)v;
    return 0;
}

int cluster_addr_split(const char *addr, char *host, size_t cap, unsigned *port)
{
    const char *h = addr, *end; /* the host is [h, end) */
    const char *colon;
    if (addr[0] == '[') { /* [v6]:port; a zone ("%eth0") is left to getaddrinfo */
        h = addr + 1;
        end = strchr(h, ']');
        if (!end || end[1] != ':')
            return -1;
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return -1;
        end = colon;
        /* A second colon is an IPv6 address without its brackets: which
         * colon starts the port would be a guess. */
        if (memchr(addr, ':', (size_t)(end - addr)))
            return -1;
    }
    size_t n = (size_t)(end - h);
    if (n == 0 || n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (host_char_bad(h[i]))
            return -1;
    unsigned p;
    if (port_parse(colon + 1, &p) != 0)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = p;
    return 0;
}
