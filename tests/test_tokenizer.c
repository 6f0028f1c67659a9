/* test_tokenizer.c - tests of the GPT-2 tokenizer (tlens_tokenizer_*,
 * tlens_encode, tlens_decode ...). Uses the public API only; the expected
 * ids come from OpenAI's tiktoken (the .jsonl files of tests/data/tokenizer, made by
 * tiktoken, see bench/tiktoken/make_cases.js), never from this code.
 * Paths are relative to the repository root. Call tests_tokenizer(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#define TT_TOK_HAVE_MKDIR 1
#endif

#define TT_TOK_DIR "tokenizer"
#define TT_TOK_VOCAB TT_TOK_DIR "/vocab.json"
#define TT_TOK_MERGES TT_TOK_DIR "/merges.txt"
#define TT_TOK_DATA "tests/data/tokenizer/"

/* The shipped GPT-2 tokenizer, loaded once; freed by tests_tokenizer. */
static tlens_tokenizer *tt_tok_gpt2;

static tlens_tokenizer *tt_tok(void) {
    tlens_error err;
    if (!tt_tok_gpt2 && tlens_tokenizer_load(&tt_tok_gpt2, TT_TOK_DIR, NULL, &err) != TLENS_OK)
        printf("  cannot load %s: %s\n", TT_TOK_DIR, err.message);
    return tt_tok_gpt2;
}

/* ---- Small helpers ------------------------------------------------------ */

static char *tt_tok_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *data;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = (char *)malloc((size_t)n + 1);
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) data[n] = '\0';
    if (len) *len = (size_t)n;
    return data;
}

static int tt_tok_write(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* Encode a C string; returns the count (ids has room for `room`), -1 on error. */
static long tt_tok_encode(const char *text, int bos, int32_t *ids, size_t room) {
    size_t n;
    tlens_error err;
    if (tlens_encode(tt_tok(), text, strlen(text), bos, ids, room, &n, &err) != TLENS_OK) {
        printf("  encode failed: %s\n", err.message);
        return -1;
    }
    return (long)n;
}

/* GPT-2's id of the token of a single byte: vocab.json lists the 188
 * printable bytes first ('!'..'~', 0xA1..0xAC, 0xAE..0xFF), then the other
 * 68 in byte order (OpenAI's bytes_to_unicode). */
static int32_t tt_tok_byte_id(unsigned b) {
    unsigned k = 0, c;
    if (b >= 0x21 && b <= 0x7E) return (int32_t)(b - 0x21);
    if (b >= 0xA1 && b <= 0xAC) return (int32_t)(94 + b - 0xA1);
    if (b >= 0xAE) return (int32_t)(106 + b - 0xAE);
    for (c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) k++;
    return (int32_t)(188 + k);
}

/* ---- A reader for the cases files: {"text": "...", "ids": [...]} -------- */

typedef struct tt_tok_case {
    char *text;
    size_t len;
    int32_t *ids;
    size_t n;
} tt_tok_case;

static void tt_tok_put_utf8(char *out, size_t *k, unsigned long cp) {
    if (cp < 0x80) {
        out[(*k)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*k)++] = (char)(0xC0 | (cp >> 6));
        out[(*k)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*k)++] = (char)(0xE0 | (cp >> 12));
        out[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*k)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*k)++] = (char)(0xF0 | (cp >> 18));
        out[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*k)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static unsigned long tt_tok_hex4(const char *s) {
    char digits[5];
    memcpy(digits, s, 4);
    digits[4] = '\0';
    return strtoul(digits, NULL, 16);
}

/* The JSON string at *p (after its opening quote), decoded into UTF-8. */
static char *tt_tok_json_string(const char **p, size_t *len) {
    const char *s = *p;
    char *out = (char *)malloc(strlen(s) + 1);
    size_t k = 0;
    while (out && *s && *s != '"') {
        unsigned long cp;
        if (*s != '\\') { out[k++] = *s++; continue; }
        s++;
        switch (*s++) {
        case 'n': out[k++] = '\n'; break;
        case 't': out[k++] = '\t'; break;
        case 'r': out[k++] = '\r'; break;
        case 'b': out[k++] = '\b'; break;
        case 'f': out[k++] = '\f'; break;
        case 'u':
            cp = tt_tok_hex4(s);
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && s[0] == '\\' && s[1] == 'u') {
                unsigned long low = tt_tok_hex4(s + 2);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                s += 6;
            }
            tt_tok_put_utf8(out, &k, cp);
            break;
        default: out[k++] = s[-1]; break; /* \" \\ \/ */
        }
    }
    if (out) out[k] = '\0';
    *p = *s ? s + 1 : s;
    *len = k;
    return out;
}

static int tt_tok_parse_case(const char *line, tt_tok_case *c) {
    const char *p = strstr(line, "\"text\":\"");
    const char *q = strstr(line, "\"ids\":[");
    size_t room;
    if (!p || !q) return 0;
    p += 8;
    c->text = tt_tok_json_string(&p, &c->len);
    q += 7;
    room = strlen(q) / 2 + 1;
    c->ids = (int32_t *)malloc(room * sizeof *c->ids);
    c->n = 0;
    while (c->ids && *q && *q != ']') {
        char *end;
        c->ids[c->n++] = (int32_t)strtol(q, &end, 10);
        q = *end == ',' ? end + 1 : end;
    }
    return c->text && c->ids;
}

