/*
 * xlate.h — the common model every translation between wire formats goes
 * through, and the contract of one dialect's translator
 * (engine/xlate_<dialect>.c).
 *
 * A client speaking one format can be served by an upstream speaking
 * another (issue 17): its request is decoded into the model below and
 * encoded in the upstream's format; the upstream's answer (a body, an
 * error, or a stream event by event) is decoded into the model and encoded
 * in the client's format. With one hub model, each dialect writes its own
 * four directions once instead of one translator per pair.
 *
 * Everything a decoder produces lives in the pool it is given (strings
 * NUL-terminated and copied, JSON fragments as compact JSON text), so the
 * model never points into the bytes it was read from. No JSON library type
 * crosses this header.
 *
 * Refusals: a decoder refuses (RL_BAD_REQUEST, the reason appended to why,
 * naming the client's field as the client wrote it, e.g. "logit_bias") any
 * field the model cannot carry, never dropping it silently; a field the
 * model carries but the upstream's dialect cannot is refused by
 * xlate_check_features() from the features the decoder recorded
 * (xl_request.features) and the dialect's caps (xl_dialect.caps). Fields
 * that do not change the answer (OpenAI's `user`, `store`, `metadata`,
 * stream_options, Claude Code's metadata.user_id, service_tier) are not
 * refused: decoders skip them or carry them where they map.
 *
 * Threads: everything here is pure (no globals, no time, no I/O); any
 * thread may translate, each with its own pool and state.
 */
#ifndef RELAY_ENGINE_XLATE_H
#define RELAY_ENGINE_XLATE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/frame.h"
#include "engine/prov.h"
#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/base/rl_pool.h"

/* The dialects: OpenAI's two APIs are two dialects of one wire format. */
typedef enum {
    XL_OPENAI_CHAT,      /* POST /v1/chat/completions (also Azure, OpenAI-compatible servers) */
    XL_OPENAI_RESPONSES, /* POST /v1/responses */
    XL_ANTHROPIC,        /* POST /v1/messages */
    XL_GEMINI,           /* POST /v1beta/models/M:generateContent, :streamGenerateContent */
    XL_OLLAMA,           /* POST /api/chat */
    XL_DIALECTS
} xl_dialect_id;

/* ---- the request -------------------------------------------------------- */

typedef enum {
    XL_PART_TEXT,        /* text */
    XL_PART_IMAGE,       /* media_type + data (base64), or url */
    XL_PART_TOOL_CALL,   /* id, name, arguments (a JSON object's text) */
    XL_PART_TOOL_RESULT, /* id (of the call answered), name, text, is_error */
    XL_PART_THINKING,    /* text (may be ""), signature; redacted: data holds the opaque blob */
} xl_part_kind;

typedef struct xl_part {
    xl_part_kind kind;
    const char *text;
    const char *media_type; /* IMAGE: "image/png" ...; NULL when only a URL is known */
    const char *data;       /* IMAGE: base64 without a data: prefix; THINKING redacted: blob */
    const char *url;        /* IMAGE: an http(s) URL (a data: URL is split into media_type+data) */
    const char *id;   /* TOOL_CALL / TOOL_RESULT: the call's id (Gemini's: see xlate_tool_id) */
    const char *name; /* TOOL_CALL: the function; TOOL_RESULT: the function answered */
    const char *arguments; /* TOOL_CALL: compact JSON object text ("{}" when none) */
    const char *signature; /* THINKING: Anthropic's signature / Gemini's thoughtSignature */
    int is_error;          /* TOOL_RESULT: the tool failed */
    int redacted;          /* THINKING: redacted_thinking */
} xl_part;

typedef enum { XL_ROLE_USER, XL_ROLE_ASSISTANT, XL_ROLE_TOOL } xl_role;

/* A turn. XL_ROLE_TOOL turns hold only TOOL_RESULT parts (OpenAI's role
 * "tool", Anthropic's tool_result blocks in a user turn, Gemini's
 * functionResponse parts); encoders merge or split turns as their format
 * requires (Anthropic and Gemini alternate roles). */
typedef struct xl_message {
    xl_role role;
    xl_part *parts;
    size_t nparts;
} xl_message;

typedef struct xl_tool {
    const char *name;
    const char *description; /* NULL when none */
    const char *parameters;  /* the JSON schema's compact text, NULL when none */
    int strict;              /* OpenAI's strict: -1 unset, 0, 1 */
} xl_tool;

