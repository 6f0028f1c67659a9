/* tlens - the command-line tool.
 *
 *   tlens run [MODEL] (--prompt TEXT | --tokens "1 2 3;4 5 6" | --tokens-npy FILE)
 *             [--raw] [--no-fold-ln] [--no-center-writing-weights]
 *             [--no-center-unembed] [--no-fold-value-biases] [--f16|--bf16]
 *             [--optional-hooks] [--cache GLOB]... [--npy DIR] [--top K]
 *             [--zero NAME[:HEAD]]... [--patch NAME=FILE.npy]... [--loss]
 *             [--add NAME=FILE.npy[*COEF][@POS,POS...]]... [--interventions FILE.json]
 *             [--sae DIR [--sae-no-error] [--sae-top K]]...
 *   tlens generate [MODEL] (--prompt TEXT | --tokens "1 2 3") [-n N]
 *             [--temperature T] [--top-k K] [--top-p P] [--seed S] [--print-ids]
 *             [--add NAME=FILE.npy[*COEF][@POS,POS...]]... [--interventions FILE.json]
 *             [--sae DIR [--sae-no-error]]...
 *   tlens steer-vector [MODEL] --positive FILE --negative FILE --hook NAME -o VEC.npy
 *             [--last-token] [--include-bos] [--pca] [--no-bos] [--interventions FILE.json]
 *   tlens hooks [MODEL] [--optional-hooks] [--sae DIR]...
 *   tlens tokenize [--tokenizer DIR] [--prepend-bos] (TEXT | --file PATH | --jsonl PATH)
 *
 * MODEL is a Hugging Face GPT-2 folder or a .tlens file; without one, the
 * small GPT-2 bundled in models/kjv.tlens (or $TLENS_MODEL). --sae DIR
 * attaches a sparse autoencoder saved by SAELens (cfg.json +
 * sae_weights.safetensors) at the hook point it names, with the error term
 * unless --sae-no-error (the model's output is then unchanged until its
 * features are edited); its points (NAME.hook_sae_acts_post ...) work with
 * --cache, --zero (the number after ':' picks a feature) and --patch;
 * --sae-top K prints each position's K most active features. Every error
 * ends the program with status 1 and one line on stderr naming the problem.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "example_common.h" /* ex_default_model */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#include <sys/types.h>
#define TLENS_CLI_MKDIR(dir) mkdir(dir, 0777)
#else
#define TLENS_CLI_MKDIR(dir) ((void)(dir), 0)
#endif

#define MAX_GLOBS 64
#define MAX_SAES 16

/* GPT-2's tokenizer, for models that come without one (set by the Makefile
 * to the repository's tokenizer/ folder). */
#ifndef TLENS_TOKENIZER_DIR
#define TLENS_TOKENIZER_DIR "tokenizer"
#endif

typedef struct cli {
    const char *model_path;
    const char *prompt, *tokens_text, *tokens_npy, *npy_dir, *tokenizer_dir, *file, *jsonl, *text;
    const char *globs[MAX_GLOBS], *zeros[MAX_GLOBS], *patches[MAX_GLOBS];
    int n_globs, n_zeros, n_patches, top, optional_hooks, no_bos, prepend_bos, loss, print_ids;
    /* steering and intervention files */
    const char *adds[MAX_GLOBS], *interventions, *positive, *negative, *hook, *out_path;
    int n_adds;
    tlens_steer_options steer;
    const char *saes[MAX_SAES];
    int n_saes, sae_no_error, sae_top;
    tlens_load_options load;
    tlens_generate_options gen;
} cli;

static int die(const char *fmt, const char *arg) {
    fprintf(stderr, "tlens: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: tlens run [MODEL] (--prompt TEXT | --tokens \"1 2 3;4 5 6\" | --tokens-npy FILE)\n"
            "                 [--raw] [--no-fold-ln] [--no-center-writing-weights] [--no-center-unembed]\n"
            "                 [--no-fold-value-biases] [--f16|--bf16] [--optional-hooks]\n"
            "                 [--cache GLOB]... [--npy DIR] [--top K]\n"
            "                 [--zero NAME[:HEAD]]... [--patch NAME=FILE.npy]... [--loss]\n"
            "                 [--add NAME=FILE.npy[*COEF][@POS,POS...]]... [--interventions FILE.json]\n"
            "                 [--sae DIR [--sae-no-error] [--sae-top K]]...\n"
            "       tlens generate [MODEL] (--prompt TEXT | --tokens \"1 2 3\") [-n N] [--temperature T]\n"
            "                 [--top-k K] [--top-p P] [--seed S] [--print-ids]\n"
            "                 [--add NAME=FILE.npy[*COEF][@POS,POS...]]... [--interventions FILE.json]\n"
            "                 [--sae DIR [--sae-no-error]]...\n"
            "       tlens steer-vector [MODEL] --positive FILE --negative FILE --hook NAME -o VEC.npy\n"
            "                 [--last-token] [--include-bos] [--pca] [--no-bos] [--interventions FILE.json]\n"
            "       tlens hooks [MODEL] [--optional-hooks] [--sae DIR]...\n"
            "       tlens collect [MODEL] --prompts FILE --hook NAME [--hook NAME]... -o DIR [--batch N] [--f16]\n"
            "                 [--max-tokens N] [--ctx N] [--no-bos] [--skip-bos-rows] [--window N] [--optional-hooks]\n"
            "       tlens tokenize [--tokenizer DIR] [--prepend-bos] (TEXT | --file PATH | --jsonl PATH)\n");
}

