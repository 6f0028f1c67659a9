/* example_common.h - what the example programs share: the command line
 * (MODEL, --tokens), loading a model, and the two functions that turn text
 * into tokens and tokens into text.
 *
 * Include it after tlens.h. A helper that fails prints one line on stderr
 * and ends the program with status 1, so that each example reads as the
 * experiment it runs rather than as error handling.
 *
 * The helpers are `static inline` only so that an example which does not
 * use one of them compiles without an unused-function warning.
 */
#ifndef EXAMPLE_COMMON_H
#define EXAMPLE_COMMON_H

#include "tlens.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The program's name in messages, set by ex_args_begin. */
static const char *ex_program = "example";
static const char *ex_usage_text = "";

static inline void ex_die(const char *fmt, ...) {
    va_list ap;
    fflush(stdout); /* what was printed so far comes before the message */
    fprintf(stderr, "%s: ", ex_program);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

/* Stop with tlens' own message (it names the file, tensor or value). */
static inline void ex_check(tlens_result r, const tlens_error *err) {
    if (r != TLENS_OK) ex_die("%s", err->message);
}

static inline void *ex_malloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) ex_die("out of memory");
    return p;
}

/* ---- the command line ------------------------------------------------- */

/* What every example takes: MODEL and a prompt. */
typedef struct ex_common {
    const char *model_path; /* a Hugging Face GPT-2 folder or a .tlens file */
    const char *tokens;     /* --tokens "1 2 3": token ids, as the CLI takes */
    const char *prompt;     /* --prompt TEXT: see ex_text_to_tokens         */
} ex_common;

static inline void ex_args_begin(ex_common *c, const char *program, const char *usage) {
    memset(c, 0, sizeof *c);
    ex_program = program;
    ex_usage_text = usage;
}

/* If argv[*i] is the option `name`, step over it and return its value. */
static inline const char *ex_value(int argc, char **argv, int *i, const char *name) {
    if (strcmp(argv[*i], name) != 0) return NULL;
    if (*i + 1 >= argc) ex_die("option %s needs a value", name);
    return argv[++*i];
}

/* A whole decimal integer, or the program stops naming the option. */
static inline int ex_int(const char *text, const char *what) {
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < -2147483647L || v > 2147483647L)
        ex_die("%s takes an integer, not \"%s\"", what, text);
    return (int)v;
}

/* The arguments every example knows; anything else is a mistake. */
static inline void ex_args_common(ex_common *c, int argc, char **argv, int *i) {
    const char *v;
    if ((v = ex_value(argc, argv, i, "--tokens"))) c->tokens = v;
    else if ((v = ex_value(argc, argv, i, "--prompt"))) c->prompt = v;
    else if (!strcmp(argv[*i], "-h") || !strcmp(argv[*i], "--help")) {
        printf("usage: %s %s\n", ex_program, ex_usage_text);
        exit(0);
    } else if (argv[*i][0] == '-') {
        fprintf(stderr, "usage: %s %s\n", ex_program, ex_usage_text);
        ex_die("unknown option %s", argv[*i]);
    } else if (c->model_path) {
        ex_die("unexpected argument %s (MODEL is %s)", argv[*i], c->model_path);
    } else {
        c->model_path = argv[*i];
    }
}

/* The model used when none is named: $TLENS_MODEL if set, else the small
 * GPT-2 bundled with tlens (the Makefile sets TLENS_DEFAULT_MODEL to the
 * repository's models/kjv.tlens). */
#ifndef TLENS_DEFAULT_MODEL
#define TLENS_DEFAULT_MODEL "models/kjv.tlens"
#endif
static inline const char *ex_default_model(void) {
    const char *env = getenv("TLENS_MODEL");
    return env && *env ? env : TLENS_DEFAULT_MODEL;
}

static inline void ex_args_end(ex_common *c) {
    if (!c->model_path) c->model_path = ex_default_model();
}

/* ---- the model -------------------------------------------------------- */

/* Load as TransformerLens' from_pretrained does by default: fold_ln,
 * center_writing_weights, center_unembed, fold_value_biases. */
static inline tlens_model *ex_load(const char *path) {
    tlens_model *model;
    tlens_error err;
    ex_check(tlens_load(&model, path, NULL, &err), &err);
    return model;
}

/* A run context: the hooks, the cache and the activations of one run. */
static inline tlens_ctx *ex_context(const tlens_model *model) {
    tlens_ctx *ctx;
    tlens_error err;
    ex_check(tlens_ctx_new(&ctx, model, &err), &err);
    return ctx;
}

/* ---- token ids -------------------------------------------------------- */

/* "1 2 3" (spaces, tabs or commas between ids) -> n ids. One prompt only:
 * the CLI's ';' between batch rows is refused. */
static inline int32_t *ex_parse_ids(const char *text, const char *what, int *n) {
    int32_t *ids = (int32_t *)ex_malloc((strlen(text) / 2 + 1) * sizeof *ids);
    const char *p = text;
    *n = 0;
    while (*p) {
        char *end;
        long v;
        if (*p == ' ' || *p == ',' || *p == '\t') { p++; continue; }
        if (*p == ';') ex_die("%s takes one prompt, without ';'", what);
        v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 2147483647L) ex_die("%s: bad token id list \"%s\"", what, text);
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
    return ids;
}

