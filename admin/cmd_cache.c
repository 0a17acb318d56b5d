/*
 * cmd_cache.c — relay-admin's commands about cache entries: ls, show,
 * purge and verify. They read entries through the store's scans and decode
 * each value's labels with the engine's entry format (entry.h); all are
 * safe while Relay runs.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "engine/entry.h"
#include "engine/purge.h"
#include "store/base/rl_hex.h"

/* An entry as ls lists it. */
typedef struct ls_row {
    uint8_t key[STORE_KEY_LEN];
    store_meta meta;
    int labelled;
    char *upstream, *model, *ns; /* owned */
} ls_row;

typedef struct ls_state {
    ls_row *rows;
    size_t n, cap;
    int failed;
} ls_state;

static int ls_collect(void *ctx, const store_item *it)
{
    ls_state *st = ctx;
    entry_view v;
    if (it->damaged || entry_decode((const char *)it->value, it->value_len, &v) != RL_OK)
        return 0; /* not an entry Relay can serve; verify reports it */
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 256;
        ls_row *rows = realloc(st->rows, cap * sizeof *rows);
        if (!rows) {
            st->failed = 1;
            return 1;
        }
        st->rows = rows;
        st->cap = cap;
    }
    ls_row *r = &st->rows[st->n];
    memcpy(r->key, it->key, STORE_KEY_LEN);
    r->meta = it->meta;
    r->labelled = v.labelled;
    r->upstream = strdup(v.upstream);
    r->model = strdup(v.model);
    r->ns = strdup(v.ns);
    if (!r->upstream || !r->model || !r->ns) {
        free(r->upstream);
        free(r->model);
        free(r->ns);
        st->failed = 1;
        return 1;
    }
    st->n++;
    return 0;
}

typedef enum { SORT_NEWEST, SORT_OLDEST, SORT_HITS, SORT_SIZE } ls_sort;

static int cmp_u64_desc(uint64_t a, uint64_t b)
{
    return a < b ? 1 : a > b ? -1 : 0;
}

/* Ties (and equal times) fall back to the key, so the order is stable. */
static int by_newest(const void *pa, const void *pb)
{
    const ls_row *a = pa, *b = pb;
    int c = cmp_u64_desc(a->meta.created, b->meta.created);
    return c ? c : memcmp(a->key, b->key, STORE_KEY_LEN);
}

static int by_oldest(const void *pa, const void *pb)
{
    return -by_newest(pa, pb);
}

static int by_hits(const void *pa, const void *pb)
{
    const ls_row *a = pa, *b = pb;
    int c = cmp_u64_desc(a->meta.hits, b->meta.hits);
    return c ? c : by_newest(pa, pb);
}

static int by_size(const void *pa, const void *pb)
{
    const ls_row *a = pa, *b = pb;
    int c = cmp_u64_desc(a->meta.size, b->meta.size);
    return c ? c : by_newest(pa, pb);
}

/* A label for text output: "?" when the entry predates labels, "-" for an
 * empty one (no namespace). */
static const char *label(const ls_row *r, const char *s)
{
    return !r->labelled ? "?" : *s ? s : "-";
}

