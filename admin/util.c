/*
 * util.c — relay-admin's small helpers: JSON strings, durations, options.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "engine/tokens.h"

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t min, cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        len = 2, min = 0x80, cp = p[0] & 0x1f;
    else if ((p[0] & 0xf0) == 0xe0)
        len = 3, min = 0x800, cp = p[0] & 0x0f;
    else if ((p[0] & 0xf8) == 0xf0)
        len = 4, min = 0x10000, cp = p[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void admin_json_str(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\r') {
            fputs("\\r", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else {
            size_t len = utf8_len(p + i, n - i);
            if (len == 0) {
                fputs("\\ufffd", f);
                i++;
            } else {
                fwrite(p + i, 1, len, f);
                i += len;
            }
        }
    }
    fputc('"', f);
}

void admin_json_cstr(FILE *f, const char *s)
{
    admin_json_str(f, s ? s : "", s ? strlen(s) : 0);
}

/* The engine's (tokens.h), so that relay-admin and the admin API read and
 * write durations alike. */
int admin_parse_duration(const char *text, uint64_t *seconds)
{
    return tokens_parse_duration(text, seconds) == RL_OK ? 0 : -1;
}

void admin_format_age(uint64_t seconds, char *out, size_t cap)
{
    tokens_format_duration(seconds, out, cap);
}

/* 9999-12-31T23:59:59Z: ISO 8601's four-digit years end there. */
#define LAST_DATE 253402300799ULL

void admin_format_time(uint64_t t, char *out, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;
    /* A stored value may be anything (a TTL of 10^23 s, damage): beyond
     * year 9999 gmtime_r fails (NULL, which strftime would dereference) or
     * gives years no reader expects, and past INT64_MAX time_t is
     * negative. Such a time is a number with a note, never a wrong date. */
    if (t <= LAST_DATE && gmtime_r(&tt, &tm)) {
        char date[32];
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(out, cap, "%s (%" PRIu64 ")", date, t);
    } else {
        snprintf(out, cap, "%" PRIu64 " (after year 9999: not a date)", t);
    }
}

int admin_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "relay-admin %s: %s needs a value\n", argv[0], name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}
