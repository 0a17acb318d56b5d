/*
 * config_values.c — checks of single configuration values (config_values.h).
 */
#include "engine/config_values.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "engine/route.h"

/* Why a KEY_URL value is not a usable base_url, or NULL. */
const char *config_url_refusal(const char *v)
{
    const char *host = strncmp(v, "http://", 7) == 0    ? v + 7
                       : strncmp(v, "https://", 8) == 0 ? v + 8
                                                        : NULL;
    if (!host)
        return "expected an http:// or https:// URL";
    if (strpbrk(v, " \t?#\\"))
        return "expected a URL without spaces, backslashes, a query or a fragment";
    size_t hlen = strcspn(host, "/");
    if (memchr(host, '@', hlen))
        return "credentials do not belong in base_url (they would be logged)";
    const char *port = NULL;
    if (host[0] == '[') { /* [v6]:port */
        const char *close = memchr(host, ']', hlen);
        if (!close || close == host + 1)
            return "expected a host";
        if (close + 1 < host + hlen)
            port = close[1] == ':' ? close + 2 : host; /* host: never digits-only, so refused */
    } else {
        const char *colon = memchr(host, ':', hlen);
        if (hlen == 0 || colon == host)
            return "expected a host";
        port = colon ? colon + 1 : NULL;
    }
    if (port) {
        size_t plen = (size_t)(host + hlen - port);
        long n = 0;
        for (size_t i = 0; i < plen && n <= 65535; i++)
            n = port[i] >= '0' && port[i] <= '9' ? n * 10 + (port[i] - '0') : 65536;
        if (plen == 0 || n < 1 || n > 65535)
            return "expected a port from 1 to 65535";
    }
    /* Trailing slashes are dropped (see set_value), so "/v1//" is fine. */
    size_t plen = strlen(host + hlen);
    while (plen && host[hlen + plen - 1] == '/')
        plen--;
    char path[1024];
    if (plen >= sizeof path)
        return "expected a shorter URL";
    memcpy(path, host + hlen, plen);
    path[plen] = '\0';
    if (plen && route_target_refusal(path, ""))
        return "expected a path without '.' or '..' segments, '//' or characters a URL may not "
               "hold";
    return NULL;
}

/* Why a KEY_LISTEN value is not a socket path or HOST:PORT, or NULL. A
 * relative path is resolved later; only its length is known after that. */
const char *config_listen_refusal(const char *v)
{
    if (v[0] == '/' || !strchr(v, ':'))
        return NULL; /* a path: its length is checked once resolved */
    const char *colon = strrchr(v, ':');
    if (colon == v)
        return "expected HOST:PORT (a host is needed, e.g. 127.0.0.1:9000)";
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
        return "expected HOST:PORT with a port from 1 to 65535, or a unix socket path";
    return NULL;
}

/* Characters of origins, in the C locale (no <ctype.h>: its answers depend on
 * the locale). */
static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Why one entry o (n bytes) of [cors] allow_origins is refused, or NULL;
 * when accepted, its form as a browser sends it in Origin (scheme and host
 * lower-case, no default port of http or https) is appended to out,
 * after a space when out is not empty. */
