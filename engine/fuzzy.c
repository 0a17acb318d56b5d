/*
 * fuzzy.c — words, the protected-token rules, the banded token diff,
 * MinHash bands and the store record of a fuzzy_doc (fuzzy.h). Which
 * strings are prose is fuzzy_split.c's business.
 */
#include "engine/fuzzy.h"

#include <stdlib.h>
#include <string.h>

/* Why a token may not take part in an edit; NONE for prose. */
enum prot {
    PROT_NONE,
    PROT_NUMBER,
    PROT_CODE,
    PROT_URL,
    PROT_PATH,
    PROT_IDENT,
    PROT_NEGATION,
};

static const char *const prot_why[] = {
    [PROT_NONE] = "",
    [PROT_NUMBER] = "a number differs",
    [PROT_CODE] = "code differs",
    [PROT_URL] = "a URL differs",
    [PROT_PATH] = "a file path differs",
    [PROT_IDENT] = "an identifier differs",
    [PROT_NEGATION] = "a negation or quantity word differs",
};

typedef struct token {
    uint32_t off, len;
    uint64_t hash; /* FNV-1a of the bytes and the protection: equality test */
    uint8_t prot;
} token;

typedef struct tokens {
    token *v;
    size_t n, cap;
    int failed;
} tokens;

/* ---- characters ---------------------------------------------------------- */

/* Decodes one UTF-8 code point at s[0..n); an invalid byte reads as U+FFFD
 * of length 1, so any bytes tokenise (a decoded store record may be junk). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *len)
{
    uint32_t c = s[0];
    size_t need = c < 0x80 ? 0 : c >= 0xf0 && c < 0xf8 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : 9;
    if (need == 9 || need >= n) {
        *len = 1;
        return c < 0x80 ? c : 0xfffd;
    }
    if (need == 0) {
        *len = 1;
        return c;
    }
    c &= 0x7fu >> (need + 1); /* 110xxxxx, 1110xxxx, 11110xxx */
    for (size_t i = 1; i <= need; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = 1;
            return 0xfffd;
        }
        c = c << 6 | (s[i] & 0x3f);
    }
    *len = need + 1;
    return c;
}

typedef struct range {
    uint32_t lo, hi;
} range;

static int in_ranges(uint32_t c, const range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (c >= r[i].lo && c <= r[i].hi)
            return 1;
    return 0;
}
#define IN(c, table) in_ranges(c, table, sizeof table / sizeof table[0])

static const range spaces[] = {
    {0x09, 0x0d},     {0x20, 0x20},     {0x85, 0x85},     {0xa0, 0xa0},
    {0x1680, 0x1680}, {0x2000, 0x200b}, {0x2028, 0x2029}, {0x202f, 0x202f},
    {0x205f, 0x205f}, {0x3000, 0x3000}, {0xfeff, 0xfeff},
};

/* Digits and number signs of other scripts: superscripts, fractions,
 * Arabic-Indic, Devanagari, Bengali, Thai, Roman numerals, circled and
 * fullwidth digits. */
static const range digits[] = {
    {'0', '9'},       {0xb2, 0xb3},     {0xb9, 0xb9},     {0xbc, 0xbe},     {0x660, 0x669},
    {0x6f0, 0x6f9},   {0x966, 0x96f},   {0x9e6, 0x9ef},   {0xe50, 0xe59},   {0x2070, 0x2079},
    {0x2080, 0x2089}, {0x2150, 0x218b}, {0x2460, 0x24ff}, {0x2776, 0x2793}, {0xff10, 0xff19},
};

/* Punctuation and symbols outside ASCII: each is a token of its own. */
static const range punct[] = {
    {0xa1, 0xbf},     {0xd7, 0xd7},     {0xf7, 0xf7},     {0x2010, 0x2027}, {0x2030, 0x205e},
    {0x2190, 0x2bff}, {0x3001, 0x303f}, {0xfe30, 0xfe4f}, {0xff01, 0xff0f}, {0xff1a, 0xff20},
    {0xff3b, 0xff40}, {0xff5b, 0xff65}, {0xfffd, 0xfffd},
};

/* Scripts written without spaces between words: one token per character,
 * so one changed "word" never swallows a clause. */
static const range unspaced[] = {
    {0xe00, 0xeff},   {0x1000, 0x109f}, {0x1780, 0x17ff}, {0x3040, 0x30ff},
    {0x3400, 0x4dbf}, {0x4e00, 0x9fff}, {0xf900, 0xfaff}, {0x20000, 0x3134f},
};

