/*
 * hit.c — answering from the cache (hit.h).
 */
#include "engine/hit.h"

#include "engine/policy.h"
#include "store/base/rl_log.h"

/* Looks key up; RL_OK when the request was answered from the cache.
 * label NULL: x's own key (HIT, or STALE where x accepts it); else
 * another request's entry, fresh only, answered as label. */
static rl_err serve_entry(exchange *x, const uint8_t *key, const char *label)
{
    store *s = exchange_store(x);
    rl_buf value;
    rl_buf_init(&value, 0);
    store_meta meta;
    entry_view ev;
    rl_err err = store_cache_get(s, key, &meta, &value);
    if (err != RL_OK)
        goto out;
    entry_use use = policy_entry_use(&x->cc, &meta, x->now);
    if (use == ENTRY_UNUSABLE || (label && use != ENTRY_FRESH)) {
        err = RL_NOTFOUND;
        goto out;
    }
    long age = x->now > meta.created ? (long)(x->now - meta.created) : 0;
    err = entry_decode(value.data, value.len, &ev);
    if (err == RL_OK)
        err = exchange_send_answer(x, 200, ev.kind, ev.content_type, ev.body, ev.body_len,
                                   label                ? label
                                   : use == ENTRY_FRESH ? "HIT"
                                                        : "STALE",
                                   age);
    if (err == RL_NOMEM) {
        /* The entry is fine; this process is short of memory. Neither throw
         * the entry away nor pay the upstream for what is stored. */
        exchange_fail(x, RL_NOMEM, NULL);
        err = RL_OK;
        goto out;
    }
    if (err != RL_OK) {
        rl_error("cached entry %s cannot be rendered (%s): removing it", x->key_hex,
                 rl_err_text(err));
        store_cache_del(s, key);
        err = RL_NOTFOUND;
        goto out;
    }
    store_cache_touch(s, key, x->now);
    /* What the answer cost when it was fetched: saved this time. Read when
     * it was stored (entry.h); entries stored before that was done, or
     * whose usage could not be read then, are parsed as before. */
    if (ev.has_usage)
        x->usage = (prov_usage){ev.usage.input, ev.usage.output, ev.usage.cached_input,
                                ev.usage.cache_write, 0};
    else
        x->prov->usage(ev.kind, frame_kind_of(ev.content_type), ev.body, ev.body_len, &x->usage);
out:
    rl_buf_release(&value);
    return err;
}

rl_err hit_serve(exchange *x)
{
    return serve_entry(x, x->key, NULL);
}

rl_err hit_serve_other(exchange *x, const uint8_t key[STORE_KEY_LEN], const char *label)
{
    return serve_entry(x, key, label);
}
