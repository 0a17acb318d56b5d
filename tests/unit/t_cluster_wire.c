/*
 * t_cluster_wire.c — the messages of forwarded writes between the hosts
 * of a group (store/cluster_wire.h): every operation round-trips, every
 * truncation and a trailing byte are refused, lengths are never trusted
 * (a scope longer than the ledger allows, an empty or NUL-holding string,
 * too many charges, a token record that does not decode, an unknown
 * mode), headers name only known operations, and the results (a refusal,
 * a token) decode exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/cluster_wire.h"
#include "tests/unit/tap.h"

static cluster_msg *reserve_msg(void)
{
    cluster_msg *m = calloc(1, sizeof *m);
    m->op = CLUSTER_OP_RESERVE;
    m->now = 1813017600;
    for (int i = 0; i < LEDGER_ID_LEN; i++)
        m->id[i] = (uint8_t)i;
    m->pid = 4242;
    m->pid_start = 987654321;
    snprintf(m->site, sizeof m->site, "10.0.0.2:7600");
    m->n = 2;
    m->charges[0] = (ledger_charge){.scope = "token:1a2b3c4d", .window = LEDGER_DAY, .partial = 1};
    m->charges[0].amount[LEDGER_USD] = 5;
    m->charges[0].limit[LEDGER_USD] = 100000;
    m->charges[1] = (ledger_charge){.scope = "upstream:openai", .window = LEDGER_MINUTE};
    m->charges[1].amount[LEDGER_REQUESTS] = 1;
    m->charges[1].limit[LEDGER_REQUESTS] = 10;
    return m;
}

/* Every prefix of b shorter than b is refused, and b plus a byte. */
static int strict(cluster_op op, const rl_buf *b)
{
    cluster_msg *m = malloc(sizeof *m);
    int refused = 1;
    for (size_t len = 0; len < b->len; len++)
        if (cluster_msg_decode(op, b->data, len, m) == RL_OK)
            refused = 0;
    char *longer = malloc(b->len + 1);
    memcpy(longer, b->data, b->len);
    longer[b->len] = 0;
    if (cluster_msg_decode(op, longer, b->len + 1, m) == RL_OK)
        refused = 0;
    free(longer);
    free(m);
    return refused;
}

static void test_reserve(void)
{
    cluster_msg *m = reserve_msg(), *back = malloc(sizeof *back);
    rl_buf b;
    rl_buf_init(&b, 0);
    is_int(cluster_msg_encode(m, &b), RL_OK, "a reservation encodes");
    is_int(cluster_msg_decode(CLUSTER_OP_RESERVE, b.data, b.len, back), RL_OK, "and decodes");
    ok(back->now == m->now && memcmp(back->id, m->id, LEDGER_ID_LEN) == 0 && back->pid == 4242 &&
           back->pid_start == 987654321 && strcmp(back->site, "10.0.0.2:7600") == 0 && back->n == 2,
       "its id, owner and count");
    ok(strcmp(back->charges[0].scope, "token:1a2b3c4d") == 0 &&
           back->charges[0].window == LEDGER_DAY && back->charges[0].partial == 1 &&
           back->charges[0].amount[LEDGER_USD] == 5 &&
           back->charges[0].limit[LEDGER_USD] == 100000 &&
           strcmp(back->charges[1].scope, "upstream:openai") == 0 &&
           back->charges[1].limit[LEDGER_REQUESTS] == 10,
       "its charges");
    ok(strict(CLUSTER_OP_RESERVE, &b), "every truncation and a trailing byte refused");
    is_int(cluster_msg_decode(CLUSTER_OP_SETTLE, b.data, b.len, back), RL_BAD_REQUEST,
           "not a settlement");

    /* Lengths from the wire are never trusted. */
    char scope[300];
    memset(scope, 'a', sizeof scope - 1);
    scope[LEDGER_SCOPE_MAX + 1] = 0;
    m->charges[0].scope = scope;
    rl_buf_reset(&b);
    is_int(cluster_msg_encode(m, &b), RL_BAD_REQUEST,
           "a scope over the ledger's limit is not sent");
    scope[LEDGER_SCOPE_MAX] = 0;
    rl_buf_reset(&b);
    is_int(cluster_msg_encode(m, &b), RL_OK, "the longest scope is");
    /* The first scope's length byte sits after now, id, pid, start, the
     * site (length + 13) and the count. */
    size_t at = 8 + LEDGER_ID_LEN + 8 + 8 + 1 + 13 + 1;
    uint8_t *p = (uint8_t *)b.data;
    is_int(p[at], LEDGER_SCOPE_MAX, "(the length byte)");
    p[at] = LEDGER_SCOPE_MAX + 1;
    is_int(cluster_msg_decode(CLUSTER_OP_RESERVE, b.data, b.len, back), RL_BAD_REQUEST,
           "a scope length past the ledger's limit is refused (no overflow)");
    p[at] = LEDGER_SCOPE_MAX;
    p[at + 5] = 0;
    is_int(cluster_msg_decode(CLUSTER_OP_RESERVE, b.data, b.len, back), RL_BAD_REQUEST,
           "a NUL inside a scope is refused");
    p[at + 5] = 'a';
    p[at - 1] = 0;
    is_int(cluster_msg_decode(CLUSTER_OP_RESERVE, b.data, b.len, back), RL_BAD_REQUEST,
           "no charges is refused");
    p[at - 1] = LEDGER_MAX_CHARGES + 1;
    is_int(cluster_msg_decode(CLUSTER_OP_RESERVE, b.data, b.len, back), RL_BAD_REQUEST,
           "too many charges is refused");
    p[at - 1] = 2;
    is_int(cluster_msg_decode(CLUSTER_OP_RESERVE, b.data, b.len, back), RL_OK, "repaired");
    m->site[0] = 0;
    rl_buf_reset(&b);
    is_int(cluster_msg_encode(m, &b), RL_BAD_REQUEST, "a reservation names its owner's site");
    rl_buf_release(&b);
    free(m);
    free(back);
}