static int is_apostrophe(uint32_t c)
{
    return c == '\'' || c == 0x2019;
}

/* A letter or digit of a word: ASCII alnum or any other code point that is
 * not a space, punctuation or an unspaced script's character. */
static int is_word(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    return !IN(c, spaces) && !IN(c, punct) && !IN(c, unspaced);
}

static int is_upper(int c)
{
    return c >= 'A' && c <= 'Z';
}

static int is_lower(int c)
{
    return c >= 'a' && c <= 'z';
}

static int is_alnum(int c)
{
    return is_upper(c) || is_lower(c) || (c >= '0' && c <= '9') || c >= 0x80;
}

/* ---- protected words ------------------------------------------------------- */

/* Negations (English and the common ones of French, German, Spanish,
 * Italian, Portuguese, Dutch, Chinese) and words that carry a number, a
 * quantity or a polarity: a change in any of them can turn the answer
 * around. Lower case; compared after ASCII lower-casing. */
static const char *const protected_words[] = {
    "not",      "no",        "never",    "nor",      "neither", "none",     "nothing",  "nobody",
    "nowhere",  "without",   "except",   "cannot",   "noone",   "dont",     "doesnt",   "didnt",
    "isnt",     "arent",     "wasnt",    "werent",   "wont",    "cant",     "shouldnt", "wouldnt",
    "couldnt",  "mustnt",    "hasnt",    "havent",   "hadnt",   "ne",       "pas",      "jamais",
    "non",      "rien",      "sans",     "aucun",    "aucune",  "nicht",    "kein",     "keine",
    "keinen",   "keiner",    "keinem",   "nie",      "niemals", "ohne",     "nunca",    "sin",
    "ni",       "nada",      "ningún",   "ninguno",  "ninguna", "mai",      "senza",    "nessuno",
    "não",      "sem",       "nem",      "niet",     "geen",    "nooit",    "zonder",   "不",
    "没",       "無",        "无",       "别",       "非",      "未",       "莫",       "勿",
    "zero",     "one",       "two",      "three",    "four",    "five",     "six",      "seven",
    "eight",    "nine",      "ten",      "eleven",   "twelve",  "thirteen", "fourteen", "fifteen",
    "sixteen",  "seventeen", "eighteen", "nineteen", "twenty",  "thirty",   "forty",    "fifty",
    "sixty",    "seventy",   "eighty",   "ninety",   "hundred", "thousand", "million",  "billion",
    "trillion", "dozen",     "half",     "quarter",  "twice",   "thrice",   "once",     "first",
    "second",   "third",     "fourth",   "fifth",    "sixth",   "seventh",  "eighth",   "ninth",
    "tenth",    "last",      "single",   "double",   "triple",  "both",     "all",      "every",
    "each",     "some",      "any",      "many",     "few",     "fewer",    "several",  "more",
    "less",     "most",      "least",    "only",     "always",  "true",     "false",    "yes",
    "before",   "after",     "above",    "below",    "min",     "max",      "minimum",  "maximum",
};

static int is_protected_word(const char *p, size_t len)
{
    char low[32];
    if (len >= sizeof low)
        return 0;
    for (size_t i = 0; i < len; i++)
        low[i] = is_upper(p[i]) ? (char)(p[i] | 0x20) : p[i];
    low[len] = '\0';
    /* Every "n't" contraction, with either apostrophe. */
    if ((len > 3 && strcmp(low + len - 3, "n't") == 0) ||
        (len > 5 && strcmp(low + len - 5, "n\xe2\x80\x99t") == 0))
        return 1;
    for (size_t i = 0; i < sizeof protected_words / sizeof protected_words[0]; i++)
        if (strcmp(low, protected_words[i]) == 0)
            return 1;
    return 0;
}

/* What protects a whole whitespace-separated chunk (a URL, a path, an
 * identifier, anything with a digit), PROT_NONE for a prose chunk. */
