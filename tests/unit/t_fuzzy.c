/*
 * t_fuzzy.c — the fuzzy matcher (engine/fuzzy.h): which request pairs may
 * share an answer and which never may (a table, every wire format), the
 * MinHash bands (a one-word edit keeps a band, unrelated prompts share
 * none: the false-collision rate is measured), and the store record (round
 * trip, every corrupt form refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fuzzy.h"
#include "tests/unit/tap.h"

#define SALT "openai|chat.completions|main||cred:abc|"

/* Bodies with one prose text, "%s" the text (already JSON-escaped). */
typedef struct wire {
    const char *format, *endpoint, *body;
} wire;

static const wire OPENAI = {"openai", "chat.completions",
                            "{\"messages\":[{\"content\":\"You are terse.\",\"role\":\"system\"},"
                            "{\"content\":\"%s\",\"role\":\"user\"}],\"model\":\"gpt-4o\"}"};
static const wire OPENAI_PARTS = {
    "openai", "chat.completions",
    "{\"messages\":[{\"content\":[{\"text\":\"%s\",\"type\":\"text\"}],\"role\":\"user\"}],"
    "\"model\":\"gpt-4o\",\"temperature\":0}"};
static const wire RESPONSES = {
    "openai", "responses", "{\"input\":\"%s\",\"instructions\":\"Be brief.\",\"model\":\"o3\"}"};
static const wire ANTHROPIC = {
    "anthropic", "messages",
    "{\"max_tokens\":256,\"messages\":[{\"content\":[{\"text\":\"%s\",\"type\":\"text\"}],"
    "\"role\":\"user\"}],\"model\":\"claude-sonnet-4\",\"system\":\"You are terse.\"}"};
static const wire GEMINI = {"gemini", "generateContent",
                            "{\"contents\":[{\"parts\":[{\"text\":\"%s\"}],\"role\":\"user\"}]}"};
static const wire OLLAMA = {
    "ollama", "chat",
    "{\"messages\":[{\"content\":\"%s\",\"role\":\"user\"}],\"model\":\"llama3\"}"};

/* ~60 words of prose: one changed word keeps similarity at 0.98. */
#define LONG                                                                                       \
    "Please write a short and friendly summary of the article below about the history of the "     \
    "printing press in Europe, and explain why it mattered so much to ordinary people who lived "  \
    "in small towns and villages during that period. Keep the tone warm and simple, avoid "        \
    "jargon, and finish with a question that invites the reader to think about books today."
#define LONG_HEAD                                                                                  \
    "Please write a short and friendly summary of the article below about the history of the "     \
    "printing press in Europe, and explain why it mattered so much to ordinary people who lived "  \
    "in small towns and villages during that period. "
#define LONG_TAIL " and finish with a question that invites the reader to think about books today."

/* A pair of texts in one wire format: match (1) or not (0). */
typedef struct text_case {
    const char *what;
    const wire *w;
    const char *a, *b;
    int match;
} text_case;