/* Check every case of a .jsonl file; the number of cases (0: none read). */
static int tt_tok_check_cases(const char *path, int bos) {
    char *data = tt_tok_read(path, NULL), *line, *next;
    int count = 0, shown = 0;
    int32_t *ids;
    if (!data) {
        tt_fail_line(__FILE__, __LINE__, "cannot read %s", path);
        return 0;
    }
    for (line = data; *line; line = next) {
        tt_tok_case c;
        size_t n = 0, i;
        int same;
        next = strchr(line, '\n');
        next = next ? (*next = '\0', next + 1) : line + strlen(line);
        if (!*line) continue;
        if (!tt_tok_parse_case(line, &c)) {
            tt_fail_line(__FILE__, __LINE__, "%s: cannot parse case %d", path, count + 1);
            break;
        }
        ids = (int32_t *)malloc((c.len + 2) * sizeof *ids);
        TT_CHECK_INT(tlens_encode(tt_tok(), c.text, c.len, bos, ids, c.len + 1 + (bos != 0), &n, NULL), TLENS_OK);
        same = n == c.n + (bos != 0) && (!bos || ids[0] == TLENS_EOT);
        for (i = 0; same && i < c.n; i++) same = ids[i + (bos != 0)] == c.ids[i];
        if (!same && shown++ < 5)
            tt_fail_line(__FILE__, __LINE__, "%s case %d (%.60s): %zu ids, tiktoken %zu", path,
                         count + 1, c.text, n, c.n);
        else if (!same)
            tt.current_failures++;
        free(ids);
        free(c.text);
        free(c.ids);
        count++;
    }
    free(data);
    return count;
}

/* ---- Encoding: tiktoken's ids ----------------------------------------- */

static void test_tok_tiktoken_cases(void) {
    TT_REQUIRE(tt_tok() != NULL);
    TT_CHECK_INT(tt_tok_check_cases(TT_TOK_DATA "cases.jsonl", 0), 313);
}

static void test_tok_tiktoken_random_cases(void) {
    TT_REQUIRE(tt_tok() != NULL);
    TT_CHECK_INT(tt_tok_check_cases(TT_TOK_DATA "random_cases.jsonl", 0), 700);
}

static void test_tok_prepend_bos(void) {
    int32_t ids[8];
    TT_REQUIRE(tt_tok() != NULL);
    TT_CHECK_INT(tt_tok_check_cases(TT_TOK_DATA "cases.jsonl", 1), 313);
    TT_CHECK_INT(tt_tok_encode("Hello world", 1, ids, 8), 3);
    TT_CHECK_INT(ids[0], 50256);
    TT_CHECK_INT(ids[1], 15496);
    TT_CHECK_INT(ids[2], 995);
    TT_CHECK_INT(tt_tok_encode("", 1, ids, 8), 1);
    TT_CHECK_INT(ids[0], TLENS_EOT);
}

static void test_tok_endoftext_in_text(void) {
    int32_t ids[16];
    TT_REQUIRE(tt_tok() != NULL);
    TT_CHECK_INT(tt_tok_encode("<|endoftext|><|endoftext|>", 0, ids, 16), 2);
    TT_CHECK_INT(ids[0], 50256);
    TT_CHECK_INT(ids[1], 50256);
    /* the text on each side is tokenized on its own: "  " stays two spaces */
    TT_CHECK_INT(tt_tok_encode("a  <|endoftext|>  b", 0, ids, 16), 6);
    TT_CHECK_INT(ids[0], 64);
    TT_CHECK_INT(ids[1], 220);
    TT_CHECK_INT(ids[2], 220);
    TT_CHECK_INT(ids[3], 50256);
    TT_CHECK_INT(ids[4], 220);
    TT_CHECK_INT(ids[5], 275);
}

static void test_tok_vocab_size_and_token_bytes(void) {
    size_t len = 99;
    TT_REQUIRE(tt_tok() != NULL);
    TT_CHECK_INT(tlens_tokenizer_vocab_size(tt_tok()), 50257);
    TT_CHECK_STR(tlens_token_bytes(tt_tok(), 50256, &len), "<|endoftext|>");
    TT_CHECK_INT(len, 13);
    TT_CHECK_STR(tlens_token_bytes(tt_tok(), 995, &len), " world");
    TT_CHECK_STR(tlens_token_bytes(tt_tok(), 198, NULL), "\n");
    TT_CHECK(tlens_token_bytes(tt_tok(), 188, &len) != NULL && len == 1); /* the NUL byte */
    TT_CHECK(tlens_token_bytes(tt_tok(), 50257, &len) == NULL && len == 0);
    TT_CHECK(tlens_token_bytes(tt_tok(), -1, &len) == NULL);
}

/* ---- Invalid UTF-8: every bad byte becomes its own byte token ---------- */