static void test_others(void)
{
    cluster_msg *m = calloc(1, sizeof *m), *back = malloc(sizeof *back);
    rl_buf b;
    rl_buf_init(&b, 0);
    static const cluster_op ops[] = {CLUSTER_OP_SETTLE, CLUSTER_OP_TOKEN_DEL,
                                     CLUSTER_OP_TOKEN_REVOKE, CLUSTER_OP_TOKEN_ROTATE,
                                     CLUSTER_OP_RELEASE_HELD};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        memset(m, 0, sizeof *m);
        m->op = ops[i];
        m->now = 1813017600 + i;
        memset(m->id, 0x42, sizeof m->id);
        m->actual[LEDGER_TOKENS] = 1234;
        memset(m->hash, 0x11, sizeof m->hash);
        memset(m->new_hash, 0x22, sizeof m->new_hash);
        m->until = 1813021200;
        rl_buf_reset(&b);
        char what[64];
        snprintf(what, sizeof what, "%s round trip", cluster_wire_op_name(ops[i]));
        ok(cluster_msg_encode(m, &b) == RL_OK &&
               cluster_msg_decode(ops[i], b.data, b.len, back) == RL_OK && back->op == ops[i],
           what);
        ok(strict(ops[i], &b), "every truncation and a trailing byte refused");
        if (ops[i] == CLUSTER_OP_SETTLE)
            ok(back->actual[LEDGER_TOKENS] == 1234 && back->now == m->now &&
                   memcmp(back->id, m->id, LEDGER_ID_LEN) == 0,
               "a settlement's id, amounts and time");
        if (ops[i] == CLUSTER_OP_TOKEN_ROTATE)
            ok(memcmp(back->hash, m->hash, STORE_KEY_LEN) == 0 &&
                   memcmp(back->new_hash, m->new_hash, STORE_KEY_LEN) == 0 &&
                   back->until == 1813021200,
               "a rotation's hashes and end");
    }

    /* A token's record, as put. */
    memset(m, 0, sizeof *m);
    m->op = CLUSTER_OP_TOKEN_PUT;
    m->mode = TOKEN_UPDATE;
    memset(m->token.hash, 0x1a, sizeof m->token.hash);
    store_token_id_of(m->token.hash, m->token.id);
    snprintf(m->token.name, sizeof m->token.name, "ci");
    m->token.created = 1813017600;
    m->token.rpm = 60;
    rl_buf_reset(&b);
    is_int(cluster_msg_encode(m, &b), RL_OK, "a token's record encodes");
    is_int(cluster_msg_decode(CLUSTER_OP_TOKEN_PUT, b.data, b.len, back), RL_OK, "and decodes");
    ok(back->mode == TOKEN_UPDATE && strcmp(back->token.name, "ci") == 0 && back->token.rpm == 60 &&
           memcmp(back->token.hash, m->token.hash, STORE_KEY_LEN) == 0,
       "mode, name, limits and hash");
    ok(strict(CLUSTER_OP_TOKEN_PUT, &b), "every truncation and a trailing byte refused");
    ((uint8_t *)b.data)[0] = 9;
    is_int(cluster_msg_decode(CLUSTER_OP_TOKEN_PUT, b.data, b.len, back), RL_BAD_REQUEST,
           "an unknown mode is refused");
    ((uint8_t *)b.data)[0] = TOKEN_CREATE;
    ((uint8_t *)b.data)[1 + STORE_KEY_LEN + 8] = 'X'; /* the record's magic */
    is_int(cluster_msg_decode(CLUSTER_OP_TOKEN_PUT, b.data, b.len, back), RL_BAD_REQUEST,
           "a record that does not decode is refused");
    m->token.name[0] = 0;
    rl_buf_reset(&b);
    is_int(cluster_msg_encode(m, &b), RL_BAD_REQUEST, "an invalid token is not sent");

    /* Results. */
    store_token t = m->token;
    snprintf(t.name, sizeof t.name, "ci");
    store_token got;
    rl_buf_reset(&b);
    is_int(cluster_token_encode(&t, &b), RL_OK, "a token result encodes");
    is_int(cluster_token_decode(b.data, b.len, &got), RL_OK, "and decodes");
    is_int(cluster_token_decode(b.data, b.len - 1, &got), RL_BAD_REQUEST, "cut: refused");
    ledger_refusal why = {.charge = 1,
                          .unit = LEDGER_REQUESTS,
                          .limit = 10,
                          .used = 10,
                          .amount = 1,
                          .start = 1813017600,
                          .reset = 1813017660};
    ledger_refusal rwhy;
    rl_buf_reset(&b);
    is_int(cluster_refusal_encode(&why, &b), RL_OK, "a refusal encodes");
    is_int(cluster_refusal_decode(b.data, b.len, 2, &rwhy), RL_OK, "and decodes");
    ok(rwhy.charge == 1 && rwhy.unit == LEDGER_REQUESTS && rwhy.limit == 10 &&
           rwhy.reset == 1813017660,
       "its fields");
    is_int(cluster_refusal_decode(b.data, b.len, 1, &rwhy), RL_BAD_REQUEST,
           "a charge the request did not have is refused");

    /* Answers: the error, a commit token or none, the results. */
    rl_buf ans, res;
    rl_buf_init(&ans, 0);
    rl_buf_init(&res, 0);
    rl_buf_append(&res, "xyz", 3);
    uint8_t tok[CLUSTER_WIRE_TOKEN], tok_back[CLUSTER_WIRE_TOKEN];
    memset(tok, 0x5c, sizeof tok);
    rl_err e = RL_OK;
    int has = 0;
    const uint8_t *results = NULL;
    size_t results_len = 0;
    is_int(cluster_answer_encode(RL_EXISTS, tok, &res, &ans), RL_OK, "an answer encodes");
    is_int(cluster_answer_decode(ans.data, ans.len, &e, &has, tok_back, &results, &results_len),
           RL_OK, "and decodes");
    ok(e == RL_EXISTS && has == 1 && memcmp(tok, tok_back, sizeof tok) == 0 && results_len == 3 &&
           memcmp(results, "xyz", 3) == 0,
       "its error, token and results");
    int cut_refused = 1;
    for (size_t len = 0; len < 4 + 1 + CLUSTER_WIRE_TOKEN; len++)
        if (cluster_answer_decode(ans.data, len, &e, &has, tok_back, &results, &results_len) ==
            RL_OK)
            cut_refused = 0;
    ok(cut_refused, "an answer cut before its results is refused");
    rl_buf_reset(&ans);
    is_int(cluster_answer_encode(RL_OK, NULL, NULL, &ans), RL_OK, "an answer without a token");
    ok(cluster_answer_decode(ans.data, ans.len, &e, &has, tok_back, &results, &results_len) ==
               RL_OK &&
           e == RL_OK && has == 0 && results_len == 0,
       "decodes as one");
    ((uint8_t *)ans.data)[4] = 2;
    is_int(cluster_answer_decode(ans.data, ans.len, &e, &has, tok_back, &results, &results_len),
           RL_BAD_REQUEST, "a token flag other than 0 or 1 is refused");
    ((uint8_t *)ans.data)[4] = 0;
    ((uint8_t *)ans.data)[0] = 0x7f;
    is_int(cluster_answer_decode(ans.data, ans.len, &e, &has, tok_back, &results, &results_len),
           RL_BAD_REQUEST, "an error this Relay does not know is refused");
    rl_buf_release(&ans);
    rl_buf_release(&res);

    /* Headers. */
    uint8_t head[CLUSTER_WIRE_HEAD];
    cluster_wire_head(CLUSTER_OP_TOKEN_REVOKE, head);
    is_int(cluster_wire_head_op(head, sizeof head), CLUSTER_OP_TOKEN_REVOKE, "a header");
    head[4] = 0;
    is_int(cluster_wire_head_op(head, sizeof head), 0, "no operation 0");
    head[4] = CLUSTER_OPS + 1;
    is_int(cluster_wire_head_op(head, sizeof head), 0, "no unknown operation");
    cluster_wire_head(CLUSTER_OP_SETTLE, head);
    head[3] = '1';
    is_int(cluster_wire_head_op(head, sizeof head), 0, "another layout's magic");
    is_int(cluster_wire_head_op(head, sizeof head - 1), 0, "a short header");
    rl_buf_release(&b);
    free(m);
    free(back);
}

int main(void)
{
    test_reserve();
    test_others();
    return tap_done();
}
