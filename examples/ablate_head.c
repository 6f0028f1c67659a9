/* ablate_head - how much does the model need one attention head?
 *
 *   ablate_head MODEL --tokens "1 2 3 ..." [--layer L] [--head H] [--mean]
 *
 * Zero-ablation, as in TransformerLens:
 *
 *     def zero_head(z, hook): z[:, :, H, :] = 0.0
 *     loss = model.run_with_hooks(tokens, return_type="loss",
 *                                 fwd_hooks=[(f"blocks.{L}.attn.hook_z", zero_head)])
 *
 * hook_z [batch, pos, head, d_head] is each head's output before W_O, so
 * zeroing one head's slice removes exactly that head's contribution to the
 * residual stream. tlens_add_ablation is that hook, ready-made; it stays on
 * the context until tlens_remove_hook.
 *
 * The table shows, for each ablated head, the loss (mean next-token
 * cross-entropy) and its change from the clean run: a large increase means
 * the model relies on that head for this text. Without --layer / --head
 * every head is ablated in turn, one at a time. --mean replaces the head's
 * output by its mean over the positions instead of zero (mean-ablation).
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "example_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "[MODEL] --tokens \"1 2 3 ...\" [--layer L] [--head H] [--mean]"

/* The loss of one run with whatever hooks are on the context. */
static double run_loss(tlens_ctx *ctx, const int32_t *tokens, int n) {
    tlens_error err;
    double loss;
    ex_check(tlens_run(ctx, tokens, 1, n, &err), &err);
    ex_check(tlens_loss(ctx, tokens, NULL, NULL, &loss, &err), &err);
    return loss;
}

/* The loss with head `head` of layer `layer` ablated. */
static double ablated_loss(tlens_ctx *ctx, const int32_t *tokens, int n, int layer, int head, int mode) {
    char name[64];
    int handle;
    double loss;
    tlens_act_name(name, sizeof name, "z", layer, NULL); /* "blocks.L.attn.hook_z" */
    handle = tlens_add_ablation(ctx, name, head, mode);
    if (!handle) ex_die("cannot add an ablation at %s", name);
    loss = run_loss(ctx, tokens, n);
    tlens_remove_hook(ctx, handle); /* the next head starts from the clean model */
    return loss;
}

int main(int argc, char **argv) {
    ex_common c;
    tlens_model *model;
    tlens_ctx *ctx;
    const tlens_config *cfg;
    const char *v;
    int32_t *tokens;
    int n, i, layer = -1, head = -1, mode = TLENS_ABLATE_ZERO, l, h;
    double clean;

    ex_args_begin(&c, "ablate_head", USAGE);
    for (i = 1; i < argc; i++) {
        if ((v = ex_value(argc, argv, &i, "--layer"))) layer = ex_int(v, "--layer");
        else if ((v = ex_value(argc, argv, &i, "--head"))) head = ex_int(v, "--head");
        else if (!strcmp(argv[i], "--mean")) mode = TLENS_ABLATE_MEAN;
        else ex_args_common(&c, argc, argv, &i);
    }
    ex_args_end(&c);

    model = ex_load(c.model_path);
    cfg = tlens_model_config(model);
    if (layer < -1 || layer >= cfg->n_layers)
        ex_die("--layer %d: the model has layers 0..%d", layer, cfg->n_layers - 1);
    if (head < -1 || head >= cfg->n_heads)
        ex_die("--head %d: the model has heads 0..%d", head, cfg->n_heads - 1);
    tokens = ex_prompt_tokens(model, &c, &n);
    if (n < 2) ex_die("the loss needs at least 2 tokens");
    ctx = ex_context(model);

    ex_print_tokens(model, "tokens", tokens, n);
    clean = run_loss(ctx, tokens, n);
    printf("clean loss %.6f\n", clean);
    printf("%s-ablation of blocks.L.attn.hook_z, one head at a time:\n", mode == TLENS_ABLATE_ZERO ? "zero" : "mean");
    printf("layer  head      loss    change\n");
    /* -1 means "all": loop over every layer / head the options leave open */
    for (l = layer < 0 ? 0 : layer; l < (layer < 0 ? cfg->n_layers : layer + 1); l++)
        for (h = head < 0 ? 0 : head; h < (head < 0 ? cfg->n_heads : head + 1); h++) {
            double loss = ablated_loss(ctx, tokens, n, l, h, mode);
            printf("%5d %5d %9.6f %+9.6f\n", l, h, loss, loss - clean);
        }

    free(tokens);
    tlens_ctx_free(ctx);
    tlens_free(model);
    return 0;
}