static const text_case text_cases[] = {
    /* accepted: prose edits */
    {"one-word prose edit in a long prompt", &OPENAI, LONG,
     LONG_HEAD "Keep the tone warm and plain, avoid jargon," LONG_TAIL, 1},
    {"identical", &OPENAI, LONG, LONG, 1},
    {"a trailing space", &OPENAI, LONG, LONG " ", 1},
    {"doubled spaces and a newline", &OPENAI, LONG,
     LONG_HEAD "Keep the  tone warm\\nand simple, avoid jargon," LONG_TAIL, 1},
    {"a typo fix", &ANTHROPIC, LONG,
     LONG_HEAD "Keep teh tone warm and simple, avoid jargon," LONG_TAIL, 1},
    {"a synonym in a long prompt", &GEMINI, LONG,
     LONG_HEAD "Keep the tone kind and simple, avoid jargon," LONG_TAIL, 1},
    {"a word deleted", &OLLAMA, LONG,
     LONG_HEAD "Keep the tone warm and simple, avoid jargon," LONG_TAIL, 1},
    {"a word inserted", &RESPONSES, LONG,
     LONG_HEAD "Keep the tone very warm and simple, avoid jargon," LONG_TAIL, 1},
    {"two prose edits", &OPENAI_PARTS, LONG,
     LONG_HEAD "Keep the voice warm and easy, avoid jargon," LONG_TAIL, 1},
    {"a curly apostrophe word edited", &OPENAI, LONG,
     LONG_HEAD "Keep the tone warm and simple, avoid everyone\xe2\x80\x99s jargon," LONG_TAIL, 1},
    {"a word next to a number edited (the number equal)", &OPENAI,
     LONG_HEAD "Give me 3 short apples and keep the tone warm and simple, avoid jargon," LONG_TAIL,
     LONG_HEAD "Give me 3 short pears and keep the tone warm and simple, avoid jargon," LONG_TAIL,
     1},
    {"a word changed outside equal inline code", &ANTHROPIC,
     LONG_HEAD "Use `map()` and keep the tone warm and simple, avoid jargon," LONG_TAIL,
     LONG_HEAD "Use `map()` and keep the tone kind and simple, avoid jargon," LONG_TAIL, 1},
    /* refused: protected tokens */
    {"a changed number", &OPENAI, LONG_HEAD "Use 3 short paragraphs, avoid jargon," LONG_TAIL,
     LONG_HEAD "Use 4 short paragraphs, avoid jargon," LONG_TAIL, 0},
    {"a changed decimal", &ANTHROPIC, LONG_HEAD "Set it to 3.0 exactly, avoid jargon," LONG_TAIL,
     LONG_HEAD "Set it to 3.5 exactly, avoid jargon," LONG_TAIL, 0},
    {"a changed hex number", &GEMINI, LONG_HEAD "Set it to 0x1F exactly, avoid jargon," LONG_TAIL,
     LONG_HEAD "Set it to 0x2F exactly, avoid jargon," LONG_TAIL, 0},
    {"a changed exponent", &OLLAMA, LONG_HEAD "Set it to 1e5 exactly, avoid jargon," LONG_TAIL,
     LONG_HEAD "Set it to 1e6 exactly, avoid jargon," LONG_TAIL, 0},
    {"a changed number word", &OPENAI, LONG_HEAD "Use three short paragraphs," LONG_TAIL,
     LONG_HEAD "Use four short paragraphs," LONG_TAIL, 0},
    {"an Arabic-Indic digit", &OPENAI, LONG_HEAD "Use \xd9\xa3 short paragraphs," LONG_TAIL,
     LONG_HEAD "Use \xd9\xa4 short paragraphs," LONG_TAIL, 0},
    {"a number inserted", &RESPONSES, LONG_HEAD "Use short paragraphs," LONG_TAIL,
     LONG_HEAD "Use 2 short paragraphs," LONG_TAIL, 0},
    {"an inline-code token", &OPENAI, LONG_HEAD "Call `fetch` and then stop," LONG_TAIL,
     LONG_HEAD "Call `fetchAll` and then stop," LONG_TAIL, 0},
    {"a space inside inline code", &ANTHROPIC, LONG_HEAD "Call `a b` and then stop," LONG_TAIL,
     LONG_HEAD "Call `a  b` and then stop," LONG_TAIL, 0},
    {"a code block line", &OPENAI,
     LONG_HEAD "Fix this:\\n```python\\nfor x in items:\\n    print(x)\\n```\\nThanks" LONG_TAIL,
     LONG_HEAD "Fix this:\\n```python\\nfor x in items:\\n    print(y)\\n```\\nThanks" LONG_TAIL,
     0},
    {"code block indentation", &GEMINI,
     LONG_HEAD "Fix this:\\n```\\nif a:\\n    go\\n    stop\\n```\\nThanks" LONG_TAIL,
     LONG_HEAD "Fix this:\\n```\\nif a:\\n    go\\nstop\\n```\\nThanks" LONG_TAIL, 0},
    {"a prose-looking word in a code block", &OLLAMA,
     LONG_HEAD "Fix this:\\n~~~\\nreturn the value\\n~~~\\nThanks" LONG_TAIL,
     LONG_HEAD "Fix this:\\n~~~\\nreturn a value\\n~~~\\nThanks" LONG_TAIL, 0},
    {"a URL", &OPENAI, LONG_HEAD "Read https://example.com/a first," LONG_TAIL,
     LONG_HEAD "Read https://example.com/b first," LONG_TAIL, 0},
    {"a www address", &ANTHROPIC, LONG_HEAD "Read www.example.com first," LONG_TAIL,
     LONG_HEAD "Read www.example.org first," LONG_TAIL, 0},
    {"a unix path", &OPENAI, LONG_HEAD "Open /etc/hosts first," LONG_TAIL,
     LONG_HEAD "Open /etc/passwd first," LONG_TAIL, 0},
    {"a windows path", &GEMINI, LONG_HEAD "Open C:\\\\Users\\\\ann first," LONG_TAIL,
     LONG_HEAD "Open C:\\\\Users\\\\bob first," LONG_TAIL, 0},
    {"a relative path", &OLLAMA, LONG_HEAD "Open src/main first," LONG_TAIL,
     LONG_HEAD "Open src/util first," LONG_TAIL, 0},
    {"a file name", &RESPONSES, LONG_HEAD "Open notes.txt first," LONG_TAIL,
     LONG_HEAD "Open notes.md first," LONG_TAIL, 0},
    {"a camelCase identifier", &OPENAI, LONG_HEAD "Rename getUser now," LONG_TAIL,
     LONG_HEAD "Rename getUsers now," LONG_TAIL, 0},
    {"a snake_case identifier", &ANTHROPIC, LONG_HEAD "Rename user_id now," LONG_TAIL,
     LONG_HEAD "Rename user_name now," LONG_TAIL, 0},
    {"a dotted name", &GEMINI, LONG_HEAD "Call os.path now," LONG_TAIL,
     LONG_HEAD "Call os.walk now," LONG_TAIL, 0},
    {"a kebab-case name", &OLLAMA, LONG_HEAD "Set max-tokens now," LONG_TAIL,
     LONG_HEAD "Set max-retries now," LONG_TAIL, 0},
    {"an ALL_CAPS constant", &OPENAI, LONG_HEAD "Set MAX_SIZE now," LONG_TAIL,
     LONG_HEAD "Set MIN_SIZE now," LONG_TAIL, 0},
    {"an acronym", &OPENAI_PARTS, LONG_HEAD "Use the REST style," LONG_TAIL,
     LONG_HEAD "Use the RPC style," LONG_TAIL, 0},
    {"not inserted", &OPENAI, LONG_HEAD "Do use tables," LONG_TAIL,
     LONG_HEAD "Do not use tables," LONG_TAIL, 0},
    {"no vs a", &ANTHROPIC, LONG_HEAD "Use a table," LONG_TAIL, LONG_HEAD "Use no table," LONG_TAIL,
     0},
    {"never vs always", &GEMINI, LONG_HEAD "Always use tables," LONG_TAIL,
     LONG_HEAD "Never use tables," LONG_TAIL, 0},
    {"don't vs do", &OLLAMA, LONG_HEAD "Do use tables," LONG_TAIL,
     LONG_HEAD "Don't use tables," LONG_TAIL, 0},
    {"doesn\xe2\x80\x99t (curly) vs does", &OPENAI, LONG_HEAD "It does matter," LONG_TAIL,
     LONG_HEAD "It doesn\xe2\x80\x99t matter," LONG_TAIL, 0},
    {"isn't vs is", &RESPONSES, LONG_HEAD "It is true," LONG_TAIL,
     LONG_HEAD "It isn't true," LONG_TAIL, 0},
    {"won't vs will", &OPENAI, LONG_HEAD "It will work," LONG_TAIL,
     LONG_HEAD "It won't work," LONG_TAIL, 0},
    {"cannot vs can", &ANTHROPIC, LONG_HEAD "You can skip it," LONG_TAIL,
     LONG_HEAD "You cannot skip it," LONG_TAIL, 0},
    {"without vs with", &GEMINI, LONG_HEAD "Answer with examples," LONG_TAIL,
     LONG_HEAD "Answer without examples," LONG_TAIL, 0},
    {"except inserted", &OLLAMA, LONG_HEAD "List all fruits but apples," LONG_TAIL,
     LONG_HEAD "List all fruits except apples," LONG_TAIL, 0},
    {"nor / neither", &OPENAI, LONG_HEAD "Either red or blue," LONG_TAIL,
     LONG_HEAD "Neither red nor blue," LONG_TAIL, 0},
    {"nothing vs something", &OPENAI, LONG_HEAD "Add something here," LONG_TAIL,
     LONG_HEAD "Add nothing here," LONG_TAIL, 0},
    {"German nicht", &ANTHROPIC, LONG_HEAD "Das ist gut," LONG_TAIL,
     LONG_HEAD "Das ist nicht gut," LONG_TAIL, 0},
    {"Chinese 不", &GEMINI, LONG_HEAD "\xe5\xa5\xbd" LONG_TAIL,
     LONG_HEAD "\xe4\xb8\x8d\xe5\xa5\xbd" LONG_TAIL, 0},
    {"more than max_words changes", &OPENAI, LONG,
     LONG_HEAD "Make the voice kind and easy, skip slang," LONG_TAIL, 0},
    {"similarity below P (one word in 16)", &OPENAI,
     "Please write a short and friendly summary of the article below about printing presses.",
     "Please write a short and kind summary of the article below about printing presses.", 0},
    {"a case change counts (short prompt)", &OPENAI,
     "Please write a short and friendly summary of the article below about printing presses.",
     "Please write a Short and friendly summary of the article below about printing presses.", 0},
};