int cmd_ls(admin_ctx *ctx, store *s, int argc, char **argv)
{
    uint64_t limit = 100;
    ls_sort sort = SORT_NEWEST;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int m;
        if ((m = admin_opt(argc, argv, &i, "--limit", &v)) != 0) {
            char *end;
            if (m < 0 || *v < '0' || *v > '9' || (limit = strtoull(v, &end, 10), *end)) {
                fprintf(stderr, "relay-admin ls: --limit takes a number (0: no limit)\n");
                return EXIT_USAGE;
            }
        } else if ((m = admin_opt(argc, argv, &i, "--sort", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            if (strcmp(v, "newest") == 0)
                sort = SORT_NEWEST;
            else if (strcmp(v, "oldest") == 0)
                sort = SORT_OLDEST;
            else if (strcmp(v, "hits") == 0)
                sort = SORT_HITS;
            else if (strcmp(v, "size") == 0)
                sort = SORT_SIZE;
            else {
                fprintf(stderr, "relay-admin ls: --sort is newest, oldest, hits or size\n");
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "relay-admin ls: unknown argument %s (see relay-admin ls --help)\n",
                    argv[i]);
            return EXIT_USAGE;
        }
    }
    ls_state st = {0};
    rl_err e = store_cache_scan(s, ENTRY_HEAD_MAX, ls_collect, &st);
    int rc = EXIT_OK;
    if (e != RL_OK || st.failed) {
        fprintf(stderr, "relay-admin ls: reading the cache failed (%s)\n",
                st.failed ? "out of memory" : rl_err_text(e));
        rc = EXIT_FAIL;
        goto out;
    }
    int (*cmp)(const void *, const void *) = sort == SORT_OLDEST ? by_oldest
                                             : sort == SORT_HITS ? by_hits
                                             : sort == SORT_SIZE ? by_size
                                                                 : by_newest;
    if (st.n)
        qsort(st.rows, st.n, sizeof *st.rows, cmp);
    size_t shown = limit && limit < st.n ? (size_t)limit : st.n;
    uint64_t now = (uint64_t)time(NULL);
    char hex[2 * STORE_KEY_LEN + 1], age[32];
    if (ctx->json) {
        printf("{\"total\":%zu,\"entries\":[", st.n);
        for (size_t i = 0; i < shown; i++) {
            const ls_row *r = &st.rows[i];
            rl_hex_encode(r->key, STORE_KEY_LEN, hex);
            printf("%s{\"key\":\"%s\",\"upstream\":", i ? "," : "", hex);
            if (r->labelled)
                admin_json_cstr(stdout, r->upstream);
            else
                printf("null");
            printf(",\"model\":");
            if (r->labelled)
                admin_json_cstr(stdout, r->model);
            else
                printf("null");
            printf(",\"namespace\":");
            if (r->labelled)
                admin_json_cstr(stdout, r->ns);
            else
                printf("null");
            printf(",\"size\":%" PRIu64 ",\"created\":%" PRIu64 ",\"expires\":%" PRIu64
                   ",\"age\":%" PRIu64 ",\"hits\":%" PRIu64 "}",
                   r->meta.size, r->meta.created, r->meta.expires,
                   now > r->meta.created ? now - r->meta.created : 0, r->meta.hits);
        }
        printf("]}\n");
    } else {
        printf("%-16s  %-12s  %-28s  %10s  %6s  %6s  %s\n", "KEY", "UPSTREAM", "MODEL", "SIZE",
               "AGE", "HITS", "NAMESPACE");
        for (size_t i = 0; i < shown; i++) {
            const ls_row *r = &st.rows[i];
            rl_hex_encode(r->key, 8, hex);
            admin_format_age(now > r->meta.created ? now - r->meta.created : 0, age, sizeof age);
            printf("%-16s  %-12s  %-28s  %10" PRIu64 "  %6s  %6" PRIu64 "  %s\n", hex,
                   label(r, r->upstream), label(r, r->model), r->meta.size, age, r->meta.hits,
                   label(r, r->ns));
        }
        if (shown < st.n)
            fprintf(stderr, "(%zu of %zu entries shown; --limit 0 shows all)\n", shown, st.n);
    }
out:
    for (size_t i = 0; i < st.n; i++) {
        free(st.rows[i].upstream);
        free(st.rows[i].model);
        free(st.rows[i].ns);
    }
    free(st.rows);
    return rc;
}

/* Parses a hex key prefix into bytes; the number of digits, or -1. */
static int parse_prefix(const char *text, uint8_t *out)
{
    size_t n = strlen(text);
    if (n == 0 || n > 2 * STORE_KEY_LEN)
        return -1;
    memset(out, 0, STORE_KEY_LEN);
    return rl_hex_decode(text, n, out) == 0 ? (int)n : -1;
}

#define SHOW_MIN_DIGITS 8

int cmd_show(admin_ctx *ctx, store *s, int argc, char **argv)
{
    const char *key_text = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' || key_text) {
            fprintf(stderr, "relay-admin show: unexpected argument %s\n", argv[i]);
            return EXIT_USAGE;
        }
        key_text = argv[i];
    }
    uint8_t prefix[STORE_KEY_LEN], key[STORE_KEY_LEN];
    int digits = key_text ? parse_prefix(key_text, prefix) : -1;
    if (digits < SHOW_MIN_DIGITS) {
        fprintf(stderr,
                "relay-admin show: KEY must be at least %d hex digits of a key (the first "
                "column of relay-admin ls, or X-Relay-Key)\n",
                SHOW_MIN_DIGITS);
        return EXIT_USAGE;
    }
    unsigned matches = 0;
    if (store_cache_find(s, prefix, (unsigned)digits, key, &matches) != RL_OK) {
        fprintf(stderr, "relay-admin show: reading the cache failed\n");
        return EXIT_FAIL;
    }
    if (matches != 1) {
        fprintf(stderr,
                matches ? "relay-admin show: %s matches several entries; give more digits\n"
                        : "relay-admin show: no entry has a key starting with %s\n",
                key_text);
        return EXIT_NOTFOUND;
    }
    store_meta meta;
    rl_buf value;
    rl_buf_init(&value, 0);
    rl_err e = store_cache_get(s, key, &meta, &value);
    int rc = EXIT_OK;
    if (e == RL_NOTFOUND) {
        fprintf(stderr, "relay-admin show: the entry %s was just removed\n", key_text);
        rc = EXIT_NOTFOUND;
        goto out;
    }
    entry_view v;
    if (e != RL_OK || entry_decode(value.data, value.len, &v) != RL_OK) {
        fprintf(stderr, "relay-admin show: the entry %s cannot be read (%s)\n", key_text,
                e != RL_OK ? rl_err_text(e) : "not an entry Relay wrote");
        rc = EXIT_FAIL;
        goto out;
    }
    char hex[2 * STORE_KEY_LEN + 1];
    rl_hex_encode(key, STORE_KEY_LEN, hex);
    const char *kind = v.kind == ENTRY_STREAM ? "stream" : "body";
    if (ctx->json) {
        printf("{\"key\":\"%s\",\"kind\":\"%s\",\"content_type\":", hex, kind);
        admin_json_cstr(stdout, v.content_type);
        printf(",\"size\":%" PRIu64 ",\"upstream\":", meta.size);
        if (v.labelled)
            admin_json_cstr(stdout, v.upstream);
        else
            printf("null");
        printf(",\"model\":");
        if (v.labelled)
            admin_json_cstr(stdout, v.model);
        else
            printf("null");
        printf(",\"namespace\":");
        if (v.labelled)
            admin_json_cstr(stdout, v.ns);
        else
            printf("null");
        printf(",\"created\":%" PRIu64 ",\"expires\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"body\":",
               meta.created, meta.expires, meta.hits);
        admin_json_str(stdout, v.body, v.body_len);
        printf("}\n");
        goto out;
    }
    char when[96];
    printf("key           %s\n", hex);
    printf("kind          %s\n", kind);
    printf("content type  %s\n", v.content_type);
    printf("size          %" PRIu64 " bytes (body %zu)\n", meta.size, v.body_len);
    printf("upstream      %s\n", v.labelled ? v.upstream : "(unknown: stored before labels)");
    printf("model         %s\n", v.labelled ? v.model : "(unknown)");
    printf("namespace     %s\n", !v.labelled ? "(unknown)" : *v.ns ? v.ns : "(none)");
    admin_format_time(meta.created, when, sizeof when);
    printf("created       %s\n", when);
    admin_format_time(meta.expires, when, sizeof when);
    printf("expires       %s%s\n", when, meta.expires < (uint64_t)time(NULL) ? " stale" : "");
    printf("hits          %" PRIu64 "\n\n", meta.hits);
    fwrite(v.body, 1, v.body_len, stdout);
    if (v.body_len && v.body[v.body_len - 1] != '\n')
        putchar('\n');
