/* Unit tests for engine/prov_gemini: credentials, request inspection, stream
 * classification and assembly in both framings, rendering, usage, error
 * shapes. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "engine/prov.h"
#include "tests/unit/tap.h"

static const prov_ops *P = &prov_gemini;

static const char secret[] = "AIzaSyFAKE-key_0123456789";

typedef struct req {
    prov_request r;
    rl_header headers[2];
} req;

/* A request to path?query with body; header_key adds an x-goog-api-key. */
static prov_request *make(req *q, const char *endpoint, const char *path, const char *query,
                          const char *body, const char *header_key)
{
    memset(q, 0, sizeof *q);
    q->headers[0] = (rl_header){"content-type", "application/json"};
    q->headers[1] = (rl_header){"x-goog-api-key", header_key};
    q->r = (prov_request){endpoint, "POST",       path,       query,
                          body,     strlen(body), q->headers, header_key ? 2 : 1};
    return &q->r;
}

typedef struct result {
    prov_info info;
    rl_buf canon, parts, why;
} result;

static void result_init(result *s)
{
    memset(s, 0, sizeof *s);
    rl_buf_init(&s->canon, 0);
    rl_buf_init(&s->parts, 0);
    rl_buf_init(&s->why, 0);
}

static void result_release(result *s)
{
    rl_buf_release(&s->canon);
    rl_buf_release(&s->parts);
    rl_buf_release(&s->why);
}

static rl_err inspect(result *s, const char *endpoint, const char *path, const char *query,
                      const char *body, const char *header_key)
{
    req q;
    rl_buf_reset(&s->canon);
    rl_buf_reset(&s->parts);
    rl_buf_reset(&s->why);
    return P->inspect(make(&q, endpoint, path, query, body, header_key), &s->info, &s->canon,
                      &s->parts, &s->why);
}

static const char *str(const rl_buf *b)
{
    return b->data ? b->data : "";
}

/* ---- fixtures ------------------------------------------------------------ */

#define GEN "/v1beta/models/gemini-2.5-flash:generateContent"
#define STREAM "/v1beta/models/gemini-2.5-flash:streamGenerateContent"

static const char body_a[] =
    "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Weather in Oslo?\"}]}],"
    "\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}]}],"
    "\"generationConfig\":{\"temperature\":0,\"thinkingConfig\":{\"includeThoughts\":true}}}";

/* The same request, keys in another order, with whitespace. */
static const char body_b[] =
    "{ \"generationConfig\": {\"thinkingConfig\": {\"includeThoughts\": true}, \"temperature\": "
    "0},\n"
    "  \"tools\": [{\"functionDeclarations\": [{\"parameters\": {\"properties\": {\"city\": "
    "{\"type\": \"string\"}}, \"type\": \"object\"}, \"name\": \"get_weather\"}]}],\n"
    "  \"contents\": [{\"parts\": [{\"text\": \"Weather in Oslo?\"}], \"role\": \"user\"}] }";

static const char canon_a[] =
    "{\"contents\":[{\"parts\":[{\"text\":\"Weather in Oslo?\"}],\"role\":\"user\"}],"
    "\"generationConfig\":{\"temperature\":0,\"thinkingConfig\":{\"includeThoughts\":true}},"
    "\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\",\"parameters\":{"
    "\"properties\":{\"city\":{\"type\":\"string\"}},\"type\":\"object\"}}]}]}";

/* The chunks of a streamed answer as gemini-2.5-flash sends them: two
 * thought pieces, text in three pieces, then a last chunk with a
 * functionCall, finishReason and the final usage. Every chunk repeats
 * usageMetadata (prompt only until the end), modelVersion and responseId. */
#define TAIL "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r-1\"}"
#define EARLY_USAGE "\"usageMetadata\":{\"promptTokenCount\":12,\"totalTokenCount\":12},"
#define PART_CHUNK(part)                                                                           \
    "{\"candidates\":[{\"content\":{\"parts\":[" part                                              \
    "],\"role\":\"model\"},\"index\":0}]," EARLY_USAGE TAIL