static void test_tok_invalid_utf8_bytes(void) {
    static const struct { const char *text; int n; int32_t ids[6]; } cases[] = {
        {"Hello\xffworld", 3, {15496, -0xFF, 6894}},      /* a byte never in UTF-8 */
        {" \xff", 2, {220, -0xFF}},                       /* the space does not join it */
        {"\xe2\x82", 2, {-0xE2, -0x82}},                  /* a truncated euro sign */
        {"\xc0\xaf", 2, {-0xC0, -0xAF}},                  /* an overlong '/' */
        {"\xe0\x80\xaf", 3, {-0xE0, -0x80, -0xAF}},       /* another overlong '/' */
        {"\xed\xa0\x80", 3, {-0xED, -0xA0, -0x80}},       /* a lone surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, {-0xF4, -0x90, -0x80, -0x80}}, /* above U+10FFFF */
        {"a\x80" "b", 3, {64, -0x80, 65}},                /* a lone continuation byte */
        /* a space before a bad byte stays alone too (a valid character would take it) */
        {" \xc0\xaf", 3, {220, -0xC0, -0xAF}},
        {" \xe0\x80\xaf", 4, {220, -0xE0, -0x80, -0xAF}},
        {" \xed\xa0\x80", 4, {220, -0xED, -0xA0, -0x80}},
        {" \xf0\x80\x80\xaf", 5, {220, -0xF0, -0x80, -0x80, -0xAF}},
        {" \xf4\x90\x80\x80", 5, {220, -0xF4, -0x90, -0x80, -0x80}},
        {" \xe2\x82", 3, {220, -0xE2, -0x82}},
        {"x\xe2\x82\xac", 2, {87, 26391}}, /* but a whole euro sign is fine: "x€" (tiktoken) */
    };
    size_t i;
    TT_REQUIRE(tt_tok() != NULL);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t ids[8];
        int k;
        long n = tt_tok_encode(cases[i].text, 0, ids, 8);
        TT_CHECK_INT(n, cases[i].n);
        for (k = 0; k < cases[i].n && k < n; k++) {
            int32_t want = cases[i].ids[k] < 0 ? tt_tok_byte_id((unsigned)-cases[i].ids[k]) : cases[i].ids[k];
            if (ids[k] != want)
                tt_fail_line(__FILE__, __LINE__, "case %zu id %d: %d, want %d", i, k, ids[k], want);
        }
    }
}

/* ---- Round trips ------------------------------------------------------- */

