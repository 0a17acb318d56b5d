/*
 * cluster_wire.h — the messages of a replicated store's forwarded writes
 * (store/cluster.h, sent and run by cluster_ops.c): their layout, encoded
 * and decoded here, and checked whole before anything runs. For the store,
 * its tests and the fuzzer (tests/fuzz/fuzz_cluster.c): a message arrives
 * from the network, so a decoder never trusts a length.
 *
 * A request is a header (CLUSTER_WIRE_MAGIC and the operation's code, 5
 * bytes) and the arguments; an answer is the rl_err (4 bytes), the commit
 * token of the master's write (a byte 0, or 1 and CLUSTER_WIRE_TOKEN
 * bytes: the requester waits until its own copy has applied that commit,
 * so a write it forwarded is there for its next read) and the results. Integers are big-endian,
 * strings a length byte and their bytes (no NUL inside). Every site runs the same Relay: the magic
 * changes with the layout.
 *
 * Threads: pure functions, any thread. Errors: RL_BAD_REQUEST for bytes
 * that are not exactly one message of the operation, RL_NOMEM.
 */
#ifndef RELAY_STORE_CLUSTER_WIRE_H
#define RELAY_STORE_CLUSTER_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/ledger.h"
#include "store/token.h"

#define CLUSTER_WIRE_MAGIC "RLC3"
#define CLUSTER_WIRE_HEAD 5 /* the magic and the operation's code */

typedef enum {
    CLUSTER_OP_RESERVE = 1,  /* id, owner, charges -> refusal */
    CLUSTER_OP_SETTLE,       /* id, actual */
    CLUSTER_OP_TOKEN_PUT,    /* mode, token */
    CLUSTER_OP_TOKEN_DEL,    /* hash */
    CLUSTER_OP_TOKEN_REVOKE, /* hash -> token */
    CLUSTER_OP_TOKEN_ROTATE, /* hash, new_hash, until -> token */
    CLUSTER_OP_RELEASE_HELD, /* id: settled as reserved (its owner died) */
} cluster_op;
#define CLUSTER_OPS 7

/* One request's arguments; which fields an operation uses is listed
 * above (now: every one). */
typedef struct cluster_msg {
    cluster_op op;
    uint64_t now;
    uint8_t id[LEDGER_ID_LEN];
    /* reserve: the owner (ledger_hold's pid, pid_start and site) */
    int32_t pid;
    uint64_t pid_start;
    char site[LEDGER_SITE_MAX + 1];
    /* reserve: the charges; their scopes point into scopes */
    unsigned n;
    ledger_charge charges[LEDGER_MAX_CHARGES];
    char scopes[LEDGER_MAX_CHARGES][LEDGER_SCOPE_MAX + 1];
    uint64_t actual[LEDGER_UNITS]; /* settle */
    int mode;                      /* token put: token_put_mode */
    store_token token;             /* token put (its hash included) */
    uint8_t hash[STORE_KEY_LEN], new_hash[STORE_KEY_LEN];
    uint64_t until; /* rotate: the old token's end */
} cluster_msg;

/* The header of m's operation into head. */
void cluster_wire_head(cluster_op op, uint8_t head[CLUSTER_WIRE_HEAD]);
/* The operation a header names: 0 unless it is one of ours. */
cluster_op cluster_wire_head_op(const void *head, size_t n);
/* A name for log lines ("a budget reservation"); "" for no operation. */
const char *cluster_wire_op_name(cluster_op op);

/* m's arguments appended to out (RL_BAD_REQUEST for a charge's scope or a
 * token that is not one). */
rl_err cluster_msg_encode(const cluster_msg *m, rl_buf *out);
/* The arguments of an op request (n bytes at p) into *m. */
rl_err cluster_msg_decode(cluster_op op, const void *p, size_t n, cluster_msg *m);

/* An answer: e, the commit token (NULL: none) and the results. decode:
 * results point into p; token_out gets the token when *has_token. */
#define CLUSTER_WIRE_TOKEN 20 /* Berkeley DB's DB_TXN_TOKEN_SIZE */
rl_err cluster_answer_encode(rl_err e, const uint8_t *token, const rl_buf *results, rl_buf *out);
rl_err cluster_answer_decode(const void *p, size_t n, rl_err *e, int *has_token,
                             uint8_t token_out[CLUSTER_WIRE_TOKEN], const uint8_t **results,
                             size_t *results_len);

/* The results: a reservation's refusal, a token. */
rl_err cluster_refusal_encode(const ledger_refusal *why, rl_buf *out);
rl_err cluster_refusal_decode(const void *p, size_t n, unsigned charges, ledger_refusal *why);
rl_err cluster_token_encode(const store_token *t, rl_buf *out);
rl_err cluster_token_decode(const void *p, size_t n, store_token *t);

#endif