#define C1 PART_CHUNK("{\"text\":\"**Checking**\",\"thought\":true}")
#define C2 PART_CHUNK("{\"text\":\" the forecast\",\"thought\":true}")
#define C3 PART_CHUNK("{\"text\":\"Let me\"}")
#define C4 PART_CHUNK("{\"text\":\" look that\"}")
#define C5 PART_CHUNK("{\"text\":\" up.\"}")
#define C6                                                                                         \
    "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\","       \
    "\"args\":{\"city\":\"Oslo\"}},\"thoughtSignature\":\"c2lnMQ==\"}],\"role\":\"model\"},"       \
    "\"finishReason\":\"STOP\",\"index\":0,\"safetyRatings\":[{\"category\":"                      \
    "\"HARM_CATEGORY_HARASSMENT\",\"probability\":\"NEGLIGIBLE\"}]}],"                             \
    "\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":9,"                       \
    "\"totalTokenCount\":40,\"cachedContentTokenCount\":4,\"promptTokensDetails\":[{"              \
    "\"modality\":\"TEXT\",\"tokenCount\":12}],\"thoughtsTokenCount\":19}," TAIL

static const char sse[] = "data: " C1 "\r\n\r\n"
                          "data: " C2 "\r\n\r\n"
                          "data: " C3 "\r\n\r\n"
                          "data: " C4 "\r\n\r\n"
                          "data: " C5 "\r\n\r\n"
                          "data: " C6 "\r\n\r\n";

/* The same answer without alt=sse: one JSON array, elements separated the
 * way Google separates them. */
static const char array[] =
    "[" C1 "\n,\r\n" C2 "\n,\r\n" C3 "\n,\r\n" C4 "\n,\r\n" C5 "\n,\r\n" C6 "\n]";

static const char merged[] =
    "{\"candidates\":[{\"content\":{\"parts\":["
    "{\"text\":\"**Checking** the forecast\",\"thought\":true},"
    "{\"text\":\"Let me look that up.\"},"
    "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Oslo\"}},"
    "\"thoughtSignature\":\"c2lnMQ==\"}],\"role\":\"model\"},\"index\":0,"
    "\"finishReason\":\"STOP\",\"safetyRatings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\","
    "\"probability\":\"NEGLIGIBLE\"}]}],"
    "\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":9,"
    "\"totalTokenCount\":40,\"cachedContentTokenCount\":4,\"promptTokensDetails\":[{"
    "\"modality\":\"TEXT\",\"tokenCount\":12}],\"thoughtsTokenCount\":19},"
    "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r-1\"}";

/* Counts the events of a stream by kind; last_end is the 1-based position
 * of the last END. */
typedef struct kinds {
    int n, data, end, error, last_end;
} kinds;

static int count_kind(void *ctx, const char *event, const char *data, size_t len)
{
    kinds *k = ctx;
    k->n++;
    switch (P->classify_event(event, data, len)) {
    case PROV_EVENT_DATA:
        k->data++;
        break;
    case PROV_EVENT_END:
        k->end++;
        k->last_end = k->n;
        break;
    case PROV_EVENT_ERROR:
        k->error++;
        break;
    }
    return 0;
}

static kinds classify_all(frame_kind framing, const char *s, size_t len)
{
    kinds k = {0, 0, 0, 0, 0};
    frame_each(framing, s, len, count_kind, &k);
    return k;
}

/* ---- tests --------------------------------------------------------------- */

static void test_credential(void)
{
    req q;
    char buf[128];
    is_str(P->credential(make(&q, "generateContent", GEN, "", "{}", secret), buf, sizeof buf),
           secret, "credential: the x-goog-api-key header");
    is_str(P->credential(make(&q, "generateContent", GEN, "alt=sse&key=AIza%2Bx", "{}", NULL), buf,
                         sizeof buf),
           "AIza+x", "credential: else the key query parameter, decoded");
    is_str(P->credential(make(&q, "generateContent", GEN, "key=from-query", "{}", "from-header"),
                         buf, sizeof buf),
           "from-header", "credential: the header wins over the query");
    ok(P->credential(make(&q, "generateContent", GEN, "alt=sse", "{}", NULL), buf, sizeof buf) ==
           NULL,
       "credential: none");
    ok(P->credential(make(&q, "generateContent", GEN, "key=", "{}", ""), buf, sizeof buf) == NULL,
       "credential: empty values are none");
    ok(strstr(P->missing_credential, "API Key") != NULL, "missing_credential in Google's words");
    is_str(P->format, "gemini", "format name");
}