typedef enum {
    XL_CHOICE_UNSET,
    XL_CHOICE_AUTO,
    XL_CHOICE_NONE,
    XL_CHOICE_REQUIRED, /* some tool (OpenAI "required", Anthropic "any", Gemini ANY) */
    XL_CHOICE_NAMED,    /* tool_choice_name */
} xl_tool_choice;

typedef enum {
    XL_FORMAT_TEXT,        /* unset */
    XL_FORMAT_JSON_OBJECT, /* any JSON object (OpenAI json_object, Gemini application/json) */
    XL_FORMAT_JSON_SCHEMA, /* format_schema (compact JSON text), format_name, format_strict */
} xl_format;

/*
 * What a request uses beyond text turns, for the check against the
 * upstream's dialect (xlate_check_features). A decoder that reads such a
 * field sets features[F] to the client's name for it ("top_k",
 * "generationConfig.seed"), which the 400 quotes.
 */
typedef enum {
    XL_F_TOP_K,
    XL_F_SEED,
    XL_F_PENALTIES,    /* presence/frequency penalty */
    XL_F_CHOICES,      /* more than one answer (n, candidateCount) */
    XL_F_JSON_OBJECT,  /* JSON mode without a schema */
    XL_F_JSON_SCHEMA,  /* structured output with a schema */
    XL_F_IMAGE_URL,    /* an image by http(s) URL (not inline data) */
    XL_F_IMAGE,        /* any image */
    XL_F_TOOLS,        /* tools offered */
    XL_F_PARALLEL_OFF, /* parallel tool calls turned off */
    XL_F_THINKING,     /* reasoning / thinking asked for (effort or budget) */
    XL_F_STOP,         /* stop sequences */
    XL_FEATURES
} xl_feature;

typedef struct xl_request {
    const char *model; /* as the client named it (routing may rename it: xlate.h callers) */
    int stream;
    int include_usage; /* OpenAI client asked for stream_options.include_usage */

    xl_part *system; /* TEXT parts of the system prompt / instructions */
    size_t nsystem;
    xl_message *messages;
    size_t nmessages;

    xl_tool *tools;
    size_t ntools;
    xl_tool_choice tool_choice;
    const char *tool_choice_name;
    int parallel_tool_calls; /* -1 unset, 0, 1 */

    const char **stop;
    size_t nstop;
    int64_t max_tokens; /* -1 unset (Anthropic requires one: XLATE_DEFAULT_MAX_TOKENS) */
    double temperature; /* < 0 unset (every dialect's range starts at 0) */
    double top_p;       /* < 0 unset */
    int64_t top_k;      /* -1 unset */
    int64_t seed;       /* used when features[XL_F_SEED] */
    double presence_penalty, frequency_penalty; /* used when features[XL_F_PENALTIES] */
    int64_t n;                                  /* 1 unless features[XL_F_CHOICES] */

    xl_format format;
    const char *format_schema;
    const char *format_name;
    int format_strict; /* -1 unset (Gemini has no such notion), 0, 1 */

    /* Reasoning: effort "minimal" "low" "medium" "high" (OpenAI), or a
     * token budget (Anthropic's thinking.budget_tokens, Gemini's
     * thinkingBudget); both -1/NULL unset. Encoders convert one into the
     * other with xlate_effort_budget / xlate_budget_effort. */
    const char *reasoning_effort;
    int64_t thinking_budget;

    const char *user; /* an end-user id (OpenAI user, Anthropic metadata.user_id), NULL none */

    const char *features[XL_FEATURES];
} xl_request;

/* Sets req to the empty request every decoder starts from: nothing set
 * (each "unset" value as documented above), one answer, not streamed. */
void xlate_request_init(xl_request *req);

/* Anthropic requires max_tokens; a request without one is sent with this
 * (documented in relay.ini and the README's translation matrix). */
#define XLATE_DEFAULT_MAX_TOKENS 4096

/* ---- the answer --------------------------------------------------------- */

