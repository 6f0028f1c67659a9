/* user.c - a program that includes tlens.h for its API only, linked with
 * impl.c (the implementation, in another translation unit): the header
 * works split in two, and each configuration of impl.c that
 * `make test-strict` builds runs a forward pass. It needs no files (a
 * random model of a small GPT-2 shape), so it also runs with
 * TLENS_NO_STDIO. Prints "1 passed, 0 failed" on success. */
#include "tlens.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* hooks fire once per layer, except with TLENS_NO_HOOKS (compiled out):
 * the target builds user.c with -DPORT_EXPECT_HOOK_CALLS=0 for that one */
#ifndef PORT_EXPECT_HOOK_CALLS
#define PORT_EXPECT_HOOK_CALLS 2
#endif

static int calls;

static int count(const char *name, int layer, tlens_tensor *act, void *user) {
    (void)name;
    (void)layer;
    (void)act;
    (void)user;
    calls++;
    return 0;
}

int main(void) {
    tlens_config cfg;
    tlens_model *m;
    tlens_ctx *ctx;
    tlens_error err;
    const tlens_tensor *lg;
    int32_t tokens[6] = {1, 5, 9, 2, 77, 3};
    size_t i, n;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_layers = 2;
    cfg.d_model = 32;
    cfg.n_heads = 4;
    cfg.d_mlp = 128;
    cfg.d_vocab = 100;
    cfg.n_ctx = 16;
    if (tlens_init_random(&m, &cfg, NULL, 7, &err) != TLENS_OK || tlens_ctx_new(&ctx, m, &err) != TLENS_OK) {
        printf("FAIL: %s\n", err.message);
        return 1;
    }
    tlens_add_hook(ctx, "blocks.*.hook_resid_post", count, NULL);
    if (tlens_run(ctx, tokens, 2, 3, &err) != TLENS_OK) {
        printf("FAIL: %s\n", err.message);
        return 1;
    }
    lg = tlens_logits(ctx);
    n = tlens_tensor_numel(lg);
    for (i = 0; i < n; i++)
        if (!isfinite(lg->data[i])) {
            printf("FAIL: logit %lu is not finite\n", (unsigned long)i);
            return 1;
        }
    printf("%lu finite logits, %d hook calls, \"%s\"\n", (unsigned long)n, calls, tlens_result_string(TLENS_ERR_NOMEM));
    if (n != 2 * 3 * 100 || calls != PORT_EXPECT_HOOK_CALLS) {
        printf("FAIL: wrong logits shape or hook count\n");
        return 1;
    }
    tlens_ctx_free(ctx);
    tlens_free(m);
    printf("1 passed, 0 failed\n");
    return 0;
}
