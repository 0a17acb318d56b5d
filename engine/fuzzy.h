/*
 * fuzzy.h — safe fuzzy matching of requests: may a cached answer to one
 * request answer another that differs only by a few prose words?
 *
 * A pure module: no store, no clock, no globals beyond constant tables; every
 * function is safe to call from any thread at once. The store's candidate
 * index and the engine's use of a match live elsewhere (store/, engine.c);
 * this module only splits a request, computes its MinHash bands, decides
 * whether two requests may share an answer, and (de)serialises a split
 * request for the store.
 *
 * What may differ: only prose, i.e. the message texts of each wire format
 *   openai    chat.completions: messages[].content string or content[] parts
 *             of type "text"; responses: "instructions", "input" string or
 *             input[].content string / parts of type input_text/output_text;
 *             completions: "prompt" string
 *   anthropic messages: "system" string or blocks of type "text";
 *             messages[].content string or blocks of type "text"
 *   gemini    generateContent: contents[].parts[].text and
 *             systemInstruction (system_instruction) parts[].text
 *   ollama    chat: messages[].content; generate: "prompt", "system"
 * of messages whose role is not a tool's. Everything else — model,
 * parameters, tools and their schemas, tool calls and their arguments, tool
 * results, names, ids, images, roles, the number of messages and parts — is
 * in the shape and must be byte-equal. Other endpoints (embeddings, token
 * counts, models) have no prose: fuzzy_split answers RL_NOTFOUND.
 *
 * Safety rules (fuzzy_match): two texts are compared word by word (tokens
 * are runs of letters/digits/marks, with internal apostrophes kept, or one
 * punctuation character; whitespace separates and never counts, so a
 * trailing space or doubled spaces are zero changes). An edit (a run of
 * inserted/deleted/replaced tokens) is refused when any token in it, on
 * either side, is
 *   - a number: any digit in any script (3, 3.0, 1e5, 0x1F, ³, ٣) or a
 *     number word (zero … twenty, thirty … ninety, hundred, thousand,
 *     million, billion, trillion, dozen, half, twice, once, first … tenth,
 *     single, double, triple, both, all, none);
 *   - inside a fenced code block (``` or ~~~) or inline `code`;
 *   - part of a URL (scheme://, www.) or a file path (contains / or \ next
 *     to a name, ~/…, ./…, or a word.ext ending);
 *   - part of an identifier: camelCase, snake_case, kebab-case with letters
 *     on both sides, dotted.names, ALLCAPS (2+ capitals), or containing
 *     digits and letters together;
 *   - a negation: not, no, never, nor, neither, none, nothing, nobody,
 *     nowhere, without, except, cannot, and every "n't" form (don't, won't,
 *     can't …, with ' or ’);
 *   - punctuation that joins words into one of the above (. / \ : _ - @ #
 *     and the backtick), or the quote/bracket that ends a code span.
 * Case changes count as a changed word. Edits are checked on the token
 * runs that differ, so a change next to a protected token (e.g. "3 apples"
 * → "3 pears") is allowed only when the protected token itself is equal.
 *
 * Cost: the diff is a banded edit distance on tokens: two texts whose token
 * counts differ by more than max_words are refused at once; otherwise only
 * the diagonals within max_words of the main one are explored, O(n·k) time
 * and O(n·k) bytes for n tokens and k = max_words (a 100k-word prompt with
 * k = 3: ~700k cells). Tokenising is O(bytes).
 */
#ifndef RELAY_ENGINE_FUZZY_H
#define RELAY_ENGINE_FUZZY_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

/* A request split for fuzzy comparison: its "shape" (the canonical body with
 * every prose string replaced by a placeholder, hashed with the format,
 * endpoint, upstream, scope, namespace and path_parts exactly as the cache
 * key is) and its prose texts in document order. Two requests may only ever
 * match when their shapes are equal: model, parameters, tools, tool calls
 * and their arguments, roles and the number of messages are all in the
 * shape. */
#define FUZZY_SHAPE_LEN 32
#define FUZZY_BANDS 16 /* MinHash bands per request */

