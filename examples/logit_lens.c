/* logit_lens - what would the model predict if it stopped after layer L?
 *
 *   logit_lens MODEL --tokens "1 2 3 ..." [--pos P] [--target ID] [--incl-mid]
 *
 * The logit lens (nostalgebraist, 2020) reads the residual stream before
 * every block as if it were the last one: apply the final LayerNorm and the
 * unembedding to it. In TransformerLens:
 *
 *     resid = cache.accumulated_resid(layer=-1, incl_mid=False, apply_ln=True,
 *                                     pos_slice=P)   # [component, batch, d_model]
 *     logits = model.unembed(resid)
 *
 * apply_ln centres every component and divides it by the final LayerNorm's
 * scale from the real run (the cached ln_final.hook_scale), so all
 * components are measured on the same scale as the model's own output.
 * tlens_accumulated_resid(..., apply_ln = 1, ...) is that.
 *
 * To unembed, run the model from start_at_layer = n_layers: no blocks, just
 * ln_final and W_U. The components are already normalised, so a hook sets
 * ln_final's scale to 1 and the LayerNorm changes nothing else (centring a
 * centred vector is a no-op; with fold_ln it has no weights). The last
 * component, final_post, then gives exactly the model's own logits.
 *
 * For each component the table shows the top token, its logit, and the
 * logit and rank (0 = top) of a target token: --target, else the actual
 * next token when P is not the last position, else the model's final
 * prediction - so one sees at which layer the model "knows" its answer.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "example_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "[MODEL] --tokens \"1 2 3 ...\" [--pos P] [--target ID] [--incl-mid]"

/* A hook on ln_final.hook_scale: the input is already divided by it. */
static int scale_to_one(const char *name, int layer, tlens_tensor *scale, void *user) {
    size_t i;
    (void)name;
    (void)layer;
    (void)user;
    for (i = 0; i < tlens_tensor_numel(scale); i++) scale->data[i] = 1.0f;
    return 0;
}

/* Logits [n, 1, d_vocab] for n normalised residual vectors [n, d_model]:
 * a batch of n one-position "sequences" through ln_final and W_U only. */
static const tlens_tensor *unembed(tlens_ctx *ctx, const float *resid, int n, int n_layers) {
    tlens_run_options opt;
    tlens_error err;
    int handle = tlens_add_hook(ctx, "ln_final.hook_scale", scale_to_one, NULL);
    memset(&opt, 0, sizeof opt);
    opt.start_resid = resid;
    opt.start_at_layer = n_layers;
    ex_check(tlens_run_ex(ctx, NULL, n, 1, &opt, &err), &err);
    tlens_remove_hook(ctx, handle);
    return tlens_logits(ctx);
}

static int argmax(const float *x, int n) {
    int i, best = 0;
    for (i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* How many tokens have a higher logit than `token`: 0 for the top one. */
static int rank_of(const float *x, int n, int token) {
    int i, rank = 0;
    for (i = 0; i < n; i++) rank += x[i] > x[token];
    return rank;
}

int main(int argc, char **argv) {
    ex_common c;
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    const tlens_config *cfg;
    const tlens_tensor *logits;
    tlens_stack stack;
    const char *v, *why;
    int32_t *tokens;
    int n, i, k, D, V, pos = -1, target = -1, incl_mid = 0;
    float *rows;

    ex_args_begin(&c, "logit_lens", USAGE);
    for (i = 1; i < argc; i++) {
        if ((v = ex_value(argc, argv, &i, "--pos"))) pos = ex_int(v, "--pos");
        else if ((v = ex_value(argc, argv, &i, "--target"))) target = ex_int(v, "--target");
        else if (!strcmp(argv[i], "--incl-mid")) incl_mid = 1;
        else ex_args_common(&c, argc, argv, &i);
    }
    ex_args_end(&c);

    model = ex_load(c.model_path);
    cfg = tlens_model_config(model);
    D = cfg->d_model;
    V = cfg->d_vocab;
    tokens = ex_prompt_tokens(model, &c, &n);
    if (pos < 0) pos = n - 1;
    if (pos >= n) ex_die("--pos %d: the prompt has positions 0..%d", pos, n - 1);
    if (target >= V) ex_die("--target %d is outside the vocabulary (d_vocab %d)", target, V);
    ctx = ex_context(model);

    /* the run: keep what accumulated_resid needs */
    tlens_cache_select(ctx, "blocks.*.hook_resid_*");
    tlens_cache_select(ctx, "ln_final.hook_scale");
    ex_check(tlens_run(ctx, tokens, 1, n, &err), &err);
    ex_check(tlens_accumulated_resid(ctx, -1, incl_mid, 1, &stack, &err), &err);

    /* pos_slice = P: component k's vector at (batch 0, position P) */
    rows = (float *)ex_malloc((size_t)stack.n * (size_t)D * sizeof(float));
    for (k = 0; k < stack.n; k++)
        memcpy(rows + (size_t)k * D, stack.data + ((size_t)k * (size_t)n + (size_t)pos) * (size_t)D,
               (size_t)D * sizeof(float));
    tlens_cache_clear(ctx);
    logits = unembed(ctx, rows, stack.n, cfg->n_layers);

    why = "--target";
    if (target < 0 && pos + 1 < n) {
        target = tokens[pos + 1];
        why = "the actual next token";
    } else if (target < 0) {
        target = argmax(logits->data + (size_t)(stack.n - 1) * (size_t)V, V);
        why = "the model's own prediction";
    }
    ex_print_tokens(model, "tokens", tokens, n);
    printf("position %d, target %d (%s)\n", pos, target, why);
    printf("%-12s %9s %10s %12s %11s\n", "component", "top", "top_logit", "target_logit", "target_rank");
    for (k = 0; k < stack.n; k++) {
        const float *row = logits->data + (size_t)k * (size_t)V;
        int top = argmax(row, V);
        printf("%-12s %9d %10.4f %12.4f %11d\n", stack.labels[k], top, row[top], row[target], rank_of(row, V, target));
    }

    free(rows);
    tlens_stack_free(&stack);
    free(tokens);
    tlens_ctx_free(ctx);
    tlens_free(model);
    return 0;
}
