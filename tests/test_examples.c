/* The example programs (examples/<name>.c), run as a user runs them: each test
 * starts ./build/<example> on the tiny reference model through popen, parses
 * what it printed or wrote, and checks the numbers against an independent
 * computation - TransformerLens' own activations where they exist
 * (tests/data/reference), otherwise the API called here directly or a hook
 * written here. A test is skipped when its example has not been built.
 *
 * Included from test_main.c, after tlens.h (with the implementation),
 * tlens_test.h and test_util.h. Runs from the repository root.
 */
#include "../examples/example_common.h" /* for the escaping test */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef REF_DIR
#define REF_DIR "tests/data/reference/"
#endif
#define TX_MODEL REF_DIR "tiny/model"

/* popen is POSIX, not C99: declared here since -std=c99 hides it. */
#ifdef _WIN32
#define tx_popen _popen
#define tx_pclose _pclose
#else
FILE *popen(const char *command, const char *mode);
int pclose(FILE *stream);
#define tx_popen popen
#define tx_pclose pclose
#endif

static int tx_have(const char *example) {
    char path[256];
    FILE *f;
    snprintf(path, sizeof path, "build/%s", example);
    if (!(f = fopen(path, "rb"))) return 0;
    fclose(f);
    return 1;
}

/* Run a shell command; returns its stdout and stderr, or NULL (after a
 * failure naming the command) when it did not exit with status 0. */
static char *tx_run_command(const char *command) {
    char cmd[4200];
    size_t len = 0, cap = 1 << 16;
    char *out = (char *)malloc(cap);
    FILE *p;
    snprintf(cmd, sizeof cmd, "%s 2>&1", command);
    p = tx_popen(cmd, "r");
    if (!p || !out) {
        tt_fail_line(__FILE__, __LINE__, "cannot run %s", cmd);
        if (p) tx_pclose(p);
        free(out);
        return NULL;
    }
    for (;;) {
        size_t got = fread(out + len, 1, cap - len - 1, p);
        len += got;
        if (len + 1 < cap && got == 0) break;
        if (len + 1 == cap) {
            char *bigger = (char *)realloc(out, cap * 2);
            if (!bigger) break;
            out = bigger;
            cap *= 2;
        }
    }
    out[len] = 0;
    if (tx_pclose(p) != 0) {
        tt_fail_line(__FILE__, __LINE__, "%s failed:\n%s", cmd, out);
        free(out);
        return NULL;
    }
    return out;
}

/* Run ./build/<example> with the arguments printf'd from fmt (see
 * tx_run_command). */
static char *tx_run(const char *example, const char *fmt, ...) {
    char cmd[4096];
    size_t len;
    va_list ap;
    len = (size_t)snprintf(cmd, sizeof cmd, "./build/%s ", example);
    va_start(ap, fmt);
    vsnprintf(cmd + len, sizeof cmd - len, fmt, ap);
    va_end(ap);
    return tx_run_command(cmd);
}

/* The text after `prefix` on the first line that starts with it. */
static const char *tx_line(const char *out, const char *prefix) {
    const char *p = out;
    size_t n = strlen(prefix);
    while (p && *p) {
        if (!strncmp(p, prefix, n)) return p + n;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return NULL;
}

/* The number after `prefix` at the start of a line. */
static int tx_number(const char *out, const char *prefix, double *v) {
    const char *p = tx_line(out, prefix);
    return p && sscanf(p, "%lf", v) == 1;
}

/* ids as "a b c" in out (cap bytes). */
static void tx_ids_text(const int32_t *ids, int n, char *out, size_t cap) {
    size_t len = 0;
    int i;
    out[0] = 0;
    for (i = 0; i < n && len < cap; i++) len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? " " : "", (int)ids[i]);
}

/* Row 0 of the tiny reference tokens, and arg = "--tokens \"a b c\"". */
static int32_t *tx_ref_tokens(char *arg, size_t cap, int *n) {
    char ids[400];
    int rows;
    int32_t *tok = tu_read_npy_tokens(REF_DIR "tiny/tokens.npy", &rows, n);
    if (!tok) return NULL;
    tx_ids_text(tok, *n, ids, sizeof ids);
    snprintf(arg, cap, "--tokens \"%s\"", ids);
    return tok;
}