/* Options shared by the commands; returns 0 for an unknown option. */
static int parse_common(cli *c, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *next = *i + 1 < argc ? argv[*i + 1] : NULL;
#define NEEDS_VALUE() do { if (!next) return -1; (*i)++; } while (0)
    if (!strcmp(a, "--raw")) c->load.raw = 1;
    else if (!strcmp(a, "--no-fold-ln")) c->load.no_fold_ln = 1;
    else if (!strcmp(a, "--no-center-writing-weights")) c->load.no_center_writing_weights = 1;
    else if (!strcmp(a, "--no-center-unembed")) c->load.no_center_unembed = 1;
    else if (!strcmp(a, "--no-fold-value-biases")) c->load.no_fold_value_biases = 1;
    else if (!strcmp(a, "--f16")) c->load.weight_dtype = TLENS_F16;
    else if (!strcmp(a, "--bf16")) c->load.weight_dtype = TLENS_BF16;
    else if (!strcmp(a, "--optional-hooks")) c->optional_hooks = 1;
    else if (!strcmp(a, "--no-bos")) c->no_bos = 1;
    else if (!strcmp(a, "--prepend-bos")) c->prepend_bos = 1;
    else if (!strcmp(a, "--tokenizer")) { NEEDS_VALUE(); c->tokenizer_dir = next; }
    else if (!strcmp(a, "--file")) { NEEDS_VALUE(); c->file = next; }
    else if (!strcmp(a, "--jsonl")) { NEEDS_VALUE(); c->jsonl = next; }
    else if (!strcmp(a, "--prompt")) { NEEDS_VALUE(); c->prompt = next; }
    else if (!strcmp(a, "--tokens")) { NEEDS_VALUE(); c->tokens_text = next; }
    else if (!strcmp(a, "--tokens-npy")) { NEEDS_VALUE(); c->tokens_npy = next; }
    else if (!strcmp(a, "--npy")) { NEEDS_VALUE(); c->npy_dir = next; }
    else if (!strcmp(a, "--top")) { NEEDS_VALUE(); c->top = atoi(next); }
    else if (!strcmp(a, "--loss")) c->loss = 1;
    else if (!strcmp(a, "--sae-no-error")) c->sae_no_error = 1;
    else if (!strcmp(a, "--sae-top")) { NEEDS_VALUE(); c->sae_top = atoi(next); }
    else if (!strcmp(a, "--sae")) {
        NEEDS_VALUE();
        if (c->n_saes == MAX_SAES) return -1;
        c->saes[c->n_saes++] = next;
    }
    else if (!strcmp(a, "--print-ids")) c->print_ids = 1;
    else if (!strcmp(a, "-n")) { NEEDS_VALUE(); c->gen.max_new_tokens = atoi(next); }
    else if (!strcmp(a, "--temperature")) { NEEDS_VALUE(); c->gen.temperature = (float)atof(next); }
    else if (!strcmp(a, "--top-k")) { NEEDS_VALUE(); c->gen.top_k = atoi(next); }
    else if (!strcmp(a, "--top-p")) { NEEDS_VALUE(); c->gen.top_p = (float)atof(next); }
    else if (!strcmp(a, "--seed")) { NEEDS_VALUE(); c->gen.seed = (uint64_t)strtoull(next, NULL, 10); }
    else if (!strcmp(a, "--interventions")) { NEEDS_VALUE(); c->interventions = next; }
    else if (!strcmp(a, "--positive")) { NEEDS_VALUE(); c->positive = next; }
    else if (!strcmp(a, "--negative")) { NEEDS_VALUE(); c->negative = next; }
    else if (!strcmp(a, "--hook")) { NEEDS_VALUE(); c->hook = next; }
    else if (!strcmp(a, "-o")) { NEEDS_VALUE(); c->out_path = next; }
    else if (!strcmp(a, "--last-token")) c->steer.last_token = 1;
    else if (!strcmp(a, "--include-bos")) c->steer.include_bos = 1;
    else if (!strcmp(a, "--pca")) c->steer.pca = 1;
    else if (!strcmp(a, "--add")) {
        NEEDS_VALUE();
        if (c->n_adds == MAX_GLOBS) return -1;
        c->adds[c->n_adds++] = next;
    }
    else if (!strcmp(a, "--cache") || !strcmp(a, "--zero") || !strcmp(a, "--patch")) {
        const char **list = a[2] == 'c' ? c->globs : a[2] == 'z' ? c->zeros : c->patches;
        int *count = a[2] == 'c' ? &c->n_globs : a[2] == 'z' ? &c->n_zeros : &c->n_patches;
        NEEDS_VALUE();
        if (*count == MAX_GLOBS) return -1;
        list[(*count)++] = next;
    } else return 0;
#undef NEEDS_VALUE
    return 1;
}

static int parse_args(cli *c, int argc, char **argv) {
    int i;
    memset(c, 0, sizeof *c);
    for (i = 2; i < argc; i++) {
        int r = parse_common(c, argc, argv, &i);
        if (r < 0) return die("option %s needs a value", argv[i]);
        if (r > 0) continue;
        if (argv[i][0] == '-') return die("unknown option %s", argv[i]);
        if (c->model_path) return die("unexpected argument %s", argv[i]);
        c->model_path = argv[i];
    }
    if (!c->model_path) c->model_path = ex_default_model();
    return 0;
}

/* "1 2 3;4 5 6" -> rows of equal length. */
static int parse_tokens(const char *text, int32_t **out, int *rows, int *cols) {
    size_t cap = strlen(text) / 2 + 2, n = 0;
    int32_t *ids = (int32_t *)malloc(cap * sizeof *ids);
    int r = 1, row_len = 0;
    const char *p = text;
    *cols = -1;
    if (!ids) return die("%s", "out of memory");
    while (*p) {
        char *end;
        long v;
        if (*p == ' ' || *p == ',' || *p == '\t') { p++; continue; }
        if (*p == ';') {
            if (*cols >= 0 && row_len != *cols) { free(ids); return die("%s", "--tokens rows must have equal lengths"); }
            *cols = row_len;
            row_len = 0;
            r++;
            p++;
            continue;
        }
        v = strtol(p, &end, 10);
        if (end == p) { free(ids); return die("bad token list: %s", text); }
        if (n == cap) { free(ids); return die("%s", "bad token list"); }
        ids[n++] = (int32_t)v;
        row_len++;
        p = end;
    }
    if (*cols >= 0 && row_len != *cols) { free(ids); return die("%s", "--tokens rows must have equal lengths"); }
    *cols = row_len;
    *rows = r;
    *out = ids;
    return 0;
}

static int read_tokens_npy(const char *path, int32_t **out, int *rows, int *cols) {
    tlens_tensor t;
    tlens_error err;
    size_t i, n;
    if (tlens_npy_load(path, &t, &err) != TLENS_OK) return die("%s", err.message);
    if (t.ndim == 1) { t.shape[1] = t.shape[0]; t.shape[0] = 1; t.ndim = 2; }
    if (t.ndim != 2) { tlens_tensor_free(&t); return die("%s: tokens must be [batch, pos]", path); }
    *rows = t.shape[0];
    *cols = t.shape[1];
    n = (size_t)*rows * (size_t)*cols;
    *out = (int32_t *)malloc((n ? n : 1) * sizeof **out);
    for (i = 0; i < n; i++) (*out)[i] = (int32_t)t.data[i];
    tlens_tensor_free(&t);
    return 0;
}

/* The tokenizer to use: the model's, else --tokenizer DIR, else GPT-2's. */
static const tlens_tokenizer *get_tokenizer(const cli *c, const tlens_model *model, tlens_tokenizer **owned) {
    tlens_error err;
    *owned = NULL;
    if (model && !c->tokenizer_dir && tlens_model_tokenizer(model)) return tlens_model_tokenizer(model);
    if (tlens_tokenizer_load(owned, c->tokenizer_dir ? c->tokenizer_dir : TLENS_TOKENIZER_DIR, NULL, &err) != TLENS_OK) {
        die("%s", err.message);
        return NULL;
    }
    return *owned;
}