static uint32_t tt_tok_rand(uint32_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

/* Random bytes with a taste of everything: ASCII, valid UTF-8, broken
 * UTF-8 (overlongs, surrogates, truncations), NULs, <|endoftext|>, long
 * runs. */
static size_t tt_tok_random_text(uint32_t *state, char *out, size_t room) {
#define TT_TOK_BIT(s) {s, sizeof(s) - 1}
    static const struct { const char *s; size_t len; } bits[] = {
        TT_TOK_BIT("the"), TT_TOK_BIT(" cat"), TT_TOK_BIT("'s"), TT_TOK_BIT("'LL"), TT_TOK_BIT("  "),
        TT_TOK_BIT("\n\n"), TT_TOK_BIT("\t"), TT_TOK_BIT("\r\n"), TT_TOK_BIT("\xc2\xa0"),
        TT_TOK_BIT("\xe3\x80\x80"), TT_TOK_BIT("42"), TT_TOK_BIT("\xe6\x97\xa5\xe6\x9c\xac"),
        TT_TOK_BIT("\xf0\x9f\x98\x80"), TT_TOK_BIT("\xcc\x81"), TT_TOK_BIT("\xed\xa0\x80"),
        TT_TOK_BIT("\xed\xbf\xbf"), TT_TOK_BIT("\xc0\xaf"), TT_TOK_BIT("\xe0\x80\xaf"),
        TT_TOK_BIT("\xf0\x80\x80\xaf"), TT_TOK_BIT("\xf4\x90\x80\x80"), TT_TOK_BIT("\xe2\x82"),
        TT_TOK_BIT("\xf0\x9f"), TT_TOK_BIT("\x80"), TT_TOK_BIT("\xff"), TT_TOK_BIT("\xfe"),
        TT_TOK_BIT("<|endoftext|>"), TT_TOK_BIT("<|endoftext"), TT_TOK_BIT("!?"), TT_TOK_BIT("\0"),
        TT_TOK_BIT("\0\0")};
#undef TT_TOK_BIT
    size_t n = 0, want = tt_tok_rand(state) % (room / 2);
    while (n < want) {
        uint32_t r = tt_tok_rand(state) % 10;
        if (r < 3) { /* a random byte */
            out[n++] = (char)(tt_tok_rand(state) & 0xFF);
        } else if (r < 9) {
            size_t k = tt_tok_rand(state) % (sizeof bits / sizeof bits[0]);
            if (n + bits[k].len > room) break;
            memcpy(out + n, bits[k].s, bits[k].len);
            n += bits[k].len;
        } else { /* a long run, for the heap BPE */
            size_t len = 40 + tt_tok_rand(state) % 300, j;
            char c = "a \n1!\xff"[tt_tok_rand(state) % 6];
            for (j = 0; j < len && n < room; j++) out[n++] = c;
        }
    }
    return n;
}

static void test_tok_round_trip_random_bytes(void) {
    enum { ROOM = 4096 };
    static char text[ROOM], back[ROOM + 1];
    static int32_t ids[ROOM + 1];
    uint32_t state = 12345;
    int round, bad = 0;
    TT_REQUIRE(tt_tok() != NULL);
    for (round = 0; round < 1500; round++) {
        size_t len = tt_tok_random_text(&state, text, ROOM), n = 0, back_len = 0, i;
        TT_CHECK_INT(tlens_encode(tt_tok(), text, len, 0, ids, len + 1, &n, NULL), TLENS_OK);
        TT_CHECK(n <= len);
        for (i = 0; i < n; i++) TT_CHECK(ids[i] >= 0 && ids[i] < 50257);
        TT_CHECK_INT(tlens_decode(tt_tok(), ids, n, back, sizeof back, &back_len, NULL), TLENS_OK);
        if (back_len != len || memcmp(back, text, len) != 0) bad++;
    }
    TT_CHECK_INT(bad, 0);
}

/* to_str_tokens: the tokens' bytes, one after the other, are the text. */
static void test_tok_str_tokens(void) {
    static const char *const texts[] = {"Hello world", "naïve café", "日本語のテキスト",
                                        "\xf0\x9f\x98\x80 \xff\x80 x", "  \n\t<|endoftext|>ok"};
    size_t t;
    int32_t ids[64];
    size_t len;
    TT_REQUIRE(tt_tok() != NULL);
    for (t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        char joined[128] = "";
        size_t k = 0, i;
        long n = tt_tok_encode(texts[t], 0, ids, 64);
        for (i = 0; n > 0 && i < (size_t)n; i++) {
            const char *b = tlens_token_bytes(tt_tok(), ids[i], &len);
            TT_REQUIRE(b != NULL && k + len < sizeof joined);
            memcpy(joined + k, b, len);
            k += len;
        }
        TT_CHECK_INT(k, strlen(texts[t]));
        TT_CHECK(memcmp(joined, texts[t], k) == 0);
    }
    TT_CHECK_INT(tt_tok_encode("Hello world", 0, ids, 64), 2);
    TT_CHECK_STR(tlens_token_bytes(tt_tok(), ids[0], NULL), "Hello");
    TT_CHECK_STR(tlens_token_bytes(tt_tok(), ids[1], NULL), " world");
}

/* ---- Decoding ---------------------------------------------------------- */

static void test_tok_decode(void) {
    static const int32_t hello[] = {15496, 995};
    static const int32_t bad[] = {15496, 50257};
    static const int32_t negative[] = {-1};
    char out[32];
    size_t len = 0;
    tlens_error err;
    TT_REQUIRE(tt_tok() != NULL);
    TT_CHECK_INT(tlens_decode(tt_tok(), hello, 2, out, sizeof out, &len, &err), TLENS_OK);
    TT_CHECK_INT(len, 11);
    TT_CHECK_STR(out, "Hello world");
    /* asking for the length, then too little room */
    TT_CHECK_INT(tlens_decode(tt_tok(), hello, 2, NULL, 0, &len, &err), TLENS_OK);
    TT_CHECK_INT(len, 11);
    TT_CHECK_INT(tlens_decode(tt_tok(), hello, 2, out, 5, &len, &err), TLENS_ERR_ARG);
    TT_CHECK_INT(len, 11);
    TT_CHECK_INT(tlens_decode(tt_tok(), hello, 2, out, 11, &len, &err), TLENS_OK); /* no NUL */
    TT_CHECK(memcmp(out, "Hello world", 11) == 0);
    TT_CHECK_INT(tlens_decode(tt_tok(), hello, 0, out, sizeof out, &len, &err), TLENS_OK);
    TT_CHECK_INT(len, 0);
    TT_CHECK_INT(tlens_decode(tt_tok(), bad, 2, out, sizeof out, &len, &err), TLENS_ERR_TOKEN);
    TT_CHECK(strstr(err.message, "50257") != NULL);
    TT_CHECK_INT(tlens_decode(tt_tok(), negative, 1, out, sizeof out, &len, &err), TLENS_ERR_TOKEN);
}

static void test_tok_encode_short_of_room(void) {
    int32_t ids[4] = {-7, -7, -7, -7};
    size_t n = 0;
    tlens_error err;
    TT_REQUIRE(tt_tok() != NULL);
    /* "Hello world, hello" is 4 tokens; room for 2 */
    TT_CHECK_INT(tlens_encode(tt_tok(), "Hello world, hello", 18, 0, ids, 2, &n, &err), TLENS_ERR_ARG);
    TT_CHECK_INT(n, 4);
    TT_CHECK_INT(ids[0], 15496);
    TT_CHECK_INT(ids[1], 995);
    TT_CHECK_INT(ids[2], -7);
    TT_CHECK_INT(tlens_encode(tt_tok(), "", 0, 0, NULL, 0, &n, &err), TLENS_OK);
    TT_CHECK_INT(n, 0);
    TT_CHECK_INT(tlens_encode(tt_tok(), NULL, 0, 0, ids, 4, &n, &err), TLENS_OK);
    TT_CHECK_INT(tlens_encode(tt_tok(), NULL, 3, 0, ids, 4, &n, &err), TLENS_ERR_ARG);
    TT_CHECK_INT(tlens_encode(NULL, "a", 1, 0, ids, 4, &n, &err), TLENS_ERR_ARG);
}

/* ---- TransformerLens conveniences -------------------------------------- */

static void test_tok_to_single_token(void) {
    int32_t id = -1;
    tlens_error err;
    TT_REQUIRE(tt_tok() != NULL);
    TT_CHECK_INT(tlens_to_single_token(tt_tok(), " world", 6, &id, &err), TLENS_OK);
    TT_CHECK_INT(id, 995);
    TT_CHECK_INT(tlens_to_single_token(tt_tok(), "<|endoftext|>", 13, &id, &err), TLENS_OK);
    TT_CHECK_INT(id, 50256);
    TT_CHECK_INT(tlens_to_single_token(tt_tok(), "\n\n", 2, &id, &err), TLENS_OK);
    TT_CHECK_INT(id, 628);
    TT_CHECK_INT(tlens_to_single_token(tt_tok(), "Hello world", 11, &id, &err), TLENS_ERR_ARG);
    TT_CHECK(strstr(err.message, "2 tokens") != NULL);
    TT_CHECK_INT(tlens_to_single_token(tt_tok(), "", 0, &id, &err), TLENS_ERR_ARG);
    TT_CHECK_INT(tlens_to_single_token(tt_tok(), "  a", 3, &id, &err), TLENS_ERR_ARG);
}

static void test_tok_token_position(void) {
    static const int32_t ids[] = {50256, 15496, 995, 11, 995, 0};
    TT_CHECK_INT(tlens_token_position(ids, 6, 995, 0), 2);
    TT_CHECK_INT(tlens_token_position(ids, 6, 995, 1), 4);
    TT_CHECK_INT(tlens_token_position(ids, 6, 50256, 1), 0);
    TT_CHECK_INT(tlens_token_position(ids, 6, 0, 0), 5);
    TT_CHECK_INT(tlens_token_position(ids, 6, 7, 0), -1);
    TT_CHECK_INT(tlens_token_position(ids, 6, 7, 1), -1);
    TT_CHECK_INT(tlens_token_position(ids, 0, 995, 0), -1);
}

/* ---- Loading ------------------------------------------------------------ */

static void tt_tok_check_hello(const tlens_tokenizer *tok) {
    int32_t ids[4];
    size_t n = 0;
    TT_CHECK_INT(tlens_encode(tok, " Hello world", 12, 1, ids, 4, &n, NULL), TLENS_OK);
    TT_CHECK_INT(n, 3);
    TT_CHECK_INT(ids[0], 50256);
    TT_CHECK_INT(ids[1], 18435);
    TT_CHECK_INT(ids[2], 995);
}

static void test_tok_load_files_and_memory(void) {
    tlens_tokenizer *tok = NULL;
    tlens_error err;
    size_t vlen, mlen;
    char *vocab = tt_tok_read(TT_TOK_VOCAB, &vlen), *merges = tt_tok_read(TT_TOK_MERGES, &mlen);
    TT_REQUIRE(vocab && merges);
    TT_CHECK_INT(tlens_tokenizer_load_files(&tok, TT_TOK_VOCAB, TT_TOK_MERGES, NULL, &err), TLENS_OK);
    if (tok) tt_tok_check_hello(tok);
    tlens_tokenizer_free(tok);
    TT_CHECK_INT(tlens_tokenizer_load_memory(&tok, vocab, vlen, merges, mlen, NULL, &err), TLENS_OK);
    if (tok) tt_tok_check_hello(tok);
    tlens_tokenizer_free(tok);
    TT_CHECK_INT(tlens_tokenizer_load_files(&tok, "no/such/vocab.json", TT_TOK_MERGES, NULL, &err), TLENS_ERR_IO);
    TT_CHECK(tok == NULL);
    TT_CHECK_INT(tlens_tokenizer_load(&tok, "tests", NULL, &err), TLENS_ERR_MISSING);
    TT_CHECK(strstr(err.message, "encoder.json") != NULL);
    free(vocab);
    free(merges);
}

/* OpenAI's names: encoder.json + vocab.bpe, in a folder of their own. */
static void test_tok_load_openai_names(void) {
#ifdef TT_TOK_HAVE_MKDIR
#define TT_TOK_OPENAI "build/test-tmp/tokenizer-openai"
    tlens_tokenizer *tok = NULL;
    tlens_error err;
    size_t vlen, mlen;
    char *vocab = tt_tok_read(TT_TOK_VOCAB, &vlen), *merges = tt_tok_read(TT_TOK_MERGES, &mlen);
    TT_REQUIRE(vocab && merges);
    mkdir("build", 0777);
    mkdir("build/test-tmp", 0777);
    mkdir(TT_TOK_OPENAI, 0777);
    TT_CHECK(tt_tok_write(TT_TOK_OPENAI "/encoder.json", vocab, vlen));
    TT_CHECK(tt_tok_write(TT_TOK_OPENAI "/vocab.bpe", merges, mlen));
    TT_CHECK_INT(tlens_tokenizer_load(&tok, TT_TOK_OPENAI, NULL, &err), TLENS_OK);
    if (tok) tt_tok_check_hello(tok);
    tlens_tokenizer_free(tok);
    remove(TT_TOK_OPENAI "/encoder.json");
    remove(TT_TOK_OPENAI "/vocab.bpe");
    free(vocab);
    free(merges);
#else
    TT_SKIP("no mkdir on this system");
#endif
}

/* ---- Malformed files ----------------------------------------------------
 * A small valid tokenizer: the 256 bytes (ids 0..255), then "ab" 256,
 * "abc" 257, "<|endoftext|>" 258; merges "a b", "ab c". Each bad case
 * changes one thing. */

/* The vocab.json text of a byte, as GPT-2 writes it. */
static void tt_tok_byte_json(unsigned b, char *out) {
    unsigned long cp = b;
    size_t k = 0;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
        unsigned c, nth = 0;
        for (c = 0; c < b; c++)
            if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) nth++;
        cp = 0x100 + nth;
    }
    if (cp == '"' || cp == '\\') out[k++] = '\\';
    tt_tok_put_utf8(out, &k, cp);
    out[k] = '\0';
}