out:
    rl_buf_release(&value);
    return rc;
}

int cmd_purge(admin_ctx *ctx, store *s, int argc, char **argv)
{
    purge_filter f = {0};
    for (int i = 1; i < argc; i++) {
        const char *v;
        int m = 0;
        if (strcmp(argv[i], "--all") == 0)
            f.all = 1;
        else if (strcmp(argv[i], "--expired") == 0)
            f.expired = 1;
        else if ((m = admin_opt(argc, argv, &i, "--older-than", &v)) != 0) {
            if (m < 0 || admin_parse_duration(v, &f.older_than) != 0) {
                fprintf(stderr, "relay-admin purge: --older-than takes a duration such as 30s, "
                                "15m, 12h or 7d\n");
                return EXIT_USAGE;
            }
            f.older = 1;
        } else if ((m = admin_opt(argc, argv, &i, "--model", &f.model)) != 0 ||
                   (m = admin_opt(argc, argv, &i, "--namespace", &f.ns)) != 0 ||
                   (m = admin_opt(argc, argv, &i, "--upstream", &f.upstream)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
        } else {
            fprintf(stderr,
                    "relay-admin purge: unknown argument %s (see relay-admin purge --help)\n",
                    argv[i]);
            return EXIT_USAGE;
        }
    }
    if (purge_check(&f)) {
        fprintf(stderr, "relay-admin purge: --all removes everything; it takes no filters\n");
        return EXIT_USAGE;
    }
    uint64_t removed = 0;
    rl_err e = purge_run(s, &f, (uint64_t)time(NULL), &removed);
    if (e != RL_OK) {
        fprintf(stderr, "relay-admin purge: failed after removing %" PRIu64 " entries (%s)\n",
                removed, rl_err_text(e));
        return EXIT_FAIL;
    }
    if (ctx->json)
        printf("{\"removed\":%" PRIu64 "}\n", removed);
    else
        printf("removed %" PRIu64 " entries\n", removed);
    return EXIT_OK;
}

/* ---- verify ------------------------------------------------------------------ */

typedef struct verify_state {
    int json;
    unsigned problems;
    uint64_t entries, old_format;
} verify_state;

static void report(verify_state *st, const char *what, const char *detail)
{
    st->problems++;
    if (st->json) {
        printf("%s{\"what\":", st->problems > 1 ? "," : "");
        admin_json_cstr(stdout, what);
        printf(",\"problem\":");
        admin_json_cstr(stdout, detail);
        printf("}");
    } else {
        fprintf(stderr, "relay-admin verify: %s: %s\n", what, detail);
    }
}

static void db_problem(void *ctx, const char *file, const char *what)
{
    report(ctx, file, what);
}

static int entry_check(void *ctx, const store_item *it)
{
    verify_state *st = ctx;
    char hex[2 * STORE_KEY_LEN + 1], what[80];
    entry_view v;
    st->entries++;
    rl_hex_encode(it->key, 8, hex);
    snprintf(what, sizeof what, "entry %s", hex);
    if (it->damaged)
        report(st, what, "its store header is damaged");
    else if (entry_decode((const char *)it->value, it->value_len, &v) != RL_OK)
        report(st, what, "its value is not an entry Relay wrote");
    else if (!v.labelled)
        st->old_format++;
    return 0;
}

int cmd_verify(admin_ctx *ctx, store *s, int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        int m = admin_opt(argc, argv, &i, "--backup", &dir);
        if (m < 0)
            return EXIT_USAGE;
        if (m == 0) {
            fprintf(stderr, "relay-admin verify: unknown argument %s\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    verify_state st = {.json = ctx->json};
    if (ctx->json)
        printf("{\"problems\":[");
    rl_err e;
    unsigned db_problems = 0;
    if (dir) {
        store_options so;
        config_store_options(ctx->cfg, &so);
        e = store_verify_dir(dir, &so, db_problem, &st, &db_problems);
    } else {
        int rc = admin_open_store(ctx, &s);
        if (rc != EXIT_OK) {
            if (ctx->json)
                printf("]}\n");
            return rc;
        }
        e = store_verify(s, db_problem, &st, &db_problems);
        if (e == RL_OK)
            e = store_cache_scan(s, ENTRY_HEAD_MAX, entry_check, &st);
        store_close(s);
    }
    if (ctx->json)
        printf("],\"entries\":%" PRIu64 ",\"unlabelled\":%" PRIu64 ",\"ok\":%s}\n", st.entries,
               st.old_format, e == RL_OK && st.problems == 0 ? "true" : "false");
    if (e != RL_OK) {
        fprintf(stderr, "relay-admin verify: could not check %s (%s)\n",
                dir ? dir : ctx->cfg->store.home, rl_err_text(e));
        return EXIT_FAIL;
    }
    if (st.problems) {
        fprintf(stderr, "relay-admin verify: %u problem(s) found in %s\n", st.problems,
                dir ? dir : ctx->cfg->store.home);
        return EXIT_FAIL;
    }
    if (!ctx->json) {
        if (dir)
            printf("ok: the databases in %s verify\n", dir);
        else
            printf("ok: every database verifies; %" PRIu64 " entries decode (%" PRIu64
                   " without labels, stored by an older Relay)\n",
                   st.entries, st.old_format);
    }
    return EXIT_OK;
}