static int encode_text(const tlens_tokenizer *tok, const char *text, size_t len, int bos, int32_t **ids, int *n) {
    size_t count = 0;
    tlens_error err;
    *ids = (int32_t *)malloc((len + 2) * sizeof **ids);
    if (!*ids) return die("%s", "out of memory");
    if (tlens_encode(tok, text, len, bos, *ids, len + 2, &count, &err) != TLENS_OK) {
        free(*ids);
        return die("%s", err.message);
    }
    *n = (int)count;
    return 0;
}

static int get_tokens(const cli *c, const tlens_model *model, int32_t **ids, int *rows, int *cols) {
    if (c->tokens_text) return parse_tokens(c->tokens_text, ids, rows, cols);
    if (c->tokens_npy) return read_tokens_npy(c->tokens_npy, ids, rows, cols);
    if (c->prompt) {
        /* as TransformerLens' to_tokens: BOS first unless --no-bos */
        tlens_tokenizer *owned;
        const tlens_tokenizer *tok = get_tokenizer(c, model, &owned);
        int status;
        if (!tok) return 1;
        status = encode_text(tok, c->prompt, strlen(c->prompt), !c->no_bos, ids, cols);
        tlens_tokenizer_free(owned);
        *rows = 1;
        if (!status && *cols == 0) { free(*ids); return die("%s", "the prompt is empty"); }
        return status;
    }
    return die("%s", "give --prompt, --tokens or --tokens-npy");
}

/* "blocks.0.hook_x" -> DIR/blocks.0.hook_x.npy */
static int write_npy(const char *dir, const char *name, const tlens_tensor *t) {
    char path[1024];
    tlens_error err;
    if ((size_t)snprintf(path, sizeof path, "%s/%s.npy", dir, name) >= sizeof path) return die("%s", "path too long");
    if (tlens_npy_save(path, t, &err) != TLENS_OK) return die("%s", err.message);
    return 0;
}

/* The token's text as a quoted C-like string (escapes for control bytes). */
static void print_token_quoted(const tlens_tokenizer *tok, int32_t id) {
    size_t len, i;
    const char *b = tok ? tlens_token_bytes(tok, id, &len) : NULL;
    if (!b) return;
    printf("  \"");
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)b[i];
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch == '\n') printf("\\n");
        else if (ch < 0x20) printf("\\x%02x", ch);
        else putchar(ch);
    }
    printf("\"");
}

static void print_top(const tlens_tensor *logits, int top, const tlens_tokenizer *tok) {
    int V = logits->shape[2], b, i, k;
    for (b = 0; b < logits->shape[0]; b++) {
        const float *row = logits->data + ((size_t)b * (size_t)logits->shape[1] + (size_t)logits->shape[1] - 1) * (size_t)V;
        double mx = -INFINITY, sum = 0;
        char *taken = (char *)calloc((size_t)V, 1);
        if (!taken) return;
        for (i = 0; i < V; i++) if (row[i] > mx) mx = row[i];
        for (i = 0; i < V; i++) sum += exp(row[i] - mx);
        if (logits->shape[0] > 1) printf("batch %d:\n", b);
        for (k = 0; k < top && k < V; k++) {
            int best = -1;
            for (i = 0; i < V; i++)
                if (!taken[i] && (best < 0 || row[i] > row[best])) best = i;
            if (best < 0) break;
            taken[best] = 1;
            printf("%2d  %6d  %.6f  logit %.4f", k + 1, best, exp(row[best] - mx) / sum, row[best]);
            print_token_quoted(tok, best);
            printf("\n");
        }
        free(taken);
    }
}

/* "POS,POS,..." -> positions; 0 when the text is not such a list. */
static int parse_positions(const char *text, int *pos, int cap, int *n) {
    *n = 0;
    while (*text) {
        char *end;
        long v = strtol(text, &end, 10);
        if (end == text || v < 0 || v > 1 << 24 || *n == cap || (*end && *end != ',')) return 0;
        pos[(*n)++] = (int)v;
        text = *end ? end + 1 : end;
    }
    return *n > 0;
}

/* --add NAME=FILE.npy[*COEF][@POS,POS...]: steering with a 1-D vector,
 * coef times, at every position or the ones listed. */
static int add_steering(const char *spec, tlens_ctx *ctx) {
    char name[256], path[1024], tail[128];
    const char *eq = strchr(spec, '='), *end, *at, *star;
    int pos[256], n_pos = 0, ok;
    float coef = 1.0f;
    tlens_tensor t;
    tlens_error err;
    if (!eq || (size_t)(eq - spec) >= sizeof name || eq == spec) return die("--add needs NAME=FILE.npy[*COEF][@POS,...], got %s", spec);
    memcpy(name, spec, (size_t)(eq - spec));
    name[eq - spec] = 0;
    end = eq + 1 + strlen(eq + 1);
    at = strrchr(eq + 1, '@');
    if (at && parse_positions(at + 1, pos, 256, &n_pos)) end = at;
    star = NULL;
    for (at = eq + 1; at < end; at++)
        if (*at == '*') star = at;
    if (star && (size_t)(end - star) < sizeof tail) { /* "*COEF": a number up to `end` */
        char *num_end;
        memcpy(tail, star + 1, (size_t)(end - star - 1));
        tail[end - star - 1] = 0;
        coef = (float)strtod(tail, &num_end);
        if (num_end != tail && !*num_end) end = star;
        else coef = 1.0f;
    }
    if ((size_t)(end - eq - 1) >= sizeof path || end == eq + 1) return die("--add: bad file in %s", spec);
    memcpy(path, eq + 1, (size_t)(end - eq - 1));
    path[end - eq - 1] = 0;
    if (tlens_npy_load(path, &t, &err) != TLENS_OK) return die("%s", err.message);
    if (t.ndim != 1) {
        tlens_tensor_free(&t);
        return die("--add: %s must hold a 1-D vector", path);
    }
    ok = tlens_add_steering(ctx, name, t.data, t.shape[0], coef, pos, n_pos, &err) > 0;
    tlens_tensor_free(&t);
    return ok ? 0 : die("%s", err.message);
}

/* --interventions FILE.json, then each --add, in the order given. */
static int add_steering_and_files(const cli *c, tlens_ctx *ctx) {
    int i;
    if (c->interventions) {
        tlens_interventions *iv;
        tlens_error err;
        tlens_result r = tlens_interventions_load(&iv, c->interventions, NULL, &err);
        if (!r) r = tlens_add_interventions(ctx, iv, NULL, &err);
        tlens_interventions_free(iv);
        if (r) return die("%s", err.message);
    }
    for (i = 0; i < c->n_adds; i++)
        if (add_steering(c->adds[i], ctx)) return 1;
    return 0;
}