static enum prot chunk_prot(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    int alnum = 0, caps_run = 0;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t c = utf8_next(u + i, n - i, &l);
        if (IN(c, digits))
            return PROT_NUMBER;
        alnum |= is_word(c);
        i += l;
    }
    if (!alnum)
        return PROT_NONE;
    for (size_t i = 0; i < n; i++) {
        int c = u[i], prev = i ? u[i - 1] : 0, next = i + 1 < n ? u[i + 1] : 0;
        if (c == ':' && next == '/' && i + 2 < n && u[i + 2] == '/')
            return PROT_URL;
        if (i == 0 && n > 4 && (strncmp(s, "www.", 4) == 0 || strncmp(s, "WWW.", 4) == 0))
            return PROT_URL;
        if ((c == '/' || c == '\\') &&
            (is_alnum(prev) || is_alnum(next) || prev == '~' || prev == '.'))
            return PROT_PATH;
        if (c == '.' && (prev == 0 || prev == '/') && is_alnum(next))
            return PROT_PATH; /* .bashrc, ./x */
    }
    for (size_t i = 0; i < n; i++) {
        int c = u[i], prev = i ? u[i - 1] : 0, next = i + 1 < n ? u[i + 1] : 0;
        caps_run = is_upper(c) ? caps_run + 1 : 0;
        if (caps_run >= 2 || (is_lower(prev) && is_upper(c)))
            return PROT_IDENT; /* ALLCAPS, camelCase */
        if (c != 0 && strchr("_@#$^&=+<>{}[]|", c) != NULL)
            return PROT_IDENT;
        if (c != 0 && strchr(".:-*~", c) != NULL && is_alnum(prev) && is_alnum(next))
            return PROT_IDENT; /* dotted.name, a::b, kebab-case, a*b */
    }
    return PROT_NONE;
}

/* ---- tokens -------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static void push(tokens *t, const char *text, size_t off, size_t len, enum prot prot)
{
    if (t->failed)
        return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        token *v = realloc(t->v, cap * sizeof *v);
        if (!v) {
            t->failed = 1;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    uint64_t h = FNV_OFFSET ^ (uint64_t)(prot != PROT_NONE);
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)text[off + i]) * FNV_PRIME;
    t->v[t->n++] = (token){(uint32_t)off, (uint32_t)len, h, (uint8_t)prot};
}

/* Splits a prose chunk (no whitespace) into words (letters and digits, with
 * internal apostrophes) and single punctuation characters; `prot` (the
 * chunk's) applies to all of them, else each word is checked against the
 * protected words. */
static void push_chunk(tokens *t, const char *text, size_t start, size_t end, enum prot prot)
{
    const unsigned char *u = (const unsigned char *)text;
    size_t i = start;
    while (i < end) {
        size_t l;
        uint32_t c = utf8_next(u + i, end - i, &l);
        if (!is_word(c)) {
            push(t, text, i, l, prot);
            i += l;
            continue;
        }
        size_t w = i;
        while (i < end) {
            c = utf8_next(u + i, end - i, &l);
            if (is_word(c)) {
                i += l;
                continue;
            }
            size_t l2;
            if (is_apostrophe(c) && i + l < end &&
                is_word(utf8_next(u + i + l, end - i - l, &l2))) {
                i += l;
                continue;
            }
            break;
        }
        enum prot p = prot;
        if (p == PROT_NONE && is_protected_word(text + w, i - w))
            p = PROT_NEGATION;
        push(t, text, w, i - w, p);
    }
}

static int is_fence(const char *s, size_t n)
{
    return n >= 3 && (memcmp(s, "```", 3) == 0 || memcmp(s, "~~~", 3) == 0);
}

/* The end of the inline code span opened by a run of `run` backticks at
 * text[from], or 0 when it is never closed. */
static size_t code_span_end(const char *text, size_t n, size_t from, size_t run)
{
    for (size_t i = from + run; i < n;) {
        if (text[i] != '`') {
            i++;
            continue;
        }
        size_t r = 0;
        while (i + r < n && text[i + r] == '`')
            r++;
        if (r == run)
            return i + r;
        i += r;
    }
    return 0;
}

/*
 * Tokenises a text. Code keeps every byte: a line of a fenced block (the
 * fences too) is one protected token, whitespace and all, so re-indented
 * Python is a change; an inline `code` span is one token; an unclosed
 * backtick protects the rest of its chunk. Elsewhere whitespace only
 * separates tokens and never counts.
 */