/* Pairs of whole bodies (the shape differs, or a non-prose field). */
typedef struct body_case {
    const char *what, *format, *endpoint, *a, *b;
    int match;
} body_case;

#define OAI_MSG(text) "{\"content\":\"" text "\",\"role\":\"user\"}"
#define OAI(extra, msgs) "{" extra "\"messages\":[" msgs "],\"model\":\"gpt-4o\"}"

static const body_case body_cases[] = {
    {"a different model", "openai", "chat.completions", OAI("", OAI_MSG(LONG)),
     "{\"messages\":[" OAI_MSG(LONG) "],\"model\":\"gpt-4o-mini\"}", 0},
    {"a different temperature", "openai", "chat.completions",
     OAI("\"temperature\":0,", OAI_MSG(LONG)), OAI("\"temperature\":1,", OAI_MSG(LONG)), 0},
    {"a different tool list", "openai", "chat.completions", OAI("", OAI_MSG(LONG)),
     "{\"messages\":[" OAI_MSG(LONG) "],\"model\":\"gpt-4o\",\"tools\":[{\"function\":{\"name\":"
                                     "\"f\"},\"type\":\"function\"}]}",
     0},
    {"a different role", "openai", "chat.completions", OAI("", OAI_MSG(LONG)),
     OAI("", "{\"content\":\"" LONG "\",\"role\":\"system\"}"), 0},
    {"one message more", "openai", "chat.completions", OAI("", OAI_MSG(LONG)),
     OAI("", OAI_MSG(LONG) "," OAI_MSG("thanks")), 0},
    {"a changed tool argument", "openai", "chat.completions",
     OAI("", OAI_MSG(LONG) ",{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"arguments\":"
                           "\"{\\\"city\\\":\\\"Paris\\\"}\",\"name\":\"w\"},\"id\":\"c1\","
                           "\"type\":\"function\"}]}"),
     OAI("", OAI_MSG(LONG) ",{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"arguments\":"
                           "\"{\\\"city\\\":\\\"Rome\\\"}\",\"name\":\"w\"},\"id\":\"c1\",\"type\":"
                           "\"function\"}]}"),
     0},
    {"a changed tool result (not prose)", "openai", "chat.completions",
     OAI("",
         OAI_MSG(
             LONG) ",{\"content\":\"sunny and warm\",\"role\":\"tool\",\"tool_call_id\":\"c1\"}"),
     OAI("",
         OAI_MSG(
             LONG) ",{\"content\":\"sunny and cold\",\"role\":\"tool\",\"tool_call_id\":\"c1\"}"),
     0},
    {"an anthropic tool_use input", "anthropic", "messages",
     "{\"messages\":[{\"content\":[{\"id\":\"t\",\"input\":{\"q\":\"cats\"},\"name\":\"s\","
     "\"type\":"
     "\"tool_use\"}],\"role\":\"assistant\"},{\"content\":\"" LONG "\",\"role\":\"user\"}],"
     "\"model\":\"m\"}",
     "{\"messages\":[{\"content\":[{\"id\":\"t\",\"input\":{\"q\":\"dogs\"},\"name\":\"s\","
     "\"type\":"
     "\"tool_use\"}],\"role\":\"assistant\"},{\"content\":\"" LONG "\",\"role\":\"user\"}],"
     "\"model\":\"m\"}",
     0},
    {"an anthropic system prompt edit", "anthropic", "messages",
     "{\"messages\":[{\"content\":\"Hi\",\"role\":\"user\"}],\"model\":\"m\",\"system\":[{\"text\":"
     "\"" LONG "\",\"type\":\"text\"}]}",
     "{\"messages\":[{\"content\":\"Hi\",\"role\":\"user\"}],\"model\":\"m\",\"system\":[{\"text\":"
     "\"" LONG_HEAD "Keep the tone kind and simple, avoid jargon," LONG_TAIL
     "\",\"type\":\"text\"}]}",
     1},
    {"a gemini functionCall argument", "gemini", "generateContent",
     "{\"contents\":[{\"parts\":[{\"text\":\"" LONG "\"}],\"role\":\"user\"},{\"parts\":[{"
     "\"functionCall\":{\"args\":{\"n\":\"a\"},\"name\":\"f\"}}],\"role\":\"model\"}]}",
     "{\"contents\":[{\"parts\":[{\"text\":\"" LONG "\"}],\"role\":\"user\"},{\"parts\":[{"
     "\"functionCall\":{\"args\":{\"n\":\"b\"},\"name\":\"f\"}}],\"role\":\"model\"}]}",
     0},
    {"a gemini systemInstruction edit", "gemini", "generateContent",
     "{\"contents\":[{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"user\"}],\"systemInstruction\":{"
     "\"parts\":[{\"text\":\"" LONG "\"}]}}",
     "{\"contents\":[{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"user\"}],\"systemInstruction\":{"
     "\"parts\":[{\"text\":\"" LONG_HEAD "Keep the tone warm and plain, avoid jargon," LONG_TAIL
     "\"}]}}",
     1},
    {"ollama generate prompt edit", "ollama", "generate",
     "{\"model\":\"llama3\",\"prompt\":\"" LONG "\"}",
     "{\"model\":\"llama3\",\"prompt\":\"" LONG_HEAD
     "Keep the tone warm and plain, avoid jargon," LONG_TAIL "\"}",
     1},
    {"ollama options differ", "ollama", "chat",
     "{\"messages\":[" OAI_MSG(LONG) "],\"model\":\"llama3\",\"options\":{\"seed\":1}}",
     "{\"messages\":[" OAI_MSG(LONG) "],\"model\":\"llama3\",\"options\":{\"seed\":2}}", 0},
};