/* --zero NAME[:HEAD] and --patch NAME=FILE.npy become hooks. */
static int add_interventions(const cli *c, tlens_ctx *ctx) {
    int i;
    for (i = 0; i < c->n_zeros; i++) {
        char name[256];
        const char *colon = strrchr(c->zeros[i], ':');
        int head = -1;
        size_t len = colon ? (size_t)(colon - c->zeros[i]) : strlen(c->zeros[i]);
        if (len >= sizeof name) return die("hook name too long: %s", c->zeros[i]);
        memcpy(name, c->zeros[i], len);
        name[len] = 0;
        if (colon) head = atoi(colon + 1);
        if (!tlens_add_ablation(ctx, name, head, TLENS_ABLATE_ZERO)) return die("cannot add --zero %s", c->zeros[i]);
    }
    for (i = 0; i < c->n_patches; i++) {
        char name[256];
        const char *eq = strchr(c->patches[i], '=');
        tlens_tensor t;
        tlens_error err;
        int ok;
        if (!eq || (size_t)(eq - c->patches[i]) >= sizeof name) return die("--patch needs NAME=FILE.npy, got %s", c->patches[i]);
        memcpy(name, c->patches[i], (size_t)(eq - c->patches[i]));
        name[eq - c->patches[i]] = 0;
        if (tlens_npy_load(eq + 1, &t, &err) != TLENS_OK) return die("%s", err.message);
        ok = tlens_add_patch(ctx, name, &t, -1, -1) > 0;
        tlens_tensor_free(&t);
        if (!ok) return die("cannot add --patch %s", c->patches[i]);
    }
    return add_steering_and_files(c, ctx);
}

/* --sae DIR...: load each SAE and attach it at its hook point, with the
 * error term unless --sae-no-error; with --sae-top, cache its features.
 * The SAEs must outlive the context. */
static int attach_saes(const cli *c, tlens_ctx *ctx, tlens_sae **saes) {
    tlens_sae_attach_options o;
    tlens_error err;
    int i;
    memset(&o, 0, sizeof o);
    o.use_error_term = !c->sae_no_error;
    for (i = 0; i < c->n_saes; i++) {
        char glob[160];
        if (tlens_sae_load(&saes[i], c->saes[i], NULL, &err) != TLENS_OK ||
            tlens_sae_attach(ctx, saes[i], &o, &err) != TLENS_OK)
            return die("%s", err.message);
        snprintf(glob, sizeof glob, "%s.hook_sae_acts_post", tlens_sae_get_config(saes[i])->hook_name);
        if (c->sae_top > 0) tlens_cache_select(ctx, glob);
    }
    return 0;
}

static void free_saes(tlens_sae **saes) {
    int i;
    for (i = 0; i < MAX_SAES; i++) tlens_sae_free(saes[i]);
}

/* The coordinates of row r of t (every axis but the last). */
static void print_row_coords(const tlens_tensor *t, size_t r, int *coords) {
    int d;
    for (d = t->ndim - 2; d >= 0; d--) {
        coords[d] = (int)(r % (size_t)t->shape[d]);
        r /= (size_t)t->shape[d];
    }
    for (d = 0; d < t->ndim - 1; d++) printf("%s%d", d ? " " : "", coords[d]);
}

/* --sae-top K: per position, the K most active features of each SAE (only
 * those above 0), most active first: "batch position  feature value ...",
 * then the token's text when there is a tokenizer. */
static void print_sae_top(const tlens_ctx *ctx, tlens_sae *const *saes, int n, int top, const int32_t *ids,
                          const tlens_tokenizer *tok) {
    int i, k, f;
    for (i = 0; i < n; i++) {
        char name[160];
        const tlens_tensor *t;
        size_t r, rows;
        int S, coords[TLENS_MAX_DIMS] = {0};
        char *taken;
        snprintf(name, sizeof name, "%s.hook_sae_acts_post", tlens_sae_get_config(saes[i])->hook_name);
        if (!(t = tlens_cache_get(ctx, name))) continue; /* replaced by a later SAE at the same point */
        S = t->shape[t->ndim - 1];
        rows = tlens_tensor_numel(t) / (size_t)S;
        if (!(taken = (char *)malloc((size_t)S))) return;
        printf("%s: the %d most active features per position (batch position, then feature value)\n", name, top);
        for (r = 0; r < rows; r++) {
            const float *row = t->data + r * (size_t)S;
            memset(taken, 0, (size_t)S);
            print_row_coords(t, r, coords);
            for (k = 0; k < top; k++) {
                int best = -1;
                for (f = 0; f < S; f++)
                    if (!taken[f] && row[f] > 0 && (best < 0 || row[f] > row[best])) best = f;
                if (best < 0) break;
                taken[best] = 1;
                printf("  %d %.6f", best, row[best]);
            }
            if (k == 0) printf("  (none active)");
            if (t->ndim >= 3) print_token_quoted(tok, ids[(size_t)coords[0] * (size_t)t->shape[1] + (size_t)coords[1]]);
            printf("\n");
        }
        free(taken);
    }
}

static void print_loss(const tlens_ctx *ctx, const int32_t *ids, int rows, int cols) {
    double mean;
    tlens_error err;
    float *per = (float *)malloc((size_t)rows * (size_t)(cols > 1 ? cols - 1 : 1) * sizeof(float));
    int i;
    if (!per || tlens_loss(ctx, ids, NULL, per, &mean, &err) != TLENS_OK) {
        fprintf(stderr, "tlens: %s\n", per ? err.message : "out of memory");
        free(per);
        return;
    }
    printf("loss %.6f\n", mean);
    printf("loss_per_token");
    for (i = 0; i < rows * (cols - 1); i++) printf(" %.6f", per[i]);
    printf("\n");
    free(per);
}

static int cmd_run(int argc, char **argv) {
    cli c;
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_sae *saes[MAX_SAES] = {NULL};
    int32_t *ids = NULL;
    int rows = 0, cols = 0, i, status = 0;
    if (parse_args(&c, argc, argv)) return 1;
    if (tlens_load(&model, c.model_path, &c.load, &err) != TLENS_OK) return die("%s", err.message);
    if (get_tokens(&c, model, &ids, &rows, &cols)) { tlens_free(model); return 1; }
    if (tlens_ctx_new(&ctx, model, &err) != TLENS_OK) { tlens_free(model); return die("%s", err.message); }
    tlens_set_optional_hooks(ctx, c.optional_hooks);
    for (i = 0; i < c.n_globs; i++) tlens_cache_select(ctx, c.globs[i]);
    if (attach_saes(&c, ctx, saes) || add_interventions(&c, ctx)) status = 1;
    else if (tlens_run(ctx, ids, rows, cols, &err) != TLENS_OK) {
        status = die("%s", err.message);
    } else {
        const tlens_tensor *logits = tlens_logits(ctx);
        if (c.npy_dir) {
            TLENS_CLI_MKDIR(c.npy_dir);
            status = write_npy(c.npy_dir, "logits", logits);
            for (i = 0; !status && i < tlens_hook_count(ctx); i++) {
                const tlens_tensor *t = tlens_cache_get(ctx, tlens_hook_name(ctx, i));
                if (t) status = write_npy(c.npy_dir, tlens_hook_name(ctx, i), t);
            }
        }
        if (!status) {
            printf("logits [%d, %d, %d]\n", logits->shape[0], logits->shape[1], logits->shape[2]);
            if (c.top > 0) print_top(logits, c.top, tlens_model_tokenizer(model));
            if (c.sae_top > 0) print_sae_top(ctx, saes, c.n_saes, c.sae_top, ids, tlens_model_tokenizer(model));
            if (c.loss) print_loss(ctx, ids, rows, cols);
        }
    }
    free(ids);
    tlens_ctx_free(ctx);
    free_saes(saes);
    tlens_free(model);
    return status;
}

