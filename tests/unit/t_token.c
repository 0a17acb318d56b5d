/*
 * t_token.c — Relay client tokens in the store (store/token.h): the
 * record's encoding (round trips, every damaged form refused), the checks
 * on a token's fields, its state at a time, what it allows, and the table:
 * create, replace, unique names and ids among tokens not revoked, revoke,
 * rotate (the id and budgets carried over, a grace period for the old
 * text), find by id prefix and by name, scan, delete, and that all of it
 * survives closing and reopening the store and verifies.
 *
 * Times are passed in; nothing sleeps. Everything lives in a mkdtemp
 * directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "store/token.h"
#include "tests/unit/tap.h"

static char tmp[64], home[128], keyfile[160];

#define NOW 1800000000ull

static store_options opts(void)
{
    store_options o = {.home = home, .key_file = keyfile, .cache_mb = 8, .max_threads = 16};
    return o;
}

/* A token text's digest, as the engine would make it: here n spread over
 * the bytes, so that hashes differ in their first bytes (the id). */
static void mkhash(uint8_t h[STORE_KEY_LEN], uint32_t n)
{
    for (int i = 0; i < STORE_KEY_LEN; i++)
        h[i] = (uint8_t)(n * 37u + (unsigned)i * 11u);
    h[0] = (uint8_t)(n >> 8);
    h[1] = (uint8_t)n;
}

static void mktoken(store_token *t, uint32_t n, const char *name)
{
    memset(t, 0, sizeof *t);
    mkhash(t->hash, n);
    store_token_id_of(t->hash, t->id);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->created = NOW;
}

static int same_token(const store_token *a, const store_token *b)
{
    if (memcmp(a->hash, b->hash, STORE_KEY_LEN) || strcmp(a->id, b->id) ||
        strcmp(a->name, b->name) || a->created != b->created || a->expires != b->expires ||
        a->revoked != b->revoked || a->n_upstreams != b->n_upstreams ||
        a->n_models != b->n_models || a->usd_day != b->usd_day || a->usd_month != b->usd_month ||
        a->tokens_day != b->tokens_day || a->rpm != b->rpm || a->tpm != b->tpm)
        return 0;
    for (unsigned i = 0; i < a->n_upstreams; i++)
        if (strcmp(a->upstreams[i], b->upstreams[i]))
            return 0;
    for (unsigned i = 0; i < a->n_models; i++)
        if (strcmp(a->models[i], b->models[i]))
            return 0;
    return 1;
}

/* The biggest token there can be: every list full, every text at its cap. */
static void full_token(store_token *t)
{
    mktoken(t, 7, "");
    memset(t->name, 'n', TOKEN_NAME_MAX);
    t->name[TOKEN_NAME_MAX] = '\0';
    t->name[10] = ' ';
    t->expires = NOW + 86400;
    t->revoked = NOW + 3600;
    t->usd_day = 5000000000ull;
    t->usd_month = UINT64_MAX;
    t->tokens_day = 123456789;
    t->rpm = 60;
    t->tpm = 100000;
    t->n_upstreams = t->n_models = TOKEN_LIST_MAX;
    for (unsigned i = 0; i < TOKEN_LIST_MAX; i++) {
        memset(t->upstreams[i], 'a' + (char)i, TOKEN_ITEM_MAX);
        t->upstreams[i][TOKEN_ITEM_MAX] = '\0';
        snprintf(t->models[i], sizeof t->models[i], "model-%u-*", i);
    }
}

