/* induction_heads - find the heads that continue repeated text.
 *
 *   induction_heads MODEL [--len N] [--seed S] [--bos ID] [--tokens "..."]
 *
 * An induction head completes patterns "A B ... A -> B": at a token it has
 * seen before, it attends to the token that came right after the earlier
 * occurrence and copies it. The classic test is a sequence of random
 * tokens repeated twice: nothing in the first half is predictable, every
 * token of the second half is, by copying. On it an induction head at
 * second-half position len + i attends to first-half position i + 1.
 *
 * In TransformerLens:
 *
 *     from transformer_lens.head_detector import detect_head
 *     scores = detect_head(model, seq, "induction_head")   # [layer, head]
 *
 * tlens_detect_heads computes the same score: the share of a head's
 * attention, summed over the queries, that lands where the detection
 * pattern is 1. Previous-token heads (attending to position i - 1) are
 * scored too: induction heads are built on them, in an earlier layer.
 *
 * The sequence is [BOS] r_1 .. r_N r_1 .. r_N with N distinct random ids
 * (--seed; distinct so that the first half holds no repeats of its own).
 * BOS is <|endoftext|> (50256) when the vocabulary has it; --bos -1 drops
 * it. --tokens scores a sequence of your own instead.
 *
 * --draw-from TEXT draws the random ids from the tokens of TEXT rather than
 * from the whole vocabulary. A model trained on a small corpus, such as the
 * bundled one, has one shared embedding for every token its corpus lacks;
 * ids drawn from its own kind of text keep the sequence's tokens distinct.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "example_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "[MODEL] [--len N] [--seed S] [--bos ID] [--draw-from TEXT] [--tokens \"1 2 3 ...\"]"

/* SplitMix64: tiny, and the same sequence on every machine. */
static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* How many distinct ids other than `bos` the pool has (all of 0..n-1 when
 * pool is NULL). */
static int distinct_ids(const int32_t *pool, int n, int bos) {
    int i, j, count = 0;
    if (!pool) return n - (bos >= 0 && bos < n);
    for (i = 0; i < n; i++) {
        for (j = 0; j < i && pool[j] != pool[i]; j++) {}
        count += j == i && pool[i] != bos;
    }
    return count;
}

/* [bos] r_1..r_len r_1..r_len, the r distinct ids drawn from pool[0..n_pool)
 * (from 0..n_pool-1 when pool is NULL); returns the length. */
static int repeated_sequence(int32_t *out, int len, int bos, const int32_t *pool, int n_pool, uint64_t seed) {
    int n = 0, i, j;
    if (bos >= 0) out[n++] = bos;
    for (i = 0; i < len; i++) {
        int32_t t;
        do { /* draw again on a repeat or on BOS (the modulo bias is negligible) */
            uint64_t r = next_random(&seed) % (uint64_t)n_pool;
            t = pool ? pool[r] : (int32_t)r;
            for (j = 0; j < i && out[n - i + j] != t; j++) {}
        } while (j < i || t == bos);
        out[n++] = t;
    }
    for (i = 0; i < len; i++) out[n + i] = out[n - len + i];
    return n + len;
}

static void print_table(const char *title, const float *scores, int n_layers, int n_heads) {
    int l, h;
    printf("%s scores, layer x head:\n%-5s", title, "layer");
    for (h = 0; h < n_heads; h++) printf("   H%-4d", h);
    printf("\n");
    for (l = 0; l < n_layers; l++) {
        printf("L%-4d", l);
        for (h = 0; h < n_heads; h++) printf(" %7.4f", scores[l * n_heads + h]);
        printf("\n");
    }
}

/* The `count` highest-scoring heads, best first. */
static void print_best(const char *title, const float *scores, int n_layers, int n_heads, int count) {
    int n = n_layers * n_heads, k, i;
    char *taken = (char *)ex_malloc((size_t)n);
    memset(taken, 0, (size_t)n);
    printf("best %s heads:", title);
    for (k = 0; k < count && k < n; k++) {
        int best = -1;
        for (i = 0; i < n; i++)
            if (!taken[i] && (best < 0 || scores[i] > scores[best])) best = i;
        taken[best] = 1;
        printf(" L%dH%d (%.4f)", best / n_heads, best % n_heads, scores[best]);
    }
    printf("\n");
    free(taken);
}

int main(int argc, char **argv) {
    ex_common c;
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    const tlens_config *cfg;
    const char *v, *draw_from = NULL;
    int32_t *tokens, *pool = NULL;
    int n, i, len = 20, bos = -2; /* -2: the default, decided below */
    uint64_t seed = 1;
    float *induction, *previous;

    ex_args_begin(&c, "induction_heads", USAGE);
    for (i = 1; i < argc; i++) {
        if ((v = ex_value(argc, argv, &i, "--len"))) len = ex_int(v, "--len");
        else if ((v = ex_value(argc, argv, &i, "--seed"))) seed = (uint64_t)ex_int(v, "--seed");
        else if ((v = ex_value(argc, argv, &i, "--bos"))) bos = ex_int(v, "--bos");
        else if ((v = ex_value(argc, argv, &i, "--draw-from"))) draw_from = v;
        else ex_args_common(&c, argc, argv, &i);
    }
    ex_args_end(&c);

    model = ex_load(c.model_path);
    cfg = tlens_model_config(model);
    if (c.tokens || c.prompt) {
        tokens = ex_prompt_tokens(model, &c, &n);
    } else {
        if (bos == -2) bos = cfg->d_vocab > 50256 ? 50256 : -1;
        int n_pool = cfg->d_vocab;
        if (bos < -1 || bos >= cfg->d_vocab) ex_die("--bos %d is outside the vocabulary", bos);
        if (draw_from) pool = ex_text_to_tokens(model, draw_from, &n_pool);
        if (len < 1 || len > distinct_ids(pool, n_pool, bos) || 2 * len + (bos >= 0) >= cfg->n_ctx)
            ex_die("--len %d: need 1 <= len <= the distinct ids to draw from, and a sequence shorter than n_ctx = %d",
                   len, cfg->n_ctx);
        tokens = (int32_t *)ex_malloc((size_t)(2 * len + 1) * sizeof *tokens);
        n = repeated_sequence(tokens, len, bos, pool, n_pool, seed);
    }
    ctx = ex_context(model);
    ex_print_tokens(model, "tokens", tokens, n);

    /* detect_head's defaults: no exclusions, the "mul" error measure */
    induction = (float *)ex_malloc((size_t)cfg->n_layers * (size_t)cfg->n_heads * sizeof(float));
    previous = (float *)ex_malloc((size_t)cfg->n_layers * (size_t)cfg->n_heads * sizeof(float));
    ex_check(tlens_detect_heads(ctx, tokens, n, TLENS_HEAD_INDUCTION, NULL, induction, &err), &err);
    ex_check(tlens_detect_heads(ctx, tokens, n, TLENS_HEAD_PREVIOUS_TOKEN, NULL, previous, &err), &err);

    print_table("induction", induction, cfg->n_layers, cfg->n_heads);
    print_table("previous-token", previous, cfg->n_layers, cfg->n_heads);
    print_best("induction", induction, cfg->n_layers, cfg->n_heads, 3);
    print_best("previous-token", previous, cfg->n_layers, cfg->n_heads, 3);

    free(induction);
    free(previous);
    free(tokens);
    free(pool);
    tlens_ctx_free(ctx);
    tlens_free(model);
    return 0;
}