static int print_token_id(int32_t token, void *user) {
    (void)user;
    printf(" %d", (int)token);
    fflush(stdout);
    return 0;
}

static int print_token_text(int32_t token, void *user) {
    size_t len;
    const char *bytes = tlens_token_bytes((const tlens_tokenizer *)user, token, &len);
    if (bytes) fwrite(bytes, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int cmd_generate(int argc, char **argv) {
    cli c;
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_sae *saes[MAX_SAES] = {NULL};
    int32_t *ids = NULL, *out = NULL;
    int rows = 0, cols = 0, n = 0, status = 0, i;
    if (parse_args(&c, argc, argv)) return 1;
    if (tlens_load(&model, c.model_path, &c.load, &err) != TLENS_OK) return die("%s", err.message);
    if (get_tokens(&c, model, &ids, &rows, &cols)) { tlens_free(model); return 1; }
    if (rows != 1) { free(ids); tlens_free(model); return die("%s", "generate takes one prompt"); }
    if (tlens_ctx_new(&ctx, model, &err) != TLENS_OK) { free(ids); tlens_free(model); return die("%s", err.message); }
    if (c.gen.max_new_tokens <= 0) c.gen.max_new_tokens = 20;
    out = (int32_t *)malloc((size_t)c.gen.max_new_tokens * sizeof *out);
    c.gen.on_token = print_token_id;
    if (!c.print_ids && tlens_model_tokenizer(model) && !c.tokens_text) {
        c.gen.on_token = print_token_text;
        c.gen.user = (void *)tlens_model_tokenizer(model);
    }
    if (!out) status = die("%s", "out of memory");
    else if (attach_saes(&c, ctx, saes) || add_interventions(&c, ctx)) status = 1;
    else {
        if (c.gen.on_token == print_token_text) {
            if (c.prompt) fputs(c.prompt, stdout);
        } else {
            for (i = 0; i < cols; i++) printf("%s%d", i ? " " : "", (int)ids[i]);
        }
        fflush(stdout);
        if (tlens_generate(ctx, ids, cols, &c.gen, out, c.gen.max_new_tokens, &n, &err) != TLENS_OK)
            status = die("%s", err.message);
        printf("\n");
    }
    free(out);
    free(ids);
    tlens_ctx_free(ctx);
    free_saes(saes);
    tlens_free(model);
    return status;
}

/* A whole file, NUL-terminated (not counted in *len); NULL when it cannot
 * be read. */
static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    size_t cap = 1 << 16, got;
    char *buf = f ? (char *)malloc(cap + 1) : NULL, *bigger;
    *len = 0;
    while (buf && (got = fread(buf + *len, 1, cap - *len, f)) > 0) {
        *len += got;
        if (*len < cap) continue;
        bigger = (char *)realloc(buf, (cap *= 2) + 1);
        if (!bigger) free(buf);
        buf = bigger;
    }
    if (f) fclose(f);
    if (buf) buf[*len] = 0;
    return buf;
}

/* The prompts of a file, one a line (empty lines skipped, "\r\n" too),
 * each encoded with BOS first unless --no-bos, concatenated into *ids
 * with their lengths in *lens. */
static int read_prompts(const cli *c, const tlens_tokenizer *tok, const char *path, int32_t **ids, int **lens, int *n) {
    size_t len, total = 0, start;
    char *buf = read_text(path, &len);
    int status = 0;
    *ids = NULL;
    *lens = NULL;
    *n = 0;
    if (!buf) return die("cannot read %s", path);
    *ids = (int32_t *)malloc((len + 1) * 2 * sizeof **ids); /* at most one id per byte, plus BOS per line */
    *lens = (int *)malloc((len + 1) * sizeof **lens);
    for (start = 0; !status && *ids && *lens && start < len;) {
        size_t end = start, line;
        int32_t *one;
        int count;
        while (end < len && buf[end] != '\n') end++;
        line = end - start;
        if (line && buf[start + line - 1] == '\r') line--;
        if (line) {
            status = encode_text(tok, buf + start, line, !c->no_bos, &one, &count);
            if (!status) {
                memcpy(*ids + total, one, (size_t)count * sizeof *one);
                total += (size_t)count;
                (*lens)[(*n)++] = count;
                free(one);
            }
        }
        start = end + 1;
    }
    free(buf);
    if (!*ids || !*lens) status = die("%s", "out of memory");
    if (!status && *n == 0) status = die("%s: no prompts", path);
    return status;
}

static int cmd_steer_vector(int argc, char **argv) {
    cli c;
    tlens_model *model;
    tlens_ctx *ctx = NULL;
    tlens_tokenizer *owned = NULL;
    const tlens_tokenizer *tok;
    tlens_error err;
    tlens_tensor vec;
    int32_t *pos_ids = NULL, *neg_ids = NULL;
    int *pos_lens = NULL, *neg_lens = NULL, n_pos = 0, n_neg = 0, n, i, status = 0;
    double norm = 0;
    if (parse_args(&c, argc, argv)) return 1;
    if (!c.positive || !c.negative || !c.hook || !c.out_path)
        return die("%s", "steer-vector needs --positive FILE --negative FILE --hook NAME -o VEC.npy");
    if (tlens_load(&model, c.model_path, &c.load, &err) != TLENS_OK) return die("%s", err.message);
    memset(&vec, 0, sizeof vec);
    if (!(tok = get_tokenizer(&c, model, &owned)) || read_prompts(&c, tok, c.positive, &pos_ids, &pos_lens, &n_pos) ||
        read_prompts(&c, tok, c.negative, &neg_ids, &neg_lens, &n_neg)) {
        status = 1;
    } else if (tlens_ctx_new(&ctx, model, &err) != TLENS_OK) {
        status = die("%s", err.message);
    } else {
        tlens_set_optional_hooks(ctx, c.optional_hooks);
        n = tlens_hook_last_dim(ctx, c.hook);
        vec.ndim = 1;
        vec.shape[0] = n;
        if (n < 1) status = die("%s: no hook point of that name with a fixed last dimension", c.hook);
        else if (!(vec.data = (float *)malloc((size_t)n * sizeof(float)))) status = die("%s", "out of memory");
        else if (add_interventions(&c, ctx)) status = 1;
        else if (tlens_steering_vector(ctx, c.hook, pos_ids, pos_lens, n_pos, neg_ids, neg_lens, n_neg, &c.steer,
                                       vec.data, n, &err) != TLENS_OK)
            status = die("%s", err.message);
        else if (tlens_npy_save(c.out_path, &vec, &err) != TLENS_OK)
            status = die("%s", err.message);
        for (i = 0; !status && i < n; i++) norm += (double)vec.data[i] * vec.data[i];
        if (!status)
            printf("steering vector [%d] at %s: norm %.6f, %d positive and %d negative prompts, %s%s\n", n, c.hook,
                   sqrt(norm), n_pos, n_neg, c.steer.last_token ? "last token" : "mean over positions",
                   c.steer.pca ? ", first principal component of the pair differences" : "");
    }
    free(vec.data);
    free(pos_ids);
    free(neg_ids);
    free(pos_lens);
    free(neg_lens);
    tlens_tokenizer_free(owned);
    tlens_ctx_free(ctx);
    tlens_free(model);
    return status;
}

static int cmd_hooks(int argc, char **argv) {
    cli c;
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_sae *saes[MAX_SAES] = {NULL};
    int32_t token = 0;
    int i, status = 0;
    if (parse_args(&c, argc, argv)) return 1;
    c.load.no_tokenizer = 1;
    if (tlens_load(&model, c.model_path, &c.load, &err) != TLENS_OK) return die("%s", err.message);
    if (tlens_ctx_new(&ctx, model, &err) != TLENS_OK) { tlens_free(model); return die("%s", err.message); }
    tlens_set_optional_hooks(ctx, c.optional_hooks);
    tlens_cache_select(ctx, "*");
    if (attach_saes(&c, ctx, saes)) {
        status = 1;
    } else if (tlens_run(ctx, &token, 1, 1, &err) != TLENS_OK) {
        status = die("%s", err.message);
    } else {
        for (i = 0; i < tlens_hook_count(ctx); i++) {
            const char *name = tlens_hook_name(ctx, i);
            const tlens_tensor *t = tlens_cache_get(ctx, name);
            int d;
            printf("%s [", name);
            for (d = 0; t && d < t->ndim; d++) printf("%s%d", d ? ", " : "", t->shape[d]);
            printf("]\n");
        }
    }
    tlens_ctx_free(ctx);
    free_saes(saes);
    tlens_free(model);
    return status;
}

/* A minimal reader for {"text": "..."} lines: the value of "text". */
static char *jsonl_text(const char *line, size_t *len) {
    const char *p = strstr(line, "\"text\"");
    char *out, *o;
    if (!p) return NULL;
    p = strchr(p + 6, '"');
    if (!p) return NULL;
    out = o = (char *)malloc(strlen(p) + 1);
    for (p++; *p && *p != '"'; p++) {
        unsigned long u;
        if (*p != '\\') { *o++ = *p; continue; }
        p++;
        switch (*p) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u':
            u = strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 4;
            if (u >= 0xd800 && u < 0xdc00 && p[1] == '\\' && p[2] == 'u') {
                unsigned long lo = strtoul((char[5]){p[3], p[4], p[5], p[6], 0}, NULL, 16);
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            if (u < 0x80) *o++ = (char)u;
            else if (u < 0x800) { *o++ = (char)(0xc0 | (u >> 6)); *o++ = (char)(0x80 | (u & 0x3f)); }
            else if (u < 0x10000) { *o++ = (char)(0xe0 | (u >> 12)); *o++ = (char)(0x80 | ((u >> 6) & 0x3f)); *o++ = (char)(0x80 | (u & 0x3f)); }
            else { *o++ = (char)(0xf0 | (u >> 18)); *o++ = (char)(0x80 | ((u >> 12) & 0x3f)); *o++ = (char)(0x80 | ((u >> 6) & 0x3f)); *o++ = (char)(0x80 | (u & 0x3f)); }
            break;
        default: *o++ = *p; break;
        }
        if (!*p) break;
    }
    *len = (size_t)(o - out);
    return out;
}

static int print_ids_line(const tlens_tokenizer *tok, const char *text, size_t len, int bos) {
    int32_t *ids;
    int n, i;
    if (encode_text(tok, text, len, bos, &ids, &n)) return 1;
    for (i = 0; i < n; i++) printf("%s%d", i ? " " : "", (int)ids[i]);
    printf("\n");
    free(ids);
    return 0;
}

/* ---- tlens collect: activation datasets -----------------------------------
 *   tlens collect [MODEL] --prompts FILE --hook NAME [--hook NAME]... -o DIR
 *             [--batch N] [--f16] [--max-tokens N] [--ctx N] [--no-bos]
 *             [--skip-bos-rows] [--window N] [--optional-hooks] [--tokenizer DIR]
 * FILE holds one prompt per line, or is JSONL ({"text": ...} on each line)
 * when its name ends in .jsonl or it starts with '{'. Each prompt gets BOS
 * first, as with --prompt (--no-bos: none; --skip-bos-rows: the model sees
 * it but no row is written for it) and is cut to its first --ctx tokens
 * (n_ctx by default). Prompts are read --window batches ahead (8) and run
 * shortest first, in batches of similar length: rows come in that order
 * (--window 1: the file's). prompt_index is the prompt's 0-based line
 * number; empty lines are passed over but counted. The work is done by
 * tlens_collect_*. */
#if defined(__unix__) || defined(__APPLE__)
#include <sys/time.h>
static double wall_seconds(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}
#else
#include <time.h>
static double wall_seconds(void) { return (double)time(NULL); }
#endif

typedef struct collect_args {
    cli common;                 /* loading, --tokenizer, --no-bos, --optional-hooks */
    const char *prompts, *dir, *hooks[MAX_GLOBS];
    int n_hooks, ctx_len;
    long long max_tokens;
    tlens_collect_options opt;
} collect_args;

typedef struct prompt_reader {
    FILE *f;
    const char *path;
    int jsonl;
    char *line;
    size_t cap;
    long line_no;               /* 0-based number of the line last read */
    long long bytes, size;      /* read so far; the whole file (0: unknown) */
} prompt_reader;

typedef struct collect_stats {
    double start, last_print;
    long long queued_rows, prompts, truncated;
    size_t rows;                /* written, when last looked at */
    long long bytes_done;       /* of the file, when those rows were written */
} collect_stats;

/* A whole number from 1 to max for option `opt`, else 0 after a message. */
static long long collect_number(const char *opt, const char *v, long long max) {
    char *end;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || n < 1 || n > max) {
        fprintf(stderr, "tlens: %s needs a whole number from 1 to %lld, not %s\n", opt, max, v);
        return 0;
    }
    return n;
}