static int split(const char *format, const char *endpoint, const char *body, const char *salt,
                 fuzzy_doc *d)
{
    return fuzzy_split(format, endpoint, body, strlen(body), salt, strlen(salt), d);
}

static void check_pair(const char *what, const char *format, const char *endpoint, const char *a,
                       const char *b, int want)
{
    fuzzy_doc da, db;
    rl_err ea = split(format, endpoint, a, SALT, &da), eb = split(format, endpoint, b, SALT, &db);
    char name[256];
    snprintf(name, sizeof name, "%s %s: split", format, what);
    if (!ok(ea == RL_OK && eb == RL_OK, name)) {
        printf("#   errors %s %s\n", rl_err_code(ea), rl_err_code(eb));
        return;
    }
    double sim = -1;
    const char *why = NULL;
    int got = fuzzy_match(&da, &db, NULL, &sim, &why);
    snprintf(name, sizeof name, "%s %s: %s", format, what, want ? "matches" : "refused");
    if (!ok(got == want, name))
        printf("#   why: %s, similarity %.4f\n", why, sim);
    else
        printf("#   %s (%.4f)\n", why, sim);
    /* The relation is symmetric. */
    int back = fuzzy_match(&db, &da, NULL, NULL, NULL);
    snprintf(name, sizeof name, "%s %s: symmetric", format, what);
    is_int(back, got, name);
    fuzzy_doc_release(&da);
    fuzzy_doc_release(&db);
}