typedef enum {
    XL_STOP_UNSET,
    XL_STOP_END,      /* natural end (stop, end_turn, STOP) */
    XL_STOP_LENGTH,   /* the token limit (length, max_tokens, MAX_TOKENS) */
    XL_STOP_TOOL,     /* the model called tools (tool_calls, tool_use) */
    XL_STOP_SEQUENCE, /* a stop sequence (Anthropic stop_sequence; OpenAI says "stop") */
    XL_STOP_FILTER,   /* content filter / safety / refusal */
    XL_STOP_OTHER,
} xl_stop;

typedef struct xl_response {
    const char *id;    /* the upstream's, kept (NULL: the encoder makes one from xl_reply.id) */
    const char *model; /* the upstream's (the encoder writes xl_reply.model) */
    xl_part *parts;    /* TEXT, THINKING, TOOL_CALL in the answer's order */
    size_t nparts;
    xl_stop stop;
    const char *stop_sequence; /* XL_STOP_SEQUENCE: which, when told */
    /* input counts every input token (cached ones included), output
     * every output token (reasoning included), as prov.h says; -1 unknown. */
    prov_usage usage;
    int64_t reasoning_tokens; /* -1 unknown */
} xl_response;

/* What an encoder of an answer needs from the client's request and the
 * call: the names and stamps it writes. */
typedef struct xl_reply {
    const char *model;  /* the model as the client named it */
    const char *id;     /* used when the upstream gave none */
    int64_t created;    /* unix seconds (OpenAI's `created`), passed in */
    int include_usage;  /* OpenAI chat stream: end with the usage chunk */
    frame_kind framing; /* of the client's stream */
} xl_reply;

/* An error the upstream answered (a non-2xx body) or sent in a stream. */
typedef struct xl_error {
    const char *message; /* NULL when the body said none */
    const char *type;    /* the upstream's error type, NULL when none */
} xl_error;

/* ---- streams ------------------------------------------------------------ */

typedef enum {
    XL_EV_START,     /* id, model (either NULL): the answer begins */
    XL_EV_TEXT,      /* text: the next piece of the answer's text */
    XL_EV_THINKING,  /* text: the next piece of reasoning; signature when it comes */
    XL_EV_TOOL_CALL, /* index (0, 1, ... in the answer's order), id, name: a call starts */
    XL_EV_TOOL_ARGS, /* index, text: the next piece of its arguments' JSON text */
    XL_EV_STOP,      /* stop, text (the stop sequence, NULL when not told) */
    XL_EV_USAGE,     /* usage, reasoning_tokens: counts told so far (-1 fields: not told) */
    XL_EV_END,       /* the upstream's stream is complete (its terminator) */
    XL_EV_ERROR,     /* text (message), type: the upstream reported an error inside the stream */
} xl_event_kind;

typedef struct xl_event {
    xl_event_kind kind;
    const char *text; /* NUL-terminated, borrowed for the call */
    const char *id, *name, *model, *type, *signature;
    int index;
    xl_stop stop;
    prov_usage usage;
    int64_t reasoning_tokens;
} xl_event;

/* Where a stream decoder hands its events, in order; non-zero return:
 * stop (the decoder returns RL_STOPPED). */
typedef int (*xl_emit_fn)(void *ctx, const xl_event *ev);

/* ---- one dialect ---------------------------------------------------------- */

/* Features (bits of 1 << xl_feature) a dialect can carry as a request. */
typedef uint32_t xl_caps;

