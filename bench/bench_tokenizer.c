/* bench_tokenizer.c - how fast tlens loads the GPT-2 tokenizer and encodes
 * text on one core, next to OpenAI's tiktoken (npm, WebAssembly) on the
 * same text. From the repository root:
 *
 *   cc -std=c99 -O2 -I. -o build/bench_tokenizer bench/bench_tokenizer.c -lm
 *   build/bench_tokenizer
 *
 * The text (about 4 MB) is built the same way every time from real text on
 * the machine: English prose (the licenses in /usr/share/common-licenses),
 * C code (glibc's headers in /usr/include) and the multilingual texts of
 * tests/data/tokenizer/cases.jsonl (Chinese, Japanese, Korean, emoji,
 * scripts of all kinds), cut into paragraphs and interleaved. It is written
 * to build/bench_tokenizer.txt for tiktoken (bench/tiktoken/bench.js, run
 * when node and bench/tiktoken/node_modules are there: cd bench/tiktoken &&
 * npm install).
 *
 * Prints: tokenizer_load_ms, tokenizer_encode_mb_s (medians), and with
 * tiktoken also tiktoken_encode_mb_s and tokenizer_vs_tiktoken (the ratio).
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEXT_PATH "build/bench_tokenizer.txt"
#define TIKTOKEN_OUT "build/bench_tokenizer_tiktoken.txt"

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void append(text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1);
        t->p = (char *)realloc(t->p, t->cap);
        if (!t->p) exit(1);
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void append_file(text *t, const char *path) {
    char buf[65536];
    size_t n;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) append(t, buf, n);
    fclose(f);
}

/* The "text" strings of a cases.jsonl file that hold non-ASCII text. */
static void append_case_texts(text *t, const char *path) {
    text all = {NULL, 0, 0};
    const char *p;
    append_file(&all, path);
    for (p = all.p; p && (p = strstr(p, "{\"text\":\"")) != NULL;) {
        text one = {NULL, 0, 0};
        int non_ascii = 0;
        for (p += 9; *p && *p != '"'; p++) {
            char c = *p;
            if (c == '\\') {
                c = *++p;
                if (c == 'n') c = '\n';
                else if (c == 't') c = '\t';
                else if (c == 'u') { p += 4; continue; } /* rare escapes: left out */
            }
            non_ascii |= (unsigned char)c >= 0x80;
            append(&one, &c, 1);
        }
        if (non_ascii && one.len) {
            append(t, one.p, one.len);
            append(t, "\n\n", 2);
        }
        free(one.p);
    }
    free(all.p);
}

/* Paragraphs: pieces ending in a blank line (or at most 4 KB). */
typedef struct paragraphs {
    const char *src;
    size_t len, pos;
} paragraphs;

static size_t next_paragraph(paragraphs *ps, const char **start) {
    const char *s = ps->src + ps->pos, *end;
    size_t n;
    if (ps->len == 0) return 0;
    if (ps->pos >= ps->len) ps->pos = 0, s = ps->src; /* start over */
    end = strstr(s, "\n\n");
    n = end ? (size_t)(end - s) + 2 : ps->len - ps->pos;
    if (n > 4096) n = 4096;
    *start = s;
    ps->pos += n;
    return n;
}