static const tu_tensor *tx_tensor(const tu_file *f, const char *name) {
    int i;
    for (i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

static int tx_count_layers(const tu_file *f) {
    char name[64];
    int l = 0;
    for (;;) {
        snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", l);
        if (!tx_tensor(f, name)) return l;
        l++;
    }
}

static tlens_model *tx_load(void) {
    tlens_model *m = NULL;
    tlens_error err;
    if (tlens_load(&m, TX_MODEL, NULL, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    return m;
}

/* ---- first_experiment -------------------------------------------------- */

/* max / mean / population std of batch row 0 (the first half of t). */
static void tx_stats(const tu_tensor *t, double *mx, double *mean, double *sd) {
    size_t n = t->numel / (size_t)t->shape[0], i;
    double var = 0;
    *mx = -INFINITY;
    *mean = 0;
    for (i = 0; i < n; i++) {
        if (t->f32[i] > *mx) *mx = t->f32[i];
        *mean += t->f32[i];
    }
    *mean /= (double)n;
    for (i = 0; i < n; i++) var += (t->f32[i] - *mean) * (t->f32[i] - *mean);
    *sd = sqrt(var / (double)n);
}

static void test_example_first_experiment(void) {
    static const char *names[3] = {"blocks.0.hook_resid_post", "blocks.1.ln1.hook_scale",
                                   "blocks.1.ln1.hook_normalized"};
    char arg[512];
    tu_file ref;
    const tu_tensor *q, *lg;
    int n, i, v, t;
    int32_t *tok;
    char *out;
    double loss = 0, printed = NAN;
    if (!tx_have("first_experiment")) TT_SKIP("build/first_experiment is missing (build the examples first)");
    TT_REQUIRE((tok = tx_ref_tokens(arg, sizeof arg, &n)) != NULL);
    TT_REQUIRE(tu_read_safetensors(REF_DIR "tiny/processed/activations.safetensors", &ref));
    out = tx_run("first_experiment", TX_MODEL " %s", arg);
    if (!out) { tu_free_safetensors(&ref); free(tok); return; }
    /* the configuration, read off the reference tensors' shapes */
    q = tx_tensor(&ref, "blocks.0.attn.hook_q");
    lg = tx_tensor(&ref, "logits");
    TT_REQUIRE(q && lg);
    {
        const char *keys[7] = {"n_layers ", "n_heads ", "d_head ", "d_model ", "d_mlp ", "d_vocab ", "n_ctx "};
        int expect[7];
        double printed_v = -1;
        expect[0] = tx_count_layers(&ref);
        expect[1] = q->shape[2];
        expect[2] = q->shape[3];
        expect[3] = tx_tensor(&ref, "hook_embed")->shape[2];
        expect[4] = tx_tensor(&ref, "blocks.0.mlp.hook_pre")->shape[2];
        expect[5] = lg->shape[2];
        expect[6] = 128; /* config.json's n_positions: no activation has it */
        for (i = 0; i < 7; i++) {
            printed_v = -1;
            TT_CHECK(tx_number(out, keys[i], &printed_v));
            TT_CHECK_INT((int)printed_v, expect[i]);
        }
    }
    TT_CHECK(tx_line(out, "hook_embed shape [1, 16, 64]\n") != NULL);
    for (i = 0; i < 3; i++) {
        const char *line = tx_line(out, names[i]);
        double mx, mean, sd, pmx, pmean, psd;
        TT_REQUIRE(line && sscanf(line, " max %lf mean %lf std %lf", &pmx, &pmean, &psd) == 3);
        tx_stats(tx_tensor(&ref, names[i]), &mx, &mean, &sd);
        TT_CHECK_CLOSE(pmx, mx, 1e-5, 1e-4);
        TT_CHECK_CLOSE(pmean, mean, 1e-6, 1e-4);
        TT_CHECK_CLOSE(psd, sd, 1e-6, 1e-4);
    }
    /* the loss from TransformerLens' logits */
    for (t = 0; t + 1 < n; t++) {
        const float *row = lg->f32 + (size_t)t * (size_t)lg->shape[2];
        double mx = row[0], sum = 0;
        for (v = 0; v < lg->shape[2]; v++) mx = row[v] > mx ? row[v] : mx;
        for (v = 0; v < lg->shape[2]; v++) sum += exp(row[v] - mx);
        loss += -(row[tok[t + 1]] - mx - log(sum)) / (n - 1);
    }
    TT_REQUIRE(tx_number(out, "loss ", &printed));
    TT_CHECK_CLOSE(printed, loss, 1e-5, 1e-5);
    free(out);
    tu_free_safetensors(&ref);
    free(tok);
}

/* ---- ablate_head ------------------------------------------------------- */

/* The loss with nothing, or one head's hook_z zeroed, through the API. */
static double tx_ablated_loss(tlens_ctx *ctx, const int32_t *tok, int n, int layer, int head) {
    char name[64];
    tlens_error err;
    double loss = NAN;
    int handle = 0;
    if (layer >= 0) {
        snprintf(name, sizeof name, "blocks.%d.attn.hook_z", layer);
        handle = tlens_add_ablation(ctx, name, head, TLENS_ABLATE_ZERO);
    }
    if (tlens_run(ctx, tok, 1, n, &err) != TLENS_OK || tlens_loss(ctx, tok, NULL, NULL, &loss, &err) != TLENS_OK)
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    if (handle) tlens_remove_hook(ctx, handle);
    return loss;
}

/* Rows "layer head loss change" after the header line; returns how many. */
static int tx_ablation_rows(const char *out, int *layer, int *head, double *loss, double *change, int cap) {
    const char *p = tx_line(out, "layer  head");
    int n = 0;
    while (p && (p = strchr(p, '\n')) && *++p && n < cap) {
        if (sscanf(p, "%d %d %lf %lf", &layer[n], &head[n], &loss[n], &change[n]) != 4) break;
        n++;
    }
    return n;
}

static void test_example_ablate_head(void) {
    char arg[512];
    int n, rows, i, layer[64], head[64];
    double loss[64], change[64], clean;
    int32_t *tok;
    char *out;
    tlens_model *m;
    tlens_ctx *ctx;
    tlens_error err;
    if (!tx_have("ablate_head")) TT_SKIP("build/ablate_head is missing (build the examples first)");
    TT_REQUIRE((tok = tx_ref_tokens(arg, sizeof arg, &n)) != NULL);
    TT_REQUIRE((m = tx_load()) != NULL);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    clean = tx_ablated_loss(ctx, tok, n, -1, -1);
    if ((out = tx_run("ablate_head", TX_MODEL " %s", arg)) != NULL) {
        double printed = NAN;
        TT_CHECK(tx_number(out, "clean loss ", &printed));
        TT_CHECK_CLOSE(printed, clean, 1e-5, 0);
        rows = tx_ablation_rows(out, layer, head, loss, change, 64);
        TT_CHECK_INT(rows, 2 * 4); /* every head of the 2 x 4 */
        for (i = 0; i < rows; i++) {
            double expect = tx_ablated_loss(ctx, tok, n, i / 4, i % 4);
            TT_CHECK_INT(layer[i], i / 4);
            TT_CHECK_INT(head[i], i % 4);
            TT_CHECK_CLOSE(loss[i], expect, 1e-5, 0);
            TT_CHECK_CLOSE(change[i], expect - clean, 2e-6, 0);
        }
        free(out);
    }
    if ((out = tx_run("ablate_head", TX_MODEL " %s --layer 1 --head 2", arg)) != NULL) {
        rows = tx_ablation_rows(out, layer, head, loss, change, 64);
        TT_CHECK_INT(rows, 1);
        TT_CHECK(rows == 1 && layer[0] == 1 && head[0] == 2);
        TT_CHECK_CLOSE(loss[0], tx_ablated_loss(ctx, tok, n, 1, 2), 1e-5, 0);
        free(out);
    }
    tlens_ctx_free(ctx);
    tlens_free(m);
    free(tok);
}

/* ---- activation_patching ----------------------------------------------- */

/* A patch written here, independent of tlens_add_patch: position `pos` of
 * the hooked activation [1, n, d_model] comes from `clean`. */
typedef struct tx_patch {
    const float *clean;
    int pos, d_model;
} tx_patch;

static int tx_patch_hook(const char *name, int layer, tlens_tensor *act, void *user) {
    const tx_patch *p = (const tx_patch *)user;
    (void)name;
    (void)layer;
    memcpy(act->data + (size_t)p->pos * (size_t)p->d_model, p->clean + (size_t)p->pos * (size_t)p->d_model,
           (size_t)p->d_model * sizeof(float));
    return 0;
}

static double tx_last_diff(const tlens_ctx *ctx, int answer, int wrong) {
    const tlens_tensor *lg = tlens_logits(ctx);
    const float *last = lg->data + (size_t)(lg->shape[1] - 1) * (size_t)lg->shape[2];
    return (double)last[answer] - (double)last[wrong];
}

/* The row "layer L v0 v1 ..." of the recovery table; returns the count. */
static int tx_patching_row(const char *out, int layer, double *v, int cap) {
    char prefix[32];
    const char *p;
    int n = 0;
    snprintf(prefix, sizeof prefix, "layer %-2d", layer);
    p = tx_line(out, prefix);
    while (p && n < cap) {
        char *end;
        while (*p == ' ') p++;
        if (*p == '\n' || !*p) break; /* strtod would go on to the next line */
        v[n] = strtod(p, &end);
        if (end == p) break;
        p = end;
        n++;
    }
    return n;
}

static void test_example_activation_patching(void) {
    enum { DIFF = 5 };
    char arg[512], clean_arg[256], corrupt_arg[256];
    int n, i, p, answer = 0, wrong = 0, V, D;
    int32_t *clean, corrupt[64];
    float *clean_logits, *resid1;
    double row[64], clean_ld, corrupt_ld, printed = NAN;
    char *out;
    tlens_model *m;
    tlens_ctx *ctx;
    tlens_error err;
    tx_patch patch;
    if (!tx_have("activation_patching")) TT_SKIP("build/activation_patching is missing (build the examples first)");
    TT_REQUIRE((clean = tx_ref_tokens(arg, sizeof arg, &n)) != NULL && n <= 64);
    TT_REQUIRE((m = tx_load()) != NULL);
    V = tlens_model_config(m)->d_vocab;
    D = tlens_model_config(m)->d_model;
    memcpy(corrupt, clean, (size_t)n * sizeof *clean);
    corrupt[DIFF] = (clean[DIFF] + 1) % V;
    tlens_ctx_new(&ctx, m, &err);
    /* answer / wrong: the tokens whose logits the corruption moves most */
    tlens_cache_select(ctx, "blocks.1.hook_resid_pre");
    TT_REQUIRE(tlens_run(ctx, clean, 1, n, &err) == TLENS_OK);
    clean_logits = (float *)malloc((size_t)V * sizeof(float));
    resid1 = (float *)malloc((size_t)n * (size_t)D * sizeof(float));
    memcpy(clean_logits, tlens_logits(ctx)->data + (size_t)(n - 1) * (size_t)V, (size_t)V * sizeof(float));
    memcpy(resid1, tlens_cache_act(ctx, "resid_pre", 1, NULL)->data, (size_t)n * (size_t)D * sizeof(float));
    TT_REQUIRE(tlens_run(ctx, corrupt, 1, n, &err) == TLENS_OK);
    for (i = 0; i < V; i++) {
        const float *c = tlens_logits(ctx)->data + (size_t)(n - 1) * (size_t)V;
        if (clean_logits[i] - c[i] > clean_logits[answer] - c[answer]) answer = i;
        if (clean_logits[i] - c[i] < clean_logits[wrong] - c[wrong]) wrong = i;
    }
    corrupt_ld = tx_last_diff(ctx, answer, wrong);
    clean_ld = (double)clean_logits[answer] - (double)clean_logits[wrong];
    TT_REQUIRE(clean_ld - corrupt_ld > 1e-3);
    tx_ids_text(clean, n, clean_arg, sizeof clean_arg);
    tx_ids_text(corrupt, n, corrupt_arg, sizeof corrupt_arg);
    out = tx_run("activation_patching", TX_MODEL " --clean \"%s\" --corrupt \"%s\" --answer %d --wrong %d", clean_arg,
                 corrupt_arg, answer, wrong);
    if (out) {
        TT_CHECK(tx_number(out, "clean logit diff ", &printed));
        TT_CHECK_CLOSE(printed, clean_ld, 1e-5, 0);
        TT_CHECK(tx_number(out, "corrupt logit diff ", &printed));
        TT_CHECK_CLOSE(printed, corrupt_ld, 1e-5, 0);
        /* layer 0: resid_pre is the embedding, so the differing position
         * alone makes the corrupted run clean, and the others change nothing */
        TT_CHECK_INT(tx_patching_row(out, 0, row, 64), n);
        for (p = 0; p < n; p++) TT_CHECK_CLOSE(row[p], p == DIFF ? 1.0 : 0.0, 1e-3, 0);
        /* layer 1: recomputed with a patch hook written here */
        TT_CHECK_INT(tx_patching_row(out, 1, row, 64), n);
        patch.clean = resid1;
        patch.d_model = D;
        tlens_cache_clear(ctx);
        for (p = 0; p < n; p++) {
            int h;
            patch.pos = p;
            h = tlens_add_hook(ctx, "blocks.1.hook_resid_pre", tx_patch_hook, &patch);
            TT_REQUIRE(tlens_run(ctx, corrupt, 1, n, &err) == TLENS_OK);
            tlens_remove_hook(ctx, h);
            TT_CHECK_CLOSE(row[p], (tx_last_diff(ctx, answer, wrong) - corrupt_ld) / (clean_ld - corrupt_ld), 2e-4, 0);
            if (p < DIFF) TT_CHECK_CLOSE(row[p], 0.0, 1e-4, 0); /* attention only looks back */
        }
        free(out);
    }
    free(clean_logits);
    free(resid1);
    tlens_ctx_free(ctx);
    tlens_free(m);
    free(clean);
}

/* ---- logit_lens -------------------------------------------------------- */

/* The logit lens the long way, from TransformerLens' activations and the
 * checkpoint's raw weights: centre x, divide by the final LayerNorm's
 * scale, apply ln_f's weight and bias, multiply by the (tied) embedding and
 * take away the mean over the vocabulary. fold_ln moved ln_f's weight and
 * bias into W_U and b_U, and center_unembed is that last subtraction. */
static void tx_lens(const float *x, double scale, const tu_file *raw, int D, int V, double *logits) {
    const float *wte = tx_tensor(raw, "transformer.wte.weight")->f32;
    const float *w = tx_tensor(raw, "transformer.ln_f.weight")->f32, *b = tx_tensor(raw, "transformer.ln_f.bias")->f32;
    double mean = 0, sum = 0, y[1024];
    int d, v;
    for (d = 0; d < D; d++) mean += x[d] / (double)D;
    for (d = 0; d < D; d++) y[d] = (x[d] - mean) / scale * w[d] + b[d];
    for (v = 0; v < V; v++) {
        logits[v] = 0;
        for (d = 0; d < D; d++) logits[v] += y[d] * wte[(size_t)v * (size_t)D + (size_t)d];
        sum += logits[v];
    }
    for (v = 0; v < V; v++) logits[v] -= sum / V;
}

static int tx_argmax(const double *x, int n) {
    int i, best = 0;
    for (i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Check the table of one logit_lens run at position `pos`. */
static void tx_check_lens(const char *out, const tu_file *ref, const tu_file *raw, const int32_t *tok, int n, int pos) {
    static const char *labels[5] = {"0_pre", "0_mid", "1_pre", "1_mid", "final_post"};
    static const char *names[5] = {"blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.1.hook_resid_pre",
                                   "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"};
    const int D = tx_tensor(ref, "hook_embed")->shape[2], V = tx_tensor(ref, "logits")->shape[2];
    double *logits = (double *)malloc(5 * (size_t)V * sizeof(double));
    double scale = tx_tensor(ref, "ln_final.hook_scale")->f32[pos];
    const float *real = tx_tensor(ref, "logits")->f32 + (size_t)pos * (size_t)V;
    int k, v, target = -1, printed_pos = -1;
    const char *p;
    for (k = 0; k < 5; k++)
        tx_lens(tx_tensor(ref, names[k])->f32 + (size_t)pos * (size_t)D, scale, raw, D, V, logits + (size_t)k * V);
    for (v = 0; v < V; v += 7) TT_CHECK_CLOSE(logits[4 * V + v], real[v], 1e-4, 1e-4); /* the test's own algebra */
    p = tx_line(out, "position ");
    TT_REQUIRE(p && sscanf(p, "%d, target %d", &printed_pos, &target) == 2);
    TT_CHECK_INT(printed_pos, pos);
    if (pos + 1 < n) TT_CHECK_INT(target, tok[pos + 1]);
    else TT_CHECK_CLOSE(logits[4 * V + target], logits[4 * V + tx_argmax(logits + 4 * V, V)], 1e-5, 0);
    for (k = 0; k < 5; k++) {
        const double *row = logits + (size_t)k * V;
        const char *line = tx_line(out, labels[k]);
        int top, rank, above = 0, at_least = 0;
        double top_logit, target_logit;
        TT_REQUIRE(line && sscanf(line, "%d %lf %lf %d", &top, &top_logit, &target_logit, &rank) == 4);
        TT_REQUIRE(top >= 0 && top < V && target >= 0 && target < V);
        TT_CHECK_CLOSE(row[top], row[tx_argmax(row, V)], 1e-5, 0); /* the top, or tied with it */
        TT_CHECK_CLOSE(top_logit, row[tx_argmax(row, V)], 1e-4, 1e-4);
        TT_CHECK_CLOSE(target_logit, row[target], 1e-4, 1e-4);
        for (v = 0; v < V; v++) {
            above += row[v] > row[target] + 1e-5;
            at_least += row[v] > row[target] - 1e-5;
        }
        TT_CHECK(rank >= above && rank <= at_least);
    }
    free(logits);
}

static void test_example_logit_lens(void) {
    char arg[512];
    int n;
    int32_t *tok;
    tu_file ref, raw;
    char *out;
    if (!tx_have("logit_lens")) TT_SKIP("build/logit_lens is missing (build the examples first)");
    TT_REQUIRE((tok = tx_ref_tokens(arg, sizeof arg, &n)) != NULL);
    TT_REQUIRE(tu_read_safetensors(REF_DIR "tiny/processed/activations.safetensors", &ref));
    TT_REQUIRE(tu_read_safetensors(TX_MODEL "/model.safetensors", &raw));
    if ((out = tx_run("logit_lens", TX_MODEL " %s --incl-mid", arg)) != NULL) {
        tx_check_lens(out, &ref, &raw, tok, n, n - 1); /* target: the model's own prediction */
        free(out);
    }
    if ((out = tx_run("logit_lens", TX_MODEL " %s --incl-mid --pos 7", arg)) != NULL) {
        tx_check_lens(out, &ref, &raw, tok, n, 7); /* target: the actual next token */
        free(out);
    }
    if ((out = tx_run("logit_lens", TX_MODEL " %s", arg)) != NULL) { /* without --incl-mid: no _mid rows */
        TT_CHECK(tx_line(out, "0_pre") && tx_line(out, "1_pre") && tx_line(out, "final_post"));
        TT_CHECK(!tx_line(out, "0_mid") && !tx_line(out, "1_mid"));
        free(out);
    }
    tu_free_safetensors(&ref);
    tu_free_safetensors(&raw);
    free(tok);
}

/* ---- induction_heads --------------------------------------------------- */

/* Parse "L<l> s s s s" rows following the line that starts with `title`. */
static int tx_score_table(const char *out, const char *title, float *scores, int L, int H) {
    const char *p = tx_line(out, title);
    int l, h;
    if (!p || !(p = strchr(p, '\n')) || !(p = strchr(p + 1, '\n'))) return 0; /* skip the column header */
    for (l = 0; l < L; l++) {
        int got_l;
        char *end;
        p++;
        if (sscanf(p, "L%d", &got_l) != 1 || got_l != l) return 0;
        p = strchr(p, ' ');
        for (h = 0; h < H; h++) {
            scores[l * H + h] = (float)strtod(p, &end);
            if (end == p) return 0;
            p = end;
        }
        p = strchr(p, '\n');
        if (!p) return 0;
    }
    return 1;
}

static void tx_check_induction(const char *out, tlens_ctx *ctx, int expect_bos) {
    static const char *titles[2] = {"induction scores", "previous-token scores"};
    static const char *best[2] = {"best induction heads: ", "best previous-token heads: "};
    static const int kinds[2] = {TLENS_HEAD_INDUCTION, TLENS_HEAD_PREVIOUS_TOKEN};
    int32_t tok[256];
    float printed[8], expect[8];
    int n = 0, k, i, j, half, start = expect_bos >= 0;
    const char *p = tx_line(out, "tokens:");
    tlens_error err;
    char *end;
    TT_REQUIRE(p != NULL);
    while (n < 256 && (tok[n] = (int32_t)strtol(p, &end, 10), end != p)) {
        p = end;
        n++;
    }
    half = (n - start) / 2;
    TT_CHECK_INT(n, start + 2 * 12);
    if (expect_bos >= 0) TT_CHECK_INT(tok[0], expect_bos);
    for (i = 0; i < half; i++) {
        TT_CHECK_INT(tok[start + half + i], tok[start + i]); /* the second half repeats the first */
        for (j = 0; j < i; j++) TT_CHECK(tok[start + i] != tok[start + j]); /* with no repeats of its own */
    }
    for (k = 0; k < 2; k++) {
        int l0, h0;
        double s0;
        TT_REQUIRE(tx_score_table(out, titles[k], printed, 2, 4));
        TT_REQUIRE(tlens_detect_heads(ctx, tok, n, kinds[k], NULL, expect, &err) == TLENS_OK);
        for (i = 0; i < 8; i++) TT_CHECK_CLOSE(printed[i], expect[i], 6e-5, 0);
        p = tx_line(out, best[k]);
        TT_REQUIRE(p && sscanf(p, "L%dH%d (%lf)", &l0, &h0, &s0) == 3 && l0 >= 0 && l0 < 2 && h0 >= 0 && h0 < 4);
        for (i = 0; i < 8; i++) TT_CHECK(expect[l0 * 4 + h0] >= expect[i]);
        TT_CHECK_CLOSE(s0, expect[l0 * 4 + h0], 6e-5, 0);
    }
}

static void test_example_induction_heads(void) {
    tlens_model *m;
    tlens_ctx *ctx;
    tlens_error err;
    char *out;
    if (!tx_have("induction_heads")) TT_SKIP("build/induction_heads is missing (build the examples first)");
    TT_REQUIRE((m = tx_load()) != NULL);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    if ((out = tx_run("induction_heads", TX_MODEL " --len 12 --seed 7")) != NULL) {
        tx_check_induction(out, ctx, -1); /* d_vocab 1000: no <|endoftext|>, no BOS */
        free(out);
    }
    if ((out = tx_run("induction_heads", TX_MODEL " --len 12 --seed 8 --bos 5")) != NULL) {
        tx_check_induction(out, ctx, 5);
        free(out);
    }
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* ---- attention_picture ------------------------------------------------- */

/* The reference pattern of (layer, head), batch row 0, [n, n]. */
static const float *tx_ref_pattern(const tu_file *ref, int layer, int head, int n) {
    char name[64];
    snprintf(name, sizeof name, "blocks.%d.attn.hook_pattern", layer);
    return tx_tensor(ref, name)->f32 + (size_t)head * (size_t)n * (size_t)n;
}

static void tx_check_svg(const char *svg, const float *P, int n) {
    const char *p = svg;
    int rects = 0, titles = 0, i, j;
    double v;
    size_t len = strlen(svg);
    TT_CHECK(!strncmp(svg, "<svg", 4));
    TT_CHECK(len > 8 && !strcmp(svg + len - 7, "</svg>\n"));
    while ((p = strstr(p, "<rect")) != NULL) {
        rects++;
        p = strstr(p, "<title>");
        if (p && sscanf(p, "<title>query %d, key %d: %lf</title>", &i, &j, &v) == 3 && j <= i && i < n) {
            TT_CHECK_CLOSE(v, P[i * n + j], 6e-5, 0);
            titles++;
        }
        if (!p) break;
    }
    TT_CHECK_INT(rects, n * (n + 1) / 2); /* one per cell on or below the diagonal */
    TT_CHECK_INT(titles, rects);
}

/* Every head's lower triangle in the page's JSON, against the reference. */
static void tx_check_html(const char *html, const tu_file *ref, int n) {
    char key[64];
    int l, h, i, j;
    TT_CHECK(strstr(html, "<!DOCTYPE html>") == html);
    TT_CHECK(strstr(html, "\"tokens\": [\"766\", \"834\"") != NULL);
    TT_CHECK(strstr(html, "</html>") != NULL);
    for (l = 0; l < 2; l++)
        for (h = 0; h < 4; h++) {
            const float *P = tx_ref_pattern(ref, l, h, n);
            const char *p;
            int good = 1;
            snprintf(key, sizeof key, "{\"layer\": %d, \"head\": %d, \"p\": [", l, h);
            p = strstr(html, key);
            TT_CHECK(p != NULL);
            if (!p) continue;
            p += strlen(key);
            for (i = 0; i < n && good; i++)
                for (j = 0; j <= i && good; j++) {
                    char *end;
                    double v;
                    while (*p == '[' || *p == ',' || *p == ' ' || *p == ']') p++;
                    v = strtod(p, &end);
                    good = end != p && tt_close(v, P[i * n + j], 1e-4, 6e-4);
                    if (!good)
                        tt_fail_line(__FILE__, __LINE__, "L%dH%d [%d][%d]: %g vs %g", l, h, i, j, v, P[i * n + j]);
                    p = end;
                }
            TT_CHECK(good && !strncmp(p, "]]}", 3)); /* and nothing more in that head */
        }
}

static void test_example_attention_picture(void) {
    const char *svg_path = "build/test_examples_pattern.svg", *html_path = "build/test_examples_patterns.html";
    char arg[512], *out, *svg, *html;
    int n;
    size_t size;
    int32_t *tok;
    tu_file ref;
    if (!tx_have("attention_picture")) TT_SKIP("build/attention_picture is missing (build the examples first)");
    TT_REQUIRE((tok = tx_ref_tokens(arg, sizeof arg, &n)) != NULL);
    TT_REQUIRE(tu_read_safetensors(REF_DIR "tiny/processed/activations.safetensors", &ref));
    remove(svg_path);
    remove(html_path);
    out = tx_run("attention_picture", TX_MODEL " %s --layer 1 --head 2 -o %s --html %s", arg, svg_path, html_path);
    if (out) {
        svg = (char *)tu_read_file(svg_path, &size);
        html = (char *)tu_read_file(html_path, &size);
        TT_CHECK(svg && html);
        if (svg) tx_check_svg(svg, tx_ref_pattern(&ref, 1, 2, n), n);
        if (html) tx_check_html(html, &ref, n);
        free(svg);
        free(html);
        free(out);
    }
    remove(svg_path);
    remove(html_path);
    tu_free_safetensors(&ref);
    free(tok);
}

/* ---- the escaping the SVG / HTML writers use --------------------------- */

static void tx_check_escaped(const char *in, int json, const char *expect) {
    FILE *f = tmpfile();
    char got[256];
    size_t n;
    TT_REQUIRE(f != NULL);
    ex_write_escaped(f, in, json);
    rewind(f);
    n = fread(got, 1, sizeof got - 1, f);
    got[n] = 0;
    fclose(f);
    TT_CHECK_STR(got, expect);
}

static void test_example_escaping(void) {
    /* XML: markup characters as entities, control bytes shown as \xNN,
     * invalid UTF-8 (a token cut inside a character) as U+FFFD */
    tx_check_escaped("a<b>&\"'", 0, "a&lt;b&gt;&amp;&quot;&apos;");
    tx_check_escaped("\n\t\x01", 0, "\\x0a\\x09\\x01");
    tx_check_escaped("caf\xC3\xA9 \xE2\x82", 0, "caf\xC3\xA9 \xEF\xBF\xBD\xEF\xBF\xBD");
    tx_check_escaped("\xC0\xAF\xED\xA0\x80", 0, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    /* JSON inside <script>: no raw '<' (so no "</script>"), quotes and
     * backslashes escaped, control characters as \u00XX */
    tx_check_escaped("</script>\"\\", 1, "\\u003c/script\\u003e\\\"\\\\");
    tx_check_escaped("\n\x1f&\xF0\x9F\x98\x80", 1, "\\u000a\\u001f\\u0026\xF0\x9F\x98\x80");
    tx_check_escaped("\xFF", 1, "\xEF\xBF\xBD");
}

void tests_examples(void) {
    TT_RUN(test_example_first_experiment);
    TT_RUN(test_example_ablate_head);
    TT_RUN(test_example_activation_patching);
    TT_RUN(test_example_logit_lens);
    TT_RUN(test_example_induction_heads);
    TT_RUN(test_example_attention_picture);
    TT_RUN(test_example_escaping);
}