static void test_inspect(void)
{
    result a, b;
    result_init(&a);
    result_init(&b);
    char query[128];
    snprintf(query, sizeof query, "key=%s", secret);

    is_int(inspect(&a, "generateContent", GEN, query, body_a, NULL), RL_OK,
           "generateContent with the key in the query");
    is_str(str(&a.canon), canon_a, "canonical: sorted and compact, nothing dropped");
    is_str(str(&a.parts), "model=gemini-2.5-flash\napi=/v1beta\n", "key parts: model and version");
    is_str(a.info.model, "gemini-2.5-flash", "model from the path");
    ok(!a.info.stream, ":generateContent is not streamed");
    ok(a.info.deterministic, "temperature 0 is deterministic");
    ok(!a.info.stateful && a.info.max_ttl == 0, "neither stateful nor short-lived");
    ok(!strstr(str(&a.canon), secret) && !strstr(str(&a.parts), secret),
       "the key is in neither canonical nor key parts");

    is_int(inspect(&b, "generateContent", STREAM, "alt=sse", body_b, secret), RL_OK,
           "streamGenerateContent?alt=sse with the key in a header");
    ok(b.info.stream && b.info.framing == FRAME_SSE, "streamed as SSE");
    is_str(str(&b.canon), str(&a.canon), "stream and non-stream, header and query: same canonical");
    is_str(str(&b.parts), str(&a.parts), "... and same key parts");
    ok(!strstr(str(&b.canon), secret) && !strstr(str(&b.parts), secret),
       "the header key is in neither");

    is_int(inspect(&b, "generateContent", STREAM, query, body_a, NULL), RL_OK,
           "streamGenerateContent without alt");
    ok(b.info.stream && b.info.framing == FRAME_JSON_ARRAY, "streamed as a JSON array");
    is_str(str(&b.canon), canon_a, "same canonical");

    is_int(inspect(&b, "generateContent", "/v1beta/models/gemini-2.5-pro:generateContent", "",
                   body_a, secret),
           RL_OK, "another model");
    ok(strcmp(str(&b.parts), str(&a.parts)) != 0 && strstr(str(&b.parts), "gemini-2.5-pro\n"),
       "another model, other key parts");
    is_int(inspect(&b, "generateContent", "/v1/models/gemini-2.5-flash:generateContent", "", body_a,
                   secret),
           RL_OK, "the v1 API");
    is_str(str(&b.parts), "model=gemini-2.5-flash\napi=/v1\n", "v1 and v1beta are keyed apart");

    inspect(&b, "generateContent", GEN, "",
            "{\"contents\":[],\"generationConfig\":{\"temperature\":0.7}}", secret);
    ok(!b.info.deterministic, "temperature 0.7 is not deterministic");
    inspect(&b, "generateContent", GEN, "",
            "{\"contents\":[],\"generationConfig\":{\"temperature\":0.7,\"seed\":42}}", secret);
    ok(b.info.deterministic, "a fixed seed is deterministic");
    inspect(&b, "generateContent", GEN, "", "{\"contents\":[]}", secret);
    ok(!b.info.deterministic, "the default temperature is not deterministic");
    is_str(str(&b.canon), "{\"contents\":[]}", "a minimal body");

    is_int(inspect(&b, "countTokens", "/v1beta/models/gemini-2.5-flash:countTokens", "",
                   "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}", secret),
           RL_OK, "countTokens");
    ok(b.info.deterministic && !b.info.stream, "countTokens is deterministic, not streamed");
    is_int(inspect(&b, "countTokens", "/v1beta/models/gemini-2.5-flash:countTokens", "",
                   "{\"generateContentRequest\":{\"model\":\"models/gemini-2.5-flash\","
                   "\"contents\":[]}}",
                   secret),
           RL_OK, "countTokens with a generateContentRequest");
    is_int(inspect(&b, "embedContent", "/v1beta/models/gemini-embedding-001:embedContent", "",
                   "{\"content\":{\"parts\":[{\"text\":\"hello\"}]},\"taskType\":"
                   "\"RETRIEVAL_DOCUMENT\"}",
                   secret),
           RL_OK, "embedContent");
    ok(b.info.deterministic, "embedContent is deterministic");
    is_str(b.info.model, "gemini-embedding-001", "embedding model");

    /* Bad requests. */
    is_int(inspect(&b, "generateContent", GEN, "", "{\"contents\":", secret), RL_BAD_JSON,
           "truncated JSON");
    ok(strstr(str(&b.why), "Invalid JSON payload") != NULL, "with Google's words");
    is_int(inspect(&b, "generateContent", GEN, "", "[1,2]", secret), RL_BAD_JSON,
           "a body that is not an object");
    ok(b.why.len > 0, "with a reason");
    is_int(inspect(&b, "generateContent", GEN, "", "{}", secret), RL_BAD_REQUEST, "no contents");
    ok(strstr(str(&b.why), "contents is not specified") != NULL, "the reason names contents");
    is_int(inspect(&b, "generateContent", GEN, "", "{\"contents\":{\"parts\":[]}}", secret),
           RL_BAD_REQUEST, "contents not an array");
    is_int(inspect(&b, "countTokens", "/v1beta/models/m:countTokens", "", "{}", secret),
           RL_BAD_REQUEST, "countTokens without contents");
    is_int(inspect(&b, "embedContent", "/v1beta/models/m:embedContent", "", "{\"contents\":[]}",
                   secret),
           RL_BAD_REQUEST, "embedContent without content");
    ok(strstr(str(&b.why), "content") != NULL, "the reason names content");
    is_int(inspect(&b, "generateContent", "/v1beta/models/:generateContent", "", body_a, secret),
           RL_BAD_REQUEST, "a path without a model");
    is_int(inspect(&b, "generateContent", "/v1beta/gemini-2.5-flash:generateContent", "", body_a,
                   secret),
           RL_BAD_REQUEST, "a path without models/");
    is_int(inspect(&b, "generateContent", "/v1beta/models/a/b:generateContent", "", body_a, secret),
           RL_BAD_REQUEST, "a model with a slash");
    is_int(inspect(&b, "generateContent", "/v1beta/models/gemini-2.5-flash", "", body_a, secret),
           RL_BAD_REQUEST, "a path without a method");
    is_int(inspect(&b, "generateContent", "/v1beta/models/m:countTokens", "", body_a, secret),
           RL_BAD_REQUEST, "a method that is not the endpoint's");
    ok(b.canon.len == 0 && b.parts.len == 0, "nothing keyed for a bad request");

    result_release(&a);
    result_release(&b);
}