static void test_encoding(void)
{
    store_token t, back;
    rl_buf b;
    rl_buf_init(&b, 0);

    full_token(&t);
    is_int(store_token_encode(&t, &b), RL_OK, "encode the biggest token");
    memcpy(back.hash, t.hash, STORE_KEY_LEN);
    is_int(store_token_decode(b.data, b.len, &back), RL_OK, "decode it");
    ok(same_token(&t, &back), "every field round-trips");

    /* Every shorter prefix, and one byte more, are refused. */
    int refused = 1;
    for (size_t n = 0; n < b.len; n++)
        if (store_token_decode(b.data, n, &back) != RL_BAD_ENTRY)
            refused = 0;
    ok(refused, "every truncation of a record is refused");
    rl_buf_append(&b, "x", 1);
    is_int(store_token_decode(b.data, b.len, &back), RL_BAD_ENTRY, "a trailing byte is refused");

    store_token small;
    mktoken(&small, 8, "ci");
    rl_buf_reset(&b);
    is_int(store_token_encode(&small, &b), RL_OK, "encode a token with no lists");
    is_int(b.len, 72 + 1 + 2 + 1 + 1, "fixed part, the name, two empty lists");
    memcpy(back.hash, small.hash, STORE_KEY_LEN); /* the key, not in the record */
    is_int(store_token_decode(b.data, b.len, &back), RL_OK, "decode it");
    ok(same_token(&small, &back), "every field round-trips");

    /* Damage at the places a decoder must check. */
    uint8_t *p = (uint8_t *)b.data;
    p[0] = 'X';
    is_int(store_token_decode(p, b.len, &back), RL_BAD_ENTRY, "another magic");
    p[0] = 'R';
    p[3] = '2';
    is_int(store_token_decode(p, b.len, &back), RL_BAD_ENTRY, "a version this code never wrote");
    p[3] = '1';
    p[72] = 0; /* name length */
    is_int(store_token_decode(p, b.len, &back), RL_BAD_ENTRY, "an empty name");
    p[72] = 2;
    p[73] = '\n';
    is_int(store_token_decode(p, b.len, &back), RL_BAD_ENTRY, "a control character in a name");
    p[73] = 'c';
    p[75] = TOKEN_LIST_MAX + 1; /* count of upstreams */
    is_int(store_token_decode(p, b.len, &back), RL_BAD_ENTRY, "more upstreams than allowed");
    p[75] = 1;
    is_int(store_token_decode(p, b.len, &back), RL_BAD_ENTRY, "a count past the record's end");
    p[75] = 0;
    is_int(store_token_decode(p, b.len, &back), RL_OK, "repaired, it decodes again");

    rl_buf_reset(&b);
    small.n_models = 1;
    snprintf(small.models[0], sizeof small.models[0], "gpt-4o*");
    store_token_encode(&small, &b);
    p = (uint8_t *)b.data;
    p[b.len - 8] = TOKEN_ITEM_MAX + 1; /* the pattern's length byte */
    is_int(store_token_decode(p, b.len, &back), RL_BAD_ENTRY, "an item longer than allowed");
    p[b.len - 8] = 7;
    p[b.len - 2] = ' ';
    is_int(store_token_decode(p, b.len, &back), RL_BAD_ENTRY, "a space inside a model pattern");
    rl_buf_release(&b);
}

static void test_fields(void)
{
    store_token t;
    mktoken(&t, 1, "agent");
    ok(store_token_invalid(&t) == NULL, "a plain token is valid");
    t.name[0] = ' ';
    ok(store_token_invalid(&t) != NULL, "a name starting with a space is not");
    snprintf(t.name, sizeof t.name, "agent");
    t.id[3] = 'A';
    ok(store_token_invalid(&t) != NULL, "an id with an upper-case digit is not");
    t.id[3] = 'g';
    ok(store_token_invalid(&t) != NULL, "an id with a non-hex digit is not");
    store_token_id_of(t.hash, t.id);
    t.n_upstreams = TOKEN_LIST_MAX + 1;
    ok(store_token_invalid(&t) != NULL, "too many upstreams is not");
    t.n_upstreams = 1;
    ok(store_token_invalid(&t) != NULL, "an empty upstream name is not");
    snprintf(t.upstreams[0], sizeof t.upstreams[0], "openai");
    ok(store_token_invalid(&t) == NULL, "one upstream is");
    rl_buf b;
    rl_buf_init(&b, 0);
    t.name[0] = '\0';
    is_int(store_token_encode(&t, &b), RL_BAD_REQUEST, "an invalid token is not encoded");
    is_int(b.len, 0, "... and nothing is written");
    rl_buf_release(&b);

    uint8_t h[STORE_KEY_LEN] = {0x1a, 0x2b, 0x3c, 0x4d, 0x5e};
    char id[TOKEN_ID_LEN + 1];
    store_token_id_of(h, id);
    is_str(id, "1a2b3c4d", "the id is the hash's first 8 hex digits");

    /* States: revocation wins; both take effect at their second. */
    mktoken(&t, 1, "agent");
    is_int(store_token_state(&t, NOW), TOKEN_LIVE, "no expiry, not revoked: live");
    t.expires = NOW + 10;
    is_int(store_token_state(&t, NOW + 9), TOKEN_LIVE, "live the second before it expires");
    is_int(store_token_state(&t, NOW + 10), TOKEN_EXPIRED, "expired at its second");
    t.revoked = NOW + 20;
    is_int(store_token_state(&t, NOW + 19), TOKEN_EXPIRED, "expired, revocation still ahead");
    is_int(store_token_state(&t, NOW + 20), TOKEN_REVOKED, "revoked wins once it applies");
    is_str(store_token_state_name(TOKEN_REVOKED), "revoked", "state names");

    /* What a token allows. */
    mktoken(&t, 1, "agent");
    ok(store_token_allows(&t, "openai", "gpt-4o"), "empty lists allow everything");
    t.n_upstreams = 2;
    snprintf(t.upstreams[0], sizeof t.upstreams[0], "openai");
    snprintf(t.upstreams[1], sizeof t.upstreams[1], "claude");
    t.n_models = 2;
    snprintf(t.models[0], sizeof t.models[0], "gpt-4o*");
    snprintf(t.models[1], sizeof t.models[1], "claude-?-haiku");
    ok(store_token_allows(&t, "claude", NULL), "a listed upstream; no model to check");
    ok(!store_token_allows(&t, "gemini", NULL), "an upstream not listed");
    ok(!store_token_allows(&t, "OpenAI", NULL), "upstream names are exact");
    ok(store_token_allows(&t, "openai", "gpt-4o"), "a pattern matches its prefix alone");
    ok(store_token_allows(&t, "openai", "gpt-4o-mini-2024-07-18"), "and what follows it");
    ok(!store_token_allows(&t, "openai", "gpt-4"), "not a shorter name");
    ok(!store_token_allows(&t, "openai", "x-gpt-4o"), "patterns are anchored");
    ok(store_token_allows(&t, NULL, "claude-3-haiku"), "? is one character");
    ok(store_token_allows(&t, "openai", "gpt-4o/ft:abc"), "* crosses a slash");
}

