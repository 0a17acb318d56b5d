#include "store/base/rl_err.h"

struct err_row {
    int status;
    const char *type, *code, *text;
};

static const struct err_row err_rows[] = {
#define RL_ERR_ROW(name, status, type, code, text) {status, type, code, text},
    RL_ERRORS(RL_ERR_ROW)
#undef RL_ERR_ROW
};

static const struct err_row *err_row(rl_err e)
{
    if ((unsigned)e >= RL_ERR_COUNT)
        e = RL_INTERNAL;
    return &err_rows[e];
}

const char *rl_err_text(rl_err e)
{
    return err_row(e)->text;
}
const char *rl_err_type(rl_err e)
{
    return err_row(e)->type;
}
const char *rl_err_code(rl_err e)
{
    return err_row(e)->code;
}
int rl_err_status(rl_err e)
{
    return err_row(e)->status;
}
