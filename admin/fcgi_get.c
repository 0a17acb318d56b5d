/*
 * fcgi_get.c — one FastCGI GET, as a web server would send it, for
 * relay-admin doctor to ask the pool for /relay/health over its socket.
 *
 * A FastCGI record is a version byte (1), its type, a request id (2 bytes),
 * the content length (2), the padding length (1) and a reserved byte,
 * then content and padding. A request is BEGIN_REQUEST (role RESPONDER),
 * PARAMS records holding name-value pairs and an empty one, and an empty
 * STDIN; the application answers STDOUT records (CGI headers, a blank
 * line, the body) and END_REQUEST.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"

enum {
    FCGI_BEGIN_REQUEST = 1,
    FCGI_END_REQUEST = 3,
    FCGI_PARAMS = 4,
    FCGI_STDIN = 5,
    FCGI_STDOUT = 6,
    FCGI_RESPONDER = 1,
    FCGI_HEADER_LEN = 8,
    REQUEST_ID = 1,
};

static void put_header(uint8_t *h, int type, size_t len)
{
    h[0] = 1;
    h[1] = (uint8_t)type;
    h[2] = 0;
    h[3] = REQUEST_ID;
    h[4] = (uint8_t)(len >> 8);
    h[5] = (uint8_t)len;
    h[6] = 0; /* no padding */
    h[7] = 0;
}

/* Appends one name-value pair (short names and values: 1-byte lengths). */
static int put_param(uint8_t *p, size_t *n, size_t cap, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (nl > 127 || vl > 127 || *n + 2 + nl + vl > cap)
        return -1;
    p[(*n)++] = (uint8_t)nl;
    p[(*n)++] = (uint8_t)vl;
    memcpy(p + *n, name, nl);
    *n += nl;
    memcpy(p + *n, value, vl);
    *n += vl;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads exactly n bytes before the deadline: 0, -1 (closed or error), or
 * -2 (deadline). */
static int read_full(int fd, uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -2;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return -2;
        ssize_t got = r < 0 ? -1 : read(fd, p, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int admin_fcgi_get(int fd, const char *uri, int timeout_ms, rl_buf *out)
{
    uint8_t req[512];
    size_t n = FCGI_HEADER_LEN;
    put_header(req, FCGI_BEGIN_REQUEST, 8);
    static const uint8_t begin[8] = {0, FCGI_RESPONDER, 0, 0, 0, 0, 0, 0};
    memcpy(req + n, begin, sizeof begin);
    n += sizeof begin;
    size_t params = n + FCGI_HEADER_LEN, plen = params;
    if (put_param(req, &plen, sizeof req - 2 * FCGI_HEADER_LEN, "REQUEST_METHOD", "GET") ||
        put_param(req, &plen, sizeof req - 2 * FCGI_HEADER_LEN, "REQUEST_URI", uri) ||
        put_param(req, &plen, sizeof req - 2 * FCGI_HEADER_LEN, "SERVER_PROTOCOL", "HTTP/1.1") ||
        put_param(req, &plen, sizeof req - 2 * FCGI_HEADER_LEN, "CONTENT_LENGTH", "0"))
        return -1;
    put_header(req + n, FCGI_PARAMS, plen - params);
    n = plen;
    put_header(req + n, FCGI_PARAMS, 0);
    n += FCGI_HEADER_LEN;
    put_header(req + n, FCGI_STDIN, 0);
    n += FCGI_HEADER_LEN;
    if (write_all(fd, req, n) != 0)
        return -1;

    int64_t deadline = now_ms() + timeout_ms;
    uint8_t h[FCGI_HEADER_LEN], body[65535 + 255];
    for (;;) {
        int r = read_full(fd, h, sizeof h, deadline);
        if (r != 0)
            return r;
        size_t len = (size_t)h[4] << 8 | h[5], pad = h[6];
        if ((r = read_full(fd, body, len + pad, deadline)) != 0)
            return r;
        if (h[1] == FCGI_END_REQUEST)
            return 0;
        if (h[1] == FCGI_STDOUT && rl_buf_append(out, body, len) != RL_OK)
            return -1;
    }
}