static rl_err put(store *s, const store_token *t, token_put_mode mode)
{
    return store_token_put(s, t, mode);
}

typedef struct listing {
    unsigned n, damaged;
    char names[8][TOKEN_NAME_MAX + 1];
} listing;

static int list_fn(void *ctx, const uint8_t hash[STORE_KEY_LEN], const store_token *t)
{
    (void)hash;
    listing *l = ctx;
    if (!t)
        l->damaged++;
    else if (l->n < 8)
        snprintf(l->names[l->n++], sizeof l->names[0], "%s", t->name);
    return 0;
}

static void test_table(store *s)
{
    store_token a, b, got;
    mktoken(&a, 0x100, "agent");
    a.usd_day = 2000000000;
    a.rpm = 30;
    a.n_models = 1;
    snprintf(a.models[0], sizeof a.models[0], "gpt-4o*");
    is_int(store_token_get(s, a.hash, &got), RL_NOTFOUND, "no token yet");
    is_int(put(s, &a, TOKEN_REPLACE), RL_NOTFOUND, "replacing a token that does not exist");
    is_int(put(s, &a, TOKEN_CREATE), RL_OK, "create");
    is_int(store_token_get(s, a.hash, &got), RL_OK, "get it by its hash");
    ok(same_token(&a, &got), "as it was stored");
    is_int(put(s, &a, TOKEN_CREATE), RL_OK, "creating the very same record again is a no-op");
    a.rpm = 31;
    is_int(put(s, &a, TOKEN_CREATE), RL_EXISTS, "creating another record under its hash");
    is_int(put(s, &a, TOKEN_REPLACE), RL_OK, "replacing it");
    store_token_get(s, a.hash, &got);
    is_int(got.rpm, 31, "the new record is read");

    store_token bad = a;
    bad.name[0] = '\0';
    is_int(put(s, &bad, TOKEN_REPLACE), RL_BAD_REQUEST, "an invalid token is refused");

    /* Names and ids are unique among tokens not revoked. */
    mktoken(&b, 0x200, "agent");
    is_int(put(s, &b, TOKEN_CREATE), RL_EXISTS, "a second live token with the same name");
    snprintf(b.name, sizeof b.name, "browser");
    snprintf(b.id, sizeof b.id, "%s", a.id);
    is_int(put(s, &b, TOKEN_CREATE), RL_EXISTS, "a second live token with the same id");
    store_token_id_of(b.hash, b.id);
    is_int(put(s, &b, TOKEN_CREATE), RL_OK, "another name and id");
    snprintf(b.name, sizeof b.name, "agent");
    is_int(put(s, &b, TOKEN_REPLACE), RL_EXISTS, "renaming it onto a live token's name");
    b.revoked = NOW;
    is_int(put(s, &b, TOKEN_REPLACE), RL_OK, "a revoked token may share a name");
    snprintf(b.name, sizeof b.name, "browser");
    b.revoked = 0;
    is_int(put(s, &b, TOKEN_REPLACE), RL_OK, "back to its own name, live");

    /* Revoke. */
    store_token r;
    is_int(store_token_revoke(s, b.hash, NOW + 50, &r), RL_OK, "revoke");
    is_int(r.revoked, NOW + 50, "revoked as of now");
    is_int(store_token_revoke(s, b.hash, NOW + 90, &r), RL_OK, "revoke again");
    is_int(r.revoked, NOW + 50, "keeps the earlier time");
    store_token_get(s, b.hash, &got);
    is_int(store_token_state(&got, NOW + 60), TOKEN_REVOKED, "read back revoked");
    uint8_t nobody[STORE_KEY_LEN];
    mkhash(nobody, 0x999);
    is_int(store_token_revoke(s, nobody, NOW, NULL), RL_NOTFOUND, "revoking nothing");
    store_token c;
    mktoken(&c, 0x300, "browser");
    is_int(put(s, &c, TOKEN_CREATE), RL_OK, "a revoked token's name can be taken");

    /* Rotate: the id, name and budgets carry over; the old text keeps
     * working until old_until. */
    uint8_t fresh[STORE_KEY_LEN];
    mkhash(fresh, 0x400);
    store_token n;
    is_int(store_token_rotate(s, a.hash, fresh, NOW + 100, NOW + 400, &n), RL_OK, "rotate");
    ok(memcmp(n.hash, fresh, STORE_KEY_LEN) == 0, "the new record is under the new hash");
    is_str(n.id, a.id, "with the old id (its ledger scope)");
    is_str(n.name, "agent", "the old name");
    is_int(n.usd_day, 2000000000, "the old budget");
    is_int(n.rpm, 31, "the old rate limit");
    is_int(n.created, NOW + 100, "created now");
    is_int(n.revoked, 0, "not revoked");
    store_token_get(s, fresh, &got);
    ok(same_token(&n, &got), "stored as returned");
    store_token_get(s, a.hash, &got);
    is_int(got.revoked, NOW + 400, "the old text is revoked as of old_until");
    is_int(store_token_state(&got, NOW + 399), TOKEN_LIVE, "and works until then");
    is_int(store_token_state(&got, NOW + 400), TOKEN_REVOKED, "not after");
    is_int(store_token_rotate(s, fresh, a.hash, NOW + 101, NOW + 101, NULL), RL_EXISTS,
           "rotating onto a hash that has a record");
    is_int(store_token_rotate(s, b.hash, nobody, NOW + 101, NOW + 101, NULL), RL_FORBIDDEN,
           "a revoked token is not brought back by rotating it");
    is_int(store_token_rotate(s, nobody, fresh, NOW + 101, NOW + 101, NULL), RL_NOTFOUND,
           "rotating nothing");

    /* An update made from a copy read before a revoke or a rotation does
     * not bring the token back (TOKEN_UPDATE), where TOKEN_REPLACE would. */
    store_token stale = a; /* read before the rotation: not revoked */
    stale.rpm = 77;
    is_int(put(s, &stale, TOKEN_UPDATE), RL_FORBIDDEN,
           "updating the record a rotation revoked (its grace period running)");
    store_token_get(s, a.hash, &got);
    is_int(got.revoked, NOW + 400, "it keeps its revocation");
    is_int(got.rpm, 31, "and its fields");
    store_token live = n;
    live.rpm = 32;
    is_int(put(s, &live, TOKEN_UPDATE), RL_OK, "updating the live record");
    store_token_get(s, fresh, &got);
    is_int(got.rpm, 32, "is read back");
    store_token d;
    mktoken(&d, 0x500, "ci");
    is_int(put(s, &d, TOKEN_CREATE), RL_OK, "another token");
    store_token dd = d; /* read before the revoke */
    is_int(store_token_revoke(s, d.hash, NOW + 102, NULL), RL_OK, "revoked");
    dd.rpm = 5;
    is_int(put(s, &dd, TOKEN_UPDATE), RL_FORBIDDEN, "an update after the revoke is refused");
    store_token_get(s, d.hash, &got);
    is_int(got.revoked, NOW + 102, "the revoke holds");
    is_int(got.rpm, 0, "nothing was written");
    is_int(store_token_del(s, d.hash), RL_OK, "(removed again)");
    store_token ghost = live;
    mkhash(ghost.hash, 0x998);
    is_int(put(s, &ghost, TOKEN_UPDATE), RL_NOTFOUND, "updating a token that does not exist");

    /* Find and scan. */
    store_token f;
    unsigned matches = 9;
    is_int(store_token_find(s, a.id, 0, &f, &matches), RL_OK, "find by the full id");
    is_int(matches, 1, "one token not revoked has it");
    ok(memcmp(f.hash, fresh, STORE_KEY_LEN) == 0, "the rotated one");
    is_int(store_token_find(s, a.id, 1, &f, &matches), RL_OK, "find with revoked ones");
    is_int(matches, 2, "the old record shares the id");
    char upper[5];
    snprintf(upper, sizeof upper, "%.4s", c.id);
    for (char *q = upper; *q; q++)
        if (*q >= 'a' && *q <= 'f')
            *q = (char)(*q - 'a' + 'A');
    is_int(store_token_find(s, upper, 0, &f, &matches), RL_OK, "find by a prefix in capitals");
    is_int(matches, 1, "one match");
    is_str(f.name, "browser", "the new browser token");
    is_int(store_token_find(s, "zz", 0, &f, &matches), RL_BAD_REQUEST, "not hex");
    is_int(store_token_find(s, "123456789", 0, &f, &matches), RL_BAD_REQUEST, "too long");
    is_int(store_token_find(s, "ffffffff", 1, &f, &matches), RL_OK, "an id nobody has");
    is_int(matches, 0, "no match");
    is_int(store_token_find_name(s, "agent", &f), RL_OK, "find by name");
    ok(memcmp(f.hash, fresh, STORE_KEY_LEN) == 0, "the live one, not the rotated-out record");
    is_int(store_token_find_name(s, "nobody", &f), RL_NOTFOUND, "an unknown name");

    listing l = {0};
    is_int(store_token_scan(s, list_fn, &l), RL_OK, "scan");
    is_int(l.n, 4, "every record: agent (old and new), browser (revoked and new)");
    is_int(l.damaged, 0, "none damaged");

    is_int(store_token_del(s, b.hash), RL_OK, "delete the revoked browser token");
    is_int(store_token_get(s, b.hash, &got), RL_NOTFOUND, "gone");
    is_int(store_token_del(s, b.hash), RL_NOTFOUND, "deleting it again");
}

