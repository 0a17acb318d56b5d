/*
 * xlate.c — what every dialect's translator shares (xlate.h).
 */
#include "engine/xlate.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* What each feature is called in the 400 when the decoder named none. */
static const char *const feature_names[XL_FEATURES] = {
    [XL_F_TOP_K] = "top_k",
    [XL_F_SEED] = "seed",
    [XL_F_PENALTIES] = "presence_penalty/frequency_penalty",
    [XL_F_CHOICES] = "n",
    [XL_F_JSON_OBJECT] = "response_format",
    [XL_F_JSON_SCHEMA] = "response_format",
    [XL_F_IMAGE_URL] = "image_url",
    [XL_F_IMAGE] = "image",
    [XL_F_TOOLS] = "tools",
    [XL_F_PARALLEL_OFF] = "parallel_tool_calls",
    [XL_F_THINKING] = "reasoning",
    [XL_F_STOP] = "stop",
};

void xlate_request_init(xl_request *req)
{
    *req = (xl_request){
        .parallel_tool_calls = -1,
        .max_tokens = -1,
        .temperature = -1,
        .top_p = -1,
        .top_k = -1,
        .n = 1,
        .format_strict = -1,
        .thinking_budget = -1,
    };
}

rl_err xlate_check_features(const xl_request *req, const xl_dialect *to, rl_buf *why)
{
    for (int f = 0; f < XL_FEATURES; f++) {
        if (!req->features[f] || (to->caps & (1u << f)))
            continue;
        const char *field = req->features[f][0] ? req->features[f] : feature_names[f];
        rl_buf_printf(why, "`%s` cannot be translated to %s, the upstream's format.", field,
                      to->name);
        return RL_BAD_REQUEST;
    }
    return RL_OK;
}

/* The TOOL_CALL part with id in the turns before `before`, or NULL. */
static const xl_part *find_call(const xl_request *req, size_t before, const char *id)
{
    for (size_t m = before; m-- > 0;) {
        const xl_message *msg = &req->messages[m];
        for (size_t p = 0; p < msg->nparts; p++)
            if (msg->parts[p].kind == XL_PART_TOOL_CALL && msg->parts[p].id &&
                strcmp(msg->parts[p].id, id) == 0)
                return &msg->parts[p];
    }
    return NULL;
}

rl_err xlate_pair_tool_results(xl_request *req, rl_buf *why)
{
    for (size_t m = 0; m < req->nmessages; m++) {
        xl_message *msg = &req->messages[m];
        for (size_t p = 0; p < msg->nparts; p++) {
            xl_part *part = &msg->parts[p];
            if (part->kind != XL_PART_TOOL_RESULT)
                continue;
            /* A result that names its function is still looked up: one
             * answering no call (an Ollama tool message with tool_name and
             * a stray tool_call_id, found by fuzz_xlate) would be refused
             * by every upstream that pairs results with calls. */
            const xl_part *call = part->id ? find_call(req, m, part->id) : NULL;
            if (!call) {
                rl_buf_printf(why,
                              "A tool result (id `%s`) answers no tool call earlier in the "
                              "conversation, so it cannot be translated.",
                              part->id ? part->id : "(none)");
                return RL_BAD_REQUEST;
            }
            if (!part->name)
                part->name = call->name;
        }
    }
    return RL_OK;
}

const char *xlate_tool_id(rl_pool *pool, int index)
{
    char id[32];
    snprintf(id, sizeof id, "call_%d", index);
    return rl_pstrdup(pool, id);
}

/* One table both ways: effort names and the budgets they stand for. The
 * budgets follow the providers' own guidance (Anthropic's minimum budget
 * is 1024 tokens; Gemini 2.5's dynamic range tops out near 24576). */
static const struct {
    const char *effort;
    int64_t budget;
} efforts[] = {
    {"minimal", 1024},
    {"low", 2048},
    {"medium", 8192},
    {"high", 24576},
};

int64_t xlate_effort_budget(const char *effort)
{
    if (!effort)
        return -1;
    for (size_t i = 0; i < sizeof efforts / sizeof efforts[0]; i++)
        if (strcmp(efforts[i].effort, effort) == 0)
            return efforts[i].budget;
    return -1;
}

const char *xlate_budget_effort(int64_t budget)
{
    if (budget < 0)
        return NULL;
    /* The smallest effort whose budget covers the one asked for. */
    for (size_t i = 0; i < sizeof efforts / sizeof efforts[0]; i++)
        if (budget <= efforts[i].budget)
            return efforts[i].effort;
    return "high";
}

int xlate_data_url(rl_pool *pool, const char *url, const char **media_type, const char **data)
{
    if (strncasecmp(url, "data:", 5) != 0)
        return -1;
    const char *comma = strchr(url, ',');
    const char *b64 = comma ? strstr(url, ";base64") : NULL;
    if (!comma || !b64 || b64 > comma || comma - b64 != 7)
        return -1;
    *media_type = rl_pstrndup(pool, url + 5, (size_t)(b64 - (url + 5)));
    *data = rl_pstrdup(pool, comma + 1);
    return *media_type && *data ? 0 : -1;
}

rl_err xlate_status_err(int status)
{
    static const struct {
        int status;
        rl_err err;
    } map[] = {
        {400, RL_BAD_REQUEST},
        {401, RL_UNAUTHORIZED},
        {403, RL_FORBIDDEN},
        {404, RL_NOTFOUND},
        {405, RL_METHOD},
        {408, RL_BODY_TIMEOUT},
        {409, RL_EXISTS},
        {413, RL_TOO_LARGE},
        {422, RL_BAD_REQUEST},
        {429, RL_OVER_LIMIT},
        {502, RL_UPSTREAM_PROTOCOL},
        {503, RL_OVERLOADED},
        {504, RL_UPSTREAM_TIMEOUT},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].status == status)
            return map[i].err;
    return status >= 500 ? RL_INTERNAL : RL_BAD_REQUEST;
}