static const char *origin_refusal(const char *o, size_t n, rl_buf *out)
{
    if (n == 1 && o[0] == '*')
        return "a wildcard would let every web page use this Relay: every request to it "
               "spends a credential (a Relay token, a provider key) or a model that needs "
               "none (an Ollama or OpenAI-compatible upstream); list the origins of your apps "
               "(scheme://host[:port]) instead";
    if (n == 4 && strncasecmp(o, "null", 4) == 0)
        return "the origin of sandboxed frames and local files, which any page can produce, "
               "is never allowed; list real origins (scheme://host[:port])";
    if (memchr(o, '*', n))
        return "wildcards are not supported; list each origin (scheme://host[:port])";
    size_t s = 0; /* the scheme: a letter, then letters, digits, + - . */
    while (s < n && (is_alpha(o[s]) ||
                     (s > 0 && (is_digit(o[s]) || o[s] == '+' || o[s] == '-' || o[s] == '.'))))
        s++;
    if (s == 0 || n - s < 3 || memcmp(o + s, "://", 3) != 0)
        return "expected an origin, scheme://host[:port] (e.g. https://app.example.com)";
    const char *host = o + s + 3;
    size_t rest = n - s - 3, hlen = 0;
    if (rest && host[0] == '[') { /* [v6] */
        while (hlen < rest && host[hlen] != ']')
            hlen++;
        if (hlen == rest || hlen == 1)
            return "expected a host in brackets, [v6 address]";
        for (size_t i = 1; i < hlen; i++)
            if (!is_digit(host[i]) && !memchr("abcdefABCDEF:.", host[i], 14))
                return "expected a host in brackets, [v6 address]";
        hlen++;
    } else {
        while (hlen < rest && (is_alpha(host[hlen]) || is_digit(host[hlen]) || host[hlen] == '-' ||
                               host[hlen] == '.'))
            hlen++;
        if (hlen == 0)
            return "expected a host after scheme://";
    }
    long port = -1;
    size_t at = hlen;
    if (at < rest && host[at] == ':') {
        size_t digits = 0;
        for (port = 0, at++; at < rest && is_digit(host[at]) && port <= 65535; at++, digits++)
            port = port * 10 + (host[at] - '0');
        if (digits == 0 || port < 1 || port > 65535)
            return "expected a port from 1 to 65535";
    }
    if (at < rest)
        return "an origin is scheme://host[:port] alone: no path (not even a trailing /), "
               "query or user name, as browsers send it in Origin";
    int http = s == 4 && strncasecmp(o, "http", 4) == 0;
    int https = s == 5 && strncasecmp(o, "https", 5) == 0;
    if ((http && port == 80) || (https && port == 443))
        port = -1;
    if (out->len)
        rl_buf_puts(out, " ");
    for (size_t i = 0; i < s + 3 + hlen; i++) {
        char c = o[i] >= 'A' && o[i] <= 'Z' ? (char)(o[i] - 'A' + 'a') : o[i];
        rl_buf_append(out, &c, 1);
    }
    if (port >= 0)
        rl_buf_printf(out, ":%ld", port);
    return NULL;
}

/* A KEY_ORIGINS value: origins separated by commas and/or blanks. Returns
 * 0 with *out the normalised origins separated by single spaces ("" for
 * none; malloc'ed, NULL when out of memory), or -1 with the reason, naming
 * the entry, appended to why after where. */
int config_origins_parse(const char *value, const char *where, rl_buf *why, char **out)
{
    static const char sep[] = ", \t";
    rl_buf list;
    rl_buf_init(&list, 0);
    *out = NULL;
    for (const char *p = value + strspn(value, sep); *p; p += strspn(p, sep)) {
        size_t n = strcspn(p, sep);
        const char *bad = origin_refusal(p, n, &list);
        if (bad) {
            rl_buf_printf(why, "%s: \"%.*s\": %s", where, (int)(n > 200 ? 200 : n), p, bad);
            rl_buf_release(&list);
            return -1;
        }
        p += n;
    }
    if (rl_buf_error(&list) == RL_OK)
        *out = rl_buf_steal(&list, NULL);
    rl_buf_release(&list);
    return 0;
}

/* The private IPv4 networks (config_addr_is_private), host byte order. */
static const struct {
    uint32_t net, mask;
} private_v4[] = {
    {0x7f000000u, 0xff000000u}, /* 127/8 loopback */
    {0x0a000000u, 0xff000000u}, /* 10/8 */
    {0xac100000u, 0xfff00000u}, /* 172.16/12 */
    {0xc0a80000u, 0xffff0000u}, /* 192.168/16 */
    {0xa9fe0000u, 0xffff0000u}, /* 169.254/16 link-local */
    {0x64400000u, 0xffc00000u}, /* 100.64/10 CGNAT (Tailscale) */
};

static int v4_is_private(const unsigned char b[4])
{
    uint32_t a = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    for (size_t i = 0; i < sizeof private_v4 / sizeof private_v4[0]; i++)
        if ((a & private_v4[i].mask) == private_v4[i].net)
            return 1;
    return 0;
}

int config_addr_is_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_is_private((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family != AF_INET6)
        return 0;
    const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const unsigned char loopback[16] = {[15] = 1};
    static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (memcmp(b, loopback, 16) == 0)
        return 1;
    if (memcmp(b, mapped, 12) == 0)
        return v4_is_private(b + 12);
    return (b[0] & 0xfe) == 0xfc                       /* fc00::/7 unique local */
           || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80); /* fe80::/10 link-local */
}