/* The small vocabulary with `extra` appended inside the object (before
 * the closing brace), and byte `skip` left out (256 for none). */
static char *tt_tok_small_vocab(const char *extra, unsigned skip) {
    char *out = (char *)malloc(8192), ch[8];
    size_t k = 0;
    unsigned b, id = 0;
    k += (size_t)sprintf(out + k, "{");
    for (b = 0; b < 256; b++) {
        if (b == skip) continue;
        tt_tok_byte_json(b, ch);
        k += (size_t)sprintf(out + k, "\"%s\": %u, ", ch, id++);
    }
    k += (size_t)sprintf(out + k, "\"ab\": %u, \"abc\": %u, \"<|endoftext|>\": %u%s}", id, id + 1,
                         id + 2, extra);
    return out;
}

#define TT_TOK_SMALL_MERGES "#version: 0.2\na b\nab c\n"

/* Load; expect TLENS_ERR_TOKENIZER and these words in the message. */
static void tt_tok_expect_bad(int line, const char *vocab, size_t vlen, const char *merges,
                              size_t mlen, const char *words) {
    static int not_a_tokenizer;
    tlens_tokenizer *tok = (tlens_tokenizer *)(void *)&not_a_tokenizer; /* must become NULL */
    tlens_error err;
    tlens_result r = tlens_tokenizer_load_memory(&tok, vocab, vlen, merges, mlen, NULL, &err);
    if (r != TLENS_ERR_TOKENIZER || !strstr(err.message, words) || tok != NULL) {
        tt_fail_line(__FILE__, line, "result %d, message \"%s\", expected \"%s\"", (int)r,
                     r ? err.message : "", words);
        if (r == TLENS_OK) tlens_tokenizer_free(tok);
    }
}

