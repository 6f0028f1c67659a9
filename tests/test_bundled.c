/* The bundled model (models/kjv.tlens) and what a newcomer runs first: the
 * README's quick start and `make demo`.
 *
 * - Its log-probabilities equal those of a GPT-2 forward pass written in
 *   PyTorch from the equations (tools/bundled_reference.py), run on the
 *   Hugging Face folder the model was trained into, not on the .tlens file.
 * - It has learned: on held-out chapters (tests/data/bundled/heldout.txt,
 *   never trained on) its loss is far below the entropy of those chapters'
 *   own token frequencies, which no unigram model can beat on them.
 * - It has an induction head, scored from the cached attention patterns
 *   and named by the library's head detector alike.
 *
 * Included from test_main.c. Runs from the repository root.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TB_MODEL "models/kjv.tlens"
#define TB_DATA "tests/data/bundled/"

static tlens_model *tb_load(void) {
    tlens_model *m = NULL;
    tlens_error err;
    if (tlens_load(&m, TB_MODEL, NULL, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        return NULL;
    }
    return m;
}

/* The text of a file, NUL-terminated, or NULL. */
static char *tb_read_text(const char *path) {
    size_t size;
    unsigned char *data = tu_read_file(path, &size);
    char *text = data ? (char *)malloc(size + 1) : NULL;
    if (text) {
        memcpy(text, data, size);
        text[size] = 0;
    }
    free(data);
    return text;
}

static void test_bundled_config(void) {
    tlens_model *m = tb_load();
    const tlens_config *c;
    TT_REQUIRE(m);
    c = tlens_model_config(m);
    /* what convert/train_bundled.py trains: GPT-2's architecture, smaller */
    TT_CHECK_INT(c->n_layers, 4);
    TT_CHECK_INT(c->d_model, 128);
    TT_CHECK_INT(c->n_heads, 4);
    TT_CHECK_INT(c->d_head, 32);
    TT_CHECK_INT(c->d_mlp, 512);
    TT_CHECK_INT(c->d_vocab, 50257);
    TT_CHECK_INT(c->n_ctx, 128);
    TT_CHECK_INT(c->act_fn, TLENS_ACT_GELU_NEW);
    TT_CHECK(c->tied);
    TT_CHECK(tlens_model_tokenizer(m) != NULL);
    tlens_free(m);
}

