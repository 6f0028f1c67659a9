/* The same forward pass with the hook system compiled out (TLENS_NO_HOOKS),
 * in a translation unit of its own, so that bench.c can time both builds in
 * one run. */
#define TLENS_STATIC
#define TLENS_NO_HOOKS
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "bench_timer.h"

/* Median milliseconds of `reps` runs of a T-token prefill of a random
 * GPT-2 small (the same seed as bench.c, so the same weights). */
double bench_nohooks_prefill_ms(const tlens_config *cfg, int T, int reps) {
    tlens_model *m;
    tlens_ctx *ctx;
    double ms;
    int32_t *tok = bench_tokens(T, cfg->d_vocab);
    if (tlens_init_random(&m, cfg, NULL, 1, NULL) != TLENS_OK) return -1;
    tlens_ctx_new(&ctx, m, NULL);
    ms = bench_median_ms(ctx, tok, T, reps);
    tlens_ctx_free(ctx);
    tlens_free(m);
    free(tok);
    return ms;
}