typedef struct xl_dialect {
    xl_dialect_id id;
    const char *name; /* "OpenAI Chat Completions", for messages ("cannot be sent to ...") */
    xl_caps caps;
    int carries_thinking; /* an answer in this dialect can hold reasoning */

    /* Reads a client's request body. path_model: the model named in the
     * path (Gemini), else NULL. RL_BAD_JSON / RL_BAD_REQUEST (RL_NOMEM)
     * with the client's reason appended to why. */
    rl_err (*decode_request)(const char *body, size_t len, const char *path_model, rl_pool *pool,
                             xl_request *out, rl_buf *why);
    /* Writes req as this dialect's request body (out), and the path and
     * query to send it to (path: "/v1/messages",
     * "/v1beta/models/M:streamGenerateContent?alt=sse"), both appended.
     * A streamed request asks for the usage at its end where the dialect
     * must be told to (OpenAI's stream_options.include_usage).
     * RL_BAD_REQUEST with why when req cannot be said in this dialect
     * (beyond the features check: e.g. a tool result whose call is
     * unknown). */
    rl_err (*encode_request)(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why);

    /* Reads a complete non-stream success body. RL_UPSTREAM_PROTOCOL when
     * it is not one. */
    rl_err (*decode_response)(const char *body, size_t len, rl_pool *pool, xl_response *out);
    /* Writes resp as this dialect's non-stream answer body. */
    rl_err (*encode_response)(const xl_response *resp, const xl_reply *reply, rl_buf *out);
    /* Reads an error body (any status); fields NULL when it is not one of
     * this dialect's error shapes. Never fails but for RL_NOMEM. */
    rl_err (*decode_error)(const char *body, size_t len, rl_pool *pool, xl_error *out);

    /* The upstream side of a stream: the framing it comes in, and a
     * decoder whose state (dec_size bytes, zeroed by the caller, in the
     * pool's lifetime) reads one event at a time (frame.h's event: SSE
     * name and data, or an NDJSON line) and emits model events. The
     * decoder emits XL_EV_END only for a complete stream (the format's
     * terminator); at the end of the bytes dec_finish emits what a
     * terminator-less format (Gemini) has pending: END only if the stream
     * ended properly (a finishReason was seen). */
    frame_kind stream_framing;
    size_t dec_size;
    rl_err (*dec_event)(void *state, rl_pool *pool, const char *event, const char *data, size_t len,
                        xl_emit_fn emit, void *ctx);
    rl_err (*dec_finish)(void *state, rl_pool *pool, xl_emit_fn emit, void *ctx);

    /* The client side of a stream: an encoder whose state (enc_size bytes,
     * zeroed) takes model events in order and appends this dialect's
     * stream bytes (in reply->framing) to out; on XL_EV_END it writes what
     * ends the stream (last events with stop reason and usage, and the
     * terminator); on XL_EV_ERROR the format's error event (the stream is
     * then over). Events it cannot place (arguments of a call it was not
     * told of) are RL_UPSTREAM_PROTOCOL. */
    size_t enc_size;
    rl_err (*enc_event)(void *state, const xl_reply *reply, const xl_event *ev, rl_buf *out);
    /* Frees what an encoder holds outside its state (tool-call arguments
     * kept until the call is whole), whether or not the stream ended;
     * NULL when it holds nothing. Called once per encoder. */
    void (*enc_release)(void *state);
} xl_dialect;

extern const xl_dialect xl_openai_chat;
extern const xl_dialect xl_openai_responses;
extern const xl_dialect xl_anthropic;
extern const xl_dialect xl_gemini;
extern const xl_dialect xl_ollama;

/* ---- shared helpers (engine/xlate.c) ------------------------------------ */

/* RL_OK when every feature req uses is in to->caps; else RL_BAD_REQUEST
 * with "`FIELD` cannot be translated to DIALECT" appended to why. */
rl_err xlate_check_features(const xl_request *req, const xl_dialect *to, rl_buf *why);

/* Fills the name of each TOOL_RESULT part that has none from the
 * TOOL_CALL with its id earlier in the conversation (OpenAI and Anthropic
 * results name only the id; Gemini's functionResponse needs the name).
 * RL_BAD_REQUEST when a result answers no known call. */
rl_err xlate_pair_tool_results(xl_request *req, rl_buf *why);

/* The id given to the index-th tool call of an answer whose format has
 * none (Gemini's functionCall): "call_" + index, stable so a cached answer
 * replays the same ids. In pool; NULL when out of memory. */
const char *xlate_tool_id(rl_pool *pool, int index);

/* Reasoning effort <-> token budget, one table for every dialect:
 * minimal 1024, low 2048, medium 8192, high 24576 (NULL / -1 unknown). */
int64_t xlate_effort_budget(const char *effort);
const char *xlate_budget_effort(int64_t budget);

/* Splits a data: URL ("data:image/png;base64,AAAA") into media_type and
 * data (pool copies); 0, or -1 when it is not a base64 data URL. */
int xlate_data_url(rl_pool *pool, const char *url, const char **media_type, const char **data);

/* An rl_err for an upstream error status (400 -> RL_BAD_REQUEST, 401 ->
 * RL_UNAUTHORIZED, 403, 404, 413, 429 -> RL_OVER_LIMIT, 5xx ...), so that the
 * client's error body gets the type its SDK expects for that status. */
rl_err xlate_status_err(int status);

#endif