static void test_table(void)
{
    char a[4096], b[4096];
    size_t n = 0;
    for (size_t i = 0; i < sizeof text_cases / sizeof text_cases[0]; i++, n++) {
        const text_case *c = &text_cases[i];
        snprintf(a, sizeof a, c->w->body, c->a);
        snprintf(b, sizeof b, c->w->body, c->b);
        check_pair(c->what, c->w->format, c->w->endpoint, a, b, c->match);
    }
    for (size_t i = 0; i < sizeof body_cases / sizeof body_cases[0]; i++, n++) {
        const body_case *c = &body_cases[i];
        check_pair(c->what, c->format, c->endpoint, c->a, c->b, c->match);
    }
    ok(n >= 40, "at least 40 pairs in the table");
}

static int shares_band(const fuzzy_doc *a, const fuzzy_doc *b)
{
    uint64_t ba[FUZZY_BANDS], bb[FUZZY_BANDS];
    fuzzy_bands(a, ba);
    fuzzy_bands(b, bb);
    for (size_t i = 0; i < FUZZY_BANDS; i++)
        if (ba[i] == bb[i])
            return 1;
    return 0;
}

/* A deterministic generator (xorshift64*) for the random prompts. */
static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t next_random(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

/* A prompt of n words drawn from a 2,000-word vocabulary of made-up
 * lower-case words (5 letters each). */
static void random_prompt(char *out, size_t n)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = next_random() % 2000;
        for (int c = 0; c < 5; c++, w /= 7)
            out[at++] = (char)('b' + (w % 7) * 3 + c % 2);
        out[at++] = ' ';
    }
    out[at ? at - 1 : 0] = '\0';
}