static text build_text(size_t target) {
    static const char *const licenses[] = {"Apache-2.0", "Artistic", "BSD", "CC0-1.0", "GFDL-1.3",
                                           "GPL-2", "GPL-3", "LGPL-2.1", "LGPL-3", "MPL-1.1", "MPL-2.0"};
    static const char *const headers[] = {"elf.h", "math.h", "pthread.h", "unistd.h", "stdlib.h",
                                          "wchar.h", "stdio.h", "netdb.h", "regex.h", "argp.h",
                                          "string.h", "time.h", "signal.h", "fcntl.h", "locale.h"};
    static const double share[3] = {0.45, 0.35, 0.20}; /* of the bytes: prose, code, world */
    text prose = {NULL, 0, 0}, code = {NULL, 0, 0}, world = {NULL, 0, 0}, out = {NULL, 0, 0};
    char path[256];
    size_t i, emitted[3] = {0, 0, 0};
    paragraphs src[3];
    for (i = 0; i < sizeof licenses / sizeof licenses[0]; i++) {
        sprintf(path, "/usr/share/common-licenses/%s", licenses[i]);
        append_file(&prose, path);
    }
    for (i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        sprintf(path, "/usr/include/%s", headers[i]);
        append_file(&code, path);
    }
    append_case_texts(&world, "tests/data/tokenizer/cases.jsonl");
    src[0].src = prose.p, src[0].len = prose.len, src[0].pos = 0;
    src[1].src = code.p, src[1].len = code.len, src[1].pos = 0;
    src[2].src = world.p, src[2].len = world.len, src[2].pos = 0;
    if (!prose.len && !code.len && !world.len) {
        fprintf(stderr, "bench_tokenizer: no text found (run from the repository root)\n");
        exit(1);
    }
    /* interleave paragraphs, each from the source furthest below its share */
    while (out.len < target) {
        const char *s = NULL;
        size_t k = 0, n;
        for (i = 1; i < 3; i++)
            if (src[i].len && (!src[k].len || emitted[i] / share[i] < emitted[k] / share[k])) k = i;
        n = next_paragraph(&src[k], &s);
        append(&out, s, n);
        emitted[k] += n;
    }
    printf("tokenizer_bench_text_bytes %zu (prose %zu, code %zu, multilingual %zu)\n", out.len,
           emitted[0], emitted[1], emitted[2]);
    free(prose.p);
    free(code.p);
    free(world.p);
    return out;
}

static double seconds(void) {
    return (double)clock() / CLOCKS_PER_SEC;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return v[n / 2];
}

/* Run bench/tiktoken/bench.js on the text; its MB/s, or 0. */
static double run_tiktoken(size_t *tokens) {
    char line[256];
    double rate = 0;
    FILE *f = fopen("bench/tiktoken/node_modules/tiktoken/package.json", "rb");
    if (!f) {
        printf("# tiktoken: not installed (cd bench/tiktoken && npm install)\n");
        return 0;
    }
    fclose(f);
    if (system("node bench/tiktoken/bench.js " TEXT_PATH " > " TIKTOKEN_OUT) != 0) {
        printf("# tiktoken: node bench/tiktoken/bench.js failed\n");
        return 0;
    }
    if (!(f = fopen(TIKTOKEN_OUT, "rb"))) return 0;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "tiktoken_encode_mb_s %lf", &rate);
        sscanf(line, "tiktoken_tokens %zu", tokens);
    }
    fclose(f);
    return rate;
}

int main(void) {
    enum { LOADS = 9, ENCODES = 5 };
    double load_ms[LOADS], rates[ENCODES], rate, tiktoken;
    tlens_tokenizer *tok = NULL;
    tlens_error err;
    text t = build_text(4000000);
    int32_t *ids = (int32_t *)malloc((t.len + 1) * sizeof *ids);
    size_t n = 0, tiktoken_tokens = 0;
    FILE *f;
    int i;
    for (i = 0; i < LOADS; i++) {
        double start = seconds();
        if (tlens_tokenizer_load(&tok, "tokenizer", NULL, &err) != TLENS_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.message);
            return 1;
        }
        load_ms[i] = 1000 * (seconds() - start);
        if (i + 1 < LOADS) tlens_tokenizer_free(tok);
    }
    tlens_encode(tok, t.p, t.len, 0, ids, t.len + 1, &n, NULL); /* warm-up */
    for (i = 0; i < ENCODES; i++) {
        double start = seconds();
        if (tlens_encode(tok, t.p, t.len, 0, ids, t.len + 1, &n, &err) != TLENS_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.message);
            return 1;
        }
        rates[i] = (double)t.len / 1e6 / (seconds() - start);
    }
    rate = median(rates, ENCODES);
    printf("tokenizer_tokens %zu\n", n);
    printf("tokenizer_load_ms %.2f\n", median(load_ms, LOADS));
    printf("tokenizer_encode_mb_s %.2f\n", rate);
    fflush(stdout);
    if ((f = fopen(TEXT_PATH, "wb")) != NULL) {
        fwrite(t.p, 1, t.len, f);
        fclose(f);
        if ((tiktoken = run_tiktoken(&tiktoken_tokens)) > 0) {
            printf("tiktoken_encode_mb_s %.2f\n", tiktoken);
            printf("tokenizer_vs_tiktoken %.2f\n", rate / tiktoken);
            if (tiktoken_tokens != n)
                printf("# warning: tiktoken made %zu tokens, tlens %zu\n", tiktoken_tokens, n);
        }
    }
    tlens_tokenizer_free(tok);
    free(ids);
    free(t.p);
    return 0;
}