static void test_classify(void)
{
    kinds k = classify_all(FRAME_SSE, sse, sizeof sse - 1);
    ok(k.n == 6 && k.data == 5 && k.end == 1 && k.last_end == 6 && k.error == 0,
       "SSE: END only at the finishReason chunk");
    k = classify_all(FRAME_JSON_ARRAY, array, sizeof array - 1);
    ok(k.n == 6 && k.data == 5 && k.end == 1 && k.last_end == 6 && k.error == 0,
       "JSON array: END only at the finishReason chunk");

    const char *err = "{\"error\":{\"code\":500,\"message\":\"An internal error has occurred.\","
                      "\"status\":\"INTERNAL\"}}";
    is_int(P->classify_event(NULL, err, strlen(err)), PROV_EVENT_ERROR, "an error element");
    const char *block =
        "{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":"
        "3}}";
    is_int(P->classify_event(NULL, block, strlen(block)), PROV_EVENT_END, "a blocked prompt ends");
    const char *word = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"the \\\"error\\\" "
                       "and \\\"finishReason\\\" words\"}]}}]}";
    is_int(P->classify_event(NULL, word, strlen(word)), PROV_EVENT_DATA,
           "the words error and finishReason inside text are data");
    const char *second =
        "{\"candidates\":[{\"index\":0,\"content\":{\"parts\":[{\"text\":\"a\"}]}},"
        "{\"index\":1,\"finishReason\":\"MAX_TOKENS\"}]}";
    is_int(P->classify_event(NULL, second, strlen(second)), PROV_EVENT_END,
           "any candidate's finishReason ends");
    is_int(P->classify_event(NULL, "not json", 8), PROV_EVENT_DATA, "junk is data");
}