/* More tokens than one scan batch reads (64). */
static void test_many(store *s)
{
    for (uint32_t i = 0; i < 150; i++) {
        store_token t;
        char name[32];
        snprintf(name, sizeof name, "bulk-%u", i);
        mktoken(&t, 0x1000 + i, name);
        if (put(s, &t, TOKEN_CREATE) != RL_OK) {
            ok(0, "bulk create");
            return;
        }
    }
    listing l = {0};
    is_int(store_token_scan(s, list_fn, &l), RL_OK, "scan over several batches");
    is_int(l.n, 8, "(the listing keeps 8)");
    unsigned total = 0;
    store_token f;
    for (uint32_t i = 0; i < 150; i += 37) {
        char name[32];
        snprintf(name, sizeof name, "bulk-%u", i);
        total += store_token_find_name(s, name, &f) == RL_OK;
    }
    is_int(total, 5, "names found in every batch");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120);
    snprintf(tmp, sizeof tmp, "/tmp/t_token.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", tmp);

    test_encoding();
    test_fields();

    store_options o = opts();
    store *s = NULL;
    is_int(store_keyfile_ensure(keyfile), RL_OK, "key file");
    is_int(store_open(&o, &s), RL_OK, "open");
    if (s) {
        test_table(s);
        test_many(s);
        store_close(s);
    }
    s = NULL;
    is_int(store_open(&o, &s), RL_OK, "reopen");
    if (s) {
        store_token f;
        is_int(store_token_find_name(s, "agent", &f), RL_OK, "tokens survive closing the store");
        is_int(f.usd_day, 2000000000, "with their budgets");
        unsigned problems = 9;
        is_int(store_verify(s, NULL, NULL, &problems), RL_OK, "verify");
        is_int(problems, 0, "every token record decodes");
        store_close(s);
    }
    is_int(store_remove(&o), RL_OK, "store_remove");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