static void tokenize(const char *text, size_t n, tokens *t)
{
    const unsigned char *u = (const unsigned char *)text;
    int in_fence = 0, line_start = 1;
    size_t i = 0;
    while (i < n) {
        if (line_start) {
            size_t eol = i;
            while (eol < n && text[eol] != '\n')
                eol++;
            size_t s = i;
            while (s < eol && (text[s] == ' ' || text[s] == '\t'))
                s++;
            int fence = is_fence(text + s, eol - s);
            if (fence || in_fence) {
                in_fence ^= fence;
                push(t, text, i, eol - i, PROT_CODE);
                i = eol < n ? eol + 1 : eol;
                continue;
            }
            line_start = 0;
        }
        size_t l;
        uint32_t c = utf8_next(u + i, n - i, &l);
        if (c == '\n') {
            line_start = 1;
            i++;
            continue;
        }
        if (IN(c, spaces)) {
            i += l;
            continue;
        }
        if (IN(c, unspaced)) {
            push(t, text, i, l, is_protected_word(text + i, l) ? PROT_NEGATION : PROT_NONE);
            i += l;
            continue;
        }
        size_t end = i;
        while (end < n) {
            uint32_t d = utf8_next(u + end, n - end, &l);
            if (IN(d, spaces) || IN(d, unspaced) || d == '`')
                break;
            end += l;
        }
        if (end == i) { /* a backtick */
            size_t run = 0;
            while (i + run < n && text[i + run] == '`')
                run++;
            size_t close = code_span_end(text, n, i, run);
            if (!close) {
                close = i + run;
                while (close < n && !IN(utf8_next(u + close, n - close, &l), spaces))
                    close += l;
            }
            push(t, text, i, close - i, PROT_CODE);
            i = close;
            continue;
        }
        push_chunk(t, text, i, end, chunk_prot(text + i, end - i));
        i = end;
    }
}

static int token_eq(const char *ta, const token *a, const char *tb, const token *b)
{
    return a->hash == b->hash && a->len == b->len && a->prot == b->prot &&
           memcmp(ta + a->off, tb + b->off, a->len) == 0;
}

/* ---- the banded diff ------------------------------------------------------ */

/* Largest band matrix one comparison may allocate: (n + 1) × (2k + 1). */
#define DIFF_MAX_CELLS ((size_t)64 << 20)

typedef struct diff_result {
    int changed;    /* edit distance in tokens, > k when over the limit */
    enum prot prot; /* the first protected token an edit touches */
    int nomem;
} diff_result;

/*
 * Edit distance (insert, delete, replace a token: cost 1 each) between two
 * token lists, with only the cells within k of the diagonal computed:
 * O(n·k) time and bytes. Common prefix and suffix are skipped first (they
 * never change the distance), so a one-word edit in a long prompt costs a
 * few cells. Cell values saturate at k + 1. The backtrace walks one optimal
 * edit script and reports whether any token it edits, on either side, is
 * protected.
 */
static diff_result diff(const char *ta, const tokens *a, const char *tb, const tokens *b, int k)
{
    diff_result r = {0, PROT_NONE, 0};
    size_t pre = 0, na = a->n, nb = b->n;
    while (pre < na && pre < nb && token_eq(ta, &a->v[pre], tb, &b->v[pre]))
        pre++;
    while (na > pre && nb > pre && token_eq(ta, &a->v[na - 1], tb, &b->v[nb - 1]))
        na--, nb--;
    const token *A = a->v + pre, *B = b->v + pre;
    na -= pre;
    nb -= pre;
    size_t gap = na > nb ? na - nb : nb - na;
    if (gap > (size_t)k) {
        r.changed = k + 1;
        return r;
    }
    if (na == 0 || nb == 0) { /* pure insertion or deletion */
        const token *v = na ? A : B;
        r.changed = (int)(na + nb);
        for (size_t i = 0; i < na + nb && r.prot == PROT_NONE; i++)
            r.prot = v[i].prot;
        return r;
    }
    size_t w = 2 * (size_t)k + 1;
    if ((na + 1) > DIFF_MAX_CELLS / w) {
        r.nomem = 1;
        return r;
    }
    uint8_t *m = malloc((na + 1) * w);
    if (!m) {
        r.nomem = 1;
        return r;
    }
    const uint8_t inf = (uint8_t)(k + 1);
/* D[i][j] lives at m[i * w + (j - i + k)]; out of band reads as inf. */
#define CELL(i, j) (((j) + k < (i) || (j) > (i) + k || (j) > nb) ? inf : m[(i)*w + ((j) + k - (i))])
    for (size_t i = 0; i <= na; i++) {
        size_t lo = i > (size_t)k ? i - k : 0, hi = i + k < nb ? i + k : nb;
        uint8_t row_min = inf;
        for (size_t jj = 0; jj < w; jj++)
            m[i * w + jj] = inf;
        for (size_t j = lo; j <= hi; j++) {
            unsigned v;
            if (i == 0)
                v = (unsigned)j;
            else if (j == 0)
                v = (unsigned)i;
            else {
                v = CELL(i - 1, j - 1) + !token_eq(ta, &A[i - 1], tb, &B[j - 1]);
                if (CELL(i - 1, j) + 1u < v)
                    v = CELL(i - 1, j) + 1u;
                if (CELL(i, j - 1) + 1u < v)
                    v = CELL(i, j - 1) + 1u;
            }
            m[i * w + (j + k - i)] = (uint8_t)(v < inf ? v : inf);
            if (v < row_min)
                row_min = (uint8_t)v;
        }
        if (row_min >= inf) { /* every path already costs more than k */
            free(m);
            r.changed = k + 1;
            return r;
        }
    }
    r.changed = CELL(na, nb);
    size_t i = na, j = nb;
    while (r.changed <= k && (i > 0 || j > 0)) {
        unsigned v = CELL(i, j);
        if (i > 0 && j > 0 && CELL(i - 1, j - 1) == v && token_eq(ta, &A[i - 1], tb, &B[j - 1])) {
            i--, j--;
            continue;
        }
        const token *edited[2] = {NULL, NULL};
        if (i > 0 && j > 0 && CELL(i - 1, j - 1) + 1u == v) {
            edited[0] = &A[--i];
            edited[1] = &B[--j];
        } else if (i > 0 && CELL(i - 1, j) + 1u == v) {
            edited[0] = &A[--i];
        } else {
            edited[1] = &B[--j];
        }
        for (int e = 0; e < 2; e++)
            if (edited[e] && edited[e]->prot != PROT_NONE && r.prot == PROT_NONE)
                r.prot = (enum prot)edited[e]->prot;
    }
#undef CELL
    free(m);
    return r;
}

