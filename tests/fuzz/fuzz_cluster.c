/* libFuzzer target: the messages of forwarded writes between the hosts
 * of a group (store/cluster_wire.c), which arrive from the network. The
 * first byte picks the operation (any value: unknown ones are refused),
 * the rest is the message's arguments. Whatever they hold, a message that
 * decodes encodes again and that encoding decodes (its strings within
 * their bounds, its counts within their arrays); the result decoders
 * (a refusal, a token, an answer) take the same bytes without harm. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/cluster_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    cluster_op op = (cluster_op)data[0];
    cluster_msg *m = malloc(sizeof *m), *again = malloc(sizeof *again);
    if (!m || !again) {
        free(m);
        free(again);
        return 0;
    }
    if (cluster_msg_decode(op, data + 1, size - 1, m) == RL_OK) {
        if (m->op != op || (op == CLUSTER_OP_RESERVE && (m->n == 0 || m->n > LEDGER_MAX_CHARGES)))
            abort();
        rl_buf b;
        rl_buf_init(&b, 0);
        if (cluster_msg_encode(m, &b) != RL_OK)
            abort(); /* what decodes is a message this Relay writes */
        if (cluster_msg_decode(op, b.data, b.len, again) != RL_OK)
            abort();
        if (op == CLUSTER_OP_RESERVE)
            for (unsigned i = 0; i < again->n; i++)
                if (strcmp(again->scopes[i], m->scopes[i]) != 0)
                    abort();
        rl_buf_release(&b);
    }
    uint8_t head[CLUSTER_WIRE_HEAD];
    cluster_wire_head(op, head);
    if (cluster_wire_head_op(head, sizeof head) != 0 && cluster_wire_op_name(op)[0] == 0)
        abort();
    ledger_refusal why;
    (void)cluster_refusal_decode(data, size, LEDGER_MAX_CHARGES, &why);
    rl_err e;
    int has;
    uint8_t token[CLUSTER_WIRE_TOKEN];
    const uint8_t *results;
    size_t results_len;
    if (cluster_answer_decode(data, size, &e, &has, token, &results, &results_len) == RL_OK &&
        (e >= RL_ERR_COUNT || results < data || results + results_len != data + size))
        abort(); /* the results are the rest of the answer, within it */
    (void)cluster_token_decode(data, size, &m->token);
    free(m);
    free(again);
    return 0;
}
