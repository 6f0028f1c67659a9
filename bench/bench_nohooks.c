/* The same forward pass with the hook system compiled out (TLENS_NO_HOOKS),
 * in a translation unit of its own, so that bench.c can time both builds in
 * one run. */
#define TLENS_STATIC
#define TLENS_NO_HOOKS
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "bench_timer.h"

/* A random GPT-2 small with the same seed as bench.c (so the same
 * weights) and a context, in this translation unit's build of tlens. */
typedef struct nohooks { tlens_model *m; tlens_ctx *ctx; } nohooks;

void *bench_nohooks_new(const tlens_config *cfg) {
    nohooks *n = (nohooks *)calloc(1, sizeof *n);
    if (!n || tlens_init_random(&n->m, cfg, NULL, 1, NULL) != TLENS_OK) return NULL;
    tlens_ctx_new(&n->ctx, n->m, NULL);
    return n;
}

/* Milliseconds of one T-token prefill. */
double bench_nohooks_run_ms(void *state, const int32_t *tok, int T) {
    nohooks *n = (nohooks *)state;
    double t0 = bench_now_ms();
    tlens_run(n->ctx, tok, 1, T, NULL);
    return bench_now_ms() - t0;
}

void bench_nohooks_free(void *state) {
    nohooks *n = (nohooks *)state;
    tlens_ctx_free(n->ctx);
    tlens_free(n->m);
    free(n);
}