/* Catch bad ids here, with the prompt's name, rather than deep in a run. */
static inline void ex_check_ids(const tlens_model *model, const int32_t *ids, int n, const char *what) {
    const tlens_config *cfg = tlens_model_config(model);
    int i;
    if (n < 1) ex_die("%s is empty", what);
    if (n > cfg->n_ctx) ex_die("%s has %d tokens; the model takes at most n_ctx = %d", what, n, cfg->n_ctx);
    for (i = 0; i < n; i++)
        if (ids[i] >= cfg->d_vocab)
            ex_die("%s: token %d at position %d is outside the vocabulary (d_vocab %d)", what, (int)ids[i], i,
                   cfg->d_vocab);
}

/* ======================================================================
 * TEXT <-> TOKENS, with the tokenizer that came with the model (its
 * folder's vocab.json + merges.txt, or the one in its .tlens file). Models
 * without one (the test checkpoints) take and show bare ids.
 * ====================================================================== */

/* As TransformerLens' to_tokens: <|endoftext|> first, then the text. */
static inline int32_t *ex_text_to_tokens(const tlens_model *model, const char *text, int *n) {
    const tlens_tokenizer *tok = tlens_model_tokenizer(model);
    size_t len = strlen(text), count = 0;
    int32_t *ids;
    tlens_error err;
    if (!tok) ex_die("this model has no tokenizer; give token ids with --tokens");
    ids = (int32_t *)ex_malloc((len + 2) * sizeof *ids);
    ex_check(tlens_encode(tok, text, len, 1, ids, len + 2, &count, &err), &err);
    *n = (int)count;
    return ids;
}

/* How a token is shown to a reader: its text when the model has a
 * tokenizer (bytes as they are; the SVG/HTML writers escape them), else
 * its id. */
static inline void ex_token_label(const tlens_model *model, int32_t token, char *out, size_t cap) {
    const tlens_tokenizer *tok = tlens_model_tokenizer(model);
    size_t len = 0;
    const char *bytes = tok ? tlens_token_bytes(tok, token, &len) : NULL;
    if (!bytes) {
        snprintf(out, cap, "%d", (int)token);
        return;
    }
    if (len >= cap) len = cap - 1;
    memcpy(out, bytes, len);
    out[len] = 0;
}
/* ====================================================================== */

/* The prompt from --tokens (or --prompt), checked against the model. */
static inline int32_t *ex_prompt_tokens(const tlens_model *model, const ex_common *c, int *n) {
    int32_t *ids = NULL;
    if (c->tokens) ids = ex_parse_ids(c->tokens, "--tokens", n);
    else if (c->prompt) ids = ex_text_to_tokens(model, c->prompt, n);
    else ex_die("give the prompt as token ids: --tokens \"1 2 3\"");
    ex_check_ids(model, ids, *n, c->tokens ? "--tokens" : "--prompt");
    return ids;
}

/* "title: label label ..." */
static inline void ex_print_tokens(const tlens_model *model, const char *title, const int32_t *ids, int n) {
    char label[256];
    int i;
    printf("%s:", title);
    for (i = 0; i < n; i++) {
        ex_token_label(model, ids[i], label, sizeof label);
        printf(" %s", label);
    }
    printf("\n");
}

/* ---- escaping token text for XML and JSON ----------------------------- */

/* Decode one UTF-8 character at s into *cp and return its length. An
 * invalid or cut-off sequence (a GPT-2 token may end inside a character)
 * counts as one byte and becomes U+FFFD. */
static inline int ex_utf8_next(const unsigned char *s, unsigned long *cp) {
    int len, k;
    unsigned long c;
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) { len = 2; c = s[0] & 0x1Fu; }
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) { len = 3; c = s[0] & 0x0Fu; }
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) { len = 4; c = s[0] & 0x07u; }
    else { *cp = 0xFFFD; return 1; }
    for (k = 1; k < len; k++) { /* stops at the terminating NUL too */
        if ((s[k] & 0xC0) != 0x80) { *cp = 0xFFFD; return 1; }
        c = (c << 6) | (s[k] & 0x3Fu);
    }
    /* overlong forms, surrogates, > U+10FFFF and the non-characters XML
     * forbids are not text either */
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) || (c >= 0xD800 && c <= 0xDFFF) ||
        c == 0xFFFE || c == 0xFFFF) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = c;
    return len;
}

/* Write s as XML text or attribute content (json = 0), or as the inside
 * of a JSON string that may sit in an HTML <script> (json = 1). Control
 * characters, which XML 1.0 cannot hold at all, are shown as \xNN. */
static inline void ex_write_escaped(FILE *f, const char *s, int json) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned long c;
        int len = ex_utf8_next(p, &c);
        if (json && (c == '"' || c == '\\')) fprintf(f, "\\%c", (int)c);
        else if (json && (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x2028 || c == 0x2029))
            fprintf(f, "\\u%04lx", c); /* "</script>" can never appear */
        else if (!json && c < 0x20) fprintf(f, "\\x%02lx", c);
        else if (!json && c == '&') fputs("&amp;", f);
        else if (!json && c == '<') fputs("&lt;", f);
        else if (!json && c == '>') fputs("&gt;", f);
        else if (!json && c == '"') fputs("&quot;", f);
        else if (!json && c == '\'') fputs("&apos;", f);
        else if (c == 0xFFFD && len == 1) fputs("\xEF\xBF\xBD", f);
        else fwrite(p, 1, (size_t)len, f);
        p += len;
    }
}

#endif /* EXAMPLE_COMMON_H */