/* One of collect's own options (--f16 here is the files' type, not the
 * weights'): -1 when it is not one, else how many values it took. */
static int collect_option(collect_args *a, const char *s, const char *v, int *bad) {
    static const char *const valued[7] = {"--prompts", "--hook", "-o", "--batch", "--ctx", "--max-tokens", "--window"};
    int k;
    if (!strcmp(s, "--f16")) a->opt.f16 = 1;
    else if (!strcmp(s, "--skip-bos-rows")) a->opt.skip_first = 1;
    if (!strcmp(s, "--f16") || !strcmp(s, "--skip-bos-rows")) return 0;
    for (k = 0; k < 7 && strcmp(s, valued[k]); k++) continue;
    if (k == 7) return -1;
    if (!v) {
        *bad = die("option %s needs a value", s);
        return 0;
    }
    if (k == 0) a->prompts = v;
    else if (k == 1 && a->n_hooks == MAX_GLOBS) *bad = die("%s", "too many --hook options");
    else if (k == 1) a->hooks[a->n_hooks++] = v;
    else if (k == 2) a->dir = v;
    else if (k == 3) *bad = !(a->opt.batch = (int)collect_number(s, v, 1 << 20));
    else if (k == 4) *bad = !(a->ctx_len = (int)collect_number(s, v, 1 << 30));
    else if (k == 6) *bad = !(a->opt.window = (int)collect_number(s, v, 1 << 20));
    else *bad = !(a->max_tokens = collect_number(s, v, 1ll << 62));
    return 1;
}

