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

int main(void)
{
    test_table();
    return tap_done();
}