static void doc_for(const char *text, fuzzy_doc *d)
{
    char body[8192];
    snprintf(body, sizeof body, OPENAI.body, text);
    if (split("openai", "chat.completions", body, SALT, d) != RL_OK)
        memset(d, 0, sizeof *d);
}

/* Replaces word `at` of text (space separated) by `with`. */
static void replace_word(const char *text, size_t at, const char *with, char *out)
{
    size_t w = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *p0 = p;
        if (w == at)
            len = strlen(with), p0 = with;
        memcpy(out, p0, len);
        out += len;
        if (!e)
            break;
        *out++ = ' ';
        p = e + 1;
        w++;
    }
    *out = '\0';
}

/*
 * Bands: a one-word edit keeps a band (the header computes p = 0.9937 for a
 * 16-word prompt); a case change keeps them all; another shape shares none;
 * unrelated prompts share none, measured over 500 random pairs.
 */
static void test_bands(void)
{
    fuzzy_doc a, b;
    char edited[8192];
    doc_for(LONG, &a);
    doc_for(LONG_HEAD "Keep the tone warm and plain, avoid jargon," LONG_TAIL, &b);
    ok(shares_band(&a, &b), "bands: a one-word edit in a long prompt shares a band");
    fuzzy_doc_release(&b);

    /* The same texts in another shape (another model). */
    char body[8192];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"content\":\"You are terse.\",\"role\":\"system\"},"
             "{\"content\":\"%s\",\"role\":\"user\"}],\"model\":\"gpt-4o-mini\"}",
             LONG);
    split("openai", "chat.completions", body, SALT, &b);
    uint64_t ba[FUZZY_BANDS], bb[FUZZY_BANDS];
    fuzzy_bands(&a, ba);
    fuzzy_bands(&b, bb);
    int shared = 0;
    for (size_t i = 0; i < FUZZY_BANDS; i++)
        shared += ba[i] == bb[i];
    is_int(shared, 0, "bands: the same texts in another shape share no band");
    fuzzy_doc_release(&b);
    fuzzy_doc_release(&a);

    /* Every one-word edit of 200 random 16-word prompts (at a random
     * position, by a random word). */
    int kept = 0, trials = 200;
    for (int t = 0; t < trials; t++) {
        char text[4096], word[8];
        random_prompt(text, 16);
        random_prompt(word, 1);
        replace_word(text, next_random() % 16, word, edited);
        doc_for(text, &a);
        doc_for(edited, &b);
        kept += shares_band(&a, &b);
        fuzzy_doc_release(&a);
        fuzzy_doc_release(&b);
    }
    printf("# one-word edits of 16-word prompts sharing a band: %d of %d\n", kept, trials);
    ok(kept >= trials * 97 / 100,
       "bands: >= 97 % of one-word edits in 16-word prompts share a band");

    /* A case change alone keeps every band (tokens are lower-cased). */
    doc_for("Summarise the article below in plain words for a child", &a);
    doc_for("summarise the Article below in plain words for a child", &b);
    fuzzy_bands(&a, ba);
    fuzzy_bands(&b, bb);
    ok(memcmp(ba, bb, sizeof ba) == 0, "bands: a case change keeps every band");
    fuzzy_doc_release(&a);
    fuzzy_doc_release(&b);

    /* Unrelated prompts of 30 words: with 2,000 words the expected Jaccard
     * is ~0, so any shared band is a hash accident; bound 1 %. */
    int false_hits = 0, pairs = 500;
    for (int t = 0; t < pairs; t++) {
        char x[4096], y[4096];
        random_prompt(x, 30);
        random_prompt(y, 30);
        doc_for(x, &a);
        doc_for(y, &b);
        false_hits += shares_band(&a, &b);
        fuzzy_doc_release(&a);
        fuzzy_doc_release(&b);
    }
    printf("# unrelated pairs sharing a band: %d of %d\n", false_hits, pairs);
    ok(false_hits * 100 <= pairs, "bands: <= 1 % of unrelated prompt pairs share a band");
}