/*
 * FUZZY_ROWS minima per band (FUZZY_BANDS × FUZZY_ROWS = 48 hash functions).
 * A band is equal for two requests with probability J^R (J the Jaccard
 * similarity of their shingle sets), so at least one of B bands is with
 * 1 - (1 - J^R)^B. Shingles are word 3-shingles (texts under 3 words give
 * 1-shingles), so a one-word edit changes up to 3 of the m = n - 2 shingles
 * of an n-word text: J >= (m - 3) / (m + 3).
 *   n = 16:  J = 0.647;  R = 2: 0.9998   R = 3: 0.9937   R = 4: 0.954
 *   n = 500: J = 0.988;  any R <= 4: 1 - 1e-20 or better
 * At the default threshold (similarity >= 0.97, so at most 3 % of tokens
 * changed) J >= 0.835 and R = 3 keeps a band with p > 1 - 1e-6.
 * The trade-off is false candidates: unrelated prompts that share a
 * template (J = 0.3) collide in a band with p = 0.35 at R = 3 (0.78 at
 * R = 2, 0.12 at R = 4). A false candidate costs one record read and a
 * refused fuzzy_match, never a wrong answer; R = 3 is the largest R that
 * keeps a one-word edit in a 16-word prompt above 0.99.
 */
#define FUZZY_ROWS 3

typedef struct fuzzy_doc {
    uint8_t shape[FUZZY_SHAPE_LEN];
    size_t ntexts;
    char **texts; /* NUL-terminated UTF-8, owned by the doc */
    size_t *lens;
} fuzzy_doc;

/* Splits a canonical body (prov.h inspect's output) of wire format `format`
 * ("openai", "anthropic", "gemini", "ollama") and endpoint; key_salt is the
 * same bytes ckey_compute hashes except the body (format, endpoint,
 * upstream, path_parts, scope, ns), passed as one buffer (borrowed). On
 * RL_OK *out is filled and must be released with fuzzy_doc_release.
 * RL_NOTFOUND when the request has no prose to compare (an endpoint without
 * prose, or every text empty: then fuzzy does not apply); RL_BAD_JSON when
 * the body is not JSON; RL_NOMEM. On any error *out is empty (releasing it
 * is harmless). */
rl_err fuzzy_split(const char *format, const char *endpoint, const char *canonical, size_t len,
                   const void *key_salt, size_t salt_len, fuzzy_doc *out);

/* Frees the texts; the doc is empty afterwards. NULL-safe. */
void fuzzy_doc_release(fuzzy_doc *d);

/* MinHash over word shingles of all texts, FUZZY_BANDS band hashes, each
 * also mixed with the shape: requests of different shapes never share a
 * band. Shingles are taken per text (tagged with the text's index) over
 * ASCII-lower-cased tokens, so a case change alone keeps every band.
 * Hashing: FNV-1a 64 over each token's bytes, combined and then finalised
 * with splitmix64 (Steele, Lea, Flood 2014), one seeded mix per hash
 * function; deterministic across processes and builds (the bands are keys in
 * the store). */
void fuzzy_bands(const fuzzy_doc *d, uint64_t bands[FUZZY_BANDS]);

typedef struct fuzzy_params {
    int max_words;         /* per text, default 3 */
    double min_similarity; /* overall, default 0.97 */
} fuzzy_params;

#define FUZZY_DEFAULT_MAX_WORDS 3
#define FUZZY_DEFAULT_MIN_SIMILARITY 0.97

/* 1 when `cand` may answer `req`: equal shapes and text counts, every text
 * differing by at most max_words words, no difference touching a protected
 * token (numbers, code blocks or inline code, URLs, file paths, identifiers
 * (camelCase, snake_case, dotted.names), negation words), overall
 * similarity >= min_similarity; *similarity receives it (0..1; 0 when the
 * texts were not compared). Similarity is 1 - changed / max(tokens_a,
 * tokens_b), with both sums taken over all texts and `changed` the edit
 * distance in tokens. *why (may be NULL) says why not, for the debug log (a
 * static string). p NULL means the defaults. Never allocates more than
 * O(n·max_words) bytes; returns 0 (why "out of memory") if that fails. */
int fuzzy_match(const fuzzy_doc *req, const fuzzy_doc *cand, const fuzzy_params *p,
                double *similarity, const char **why);

/* A doc as bytes for the store (the texts and the shape), and back.
 * Format (version 1): "FZ" 0x01, the shape, a 4-byte big-endian text
 * count, then each text as a 4-byte big-endian length and its bytes
 * (without NUL). fuzzy_encode appends to out (RL_TOO_LARGE past its cap,
 * RL_NOMEM). fuzzy_decode checks every length against the input and
 * refuses (RL_BAD_ENTRY, *out empty) a wrong version, a truncated or
 * overlong record, trailing bytes, a NUL inside a text or more texts than
 * bytes; RL_NOMEM. */
rl_err fuzzy_encode(const fuzzy_doc *d, rl_buf *out);
rl_err fuzzy_decode(const void *data, size_t len, fuzzy_doc *out);

#endif
