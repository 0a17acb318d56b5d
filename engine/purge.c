/*
 * purge.c — selecting and removing cached answers (see purge.h).
 */
#include "engine/purge.h"

#include <string.h>

#include "engine/entry.h"

typedef struct selection {
    const purge_filter *f;
    uint64_t now;
} selection;

/* Labels are stored cut to ENTRY_LABEL_MAX bytes: compare the same way. */
static int label_is(const char *label, const char *want)
{
    return strncmp(label, want, ENTRY_LABEL_MAX) == 0;
}

static int has_label_condition(const purge_filter *f)
{
    return f->model || f->ns || f->upstream;
}

/* Runs inside the store's transaction: decides only, calls nothing. */
static int selected(void *ctx, const store_item *it)
{
    const selection *sel = ctx;
    const purge_filter *f = sel->f;
    if (it->damaged)
        return 0;
    if (f->expired && it->meta.expires >= sel->now)
        return 0;
    /* age = now - created, compared without an addition that could wrap
     * (relay-admin accepts durations up to 2^64 s). */
    if (f->older && (it->meta.created > sel->now || sel->now - it->meta.created < f->older_than))
        return 0;
    if (has_label_condition(f)) {
        entry_view v;
        if (entry_decode((const char *)it->value, it->value_len, &v) != RL_OK || !v.labelled)
            return 0;
        if ((f->model && !label_is(v.model, f->model)) || (f->ns && !label_is(v.ns, f->ns)) ||
            (f->upstream && !label_is(v.upstream, f->upstream)))
            return 0;
    }
    return 1;
}

const char *purge_check(const purge_filter *f)
{
    if (f->all && (f->expired || f->older || has_label_condition(f)))
        return "\"all\" removes every entry; it takes no other condition";
    return NULL;
}

rl_err purge_run(store *s, const purge_filter *f, uint64_t now, uint64_t *removed)
{
    *removed = 0;
    if (purge_check(f))
        return RL_BAD_REQUEST;
    if (f->all)
        return store_cache_purge_all(s, removed);
    /* Expiry alone needs no entry's bytes: the store's own sweep does it. */
    if (!f->older && !has_label_condition(f))
        return store_cache_purge_expired(s, now, 0, removed);
    selection sel = {f, now};
    return store_cache_purge_match(s, has_label_condition(f) ? ENTRY_HEAD_MAX : 0, selected, &sel,
                                   removed);
}