/* The store record: a round trip, and every corruption refused. */
static void test_record(void)
{
    char body[8192];
    snprintf(body, sizeof body, ANTHROPIC.body, LONG);
    fuzzy_doc d, back;
    is_int(split("anthropic", "messages", body, SALT, &d), RL_OK, "record: split");
    is_int(d.ntexts, 2, "record: system and user texts");
    rl_buf rec;
    rl_buf_init(&rec, 0);
    is_int(fuzzy_encode(&d, &rec), RL_OK, "record: encode");
    is_int(fuzzy_decode(rec.data, rec.len, &back), RL_OK, "record: decode");
    double sim = 0;
    ok(fuzzy_match(&d, &back, NULL, &sim, NULL) && sim == 1.0, "record: round trip matches itself");
    ok(memcmp(d.shape, back.shape, FUZZY_SHAPE_LEN) == 0, "record: shape kept");
    is_str(back.texts[1], LONG, "record: text kept");
    fuzzy_doc_release(&back);

    int refused = 1;
    for (size_t cut = 0; cut < rec.len; cut++) {
        fuzzy_doc x;
        rl_err e = fuzzy_decode(rec.data, cut, &x);
        refused &= e == RL_BAD_ENTRY && x.ntexts == 0 && x.texts == NULL;
    }
    ok(refused, "record: every truncation refused");
    rl_buf longer;
    rl_buf_init(&longer, 0);
    rl_buf_append(&longer, rec.data, rec.len);
    rl_buf_append(&longer, "x", 1);
    is_int(fuzzy_decode(longer.data, longer.len, &back), RL_BAD_ENTRY,
           "record: trailing byte refused");
    rl_buf_release(&longer);
    rec.data[2] = 2;
    is_int(fuzzy_decode(rec.data, rec.len, &back), RL_BAD_ENTRY, "record: another version refused");
    rec.data[2] = 1;
    unsigned char *count = (unsigned char *)rec.data + 3 + FUZZY_SHAPE_LEN;
    count[0] = 0xff;
    is_int(fuzzy_decode(rec.data, rec.len, &back), RL_BAD_ENTRY, "record: a huge count refused");
    count[0] = 0;
    unsigned char *len0 = count + 4;
    len0[0] = 0x7f;
    is_int(fuzzy_decode(rec.data, rec.len, &back), RL_BAD_ENTRY,
           "record: an overlong text refused");
    rl_buf_release(&rec);
    fuzzy_doc_release(&d);
}

