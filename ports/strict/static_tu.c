/* static_tu.c - a translation unit with its own private copy of tlens
 * (TLENS_STATIC: every function static). `make test-strict` compiles it
 * twice, as PORT_TU=port_tu_a and port_tu_b, and links both into one
 * program with static_main.c: no duplicate symbols, and each copy runs. */
#define TLENS_STATIC
#define TLENS_IMPLEMENTATION
#include "tlens.h"

#include <math.h>
#include <string.h>

int PORT_TU(void);

/* 0 when a forward pass of a small random model gives finite logits. */
int PORT_TU(void) {
    tlens_config cfg;
    tlens_model *m;
    tlens_ctx *ctx;
    int32_t tokens[3] = {1, 2, 3};
    int bad = 0;
    size_t i;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_layers = 1;
    cfg.d_model = 16;
    cfg.n_heads = 2;
    cfg.d_mlp = 64;
    cfg.d_vocab = 50;
    cfg.n_ctx = 8;
    if (tlens_init_random(&m, &cfg, NULL, 1, NULL) != TLENS_OK) return 1;
    if (tlens_ctx_new(&ctx, m, NULL) != TLENS_OK || tlens_run(ctx, tokens, 1, 3, NULL) != TLENS_OK) return 1;
    for (i = 0; i < tlens_tensor_numel(tlens_logits(ctx)); i++) bad += !isfinite(tlens_logits(ctx)->data[i]);
    tlens_ctx_free(ctx);
    tlens_free(m);
    return bad != 0;
}