static int parse_collect(collect_args *a, int argc, char **argv) {
    int i, r, bad = 0;
    memset(a, 0, sizeof *a);
    a->opt.window = 8;
    for (i = 2; i < argc && !bad; i++) {
        if ((r = collect_option(a, argv[i], i + 1 < argc ? argv[i + 1] : NULL, &bad)) >= 0) {
            i += r;
            continue;
        }
        if ((r = parse_common(&a->common, argc, argv, &i)) < 0) return die("option %s needs a value", argv[i]);
        if (r > 0) continue;
        if (argv[i][0] == '-') return die("unknown option %s", argv[i]);
        if (a->common.model_path) return die("unexpected argument %s", argv[i]);
        a->common.model_path = argv[i];
    }
    if (bad) return 1;
    if (!a->common.model_path) a->common.model_path = ex_default_model();
    if (!a->prompts || !a->dir || !a->n_hooks)
        return die("%s", "collect needs --prompts FILE, at least one --hook NAME and -o DIR");
    return 0;
}

static int open_prompts(prompt_reader *p, const char *path) {
    size_t len = strlen(path);
    int first;
    memset(p, 0, sizeof *p);
    p->path = path;
    p->line_no = -1;
    if (!(p->f = fopen(path, "rb"))) return die("cannot open %s", path);
    if (fseek(p->f, 0, SEEK_END) == 0) p->size = ftell(p->f);
    if (p->size < 0 || fseek(p->f, 0, SEEK_SET) != 0) p->size = 0;
    first = getc(p->f);
    if (first != EOF) ungetc(first, p->f);
    p->jsonl = first == '{' || (len >= 6 && !strcmp(path + len - 6, ".jsonl"));
    return 0;
}

/* The next line, without its line end, into p->line; 0 at the end, -1
 * when it does not fit in memory. */