/* ---- matching ------------------------------------------------------------- */

int fuzzy_match(const fuzzy_doc *req, const fuzzy_doc *cand, const fuzzy_params *p,
                double *similarity, const char **why)
{
    fuzzy_params def = {FUZZY_DEFAULT_MAX_WORDS, FUZZY_DEFAULT_MIN_SIMILARITY};
    if (!p)
        p = &def;
    int k = p->max_words < 0 ? 0 : p->max_words > 254 ? 254 : p->max_words;
    const char *reason = NULL;
    size_t changed = 0, total_a = 0, total_b = 0;
    double sim = 0;
    if (memcmp(req->shape, cand->shape, FUZZY_SHAPE_LEN) != 0)
        reason = "different shape (model, parameters, tools, roles or messages)";
    else if (req->ntexts != cand->ntexts)
        reason = "different number of texts";
    tokens a = {0}, b = {0};
    for (size_t i = 0; !reason && i < req->ntexts; i++) {
        a.n = b.n = 0;
        tokenize(req->texts[i], req->lens[i], &a);
        tokenize(cand->texts[i], cand->lens[i], &b);
        if (a.failed || b.failed) {
            reason = "out of memory";
            break;
        }
        total_a += a.n;
        total_b += b.n;
        diff_result r = diff(req->texts[i], &a, cand->texts[i], &b, k);
        if (r.nomem)
            reason = "out of memory";
        else if (r.changed > k)
            reason = "a text differs by more than max_words words";
        else if (r.prot != PROT_NONE)
            reason = prot_why[r.prot];
        changed += (size_t)r.changed;
    }
    free(a.v);
    free(b.v);
    if (!reason) {
        size_t most = total_a > total_b ? total_a : total_b;
        sim = most ? 1.0 - (double)changed / (double)most : 1.0;
        if (sim < p->min_similarity)
            reason = "similarity below the threshold";
    }
    if (similarity)
        *similarity = reason && sim >= p->min_similarity ? 0 : sim;
    if (why)
        *why = reason ? reason : "match";
    return reason == NULL;
}

/* ---- MinHash bands ---------------------------------------------------------- */

/* splitmix64's finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix
 * whose every output bit depends on every input bit. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* FNV-1a over the token's bytes, ASCII lower-cased. */
static uint64_t word_hash(const char *p, size_t len)
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        h = (h ^ (is_upper(c) ? c | 0x20 : c)) * FNV_PRIME;
    }
    return h;
}

#define FUZZY_HASHES (FUZZY_BANDS * FUZZY_ROWS)

static void minhash_add(uint64_t mins[FUZZY_HASHES], uint64_t shingle)
{
    for (size_t f = 0; f < FUZZY_HASHES; f++) {
        uint64_t v = mix64(shingle ^ (0x9e3779b97f4a7c15ULL * (f + 1)));
        if (v < mins[f])
            mins[f] = v;
    }
}