static void tt_tok_bad_vocab(int line, const char *extra, const char *words) {
    char *vocab = tt_tok_small_vocab(extra, 256);
    tt_tok_expect_bad(line, vocab, strlen(vocab), TT_TOK_SMALL_MERGES,
                      strlen(TT_TOK_SMALL_MERGES), words);
    free(vocab);
}

static void tt_tok_bad_merges(int line, const char *merges, const char *words) {
    char *vocab = tt_tok_small_vocab("", 256);
    tt_tok_expect_bad(line, vocab, strlen(vocab), merges, strlen(merges), words);
    free(vocab);
}

static void test_tok_small_vocab_is_valid(void) {
    char *vocab = tt_tok_small_vocab("", 256);
    tlens_tokenizer *tok = NULL;
    tlens_error err;
    int32_t ids[8];
    size_t n = 0;
    TT_CHECK_INT(tlens_tokenizer_load_memory(&tok, vocab, strlen(vocab), TT_TOK_SMALL_MERGES,
                                             strlen(TT_TOK_SMALL_MERGES), NULL, &err), TLENS_OK);
    TT_REQUIRE(tok != NULL);
    TT_CHECK_INT(tlens_tokenizer_vocab_size(tok), 259);
    TT_CHECK_INT(tlens_encode(tok, "abcab<|endoftext|>", 18, 0, ids, 8, &n, NULL), TLENS_OK);
    TT_CHECK_INT(n, 3);
    TT_CHECK_INT(ids[0], 257);
    TT_CHECK_INT(ids[1], 256);
    TT_CHECK_INT(ids[2], 258);
    tlens_tokenizer_free(tok);
    free(vocab);
}