static int read_line(prompt_reader *p, size_t *len) {
    size_t n = 0;
    int ch = EOF;
    while ((ch = getc(p->f)) != EOF) {
        p->bytes++;
        if (ch == '\n') break;
        if (n + 2 > p->cap) {
            char *bigger = (char *)realloc(p->line, p->cap = p->cap ? p->cap * 2 : 4096);
            if (!bigger) return -die("%s", "out of memory");
            p->line = bigger;
        }
        p->line[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) return 0;
    if (n && p->line[n - 1] == '\r') n--;
    if (p->line) p->line[n] = 0;
    *len = n;
    p->line_no++;
    return 1;
}

/* The next prompt's text: the line, or (JSONL) its "text" in *owned.
 * 1: a prompt; 0: the end; -1: an error, printed. Empty lines are passed. */
static int next_prompt(prompt_reader *p, const char **text, size_t *len, char **owned) {
    int r;
    *owned = NULL;
    while ((r = read_line(p, len)) > 0) {
        if (!*len || (p->jsonl && strspn(p->line, " \t") == *len)) continue;
        if (!p->jsonl) {
            *text = p->line;
            return 1;
        }
        if (!(*owned = jsonl_text(p->line, len))) {
            fprintf(stderr, "tlens: %s:%ld: a line without \"text\"\n", p->path, p->line_no + 1);
            return -1;
        }
        if (*len) {
            *text = *owned;
            return 1;
        }
        free(*owned);
        *owned = NULL;
    }
    if (r == 0 && ferror(p->f)) r = -die("cannot read %s", p->path);
    return r;
}

/* "\r12345 tokens, 2345 tokens/s, 40%, 0:01:23 left", a few times a second
 * at most. The fraction done is that of the file's bytes (or of
 * --max-tokens) whose rows are written: the collector writes everything
 * queued at once, so when the row count moves all bytes read are done. */
static void collect_progress(collect_stats *st, const prompt_reader *p, const collect_args *a, size_t rows) {
    double now = wall_seconds(), elapsed = now - st->start, frac = 0;
    if (rows != st->rows) {
        st->rows = rows;
        st->bytes_done = p->bytes;
    }
    if (now - st->last_print < 0.25) return;
    st->last_print = now;
    if (p->size > 0) frac = (double)st->bytes_done / (double)p->size;
    if (a->max_tokens > 0 && (double)rows / (double)a->max_tokens > frac) frac = (double)rows / (double)a->max_tokens;
    fprintf(stderr, "\r%llu tokens, %.0f tokens/s", (unsigned long long)rows, elapsed > 0 ? (double)rows / elapsed : 0.0);
    if (rows > 0 && frac > 0 && frac < 1) {
        long left = (long)(elapsed * (1 - frac) / frac + 0.5);
        fprintf(stderr, ", %.0f%%, %ld:%02ld:%02ld left", frac * 100, left / 3600, left / 60 % 60, left % 60);
    }
    fprintf(stderr, "     ");
    fflush(stderr);
}

/* Tokenize one prompt, cut it to the context and to what --max-tokens still
 * allows, and hand it to the collector. */
static int collect_one(const collect_args *a, const tlens_tokenizer *tok, tlens_collector *col, collect_stats *st,
                       const char *text, size_t len, long line_no) {
    int32_t *ids;
    int n, skip = a->opt.skip_first;
    tlens_error err;
    if (encode_text(tok, text, len, !a->common.no_bos, &ids, &n)) return 1;
    if (n > a->ctx_len) {
        n = a->ctx_len;
        st->truncated++;
    }
    if (a->max_tokens > 0 && n - skip > a->max_tokens - st->queued_rows) n = (int)(a->max_tokens - st->queued_rows) + skip;
    if (n > 0 && tlens_collect_add(col, ids, n, (int32_t)line_no, &err) != TLENS_OK) {
        free(ids);
        return die("%s", err.message);
    }
    st->queued_rows += n > skip ? n - skip : 0;
    st->prompts++;
    free(ids);
    return 0;
}

static int collect_prompts(const collect_args *a, prompt_reader *p, const tlens_tokenizer *tok, tlens_collector *col,
                           collect_stats *st) {
    const char *text;
    char *owned;
    size_t len;
    int r, status = 0;
    while (!status && (a->max_tokens <= 0 || st->queued_rows < a->max_tokens)) {
        if ((r = next_prompt(p, &text, &len, &owned)) <= 0) return r < 0;
        status = collect_one(a, tok, col, st, text, len, p->line_no);
        free(owned);
        collect_progress(st, p, a, tlens_collect_rows(col));
    }
    return status;
}

static void collect_summary(const collect_stats *st, const collect_args *a, int n_points) {
    double elapsed = wall_seconds() - st->start;
    fprintf(stderr, "\r%79s\rcollected %lld tokens of %lld prompt%s, %d hook point%s as %s, in %s in %.1f s (%.0f tokens/s)",
            "", st->queued_rows, st->prompts, st->prompts == 1 ? "" : "s", n_points, n_points == 1 ? "" : "s",
            a->opt.f16 ? "float16" : "float32", a->dir, elapsed, elapsed > 0 ? (double)st->queued_rows / elapsed : 0.0);
    if (st->truncated)
        fprintf(stderr, "; %lld prompt%s cut to %d tokens", st->truncated, st->truncated == 1 ? "" : "s", a->ctx_len);
    fprintf(stderr, "\n");
}

/* Prompts in, one .npy per hook point out (see above). */
static int cmd_collect(int argc, char **argv) {
    collect_args a;
    prompt_reader p;
    collect_stats st;
    tlens_model *model = NULL;
    tlens_ctx *ctx = NULL;
    tlens_collector *col = NULL;
    tlens_tokenizer *owned_tok = NULL;
    const tlens_tokenizer *tok = NULL;
    tlens_error err;
    int status = 0, n_points;
    if (parse_collect(&a, argc, argv) || open_prompts(&p, a.prompts)) return 1;
    if (tlens_load(&model, a.common.model_path, &a.common.load, &err) || tlens_ctx_new(&ctx, model, &err))
        status = die("%s", err.message);
    if (!status && a.ctx_len > tlens_model_config(model)->n_ctx) {
        fprintf(stderr, "tlens: --ctx %d is more than the model's n_ctx %d\n", a.ctx_len, tlens_model_config(model)->n_ctx);
        status = 1;
    }
    if (!status && !a.ctx_len) a.ctx_len = tlens_model_config(model)->n_ctx;
    if (!status && !(tok = get_tokenizer(&a.common, model, &owned_tok))) status = 1;
    if (!status) {
        TLENS_CLI_MKDIR(a.dir);
        tlens_set_optional_hooks(ctx, a.common.optional_hooks);
        if (tlens_collect_open(&col, ctx, a.dir, a.hooks, a.n_hooks, &a.opt, &err)) status = die("%s", err.message);
    }
    if (!status) {
        n_points = tlens_collect_count(col);
        memset(&st, 0, sizeof st);
        st.start = st.last_print = wall_seconds();
        status = collect_prompts(&a, &p, tok, col, &st);
        if (tlens_collect_close(col, status ? NULL : &err) && !status) status = die("%s", err.message);
        if (!status) collect_summary(&st, &a, n_points);
    }
    fclose(p.f);
    free(p.line);
    tlens_tokenizer_free(owned_tok);
    tlens_ctx_free(ctx);
    tlens_free(model);
    return status;
}

static int cmd_tokenize(int argc, char **argv) {
    cli c;
    tlens_tokenizer *tok = NULL;
    tlens_error err;
    int i, status = 0;
    memset(&c, 0, sizeof c);
    for (i = 2; i < argc; i++) {
        int r = parse_common(&c, argc, argv, &i);
        if (r < 0) return die("option %s needs a value", argv[i]);
        if (r > 0) continue;
        if (argv[i][0] == '-' && argv[i][1]) return die("unknown option %s", argv[i]);
        c.text = argv[i];
    }
    if (!c.text && !c.file && !c.jsonl) return die("%s", "give TEXT, --file PATH or --jsonl PATH");
    if (tlens_tokenizer_load(&tok, c.tokenizer_dir ? c.tokenizer_dir : TLENS_TOKENIZER_DIR, NULL, &err) != TLENS_OK)
        return die("%s", err.message);
    if (c.text) {
        status = print_ids_line(tok, c.text, strlen(c.text), c.prepend_bos);
    } else {
        FILE *f = fopen(c.file ? c.file : c.jsonl, "rb");
        if (!f) {
            status = die("cannot open %s", c.file ? c.file : c.jsonl);
        } else if (c.file) {
            size_t cap = 1 << 16, len = 0, got;
            char *buf = (char *)malloc(cap);
            while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
                len += got;
                if (len == cap) buf = (char *)realloc(buf, cap *= 2);
            }
            status = buf ? print_ids_line(tok, buf, len, c.prepend_bos) : die("%s", "out of memory");
            free(buf);
        } else {
            static char line[1 << 20];
            while (!status && fgets(line, sizeof line, f)) {
                size_t len;
                char *text = jsonl_text(line, &len);
                if (!text) { status = die("%s: a line without \"text\"", c.jsonl); break; }
                status = print_ids_line(tok, text, len, c.prepend_bos);
                free(text);
            }
        }
        if (f) fclose(f);
    }
    tlens_tokenizer_free(tok);
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(); return 1; }
    if (!strcmp(argv[1], "run")) return cmd_run(argc, argv);
    if (!strcmp(argv[1], "hooks")) return cmd_hooks(argc, argv);
    if (!strcmp(argv[1], "collect")) return cmd_collect(argc, argv);
    if (!strcmp(argv[1], "generate")) return cmd_generate(argc, argv);
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc, argv);
    if (!strcmp(argv[1], "steer-vector")) return cmd_steer_vector(argc, argv);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) { usage(); return 0; }
    usage();
    return die("unknown command %s", argv[1]);
}
