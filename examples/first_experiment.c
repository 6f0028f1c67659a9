/* first_experiment - the first thing one does with TransformerLens, in C.
 *
 *   first_experiment MODEL --tokens "464 3290 318"
 *
 * In Python this is
 *
 *     model = HookedTransformer.from_pretrained("gpt2")
 *     logits, cache = model.run_with_cache(tokens)
 *     print(model.cfg.n_layers, model.cfg.n_heads, ...)
 *     print(cache["hook_embed"].shape)
 *     r = cache["blocks.0.hook_resid_post"]
 *     print(r.max(), r.mean(), r.std(unbiased=False))
 *
 * Here: load the model (processed as from_pretrained does), cache every hook
 * point during one run, then look at a few activations by name. Every
 * figure is printed on its own line as "name value" or
 * "hook_name max X mean Y std Z", easy to read and to parse.
 *
 * Things to notice: blocks.0.hook_resid_post has a mean near 0 because
 * center_writing_weights makes everything written to the residual stream
 * centred; ln1.hook_scale is the LayerNorm's divisor, one number per
 * position ([batch, pos, 1]); ln1.hook_normalized is centred with a
 * root-mean-square of 1, so its std is close to 1.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "example_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define USAGE "[MODEL] --tokens \"1 2 3\""

/* max, mean and population standard deviation over every element. */
static void print_stats(const char *name, const tlens_tensor *t) {
    size_t n, i;
    double mx = -INFINITY, mean = 0, var = 0;
    if (!t) ex_die("%s is not in the cache (has the model that many layers?)", name);
    n = tlens_tensor_numel(t);
    for (i = 0; i < n; i++) {
        if (t->data[i] > mx) mx = t->data[i];
        mean += t->data[i];
    }
    mean /= (double)n;
    for (i = 0; i < n; i++) var += (t->data[i] - mean) * (t->data[i] - mean); /* two passes: no cancellation */
    printf("%s max %.6g mean %.6g std %.6g\n", name, mx, mean, sqrt(var / (double)n));
}

static void print_shape(const char *name, const tlens_tensor *t) {
    int d;
    printf("%s shape [", name);
    for (d = 0; d < t->ndim; d++) printf("%s%d", d ? ", " : "", t->shape[d]);
    printf("]\n");
}

int main(int argc, char **argv) {
    ex_common c;
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    const tlens_config *cfg;
    int32_t *tokens;
    int n, i;
    double loss;

    ex_args_begin(&c, "first_experiment", USAGE);
    for (i = 1; i < argc; i++) ex_args_common(&c, argc, argv, &i);
    ex_args_end(&c);

    model = ex_load(c.model_path);
    cfg = tlens_model_config(model);
    tokens = ex_prompt_tokens(model, &c, &n);
    ctx = ex_context(model);

    /* model.cfg */
    printf("n_layers %d\nn_heads %d\nd_model %d\nd_head %d\nd_mlp %d\nd_vocab %d\nn_ctx %d\n", cfg->n_layers,
           cfg->n_heads, cfg->d_model, cfg->d_head, cfg->d_mlp, cfg->d_vocab, cfg->n_ctx);
    ex_print_tokens(model, "tokens", tokens, n);

    /* run_with_cache: "*" keeps every hook point (a narrower glob such as
     * "blocks.*.hook_resid_post" keeps less memory busy). */
    tlens_cache_select(ctx, "*");
    ex_check(tlens_run(ctx, tokens, 1, n, &err), &err);

    print_shape("logits", tlens_logits(ctx));
    print_shape("hook_embed", tlens_cache_get(ctx, "hook_embed"));

    /* cache["blocks.0.hook_resid_post"], by full name ... */
    print_stats("blocks.0.hook_resid_post", tlens_cache_get(ctx, "blocks.0.hook_resid_post"));
    /* ... or by TransformerLens' shorthand: cache["scale", 1, "ln1"] */
    print_stats("blocks.1.ln1.hook_scale", tlens_cache_act(ctx, "scale", 1, "ln1"));
    print_stats("blocks.1.ln1.hook_normalized", tlens_cache_act(ctx, "normalized", 1, "ln1"));

    /* model(tokens, return_type="loss"): mean next-token cross-entropy */
    if (n > 1) {
        ex_check(tlens_loss(ctx, tokens, NULL, NULL, &loss, &err), &err);
        printf("loss %.6f\n", loss);
    }

    free(tokens);
    tlens_ctx_free(ctx);
    tlens_free(model);
    return 0;
}