/* What has no prose, or is not JSON. */
static void test_split_edges(void)
{
    fuzzy_doc d;
    is_int(split("openai", "embeddings", "{\"input\":\"hello\",\"model\":\"e\"}", SALT, &d),
           RL_NOTFOUND, "split: embeddings have no prose");
    is_int(split("openai", "chat.completions",
                 "{\"messages\":[{\"content\":\"  \",\"role\":\"user\"}]}", SALT, &d),
           RL_NOTFOUND, "split: whitespace only is no prose");
    is_int(split("openai", "chat.completions", "{\"messages\":", SALT, &d), RL_BAD_JSON,
           "split: not JSON");
    is_int(split("anthropic", "messages.count_tokens", "{\"messages\":[]}", SALT, &d), RL_NOTFOUND,
           "split: token counts have no prose");
    fuzzy_doc a, b;
    char body[8192];
    snprintf(body, sizeof body, OPENAI.body, LONG);
    split("openai", "chat.completions", body, SALT, &a);
    split("openai", "chat.completions", body, SALT "other-scope", &b);
    ok(!fuzzy_match(&a, &b, NULL, NULL, NULL), "split: another scope (salt) never matches");
    fuzzy_doc_release(&a);
    fuzzy_doc_release(&b);
    fuzzy_params strict = {0, 0.5};
    split("openai", "chat.completions", body, SALT, &a);
    snprintf(body, sizeof body, OPENAI.body, LONG " ");
    split("openai", "chat.completions", body, SALT, &b);
    ok(fuzzy_match(&a, &b, &strict, NULL, NULL), "params: max_words 0 still allows whitespace");
    fuzzy_doc_release(&b);
    snprintf(body, sizeof body, OPENAI.body,
             LONG_HEAD "Keep the tone warm and plain, avoid jargon," LONG_TAIL);
    split("openai", "chat.completions", body, SALT, &b);
    ok(!fuzzy_match(&a, &b, &strict, NULL, NULL), "params: max_words 0 refuses a word");
    fuzzy_params loose = {3, 0.9};
    ok(fuzzy_match(&a, &b, &loose, NULL, NULL), "params: a lower threshold accepts");
    fuzzy_doc_release(&a);
    fuzzy_doc_release(&b);
}

/* A long prompt costs O(n·k): a 100k-word text with one edit compares. */
static void test_long(void)
{
    size_t n = 100000;
    char *text = malloc(n * 6 + 1), *edited = malloc(n * 6 + 1);
    random_prompt(text, n);
    memcpy(edited, text, strlen(text) + 1);
    memcpy(edited + 6 * (n / 2), "zzzzz", 5);
    fuzzy_doc a = {0}, b = {0};
    char *ta[1] = {text}, *tb[1] = {edited};
    size_t la[1] = {strlen(text)}, lb[1] = {strlen(edited)};
    a.ntexts = b.ntexts = 1;
    a.texts = ta, a.lens = la, b.texts = tb, b.lens = lb;
    double sim = 0;
    ok(fuzzy_match(&a, &b, NULL, &sim, NULL) && sim > 0.9999,
       "long: a 100k-word prompt with one edit matches");
    edited[0] = 'Q', edited[6] = 'Q', edited[12] = 'Q', edited[18] = 'Q';
    ok(!fuzzy_match(&a, &b, NULL, &sim, NULL), "long: four more edits far apart are refused");
    free(text);
    free(edited);
}

int main(void)
{
    test_table();
    test_bands();
    test_record();
    test_split_edges();
    test_long();
    return tap_done();
}