/* log_softmax of one row of logits, at token t. */
static double tb_logprob(const float *row, int V, int t) {
    double mx = -INFINITY, sum = 0;
    int i;
    for (i = 0; i < V; i++) if (row[i] > mx) mx = row[i];
    for (i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    return (double)row[t] - mx - log(sum);
}

/* One prompt of reference.txt against tlens, within tol. */
static void tb_check_prompt(tlens_ctx *ctx, FILE *f, int n, const char *mode, double tol) {
    int32_t ids[64];
    const tlens_tensor *logits;
    int i, k, V;
    tlens_error err;
    TT_REQUIRE(n > 0 && n <= 64);
    for (i = 0; i < n; i++) TT_REQUIRE(fscanf(f, "%d", &ids[i]) == 1);
    TT_REQUIRE(tlens_run(ctx, ids, 1, n, &err) == TLENS_OK);
    logits = tlens_logits(ctx);
    V = logits->shape[2];
    for (i = 0; i < n; i++) {
        const float *row = logits->data + (size_t)i * (size_t)V;
        char next[32];
        int pos, top;
        double lp;
        TT_REQUIRE(fscanf(f, "%d %31s", &pos, next) == 2 && pos == i);
        if (i + 1 < n) TT_CHECK_CLOSE(tb_logprob(row, V, ids[i + 1]), atof(next), tol, 0);
        for (k = 0; k < 5; k++) {
            TT_REQUIRE(fscanf(f, "%d %lf", &top, &lp) == 2);
            if (!tt_close(tb_logprob(row, V, top), lp, tol, 0))
                tt_fail_line(__FILE__, __LINE__, "%s: position %d, token %d: log-prob %.5f, PyTorch %.5f", mode, i,
                             top, tb_logprob(row, V, top), lp);
        }
    }
}

/* The file's float16 weights as they are (raw), processed as
 * from_pretrained does into float32 matrices, and processed into float16
 * matrices again (the default for a float16 file: half the memory, at the
 * cost of rounding the processed weights once more). */
static void test_bundled_matches_pytorch(void) {
    static const struct { int raw; tlens_dtype dtype; double tol; const char *name; } modes[] = {
        {1, TLENS_DTYPE_AUTO, 2e-3, "raw"},
        {0, TLENS_F32, 2e-3, "processed, float32"},
        {0, TLENS_DTYPE_AUTO, 2e-2, "processed, float16"}};
    size_t k;
    for (k = 0; k < sizeof modes / sizeof *modes; k++) {
        tlens_load_options opt;
        tlens_model *m = NULL;
        tlens_ctx *ctx = NULL;
        tlens_error err;
        FILE *f = fopen(TB_DATA "reference.txt", "r");
        char word[16];
        int n, prompts = 0;
        memset(&opt, 0, sizeof opt);
        opt.raw = modes[k].raw;
        opt.weight_dtype = modes[k].dtype;
        TT_REQUIRE(f);
        if (tlens_load(&m, TB_MODEL, &opt, &err) || tlens_ctx_new(&ctx, m, &err)) {
            tt_fail_line(__FILE__, __LINE__, "%s", err.message);
            fclose(f);
            tlens_free(m);
            return;
        }
        while (fscanf(f, "%15s %d", word, &n) == 2 && !strcmp(word, "prompt")) {
            tb_check_prompt(ctx, f, n, modes[k].name, modes[k].tol);
            prompts++;
        }
        TT_CHECK_INT(prompts, 3);
        fclose(f);
        tlens_ctx_free(ctx);
        tlens_free(m);
    }
}

/* Held-out text in windows of n_ctx tokens, each after a BOS. */
static void test_bundled_beats_unigram(void) {
    tlens_model *m = tb_load();
    tlens_ctx *ctx = NULL;
    tlens_error err;
    char *text = tb_read_text(TB_DATA "heldout.txt");
    int32_t *ids = NULL, window[1024];
    int *counts = NULL;
    size_t n = 0, len, i, targets = 0, span;
    double model_nats = 0, entropy = 0;
    TT_REQUIRE(m && text && tlens_model_config(m)->n_ctx <= 1024);
    span = (size_t)tlens_model_config(m)->n_ctx - 1; /* tokens after the BOS */
    len = strlen(text);
    ids = (int32_t *)malloc((len + 1) * sizeof *ids);
    counts = (int *)calloc(50257, sizeof *counts);
    TT_REQUIRE(ids && counts && tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    TT_REQUIRE(tlens_encode(tlens_model_tokenizer(m), text, len, 0, ids, len + 1, &n, &err) == TLENS_OK);
    TT_REQUIRE(n > 1000);
    for (i = 0; i + 1 < n; i += span) {
        size_t w = n - i < span ? n - i : span, j;
        double mean;
        window[0] = 50256;
        memcpy(window + 1, ids + i, w * sizeof *ids);
        TT_REQUIRE(tlens_run(ctx, window, 1, (int)w + 1, &err) == TLENS_OK);
        TT_REQUIRE(tlens_loss(ctx, window, NULL, NULL, &mean, &err) == TLENS_OK);
        model_nats += mean * (double)w;
        for (j = 1; j <= w; j++) counts[window[j]]++;
        targets += w;
    }
    for (i = 0; i < 50257; i++)
        if (counts[i]) entropy -= counts[i] * log((double)counts[i] / (double)targets);
    model_nats /= (double)targets;
    entropy /= (double)targets;
    printf("  bundled model on %zu held-out tokens: %.3f nats/token; their unigram entropy %.3f\n", targets,
           model_nats, entropy);
    TT_CHECK(model_nats < entropy - 1.0); /* "clearly lower": by more than a nat a token */
    free(ids);
    free(counts);
    free(text);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* It has an induction head. The sequence is [BOS] r_1 .. r_N r_1 .. r_N,
 * the r the first N distinct tokens of the held-out text: at the second
 * r_k (position N + k) an induction head attends to position k + 1, the
 * token that followed r_k the first time. Score of a head: its mean
 * attention on that position over k = 1 .. N-1, computed here from the
 * cached hook_pattern (uniform attention would give about 0.02). A head
 * after layer 0 must score over 0.3, and the model must predict the second
 * copy far better than the first, which nothing but copying predicts. */
#define TB_N 40
static void test_bundled_induction_head(void) {
    tlens_model *m = tb_load();
    tlens_ctx *ctx = NULL;
    tlens_error err;
    char *text = tb_read_text(TB_DATA "heldout.txt"), name[64];
    int32_t *ids = NULL, seq[2 * TB_N + 1];
    float per_token[2 * TB_N];
    size_t n = 0, len, i;
    int N = 0, j, k, l, h, H, best_l = -1, best_h = -1;
    double best = 0, first = 0, second = 0;
    float *scores;
    TT_REQUIRE(m && text);
    len = strlen(text);
    ids = (int32_t *)malloc((len + 1) * sizeof *ids);
    TT_REQUIRE(ids && tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    TT_REQUIRE(tlens_encode(tlens_model_tokenizer(m), text, len, 0, ids, len + 1, &n, &err) == TLENS_OK);
    seq[0] = 50256;
    for (i = 0; i < n && N < TB_N; i++) {
        for (j = 1; j <= N && seq[j] != ids[i]; j++) {}
        if (j > N && ids[i] != 50256) seq[++N] = ids[i];
    }
    TT_REQUIRE(N == TB_N);
    memcpy(seq + N + 1, seq + 1, (size_t)N * sizeof *seq);
    TT_REQUIRE(tlens_cache_select(ctx, "blocks.*.attn.hook_pattern") == TLENS_OK);
    TT_REQUIRE(tlens_run(ctx, seq, 1, 2 * N + 1, &err) == TLENS_OK);
    for (l = 1; l < tlens_model_config(m)->n_layers; l++) {
        const tlens_tensor *pat = tlens_cache_get(ctx, tlens_act_name(name, sizeof name, "pattern", l, NULL));
        TT_REQUIRE(pat && pat->ndim == 4 && pat->shape[3] == 2 * N + 1);
        for (h = 0; h < pat->shape[1]; h++) {
            const float *P = pat->data + (size_t)h * (size_t)(2 * N + 1) * (size_t)(2 * N + 1);
            double score = 0;
            for (k = 1; k < N; k++) score += P[(size_t)(N + k) * (size_t)(2 * N + 1) + (size_t)(k + 1)];
            score /= N - 1;
            if (score > best) best = score, best_l = l, best_h = h;
        }
    }
    TT_REQUIRE(tlens_loss(ctx, seq, NULL, per_token, NULL, &err) == TLENS_OK);
    for (k = 1; k < N; k++) {
        first += per_token[k];      /* predicting r_{k+1} the first time */
        second += per_token[N + k]; /* and the second time */
    }
    first /= N - 1;
    second /= N - 1;
    printf("  induction: best head L%dH%d, mean attention %.3f on the token after the earlier copy;"
           " loss %.2f on the first copy, %.2f on the second\n", best_l, best_h, best, first, second);
    TT_CHECK(best > 0.3);
    TT_CHECK(second < first - 2.0);
    /* the library's head detector (TransformerLens' detect_head) names the
     * same head the best induction head */
    H = tlens_model_config(m)->n_heads;
    scores = (float *)malloc(sizeof(float) * (size_t)(tlens_model_config(m)->n_layers * H));
    TT_REQUIRE(scores && tlens_detect_heads(ctx, seq, 2 * N + 1, TLENS_HEAD_INDUCTION, NULL, scores, &err) == TLENS_OK);
    for (l = 0, k = 0; l < tlens_model_config(m)->n_layers * H; l++)
        if (scores[l] > scores[k]) k = l;
    TT_CHECK_INT(k, best_l * H + best_h);
    free(scores);
    free(ids);
    free(text);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* The first ```c block of README.md, written to `path`. */
static int tb_extract_quick_start(const char *path) {
    char *readme = tb_read_text("README.md"), *start, *end;
    int ok = 0;
    if (readme && (start = strstr(readme, "```c\n")) && (end = strstr(start + 5, "```"))) {
        start += 5;
        ok = tu_write_file(path, start, (size_t)(end - start));
    }
    free(readme);
    return ok;
}

/* The README's quick start compiles as C99 and prints the shape and first
 * element of blocks.0.hook_resid_post, which the API gives here too. */
static void test_readme_quick_start(void) {
    const char *src = "build/test-tmp/quick_start.c", *bin = "build/test-tmp/quick_start";
    const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    char cmd[1024], *out;
    int32_t tokens[4] = {50256, 464, 3797, 318};
    tlens_model *m = tb_load();
    tlens_ctx *ctx = NULL;
    tlens_error err;
    const tlens_tensor *r;
    TT_REQUIRE(m && tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", cc);
    if (system(cmd) != 0) {
        tlens_ctx_free(ctx);
        tlens_free(m);
        TT_SKIP("no C compiler to build the quick start with");
    }
    TT_REQUIRE(tb_extract_quick_start(src));
    snprintf(cmd, sizeof cmd, "%s -std=c99 -Wall -Wextra -Werror -O1 -I. -o %s %s -lm 2>&1", cc, bin, src);
    TT_CHECK_INT(system(cmd), 0);
    tlens_cache_select(ctx, "blocks.0.hook_resid_post");
    TT_REQUIRE(tlens_run(ctx, tokens, 1, 4, &err) == TLENS_OK);
    r = tlens_cache_get(ctx, "blocks.0.hook_resid_post");
    TT_REQUIRE(r);
    snprintf(cmd, sizeof cmd, "./%s", bin);
    out = tx_run_command(cmd);
    TT_REQUIRE(out);
    /* the shape exactly; the value to the six decimals printed, give or
     * take one, since the program may be built for other instructions
     * than this test (no -march), whose sums can differ in the last bit */
    TT_CHECK(strncmp(out, "[1, 4, 128] ", 12) == 0);
    TT_CHECK_CLOSE(atof(out + 12), r->data[0], 1.5e-6, 0);
    free(out);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* `make demo`: every section runs and the attention page is written. */
static void test_demo(void) {
    char *out;
    static const char *const sections[] = {"== tlens generate", "== tlens run", "n_layers 4", "loss ",
                                           "best induction heads:", "open build/attention.html"};
    size_t i;
    if (!tx_have("tlens") || !tx_have("first_experiment") || !tx_have("induction_heads") ||
        !tx_have("attention_picture"))
        TT_SKIP("the tool and the examples are not built");
    remove("build/attention.html");
    out = tx_run_command("sh examples/demo.sh build");
    TT_REQUIRE(out);
    for (i = 0; i < sizeof sections / sizeof *sections; i++)
        if (!strstr(out, sections[i])) tt_fail_line(__FILE__, __LINE__, "demo output lacks \"%s\"", sections[i]);
    TT_CHECK(tb_read_text("build/attention.html") != NULL);
    free(out);
}

void tests_bundled(void) {
    TT_RUN(test_bundled_config);
    TT_RUN(test_bundled_matches_pytorch);
    TT_RUN(test_bundled_beats_unigram);
    TT_RUN(test_bundled_induction_head);
    TT_RUN(test_readme_quick_start);
    TT_RUN(test_demo);
}