static void test_tok_malformed_vocab(void) {
    char *good = tt_tok_small_vocab("", 256), *missing_byte = tt_tok_small_vocab("", 65);
    size_t len = strlen(good), before_ab = (size_t)(strstr(good, "\"ab\"") - good);
    tt_tok_expect_bad(__LINE__, good, len / 2, TT_TOK_SMALL_MERGES, 23, "vocab.json: line 1, column");
    tt_tok_expect_bad(__LINE__, good, before_ab, TT_TOK_SMALL_MERGES, 23,
                      "unexpected end of file, expected a token (a string)");
    tt_tok_expect_bad(__LINE__, good, before_ab + 2, TT_TOK_SMALL_MERGES, 23, "unterminated string");
    tt_tok_expect_bad(__LINE__, good, len - 1, TT_TOK_SMALL_MERGES, 23, "expected ',' or '}'");
    tt_tok_expect_bad(__LINE__, "", 0, TT_TOK_SMALL_MERGES, 23, "vocab.json: empty file");
    tt_tok_expect_bad(__LINE__, "{}", 2, TT_TOK_SMALL_MERGES, 23, "no tokens");
    tt_tok_expect_bad(__LINE__, "[1]", 3, TT_TOK_SMALL_MERGES, 23, "expected '{'");
    tt_tok_expect_bad(__LINE__, missing_byte, strlen(missing_byte), TT_TOK_SMALL_MERGES, 23,
                      "no token for the byte 65");
    tt_tok_bad_vocab(__LINE__, ", \"x\\qy\": 259", "bad escape \\q");
    tt_tok_bad_vocab(__LINE__, ", \"x\\u12\": 259", "\\u needs four hex digits");
    tt_tok_bad_vocab(__LINE__, ", \"x\\udc00\": 259", "unpaired low surrogate");
    tt_tok_bad_vocab(__LINE__, ", \"x\\ud83dy\": 259", "without a low surrogate");
    tt_tok_bad_vocab(__LINE__, ", \"\\ud83d\\ude00\": 259", "U+1F600 is not a character of GPT-2's byte alphabet");
    tt_tok_bad_vocab(__LINE__, ", \"x\ty\": 259", "control character");
    tt_tok_bad_vocab(__LINE__, ", \"x\xff\": 259", "invalid UTF-8");
    tt_tok_bad_vocab(__LINE__, ", \"\": 259", "empty token");
    tt_tok_bad_vocab(__LINE__, ", \"ab\": 259", "duplicate token \"ab\"");
    tt_tok_bad_vocab(__LINE__, ", \"a\\u0062\": 259", "duplicate token"); /* "ab" again */
    tt_tok_bad_vocab(__LINE__, ", \"xy\": 257", "id 257 is given to two tokens");
    tt_tok_bad_vocab(__LINE__, ", \"xy\": 260", "id 260 is out of range"); /* 259 is missing */
    tt_tok_bad_vocab(__LINE__, ", \"xy\": -1", "negative id");
    tt_tok_bad_vocab(__LINE__, ", \"xy\": 0259", "leading zero");
    tt_tok_bad_vocab(__LINE__, ", \"xy\": 259.0", "ids must be integers");
    tt_tok_bad_vocab(__LINE__, ", \"xy\": 99999999999", "id too large");
    tt_tok_bad_vocab(__LINE__, ", \"xy\": \"259\"", "expected a token id");
    tt_tok_bad_vocab(__LINE__, ", \"xy\" 259", "expected ':'");
    tt_tok_bad_vocab(__LINE__, ",", "expected a token (a string)");
    tt_tok_bad_vocab(__LINE__, "} x", "unexpected text after the JSON object");
    tt_tok_bad_vocab(__LINE__, ", \"\\u00e9\\u0144\": 259", "U+0144 is not a character");
    free(good);
    free(missing_byte);
}

static void test_tok_malformed_merges(void) {
    tt_tok_bad_merges(__LINE__, "", "merges.txt: empty file");
    tt_tok_bad_merges(__LINE__, "#version: 0.2\n", "no merges");
    tt_tok_bad_merges(__LINE__, "#version: 0.2\na b\nab zz\n", "merges.txt: line 3, column 4: unknown token zz");
    tt_tok_bad_merges(__LINE__, "a b\nb c\n", "line 2, column 1: the merge \"b c\" makes a token that is not in the vocabulary");
    tt_tok_bad_merges(__LINE__, "ab c\na b\n", "token ab is not a byte and no earlier merge makes it");
    tt_tok_bad_merges(__LINE__, "a b\na b\n", "the merge \"a b\" makes the same token as line 1");
    tt_tok_bad_merges(__LINE__, "a b\n\nab c\n", "line 2, column 1: expected two tokens separated by one space");
    tt_tok_bad_merges(__LINE__, "a b\nab  c\n", "line 2, column 1: expected two tokens");
    tt_tok_bad_merges(__LINE__, "a b\nabc\n", "expected two tokens");
    tt_tok_bad_merges(__LINE__, "a b c\n", "expected two tokens");
    tt_tok_bad_merges(__LINE__, "a b\n c\n", "expected two tokens");
    tt_tok_bad_merges(__LINE__, "a \xff\n", "invalid UTF-8");
    tt_tok_bad_merges(__LINE__, "a \xc5\x84\n", "U+0144 is not a character");
}

static void test_tok_merges_line_ends(void) {
    char *vocab = tt_tok_small_vocab("", 256);
    tlens_tokenizer *tok = NULL;
    tlens_error err;
    TT_CHECK_INT(tlens_tokenizer_load_memory(&tok, vocab, strlen(vocab), "a b\r\nab c", 9, NULL, &err), TLENS_OK);
    tlens_tokenizer_free(tok);
    free(vocab);
}

/* Truncating the real files anywhere, or damaging bytes of the small one,
 * must give a clean result or TLENS_ERR_TOKENIZER, never a crash (run
 * under the sanitizers and valgrind). */