void fuzzy_bands(const fuzzy_doc *d, uint64_t bands[FUZZY_BANDS])
{
    uint64_t mins[FUZZY_HASHES];
    for (size_t f = 0; f < FUZZY_HASHES; f++)
        mins[f] = UINT64_MAX;
    tokens t = {0};
    for (size_t i = 0; i < d->ntexts; i++) {
        t.n = 0;
        tokenize(d->texts[i], d->lens[i], &t);
        if (t.failed)
            break; /* out of memory: fewer shingles, fewer candidates, never a wrong answer */
        uint64_t tag = mix64(i);
        size_t width = t.n >= 3 ? 3 : 1;
        for (size_t s = 0; s + width <= t.n; s++) {
            uint64_t h = tag;
            for (size_t w = 0; w < width; w++)
                h = mix64(h ^ word_hash(d->texts[i] + t.v[s + w].off, t.v[s + w].len));
            minhash_add(mins, h);
        }
    }
    free(t.v);
    uint64_t shape = FNV_OFFSET;
    for (size_t i = 0; i < FUZZY_SHAPE_LEN; i++)
        shape = (shape ^ d->shape[i]) * FNV_PRIME;
    for (size_t b = 0; b < FUZZY_BANDS; b++) {
        uint64_t h = mix64(shape ^ b);
        for (size_t r = 0; r < FUZZY_ROWS; r++)
            h = mix64(h ^ mins[b * FUZZY_ROWS + r]);
        bands[b] = h;
    }
}

/* ---- the store record -------------------------------------------------------- */

static const unsigned char record_magic[3] = {'F', 'Z', 1};

void fuzzy_doc_release(fuzzy_doc *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->ntexts; i++)
        free(d->texts[i]);
    free(d->texts);
    free(d->lens);
    memset(d, 0, sizeof *d);
}

static void put_u32(rl_buf *out, size_t v)
{
    unsigned char n[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    (void)rl_buf_append(out, n, 4); /* sticky: checked once by the caller */
}

rl_err fuzzy_encode(const fuzzy_doc *d, rl_buf *out)
{
    if (d->ntexts > UINT32_MAX)
        return RL_TOO_LARGE;
    (void)rl_buf_append(out, record_magic, sizeof record_magic);
    (void)rl_buf_append(out, d->shape, FUZZY_SHAPE_LEN);
    put_u32(out, d->ntexts);
    for (size_t i = 0; i < d->ntexts; i++) {
        if (d->lens[i] > UINT32_MAX)
            return RL_TOO_LARGE;
        put_u32(out, d->lens[i]);
        (void)rl_buf_append(out, d->texts[i], d->lens[i]);
    }
    return rl_buf_error(out);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

rl_err fuzzy_decode(const void *data, size_t len, fuzzy_doc *out)
{
    const unsigned char *p = data;
    memset(out, 0, sizeof *out);
    size_t head = sizeof record_magic + FUZZY_SHAPE_LEN + 4;
    if (len < head || memcmp(p, record_magic, sizeof record_magic) != 0)
        return RL_BAD_ENTRY;
    memcpy(out->shape, p + sizeof record_magic, FUZZY_SHAPE_LEN);
    size_t n = get_u32(p + head - 4);
    /* Each text takes at least its 4-byte length: more cannot be true. */
    if (n > (len - head) / 4)
        return RL_BAD_ENTRY;
    if (n) {
        out->texts = calloc(n, sizeof *out->texts);
        out->lens = calloc(n, sizeof *out->lens);
        if (!out->texts || !out->lens) {
            fuzzy_doc_release(out);
            return RL_NOMEM;
        }
    }
    size_t at = head;
    for (size_t i = 0; i < n; i++) {
        size_t l = len - at >= 4 ? get_u32(p + at) : SIZE_MAX;
        if (l == SIZE_MAX || l > len - at - 4) {
            fuzzy_doc_release(out);
            return RL_BAD_ENTRY;
        }
        char *text = malloc(l + 1);
        if (!text) {
            fuzzy_doc_release(out);
            return RL_NOMEM;
        }
        memcpy(text, p + at + 4, l);
        text[l] = '\0';
        out->texts[i] = text;
        out->lens[i] = l;
        out->ntexts = i + 1;
        at += 4 + l;
    }
    if (at != len) {
        fuzzy_doc_release(out);
        return RL_BAD_ENTRY;
    }
    return RL_OK;
}