static void test_assembly(void)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    is_int(P->stream_to_body(FRAME_SSE, sse, sizeof sse - 1, &out), RL_OK, "SSE stream assembles");
    is_str(str(&out), merged,
           "SSE: text and thoughts joined apart, functionCall kept, last fields");
    ok(P->body_complete(out.data, out.len), "the assembled body is complete");

    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_JSON_ARRAY, array, sizeof array - 1, &out), RL_OK,
           "JSON array stream assembles");
    is_str(str(&out), merged, "JSON array: the same body");

    /* Two candidates, interleaved, the second's chunks lacking index. */
    static const char two[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"A\"}],\"role\":\"model\"},"
        "\"index\":0},{\"content\":{\"parts\":[{\"text\":\"B\"}],\"role\":\"model\"},\"index\":1}]}"
        "\n\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}],\"role\":\"model\"},"
        "\"index\":1,\"finishReason\":\"STOP\"}]}\n\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}],\"role\":\"model\"},"
        "\"index\":0,\"finishReason\":\"STOP\"}],\"responseId\":\"x\"}\n\n";
    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_SSE, two, sizeof two - 1, &out), RL_OK, "two candidates");
    is_str(str(&out),
           "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Aa\"}],\"role\":\"model\"},"
           "\"index\":0,\"finishReason\":\"STOP\"},{\"content\":{\"parts\":[{\"text\":\"Bb\"}],"
           "\"role\":\"model\"},\"index\":1,\"finishReason\":\"STOP\"}],\"responseId\":\"x\"}",
           "candidates merged by index");

    /* A signature on an empty last text part joins the text before it. */
    static const char sig[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}\r\n\r\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\",\"thoughtSignature\":"
        "\"czI=\"}]},\"finishReason\":\"STOP\"}]}\r\n\r\n";
    rl_buf_reset(&out);
    P->stream_to_body(FRAME_SSE, sig, sizeof sig - 1, &out);
    is_str(str(&out),
           "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\",\"thoughtSignature\":"
           "\"czI=\"}]},\"finishReason\":\"STOP\"}]}",
           "a trailing thoughtSignature joins the text part");

    static const char blocked[] =
        "data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":{"
        "\"promptTokenCount\":5,\"totalTokenCount\":5},\"modelVersion\":\"m\"}\r\n\r\n";
    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_SSE, blocked, sizeof blocked - 1, &out), RL_OK,
           "a blocked prompt assembles");
    is_str(str(&out),
           "{\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":{"
           "\"promptTokenCount\":5,\"totalTokenCount\":5},\"modelVersion\":\"m\"}",
           "... without candidates, as Google answers it");
    ok(P->body_complete(out.data, out.len), "a blocked prompt is a complete answer");

    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_SSE, "", 0, &out), RL_UPSTREAM_PROTOCOL, "an empty stream");
    is_int(P->stream_to_body(FRAME_SSE, "data: nope\r\n\r\n", 14, &out), RL_UPSTREAM_PROTOCOL,
           "an event that is not JSON");
    is_int(P->stream_to_body(FRAME_JSON_ARRAY, "[1]", 3, &out), RL_UPSTREAM_PROTOCOL,
           "an element that is not an object");
    is_int(P->stream_to_body(FRAME_JSON_ARRAY, "{}", 2, &out), RL_UPSTREAM_PROTOCOL,
           "not an array");
    rl_buf_release(&out);
}