static void test_tok_damaged_files(void) {
    size_t vlen, mlen, cut;
    char *vocab = tt_tok_read(TT_TOK_VOCAB, &vlen), *merges = tt_tok_read(TT_TOK_MERGES, &mlen);
    char *small = tt_tok_small_vocab("", 256);
    size_t slen = strlen(small);
    uint32_t state = 777;
    int round;
    TT_REQUIRE(vocab && merges);
    for (cut = 1; cut < vlen; cut += vlen / 7 + 1) {
        tlens_tokenizer *tok = NULL;
        TT_CHECK_INT(tlens_tokenizer_load_memory(&tok, vocab, cut, merges, mlen, NULL, NULL), TLENS_ERR_TOKENIZER);
        TT_CHECK(tok == NULL);
    }
    for (cut = 1; cut < mlen; cut += mlen / 7 + 1) {
        tlens_tokenizer *tok = NULL;
        tlens_result r = tlens_tokenizer_load_memory(&tok, vocab, vlen, merges, cut, NULL, NULL);
        TT_CHECK(r == TLENS_OK || r == TLENS_ERR_TOKENIZER);
        tlens_tokenizer_free(tok);
    }
    for (round = 0; round < 3000; round++) {
        char *copy = (char *)malloc(slen);
        tlens_tokenizer *tok = NULL;
        tlens_result r;
        int k;
        memcpy(copy, small, slen);
        for (k = 0; k < 3; k++) copy[tt_tok_rand(&state) % slen] = (char)(tt_tok_rand(&state) & 0xFF);
        r = tlens_tokenizer_load_memory(&tok, copy, slen, TT_TOK_SMALL_MERGES, 23, NULL, NULL);
        TT_CHECK(r == TLENS_OK || r == TLENS_ERR_TOKENIZER);
        tlens_tokenizer_free(tok);
        free(copy);
    }
    free(vocab);
    free(merges);
    free(small);
}

/* ---- The allocator ---------------------------------------------------- */

typedef struct tt_tok_counter {
    long live, calls, fail_at; /* fail the fail_at-th allocation (0: never) */
} tt_tok_counter;

static void *tt_tok_counting_alloc(size_t size, void *user) {
    tt_tok_counter *c = (tt_tok_counter *)user;
    if (++c->calls == c->fail_at) return NULL;
    c->live++;
    return malloc(size);
}

static void tt_tok_counting_free(void *p, void *user) {
    ((tt_tok_counter *)user)->live--;
    free(p);
}

/* Everything goes through the given allocator and comes back; a failed
 * allocation anywhere is TLENS_ERR_NOMEM without a leak. */
static void test_tok_allocator(void) {
    char *small = tt_tok_small_vocab("", 256), text[600];
    tt_tok_counter c = {0, 0, 0};
    tlens_allocator a;
    tlens_tokenizer *tok = NULL;
    int32_t ids[601];
    size_t n, load_calls;
    long k;
    a.alloc = tt_tok_counting_alloc;
    a.free = tt_tok_counting_free;
    a.user = &c;
    memset(text, 'a', sizeof text); /* one long pre-token: heap BPE memory */
    TT_CHECK_INT(tlens_tokenizer_load_memory(&tok, small, strlen(small), TT_TOK_SMALL_MERGES, 23, &a, NULL), TLENS_OK);
    TT_REQUIRE(tok != NULL);
    load_calls = (size_t)c.calls;
    TT_CHECK_INT(tlens_encode(tok, text, sizeof text, 0, ids, 601, &n, NULL), TLENS_OK);
    TT_CHECK_INT(n, 600);
    c.fail_at = c.calls + 1;
    TT_CHECK_INT(tlens_encode(tok, text, sizeof text, 0, ids, 601, &n, NULL), TLENS_ERR_NOMEM);
    tlens_tokenizer_free(tok);
    TT_CHECK_INT(c.live, 0);
    for (k = 1; k <= (long)load_calls; k++) { /* fail each allocation of loading in turn */
        c.calls = 0;
        c.fail_at = k;
        tok = NULL;
        TT_CHECK_INT(tlens_tokenizer_load_memory(&tok, small, strlen(small), TT_TOK_SMALL_MERGES, 23, &a, NULL), TLENS_ERR_NOMEM);
        TT_CHECK(tok == NULL);
        TT_CHECK_INT(c.live, 0);
    }
    free(small);
}

void tests_tokenizer(void) {
    TT_RUN(test_tok_tiktoken_cases);
    TT_RUN(test_tok_tiktoken_random_cases);
    TT_RUN(test_tok_prepend_bos);
    TT_RUN(test_tok_endoftext_in_text);
    TT_RUN(test_tok_vocab_size_and_token_bytes);
    TT_RUN(test_tok_invalid_utf8_bytes);
    TT_RUN(test_tok_round_trip_random_bytes);
    TT_RUN(test_tok_str_tokens);
    TT_RUN(test_tok_decode);
    TT_RUN(test_tok_encode_short_of_room);
    TT_RUN(test_tok_to_single_token);
    TT_RUN(test_tok_token_position);
    TT_RUN(test_tok_load_files_and_memory);
    TT_RUN(test_tok_load_openai_names);
    TT_RUN(test_tok_small_vocab_is_valid);
    TT_RUN(test_tok_malformed_vocab);
    TT_RUN(test_tok_malformed_merges);
    TT_RUN(test_tok_merges_line_ends);
    TT_RUN(test_tok_damaged_files);
    TT_RUN(test_tok_allocator);
    tlens_tokenizer_free(tt_tok_gpt2);
    tt_tok_gpt2 = NULL;
}
