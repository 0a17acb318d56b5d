/* libFuzzer target: fuzzy_decode (engine/fuzzy.h), the store's fuzzy
 * record. Any bytes must be refused or decoded, never crash; a decoded doc
 * must encode back to the same bytes, match itself with similarity 1, and
 * give bands (tokenising whatever bytes the texts hold). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fuzzy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzzy_doc d;
    if (fuzzy_decode(data, size, &d) != RL_OK)
        return 0;
    rl_buf out;
    rl_buf_init(&out, 0);
    if (fuzzy_encode(&d, &out) != RL_OK || out.len != size || memcmp(out.data, data, size) != 0)
        abort();
    rl_buf_release(&out);
    double sim = 0;
    if (!fuzzy_match(&d, &d, NULL, &sim, NULL) || sim != 1.0)
        abort();
    uint64_t bands[FUZZY_BANDS];
    fuzzy_bands(&d, bands);
    fuzzy_doc_release(&d);
    return 0;
}