static void test_render(void)
{
    rl_buf s, back;
    rl_buf_init(&s, 0);
    rl_buf_init(&back, 0);
    prov_info info;
    memset(&info, 0, sizeof info);
    info.stream = 1;

    info.framing = FRAME_SSE;
    is_int(P->body_to_stream(merged, sizeof merged - 1, &info, &s), RL_OK, "body renders as SSE");
    ok(s.len > 10 && strncmp(s.data, "data: {", 7) == 0 &&
           strcmp(s.data + s.len - 4, "\r\n\r\n") == 0 && !strstr(s.data + 6, "\n\n") &&
           !memchr(s.data, '\n', s.len - 4),
       "one data line ending in CRLF CRLF, as @google/genai splits events");
    kinds k = classify_all(FRAME_SSE, s.data, s.len);
    ok(k.n == 1 && k.end == 1, "the rendered event is the end");
    is_int(P->stream_to_body(FRAME_SSE, s.data, s.len, &back), RL_OK, "it assembles");
    is_str(str(&back), merged, "round trip through SSE is lossless");

    rl_buf_reset(&s);
    rl_buf_reset(&back);
    info.framing = FRAME_JSON_ARRAY;
    is_int(P->body_to_stream(merged, sizeof merged - 1, &info, &s), RL_OK,
           "body renders as a JSON array");
    ok(s.len > 4 && strncmp(s.data, "[{\n", 3) == 0 && strcmp(s.data + s.len - 3, "}\n]") == 0,
       "\"[\" element \"\\n]\", pretty-printed like Google's");
    k = classify_all(FRAME_JSON_ARRAY, s.data, s.len);
    ok(k.n == 1 && k.end == 1, "one element, the end");
    is_int(P->stream_to_body(FRAME_JSON_ARRAY, s.data, s.len, &back), RL_OK, "it assembles");
    is_str(str(&back), merged, "round trip through a JSON array is lossless");

    rl_buf_reset(&s);
    is_int(P->body_to_stream("[]", 2, &info, &s), RL_UPSTREAM_PROTOCOL, "a body not an object");
    rl_buf_release(&s);
    rl_buf_release(&back);
}

static void test_usage(void)
{
    prov_usage u;
    is_int(P->usage(ENTRY_STREAM, FRAME_SSE, sse, sizeof sse - 1, &u), RL_OK, "usage of SSE");
    ok(u.input == 12 && u.output == 9 + 19 && u.cached_input == 4,
       "SSE usage: prompt, candidates + thoughts, cached");
    is_int(P->usage(ENTRY_STREAM, FRAME_JSON_ARRAY, array, sizeof array - 1, &u), RL_OK,
           "usage of a JSON array");
    ok(u.input == 12 && u.output == 28 && u.cached_input == 4, "the same figures");
    P->usage(ENTRY_BODY, FRAME_SSE, merged, sizeof merged - 1, &u);
    ok(u.input == 12 && u.output == 28 && u.cached_input == 4, "usage of a body");

    const char *plain = "{\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":7,"
                        "\"candidatesTokenCount\":3,\"totalTokenCount\":10}}";
    P->usage(ENTRY_BODY, FRAME_SSE, plain, strlen(plain), &u);
    ok(u.input == 7 && u.output == 3 && u.cached_input == 0,
       "no thoughts, no cache: counts left out are zero");
    const char *count = "{\"totalTokens\":31,\"promptTokensDetails\":[{\"modality\":\"TEXT\","
                        "\"tokenCount\":31}]}";
    P->usage(ENTRY_BODY, FRAME_SSE, count, strlen(count), &u);
    ok(u.input == 31 && u.output == -1 && u.cached_input == -1, "countTokens: input only");
    const char *embed = "{\"embedding\":{\"values\":[0.1,-0.2]}}";
    P->usage(ENTRY_BODY, FRAME_SSE, embed, strlen(embed), &u);
    ok(u.input == -1 && u.output == -1 && u.cached_input == -1, "embedContent: no usage");
    P->usage(ENTRY_BODY, FRAME_SSE, "{", 1, &u);
    ok(u.input == -1 && u.output == -1, "junk: no usage");

    ok(P->body_complete(count, strlen(count)), "a countTokens answer is complete");
    ok(P->body_complete(embed, strlen(embed)), "an embedContent answer is complete");
    ok(!P->body_complete("{\"error\":{\"code\":400}}", 22), "an error is not");
    ok(!P->body_complete("{\"candidates\":[", 15), "a truncated body is not");
    ok(!P->body_complete("{\"usageMetadata\":{}}", 20), "a body without an answer is not");
}

static void test_errors(void)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    P->error_body(&out, RL_BAD_JSON, "Invalid JSON payload received.");
    is_str(str(&out),
           "{\"error\":{\"code\":400,\"message\":\"Invalid JSON payload received.\",\"status\":"
           "\"INVALID_ARGUMENT\"}}",
           "error body in Google's shape");
    static const struct {
        rl_err err;
        const char *status;
    } map[] = {
        {RL_UNAUTHORIZED, "\"code\":401,"},
        {RL_UNAUTHORIZED, "\"UNAUTHENTICATED\""},
        {RL_FORBIDDEN, "\"PERMISSION_DENIED\""},
        {RL_NO_ROUTE, "\"NOT_FOUND\""},
        {RL_TOO_LARGE, "\"INVALID_ARGUMENT\""},
        {RL_INTERNAL, "\"INTERNAL\""},
        {RL_UPSTREAM_UNREACHABLE, "\"UNAVAILABLE\""},
        {RL_OVERLOADED, "\"UNAVAILABLE\""},
        {RL_UPSTREAM_TIMEOUT, "\"DEADLINE_EXCEEDED\""},
        {RL_ONLY_IF_CACHED, "\"code\":504,"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        rl_buf_reset(&out);
        P->error_body(&out, map[i].err, NULL);
        char what[96];
        snprintf(what, sizeof what, "%s has %s", rl_err_code(map[i].err), map[i].status);
        if (!ok(strstr(str(&out), map[i].status) != NULL, what))
            printf("#   got: %s\n", str(&out));
    }
    rl_buf_reset(&out);
    P->error_body(&out, RL_UPSTREAM_TIMEOUT, NULL);
    ok(strstr(str(&out), rl_err_text(RL_UPSTREAM_TIMEOUT)) != NULL,
       "no message: the error's own text");

    rl_buf_reset(&out);
    P->error_event(&out, FRAME_SSE, 1, RL_UPSTREAM_CUT, "cut");
    is_str(
        str(&out),
        "data: {\"error\":{\"code\":502,\"message\":\"cut\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n",
        "SSE error event");
    kinds k = classify_all(FRAME_SSE, out.data, out.len);
    ok(k.n == 1 && k.error == 1, "it classifies as an error");

    /* A JSON array stream cut after two elements, then the error ending. */
    rl_buf_reset(&out);
    rl_buf_puts(&out, "[" C1 "\n,\r\n" C2);
    P->error_event(&out, FRAME_JSON_ARRAY, 1, RL_UPSTREAM_CUT, NULL);
    ok(strncmp(out.data + out.len - 2, "\n]", 2) == 0, "JSON array error ends the array");
    k = classify_all(FRAME_JSON_ARRAY, out.data, out.len);
    ok(k.n == 3 && k.data == 2 && k.error == 1, "the array parses: two chunks and an error");

    /* Cut before the first element: the error is the whole array. */
    rl_buf_reset(&out);
    P->error_event(&out, FRAME_JSON_ARRAY, 0, RL_UPSTREAM_CUT, NULL);
    ok(out.data[0] == '[' && strncmp(out.data + out.len - 2, "\n]", 2) == 0,
       "an unopened JSON array stream: [ error ]");
    json_t *whole = json_loadb(out.data, out.len, 0, NULL);
    ok(json_is_array(whole) && json_array_size(whole) == 1 &&
           json_is_object(json_object_get(json_array_get(whole, 0), "error")),
       "... which is valid JSON");
    json_decref(whole);
    rl_buf_release(&out);
}

int main(void)
{
    test_credential();
    test_inspect();
    test_classify();
    test_assembly();
    test_render();
    test_usage();
    test_errors();
    return tap_done();
}
